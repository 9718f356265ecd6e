//! The worker: stores assignments, then hands each task to its controller.
//!
//! Every assignment is written to the task database before any controller acts on it. At start
//! the worker loads the database and waits until every stored task has been reconciled with the
//! executor (adopted, reported as exited or lost) before the first session opens. A complete
//! assignment set marks every task it does not list as removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use swarm_proto::pb;
use swarm_types::{Task, TaskState};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::controller::{Assignment, Controller};
use crate::db::TaskDb;
use crate::error::AgentError;
use crate::executors::Executors;
use crate::files::TaskFiles;
use crate::reporter::Reporter;

pub(crate) struct Worker {
    node_id: String,
    db: Arc<TaskDb>,
    executors: Executors,
    reporter: Reporter,
    files: Arc<TaskFiles>,
    controllers: HashMap<String, watch::Sender<Assignment>>,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

impl Worker {
    pub(crate) fn new(
        node_id: String,
        db: Arc<TaskDb>,
        executors: Executors,
        reporter: Reporter,
        files: Arc<TaskFiles>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            node_id,
            db,
            executors,
            reporter,
            files,
            controllers: HashMap::new(),
            tasks: JoinSet::new(),
            cancel,
        }
    }

    /// Loads the stored tasks, queues their last statuses again (the manager ignores what it
    /// already has) and reconciles each with the executor. Returns once all are reconciled.
    pub(crate) async fn start(&mut self) -> Result<usize, AgentError> {
        let stored = self.db.run(|db| db.load_all()).await?;
        let count = stored.len();
        let mut reconciled = Vec::with_capacity(count);
        for task in stored {
            if task.status.state >= TaskState::Accepted {
                self.reporter.push(&task.id, task.status.clone());
            }
            reconciled.push(self.spawn(task));
        }
        for done in reconciled {
            // An error means the controller stopped early (the agent is stopping).
            let _ = done.await;
        }
        Ok(count)
    }

    /// A complete assignment set: exactly these tasks belong on the node.
    pub(crate) async fn assign_complete(&mut self, tasks: Vec<Task>) -> Result<(), AgentError> {
        let listed: HashSet<String> = tasks.iter().map(|t| t.id.clone()).collect();
        // Secrets and configs no listed task uses leave memory.
        self.files.retain_for(&tasks);
        let stored = self.db.run(move |db| db.put_assignments(tasks)).await?;
        for task in stored {
            self.upsert(task);
        }
        for (task_id, controller) in &self.controllers {
            if !listed.contains(task_id) {
                controller.send_if_modified(mark_removed);
            }
        }
        self.reap();
        Ok(())
    }

    /// Incremental changes: updated (or new) tasks and removed task ids.
    pub(crate) async fn apply_changes(
        &mut self,
        updates: Vec<Task>,
        removals: Vec<String>,
    ) -> Result<(), AgentError> {
        if !updates.is_empty() {
            let stored = self.db.run(move |db| db.put_assignments(updates)).await?;
            for task in stored {
                self.upsert(task);
            }
        }
        for task_id in removals {
            match self.controllers.get(&task_id) {
                Some(controller) => {
                    controller.send_if_modified(mark_removed);
                }
                None => {
                    // Not running here; make sure it is not left in the database either.
                    self.db.run(move |db| db.remove(&task_id)).await?;
                }
            }
        }
        self.reap();
        Ok(())
    }

    /// Keeps the secrets and configs an assignment message carried, for the tasks to come.
    pub(crate) fn receive_files(&self, secrets: Vec<pb::Secret>, configs: Vec<pb::Config>) {
        if !secrets.is_empty() || !configs.is_empty() {
            self.files.receive(secrets, configs);
        }
    }

    /// Stops every controller (the tasks keep running) and waits for them.
    pub(crate) async fn shutdown(&mut self) {
        self.cancel.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                warn!(%error, "a task controller failed");
            }
        }
        self.controllers.clear();
    }

    fn upsert(&mut self, task: Task) {
        if let Some(controller) = self.controllers.get(&task.id)
            && !controller.is_closed()
        {
            controller.send_modify(|assignment| {
                if assignment.removed {
                    // Removal already under way; the next complete set brings it back.
                    warn!(task_id = %task.id, "task assigned again while being removed");
                }
                assignment.task = task;
            });
            return;
        }
        // Nobody waits for this one's reconciliation: it runs alongside the session.
        drop(self.spawn(task));
    }

    fn spawn(&mut self, task: Task) -> oneshot::Receiver<()> {
        let (reconciled_tx, reconciled_rx) = oneshot::channel();
        let span = info_span!("task", node_id = %self.node_id, task_id = %task.id);
        let status = task.status.clone();
        let task_id = task.id.clone();
        let (sender, receiver) = watch::channel(Assignment {
            task,
            removed: false,
        });
        let controller = Controller {
            task_id: task_id.clone(),
            executors: self.executors.clone(),
            executor: None,
            recorded: false,
            db: Arc::clone(&self.db),
            reporter: self.reporter.clone(),
            files: Arc::clone(&self.files),
            assignment: receiver,
            cancel: self.cancel.child_token(),
            status,
        };
        self.tasks
            .spawn(controller.run(reconciled_tx).instrument(span));
        self.controllers.insert(task_id, sender);
        reconciled_rx
    }

    /// Forgets controllers that have finished.
    fn reap(&mut self) {
        self.controllers
            .retain(|_, controller| !controller.is_closed());
        while let Some(result) = self.tasks.try_join_next() {
            if let Err(error) = result {
                warn!(%error, "a task controller failed");
            }
        }
    }
}

fn mark_removed(assignment: &mut Assignment) -> bool {
    if assignment.removed {
        return false;
    }
    assignment.removed = true;
    true
}
