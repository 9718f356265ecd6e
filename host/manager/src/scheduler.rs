//! The scheduler driver: keeps the scheduler plugin's resident node set current, batches pending
//! tasks into groups (same service, spec version and pinned node), asks the plugin to place
//! them in one call, and commits the placements in one proposal per batch. Tasks that cannot be
//! placed stay PENDING with the plugin's reason, and are tried again whenever a node or the
//! resources on one change.
//!
//! The cluster's `spec.scheduler` names an installed scheduler plugin (empty: the embedded
//! default given at start). When it changes, the driver loads that plugin's component from the
//! store and places with it from the next pass, after sending it the whole node set; if the
//! plugin cannot be loaded or fails to take the node set, the current scheduler stays and the
//! failure is logged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use swarm_plugin_host as ph;
use swarm_store::{Action, Batch, Change, MemoryStore, Object, StoreRead};
use swarm_types::{
    Availability, Node, NodeRole, NodeState, PluginKind, Task, TaskState, Timestamp,
};
use tokio::sync::watch as report;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::commit::Committer;
use crate::error::{ManagerError, Result};
use crate::watch::{self, Update};

/// After a failed pass (a plugin error, a lost write race) the driver waits this long, doubling
/// up to the maximum while failures go on, so a broken plugin does not spin the leader.
const FAILURE_BACKOFF_MIN: Duration = Duration::from_millis(200);
const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Failures of a service on a node within this window push the node to the back.
const RECENT_FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// What places tasks: the scheduler plugin, or the same code built natively (benchmarks).
pub trait Placer: Send {
    fn update_nodes(
        &mut self,
        upserts: Vec<ph::NodeInfo>,
        removals: Vec<String>,
    ) -> BoxFuture<'_, Result<()>>;
    fn schedule(
        &mut self,
        groups: Vec<ph::TaskGroup>,
    ) -> BoxFuture<'_, Result<Vec<ph::GroupResult>>>;
    /// The plugin's failure budget, for placers that are plugins.
    fn health(&self) -> Option<ph::PluginHealth> {
        None
    }
}

fn plugin_error(e: ph::PluginError) -> ManagerError {
    ManagerError::Unavailable(format!("scheduler plugin: {e}"))
}

impl Placer for ph::SchedulerPlugin {
    fn update_nodes(
        &mut self,
        upserts: Vec<ph::NodeInfo>,
        removals: Vec<String>,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            ph::SchedulerPlugin::update_nodes(self, upserts, removals)
                .await
                .map_err(plugin_error)
        })
    }

    fn schedule(
        &mut self,
        groups: Vec<ph::TaskGroup>,
    ) -> BoxFuture<'_, Result<Vec<ph::GroupResult>>> {
        Box::pin(async move {
            ph::SchedulerPlugin::schedule(self, groups)
                .await
                .map_err(plugin_error)
        })
    }

    fn health(&self) -> Option<ph::PluginHealth> {
        Some(ph::SchedulerPlugin::health(self))
    }
}

/// Whether a task wants a node: waiting for placement and meant to run.
fn is_pending(task: &Task) -> bool {
    task.status.state == TaskState::Pending && task.desired_state <= TaskState::Running
}

/// Whether a task holds resources on its node.
fn holds_node(task: &Task) -> bool {
    !task.node_id.is_empty() && task.status.state >= TaskState::Assigned && task.is_active()
}

/// The scheduler plugin's view of one node, from the store.
pub fn node_info(tx: &impl StoreRead, node: &Node, now: Timestamp) -> ph::NodeInfo {
    let desc = node.description.clone().unwrap_or_default();
    let mut per_service: BTreeMap<String, u32> = BTreeMap::new();
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    let (mut cpu, mut mem, mut total) = (0i64, 0i64, 0u32);
    for t in tx.tasks_by_node(&node.id) {
        if holds_node(t) {
            *per_service.entry(t.service_id.clone()).or_default() += 1;
            total += 1;
            cpu += t.spec.resources.reservations.nano_cpus;
            mem += t.spec.resources.reservations.memory_bytes;
        } else if t.status.state == TaskState::Failed
            && t.status.timestamp.elapsed_at(now) <= RECENT_FAILURE_WINDOW
        {
            *failures.entry(t.service_id.clone()).or_default() += 1;
        }
    }
    ph::NodeInfo {
        id: node.id.clone(),
        hostname: desc.hostname.clone(),
        role: match node.role {
            NodeRole::Manager => ph::NodeRole::Manager,
            NodeRole::Worker => ph::NodeRole::Worker,
        },
        os: desc.platform.os.clone(),
        arch: desc.platform.arch.clone(),
        labels: node
            .spec
            .annotations
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        engine_labels: desc
            .engine
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        addr: node.status.addr.clone(),
        status: match node.status.state {
            NodeState::Unknown => ph::NodeStatus::Unknown,
            NodeState::Down => ph::NodeStatus::Down,
            NodeState::Ready => ph::NodeStatus::Ready,
            NodeState::Disconnected => ph::NodeStatus::Disconnected,
        },
        availability: match node.spec.availability {
            Availability::Active => ph::NodeAvailability::Active,
            Availability::Pause => ph::NodeAvailability::Pause,
            Availability::Drain => ph::NodeAvailability::Drain,
        },
        total_resources: ph::Resources {
            nano_cpus: desc.resources.nano_cpus,
            memory_bytes: desc.resources.memory_bytes,
        },
        available_resources: ph::Resources {
            nano_cpus: desc.resources.nano_cpus - cpu,
            memory_bytes: desc.resources.memory_bytes - mem,
        },
        runtimes: desc.runtimes.clone(),
        plugins: desc.engine.plugins.clone(),
        tasks_total: total,
        service_tasks: per_service.into_iter().collect(),
        recent_failures: failures.into_iter().collect(),
    }
}

/// The placement request for one group of identical tasks; `runtime` replaces the task's runtime
/// filter when the task runs on an installed executor (empty: any node).
fn placement(task: &Task, runtime: Option<&String>) -> ph::Placement {
    let spec = &task.spec;
    let mut constraints = spec.placement.constraints.clone();
    if !task.node_id.is_empty() {
        // A global service's task is pinned to its node; it still has to pass every filter there.
        constraints.push(format!("node.id=={}", task.node_id));
    }
    ph::Placement {
        runtime: runtime.map_or_else(|| spec.runtime.kind().to_string(), Clone::clone),
        reservations: ph::Resources {
            nano_cpus: spec.resources.reservations.nano_cpus,
            memory_bytes: spec.resources.reservations.memory_bytes,
        },
        constraints,
        platforms: spec
            .placement
            .platforms
            .iter()
            .map(|p| ph::Platform {
                os: p.os.clone(),
                arch: p.arch.clone(),
            })
            .collect(),
        max_replicas: spec.placement.max_replicas,
        required_plugins: Vec::new(),
    }
}

/// The node's `spec.executor` for a task that names none, when it runs the task's runtime;
/// else empty (the agent chooses by runtime).
fn node_executor(tx: &impl StoreRead, node_id: &str, task: &Task) -> String {
    let Some(node) = tx.node(node_id) else {
        return String::new();
    };
    let name = &node.spec.executor;
    let runtime = task.spec.runtime.kind();
    let runs = crate::plugins::executor_runtimes(tx, name)
        .is_some_and(|runtimes| runtimes.iter().any(|r| r == runtime));
    if runs { name.clone() } else { String::new() }
}

/// Statistics of one scheduling pass, for logs and benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassStats {
    pub assigned: usize,
    pub unplaced: usize,
}

/// What the driver needs to switch to the scheduler plugins the cluster names.
struct Switcher {
    host: ph::PluginHost,
    /// The embedded default scheduler while an installed one places, with the nodes it knows.
    parked: Option<(Box<dyn Placer>, HashSet<String>)>,
    /// The plugin the cluster names (empty: the embedded default).
    wanted: String,
    /// The plugin placing now, as the cluster named it (empty: the embedded default).
    active: String,
    /// A plugin name that failed to load; not tried again until it or the cluster changes.
    failed: Option<String>,
    /// Tells watchers which scheduler places (the plugin's name; empty: the embedded default).
    report: report::Sender<String>,
}

/// The driver. Runs on the leader.
pub struct SchedulerDriver {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    placer: Box<dyn Placer>,
    known_nodes: HashSet<String>,
    dirty_nodes: HashSet<String>,
    pending: BTreeSet<String>,
    /// Something changed since the last pass that may let an unplaced task fit.
    retry: bool,
    switcher: Option<Switcher>,
}

impl SchedulerDriver {
    pub fn new(
        store: Arc<MemoryStore>,
        committer: Arc<dyn Committer>,
        placer: Box<dyn Placer>,
    ) -> Self {
        Self {
            store,
            committer,
            placer,
            known_nodes: HashSet::new(),
            dirty_nodes: HashSet::new(),
            pending: BTreeSet::new(),
            retry: true,
            switcher: None,
        }
    }

    /// Follow the cluster's `spec.scheduler`: load installed scheduler plugins through `host`.
    /// Without this the driver always places with the placer it was built with.
    pub fn with_plugin_host(mut self, host: ph::PluginHost) -> Self {
        let (report, _) = report::channel(String::new());
        self.switcher = Some(Switcher {
            host,
            parked: None,
            wanted: String::new(),
            active: String::new(),
            failed: None,
            report,
        });
        self
    }

    /// Which scheduler places: the installed plugin's name, or empty for the embedded default.
    /// Follows every switch (always empty without [`with_plugin_host`](Self::with_plugin_host)).
    pub fn active_scheduler(&self) -> report::Receiver<String> {
        match &self.switcher {
            Some(s) => s.report.subscribe(),
            None => report::channel(String::new()).1,
        }
    }

    /// Place tasks as they become pending. Runs until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut watcher = self.store.watch();
        self.resync();
        let mut backoff = FAILURE_BACKOFF_MIN;
        loop {
            if let Err(e) = self.tick().await {
                warn!(error = %e, retry_in = ?backoff, "scheduling pass failed");
                if let Some(health) = self.placer.health().filter(|h| h.quarantined) {
                    self.quarantine_active(health).await;
                }
                // Re-read everything: the plugin's view may be off after a failed commit.
                self.resync();
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(FAILURE_BACKOFF_MAX);
                continue;
            }
            backoff = FAILURE_BACKOFF_MIN;
            tokio::select! {
                _ = cancel.cancelled() => return,
                u = watch::next(&mut watcher) => {
                    if matches!(u, Update::Closed) { return; }
                    self.observe(u);
                    for u in watch::drain(&mut watcher) {
                        self.observe(u);
                    }
                }
            }
        }
    }

    /// Forget the derived state and re-read the store.
    pub fn resync(&mut self) {
        self.store.view(|tx| {
            self.dirty_nodes.extend(tx.nodes().map(|n| n.id.clone()));
            self.dirty_nodes.extend(self.known_nodes.iter().cloned());
            self.pending = tx
                .tasks()
                .filter(|t| is_pending(t))
                .map(|t| t.id.clone())
                .collect();
            if let Some(switcher) = self.switcher.as_mut() {
                let wanted = tx.cluster().map(|c| c.spec.scheduler.clone());
                switcher.want(wanted.unwrap_or_default());
            }
        });
        self.retry = true;
    }

    fn observe(&mut self, update: Update) {
        let changes = match update {
            Update::Changes(c) => c,
            Update::Resync => return self.resync(),
            Update::Closed => return,
        };
        for change in changes.nodes() {
            self.dirty_nodes.insert(change.latest().id.clone());
        }
        if changes.plugins().next().is_some() {
            // An executor's quarantine lifted (or a plugin installed) may let held tasks go.
            self.retry = true;
        }
        if let Some(switcher) = self.switcher.as_mut() {
            for change in changes.clusters() {
                if let Some(cluster) = change.after() {
                    switcher.want(cluster.spec.scheduler.clone());
                }
            }
            for change in changes.plugins() {
                // A plugin that failed to load may load now that it changed.
                if switcher
                    .failed
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(change.latest().name()))
                {
                    switcher.failed = None;
                }
            }
        }
        for change in changes.tasks() {
            let (old, new) = (change.before(), change.after());
            if let Some(new) = new {
                if is_pending(new) {
                    if self.pending.insert(new.id.clone()) {
                        self.retry = true;
                    }
                } else {
                    self.pending.remove(&new.id);
                }
            } else if let Some(old) = old {
                self.pending.remove(&old.id);
            }
            let held_before = old.is_some_and(|t| holds_node(t));
            let held_after = new.is_some_and(|t| holds_node(t));
            if held_before != held_after
                || matches!(change, Change::Updated { old, new } if old.node_id != new.node_id)
            {
                for t in [old, new].into_iter().flatten() {
                    if !t.node_id.is_empty() {
                        self.dirty_nodes.insert(t.node_id.clone());
                    }
                }
            }
        }
    }

    /// Switch scheduler if the cluster names another, send node changes to the plugin, then
    /// place pending tasks if anything could have changed.
    pub async fn tick(&mut self) -> Result<PassStats> {
        if self.switcher.as_ref().is_some_and(Switcher::due) {
            self.switch().await;
        }
        if !self.dirty_nodes.is_empty() {
            let dirty: Vec<String> = self.dirty_nodes.drain().collect();
            self.send_nodes(dirty).await?;
            self.retry = true;
        }
        if self.pending.is_empty() || !self.retry {
            return Ok(PassStats::default());
        }
        self.retry = false;
        self.schedule_pending().await
    }

    /// Send the store's view of these nodes to the placer (removing the ones that are gone).
    async fn send_nodes(&mut self, ids: Vec<String>) -> Result<()> {
        let now = Timestamp::now();
        let (upserts, removals) = self.store.view(|tx| {
            let mut upserts = Vec::new();
            let mut removals = Vec::new();
            for id in ids {
                match tx.node(&id) {
                    Some(n) => upserts.push(node_info(tx, n, now)),
                    None => removals.push(id),
                }
            }
            (upserts, removals)
        });
        for n in &upserts {
            self.known_nodes.insert(n.id.clone());
        }
        for id in &removals {
            self.known_nodes.remove(id);
        }
        self.placer.update_nodes(upserts, removals).await
    }

    async fn schedule_pending(&mut self) -> Result<PassStats> {
        // The pending tasks as they are now (shared, not copied).
        type Views = (
            Vec<Arc<Task>>,
            HashMap<String, String>,
            HashMap<String, String>,
        );
        let (tasks, runtimes, quarantined): Views = self.store.view(|tx| {
            let tasks: Vec<Arc<Task>> = self
                .pending
                .iter()
                .filter_map(|id| tx.task(id))
                .filter(|t| is_pending(t))
                .cloned()
                .collect();
            // Where tasks on an installed executor may go: it reaches every node with its
            // assignments, so any node, unless it drives containers (nodes with an engine).
            let mut runtimes = HashMap::new();
            // Installed executors quarantined by a node: their tasks wait, with the reason.
            let mut quarantined = HashMap::new();
            for t in &tasks {
                if t.executor.is_empty() || runtimes.contains_key(&t.executor) {
                    continue;
                }
                if let Some(plugin) = tx.plugin_by_name(&t.executor) {
                    if plugin.status.quarantined {
                        quarantined.insert(
                            t.executor.clone(),
                            format!(
                                "executor plugin {:?} is quarantined ({}); reinstall it or \
                                 update the service's executor",
                                t.executor, plugin.status.message
                            ),
                        );
                    }
                    let runtime = if plugin.imports.iter().any(|i| i == "docker") {
                        "container"
                    } else {
                        ""
                    };
                    runtimes.insert(t.executor.clone(), runtime.to_string());
                }
            }
            (tasks, runtimes, quarantined)
        });
        // What the placer is asked to place, by task id.
        let asked: HashMap<&str, &Arc<Task>> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        // Group by (service, spec version, pinned node), in a stable order.
        let mut grouped: BTreeMap<(&str, u64, &str), ph::TaskGroup> = BTreeMap::new();
        let mut held = Vec::new();
        for t in &tasks {
            if let Some(reason) = quarantined.get(&t.executor) {
                held.push(ph::GroupResult {
                    service_id: t.service_id.clone(),
                    assignments: Vec::new(),
                    unplaced: vec![(t.id.clone(), reason.clone())],
                });
                continue;
            }
            grouped
                .entry((t.service_id.as_str(), t.spec_version, t.node_id.as_str()))
                .or_insert_with(|| ph::TaskGroup {
                    service_id: t.service_id.clone(),
                    task_ids: Vec::new(),
                    placement: placement(t, runtimes.get(&t.executor)),
                })
                .task_ids
                .push(t.id.clone());
        }
        let groups: Vec<ph::TaskGroup> = grouped.into_values().collect();
        if groups.is_empty() && held.is_empty() {
            return Ok(PassStats::default());
        }
        let mut results = if groups.is_empty() {
            Vec::new()
        } else {
            self.placer.schedule(groups).await?
        };
        results.extend(held);
        let now = Timestamp::now();
        let mut stats = PassStats::default();
        let mut touched_nodes = Vec::new();
        // Nodes the placer counted a placement on that is not committed: its view of them is off.
        let mut skipped_nodes = HashSet::new();
        // Placements the placer had no business making (the plugin is not trusted).
        let mut refused = 0usize;
        // The batch is built from one read view, each task cloned once: no write-transaction
        // overlay (at 100k tasks it cost more than placing them). `apply` still checks every
        // version, so a task changed since this read makes the commit fail, not corrupt.
        let mut handled: HashSet<&str> = HashSet::new();
        let actions: Vec<Action> = self.store.view(|tx| {
            let mut actions = Vec::new();
            for result in &results {
                for (task_id, node_id) in &result.assignments {
                    // Tasks come from the read above: if one changed since, `apply` refuses the
                    // batch on its version and the next pass starts over.
                    let Some(task) = asked.get(task_id.as_str()) else {
                        // Not asked about.
                        refused += 1;
                        skipped_nodes.insert(node_id.clone());
                        continue;
                    };
                    if !handled.insert(task_id.as_str()) {
                        skipped_nodes.insert(node_id.clone());
                        continue;
                    }
                    let pinned = &task.node_id;
                    let takes_tasks = tx.node(node_id).is_some_and(|n| n.accepts_new_tasks());
                    if (!pinned.is_empty() && pinned != node_id) || !takes_tasks {
                        refused += 1;
                        skipped_nodes.insert(node_id.clone());
                        continue;
                    }
                    let mut task = Task::clone(task);
                    task.node_id = node_id.clone();
                    if task.executor.is_empty() {
                        task.executor = node_executor(tx, node_id, &task);
                    }
                    task.status.state = TaskState::Assigned;
                    task.status.timestamp = now;
                    task.status.message = "scheduler assigned task to node".to_string();
                    task.status.err.clear();
                    task.meta.updated_at = now;
                    actions.push(Action::Update(Object::Task(task)));
                    touched_nodes.push(node_id.clone());
                    stats.assigned += 1;
                }
                for (task_id, reason) in &result.unplaced {
                    let Some(task) = asked.get(task_id.as_str()) else {
                        refused += 1;
                        continue;
                    };
                    stats.unplaced += 1;
                    // The plugin's text goes into the replicated store: keep it bounded.
                    let reason = crate::dispatcher::bound_text(reason.clone());
                    if !is_pending(task)
                        || task.status.err == reason
                        || !handled.insert(task_id.as_str())
                    {
                        continue;
                    }
                    let mut task = Task::clone(task);
                    task.status.err = reason;
                    task.status.timestamp = now;
                    task.meta.updated_at = now;
                    actions.push(Action::Update(Object::Task(task)));
                }
            }
            actions
        });
        let outcome = if actions.is_empty() {
            Ok(None)
        } else {
            self.committer.commit(Batch::new(actions)).await.map(Some)
        };
        if refused > 0 {
            warn!(
                refused,
                "ignored placements of tasks the scheduler was not asked to place, or on nodes that cannot take tasks now"
            );
        }
        match outcome {
            Ok(_) => {
                // Correct the placer's view of nodes it counted placements on that did not
                // happen, without another pass: a placer that keeps answering the same nonsense
                // must not make the driver spin.
                let known: Vec<String> = skipped_nodes
                    .into_iter()
                    .filter(|id| self.known_nodes.contains(id))
                    .collect();
                if !known.is_empty() {
                    self.send_nodes(known).await?;
                }
                if stats.assigned > 0 || stats.unplaced > 0 {
                    debug!(
                        assigned = stats.assigned,
                        unplaced = stats.unplaced,
                        "scheduling pass"
                    );
                }
                if stats.unplaced > 0 && stats.assigned == 0 {
                    info!(unplaced = stats.unplaced, "tasks wait for a suitable node");
                }
                Ok(stats)
            }
            Err(e) => {
                // The plugin counted placements that did not commit: refresh those nodes.
                self.dirty_nodes.extend(touched_nodes);
                self.retry = true;
                Err(e)
            }
        }
    }

    /// How many tasks wait for placement.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Place with the scheduler the cluster names from now on, or keep the current one (and
    /// log why) if the named one cannot be loaded or fails to take the node set. The incoming
    /// placer is sent every node before it places anything.
    async fn switch(&mut self) {
        let Some(switcher) = self.switcher.as_mut() else {
            return;
        };
        let wanted = switcher.wanted.clone();
        let current = match switcher.active.as_str() {
            "" => "the embedded default".to_string(),
            name => name.to_string(),
        };
        // The incoming placer and the nodes it was told of before.
        let (mut incoming, known): (Box<dyn Placer>, HashSet<String>) = if wanted.is_empty() {
            match switcher.parked.take() {
                Some(parked) => parked,
                None => {
                    // Nothing was switched away from.
                    switcher.active.clear();
                    return;
                }
            }
        } else {
            let plugin = self.store.view(|tx| tx.plugin_by_name(&wanted).cloned());
            let loaded = match plugin {
                None => Err(format!("no plugin named {wanted:?} is installed")),
                Some(p) if p.spec.kind != PluginKind::Scheduler => Err(format!(
                    "plugin {wanted:?} is of kind {}, not scheduler",
                    p.spec.kind
                )),
                Some(p) if p.status.quarantined => Err(format!(
                    "plugin {wanted:?} is quarantined: {}",
                    p.status.message
                )),
                Some(p) => {
                    let host = switcher.host.clone();
                    load_scheduler(host, p.name().to_string(), p.component.clone()).await
                }
            };
            match loaded {
                Ok(placer) => (Box::new(placer), HashSet::new()),
                Err(error) => {
                    warn!(scheduler = %wanted, %error, "cannot switch to the scheduler the cluster names; {current} keeps placing");
                    switcher.failed = Some(wanted);
                    return;
                }
            }
        };
        // The whole node set, and the removal of the nodes it knew that are gone.
        let now = Timestamp::now();
        let (upserts, removals) = self.store.view(|tx| {
            let upserts: Vec<ph::NodeInfo> = tx.nodes().map(|n| node_info(tx, n, now)).collect();
            let removals: Vec<String> = known
                .iter()
                .filter(|id| tx.node(id).is_none())
                .cloned()
                .collect();
            (upserts, removals)
        });
        let ids: HashSet<String> = upserts.iter().map(|n| n.id.clone()).collect();
        if let Err(error) = incoming.update_nodes(upserts, removals).await {
            warn!(scheduler = %wanted, %error, "the scheduler the cluster names failed to take the node set; {current} keeps placing");
            if wanted.is_empty() {
                switcher.parked = Some((incoming, known));
            }
            switcher.failed = Some(wanted);
            return;
        }
        let outgoing = std::mem::replace(&mut self.placer, incoming);
        let outgoing_known = std::mem::replace(&mut self.known_nodes, ids);
        if switcher.active.is_empty() {
            // The embedded default waits, with what it knows, until the cluster names it again.
            switcher.parked = Some((outgoing, outgoing_known));
        }
        match wanted.as_str() {
            "" => {
                info!(from = %current, "scheduler switched back to the embedded default; it places from the next pass")
            }
            name => {
                info!(scheduler = %name, from = %current, "scheduler switched to an installed plugin; it places from the next pass")
            }
        }
        switcher.active = wanted.clone();
        switcher.failed = None;
        switcher.report.send_replace(wanted);
        self.retry = true;
    }
}

impl SchedulerDriver {
    /// The installed scheduler placing now was quarantined by its failure budget: record it on
    /// the plugin (`plugin inspect` shows it) and go back to the embedded default, which places
    /// until an operator names a scheduler again.
    async fn quarantine_active(&mut self, health: ph::PluginHealth) {
        let Some(switcher) = self.switcher.as_mut() else {
            return;
        };
        let name = std::mem::take(&mut switcher.active);
        if name.is_empty() {
            return;
        }
        let message = format!(
            "quarantined by the manager's scheduler driver after {} failures: {}",
            health.recent_failures,
            health.last_error.clone().unwrap_or_default()
        );
        tracing::error!(event = "plugin_quarantined", plugin = %name, %message, "the embedded default scheduler places from now on");
        if let Some((parked, known)) = switcher.parked.take() {
            self.placer = parked;
            self.known_nodes = known;
        }
        switcher.failed = Some(name.clone());
        switcher.report.send_replace(String::new());
        self.store
            .view(|tx| self.dirty_nodes.extend(tx.nodes().map(|n| n.id.clone())));
        self.retry = true;
        let now = Timestamp::now();
        let action = self.store.view(|tx| {
            tx.plugin_by_name(&name).map(|plugin| {
                let status = swarm_types::PluginStatus::quarantined(
                    health.recent_failures,
                    message.clone(),
                    now,
                );
                let plugin = plugin.with_status(status);
                Action::Update(Object::Plugin(plugin))
            })
        });
        if let Some(action) = action
            && let Err(error) = self.committer.commit(Batch::new(vec![action])).await
        {
            warn!(plugin = %name, %error, "cannot record the plugin's quarantine");
        }
    }
}

impl Switcher {
    fn want(&mut self, scheduler: String) {
        if scheduler != self.wanted {
            self.wanted = scheduler;
            self.failed = None;
        }
    }

    /// Whether the cluster names another scheduler than the one placing, worth trying.
    fn due(&self) -> bool {
        self.wanted != self.active && self.failed.as_deref() != Some(self.wanted.as_str())
    }
}

/// Compile (or find in the cache) an installed scheduler plugin, off the runtime's workers.
async fn load_scheduler(
    host: ph::PluginHost,
    name: String,
    component: swarm_types::ComponentBytes,
) -> std::result::Result<ph::SchedulerPlugin, String> {
    tokio::task::spawn_blocking(move || host.load_scheduler(&name, &component))
        .await
        .map_err(|e| format!("loading the plugin: {e}"))?
        .map_err(|e| e.to_string())
}
