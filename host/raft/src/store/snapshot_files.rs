//! Snapshot files under `<state_dir>/snapshots/`: written atomically, only the newest kept.
//!
//! A snapshot is written to a temporary file, fsync'd, renamed to `<snapshot id>.snap` and the
//! directory is fsync'd; only then are older snapshots removed. A crash at any point leaves
//! either the old or the new snapshot complete on disk (temporary files are removed at start).
//!
//! File layout: `MAGIC meta_len:u64be meta(JSON SnapshotMeta) data(application bytes)`. With a
//! key, the magic is `SWSNAP02` and `data` is `nonce ciphertext` of the application bytes, sealed
//! with the metadata as associated data.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use crate::store::cipher::Sealer;
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"SWSNAP01";
const MAGIC_SEALED: &[u8; 8] = b"SWSNAP02";
const SNAPSHOT_EXTENSION: &str = "snap";
const TEMP_EXTENSION: &str = "tmp";

/// The name of the snapshot directory inside the state directory.
pub(crate) const SNAPSHOT_DIR_NAME: &str = "snapshots";

#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotFileError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("snapshot file {0}: cannot decrypt: wrong key or corrupt")]
    Decrypt(PathBuf),
    #[error("snapshot file {0} is encrypted and no key was given")]
    NoKey(PathBuf),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotFileError {
    let path = path.to_path_buf();
    move |source| SnapshotFileError::Io {
        action,
        path,
        source,
    }
}

/// A snapshot read from disk: its metadata and the application's bytes.
pub(crate) type StoredSnapshot = (SnapshotMeta, Vec<u8>);

/// The snapshot directory. Writers are serialised and never replace a newer snapshot by an
/// older one (a snapshot build runs concurrently with snapshot installation in openraft).
#[derive(Debug)]
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    /// Seals the application bytes at rest when the node has a key.
    sealer: Option<Sealer>,
    /// The current snapshot's metadata and file; the lock also serialises all file operations.
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
}

impl SnapshotFiles {
    /// Opens the directory (creating it), removes leftovers and loads the newest snapshot.
    pub(crate) fn open(
        dir: PathBuf,
        sealer: Option<Sealer>,
    ) -> Result<(Arc<Self>, Option<StoredSnapshot>), SnapshotFileError> {
        fs::create_dir_all(&dir).map_err(io_error("creating snapshot directory", &dir))?;
        let mut newest: Option<(SnapshotMeta, Vec<u8>, PathBuf)> = None;
        let mut others = Vec::new();
        for item in fs::read_dir(&dir).map_err(io_error("listing", &dir))? {
            let path = item.map_err(io_error("listing", &dir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some(TEMP_EXTENSION) => others.push(path),
                Some(SNAPSHOT_EXTENSION) => {
                    let (meta, data) = read_file(&path, sealer.as_ref())?;
                    let newer = match &newest {
                        Some((best, _, _)) => meta.last_log_id > best.last_log_id,
                        None => true,
                    };
                    if newer {
                        if let Some((_, _, old)) = newest.replace((meta, data, path)) {
                            others.push(old);
                        }
                    } else {
                        others.push(path);
                    }
                }
                _ => {}
            }
        }
        for path in others {
            fs::remove_file(&path).map_err(io_error("removing old snapshot", &path))?;
        }
        let (current, loaded) = match newest {
            Some((meta, data, path)) => (Some((meta.clone(), path)), Some((meta, data))),
            None => (None, None),
        };
        let files = Arc::new(Self {
            dir,
            sealer,
            current: Mutex::new(current),
        });
        Ok((files, loaded))
    }

    /// Durably stores a snapshot as the current one, unless a newer one is already stored, and
    /// removes the previous one. Returns whether it was stored.
    pub(crate) fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<bool, SnapshotFileError> {
        let mut current = self.lock_current();
        if let Some((existing, _)) = current.as_ref()
            && existing.last_log_id > meta.last_log_id
        {
            return Ok(false);
        }
        let header = serde_json::to_vec(meta).map_err(|e| SnapshotFileError::Corrupt {
            path: self.dir.clone(),
            reason: format!("encoding metadata: {e}"),
        })?;
        let name = file_stem(&meta.snapshot_id);
        let temp = self.dir.join(format!("{name}.{TEMP_EXTENSION}"));
        let path = self.dir.join(format!("{name}.{SNAPSHOT_EXTENSION}"));
        {
            let mut file = fs::File::create(&temp).map_err(io_error("creating", &temp))?;
            let sealed = self
                .sealer
                .as_ref()
                .map(|sealer| sealer.seal(data, &header));
            let (magic, data) = match &sealed {
                Some(sealed) => (MAGIC_SEALED, sealed.as_slice()),
                None => (MAGIC, data),
            };
            file.write_all(magic).map_err(io_error("writing", &temp))?;
            file.write_all(&(header.len() as u64).to_be_bytes())
                .map_err(io_error("writing", &temp))?;
            file.write_all(&header)
                .map_err(io_error("writing", &temp))?;
            file.write_all(data).map_err(io_error("writing", &temp))?;
            file.sync_all().map_err(io_error("syncing", &temp))?;
        }
        fs::rename(&temp, &path).map_err(io_error("renaming snapshot into", &path))?;
        sync_dir(&self.dir)?;
        if let Some((_, old)) = current.replace((meta.clone(), path.clone()))
            && old != path
        {
            fs::remove_file(&old).map_err(io_error("removing old snapshot", &old))?;
        }
        Ok(true)
    }

    /// Reads the current snapshot back from disk.
    pub(crate) fn read_current(
        &self,
    ) -> Result<Option<(SnapshotMeta, Vec<u8>)>, SnapshotFileError> {
        let current = self.lock_current();
        match current.as_ref() {
            Some((_, path)) => read_file(path, self.sealer.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<(SnapshotMeta, PathBuf)>> {
        // A panic while holding the lock cannot leave the files inconsistent (every step is
        // atomic on disk), so a poisoned lock is still usable.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A file name derived from the snapshot id, restricted to a safe alphabet.
fn file_stem(snapshot_id: &str) -> String {
    let stem: String = snapshot_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if stem.is_empty() {
        "snapshot".to_owned()
    } else {
        stem
    }
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotFileError> {
    let handle = fs::File::open(dir).map_err(io_error("opening directory", dir))?;
    handle
        .sync_all()
        .map_err(io_error("syncing directory", dir))
}

fn read_file(path: &Path, sealer: Option<&Sealer>) -> Result<StoredSnapshot, SnapshotFileError> {
    let bytes = fs::read(path).map_err(io_error("reading", path))?;
    let corrupt = |reason: &str| SnapshotFileError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let (sealed, rest) = if let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) {
        (false, rest)
    } else if let Some(rest) = bytes.strip_prefix(MAGIC_SEALED.as_slice()) {
        (true, rest)
    } else {
        return Err(corrupt("bad magic"));
    };
    let (len, rest) = rest
        .split_at_checked(8)
        .ok_or_else(|| corrupt("truncated header"))?;
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(len);
    let meta_len =
        usize::try_from(u64::from_be_bytes(len_bytes)).map_err(|_| corrupt("header too long"))?;
    let (meta, data) = rest
        .split_at_checked(meta_len)
        .ok_or_else(|| corrupt("truncated metadata"))?;
    let header = meta;
    let meta: SnapshotMeta =
        serde_json::from_slice(meta).map_err(|e| corrupt(&format!("metadata: {e}")))?;
    if !sealed {
        return Ok((meta, data.to_vec()));
    }
    let sealer = sealer.ok_or_else(|| SnapshotFileError::NoKey(path.to_path_buf()))?;
    let data = sealer
        .open(data, header)
        .ok_or_else(|| SnapshotFileError::Decrypt(path.to_path_buf()))?;
    Ok((meta, data))
}
