//! The errors of the raft layer.

use std::fmt;
use std::time::Duration;

/// What went wrong in the raft layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// The configuration is invalid; the message names the field.
    #[error("invalid raft config: {0}")]
    Config(String),
    /// This node is not the leader; forward the request to the leader when one is known.
    #[error("not the raft leader ({})", LeaderHint(leader_id, leader_addr))]
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// Reading or writing the raft log, vote or snapshots failed.
    #[error("raft storage: {0}")]
    Storage(String),
    /// Waiting for something took longer than allowed.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    /// The node is shut down (or shutting down).
    #[error("raft node is shut down")]
    ShutDown,
    /// A membership change that openraft refused (the message says why).
    #[error("raft membership change refused: {0}")]
    Membership(String),
    /// The operation cannot be done now (e.g. leadership is being confirmed); retry.
    #[error("raft unavailable: {0}")]
    Unavailable(String),
    /// A proposed command is larger than a raft message can carry to the other members.
    #[error("command of {bytes} bytes exceeds the raft limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    /// Any other failure inside openraft.
    #[error("raft: {0}")]
    Internal(String),
}

struct LeaderHint<'a>(&'a Option<u64>, &'a Option<String>);

impl fmt::Display for LeaderHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(id), Some(addr)) => write!(f, "leader is {id} at {addr}"),
            (Some(id), None) => write!(f, "leader is {id}, address unknown"),
            (None, _) => write!(f, "no leader is known yet; retry later"),
        }
    }
}

impl From<openraft::error::Fatal<u64>> for RaftError {
    fn from(fatal: openraft::error::Fatal<u64>) -> Self {
        match fatal {
            openraft::error::Fatal::StorageError(e) => RaftError::Storage(e.to_string()),
            openraft::error::Fatal::Stopped => RaftError::ShutDown,
            other => RaftError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_names_the_leader() {
        let error = RaftError::NotLeader {
            leader_id: Some(2),
            leader_addr: Some("10.0.0.2:4242".into()),
        };
        assert_eq!(
            error.to_string(),
            "not the raft leader (leader is 2 at 10.0.0.2:4242)"
        );
        let error = RaftError::NotLeader {
            leader_id: None,
            leader_addr: None,
        };
        assert_eq!(
            error.to_string(),
            "not the raft leader (no leader is known yet; retry later)"
        );
    }
}
