//! Helpers for the cross-crate suites: a `TestNode` that runs the real `swarmd` binary in a
//! temporary state directory, and runs the real `swarmctl` against it.
//!
//! The binaries come from the workspace's target directory (`cargo build --workspace --bins`,
//! which `scripts/test.sh` runs first); a missing binary fails with that instruction.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The directory holding the workspace's binaries (next to the test executable's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path of a workspace binary; panics with the command to build it if it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Poll `f` until it returns `Some`, or panic naming `what` after [`DEADLINE`].
pub fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// The result of one swarmctl run.
#[derive(Debug)]
pub struct Ctl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    fn from(o: Output) -> Self {
        Ctl {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the command succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "swarmctl failed: stdout={} stderr={}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A `swarmd` process with its own state directory.
pub struct TestNode {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestNode {
    /// Start swarmd in a fresh state directory and wait until its node is READY.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("swarm")
            .tempdir()
            .expect("tempdir");
        let mut node = TestNode { dir, child: None };
        node.spawn();
        node
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("swarmd.sock")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("swarmd.log"))
            .expect("log file");
        let child = Command::new(binary("swarmd"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .args([
                "--listen-remote-api",
                "127.0.0.1:0",
                "--hostname",
                "node-1",
                "--log-level",
                "info",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn swarmd");
        self.child = Some(child);
        poll("the node to be ready", || {
            let out = self.ctl(&["--format", "json", "node", "ls"]);
            (out.code == 0 && out.json()[0]["status"]["state"] == "ready").then_some(())
        });
    }

    /// Kill swarmd with SIGKILL (no shutdown at all), leaving its tasks running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start swarmd again on the same state directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Run swarmctl against this node.
    pub fn ctl(&self, args: &[&str]) -> Ctl {
        Ctl::from(
            Command::new(binary("swarmctl"))
                .arg("-s")
                .arg(self.socket())
                .args(args)
                .output()
                .expect("run swarmctl"),
        )
    }

    /// Tasks of a service as JSON objects (all, history included).
    pub fn tasks(&self, service: &str) -> Vec<Value> {
        let out = self
            .ctl(&[
                "--format",
                "json",
                "task",
                "ls",
                "--all",
                "--service",
                service,
            ])
            .ok();
        out.json().as_array().cloned().unwrap_or_default()
    }

    /// Running tasks of a service.
    pub fn running(&self, service: &str) -> Vec<Value> {
        self.tasks(service)
            .into_iter()
            .filter(|t| t["status"]["state"] == "running" && t["desired_state"] == "running")
            .collect()
    }

    /// The pid of a task's process while that process still runs, from the executor's `pid`
    /// file (`<pid> <start time>`). The start time guards against pid reuse: a pid whose
    /// process ended may already belong to an unrelated process.
    pub fn task_pid(&self, task_id: &str) -> Option<i32> {
        let text =
            std::fs::read_to_string(self.state_dir().join("tasks").join(task_id).join("pid"))
                .ok()?;
        let mut fields = text.split_whitespace();
        let pid: i32 = fields.next()?.parse().ok()?;
        let start: u64 = fields.next()?.parse().ok()?;
        (proc_start_time(pid) == Some(start)).then_some(pid)
    }

    /// The swarmd log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("swarmd.log")).unwrap_or_default()
    }

    /// Every task process this node started that is still alive.
    pub fn live_task_pids(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(self.state_dir().join("tasks")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|id| self.task_pid(id)))
            .filter(|pid| process_alive(*pid))
            .collect()
    }
}

/// The start time of a process (field 22 of `/proc/<pid>/stat`), if it exists.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at field 3 (state).
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// The command line of a process.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Tasks outlive swarmd by design; a test must not leave them behind. Only processes
        // whose start time matches their pid file are ours (`task_pid` checks it: a pid whose
        // process ended may belong to anything now), and each task leads its own process group.
        let pids = self.live_task_pids();
        self.kill9();
        for pid in pids {
            if pid > 1 {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
        }
    }
}

/// A path inside the plugin artifacts (for `--wasi` tasks).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
