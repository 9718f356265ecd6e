//! Secrets and configs on the node: held in memory as the dispatcher sends them, written as
//! files for a task just before its executor prepares it, deleted with the task.
//!
//! Files live under [`AgentConfig::files_dir`](crate::AgentConfig::files_dir) (swarmd puts it on
//! a tmpfs, so secrets never reach a disk): `<dir>/<task id>/secrets/<target>` and
//! `<dir>/<task id>/configs/<target>`, directories mode 0700 (an existing one must be this
//! user's and closed to others), files 0444 (a container may run as another user). The executor sees them through the task it is given: a process task gets
//! `SWARM_SECRETS_DIR` and `SWARM_CONFIGS_DIR` in its environment, a container gets read-only
//! bind mounts at `/run/secrets/<target>` and `/<target>` (Docker's places).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use swarm_proto::pb;
use swarm_types::{Blob, DataKind, FileRef, Mount, MountKind, Runtime, Task, check_file_refs};
use tracing::{debug, warn};

/// Environment variable naming a process task's secrets directory.
pub const SECRETS_DIR_ENV: &str = "SWARM_SECRETS_DIR";
/// Environment variable naming a process task's configs directory.
pub const CONFIGS_DIR_ENV: &str = "SWARM_CONFIGS_DIR";
/// Where a container finds its secrets.
pub const CONTAINER_SECRETS_DIR: &str = "/run/secrets";

/// Why a task's files could not be written.
#[derive(Debug)]
pub(crate) enum FilesError {
    /// A secret or config the task references has not arrived (yet): it may come with the next
    /// assignment message, e.g. after the agent restarted.
    Missing(String),
    /// Anything else; the message says what.
    Failed(String),
}

impl std::fmt::Display for FilesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilesError::Missing(m) | FilesError::Failed(m) => f.write_str(m),
        }
    }
}

/// The node's secrets and configs, by kind and id, and where task files go.
#[derive(Debug)]
pub(crate) struct TaskFiles {
    dir: PathBuf,
    held: Mutex<HashMap<(DataKind, String), Blob>>,
    /// Bumped whenever data arrives, so a task waiting for its data can look again.
    arrived: tokio::sync::watch::Sender<u64>,
    /// This process's user (the owner of `/proc/self`), read once: directories must be its.
    uid: Result<u32, String>,
}

impl TaskFiles {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            held: Mutex::default(),
            arrived: tokio::sync::watch::Sender::new(0),
            uid: {
                use std::os::unix::fs::MetadataExt as _;
                std::fs::metadata("/proc/self")
                    .map(|m| m.uid())
                    .map_err(|e| format!("reading this process's user: {e}"))
            },
        }
    }

    /// Keeps what an assignment message carried (replacing an earlier copy of the same id).
    pub(crate) fn receive(&self, secrets: Vec<pb::Secret>, configs: Vec<pb::Config>) {
        let items = secrets
            .into_iter()
            .map(|s| (DataKind::Secret, s.id, s.spec.map(|s| s.data)))
            .chain(
                configs
                    .into_iter()
                    .map(|c| (DataKind::Config, c.id, c.spec.map(|c| c.data))),
            );
        let mut held = self.held.lock();
        for (kind, id, data) in items {
            match data {
                Some(data) if !id.is_empty() => {
                    debug!(%kind, id = %id, bytes = data.len(), "{kind} received");
                    held.insert((kind, id), Blob::from(data));
                }
                _ => warn!(%kind, id = %id, "{kind} without id or spec in an assignment; ignored"),
            }
        }
        drop(held);
        self.arrived.send_modify(|n| *n += 1);
    }

    /// Forgets the data none of `tasks` references (after a complete assignment set).
    pub(crate) fn retain_for<'t>(&self, tasks: impl IntoIterator<Item = &'t Task>) {
        let wanted: HashSet<(DataKind, &str)> = tasks
            .into_iter()
            .flat_map(|t| {
                [DataKind::Secret, DataKind::Config]
                    .into_iter()
                    .flat_map(move |kind| {
                        t.spec.refs(kind).iter().map(move |r| (kind, r.id.as_str()))
                    })
            })
            .collect();
        self.held
            .lock()
            .retain(|(kind, id), _| wanted.contains(&(*kind, id.as_str())));
    }

    /// Writes `task`'s files, waiting up to `patience` for data that has not arrived yet (a
    /// restarted agent gets it with its first assignment message).
    pub(crate) async fn materialize_within(
        &self,
        task: &Task,
        patience: std::time::Duration,
    ) -> Result<Task, FilesError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut arrived = self.arrived.subscribe();
        loop {
            arrived.borrow_and_update();
            match self.materialize(task) {
                Err(FilesError::Missing(what)) => {
                    if tokio::time::timeout_at(deadline, arrived.changed())
                        .await
                        .is_err()
                    {
                        return Err(FilesError::Missing(what));
                    }
                }
                other => return other,
            }
        }
    }

    /// Writes `task`'s secret and config files and returns the task as its executor must see
    /// it (environment or mounts pointing at them). A task referencing none is returned as is.
    /// The error names what is missing or failed.
    pub(crate) fn materialize(&self, task: &Task) -> Result<Task, FilesError> {
        let spec = &task.spec;
        if spec.secrets.is_empty() && spec.configs.is_empty() {
            return Ok(task.clone());
        }
        // What arrives from the network is checked again before it names a file.
        for kind in [DataKind::Secret, DataKind::Config] {
            check_file_refs(&format!("spec.task.{kind}s"), spec.refs(kind))
                .map_err(|e| FilesError::Failed(e.to_string()))?;
        }
        let root = self.task_dir(&task.id).ok_or_else(|| {
            FilesError::Failed(format!("task id {:?} cannot name a directory", task.id))
        })?;
        let held: Vec<(DataKind, &FileRef, Blob)> = {
            let held = self.held.lock();
            let mut found = Vec::new();
            for kind in [DataKind::Secret, DataKind::Config] {
                for r in spec.refs(kind) {
                    let data = held.get(&(kind, r.id.clone())).cloned().ok_or_else(|| {
                        FilesError::Missing(format!(
                            "{kind} {:?} ({}) has not reached this node; was it removed?",
                            r.name, r.id
                        ))
                    })?;
                    found.push((kind, r, data));
                }
            }
            found
        };
        self.private_dir(&self.dir)?;
        self.private_dir(&root)?;
        let secrets_dir = root.join("secrets");
        let configs_dir = root.join("configs");
        for (kind, r, data) in &held {
            let dir = match kind {
                DataKind::Secret => &secrets_dir,
                DataKind::Config => &configs_dir,
            };
            self.private_dir(dir)?;
            write_file(&dir.join(r.file_name()), data.as_bytes()).map_err(FilesError::Failed)?;
        }
        let mut task = task.clone();
        match &mut task.spec.runtime {
            Runtime::Process(p) => {
                if !spec.secrets.is_empty() {
                    p.env
                        .push(format!("{SECRETS_DIR_ENV}={}", secrets_dir.display()));
                }
                if !spec.configs.is_empty() {
                    p.env
                        .push(format!("{CONFIGS_DIR_ENV}={}", configs_dir.display()));
                }
            }
            Runtime::Container(c) => {
                let bind = |source: PathBuf, target: String| Mount {
                    kind: MountKind::Bind,
                    source: source.display().to_string(),
                    target,
                    read_only: true,
                };
                for r in &spec.secrets {
                    c.mounts.push(bind(
                        secrets_dir.join(r.file_name()),
                        format!("{CONTAINER_SECRETS_DIR}/{}", r.file_name()),
                    ));
                }
                for r in &spec.configs {
                    c.mounts.push(bind(
                        configs_dir.join(r.file_name()),
                        format!("/{}", r.file_name()),
                    ));
                }
            }
            Runtime::Wasi(_) => {
                return Err(FilesError::Failed(
                    "wasi tasks cannot receive secrets or configs".into(),
                ));
            }
        }
        Ok(task)
    }

    /// Deletes a task's files, if it had any.
    pub(crate) fn remove(&self, task_id: &str) {
        let Some(root) = self.task_dir(task_id) else {
            return;
        };
        match std::fs::remove_dir_all(&root) {
            Ok(()) => debug!(path = %root.display(), "task files removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => warn!(path = %root.display(), %error, "removing a task's files"),
        }
    }

    /// The directory of a task's files; `None` for an id that is not a plain name.
    fn task_dir(&self, task_id: &str) -> Option<PathBuf> {
        let plain =
            !task_id.is_empty() && !task_id.starts_with('.') && !task_id.contains(['/', '\0']);
        plain.then(|| self.dir.join(task_id))
    }

    /// Makes `dir` (mode 0700) or checks the one there: a real directory (not a link), owned by
    /// this process's user, closed to everyone else. `/dev/shm` is writable by all: a
    /// directory someone else made there first must not receive secrets.
    fn private_dir(&self, dir: &Path) -> Result<(), FilesError> {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let shown = dir.display();
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(FilesError::Failed(format!("creating {shown}: {e}"))),
        }
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| FilesError::Failed(format!("checking {shown}: {e}")))?;
        let me = self.uid.clone().map_err(FilesError::Failed)?;
        if !meta.file_type().is_dir() {
            return Err(FilesError::Failed(format!(
                "{shown} is not a directory (a link?); refusing to write secrets there"
            )));
        }
        if meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
            return Err(FilesError::Failed(format!(
                "{shown} belongs to uid {} with mode {:o}; it must be this user's (uid {me}) and \
                 mode 0700: remove it and start again",
                meta.uid(),
                meta.permissions().mode() & 0o7777
            )));
        }
        Ok(())
    }
}

/// Writes one read-only file (replacing an earlier copy: files are 0444, so they are removed
/// rather than opened for writing).
fn write_file(path: &Path, data: &[u8]) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("replacing {}: {e}", path.display())),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(data)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::{ContainerSpec, ProcessSpec};

    fn secret(id: &str, name: &str, data: &[u8]) -> pb::Secret {
        pb::Secret {
            id: id.into(),
            spec: Some(pb::SecretSpec {
                annotations: Some(pb::Annotations {
                    name: name.into(),
                    ..Default::default()
                }),
                data: data.to_vec(),
            }),
            ..Default::default()
        }
    }

    fn task(runtime: Runtime) -> Task {
        let mut t = crate::db::tests::task("task1", swarm_types::TaskState::Assigned);
        t.spec.runtime = runtime;
        t.spec.secrets = vec![FileRef {
            id: "s1".into(),
            name: "db-password".into(),
            target: "db.pass".into(),
        }];
        t.spec.configs = vec![FileRef {
            id: "c1".into(),
            name: "app-conf".into(),
            target: String::new(),
        }];
        t
    }

    fn config(id: &str, data: &[u8]) -> pb::Config {
        pb::Config {
            id: id.into(),
            spec: Some(pb::ConfigSpec {
                annotations: None,
                data: data.to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_process_task_gets_read_only_files_and_their_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TaskFiles::new(dir.path().join("files"));
        files.receive(
            vec![secret("s1", "db-password", b"hunter2")],
            vec![config("c1", b"x=1")],
        );
        let given = files
            .materialize(&task(Runtime::Process(ProcessSpec {
                command: "cat".into(),
                ..Default::default()
            })))
            .expect("written");
        let Runtime::Process(p) = &given.spec.runtime else {
            panic!("runtime changed kind");
        };
        let secrets_dir = dir.path().join("files/task1/secrets");
        assert!(
            p.env
                .contains(&format!("SWARM_SECRETS_DIR={}", secrets_dir.display()))
        );
        let path = secrets_dir.join("db.pass");
        assert_eq!(std::fs::read(&path).expect("read"), b"hunter2");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        assert_eq!(
            std::fs::read(dir.path().join("files/task1/configs/app-conf")).expect("read"),
            b"x=1"
        );
        // Written again (a restarted agent preparing again): replaced, not refused.
        files.receive(vec![secret("s1", "db-password", b"rotated")], vec![]);
        files.materialize(&given).expect("rewritten");
        assert_eq!(std::fs::read(&path).expect("read"), b"rotated");
        files.remove("task1");
        assert!(!dir.path().join("files/task1").exists());
    }

    #[test]
    fn a_container_gets_read_only_binds_at_dockers_places() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TaskFiles::new(dir.path().join("files"));
        files.receive(
            vec![secret("s1", "db-password", b"pw")],
            vec![config("c1", b"c")],
        );
        let given = files
            .materialize(&task(Runtime::Container(ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            })))
            .expect("written");
        let Runtime::Container(c) = &given.spec.runtime else {
            panic!("runtime changed kind");
        };
        let targets: Vec<(&str, bool)> = c
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.read_only))
            .collect();
        assert_eq!(
            targets,
            [("/run/secrets/db.pass", true), ("/app-conf", true)]
        );
        assert!(c.mounts.iter().all(|m| Path::new(&m.source).is_file()));
    }

    #[test]
    fn missing_data_is_named_and_bad_names_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TaskFiles::new(dir.path().join("files"));
        files.receive(vec![], vec![config("c1", b"c")]);
        let t = task(Runtime::Process(ProcessSpec {
            command: "cat".into(),
            ..Default::default()
        }));
        let err = files.materialize(&t).expect_err("secret missing");
        assert!(matches!(err, FilesError::Missing(_)), "{err}");
        assert!(
            err.to_string()
                .contains("secret \"db-password\" (s1) has not reached this node"),
            "{err}"
        );
        files.receive(vec![secret("s1", "db-password", b"pw")], vec![]);
        let mut evil = t.clone();
        evil.id = "../escape".into();
        assert!(files.materialize(&evil).is_err());
        let mut evil = t.clone();
        evil.spec.secrets[0].target = "../../escape".into();
        let err = files
            .materialize(&evil)
            .expect_err("a path as file name")
            .to_string();
        assert!(err.contains("must be a plain file name"), "{err}");
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn a_directory_someone_else_prepared_gets_no_secrets() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("files");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let files = TaskFiles::new(root.clone());
        files.receive(
            vec![secret("s1", "db-password", b"pw")],
            vec![config("c1", b"c")],
        );
        let t = task(Runtime::Process(ProcessSpec {
            command: "cat".into(),
            ..Default::default()
        }));
        let err = files
            .materialize(&t)
            .expect_err("open directory")
            .to_string();
        assert!(err.contains("mode 0700"), "{err}");
        assert!(!root.join("task1").exists());
    }

    #[tokio::test]
    async fn a_task_waits_for_data_still_on_its_way_and_unused_data_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = std::sync::Arc::new(TaskFiles::new(dir.path().join("files")));
        let t = task(Runtime::Process(ProcessSpec {
            command: "cat".into(),
            ..Default::default()
        }));
        let waiting = {
            let (files, t) = (files.clone(), t.clone());
            tokio::spawn(async move {
                files
                    .materialize_within(&t, std::time::Duration::from_secs(30))
                    .await
            })
        };
        tokio::task::yield_now().await;
        files.receive(
            vec![secret("s1", "db-password", b"pw")],
            vec![config("c1", b"c")],
        );
        let given = waiting
            .await
            .expect("joined")
            .expect("written once it arrived");
        assert_eq!(given.id, "task1");
        // A complete assignment set without the task: its data goes from memory.
        files.retain_for([]);
        let err = files.materialize(&t).expect_err("forgotten");
        assert!(matches!(err, FilesError::Missing(_)), "{err}");
        let gave_up = files
            .materialize_within(&t, std::time::Duration::from_millis(50))
            .await
            .expect_err("nothing arrives");
        assert!(matches!(gave_up, FilesError::Missing(_)), "{gave_up}");
    }
}
