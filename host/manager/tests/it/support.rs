//! Shared fixtures: a store with a cluster and READY nodes committed through `DirectCommitter`,
//! object builders, writes made the way the control API, the scheduler and the agents make
//! them, the manager's loops run as tasks, the real scheduler plugin, and polling with a deadline.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use swarm_manager::commit::commit_with;
use swarm_manager::{Committer, DirectCommitter, ManagerError, Orchestrator, SchedulerDriver};
use swarm_plugin_host::{HostConfig, PluginHost, SchedulerPlugin};
use swarm_store::{MemoryStore, ObjectKind, ReadTx, StoreRead as _, WriteTx};
use swarm_types::{
    Annotations, Availability, Cluster, ClusterSpec, EngineDescription, Membership, Meta, Node,
    NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Platform, ProcessSpec, Resources,
    RestartPolicy, Runtime, Service, ServiceMode, ServiceSpec, Task, TaskSpec, TaskState,
    Timestamp, new_id,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// What every test node offers: 4 CPUs and 8 GiB.
pub const NODE_CPUS: i64 = 4_000_000_000;
pub const NODE_MEMORY: i64 = 8 << 30;

/// A store with a cluster object, its committer, and the manager loops started on it.
pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub committer: Arc<dyn Committer>,
    cancel: CancellationToken,
    loops: JoinSet<()>,
}

impl Harness {
    /// A store holding the default cluster object and `nodes` READY, active worker nodes
    /// named `node-1` .. `node-N`.
    pub async fn new(nodes: usize) -> Self {
        let store = Arc::new(MemoryStore::new());
        let committer: Arc<dyn Committer> = Arc::new(DirectCommitter::new(store.clone()));
        let harness = Self {
            store,
            committer,
            cancel: CancellationToken::new(),
            loops: JoinSet::new(),
        };
        let now = Timestamp::now();
        harness
            .must_commit(|tx| {
                tx.create(Cluster {
                    id: new_id(),
                    meta: Meta {
                        version: 0,
                        created_at: now,
                        updated_at: now,
                    },
                    spec: ClusterSpec::with_defaults(),
                    root_ca: Default::default(),
                })?;
                Ok(())
            })
            .await;
        for i in 1..=nodes {
            harness.must_add_node(&format!("node-{i}"), &[]).await;
        }
        harness
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs the orchestrator (and task reaper) until the harness shuts down.
    pub fn start_orchestrator(&mut self) {
        let orchestrator = Orchestrator::new(self.store.clone(), self.committer.clone());
        self.loops.spawn(orchestrator.run(self.cancel.clone()));
    }

    /// Runs the scheduler driver with the real default scheduler plugin.
    pub fn start_scheduler(&mut self) {
        let driver = SchedulerDriver::new(
            self.store.clone(),
            self.committer.clone(),
            Box::new(must_load_scheduler()),
        );
        self.loops.spawn(driver.run(self.cancel.clone()));
    }

    /// Runs any other loop until the harness shuts down.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.loops.spawn(task);
    }

    /// Cancels the loops and waits for every one to end (a loop that ignores cancellation
    /// fails the test).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let loops = async {
            while let Some(joined) = self.loops.join_next().await {
                joined.expect("manager loop panicked");
            }
        };
        tokio::time::timeout(TIMEOUT, loops)
            .await
            .expect("manager loops end when cancelled");
    }

    pub async fn commit<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, ManagerError>,
    ) -> Result<T, ManagerError> {
        commit_with(&self.store, self.committer.as_ref(), f)
            .await
            .map(|(value, _)| value)
    }

    pub async fn must_commit<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, ManagerError>,
    ) -> T {
        self.commit(f).await.expect("commit")
    }

    pub fn view<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> R) -> R {
        self.store.view(f)
    }

    pub async fn must_add_node(&self, id: &str, labels: &[(&str, &str)]) -> Node {
        let node = ready_node(id, labels);
        self.must_commit(|tx| Ok(tx.create(node.clone())?)).await;
        self.must_node(id)
    }

    pub fn must_node(&self, id: &str) -> Node {
        self.view(|tx| tx.node(id).map(|n| (**n).clone()))
            .unwrap_or_else(|| panic!("node {id} exists"))
    }

    pub fn must_task(&self, id: &str) -> Task {
        self.view(|tx| tx.task(id).map(|t| (**t).clone()))
            .unwrap_or_else(|| panic!("task {id} exists"))
    }

    pub fn task(&self, id: &str) -> Option<Task> {
        self.view(|tx| tx.task(id).map(|t| (**t).clone()))
    }

    pub fn must_service(&self, id: &str) -> Service {
        self.view(|tx| tx.service(id).map(|s| (**s).clone()))
            .unwrap_or_else(|| panic!("service {id} exists"))
    }

    /// Every task of a service, by slot then id.
    pub fn tasks_of(&self, service_id: &str) -> Vec<Task> {
        self.view(|tx| {
            tx.tasks_by_service(service_id)
                .map(|t| (**t).clone())
                .collect()
        })
    }

    pub async fn must_update_node(&self, id: &str, change: impl FnOnce(&mut Node)) -> Node {
        self.must_commit(|tx| {
            let mut node = (**tx.node(id).expect("node exists")).clone();
            change(&mut node);
            node.meta.updated_at = Timestamp::now();
            Ok(tx.update(node)?)
        })
        .await;
        self.must_node(id)
    }

    pub async fn must_update_task(&self, id: &str, change: impl FnOnce(&mut Task)) -> Task {
        self.must_commit(|tx| {
            let mut task = (**tx.task(id).expect("task exists")).clone();
            change(&mut task);
            task.meta.updated_at = Timestamp::now();
            Ok(tx.update(task)?)
        })
        .await;
        self.must_task(id)
    }

    pub async fn must_update_cluster(&self, change: impl FnOnce(&mut ClusterSpec)) {
        self.must_commit(|tx| {
            let mut cluster = (**tx.cluster().expect("cluster exists")).clone();
            change(&mut cluster.spec);
            cluster.meta.updated_at = Timestamp::now();
            Ok(tx.update(cluster)?)
        })
        .await;
    }

    /// Creates a service as the control API does (spec version 1).
    pub async fn must_create_service(&self, spec: ServiceSpec) -> Service {
        spec.validate().expect("valid test spec");
        let now = Timestamp::now();
        let service = Service {
            id: new_id(),
            meta: Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            },
            spec,
            spec_version: 1,
        };
        let id = service.id.clone();
        self.must_commit(|tx| Ok(tx.create(service)?)).await;
        self.must_service(&id)
    }

    /// Updates a service as the control API does: a new task spec bumps `spec_version`.
    pub async fn must_update_service(
        &self,
        id: &str,
        change: impl FnOnce(&mut ServiceSpec),
    ) -> Service {
        self.must_commit(|tx| {
            let mut service = (**tx.service(id).expect("service exists")).clone();
            let before = service.spec.task.clone();
            change(&mut service.spec);
            if service.spec.task != before {
                service.spec_version += 1;
            }
            service.meta.updated_at = Timestamp::now();
            Ok(tx.update(service)?)
        })
        .await;
        self.must_service(id)
    }

    pub async fn must_remove_service(&self, id: &str) {
        self.must_commit(|tx| Ok(tx.delete(ObjectKind::Service, id)?))
            .await;
    }

    /// Assigns a pending task to a node, as the scheduler driver commits it.
    pub async fn must_assign(&self, task_id: &str, node_id: &str) -> Task {
        self.must_update_task(task_id, |t| {
            t.node_id = node_id.to_string();
            t.status.state = TaskState::Assigned;
            t.status.timestamp = Timestamp::now();
            t.status.message = "scheduler assigned task to node".into();
        })
        .await
    }

    /// Reports a task's observed state, as an agent's status update is applied.
    pub async fn must_report(&self, task_id: &str, state: TaskState) -> Task {
        self.must_update_task(task_id, |t| {
            t.status.state = state;
            t.status.timestamp = Timestamp::now();
            t.status.message = format!("reported {state}");
        })
        .await
    }

    /// Assigns a task to a node and reports it RUNNING.
    pub async fn must_run_on(&self, task_id: &str, node_id: &str) -> Task {
        self.must_assign(task_id, node_id).await;
        self.must_report(task_id, TaskState::Running).await
    }

    /// Polls the store until `f` returns `Some`, failing the test after [`TIMEOUT`].
    pub async fn must_eventually<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&ReadTx<'_>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(value) = self.store.view(&mut f) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what}; tasks: {:#?}",
                self.view(|tx| tx.tasks().map(|t| summary(t)).collect::<Vec<_>>())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls one service's tasks until `f` returns `Some`.
    pub async fn must_tasks<T>(
        &self,
        service_id: &str,
        what: &str,
        mut f: impl FnMut(&[Task]) -> Option<T>,
    ) -> T {
        self.must_eventually(what, |tx| {
            let tasks: Vec<Task> = tx
                .tasks_by_service(service_id)
                .map(|t| (**t).clone())
                .collect();
            f(&tasks)
        })
        .await
    }

    /// Waits until the orchestrator has handled every change committed before this call:
    /// creates a one-replica barrier service and waits for its task, twice. The orchestrator
    /// reconciles the services a change marked before it waits for more changes, so once the
    /// second barrier's task exists, every earlier change has been reconciled.
    pub async fn must_settle_orchestrator(&self) {
        static BARRIERS: AtomicUsize = AtomicUsize::new(0);
        for _ in 0..2 {
            let n = BARRIERS.fetch_add(1, Ordering::Relaxed);
            let mut spec = service_spec(&format!("barrier-{n}"), 1);
            // Barrier tasks never run: keep them off every node.
            spec.task.placement.constraints = vec!["node.labels.barrier==yes".into()];
            let barrier = self.must_create_service(spec).await;
            self.must_tasks(&barrier.id, "the barrier service's task", |tasks| {
                (!tasks.is_empty()).then_some(())
            })
            .await;
        }
    }
}

/// A READY, active worker node with 4 CPUs, 8 GiB and the `process` runtime.
pub fn ready_node(id: &str, labels: &[(&str, &str)]) -> Node {
    let now = Timestamp::now();
    Node {
        id: id.to_string(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        spec: NodeSpec {
            annotations: Annotations {
                name: String::new(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            desired_role: NodeRole::Worker,
            membership: Membership::Accepted,
            availability: Availability::Active,
            executor: String::new(),
        },
        role: NodeRole::Worker,
        description: Some(NodeDescription {
            hostname: id.to_string(),
            platform: Platform {
                os: "linux".into(),
                arch: "amd64".into(),
            },
            resources: Resources {
                nano_cpus: NODE_CPUS,
                memory_bytes: NODE_MEMORY,
            },
            engine: EngineDescription::default(),
            executor: "default".into(),
            runtimes: vec!["process".into()],
        }),
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: "127.0.0.1".into(),
            last_seen: now,
        },
        manager_status: None,
    }
}

/// A replicated `sleep` service that restarts at once (no delay) on any exit.
pub fn service_spec(name: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations {
            name: name.to_string(),
            labels: Default::default(),
        },
        task: TaskSpec {
            runtime: Runtime::Process(ProcessSpec {
                command: "sleep".into(),
                args: vec!["1000".into()],
                ..Default::default()
            }),
            resources: Default::default(),
            restart: RestartPolicy {
                delay: Duration::ZERO,
                ..Default::default()
            },
            placement: Default::default(),
            force_update: 0,
            secrets: vec![],
            configs: vec![],
        },
        mode: ServiceMode::Replicated { replicas },
        executor: String::new(),
    }
}

pub fn global_spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        mode: ServiceMode::Global,
        ..service_spec(name, 0)
    }
}

/// Tasks whose desired state is RUNNING or less (the ones occupying their slot).
pub fn current(tasks: &[Task]) -> Vec<&Task> {
    tasks
        .iter()
        .filter(|t| t.desired_state <= TaskState::Running)
        .collect()
}

/// The current task of a replica slot, if exactly one occupies it.
pub fn in_slot(tasks: &[Task], slot: u64) -> Option<&Task> {
    let mut found = tasks
        .iter()
        .filter(|t| t.slot == slot && t.desired_state <= TaskState::Running);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// One line per task, for failure messages.
pub fn summary(t: &Task) -> String {
    format!(
        "{} {} slot={} node={:?} desired={} state={} err={:?}",
        t.id, t.annotations.name, t.slot, t.node_id, t.desired_state, t.status.state, t.status.err
    )
}

/// One plugin host (on temporary directories) for the whole test binary, so the scheduler
/// component is compiled once.
pub fn plugin_host() -> &'static PluginHost {
    static HOST: OnceLock<(tempfile::TempDir, PluginHost)> = OnceLock::new();
    &HOST
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let host = PluginHost::new(host_config(dir.path())).expect("plugin host");
            (dir, host)
        })
        .1
}

fn host_config(dir: &Path) -> HostConfig {
    HostConfig {
        cache_dir: dir.join("cache"),
        tasks_dir: dir.join("tasks"),
        call_deadline: Duration::from_secs(10),
        memory_limit_bytes: 256 << 20,
        engine_addr: None,
    }
}

/// A fresh instance of the default scheduler plugin (`swarm-plugin-artifacts::SCHEDULER`).
pub fn must_load_scheduler() -> SchedulerPlugin {
    plugin_host()
        .load_scheduler("default", swarm_plugin_artifacts::SCHEDULER)
        .expect("load the default scheduler plugin")
}

/// A task of `service` as the orchestrator creates it, then placed on `node_id` (empty: not
/// placed) in observed state `state`.
pub fn task_of(service: &Service, slot: u64, node_id: &str, state: TaskState) -> Task {
    let now = Timestamp::now();
    Task {
        id: new_id(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        annotations: Annotations {
            name: format!("{}.{slot}", service.spec.annotations.name),
            labels: Default::default(),
        },
        service_id: service.id.clone(),
        slot,
        node_id: node_id.to_string(),
        spec: service.spec.task.clone(),
        spec_version: service.spec_version,
        executor: String::new(),
        desired_state: TaskState::Running,
        status: swarm_types::TaskStatus {
            state,
            timestamp: now,
            message: String::new(),
            ..Default::default()
        },
    }
}

impl Harness {
    /// Commits a new task (see [`task_of`]) and returns it as stored.
    pub async fn must_add_task(
        &self,
        service: &Service,
        slot: u64,
        node_id: &str,
        state: TaskState,
    ) -> Task {
        let task = task_of(service, slot, node_id, state);
        let id = task.id.clone();
        self.must_commit(|tx| Ok(tx.create(task)?)).await;
        self.must_task(&id)
    }
}
