//! swarm-bench: benchmark workloads for the orchestrator, one subcommand each, printing a table
//! or one JSON object per row.
//!
//! Workloads: `scheduler` (SwarmKit's scheduler benchmark through the manager's scheduler
//! driver, wasm plugin or native placement code, one child process per row for its peak memory),
//! `raft-writes` (store batches through one raft node), `startup` (`swarmd` until its node is
//! READY), `replicas` (`swarmd` until a service's replicas run, then their removal),
//! `docker-replicas` (a container service's replicas against `docker run` in a loop),
//! `plugin-calls` (the cost of a plugin call against the same work done natively) and
//! `scheduler-switch` (`plugin install` of a new scheduler to the first task it places).
//!
//! Every child process (row processes, `swarmd`, the tasks `swarmd` starts) is killed on every
//! exit path, including SIGINT and SIGTERM (not SIGKILL, which cannot be caught).

mod cluster;
mod cluster_writes;
mod docker_replicas;
mod native;
mod plugin_calls;
mod raft_writes;
mod replicas;
mod report;
mod scheduler;
mod scheduler_switch;
mod startup;
mod swarmd;
mod sys;

/// mimalloc: the manager's large batches are allocation-bound (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::report::{Format, Output};

/// Benchmarks of the orchestrator: scheduler, raft writes, swarmd startup, replica start-up.
#[derive(Debug, Parser)]
#[command(name = "swarm-bench", version, about, long_about = None)]
struct Cli {
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Several swarmd on loopback: leader failover (kill -9 to the first acknowledged write)
    /// and a worker's join (start to READY).
    Cluster(cluster::ClusterArgs),
    /// Write throughput of N managers (CreateService on the leader) against an etcd cluster of N
    /// members (Put of values as large), same clients, same machine, same run.
    ClusterWrites(cluster_writes::ClusterWritesArgs),
    /// SwarmKit's scheduler benchmark: N pending tasks on ready nodes, time until all are assigned.
    Scheduler(scheduler::SchedulerArgs),
    /// Write throughput and latency of service creates through one raft node.
    RaftWrites(raft_writes::RaftWritesArgs),
    /// Time from spawning swarmd until the control API lists its node READY.
    Startup(startup::StartupArgs),
    /// Time until a service's replicas run on one swarmd, then their removal.
    Replicas(replicas::ReplicasArgs),
    /// Time until a container service's replicas run, against `docker run` in a shell loop.
    DockerReplicas(docker_replicas::DockerReplicasArgs),
    /// What crossing into a wasm plugin costs: loading, each executor operation and a scheduler
    /// batch, against the same work done natively.
    PluginCalls(plugin_calls::PluginCallsArgs),
    /// Time from `plugin install` of a new scheduler to the first task it places.
    SchedulerSwitch(scheduler_switch::SchedulerSwitchArgs),
    /// One scheduler row, measured in this process (used by `scheduler`).
    #[command(hide = true)]
    SchedulerRow(scheduler::RowArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWARM_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarm-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::SchedulerRow(args) = cli.command {
        // A child process: it builds its own runtime so that nothing else runs in it.
        return scheduler::run_row(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut output = Output::new(cli.format);
    runtime.block_on(async {
        let workload = async {
            match cli.command {
                Command::Scheduler(args) => scheduler::run(args, &mut output).await,
                Command::RaftWrites(args) => raft_writes::run(args, &mut output).await,
                Command::Startup(args) => startup::run(args, &mut output).await,
                Command::Cluster(args) => cluster::run(args, &mut output).await,
                Command::ClusterWrites(args) => cluster_writes::run(args, &mut output).await,
                Command::Replicas(args) => replicas::run(args, &mut output).await,
                Command::DockerReplicas(args) => docker_replicas::run(args, &mut output).await,
                Command::PluginCalls(args) => plugin_calls::run(args, &mut output).await,
                Command::SchedulerSwitch(args) => scheduler_switch::run(args, &mut output).await,
                Command::SchedulerRow(_) => Ok(()),
            }
        };
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("handling SIGTERM")?;
        // On SIGINT or SIGTERM the workload is dropped, and with it every child process it owns.
        tokio::select! {
            result = workload => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
        }
    })?;
    output.finish();
    Ok(())
}
