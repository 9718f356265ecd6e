//! The control API (`swarm.v1.Control`): validates requests, turns them into store batches and
//! commits them through raft. Errors keep their reason and name the field at fault.

use std::sync::Arc;

use swarm_plugin_host::PluginHost;
use swarm_proto::pb;
use swarm_store::{MemoryStore, ObjectKind, StoreRead as _};
use swarm_types::{
    Cluster, ClusterSpec, Config, Meta, Node, NodeRole, NodeSpec, NodeState, PluginKind,
    Reachability, Secret, Service, ServiceMode, ServiceSpec, Task, TaskState, Timestamp, new_id,
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::commit::{Committer, commit_with};
use crate::dek;
use crate::dispatcher::Dispatcher;
use crate::error::{ManagerError, Result};
use crate::leader::{LeaderTerm, Leadership};
use crate::plugins::{self, Registry};
use crate::secrets::{self, DataStore};

/// Default size of the log tail `GetTaskLogs` returns.
const DEFAULT_LOG_TAIL: u64 = 64 * 1024;

/// The control service, shared by the local socket server (and later the remote listener).
#[derive(Clone)]
pub struct ControlService {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    leadership: Leadership,
    plugin_host: Option<PluginHost>,
    raft: Option<swarm_raft::RaftNode>,
}

impl ControlService {
    pub fn new(
        store: Arc<MemoryStore>,
        committer: Arc<dyn Committer>,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        Self {
            store,
            committer,
            leadership: Leadership::fixed(LeaderTerm { dispatcher }),
            plugin_host: None,
            raft: None,
        }
    }

    /// A service that asks the dispatcher of whichever term this manager leads for task logs,
    /// and fills in managers' leadership and reachability from `raft`.
    pub fn new_routed(
        store: Arc<MemoryStore>,
        committer: Arc<dyn Committer>,
        leadership: Leadership,
        raft: swarm_raft::RaftNode,
    ) -> Self {
        Self {
            store,
            committer,
            leadership,
            plugin_host: None,
            raft: Some(raft),
        }
    }

    /// The plugin host that validates components before `InstallPlugin` proposes them; without
    /// one, installs are refused.
    pub fn with_plugin_host(mut self, host: PluginHost) -> Self {
        self.plugin_host = Some(host);
        self
    }

    /// Refuses a demotion after which the remaining voters that answer now would not be a
    /// majority of the remaining voters (SwarmKit's check): the cluster would stop.
    fn check_demotion_keeps_quorum(&self, node: &Node) -> Result<()> {
        let (Some(raft), Some(manager)) = (&self.raft, node.manager_status.as_ref()) else {
            return Ok(());
        };
        let status = raft.metrics();
        let remaining: Vec<u64> = status
            .members
            .iter()
            .filter(|m| m.voter && m.id != manager.raft_id)
            .map(|m| m.id)
            .collect();
        let reachable = remaining
            .iter()
            .filter(|id| **id == status.node_id || raft.peer_reachable(**id))
            .count();
        let quorum = remaining.len() / 2 + 1;
        if reachable < quorum {
            return Err(ManagerError::FailedPrecondition(format!(
                "spec.desired_role: demoting node {} would leave {reachable} reachable of {} \
                 managers, fewer than the {quorum} a quorum needs; bring managers back first",
                node.id,
                remaining.len()
            )));
        }
        Ok(())
    }

    /// Fills in managers' leadership and reachability from raft as this manager sees it now
    /// (not stored: they change without any write).
    fn live_manager_status(&self, mut nodes: Vec<Node>) -> Vec<Node> {
        let Some(raft) = &self.raft else {
            return nodes;
        };
        let status = raft.metrics();
        for node in &mut nodes {
            let down = node.status.state == NodeState::Down;
            let Some(manager) = node.manager_status.as_mut() else {
                continue;
            };
            let member = status.members.iter().find(|m| m.id == manager.raft_id);
            manager.leader = status.leader_id == Some(manager.raft_id);
            manager.reachability = match member {
                None => Reachability::Unreachable,
                Some(_) if manager.leader || manager.raft_id == status.node_id => {
                    Reachability::Reachable
                }
                Some(m) => {
                    if raft.peer_reachable(m.id) && !down {
                        Reachability::Reachable
                    } else {
                        Reachability::Unreachable
                    }
                }
            };
            if let Some(m) = member {
                manager.addr = m.addr.clone();
            }
        }
        nodes
    }

    fn registry(&self) -> Registry {
        Registry {
            store: self.store.clone(),
            committer: self.committer.clone(),
            host: self.plugin_host.clone(),
        }
    }

    fn get<T>(
        &self,
        kind: &str,
        id: &str,
        f: impl FnOnce(&swarm_store::ReadTx<'_>) -> Option<T>,
    ) -> Result<T> {
        if id.is_empty() {
            return Err(ManagerError::InvalidArgument(format!(
                "{kind}_id: must not be empty"
            )));
        }
        self.store
            .view(f)
            .ok_or_else(|| ManagerError::NotFound(format!("{kind} {id} not found")))
    }

    fn data(&self) -> DataStore<'_> {
        DataStore {
            store: &self.store,
            committer: self.committer.as_ref(),
        }
    }

    async fn create_service(&self, spec: Option<pb::ServiceSpec>) -> Result<Service> {
        let spec: ServiceSpec = spec
            .ok_or_else(|| ManagerError::InvalidArgument("spec: is required".into()))?
            .try_into()?;
        spec.validate()?;
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
        let mut service = service;
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            secrets::resolve_refs(tx, &mut service.spec.task)?;
            if let Some(existing) = tx.service_by_name(service.name()) {
                return Err(ManagerError::AlreadyExists(format!(
                    "service name {:?} is already used by service {}; choose another name",
                    service.name(),
                    existing.id
                )));
            }
            plugins::check_ref(
                tx,
                "spec.executor",
                &service.spec.executor,
                PluginKind::Executor,
            )?;
            plugins::check_runs(tx, &service.spec.executor, service.spec.task.runtime.kind())?;
            tx.create(service)?;
            Ok(())
        })
        .await?;
        self.get("service", &id, |tx| tx.service(&id).map(|s| (**s).clone()))
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: Option<pb::ServiceSpec>,
    ) -> Result<Service> {
        let spec: ServiceSpec = spec
            .ok_or_else(|| ManagerError::InvalidArgument("spec: is required".into()))?
            .try_into()?;
        spec.validate()?;
        let current = self.get("service", id, |tx| tx.service(id).map(|s| (**s).clone()))?;
        if current.meta.version != version {
            return Err(ManagerError::Conflict(format!(
                "update out of sequence: service {id} has version {}, update carried {version}; re-read and retry",
                current.meta.version
            )));
        }
        if spec.annotations.name != current.spec.annotations.name {
            return Err(ManagerError::InvalidArgument(
                "spec.annotations.name: renaming a service is not supported".into(),
            ));
        }
        if spec.mode.name() != current.spec.mode.name() {
            return Err(ManagerError::InvalidArgument(format!(
                "spec.mode: a {} service cannot become {}; create a new service",
                current.spec.mode.name(),
                spec.mode.name()
            )));
        }
        let mut updated = current.clone();
        let executor_changed = spec.executor != current.spec.executor;
        let runtime_changed = spec.task.runtime.kind() != current.spec.task.runtime.kind();
        updated.spec = spec;
        updated.meta.updated_at = Timestamp::now();
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            secrets::resolve_refs(tx, &mut updated.spec.task)?;
            if updated.spec.task != current.spec.task {
                updated.spec_version += 1;
            }
            if executor_changed {
                let executor = &updated.spec.executor;
                plugins::check_ref(tx, "spec.executor", executor, PluginKind::Executor)?;
            }
            if executor_changed || runtime_changed {
                let runtime = updated.spec.task.runtime.kind();
                plugins::check_runs(tx, &updated.spec.executor, runtime)?;
            }
            Ok(tx.update(updated)?)
        })
        .await?;
        self.get("service", id, |tx| tx.service(id).map(|s| (**s).clone()))
    }

    async fn update_node(
        &self,
        id: &str,
        version: u64,
        spec: Option<pb::NodeSpec>,
    ) -> Result<Node> {
        let spec: NodeSpec = spec
            .ok_or_else(|| ManagerError::InvalidArgument("spec: is required".into()))?
            .try_into()?;
        spec.validate()?;
        let current = self.get("node", id, |tx| tx.node(id).map(|n| (**n).clone()))?;
        if current.meta.version != version {
            return Err(ManagerError::Conflict(format!(
                "update out of sequence: node {id} has version {}, update carried {version}; re-read and retry",
                current.meta.version
            )));
        }
        if spec.desired_role != current.spec.desired_role {
            let managers = self.store.view(|tx| {
                tx.nodes()
                    .filter(|n| n.spec.desired_role == NodeRole::Manager)
                    .count()
            });
            if current.spec.desired_role == NodeRole::Manager && managers <= 1 {
                return Err(ManagerError::FailedPrecondition(
                    "spec.desired_role: cannot demote the last manager of the cluster".into(),
                ));
            }
            if current.spec.desired_role == NodeRole::Manager {
                self.check_demotion_keeps_quorum(&current)?;
            }
        }
        let executor_changed = spec.executor != current.spec.executor;
        let mut updated = current;
        updated.spec = spec;
        updated.meta.updated_at = Timestamp::now();
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            if executor_changed {
                let executor = &updated.spec.executor;
                plugins::check_ref(tx, "spec.executor", executor, PluginKind::Executor)?;
            }
            Ok(tx.update(updated)?)
        })
        .await?;
        self.get("node", id, |tx| tx.node(id).map(|n| (**n).clone()))
    }

    async fn remove_node(&self, id: &str, force: bool) -> Result<()> {
        let node = self.get("node", id, |tx| tx.node(id).cloned())?;
        if node.spec.desired_role == NodeRole::Manager {
            return Err(ManagerError::FailedPrecondition(format!(
                "node {id} is a cluster manager; demote it before removing it"
            )));
        }
        if node.status.state == NodeState::Ready && !force {
            return Err(ManagerError::FailedPrecondition(format!(
                "node {id} is not down and can't be removed; stop its swarmd first, or use --force"
            )));
        }
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            Ok(tx.delete(ObjectKind::Node, id)?)
        })
        .await?;
        Ok(())
    }

    async fn update_cluster(
        &self,
        id: &str,
        version: u64,
        spec: Option<pb::ClusterSpec>,
        rotation: Option<pb::KeyRotation>,
    ) -> Result<Cluster> {
        let spec: ClusterSpec = spec
            .ok_or_else(|| ManagerError::InvalidArgument("spec: is required".into()))?
            .try_into()?;
        spec.validate()?;
        let current = self.get("cluster", id, |tx| {
            tx.clusters().find(|c| c.id == id).map(|c| (**c).clone())
        })?;
        if current.meta.version != version {
            return Err(ManagerError::Conflict(format!(
                "update out of sequence: cluster {id} has version {}, update carried {version}; re-read and retry",
                current.meta.version
            )));
        }
        if spec.annotations.name != current.spec.annotations.name {
            return Err(ManagerError::InvalidArgument(
                "spec.annotations.name: renaming the cluster is not supported".into(),
            ));
        }
        let scheduler_changed = spec.scheduler != current.spec.scheduler;
        let scheduler = spec.scheduler.clone();
        let mut updated = current;
        updated.spec = spec;
        if let Some(rotation) = &rotation {
            rotate_join_tokens(&mut updated, rotation)?;
        }
        let rotate_unlock_key = rotation.as_ref().is_some_and(|r| r.manager_unlock_key);
        apply_autolock(&mut updated, rotate_unlock_key)?;
        updated.meta.updated_at = Timestamp::now();
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            if scheduler_changed {
                let scheduler = &updated.spec.scheduler;
                plugins::check_ref(tx, "spec.scheduler", scheduler, PluginKind::Scheduler)?;
            }
            Ok(tx.update(updated)?)
        })
        .await?;
        if scheduler_changed {
            let scheduler = if scheduler.is_empty() {
                "the embedded default"
            } else {
                &scheduler
            };
            tracing::info!(cluster_id = %id, scheduler, "cluster scheduler changed");
        }
        self.get("cluster", id, |tx| {
            tx.clusters().find(|c| c.id == id).map(|c| (**c).clone())
        })
    }
}

pub(crate) fn matches_prefixes(id: &str, prefixes: &[String]) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| id.starts_with(p.as_str()))
}

pub(crate) fn matches_names(name: &str, names: &[String]) -> bool {
    names.is_empty() || names.iter().any(|n| n == name)
}

fn matches_labels(
    labels: &std::collections::BTreeMap<String, String>,
    want: &std::collections::HashMap<String, String>,
) -> bool {
    want.iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| v.is_empty() || have == v))
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

/// Draws new secrets for the join tokens `rotation` names (same CA digest).
/// Keeps the cluster's unlock key in step with `spec.autolock`: a new key when autolock is
/// turned on (or `rotate`), none when it is off. Every manager wraps its raft key with it when
/// it sees the change (`dek::keep_wrapped`).
fn apply_autolock(cluster: &mut Cluster, rotate: bool) -> Result<()> {
    let key = &mut cluster.root_ca.unlock_key;
    match (cluster.spec.autolock, key.is_empty()) {
        (false, _) if rotate => {
            return Err(ManagerError::FailedPrecondition(
                "rotation.manager_unlock_key: autolock is off, so there is no unlock key; \
                 turn it on first (swarmctl cluster update --autolock true)"
                    .into(),
            ));
        }
        (false, false) => {
            key.clear();
            tracing::info!("autolock turned off");
        }
        (true, true) => {
            *key = dek::new_unlock_key();
            tracing::info!("autolock turned on");
        }
        (true, false) if rotate => {
            *key = dek::new_unlock_key();
            tracing::info!("unlock key rotated");
        }
        _ => {}
    }
    Ok(())
}

fn rotate_join_tokens(cluster: &mut Cluster, rotation: &pb::KeyRotation) -> Result<()> {
    if !rotation.worker_join_token && !rotation.manager_join_token {
        return Ok(());
    }
    let tokens = cluster.root_ca.join_tokens().ok_or_else(|| {
        ManagerError::FailedPrecondition(
            "rotation: this cluster has no CA (and so no join tokens) to rotate".into(),
        )
    })?;
    let digest = tokens.worker.ca_digest();
    let fresh = || swarm_types::JoinToken::new(digest, rand::random::<[u8; 16]>()).to_string();
    if rotation.worker_join_token {
        cluster.root_ca.worker_token = fresh();
        tracing::info!("worker join token rotated");
    }
    if rotation.manager_join_token {
        cluster.root_ca.manager_token = fresh();
        tracing::info!("manager join token rotated");
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    #[instrument(skip_all, fields(node_id = %request.get_ref().node_id))]
    async fn get_node(
        &self,
        request: Request<pb::GetNodeRequest>,
    ) -> RpcResult<pb::GetNodeResponse> {
        let id = &request.get_ref().node_id;
        let node = self.get("node", id, |tx| tx.node(id).map(|n| (**n).clone()))?;
        let node = self.live_manager_status(vec![node]).pop();
        Ok(Response::new(pb::GetNodeResponse {
            node: node.map(Into::into),
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> RpcResult<pb::ListNodesResponse> {
        let filters = request.into_inner().filters.unwrap_or_default();
        let nodes: Vec<Node> = self.store.view(|tx| {
            tx.nodes()
                .filter(|n| matches_prefixes(&n.id, &filters.id_prefixes))
                .filter(|n| matches_names(n.display_name(), &filters.names))
                .filter(|n| matches_labels(&n.spec.annotations.labels, &filters.labels))
                .filter(|n| {
                    filters.roles.is_empty()
                        || filters
                            .roles
                            .contains(&(swarm_proto::pb::NodeRole::from(n.role) as i32))
                })
                .map(|n| (**n).clone())
                .collect()
        });
        let nodes = self.live_manager_status(nodes);
        Ok(Response::new(pb::ListNodesResponse {
            nodes: nodes.into_iter().map(Into::into).collect(),
        }))
    }

    #[instrument(skip_all, fields(node_id = %request.get_ref().node_id), err)]
    async fn update_node(
        &self,
        request: Request<pb::UpdateNodeRequest>,
    ) -> RpcResult<pb::UpdateNodeResponse> {
        let r = request.into_inner();
        let node = self.update_node(&r.node_id, r.node_version, r.spec).await?;
        Ok(Response::new(pb::UpdateNodeResponse {
            node: Some(node.into()),
        }))
    }

    #[instrument(skip_all, fields(node_id = %request.get_ref().node_id), err)]
    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> RpcResult<pb::RemoveNodeResponse> {
        let r = request.into_inner();
        self.remove_node(&r.node_id, r.force).await?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> RpcResult<pb::GetTaskResponse> {
        let id = &request.get_ref().task_id;
        let task = self.get("task", id, |tx| tx.task(id).map(|t| (**t).clone()))?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(task.into()),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> RpcResult<pb::ListTasksResponse> {
        let f = request.into_inner().filters.unwrap_or_default();
        let mut desired = Vec::with_capacity(f.desired_states.len());
        for (i, v) in f.desired_states.iter().enumerate() {
            desired.push(
                pb::TaskState::from_wire(&format!("filters.desired_states[{i}]"), *v)
                    .map_err(ManagerError::from)?,
            );
        }
        let keep = |t: &Task| {
            matches_prefixes(&t.id, &f.id_prefixes)
                && matches_names(&t.annotations.name, &f.names)
                && (f.node_ids.is_empty() || f.node_ids.contains(&t.node_id))
                && (desired.is_empty() || desired.contains(&t.desired_state))
        };
        let tasks: Vec<Task> = self.store.view(|tx| {
            if f.service_ids.is_empty() {
                tx.tasks()
                    .filter(|t| keep(t))
                    .map(|t| (**t).clone())
                    .collect()
            } else {
                // A service named twice still lists its tasks once.
                let services: std::collections::BTreeSet<&String> = f.service_ids.iter().collect();
                services
                    .into_iter()
                    .flat_map(|s| tx.tasks_by_service(s))
                    .filter(|t| keep(t))
                    .map(|t| (**t).clone())
                    .collect()
            }
        });
        Ok(Response::new(pb::ListTasksResponse {
            tasks: tasks.into_iter().map(Into::into).collect(),
        }))
    }

    #[instrument(skip_all, fields(task_id = %request.get_ref().task_id), err)]
    async fn remove_task(
        &self,
        request: Request<pb::RemoveTaskRequest>,
    ) -> RpcResult<pb::RemoveTaskResponse> {
        let id = request.into_inner().task_id;
        self.get("task", &id, |tx| tx.task(&id).cloned())?;
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            Ok(tx.delete(ObjectKind::Task, &id)?)
        })
        .await?;
        Ok(Response::new(pb::RemoveTaskResponse {}))
    }

    #[instrument(skip_all, fields(task_id = %request.get_ref().task_id), err)]
    async fn get_task_logs(
        &self,
        request: Request<pb::GetTaskLogsRequest>,
    ) -> RpcResult<pb::GetTaskLogsResponse> {
        let r = request.into_inner();
        let task = self.get("task", &r.task_id, |tx| tx.task(&r.task_id).cloned())?;
        if task.node_id.is_empty() || task.status.state < TaskState::Assigned {
            return Err(ManagerError::FailedPrecondition(format!(
                "task {} has not been assigned to a node yet, so it has no logs",
                task.id
            ))
            .into());
        }
        let tail = if r.tail_bytes == 0 {
            DEFAULT_LOG_TAIL
        } else {
            r.tail_bytes
        };
        let (stdout, stderr) = self
            .leadership
            .dispatcher()?
            .fetch_logs(&task.node_id, &task.id, tail)
            .await?;
        Ok(Response::new(pb::GetTaskLogsResponse { stdout, stderr }))
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> RpcResult<pb::GetServiceResponse> {
        let id = &request.get_ref().service_id;
        let service = self.get("service", id, |tx| tx.service(id).map(|s| (**s).clone()))?;
        Ok(Response::new(pb::GetServiceResponse {
            service: Some(service.into()),
        }))
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> RpcResult<pb::ListServicesResponse> {
        let f = request.into_inner().filters.unwrap_or_default();
        let services: Vec<Service> = self.store.view(|tx| {
            tx.services()
                .filter(|s| matches_prefixes(&s.id, &f.id_prefixes))
                .filter(|s| matches_names(s.name(), &f.names))
                .filter(|s| {
                    f.name_prefixes.is_empty()
                        || f.name_prefixes
                            .iter()
                            .any(|p| s.name().starts_with(p.as_str()))
                })
                .filter(|s| matches_labels(&s.spec.annotations.labels, &f.labels))
                .map(|s| (**s).clone())
                .collect()
        });
        Ok(Response::new(pb::ListServicesResponse {
            services: services.into_iter().map(Into::into).collect(),
        }))
    }

    #[instrument(skip_all, err)]
    async fn create_service(
        &self,
        request: Request<pb::CreateServiceRequest>,
    ) -> RpcResult<pb::CreateServiceResponse> {
        let service = self.create_service(request.into_inner().spec).await?;
        tracing::info!(service_id = %service.id, name = %service.name(), "service created");
        Ok(Response::new(pb::CreateServiceResponse {
            service: Some(service.into()),
        }))
    }

    #[instrument(skip_all, fields(service_id = %request.get_ref().service_id), err)]
    async fn update_service(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> RpcResult<pb::UpdateServiceResponse> {
        let r = request.into_inner();
        let service = self
            .update_service(&r.service_id, r.service_version, r.spec)
            .await?;
        Ok(Response::new(pb::UpdateServiceResponse {
            service: Some(service.into()),
        }))
    }

    #[instrument(skip_all, fields(service_id = %request.get_ref().service_id), err)]
    async fn remove_service(
        &self,
        request: Request<pb::RemoveServiceRequest>,
    ) -> RpcResult<pb::RemoveServiceResponse> {
        let id = request.into_inner().service_id;
        self.get("service", &id, |tx| tx.service(&id).cloned())?;
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            Ok(tx.delete(ObjectKind::Service, &id)?)
        })
        .await?;
        Ok(Response::new(pb::RemoveServiceResponse {}))
    }

    async fn list_service_statuses(
        &self,
        request: Request<pb::ListServiceStatusesRequest>,
    ) -> RpcResult<pb::ListServiceStatusesResponse> {
        let ids = request.into_inner().service_ids;
        let statuses = self.store.view(|tx| {
            let services: Vec<_> = if ids.is_empty() {
                tx.services().cloned().collect()
            } else {
                ids.iter()
                    .filter_map(|id| tx.service(id).cloned())
                    .collect()
            };
            services
                .iter()
                .map(|s| {
                    let mut running = 0;
                    let mut pending = 0;
                    let mut wanted = 0;
                    for t in tx.tasks_by_service(&s.id) {
                        if t.desired_state == TaskState::Running {
                            wanted += 1;
                            if t.status.state == TaskState::Running {
                                running += 1;
                            } else if t.status.state == TaskState::Pending {
                                pending += 1;
                            }
                        }
                    }
                    let desired = match s.spec.mode {
                        ServiceMode::Replicated { replicas } => replicas,
                        ServiceMode::Global => wanted,
                    };
                    pb::list_service_statuses_response::ServiceStatus {
                        service_id: s.id.clone(),
                        desired_tasks: desired,
                        running_tasks: running,
                        pending_tasks: pending,
                    }
                })
                .collect()
        });
        Ok(Response::new(pb::ListServiceStatusesResponse { statuses }))
    }

    async fn get_cluster(
        &self,
        request: Request<pb::GetClusterRequest>,
    ) -> RpcResult<pb::GetClusterResponse> {
        let id = &request.get_ref().cluster_id;
        let cluster = self.get("cluster", id, |tx| {
            tx.clusters().find(|c| &c.id == id).map(|c| (**c).clone())
        })?;
        Ok(Response::new(pb::GetClusterResponse {
            cluster: Some(cluster.into()),
        }))
    }

    async fn list_clusters(
        &self,
        _request: Request<pb::ListClustersRequest>,
    ) -> RpcResult<pb::ListClustersResponse> {
        let clusters: Vec<Cluster> = self
            .store
            .view(|tx| tx.clusters().map(|c| (**c).clone()).collect());
        Ok(Response::new(pb::ListClustersResponse {
            clusters: clusters.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_unlock_key(
        &self,
        request: Request<pb::GetUnlockKeyRequest>,
    ) -> RpcResult<pb::GetUnlockKeyResponse> {
        let read = || {
            self.store
                .view(|tx| tx.cluster().map(|c| (**c).clone()))
                .ok_or_else(|| ManagerError::NotFound("the cluster object is missing".into()))
        };
        let mut cluster = read()?;
        if request.into_inner().rotate {
            let rotation = pb::KeyRotation {
                manager_unlock_key: true,
                ..Default::default()
            };
            let spec = Some(cluster.spec.clone().into());
            cluster = self
                .update_cluster(&cluster.id, cluster.meta.version, spec, Some(rotation))
                .await?;
        }
        Ok(Response::new(pb::GetUnlockKeyResponse {
            unlock_key: cluster.root_ca.unlock_key,
        }))
    }

    #[instrument(skip_all, fields(cluster_id = %request.get_ref().cluster_id), err)]
    async fn update_cluster(
        &self,
        request: Request<pb::UpdateClusterRequest>,
    ) -> RpcResult<pb::UpdateClusterResponse> {
        let r = request.into_inner();
        let cluster = self
            .update_cluster(&r.cluster_id, r.cluster_version, r.spec, r.rotation)
            .await?;
        Ok(Response::new(pb::UpdateClusterResponse {
            cluster: Some(cluster.into()),
        }))
    }

    #[instrument(skip_all, fields(name = ?request.get_ref().spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| &a.name), size = request.get_ref().component.len()), err)]
    async fn install_plugin(
        &self,
        request: Request<pb::InstallPluginRequest>,
    ) -> RpcResult<pb::InstallPluginResponse> {
        let r = request.into_inner();
        let plugin = self.registry().install(r.spec, r.component).await?;
        Ok(Response::new(pb::InstallPluginResponse {
            plugin: Some(plugin.into()),
        }))
    }

    async fn list_plugins(
        &self,
        request: Request<pb::ListPluginsRequest>,
    ) -> RpcResult<pb::ListPluginsResponse> {
        let r = request.into_inner();
        let plugins = self
            .registry()
            .list(r.filters.unwrap_or_default(), r.include_component)?;
        Ok(Response::new(pb::ListPluginsResponse {
            plugins: plugins.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_plugin(
        &self,
        request: Request<pb::GetPluginRequest>,
    ) -> RpcResult<pb::GetPluginResponse> {
        let r = request.into_inner();
        let plugin = self
            .registry()
            .get(Some(&r.plugin_id), Some(&r.name), r.include_component)?;
        Ok(Response::new(pb::GetPluginResponse {
            plugin: Some(plugin.into()),
        }))
    }

    #[instrument(skip_all, fields(plugin_id = %request.get_ref().plugin_id), err)]
    async fn remove_plugin(
        &self,
        request: Request<pb::RemovePluginRequest>,
    ) -> RpcResult<pb::RemovePluginResponse> {
        self.registry()
            .remove(&request.into_inner().plugin_id)
            .await?;
        Ok(Response::new(pb::RemovePluginResponse {}))
    }

    #[instrument(skip_all, err)]
    async fn create_secret(
        &self,
        request: Request<pb::CreateSecretRequest>,
    ) -> RpcResult<pb::CreateSecretResponse> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| ManagerError::InvalidArgument("spec: is required".into()))?;
        let created: Secret = self.data().create(spec.into()).await?;
        Ok(Response::new(pb::CreateSecretResponse {
            secret: Some(secrets::shown_secret(created)),
        }))
    }

    async fn get_secret(
        &self,
        request: Request<pb::GetSecretRequest>,
    ) -> RpcResult<pb::GetSecretResponse> {
        let found: Secret = self.data().get(&request.get_ref().secret_id)?;
        Ok(Response::new(pb::GetSecretResponse {
            secret: Some(secrets::shown_secret(found)),
        }))
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> RpcResult<pb::ListSecretsResponse> {
        let f = request.into_inner().filters.unwrap_or_default();
        let found = self.data().list::<Secret>(&f.names, &f.id_prefixes);
        Ok(Response::new(pb::ListSecretsResponse {
            secrets: found.into_iter().map(secrets::shown_secret).collect(),
        }))
    }

    #[instrument(skip_all, fields(secret_id = %request.get_ref().secret_id), err)]
    async fn remove_secret(
        &self,
        request: Request<pb::RemoveSecretRequest>,
    ) -> RpcResult<pb::RemoveSecretResponse> {
        let id = request.into_inner().secret_id;
        self.data().remove::<Secret>(&id).await?;
        Ok(Response::new(pb::RemoveSecretResponse {}))
    }

    #[instrument(skip_all, err)]
    async fn create_config(
        &self,
        request: Request<pb::CreateConfigRequest>,
    ) -> RpcResult<pb::CreateConfigResponse> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| ManagerError::InvalidArgument("spec: is required".into()))?;
        let created: Config = self.data().create(spec.into()).await?;
        Ok(Response::new(pb::CreateConfigResponse {
            config: Some(secrets::shown_config(created, false)),
        }))
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> RpcResult<pb::GetConfigResponse> {
        let found: Config = self.data().get(&request.get_ref().config_id)?;
        Ok(Response::new(pb::GetConfigResponse {
            config: Some(secrets::shown_config(found, true)),
        }))
    }

    async fn list_configs(
        &self,
        request: Request<pb::ListConfigsRequest>,
    ) -> RpcResult<pb::ListConfigsResponse> {
        let f = request.into_inner().filters.unwrap_or_default();
        let found = self.data().list::<Config>(&f.names, &f.id_prefixes);
        Ok(Response::new(pb::ListConfigsResponse {
            configs: found
                .into_iter()
                .map(|c| secrets::shown_config(c, false))
                .collect(),
        }))
    }

    #[instrument(skip_all, fields(config_id = %request.get_ref().config_id), err)]
    async fn remove_config(
        &self,
        request: Request<pb::RemoveConfigRequest>,
    ) -> RpcResult<pb::RemoveConfigResponse> {
        let id = request.into_inner().config_id;
        self.data().remove::<Config>(&id).await?;
        Ok(Response::new(pb::RemoveConfigResponse {}))
    }
}
