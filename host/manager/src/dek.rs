//! The raft data encryption key (DEK, SwarmKit's): `<raft dir>/dek` holds the 32-byte key that
//! encrypts this manager's raft log and snapshots at rest. Without autolock it is stored plain
//! (mode 0600); with autolock it is wrapped (ChaCha20-Poly1305) by a key encryption key, the
//! unlock key `SWMKEY-1-<base64 of 32 bytes>`, which is never written to disk: the manager is
//! shown it once when the DEK is created and must be given it (`--unlock-key`) at every start.
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

use parking_lot::Mutex;
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

/// The DEK, and the unlock key when it was just created locked (to show once).
pub(crate) struct Dek {
    pub(crate) key: [u8; 32],
    pub(crate) new_unlock_key: Option<String>,
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

/// Reads this manager's DEK, creating it (locked when `autolock`) when there is none.
/// A locked DEK needs `unlock_key`.
pub(crate) fn load_or_create(
    raft_dir: &Path,
    autolock: bool,
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
                             SWMKEY-1-... (the unlock key shown when its key was created)"
                                .into(),
                        ));
                    };
                    let kek = parse_unlock_key(unlock_key)
                        .map_err(|e| ManagerError::InvalidArgument(format!("--unlock-key: {e}")))?;
                    unwrap(&kek, &bytes).ok_or_else(|| {
                        ManagerError::InvalidArgument(
                            "--unlock-key: wrong unlock key for this manager".into(),
                        )
                    })?
                }
                _ => return Err(corrupt("unknown kind")),
            };
            return Ok(Dek {
                key,
                new_unlock_key: None,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage(e)),
    }
    let key: [u8; 32] = rand::random();
    let new_unlock_key = if autolock {
        Some(lock_with_new_key(raft_dir, &key)?)
    } else {
        write_file(raft_dir, &format!("{HEADER} plain {}\n", B64.encode(key)))?;
        None
    };
    Ok(Dek {
        key,
        new_unlock_key,
    })
}

/// Wraps `dek` with a new unlock key, stores it, and returns the unlock key.
fn lock_with_new_key(raft_dir: &Path, dek: &[u8; 32]) -> Result<String, ManagerError> {
    let kek: [u8; 32] = rand::random();
    let wrapped = wrap(&kek, dek)?;
    write_file(
        raft_dir,
        &format!("{HEADER} locked {}\n", B64.encode(wrapped)),
    )?;
    Ok(format_unlock_key(&kek))
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

/// The `Unlock` service of a running manager: shows and rotates its unlock key.
pub(crate) struct UnlockService {
    raft_dir: PathBuf,
    dek: [u8; 32],
    /// The current unlock key; `None` while autolock is off.
    unlock_key: Arc<Mutex<Option<String>>>,
}

impl UnlockService {
    pub(crate) fn new(raft_dir: PathBuf, dek: [u8; 32], unlock_key: Option<String>) -> Self {
        Self {
            raft_dir,
            dek,
            unlock_key: Arc::new(Mutex::new(unlock_key)),
        }
    }
}

#[tonic::async_trait]
impl pb::unlock_server::Unlock for UnlockService {
    async fn get_unlock_key(
        &self,
        request: Request<pb::GetUnlockKeyRequest>,
    ) -> Result<Response<pb::GetUnlockKeyResponse>, Status> {
        let mut current = self.unlock_key.lock();
        if request.into_inner().rotate {
            let key = lock_with_new_key(&self.raft_dir, &self.dek).map_err(Status::from)?;
            tracing::info!("the unlock key was rotated; autolock is on");
            *current = Some(key);
        }
        Ok(Response::new(pb::GetUnlockKeyResponse {
            unlock_key: current.clone().unwrap_or_default(),
        }))
    }

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
    async fn get_unlock_key(
        &self,
        _request: Request<pb::GetUnlockKeyRequest>,
    ) -> Result<Response<pb::GetUnlockKeyResponse>, Status> {
        Err(Status::failed_precondition(
            "this manager is locked: unlock it first (swarmctl node unlock)",
        ))
    }

    async fn unlock_node(
        &self,
        request: Request<pb::UnlockNodeRequest>,
    ) -> Result<Response<pb::UnlockNodeResponse>, Status> {
        let key = request.into_inner().unlock_key.trim().to_owned();
        load_or_create(&self.raft_dir, false, Some(&key)).map_err(Status::from)?;
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
        let first = load_or_create(dir.path(), false, None).expect("create");
        assert!(first.new_unlock_key.is_none());
        let mode = std::fs::metadata(dir.path().join(DEK_FILE))
            .expect("dek")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(dir.path(), false, None).expect("load");
        assert_eq!(first.key, again.key);
    }

    #[test]
    fn a_locked_key_needs_the_unlock_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let created = load_or_create(dir.path(), true, None).expect("create");
        let unlock = created.new_unlock_key.expect("unlock key shown");
        assert!(unlock.starts_with("SWMKEY-1-"), "{unlock}");
        let on_disk = std::fs::read_to_string(dir.path().join(DEK_FILE)).expect("dek");
        assert!(!on_disk.contains(&B64.encode(created.key)));
        let locked = load_or_create(dir.path(), true, None)
            .err()
            .expect("locked");
        assert!(locked.to_string().contains("--unlock-key"), "{locked}");
        let wrong = format_unlock_key(&[9; 32]);
        let error = load_or_create(dir.path(), true, Some(&wrong))
            .err()
            .expect("wrong key");
        assert!(error.to_string().contains("wrong unlock key"), "{error}");
        let opened = load_or_create(dir.path(), false, Some(&unlock)).expect("unlock");
        assert_eq!(opened.key, created.key);
        assert!(opened.new_unlock_key.is_none());
        assert!(parse_unlock_key("SWMKEY-1-abc").is_err());
    }

    #[tokio::test]
    async fn rotating_wraps_the_same_key_with_a_new_unlock_key() {
        use pb::unlock_server::Unlock as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let created = load_or_create(dir.path(), false, None).expect("create plain");
        let service = UnlockService::new(dir.path().to_path_buf(), created.key, None);
        let shown = service
            .get_unlock_key(Request::new(pb::GetUnlockKeyRequest { rotate: false }))
            .await
            .expect("show");
        assert_eq!(shown.into_inner().unlock_key, "", "autolock is off");
        let first = service
            .get_unlock_key(Request::new(pb::GetUnlockKeyRequest { rotate: true }))
            .await
            .expect("rotate")
            .into_inner()
            .unlock_key;
        assert!(is_locked(dir.path()));
        let second = service
            .get_unlock_key(Request::new(pb::GetUnlockKeyRequest { rotate: true }))
            .await
            .expect("rotate again")
            .into_inner()
            .unlock_key;
        assert_ne!(first, second);
        assert!(load_or_create(dir.path(), false, Some(&first)).is_err());
        let opened = load_or_create(dir.path(), false, Some(&second)).expect("new key");
        assert_eq!(opened.key, created.key);
        let refused = service
            .unlock_node(Request::new(pb::UnlockNodeRequest { unlock_key: second }))
            .await
            .expect_err("not locked");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    }
}
