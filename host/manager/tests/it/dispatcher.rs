//! The dispatcher served over real gRPC on 127.0.0.1:0, driven by a fake agent built on the
//! generated `DispatcherClient`: sessions, heartbeats and liveness, assignments, task status
//! reports and log requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_manager::{Dispatcher, DispatcherConfig, DispatcherService, ManagerError};
use swarm_proto::pb;
use swarm_proto::pb::dispatcher_client::DispatcherClient;
use swarm_store::StoreRead as _;
use swarm_types::{NodeRole, NodeState, Service, TaskState, TaskStatus, Timestamp};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{Harness, TIMEOUT, ready_node, service_spec};

const MANAGER: &str = "manager-1";

/// A harness whose dispatcher is served on a local port, with its liveness loop running.
struct Served {
    h: Harness,
    dispatcher: Arc<Dispatcher>,
    addr: SocketAddr,
}

async fn must_serve() -> Served {
    let mut h = Harness::new(0).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let dispatcher = Arc::new(Dispatcher::new(
        h.store.clone(),
        h.committer.clone(),
        DispatcherConfig {
            manager_node_id: MANAGER.into(),
            advertise_addr: addr.to_string(),
            raft_id: 1,
        },
    ));
    let service = DispatcherService::new(dispatcher.clone());
    let cancel = h.cancel_token();
    h.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::dispatcher_server::DispatcherServer::new(service))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                cancel.cancelled_owned(),
            )
            .await
            .expect("dispatcher server");
    });
    h.spawn(dispatcher.clone().run_liveness(h.cancel_token()));
    Served {
        h,
        dispatcher,
        addr,
    }
}

/// A fake agent: one registered session.
struct Agent {
    node_id: String,
    client: DispatcherClient<Channel>,
    session_id: String,
    first: pb::SessionMessage,
    stream: tonic::Streaming<pb::SessionMessage>,
}

async fn must_connect(addr: SocketAddr) -> DispatcherClient<Channel> {
    DispatcherClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the dispatcher")
}

fn description(node_id: &str) -> pb::NodeDescription {
    ready_node(node_id, &[])
        .description
        .expect("test nodes describe themselves")
        .into()
}

async fn must_register(addr: SocketAddr, node_id: &str) -> Agent {
    let mut client = must_connect(addr).await;
    let mut stream = client
        .session(pb::SessionRequest {
            node_id: node_id.into(),
            description: Some(description(node_id)),
        })
        .await
        .expect("session")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("first session message")
        .expect("the session stream stays open");
    Agent {
        node_id: node_id.into(),
        session_id: first.session_id.clone(),
        client,
        first,
        stream,
    }
}

impl Agent {
    async fn heartbeat(&mut self) -> Result<Duration, tonic::Status> {
        let response = self
            .client
            .heartbeat(pb::HeartbeatRequest {
                session_id: self.session_id.clone(),
            })
            .await?
            .into_inner();
        Ok(swarm_proto::duration_from_pb("period", response.period).expect("a valid period"))
    }

    async fn report(&mut self, task_id: &str, state: TaskState) -> Result<(), tonic::Status> {
        let status = TaskStatus {
            state,
            timestamp: Timestamp::now(),
            message: format!("{} says {state}", self.node_id),
            err: if state == TaskState::Failed {
                "exit 1".into()
            } else {
                String::new()
            },
            exit: None,
        };
        self.client
            .update_task_status(pb::UpdateTaskStatusRequest {
                plugins: Vec::new(),
                session_id: self.session_id.clone(),
                updates: vec![pb::TaskStatusUpdate {
                    task_id: task_id.into(),
                    status: Some(status.into()),
                }],
            })
            .await
            .map(|_| ())
    }

    async fn assignments(&mut self) -> tonic::Streaming<pb::AssignmentsMessage> {
        self.client
            .assignments(pb::AssignmentsRequest {
                session_id: self.session_id.clone(),
            })
            .await
            .expect("assignments")
            .into_inner()
    }
}

async fn must_next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(TIMEOUT, stream.message())
        .await
        .expect("a message in time")
        .expect("no stream error")
        .expect("the stream stays open")
}

fn node_state(h: &Harness, id: &str) -> NodeState {
    h.must_node(id).status.state
}

#[tokio::test]
async fn a_session_registers_the_node_ready_and_returns_a_session_id() {
    let s = must_serve().await;
    let agent = must_register(s.addr, "worker-1").await;
    assert!(!agent.session_id.is_empty());
    let node = agent
        .first
        .node
        .clone()
        .expect("the node in the first message");
    assert_eq!(node.id, "worker-1");
    assert_eq!(
        node.status.as_ref().map(|st| st.state),
        Some(pb::NodeState::Ready as i32)
    );
    assert_eq!(agent.first.managers.len(), 1);
    assert_eq!(agent.first.managers[0].node_id, MANAGER);
    assert_eq!(agent.first.managers[0].addr, s.addr.to_string());

    let stored = s.h.must_node("worker-1");
    assert_eq!(stored.status.state, NodeState::Ready);
    assert_eq!(stored.role, NodeRole::Worker);
    assert!(stored.manager_status.is_none());
    assert_eq!(
        stored.description.as_ref().map(|d| d.hostname.as_str()),
        Some("worker-1")
    );
    assert!(
        stored.status.addr.starts_with("127.0.0.1:"),
        "{}",
        stored.status.addr
    );

    // The manager's own node registers with the manager role.
    let manager = must_register(s.addr, MANAGER).await;
    let stored = s.h.must_node(MANAGER);
    assert_eq!(stored.role, NodeRole::Manager);
    assert!(stored.manager_status.is_some());
    drop(manager);

    // Bad registrations name the field.
    let mut client = must_connect(s.addr).await;
    let error = client
        .session(pb::SessionRequest {
            node_id: String::new(),
            description: Some(description("x")),
        })
        .await
        .expect_err("an empty node id is refused");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("node_id"), "{}", error.message());
    let error = client
        .session(pb::SessionRequest {
            node_id: "worker-2".into(),
            description: None,
        })
        .await
        .expect_err("a missing description is refused");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("description"),
        "{}",
        error.message()
    );
    s.h.view(|tx| assert!(tx.node("worker-2").is_none()));
    drop((agent, client));
    s.h.shutdown().await;
}

#[tokio::test]
async fn a_new_session_replaces_the_old_one() {
    let s = must_serve().await;
    let mut old = must_register(s.addr, "worker-1").await;
    let mut new = must_register(s.addr, "worker-1").await;
    assert_ne!(old.session_id, new.session_id);
    let ended = tokio::time::timeout(TIMEOUT, old.stream.message())
        .await
        .expect("the old stream ends in time");
    assert!(matches!(ended, Ok(None) | Err(_)), "{ended:?}");
    let error = old.heartbeat().await.expect_err("the old session is gone");
    assert_eq!(error.code(), Code::NotFound);
    new.heartbeat().await.expect("the new session heartbeats");
    drop((old, new));
    s.h.shutdown().await;
}

#[tokio::test]
async fn heartbeat_returns_the_cluster_period() {
    let s = must_serve().await;
    let mut agent = must_register(s.addr, "worker-1").await;
    assert_eq!(
        agent.heartbeat().await.expect("heartbeat"),
        Duration::from_secs(5)
    );
    s.h.must_update_cluster(|c| c.dispatcher.heartbeat_period = Duration::from_millis(1500))
        .await;
    assert_eq!(
        agent.heartbeat().await.expect("heartbeat"),
        Duration::from_millis(1500)
    );

    let mut client = must_connect(s.addr).await;
    let error = client
        .heartbeat(pb::HeartbeatRequest {
            session_id: "no-such-session".into(),
        })
        .await
        .expect_err("an unknown session");
    assert_eq!(error.code(), Code::NotFound);
    drop((agent, client));
    s.h.shutdown().await;
}

/// The task ids and actions of an assignments message.
fn changes(message: &pb::AssignmentsMessage) -> Vec<(String, i32, i32)> {
    message
        .changes
        .iter()
        .map(|c| {
            let task = c.task.as_ref().expect("a change carries its task");
            (task.id.clone(), c.action, task.desired_state)
        })
        .collect()
}

const UPDATE: i32 = pb::assignment_change::Action::Update as i32;
const REMOVE: i32 = pb::assignment_change::Action::Remove as i32;
const RUNNING: i32 = pb::TaskState::Running as i32;
const SHUTDOWN: i32 = pb::TaskState::Shutdown as i32;

#[tokio::test]
async fn assignments_send_a_complete_set_then_chained_increments() {
    let s = must_serve().await;
    let h = &s.h;
    let service: Service = h.must_create_service(service_spec("web", 3)).await;
    let mut agent = must_register(s.addr, "worker-1").await;
    let other = must_register(s.addr, "worker-2").await;
    let mine = h
        .must_add_task(&service, 1, "worker-1", TaskState::Assigned)
        .await;
    h.must_add_task(&service, 2, "worker-2", TaskState::Assigned)
        .await;
    // A pinned task not yet assigned (a global task waiting for the scheduler) is not sent.
    h.must_add_task(&service, 3, "worker-1", TaskState::Pending)
        .await;
    let index_before = h.store.last_index();

    let mut stream = agent.assignments().await;
    let complete = must_next(&mut stream).await;
    assert_eq!(
        complete.r#type,
        pb::assignments_message::Type::Complete as i32
    );
    assert_eq!(complete.applies_to, "");
    let mut last: u64 = complete.results_in.parse().expect("results_in is an index");
    assert!(last >= index_before, "{last} < {index_before}");
    assert_eq!(changes(&complete), vec![(mine.id.clone(), UPDATE, RUNNING)]);

    let mut expect_next = async |want: Vec<(String, i32, i32)>| {
        let message = must_next(&mut stream).await;
        assert_eq!(
            message.r#type,
            pb::assignments_message::Type::Incremental as i32
        );
        assert_eq!(
            message.applies_to,
            last.to_string(),
            "chained to the previous message"
        );
        let results_in: u64 = message.results_in.parse().expect("results_in is an index");
        assert!(results_in > last);
        assert_eq!(changes(&message), want);
        last = results_in;
    };

    // A new assignment.
    let second = h
        .must_add_task(&service, 4, "worker-1", TaskState::Assigned)
        .await;
    expect_next(vec![(second.id.clone(), UPDATE, RUNNING)]).await;
    // A status-only change is not sent; a desired-state change is.
    h.must_report(&mine.id, TaskState::Running).await;
    h.must_update_task(&mine.id, |t| t.desired_state = TaskState::Shutdown)
        .await;
    expect_next(vec![(mine.id.clone(), UPDATE, SHUTDOWN)]).await;
    // Other nodes' tasks are never sent; a deleted task is removed.
    h.must_add_task(&service, 5, "worker-2", TaskState::Assigned)
        .await;
    h.must_commit(|tx| Ok(tx.delete(swarm_store::ObjectKind::Task, &second.id)?))
        .await;
    expect_next(vec![(second.id.clone(), REMOVE, RUNNING)]).await;
    drop((stream, agent, other));
    s.h.shutdown().await;
}

#[tokio::test]
async fn task_status_only_moves_forward_and_only_from_the_tasks_node() {
    let s = must_serve().await;
    let h = &s.h;
    let service = h.must_create_service(service_spec("web", 2)).await;
    let mut agent = must_register(s.addr, "worker-1").await;
    let other = must_register(s.addr, "worker-2").await;
    let mine = h
        .must_add_task(&service, 1, "worker-1", TaskState::Assigned)
        .await;
    let theirs = h
        .must_add_task(&service, 2, "worker-2", TaskState::Assigned)
        .await;

    agent
        .report(&mine.id, TaskState::Running)
        .await
        .expect("report");
    let t = h.must_task(&mine.id);
    assert_eq!(t.status.state, TaskState::Running);
    assert_eq!(t.status.message, "worker-1 says running");
    // Backwards: ignored.
    agent
        .report(&mine.id, TaskState::Starting)
        .await
        .expect("report");
    assert_eq!(h.must_task(&mine.id).status.state, TaskState::Running);
    agent
        .report(&mine.id, TaskState::Failed)
        .await
        .expect("report");
    let t = h.must_task(&mine.id);
    assert_eq!(t.status.state, TaskState::Failed);
    assert_eq!(t.status.err, "exit 1");
    agent
        .report(&mine.id, TaskState::Running)
        .await
        .expect("report");
    assert_eq!(h.must_task(&mine.id).status.state, TaskState::Failed);

    // Another node's task: refused (left as it is).
    agent
        .report(&theirs.id, TaskState::Running)
        .await
        .expect("report");
    assert_eq!(h.must_task(&theirs.id), theirs);
    // A task that does not exist: nothing to do.
    agent
        .report("no-such-task", TaskState::Running)
        .await
        .expect("report");

    // A malformed entry (no status) is skipped without blocking the valid ones in its batch:
    // otherwise the agent would resend the batch forever.
    let before = h.must_task(&mine.id);
    agent
        .client
        .update_task_status(pb::UpdateTaskStatusRequest {
            plugins: Vec::new(),
            session_id: agent.session_id.clone(),
            updates: vec![
                pb::TaskStatusUpdate {
                    task_id: mine.id.clone(),
                    status: None,
                },
                pb::TaskStatusUpdate {
                    task_id: mine.id.clone(),
                    status: Some(pb::TaskStatus {
                        state: pb::TaskState::Rejected as i32,
                        message: "x".repeat(10_000),
                        ..Default::default()
                    }),
                },
            ],
        })
        .await
        .expect("a batch with one malformed entry");
    let after = h.must_task(&mine.id);
    assert!(
        before.status.state < TaskState::Rejected,
        "{:?}",
        before.status.state
    );
    assert_eq!(
        after.status.state,
        TaskState::Rejected,
        "the valid entry was not applied"
    );
    assert_ne!(after, before);
    // Agents' text is bounded before it reaches the store.
    assert!(
        after.status.message.len() < 5_000,
        "{} bytes kept",
        after.status.message.len()
    );
    assert!(after.status.message.ends_with("[truncated]"));
    // An unknown session.
    let mut stranger = must_connect(s.addr).await;
    let error = stranger
        .update_task_status(pb::UpdateTaskStatusRequest {
            plugins: Vec::new(),
            session_id: "forged".into(),
            updates: Vec::new(),
        })
        .await
        .expect_err("an unknown session");
    assert_eq!(error.code(), Code::NotFound);
    drop((agent, other, stranger));
    s.h.shutdown().await;
}

#[tokio::test]
async fn an_agent_cannot_report_the_states_the_manager_owns() {
    let s = must_serve().await;
    let h = &s.h;
    let service = h.must_create_service(service_spec("web", 2)).await;
    let mut agent = must_register(s.addr, "worker-1").await;
    // A global task pinned to this node but not yet placed by the scheduler.
    let pinned = h
        .must_add_task(&service, 1, "worker-1", TaskState::Pending)
        .await;
    let assigned = h
        .must_add_task(&service, 2, "worker-1", TaskState::Assigned)
        .await;

    agent
        .report(&pinned.id, TaskState::Running)
        .await
        .expect("report");
    assert_eq!(
        h.must_task(&pinned.id),
        pinned,
        "the scheduler has not placed it yet"
    );
    for state in [TaskState::Remove, TaskState::Orphaned] {
        agent.report(&assigned.id, state).await.expect("report");
        assert_eq!(
            h.must_task(&assigned.id),
            assigned,
            "{state} is the manager's to set"
        );
    }
    agent
        .report(&assigned.id, TaskState::Accepted)
        .await
        .expect("report");
    assert_eq!(h.must_task(&assigned.id).status.state, TaskState::Accepted);
    drop(agent);
    s.h.shutdown().await;
}

/// Sets the heartbeat period (grace multiplier 3).
async fn set_period(h: &Harness, period: Duration) {
    h.must_update_cluster(|c| {
        c.dispatcher.heartbeat_period = period;
        c.dispatcher.grace_multiplier = 3;
    })
    .await;
}

/// Heartbeats every 50 ms for `how_long`, checking the node stays READY.
async fn must_keep_alive(h: &Harness, agent: &mut Agent, how_long: Duration) -> Instant {
    let until = Instant::now() + how_long;
    loop {
        let sent = Instant::now();
        agent.heartbeat().await.expect("heartbeat");
        assert_eq!(node_state(h, &agent.node_id), NodeState::Ready);
        if sent >= until {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_whose_heartbeats_stop_is_marked_down_after_the_grace() {
    let s = must_serve().await;
    let period = Duration::from_millis(200);
    set_period(&s.h, period).await;
    let mut agent = must_register(s.addr, "worker-1").await;
    assert_eq!(agent.heartbeat().await.expect("heartbeat"), period);
    let last = must_keep_alive(&s.h, &mut agent, period * 4).await;

    let node =
        s.h.must_eventually("the silent node marked down", |tx| {
            tx.node("worker-1")
                .filter(|n| n.status.state == NodeState::Down)
                .cloned()
        })
        .await;
    assert!(
        last.elapsed() >= period * 3,
        "marked down {:?} after the last heartbeat",
        last.elapsed()
    );
    assert_eq!(node.status.message, "heartbeat failure");
    let error = agent.heartbeat().await.expect_err("the session expired");
    assert_eq!(error.code(), Code::NotFound);

    // Registering again brings the node back.
    let mut again = must_register(s.addr, "worker-1").await;
    assert_eq!(node_state(&s.h, "worker-1"), NodeState::Ready);
    again.heartbeat().await.expect("heartbeat");
    drop((agent, again));
    s.h.shutdown().await;
}

#[tokio::test]
async fn a_dropped_session_stream_leaves_the_node_ready_until_its_heartbeats_expire() {
    let s = must_serve().await;
    let period = Duration::from_millis(300);
    let grace = period * 3;
    set_period(&s.h, period).await;
    let mut agent = must_register(s.addr, "worker-1").await;
    // Long enough for the dispatcher to be older than the grace period.
    must_keep_alive(&s.h, &mut agent, grace * 2).await;

    // A blip: the session stream breaks; the agent's last heartbeat was just now.
    let last = Instant::now();
    agent.heartbeat().await.expect("heartbeat");
    let Agent { client, stream, .. } = agent;
    drop(stream);
    drop(client);
    while last.elapsed() < grace - Duration::from_millis(100) {
        assert_eq!(
            node_state(&s.h, "worker-1"),
            NodeState::Ready,
            "marked down {:?} after its last heartbeat, before the {grace:?} grace",
            last.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.h.must_eventually("the node marked down once the grace is over", |tx| {
        tx.node("worker-1")
            .filter(|n| n.status.state == NodeState::Down)
            .map(|_| ())
    })
    .await;
    s.h.shutdown().await;
}

#[tokio::test]
async fn a_heartbeat_from_a_node_marked_down_asks_it_to_register_again() {
    let s = must_serve().await;
    let mut agent = must_register(s.addr, "worker-1").await;
    // The liveness loop marked the node down while it was re-registering (a lost race).
    s.h.must_update_node("worker-1", |n| n.status.state = NodeState::Down)
        .await;
    let error = agent
        .heartbeat()
        .await
        .expect_err("a heartbeat on a session of a node marked down");
    assert_eq!(error.code(), Code::NotFound);
    let mut again = must_register(s.addr, "worker-1").await;
    assert_eq!(node_state(&s.h, "worker-1"), NodeState::Ready);
    again.heartbeat().await.expect("heartbeat");
    drop((agent, again));
    s.h.shutdown().await;
}

#[tokio::test]
async fn published_logs_answer_fetch_logs() {
    let s = must_serve().await;
    let mut agent = must_register(s.addr, "worker-1").await;
    let mut other = must_register(s.addr, "worker-2").await;

    let dispatcher = s.dispatcher.clone();
    let fetch = tokio::spawn(async move { dispatcher.fetch_logs("worker-1", "task-1", 100).await });
    let message = must_next(&mut agent.stream).await;
    assert_eq!(message.session_id, agent.session_id);
    let [request] = message.log_requests.as_slice() else {
        panic!("one log request: {message:?}");
    };
    assert_eq!(request.task_id, "task-1");
    assert_eq!(request.tail_bytes, 100);

    // Another node cannot answer this node's request.
    other
        .client
        .publish_logs(pb::PublishLogsRequest {
            session_id: other.session_id.clone(),
            request_id: request.request_id.clone(),
            stdout: b"forged".to_vec(),
            stderr: Vec::new(),
            error: String::new(),
        })
        .await
        .expect("publish");
    agent
        .client
        .publish_logs(pb::PublishLogsRequest {
            session_id: agent.session_id.clone(),
            request_id: request.request_id.clone(),
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            error: String::new(),
        })
        .await
        .expect("publish");
    let logs = fetch.await.expect("join").expect("logs");
    assert_eq!(logs, (b"out".to_vec(), b"err".to_vec()));

    // The agent's error comes back as a failed precondition.
    let dispatcher = s.dispatcher.clone();
    let fetch = tokio::spawn(async move { dispatcher.fetch_logs("worker-1", "task-2", 0).await });
    let message = must_next(&mut agent.stream).await;
    let request = &message.log_requests[0];
    agent
        .client
        .publish_logs(pb::PublishLogsRequest {
            session_id: agent.session_id.clone(),
            request_id: request.request_id.clone(),
            error: "no such task".into(),
            ..Default::default()
        })
        .await
        .expect("publish");
    let error = fetch.await.expect("join").expect_err("the agent's error");
    assert!(
        matches!(&error, ManagerError::FailedPrecondition(m) if m.contains("no such task")),
        "{error:?}"
    );

    // A node with no session.
    let error = s
        .dispatcher
        .fetch_logs("worker-9", "task-3", 0)
        .await
        .expect_err("no session");
    assert!(matches!(error, ManagerError::Unavailable(_)), "{error:?}");
    drop((agent, other));
    s.h.shutdown().await;
}

#[tokio::test]
async fn shutting_down_ends_open_sessions_and_assignment_streams() {
    let s = must_serve().await;
    let mut agent = must_register(s.addr, "worker-1").await;
    let mut assignments = agent.assignments().await;
    must_next(&mut assignments).await;
    // The agent stays connected; shutting down must not wait for it to leave.
    s.h.shutdown().await;
    let ended = tokio::time::timeout(TIMEOUT, agent.stream.message())
        .await
        .expect("the session stream ends");
    assert!(matches!(ended, Ok(None) | Err(_)), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_report_marks_the_installed_executor_once() {
    let s = must_serve().await;
    let bytes: &[u8] = b"component bytes";
    let plugin = runner_plugin(bytes, format!("sha256:{}", "a".repeat(64)));
    s.h.must_commit(|tx| Ok(tx.create(plugin)?)).await;
    let mut agent = must_register(s.addr, "node-1").await;
    let mut bystander = must_register(s.addr, "node-2").await;
    // node-1 runs a task on the executor; node-2 does not.
    let service = s.h.must_create_service(service_spec("web", 1)).await;
    let mut task = crate::support::task_of(&service, 1, "node-1", TaskState::Running);
    task.executor = "runner".into();
    s.h.must_commit(|tx| Ok(tx.create(task)?)).await;
    let report = |name: &str, message: &str| pb::UpdateTaskStatusRequest {
        session_id: agent.session_id.clone(),
        updates: Vec::new(),
        plugins: vec![pb::PluginHealthReport {
            name: name.into(),
            quarantined: true,
            failures: 5,
            message: message.into(),
        }],
    };
    // A node with no task on the executor cannot quarantine it.
    let mut forged = report("runner", "not mine");
    forged.session_id = bystander.session_id.clone();
    bystander
        .client
        .update_task_status(forged)
        .await
        .expect("report");
    let stored =
        s.h.view(|tx| tx.plugin_by_name("runner").cloned())
            .expect("plugin");
    assert!(
        !stored.status.quarantined,
        "a bystander's report is ignored"
    );
    let first = report("runner", "plugin \"runner\" trapped: unreachable");
    let unknown = report("default", "a built-in executor has no plugin object");
    agent
        .client
        .update_task_status(first)
        .await
        .expect("report");
    agent
        .client
        .update_task_status(unknown)
        .await
        .expect("unknown names are only logged");
    let stored =
        s.h.view(|tx| tx.plugin_by_name("runner").cloned())
            .expect("plugin");
    assert!(stored.status.quarantined, "{:?}", stored.status);
    assert_eq!(stored.status.failures, 5);
    assert!(
        stored.status.message.contains("node-1"),
        "{}",
        stored.status.message
    );
    assert!(
        stored.status.message.contains("trapped"),
        "{}",
        stored.status.message
    );
    assert_eq!(stored.component.as_bytes(), bytes, "the component is kept");
    // A second report changes nothing: the first quarantine's record stays.
    let version = stored.meta.version;
    let again = report("runner", "another failure");
    agent
        .client
        .update_task_status(again)
        .await
        .expect("report");
    let stored =
        s.h.view(|tx| tx.plugin_by_name("runner").cloned())
            .expect("plugin");
    assert_eq!(stored.meta.version, version);
    drop((agent, bystander));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_executors_come_with_assignments_and_again_when_a_quarantine_lifts() {
    let s = must_serve().await;
    let bytes: &[u8] = b"an executor component";
    let digest = format!("sha256:{}", "b".repeat(64));
    let plugin = runner_plugin(bytes, digest.clone());
    s.h.must_commit(|tx| Ok(tx.create(plugin)?)).await;
    let mut agent = must_register(s.addr, "node-1").await;
    let service = s.h.must_create_service(service_spec("web", 2)).await;
    for slot in [1, 2] {
        let mut task = crate::support::task_of(&service, slot, "node-1", TaskState::Assigned);
        task.executor = "runner".into();
        s.h.must_commit(|tx| Ok(tx.create(task)?)).await;
    }
    let mut stream = agent.assignments().await;
    let complete = must_next(&mut stream).await;
    assert_eq!(complete.changes.len(), 2);
    let names: Vec<(&str, &str)> = complete
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.digest.as_str()))
        .collect();
    assert_eq!(
        names,
        [("runner", digest.as_str())],
        "sent once for both tasks"
    );
    assert_eq!(complete.plugins[0].component, bytes);

    let set_quarantined = |quarantined: bool| {
        move |tx: &mut swarm_store::WriteTx<'_>| {
            let mut plugin =
                swarm_types::Plugin::clone(tx.plugin_by_name("runner").expect("plugin"));
            plugin.component = Default::default();
            plugin.status.quarantined = quarantined;
            Ok(tx.update(plugin)?)
        }
    };
    s.h.must_commit(set_quarantined(true)).await;
    s.h.must_commit(set_quarantined(false)).await;
    let again = must_next(&mut stream).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.plugins.len(), 1);
    assert_eq!(again.plugins[0].name, "runner");
    assert_eq!(again.plugins[0].component, bytes);
    assert_eq!(again.applies_to, complete.results_in, "the chain goes on");
    drop(agent);
}

/// An installed executor named `runner` with these bytes, as the registry stores it.
fn runner_plugin(bytes: &[u8], digest: String) -> swarm_types::Plugin {
    swarm_types::Plugin {
        id: "plugin-1".into(),
        spec: swarm_types::PluginSpec {
            annotations: swarm_types::Annotations {
                name: "runner".into(),
                labels: Default::default(),
            },
            kind: swarm_types::PluginKind::Executor,
            capabilities: vec!["process".into()],
        },
        digest,
        size_bytes: bytes.len() as u64,
        component: swarm_types::ComponentBytes::new(bytes),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_configs_go_once_and_only_to_nodes_whose_tasks_use_them() {
    let s = must_serve().await;
    let data = |name: &str, bytes: &[u8]| swarm_types::DataSpec {
        annotations: swarm_types::Annotations {
            name: name.into(),
            labels: Default::default(),
        },
        data: swarm_types::Blob::from(bytes.to_vec()),
    };
    let secret = swarm_types::Secret {
        id: "secret-1".into(),
        meta: Default::default(),
        spec: data("db-password", b"hunter2"),
    };
    let config = swarm_types::Config {
        id: "config-1".into(),
        meta: Default::default(),
        spec: data("app-conf", b"x=1"),
    };
    s.h.must_commit(|tx| {
        tx.create(secret)?;
        Ok(tx.create(config)?)
    })
    .await;
    let mut spec = service_spec("web", 3);
    // Ids as the control API resolves them.
    let reference = |id: &str, name: &str| swarm_types::FileRef {
        id: id.into(),
        name: name.into(),
        target: String::new(),
    };
    spec.task.secrets = vec![reference("secret-1", "db-password")];
    spec.task.configs = vec![reference("config-1", "app-conf")];
    let service = s.h.must_create_service(spec).await;
    let plain = s.h.must_create_service(service_spec("plain", 1)).await;

    let mut user = must_register(s.addr, "node-1").await;
    let mut bystander = must_register(s.addr, "node-2").await;
    for slot in [1, 2] {
        let task = crate::support::task_of(&service, slot, "node-1", TaskState::Assigned);
        s.h.must_commit(|tx| Ok(tx.create(task)?)).await;
    }
    let mut stream = user.assignments().await;
    let complete = must_next(&mut stream).await;
    assert_eq!(complete.changes.len(), 2);
    let sent: Vec<(&str, &[u8])> = complete
        .secrets
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.spec.as_ref().map_or(&[][..], |s| &s.data[..]),
            )
        })
        .collect();
    assert_eq!(sent, [("secret-1", &b"hunter2"[..])], "once for both tasks");
    assert_eq!(complete.configs.len(), 1);
    assert_eq!(
        complete.configs[0].spec.as_ref().expect("spec").data,
        b"x=1"
    );

    // A node whose tasks do not use them never gets them.
    let mut other = bystander.assignments().await;
    let first = must_next(&mut other).await;
    assert!(first.secrets.is_empty() && first.configs.is_empty());
    let task = crate::support::task_of(&plain, 1, "node-2", TaskState::Assigned);
    s.h.must_commit(|tx| Ok(tx.create(task)?)).await;
    let next = must_next(&mut other).await;
    assert_eq!(next.changes.len(), 1);
    assert!(next.secrets.is_empty() && next.configs.is_empty());
    // Until one of its tasks does: then it comes with that task.
    let task = crate::support::task_of(&service, 3, "node-2", TaskState::Assigned);
    s.h.must_commit(|tx| Ok(tx.create(task)?)).await;
    let next = must_next(&mut other).await;
    assert_eq!(next.changes.len(), 1);
    assert_eq!(next.secrets.len(), 1);
    assert_eq!(next.configs.len(), 1);
    drop((user, bystander));
}
