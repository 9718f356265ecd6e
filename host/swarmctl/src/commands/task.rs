//! `swarmctl task ...`: list, inspect, fetch logs of and remove tasks.

use std::io::Write;

use swarm_proto::pb;
use swarm_types as t;

use super::{Context, Names};
use crate::cli::{TaskCommand, TaskLsArgs};
use crate::client::Manager;
use crate::error::CliError;
use crate::render;
use crate::resolve::resolve;

pub async fn run(
    context: &Context,
    command: TaskCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut manager = context.connect().await?;
    match command {
        TaskCommand::Ls(args) => list(context, &mut manager, args, out).await?,
        TaskCommand::Inspect { task } => {
            let task = find(&mut manager, &task).await?;
            let services = manager.list_services().await?;
            let nodes = manager.list_nodes().await?;
            let names = Names::new(&services, &nodes);
            context.print_one(out, &task, |task| fields(&names, task, t::Timestamp::now()))?;
        }
        TaskCommand::Logs { task, tail_bytes } => {
            let task = find(&mut manager, &task).await?;
            let (stdout, stderr) = manager.task_logs(&task.id, tail_bytes.unwrap_or(0)).await?;
            out.write_all(&stdout)?;
            out.flush()?;
            err.write_all(&stderr)?;
            err.flush()?;
        }
        TaskCommand::Rm { task } => {
            let task = find(&mut manager, &task).await?;
            manager.remove_task(&task.id).await?;
            writeln!(out, "{}", task.id)?;
        }
    }
    Ok(())
}

/// Whether `task ls` shows a task without `--all`: it is meant to run (desired state up to running).
fn current(task: &t::Task) -> bool {
    task.desired_state <= t::TaskState::Running
}

async fn list(
    context: &Context,
    manager: &mut Manager,
    args: TaskLsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let services = manager.list_services().await?;
    let nodes = manager.list_nodes().await?;
    let mut filters = pb::list_tasks_request::Filters::default();
    if let Some(query) = &args.service {
        filters
            .service_ids
            .push(resolve("service", query, &services, |_| false)?.id.clone());
    }
    if let Some(query) = &args.node {
        filters
            .node_ids
            .push(resolve("node", query, &nodes, |_| false)?.id.clone());
    }
    if !args.all {
        filters.desired_states = t::TaskState::ALL
            .into_iter()
            .filter(|s| *s <= t::TaskState::Running)
            .map(|s| pb::TaskState::from(s) as i32)
            .collect();
    }
    let mut tasks = manager.list_tasks(filters.clone()).await?;
    // The manager filters; filter again so the view does not depend on it.
    tasks.retain(|task| {
        (args.all || current(task))
            && (filters.service_ids.is_empty() || filters.service_ids.contains(&task.service_id))
            && (filters.node_ids.is_empty() || filters.node_ids.contains(&task.node_id))
    });
    let names = Names::new(&services, &nodes);
    names.sort_tasks(&mut tasks);
    let now = t::Timestamp::now();
    context.print_list(out, &tasks, |tasks| names.task_table(tasks, now))
}

/// The task a user means: by id, unique id prefix, or name (`web.1`; the current task of that
/// name if older ones share it).
async fn find(manager: &mut Manager, query: &str) -> Result<t::Task, CliError> {
    let by_prefix = pb::list_tasks_request::Filters {
        id_prefixes: vec![query.to_string()],
        ..Default::default()
    };
    let by_name = pb::list_tasks_request::Filters {
        names: vec![query.to_string()],
        ..Default::default()
    };
    let mut tasks = manager.list_tasks(by_prefix).await?;
    tasks.extend(manager.list_tasks(by_name).await?);
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    tasks.dedup_by(|a, b| a.id == b.id);
    resolve("task", query, &tasks, current).cloned()
}

fn fields(names: &Names<'_>, task: &t::Task, now: t::Timestamp) -> String {
    let with_id = |name: &str, id: &str| {
        if name == id || id.is_empty() {
            id.to_string()
        } else {
            format!("{name} ({id})")
        }
    };
    let state = match render::ago(task.status.timestamp, now) {
        ago if ago.is_empty() => task.status.state.to_string(),
        ago => format!("{} {ago}", task.status.state),
    };
    let exit = task
        .status
        .exit
        .as_ref()
        .map_or(String::new(), |e| match e.signal {
            Some(signal) => format!("code {}, signal {signal}", e.code),
            None => format!("code {}", e.code),
        });
    render::fields(&[
        ("ID", task.id.clone()),
        ("Name", names.task(task)),
        (
            "Service",
            with_id(names.service(&task.service_id), &task.service_id),
        ),
        (
            "Slot",
            if task.slot > 0 {
                task.slot.to_string()
            } else {
                String::new()
            },
        ),
        ("Node", with_id(names.node(&task.node_id), &task.node_id)),
        ("Desired state", task.desired_state.to_string()),
        ("State", state),
        ("Message", task.status.message.clone()),
        ("Error", task.status.err.clone()),
        ("Exit", exit),
        ("Runtime", render::runtime(&task.spec.runtime)),
        ("Spec version", task.spec_version.to_string()),
        ("Created", render::time(task.meta.created_at, now)),
        ("Updated", render::time(task.meta.updated_at, now)),
    ])
}
