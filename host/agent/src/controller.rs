//! The task controller: one tokio task per assigned task, driving the executor through
//! prepare, start, wait, shutdown and remove, and reporting each status it reaches.
//!
//! A controller first reconciles with the executor (`inspect`): a task that kept running while
//! the agent was down is adopted, never restarted. Then it loops: read the newest assignment
//! (desired state, removal), take one step, report. Statuses only move forward: `report` drops a
//! status that is not newer than the last one.

use std::sync::Arc;
use std::time::Duration;

use swarm_types::{ExitInfo, Task, TaskState, TaskStatus, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::db::TaskDb;
use crate::executor::{ExecState, Executor, ExitStatus};
use crate::executors::{Executors, requested_executor};
use crate::files::TaskFiles;
use crate::reporter::Reporter;

/// How long a task gets to stop before the executor kills it.
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a task waits for secrets or configs that have not arrived (after an agent restart
/// they come with the first assignment message) before it is rejected.
const FILES_PATIENCE: Duration = Duration::from_secs(30);

/// Message of the FAILED status given to a task the executor no longer knows after a restart.
pub const LOST_MESSAGE: &str = "the task's process was lost while the agent was down";

/// The newest word from the manager about one task.
#[derive(Clone, Debug)]
pub(crate) struct Assignment {
    pub(crate) task: Task,
    /// The task left the node's assignment set: stop it, remove it, forget it.
    pub(crate) removed: bool,
}

/// Where the controller is in the task's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Nothing done with the executor yet.
    Fresh,
    /// Prepared; starts once desired state is RUNNING.
    Prepared,
    /// Started; waiting for it to end.
    Running,
    /// Terminal status reported; waits for removal.
    Done,
}

/// Everything a controller needs.
pub(crate) struct Controller {
    pub(crate) task_id: String,
    /// The node's executors; the controller picks the task's at start.
    pub(crate) executors: Executors,
    /// The executor given the task (name, executor), once chosen.
    pub(crate) executor: Option<(String, Arc<dyn Executor>)>,
    /// The executor's name is in the task database.
    pub(crate) recorded: bool,
    pub(crate) db: Arc<TaskDb>,
    pub(crate) reporter: Reporter,
    /// The node's secrets and configs, written for the task before it is prepared.
    pub(crate) files: Arc<TaskFiles>,
    pub(crate) assignment: watch::Receiver<Assignment>,
    pub(crate) cancel: CancellationToken,
    /// The last status reported (or stored).
    pub(crate) status: TaskStatus,
}

impl Controller {
    /// Reconciles with the executor, tells `reconciled`, then drives the task until it is
    /// removed or the agent stops (tasks keep running when the agent stops).
    pub(crate) async fn run(mut self, reconciled: tokio::sync::oneshot::Sender<()>) {
        let phase = match self.resolve_executor().await {
            None => self.initial_phase().await,
            Some(refused) => {
                self.report(refused).await;
                Some(Phase::Done)
            }
        };
        let _ = reconciled.send(());
        if let Some(phase) = phase {
            self.drive(phase).await;
        }
    }

    /// Picks the task's executor: the one recorded in the task database (a restarted agent
    /// adopts the task with the executor that started it), else the one the task names, else
    /// the node's choice for its runtime. Returns the status to report when none can run it.
    async fn resolve_executor(&mut self) -> Option<TaskStatus> {
        let task_id = self.task_id.clone();
        let recorded = match self.db.run(move |db| db.executor_of(&task_id)).await {
            Ok(recorded) => recorded,
            Err(error) => {
                warn!(%error, "reading the task's executor from the task database");
                None
            }
        };
        let terminal = self.status.state.is_terminal();
        if let Some(name) = recorded {
            self.recorded = true;
            match self.executors.get(&name) {
                Some(executor) => {
                    self.executor = Some((name, executor));
                    return None;
                }
                None if terminal => return None,
                None => {
                    return Some(failed(format!(
                        "the executor {name:?} that runs this task is not available on this node"
                    )));
                }
            }
        }
        let task = self.assignment.borrow().task.clone();
        match self.executors.choose(&task, requested_executor(&task)) {
            Ok(chosen) => {
                self.executor = Some(chosen);
                None
            }
            Err(_) if terminal => None,
            Err(error) => {
                let mut rejected = status(TaskState::Rejected, "no executor for the task");
                rejected.err = error;
                Some(rejected)
            }
        }
    }

    /// The task's executor; `None` when none was found (the task is then done).
    fn executor(&self) -> Option<Arc<dyn Executor>> {
        self.executor.as_ref().map(|(_, e)| Arc::clone(e))
    }

    /// Records the task's executor in the task database, once.
    async fn record_executor(&mut self) {
        let Some((name, _)) = &self.executor else {
            return;
        };
        if self.recorded {
            return;
        }
        let (task_id, name) = (self.task_id.clone(), name.clone());
        match self
            .db
            .run(move |db| db.set_executor(&task_id, &name))
            .await
        {
            Ok(()) => self.recorded = true,
            Err(error) => warn!(%error, "recording the task's executor"),
        }
    }

    /// Where to resume, from the stored status and what the executor knows.
    async fn initial_phase(&mut self) -> Option<Phase> {
        let state = self.status.state;
        if state.is_terminal() {
            return Some(Phase::Done);
        }
        let Some(executor) = self.executor() else {
            return Some(Phase::Done);
        };
        let inspected = self.call(executor.inspect(&self.task_id)).await?;
        if matches!(&inspected, Ok(found) if *found != ExecState::Missing) {
            self.record_executor().await;
        }
        let phase = match inspected {
            Ok(ExecState::Running) => {
                if state >= TaskState::Starting {
                    info!("adopting a task that kept running");
                }
                self.report(status(TaskState::Running, "started")).await;
                Phase::Running
            }
            Ok(ExecState::Exited(exit)) => {
                self.report(exit_status(&exit)).await;
                Phase::Done
            }
            Ok(ExecState::Prepared) => {
                self.report(status(TaskState::Ready, "prepared")).await;
                Phase::Prepared
            }
            Ok(ExecState::Missing) if state >= TaskState::Starting => {
                warn!("the executor no longer knows this task");
                self.report(failed(LOST_MESSAGE.to_string())).await;
                Phase::Done
            }
            Ok(ExecState::Missing) => Phase::Fresh,
            Err(error) if state >= TaskState::Starting => {
                self.report(failed(format!("inspecting the task: {error}")))
                    .await;
                Phase::Done
            }
            Err(error) => {
                debug!(%error, "inspect failed for a task not yet started");
                Phase::Fresh
            }
        };
        Some(phase)
    }

    async fn drive(mut self, mut phase: Phase) {
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let (desired, removed) = {
                let assignment = self.assignment.borrow_and_update();
                (assignment.task.desired_state, assignment.removed)
            };
            if (removed || desired >= TaskState::Shutdown) && phase != Phase::Done {
                if !self.stop(phase).await {
                    return;
                }
                self.files.remove(&self.task_id);
                phase = Phase::Done;
                continue;
            }
            if removed {
                self.remove().await;
                return;
            }
            let next = match phase {
                Phase::Fresh if desired >= TaskState::Ready => self.prepare().await,
                Phase::Prepared if desired >= TaskState::Running => self.start().await,
                Phase::Running => self.wait().await,
                _ => {
                    if !self.changed().await {
                        return;
                    }
                    Some(phase)
                }
            };
            match next {
                Some(next) => {
                    if next == Phase::Done && phase != Phase::Done {
                        // Ended: its secret and config files are no longer needed.
                        self.files.remove(&self.task_id);
                    }
                    phase = next;
                }
                None => return,
            }
        }
    }

    async fn prepare(&mut self) -> Option<Phase> {
        self.report(status(TaskState::Accepted, "accepted")).await;
        self.report(status(TaskState::Preparing, "preparing")).await;
        let task = self.assignment.borrow().task.clone();
        let Some(executor) = self.executor() else {
            return Some(Phase::Done);
        };
        self.record_executor().await;
        let task = match self
            .call(self.files.materialize_within(&task, FILES_PATIENCE))
            .await?
        {
            Ok(task) => task,
            Err(error) => {
                let mut rejected = status(TaskState::Rejected, "secrets or configs missing");
                rejected.err = error.to_string();
                self.report(rejected).await;
                return Some(Phase::Done);
            }
        };
        match self.call(executor.prepare(&task)).await? {
            Ok(()) => {
                self.report(status(TaskState::Ready, "prepared")).await;
                Some(Phase::Prepared)
            }
            Err(error) => {
                let mut rejected = status(TaskState::Rejected, "preparing failed");
                rejected.err = format!("preparing the task: {error}");
                self.report(rejected).await;
                Some(Phase::Done)
            }
        }
    }

    async fn start(&mut self) -> Option<Phase> {
        self.report(status(TaskState::Starting, "starting")).await;
        let executor = self.executor()?;
        match self.call(executor.start(&self.task_id)).await? {
            Ok(()) => {
                self.report(status(TaskState::Running, "started")).await;
                Some(Phase::Running)
            }
            Err(error) => {
                self.report(failed(format!("starting the task: {error}")))
                    .await;
                Some(Phase::Done)
            }
        }
    }

    /// Waits for the task to end, or for an assignment that stops it (then returns `Running`
    /// so the caller shuts it down).
    async fn wait(&mut self) -> Option<Phase> {
        let executor = self.executor()?;
        let task_id = self.task_id.clone();
        let wait = executor.wait(&task_id);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                result = &mut wait => {
                    let reached = match result {
                        Ok(exit) => exit_status(&exit),
                        Err(error) => failed(format!("waiting for the task: {error}")),
                    };
                    self.report(reached).await;
                    return Some(Phase::Done);
                }
                changed = self.assignment.changed() => {
                    changed.ok()?;
                    let assignment = self.assignment.borrow();
                    if assignment.removed || assignment.task.desired_state >= TaskState::Shutdown {
                        // Not marked seen: `drive` reads it again.
                        return Some(Phase::Running);
                    }
                }
                () = self.cancel.cancelled() => return None,
            }
        }
    }

    /// Stops the task; `false` if the agent is stopping.
    async fn stop(&mut self, phase: Phase) -> bool {
        match phase {
            Phase::Fresh => {
                self.report(status(TaskState::Shutdown, "shut down before it started"))
                    .await;
            }
            Phase::Prepared | Phase::Running => {
                let Some(executor) = self.executor() else {
                    return true;
                };
                let Some(result) = self
                    .call(executor.shutdown(&self.task_id, SHUTDOWN_TIMEOUT))
                    .await
                else {
                    return false;
                };
                match result {
                    Ok(()) => {
                        let mut shutdown = status(TaskState::Shutdown, "shutdown");
                        if let Some(Ok(ExecState::Exited(exit))) =
                            self.call(executor.inspect(&self.task_id)).await
                        {
                            shutdown.exit = Some(ExitInfo {
                                code: exit.code,
                                signal: exit.signal,
                            });
                        }
                        self.report(shutdown).await;
                    }
                    Err(error) => {
                        self.report(failed(format!("shutting down the task: {error}")))
                            .await;
                    }
                }
            }
            Phase::Done => {}
        }
        true
    }

    /// Removes the task from the executor and forgets it.
    async fn remove(&mut self) {
        if let Some(executor) = self.executor() {
            match self.call(executor.remove(&self.task_id)).await {
                None => return,
                Some(Err(error)) => warn!(%error, "removing the task from the executor"),
                Some(Ok(())) => {}
            }
        }
        self.files.remove(&self.task_id);
        let task_id = self.task_id.clone();
        match self.db.run(move |db| db.remove(&task_id)).await {
            Ok(()) => info!("task removed"),
            Err(error) => warn!(%error, "dropping the task from the task database"),
        }
    }

    /// Waits for a new assignment; `false` if the agent is stopping.
    async fn changed(&mut self) -> bool {
        tokio::select! {
            changed = self.assignment.changed() => changed.is_ok(),
            () = self.cancel.cancelled() => false,
        }
    }

    /// Runs an executor call unless the agent stops first (then `None`).
    async fn call<T>(&self, call: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            result = call => Some(result),
            () = self.cancel.cancelled() => None,
        }
    }

    /// Records and queues a status if it moves the task forward.
    async fn report(&mut self, next: TaskStatus) {
        if next.state <= self.status.state {
            return;
        }
        debug!(state = %next.state, message = %next.message, err = %next.err, "task status");
        let task_id = self.task_id.clone();
        let stored = next.clone();
        if let Err(error) = self
            .db
            .run(move |db| db.update_status(&task_id, &stored))
            .await
        {
            warn!(%error, "storing the task status");
        }
        self.reporter.push(&self.task_id, next.clone());
        self.status = next;
    }
}

fn status(state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        state,
        timestamp: Timestamp::now(),
        message: message.to_string(),
        err: String::new(),
        exit: None,
    }
}

fn failed(err: String) -> TaskStatus {
    TaskStatus {
        err,
        ..status(TaskState::Failed, "failed")
    }
}

/// The status a task reaches when its process ends.
pub(crate) fn exit_status(exit: &ExitStatus) -> TaskStatus {
    let info = Some(ExitInfo {
        code: exit.code,
        signal: exit.signal,
    });
    if exit.code == 0 && exit.signal.is_none() {
        return TaskStatus {
            exit: info,
            ..status(TaskState::Complete, "finished")
        };
    }
    let err = match exit.signal {
        Some(signal) => format!("task exited on signal {signal}"),
        None if exit.code == -1 && !exit.message.is_empty() => {
            format!("task exited with an unknown exit code: {}", exit.message)
        }
        None if exit.code == -1 => "task exited with an unknown exit code".to_string(),
        None => format!("task exited with code {}", exit.code),
    };
    TaskStatus {
        exit: info,
        ..failed(err)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use futures::FutureExt;
    use futures::future::BoxFuture;
    use parking_lot::Mutex;

    use super::*;
    use crate::db::tests::task;
    use crate::executor::{ExecutorError, ExecutorInfo};
    use crate::executors::NamedExecutor;

    fn exit(code: i32, signal: Option<i32>, message: &str) -> ExitStatus {
        ExitStatus {
            code,
            signal,
            message: message.into(),
        }
    }

    #[test]
    fn exit_statuses_name_the_code_or_signal() {
        let ok = exit_status(&exit(0, None, ""));
        assert_eq!(ok.state, TaskState::Complete);
        assert_eq!(
            ok.exit,
            Some(ExitInfo {
                code: 0,
                signal: None
            })
        );
        assert!(ok.err.is_empty());

        let code = exit_status(&exit(3, None, "exited with code 3"));
        assert_eq!(code.state, TaskState::Failed);
        assert_eq!(code.err, "task exited with code 3");
        assert_eq!(
            code.exit,
            Some(ExitInfo {
                code: 3,
                signal: None
            })
        );

        let signal = exit_status(&exit(137, Some(9), ""));
        assert_eq!(signal.state, TaskState::Failed);
        assert_eq!(signal.err, "task exited on signal 9");

        let unknown = exit_status(&exit(-1, None, "adopted after a restart"));
        assert_eq!(
            unknown.err,
            "task exited with an unknown exit code: adopted after a restart"
        );
    }

    /// An executor whose calls fail on demand and whose tasks end when the test says.
    pub(crate) struct Fake {
        state: Mutex<ExecState>,
        failing: HashSet<&'static str>,
        calls: Mutex<Vec<&'static str>>,
        exit: watch::Sender<Option<ExitStatus>>,
    }

    impl Fake {
        pub(crate) fn new(state: ExecState, failing: &[&'static str]) -> Arc<Fake> {
            Arc::new(Fake {
                state: Mutex::new(state),
                failing: failing.iter().copied().collect(),
                calls: Mutex::new(Vec::new()),
                exit: watch::channel(None).0,
            })
        }

        fn call(&self, name: &'static str) -> Result<(), ExecutorError> {
            self.calls.lock().push(name);
            if self.failing.contains(name) {
                return Err(ExecutorError::new(format!("{name} broke")));
            }
            Ok(())
        }

        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().clone()
        }
    }

    impl Executor for Fake {
        fn describe(&self) -> BoxFuture<'_, Result<ExecutorInfo, ExecutorError>> {
            async move {
                Ok(ExecutorInfo {
                    name: "fake".into(),
                    runtimes: vec!["process".into()],
                    engine: None,
                })
            }
            .boxed()
        }
        fn prepare<'a>(&'a self, _task: &'a Task) -> BoxFuture<'a, Result<(), ExecutorError>> {
            async move {
                self.call("prepare")?;
                *self.state.lock() = ExecState::Prepared;
                Ok(())
            }
            .boxed()
        }
        fn start<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, Result<(), ExecutorError>> {
            async move {
                self.call("start")?;
                *self.state.lock() = ExecState::Running;
                Ok(())
            }
            .boxed()
        }
        fn wait<'a>(
            &'a self,
            _task_id: &'a str,
        ) -> BoxFuture<'a, Result<ExitStatus, ExecutorError>> {
            async move {
                self.call("wait")?;
                let mut exit = self.exit.subscribe();
                let ended = exit
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| ExecutorError::new("gone"))?
                    .clone();
                ended.ok_or_else(|| ExecutorError::new("no exit"))
            }
            .boxed()
        }
        fn shutdown<'a>(
            &'a self,
            _task_id: &'a str,
            _timeout: Duration,
        ) -> BoxFuture<'a, Result<(), ExecutorError>> {
            async move {
                self.call("shutdown")?;
                let ended = exit(143, Some(15), "");
                *self.state.lock() = ExecState::Exited(ended.clone());
                self.exit.send_replace(Some(ended));
                Ok(())
            }
            .boxed()
        }
        fn remove<'a>(&'a self, _task_id: &'a str) -> BoxFuture<'a, Result<(), ExecutorError>> {
            async move {
                self.call("remove")?;
                *self.state.lock() = ExecState::Missing;
                Ok(())
            }
            .boxed()
        }
        fn inspect<'a>(
            &'a self,
            _task_id: &'a str,
        ) -> BoxFuture<'a, Result<ExecState, ExecutorError>> {
            async move {
                self.call("inspect")?;
                Ok(self.state.lock().clone())
            }
            .boxed()
        }
    }

    struct Harness {
        db: Arc<TaskDb>,
        assignment: watch::Sender<Assignment>,
        cancel: CancellationToken,
        handle: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    /// Stores `task` and starts its controller.
    fn fake_executors(fakes: &[(&str, &str, Arc<Fake>)]) -> Executors {
        Executors::new(
            fakes
                .iter()
                .map(|(name, runtime, fake)| NamedExecutor {
                    info: ExecutorInfo {
                        name: name.to_string(),
                        runtimes: vec![runtime.to_string()],
                        engine: None,
                    },
                    executor: Arc::clone(fake) as Arc<dyn Executor>,
                })
                .collect(),
        )
    }

    async fn must_start(executor: Arc<Fake>, task: Task) -> Harness {
        start_with(fake_executors(&[("fake", "process", executor)]), task, None).await
    }

    /// Stores `task` (and `recorded` as its executor) and starts its controller.
    async fn start_with(executors: Executors, task: Task, recorded: Option<&str>) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(TaskDb::open(&dir.path().join("worker.redb")).expect("db"));
        db.put_assignments(vec![task.clone()]).expect("store");
        if let Some(name) = recorded {
            db.set_executor(&task.id, name).expect("record");
        }
        let (assignment, receiver) = watch::channel(Assignment {
            task: task.clone(),
            removed: false,
        });
        let cancel = CancellationToken::new();
        let controller = Controller {
            task_id: task.id.clone(),
            executors,
            executor: None,
            recorded: false,
            db: Arc::clone(&db),
            reporter: Reporter::new(),
            files: Arc::new(TaskFiles::new(dir.path().join("files"))),
            assignment: receiver,
            cancel: cancel.clone(),
            status: task.status.clone(),
        };
        let (reconciled, _) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(controller.run(reconciled));
        Harness {
            db,
            assignment,
            cancel,
            handle,
            _dir: dir,
        }
    }

    impl Harness {
        fn stored(&self, task_id: &str) -> Option<TaskStatus> {
            self.db.get(task_id).expect("read").map(|task| task.status)
        }

        async fn must_reach(&self, task_id: &str, state: TaskState) -> TaskStatus {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = self.stored(task_id)
                    && status.state >= state
                {
                    assert_eq!(status.state, state, "{status:?}");
                    return status;
                }
                assert!(Instant::now() < deadline, "{task_id} never reached {state}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        fn set_desired(&self, state: TaskState) {
            self.assignment
                .send_modify(|assignment| assignment.task.desired_state = state);
        }

        async fn must_stop(self) {
            self.cancel.cancel();
            self.handle.await.expect("controller");
        }
    }

    #[tokio::test]
    async fn a_failing_prepare_rejects_the_task() {
        let fake = Fake::new(ExecState::Missing, &["prepare"]);
        let harness = must_start(Arc::clone(&fake), task("t", TaskState::Assigned)).await;
        let rejected = harness.must_reach("t", TaskState::Rejected).await;
        assert_eq!(rejected.err, "preparing the task: prepare broke");
        assert_eq!(fake.calls(), vec!["inspect", "prepare"]);
        harness.must_stop().await;
    }

    #[tokio::test]
    async fn a_failing_start_fails_the_task() {
        let fake = Fake::new(ExecState::Missing, &["start"]);
        let harness = must_start(Arc::clone(&fake), task("t", TaskState::Assigned)).await;
        let failed = harness.must_reach("t", TaskState::Failed).await;
        assert_eq!(failed.err, "starting the task: start broke");
        harness.must_stop().await;
    }

    #[tokio::test]
    async fn shutdown_before_start_touches_nothing_and_removal_forgets_the_task() {
        let fake = Fake::new(ExecState::Missing, &[]);
        let mut waiting = task("t", TaskState::Assigned);
        waiting.desired_state = TaskState::Assigned;
        let harness = must_start(Arc::clone(&fake), waiting).await;
        harness.set_desired(TaskState::Shutdown);
        let shutdown = harness.must_reach("t", TaskState::Shutdown).await;
        assert_eq!(shutdown.message, "shut down before it started");
        assert_eq!(fake.calls(), vec!["inspect"]);

        harness
            .assignment
            .send_modify(|assignment| assignment.removed = true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while harness.stored("t").is_some() {
            assert!(Instant::now() < deadline, "never dropped from the database");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(fake.calls(), vec!["inspect", "remove"]);
        harness
            .handle
            .await
            .expect("the controller ends after removal");
    }

    #[tokio::test]
    async fn a_running_task_is_shut_down_with_its_exit_recorded() {
        let fake = Fake::new(ExecState::Missing, &[]);
        let harness = must_start(Arc::clone(&fake), task("t", TaskState::Assigned)).await;
        harness.must_reach("t", TaskState::Running).await;
        harness.set_desired(TaskState::Shutdown);
        let shutdown = harness.must_reach("t", TaskState::Shutdown).await;
        assert_eq!(
            shutdown.exit,
            Some(ExitInfo {
                code: 143,
                signal: Some(15)
            })
        );
        harness.must_stop().await;
    }

    #[tokio::test]
    async fn a_failing_shutdown_fails_the_task() {
        let fake = Fake::new(ExecState::Running, &["shutdown"]);
        let harness = must_start(Arc::clone(&fake), task("t", TaskState::Running)).await;
        // Adopted: running already, so only inspect and wait so far.
        harness.set_desired(TaskState::Shutdown);
        let failed = harness.must_reach("t", TaskState::Failed).await;
        assert_eq!(failed.err, "shutting down the task: shutdown broke");
        assert!(!fake.calls().contains(&"start"), "{:?}", fake.calls());
        harness.must_stop().await;
    }

    #[tokio::test]
    async fn a_prepared_task_resumes_without_preparing_again() {
        let fake = Fake::new(ExecState::Prepared, &[]);
        let harness = must_start(Arc::clone(&fake), task("t", TaskState::Preparing)).await;
        harness.must_reach("t", TaskState::Running).await;
        assert_eq!(fake.calls()[..2], ["inspect", "start"]);
        fake.exit.send_replace(Some(exit(0, None, "")));
        harness.must_reach("t", TaskState::Complete).await;
        harness.must_stop().await;
    }

    #[tokio::test]
    async fn a_lost_task_is_failed_and_an_early_one_is_prepared_again() {
        let fake = Fake::new(ExecState::Missing, &[]);
        let harness = must_start(Arc::clone(&fake), task("lost", TaskState::Running)).await;
        let failed = harness.must_reach("lost", TaskState::Failed).await;
        assert_eq!(failed.err, LOST_MESSAGE);
        harness.must_stop().await;

        let fake = Fake::new(ExecState::Missing, &[]);
        let harness = must_start(Arc::clone(&fake), task("early", TaskState::Ready)).await;
        harness.must_reach("early", TaskState::Running).await;
        assert_eq!(fake.calls()[..3], ["inspect", "prepare", "start"]);
        harness.must_stop().await;
    }

    #[tokio::test]
    async fn a_task_keeps_the_executor_that_started_it() {
        let first = Fake::new(ExecState::Missing, &[]);
        let second = Fake::new(ExecState::Running, &[]);
        let executors = fake_executors(&[
            ("first", "process", Arc::clone(&first)),
            ("second", "process", Arc::clone(&second)),
        ]);
        // Recorded as started by `second`: adopted there although `first` is the default.
        let harness = start_with(
            executors.clone(),
            task("t", TaskState::Starting),
            Some("second"),
        )
        .await;
        harness.must_reach("t", TaskState::Running).await;
        assert!(first.calls().is_empty(), "{:?}", first.calls());
        assert_eq!(second.calls()[0], "inspect");
        harness.must_stop().await;

        // A new task goes to the default, and the choice is recorded before prepare.
        let harness = start_with(executors, task("n", TaskState::Assigned), None).await;
        harness.must_reach("n", TaskState::Running).await;
        assert_eq!(first.calls()[..3], ["inspect", "prepare", "start"]);
        assert_eq!(
            harness.db.executor_of("n").expect("read"),
            Some("first".to_string())
        );
        harness.must_stop().await;
    }

    #[tokio::test]
    async fn a_missing_executor_fails_or_rejects_the_task() {
        let fake = Fake::new(ExecState::Running, &[]);
        let harness = start_with(
            fake_executors(&[("default", "process", Arc::clone(&fake))]),
            task("t", TaskState::Running),
            Some("docker"),
        )
        .await;
        let failed = harness.must_reach("t", TaskState::Failed).await;
        assert_eq!(
            failed.err,
            "the executor \"docker\" that runs this task is not available on this node"
        );
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
        harness.must_stop().await;

        let harness = start_with(
            fake_executors(&[("default", "wasi", Arc::clone(&fake))]),
            task("p", TaskState::Assigned),
            None,
        )
        .await;
        let rejected = harness.must_reach("p", TaskState::Rejected).await;
        assert_eq!(
            rejected.err,
            "no executor on this node runs process tasks (executors: default (wasi))"
        );
        harness.must_stop().await;
    }
}
