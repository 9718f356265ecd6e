//! Prints proposal throughput of a single-voter node for 1 and 64 concurrent clients.
//!
//! Run with `cargo run -p swarm-raft --release --example throughput [STATE_DIR]`; the state
//! directory defaults to a temporary one (put it on the disk you want to measure).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use swarm_raft::RaftConfig;
use swarm_raft::RaftNode;
use swarm_raft::StateMachineApp;
use swarm_raft::bench::measure_proposals;

/// Counts applied commands; its snapshot is the count.
#[derive(Default)]
struct CounterApp {
    applied: AtomicU64,
}

impl StateMachineApp for CounterApp {
    fn apply(&self, _index: u64, _command: &[u8]) -> Vec<u8> {
        (self.applied.fetch_add(1, Ordering::Relaxed) + 1)
            .to_be_bytes()
            .to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.applied.load(Ordering::Relaxed).to_be_bytes().to_vec()
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| "snapshot is not 8 bytes".to_owned())?;
        self.applied
            .store(u64::from_be_bytes(bytes), Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let state_dir = std::env::args()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let node = RaftNode::start(
        RaftConfig::new(1, state_dir),
        Arc::new(CounterApp::default()),
    )
    .await?;
    node.bootstrap_single("127.0.0.1:4242".to_owned()).await?;
    node.wait_for_leader(Duration::from_secs(10)).await?;

    println!(
        "{:>8} {:>10} {:>8} {:>10} {:>12} {:>10} {:>10} {:>12}",
        "clients",
        "proposals",
        "bytes",
        "seconds",
        "proposals/s",
        "p50 µs",
        "p99 µs",
        "log entries"
    );
    for (clients, per_client) in [(1, 3_000), (8, 1_000), (64, 300), (256, 100)] {
        // Warm up, then measure.
        measure_proposals(&node, clients, per_client / 10 + 1, 64).await?;
        let report = measure_proposals(&node, clients, per_client, 64).await?;
        println!(
            "{:>8} {:>10} {:>8} {:>10.3} {:>12.0} {:>10} {:>10} {:>12}",
            report.clients,
            report.proposals,
            report.command_bytes,
            report.elapsed.as_secs_f64(),
            report.proposals_per_second,
            report.latency_p50.as_micros(),
            report.latency_p99.as_micros(),
            report.log_entries
        );
    }
    node.shutdown().await?;
    Ok(())
}
