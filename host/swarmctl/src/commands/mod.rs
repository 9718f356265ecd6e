//! The commands, one module per object kind (and plugins), and what they share: the connection settings,
//! output format, and the task table used by `task ls` and `service inspect`.

pub mod cluster;
pub mod data;
pub mod node;
pub mod plugin;
pub mod service;
pub mod task;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use swarm_types as t;

use crate::cli::Format;
use crate::client::Manager;
use crate::error::CliError;
use crate::render;

/// Settings every command needs.
pub struct Context {
    pub socket: PathBuf,
    pub timeout: Duration,
    pub format: Format,
}

impl Context {
    pub async fn connect(&self) -> Result<Manager, CliError> {
        Manager::connect(&self.socket, self.timeout).await
    }

    /// Print a list: the table `table` renders, or a JSON array of the objects.
    pub fn print_list<T: Serialize>(
        &self,
        out: &mut dyn Write,
        items: &[T],
        table: impl FnOnce(&[T]) -> String,
    ) -> anyhow::Result<()> {
        let text = match self.format {
            Format::Table => table(items),
            Format::Json => render::json(items)?,
        };
        out.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Print one object: the fields `fields` renders, or the object as JSON.
    pub fn print_one<T: Serialize>(
        &self,
        out: &mut dyn Write,
        item: &T,
        fields: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        let text = match self.format {
            Format::Table => fields(item),
            Format::Json => render::json(item)?,
        };
        out.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// Names of services and nodes by id, to show tasks with names rather than ids.
pub struct Names<'a> {
    services: HashMap<&'a str, &'a t::Service>,
    nodes: HashMap<&'a str, &'a t::Node>,
}

impl<'a> Names<'a> {
    pub fn new(services: &'a [t::Service], nodes: &'a [t::Node]) -> Self {
        Names {
            services: services.iter().map(|s| (s.id.as_str(), s)).collect(),
            nodes: nodes.iter().map(|n| (n.id.as_str(), n)).collect(),
        }
    }

    pub fn service<'b>(&'b self, id: &'b str) -> &'b str {
        self.services.get(id).map_or(id, |s| s.name())
    }

    pub fn node<'b>(&'b self, id: &'b str) -> &'b str {
        self.nodes.get(id).map_or(id, |n| n.display_name())
    }

    /// The task's name (`web.1`), made up from its service and slot (or node) if it has none.
    pub fn task(&self, task: &t::Task) -> String {
        if !task.annotations.name.is_empty() {
            return task.annotations.name.clone();
        }
        let service = self.service(&task.service_id);
        if task.slot > 0 {
            format!("{service}.{}", task.slot)
        } else {
            format!("{service}.{}", task.node_id)
        }
    }

    /// Sort tasks by service name, slot, node, creation time, then id (for a stable order).
    pub fn sort_tasks(&self, tasks: &mut [t::Task]) {
        tasks.sort_by(|a, b| {
            (
                self.service(&a.service_id),
                a.slot,
                self.node(&a.node_id),
                a.meta.created_at,
                &a.id,
            )
                .cmp(&(
                    self.service(&b.service_id),
                    b.slot,
                    self.node(&b.node_id),
                    b.meta.created_at,
                    &b.id,
                ))
        });
    }

    /// The task table: ID, NAME, SERVICE, SLOT, NODE, DESIRED STATE, CURRENT STATE, MESSAGE.
    pub fn task_table(&self, tasks: &[t::Task], now: t::Timestamp) -> String {
        let rows = tasks
            .iter()
            .map(|task| {
                let current = match render::ago(task.status.timestamp, now) {
                    ago if ago.is_empty() => task.status.state.to_string(),
                    ago => format!("{} {ago}", task.status.state),
                };
                let message = if task.status.err.is_empty() {
                    &task.status.message
                } else {
                    &task.status.err
                };
                vec![
                    task.id.clone(),
                    self.task(task),
                    self.service(&task.service_id).to_string(),
                    if task.slot > 0 {
                        task.slot.to_string()
                    } else {
                        String::new()
                    },
                    if task.node_id.is_empty() {
                        String::new()
                    } else {
                        self.node(&task.node_id).to_string()
                    },
                    task.desired_state.to_string(),
                    current,
                    message.clone(),
                ]
            })
            .collect();
        render::table(
            &[
                "ID",
                "NAME",
                "SERVICE",
                "SLOT",
                "NODE",
                "DESIRED STATE",
                "CURRENT STATE",
                "MESSAGE",
            ],
            rows,
        )
    }
}

/// Nodes sorted by hostname, then id.
pub fn sort_nodes(nodes: &mut [t::Node]) {
    nodes.sort_by(|a, b| (a.display_name(), &a.id).cmp(&(b.display_name(), &b.id)));
}

/// Services sorted by name, then id.
pub fn sort_services(services: &mut [t::Service]) {
    services.sort_by(|a, b| (a.name(), &a.id).cmp(&(b.name(), &b.id)));
}

/// Removes what each query names, one at a time, as every `rm` command does: prints the query
/// once it is removed and the error when it is not, and fails with the worst error at the end.
pub async fn remove_each<T: crate::resolve::Named>(
    kind: &str,
    queries: &[String],
    items: &[T],
    mut remove: impl AsyncFnMut(&str) -> Result<(), CliError>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut failures: Vec<CliError> = Vec::new();
    for query in queries {
        let removed = match crate::resolve::resolve(kind, query, items, |_| false) {
            Ok(item) => remove(item.id()).await,
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => writeln!(out, "{query}")?,
            Err(e) => {
                writeln!(err, "Error: {e}")?;
                failures.push(e);
            }
        }
    }
    if let Some(worst) = failures.into_iter().max_by_key(CliError::exit_code) {
        let message = format!("could not remove every {kind}: {worst}");
        return Err(match worst {
            CliError::User(_) => CliError::User(message),
            CliError::System(_) => CliError::System(message),
        }
        .into());
    }
    Ok(())
}
