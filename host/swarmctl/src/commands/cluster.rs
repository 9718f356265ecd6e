//! `swarmctl cluster ...`: list, inspect and update the cluster's settings.

use std::io::Write;

use swarm_proto::pb;
use swarm_types as t;

use super::Context;
use crate::cli::ClusterCommand;
use crate::render;
use crate::resolve::resolve;

pub async fn run(
    context: &Context,
    command: ClusterCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut manager = context.connect().await?;
    if let ClusterCommand::UnlockKey { rotate } = command {
        let key = manager.get_unlock_key(rotate).await?;
        if key.is_empty() {
            writeln!(
                out,
                "autolock is off: no unlock key (`cluster update --autolock true` turns it on)"
            )?;
        } else {
            writeln!(out, "{key}")?;
        }
        return Ok(());
    }
    let mut clusters = manager.list_clusters().await?;
    clusters
        .sort_by(|a, b| (&a.spec.annotations.name, &a.id).cmp(&(&b.spec.annotations.name, &b.id)));
    let now = t::Timestamp::now();
    match command {
        ClusterCommand::Ls => context.print_list(out, &clusters, |c| table(c, now))?,
        ClusterCommand::Inspect { cluster } => {
            let cluster = resolve("cluster", &cluster, &clusters, |_| false)?;
            context.print_one(out, cluster, |c| fields(c, now))?;
        }
        ClusterCommand::Update {
            cluster,
            task_history_limit,
            heartbeat_period,
            grace_multiplier,
            rotate_join_token,
            scheduler,
            autolock,
        } => {
            let cluster = resolve("cluster", &cluster, &clusters, |_| false)?;
            let mut spec = cluster.spec.clone();
            if let Some(limit) = task_history_limit {
                spec.orchestration.task_history_retention_limit = limit;
            }
            if let Some(period) = heartbeat_period {
                spec.dispatcher.heartbeat_period = period;
            }
            if let Some(multiplier) = grace_multiplier {
                spec.dispatcher.grace_multiplier = multiplier;
            }
            let rotation = (!rotate_join_token.is_empty()).then(|| pb::KeyRotation {
                worker_join_token: rotate_join_token.iter().any(|r| r == "worker"),
                manager_join_token: rotate_join_token.iter().any(|r| r == "manager"),
                manager_unlock_key: false,
            });
            if let Some(scheduler) = scheduler {
                spec.scheduler = scheduler;
            }
            if let Some(autolock) = autolock {
                spec.autolock = autolock;
            }
            let updated = manager.update_cluster(cluster, spec, rotation).await?;
            writeln!(out, "{}", updated.id)?;
        }
        // Answered above.
        ClusterCommand::UnlockKey { .. } => {}
    }
    Ok(())
}

fn table(clusters: &[t::Cluster], now: t::Timestamp) -> String {
    let rows = clusters
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.spec.annotations.name.clone(),
                render::ago(c.meta.created_at, now),
            ]
        })
        .collect();
    render::table(&["ID", "NAME", "CREATED"], rows)
}

fn fields(c: &t::Cluster, now: t::Timestamp) -> String {
    let s = &c.spec;
    render::fields(&[
        ("ID", c.id.clone()),
        ("Name", s.annotations.name.clone()),
        ("Labels", render::labels(&s.annotations.labels)),
        (
            "Scheduler",
            if s.scheduler.is_empty() {
                "default (embedded)".to_string()
            } else {
                s.scheduler.clone()
            },
        ),
        (
            "Task history limit",
            s.orchestration.task_history_retention_limit.to_string(),
        ),
        (
            "Autolock",
            if s.autolock { "on" } else { "off" }.to_string(),
        ),
        (
            "Heartbeat period",
            humantime::format_duration(s.dispatcher.heartbeat_period).to_string(),
        ),
        (
            "Grace multiplier",
            s.dispatcher.grace_multiplier.to_string(),
        ),
        ("Snapshot interval", s.raft.snapshot_interval.to_string()),
        (
            "Log entries kept",
            s.raft.log_entries_for_slow_followers.to_string(),
        ),
        ("Heartbeat tick", s.raft.heartbeat_tick.to_string()),
        ("Election tick", s.raft.election_tick.to_string()),
        ("Root CA digest", root_ca_digest(c)),
        ("Join token (worker)", c.root_ca.worker_token.clone()),
        ("Join token (manager)", c.root_ca.manager_token.clone()),
        ("Created", render::time(c.meta.created_at, now)),
        ("Updated", render::time(c.meta.updated_at, now)),
    ])
}

/// `sha256:<hex>` of the root CA the join tokens pin.
fn root_ca_digest(c: &t::Cluster) -> String {
    c.root_ca
        .join_tokens()
        .map(|tokens| format!("sha256:{}", t::digest_hex(&tokens.worker.ca_digest())))
        .unwrap_or_default()
}
