//! The scheduler workload, after SwarmKit's scheduler benchmark: ready nodes (every third with a
//! network plugin) and one replicated service whose tasks are committed PENDING in one batch;
//! the time until every task is ASSIGNED and committed, driving the manager's `SchedulerDriver`
//! with the wasm scheduler plugin or the same placement code built natively.
//!
//! Each row runs in a child process (this binary, hidden `scheduler-row` subcommand) so that its
//! peak resident memory (`VmHWM`) is its own. The store commits straight to memory
//! (`DirectCommitter`): no raft, as in SwarmKit's benchmark.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use swarm_manager::commit::commit_with;
use swarm_manager::{Committer, DirectCommitter, ManagerError, Placer, SchedulerDriver};
use swarm_plugin_host as ph;
use swarm_store::{Action, Batch, MemoryStore, Object, StoreRead as _};
use swarm_types::{
    Annotations, Availability, EngineDescription, Membership, Meta, Node, NodeDescription,
    NodeRole, NodeSpec, NodeState, NodeStatus, Platform, ProcessSpec, Resources, Runtime, Service,
    ServiceMode, ServiceSpec, TaskSpec, TaskState, Timestamp, new_id,
};

use crate::native::NativePlacer;
use crate::report::{Output, Row};
use crate::sys;

/// SwarmKit's published figures for 1k nodes on this machine kind: (tasks, seconds).
const SWARMKIT_SECONDS: [(usize, f64); 3] = [(1_000, 0.17), (10_000, 1.46), (100_000, 19.0)];
/// The targets at 1k nodes x 100k tasks.
const TARGET_TASKS: usize = 100_000;
const TARGET_SECONDS: f64 = 1.0;
const TARGET_PEAK_RSS_BYTES: u64 = 500_000_000;
/// The plugin limits `swarmd` runs with (swarm-node's `PLUGIN_CALL_DEADLINE` and `PLUGIN_MEMORY_LIMIT`).
const PLUGIN_CALL_DEADLINE: Duration = Duration::from_secs(10);
const PLUGIN_MEMORY_LIMIT: usize = 512 << 20;
/// A row that has not placed everything by then has failed.
const ROW_TIMEOUT: Duration = Duration::from_secs(600);
/// Every third node offers this engine plugin (SwarmKit's benchmark: a network plugin).
const NETWORK_PLUGIN: &str = "network/overlay";

/// Which placement code a row drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PlacerKind {
    /// The default scheduler plugin (`swarm-plugin-artifacts::SCHEDULER`) in wasmtime.
    Wasm,
    /// `swarm-scheduler-core` compiled into this binary.
    Native,
}

impl PlacerKind {
    fn name(self) -> &'static str {
        match self {
            PlacerKind::Wasm => "wasm",
            PlacerKind::Native => "native",
        }
    }
}

/// `swarm-bench scheduler`.
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Ready, active nodes in the store.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pending tasks per row (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    tasks: Vec<usize>,
    /// Placement code per row (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "wasm,native")]
    scheduler: Vec<PlacerKind>,
    /// Runs per row, each in a fresh child process; the row shows the median run.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// `swarm-bench scheduler-row` (hidden): one row, measured in this process.
#[derive(Debug, clap::Args)]
pub struct RowArgs {
    #[arg(long)]
    nodes: usize,
    #[arg(long)]
    tasks: usize,
    #[arg(long, value_enum)]
    scheduler: PlacerKind,
}

/// What a child process measured for one row (its one line of stdout).
#[derive(Debug, Serialize, Deserialize)]
struct RowResult {
    /// From the commit of the pending tasks until every assignment is committed.
    seconds: f64,
    /// Of which in the placer (`update_nodes` and `schedule` calls).
    placer_seconds: f64,
    /// Of which applying the driver's batches to the store.
    commit_seconds: f64,
    /// Of which `SchedulerDriver::resync` (reading every task and node; the driver's run loop
    /// does the equivalent work when it observes the change set of the pending tasks).
    resync_seconds: f64,
    /// Committing the pending tasks (one batch; not part of `seconds`).
    pending_commit_seconds: f64,
    /// Driver passes (`tick` calls) until the store had no pending task.
    passes: u64,
    /// Batches the driver committed.
    commits: u64,
    /// Tasks ASSIGNED in the store at the end.
    assigned: u64,
    /// Resident memory just before the pending tasks were committed.
    rss_before_bytes: u64,
    /// Peak resident memory of the whole child run (`VmHWM`).
    peak_rss_bytes: u64,
}

/// Runs every row, each run in a child process, and prints the table.
pub async fn run(args: SchedulerArgs, output: &mut Output) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    for &tasks in &args.tasks {
        for &kind in &args.scheduler {
            let mut results = Vec::with_capacity(args.runs);
            for run in 1..=args.runs {
                let result = run_child(&exe, args.nodes, tasks, kind).await?;
                eprintln!(
                    "scheduler: {} nodes x {tasks} tasks, {} placer, run {run}: {:.4} s, peak RSS {:.0} MB",
                    args.nodes,
                    kind.name(),
                    result.seconds,
                    result.peak_rss_bytes as f64 / 1e6
                );
                results.push(result);
            }
            output.push(row(args.nodes, tasks, kind, results)?)?;
        }
    }
    Ok(())
}

/// The row of the median run (by `seconds`), with the spread and the highest peak of all runs.
fn row(
    nodes: usize,
    tasks: usize,
    kind: PlacerKind,
    mut results: Vec<RowResult>,
) -> anyhow::Result<Row> {
    results.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let runs = results.len();
    let min = results.first().map(|r| r.seconds);
    let max = results.last().map(|r| r.seconds);
    let peak = results.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0);
    let Some(r) = results.get(runs.saturating_sub(1) / 2) else {
        bail!("no run measured");
    };
    let swarmkit = if nodes == 1000 {
        SWARMKIT_SECONDS
            .iter()
            .find(|(n, _)| *n == tasks)
            .map(|(_, s)| *s)
    } else {
        None
    };
    let other = (r.seconds - r.placer_seconds - r.commit_seconds - r.resync_seconds).max(0.0);
    let mut row = Row::new()
        .int("nodes", nodes as u64)
        .int("tasks", tasks as u64)
        .text("scheduler", kind.name())
        .int("runs", runs as u64)
        .opt_seconds("seconds", Some(r.seconds))
        .opt_seconds("min_seconds", min)
        .opt_seconds("max_seconds", max)
        .opt_seconds("swarmkit_seconds", swarmkit)
        .float(
            "tasks_per_second",
            tasks as f64 / r.seconds.max(f64::MIN_POSITIVE),
            0,
        )
        .opt_seconds("placer_seconds", Some(r.placer_seconds))
        .opt_seconds("store_apply_seconds", Some(r.commit_seconds))
        .opt_seconds("resync_seconds", Some(r.resync_seconds))
        .opt_seconds("driver_seconds", Some(other))
        .int("passes", r.passes)
        .float("peak_rss_mb", peak as f64 / 1e6, 1)
        .float("rss_before_mb", r.rss_before_bytes as f64 / 1e6, 1)
        .opt_seconds("pending_commit_seconds", Some(r.pending_commit_seconds));
    if nodes == 1000 && tasks == TARGET_TASKS {
        let (target, met) = match kind {
            PlacerKind::Wasm => (
                "< 1 s, peak RSS < 500 MB",
                r.seconds < TARGET_SECONDS && peak < TARGET_PEAK_RSS_BYTES,
            ),
            PlacerKind::Native => ("peak RSS < 500 MB", peak < TARGET_PEAK_RSS_BYTES),
        };
        row = row.text("target", target).flag("target_met", met);
    }
    Ok(row)
}

/// Runs one row in a child process; the child is killed if this future is dropped.
async fn run_child(
    exe: &Path,
    nodes: usize,
    tasks: usize,
    kind: PlacerKind,
) -> anyhow::Result<RowResult> {
    let child = tokio::process::Command::new(exe)
        .args([
            "scheduler-row",
            "--nodes",
            &nodes.to_string(),
            "--tasks",
            &tasks.to_string(),
        ])
        .args(["--scheduler", kind.name()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let out = child
        .wait_with_output()
        .await
        .context("waiting for the row's child process")?;
    if !out.status.success() {
        bail!(
            "the row's child process failed ({}); its error is above",
            out.status
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("the row's child process printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("parsing the row's result {line:?}"))
}

/// The child's side: measure one row and print its result as one JSON line.
pub fn run_row(args: RowArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut result = runtime.block_on(measure(&args))?;
    // The peak covers the whole run: setup, placement and commits.
    result.peak_rss_bytes = sys::self_status_bytes("VmHWM")?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Time spent in a wrapped call, summed.
#[derive(Debug, Default)]
struct Timer {
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl Timer {
    fn add(&self, elapsed: Duration) {
        self.nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self) -> (Duration, u64) {
        (
            Duration::from_nanos(self.nanos.swap(0, Ordering::Relaxed)),
            self.calls.swap(0, Ordering::Relaxed),
        )
    }
}

/// A placer that times its inner placer's calls.
struct TimedPlacer {
    inner: Box<dyn Placer>,
    timer: Arc<Timer>,
}

impl Placer for TimedPlacer {
    fn update_nodes(
        &mut self,
        upserts: Vec<ph::NodeInfo>,
        removals: Vec<String>,
    ) -> BoxFuture<'_, Result<(), ManagerError>> {
        let timer = self.timer.clone();
        let started = Instant::now();
        let call = self.inner.update_nodes(upserts, removals);
        Box::pin(async move {
            let result = call.await;
            timer.add(started.elapsed());
            result
        })
    }

    fn schedule(
        &mut self,
        groups: Vec<ph::TaskGroup>,
    ) -> BoxFuture<'_, Result<Vec<ph::GroupResult>, ManagerError>> {
        let timer = self.timer.clone();
        let started = Instant::now();
        let call = self.inner.schedule(groups);
        Box::pin(async move {
            let result = call.await;
            timer.add(started.elapsed());
            result
        })
    }
}

/// A committer that times its inner committer's calls (for `DirectCommitter`: the store's apply).
struct TimedCommitter {
    inner: Arc<dyn Committer>,
    timer: Arc<Timer>,
}

impl Committer for TimedCommitter {
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<u64, ManagerError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.commit(batch).await;
            self.timer.add(started.elapsed());
            result
        })
    }
}

/// A ready, active worker like SwarmKit's benchmark nodes, with a description.
fn bench_node(i: usize, now: Timestamp) -> Node {
    let hostname = format!("node-{i}");
    let plugins = if i.is_multiple_of(3) {
        vec![NETWORK_PLUGIN.to_owned()]
    } else {
        Vec::new()
    };
    Node {
        id: new_id(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        spec: NodeSpec {
            annotations: Annotations {
                name: hostname.clone(),
                labels: Default::default(),
            },
            desired_role: NodeRole::Worker,
            membership: Membership::Accepted,
            availability: Availability::Active,
            executor: String::new(),
        },
        role: NodeRole::Worker,
        description: Some(NodeDescription {
            hostname,
            platform: Platform {
                os: "linux".to_owned(),
                arch: "amd64".to_owned(),
            },
            resources: Resources {
                nano_cpus: 4_000_000_000,
                memory_bytes: 16 << 30,
            },
            engine: EngineDescription {
                version: "bench".to_owned(),
                labels: Default::default(),
                plugins,
            },
            executor: "default".to_owned(),
            runtimes: vec!["process".to_owned(), "wasi".to_owned()],
        }),
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: format!("10.{}.{}.{}", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff),
            last_seen: now,
        },
        manager_status: None,
    }
}

/// One replicated service of `replicas` process tasks with no reservations (as SwarmKit's
/// benchmark tasks have none).
fn bench_service(replicas: usize, now: Timestamp) -> Service {
    Service {
        id: new_id(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        spec: ServiceSpec {
            annotations: Annotations {
                name: "bench".to_owned(),
                labels: Default::default(),
            },
            task: TaskSpec {
                runtime: Runtime::Process(ProcessSpec {
                    command: "sleep".to_owned(),
                    args: vec!["600".to_owned()],
                    ..Default::default()
                }),
                resources: Default::default(),
                restart: Default::default(),
                placement: Default::default(),
                force_update: 0,
                secrets: vec![],
                configs: vec![],
            },
            executor: String::new(),
            mode: ServiceMode::Replicated {
                replicas: replicas as u64,
            },
        },
        spec_version: 1,
    }
}

/// (pending, assigned) tasks in the store.
fn count_tasks(store: &MemoryStore) -> (u64, u64) {
    store.view(|tx| {
        let (mut pending, mut assigned) = (0, 0);
        for task in tx.tasks() {
            match task.status.state {
                TaskState::Pending => pending += 1,
                TaskState::Assigned if !task.node_id.is_empty() => assigned += 1,
                _ => {}
            }
        }
        (pending, assigned)
    })
}

fn build_placer(kind: PlacerKind, dir: &Path) -> anyhow::Result<Box<dyn Placer>> {
    Ok(match kind {
        PlacerKind::Native => Box::new(NativePlacer::default()),
        PlacerKind::Wasm => {
            let host = ph::PluginHost::new(ph::HostConfig {
                cache_dir: dir.join("cache"),
                tasks_dir: dir.join("tasks"),
                call_deadline: PLUGIN_CALL_DEADLINE,
                memory_limit_bytes: PLUGIN_MEMORY_LIMIT,
                engine_addr: None,
            })
            .context("starting the plugin host")?;
            let plugin = host
                .load_scheduler("default", swarm_plugin_artifacts::SCHEDULER)
                .context("loading the default scheduler plugin")?;
            Box::new(plugin)
        }
    })
}

async fn measure(args: &RowArgs) -> anyhow::Result<RowResult> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store = Arc::new(MemoryStore::new());
    let direct: Arc<dyn Committer> = Arc::new(DirectCommitter::new(store.clone()));
    let now = Timestamp::now();

    let nodes: Vec<Action> = (0..args.nodes)
        .map(|i| Action::Create(Object::Node(bench_node(i, now))))
        .collect();
    direct
        .commit(Batch::new(nodes))
        .await
        .context("committing the nodes")?;
    let service = bench_service(args.tasks, now);
    commit_with(
        &store,
        direct.as_ref(),
        |tx| Ok(tx.create(service.clone())?),
    )
    .await
    .context("committing the service")?;

    let placer_timer = Arc::new(Timer::default());
    let commit_timer = Arc::new(Timer::default());
    let placer = TimedPlacer {
        inner: build_placer(args.scheduler, dir.path())?,
        timer: placer_timer.clone(),
    };
    let committer = Arc::new(TimedCommitter {
        inner: direct.clone(),
        timer: commit_timer.clone(),
    });
    let mut driver = SchedulerDriver::new(store.clone(), committer, Box::new(placer));
    // Warm up outside the timing: the placer learns the nodes (and the wasm instance starts).
    driver.resync();
    driver
        .tick()
        .await
        .context("sending the nodes to the placer")?;
    placer_timer.take();
    commit_timer.take();

    let tasks: Vec<Action> = (1..=args.tasks as u64)
        .map(|slot| {
            Action::Create(Object::Task(swarm_manager::replica_task(
                &service, slot, now,
            )))
        })
        .collect();
    let rss_before_bytes = sys::self_status_bytes("VmRSS")?;
    let commit_started = Instant::now();
    direct
        .commit(Batch::new(tasks))
        .await
        .context("committing the pending tasks")?;
    let pending_commit = commit_started.elapsed();

    // The driver is not following the store's watch here: a resync makes it read the pending
    // tasks (and every node again), as its run loop does after a lag.
    let started = Instant::now();
    driver.resync();
    let mut resync = started.elapsed();
    let mut passes = 0u64;
    let elapsed = loop {
        let stats = driver.tick().await.context("scheduling pass")?;
        passes += 1;
        let elapsed = started.elapsed();
        let (pending, _) = count_tasks(&store);
        if pending == 0 {
            break elapsed;
        }
        if elapsed > ROW_TIMEOUT {
            bail!("{pending} tasks still pending after {elapsed:?} ({passes} passes)");
        }
        if stats.assigned == 0 {
            if stats.unplaced > 0 {
                bail!(
                    "{pending} tasks pending and {} unplaced after {passes} passes",
                    stats.unplaced
                );
            }
            // Nothing was tried: the driver needs to learn of the rest again.
            let resync_started = Instant::now();
            driver.resync();
            resync += resync_started.elapsed();
        }
    };
    let (placer, _) = placer_timer.take();
    let (commit, commits) = commit_timer.take();
    let (_, assigned) = count_tasks(&store);
    if assigned != args.tasks as u64 {
        bail!("{assigned} of {} tasks assigned", args.tasks);
    }
    Ok(RowResult {
        seconds: elapsed.as_secs_f64(),
        placer_seconds: placer.as_secs_f64(),
        commit_seconds: commit.as_secs_f64(),
        resync_seconds: resync.as_secs_f64(),
        pending_commit_seconds: pending_commit.as_secs_f64(),
        passes,
        commits,
        assigned,
        rss_before_bytes,
        peak_rss_bytes: 0,
    })
}
