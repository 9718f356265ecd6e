//! Raft configuration in SwarmKit's terms (ticks), validated and translated to openraft's.

use std::path::PathBuf;
use std::time::Duration;

use openraft::SnapshotPolicy;

use crate::RaftError;
use crate::network::stream::StreamMaker;
use crate::network::{ChannelMaker, MAX_COMMAND_BYTES};

/// How a raft node runs. Build it with [`RaftConfig::new`], adjust fields, then
/// [`validate`](RaftConfig::validate) (also done by [`RaftNode::start`](crate::RaftNode::start)).
#[derive(Clone)]
pub struct RaftConfig {
    /// This node's raft id: non-zero, unique in the cluster.
    pub node_id: u64,
    /// Directory of the raft files (`raft.redb`, `wal/` and `snapshots/`); created if missing.
    pub state_dir: PathBuf,
    /// The raft clock tick (SwarmKit: 1 s; default here 100 ms).
    pub tick: Duration,
    /// Ticks between leader heartbeats (SwarmKit: 1).
    pub heartbeat_tick: u64,
    /// Ticks without a leader before a follower starts an election (SwarmKit: 10). The election
    /// timeout is drawn from `[election_tick * tick / 2, election_tick * tick)`: openraft's
    /// followers refuse votes for the upper bound after the last heartbeat (the leader lease),
    /// so a leader's death is noticed within `election_tick * tick` and a new leader is usually
    /// elected well within twice that.
    pub election_tick: u64,
    /// Applied entries between two snapshots (SwarmKit: 10 000).
    pub snapshot_interval: u64,
    /// Entries kept in the log behind a snapshot for slow followers (SwarmKit: 500).
    pub logs_to_keep: u64,
    /// At most this many concurrent proposals are committed together as one log entry.
    pub max_batch_commands: usize,
    /// A batch stops growing once its commands reach this many bytes (a larger command is
    /// committed alone). At most [`MAX_COMMAND_BYTES`]: each log entry must fit in one raft
    /// message to be replicated.
    pub max_batch_bytes: usize,
    /// How this node reaches its peers (plaintext by default; mutual TLS in swarmd).
    pub channels: ChannelMaker,
    /// How this node opens append lanes to its peers (AppendEntries over one long-lived stream
    /// per peer; mutual TLS in swarmd); none (the default): AppendEntries go over `channels`.
    pub append_lanes: Option<StreamMaker>,
    /// [`add_learner`](crate::RaftNode::add_learner) gives up when the new learner has answered
    /// nothing for this long (a wrong address, a peer that is down); it stays a learner.
    pub learner_stall_timeout: Duration,
    /// The data encryption key of the log and snapshots at rest (ChaCha20-Poly1305). `None`
    /// stores them plain. Entries and snapshots written without a key stay readable with one.
    pub cipher: Option<[u8; 32]>,
    /// SwarmKit's `--force-new-cluster`: before starting, keep every entry of the log (all
    /// treated as committed, as etcd does), and make this node the only voter of its group at
    /// this address, in a term above any seen. Other members are dropped; they must join again.
    /// Fails when there is no raft state to keep.
    pub force_new_cluster: Option<String>,
}

impl std::fmt::Debug for RaftConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftConfig")
            .field("node_id", &self.node_id)
            .field("state_dir", &self.state_dir)
            .field("tick", &self.tick)
            .field("heartbeat_tick", &self.heartbeat_tick)
            .field("election_tick", &self.election_tick)
            .field("snapshot_interval", &self.snapshot_interval)
            .field("logs_to_keep", &self.logs_to_keep)
            .field("max_batch_commands", &self.max_batch_commands)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("learner_stall_timeout", &self.learner_stall_timeout)
            .field("encrypted", &self.cipher.is_some())
            .field("force_new_cluster", &self.force_new_cluster)
            .field("append_lanes", &self.append_lanes.is_some())
            .finish_non_exhaustive()
    }
}

impl RaftConfig {
    /// A configuration with SwarmKit's defaults, except a 100 ms tick.
    pub fn new(node_id: u64, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            state_dir: state_dir.into(),
            tick: Duration::from_millis(100),
            heartbeat_tick: 1,
            election_tick: 10,
            snapshot_interval: 10_000,
            logs_to_keep: 500,
            max_batch_commands: 1024,
            max_batch_bytes: 4 << 20,
            channels: crate::network::plain_channels(),
            append_lanes: None,
            learner_stall_timeout: Duration::from_secs(10),
            cipher: None,
            force_new_cluster: None,
        }
    }

    /// Checks the configuration; returns it unchanged when valid.
    pub fn validate(self) -> Result<Self, RaftError> {
        let invalid = |reason: String| Err(RaftError::Config(reason));
        if self.node_id == 0 {
            return invalid("node_id must be non-zero".into());
        }
        if self.state_dir.as_os_str().is_empty() {
            return invalid("state_dir must be set".into());
        }
        if self.tick.as_millis() == 0 {
            return invalid(format!("tick must be at least 1ms, got {:?}", self.tick));
        }
        if self.heartbeat_tick == 0 {
            return invalid("heartbeat_tick must be at least 1".into());
        }
        if self.election_tick <= self.heartbeat_tick.saturating_mul(2) {
            return invalid(format!(
                "election_tick ({}) must be more than twice heartbeat_tick ({})",
                self.election_tick, self.heartbeat_tick
            ));
        }
        if self.snapshot_interval == 0 {
            return invalid("snapshot_interval must be at least 1".into());
        }
        if self.max_batch_commands == 0 {
            return invalid("max_batch_commands must be at least 1".into());
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > MAX_COMMAND_BYTES {
            return invalid(format!(
                "max_batch_bytes must be between 1 and {MAX_COMMAND_BYTES} (one raft message), \
                 got {}",
                self.max_batch_bytes
            ));
        }
        if self.learner_stall_timeout.is_zero() {
            return invalid("learner_stall_timeout must be positive".into());
        }
        self.openraft_config()?;
        Ok(self)
    }

    fn ticks_ms(&self, ticks: u64) -> Result<u64, RaftError> {
        u64::try_from(self.tick.as_millis())
            .ok()
            .and_then(|tick| tick.checked_mul(ticks))
            .ok_or_else(|| RaftError::Config(format!("{ticks} ticks of {:?} overflow", self.tick)))
    }

    /// The equivalent openraft configuration.
    pub(crate) fn openraft_config(&self) -> Result<openraft::Config, RaftError> {
        let election = self.ticks_ms(self.election_tick)?;
        let config = openraft::Config {
            cluster_name: "swarm".to_owned(),
            heartbeat_interval: self.ticks_ms(self.heartbeat_tick)?,
            election_timeout_min: election / 2,
            election_timeout_max: election,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_interval),
            max_in_snapshot_log_to_keep: self.logs_to_keep,
            // Snapshots travel in chunks well under any gRPC message limit, so a large store
            // never blocks a new manager (SwarmKit's 4 MB complaint).
            snapshot_max_chunk_size: crate::network::SNAPSHOT_CHUNK_BYTES,
            // Entries per AppendEntries; the network also stops a request at
            // `APPEND_ENTRIES_BUDGET_BYTES` (openraft retries with fewer entries).
            max_payload_entries: 64,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| RaftError::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_become_openraft_timings() {
        let mut config = RaftConfig::new(1, "/tmp/x");
        config.tick = Duration::from_millis(50);
        config.heartbeat_tick = 2;
        config.election_tick = 20;
        config.snapshot_interval = 77;
        config.logs_to_keep = 5;
        let openraft = config
            .validate()
            .expect("valid")
            .openraft_config()
            .expect("valid");
        assert_eq!(openraft.heartbeat_interval, 100);
        assert_eq!(openraft.election_timeout_min, 500);
        assert_eq!(openraft.election_timeout_max, 1000);
        assert_eq!(openraft.snapshot_policy, SnapshotPolicy::LogsSinceLast(77));
        assert_eq!(openraft.max_in_snapshot_log_to_keep, 5);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let base = RaftConfig::new(1, "/tmp/x");
        let cases: Vec<(RaftConfig, &str)> = vec![
            (
                RaftConfig {
                    node_id: 0,
                    ..base.clone()
                },
                "node_id",
            ),
            (
                RaftConfig {
                    state_dir: PathBuf::new(),
                    ..base.clone()
                },
                "state_dir",
            ),
            (
                RaftConfig {
                    tick: Duration::ZERO,
                    ..base.clone()
                },
                "tick",
            ),
            (
                RaftConfig {
                    heartbeat_tick: 0,
                    ..base.clone()
                },
                "heartbeat_tick",
            ),
            (
                RaftConfig {
                    election_tick: 1,
                    ..base.clone()
                },
                "election_tick",
            ),
            (
                RaftConfig {
                    snapshot_interval: 0,
                    ..base.clone()
                },
                "snapshot_interval",
            ),
            (
                RaftConfig {
                    max_batch_commands: 0,
                    ..base.clone()
                },
                "max_batch_commands",
            ),
            (
                RaftConfig {
                    max_batch_bytes: 0,
                    ..base.clone()
                },
                "max_batch_bytes",
            ),
            (
                RaftConfig {
                    max_batch_bytes: MAX_COMMAND_BYTES + 1,
                    ..base.clone()
                },
                "max_batch_bytes",
            ),
            (
                RaftConfig {
                    learner_stall_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "learner_stall_timeout",
            ),
        ];
        for (config, field) in cases {
            let error = config.validate().expect_err(field).to_string();
            assert!(error.contains(field), "{field}: {error}");
        }
    }
}
