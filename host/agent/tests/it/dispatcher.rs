//! A dispatcher written for the tests: hands out the assignments the test sets, records
//! heartbeats, status updates and published logs, and can fail or cut its streams on demand.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use parking_lot::Mutex;
use swarm_proto::pb;
use swarm_proto::pb::dispatcher_server::{Dispatcher, DispatcherServer};
use swarm_types::{Task, TaskState, TaskStatus};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

type Sender<T> = mpsc::UnboundedSender<Result<T, Status>>;

#[derive(Default)]
struct Inner {
    heartbeat_period: Duration,
    registrations: Vec<pb::SessionRequest>,
    session_id: Option<String>,
    heartbeats: Vec<Instant>,
    statuses: Vec<(String, TaskStatus)>,
    fail_updates: bool,
    rejected_updates: usize,
    logs: Vec<pb::PublishLogsRequest>,
    session_stream: Option<Sender<pb::SessionMessage>>,
    assignment_stream: Option<Sender<pb::AssignmentsMessage>>,
    tasks: BTreeMap<String, Task>,
    sequence: u64,
    /// Where the last server serves this dispatcher.
    addr: Option<SocketAddr>,
    /// The managers announced to agents; `None`: this one alone (`manager-1`, weight 10).
    announced: Option<Vec<pb::WeightedPeer>>,
}

/// The dispatcher's state; clones share it (also across server restarts).
#[derive(Clone, Default)]
pub struct TestDispatcher {
    inner: Arc<Mutex<Inner>>,
}

impl TestDispatcher {
    pub fn new(heartbeat_period: Duration) -> Self {
        let dispatcher = TestDispatcher::default();
        dispatcher.inner.lock().heartbeat_period = heartbeat_period;
        dispatcher
    }

    /// Adds or updates a task in the node's assignment set (sent incrementally when a stream is open).
    pub fn assign(&self, task: Task) {
        let mut inner = self.inner.lock();
        inner.tasks.insert(task.id.clone(), task.clone());
        send_incremental(
            &mut inner,
            pb::AssignmentChange {
                task: Some(task.into()),
                action: pb::assignment_change::Action::Update as i32,
            },
        );
    }

    /// Changes a task's desired state.
    pub fn set_desired(&self, task_id: &str, desired: TaskState) {
        let task = {
            let mut inner = self.inner.lock();
            let task = inner.tasks.get_mut(task_id).expect("assigned task");
            task.desired_state = desired;
            task.clone()
        };
        self.assign(task);
    }

    /// Takes a task out of the assignment set.
    pub fn unassign(&self, task_id: &str) {
        let mut inner = self.inner.lock();
        let task = inner.tasks.remove(task_id).expect("assigned task");
        send_incremental(
            &mut inner,
            pb::AssignmentChange {
                task: Some(task.into()),
                action: pb::assignment_change::Action::Remove as i32,
            },
        );
    }

    /// Sends an incremental message that does not follow the last one.
    pub fn send_gap(&self) {
        let inner = self.inner.lock();
        let sequence = inner.sequence;
        if let Some(stream) = &inner.assignment_stream {
            let _ = stream.send(Ok(pb::AssignmentsMessage {
                secrets: Vec::new(),
                configs: Vec::new(),
                plugins: Vec::new(),
                r#type: pb::assignments_message::Type::Incremental as i32,
                applies_to: (sequence + 100).to_string(),
                results_in: (sequence + 101).to_string(),
                changes: Vec::new(),
            }));
        }
    }

    /// Announces these managers `(node id, addr, weight)` from now on, to the open session too.
    pub fn announce(&self, managers: &[(&str, SocketAddr, i64)]) {
        let mut inner = self.inner.lock();
        let peers: Vec<pb::WeightedPeer> = managers
            .iter()
            .map(|(node_id, addr, weight)| pb::WeightedPeer {
                node_id: (*node_id).to_string(),
                addr: addr.to_string(),
                weight: *weight,
            })
            .collect();
        inner.announced = Some(peers.clone());
        if let Some(stream) = &inner.session_stream {
            let _ = stream.send(Ok(pb::SessionMessage {
                session_id: inner.session_id.clone().unwrap_or_default(),
                node: None,
                managers: peers,
                log_requests: Vec::new(),
            }));
        }
    }

    /// Ends the current session's streams (as a manager that drops a session does).
    pub fn drop_streams(&self) {
        let mut inner = self.inner.lock();
        inner.session_stream = None;
        inner.assignment_stream = None;
        inner.session_id = None;
    }

    /// Asks the agent for a task's logs; returns the request id.
    pub fn request_logs(&self, task_id: &str, tail_bytes: u64) -> Option<String> {
        let inner = self.inner.lock();
        let request_id = format!("logs-{task_id}-{}", inner.logs.len());
        let stream = inner.session_stream.as_ref()?;
        stream
            .send(Ok(pb::SessionMessage {
                session_id: inner.session_id.clone().unwrap_or_default(),
                node: None,
                managers: Vec::new(),
                log_requests: vec![pb::LogRequest {
                    request_id: request_id.clone(),
                    task_id: task_id.to_string(),
                    tail_bytes,
                }],
            }))
            .ok()?;
        Some(request_id)
    }

    pub fn set_fail_updates(&self, fail: bool) {
        self.inner.lock().fail_updates = fail;
    }

    pub fn registrations(&self) -> Vec<pb::SessionRequest> {
        self.inner.lock().registrations.clone()
    }

    pub fn heartbeats(&self) -> Vec<Instant> {
        self.inner.lock().heartbeats.clone()
    }

    pub fn rejected_updates(&self) -> usize {
        self.inner.lock().rejected_updates
    }

    /// Every status received for a task, in order.
    pub fn statuses(&self, task_id: &str) -> Vec<TaskStatus> {
        self.inner
            .lock()
            .statuses
            .iter()
            .filter(|(id, _)| id == task_id)
            .map(|(_, status)| status.clone())
            .collect()
    }

    /// The furthest state received for a task.
    pub fn state(&self, task_id: &str) -> Option<TaskState> {
        self.statuses(task_id).iter().map(|s| s.state).max()
    }

    pub fn published_logs(&self, request_id: &str) -> Option<pb::PublishLogsRequest> {
        self.inner
            .lock()
            .logs
            .iter()
            .find(|logs| logs.request_id == request_id)
            .cloned()
    }

    fn check_session(&self, session_id: &str) -> Result<(), Status> {
        match &self.inner.lock().session_id {
            Some(current) if current == session_id => Ok(()),
            _ => Err(Status::not_found(format!("session {session_id} not found"))),
        }
    }
}

fn send_incremental(inner: &mut Inner, change: pb::AssignmentChange) {
    let applies_to = inner.sequence;
    inner.sequence += 1;
    if let Some(stream) = &inner.assignment_stream {
        let _ = stream.send(Ok(pb::AssignmentsMessage {
            secrets: Vec::new(),
            configs: Vec::new(),
            plugins: Vec::new(),
            r#type: pb::assignments_message::Type::Incremental as i32,
            applies_to: applies_to.to_string(),
            results_in: inner.sequence.to_string(),
            changes: vec![change],
        }));
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Dispatcher for TestDispatcher {
    type SessionStream = BoxStream<pb::SessionMessage>;
    type AssignmentsStream = BoxStream<pb::AssignmentsMessage>;

    async fn session(
        &self,
        request: Request<pb::SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let request = request.into_inner();
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock();
        inner.registrations.push(request.clone());
        let session_id = format!("session-{}", inner.registrations.len());
        let managers = inner.announced.clone().unwrap_or_else(|| {
            vec![pb::WeightedPeer {
                node_id: "manager-1".into(),
                addr: inner
                    .addr
                    .map_or_else(|| "127.0.0.1:4242".into(), |a| a.to_string()),
                weight: 10,
            }]
        });
        let _ = sender.send(Ok(pb::SessionMessage {
            session_id: session_id.clone(),
            node: None,
            managers,
            log_requests: Vec::new(),
        }));
        inner.session_id = Some(session_id);
        inner.session_stream = Some(sender);
        inner.assignment_stream = None;
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            receiver,
        ))))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.check_session(&request.get_ref().session_id)?;
        let mut inner = self.inner.lock();
        inner.heartbeats.push(Instant::now());
        Ok(Response::new(pb::HeartbeatResponse {
            period: Some(swarm_proto::duration_to_pb(inner.heartbeat_period)),
        }))
    }

    async fn update_task_status(
        &self,
        request: Request<pb::UpdateTaskStatusRequest>,
    ) -> Result<Response<pb::UpdateTaskStatusResponse>, Status> {
        self.check_session(&request.get_ref().session_id)?;
        let mut inner = self.inner.lock();
        if inner.fail_updates {
            inner.rejected_updates += 1;
            return Err(Status::unavailable("status updates are failing (test)"));
        }
        for update in request.into_inner().updates {
            let status =
                TaskStatus::try_from(update.status.expect("status")).expect("valid status");
            inner.statuses.push((update.task_id, status));
        }
        Ok(Response::new(pb::UpdateTaskStatusResponse {}))
    }

    async fn assignments(
        &self,
        request: Request<pb::AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        self.check_session(&request.get_ref().session_id)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock();
        let _ = sender.send(Ok(pb::AssignmentsMessage {
            secrets: Vec::new(),
            configs: Vec::new(),
            plugins: Vec::new(),
            r#type: pb::assignments_message::Type::Complete as i32,
            applies_to: String::new(),
            results_in: inner.sequence.to_string(),
            changes: inner
                .tasks
                .values()
                .map(|task| pb::AssignmentChange {
                    task: Some(task.clone().into()),
                    action: pb::assignment_change::Action::Update as i32,
                })
                .collect(),
        }));
        inner.assignment_stream = Some(sender);
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            receiver,
        ))))
    }

    async fn publish_logs(
        &self,
        request: Request<pb::PublishLogsRequest>,
    ) -> Result<Response<pb::PublishLogsResponse>, Status> {
        self.check_session(&request.get_ref().session_id)?;
        self.inner.lock().logs.push(request.into_inner());
        Ok(Response::new(pb::PublishLogsResponse {}))
    }
}

/// A running gRPC server around a [`TestDispatcher`].
pub struct TestServer {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

impl TestServer {
    /// Serves on `addr` (`127.0.0.1:0` for a fresh port).
    pub async fn start(dispatcher: &TestDispatcher, addr: SocketAddr) -> TestServer {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the test dispatcher");
        let addr = listener.local_addr().expect("local addr");
        dispatcher.inner.lock().addr = Some(addr);
        let cancel = CancellationToken::new();
        let shutdown = cancel.clone().cancelled_owned();
        let service = DispatcherServer::new(dispatcher.clone());
        let handle = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
                .expect("test dispatcher serves");
        });
        TestServer {
            addr,
            cancel,
            handle,
        }
    }

    /// Stops serving: ends the open streams and closes the listener.
    pub async fn stop(self, dispatcher: &TestDispatcher) {
        self.cancel.cancel();
        dispatcher.drop_streams();
        let abort = self.handle.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
