//! The cluster object: cluster-wide settings an operator can change.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::meta::{Annotations, Meta};
use crate::plugin::check_plugin_ref;
use crate::validate::ValidationError;

/// Name of the one cluster object.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestrationConfig {
    /// Old (terminated) tasks kept per slot; older ones are deleted by the task reaper.
    pub task_history_retention_limit: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherConfig {
    /// How often agents heartbeat.
    #[serde(with = "crate::meta::duration_text")]
    pub heartbeat_period: Duration,
    /// A node is down after missing heartbeats for `heartbeat_period * grace_multiplier`.
    pub grace_multiplier: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfigSpec {
    pub snapshot_interval: u64,
    pub log_entries_for_slow_followers: u64,
    pub heartbeat_tick: u64,
    pub election_tick: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub annotations: Annotations,
    pub orchestration: OrchestrationConfig,
    pub dispatcher: DispatcherConfig,
    pub raft: RaftConfigSpec,
    /// The scheduler plugin (an installed plugin's name); empty: the embedded default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheduler: String,
    /// Managers keep their raft data key wrapped by the cluster's unlock key
    /// ([`RootCaState::unlock_key`]); a restarted manager waits for it (SwarmKit's autolock).
    #[serde(default)]
    pub autolock: bool,
}

impl ClusterSpec {
    /// SwarmKit's defaults: 5 old tasks per slot, 5 s heartbeats, grace multiplier 3.
    pub fn with_defaults() -> Self {
        Self {
            annotations: Annotations {
                name: DEFAULT_CLUSTER_NAME.to_string(),
                labels: Default::default(),
            },
            orchestration: OrchestrationConfig {
                task_history_retention_limit: 5,
            },
            dispatcher: DispatcherConfig {
                heartbeat_period: Duration::from_secs(5),
                grace_multiplier: 3,
            },
            raft: RaftConfigSpec {
                snapshot_interval: 10_000,
                log_entries_for_slow_followers: 500,
                heartbeat_tick: 1,
                election_tick: 10,
            },
            scheduler: String::new(),
            autolock: false,
        }
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        check_plugin_ref("spec.scheduler", &self.scheduler)?;
        if self.dispatcher.heartbeat_period < Duration::from_millis(100) {
            return Err(ValidationError::new(
                "spec.dispatcher.heartbeat_period",
                "must be at least 100ms",
            ));
        }
        if self.dispatcher.heartbeat_period > Duration::from_secs(3600) {
            return Err(ValidationError::new(
                "spec.dispatcher.heartbeat_period",
                "must be at most 1h",
            ));
        }
        if self.dispatcher.grace_multiplier == 0 {
            return Err(ValidationError::new(
                "spec.dispatcher.grace_multiplier",
                "must be >= 1",
            ));
        }
        if self.orchestration.task_history_retention_limit > 1000 {
            return Err(ValidationError::new(
                "spec.orchestration.task_history_retention_limit",
                "must be <= 1000",
            ));
        }
        if self.raft.election_tick <= self.raft.heartbeat_tick {
            return Err(ValidationError::new(
                "spec.raft.election_tick",
                "must be greater than heartbeat_tick",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub meta: Meta,
    pub spec: ClusterSpec,
    /// The cluster's certificate authority and join tokens (empty in a store written before
    /// managers had a CA).
    #[serde(default)]
    pub root_ca: RootCaState,
}

/// The root CA every manager signs with, and the join tokens that grant each role.
///
/// Replicated through raft so that any manager that becomes leader can issue certificates. The
/// control API never returns the key; `Debug` never prints the key nor the tokens' secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCaState {
    /// The root certificate (PEM).
    pub cert_pem: String,
    /// The root's private key (PEM). Empty outside the managers' store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_pem: String,
    /// The current worker join token (`SWMTKN-1-...`).
    pub worker_token: String,
    /// The current manager join token.
    pub manager_token: String,
    /// The unlock key (`SWMKEY-1-...`) every manager wraps its raft data key with while
    /// autolock is on; empty when it is off. Never returned by the control API but through
    /// `GetUnlockKey`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unlock_key: String,
}

impl std::fmt::Debug for RootCaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCaState")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("has_key", &!self.key_pem.is_empty())
            .field("has_unlock_key", &!self.unlock_key.is_empty())
            .finish_non_exhaustive()
    }
}

impl RootCaState {
    /// The current tokens, parsed (`None` when the state predates the CA or is corrupt).
    pub fn join_tokens(&self) -> Option<crate::JoinTokens> {
        Some(crate::JoinTokens {
            worker: self.worker_token.parse().ok()?,
            manager: self.manager_token.parse().ok()?,
        })
    }
}
