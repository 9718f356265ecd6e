//! `swarmctl service ...`: create, update, scale, list, inspect and remove services.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use swarm_proto::pb;
use swarm_types as t;

use super::{Context, Names, sort_services};
use crate::cli::{
    ContainerArgs, Format, ModeArg, ResourceArgs, RestartArgs, RestartConditionArg, ServiceCommand,
    ServiceCreateArgs, ServiceUpdateArgs,
};
use crate::client::{Manager, ServiceStatus};
use crate::error::{CliError, io_detail};
use crate::render;
use crate::resolve::resolve;

pub async fn run(
    context: &Context,
    command: ServiceCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    // Check the command line before connecting: a bad flag is reported even with no manager.
    let create_spec = match &command {
        ServiceCommand::Create(args) => Some(create_spec(args)?),
        _ => None,
    };
    let scale_targets = match &command {
        ServiceCommand::Scale { targets } => scale_targets(targets)?,
        _ => Vec::new(),
    };
    let mut manager = context.connect().await?;
    match command {
        ServiceCommand::Create(_) => {
            if let Some(spec) = create_spec {
                let service = manager.create_service(spec).await?;
                writeln!(out, "{}", service.id)?;
            }
        }
        ServiceCommand::Update(args) => {
            let services = manager.list_services().await?;
            let service = resolve("service", &args.service, &services, |_| false)?;
            let spec = update_spec(service, &args)?;
            let updated = manager.update_service(service, spec).await?;
            writeln!(out, "{}", updated.id)?;
        }
        ServiceCommand::Scale { .. } => {
            let services = manager.list_services().await?;
            for (query, replicas) in scale_targets {
                let service = resolve("service", &query, &services, |_| false)?;
                let mut spec = service.spec.clone();
                match &mut spec.mode {
                    t::ServiceMode::Replicated { replicas: current } => *current = replicas,
                    t::ServiceMode::Global => {
                        return Err(CliError::user(format!(
                            "service {} is global (one task per node): only replicated services scale",
                            service.name()
                        ))
                        .into());
                    }
                }
                manager.update_service(service, spec).await?;
                writeln!(out, "{} scaled to {replicas}", service.name())?;
            }
        }
        ServiceCommand::Ls => {
            let mut services = manager.list_services().await?;
            sort_services(&mut services);
            let statuses = statuses(&mut manager, &services).await?;
            context.print_list(out, &services, |services| table(services, &statuses))?;
        }
        ServiceCommand::Inspect { service } => {
            let services = manager.list_services().await?;
            let service = resolve("service", &service, &services, |_| false)?;
            if context.format == Format::Json {
                out.write_all(render::json(service)?.as_bytes())?;
                return Ok(());
            }
            // For people: the service, then its tasks that are meant to run.
            let statuses = statuses(&mut manager, std::slice::from_ref(service)).await?;
            let filters = pb::list_tasks_request::Filters {
                service_ids: vec![service.id.clone()],
                ..Default::default()
            };
            let mut tasks = manager.list_tasks(filters).await?;
            tasks.retain(|task| {
                task.service_id == service.id && task.desired_state <= t::TaskState::Running
            });
            let nodes = manager.list_nodes().await?;
            let names = Names::new(std::slice::from_ref(service), &nodes);
            names.sort_tasks(&mut tasks);
            let now = t::Timestamp::now();
            let mut text = fields(service, statuses.get(&service.id), now);
            text.push_str("\nTasks:\n");
            text.push_str(&names.task_table(&tasks, now));
            out.write_all(text.as_bytes())?;
        }
        ServiceCommand::Rm { services: queries } => {
            let services = manager.list_services().await?;
            super::remove_each(
                "service",
                &queries,
                &services,
                async |id: &str| manager.remove_service(id).await,
                out,
                err,
            )
            .await?;
        }
    }
    Ok(())
}

async fn statuses(
    manager: &mut Manager,
    services: &[t::Service],
) -> Result<HashMap<String, ServiceStatus>, CliError> {
    if services.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = services.iter().map(|s| s.id.clone()).collect();
    let statuses = manager.service_statuses(ids).await?;
    Ok(statuses
        .into_iter()
        .map(|s| (s.service_id.clone(), s))
        .collect())
}

/// `running/desired`; without a status from the manager, 0 running of the replicas asked for.
fn replicas(service: &t::Service, status: Option<&ServiceStatus>) -> String {
    match (status, &service.spec.mode) {
        (Some(s), _) => format!("{}/{}", s.running, s.desired),
        (None, t::ServiceMode::Replicated { replicas }) => format!("0/{replicas}"),
        (None, t::ServiceMode::Global) => "0/0".to_string(),
    }
}

fn table(services: &[t::Service], statuses: &HashMap<String, ServiceStatus>) -> String {
    let rows = services
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.name().to_string(),
                s.spec.mode.name().to_string(),
                replicas(s, statuses.get(&s.id)),
                render::runtime(&s.spec.task.runtime),
            ]
        })
        .collect();
    render::table(&["ID", "NAME", "MODE", "REPLICAS", "RUNTIME"], rows)
}

fn fields(service: &t::Service, status: Option<&ServiceStatus>, now: t::Timestamp) -> String {
    let spec = &service.spec;
    let task = &spec.task;
    let (runtime_pairs, env): (Vec<(&str, String)>, &[String]) = match &task.runtime {
        t::Runtime::Process(p) => (
            vec![
                ("Runtime", "process".to_string()),
                (
                    "Command",
                    std::iter::once(&p.command)
                        .chain(&p.args)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                ("Workdir", p.dir.clone().unwrap_or_default()),
            ],
            &p.env,
        ),
        t::Runtime::Wasi(w) => (
            vec![
                ("Runtime", "wasi".to_string()),
                ("Module", w.module.clone()),
                ("Args", w.args.join(" ")),
            ],
            &w.env,
        ),
        t::Runtime::Container(c) => (
            vec![
                ("Runtime", "container".to_string()),
                ("Image", c.image.clone()),
                ("Entrypoint", c.entrypoint.join(" ")),
                ("Args", c.args.join(" ")),
                ("Workdir", c.workdir.clone().unwrap_or_default()),
                ("User", c.user.clone().unwrap_or_default()),
                ("Hostname", c.hostname.clone().unwrap_or_default()),
                (
                    "Mounts",
                    c.mounts
                        .iter()
                        .map(t::Mount::summary)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                ("Container labels", render::labels(&c.labels)),
            ],
            &c.env,
        ),
    };
    let pending = status
        .filter(|s| s.pending > 0)
        .map_or(String::new(), |s| s.pending.to_string());
    let restart = &task.restart;
    let restart_text = format!(
        "{}, delay {}, {}, window {}",
        match restart.condition {
            t::RestartCondition::None => "none",
            t::RestartCondition::OnFailure => "on-failure",
            t::RestartCondition::Any => "any",
        },
        humantime::format_duration(restart.delay),
        match restart.max_attempts {
            0 => "unlimited attempts".to_string(),
            n => format!("at most {n} attempts"),
        },
        match restart.window {
            w if w.is_zero() => "the service's lifetime".to_string(),
            w => humantime::format_duration(w).to_string(),
        },
    );
    let mut pairs = vec![
        ("ID", service.id.clone()),
        ("Name", spec.annotations.name.clone()),
        ("Labels", render::labels(&spec.annotations.labels)),
        ("Mode", spec.mode.name().to_string()),
        ("Replicas", replicas(service, status)),
        ("Pending", pending),
    ];
    pairs.extend(runtime_pairs);
    pairs.extend([
        ("Executor", spec.executor.clone()),
        ("Env", env.join(" ")),
        (
            "Reservations",
            render::resources(&task.resources.reservations),
        ),
        ("Limits", render::resources(&task.resources.limits)),
        ("Restart", restart_text),
        ("Secrets", file_refs(&task.secrets)),
        ("Configs", file_refs(&task.configs)),
        ("Constraints", task.placement.constraints.join(", ")),
        (
            "Max per node",
            if task.placement.max_replicas > 0 {
                task.placement.max_replicas.to_string()
            } else {
                String::new()
            },
        ),
        ("Spec version", service.spec_version.to_string()),
        (
            "Force update",
            if task.force_update > 0 {
                task.force_update.to_string()
            } else {
                String::new()
            },
        ),
        ("Created", render::time(service.meta.created_at, now)),
        ("Updated", render::time(service.meta.updated_at, now)),
    ]);
    render::fields(&pairs)
}

// ---- building specs ----------------------------------------------------------------------

/// The spec `service create` sends. Defaults are SwarmKit's: replicated, 1 replica, restart on
/// any exit after 5s without limit.
fn create_spec(args: &ServiceCreateArgs) -> Result<t::ServiceSpec, CliError> {
    let mode = match (args.mode, args.replicas) {
        (ModeArg::Replicated, replicas) => t::ServiceMode::Replicated {
            replicas: replicas.unwrap_or(1),
        },
        (ModeArg::Global, None) => t::ServiceMode::Global,
        (ModeArg::Global, Some(_)) => {
            return Err(CliError::user(
                "--replicas cannot be used with --mode global (one task per node)",
            ));
        }
    };
    if args.runtime.image.is_none() {
        refuse_container_flags(&args.container)?;
    }
    let runtime = match (&args.runtime.wasi, &args.runtime.image) {
        (_, Some(image)) => t::Runtime::Container(t::ContainerSpec {
            image: image.clone(),
            entrypoint: split_command(args.container.entrypoint.as_deref()),
            args: args.args.clone(),
            env: args.env.clone(),
            labels: args.container.container_labels.iter().cloned().collect(),
            mounts: args.container.mounts.clone(),
            workdir: args.workdir.clone(),
            user: args.container.user.clone(),
            hostname: args.container.hostname.clone(),
        }),
        (Some(file), None) => {
            if args.workdir.is_some() {
                return Err(CliError::user(
                    "--workdir applies to --process and --image only",
                ));
            }
            t::Runtime::Wasi(t::WasiSpec {
                module: wasi_module(file)?,
                args: args.args.clone(),
                env: args.env.clone(),
            })
        }
        (None, None) => {
            let Some((command, rest)) = args.args.split_first() else {
                return Err(CliError::user(
                    "--process needs a command: swarmctl service create --name web --process -- sleep 1000",
                ));
            };
            t::Runtime::Process(t::ProcessSpec {
                command: command.clone(),
                args: rest.to_vec(),
                env: args.env.clone(),
                dir: args.workdir.clone(),
            })
        }
    };
    let mut task = t::TaskSpec {
        runtime,
        resources: t::ResourceRequirements::default(),
        restart: t::RestartPolicy::default(),
        placement: t::Placement {
            constraints: args.constraints.clone(),
            platforms: Vec::new(),
            max_replicas: args.max_replicas_per_node.unwrap_or(0),
        },
        force_update: 0,
        secrets: args.secrets.clone(),
        configs: args.configs.clone(),
    };
    apply_resources(&mut task.resources, &args.resources);
    apply_restart(&mut task.restart, &args.restart);
    Ok(t::ServiceSpec {
        annotations: t::Annotations {
            name: args.name.clone(),
            labels: args.labels.iter().cloned().collect(),
        },
        task,
        mode,
        executor: args.executor.clone().unwrap_or_default(),
    })
}

/// Container-only flags given without `--image`.
fn refuse_container_flags(container: &ContainerArgs) -> Result<(), CliError> {
    let given = [
        ("--entrypoint", container.entrypoint.is_some()),
        ("--mount", !container.mounts.is_empty()),
        ("--container-label", !container.container_labels.is_empty()),
        ("--user", container.user.is_some()),
        ("--hostname", container.hostname.is_some()),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(CliError::user(format!(
            "{flag} applies to containers only (--image IMAGE)"
        ))),
        None => Ok(()),
    }
}

/// `--entrypoint "/bin/sh -c"` as its words; none for an absent or blank flag.
fn split_command(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The service's spec with the requested changes; flags not given leave their field alone.
/// `name` or `name as file` when the file name differs, comma-separated.
fn file_refs(refs: &[t::FileRef]) -> String {
    refs.iter()
        .map(|r| {
            if r.file_name() == r.name {
                r.name.clone()
            } else {
                format!("{} as {}", r.name, r.file_name())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Secret or config references after `--*-rm NAME` and `--*-add REF` (an added reference
/// replaces one with the same name or the same file name).
fn update_refs(refs: &mut Vec<t::FileRef>, rm: &[String], add: &[t::FileRef]) {
    refs.retain(|r| !rm.iter().any(|name| name == &r.name));
    for new in add {
        refs.retain(|r| r.name != new.name && r.file_name() != new.file_name());
        refs.push(new.clone());
    }
}

fn update_spec(service: &t::Service, args: &ServiceUpdateArgs) -> Result<t::ServiceSpec, CliError> {
    let mut spec = service.spec.clone();
    if let Some(replicas) = args.replicas {
        match &mut spec.mode {
            t::ServiceMode::Replicated { replicas: current } => *current = replicas,
            t::ServiceMode::Global => {
                return Err(CliError::user(format!(
                    "--replicas: service {} is global (one task per node)",
                    service.name()
                )));
            }
        }
    }
    for key in &args.label_rm {
        spec.annotations.labels.remove(key);
    }
    for (key, value) in &args.label_add {
        spec.annotations.labels.insert(key.clone(), value.clone());
    }
    if let Some(executor) = &args.executor {
        spec.executor = executor.clone();
    }
    let task = &mut spec.task;
    task.runtime = update_runtime(&task.runtime, args)?;
    let env = match &mut task.runtime {
        t::Runtime::Process(p) => &mut p.env,
        t::Runtime::Wasi(w) => &mut w.env,
        t::Runtime::Container(c) => &mut c.env,
    };
    update_env(env, &args.env_rm, &args.env_add);
    if let Some(dir) = &args.workdir {
        let dir = if dir.is_empty() {
            None
        } else {
            Some(dir.clone())
        };
        match &mut task.runtime {
            t::Runtime::Process(p) => p.dir = dir,
            t::Runtime::Container(c) => c.workdir = dir,
            t::Runtime::Wasi(_) => {
                return Err(CliError::user(
                    "--workdir applies to process and container services only",
                ));
            }
        }
    }
    update_container(&mut task.runtime, &args.container)?;
    let constraints = &mut task.placement.constraints;
    constraints.retain(|c| !args.constraint_rm.contains(c));
    for c in &args.constraint_add {
        if !constraints.contains(c) {
            constraints.push(c.clone());
        }
    }
    if let Some(n) = args.max_replicas_per_node {
        task.placement.max_replicas = n;
    }
    update_refs(&mut task.secrets, &args.secret_rm, &args.secret_add);
    update_refs(&mut task.configs, &args.config_rm, &args.config_add);
    apply_resources(&mut task.resources, &args.resources);
    apply_restart(&mut task.restart, &args.restart);
    if args.force {
        task.force_update += 1;
    }
    Ok(spec)
}

/// `--entrypoint`, `--mount-add` and `--mount-rm` on a container service.
fn update_container(
    runtime: &mut t::Runtime,
    change: &crate::cli::ContainerChange,
) -> Result<(), CliError> {
    let t::Runtime::Container(c) = runtime else {
        let flag = if change.entrypoint.is_some() {
            Some("--entrypoint")
        } else if !change.mount_add.is_empty() {
            Some("--mount-add")
        } else if !change.mount_rm.is_empty() {
            Some("--mount-rm")
        } else {
            None
        };
        return match flag {
            Some(flag) => Err(CliError::user(format!(
                "{flag} applies to container services only"
            ))),
            None => Ok(()),
        };
    };
    if let Some(entrypoint) = &change.entrypoint {
        c.entrypoint = split_command(Some(entrypoint));
    }
    c.mounts.retain(|m| !change.mount_rm.contains(&m.target));
    for mount in &change.mount_add {
        match c.mounts.iter_mut().find(|m| m.target == mount.target) {
            Some(existing) => existing.clone_from(mount),
            None => c.mounts.push(mount.clone()),
        }
    }
    Ok(())
}

/// The runtime after `--process`, `--wasi FILE`, `--image IMAGE` and the arguments after `--`.
/// Switching runtime keeps the environment (and a working directory).
fn update_runtime(current: &t::Runtime, args: &ServiceUpdateArgs) -> Result<t::Runtime, CliError> {
    let (env, dir) = match current {
        t::Runtime::Process(p) => (p.env.clone(), p.dir.clone()),
        t::Runtime::Wasi(w) => (w.env.clone(), None),
        t::Runtime::Container(c) => (c.env.clone(), c.workdir.clone()),
    };
    if let Some(image) = &args.runtime.image {
        return Ok(match current {
            t::Runtime::Container(c) => t::Runtime::Container(t::ContainerSpec {
                image: image.clone(),
                args: if args.args.is_empty() {
                    c.args.clone()
                } else {
                    args.args.clone()
                },
                ..c.clone()
            }),
            _ => t::Runtime::Container(t::ContainerSpec {
                image: image.clone(),
                args: args.args.clone(),
                env,
                workdir: dir,
                ..Default::default()
            }),
        });
    }
    if let Some(file) = &args.runtime.wasi {
        return Ok(t::Runtime::Wasi(t::WasiSpec {
            module: wasi_module(file)?,
            args: args.args.clone(),
            env,
        }));
    }
    let as_process = args.runtime.process
        || (matches!(current, t::Runtime::Process(_)) && !args.args.is_empty());
    if as_process {
        let Some((command, rest)) = args.args.split_first() else {
            return Err(CliError::user(
                "--process needs a command after --: swarmctl service update web --process -- sleep 1000",
            ));
        };
        return Ok(t::Runtime::Process(t::ProcessSpec {
            command: command.clone(),
            args: rest.to_vec(),
            env,
            dir,
        }));
    }
    match current {
        t::Runtime::Wasi(w) if !args.args.is_empty() => Ok(t::Runtime::Wasi(t::WasiSpec {
            args: args.args.clone(),
            ..w.clone()
        })),
        t::Runtime::Container(c) if !args.args.is_empty() => {
            Ok(t::Runtime::Container(t::ContainerSpec {
                args: args.args.clone(),
                ..c.clone()
            }))
        }
        _ => Ok(current.clone()),
    }
}

/// Remove variables named in `remove` (`NAME` or `NAME=VALUE`), then add or replace `add`'s.
fn update_env(env: &mut Vec<String>, remove: &[String], add: &[String]) {
    let name = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let removed: Vec<String> = remove.iter().map(|r| name(r)).collect();
    env.retain(|e| !removed.contains(&name(e)));
    for new in add {
        let key = name(new);
        match env.iter_mut().find(|e| name(e) == key) {
            Some(existing) => existing.clone_from(new),
            None => env.push(new.clone()),
        }
    }
}

fn apply_resources(resources: &mut t::ResourceRequirements, args: &ResourceArgs) {
    if let Some(v) = args.reserve_cpu {
        resources.reservations.nano_cpus = v;
    }
    if let Some(v) = args.reserve_memory {
        resources.reservations.memory_bytes = v;
    }
    if let Some(v) = args.limit_cpu {
        resources.limits.nano_cpus = v;
    }
    if let Some(v) = args.limit_memory {
        resources.limits.memory_bytes = v;
    }
}

fn apply_restart(restart: &mut t::RestartPolicy, args: &RestartArgs) {
    if let Some(condition) = args.restart_condition {
        restart.condition = match condition {
            RestartConditionArg::None => t::RestartCondition::None,
            RestartConditionArg::OnFailure => t::RestartCondition::OnFailure,
            RestartConditionArg::Any => t::RestartCondition::Any,
        };
    }
    if let Some(delay) = args.restart_delay {
        restart.delay = delay;
    }
    if let Some(n) = args.restart_max_attempts {
        restart.max_attempts = n;
    }
    if let Some(window) = args.restart_window {
        restart.window = window;
    }
}

/// The component file as an absolute path, checked to exist here (the node reads that path).
fn wasi_module(file: &Path) -> Result<String, CliError> {
    let help = "give the path of a WASI component (.wasm) on this machine";
    let absolute = std::path::absolute(file).map_err(|e| {
        CliError::user(format!(
            "--wasi {}: {}; {help}",
            file.display(),
            io_detail(&e)
        ))
    })?;
    let metadata = std::fs::metadata(&absolute).map_err(|e| {
        CliError::user(format!(
            "--wasi {}: {}; {help}",
            file.display(),
            io_detail(&e)
        ))
    })?;
    if !metadata.is_file() {
        return Err(CliError::user(format!(
            "--wasi {}: not a file; {help}",
            file.display()
        )));
    }
    absolute.to_str().map(str::to_string).ok_or_else(|| {
        CliError::user(format!(
            "--wasi {}: the path is not valid UTF-8",
            file.display()
        ))
    })
}

/// `scale web 3` or `scale web=3 api=2` as (service, replicas) pairs.
fn scale_targets(targets: &[String]) -> Result<Vec<(String, u64)>, CliError> {
    let usage = "expected SERVICE REPLICAS or SERVICE=REPLICAS...: swarmctl service scale web 3";
    let number = |service: &str, text: &str| {
        text.parse::<u64>().map_err(|_| {
            CliError::user(format!(
                "replicas of {service}: {text:?} is not a number of replicas (0 or more)"
            ))
        })
    };
    match targets {
        [service, replicas] if !service.contains('=') && !replicas.contains('=') => {
            Ok(vec![(service.clone(), number(service, replicas)?)])
        }
        _ => targets
            .iter()
            .map(|target| match target.split_once('=') {
                Some((service, replicas)) if !service.is_empty() => {
                    Ok((service.to_string(), number(service, replicas)?))
                }
                _ => Err(CliError::user(format!("{target:?}: {usage}"))),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> ServiceCommand {
        let cli = Cli::try_parse_from(std::iter::once("swarmctl").chain(line.iter().copied()))
            .expect("parse");
        match cli.command {
            Command::Service(command) => command,
            other => panic!("not a service command: {other:?}"),
        }
    }

    fn must_create(line: &[&str]) -> t::ServiceSpec {
        match parse(line) {
            ServiceCommand::Create(args) => create_spec(&args).expect("spec"),
            other => panic!("not create: {other:?}"),
        }
    }

    fn must_update(service: &t::Service, line: &[&str]) -> Result<t::ServiceSpec, CliError> {
        match parse(line) {
            ServiceCommand::Update(args) => update_spec(service, &args),
            other => panic!("not update: {other:?}"),
        }
    }

    #[test]
    fn create_uses_swarmkit_defaults() {
        let spec = must_create(&[
            "service",
            "create",
            "--name",
            "web",
            "--process",
            "--",
            "sleep",
            "1000",
        ]);
        assert_eq!(spec.mode, t::ServiceMode::Replicated { replicas: 1 });
        assert_eq!(spec.task.restart, t::RestartPolicy::default());
        assert_eq!(
            spec.task.runtime,
            t::Runtime::Process(t::ProcessSpec {
                command: "sleep".into(),
                args: vec!["1000".into()],
                ..Default::default()
            })
        );
        // Without `--` as well.
        let same = must_create(&[
            "service",
            "create",
            "--name",
            "web",
            "--process",
            "sleep",
            "1000",
        ]);
        assert_eq!(same, spec);
    }

    #[test]
    fn create_sets_every_flag() {
        let spec = must_create(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "--env",
            "A=1",
            "--label",
            "tier=front",
            "--constraint",
            "node.labels.zone==east",
            "--reserve-cpu",
            "0.5",
            "--reserve-memory",
            "512MiB",
            "--limit-cpu",
            "1",
            "--limit-memory",
            "1GiB",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "10s",
            "--restart-max-attempts",
            "4",
            "--restart-window",
            "1m",
            "--max-replicas-per-node",
            "2",
            "--workdir",
            "/srv",
            "--process",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert_eq!(spec.mode, t::ServiceMode::Replicated { replicas: 3 });
        assert_eq!(render::labels(&spec.annotations.labels), "tier=front");
        let task = &spec.task;
        assert_eq!(
            task.runtime,
            t::Runtime::Process(t::ProcessSpec {
                command: "sh".into(),
                args: vec!["-c".into(), "echo hi".into()],
                env: vec!["A=1".into()],
                dir: Some("/srv".into()),
            })
        );
        assert_eq!(
            task.resources.reservations,
            t::Resources {
                nano_cpus: 500_000_000,
                memory_bytes: 512 << 20
            }
        );
        assert_eq!(
            task.resources.limits,
            t::Resources {
                nano_cpus: 1_000_000_000,
                memory_bytes: 1 << 30
            }
        );
        assert_eq!(
            task.restart,
            t::RestartPolicy {
                condition: t::RestartCondition::OnFailure,
                delay: Duration::from_secs(10),
                max_attempts: 4,
                window: Duration::from_secs(60),
            }
        );
        assert_eq!(
            task.placement.constraints,
            vec!["node.labels.zone==east".to_string()]
        );
        assert_eq!(task.placement.max_replicas, 2);
    }

    #[test]
    fn create_wasi_resolves_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.wasm");
        std::fs::write(&file, b"\0asm").expect("write");
        let spec = must_create(&[
            "service",
            "create",
            "--name",
            "app",
            "--mode",
            "global",
            "--wasi",
            file.to_str().expect("utf-8"),
            "--",
            "--port",
            "80",
        ]);
        assert_eq!(spec.mode, t::ServiceMode::Global);
        assert_eq!(
            spec.task.runtime,
            t::Runtime::Wasi(t::WasiSpec {
                module: file.to_str().expect("utf-8").to_string(),
                args: vec!["--port".into(), "80".into()],
                env: vec![],
            })
        );
        let missing = dir.path().join("nope.wasm");
        let ServiceCommand::Create(args) = parse(&[
            "service",
            "create",
            "--name",
            "app",
            "--wasi",
            missing.to_str().expect("utf-8"),
        ]) else {
            panic!("not create")
        };
        let err = create_spec(&args).expect_err("missing file").to_string();
        assert!(
            err.contains("nope.wasm: No such file or directory; give the path of a WASI component"),
            "{err}"
        );
    }

    #[test]
    fn create_container_sets_every_container_flag() {
        let spec = must_create(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "2",
            "--image",
            "swarm-test/busybox",
            "--entrypoint",
            "/bin/sh -c",
            "--env",
            "A=1",
            "--mount",
            "type=bind,source=/srv,target=/data,readonly",
            "--mount",
            "type=tmpfs,target=/scratch",
            "--container-label",
            "tier=front",
            "--user",
            "1000:1000",
            "--hostname",
            "box",
            "--workdir",
            "/data",
            "--",
            "sleep 600",
        ]);
        assert_eq!(spec.validate(), Ok(()));
        assert_eq!(
            spec.task.runtime,
            t::Runtime::Container(t::ContainerSpec {
                image: "swarm-test/busybox".into(),
                entrypoint: vec!["/bin/sh".into(), "-c".into()],
                args: vec!["sleep 600".into()],
                env: vec!["A=1".into()],
                labels: [("tier".to_string(), "front".to_string())].into(),
                mounts: vec![
                    t::Mount {
                        kind: t::MountKind::Bind,
                        source: "/srv".into(),
                        target: "/data".into(),
                        read_only: true,
                    },
                    t::Mount {
                        kind: t::MountKind::Tmpfs,
                        source: String::new(),
                        target: "/scratch".into(),
                        read_only: false,
                    },
                ],
                workdir: Some("/data".into()),
                user: Some("1000:1000".into()),
                hostname: Some("box".into()),
            })
        );
        let text = fields(
            &t::Service {
                id: "s1".into(),
                meta: Default::default(),
                spec,
                spec_version: 1,
            },
            None,
            t::Timestamp::now(),
        );
        for want in [
            "swarm-test/busybox",
            "/bin/sh -c",
            "type=bind,source=/srv,target=/data,readonly type=tmpfs,target=/scratch",
            "tier=front",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn container_flags_need_an_image_and_updates_change_containers() {
        let ServiceCommand::Create(args) = parse(&[
            "service",
            "create",
            "--name",
            "web",
            "--mount",
            "type=tmpfs,target=/x",
            "--process",
            "--",
            "sleep",
            "1",
        ]) else {
            panic!("not create")
        };
        let err = create_spec(&args)
            .expect_err("mount on a process")
            .to_string();
        assert!(err.contains("--mount applies to containers only"), "{err}");

        let original = t::Service {
            id: "s1".into(),
            meta: Default::default(),
            spec: must_create(&[
                "service",
                "create",
                "--name",
                "web",
                "--image",
                "a:1",
                "--mount",
                "type=tmpfs,target=/x",
                "--mount",
                "type=tmpfs,target=/y",
                "--",
                "sleep",
                "600",
            ]),
            spec_version: 1,
        };
        let spec = must_update(
            &original,
            &[
                "service",
                "update",
                "web",
                "--image",
                "a:2",
                "--mount-rm",
                "/x",
                "--mount-add",
                "type=volume,source=data,target=/y,readonly",
                "--env-add",
                "B=2",
            ],
        )
        .expect("update");
        let t::Runtime::Container(c) = &spec.task.runtime else {
            panic!("not a container")
        };
        assert_eq!(c.image, "a:2");
        assert_eq!(c.args, vec!["sleep".to_string(), "600".to_string()]);
        assert_eq!(c.env, vec!["B=2".to_string()]);
        assert_eq!(
            c.mounts,
            vec![t::Mount {
                kind: t::MountKind::Volume,
                source: "data".into(),
                target: "/y".into(),
                read_only: true,
            }]
        );
        let err = must_update(
            &service(),
            &["service", "update", "web", "--mount-rm", "/x"],
        )
        .expect_err("process");
        assert!(err.to_string().contains("container services only"), "{err}");
    }

    #[test]
    fn create_refuses_inconsistent_flags() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[
                    "--mode",
                    "global",
                    "--replicas",
                    "2",
                    "--process",
                    "--",
                    "x",
                ],
                "--replicas cannot be used with --mode global",
            ),
            (&["--process"], "--process needs a command"),
        ];
        for (flags, want) in cases {
            let mut line = vec!["service", "create", "--name", "web"];
            line.extend_from_slice(flags);
            let ServiceCommand::Create(args) = parse(&line) else {
                panic!("not create")
            };
            let err = create_spec(&args).expect_err(want).to_string();
            assert!(err.contains(want), "{err}");
        }
        let both = Cli::try_parse_from([
            "swarmctl",
            "service",
            "create",
            "--name",
            "w",
            "--process",
            "--wasi",
            "x",
        ]);
        assert!(both.is_err());
        let neither =
            Cli::try_parse_from(["swarmctl", "service", "create", "--name", "w", "--", "x"]);
        assert!(neither.is_err());
    }

    fn service() -> t::Service {
        t::Service {
            id: "s1".into(),
            meta: t::Meta {
                version: 9,
                ..Default::default()
            },
            spec: must_create(&[
                "service",
                "create",
                "--name",
                "web",
                "--env",
                "A=1",
                "--env",
                "B=2",
                "--label",
                "x=1",
                "--constraint",
                "node.role==worker",
                "--process",
                "--",
                "sleep",
                "1000",
            ]),
            spec_version: 1,
        }
    }

    #[test]
    fn update_changes_only_what_is_given() {
        let original = service();
        let unchanged = must_update(&original, &["service", "update", "web"]).expect("update");
        assert_eq!(unchanged, original.spec);
        let spec = must_update(
            &original,
            &[
                "service",
                "update",
                "web",
                "--replicas",
                "5",
                "--env-add",
                "B=3",
                "--env-add",
                "C=4",
                "--env-rm",
                "A",
                "--label-rm",
                "x",
                "--label-add",
                "y=2",
                "--constraint-rm",
                "node.role==worker",
                "--constraint-add",
                "node.labels.ssd==true",
                "--limit-memory",
                "1G",
                "--restart-delay",
                "1s",
                "--force",
            ],
        )
        .expect("update");
        assert_eq!(spec.mode, t::ServiceMode::Replicated { replicas: 5 });
        let t::Runtime::Process(p) = &spec.task.runtime else {
            panic!("not a process")
        };
        assert_eq!(p.env, vec!["B=3".to_string(), "C=4".to_string()]);
        assert_eq!(
            (p.command.as_str(), p.args.as_slice()),
            ("sleep", ["1000".to_string()].as_slice())
        );
        assert_eq!(render::labels(&spec.annotations.labels), "y=2");
        assert_eq!(
            spec.task.placement.constraints,
            vec!["node.labels.ssd==true".to_string()]
        );
        assert_eq!(spec.task.resources.limits.memory_bytes, 1 << 30);
        assert_eq!(spec.task.restart.delay, Duration::from_secs(1));
        assert_eq!(spec.task.restart.condition, t::RestartCondition::Any);
        assert_eq!(spec.task.force_update, 1);
    }

    #[test]
    fn update_replaces_the_command_after_double_dash() {
        let spec = must_update(
            &service(),
            &["service", "update", "web", "--", "sleep", "5"],
        )
        .expect("update");
        let t::Runtime::Process(p) = &spec.task.runtime else {
            panic!("not a process")
        };
        assert_eq!(
            (p.command.as_str(), p.args.as_slice()),
            ("sleep", ["5".to_string()].as_slice())
        );
        assert_eq!(p.env, vec!["A=1".to_string(), "B=2".to_string()]);
    }

    #[test]
    fn update_refuses_replicas_on_a_global_service() {
        let mut global = service();
        global.spec.mode = t::ServiceMode::Global;
        let err = must_update(&global, &["service", "update", "web", "--replicas", "2"])
            .expect_err("global");
        assert!(err.to_string().contains("is global"), "{err}");
    }

    #[test]
    fn scale_accepts_both_forms() {
        let targets =
            |line: &[&str]| scale_targets(&line.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            targets(&["web", "3"]).expect("pair"),
            vec![("web".to_string(), 3)]
        );
        assert_eq!(
            targets(&["web=3", "api=0"]).expect("list"),
            vec![("web".to_string(), 3), ("api".to_string(), 0)]
        );
        assert!(targets(&["web=3"]).is_ok());
        let err = targets(&["web", "three"])
            .expect_err("not a number")
            .to_string();
        assert!(err.contains("\"three\" is not a number"), "{err}");
        assert!(targets(&["web"]).is_err());
        assert!(targets(&["web", "1", "2"]).is_err());
    }
}
