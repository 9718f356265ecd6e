//! Domain objects of the cluster (nodes, services, tasks, the cluster object), their specs,
//! validation and the task state machine.
//!
//! *Architecture invariant*: this crate is pure. It does no IO and no async, and it depends on no
//! other crate of the workspace; every other crate speaks in these types.
//!
//! *API boundary*: these types derive serde for durable storage (raft log entries and snapshots)
//! and for `--format json` output. The gRPC wire format lives in `swarm-proto`.

mod bytes;
mod cluster;
mod constraint;
mod container;
mod id;
mod join_token;
mod meta;
mod node;
mod plugin;
mod resources;
mod secret;
mod service;
mod task;
mod validate;

pub use bytes::Blob;
pub use cluster::{
    Cluster, ClusterSpec, DEFAULT_CLUSTER_NAME, DispatcherConfig, OrchestrationConfig,
    RaftConfigSpec, RootCaState,
};
pub use constraint::{Constraint, ConstraintOp, node_satisfies};
pub use container::{ContainerSpec, Mount, MountKind, RESERVED_LABEL_PREFIX};
pub use id::{ID_LEN, new_id};
pub use join_token::{
    JOIN_TOKEN_PREFIX, JOIN_TOKEN_VERSION, JoinToken, JoinTokenError, JoinTokens, digest_hex,
};
pub use meta::{Annotations, Meta, Timestamp};
pub use node::{
    Availability, EngineDescription, ManagerStatus, Membership, Node, NodeDescription, NodeRole,
    NodeSpec, NodeState, NodeStatus, Platform, Reachability,
};
pub use plugin::{
    BUILTIN_EXECUTORS, ComponentBytes, MAX_PLUGIN_BYTES, PLUGIN_CAPABILITIES, Plugin, PluginKind,
    PluginSpec, PluginStatus, check_digest, check_plugin_size,
};
pub use resources::{ResourceRequirements, Resources};
pub use secret::{
    Config, DataKind, DataObject, DataSpec, FileRef, MAX_CONFIG_BYTES, MAX_SECRET_BYTES,
    MAX_TARGET_LEN, Secret, check_file_refs,
};
pub use service::{
    MAX_REPLICAS, Placement, ProcessSpec, RestartCondition, RestartPolicy, Runtime, Service,
    ServiceMode, ServiceSpec, TaskSpec, WasiSpec, parse_labels,
};
pub use task::{ExitInfo, Task, TaskState, TaskStatus};
pub use validate::ValidationError;
