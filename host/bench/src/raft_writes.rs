//! The raft write workload: one raft node (openraft over redb, fsync per log entry) in a temporary
//! directory, applying store batches to a `MemoryStore`, and N concurrent clients each committing
//! one service create per batch through the manager's `RaftCommitter` for a fixed time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use swarm_manager::{Committer, RaftCommitter, StoreApp};
use swarm_raft::{RaftConfig, RaftNode};
use swarm_store::{Action, Batch, MemoryStore, Object};
use swarm_types::{
    Annotations, Meta, ProcessSpec, Runtime, Service, ServiceMode, ServiceSpec, TaskSpec,
    Timestamp, new_id,
};

use crate::report::{Output, Row};

/// etcd 3.2's published figures (3 x 8 vCPU, SSD), for comparison: writes/s with 1 client and
/// with 1,000 clients.
const ETCD_ONE_CLIENT: &str = "583 (1 client)";
const ETCD_MANY_CLIENTS: &str = "44,000-50,000 (1,000 clients)";
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// `swarm-bench raft-writes`.
#[derive(Debug, clap::Args)]
pub struct RaftWritesArgs {
    /// Concurrent clients per row (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// How long each row writes.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Where the raft files go (a fresh temporary directory inside it per row) [default: the
    /// system's temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub async fn run(args: RaftWritesArgs, output: &mut Output) -> anyhow::Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!(
            "--seconds must be a positive number of seconds, not {}",
            args.seconds
        );
    }
    let duration = Duration::from_secs_f64(args.seconds);
    for &clients in &args.clients {
        if clients == 0 {
            bail!("--clients: each count must be at least 1");
        }
        eprintln!("raft-writes: {clients} clients for {duration:?}");
        output.push(measure(clients, duration, args.dir.as_deref()).await?)?;
    }
    Ok(())
}

fn service(name: String) -> Service {
    let now = Timestamp::now();
    Service {
        id: new_id(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        spec: ServiceSpec {
            annotations: Annotations {
                name,
                labels: Default::default(),
            },
            task: TaskSpec {
                runtime: Runtime::Process(ProcessSpec {
                    command: "sleep".to_owned(),
                    args: vec!["600".to_owned()],
                    ..Default::default()
                }),
                resources: Default::default(),
                restart: Default::default(),
                placement: Default::default(),
                force_update: 0,
                secrets: vec![],
                configs: vec![],
            },
            executor: String::new(),
            mode: ServiceMode::Replicated { replicas: 1 },
        },
        spec_version: 1,
    }
}

/// The nearest-rank percentile of sorted durations, in seconds.
pub(crate) fn percentile(sorted: &[Duration], fraction: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank.
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .map(Duration::as_secs_f64)
}

async fn measure(
    clients: usize,
    duration: Duration,
    parent: Option<&std::path::Path>,
) -> anyhow::Result<Row> {
    let dir = match parent {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory for raft")?;
    let store = Arc::new(MemoryStore::new());
    let app = Arc::new(StoreApp::new(store.clone()));
    let raft = RaftNode::start(RaftConfig::new(1, dir.path().join("raft")), app)
        .await
        .context("starting raft")?;
    let result = drive(&raft, clients, duration).await;
    let shutdown = raft.shutdown().await.context("stopping raft");
    let row = result?;
    shutdown?;
    Ok(row)
}

async fn drive(raft: &RaftNode, clients: usize, duration: Duration) -> anyhow::Result<Row> {
    raft.bootstrap_single("127.0.0.1:0".to_owned())
        .await
        .context("bootstrapping raft")?;
    raft.wait_for_leader(LEADER_TIMEOUT)
        .await
        .context("waiting for a raft leader")?;
    let committer = Arc::new(RaftCommitter::new(raft.clone()));
    let first_index = raft.metrics().last_log_index.unwrap_or(0);

    let (elapsed, mut latencies) =
        crate::cluster_writes::drive(clients, duration, move |client, sequence| {
            let committer = committer.clone();
            async move {
                let batch = Batch::new(vec![Action::Create(Object::Service(service(format!(
                    "bench-{client}-{sequence}"
                ))))]);
                committer
                    .commit(batch)
                    .await
                    .with_context(|| format!("client {client}: committing a service"))?;
                Ok(())
            }
        })
        .await?;
    let entries = raft
        .metrics()
        .last_log_index
        .unwrap_or(0)
        .saturating_sub(first_index);
    latencies.sort_unstable();
    let writes = latencies.len() as u64;
    let per_second = writes as f64 / elapsed.as_secs_f64();
    Ok(Row::new()
        .int("clients", clients as u64)
        .seconds("seconds", elapsed)
        .int("writes", writes)
        .float("writes_per_second", per_second, 0)
        .opt_seconds("p50_seconds", percentile(&latencies, 0.50))
        .opt_seconds("p99_seconds", percentile(&latencies, 0.99))
        .opt_seconds("max_seconds", latencies.last().map(Duration::as_secs_f64))
        .int("log_entries", entries)
        .float(
            "writes_per_entry",
            writes as f64 / (entries.max(1)) as f64,
            1,
        )
        .text(
            "etcd_3_2_writes_per_second",
            if clients == 1 {
                ETCD_ONE_CLIENT
            } else {
                ETCD_MANY_CLIENTS
            },
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.50), Some(0.050));
        assert_eq!(percentile(&sorted, 0.99), Some(0.099));
        assert_eq!(percentile(&sorted[..1], 0.99), Some(0.001));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
