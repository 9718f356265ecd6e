//! The startup workload: time from spawning `swarmd` (fresh state directory) until its control
//! API lists the node READY, over several runs: with an empty plugin cache (swarmd compiles its
//! wasm plugins) and with the cache a cold run left (as on a restart).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

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
    let cache = tempfile::tempdir().context("creating a directory for the plugin cache")?;
    // Cold: a fresh state dir, so swarmd compiles its plugins. Warm: a fresh state dir whose
    // plugin cache holds the components compiled by a cold run, as after a restart.
    for (label, seed) in [("cold", None), ("warm", Some(cache.path()))] {
        let mut times = Vec::with_capacity(args.runs);
        for run in 1..=args.runs {
            let started = Instant::now();
            let mut daemon = Swarmd::spawn_with_cache(&binary, seed)?;
            daemon.wait_ready(READY_TIMEOUT).await?;
            let elapsed = started.elapsed();
            if seed.is_none() && run == 1 {
                daemon.save_plugin_cache(cache.path())?;
            }
            daemon.stop().await?;
            eprintln!("startup: plugin cache {label}, run {run}: {elapsed:?}");
            times.push(elapsed);
        }
        let Some((median, max)) = swarmd::median_and_max(&times) else {
            bail!("no run measured");
        };
        let min = times.iter().min().copied().unwrap_or_default();
        output.push(
            Row::new()
                .text("plugin_cache", label)
                .int("runs", times.len() as u64)
                .seconds("min_seconds", min)
                .seconds("median_seconds", median)
                .seconds("max_seconds", max),
        )?;
    }
    Ok(())
}
