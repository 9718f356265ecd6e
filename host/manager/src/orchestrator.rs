//! Orchestration: turns services into tasks. Replicated services keep `replicas` slots filled,
//! global services keep one task on every eligible node; both replace tasks whose node failed or
//! was drained, roll out spec changes, and restart tasks by the restart policy. The task reaper
//! (same pass) deletes removed tasks and trims each slot's history to the cluster's limit.
//!
//! A slot is occupied while one of its tasks has a desired state of RUNNING or less (as in
//! SwarmKit): a dead task that the restart policy does not restart keeps its slot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use swarm_store::{Change, MemoryStore, ObjectKind, StoreRead, WriteTx};
use swarm_types::{
    Annotations, Availability, Meta, Node, NodeState, RestartCondition, RestartPolicy, Service,
    ServiceMode, Task, TaskState, TaskStatus, Timestamp, new_id, node_satisfies,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::commit::{Committer, commit_with};
use crate::error::{ManagerError, Result};
use crate::watch::{self, Update};

/// Most tasks one reconcile pass creates; the rest follow in the next pass (keeps raft entries small).
const MAX_CREATES_PER_PASS: usize = 2_000;

/// Which slot a task belongs to: a replica number, or a node for global services.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SlotKey {
    Replica(u64),
    Node(String),
}

fn slot_key(task: &Task) -> SlotKey {
    if task.slot > 0 {
        SlotKey::Replica(task.slot)
    } else {
        SlotKey::Node(task.node_id.clone())
    }
}

fn occupies(task: &Task) -> bool {
    task.desired_state <= TaskState::Running
}

fn node_failed(nodes: &HashMap<String, Arc<Node>>, task: &Task) -> bool {
    !task.node_id.is_empty() && node_unusable(nodes.get(&task.node_id).map(|n| &**n))
}

/// A node that is gone, DOWN or drained: its tasks must be replaced.
fn node_unusable(node: Option<&Node>) -> bool {
    match node {
        None => true,
        Some(n) => n.status.state == NodeState::Down || n.spec.availability == Availability::Drain,
    }
}

/// The orchestrator and reaper. Runs on the leader.
pub struct Orchestrator {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    /// Restart times per (service, slot), for `max_attempts` within `window`.
    restarts: HashMap<(String, SlotKey), Vec<Timestamp>>,
}

/// What one reconcile pass decided for a service.
#[derive(Default)]
struct Plan {
    /// Existing tasks with a new desired state.
    desired: Vec<(Arc<Task>, TaskState)>,
    /// New tasks.
    create: Vec<Task>,
    /// Tasks to delete (reaper).
    delete: Vec<String>,
    /// Restarts to record once committed.
    restarted: Vec<SlotKey>,
    /// Work left for another pass.
    more: bool,
    /// Earliest time a delayed restart must be promoted to RUNNING.
    wake_at: Option<Timestamp>,
    /// The service's restart policy (`None`: the service is gone).
    restart_policy: Option<RestartPolicy>,
}

impl Orchestrator {
    pub fn new(store: Arc<MemoryStore>, committer: Arc<dyn Committer>) -> Self {
        Self {
            store,
            committer,
            restarts: HashMap::new(),
        }
    }

    /// Reconcile every service whenever something relevant changes. Runs until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut watcher = self.store.watch();
        let mut dirty: HashSet<String> = self.all_service_ids();
        let mut wake_at: Option<Timestamp> = None;
        loop {
            if !dirty.is_empty() {
                let ids: Vec<String> = dirty.drain().collect();
                for id in ids {
                    match self.reconcile(&id).await {
                        Ok((more, wake)) => {
                            if more {
                                dirty.insert(id.clone());
                            }
                            wake_at = earliest(wake_at, wake);
                        }
                        Err(ManagerError::Conflict(_)) => {
                            dirty.insert(id.clone());
                        }
                        Err(e) => warn!(service_id = %id, error = %e, "reconcile failed"),
                    }
                }
            }
            if !dirty.is_empty() {
                // More work queued (large service or a lost race): yield, then go on.
                tokio::task::yield_now().await;
                if cancel.is_cancelled() {
                    return;
                }
                for u in watch::drain(&mut watcher) {
                    self.mark(u, &mut dirty);
                }
                continue;
            }
            let sleep = match wake_at {
                Some(t) => t
                    .unix_nanos
                    .saturating_sub(Timestamp::now().unix_nanos)
                    .max(0),
                None => i64::MAX,
            };
            let sleep = Duration::from_nanos(u64::try_from(sleep).unwrap_or(u64::MAX))
                .min(Duration::from_secs(3600));
            tokio::select! {
                _ = cancel.cancelled() => return,
                u = watch::next(&mut watcher) => {
                    if matches!(u, Update::Closed) {
                        return;
                    }
                    self.mark(u, &mut dirty);
                    for u in watch::drain(&mut watcher) {
                        self.mark(u, &mut dirty);
                    }
                }
                _ = tokio::time::sleep(sleep) => {
                    wake_at = None;
                    dirty.extend(self.all_service_ids());
                }
            }
        }
    }

    fn all_service_ids(&self) -> HashSet<String> {
        self.store.view(|tx| {
            let mut ids: HashSet<String> = tx.services().map(|s| s.id.clone()).collect();
            // Tasks of deleted services still need their removal driven.
            ids.extend(tx.tasks().map(|t| t.service_id.clone()));
            ids
        })
    }

    fn mark(&self, update: Update, dirty: &mut HashSet<String>) {
        let changeset = match update {
            Update::Changes(c) => c,
            Update::Resync => {
                dirty.extend(self.all_service_ids());
                return;
            }
            Update::Closed => return,
        };
        let mut node_changed = Vec::new();
        // (service, node) of tasks just placed on a node.
        let mut placed: Vec<(&str, &str)> = Vec::new();
        for change in changeset.services() {
            dirty.insert(change.latest().id.clone());
        }
        for change in changeset.tasks() {
            match change {
                Change::Created(_) => {}
                Change::Updated { old, new } => {
                    if old.status.state != new.status.state && new.status.state.is_terminal()
                        || old.desired_state != new.desired_state
                    {
                        dirty.insert(new.service_id.clone());
                    } else if old.node_id != new.node_id && !new.node_id.is_empty() {
                        placed.push((&new.service_id, &new.node_id));
                    }
                }
                Change::Deleted(old) => {
                    dirty.insert(old.service_id.clone());
                }
            }
        }
        for change in changeset.nodes() {
            let relevant = match change {
                Change::Updated { old, new } => {
                    old.status.state != new.status.state
                        || old.spec != new.spec
                        || old.description != new.description
                }
                _ => true,
            };
            if relevant {
                node_changed.push(change.latest().id.clone());
            }
        }
        if changeset.clusters().next().is_some() {
            dirty.extend(self.all_service_ids());
        }
        if !node_changed.is_empty() || !placed.is_empty() {
            self.store.view(|tx| {
                if !node_changed.is_empty() {
                    for s in tx.services() {
                        if s.spec.mode == ServiceMode::Global {
                            dirty.insert(s.id.clone());
                        }
                    }
                }
                for node_id in &node_changed {
                    for t in tx.tasks_by_node(node_id) {
                        dirty.insert(t.service_id.clone());
                    }
                }
                // A placement on a node that failed before the placement was committed (the
                // scheduler worked from an older view): the node's own change came first and
                // did not see this task, so look now.
                for (service_id, node_id) in placed {
                    if node_unusable(tx.node(node_id).map(|n| &**n)) {
                        dirty.insert(service_id.to_string());
                    }
                }
            });
        }
    }

    /// One pass for one service: plan, commit, remember restarts. Returns (more work, wake time).
    async fn reconcile(&mut self, service_id: &str) -> Result<(bool, Option<Timestamp>)> {
        let now = Timestamp::now();
        let plan = self.store.view(|tx| self.plan(tx, service_id, now));
        if plan.restart_policy.is_none() {
            // The service is gone: so is its restart history.
            self.restarts.retain(|(id, _), _| id != service_id);
        }
        if plan.desired.is_empty() && plan.create.is_empty() && plan.delete.is_empty() {
            return Ok((plan.more, plan.wake_at));
        }
        let Plan {
            desired,
            create,
            delete,
            restarted,
            more,
            wake_at,
            restart_policy,
        } = plan;
        let (created, deleted) = (create.len(), delete.len());
        commit_with(
            &self.store,
            self.committer.as_ref(),
            |tx: &mut WriteTx<'_>| {
                for (task, state) in &desired {
                    let mut t = (**task).clone();
                    t.desired_state = *state;
                    t.meta.updated_at = now;
                    tx.update(t)?;
                }
                for task in create {
                    tx.create(task)?;
                }
                for id in &delete {
                    tx.delete(ObjectKind::Task, id)?;
                }
                Ok(())
            },
        )
        .await?;
        debug!(%service_id, changed = desired.len(), created, deleted, "reconciled");
        if let Some(policy) = restart_policy {
            for key in restarted {
                self.record_restart(service_id, key, &policy, now);
            }
        }
        Ok((more, wake_at))
    }

    fn plan(&self, tx: &swarm_store::ReadTx<'_>, service_id: &str, now: Timestamp) -> Plan {
        let mut plan = Plan::default();
        let tasks: Vec<Arc<Task>> = tx.tasks_by_service(service_id).cloned().collect();
        let nodes: HashMap<String, Arc<Node>> =
            tx.nodes().map(|n| (n.id.clone(), n.clone())).collect();
        let history_limit = tx
            .cluster()
            .map(|c| c.spec.orchestration.task_history_retention_limit)
            .unwrap_or(5);
        let Some(service) = tx.service(service_id).cloned() else {
            // Deleted service: remove every task; the reaper deletes them once they stopped.
            for t in &tasks {
                if t.desired_state < TaskState::Remove {
                    plan.desired.push((t.clone(), TaskState::Remove));
                }
            }
            self.reap(&tasks, &nodes, history_limit, &mut plan);
            return plan;
        };

        plan.restart_policy = Some(service.spec.task.restart.clone());
        let mut slots: BTreeMap<SlotKey, Vec<Arc<Task>>> = BTreeMap::new();
        for t in &tasks {
            slots.entry(slot_key(t)).or_default().push(t.clone());
        }
        // Wanted slots: replicas 1..=n, or eligible nodes.
        let wanted: Vec<SlotKey> = match service.spec.mode {
            ServiceMode::Replicated { replicas } => (1..=replicas).map(SlotKey::Replica).collect(),
            ServiceMode::Global => nodes
                .values()
                .filter(|n| {
                    n.status.state == NodeState::Ready
                        && n.spec.availability != Availability::Drain
                        && node_satisfies(n, &service.spec.task.placement.constraints)
                        && platform_ok(n, &service)
                })
                .map(|n| SlotKey::Node(n.id.clone()))
                .collect(),
        };
        let wanted_set: HashSet<&SlotKey> = wanted.iter().collect();

        // Slots no longer wanted: scale down (replicated) or node left (global).
        for (key, slot_tasks) in &slots {
            if wanted_set.contains(key) {
                continue;
            }
            match key {
                // The slot is gone, with its history: the reaper deletes each task once it stopped.
                SlotKey::Replica(_) => {
                    for t in slot_tasks
                        .iter()
                        .filter(|t| t.desired_state < TaskState::Remove)
                    {
                        plan.desired.push((t.clone(), TaskState::Remove));
                    }
                }
                // The node may come back: keep the history, stop the task.
                SlotKey::Node(_) => {
                    for t in slot_tasks.iter().filter(|t| occupies(t)) {
                        plan.desired.push((t.clone(), TaskState::Shutdown));
                    }
                }
            }
        }

        for key in &wanted {
            if plan.create.len() >= MAX_CREATES_PER_PASS {
                plan.more = true;
                break;
            }
            let slot_tasks = slots.get(key).map(Vec::as_slice).unwrap_or_default();
            let mut current: Vec<&Arc<Task>> = slot_tasks.iter().filter(|t| occupies(t)).collect();
            current.sort_by_key(|t| t.meta.created_at);
            // More than one occupant (should not happen): keep the newest.
            while current.len() > 1 {
                let extra = current.remove(0);
                plan.desired.push((extra.clone(), TaskState::Shutdown));
            }
            let Some(task) = current.pop() else {
                // A paused node keeps the global task it has but gets no new one (as SwarmKit).
                let paused = match key {
                    SlotKey::Node(id) => nodes
                        .get(id)
                        .is_some_and(|n| n.spec.availability == Availability::Pause),
                    SlotKey::Replica(_) => false,
                };
                if !paused {
                    plan.create
                        .push(new_task(&service, key, now, TaskState::Running));
                }
                continue;
            };
            // The node failed or was drained: replace at once.
            if task.desired_state <= TaskState::Running
                && !task.status.state.is_terminal()
                && node_failed(&nodes, task)
            {
                plan.desired.push((task.clone(), TaskState::Shutdown));
                if matches!(key, SlotKey::Replica(_)) {
                    plan.create
                        .push(new_task(&service, key, now, TaskState::Running));
                }
                continue;
            }
            // A new spec: roll the slot over (stop first).
            if task.spec_version != service.spec_version && task.spec != service.spec.task {
                plan.desired.push((task.clone(), TaskState::Shutdown));
                plan.create
                    .push(new_task(&service, key, now, TaskState::Running));
                continue;
            }
            // A delayed restart whose delay passed.
            if task.desired_state == TaskState::Ready {
                let due = task.meta.created_at.plus(service.spec.task.restart.delay);
                if due <= now {
                    plan.desired.push((task.clone(), TaskState::Running));
                } else {
                    plan.wake_at = earliest(plan.wake_at, Some(due));
                }
                continue;
            }
            // A dead task: restart by policy.
            if task.status.state.is_terminal()
                && task.desired_state == TaskState::Running
                && self.should_restart(&service, key, task, now)
            {
                plan.desired.push((task.clone(), TaskState::Shutdown));
                let delay = service.spec.task.restart.delay;
                let desired = if delay.is_zero() {
                    TaskState::Running
                } else {
                    TaskState::Ready
                };
                plan.create.push(new_task(&service, key, now, desired));
                plan.restarted.push(key.clone());
                if !delay.is_zero() {
                    plan.wake_at = earliest(plan.wake_at, Some(now.plus(delay)));
                }
                info!(service = %service.name(), task_id = %task.id, state = %task.status.state, "restarting task");
            }
        }
        self.reap(&tasks, &nodes, history_limit, &mut plan);
        plan
    }

    /// Remember a restart for `max_attempts`, keeping only what that check counts: restarts
    /// within the window, at most `max_attempts` of them (none when restarts are unlimited).
    fn record_restart(
        &mut self,
        service_id: &str,
        key: SlotKey,
        policy: &RestartPolicy,
        now: Timestamp,
    ) {
        let Ok(keep) = usize::try_from(policy.max_attempts) else {
            return;
        };
        if keep == 0 {
            return;
        }
        let history = self
            .restarts
            .entry((service_id.to_string(), key))
            .or_default();
        history.push(now);
        history.retain(|t| policy.window.is_zero() || t.elapsed_at(now) <= policy.window);
        let excess = history.len().saturating_sub(keep);
        history.drain(..excess);
    }

    fn should_restart(
        &self,
        service: &Service,
        key: &SlotKey,
        task: &Task,
        now: Timestamp,
    ) -> bool {
        let policy = &service.spec.task.restart;
        let failed = task.status.state != TaskState::Complete;
        match policy.condition {
            RestartCondition::None => return false,
            RestartCondition::OnFailure if !failed => return false,
            _ => {}
        }
        if policy.max_attempts == 0 {
            return true;
        }
        let history = self.restarts.get(&(service.id.clone(), key.clone()));
        let recent = history
            .map(|h| {
                h.iter()
                    .filter(|t| policy.window.is_zero() || t.elapsed_at(now) <= policy.window)
                    .count()
            })
            .unwrap_or(0);
        recent < usize::try_from(policy.max_attempts).unwrap_or(usize::MAX)
    }

    /// The task reaper: delete removed tasks that stopped, and old history beyond the limit.
    fn reap(
        &self,
        tasks: &[Arc<Task>],
        nodes: &HashMap<String, Arc<Node>>,
        limit: u64,
        plan: &mut Plan,
    ) {
        let changing: HashMap<&str, TaskState> = plan
            .desired
            .iter()
            .map(|(t, s)| (t.id.as_str(), *s))
            .collect();
        let stopped = |t: &Task| {
            t.status.state.is_terminal()
                || t.status.state < TaskState::Assigned
                || node_failed(nodes, t)
        };
        let mut history: BTreeMap<SlotKey, Vec<&Arc<Task>>> = BTreeMap::new();
        for t in tasks {
            let desired = changing
                .get(t.id.as_str())
                .copied()
                .unwrap_or(t.desired_state);
            if desired == TaskState::Remove {
                if stopped(t) {
                    plan.delete.push(t.id.clone());
                }
            } else if desired > TaskState::Running {
                history.entry(slot_key(t)).or_default().push(t);
            }
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        for (_, mut old) in history {
            if old.len() <= limit {
                continue;
            }
            old.sort_by_key(|t| std::cmp::Reverse(t.meta.created_at));
            for t in old.into_iter().skip(limit) {
                if stopped(t) {
                    plan.delete.push(t.id.clone());
                }
            }
        }
    }
}

fn platform_ok(node: &Node, service: &Service) -> bool {
    let platforms = &service.spec.task.placement.platforms;
    if platforms.is_empty() {
        return true;
    }
    let Some(d) = &node.description else {
        return false;
    };
    platforms.iter().any(|p| {
        (p.os.is_empty() || p.os.eq_ignore_ascii_case(&d.platform.os))
            && (p.arch.is_empty() || p.arch.eq_ignore_ascii_case(&d.platform.arch))
    })
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A new PENDING task for replica `slot` of a replicated service, desired RUNNING, exactly as
/// the orchestrator creates one (benchmarks build their workloads with it).
pub fn replica_task(service: &Service, slot: u64, now: Timestamp) -> Task {
    new_task(service, &SlotKey::Replica(slot), now, TaskState::Running)
}

fn new_task(service: &Service, key: &SlotKey, now: Timestamp, desired_state: TaskState) -> Task {
    let (slot, node_id, suffix) = match key {
        SlotKey::Replica(n) => (*n, String::new(), n.to_string()),
        SlotKey::Node(node) => (0, node.clone(), node.clone()),
    };
    Task {
        id: new_id(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        annotations: Annotations {
            name: format!("{}.{}", service.name(), suffix),
            labels: Default::default(),
        },
        service_id: service.id.clone(),
        slot,
        node_id,
        spec: service.spec.task.clone(),
        spec_version: service.spec_version,
        executor: service.spec.executor.clone(),
        desired_state,
        status: TaskStatus {
            state: TaskState::Pending,
            timestamp: now,
            message: "pending task scheduling".to_string(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::DirectCommitter;

    fn orchestrator() -> Orchestrator {
        let store = Arc::new(MemoryStore::new());
        Orchestrator::new(store.clone(), Arc::new(DirectCommitter::new(store)))
    }

    fn history_len(o: &Orchestrator, service_id: &str, key: &SlotKey) -> usize {
        o.restarts
            .get(&(service_id.to_string(), key.clone()))
            .map_or(0, Vec::len)
    }

    #[test]
    fn restart_history_keeps_only_what_max_attempts_counts() {
        let mut o = orchestrator();
        let key = SlotKey::Replica(1);
        let start = Timestamp::from_unix_nanos(1_700_000_000_000_000_000);
        let at = |secs: u64| start.plus(Duration::from_secs(secs));

        // Unlimited restarts count nothing, so nothing is kept for a crash loop.
        let unlimited = RestartPolicy {
            max_attempts: 0,
            ..Default::default()
        };
        for i in 0..1000 {
            o.record_restart("svc", key.clone(), &unlimited, at(i));
        }
        assert!(o.restarts.is_empty());

        // At most `max_attempts` entries, and only those within the window.
        let limited = RestartPolicy {
            max_attempts: 3,
            window: Duration::from_secs(60),
            ..Default::default()
        };
        for i in 0..1000 {
            o.record_restart("svc", key.clone(), &limited, at(i));
        }
        assert_eq!(history_len(&o, "svc", &key), 3);
        o.record_restart("svc", key.clone(), &limited, at(5000));
        assert_eq!(history_len(&o, "svc", &key), 1);
    }

    #[tokio::test]
    async fn a_deleted_service_forgets_its_restarts() {
        let mut o = orchestrator();
        let key = SlotKey::Replica(1);
        o.restarts
            .insert(("gone".to_string(), key.clone()), vec![Timestamp::now()]);
        o.restarts
            .insert(("kept".to_string(), key.clone()), vec![Timestamp::now()]);
        o.reconcile("gone").await.expect("reconcile");
        assert_eq!(history_len(&o, "gone", &key), 0);
        assert_eq!(history_len(&o, "kept", &key), 1);
    }
}
