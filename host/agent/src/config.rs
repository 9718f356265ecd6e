//! The agent's configuration: built by the caller, validated in one step, passed explicitly.

use std::path::PathBuf;
use std::sync::Arc;

use swarm_types::NodeDescription;

use crate::error::AgentError;

/// File name of the task database inside [`AgentConfig::state_dir`].
pub const TASK_DB_FILE: &str = "worker.redb";

/// Makes the channel to a manager's dispatcher at `host:port` (e.g. with TLS). The channel may
/// connect lazily: registration's deadline covers its first connection.
pub type ChannelMaker =
    Arc<dyn Fn(&str) -> Result<tonic::transport::Channel, String> + Send + Sync>;

/// What an agent needs to run. Every field must be chosen by the caller (no `Default`).
#[derive(Clone)]
pub struct AgentConfig {
    /// This node's id, presented when the session is opened.
    pub node_id: String,
    /// The managers' dispatcher addresses to start with, `host:port` (e.g. `127.0.0.1:4242`);
    /// at least one. Duplicates are ignored. The dispatcher's announcements replace the list.
    pub managers: Vec<String>,
    /// How to make the channel to a manager; `None`: plain HTTP/2 over TCP.
    pub channels: Option<ChannelMaker>,
    /// Where the agent keeps its files (the task database `worker.redb`). Created if missing.
    pub state_dir: PathBuf,
    /// Where tasks' secret and config files are written (`<dir>/<task id>/secrets/..`); it
    /// should be on a tmpfs, so secrets never reach a disk (swarmd picks one under `/dev/shm`).
    /// Created if missing, mode 0700.
    pub files_dir: PathBuf,
    /// What the node reports about itself. An empty `executor` or `runtimes` is filled in from
    /// the executor's own description.
    pub description: NodeDescription,
}

impl AgentConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.node_id.trim().is_empty() {
            return Err(invalid("node_id", "must not be empty"));
        }
        if self.node_id.chars().any(char::is_whitespace) {
            return Err(invalid("node_id", "must not contain whitespace"));
        }
        if self.managers.is_empty() {
            return Err(invalid("managers", "name at least one manager (host:port)"));
        }
        for addr in &self.managers {
            validate_addr("managers", addr)?;
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(invalid("state_dir", "must not be empty"));
        }
        if !self.files_dir.is_absolute() {
            return Err(invalid("files_dir", "must be an absolute path"));
        }
        Ok(())
    }

    /// Where installed executors delivered with assignments are kept, so a restarted agent
    /// loads them before it adopts the tasks they run: `<name>.wasm` and `<name>.json`.
    pub fn executors_dir(&self) -> PathBuf {
        self.state_dir.join("executors")
    }

    /// Path of the task database.
    pub fn task_db_path(&self) -> PathBuf {
        self.state_dir.join(TASK_DB_FILE)
    }
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("node_id", &self.node_id)
            .field("managers", &self.managers)
            .field(
                "channels",
                &self.channels.as_ref().map(|_| "<channel maker>"),
            )
            .field("state_dir", &self.state_dir)
            .field("files_dir", &self.files_dir)
            .field("description", &self.description)
            .finish()
    }
}

/// Checks a `host:port` address; the error names `field`.
pub(crate) fn validate_addr(field: &'static str, addr: &str) -> Result<(), AgentError> {
    if addr.contains("://") {
        return Err(invalid(
            field,
            format!("{addr:?}: give host:port without a scheme"),
        ));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(invalid(
            field,
            format!("{addr:?}: expected host:port, e.g. 127.0.0.1:4242"),
        ));
    };
    if host.is_empty() {
        return Err(invalid(field, format!("{addr:?}: the host is empty")));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid(
            field,
            format!("{addr:?}: the port must be a number from 1 to 65535"),
        )),
        Ok(_) => Ok(()),
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> AgentError {
    AgentError::InvalidConfig {
        field,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig {
            node_id: "node-1".into(),
            managers: vec!["127.0.0.1:4242".into()],
            channels: None,
            state_dir: PathBuf::from("/tmp/agent"),
            files_dir: PathBuf::from("/dev/shm/agent"),
            description: NodeDescription::default(),
        }
    }

    fn must_fail(config: AgentConfig) -> String {
        match config.validate() {
            Err(error) => error.to_string(),
            Ok(()) => panic!("config should be refused: {config:?}"),
        }
    }

    #[test]
    fn a_good_config_passes() {
        config().validate().expect("valid");
        let several = AgentConfig {
            managers: vec![
                "127.0.0.1:4242".into(),
                "manager.example:4242".into(),
                "[::1]:4242".into(),
                "127.0.0.1:4242".into(),
            ],
            ..config()
        };
        several
            .validate()
            .expect("valid with host names, IPv6 addresses and a duplicate");
        let with_channels = AgentConfig {
            channels: Some(Arc::new(|addr: &str| Err(format!("no channel to {addr}")))),
            ..config()
        };
        with_channels
            .validate()
            .expect("valid with a channel maker");
        let debug = format!("{with_channels:?}");
        assert!(debug.contains("<channel maker>"), "{debug}");
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (
                AgentConfig {
                    node_id: " ".into(),
                    ..config()
                },
                "node_id",
            ),
            (
                AgentConfig {
                    managers: vec!["127.0.0.1:4242".into(), "127.0.0.1".into()],
                    ..config()
                },
                "managers",
            ),
            (
                AgentConfig {
                    managers: vec!["127.0.0.1:4242".into(), "http://127.0.0.1:4242".into()],
                    ..config()
                },
                "managers",
            ),
            (
                AgentConfig {
                    managers: vec!["127.0.0.1:4242".into(), "127.0.0.1:0".into()],
                    ..config()
                },
                "managers",
            ),
            (
                AgentConfig {
                    managers: Vec::new(),
                    ..config()
                },
                "managers",
            ),
            (
                AgentConfig {
                    state_dir: PathBuf::new(),
                    ..config()
                },
                "state_dir",
            ),
        ];
        for (config, field) in cases {
            let message = must_fail(config);
            assert!(message.contains(field), "{message:?} should name {field}");
        }
    }
}
