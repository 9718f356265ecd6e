//! `swarmd`: the node daemon. A thin binary over `swarm_node::run`: flags, logging, signals.

/// mimalloc: the manager's large batches are allocation-bound (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use swarm_node::{ExecutorChoice, NodeConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Run a node of the cluster: a manager (raft-replicated store, control API, orchestrators,
/// scheduler, dispatcher) and an agent that runs the tasks assigned to this machine.
#[derive(Debug, Parser)]
#[command(name = "swarmd", version, about, long_about = None)]
struct Args {
    /// Log level: error, warn, info, debug, trace (or a tracing filter such as `swarm_manager=debug`).
    #[arg(long, default_value = "info", env = "SWARMD_LOG")]
    log_level: String,

    /// Directory of this node's state (raft log, task database, plugin cache, task logs).
    #[arg(short = 'd', long, default_value = "./swarmkitstate")]
    state_dir: PathBuf,

    /// This node's hostname, as shown in `node ls` and matched by `node.hostname` constraints.
    #[arg(long)]
    hostname: Option<String>,

    /// Unix socket of the control API [default: <state-dir>/swarmd.sock].
    #[arg(long)]
    listen_control_api: Option<PathBuf>,

    /// Address of a manager's remote API (raft, CA, dispatcher; mutual TLS). Workers do not
    /// listen.
    #[arg(long, default_value = "127.0.0.1:4242")]
    listen_remote_api: SocketAddr,

    /// Address other nodes reach this manager at [default: the bound remote API address, with
    /// 127.0.0.1 for an unspecified IP].
    #[arg(long, value_name = "HOST:PORT")]
    advertise_remote_api: Option<String>,

    /// Join the cluster through the manager at this address (with --join-token, the first
    /// time). Without it, the node creates a new cluster and becomes its first manager.
    #[arg(long, value_name = "HOST:PORT")]
    join_addr: Option<String>,

    /// The join token (`SWMTKN-1-...`, from `swarmctl cluster inspect`): it pins the cluster's
    /// root CA and says whether the node joins as a worker or a manager.
    #[arg(long, env = "SWARMD_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,

    /// Raft heartbeat interval, in ticks of 100 ms.
    #[arg(long, default_value_t = 1)]
    heartbeat_tick: u64,

    /// Raft election timeout, in ticks of 100 ms.
    #[arg(long, default_value_t = 10)]
    election_tick: u64,

    /// Executor plugin: the name of an embedded one (`default`: processes and WASI components)
    /// or the path of an executor component (`.wasm`).
    #[arg(long, default_value = "default")]
    executor: String,

    /// The container engine (Docker Engine API): `unix:///path/to/docker.sock`, `tcp://host:port`
    /// or `http://host:port`. When it answers at start, the embedded docker executor (runtime
    /// `container`) becomes the node's default executor, next to `--executor`.
    #[arg(long, default_value = swarm_node::DEFAULT_ENGINE_ADDR, value_name = "ADDR")]
    engine_addr: String,

    /// Recover a manager that lost quorum: keep its state, become the only manager; the others
    /// must join again.
    #[arg(long)]
    force_new_cluster: bool,

    /// Create the cluster with autolock on (SwarmKit's): every manager's raft encryption key is
    /// locked by the cluster's unlock key, printed once here (`swarmctl cluster unlock-key`
    /// shows it again); every manager's start needs it. Later: `cluster update --autolock`.
    #[arg(long)]
    autolock: bool,

    /// The cluster's unlock key (`SWMKEY-1-...`), for a locked manager.
    #[arg(long, env = "SWARMD_UNLOCK_KEY", hide_env_values = true)]
    unlock_key: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // A bare level keeps openraft's chatty per-election logs at warn; a full filter is taken as is.
    let directives = if args.log_level.contains(['=', ',']) {
        args.log_level.clone()
    } else {
        format!("{},openraft=warn", args.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let hostname = match args.hostname {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string()),
    };
    let control_socket = args
        .listen_control_api
        .unwrap_or_else(|| args.state_dir.join("swarmd.sock"));
    let config = NodeConfig {
        state_dir: args.state_dir,
        hostname,
        control_socket,
        listen_remote_api: args.listen_remote_api,
        advertise_remote_api: args.advertise_remote_api,
        raft_tick: Duration::from_millis(100),
        heartbeat_tick: args.heartbeat_tick,
        election_tick: args.election_tick,
        executor: ExecutorChoice::parse(&args.executor),
        join_addr: args.join_addr,
        join_token: args.join_token,
        engine_addr: args.engine_addr,
        force_new_cluster: args.force_new_cluster,
        autolock: args.autolock,
        unlock_key: args.unlock_key,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let signals = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            info!("signal received; shutting down (tasks keep running and are adopted on restart)");
            signals.cancel();
        });
        swarm_node::run(config, cancel)
            .await
            .context("running the node")
    })
}
