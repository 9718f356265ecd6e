//! The worker's persistent task database (redb, one table, fsync'd on every commit).
//!
//! Each row is a task as last assigned by the manager, whose `status` is the newest status the
//! agent knows of (observed, reported, or the manager's own when that is newer). Statuses in the
//! database only move forward. Calls block on disk IO: async code calls them through
//! [`TaskDb::run`], which moves them off the runtime's worker threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use swarm_types::{Task, TaskStatus};

/// task id -> JSON of the stored [`Task`].
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// task id -> name of the executor given the task, so a restarted agent adopts it with that one.
const EXECUTORS: TableDefinition<&str, &str> = TableDefinition::new("executors");

/// The task database could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("{0}")]
    Storage(Box<redb::Error>),
    #[error("task {task_id}: {source}")]
    Codec {
        task_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("database thread failed: {0}")]
    Blocking(String),
}

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(error: E) -> Self {
        DbError::Storage(Box::new(error.into()))
    }
}

/// The database handle; cheap to share through an `Arc`.
#[derive(Debug)]
pub(crate) struct TaskDb {
    db: Database,
}

impl TaskDb {
    /// Opens (or creates) the database file and its table.
    pub(crate) fn open(path: &Path) -> Result<Self, DbError> {
        let open = |path: &Path| -> Result<Database, redb::Error> {
            let db = Database::create(path)?;
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.open_table(TASKS)?;
            txn.open_table(EXECUTORS)?;
            txn.commit()?;
            Ok(db)
        };
        let db = open(path).map_err(|source| DbError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(Self { db })
    }

    /// Runs `f` on a blocking thread.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&TaskDb) -> Result<T, DbError> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| DbError::Blocking(e.to_string()))?
    }

    /// Every stored task, ordered by id.
    pub(crate) fn load_all(&self) -> Result<Vec<Task>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TASKS)?;
        let mut tasks = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            tasks.push(decode(key.value(), value.value())?);
        }
        Ok(tasks)
    }

    /// One stored task.
    #[cfg(test)]
    pub(crate) fn get(&self, task_id: &str) -> Result<Option<Task>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TASKS)?;
        let value = table.get(task_id)?;
        value.map(|v| decode(task_id, v.value())).transpose()
    }

    /// Stores assignments in one transaction. A task already stored keeps its status when that
    /// is at least as far along as the incoming one. Returns the tasks as stored.
    pub(crate) fn put_assignments(&self, tasks: Vec<Task>) -> Result<Vec<Task>, DbError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut stored = Vec::with_capacity(tasks.len());
        {
            let mut table = txn.open_table(TASKS)?;
            for mut task in tasks {
                let previous = table
                    .get(task.id.as_str())?
                    .map(|v| decode(&task.id, v.value()))
                    .transpose()?;
                if let Some(previous) = previous
                    && previous.status.state >= task.status.state
                {
                    task.status = previous.status;
                }
                let bytes = encode(&task)?;
                table.insert(task.id.as_str(), bytes.as_slice())?;
                stored.push(task);
            }
        }
        txn.commit()?;
        Ok(stored)
    }

    /// Records a newer status of a stored task. Returns `false` (and changes nothing) when the
    /// task is not stored or the status would not move its state forward.
    pub(crate) fn update_status(
        &self,
        task_id: &str,
        status: &TaskStatus,
    ) -> Result<bool, DbError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let updated = {
            let mut table = txn.open_table(TASKS)?;
            let current = table
                .get(task_id)?
                .map(|v| decode(task_id, v.value()))
                .transpose()?;
            match current {
                Some(mut task) if task.status.state < status.state => {
                    task.status = status.clone();
                    let bytes = encode(&task)?;
                    table.insert(task_id, bytes.as_slice())?;
                    true
                }
                _ => false,
            }
        };
        txn.commit()?;
        Ok(updated)
    }

    /// Records the executor given a task.
    pub(crate) fn set_executor(&self, task_id: &str, executor: &str) -> Result<(), DbError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.open_table(EXECUTORS)?.insert(task_id, executor)?;
        txn.commit()?;
        Ok(())
    }

    /// The executor recorded for a task, if any.
    pub(crate) fn executor_of(&self, task_id: &str) -> Result<Option<String>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EXECUTORS)?;
        Ok(table.get(task_id)?.map(|v| v.value().to_string()))
    }

    /// Forgets a task and its executor.
    pub(crate) fn remove(&self, task_id: &str) -> Result<(), DbError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.open_table(TASKS)?.remove(task_id)?;
        txn.open_table(EXECUTORS)?.remove(task_id)?;
        txn.commit()?;
        Ok(())
    }
}

fn encode(task: &Task) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(task).map_err(|source| DbError::Codec {
        task_id: task.id.clone(),
        source,
    })
}

fn decode(task_id: &str, bytes: &[u8]) -> Result<Task, DbError> {
    serde_json::from_slice(bytes).map_err(|source| DbError::Codec {
        task_id: task_id.to_string(),
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use swarm_types::{ProcessSpec, Runtime, TaskSpec, TaskState, Timestamp};

    use super::*;

    /// A process task in `state`, desired running.
    pub(crate) fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: id.to_string(),
            meta: Default::default(),
            annotations: Default::default(),
            service_id: "service".into(),
            slot: 1,
            node_id: "node".into(),
            spec: TaskSpec {
                runtime: Runtime::Process(ProcessSpec {
                    command: "true".into(),
                    args: Vec::new(),
                    env: Vec::new(),
                    dir: None,
                }),
                resources: Default::default(),
                restart: Default::default(),
                placement: Default::default(),
                force_update: 0,
                secrets: vec![],
                configs: vec![],
            },
            spec_version: 1,
            executor: String::new(),
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                timestamp: Timestamp::now(),
                ..Default::default()
            },
        }
    }

    fn status(state: TaskState) -> TaskStatus {
        TaskStatus {
            state,
            timestamp: Timestamp::now(),
            message: state.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn tasks_survive_reopening_and_statuses_only_move_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("worker.redb");
        {
            let db = TaskDb::open(&path).expect("open");
            db.put_assignments(vec![
                task("a", TaskState::Assigned),
                task("b", TaskState::Assigned),
            ])
            .expect("put");
            assert!(
                db.update_status("a", &status(TaskState::Running))
                    .expect("update")
            );
            assert!(
                !db.update_status("a", &status(TaskState::Preparing))
                    .expect("older")
            );
            assert!(
                !db.update_status("zzz", &status(TaskState::Running))
                    .expect("unknown")
            );
            // The manager's copy still says ASSIGNED: the agent's newer status wins.
            let stored = db
                .put_assignments(vec![task("a", TaskState::Assigned)])
                .expect("put again");
            assert_eq!(stored[0].status.state, TaskState::Running);
            db.set_executor("a", "docker").expect("record the executor");
            db.set_executor("b", "default")
                .expect("record the executor");
            db.remove("b").expect("remove");
        }
        let db = TaskDb::open(&path).expect("reopen");
        let tasks = db.load_all().expect("load");
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].id, "a");
        assert_eq!(tasks[0].status.state, TaskState::Running);
        assert_eq!(tasks[0].status.message, "running");
        assert!(db.get("b").expect("get").is_none());
        assert_eq!(
            db.executor_of("a").expect("executor"),
            Some("docker".to_string())
        );
        assert_eq!(db.executor_of("b").expect("executor"), None);
    }
}
