//! `swarmctl node ...`: list, inspect and update nodes (availability, labels, role), remove them.

use std::io::Write;

use swarm_types as t;

use super::{Context, sort_nodes};
use crate::cli::{AvailabilityArg, NodeCommand, NodeUpdateArgs};
use crate::client::Manager;
use crate::render;
use crate::resolve::resolve;

pub async fn run(
    context: &Context,
    command: NodeCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut manager = context.connect().await?;
    match command {
        NodeCommand::Ls => {
            let mut nodes = manager.list_nodes().await?;
            sort_nodes(&mut nodes);
            context.print_list(out, &nodes, table)?;
        }
        NodeCommand::Inspect { node } => {
            let nodes = manager.list_nodes().await?;
            let node = resolve("node", &node, &nodes, |_| false)?;
            let now = t::Timestamp::now();
            context.print_one(out, node, |n| fields(n, now))?;
        }
        NodeCommand::Update(args) => update(&mut manager, args, out).await?,
        NodeCommand::Activate { node } => {
            set_availability(&mut manager, node, AvailabilityArg::Active, out).await?
        }
        NodeCommand::Pause { node } => {
            set_availability(&mut manager, node, AvailabilityArg::Pause, out).await?
        }
        NodeCommand::Drain { node } => {
            set_availability(&mut manager, node, AvailabilityArg::Drain, out).await?
        }
        NodeCommand::Promote { nodes } => {
            set_role(&mut manager, &nodes, t::NodeRole::Manager, out).await?
        }
        NodeCommand::Demote { nodes } => {
            set_role(&mut manager, &nodes, t::NodeRole::Worker, out).await?
        }
        NodeCommand::Rm { nodes, force } => {
            let known = manager.list_nodes().await?;
            for query in &nodes {
                let node = resolve("node", query, &known, |_| false)?;
                manager.remove_node(&node.id, force).await?;
                writeln!(out, "{}", node.id)?;
            }
        }
        NodeCommand::Unlock { key } => {
            let key = match key {
                Some(key) => key,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line
                }
            };
            manager.unlock_node(key.trim().to_owned()).await?;
            writeln!(out, "unlocked")?;
        }
    }
    Ok(())
}

/// Sets the desired role of `queries`' nodes, one update each.
async fn set_role(
    manager: &mut Manager,
    queries: &[String],
    role: t::NodeRole,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for query in queries {
        let nodes = manager.list_nodes().await?;
        let node = resolve("node", query, &nodes, |_| false)?;
        let mut spec = node.spec.clone();
        spec.desired_role = role;
        let updated = manager.update_node(node, spec).await?;
        writeln!(out, "{}", updated.id)?;
    }
    Ok(())
}

async fn set_availability(
    manager: &mut Manager,
    node: String,
    availability: AvailabilityArg,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let args = NodeUpdateArgs {
        node,
        availability: Some(availability),
        label_add: Vec::new(),
        label_rm: Vec::new(),
        executor: None,
    };
    update(manager, args, out).await
}

async fn update(
    manager: &mut Manager,
    args: NodeUpdateArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let nodes = manager.list_nodes().await?;
    let node = resolve("node", &args.node, &nodes, |_| false)?;
    let spec = apply(node.spec.clone(), &args);
    let updated = manager.update_node(node, spec).await?;
    writeln!(out, "{}", updated.id)?;
    Ok(())
}

/// The spec with the requested changes: labels removed, then added; availability set.
fn apply(mut spec: t::NodeSpec, args: &NodeUpdateArgs) -> t::NodeSpec {
    if let Some(availability) = args.availability {
        spec.availability = match availability {
            AvailabilityArg::Active => t::Availability::Active,
            AvailabilityArg::Pause => t::Availability::Pause,
            AvailabilityArg::Drain => t::Availability::Drain,
        };
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
    spec
}

fn manager_status(node: &t::Node) -> String {
    match &node.manager_status {
        None => String::new(),
        Some(m) if m.leader => "leader".to_string(),
        Some(m) => lower(&m.reachability),
    }
}

/// An enum's serde name (`ready`, `drain`), the same word JSON output uses.
fn lower<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn table(nodes: &[t::Node]) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.id.clone(),
                n.display_name().to_string(),
                lower(&n.role),
                lower(&n.status.state),
                lower(&n.spec.availability),
                manager_status(n),
            ]
        })
        .collect();
    render::table(
        &[
            "ID",
            "HOSTNAME",
            "ROLE",
            "STATUS",
            "AVAILABILITY",
            "MANAGER STATUS",
        ],
        rows,
    )
}

fn fields(n: &t::Node, now: t::Timestamp) -> String {
    let description = n.description.clone().unwrap_or_default();
    let platform = [
        description.platform.os.as_str(),
        description.platform.arch.as_str(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("/");
    let status = match n.status.message.as_str() {
        "" => lower(&n.status.state),
        message => format!("{} ({message})", lower(&n.status.state)),
    };
    let desired_role = if n.spec.desired_role == n.role {
        String::new()
    } else {
        lower(&n.spec.desired_role)
    };
    let manager = n.manager_status.as_ref().map_or(String::new(), |m| {
        format!("raft id {}, {}, {}", m.raft_id, m.addr, manager_status(n))
    });
    render::fields(&[
        ("ID", n.id.clone()),
        ("Hostname", n.display_name().to_string()),
        (
            "Name",
            if n.spec.annotations.name == n.display_name() {
                String::new()
            } else {
                n.spec.annotations.name.clone()
            },
        ),
        ("Labels", render::labels(&n.spec.annotations.labels)),
        ("Role", lower(&n.role)),
        ("Desired role", desired_role),
        ("Membership", lower(&n.spec.membership)),
        ("Availability", lower(&n.spec.availability)),
        ("Status", status),
        ("Address", n.status.addr.clone()),
        ("Last seen", render::time(n.status.last_seen, now)),
        ("Manager", manager),
        ("Platform", platform),
        ("Resources", render::resources(&description.resources)),
        ("Executor", description.executor.clone()),
        ("Executor plugin", n.spec.executor.clone()),
        ("Runtimes", description.runtimes.join(", ")),
        ("Engine version", description.engine.version.clone()),
        ("Engine labels", render::labels(&description.engine.labels)),
        ("Plugins", description.engine.plugins.join(", ")),
        ("Created", render::time(n.meta.created_at, now)),
        ("Updated", render::time(n.meta.updated_at, now)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_removes_then_adds_labels_and_sets_availability() {
        let mut spec = t::NodeSpec::default();
        spec.annotations.labels.insert("zone".into(), "east".into());
        spec.annotations.labels.insert("old".into(), "x".into());
        let args = NodeUpdateArgs {
            node: "n".into(),
            availability: Some(AvailabilityArg::Drain),
            label_add: vec![
                ("zone".into(), "west".into()),
                ("ssd".into(), String::new()),
            ],
            label_rm: vec!["old".into(), "zone".into()],
            executor: Some("runner".into()),
        };
        let spec = apply(spec, &args);
        assert_eq!(spec.availability, t::Availability::Drain);
        assert_eq!(spec.executor, "runner");
        assert_eq!(render::labels(&spec.annotations.labels), "ssd=, zone=west");
    }
}
