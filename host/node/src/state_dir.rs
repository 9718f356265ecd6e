//! The state directory: created with mode 0700, locked while swarmd runs, holding the node id.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::NodeError;

/// An open, locked state directory. The lock is released on drop.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Create (mode 0700) or open the directory and take its lock; a second swarmd on the same
    /// directory is refused.
    pub fn open(path: &Path) -> Result<Self, NodeError> {
        let err = |message: String| NodeError::StateDir {
            path: path.display().to_string(),
            message,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| err(format!("creating: {e}")))?;
        let lock_path = path.join("swarmd.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(format!("opening {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(err(
                    "another swarmd is using it; stop that one or choose another --state-dir"
                        .into(),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(format!("locking: {e}"))),
        }
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where tasks' secret and config files go: on the `/dev/shm` tmpfs when there is one
    /// (`/dev/shm/swarmd-<node id>`), so secrets never reach a disk; else `<state>/files`
    /// (absolute), with a warning that they will be on disk.
    pub fn files_dir(&self, node_id: &str) -> PathBuf {
        let shm = Path::new("/dev/shm");
        let writable = std::fs::metadata(shm)
            .map(|m| m.is_dir() && !m.permissions().readonly())
            .unwrap_or(false);
        if writable {
            return shm.join(format!("swarmd-{node_id}"));
        }
        let on_disk = self.path.join("files");
        let on_disk = std::path::absolute(&on_disk).unwrap_or(on_disk);
        tracing::warn!(
            path = %on_disk.display(),
            "no /dev/shm tmpfs: tasks' secret and config files will be written to disk"
        );
        on_disk
    }

    /// This node's id: read from `node-id`, or generated and written (fsync'd) the first time.
    pub fn node_id(&self) -> Result<String, NodeError> {
        let file = self.path.join("node-id");
        let err = |message: String| NodeError::StateDir {
            path: file.display().to_string(),
            message,
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let id = text.trim().to_string();
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(err(format!(
                        "holds {id:?}, not a node id; restore it or remove the state directory"
                    )));
                }
                Ok(id)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = swarm_types::new_id();
                let tmp = self.path.join("node-id.tmp");
                let mut f = File::create(&tmp).map_err(|e| err(format!("writing: {e}")))?;
                f.write_all(id.as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| err(format!("writing: {e}")))?;
                std::fs::rename(&tmp, &file).map_err(|e| err(format!("writing: {e}")))?;
                Ok(id)
            }
            Err(e) => Err(err(format!("reading: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_stable_and_the_dir_is_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let first = StateDir::open(&path).expect("open");
        let id = first.node_id().expect("id");
        assert_eq!(first.node_id().expect("id again"), id);
        let second = StateDir::open(&path).expect_err("second open must be refused");
        assert!(
            second.to_string().contains("another swarmd is using it"),
            "{second}"
        );
        drop(first);
        let reopened = StateDir::open(&path).expect("reopen after release");
        assert_eq!(reopened.node_id().expect("id after reopen"), id);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_corrupt_node_id_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        std::fs::write(dir.path().join("node-id"), "not an id!\n").expect("write");
        let e = state.node_id().expect_err("corrupt id");
        assert!(e.to_string().contains("not a node id"), "{e}");
    }
}
