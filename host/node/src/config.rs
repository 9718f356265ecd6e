//! The node's configuration, built from swarmd's flags and validated in one step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::NodeError;

/// Which executor component the agent uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutorChoice {
    /// One of the plugins embedded in swarmd (see [`crate::embedded_executors`]).
    Embedded(String),
    /// A component file.
    File(PathBuf),
}

impl ExecutorChoice {
    /// Parse `--executor`: an embedded name, or a path to a `.wasm` component.
    pub fn parse(value: &str) -> Self {
        if value.ends_with(".wasm") || value.contains('/') {
            ExecutorChoice::File(PathBuf::from(value))
        } else {
            ExecutorChoice::Embedded(value.to_string())
        }
    }

    /// The plugin's name and bytes.
    pub(crate) fn component(&self) -> Result<(String, Vec<u8>), NodeError> {
        match self {
            ExecutorChoice::Embedded(name) => crate::embedded_executors()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(n, bytes)| (n.to_string(), bytes.to_vec()))
                .ok_or_else(|| {
                    let names: Vec<&str> = crate::embedded_executors().iter().map(|(n, _)| *n).collect();
                    NodeError::Config(format!(
                        "--executor: no embedded executor named {name:?}; choose one of {} or give a path to a .wasm component",
                        names.join(", ")
                    ))
                }),
            ExecutorChoice::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| NodeError::Config(format!("--executor: reading {}: {e}", path.display())))?;
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("custom").to_string();
                Ok((name, bytes))
            }
        }
    }
}

/// How one node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub state_dir: PathBuf,
    pub hostname: String,
    pub control_socket: PathBuf,
    pub listen_remote_api: SocketAddr,
    /// Address other nodes (and the local agent) use; defaults from the bound listener.
    pub advertise_remote_api: Option<String>,
    pub raft_tick: Duration,
    pub heartbeat_tick: u64,
    pub election_tick: u64,
    pub executor: ExecutorChoice,
    /// A manager to join through (`host:port`), with `join_token`, for a node that has not
    /// joined yet; a worker also reconnects to it after a restart.
    pub join_addr: Option<String>,
    /// The join token (`SWMTKN-1-...`) granting the role the node joins with.
    pub join_token: Option<String>,
    /// The container engine to probe at start (`unix:///var/run/docker.sock`, `tcp://host:port`):
    /// when it answers, the embedded docker executor becomes the node's default.
    pub engine_addr: String,
    /// Quorum-loss recovery (`--force-new-cluster`): a manager keeps its raft state and becomes
    /// the only manager; the other managers must join again.
    pub force_new_cluster: bool,
    /// Create the cluster with autolock on (SwarmKit's): managers' raft encryption keys are
    /// locked by the cluster's unlock key, shown once on stderr and needed at every start.
    pub autolock: bool,
    /// The unlock key (`SWMKEY-1-...`) of a locked manager.
    pub unlock_key: Option<String>,
}

impl NodeConfig {
    /// Check every field; the error names the flag at fault.
    pub fn validate(self) -> Result<Self, NodeError> {
        if self.state_dir.as_os_str().is_empty() {
            return Err(NodeError::Config("--state-dir: must not be empty".into()));
        }
        if self.hostname.trim().is_empty() {
            return Err(NodeError::Config("--hostname: must not be empty".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(NodeError::Config("--heartbeat-tick: must be >= 1".into()));
        }
        if self.election_tick <= self.heartbeat_tick.saturating_mul(2) {
            return Err(NodeError::Config(format!(
                "--election-tick: must be more than twice --heartbeat-tick ({})",
                self.heartbeat_tick
            )));
        }
        if self.force_new_cluster && self.join_addr.is_some() {
            return Err(NodeError::Config(
                "--force-new-cluster: cannot be combined with --join-addr (the node recovers \
                 its own state)"
                    .into(),
            ));
        }
        if self.join_token.is_some() && self.join_addr.is_none() {
            return Err(NodeError::Config(
                "--join-token: needs --join-addr (the manager to join through)".into(),
            ));
        }
        if let Some(token) = &self.join_token
            && let Err(e) = token.parse::<swarm_types::JoinToken>()
        {
            return Err(NodeError::Config(format!("--join-token: {e}")));
        }
        if let Some(addr) = &self.join_addr
            && addr
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(NodeError::Config(format!(
                "--join-addr: {addr:?} is not host:port"
            )));
        }
        let engine = &self.engine_addr;
        if !(engine.starts_with("unix://")
            || engine.starts_with("tcp://")
            || engine.starts_with("http://"))
        {
            return Err(NodeError::Config(format!(
                "--engine-addr: {engine:?}: use unix:///path/to/docker.sock, tcp://host:port or \
                 http://host:port"
            )));
        }
        if self.control_socket.as_os_str().len() > 100 {
            return Err(NodeError::Config(format!(
                "--listen-control-api: {} is too long for a unix socket path (at most 100 bytes)",
                self.control_socket.display()
            )));
        }
        Ok(self)
    }

    /// The advertised address: the flag, or the bound address (loopback if bound to any).
    pub(crate) fn advertise_addr(&self, bound: SocketAddr) -> String {
        if let Some(a) = &self.advertise_remote_api {
            return a.clone();
        }
        if bound.ip().is_unspecified() {
            return format!("127.0.0.1:{}", bound.port());
        }
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(engine_addr: &str) -> NodeConfig {
        NodeConfig {
            state_dir: PathBuf::from("/tmp/state"),
            hostname: "node-1".into(),
            control_socket: PathBuf::from("/tmp/state/swarmd.sock"),
            listen_remote_api: "127.0.0.1:0".parse().expect("addr"),
            advertise_remote_api: None,
            raft_tick: Duration::from_millis(100),
            heartbeat_tick: 1,
            election_tick: 10,
            executor: ExecutorChoice::Embedded("default".into()),
            join_addr: None,
            join_token: None,
            engine_addr: engine_addr.into(),
            force_new_cluster: false,
            autolock: false,
            unlock_key: None,
        }
    }

    #[test]
    fn force_new_cluster_recovers_its_own_state_only() {
        let mut forced = config(crate::DEFAULT_ENGINE_ADDR);
        forced.force_new_cluster = true;
        assert!(forced.clone().validate().is_ok());
        forced.join_addr = Some("127.0.0.1:4242".into());
        let error = forced.validate().expect_err("with --join-addr").to_string();
        assert!(error.starts_with("--force-new-cluster:"), "{error}");
    }

    #[test]
    fn engine_addresses_need_a_known_scheme() {
        for good in [
            crate::DEFAULT_ENGINE_ADDR,
            "tcp://127.0.0.1:2375",
            "http://docker:2375",
        ] {
            assert!(config(good).validate().is_ok(), "{good}");
        }
        for bad in ["/var/run/docker.sock", "ssh://host", ""] {
            let error = config(bad).validate().expect_err(bad).to_string();
            assert!(error.starts_with("--engine-addr:"), "{error}");
        }
    }
}
