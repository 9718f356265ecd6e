//! swarm-agent: the worker side of a node. It holds a session with a manager's dispatcher,
//! stores its task assignments in a local database, runs each task through the executor and
//! reports task statuses back in batches.
//!
//! Layout: `agent.rs` (the session loop with backoff), `managers.rs` (the weighted list of
//! managers the session is opened with, and the rounds of failover), `session.rs` (one registration:
//! heartbeat, assignments, session messages, status flushing), `worker.rs` (stores assignments
//! and owns the controllers), `controller.rs` (one tokio task per task), `reporter.rs` (the
//! queue of statuses to send), `db.rs` (the redb task database), `executor.rs` (the traits the
//! agent drives), `executors.rs` (the node's executors and which one runs a task), `files.rs`
//! (secrets and configs: held in memory, written as a task's files before it is prepared) and
//! `plugin.rs` (`swarm-plugin-host`'s executor plugin behind those traits).
//!
//! *Architecture invariants*:
//! - The agent never depends on the manager crate; it speaks to managers only over gRPC
//!   (`swarm_proto::pb::dispatcher_client`), even when both run in one process.
//! - The agent owns task states ACCEPTED and later; a task's status only moves forward, and the
//!   agent never reports a status older than the last one it reported.
//! - Every assignment is stored (fsync'd) before it is acted on; the database also keeps the
//!   last status of each task, so a restarted agent adopts tasks that kept running (it never
//!   restarts them) and reports the ones that ended or were lost meanwhile.
//! - Tasks keep running while the session is down, while it moves to another manager, and
//!   after the agent stops.
//! - One slow task never blocks another: each task has its own controller task, and executor
//!   calls may run concurrently.
//!
//! *API boundary*: prost types stay inside `session.rs`; everything else works with
//! `swarm_types`.

mod agent;
mod config;
mod controller;
mod db;
mod error;
mod executor;
mod executors;
mod files;
mod managers;
mod plugin;
mod reporter;
mod session;
mod worker;

pub use agent::{Agent, AgentStatus, INITIAL_BACKOFF, MAX_BACKOFF, ManagerPeer, describe_node};
pub use config::{AgentConfig, ChannelMaker, TASK_DB_FILE};
pub use controller::LOST_MESSAGE;
pub use db::DbError;
pub use error::AgentError;
pub use executor::{
    EngineInfo, ExecState, Executor, ExecutorError, ExecutorInfo, ExitStatus, LogReader, LogStream,
};
pub use executors::{Executors, NamedExecutor};
pub use files::{CONFIGS_DIR_ENV, CONTAINER_SECRETS_DIR, SECRETS_DIR_ENV};
pub use managers::{DEFAULT_WEIGHT, Managers};
