//! A proposal throughput check: many concurrent clients proposing small commands to one node.
//! Measurement only; nothing asserts on timing.

use std::time::Duration;
use std::time::Instant;

use crate::RaftError;
use crate::RaftNode;

/// What one throughput run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputReport {
    pub clients: usize,
    pub proposals: usize,
    pub command_bytes: usize,
    pub elapsed: Duration,
    pub proposals_per_second: f64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    /// Distinct log entries used: fewer than `proposals` when proposals were batched.
    pub log_entries: usize,
}

/// Runs `clients` concurrent tasks that each propose `proposals_per_client` commands of
/// `command_bytes` bytes one after the other, and reports throughput and latency.
pub async fn measure_proposals(
    node: &RaftNode,
    clients: usize,
    proposals_per_client: usize,
    command_bytes: usize,
) -> Result<ThroughputReport, RaftError> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let node = node.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(proposals_per_client);
            let mut indexes = Vec::with_capacity(proposals_per_client);
            let mut command = vec![0u8; command_bytes];
            for (position, byte) in command.iter_mut().enumerate() {
                *byte = (client + position) as u8;
            }
            for _ in 0..proposals_per_client {
                let sent = Instant::now();
                let (index, _) = node.propose(command.clone()).await?;
                latencies.push(sent.elapsed());
                indexes.push(index);
            }
            Ok::<_, RaftError>((latencies, indexes))
        });
    }
    let mut latencies = Vec::with_capacity(clients * proposals_per_client);
    let mut indexes = Vec::with_capacity(clients * proposals_per_client);
    while let Some(joined) = tasks.join_next().await {
        let (client_latencies, client_indexes) =
            joined.map_err(|e| RaftError::Internal(format!("benchmark client: {e}")))??;
        latencies.extend(client_latencies);
        indexes.extend(client_indexes);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    indexes.sort_unstable();
    indexes.dedup();
    let percentile = |p: f64| -> Duration {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((latencies.len() - 1) as f64 * p).round() as usize;
        latencies[rank.min(latencies.len() - 1)]
    };
    let proposals = clients * proposals_per_client;
    Ok(ThroughputReport {
        clients,
        proposals,
        command_bytes,
        elapsed,
        proposals_per_second: proposals as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        latency_p50: percentile(0.50),
        latency_p99: percentile(0.99),
        log_entries: indexes.len(),
    })
}
