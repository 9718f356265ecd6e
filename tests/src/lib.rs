//! Helpers for the cross-crate suites: a `TestNode` that runs the real `swarmd` binary in a
//! temporary state directory, and runs the real `swarmctl` against it; a `TestCluster` of
//! several such processes (managers and workers) on loopback, joined with real join tokens over
//! mutual TLS.
//!
//! The binaries come from the workspace's target directory (`cargo build --workspace --bins`,
//! which `scripts/test.sh` runs first); a missing binary fails with that instruction.

pub mod linearizability;
pub mod netns;

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
pub fn poll<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    try_poll(f).unwrap_or_else(|| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

/// Poll `f` until it returns `Some`; `None` after [`DEADLINE`] (the caller says what failed,
/// e.g. with the nodes' logs).
pub fn try_poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= DEADLINE {
            return None;
        }
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

/// How a [`TestNode`] runs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub hostname: String,
    /// The remote API port (kept across restarts); 0 picks a free one.
    pub port: u16,
    /// `(manager address, join token)` for a node that joins a cluster.
    pub join: Option<(String, String)>,
    /// More swarmd flags.
    pub args: Vec<String>,
    /// `(network namespace, address)` to run swarmd in (see [`netns::Mesh`]); `None`: the
    /// host's loopback.
    pub netns: Option<(String, String)>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            hostname: "node-1".into(),
            port: 0,
            join: None,
            args: Vec::new(),
            netns: None,
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `swarmd` process with its own state directory.
pub struct TestNode {
    dir: tempfile::TempDir,
    child: Option<Child>,
    options: NodeOptions,
}

impl TestNode {
    /// Start swarmd in a fresh state directory (a new one-manager cluster) and wait until its
    /// node is READY.
    pub fn start() -> Self {
        let node = Self::spawn_with(NodeOptions::default());
        node.wait_ready_local();
        node
    }

    /// Start swarmd with `options` without waiting for anything.
    pub fn spawn_with(mut options: NodeOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("swarm")
            .tempdir()
            .expect("tempdir");
        if options.port == 0 {
            options.port = free_port();
        }
        let mut node = TestNode {
            dir,
            child: None,
            options,
        };
        node.spawn();
        node
    }

    /// The address other nodes join through.
    pub fn addr(&self) -> String {
        let ip = self
            .options
            .netns
            .as_ref()
            .map_or("127.0.0.1", |(_, ip)| ip);
        format!("{ip}:{}", self.options.port)
    }

    pub fn hostname(&self) -> &str {
        &self.options.hostname
    }

    /// Wait until this node's own control socket lists it READY (a manager).
    pub fn wait_ready_local(&self) {
        let hostname = self.options.hostname.clone();
        poll(&format!("{hostname} to be ready"), || {
            let out = self.ctl(&["--format", "json", "node", "ls"]);
            if out.code != 0 {
                return None;
            }
            out.json()
                .as_array()?
                .iter()
                .any(|n| {
                    n["description"]["hostname"] == hostname.as_str()
                        && n["status"]["state"] == "ready"
                })
                .then_some(())
        });
    }

    /// Whether the swarmd process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
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
        // `ip netns exec` execs swarmd in the namespace: the child is swarmd itself.
        let mut command = match &self.options.netns {
            Some((namespace, _)) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", namespace])
                    .arg(binary("swarmd"));
                command
            }
            None => Command::new(binary("swarmd")),
        };
        command
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--listen-remote-api")
            .arg(self.addr())
            .arg("--hostname")
            .arg(&self.options.hostname)
            .args(["--log-level", "info"]);
        if let Some((addr, token)) = &self.options.join {
            command
                .args(["--join-addr", addr])
                .arg("--join-token")
                .arg(token);
        }
        let child = command
            .args(&self.options.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn swarmd");
        self.child = Some(child);
    }

    /// Kill swarmd with SIGKILL (no shutdown at all), leaving its tasks running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start swarmd again on the same state directory (and port) and, for the node of a
    /// one-node cluster, wait until it is READY.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        if self.options.join.is_none() {
            self.wait_ready_local();
        }
    }

    /// Start swarmd again without waiting (any role).
    pub fn respawn(&mut self) {
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
        // The tasks' secret and config files (on the /dev/shm tmpfs) go with the node.
        if let Ok(id) = std::fs::read_to_string(self.state_dir().join("node-id")) {
            let _ = std::fs::remove_dir_all(format!("/dev/shm/swarmd-{}", id.trim()));
        }
    }
}

/// A path inside the plugin artifacts (for `--wasi` tasks).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Several swarmd processes on loopback forming one cluster: `managers[0]` created it, the
/// other managers and the workers joined with the cluster's join tokens.
pub struct TestCluster {
    pub managers: Vec<TestNode>,
    pub workers: Vec<TestNode>,
}

/// Swarmd flags every node of a [`TestCluster`] gets: 100 ms raft ticks as in production, an
/// election after 1-2 s of silence.
const CLUSTER_ARGS: &[&str] = &["--heartbeat-tick", "1", "--election-tick", "10"];

impl TestCluster {
    /// Start `managers` managers (at least 1) and `workers` workers, and wait until every node
    /// is READY. Agents heartbeat every second (so a dead node is DOWN after 3 s).
    pub fn start(managers: usize, workers: usize) -> Self {
        Self::start_with(managers, workers, None)
    }

    /// A cluster of one manager in each namespace of `mesh` (manager-i in namespace i), so a
    /// test can partition them.
    pub fn start_in(mesh: &netns::Mesh) -> Self {
        Self::start_with(mesh.size(), 0, Some(mesh))
    }

    fn start_with(managers: usize, workers: usize, mesh: Option<&netns::Mesh>) -> Self {
        assert!(managers >= 1, "a cluster needs a manager");
        let place = |i: usize| mesh.map(|m| (m.namespace(i), m.ip(i)));
        let first = TestNode::spawn_with(NodeOptions {
            hostname: "manager-1".into(),
            args: CLUSTER_ARGS.iter().map(|s| s.to_string()).collect(),
            netns: place(1),
            ..Default::default()
        });
        first.wait_ready_local();
        first
            .ctl(&["cluster", "update", "--heartbeat-period", "1s"])
            .ok();
        let mut cluster = TestCluster {
            managers: vec![first],
            workers: Vec::new(),
        };
        for i in 2..=managers {
            cluster.add_manager_in(&format!("manager-{i}"), place(i));
        }
        for i in 1..=workers {
            cluster.add_worker(&format!("worker-{i}"));
        }
        cluster
    }

    /// The join token of `role` ("worker" or "manager"), from `cluster inspect`.
    pub fn token(&self, role: &str) -> String {
        let cluster = self
            .any_manager()
            .ctl(&["--format", "json", "cluster", "inspect"])
            .ok()
            .json();
        cluster["root_ca"][format!("{role}_token")]
            .as_str()
            .unwrap_or_else(|| panic!("no {role} token in {cluster}"))
            .to_string()
    }

    /// A manager whose process runs (for control calls: followers forward to the leader).
    pub fn any_manager(&self) -> &TestNode {
        self.managers
            .iter()
            .find(|m| m.child.is_some())
            .expect("a running manager")
    }

    /// Join a new manager and wait until it is READY.
    pub fn add_manager(&mut self, hostname: &str) -> &TestNode {
        self.add_manager_in(hostname, None)
    }

    fn add_manager_in(&mut self, hostname: &str, netns: Option<(String, String)>) -> &TestNode {
        let node = TestNode::spawn_with(NodeOptions {
            hostname: hostname.into(),
            join: Some((self.any_manager().addr(), self.token("manager"))),
            args: CLUSTER_ARGS.iter().map(|s| s.to_string()).collect(),
            netns,
            ..Default::default()
        });
        self.wait_ready(hostname);
        self.managers.push(node);
        self.managers.last().expect("pushed")
    }

    /// Join a new worker and wait until it is READY.
    pub fn add_worker(&mut self, hostname: &str) -> &TestNode {
        let node = TestNode::spawn_with(NodeOptions {
            hostname: hostname.into(),
            join: Some((self.any_manager().addr(), self.token("worker"))),
            args: CLUSTER_ARGS.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        self.wait_ready(hostname);
        self.workers.push(node);
        self.workers.last().expect("pushed")
    }

    /// `node ls` as JSON, asked of any running manager.
    pub fn nodes(&self) -> Vec<Value> {
        let out = self.any_manager().ctl(&["--format", "json", "node", "ls"]);
        if out.code != 0 {
            return Vec::new();
        }
        out.json().as_array().cloned().unwrap_or_default()
    }

    /// The node object of `hostname`.
    pub fn node(&self, hostname: &str) -> Option<Value> {
        self.nodes()
            .into_iter()
            .find(|n| n["description"]["hostname"] == hostname)
    }

    /// Wait until `hostname` is in state `state` ("ready", "down").
    pub fn wait_state(&self, hostname: &str, state: &str) {
        poll(&format!("{hostname} to be {state}"), || {
            self.node(hostname)
                .filter(|n| n["status"]["state"] == state)
                .map(|_| ())
        });
    }

    pub fn wait_ready(&self, hostname: &str) {
        self.wait_state(hostname, "ready");
    }

    /// The index in `managers` of the manager the cluster reports as leader, once there is one
    /// that runs.
    pub fn leader(&self) -> usize {
        poll("a leader", || {
            let leader = self
                .nodes()
                .into_iter()
                .find(|n| n["manager_status"]["leader"] == true)?;
            let hostname = leader["description"]["hostname"].as_str()?.to_string();
            self.managers
                .iter()
                .position(|m| m.hostname() == hostname && m.child.is_some())
        })
    }
}
