//! `swarmctl plugin ...`: install, list, inspect and remove the plugins installed cluster-wide.

use std::io::Write;
use std::path::Path;

use swarm_types as t;

use super::Context;
use crate::cli::{Format, PluginCommand, PluginInstallArgs, PluginKindArg};
use crate::client::Manager;
use crate::error::CliError;
use crate::render;
use crate::resolve::resolve;

pub async fn run(
    context: &Context,
    command: PluginCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        PluginCommand::Install(args) => {
            // Read and check the file before connecting: a wrong path is the common mistake.
            let (spec, component) = install_request(&args)?;
            let mut manager = context.connect().await?;
            let plugin = manager.install_plugin(spec, component).await?;
            context.print_one(out, &plugin, installed)?;
        }
        PluginCommand::Ls => {
            let mut manager = context.connect().await?;
            let mut plugins = manager.list_plugins().await?;
            sort_plugins(&mut plugins);
            context.print_list(out, &plugins, table)?;
        }
        PluginCommand::Inspect { plugin } => {
            let mut manager = context.connect().await?;
            let plugins = manager.list_plugins().await?;
            let plugin = resolve("plugin", &plugin, &plugins, |_| false)?;
            let used_by = match context.format {
                Format::Table => users(&mut manager, plugin.name()).await?,
                Format::Json => Vec::new(),
            };
            let now = t::Timestamp::now();
            context.print_one(out, plugin, |p| fields(p, &used_by, now))?;
        }
        PluginCommand::Rm { plugins: queries } => {
            let mut manager = context.connect().await?;
            let plugins = manager.list_plugins().await?;
            super::remove_each(
                "plugin",
                &queries,
                &plugins,
                async |id: &str| manager.remove_plugin(id).await,
                out,
                err,
            )
            .await?;
        }
    }
    Ok(())
}

/// The spec and the component's bytes `plugin install` sends, checked as the manager will.
fn install_request(args: &PluginInstallArgs) -> Result<(t::PluginSpec, Vec<u8>), CliError> {
    let mut spec = t::PluginSpec {
        annotations: t::Annotations {
            name: args.name.clone(),
            labels: args.labels.iter().cloned().collect(),
        },
        kind: match args.kind {
            PluginKindArg::Executor => t::PluginKind::Executor,
            PluginKindArg::Scheduler => t::PluginKind::Scheduler,
            PluginKindArg::Discovery => t::PluginKind::Discovery,
        },
        capabilities: args
            .allow
            .iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
    };
    spec.normalize();
    spec.validate().map_err(|e| CliError::user(allow_flag(e)))?;
    let component = read_component(&args.file)?;
    Ok((spec, component))
}

/// Validation errors in the words of the command line (`--allow` for `spec.capabilities`).
fn allow_flag(e: t::ValidationError) -> String {
    if e.field.starts_with("spec.capabilities") {
        format!("--allow: {}", e.message)
    } else if e.field == "spec.annotations.name" {
        format!("NAME: {}", e.message)
    } else {
        e.to_string()
    }
}

/// The component's bytes, refusing a missing, empty or oversize file with its path named.
fn read_component(path: &Path) -> Result<Vec<u8>, CliError> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| CliError::user(format!("{shown}: {}", crate::error::io_detail(&e))))?
        .len();
    t::check_plugin_size(size).map_err(|e| CliError::user(format!("{shown}: {}", e.message)))?;
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::user(format!("{shown}: {}", crate::error::io_detail(&e))))?;
    // The file may have changed between the two looks.
    t::check_plugin_size(bytes.len() as u64)
        .map_err(|e| CliError::user(format!("{shown}: {}", e.message)))?;
    Ok(bytes)
}

/// Who names a plugin: the cluster (scheduler), services and nodes (executor).
async fn users(manager: &mut Manager, name: &str) -> Result<Vec<String>, CliError> {
    let same = |other: &str| !other.is_empty() && other.eq_ignore_ascii_case(name);
    let mut users = Vec::new();
    for c in manager.list_clusters().await? {
        if same(&c.spec.scheduler) {
            users.push(format!("cluster {} (scheduler)", c.spec.annotations.name));
        }
    }
    let mut services = manager.list_services().await?;
    super::sort_services(&mut services);
    for s in services.iter().filter(|s| same(&s.spec.executor)) {
        users.push(format!("service {}", s.name()));
    }
    let mut nodes = manager.list_nodes().await?;
    super::sort_nodes(&mut nodes);
    for n in nodes.iter().filter(|n| same(&n.spec.executor)) {
        users.push(format!("node {}", n.display_name()));
    }
    Ok(users)
}

/// Plugins sorted by name, then id.
fn sort_plugins(plugins: &mut [t::Plugin]) {
    plugins.sort_by(|a, b| (a.name(), &a.id).cmp(&(b.name(), &b.id)));
}

/// `sha256:` and the first 12 hex digits, as docker shortens image ids.
fn short_digest(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.get(..12).unwrap_or(hex)),
        None => digest.to_string(),
    }
}

/// A size for people: `512B`, `3.4KiB`, `1.2MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 3] = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift {
            let value = bytes as f64 / f64::from(2u32).powi(shift as i32);
            return format!("{value:.1}{unit}");
        }
    }
    format!("{bytes}B")
}

fn status(p: &t::Plugin) -> String {
    match (p.status.quarantined, p.status.failures) {
        (true, _) => "quarantined".to_string(),
        (false, 0) => "ok".to_string(),
        (false, 1) => "ok (1 failure)".to_string(),
        (false, n) => format!("ok ({n} failures)"),
    }
}

fn table(plugins: &[t::Plugin]) -> String {
    let rows = plugins
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.name().to_string(),
                p.spec.kind.to_string(),
                short_digest(&p.digest),
                size(p.size_bytes),
                p.spec.capabilities.join(","),
                status(p),
            ]
        })
        .collect();
    render::table(
        &[
            "ID",
            "NAME",
            "KIND",
            "DIGEST",
            "SIZE",
            "CAPABILITIES",
            "STATUS",
        ],
        rows,
    )
}

/// What `plugin install` prints: enough to check what was stored.
fn installed(p: &t::Plugin) -> String {
    render::fields(&[
        ("ID", p.id.clone()),
        ("Name", p.name().to_string()),
        ("Kind", p.spec.kind.to_string()),
        ("Digest", p.digest.clone()),
        (
            "Size",
            format!("{} ({} bytes)", size(p.size_bytes), p.size_bytes),
        ),
    ])
}

fn fields(p: &t::Plugin, used_by: &[String], now: t::Timestamp) -> String {
    let mut granted = vec!["log".to_string()];
    granted.extend(p.spec.capabilities.iter().cloned());
    render::fields(&[
        ("ID", p.id.clone()),
        ("Name", p.name().to_string()),
        ("Labels", render::labels(&p.spec.annotations.labels)),
        ("Kind", p.spec.kind.to_string()),
        ("Digest", p.digest.clone()),
        (
            "Size",
            format!("{} ({} bytes)", size(p.size_bytes), p.size_bytes),
        ),
        ("Capabilities", granted.join(", ")),
        ("Imports", p.imports.join(", ")),
        ("Runtimes", p.runtimes.join(", ")),
        ("Schemes", p.schemes.join(", ")),
        ("Status", status(p)),
        ("Failures", p.status.failures.to_string()),
        ("Message", p.status.message.clone()),
        ("Status changed", render::time(p.status.updated_at, now)),
        ("Used by", used_by.join(", ")),
        ("Created", render::time(p.meta.created_at, now)),
        ("Updated", render::time(p.meta.updated_at, now)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: PluginKindArg, allow: &[&str], file: &Path) -> PluginInstallArgs {
        PluginInstallArgs {
            kind,
            name: "runner".into(),
            file: file.to_path_buf(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            labels: Vec::new(),
        }
    }

    #[test]
    fn install_checks_grants_and_the_file_before_sending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"\0asm").expect("write");
        let (spec, bytes) = install_request(&args(
            PluginKindArg::Executor,
            &["wasi-runner", " process", ""],
            &file,
        ))
        .expect("valid request");
        assert_eq!(spec.capabilities, ["process", "wasi-runner"]);
        assert_eq!(bytes, b"\0asm");

        let e = install_request(&args(PluginKindArg::Scheduler, &["process"], &file))
            .expect_err("schedulers get nothing");
        assert_eq!(
            e.to_string(),
            "--allow: scheduler plugins cannot be granted \"process\" (they can have: none)"
        );
        assert_eq!(e.exit_code(), 1);

        let missing = dir.path().join("missing.wasm");
        let e = install_request(&args(PluginKindArg::Executor, &[], &missing))
            .expect_err("missing file");
        assert_eq!(
            e.to_string(),
            format!("{}: No such file or directory", missing.display())
        );

        let big = dir.path().join("big.wasm");
        let f = std::fs::File::create(&big).expect("create");
        f.set_len(t::MAX_PLUGIN_BYTES + 1).expect("grow");
        let e = install_request(&args(PluginKindArg::Executor, &[], &big)).expect_err("too big");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: is 16777217 bytes, more than the 16777216 bytes (16 MiB) a plugin may have",
                big.display()
            )
        );
    }

    #[test]
    fn digests_sizes_and_status_read_short() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "0123456789abcdef".repeat(4))),
            "sha256:0123456789ab"
        );
        assert_eq!(size(512), "512B");
        assert_eq!(size(3 << 10), "3.0KiB");
        assert_eq!(size((1 << 20) + (1 << 19)), "1.5MiB");
        let mut p = t::Plugin::default();
        assert_eq!(status(&p), "ok");
        p.status.failures = 2;
        assert_eq!(status(&p), "ok (2 failures)");
        p.status.quarantined = true;
        assert_eq!(status(&p), "quarantined");
    }
}
