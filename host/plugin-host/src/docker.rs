//! The `docker` capability: one container per task on the node's container engine, through the
//! Docker Engine API (bollard) at the host's `engine_addr`.
//!
//! A task's container carries the label `io.swarm.task.id=<task id>` (added by the host whatever
//! the guest asks), so the host finds it again by label after an agent restart: that is how tasks
//! are adopted. The host keeps a cache of task id to container id, and a watcher per started (or
//! adopted) container: a background `wait` on the engine that publishes the exit status on the
//! task's channel, which is how the executor's `inspect` gets called when a container ends.
//!
//! Every engine failure becomes a string naming the operation, the task and the engine address;
//! nothing here panics on what the engine or the guest sends.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HostConfig, MountType, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{OnceCell, watch};

use crate::bindings::executor_world::swarm::plugin::docker::Host;
use crate::bindings::types::{
    ContainerSpec, EngineInfo, ExitStatus, MountKind, Platform, TaskLimits, TaskState,
};
use crate::capabilities::{LogStream, check_task_id};
use crate::state::{CallClock, StoreState};

/// The engine address used when a node names none.
pub const DEFAULT_ENGINE_ADDR: &str = "unix:///var/run/docker.sock";
/// The label tying a container to its task; the host always sets it.
pub const TASK_LABEL: &str = "io.swarm.task.id";

/// Longest wait for the engine to answer its first request (version negotiation).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the engine to answer any other request (a stop adds its own timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before a watcher asks again after the engine failed to answer.
const WATCH_RETRY: Duration = Duration::from_secs(1);
/// Longest container name accepted from a guest.
const MAX_NAME_LEN: usize = 200;
/// Most labels and environment variables accepted from a guest, each.
const MAX_ITEMS: usize = 1024;

/// Containers of this host's tasks, on one engine.
pub(crate) struct DockerEngine {
    shared: Arc<Shared>,
}

struct Shared {
    /// `None` when the node has no engine.
    addr: Option<String>,
    /// Connected and version-negotiated on first use; a failed attempt is retried next time.
    client: OnceCell<Docker>,
    /// Tasks seen by this host: their container and its watcher.
    tasks: Mutex<HashMap<String, Known>>,
}

struct Known {
    container_id: String,
    watcher: Option<Watcher>,
}

struct Watcher {
    exit: watch::Sender<Option<ExitStatus>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for known in self.tasks.get_mut().values() {
            if let Some(watcher) = &known.watcher {
                watcher.task.abort();
            }
        }
    }
}

/// Connects to the engine at `addr` and negotiates the API version, within `timeout`; returns
/// the engine's version (e.g. `20.10.24+dfsg1`). For nodes deciding whether an engine answers.
pub async fn probe_engine(addr: &str, timeout: Duration) -> Result<String, String> {
    let docker = tokio::time::timeout(timeout, connect(addr))
        .await
        .map_err(|_| {
            format!("the container engine at {addr} did not answer within {timeout:?}")
        })??;
    let version = tokio::time::timeout(timeout, docker.version())
        .await
        .map_err(|_| format!("the container engine at {addr} did not answer within {timeout:?}"))?
        .map_err(|e| format!("asking the container engine at {addr} for its version: {e}"))?;
    Ok(version.version.unwrap_or_default())
}

/// A client for `addr` (`unix:///path`, a bare `/path`, `tcp://host:port`, `http://host:port`)
/// that has negotiated the API version with the engine.
async fn connect(addr: &str) -> Result<Docker, String> {
    let timeout = REQUEST_TIMEOUT.as_secs();
    let version = bollard::API_DEFAULT_VERSION;
    let client = if addr.starts_with("unix://") || addr.starts_with('/') {
        let path = addr.trim_start_matches("unix://");
        Docker::connect_with_unix(path, timeout, version)
    } else if addr.starts_with("tcp://") || addr.starts_with("http://") {
        Docker::connect_with_http(addr, timeout, version)
    } else {
        return Err(format!(
            "unsupported container engine address {addr:?}: use unix:///path/to/docker.sock, \
             tcp://host:port or http://host:port"
        ));
    }
    .map_err(|e| format!("cannot reach the container engine at {addr}: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.negotiate_version()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!(
            "cannot reach the container engine at {addr}: {}",
            describe(&e)
        )),
        Err(_) => Err(format!(
            "cannot reach the container engine at {addr}: no answer within {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// An engine error as one line: the server's message without the HTTP wrapping.
fn describe(error: &EngineError) -> String {
    match error {
        EngineError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}

fn status_code(error: &EngineError) -> Option<u16> {
    match error {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl DockerEngine {
    pub(crate) fn new(engine_addr: Option<String>) -> DockerEngine {
        DockerEngine {
            shared: Arc::new(Shared {
                addr: engine_addr,
                client: OnceCell::new(),
                tasks: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn addr(&self) -> &str {
        self.shared.addr.as_deref().unwrap_or("(none)")
    }

    /// `"<op> for task <id> on <engine>: <detail>"`.
    fn fail(&self, op: &str, task_id: &str, detail: impl std::fmt::Display) -> String {
        format!(
            "docker {op} for task {task_id} (engine {}): {detail}",
            self.addr()
        )
    }

    async fn client(&self) -> Result<Docker, String> {
        let Some(addr) = &self.shared.addr else {
            return Err("no container engine is configured on this node".to_owned());
        };
        self.shared
            .client
            .get_or_try_init(|| connect(addr))
            .await
            .cloned()
    }

    /// The channel that gets the task's exit status when its container ends, if the task's
    /// container is watched (started or adopted by this host).
    pub(crate) fn exit_channel(
        &self,
        task_id: &str,
    ) -> Option<watch::Receiver<Option<ExitStatus>>> {
        let tasks = self.shared.tasks.lock();
        let watcher = tasks.get(task_id)?.watcher.as_ref()?;
        Some(watcher.exit.subscribe())
    }

    /// The task's container and what the engine says of it; `None` when it has none. Looks in
    /// the cache first, then by label (adoption), and caches what it finds.
    async fn find(
        &self,
        docker: &Docker,
        task_id: &str,
    ) -> Result<Option<ContainerInspectResponse>, EngineError> {
        let cached = self
            .shared
            .tasks
            .lock()
            .get(task_id)
            .map(|known| known.container_id.clone());
        if let Some(id) = cached {
            match docker.inspect_container(&id, None).await {
                Ok(found) => return Ok(Some(found)),
                Err(e) if status_code(&e) == Some(404) => self.forget(task_id),
                Err(e) => return Err(e),
            }
        }
        let filters = HashMap::from([("label", vec![format!("{TASK_LABEL}={task_id}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = docker.list_containers(Some(options)).await?;
        // Newest first, should there ever be more than one.
        let newest = listed
            .into_iter()
            .filter_map(|c| Some((c.created.unwrap_or(0), c.id?)))
            .max();
        let Some((_, id)) = newest else {
            return Ok(None);
        };
        match docker.inspect_container(&id, None).await {
            Ok(found) => {
                self.remember(task_id, &id);
                Ok(Some(found))
            }
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remember(&self, task_id: &str, container_id: &str) {
        let mut tasks = self.shared.tasks.lock();
        let known = tasks.entry(task_id.to_owned()).or_insert_with(|| Known {
            container_id: container_id.to_owned(),
            watcher: None,
        });
        if known.container_id != container_id {
            if let Some(watcher) = known.watcher.take() {
                watcher.task.abort();
            }
            known.container_id = container_id.to_owned();
        }
    }

    fn forget(&self, task_id: &str) {
        if let Some(known) = self.shared.tasks.lock().remove(task_id)
            && let Some(watcher) = known.watcher
        {
            watcher.task.abort();
        }
    }

    /// Starts the watcher of a running container unless it has one.
    fn watch(&self, docker: &Docker, task_id: &str, container_id: &str) {
        let mut tasks = self.shared.tasks.lock();
        let known = tasks.entry(task_id.to_owned()).or_insert_with(|| Known {
            container_id: container_id.to_owned(),
            watcher: None,
        });
        if known.watcher.is_some() && known.container_id == container_id {
            return;
        }
        if let Some(old) = known.watcher.take() {
            old.task.abort();
        }
        known.container_id = container_id.to_owned();
        let (exit, _) = watch::channel(None);
        let task = tokio::spawn(watch_container(
            Arc::downgrade(&self.shared),
            docker.clone(),
            task_id.to_owned(),
            container_id.to_owned(),
            exit.clone(),
        ));
        known.watcher = Some(Watcher {
            exit,
            task: task.abort_handle(),
        });
    }

    pub(crate) async fn info(&self) -> Result<EngineInfo, String> {
        let docker = self.client().await?;
        let info = docker
            .info()
            .await
            .map_err(|e| format!("docker info (engine {}): {}", self.addr(), describe(&e)))?;
        let nano_cpus = info.ncpu.unwrap_or(0).saturating_mul(1_000_000_000);
        let labels = info
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(|label| match label.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (label, String::new()),
            })
            .collect();
        Ok(EngineInfo {
            hostname: info.name.unwrap_or_default(),
            version: format!("docker {}", info.server_version.unwrap_or_default()),
            platform: Platform {
                os: info.os_type.unwrap_or_else(|| "linux".to_owned()),
                arch: go_arch(info.architecture.as_deref().unwrap_or_default()),
            },
            nano_cpus,
            memory_bytes: info.mem_total.unwrap_or(0),
            labels,
        })
    }

    pub(crate) async fn create(
        &self,
        task_id: &str,
        name: &str,
        spec: ContainerSpec,
        limits: TaskLimits,
    ) -> Result<(), String> {
        check_task_id(task_id)?;
        check_container_name(name).map_err(|e| self.fail("create", task_id, e))?;
        let docker = self
            .client()
            .await
            .map_err(|e| self.fail("create", task_id, e))?;
        let body =
            create_body(task_id, spec, limits).map_err(|e| self.fail("create", task_id, e))?;
        let image = body.image.clone().unwrap_or_default();
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        match docker.create_container(Some(options), body).await {
            Ok(created) => {
                self.remember(task_id, &created.id);
                Ok(())
            }
            Err(e) if status_code(&e) == Some(409) => {
                // Created before (the agent restarted before recording it): the same task's
                // container, not yet started, is what was asked for.
                match self.find(&docker, task_id).await {
                    Ok(Some(found))
                        if state_of(&found) == Some(ContainerStateStatusEnum::CREATED) =>
                    {
                        Ok(())
                    }
                    _ => Err(self.fail(
                        "create",
                        task_id,
                        format!("the container name {name:?} is taken: {}", describe(&e)),
                    )),
                }
            }
            Err(e) if status_code(&e) == Some(404) => Err(self.fail(
                "create",
                task_id,
                format!(
                    "image {image:?} is not present on the engine (nodes pull no images; load or \
                     build it there first): {}",
                    describe(&e)
                ),
            )),
            Err(e) => Err(self.fail("create", task_id, describe(&e))),
        }
    }

    pub(crate) async fn start(&self, task_id: &str) -> Result<(), String> {
        check_task_id(task_id)?;
        let docker = self
            .client()
            .await
            .map_err(|e| self.fail("start", task_id, e))?;
        let found = self
            .find(&docker, task_id)
            .await
            .map_err(|e| self.fail("start", task_id, describe(&e)))?
            .ok_or_else(|| self.fail("start", task_id, "the task has no container"))?;
        let id = found.id.unwrap_or_default();
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| self.fail("start", task_id, describe(&e)))?;
        self.watch(&docker, task_id, &id);
        Ok(())
    }

    pub(crate) async fn stop(&self, task_id: &str, timeout_ms: u64) -> Result<(), String> {
        check_task_id(task_id)?;
        let docker = self
            .client()
            .await
            .map_err(|e| self.fail("stop", task_id, e))?;
        let found = self
            .find(&docker, task_id)
            .await
            .map_err(|e| self.fail("stop", task_id, describe(&e)))?
            .ok_or_else(|| self.fail("stop", task_id, "the task has no container"))?;
        let id = found.id.unwrap_or_default();
        // The engine counts whole seconds; round up so a task gets at least what was asked.
        let seconds = timeout_ms.div_ceil(1000).min(i32::MAX as u64);
        let options = StopContainerOptionsBuilder::new()
            .t(i32::try_from(seconds).unwrap_or(i32::MAX))
            .build();
        // The engine answers only once the container has stopped.
        let patient = docker
            .clone()
            .with_timeout(REQUEST_TIMEOUT + Duration::from_secs(seconds));
        match patient.stop_container(&id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.fail("stop", task_id, describe(&e))),
        }
    }

    pub(crate) async fn status(&self, task_id: &str) -> TaskState {
        if check_task_id(task_id).is_err() {
            return TaskState::Missing;
        }
        let docker = match self.client().await {
            Ok(docker) => docker,
            Err(e) => return self.unknown_status(task_id, &e),
        };
        let found = match self.find(&docker, task_id).await {
            Ok(Some(found)) => found,
            Ok(None) => return TaskState::Missing,
            Err(e) => return self.unknown_status(task_id, &describe(&e)),
        };
        let id = found.id.clone().unwrap_or_default();
        let state = found.state.unwrap_or_default();
        match state.status {
            Some(ContainerStateStatusEnum::CREATED) => TaskState::Prepared,
            Some(
                ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::PAUSED
                | ContainerStateStatusEnum::RESTARTING
                | ContainerStateStatusEnum::STOPPING,
            ) => {
                // Adoption: a container running since before this host started gets a watcher.
                self.watch(&docker, task_id, &id);
                TaskState::Running
            }
            Some(
                ContainerStateStatusEnum::EXITED
                | ContainerStateStatusEnum::DEAD
                | ContainerStateStatusEnum::REMOVING,
            ) => TaskState::Exited(exit_of(&state)),
            Some(ContainerStateStatusEnum::EMPTY) | None => {
                tracing::warn!(task_id, container = %id, "the engine reports no container state");
                TaskState::Missing
            }
        }
    }

    /// What to say when the engine does not answer: a task this host knows keeps its `running`
    /// (its watcher reports the truth once the engine is back); any other is unknown.
    fn unknown_status(&self, task_id: &str, error: &str) -> TaskState {
        tracing::warn!(task_id, engine = %self.addr(), %error, "cannot read a container's state");
        let watched = self
            .shared
            .tasks
            .lock()
            .get(task_id)
            .and_then(|known| known.watcher.as_ref().map(|w| w.exit.borrow().is_none()));
        match watched {
            Some(true) => TaskState::Running,
            _ => TaskState::Missing,
        }
    }

    pub(crate) async fn remove(&self, task_id: &str) -> Result<(), String> {
        check_task_id(task_id)?;
        let docker = self
            .client()
            .await
            .map_err(|e| self.fail("remove", task_id, e))?;
        let found = self
            .find(&docker, task_id)
            .await
            .map_err(|e| self.fail("remove", task_id, describe(&e)))?;
        if let Some(found) = found {
            let id = found.id.unwrap_or_default();
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(&id, Some(options)).await {
                Ok(()) => {}
                Err(e) if status_code(&e) == Some(404) => {}
                Err(e) => return Err(self.fail("remove", task_id, describe(&e))),
            }
        }
        self.forget(task_id);
        Ok(())
    }

    /// The tail of the task's container log; `Ok(None)` when no engine is configured or the
    /// task has no container.
    pub(crate) async fn logs(
        &self,
        task_id: &str,
        stream: LogStream,
        tail_bytes: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        if self.shared.addr.is_none() {
            return Ok(None);
        }
        check_task_id(task_id)?;
        let docker = self
            .client()
            .await
            .map_err(|e| self.fail("logs", task_id, e))?;
        let Some(found) = self
            .find(&docker, task_id)
            .await
            .map_err(|e| self.fail("logs", task_id, describe(&e)))?
        else {
            return Ok(None);
        };
        let id = found.id.unwrap_or_default();
        // Every line holds at least one byte, so the last `tail_bytes` lines hold the last
        // `tail_bytes` bytes.
        let tail = if tail_bytes == 0 {
            "all".to_owned()
        } else {
            tail_bytes.to_string()
        };
        let options = LogsOptionsBuilder::new()
            .stdout(stream == LogStream::Stdout)
            .stderr(stream == LogStream::Stderr)
            .tail(&tail)
            .build();
        let mut output = docker.logs(&id, Some(options));
        let mut bytes = Vec::new();
        while let Some(chunk) = output.next().await {
            let chunk = chunk.map_err(|e| self.fail("logs", task_id, describe(&e)))?;
            bytes.extend_from_slice(&chunk.into_bytes());
            if tail_bytes > 0 && bytes.len() as u64 > tail_bytes.saturating_mul(2) {
                keep_tail(&mut bytes, tail_bytes);
            }
        }
        if tail_bytes > 0 {
            keep_tail(&mut bytes, tail_bytes);
        }
        Ok(Some(bytes))
    }
}

fn keep_tail(bytes: &mut Vec<u8>, tail_bytes: u64) {
    let keep = usize::try_from(tail_bytes).unwrap_or(usize::MAX);
    if bytes.len() > keep {
        bytes.drain(..bytes.len() - keep);
    }
}

/// Waits for the container to stop, then publishes its exit status; asks again while the engine
/// does not answer, and stops when the host is gone.
async fn watch_container(
    shared: Weak<Shared>,
    docker: Docker,
    task_id: String,
    container_id: String,
    exit: watch::Sender<Option<ExitStatus>>,
) {
    let options = || {
        Some(
            WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build(),
        )
    };
    loop {
        let outcome = docker.wait_container(&container_id, options()).next().await;
        let code = match outcome {
            Some(Ok(response)) => Some(response.status_code),
            // bollard turns a non-zero exit code into this error.
            Some(Err(EngineError::DockerContainerWaitError { code, .. })) => Some(code),
            Some(Err(e)) if status_code(&e) == Some(404) => {
                exit.send_replace(Some(ExitStatus {
                    code: -1,
                    signal: None,
                    message: "the container was removed".to_owned(),
                }));
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(%task_id, container = %container_id, error = %describe(&e), "waiting for a container; asking again");
                None
            }
            None => None,
        };
        if let Some(code) = code {
            // The inspected state says more (OOM kill, engine error) than the wait's code.
            let status = match docker.inspect_container(&container_id, None).await {
                Ok(found) => exit_of(&found.state.unwrap_or_default()),
                Err(_) => exit_with_code(i32::try_from(code).unwrap_or(-1), false, ""),
            };
            tracing::debug!(%task_id, container = %container_id, code = status.code, "container ended");
            exit.send_replace(Some(status));
            return;
        }
        if shared.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

fn state_of(found: &ContainerInspectResponse) -> Option<ContainerStateStatusEnum> {
    found.state.as_ref().and_then(|s| s.status)
}

fn exit_of(state: &ContainerState) -> ExitStatus {
    let code = state
        .exit_code
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(-1);
    exit_with_code(
        code,
        state.oom_killed.unwrap_or(false),
        state.error.as_deref().unwrap_or_default(),
    )
}

fn exit_with_code(code: i32, oom_killed: bool, error: &str) -> ExitStatus {
    let message = if oom_killed {
        format!("killed for using more memory than its limit (exit code {code})")
    } else if !error.is_empty() {
        format!("exited with code {code}: {error}")
    } else {
        format!("exited with code {code}")
    };
    ExitStatus {
        code,
        signal: None,
        message,
    }
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn check_container_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid container name {name:?}: use 1 to {MAX_NAME_LEN} characters from \
             [A-Za-z0-9_.-], starting with a letter or digit"
        ))
    }
}

/// The engine's create request for a task's container.
fn create_body(
    task_id: &str,
    spec: ContainerSpec,
    limits: TaskLimits,
) -> Result<ContainerCreateBody, String> {
    if spec.image.trim().is_empty() {
        return Err("the image is empty".to_owned());
    }
    if spec.env.len() > MAX_ITEMS || spec.labels.len() > MAX_ITEMS {
        return Err(format!(
            "at most {MAX_ITEMS} environment variables and {MAX_ITEMS} labels"
        ));
    }
    if let Some((name, _)) = spec
        .env
        .iter()
        .find(|(name, _)| name.is_empty() || name.contains('='))
    {
        return Err(format!("invalid environment variable name {name:?}"));
    }
    if limits.nano_cpus < 0 || limits.memory_bytes < 0 {
        return Err(format!(
            "negative limits (nano-cpus {}, memory {})",
            limits.nano_cpus, limits.memory_bytes
        ));
    }
    let mut labels: HashMap<String, String> = spec.labels.into_iter().collect();
    labels.insert(TASK_LABEL.to_owned(), task_id.to_owned());
    let mounts = spec
        .mounts
        .into_iter()
        .map(|m| bollard::models::Mount {
            target: Some(m.target),
            source: match m.kind {
                MountKind::Tmpfs => None,
                _ => Some(m.source),
            },
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                MountKind::Volume => MountType::VOLUME,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let non_empty = |v: Vec<String>| if v.is_empty() { None } else { Some(v) };
    Ok(ContainerCreateBody {
        image: Some(spec.image),
        entrypoint: non_empty(spec.entrypoint),
        cmd: non_empty(spec.args),
        env: Some(
            spec.env
                .into_iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
        ),
        labels: Some(labels),
        working_dir: spec.workdir,
        user: spec.user,
        hostname: spec.hostname,
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
            memory: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            // A memory limit is the most memory the task may use: no swap beyond it.
            memory_swap: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            mounts: (!mounts.is_empty()).then_some(mounts),
            // The orchestrator replaces tasks that end; the engine must not restart them.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// An engine's architecture (`uname -m`) as Go names it.
fn go_arch(arch: &str) -> String {
    match arch {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv6l" | "arm" => "arm",
        "i386" | "i686" | "386" => "386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_owned()
}

impl Host for StoreState {
    // Every operation awaits the engine: that time is not charged to the guest's deadline.

    async fn info(&mut self) -> Result<EngineInfo, String> {
        let capabilities = Arc::clone(&self.capabilities);
        CallClock::host(&mut self.clock, capabilities.docker.info()).await
    }

    async fn create(
        &mut self,
        task_id: String,
        name: String,
        spec: ContainerSpec,
        limits: TaskLimits,
    ) -> Result<(), String> {
        let capabilities = Arc::clone(&self.capabilities);
        let create = capabilities.docker.create(&task_id, &name, spec, limits);
        CallClock::host(&mut self.clock, create).await
    }

    async fn start(&mut self, task_id: String) -> Result<(), String> {
        let capabilities = Arc::clone(&self.capabilities);
        CallClock::host(&mut self.clock, capabilities.docker.start(&task_id)).await
    }

    async fn stop(&mut self, task_id: String, timeout_ms: u64) -> Result<(), String> {
        let capabilities = Arc::clone(&self.capabilities);
        let stop = capabilities.docker.stop(&task_id, timeout_ms);
        CallClock::host(&mut self.clock, stop).await
    }

    async fn status(&mut self, task_id: String) -> TaskState {
        let capabilities = Arc::clone(&self.capabilities);
        CallClock::host(&mut self.clock, capabilities.docker.status(&task_id)).await
    }

    async fn remove(&mut self, task_id: String) -> Result<(), String> {
        let capabilities = Arc::clone(&self.capabilities);
        CallClock::host(&mut self.clock, capabilities.docker.remove(&task_id)).await
    }
}

#[cfg(test)]
mod tests {
    //! Pure parts: names, exit statuses, the create request. The engine itself is exercised by
    //! `tests/it/docker.rs`.

    use super::*;
    use crate::bindings::types::Mount;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(check_container_name("web.1.abc_D-9").is_ok());
        for bad in [
            "",
            ".web",
            "-x",
            "a/b",
            "a b",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(check_container_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_statuses_say_why() {
        let oom = ContainerState {
            exit_code: Some(137),
            oom_killed: Some(true),
            ..Default::default()
        };
        let exit = exit_of(&oom);
        assert_eq!(exit.code, 137);
        assert!(
            exit.message.contains("more memory than its limit"),
            "{}",
            exit.message
        );
        let plain = exit_of(&ContainerState {
            exit_code: Some(3),
            ..Default::default()
        });
        assert_eq!(plain.message, "exited with code 3");
        assert_eq!(exit_of(&ContainerState::default()).code, -1);
    }

    #[test]
    fn the_task_label_wins_and_limits_become_host_config() {
        let spec = ContainerSpec {
            image: "img".into(),
            entrypoint: vec![],
            args: vec!["sleep".into(), "1".into()],
            env: vec![("A".into(), "1=2".into())],
            labels: vec![
                (TASK_LABEL.into(), "forged".into()),
                ("x".into(), "y".into()),
            ],
            mounts: vec![Mount {
                kind: MountKind::Tmpfs,
                source: "ignored".into(),
                target: "/t".into(),
                read_only: false,
            }],
            workdir: None,
            user: None,
            hostname: None,
        };
        let body = create_body(
            "task-1",
            spec,
            TaskLimits {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
            },
        )
        .expect("body");
        let labels = body.labels.expect("labels");
        assert_eq!(labels.get(TASK_LABEL).map(String::as_str), Some("task-1"));
        assert_eq!(labels.get("x").map(String::as_str), Some("y"));
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.env, Some(vec!["A=1=2".to_owned()]));
        let host = body.host_config.expect("host config");
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts[0].source, None);
        assert_eq!(mounts[0].typ, Some(MountType::TMPFS));
    }

    #[test]
    fn architectures_use_go_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("mips"), "mips");
    }
}
