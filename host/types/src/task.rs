//! Tasks: one scheduled instance of a service, and the task state machine.
//!
//! The manager owns states up to `Assigned`; the agent owns `Accepted` and later. A task's
//! observed state only moves forward.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::meta::{Annotations, Meta, Timestamp};
use crate::service::TaskSpec;

/// Task states in lifecycle order (SwarmKit's numbering order).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Remove,
        TaskState::Orphaned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// A terminal state: the task will not run (again).
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }

    /// Whether an observed state may move from `self` to `next` (only forward).
    pub fn can_transition_to(self, next: TaskState) -> bool {
        next > self
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown task state {s:?}"))
    }
}

/// How a task's process ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// The observed status of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub timestamp: Timestamp,
    /// What happened, for people (e.g. `started`, `no suitable node (...)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The error that ended the task, if it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub meta: Meta,
    /// `<service>.<slot>` for replicated tasks, `<service>.<node id>` for global ones.
    pub annotations: Annotations,
    pub service_id: String,
    /// Replica slot (1-based) of a replicated service; 0 for global services.
    pub slot: u64,
    /// The node the task is assigned to (empty until assigned; global tasks are created with it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    pub spec: TaskSpec,
    /// The service's `spec_version` this task was created from.
    pub spec_version: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    /// The executor the task runs on, fixed when it is assigned: the service's `spec.executor`,
    /// else the node's; empty lets the agent choose by runtime.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub executor: String,
}

impl Task {
    /// Whether the task still holds (or will hold) resources on its node.
    pub fn is_active(&self) -> bool {
        self.desired_state <= TaskState::Running && !self.status.state.is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_and_only_move_forward() {
        for w in TaskState::ALL.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].can_transition_to(w[1]));
            assert!(!w[1].can_transition_to(w[0]));
            assert!(!w[0].can_transition_to(w[0]));
        }
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Complete.is_terminal());
        assert_eq!("RUNNING".parse::<TaskState>(), Ok(TaskState::Running));
        assert!("walking".parse::<TaskState>().is_err());
    }
}
