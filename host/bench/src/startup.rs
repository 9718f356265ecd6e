//! The startup workload: time from spawning `swarmd` (fresh state directory) until its control
//! API lists the node READY, over several runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::report::{Output, Row};
use crate::swarmd::{self, Swarmd};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `swarm-bench startup`.
#[derive(Debug, clap::Args)]
pub struct StartupArgs {
    /// The swarmd binary [default: the swarmd next to this binary].
    #[arg(long)]
    swarmd: Option<PathBuf>,
    /// Starts to measure, each with a fresh state directory.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

pub async fn run(args: StartupArgs, output: &mut Output) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let binary = swarmd::binary(args.swarmd)?;
    let mut times = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let started = Instant::now();
        let mut daemon = Swarmd::spawn(&binary)?;
        daemon.wait_ready(READY_TIMEOUT).await?;
        let elapsed = started.elapsed();
        daemon.stop().await?;
        eprintln!("startup: run {run}: {elapsed:?}");
        times.push(elapsed);
    }
    let Some((median, max)) = swarmd::median_and_max(&times) else {
        bail!("no run measured");
    };
    let min = times.iter().min().copied().unwrap_or_default();
    output.push(
        Row::new()
            .int("runs", times.len() as u64)
            .seconds("min_seconds", min)
            .seconds("median_seconds", median)
            .seconds("max_seconds", max),
    )
}
