//! A `swarmd` started for one measurement: a fresh state directory, its log in a file beside it,
//! a control API client over the unix socket, and cleanup on every exit path. Dropping a
//! [`Swarmd`] kills the daemon and every task process it started (tasks of a stopped `swarmd`
//! keep running by design, to be adopted on restart).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hyper_util::rt::TokioIo;
use swarm_proto::pb;
use swarm_proto::pb::control_client::ControlClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::sys;

/// Where swarmd keeps compiled plugins, relative to the temporary directory.
const PLUGIN_CACHE: &str = "state/plugins/cache";
/// How often readiness is polled.
pub const POLL: Duration = Duration::from_millis(5);
/// How long `swarmd` gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `--swarmd PATH`, defaulting to the `swarmd` next to this binary.
pub fn binary(path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match path {
        Some(path) => path,
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name("swarmd"),
    };
    if !path.is_file() {
        bail!(
            "no swarmd at {}: build it with `cargo build --release -p swarmd` or pass --swarmd PATH",
            path.display()
        );
    }
    Ok(path)
}

/// A running `swarmd` and its temporary directory.
pub struct Swarmd {
    child: Child,
    /// Holds `state/` (the state dir) and `swarmd.log`; removed on drop.
    dir: tempfile::TempDir,
    /// Task processes seen so far, as (pid, start time): killed on drop if still alive.
    task_processes: BTreeSet<(u32, u64)>,
}

impl Swarmd {
    /// Starts `swarmd --state-dir <tmp>/state --listen-remote-api 127.0.0.1:0`.
    pub fn spawn(binary: &Path) -> anyhow::Result<Self> {
        Self::spawn_with_cache(binary, None)
    }

    /// Like [`spawn`](Self::spawn), with the state dir's compiled-plugin cache
    /// (`plugins/cache/`) first filled from the files in `cache`.
    pub fn spawn_with_cache(binary: &Path, cache: Option<&Path>) -> anyhow::Result<Self> {
        Self::spawn_with_args(binary, cache, &["--listen-remote-api", "127.0.0.1:0"])
    }

    /// Starts swarmd with a fresh state dir (its plugin cache seeded from `cache`) and `args`.
    pub fn spawn_with_args(
        binary: &Path,
        cache: Option<&Path>,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temporary directory for swarmd")?;
        if let Some(cache) = cache {
            copy_files(cache, &dir.path().join(PLUGIN_CACHE))?;
        }
        let log_path = dir.path().join("swarmd.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let err_log = log.try_clone().context("sharing the swarmd log file")?;
        let child = Command::new(binary)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            dir,
            task_processes: BTreeSet::new(),
        })
    }

    /// Copies the compiled-plugin cache to `to` (for a later [`spawn_with_cache`](Self::spawn_with_cache)).
    pub fn save_plugin_cache(&self, to: &Path) -> anyhow::Result<()> {
        copy_files(&self.dir.path().join(PLUGIN_CACHE), to)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// SIGKILL, no shutdown at all (its tasks are killed when this value is dropped).
    pub fn kill9(&mut self) {
        self.record_task_processes();
        self.task_processes.extend(sys::children(self.child.id()));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("swarmd.sock")
    }

    /// swarmd's whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("swarmd.log")).unwrap_or_default()
    }

    /// The end of swarmd's log, for error messages.
    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("checking on swarmd")? {
            bail!(
                "swarmd exited ({status}); the end of its log:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Polls until the control API lists this node READY; returns the connected client.
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<ControlClient<Channel>> {
        let deadline = Instant::now() + timeout;
        let mut client: Option<ControlClient<Channel>> = None;
        loop {
            self.check_running()?;
            if client.is_none() && self.socket().exists() {
                client = connect(&self.socket()).await.ok();
            }
            if let Some(c) = client.as_mut()
                && let Ok(response) = c.list_nodes(pb::ListNodesRequest::default()).await
            {
                let ready = pb::NodeState::Ready as i32;
                if response
                    .into_inner()
                    .nodes
                    .iter()
                    .any(|node| node.status.as_ref().is_some_and(|s| s.state == ready))
                {
                    return client.context("the control client vanished");
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the control API did not list a READY node within {timeout:?}; the end of swarmd's log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads the task processes from the state dir (`tasks/<id>/pid`) and remembers them.
    pub fn record_task_processes(&mut self) -> BTreeSet<(u32, u64)> {
        let mut found = BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(self.state_dir().join("tasks")) {
            for entry in entries.flatten() {
                if let Some(process) = sys::read_pid_file(&entry.path().join("pid")) {
                    found.insert(process);
                }
            }
        }
        self.task_processes.extend(found.iter().copied());
        found
    }

    /// SIGTERM, then SIGKILL after a grace period; then kills any task process left.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.record_task_processes();
        // Once swarmd has exited its tasks are no longer its children: note them now.
        self.task_processes.extend(sys::children(self.child.id()));
        sys::signal(self.child.id(), libc::SIGTERM, false).context("sending SIGTERM to swarmd")?;
        let deadline = Instant::now() + STOP_GRACE;
        while self
            .child
            .try_wait()
            .context("waiting for swarmd")?
            .is_none()
        {
            if Instant::now() > deadline {
                eprintln!("swarmd did not stop within {STOP_GRACE:?} of SIGTERM; killing it");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Drop kills what is left (swarmd if it is still there, task processes).
        Ok(())
    }

    fn kill_tasks(&mut self) {
        self.record_task_processes();
        // Task processes run in their task directory, inside the state dir.
        let inside = sys::processes_in(self.dir.path());
        self.task_processes.extend(inside);
        for &(pid, start) in &self.task_processes {
            if sys::is_alive(pid, start) {
                // Each task process leads its own process group (which holds its children); the
                // process itself too, in case it was caught before it made its group.
                let _ = sys::signal(pid, libc::SIGKILL, true);
                let _ = sys::signal(pid, libc::SIGKILL, false);
            }
        }
    }
}

impl Drop for Swarmd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Freeze swarmd so that it starts nothing more, then take its children (a task
            // process it started but had not yet recorded in a pid file is one of them).
            let _ = sys::signal(self.child.id(), libc::SIGSTOP, false);
            sys::wait_stopped(self.child.id(), Duration::from_secs(2));
            self.task_processes.extend(sys::children(self.child.id()));
            self.kill_tasks();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.kill_tasks();
    }
}

/// Copies the plain files of directory `from` into `to` (created if missing).
fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let entries = std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let target = to.join(entry.file_name());
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!("copying {} to {}", entry.path().display(), target.display())
            })?;
        }
    }
    Ok(())
}

/// A control API client over the unix socket at `path`.
pub async fn connect(path: &Path) -> anyhow::Result<ControlClient<Channel>> {
    // The URI is a placeholder: the connector always opens the unix socket.
    let path = path.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { UnixStream::connect(path).await.map(TokioIo::new) }
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_with_connector(connector)
        .await
        .context("connecting to the control socket")?;
    Ok(ControlClient::new(channel))
}

/// Median and maximum of some durations (the median of an even count is the mean of the middle two).
pub fn median_and_max(values: &[Duration]) -> Option<(Duration, Duration)> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let max = *sorted.last()?;
    let middle = sorted.len() / 2;
    let median = if !sorted.len().is_multiple_of(2) {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2
    };
    Some((median, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median_and_max(&[ms(3), ms(1), ms(2)]), Some((ms(2), ms(3))));
        assert_eq!(
            median_and_max(&[ms(4), ms(1), ms(2), ms(3)]),
            Some((Duration::from_micros(2500), ms(4)))
        );
        assert_eq!(median_and_max(&[]), None);
    }
}
