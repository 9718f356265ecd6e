//! The agent's configuration: built by the caller, validated in one step, passed explicitly.

use std::path::PathBuf;

use swarm_types::NodeDescription;

use crate::error::AgentError;

/// File name of the task database inside [`AgentConfig::state_dir`].
pub const TASK_DB_FILE: &str = "worker.redb";

/// What an agent needs to run. Every field must be chosen by the caller (no `Default`).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's id, presented when the session is opened.
    pub node_id: String,
    /// The manager's dispatcher address, `host:port` (e.g. `127.0.0.1:4242`).
    pub manager_addr: String,
    /// Where the agent keeps its files (the task database `worker.redb`). Created if missing.
    pub state_dir: PathBuf,
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
        validate_addr(&self.manager_addr)?;
        if self.state_dir.as_os_str().is_empty() {
            return Err(invalid("state_dir", "must not be empty"));
        }
        Ok(())
    }

    /// Path of the task database.
    /// Where installed executors delivered with assignments are kept, so a restarted agent
    /// loads them before it adopts the tasks they run: `<name>.wasm` and `<name>.json`.
    pub fn executors_dir(&self) -> PathBuf {
        self.state_dir.join("executors")
    }

    pub fn task_db_path(&self) -> PathBuf {
        self.state_dir.join(TASK_DB_FILE)
    }
}

fn validate_addr(addr: &str) -> Result<(), AgentError> {
    if addr.contains("://") {
        return Err(invalid(
            "manager_addr",
            format!("{addr:?}: give host:port without a scheme"),
        ));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(invalid(
            "manager_addr",
            format!("{addr:?}: expected host:port, e.g. 127.0.0.1:4242"),
        ));
    };
    if host.is_empty() {
        return Err(invalid(
            "manager_addr",
            format!("{addr:?}: the host is empty"),
        ));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid(
            "manager_addr",
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
            manager_addr: "127.0.0.1:4242".into(),
            state_dir: PathBuf::from("/tmp/agent"),
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
        let named = AgentConfig {
            manager_addr: "manager.example:4242".into(),
            ..config()
        };
        named.validate().expect("valid with a host name");
        let ipv6 = AgentConfig {
            manager_addr: "[::1]:4242".into(),
            ..config()
        };
        ipv6.validate().expect("valid with an IPv6 address");
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
                    manager_addr: "127.0.0.1".into(),
                    ..config()
                },
                "manager_addr",
            ),
            (
                AgentConfig {
                    manager_addr: "http://127.0.0.1:4242".into(),
                    ..config()
                },
                "manager_addr",
            ),
            (
                AgentConfig {
                    manager_addr: "127.0.0.1:0".into(),
                    ..config()
                },
                "manager_addr",
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
