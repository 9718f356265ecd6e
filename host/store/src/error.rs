//! Why a write was refused. Every variant names the object at fault; none leaves a trace in the store.

use crate::object::ObjectKind;

/// A write the store refused. A refused batch changes nothing and publishes no events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: ObjectKind, id: String },

    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: ObjectKind, id: String },

    /// Service and cluster names are unique, compared ignoring ASCII case.
    #[error("{kind} name {name:?} is already used by {kind} {existing_id}; choose another name")]
    NameConflict {
        kind: ObjectKind,
        name: String,
        existing_id: String,
    },

    /// The update was built from a stale read: the object changed since.
    #[error(
        "update out of sequence: {kind} {id} has version {expected}, update carried {got}; re-read and retry"
    )]
    VersionConflict {
        kind: ObjectKind,
        id: String,
        expected: u64,
        got: u64,
    },

    #[error("{kind} id must not be empty")]
    EmptyId { kind: ObjectKind },

    /// A service names a secret or config that does not exist (it was removed meanwhile).
    #[error("service {service:?} references {kind} {id:?}, which does not exist")]
    MissingReference {
        service: String,
        kind: ObjectKind,
        id: String,
    },

    /// A secret or config still referenced by a service cannot be deleted.
    #[error("{kind} {id} is in use by service {service:?}; remove it from the service first")]
    InUse {
        kind: ObjectKind,
        id: String,
        service: String,
    },

    /// Batches are applied in raft order; an index at or below the last applied one is a replay.
    #[error(
        "batch at raft index {index} arrived after index {last_index} was applied; batches must be applied in log order"
    )]
    IndexNotIncreasing { index: u64, last_index: u64 },
}
