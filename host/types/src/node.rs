//! Nodes: the machines of the cluster, their spec (role, availability), description and status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::{Annotations, Meta, Timestamp};
use crate::plugin::check_plugin_ref;
use crate::resources::Resources;
use crate::validate::{ValidationError, check_labels};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    #[default]
    Worker,
    Manager,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    Pending,
    #[default]
    Accepted,
}

/// Whether the scheduler may place new tasks on a node and whether existing ones stay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// New tasks may be placed.
    #[default]
    Active,
    /// No new tasks; existing ones keep running.
    Pause,
    /// No tasks: existing ones are shut down and rescheduled elsewhere.
    Drain,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

/// What an operator asks of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub annotations: Annotations,
    pub desired_role: NodeRole,
    pub membership: Membership,
    pub availability: Availability,
    /// The executor plugin for this node's new tasks (an installed plugin's name); empty: the
    /// node's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub executor: String,
}

impl NodeSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_labels("spec.annotations.labels", &self.annotations.labels)?;
        check_plugin_ref("spec.executor", &self.executor)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

/// The node's engine (its executors): version, labels and plugins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineDescription {
    pub version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Plugins the engine offers, as `kind/name` (e.g. `network/overlay`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
}

/// What the node reports about itself when its agent registers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    pub hostname: String,
    pub platform: Platform,
    pub resources: Resources,
    pub engine: EngineDescription,
    /// The node's default executor (`docker` when its container engine answers, else `default`).
    pub executor: String,
    /// Runtimes the node's executors support (`container`, `process`, `wasi`, ...).
    pub runtimes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Address the node was seen at.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// When the dispatcher last heard from the node (heartbeat or registration).
    #[serde(default)]
    pub last_seen: Timestamp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    #[default]
    Unknown,
    Unreachable,
    Reachable,
}

/// Raft membership of a manager node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    pub raft_id: u64,
    pub addr: String,
    pub leader: bool,
    pub reachability: Reachability,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub meta: Meta,
    pub spec: NodeSpec,
    /// The role the node currently holds (follows `spec.desired_role`).
    pub role: NodeRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<NodeDescription>,
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

impl Node {
    /// A node seen for the first time, as `role` (also its desired role), created at `now`.
    pub fn new(
        id: impl Into<String>,
        role: NodeRole,
        description: NodeDescription,
        status: NodeStatus,
        now: crate::Timestamp,
    ) -> Self {
        Node {
            id: id.into(),
            meta: crate::Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            },
            spec: NodeSpec {
                desired_role: role,
                ..Default::default()
            },
            role,
            description: Some(description),
            status,
            manager_status: None,
        }
    }

    /// The hostname if the node described itself, else its spec name, else its id.
    pub fn display_name(&self) -> &str {
        match &self.description {
            Some(d) if !d.hostname.is_empty() => &d.hostname,
            _ if !self.spec.annotations.name.is_empty() => &self.spec.annotations.name,
            _ => &self.id,
        }
    }

    /// Whether the scheduler may place new tasks here.
    pub fn accepts_new_tasks(&self) -> bool {
        self.status.state == NodeState::Ready && self.spec.availability == Availability::Active
    }
}
