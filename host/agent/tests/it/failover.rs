//! Several managers: a dead one is skipped at once, a session that breaks moves to another
//! manager while the tasks keep running, and the dispatcher's announcements become the list.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use swarm_agent::{ChannelMaker, MAX_BACKOFF};
use swarm_types::TaskState;

use crate::common::{LIMIT, NodeDirs, RunningAgent, is_alive, must_eventually, process_task};
use crate::dispatcher::{TestDispatcher, TestServer};

/// Well under [`MAX_BACKOFF`]: moving to a live manager never waits for a backoff.
const FAILOVER_LIMIT: Duration = Duration::from_secs(3);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback address nobody listens on (connections are refused).
async fn dead_addr() -> String {
    let listener = tokio::net::TcpListener::bind(any_port())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr.to_string()
}

async fn live() -> (TestDispatcher, TestServer) {
    let dispatcher = TestDispatcher::new(Duration::from_secs(1));
    let server = TestServer::start(&dispatcher, any_port()).await;
    (dispatcher, server)
}

/// Waits until the agent is registered with `addr`; returns how long that took.
async fn must_register_with(agent: &RunningAgent, addr: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    must_eventually(&format!("registration with {addr}"), limit, || {
        agent.manager().as_deref() == Some(addr)
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_managers_are_skipped_at_once() {
    assert!(FAILOVER_LIMIT < MAX_BACKOFF);
    let (dispatcher, server) = live().await;
    let live_addr = server.addr.to_string();
    let mut managers = Vec::new();
    for _ in 0..4 {
        managers.push(dead_addr().await);
    }
    managers.push(live_addr.clone());
    let dirs = NodeDirs::new();
    let agent = RunningAgent::start_with(&dirs, &managers, None).await;
    let took = must_register_with(&agent, &live_addr, LIMIT).await;
    assert!(
        took < FAILOVER_LIMIT,
        "registered with the live manager after {took:?}"
    );
    assert_eq!(dispatcher.registrations().len(), 1);
    agent.stop().await;
    server.stop(&dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_channel_maker_is_used_and_its_lazy_channels_fail_over() {
    let (dispatcher, server) = live().await;
    let live_addr = server.addr.to_string();
    let managers = vec![
        dead_addr().await,
        "127.0.0.1:9".to_string(),
        live_addr.clone(),
    ];
    let made = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&made);
    let channels: ChannelMaker = Arc::new(move |addr: &str| {
        counter.fetch_add(1, Ordering::SeqCst);
        if addr == "127.0.0.1:9" {
            return Err("no channel to the discard port (test)".to_string());
        }
        Ok(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(1))
                .connect_lazy(),
        )
    });
    let dirs = NodeDirs::new();
    let agent = RunningAgent::start_with(&dirs, &managers, Some(channels)).await;
    let took = must_register_with(&agent, &live_addr, LIMIT).await;
    assert!(
        took < FAILOVER_LIMIT,
        "registered through the maker after {took:?}"
    );
    assert!(made.load(Ordering::SeqCst) >= 1);
    agent.stop().await;
    server.stop(&dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_session_moves_to_another_manager_and_tasks_keep_running() {
    let (first, first_server) = live().await;
    let (second, second_server) = live().await;
    let peers = [
        ("manager-1", first_server.addr, 10),
        ("manager-2", second_server.addr, 10),
    ];
    // Both managers share the cluster's state: the same task is assigned through either.
    let task = process_task("survivor", "sleep", &["300"]);
    for dispatcher in [&first, &second] {
        dispatcher.announce(&peers);
        dispatcher.assign(task.clone());
    }
    let managers = vec![
        first_server.addr.to_string(),
        second_server.addr.to_string(),
    ];
    let dirs = NodeDirs::new();
    let agent = RunningAgent::start_with(&dirs, &managers, None).await;
    agent.must_register(1).await;
    let connected = agent.manager().expect("a manager");
    let (old, old_server, new, new_server) = if connected == first_server.addr.to_string() {
        (first, first_server, second, second_server)
    } else {
        (second, second_server, first, first_server)
    };
    must_eventually("survivor running", LIMIT, || {
        old.state("survivor") == Some(TaskState::Running)
    })
    .await;
    let (pid, start) = dirs.pid("survivor").expect("pid of survivor");

    // The manager goes away: the agent registers with the other one at once.
    let new_addr = new_server.addr.to_string();
    old_server.stop(&old).await;
    let took = must_register_with(&agent, &new_addr, LIMIT).await;
    assert!(took < FAILOVER_LIMIT, "failed over after {took:?}");
    assert_eq!(agent.status.borrow().registrations, 2);
    assert_eq!(new.registrations().len(), 1);

    // The task kept running throughout, the same process, and the new manager drives it.
    assert!(is_alive(pid, start), "survivor's process was kept");
    assert_eq!(dirs.pid("survivor"), Some((pid, start)), "not restarted");
    new.set_desired("survivor", TaskState::Shutdown);
    must_eventually("survivor shut down by the new manager", LIMIT, || {
        new.state("survivor") == Some(TaskState::Shutdown)
    })
    .await;
    let states: Vec<TaskState> = new.statuses("survivor").iter().map(|s| s.state).collect();
    assert!(
        states.iter().all(|s| *s >= TaskState::Running),
        "the task did not start again: {states:?}"
    );
    must_eventually("survivor's process gone", LIMIT, || !is_alive(pid, start)).await;

    agent.stop().await;
    new_server.stop(&new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_manager_is_one_to_fail_over_to() {
    let (first, first_server) = live().await;
    let (second, second_server) = live().await;
    let dirs = NodeDirs::new();
    // Configured with the first manager only.
    let agent = RunningAgent::start(&dirs, &first_server.addr.to_string()).await;
    agent.must_register(1).await;
    assert_eq!(agent.status.borrow().managers.len(), 1);

    // The dispatcher announces a second manager during the session.
    first.announce(&[
        ("manager-1", first_server.addr, 10),
        ("manager-2", second_server.addr, 10),
    ]);
    must_eventually("the announcement reaching the agent", LIMIT, || {
        agent.status.borrow().managers.len() == 2
    })
    .await;

    let second_addr = second_server.addr.to_string();
    first_server.stop(&first).await;
    let took = must_register_with(&agent, &second_addr, LIMIT).await;
    assert!(
        took < FAILOVER_LIMIT,
        "moved to the announced manager after {took:?}"
    );
    assert_eq!(second.registrations().len(), 1);
    // The second announces itself alone: that is the list now.
    let managers = agent.status.borrow().managers.clone();
    assert_eq!(
        managers.iter().map(|m| m.addr.as_str()).collect::<Vec<_>>(),
        [second_addr.as_str()]
    );

    agent.stop().await;
    second_server.stop(&second).await;
}
