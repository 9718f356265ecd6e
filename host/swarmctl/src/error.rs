//! The two kinds of failure swarmctl reports, and their exit codes: 1 for a user error (bad
//! input, a request the manager refused), 2 for a failure of the system (the manager cannot be
//! reached or broke down).

use std::fmt;
use std::path::Path;

use tonic::Code;

/// A failure with its exit code. Commands return it inside `anyhow::Error`; `main` finds it in
/// the chain to choose the exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input, an unknown object, or a request the manager refused (exit 1).
    #[error("{0}")]
    User(String),
    /// The manager cannot be reached, timed out or failed (exit 2).
    #[error("{0}")]
    System(String),
}

impl CliError {
    pub fn user(message: impl fmt::Display) -> Self {
        CliError::User(message.to_string())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::User(_) => 1,
            CliError::System(_) => 2,
        }
    }

    /// The manager cannot be reached at `socket`; `detail` says why (from the OS or transport).
    pub fn unreachable(socket: &Path, detail: impl fmt::Display) -> Self {
        CliError::System(format!(
            "cannot reach the manager at {}: {detail}. Is swarmd running? \
             Point -s/--socket or SWARM_SOCKET at its control socket.",
            socket.display()
        ))
    }

    /// Classify a gRPC status. Refusals keep the manager's message as it is
    /// (`spec.replicas: must be >= 0`); the rest says what went wrong with the manager.
    pub fn from_status(socket: &Path, status: &tonic::Status) -> Self {
        let message = status.message();
        match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::ResourceExhausted
            | Code::Ok => CliError::User(message.to_string()),
            // A status made on this side (no answer from the server) carries its cause as source.
            Code::Unavailable if std::error::Error::source(status).is_some() => {
                Self::unreachable(socket, deepest_cause(status))
            }
            Code::Unavailable => CliError::System(format!(
                "the manager at {} is unavailable: {message}. Retry when the cluster has a leader.",
                socket.display()
            )),
            // swarmctl cancels nothing itself: a cancelled call is its --timeout expiring.
            Code::DeadlineExceeded | Code::Cancelled => CliError::System(format!(
                "the manager at {} did not answer in time ({message}). Check that the cluster has a \
                 leader, or allow more time with --timeout.",
                socket.display()
            )),
            Code::Unimplemented => CliError::System(format!(
                "the manager does not support this request ({message}); is it older than swarmctl?"
            )),
            Code::Internal | Code::Unknown | Code::DataLoss => {
                CliError::System(format!("the manager failed: {message}"))
            }
        }
    }
}

/// The deepest cause of a transport failure, with the OS error code suffix removed
/// (`No such file or directory` rather than `No such file or directory (os error 2)`).
pub fn deepest_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = error;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    if let Some(io) = deepest.downcast_ref::<std::io::Error>() {
        return io_detail(io);
    }
    deepest.to_string()
}

/// An IO error's text without its `(os error N)` suffix.
pub fn io_detail(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_message_and_exit_1() {
        let socket = Path::new("/s.sock");
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::Aborted,
        ] {
            let err = CliError::from_status(
                socket,
                &tonic::Status::new(code, "spec.replicas: must be >= 0"),
            );
            assert_eq!(err.exit_code(), 1, "{code:?}");
            assert_eq!(err.to_string(), "spec.replicas: must be >= 0");
        }
    }

    #[test]
    fn failures_of_the_manager_exit_2() {
        let socket = Path::new("/s.sock");
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unimplemented,
        ] {
            let err = CliError::from_status(socket, &tonic::Status::new(code, "boom"));
            assert_eq!(err.exit_code(), 2, "{code:?}");
            assert!(err.to_string().contains("boom"), "{err}");
        }
    }

    #[test]
    fn io_detail_drops_the_os_error_code() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_detail(&err), "No such file or directory");
        let unreachable = CliError::unreachable(Path::new("./x.sock"), io_detail(&err));
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the manager at ./x.sock: No such file or directory. Is swarmd running? \
             Point -s/--socket or SWARM_SOCKET at its control socket."
        );
    }
}
