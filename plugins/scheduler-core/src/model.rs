//! The scheduler's data model: nodes, task groups and results, independent of any binding layer.

use std::collections::HashMap;

/// CPU in billionths of a core and memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Unknown,
    Down,
    Ready,
    Disconnected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

/// One node as the scheduler keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub role: NodeRole,
    pub os: String,
    pub arch: String,
    pub labels: Vec<(String, String)>,
    pub engine_labels: Vec<(String, String)>,
    pub addr: String,
    pub status: NodeStatus,
    pub availability: Availability,
    pub total: Resources,
    pub available: Resources,
    pub runtimes: Vec<String>,
    pub plugins: Vec<String>,
    pub tasks_total: u32,
    /// Active tasks per service id.
    pub service_tasks: HashMap<String, u32>,
    /// Failures in the last five minutes per service id.
    pub recent_failures: HashMap<String, u32>,
}

impl Node {
    /// A ready, active worker with no labels, resources or tasks: a base for tests and callers
    /// that fill in the rest.
    pub fn new(id: impl Into<String>) -> Node {
        let id = id.into();
        Node {
            hostname: id.clone(),
            id,
            role: NodeRole::Worker,
            os: "linux".to_owned(),
            arch: "amd64".to_owned(),
            labels: Vec::new(),
            engine_labels: Vec::new(),
            addr: String::new(),
            status: NodeStatus::Ready,
            availability: Availability::Active,
            total: Resources::default(),
            available: Resources::default(),
            runtimes: vec!["process".to_owned(), "wasi".to_owned()],
            plugins: Vec::new(),
            tasks_total: 0,
            service_tasks: HashMap::new(),
            recent_failures: HashMap::new(),
        }
    }

    /// Active tasks of `service_id` on this node.
    pub fn service_count(&self, service_id: &str) -> u32 {
        self.service_tasks.get(service_id).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

/// Where the tasks of a group may go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Executor runtime the tasks need; empty means any.
    pub runtime: String,
    pub reservations: Resources,
    pub constraints: Vec<String>,
    /// Empty means any platform.
    pub platforms: Vec<Platform>,
    /// 0 means unlimited.
    pub max_replicas: u64,
    pub required_plugins: Vec<String>,
}

/// Tasks of one service with one spec version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskGroup {
    pub service_id: String,
    pub task_ids: Vec<String>,
    pub placement: Placement,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupResult {
    pub service_id: String,
    /// (task id, node id).
    pub assignments: Vec<(String, String)>,
    /// (task id, reason).
    pub unplaced: Vec<(String, String)>,
}
