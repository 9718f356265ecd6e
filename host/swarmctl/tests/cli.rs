//! Runs the real `swarmctl` binary against an in-test `Control` server (canned objects, requests
//! recorded) served on a unix socket in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use swarm_proto::pb;
use swarm_proto::pb::control_server::{Control, ControlServer};
use swarm_types as t;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

// ---- canned cluster ----------------------------------------------------------------------

const WEB: &str = "ab1webservice000000000000";
const API: &str = "ab2apiservice000000000000";
const NODE_A: &str = "n1aaaaaaaaaaaaaaaaaaaaaaa";
const NODE_B: &str = "n2bbbbbbbbbbbbbbbbbbbbbbb";
const CLUSTER: &str = "c1cluster0000000000000000";
/// 2026-01-01T00:00:00Z: creation times are fixed so JSON output is stable.
const CREATED: i64 = 1_767_225_600_000_000_000;

fn hours_ago(now: t::Timestamp, hours: i64) -> t::Timestamp {
    t::Timestamp::from_unix_nanos(now.unix_nanos - hours * 3_600_000_000_000)
}

fn meta(version: u64) -> t::Meta {
    t::Meta {
        version,
        created_at: t::Timestamp::from_unix_nanos(CREATED),
        updated_at: t::Timestamp::from_unix_nanos(CREATED + 1_000_000_000),
    }
}

fn node(id: &str, hostname: &str, role: t::NodeRole, availability: t::Availability) -> t::Node {
    t::Node {
        id: id.into(),
        meta: meta(3),
        spec: t::NodeSpec {
            availability,
            desired_role: role,
            ..Default::default()
        },
        role,
        description: Some(t::NodeDescription {
            hostname: hostname.into(),
            platform: t::Platform {
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            resources: t::Resources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 4 << 30,
            },
            executor: "default".into(),
            runtimes: vec!["process".into(), "wasi".into()],
            ..Default::default()
        }),
        status: t::NodeStatus {
            state: t::NodeState::Ready,
            addr: "10.0.0.1".into(),
            ..Default::default()
        },
        manager_status: (role == t::NodeRole::Manager).then(|| t::ManagerStatus {
            raft_id: 1,
            addr: "10.0.0.1:4242".into(),
            leader: true,
            reachability: t::Reachability::Reachable,
        }),
    }
}

fn web_spec() -> t::ServiceSpec {
    t::ServiceSpec {
        annotations: t::Annotations {
            name: "web".into(),
            labels: [("tier".to_string(), "front".to_string())].into(),
        },
        task: t::TaskSpec {
            runtime: t::Runtime::Process(t::ProcessSpec {
                command: "sleep".into(),
                args: vec!["1000".into()],
                env: vec!["A=1".into()],
                dir: None,
            }),
            resources: t::ResourceRequirements {
                limits: t::Resources::default(),
                reservations: t::Resources {
                    nano_cpus: 500_000_000,
                    memory_bytes: 64 << 20,
                },
            },
            restart: t::RestartPolicy::default(),
            placement: t::Placement::default(),
            force_update: 0,
            secrets: vec![],
            configs: vec![],
        },
        mode: t::ServiceMode::Replicated { replicas: 3 },
        executor: String::new(),
    }
}

fn api_spec() -> t::ServiceSpec {
    t::ServiceSpec {
        annotations: t::Annotations {
            name: "api".into(),
            labels: Default::default(),
        },
        task: t::TaskSpec {
            runtime: t::Runtime::Wasi(t::WasiSpec {
                module: "/opt/api.wasm".into(),
                args: vec!["--port".into(), "80".into()],
                env: vec![],
            }),
            resources: Default::default(),
            restart: Default::default(),
            placement: t::Placement {
                constraints: vec!["node.role==manager".into()],
                ..Default::default()
            },
            force_update: 0,
            secrets: vec![],
            configs: vec![],
        },
        mode: t::ServiceMode::Global,
        executor: String::new(),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a table of canned tasks reads best flat"
)]
fn task(
    id: &str,
    service: &str,
    spec: &t::ServiceSpec,
    slot: u64,
    node: &str,
    desired: t::TaskState,
    state: t::TaskState,
    at: t::Timestamp,
    message: &str,
    err: &str,
) -> t::Task {
    let name = if slot > 0 {
        format!("{}.{slot}", spec.annotations.name)
    } else {
        format!("{}.{node}", spec.annotations.name)
    };
    t::Task {
        id: id.into(),
        meta: meta(5),
        annotations: t::Annotations {
            name,
            labels: Default::default(),
        },
        service_id: service.into(),
        slot,
        node_id: node.into(),
        spec: spec.task.clone(),
        spec_version: 1,
        executor: String::new(),
        desired_state: desired,
        status: t::TaskStatus {
            state,
            timestamp: at,
            message: message.into(),
            err: err.into(),
            exit: None,
        },
    }
}

/// What the fake holds, and what it was asked.
#[derive(Default)]
struct State {
    nodes: Vec<t::Node>,
    services: Vec<t::Service>,
    tasks: Vec<t::Task>,
    clusters: Vec<t::Cluster>,
    created: Vec<pb::CreateServiceRequest>,
    updated_services: Vec<pb::UpdateServiceRequest>,
    updated_nodes: Vec<pb::UpdateNodeRequest>,
    updated_clusters: Vec<pb::UpdateClusterRequest>,
    removed_services: Vec<String>,
    removed_tasks: Vec<String>,
    log_requests: Vec<pb::GetTaskLogsRequest>,
    /// When set, every call fails with this status.
    fail_with: Option<(tonic::Code, String)>,
    /// When set, `ListServices` never answers.
    hang: bool,
}

fn canned() -> State {
    use t::TaskState::{Failed, Pending, Running, Shutdown};
    let now = t::Timestamp::now();
    let (web, api) = (web_spec(), api_spec());
    State {
        nodes: vec![
            node(
                NODE_B,
                "node-b",
                t::NodeRole::Worker,
                t::Availability::Active,
            ),
            node(
                NODE_A,
                "node-a",
                t::NodeRole::Manager,
                t::Availability::Drain,
            ),
        ],
        services: vec![
            t::Service {
                id: WEB.into(),
                meta: meta(7),
                spec: web.clone(),
                spec_version: 1,
            },
            t::Service {
                id: API.into(),
                meta: meta(8),
                spec: api.clone(),
                spec_version: 1,
            },
        ],
        tasks: vec![
            task(
                "t3web3",
                WEB,
                &web,
                3,
                "",
                Running,
                Pending,
                hours_ago(now, 2),
                "no suitable node (insufficient memory on 2 nodes)",
                "",
            ),
            task(
                "t2web2",
                WEB,
                &web,
                2,
                NODE_B,
                Running,
                Running,
                hours_ago(now, 2),
                "started",
                "",
            ),
            task(
                "t1web1",
                WEB,
                &web,
                1,
                NODE_A,
                Running,
                Running,
                hours_ago(now, 2),
                "started",
                "",
            ),
            task(
                "t0web1old",
                WEB,
                &web,
                1,
                NODE_A,
                Shutdown,
                Failed,
                hours_ago(now, 26),
                "exited",
                "exit code 1",
            ),
            task(
                "t4api",
                API,
                &api,
                0,
                NODE_A,
                Running,
                Running,
                hours_ago(now, 3),
                "started",
                "",
            ),
        ],
        clusters: vec![t::Cluster {
            id: CLUSTER.into(),
            meta: meta(2),
            spec: t::ClusterSpec::with_defaults(),
            root_ca: Default::default(),
        }],
        ..Default::default()
    }
}

// ---- the fake Control service ------------------------------------------------------------

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn lock(&self) -> Result<MutexGuard<'_, State>, Status> {
        let state = self
            .state
            .lock()
            .map_err(|_| Status::internal("fake state poisoned"))?;
        match &state.fail_with {
            Some((code, message)) => Err(Status::new(*code, message.clone())),
            None => Ok(state),
        }
    }
}

fn not_found(kind: &str, id: &str) -> Status {
    Status::not_found(format!("{kind} {id} not found"))
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn stale(kind: &str) -> Status {
    Status::aborted(format!(
        "{kind} was changed by someone else; read it again and retry"
    ))
}

#[tonic::async_trait]
impl Control for Fake {
    async fn get_node(
        &self,
        request: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::GetNodeResponse>, Status> {
        let id = request.into_inner().node_id;
        let state = self.lock()?;
        let node = state
            .nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| not_found("node", &id))?;
        Ok(Response::new(pb::GetNodeResponse {
            node: Some(node.clone().into()),
        }))
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let state = self.lock()?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: state.nodes.iter().cloned().map(Into::into).collect(),
        }))
    }

    async fn update_node(
        &self,
        request: Request<pb::UpdateNodeRequest>,
    ) -> Result<Response<pb::UpdateNodeResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.lock()?;
        state.updated_nodes.push(request.clone());
        let spec: t::NodeSpec = request
            .spec
            .ok_or_else(|| invalid("spec: is required"))?
            .try_into()
            .map_err(invalid)?;
        let node = state
            .nodes
            .iter_mut()
            .find(|n| n.id == request.node_id)
            .ok_or_else(|| not_found("node", &request.node_id))?;
        if node.meta.version != request.node_version {
            return Err(stale("node"));
        }
        node.spec = spec;
        node.meta.version += 1;
        Ok(Response::new(pb::UpdateNodeResponse {
            node: Some(node.clone().into()),
        }))
    }

    async fn remove_node(
        &self,
        _: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let id = request.into_inner().task_id;
        let state = self.lock()?;
        let task = state
            .tasks
            .iter()
            .find(|task| task.id == id)
            .ok_or_else(|| not_found("task", &id))?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(task.clone().into()),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let f = request.into_inner().filters.unwrap_or_default();
        let state = self.lock()?;
        let tasks = state
            .tasks
            .iter()
            .filter(|task| f.names.is_empty() || f.names.contains(&task.annotations.name))
            .filter(|task| {
                f.id_prefixes.is_empty()
                    || f.id_prefixes
                        .iter()
                        .any(|p| task.id.starts_with(p.as_str()))
            })
            .filter(|task| f.service_ids.is_empty() || f.service_ids.contains(&task.service_id))
            .filter(|task| f.node_ids.is_empty() || f.node_ids.contains(&task.node_id))
            .filter(|task| {
                f.desired_states.is_empty()
                    || f.desired_states
                        .contains(&(pb::TaskState::from(task.desired_state) as i32))
            })
            .cloned()
            .map(Into::into)
            .collect();
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    async fn remove_task(
        &self,
        request: Request<pb::RemoveTaskRequest>,
    ) -> Result<Response<pb::RemoveTaskResponse>, Status> {
        let id = request.into_inner().task_id;
        let mut state = self.lock()?;
        state.removed_tasks.push(id);
        Ok(Response::new(pb::RemoveTaskResponse {}))
    }

    async fn get_task_logs(
        &self,
        request: Request<pb::GetTaskLogsRequest>,
    ) -> Result<Response<pb::GetTaskLogsResponse>, Status> {
        let mut state = self.lock()?;
        state.log_requests.push(request.into_inner());
        Ok(Response::new(pb::GetTaskLogsResponse {
            stdout: b"hello\nworld\n".to_vec(),
            stderr: b"oops\n".to_vec(),
        }))
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::GetServiceResponse>, Status> {
        let id = request.into_inner().service_id;
        let state = self.lock()?;
        let service = state
            .services
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| not_found("service", &id))?;
        Ok(Response::new(pb::GetServiceResponse {
            service: Some(service.clone().into()),
        }))
    }

    async fn list_services(
        &self,
        _: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let hang = self.lock()?.hang;
        if hang {
            std::future::pending::<()>().await;
        }
        let state = self.lock()?;
        Ok(Response::new(pb::ListServicesResponse {
            services: state.services.iter().cloned().map(Into::into).collect(),
        }))
    }

    async fn create_service(
        &self,
        request: Request<pb::CreateServiceRequest>,
    ) -> Result<Response<pb::CreateServiceResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.lock()?;
        state.created.push(request.clone());
        let spec: t::ServiceSpec = request
            .spec
            .ok_or_else(|| invalid("spec: is required"))?
            .try_into()
            .map_err(invalid)?;
        spec.validate().map_err(invalid)?;
        if state
            .services
            .iter()
            .any(|s| s.name() == spec.annotations.name)
        {
            return Err(Status::already_exists(format!(
                "a service named {} already exists",
                spec.annotations.name
            )));
        }
        let service = t::Service {
            id: "newservice000000000000000".into(),
            meta: meta(20),
            spec,
            spec_version: 1,
        };
        state.services.push(service.clone());
        Ok(Response::new(pb::CreateServiceResponse {
            service: Some(service.into()),
        }))
    }

    async fn update_service(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> Result<Response<pb::UpdateServiceResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.lock()?;
        state.updated_services.push(request.clone());
        let spec: t::ServiceSpec = request
            .spec
            .ok_or_else(|| invalid("spec: is required"))?
            .try_into()
            .map_err(invalid)?;
        spec.validate().map_err(invalid)?;
        let service = state
            .services
            .iter_mut()
            .find(|s| s.id == request.service_id)
            .ok_or_else(|| not_found("service", &request.service_id))?;
        if service.meta.version != request.service_version {
            return Err(stale("service"));
        }
        service.spec = spec;
        service.meta.version += 1;
        service.spec_version += 1;
        Ok(Response::new(pb::UpdateServiceResponse {
            service: Some(service.clone().into()),
        }))
    }

    async fn remove_service(
        &self,
        request: Request<pb::RemoveServiceRequest>,
    ) -> Result<Response<pb::RemoveServiceResponse>, Status> {
        let id = request.into_inner().service_id;
        let mut state = self.lock()?;
        let before = state.services.len();
        state.services.retain(|s| s.id != id);
        if state.services.len() == before {
            return Err(not_found("service", &id));
        }
        state.removed_services.push(id);
        Ok(Response::new(pb::RemoveServiceResponse {}))
    }

    async fn list_service_statuses(
        &self,
        request: Request<pb::ListServiceStatusesRequest>,
    ) -> Result<Response<pb::ListServiceStatusesResponse>, Status> {
        let ids = request.into_inner().service_ids;
        let state = self.lock()?;
        let statuses = ids
            .iter()
            .filter_map(|id| state.services.iter().find(|s| &s.id == id))
            .map(|s| {
                let tasks = state.tasks.iter().filter(|task| {
                    task.service_id == s.id && task.desired_state == t::TaskState::Running
                });
                let count = |state: t::TaskState| {
                    tasks
                        .clone()
                        .filter(|task| task.status.state == state)
                        .count() as u64
                };
                pb::list_service_statuses_response::ServiceStatus {
                    service_id: s.id.clone(),
                    desired_tasks: match s.spec.mode {
                        t::ServiceMode::Replicated { replicas } => replicas,
                        t::ServiceMode::Global => 1,
                    },
                    running_tasks: count(t::TaskState::Running),
                    pending_tasks: count(t::TaskState::Pending),
                }
            })
            .collect();
        Ok(Response::new(pb::ListServiceStatusesResponse { statuses }))
    }

    async fn get_cluster(
        &self,
        request: Request<pb::GetClusterRequest>,
    ) -> Result<Response<pb::GetClusterResponse>, Status> {
        let id = request.into_inner().cluster_id;
        let state = self.lock()?;
        let cluster = state
            .clusters
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| not_found("cluster", &id))?;
        Ok(Response::new(pb::GetClusterResponse {
            cluster: Some(cluster.clone().into()),
        }))
    }

    async fn list_clusters(
        &self,
        _: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        let state = self.lock()?;
        Ok(Response::new(pb::ListClustersResponse {
            clusters: state.clusters.iter().cloned().map(Into::into).collect(),
        }))
    }

    async fn update_cluster(
        &self,
        request: Request<pb::UpdateClusterRequest>,
    ) -> Result<Response<pb::UpdateClusterResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.lock()?;
        state.updated_clusters.push(request.clone());
        let spec: t::ClusterSpec = request
            .spec
            .ok_or_else(|| invalid("spec: is required"))?
            .try_into()
            .map_err(invalid)?;
        spec.validate().map_err(invalid)?;
        let cluster = state
            .clusters
            .iter_mut()
            .find(|c| c.id == request.cluster_id)
            .ok_or_else(|| not_found("cluster", &request.cluster_id))?;
        if cluster.meta.version != request.cluster_version {
            return Err(stale("cluster"));
        }
        cluster.spec = spec;
        cluster.meta.version += 1;
        Ok(Response::new(pb::UpdateClusterResponse {
            cluster: Some(cluster.clone().into()),
        }))
    }

    // Plugins are tested against a real manager (tests/cluster), which validates components.
    async fn install_plugin(
        &self,
        _: Request<pb::InstallPluginRequest>,
    ) -> Result<Response<pb::InstallPluginResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_plugins(
        &self,
        _: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_plugin(
        &self,
        _: Request<pb::GetPluginRequest>,
    ) -> Result<Response<pb::GetPluginResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn remove_plugin(
        &self,
        _: Request<pb::RemovePluginRequest>,
    ) -> Result<Response<pb::RemovePluginResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_unlock_key(
        &self,
        _: Request<pb::GetUnlockKeyRequest>,
    ) -> Result<Response<pb::GetUnlockKeyResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn create_secret(
        &self,
        _: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::CreateSecretResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_secret(
        &self,
        _: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::GetSecretResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_secrets(
        &self,
        _: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn remove_secret(
        &self,
        _: Request<pb::RemoveSecretRequest>,
    ) -> Result<Response<pb::RemoveSecretResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn create_config(
        &self,
        _: Request<pb::CreateConfigRequest>,
    ) -> Result<Response<pb::CreateConfigResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_config(
        &self,
        _: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_configs(
        &self,
        _: Request<pb::ListConfigsRequest>,
    ) -> Result<Response<pb::ListConfigsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn remove_config(
        &self,
        _: Request<pb::RemoveConfigRequest>,
    ) -> Result<Response<pb::RemoveConfigResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

// ---- harness -----------------------------------------------------------------------------

/// A fake manager on a unix socket in a temporary directory; stops when dropped.
struct TestManager {
    dir: tempfile::TempDir,
    socket: PathBuf,
    state: Arc<Mutex<State>>,
    _stop: oneshot::Sender<()>,
}

/// What one run of swarmctl printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl TestManager {
    fn start() -> TestManager {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("swarmd.sock");
        // Bound before swarmctl runs, so every connection finds it listening.
        let listener = UnixListener::bind(&socket).expect("bind the control socket");
        let state = Arc::new(Mutex::new(canned()));
        let (stop, stopped) = oneshot::channel::<()>();
        let service = ControlServer::new(Fake {
            state: state.clone(),
        });
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
            served.expect("serve the fake control API");
        });
        TestManager {
            dir,
            socket,
            state,
            _stop: stop,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("state")
    }

    /// Run swarmctl with `-s <socket>` and `args`.
    async fn run(&self, args: &[&str]) -> Run {
        let mut full = vec!["-s", self.socket.to_str().expect("utf-8 socket path")];
        full.extend_from_slice(args);
        swarmctl(self.dir.path(), &full, &[]).await
    }

    /// Run, expecting success; returns stdout.
    async fn must_run(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "swarmctl {args:?} failed: {run:?}");
        run.stdout
    }
}

/// Run the real binary in `cwd` with `args` and extra environment variables.
async fn swarmctl(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    command
        .current_dir(cwd)
        .args(args)
        .env_remove("SWARM_SOCKET")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("swarmctl finished within a minute")
        .expect("run swarmctl");
    Run {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn names(value: &serde_json::Value, pointer: &str) -> Vec<String> {
    value
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| {
            item.pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn node_ls_and_inspect() {
    let manager = TestManager::start();
    insta::assert_snapshot!("node_ls", manager.must_run(&["node", "ls"]).await);
    let listed = json(&manager.must_run(&["node", "ls", "--format", "json"]).await);
    assert_eq!(
        names(&listed, "/description/hostname"),
        ["node-a", "node-b"]
    );
    assert_eq!(listed[0]["spec"]["availability"], "drain");

    let inspected = json(
        &manager
            .must_run(&["--format", "json", "node", "inspect", "node-b"])
            .await,
    );
    assert!(inspected.is_object());
    assert_eq!(inspected["id"], NODE_B);
    let by_prefix = manager.must_run(&["node", "inspect", "n1"]).await;
    assert!(
        by_prefix.starts_with(&format!("ID:           {NODE_A}\nHostname:     node-a\n")),
        "{by_prefix}"
    );
    assert!(by_prefix.contains("\nAvailability: drain\n"), "{by_prefix}");
}

#[tokio::test]
async fn node_drain_and_update_send_the_version_and_spec() {
    let manager = TestManager::start();
    assert_eq!(
        manager.must_run(&["node", "drain", "node-b"]).await,
        format!("{NODE_B}\n")
    );
    manager
        .must_run(&[
            "node",
            "update",
            "node-b",
            "--label-add",
            "zone=east",
            "--availability",
            "pause",
        ])
        .await;
    let state = manager.state();
    let [drain, update] = state.updated_nodes.as_slice() else {
        panic!("two updates: {:?}", state.updated_nodes)
    };
    assert_eq!((drain.node_id.as_str(), drain.node_version), (NODE_B, 3));
    assert_eq!(
        drain.spec.as_ref().expect("spec").availability,
        pb::Availability::Drain as i32
    );
    // The second update read the node again and sent the version the first one produced.
    assert_eq!(update.node_version, 4);
    let spec = update.spec.as_ref().expect("spec");
    assert_eq!(spec.availability, pb::Availability::Pause as i32);
    assert_eq!(
        spec.annotations
            .as_ref()
            .expect("annotations")
            .labels
            .get("zone")
            .map(String::as_str),
        Some("east")
    );
}

#[tokio::test]
async fn service_ls_table_and_json() {
    let manager = TestManager::start();
    insta::assert_snapshot!("service_ls", manager.must_run(&["service", "ls"]).await);
    let listed = json(
        &manager
            .must_run(&["service", "ls", "--format", "json"])
            .await,
    );
    assert_eq!(names(&listed, "/spec/annotations/name"), ["api", "web"]);
    assert_eq!(listed[1]["spec"]["mode"]["replicated"]["replicas"], 3);
    assert_eq!(
        listed[1]["spec"]["task"]["runtime"]["process"]["command"],
        "sleep"
    );
}

#[tokio::test]
async fn service_inspect_table_and_json() {
    let manager = TestManager::start();
    let text = manager.must_run(&["service", "inspect", "web"]).await;
    // Creation times are fixed; their age depends on today.
    insta::with_settings!({ filters => vec![(r"(\d{4}-\d\d-\d\dT\S+) \([^)]* ago\)", "$1 ([AGE] ago)")] }, {
        insta::assert_snapshot!("service_inspect", text);
    });
    let inspected = manager
        .must_run(&["service", "inspect", "web", "--format", "json"])
        .await;
    insta::assert_snapshot!("service_inspect_json", inspected);
    assert_eq!(json(&inspected)["id"], WEB);
}

#[tokio::test]
async fn task_ls_views() {
    let manager = TestManager::start();
    insta::assert_snapshot!("task_ls", manager.must_run(&["task", "ls"]).await);
    insta::assert_snapshot!(
        "task_ls_all_web",
        manager
            .must_run(&["task", "ls", "--all", "--service", "web"])
            .await
    );
    let on_b = manager.must_run(&["task", "ls", "--node", "node-b"]).await;
    assert_eq!(on_b.lines().count(), 2, "{on_b}");
    assert!(on_b.contains("t2web2"), "{on_b}");

    let listed = json(
        &manager
            .must_run(&["task", "ls", "--all", "--format", "json"])
            .await,
    );
    assert_eq!(
        names(&listed, "/id"),
        ["t4api", "t0web1old", "t1web1", "t2web2", "t3web3"]
    );
    assert_eq!(
        names(&listed, "/status/state"),
        ["running", "failed", "running", "running", "pending"]
    );
    assert_eq!(
        names(&listed, "/desired_state"),
        ["running", "shutdown", "running", "running", "running"]
    );
}

#[tokio::test]
async fn task_inspect_logs_and_rm() {
    let manager = TestManager::start();
    // A name shared by an old task resolves to the current one.
    let inspected = json(
        &manager
            .must_run(&["task", "inspect", "web.1", "--format", "json"])
            .await,
    );
    assert_eq!(inspected["id"], "t1web1");
    let text = manager.must_run(&["task", "inspect", "t3"]).await;
    assert!(
        text.contains("Message:       no suitable node (insufficient memory on 2 nodes)"),
        "{text}"
    );
    assert!(
        text.contains("State:         pending 2 hours ago"),
        "{text}"
    );

    let logs = manager
        .run(&["task", "logs", "t2web2", "--tail-bytes", "100"])
        .await;
    assert_eq!(
        (logs.code, logs.stdout.as_str(), logs.stderr.as_str()),
        (0, "hello\nworld\n", "oops\n")
    );
    assert_eq!(manager.state().log_requests[0].tail_bytes, 100);

    assert_eq!(manager.must_run(&["task", "rm", "t4"]).await, "t4api\n");
    assert_eq!(manager.state().removed_tasks, ["t4api"]);
}

#[tokio::test]
async fn ambiguous_and_unknown_names_are_user_errors() {
    let manager = TestManager::start();
    let ambiguous = manager.run(&["service", "inspect", "ab"]).await;
    assert_eq!(ambiguous.code, 1);
    assert_eq!(
        ambiguous.stderr,
        format!(
            "Error: service id prefix \"ab\" is ambiguous: it matches {WEB} (web), {API} (api); give the full id\n"
        )
    );
    let unknown = manager.run(&["service", "rm", "nope"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no service \"nope\""),
        "{unknown:?}"
    );
    let task = manager.run(&["task", "inspect", "t"]).await;
    assert_eq!(task.code, 1);
    assert!(
        task.stderr.contains("task id prefix \"t\" is ambiguous"),
        "{task:?}"
    );
}

#[tokio::test]
async fn service_create_sends_the_spec() {
    let manager = TestManager::start();
    let out = manager
        .must_run(&[
            "service",
            "create",
            "--name",
            "batch",
            "--replicas",
            "4",
            "--env",
            "MODE=fast",
            "--label",
            "team=data",
            "--constraint",
            "node.labels.zone==east",
            "--reserve-cpu",
            "0.5",
            "--reserve-memory",
            "512MiB",
            "--limit-cpu",
            "1",
            "--limit-memory",
            "1GiB",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "10s",
            "--restart-max-attempts",
            "3",
            "--restart-window",
            "1m",
            "--max-replicas-per-node",
            "2",
            "--workdir",
            "/srv",
            "--process",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .await;
    assert_eq!(out, "newservice000000000000000\n");
    let state = manager.state();
    let spec = state.created[0].spec.clone().expect("spec");
    assert_eq!(
        spec.annotations.as_ref().expect("annotations").name,
        "batch"
    );
    assert_eq!(
        spec.mode,
        Some(pb::service_spec::Mode::Replicated(pb::ReplicatedService {
            replicas: 4
        }))
    );
    let task = spec.task.expect("task");
    assert_eq!(
        task.runtime,
        Some(pb::task_spec::Runtime::Process(pb::ProcessSpec {
            command: "sh".into(),
            args: vec!["-c".into(), "echo hi".into()],
            env: vec!["MODE=fast".into()],
            dir: Some("/srv".into()),
        }))
    );
    let resources = task.resources.expect("resources");
    assert_eq!(
        resources.reservations,
        Some(pb::Resources {
            nano_cpus: 500_000_000,
            memory_bytes: 512 << 20
        })
    );
    assert_eq!(
        resources.limits,
        Some(pb::Resources {
            nano_cpus: 1_000_000_000,
            memory_bytes: 1 << 30
        })
    );
    let restart = task.restart.expect("restart");
    assert_eq!(restart.condition, pb::RestartCondition::OnFailure as i32);
    assert_eq!(restart.delay.expect("delay").seconds, 10);
    assert_eq!(restart.max_attempts, 3);
    assert_eq!(restart.window.expect("window").seconds, 60);
    let placement = task.placement.expect("placement");
    assert_eq!(placement.constraints, ["node.labels.zone==east"]);
    assert_eq!(placement.max_replicas, 2);
}

#[tokio::test]
async fn service_create_defaults_and_wasi() {
    let manager = TestManager::start();
    manager
        .must_run(&[
            "service",
            "create",
            "--name",
            "plain",
            "--process",
            "sleep",
            "5",
        ])
        .await;
    let wasm = manager.dir.path().join("app.wasm");
    std::fs::write(&wasm, b"\0asm").expect("write a component");
    // A relative path is resolved against swarmctl's working directory (the temp dir).
    manager
        .must_run(&[
            "service", "create", "--name", "app", "--mode", "global", "--wasi", "app.wasm", "--",
            "-v",
        ])
        .await;
    let state = manager.state();
    let plain: t::ServiceSpec = state.created[0]
        .spec
        .clone()
        .expect("spec")
        .try_into()
        .expect("convert");
    assert_eq!(plain.mode, t::ServiceMode::Replicated { replicas: 1 });
    assert_eq!(plain.task.restart, t::RestartPolicy::default());
    let app: t::ServiceSpec = state.created[1]
        .spec
        .clone()
        .expect("spec")
        .try_into()
        .expect("convert");
    assert_eq!(app.mode, t::ServiceMode::Global);
    let t::Runtime::Wasi(w) = &app.task.runtime else {
        panic!("not wasi: {:?}", app.task.runtime)
    };
    assert_eq!(Path::new(&w.module), wasm);
    assert_eq!(w.args, ["-v"]);
}

#[tokio::test]
async fn service_create_missing_wasi_file_is_a_user_error() {
    let manager = TestManager::start();
    let run = manager
        .run(&[
            "service",
            "create",
            "--name",
            "app",
            "--wasi",
            "missing.wasm",
        ])
        .await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "Error: --wasi missing.wasm: No such file or directory; give the path of a WASI component (.wasm) on this machine\n"
    );
    assert!(manager.state().created.is_empty());
}

#[tokio::test]
async fn invalid_argument_prints_the_managers_message() {
    let manager = TestManager::start();
    let run = manager
        .run(&[
            "service",
            "create",
            "--name",
            "big",
            "--replicas",
            "2000000",
            "--process",
            "sleep",
            "1",
        ])
        .await;
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    assert_eq!(run.stderr, "Error: spec.replicas: must be <= 1000000\n");
    let exists = manager
        .run(&[
            "service",
            "create",
            "--name",
            "web",
            "--process",
            "sleep",
            "1",
        ])
        .await;
    assert_eq!(
        (exists.code, exists.stderr.as_str()),
        (1, "Error: a service named web already exists\n")
    );
}

#[tokio::test]
async fn service_update_scale_and_rm() {
    let manager = TestManager::start();
    manager
        .must_run(&[
            "service",
            "update",
            "web",
            "--env-add",
            "B=2",
            "--env-rm",
            "A",
            "--label-add",
            "x=y",
            "--force",
        ])
        .await;
    assert_eq!(
        manager.must_run(&["service", "scale", "web=5"]).await,
        "web scaled to 5\n"
    );
    assert_eq!(
        manager.must_run(&["service", "scale", "web", "2"]).await,
        "web scaled to 2\n"
    );
    let global = manager.run(&["service", "scale", "api", "2"]).await;
    assert_eq!(global.code, 1);
    assert!(
        global.stderr.contains("service api is global"),
        "{global:?}"
    );
    {
        let state = manager.state();
        let updates: Vec<t::ServiceSpec> = state
            .updated_services
            .iter()
            .map(|u| u.spec.clone().expect("spec").try_into().expect("convert"))
            .collect();
        let versions: Vec<u64> = state
            .updated_services
            .iter()
            .map(|u| u.service_version)
            .collect();
        assert_eq!(versions, [7, 8, 9]);
        let t::Runtime::Process(p) = &updates[0].task.runtime else {
            panic!("not a process")
        };
        assert_eq!(p.env, ["B=2"]);
        assert_eq!(
            updates[0].annotations.labels.get("x").map(String::as_str),
            Some("y")
        );
        assert_eq!(updates[0].task.force_update, 1);
        assert_eq!(updates[1].mode, t::ServiceMode::Replicated { replicas: 5 });
        assert_eq!(updates[2].mode, t::ServiceMode::Replicated { replicas: 2 });
        // Unchanged fields went back as they were.
        assert_eq!(updates[2].task.resources, web_spec().task.resources);
    }
    let removed = manager.run(&["service", "rm", "web", "nope", "api"]).await;
    assert_eq!(removed.code, 1);
    assert_eq!(removed.stdout, "web\napi\n");
    assert!(
        removed.stderr.contains("no service \"nope\""),
        "{removed:?}"
    );
    assert_eq!(manager.state().removed_services, [WEB, API]);
}

#[tokio::test]
async fn cluster_inspect_and_update() {
    let manager = TestManager::start();
    let text = manager.must_run(&["cluster", "inspect"]).await;
    assert!(text.contains("Task history limit: 5"), "{text}");
    assert!(text.contains("Heartbeat period:   5s"), "{text}");
    let inspected = json(
        &manager
            .must_run(&["cluster", "inspect", "default", "--format", "json"])
            .await,
    );
    assert_eq!(inspected["spec"]["dispatcher"]["heartbeat_period"], "5s");
    manager
        .must_run(&[
            "cluster",
            "update",
            "--task-history-limit",
            "10",
            "--heartbeat-period",
            "2s",
        ])
        .await;
    let state = manager.state();
    let update = &state.updated_clusters[0];
    assert_eq!(
        (update.cluster_id.as_str(), update.cluster_version),
        (CLUSTER, 2)
    );
    let spec: t::ClusterSpec = update
        .spec
        .clone()
        .expect("spec")
        .try_into()
        .expect("convert");
    assert_eq!(spec.orchestration.task_history_retention_limit, 10);
    assert_eq!(spec.dispatcher.heartbeat_period, Duration::from_secs(2));
    assert_eq!(spec.raft, t::ClusterSpec::with_defaults().raft);
}

#[tokio::test]
async fn swarm_socket_variable_replaces_the_flag() {
    let manager = TestManager::start();
    let socket = manager.socket.to_str().expect("utf-8");
    let run = swarmctl(
        manager.dir.path(),
        &["service", "ls"],
        &[("SWARM_SOCKET", socket)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("web"), "{run:?}");
}

#[tokio::test]
async fn a_missing_socket_exits_2_and_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = swarmctl(dir.path(), &["service", "ls"], &[]).await;
    assert_eq!((run.code, run.stdout.as_str()), (2, ""));
    assert_eq!(
        run.stderr,
        "Error: cannot reach the manager at ./swarmkitstate/swarmd.sock: No such file or directory. \
         Is swarmd running? Point -s/--socket or SWARM_SOCKET at its control socket.\n"
    );
}

#[tokio::test]
async fn a_socket_nobody_listens_on_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("stale.sock");
    // Bind then close: the socket file stays behind, as after a crash.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    let run = swarmctl(dir.path(), &["-s", "stale.sock", "node", "ls"], &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.starts_with(
            "Error: cannot reach the manager at stale.sock: Connection refused. Is swarmd running?"
        ),
        "{run:?}"
    );
}

#[tokio::test]
async fn an_unavailable_manager_exits_2() {
    let manager = TestManager::start();
    manager.state().fail_with = Some((tonic::Code::Unavailable, "no leader".into()));
    let run = manager.run(&["service", "ls"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is unavailable: no leader"), "{run:?}");
    manager.state().fail_with = Some((
        tonic::Code::FailedPrecondition,
        "node is not a manager".into(),
    ));
    let run = manager.run(&["node", "ls"]).await;
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "Error: node is not a manager\n")
    );
}

#[tokio::test]
async fn a_manager_that_does_not_answer_exits_2_after_the_timeout() {
    let manager = TestManager::start();
    manager.state().hang = true;
    let run = manager.run(&["--timeout", "200ms", "service", "ls"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("did not answer in time"), "{run:?}");
    assert!(run.stderr.contains("--timeout"), "{run:?}");
}

#[tokio::test]
async fn bad_flags_exit_1_and_name_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "service",
                "create",
                "--name",
                "w",
                "--reserve-memory",
                "12X",
                "--process",
                "x",
            ],
            "--reserve-memory",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "w",
                "--limit-cpu",
                "lots",
                "--process",
                "x",
            ],
            "--limit-cpu",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "w",
                "--restart-delay",
                "soon",
                "--process",
                "x",
            ],
            "--restart-delay",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "w",
                "--constraint",
                "node.color==red",
                "--process",
                "x",
            ],
            "--constraint",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "w",
                "--env",
                "NOVALUE",
                "--process",
                "x",
            ],
            "--env",
        ),
        (
            &["node", "update", "n", "--availability", "sleepy"],
            "--availability",
        ),
        (
            &["service", "scale", "web", "many"],
            "\"many\" is not a number",
        ),
    ];
    for (args, want) in cases {
        let run = swarmctl(dir.path(), args, &[]).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(want), "{args:?}: {run:?}");
    }
    let version = swarmctl(dir.path(), &["version"], &[]).await;
    assert_eq!(
        (version.code, version.stdout.as_str()),
        (0, concat!("swarmctl ", env!("CARGO_PKG_VERSION"), "\n"))
    );
}
