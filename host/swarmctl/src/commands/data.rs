//! `swarmctl secret ...` and `swarmctl config ...`: create, list, inspect and remove the data
//! services give their tasks as files. One module for both: they differ in size limit and in
//! whether `inspect` shows the data (a config's yes, a secret's never).

use std::io::{Read as _, Write};
use std::path::Path;

use swarm_types as t;

use super::Context;
use crate::cli::DataCommand;
use crate::client::{DataItem, Manager};
use crate::error::CliError;
use crate::render;
use crate::resolve::{Named, resolve};

impl Named for DataItem {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}

pub async fn run(
    context: &Context,
    kind: t::DataKind,
    command: DataCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        DataCommand::Create { name, file, labels } => {
            // Read and check before connecting: a wrong path or size is the common mistake.
            let spec = t::DataSpec {
                annotations: t::Annotations {
                    name,
                    labels: labels.into_iter().collect(),
                },
                data: t::Blob::from(read_data(kind, &file)?),
            };
            spec.validate(kind).map_err(|e| CliError::user(flag(e)))?;
            let mut manager = context.connect().await?;
            let created = manager.create_data(kind, spec).await?;
            // Like docker: the id alone, for scripts; JSON for those who ask.
            context.print_one(out, &created, |c| format!("{}\n", c.id))?;
        }
        DataCommand::Ls => {
            let mut manager = context.connect().await?;
            let mut items = manager.list_data(kind).await?;
            items.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            let now = t::Timestamp::now();
            context.print_list(out, &items, |items| table(items, now))?;
        }
        DataCommand::Inspect { item } => {
            let mut manager = context.connect().await?;
            let items = manager.list_data(kind).await?;
            let id = resolve(kind.as_str(), &item, &items, |_| false)?.id.clone();
            let found = manager.get_data(kind, &id).await?;
            let used_by = users(&mut manager, kind, &found.id).await?;
            let now = t::Timestamp::now();
            context.print_one(out, &found, |f| fields(kind, f, &used_by, now))?;
        }
        DataCommand::Rm { items: queries } => {
            let mut manager = context.connect().await?;
            let items = manager.list_data(kind).await?;
            super::remove_each(
                kind.as_str(),
                &queries,
                &items,
                async |id: &str| manager.remove_data(kind, id).await,
                out,
                err,
            )
            .await?;
        }
    }
    Ok(())
}

/// The data from a file or standard input (`-`), refusing more than the kind's limit before
/// reading it all.
fn read_data(kind: t::DataKind, path: &Path) -> Result<Vec<u8>, CliError> {
    let limit = kind.max_bytes() as u64;
    let (shown, reader): (String, Box<dyn std::io::Read>) = if path == Path::new("-") {
        ("standard input".into(), Box::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path).map_err(|e| {
            CliError::user(format!(
                "{}: {}",
                path.display(),
                crate::error::io_detail(&e)
            ))
        })?;
        (path.display().to_string(), Box::new(file))
    };
    let mut data = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| CliError::user(format!("{shown}: {}", crate::error::io_detail(&e))))?;
    if data.len() as u64 > limit {
        return Err(CliError::user(format!(
            "{shown}: more than the {limit} bytes ({} KiB) a {kind} may have",
            limit / 1024
        )));
    }
    if data.is_empty() {
        return Err(CliError::user(format!(
            "{shown}: is empty; a {kind} needs data"
        )));
    }
    Ok(data)
}

/// Validation errors in the words of the command line.
fn flag(e: t::ValidationError) -> String {
    if e.field == "spec.annotations.name" {
        format!("NAME: {}", e.message)
    } else {
        e.to_string()
    }
}

/// The services whose spec references the secret or config `id`.
async fn users(
    manager: &mut Manager,
    kind: t::DataKind,
    id: &str,
) -> Result<Vec<String>, CliError> {
    let mut services = manager.list_services().await?;
    super::sort_services(&mut services);
    Ok(services
        .iter()
        .filter(|s| s.spec.task.refs(kind).iter().any(|r| r.id == id))
        .map(|s| s.name().to_string())
        .collect())
}

fn table(items: &[DataItem], now: t::Timestamp) -> String {
    let rows = items
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.name.clone(),
                i.size_bytes.to_string(),
                render::time(i.created_at, now),
                render::time(i.updated_at, now),
            ]
        })
        .collect();
    render::table(&["ID", "NAME", "SIZE", "CREATED", "UPDATED"], rows)
}

fn fields(kind: t::DataKind, i: &DataItem, used_by: &[String], now: t::Timestamp) -> String {
    let mut rows = vec![
        ("ID", i.id.clone()),
        ("Name", i.name.clone()),
        ("Labels", render::labels(&i.labels)),
        ("Size", format!("{} bytes", i.size_bytes)),
        ("Used by", used_by.join(", ")),
        ("Created", render::time(i.created_at, now)),
        ("Updated", render::time(i.updated_at, now)),
    ];
    if kind == t::DataKind::Config {
        let shown = match &i.data {
            None => String::new(),
            Some(data) => match std::str::from_utf8(data.as_bytes()) {
                Ok(text) => text.trim_end().to_string(),
                Err(_) => format!(
                    "<{} bytes, not UTF-8 text; --format json shows base64>",
                    data.len()
                ),
            },
        };
        rows.push(("Data", shown));
    }
    render::fields(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_are_checked_before_sending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pw");
        std::fs::write(&file, b"hunter2").expect("write");
        assert_eq!(
            read_data(t::DataKind::Secret, &file).expect("read"),
            b"hunter2"
        );

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; t::MAX_SECRET_BYTES + 1]).expect("write");
        let e = read_data(t::DataKind::Secret, &big).expect_err("too big for a secret");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: more than the 512000 bytes (500 KiB) a secret may have",
                big.display()
            )
        );
        assert_eq!(e.exit_code(), 1);
        // The same file is a fine config.
        assert_eq!(
            read_data(t::DataKind::Config, &big).expect("config").len(),
            t::MAX_SECRET_BYTES + 1
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").expect("write");
        assert!(read_data(t::DataKind::Config, &empty).is_err());
        let missing = dir.path().join("missing");
        assert_eq!(
            read_data(t::DataKind::Config, &missing)
                .expect_err("missing")
                .to_string(),
            format!("{}: No such file or directory", missing.display())
        );
    }
}
