//! The session: registration, heartbeats, re-registration after dropped streams, assignment
//! gaps and server restarts, and statuses delivered once a session works again.

use std::net::SocketAddr;
use std::time::Duration;

use swarm_agent::ManagerPeer;
use swarm_types::TaskState;

use crate::common::{LIMIT, NodeDirs, RunningAgent, assert_forward, must_eventually, process_task};
use crate::dispatcher::{TestDispatcher, TestServer};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_and_heartbeats_at_the_returned_period() {
    let period = Duration::from_millis(200);
    let dispatcher = TestDispatcher::new(period);
    let server = TestServer::start(&dispatcher, any_port()).await;
    let dirs = NodeDirs::new();
    let agent = RunningAgent::start(&dirs, &server.addr.to_string()).await;
    agent.must_register(1).await;

    let registration = &dispatcher.registrations()[0];
    assert_eq!(registration.node_id, "node-1");
    let description = registration.description.as_ref().expect("description");
    assert_eq!(description.hostname, "test-host");
    assert_eq!(description.executor, "default");
    assert_eq!(description.runtimes, vec!["process", "wasi"]);
    assert_eq!(
        agent.status.borrow().managers,
        vec![ManagerPeer {
            node_id: "manager-1".into(),
            addr: server.addr.to_string(),
            weight: 10,
        }]
    );
    assert_eq!(
        agent.status.borrow().manager_addr,
        Some(server.addr.to_string())
    );

    must_eventually("five heartbeats", LIMIT, || {
        dispatcher.heartbeats().len() >= 5
    })
    .await;
    let heartbeats = dispatcher.heartbeats();
    for pair in heartbeats.windows(2) {
        let gap = pair[1] - pair[0];
        // Sent at 90-100% of the period; arrival jitter can only shave a little off.
        assert!(
            gap >= period.mul_f64(0.6),
            "heartbeats {gap:?} apart with a period of {period:?}"
        );
    }
    assert_eq!(
        dispatcher.registrations().len(),
        1,
        "one session throughout"
    );

    agent.stop().await;
    server.stop(&dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_comes_back_after_dropped_streams_gaps_and_a_server_restart() {
    let dispatcher = TestDispatcher::new(Duration::from_secs(1));
    let server = TestServer::start(&dispatcher, any_port()).await;
    let addr = server.addr;
    let dirs = NodeDirs::new();
    let agent = RunningAgent::start(&dirs, &addr.to_string()).await;
    agent.must_register(1).await;

    // The manager drops the session: the agent registers again.
    dispatcher.drop_streams();
    agent.must_register(2).await;

    // An incremental message that does not follow the last one ends the session.
    must_eventually("the assignments stream of session 2", LIMIT, || {
        dispatcher.registrations().len() == 2
    })
    .await;
    let task = process_task("gap-task", "sleep", &["300"]);
    dispatcher.assign(task);
    must_eventually("gap-task running", LIMIT, || {
        dispatcher.state("gap-task") == Some(TaskState::Running)
    })
    .await;
    dispatcher.send_gap();
    agent.must_register(3).await;

    // The manager restarts on the same port.
    server.stop(&dispatcher).await;
    must_eventually("the agent noticing", LIMIT, || {
        !agent.status.borrow().registered
    })
    .await;
    let server = TestServer::start(&dispatcher, addr).await;
    agent.must_register(4).await;

    // After re-registration the complete set still drives the task.
    dispatcher.set_desired("gap-task", TaskState::Shutdown);
    must_eventually("gap-task shut down", LIMIT, || {
        dispatcher.state("gap-task") == Some(TaskState::Shutdown)
    })
    .await;
    assert_forward("gap-task", &dispatcher.statuses("gap-task"));

    agent.stop().await;
    server.stop(&dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_that_failed_to_send_are_delivered_after_registering_again() {
    let dispatcher = TestDispatcher::new(Duration::from_secs(1));
    let server = TestServer::start(&dispatcher, any_port()).await;
    let dirs = NodeDirs::new();
    let agent = RunningAgent::start(&dirs, &server.addr.to_string()).await;
    agent.must_register(1).await;

    dispatcher.set_fail_updates(true);
    dispatcher.assign(process_task("late", "sh", &["-c", "exit 7"]));
    // Each failed UpdateTaskStatus ends the session; the agent registers again and retries.
    must_eventually("a failed status update", LIMIT, || {
        dispatcher.rejected_updates() >= 1
    })
    .await;
    agent.must_register(2).await;
    assert!(dispatcher.statuses("late").is_empty());

    dispatcher.set_fail_updates(false);
    must_eventually("the final status of late", LIMIT, || {
        dispatcher.state("late") == Some(TaskState::Failed)
    })
    .await;
    let statuses = dispatcher.statuses("late");
    assert_forward("late", &statuses);
    let failed = statuses.last().expect("a status");
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(failed.err, "task exited with code 7");
    assert_eq!(failed.exit.as_ref().map(|e| e.code), Some(7));

    agent.stop().await;
    server.stop(&dispatcher).await;
}
