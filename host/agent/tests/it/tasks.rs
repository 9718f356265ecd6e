//! Tasks through the real default executor: running to an exit code, rejected specs, desired
//! READY, shutdown, removal, adoption after an agent restart, and log requests.

use std::net::SocketAddr;
use std::time::Duration;

use swarm_agent::LOST_MESSAGE;
use swarm_types::TaskState;

use crate::common::{
    LIMIT, NodeDirs, RunningAgent, assert_forward, is_alive, kill_group, must_eventually,
    process_task,
};
use crate::dispatcher::{TestDispatcher, TestServer};

async fn setup() -> (TestDispatcher, TestServer, NodeDirs, RunningAgent) {
    let dispatcher = TestDispatcher::new(Duration::from_secs(1));
    let server = TestServer::start(&dispatcher, SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let dirs = NodeDirs::new();
    let agent = RunningAgent::start(&dirs, &server.addr.to_string()).await;
    agent.must_register(1).await;
    (dispatcher, server, dirs, agent)
}

async fn must_reach(dispatcher: &TestDispatcher, task_id: &str, state: TaskState) {
    must_eventually(&format!("{task_id} reaching {state}"), LIMIT, || {
        dispatcher.state(task_id) >= Some(state)
    })
    .await;
    assert_eq!(
        dispatcher.state(task_id),
        Some(state),
        "{task_id}: {:?}",
        dispatcher.statuses(task_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_to_their_exit_code() {
    let (dispatcher, server, dirs, agent) = setup().await;
    dispatcher.assign(process_task("ok", "sh", &["-c", "exit 0"]));
    dispatcher.assign(process_task("bad", "sh", &["-c", "exit 3"]));
    dispatcher.assign(process_task("long", "sleep", &["300"]));
    dispatcher.assign(process_task("empty", "", &[]));

    must_reach(&dispatcher, "ok", TaskState::Complete).await;
    let ok = dispatcher.statuses("ok");
    assert_eq!(
        ok.last().and_then(|s| s.exit.clone()).map(|e| e.code),
        Some(0)
    );

    must_reach(&dispatcher, "bad", TaskState::Failed).await;
    let bad = dispatcher.statuses("bad");
    let failed = bad.last().expect("status");
    assert_eq!(failed.err, "task exited with code 3");
    assert_eq!(failed.exit.as_ref().map(|e| e.code), Some(3));

    must_reach(&dispatcher, "long", TaskState::Running).await;
    let (pid, start) = dirs.pid("long").expect("pid file of long");
    assert!(is_alive(pid, start));

    must_reach(&dispatcher, "empty", TaskState::Rejected).await;
    let rejected = dispatcher.statuses("empty");
    let rejected = rejected.last().expect("status");
    assert!(
        rejected.err.contains("empty command"),
        "rejection names the reason: {:?}",
        rejected.err
    );

    for task_id in ["ok", "bad", "long", "empty"] {
        assert_forward(task_id, &dispatcher.statuses(task_id));
    }
    agent.stop().await;
    server.stop(&dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_desired_ready_is_prepared_and_starts_when_desired_running() {
    let (dispatcher, server, dirs, agent) = setup().await;
    let mut task = process_task("later", "sleep", &["300"]);
    task.desired_state = TaskState::Ready;
    dispatcher.assign(task);
    must_reach(&dispatcher, "later", TaskState::Ready).await;
    assert!(
        dirs.pid("later").is_none(),
        "not started while desired READY"
    );

    dispatcher.set_desired("later", TaskState::Running);
    must_reach(&dispatcher, "later", TaskState::Running).await;
    let (pid, start) = dirs.pid("later").expect("pid file");
    assert!(is_alive(pid, start));
    assert_forward("later", &dispatcher.statuses("later"));

    agent.stop().await;
    server.stop(&dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_shutdown_stops_a_task_and_removal_forgets_it() {
    let (dispatcher, server, dirs, agent) = setup().await;
    dispatcher.assign(process_task("stopped", "sleep", &["300"]));
    dispatcher.assign(process_task("removed", "sleep", &["300"]));
    must_reach(&dispatcher, "stopped", TaskState::Running).await;
    must_reach(&dispatcher, "removed", TaskState::Running).await;
    let (stopped_pid, stopped_start) = dirs.pid("stopped").expect("pid");
    let (removed_pid, removed_start) = dirs.pid("removed").expect("pid");

    dispatcher.set_desired("stopped", TaskState::Shutdown);
    must_reach(&dispatcher, "stopped", TaskState::Shutdown).await;
    assert!(!is_alive(stopped_pid, stopped_start));
    assert!(
        dirs.tasks_dir().join("stopped").exists(),
        "kept until removed"
    );

    dispatcher.unassign("stopped");
    must_eventually("the files of stopped removed", LIMIT, || {
        !dirs.tasks_dir().join("stopped").exists()
    })
    .await;

    // Removing a running task stops it first.
    dispatcher.unassign("removed");
    must_reach(&dispatcher, "removed", TaskState::Shutdown).await;
    must_eventually("the files of removed removed", LIMIT, || {
        !dirs.tasks_dir().join("removed").exists()
    })
    .await;
    assert!(!is_alive(removed_pid, removed_start));
    for task_id in ["stopped", "removed"] {
        assert_forward(task_id, &dispatcher.statuses(task_id));
    }

    // Both are gone from the task database: a restarted agent has nothing to reconcile.
    agent.stop().await;
    let agent = RunningAgent::start(&dirs, &server.addr.to_string()).await;
    agent.must_register(1).await;
    assert_eq!(agent.status.borrow().reconciled_tasks, 0);

    agent.stop().await;
    server.stop(&dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_tasks_and_reports_ended_and_lost_ones() {
    let (dispatcher, server, dirs, agent) = setup().await;
    for task_id in ["kept", "ended", "lost"] {
        dispatcher.assign(process_task(task_id, "sleep", &["300"]));
    }
    for task_id in ["kept", "ended", "lost"] {
        must_reach(&dispatcher, task_id, TaskState::Running).await;
    }
    let kept = dirs.pid("kept").expect("pid of kept");
    let ended = dirs.pid("ended").expect("pid of ended");
    let lost = dirs.pid("lost").expect("pid of lost");
    agent.stop().await;

    // While the agent is down, one task ends and another disappears without a trace.
    kill_group(ended.0);
    kill_group(lost.0);
    must_eventually("exit files of ended and lost", LIMIT, || {
        dirs.tasks_dir().join("ended").join("exit").exists()
            && dirs.tasks_dir().join("lost").join("exit").exists()
    })
    .await;
    std::fs::remove_dir_all(dirs.tasks_dir().join("lost")).expect("remove the files of lost");
    assert!(
        is_alive(kept.0, kept.1),
        "tasks keep running without the agent"
    );
    let starts_before = count(&dispatcher, "kept", TaskState::Starting);

    let agent = RunningAgent::start(&dirs, &server.addr.to_string()).await;
    agent.must_register(1).await;
    assert_eq!(agent.status.borrow().reconciled_tasks, 3);

    must_reach(&dispatcher, "ended", TaskState::Failed).await;
    let ended_status = dispatcher
        .statuses("ended")
        .last()
        .cloned()
        .expect("status");
    assert_eq!(ended_status.err, "task exited on signal 9");
    must_reach(&dispatcher, "lost", TaskState::Failed).await;
    let lost_status = dispatcher.statuses("lost").last().cloned().expect("status");
    assert_eq!(lost_status.err, LOST_MESSAGE);

    // The running task was adopted: same process, never started again.
    assert_eq!(dirs.pid("kept"), Some(kept));
    assert!(is_alive(kept.0, kept.1));
    assert_eq!(
        count(&dispatcher, "kept", TaskState::Starting),
        starts_before
    );
    assert_eq!(dispatcher.state("kept"), Some(TaskState::Running));

    // And it is still under control.
    dispatcher.set_desired("kept", TaskState::Shutdown);
    must_reach(&dispatcher, "kept", TaskState::Shutdown).await;
    assert!(!is_alive(kept.0, kept.1));
    for task_id in ["kept", "ended", "lost"] {
        let statuses = dispatcher.statuses(task_id);
        assert!(
            statuses
                .windows(2)
                .all(|pair| pair[0].state <= pair[1].state),
            "statuses of {task_id} moved backward: {statuses:?}"
        );
    }

    agent.stop().await;
    server.stop(&dispatcher).await;
}

fn count(dispatcher: &TestDispatcher, task_id: &str, state: TaskState) -> usize {
    dispatcher
        .statuses(task_id)
        .iter()
        .filter(|status| status.state == state)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_requests_are_answered_with_the_tail_of_each_stream() {
    let (dispatcher, server, dirs, agent) = setup().await;
    dispatcher.assign(process_task(
        "chatty",
        "sh",
        &["-c", "echo hello; echo oops >&2; exec sleep 300"],
    ));
    must_reach(&dispatcher, "chatty", TaskState::Running).await;
    let stdout = dirs.tasks_dir().join("chatty").join("stdout");
    let stderr = dirs.tasks_dir().join("chatty").join("stderr");
    must_eventually("the task's output", LIMIT, || {
        std::fs::metadata(&stdout).is_ok_and(|m| m.len() == 6)
            && std::fs::metadata(&stderr).is_ok_and(|m| m.len() == 5)
    })
    .await;

    let all = dispatcher.request_logs("chatty", 0).expect("session open");
    must_eventually("published logs", LIMIT, || {
        dispatcher.published_logs(&all).is_some()
    })
    .await;
    let logs = dispatcher.published_logs(&all).expect("logs");
    assert_eq!(logs.stdout, b"hello\n");
    assert_eq!(logs.stderr, b"oops\n");
    assert!(logs.error.is_empty());

    let tail = dispatcher.request_logs("chatty", 3).expect("session open");
    must_eventually("published tail", LIMIT, || {
        dispatcher.published_logs(&tail).is_some()
    })
    .await;
    let logs = dispatcher.published_logs(&tail).expect("logs");
    assert_eq!(logs.stdout, b"lo\n");
    assert_eq!(logs.stderr, b"ps\n");

    let unknown = dispatcher
        .request_logs("no-such-task", 0)
        .expect("session open");
    must_eventually("an answer for an unknown task", LIMIT, || {
        dispatcher.published_logs(&unknown).is_some()
    })
    .await;
    let logs = dispatcher.published_logs(&unknown).expect("logs");
    assert!(!logs.error.is_empty(), "an unknown task gets an error");

    agent.stop().await;
    server.stop(&dispatcher).await;
}
