//! The manager's error type and its one conversion to `tonic::Status`, at the service edge.

use swarm_store::StoreError;
use swarm_types::ValidationError;

/// Why a manager operation failed. Each variant maps to one gRPC code; the message is kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManagerError {
    /// Bad input: the message names the field (`spec.replicas: must be >= 0`).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the cluster's state forbids it now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A concurrent write won; re-read and retry.
    #[error("{0}")]
    Conflict(String),
    /// No leader, shutting down, or raft unavailable.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = ManagerError> = std::result::Result<T, E>;

impl From<ValidationError> for ManagerError {
    fn from(e: ValidationError) -> Self {
        ManagerError::InvalidArgument(e.to_string())
    }
}

impl From<swarm_proto::ConversionError> for ManagerError {
    fn from(e: swarm_proto::ConversionError) -> Self {
        ManagerError::InvalidArgument(e.to_string())
    }
}

impl From<StoreError> for ManagerError {
    fn from(e: StoreError) -> Self {
        let text = e.to_string();
        match e {
            StoreError::NotFound { .. } => ManagerError::NotFound(text),
            StoreError::AlreadyExists { .. } | StoreError::NameConflict { .. } => {
                ManagerError::AlreadyExists(text)
            }
            StoreError::VersionConflict { .. } => ManagerError::Conflict(text),
            StoreError::InUse { .. } | StoreError::MissingReference { .. } => {
                ManagerError::FailedPrecondition(text)
            }
            _ => ManagerError::Internal(text),
        }
    }
}

impl From<swarm_raft::RaftError> for ManagerError {
    fn from(e: swarm_raft::RaftError) -> Self {
        ManagerError::Unavailable(format!("raft: {e}"))
    }
}

impl From<ManagerError> for tonic::Status {
    fn from(e: ManagerError) -> Self {
        let msg = e.to_string();
        match e {
            ManagerError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ManagerError::NotFound(_) => tonic::Status::not_found(msg),
            ManagerError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            ManagerError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            ManagerError::Conflict(_) => tonic::Status::aborted(msg),
            ManagerError::PermissionDenied(_) => tonic::Status::permission_denied(msg),
            ManagerError::Unavailable(_) => tonic::Status::unavailable(msg),
            ManagerError::Internal(_) => tonic::Status::internal(msg),
        }
    }
}
