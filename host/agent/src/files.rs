//! Secrets and configs on the node: held in memory as the dispatcher sends them, written as
//! files for a task just before its executor prepares it, deleted with the task.
//!
//! Files live under [`AgentConfig::files_dir`](crate::AgentConfig::files_dir) (swarmd puts it on
//! a tmpfs, so secrets never reach a disk): `<dir>/<task id>/secrets/<target>` and
//! `<dir>/<task id>/configs/<target>`, directories mode 0700, files 0444 (a container may run
//! as another user). The executor sees them through the task it is given: a process task gets
//! `SWARM_SECRETS_DIR` and `SWARM_CONFIGS_DIR` in its environment, a container gets read-only
//! bind mounts at `/run/secrets/<target>` and `/<target>` (Docker's places).

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use swarm_proto::pb;
use swarm_types::{Blob, DataKind, FileRef, Mount, MountKind, Runtime, Task};
use tracing::{debug, warn};

/// Environment variable naming a process task's secrets directory.
pub const SECRETS_DIR_ENV: &str = "SWARM_SECRETS_DIR";
/// Environment variable naming a process task's configs directory.
pub const CONFIGS_DIR_ENV: &str = "SWARM_CONFIGS_DIR";
/// Where a container finds its secrets.
pub const CONTAINER_SECRETS_DIR: &str = "/run/secrets";

/// The node's secrets and configs, by id, and where task files go.
#[derive(Debug)]
pub(crate) struct TaskFiles {
    dir: PathBuf,
    secrets: Mutex<HashMap<String, Blob>>,
    configs: Mutex<HashMap<String, Blob>>,
}

impl TaskFiles {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            secrets: Mutex::default(),
            configs: Mutex::default(),
        }
    }

    /// Keeps what an assignment message carried (replacing an earlier copy of the same id).
    pub(crate) fn receive(&self, secrets: Vec<pb::Secret>, configs: Vec<pb::Config>) {
        fn keep(
            into: &Mutex<HashMap<String, Blob>>,
            kind: DataKind,
            id: String,
            spec: Option<Vec<u8>>,
        ) {
            match spec {
                Some(data) if !id.is_empty() => {
                    debug!(%kind, id = %id, bytes = data.len(), "{kind} received");
                    into.lock().insert(id, Blob::from(data));
                }
                _ => warn!(%kind, id = %id, "{kind} without id or spec in an assignment; ignored"),
            }
        }
        for s in secrets {
            keep(
                &self.secrets,
                DataKind::Secret,
                s.id,
                s.spec.map(|s| s.data),
            );
        }
        for c in configs {
            keep(
                &self.configs,
                DataKind::Config,
                c.id,
                c.spec.map(|c| c.data),
            );
        }
    }

    /// Writes `task`'s secret and config files and returns the task as its executor must see
    /// it (environment or mounts pointing at them). A task referencing none is returned as is.
    /// The error names what is missing or failed.
    pub(crate) fn materialize(&self, task: &Task) -> Result<Task, String> {
        let spec = &task.spec;
        if spec.secrets.is_empty() && spec.configs.is_empty() {
            return Ok(task.clone());
        }
        if task.id.is_empty() || task.id.contains(['/', '\0']) || task.id.starts_with('.') {
            return Err(format!("task id {:?} cannot name a directory", task.id));
        }
        let root = self.dir.join(&task.id);
        let secrets_dir = root.join("secrets");
        let configs_dir = root.join("configs");
        let mut task = task.clone();
        write_all(&self.secrets, DataKind::Secret, &spec.secrets, &secrets_dir)?;
        write_all(&self.configs, DataKind::Config, &spec.configs, &configs_dir)?;
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
                return Err("wasi tasks cannot receive secrets or configs".into());
            }
        }
        Ok(task)
    }

    /// Deletes a task's files, if it had any.
    pub(crate) fn remove(&self, task_id: &str) {
        if task_id.is_empty() || task_id.contains(['/', '\0']) || task_id.starts_with('.') {
            return;
        }
        let root = self.dir.join(task_id);
        match std::fs::remove_dir_all(&root) {
            Ok(()) => debug!(path = %root.display(), "task files removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => warn!(path = %root.display(), %error, "removing a task's files"),
        }
    }
}

fn write_all(
    held: &Mutex<HashMap<String, Blob>>,
    kind: DataKind,
    refs: &[FileRef],
    dir: &Path,
) -> Result<(), String> {
    if refs.is_empty() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for r in refs {
        let data = held.lock().get(&r.id).cloned().ok_or_else(|| {
            format!(
                "{kind} {:?} ({}) has not reached this node; was it removed?",
                r.name, r.id
            )
        })?;
        let path = dir.join(r.file_name());
        // Files are read-only once written: replace rather than open for writing.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("replacing {}: {e}", path.display())),
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        file.write_all(data.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
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
        let files = TaskFiles::new(dir.path().to_owned());
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
        let secrets_dir = dir.path().join("task1/secrets");
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
            std::fs::read(dir.path().join("task1/configs/app-conf")).expect("read"),
            b"x=1"
        );
        // Written again (a restarted agent preparing again): replaced, not refused.
        files.receive(vec![secret("s1", "db-password", b"rotated")], vec![]);
        files.materialize(&given).expect("rewritten");
        assert_eq!(std::fs::read(&path).expect("read"), b"rotated");
        files.remove("task1");
        assert!(!dir.path().join("task1").exists());
    }

    #[test]
    fn a_container_gets_read_only_binds_at_dockers_places() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TaskFiles::new(dir.path().to_owned());
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
    fn missing_data_is_named_and_bad_task_ids_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TaskFiles::new(dir.path().to_owned());
        files.receive(vec![], vec![config("c1", b"c")]);
        let t = task(Runtime::Process(ProcessSpec {
            command: "cat".into(),
            ..Default::default()
        }));
        let err = files.materialize(&t).expect_err("secret missing");
        assert!(
            err.contains("secret \"db-password\" (s1) has not reached this node"),
            "{err}"
        );
        let mut evil = t.clone();
        evil.id = "../escape".into();
        files.receive(vec![secret("s1", "db-password", b"pw")], vec![]);
        assert!(files.materialize(&evil).is_err());
        assert!(!dir.path().parent().expect("parent").join("escape").exists());
    }
}
