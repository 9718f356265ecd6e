//! The plugin-calls workload: what crossing into a wasm plugin costs. Loading a component
//! (compiling it, from the disk cache, from memory), each executor operation through the default
//! executor plugin against the same capability work called natively, and a scheduler batch
//! through the wasm scheduler against `swarm-scheduler-core` compiled natively.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use swarm_manager::Placer;
use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host as ph;

use crate::native::NativePlacer;
use crate::report::{Output, Row};

/// `swarm-bench plugin-calls`.
#[derive(Debug, clap::Args)]
pub struct PluginCallsArgs {
    /// Tasks taken through prepare/start/inspect/shutdown/remove on each side.
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// Scheduler batches measured on each side.
    #[arg(long, default_value_t = 200)]
    batches: usize,
    /// Nodes resident in the scheduler for the batch rows.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Tasks in each scheduler batch.
    #[arg(long, default_value_t = 10)]
    batch_tasks: usize,
}

fn host_config(cache: &std::path::Path, tasks: &std::path::Path) -> ph::HostConfig {
    ph::HostConfig {
        cache_dir: cache.to_owned(),
        tasks_dir: tasks.to_owned(),
        call_deadline: Duration::from_secs(10),
        memory_limit_bytes: 64 << 20,
        engine_addr: None,
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

pub async fn run(args: PluginCallsArgs, output: &mut Output) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let cache = dir.path().join("cache");
    let tasks_dir = dir.path().join("tasks");
    load_rows(&cache, &tasks_dir, output)?;
    let host = ph::PluginHost::new(host_config(&cache, &tasks_dir)).context("plugin host")?;
    executor_rows(&host, args.tasks, output).await?;
    scheduler_rows(&host, &args, output).await?;
    Ok(())
}

/// Load times: compile with an empty cache, from the disk cache in a new host, from memory.
fn load_rows(
    cache: &std::path::Path,
    tasks: &std::path::Path,
    output: &mut Output,
) -> anyhow::Result<()> {
    let components: [(&str, &[u8]); 2] = [
        ("executor-default", artifacts::EXECUTOR_DEFAULT),
        ("scheduler", artifacts::SCHEDULER),
    ];
    let load = |host: &ph::PluginHost, name: &str, bytes: &[u8]| -> anyhow::Result<Duration> {
        let started = Instant::now();
        if name == "scheduler" {
            host.load_scheduler(name, bytes)?;
        } else {
            host.load_executor(name, bytes, ph::DEFAULT_EXECUTOR_GRANTS)?;
        }
        Ok(started.elapsed())
    };
    let cold = ph::PluginHost::new(host_config(cache, tasks)).context("plugin host")?;
    let mut times = Vec::new();
    for (name, bytes) in components {
        times.push((name, "compile (empty cache)", load(&cold, name, bytes)?));
        times.push((name, "memory cache", load(&cold, name, bytes)?));
    }
    drop(cold);
    let warm = ph::PluginHost::new(host_config(cache, tasks)).context("plugin host")?;
    for (name, bytes) in components {
        times.push((name, "disk cache (new host)", load(&warm, name, bytes)?));
    }
    for (name, how, elapsed) in times {
        output.push(
            Row::new()
                .text("row", "load")
                .text("plugin", name)
                .text("how", how)
                .float("ms", elapsed.as_secs_f64() * 1e3, 3),
        )?;
    }
    Ok(())
}

fn sleeper() -> ph::ProcessSpec {
    ph::ProcessSpec {
        command: "sleep".to_owned(),
        args: vec!["600".to_owned()],
        env: Vec::new(),
        dir: None,
    }
}

fn exec_task(id: &str) -> ph::ExecTask {
    ph::ExecTask {
        id: id.to_owned(),
        service_id: "bench".to_owned(),
        service_name: "bench".to_owned(),
        slot: 1,
        runtime: ph::TaskRuntime::Process(sleeper()),
        limits: ph::TaskLimits {
            nano_cpus: 0,
            memory_bytes: 0,
        },
    }
}

const OPS: [&str; 6] = [
    "describe", "prepare", "start", "inspect", "shutdown", "remove",
];

/// Each executor operation through the plugin, then the same capability calls natively.
async fn executor_rows(
    host: &ph::PluginHost,
    tasks: usize,
    output: &mut Output,
) -> anyhow::Result<()> {
    let executor = host.load_executor(
        "default",
        artifacts::EXECUTOR_DEFAULT,
        ph::DEFAULT_EXECUTOR_GRANTS,
    )?;
    let native = host.native_capabilities();
    let mut wasm: Vec<Vec<Duration>> = vec![Vec::new(); OPS.len()];
    let mut direct: Vec<Vec<Duration>> = vec![Vec::new(); OPS.len()];
    let stop = Duration::from_secs(10);
    for i in 0..tasks {
        let id = format!("w{i}");
        let task = exec_task(&id);
        let timed = |samples: &mut Vec<Duration>, started: Instant| samples.push(started.elapsed());
        let t = Instant::now();
        executor.describe().await?;
        timed(&mut wasm[0], t);
        let t = Instant::now();
        executor.prepare(&task).await?;
        timed(&mut wasm[1], t);
        let t = Instant::now();
        executor.start(&id).await?;
        timed(&mut wasm[2], t);
        let t = Instant::now();
        executor.inspect(&id).await?;
        timed(&mut wasm[3], t);
        let t = Instant::now();
        executor.shutdown(&id, stop).await?;
        timed(&mut wasm[4], t);
        let t = Instant::now();
        executor.remove(&id).await?;
        timed(&mut wasm[5], t);

        // The same work natively: what the default executor's code asks of its capabilities.
        let id = format!("n{i}");
        let t = Instant::now();
        std::hint::black_box(ph::ExecutorInfo {
            name: "default".to_owned(),
            runtimes: vec!["process".to_owned(), "wasi".to_owned()],
            engine: None,
        });
        timed(&mut direct[0], t);
        let t = Instant::now();
        std::hint::black_box(native.process_status(&id));
        native
            .process_prepare(&id, sleeper())
            .map_err(anyhow::Error::msg)?;
        timed(&mut direct[1], t);
        let t = Instant::now();
        std::hint::black_box(native.process_status(&id));
        native.process_start(&id).map_err(anyhow::Error::msg)?;
        timed(&mut direct[2], t);
        let t = Instant::now();
        std::hint::black_box(native.process_status(&id));
        timed(&mut direct[3], t);
        let t = Instant::now();
        std::hint::black_box(native.process_status(&id));
        native
            .process_stop(&id, stop)
            .await
            .map_err(anyhow::Error::msg)?;
        timed(&mut direct[4], t);
        let t = Instant::now();
        std::hint::black_box(native.process_status(&id));
        native
            .process_remove(&id)
            .await
            .map_err(anyhow::Error::msg)?;
        timed(&mut direct[5], t);
    }
    for (op, (wasm, direct)) in OPS.iter().zip(wasm.iter_mut().zip(direct.iter_mut())) {
        let (wasm, direct) = (median(wasm), median(direct));
        output.push(
            Row::new()
                .text("row", "executor")
                .text("plugin", "executor-default")
                .text("how", *op)
                .float("wasm_us", micros(wasm), 1)
                .float("native_us", micros(direct), 1)
                .float("overhead_us", micros(wasm) - micros(direct), 1),
        )?;
    }
    Ok(())
}

fn bench_node(i: usize) -> ph::NodeInfo {
    ph::NodeInfo {
        id: format!("node-{i}"),
        hostname: format!("host-{i}"),
        role: ph::NodeRole::Worker,
        os: "linux".to_owned(),
        arch: "amd64".to_owned(),
        labels: vec![("zone".to_owned(), format!("z{}", i % 3))],
        engine_labels: Vec::new(),
        addr: format!("10.0.{}.{}", i / 250, i % 250),
        status: ph::NodeStatus::Ready,
        availability: ph::NodeAvailability::Active,
        total_resources: ph::Resources {
            nano_cpus: 64_000_000_000,
            memory_bytes: 256 << 30,
        },
        available_resources: ph::Resources {
            nano_cpus: 64_000_000_000,
            memory_bytes: 256 << 30,
        },
        runtimes: vec!["process".to_owned()],
        plugins: Vec::new(),
        tasks_total: 0,
        service_tasks: Vec::new(),
        recent_failures: Vec::new(),
    }
}

fn batch(n: usize, tasks: usize) -> Vec<ph::TaskGroup> {
    vec![ph::TaskGroup {
        service_id: format!("svc-{n}"),
        task_ids: (0..tasks).map(|t| format!("task-{n}-{t}")).collect(),
        placement: ph::Placement {
            runtime: "process".to_owned(),
            reservations: ph::Resources {
                nano_cpus: 0,
                memory_bytes: 0,
            },
            constraints: vec!["node.labels.zone!=z2".to_owned()],
            platforms: Vec::new(),
            max_replicas: 0,
            required_plugins: Vec::new(),
        },
    }]
}

/// One batch through the wasm scheduler and through the same code compiled natively.
async fn scheduler_rows(
    host: &ph::PluginHost,
    args: &PluginCallsArgs,
    output: &mut Output,
) -> anyhow::Result<()> {
    let nodes: Vec<ph::NodeInfo> = (0..args.nodes).map(bench_node).collect();
    let mut wasm = host.load_scheduler("scheduler", artifacts::SCHEDULER)?;
    wasm.update_nodes(nodes.clone(), Vec::new()).await?;
    let mut native = NativePlacer::default();
    native
        .update_nodes(nodes, Vec::new())
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let (mut wasm_samples, mut native_samples) = (Vec::new(), Vec::new());
    for n in 0..args.batches {
        let t = Instant::now();
        let placed = wasm.schedule(batch(n, args.batch_tasks)).await?;
        wasm_samples.push(t.elapsed());
        std::hint::black_box(placed);
        let t = Instant::now();
        let placed = native
            .schedule(batch(n, args.batch_tasks))
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        native_samples.push(t.elapsed());
        std::hint::black_box(placed);
    }
    let (wasm, native) = (median(&mut wasm_samples), median(&mut native_samples));
    output.push(
        Row::new()
            .text("row", "scheduler")
            .text("plugin", "scheduler")
            .text(
                "how",
                format!(
                    "schedule {} tasks on {} nodes",
                    args.batch_tasks, args.nodes
                ),
            )
            .float("wasm_us", micros(wasm), 1)
            .float("native_us", micros(native), 1)
            .float("overhead_us", micros(wasm) - micros(native), 1),
    )?;
    Ok(())
}
