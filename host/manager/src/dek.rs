//! The raft data encryption key (DEK, SwarmKit's): `<raft dir>/dek` holds the 32-byte key that
//! encrypts this manager's raft log and snapshots at rest. Without autolock it is stored plain
//! (mode 0600); with autolock it is wrapped (ChaCha20-Poly1305) by a key encryption key, the
//! cluster's unlock key `SWMKEY-1-<base64 of 32 bytes>`, which is never written to disk outside
//! the (encrypted) raft data: one key for every manager, kept in the cluster object
//! ([`swarm_types::RootCaState::unlock_key`]) and needed at every start (`--unlock-key` or
//! `swarmctl node unlock`). [`keep_wrapped`] wraps this manager's DEK again whenever the
//! cluster's key changes (autolock turned on or off, key rotated).
//!
//! File format, one line: `SWARM-DEK-1 plain <base64 key>` or
//! `SWARM-DEK-1 locked <base64 nonce+ciphertext>`.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::KeyInit;
use chacha20poly1305::Nonce;
use chacha20poly1305::aead::Aead;

use std::path::PathBuf;
use std::sync::Arc;

use swarm_proto::pb;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::ManagerError;

/// The DEK file's name inside the raft directory.
pub const DEK_FILE: &str = "dek";
const HEADER: &str = "SWARM-DEK-1";
const UNLOCK_KEY_PREFIX: &str = "SWMKEY-1-";
const NONCE_LEN: usize = 12;
/// How soon a failed re-wrap of the DEK is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The DEK.
pub(crate) struct Dek {
    pub(crate) key: [u8; 32],
}

/// A new unlock key, `SWMKEY-1-<base64 of 32 random bytes>`.
pub(crate) fn new_unlock_key() -> String {
    format_unlock_key(&rand::random())
}

/// Parses an unlock key (`SWMKEY-1-<base64>`) into the key encryption key.
pub fn parse_unlock_key(text: &str) -> Result<[u8; 32], String> {
    let body = text
        .trim()
        .strip_prefix(UNLOCK_KEY_PREFIX)
        .ok_or_else(|| format!("an unlock key starts with {UNLOCK_KEY_PREFIX}"))?;
    let bytes = B64
        .decode(body.trim_end_matches('='))
        .map_err(|e| format!("the unlock key is not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| format!("the unlock key holds {} bytes, not 32", bytes.len()))
}

fn format_unlock_key(kek: &[u8; 32]) -> String {
    format!("{UNLOCK_KEY_PREFIX}{}", B64.encode(kek))
}

fn wrap(kek: &[u8; 32], dek: &[u8; 32]) -> Result<Vec<u8>, ManagerError> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = ChaCha20Poly1305::new(kek.into())
        .encrypt(Nonce::from_slice(&nonce), dek.as_slice())
        .map_err(|_| ManagerError::Internal("wrapping the raft key".into()))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

fn unwrap(kek: &[u8; 32], wrapped: &[u8]) -> Option<[u8; 32]> {
    let (nonce, sealed) = wrapped.split_at_checked(NONCE_LEN)?;
    let plain = ChaCha20Poly1305::new(kek.into())
        .decrypt(Nonce::from_slice(nonce), sealed)
        .ok()?;
    plain.try_into().ok()
}

/// Reads this manager's DEK, creating it (wrapped by `lock_new_with` when given, else plain)
/// when there is none. A locked DEK needs `unlock_key`.
pub(crate) fn load_or_create(
    raft_dir: &Path,
    lock_new_with: Option<&str>,
    unlock_key: Option<&str>,
) -> Result<Dek, ManagerError> {
    let path = raft_dir.join(DEK_FILE);
    let storage =
        |e: std::io::Error| ManagerError::Unavailable(format!("raft key {}: {e}", path.display()));
    let corrupt = |reason: &str| {
        ManagerError::FailedPrecondition(format!("raft key {}: {reason}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut parts = text.split_whitespace();
            if parts.next() != Some(HEADER) {
                return Err(corrupt("unknown format"));
            }
            let kind = parts.next();
            let bytes = parts
                .next()
                .and_then(|b| B64.decode(b.trim_end_matches('=')).ok())
                .ok_or_else(|| corrupt("no key"))?;
            let key = match kind {
                Some("plain") => bytes.try_into().map_err(|_| corrupt("not 32 bytes"))?,
                Some("locked") => {
                    let Some(unlock_key) = unlock_key else {
                        return Err(ManagerError::FailedPrecondition(
                            "this manager is locked (autolock): start it with --unlock-key \
                             SWMKEY-1-... (the cluster's unlock key; `swarmctl cluster \
                             unlock-key` on another manager shows it)"
                                .into(),
                        ));
                    };
                    let kek = parse_unlock_key(unlock_key)
                        .map_err(|e| ManagerError::InvalidArgument(format!("--unlock-key: {e}")))?;
                    unwrap(&kek, &bytes).ok_or_else(|| {
                        ManagerError::InvalidArgument(
                            "--unlock-key: wrong unlock key for this manager (after a rotation, \
                             a manager that was down needs the key from before it)"
                                .into(),
                        )
                    })?
                }
                _ => return Err(corrupt("unknown kind")),
            };
            return Ok(Dek { key });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage(e)),
    }
    let key: [u8; 32] = rand::random();
    store(raft_dir, &key, lock_new_with)?;
    Ok(Dek { key })
}

/// Stores `dek` wrapped by `unlock_key`, or plain when there is none.
pub(crate) fn store(
    raft_dir: &Path,
    dek: &[u8; 32],
    unlock_key: Option<&str>,
) -> Result<(), ManagerError> {
    match unlock_key {
        Some(text) => {
            let kek = parse_unlock_key(text)
                .map_err(|e| ManagerError::Internal(format!("the cluster's unlock key: {e}")))?;
            let wrapped = wrap(&kek, dek)?;
            write_file(
                raft_dir,
                &format!("{HEADER} locked {}\n", B64.encode(wrapped)),
            )
        }
        None => write_file(raft_dir, &format!("{HEADER} plain {}\n", B64.encode(dek))),
    }
}

/// Whether this manager already has a DEK.
pub(crate) fn exists(raft_dir: &Path) -> bool {
    raft_dir.join(DEK_FILE).exists()
}

/// Keeps this manager's DEK wrapped by the cluster's unlock key (plain while autolock is off),
/// from the store's cluster object, until `cancel`. `wrapped_with` is the key it is wrapped by
/// now. The key itself is never logged.
pub(crate) async fn keep_wrapped(
    store: Arc<swarm_store::MemoryStore>,
    raft_dir: PathBuf,
    dek: [u8; 32],
    mut wrapped_with: Option<String>,
    cancel: CancellationToken,
) {
    use swarm_store::StoreRead as _;
    let mut watcher = store.watch();
    loop {
        let mut failed = false;
        // No cluster object yet (a joining manager catching up): leave the key as it is.
        let wanted = store.view(|tx| tx.cluster().map(|c| c.root_ca.unlock_key.clone()));
        if let Some(wanted) = wanted.map(|k| Some(k).filter(|k| !k.is_empty()))
            && wanted != wrapped_with
        {
            match store_blocking(&raft_dir, dek, wanted.clone()).await {
                Ok(()) => {
                    if wanted.is_some() {
                        tracing::info!("raft key wrapped with the cluster's unlock key (autolock)");
                    } else {
                        tracing::info!("raft key stored unwrapped: autolock is off");
                    }
                    wrapped_with = wanted;
                }
                Err(error) => {
                    tracing::error!(%error, "wrapping the raft key again; retrying in 1s");
                    failed = true;
                }
            }
        }
        // Look again after a change of the cluster object (or a resync), or a second after a
        // failure.
        loop {
            let update = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RETRY), if failed => break,
                update = crate::watch::next(&mut watcher) => update,
            };
            match update {
                crate::watch::Update::Closed => return,
                crate::watch::Update::Changes(changes) if changes.clusters().next().is_none() => {}
                _ => break,
            }
        }
    }
}

async fn store_blocking(
    raft_dir: &Path,
    dek: [u8; 32],
    unlock_key: Option<String>,
) -> Result<(), ManagerError> {
    let raft_dir = raft_dir.to_path_buf();
    tokio::task::spawn_blocking(move || store(&raft_dir, &dek, unlock_key.as_deref()))
        .await
        .map_err(|e| ManagerError::Internal(format!("wrapping the raft key: {e}")))?
}

/// Whether this manager's raft key is locked (autolock).
pub(crate) fn is_locked(raft_dir: &Path) -> bool {
    std::fs::read_to_string(raft_dir.join(DEK_FILE))
        .is_ok_and(|text| text.split_whitespace().nth(1) == Some("locked"))
}

/// Writes the DEK file atomically (mode 0600, fsync'd, renamed, directory fsync'd).
fn write_file(raft_dir: &Path, line: &str) -> Result<(), ManagerError> {
    let path = raft_dir.join(DEK_FILE);
    let storage =
        |e: std::io::Error| ManagerError::Unavailable(format!("raft key {}: {e}", path.display()));
    std::fs::create_dir_all(raft_dir).map_err(storage)?;
    let temp = raft_dir.join(format!("{DEK_FILE}.tmp"));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(storage)?;
        file.write_all(line.as_bytes()).map_err(storage)?;
        file.sync_all().map_err(storage)?;
    }
    std::fs::rename(&temp, &path).map_err(storage)?;
    std::fs::File::open(raft_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(storage)?;
    Ok(())
}

/// The `Unlock` service of a running manager: there is nothing to unlock.
pub(crate) struct UnlockService;

#[tonic::async_trait]
impl pb::unlock_server::Unlock for UnlockService {
    async fn unlock_node(
        &self,
        _request: Request<pb::UnlockNodeRequest>,
    ) -> Result<Response<pb::UnlockNodeResponse>, Status> {
        Err(Status::failed_precondition("this manager is not locked"))
    }
}

/// The `Unlock` service of a manager waiting at start: takes the unlock key.
struct LockedService {
    raft_dir: PathBuf,
    unlocked: tokio::sync::mpsc::Sender<String>,
}

#[tonic::async_trait]
impl pb::unlock_server::Unlock for LockedService {
    async fn unlock_node(
        &self,
        request: Request<pb::UnlockNodeRequest>,
    ) -> Result<Response<pb::UnlockNodeResponse>, Status> {
        let key = request.into_inner().unlock_key.trim().to_owned();
        load_or_create(&self.raft_dir, None, Some(&key)).map_err(Status::from)?;
        self.unlocked
            .send(key)
            .await
            .map_err(|_| Status::unavailable("the manager stopped"))?;
        Ok(Response::new(pb::UnlockNodeResponse {}))
    }
}

/// Serves only the `Unlock` service on the control socket until a right unlock key arrives
/// (`swarmctl node unlock`), and returns it; `None` when `cancel` fires first.
pub(crate) async fn wait_for_unlock(
    raft_dir: &Path,
    control_socket: &Path,
    cancel: &CancellationToken,
) -> Result<Option<String>, ManagerError> {
    let socket = crate::bind_control_socket(control_socket)?;
    let (unlocked, mut keys) = tokio::sync::mpsc::channel(1);
    let service = LockedService {
        raft_dir: raft_dir.to_path_buf(),
        unlocked,
    };
    let stop = cancel.child_token();
    let shutdown = stop.clone();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::unlock_server::UnlockServer::new(service))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(socket),
                shutdown.cancelled(),
            )
            .await
    });
    tracing::warn!(
        socket = %control_socket.display(),
        "this manager is locked (autolock): waiting for `swarmctl node unlock`"
    );
    let key = tokio::select! {
        () = cancel.cancelled() => None,
        key = keys.recv() => key,
    };
    stop.cancel();
    let _ = server.await;
    if key.is_some() {
        tracing::info!("unlocked");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_key_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path(), None, None).expect("create");
        assert!(!is_locked(dir.path()));
        let mode = std::fs::metadata(dir.path().join(DEK_FILE))
            .expect("dek")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(dir.path(), None, None).expect("load");
        assert_eq!(first.key, again.key);
    }

    #[test]
    fn a_locked_key_needs_the_unlock_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unlock = new_unlock_key();
        assert!(unlock.starts_with("SWMKEY-1-"), "{unlock}");
        let created = load_or_create(dir.path(), Some(&unlock), None).expect("create");
        assert!(is_locked(dir.path()));
        let on_disk = std::fs::read_to_string(dir.path().join(DEK_FILE)).expect("dek");
        assert!(!on_disk.contains(&B64.encode(created.key)));
        let locked = load_or_create(dir.path(), None, None)
            .err()
            .expect("locked");
        assert!(locked.to_string().contains("--unlock-key"), "{locked}");
        let wrong = new_unlock_key();
        let error = load_or_create(dir.path(), None, Some(&wrong))
            .err()
            .expect("wrong key");
        assert!(error.to_string().contains("wrong unlock key"), "{error}");
        let opened = load_or_create(dir.path(), None, Some(&unlock)).expect("unlock");
        assert_eq!(opened.key, created.key);
        assert!(parse_unlock_key("SWMKEY-1-abc").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_key_follows_the_clusters_unlock_key() {
        use swarm_store::{Action, Batch, MemoryStore, Object};
        let dir = tempfile::tempdir().expect("tempdir");
        let dek = load_or_create(dir.path(), None, None)
            .expect("create plain")
            .key;
        let store = Arc::new(MemoryStore::new());
        let cancel = CancellationToken::new();
        let keeper = tokio::spawn(keep_wrapped(
            store.clone(),
            dir.path().to_path_buf(),
            dek,
            None,
            cancel.clone(),
        ));
        let mut cluster = swarm_types::Cluster {
            id: "c1".into(),
            meta: Default::default(),
            spec: swarm_types::ClusterSpec::with_defaults(),
            root_ca: Default::default(),
        };
        let set_key = |cluster: &mut swarm_types::Cluster, key: &str, index: u64| {
            cluster.root_ca.unlock_key = key.to_string();
            let action = if index == 1 {
                Action::Create(Object::Cluster(cluster.clone()))
            } else {
                Action::Update(Object::Cluster(cluster.clone()))
            };
            store.apply(index, Batch::new(vec![action])).expect("apply");
            cluster.meta.version = index;
        };
        let opens_with = |key: Option<&str>| {
            load_or_create(dir.path(), None, key).is_ok_and(|opened| opened.key == dek)
        };
        let wait = |what: &str, check: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !check() {
                assert!(std::time::Instant::now() < deadline, "timed out: {what}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        let first = new_unlock_key();
        set_key(&mut cluster, &first, 1);
        wait("locked with the first key", &|| {
            is_locked(dir.path()) && opens_with(Some(&first))
        });
        let second = new_unlock_key();
        set_key(&mut cluster, &second, 2);
        wait("locked with the rotated key", &|| opens_with(Some(&second)));
        assert!(!opens_with(Some(&first)), "the old key stops working");
        set_key(&mut cluster, "", 3);
        wait("stored plain", &|| !is_locked(dir.path()));
        assert!(opens_with(None));
        cancel.cancel();
        keeper.await.expect("keeper");
    }
}
