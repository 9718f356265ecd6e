//! Test helpers: agents on temporary state directories with the real default executor, task
//! builders, polling with deadlines and a guard that kills every task process at the end.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use swarm_agent::{Agent, AgentConfig, AgentStatus, ChannelMaker};
use swarm_plugin_host::{HostConfig, PluginHost};
use swarm_types::{
    Annotations, NodeDescription, ProcessSpec, Runtime, Task, TaskSpec, TaskState, TaskStatus,
    Timestamp,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const NODE_ID: &str = "node-1";
/// Upper bound for anything the tests wait for.
pub const LIMIT: Duration = Duration::from_secs(30);

/// One compile cache for the whole test binary, so the executor is compiled once.
fn shared_cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// A node's directories; kills the processes of its tasks when dropped, even on failure.
pub struct NodeDirs {
    pub root: tempfile::TempDir,
}

impl NodeDirs {
    pub fn new() -> NodeDirs {
        NodeDirs {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn tasks_dir(&self) -> PathBuf {
        self.root.path().join("tasks")
    }

    /// `(pid, start time)` of a task's process, from the executor's pid file.
    pub fn pid(&self, task_id: &str) -> Option<(u32, u64)> {
        let text = std::fs::read_to_string(self.tasks_dir().join(task_id).join("pid")).ok()?;
        let (pid, start) = text.trim().split_once(' ')?;
        Some((pid.parse().ok()?, start.parse().ok()?))
    }
}

impl Drop for NodeDirs {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.tasks_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let task_id = entry.file_name().to_string_lossy().into_owned();
            if let Some((pid, start)) = self.pid(&task_id)
                && is_alive(pid, start)
            {
                kill_group(pid);
            }
        }
    }
}

/// Whether `pid` still runs and is the process started at `start` (clock ticks since boot).
pub fn is_alive(pid: u32, start: u64) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = text.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("X");
    let started: u64 = fields.nth(18).and_then(|s| s.parse().ok()).unwrap_or(0);
    started == start && !matches!(state, "Z" | "X" | "x")
}

/// SIGKILL to a task's process group.
pub fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
}

fn host_config(tasks_dir: &Path) -> HostConfig {
    HostConfig {
        cache_dir: shared_cache_dir().to_owned(),
        tasks_dir: tasks_dir.to_owned(),
        call_deadline: Duration::from_secs(5),
        memory_limit_bytes: 64 << 20,
        engine_addr: None,
    }
}

/// An agent running in a tokio task, with the plugin host it uses.
pub struct RunningAgent {
    pub status: watch::Receiver<AgentStatus>,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), swarm_agent::AgentError>>,
    _host: PluginHost,
}

impl RunningAgent {
    /// Starts an agent (and a fresh plugin host, as after a restart of the process).
    pub async fn start(dirs: &NodeDirs, manager_addr: &str) -> RunningAgent {
        Self::start_with(dirs, &[manager_addr.to_string()], None).await
    }

    /// [`RunningAgent::start`] with several managers and, optionally, a channel maker.
    pub async fn start_with(
        dirs: &NodeDirs,
        managers: &[String],
        channels: Option<ChannelMaker>,
    ) -> RunningAgent {
        let host = PluginHost::new(host_config(&dirs.tasks_dir())).expect("plugin host");
        let executor = host
            .load_executor(
                "default",
                swarm_plugin_artifacts::EXECUTOR_DEFAULT,
                swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
            )
            .expect("load the default executor");
        let config = AgentConfig {
            node_id: NODE_ID.to_string(),
            managers: managers.to_vec(),
            channels,
            state_dir: dirs.state_dir(),
            files_dir: dirs.state_dir().join("files"),
            description: NodeDescription {
                hostname: "test-host".into(),
                ..Default::default()
            },
        };
        let agent = Agent::with_plugin(config, executor, host.clone())
            .await
            .expect("agent");
        let status = agent.status();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(agent.run(cancel.clone()));
        RunningAgent {
            status,
            cancel,
            handle,
            _host: host,
        }
    }

    /// Waits until the agent has registered at least `count` times and is registered now.
    pub async fn must_register(&self, count: u64) {
        let status = self.status.clone();
        must_eventually(&format!("registration #{count}"), LIMIT, || {
            let status = status.borrow();
            status.registered && status.registrations >= count
        })
        .await;
    }

    /// The manager the agent is registered with now.
    pub fn manager(&self) -> Option<String> {
        let status = self.status.borrow();
        status.manager_addr.clone().filter(|_| status.registered)
    }

    /// Stops the agent (tasks keep running) and drops its plugin host.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(LIMIT, self.handle)
            .await
            .expect("the agent stops in time")
            .expect("agent task")
            .expect("agent run");
    }
}

/// A process task assigned to the test node, desired RUNNING.
pub fn process_task(id: &str, command: &str, args: &[&str]) -> Task {
    Task {
        id: id.to_string(),
        meta: Default::default(),
        annotations: Annotations {
            name: "svc.1".into(),
            labels: Default::default(),
        },
        service_id: "svc".into(),
        slot: 1,
        node_id: NODE_ID.into(),
        spec: TaskSpec {
            runtime: Runtime::Process(ProcessSpec {
                command: command.into(),
                args: args.iter().map(|a| (*a).to_string()).collect(),
                env: Vec::new(),
                dir: None,
            }),
            resources: Default::default(),
            restart: Default::default(),
            placement: Default::default(),
            force_update: 0,
            secrets: vec![],
            configs: vec![],
        },
        spec_version: 1,
        executor: String::new(),
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Assigned,
            timestamp: Timestamp::now(),
            ..Default::default()
        },
    }
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub async fn must_eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    must_eventually_async(what, limit, || std::future::ready(condition())).await;
}

pub async fn must_eventually_async<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks that the statuses received for a task never went backward.
pub fn assert_forward(task_id: &str, statuses: &[TaskStatus]) {
    for pair in statuses.windows(2) {
        assert!(
            pair[0].state < pair[1].state,
            "statuses of {task_id} moved backward: {:?}",
            statuses.iter().map(|s| s.state).collect::<Vec<_>>()
        );
    }
}
