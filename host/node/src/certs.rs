//! The node's certificates under `<state>/certificates/`: the root CA it trusts, its own
//! certificate and key (mode 0600). Creating a new cluster's CA, joining with a token, and the
//! known managers a worker reconnects to after a restart.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use swarm_ca::{NODE_VALIDITY, NodeIdentity, NodeKey, RootCa};
use swarm_types::{JoinToken, NodeRole, RootCaState};

use crate::NodeError;

/// Directory of the certificates inside the state directory.
pub const CERTS_DIR: &str = "certificates";
const ROOT_FILE: &str = "swarm-root-ca.crt";
const CERT_FILE: &str = "swarm-node.crt";
const KEY_FILE: &str = "swarm-node.key";
/// Managers a node reconnects to after a restart, one `host:port` per line.
const MANAGERS_FILE: &str = "managers";

fn state_err(path: &Path, message: String) -> NodeError {
    NodeError::StateDir {
        path: path.display().to_string(),
        message,
    }
}

/// The certificate files of one state directory.
#[derive(Debug, Clone)]
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join(CERTS_DIR),
        }
    }

    /// The node's identity, if it has one. An unreadable or inconsistent set is an error that
    /// names the file; a certificate that expired while the node was off is returned as is (the
    /// caller decides: rejoin with a token, or explain).
    pub fn load(&self) -> Result<Option<NodeIdentity>, NodeError> {
        let cert_path = self.dir.join(CERT_FILE);
        if !cert_path.exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let path = self.dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| state_err(&path, format!("reading: {e}")))
        };
        let identity = NodeIdentity::new(&read(CERT_FILE)?, &read(KEY_FILE)?, &read(ROOT_FILE)?)
            .map_err(|e| {
                state_err(
                    &self.dir,
                    format!(
                        "the node's certificates are not usable: {e}; remove {} and join again",
                        self.dir.display()
                    ),
                )
            })?;
        Ok(Some(identity))
    }

    /// Writes a certificate set (each file fsync'd, then renamed into place; the key 0600).
    pub fn save(&self, cert_pem: &str, key_pem: &str, root_pem: &str) -> Result<(), NodeError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| state_err(&self.dir, format!("creating: {e}")))?;
        write_file(&self.dir.join(ROOT_FILE), root_pem, 0o644)?;
        write_file(&self.dir.join(KEY_FILE), key_pem, 0o600)?;
        write_file(&self.dir.join(CERT_FILE), cert_pem, 0o644)?;
        Ok(())
    }

    /// The managers saved by [`Certificates::save_managers`].
    pub fn managers(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(MANAGERS_FILE))
            .map(|text| {
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remembers the managers to reconnect to after a restart.
    pub fn save_managers(&self, managers: &[String]) -> Result<(), NodeError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| state_err(&self.dir, format!("creating: {e}")))?;
        let mut text = managers.join("\n");
        text.push('\n');
        write_file(&self.dir.join(MANAGERS_FILE), &text, 0o644)
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), NodeError> {
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&temp)
        .map_err(|e| state_err(&temp, format!("writing: {e}")))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| state_err(&temp, format!("writing: {e}")))?;
    std::fs::rename(&temp, path).map_err(|e| state_err(path, format!("writing: {e}")))
}

/// A new cluster: its CA, tokens, and this first manager's certificate.
pub struct NewCluster {
    pub cluster_id: String,
    pub root_ca: RootCaState,
    pub identity: NodeIdentity,
}

/// Creates a new cluster's root CA and join tokens, and issues this node a manager certificate.
pub fn new_cluster(node_id: &str) -> Result<NewCluster, NodeError> {
    let ca_err = |e: swarm_ca::CaError| NodeError::Config(format!("creating the cluster CA: {e}"));
    let cluster_id = swarm_types::new_id();
    let root = RootCa::generate(&cluster_id).map_err(ca_err)?;
    let key_pem = NodeKey::generate().map_err(ca_err)?;
    let csr = NodeKey::csr(&key_pem, node_id).map_err(ca_err)?;
    let cert_pem = root
        .issue(&csr, node_id, NodeRole::Manager, &cluster_id, NODE_VALIDITY)
        .map_err(ca_err)?;
    let identity = NodeIdentity::new(&cert_pem, &key_pem, root.cert_pem()).map_err(ca_err)?;
    let digest = root.digest();
    let token = || JoinToken::new(digest, rand::random::<[u8; 16]>()).to_string();
    let root_ca = RootCaState {
        cert_pem: root.cert_pem().to_string(),
        key_pem: root
            .key_pem()
            .ok_or_else(|| NodeError::Config("the new root CA has no key".into()))?
            .to_string(),
        worker_token: token(),
        manager_token: token(),
        // Set by the manager when it creates the cluster with autolock.
        unlock_key: String::new(),
    };
    Ok(NewCluster {
        cluster_id,
        root_ca,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_cluster_pins_its_tokens_and_survives_a_save_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certificates::new(dir.path());
        assert!(certs.load().expect("empty").is_none());
        let cluster = new_cluster("node1").expect("new cluster");
        let tokens = cluster.root_ca.join_tokens().expect("tokens");
        let root = RootCa::from_pem(&cluster.root_ca.cert_pem, Some(&cluster.root_ca.key_pem))
            .expect("root");
        assert!(tokens.worker.pins(&root.digest()));
        assert!(tokens.manager.pins(&root.digest()));
        assert_ne!(tokens.worker, tokens.manager);
        assert_eq!(cluster.identity.info().role, NodeRole::Manager);
        certs
            .save(
                cluster.identity.cert_pem(),
                cluster.identity.key_pem(),
                &cluster.root_ca.cert_pem,
            )
            .expect("save");
        let loaded = certs.load().expect("load").expect("identity");
        assert_eq!(loaded.info(), cluster.identity.info());
        let mode = std::fs::metadata(dir.path().join(CERTS_DIR).join(KEY_FILE))
            .expect("key file")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_damaged_certificate_is_refused_naming_the_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certificates::new(dir.path());
        let cluster = new_cluster("node1").expect("new cluster");
        certs
            .save(
                "garbage",
                cluster.identity.key_pem(),
                &cluster.root_ca.cert_pem,
            )
            .expect("save");
        let error = certs.load().expect_err("garbage certificate").to_string();
        assert!(error.contains("join again"), "{error}");
    }

    #[test]
    fn managers_are_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certificates::new(dir.path());
        assert!(certs.managers().is_empty());
        let list = vec!["127.0.0.1:4242".to_string(), "127.0.0.1:4243".to_string()];
        certs.save_managers(&list).expect("save");
        assert_eq!(certs.managers(), list);
    }
}
