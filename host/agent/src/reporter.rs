//! The status reporter: task statuses waiting to be sent to the dispatcher.
//!
//! Controllers push statuses; only the newest per task is kept. Each session runs one flusher
//! (see `session.rs`) that takes batches and sends them with `UpdateTaskStatus`, one call in
//! flight at a time. A batch that could not be sent is put back (unless a newer status of the
//! same task arrived meanwhile) and goes out again after the next registration.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use swarm_types::TaskStatus;
use tokio::sync::Notify;

/// Shared handle to the pending statuses.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reporter {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: Mutex<HashMap<String, TaskStatus>>,
    notify: Notify,
}

impl Reporter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Queues a status; an older status than the one queued for the task is dropped.
    pub(crate) fn push(&self, task_id: &str, status: TaskStatus) {
        {
            let mut pending = self.inner.pending.lock();
            match pending.get(task_id) {
                Some(queued) if queued.state > status.state => return,
                _ => {
                    pending.insert(task_id.to_string(), status);
                }
            }
        }
        self.inner.notify.notify_one();
    }

    /// Takes up to `max` statuses out of the queue.
    pub(crate) fn take_batch(&self, max: usize) -> Vec<(String, TaskStatus)> {
        let mut pending = self.inner.pending.lock();
        let ids: Vec<String> = pending.keys().take(max).cloned().collect();
        ids.into_iter()
            .filter_map(|id| pending.remove(&id).map(|status| (id, status)))
            .collect()
    }

    /// Puts back a batch that could not be sent, keeping any newer status queued since.
    pub(crate) fn restore(&self, batch: Vec<(String, TaskStatus)>) {
        let mut pending = self.inner.pending.lock();
        for (id, status) in batch {
            match pending.get(&id) {
                Some(queued) if queued.state >= status.state => {}
                _ => {
                    pending.insert(id, status);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.pending.lock().len()
    }

    /// Resolves after the next push (or at once if a push happened since the last wake-up).
    pub(crate) async fn notified(&self) {
        self.inner.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use swarm_types::TaskState;

    use super::*;

    fn status(state: TaskState) -> TaskStatus {
        TaskStatus {
            state,
            ..Default::default()
        }
    }

    #[test]
    fn keeps_only_the_newest_status_per_task() {
        let reporter = Reporter::new();
        reporter.push("a", status(TaskState::Accepted));
        reporter.push("a", status(TaskState::Running));
        reporter.push("a", status(TaskState::Preparing));
        reporter.push("b", status(TaskState::Accepted));
        let mut batch = reporter.take_batch(10);
        batch.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            batch,
            vec![
                ("a".to_string(), status(TaskState::Running)),
                ("b".to_string(), status(TaskState::Accepted)),
            ]
        );
        assert_eq!(reporter.len(), 0);
    }

    #[test]
    fn a_failed_batch_is_restored_without_overwriting_newer_statuses() {
        let reporter = Reporter::new();
        reporter.push("a", status(TaskState::Running));
        reporter.push("b", status(TaskState::Running));
        let batch = reporter.take_batch(10);
        reporter.push("a", status(TaskState::Complete));
        reporter.restore(batch);
        let mut batch = reporter.take_batch(1);
        batch.extend(reporter.take_batch(1));
        batch.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            batch,
            vec![
                ("a".to_string(), status(TaskState::Complete)),
                ("b".to_string(), status(TaskState::Running)),
            ]
        );
    }
}
