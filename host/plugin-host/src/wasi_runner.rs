//! The `wasi-runner` capability: runs tasks that are WASI command components (`wasi:cli/run`) on
//! tokio tasks, each in its own store with a memory limit, sandboxed (no preopened directories,
//! no network, arguments and environment from the spec), logging into the task's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::Instrument;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::cli::OutputFile;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::executor_world::swarm::plugin::wasi_runner::Host;
use crate::bindings::types::{ExitStatus, TaskLimits, TaskState, WasiSpec};
use crate::capabilities::{read_exit_file, task_dir, write_exit_file};
use crate::engine::ComponentCache;
use crate::state::{CallClock, MemoryLimiter, StoreState};

/// Memory limit of a wasi task whose limits set none.
pub const DEFAULT_TASK_MEMORY_BYTES: usize = 256 << 20;
/// Marks a task directory as a wasi task's (so a restarted host knows the task was lost).
const MARKER_FILE: &str = "wasi";

struct Prepared {
    pre: CommandPre<TaskStore>,
    spec: WasiSpec,
    memory_limit_bytes: usize,
}

enum Entry {
    Prepared(Box<Prepared>),
    Started {
        exit: watch::Receiver<Option<ExitStatus>>,
        sender: Arc<watch::Sender<Option<ExitStatus>>>,
        abort: tokio::task::AbortHandle,
    },
}

pub(crate) struct WasiRunner {
    tasks_dir: PathBuf,
    cache: ComponentCache,
    linker: Linker<TaskStore>,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Store data of a running wasi task.
pub(crate) struct TaskStore {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for TaskStore {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiRunner {
    pub(crate) fn new(tasks_dir: &Path, cache: ComponentCache) -> Result<WasiRunner, String> {
        let mut linker = Linker::new(cache.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("linking WASI for tasks: {e:?}"))?;
        Ok(WasiRunner {
            tasks_dir: tasks_dir.to_owned(),
            cache,
            linker,
            entries: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn prepare(
        &self,
        task_id: &str,
        spec: WasiSpec,
        limits: TaskLimits,
    ) -> Result<(), String> {
        let dir = task_dir(&self.tasks_dir, task_id)?;
        if !matches!(self.state(task_id), TaskState::Missing) {
            return Err(format!("task {task_id} already exists"));
        }
        let bytes = std::fs::read(&spec.module_path)
            .map_err(|e| format!("reading the component {:?}: {e}", spec.module_path))?;
        let component = self
            .cache
            .get(&spec.module_path, &bytes)
            .map_err(|e| e.to_string())?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(CommandPre::new)
            .map_err(|e| {
                format!(
                    "{:?} is not a WASI command component (wasi:cli/run): {e}",
                    spec.module_path
                )
            })?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let memory_limit_bytes = usize::try_from(limits.memory_bytes)
            .ok()
            .filter(|&limit| limit > 0)
            .unwrap_or(DEFAULT_TASK_MEMORY_BYTES);
        self.entries.lock().insert(
            task_id.to_owned(),
            Entry::Prepared(Box::new(Prepared {
                pre,
                spec,
                memory_limit_bytes,
            })),
        );
        Ok(())
    }

    pub(crate) fn start(&self, task_id: &str) -> Result<(), String> {
        let dir = task_dir(&self.tasks_dir, task_id)?;
        let mut entries = self.entries.lock();
        let prepared = match entries.remove(task_id) {
            Some(Entry::Prepared(prepared)) => prepared,
            Some(started) => {
                entries.insert(task_id.to_owned(), started);
                return Err(format!("task {task_id} was already started"));
            }
            None => return Err(format!("task {task_id} is not prepared")),
        };
        if let Err(error) = std::fs::write(dir.join(MARKER_FILE), &prepared.spec.module_path) {
            tracing::warn!(task_id, %error, "cannot mark a wasi task's directory");
        }
        let (sender, exit) = watch::channel(None);
        let sender = Arc::new(sender);
        let task_sender = sender.clone();
        let task_id_owned = task_id.to_owned();
        let span = tracing::info_span!("wasi_task", task_id);
        let handle = tokio::spawn(
            async move {
                let exit = run(&task_id_owned, *prepared, &dir).await;
                write_exit_file(&dir, &exit);
                task_sender.send_if_modified(|current| set_once(current, exit));
            }
            .instrument(span),
        );
        entries.insert(
            task_id.to_owned(),
            Entry::Started {
                exit,
                sender,
                abort: handle.abort_handle(),
            },
        );
        Ok(())
    }

    /// The exit channel of a started task; `None` when the runner has not started it.
    pub(crate) fn exit_receiver(
        &self,
        task_id: &str,
    ) -> Option<watch::Receiver<Option<ExitStatus>>> {
        match self.entries.lock().get(task_id) {
            Some(Entry::Started { exit, .. }) => Some(exit.clone()),
            _ => None,
        }
    }

    pub(crate) fn kill(&self, task_id: &str) -> Result<(), String> {
        let dir = task_dir(&self.tasks_dir, task_id)?;
        match self.entries.lock().get(task_id) {
            Some(Entry::Started { sender, abort, .. }) => {
                abort.abort();
                let killed = ExitStatus {
                    code: 137,
                    signal: Some(9),
                    message: "killed".to_owned(),
                };
                if sender.send_if_modified(|current| set_once(current, killed.clone())) {
                    write_exit_file(&dir, &killed);
                }
                Ok(())
            }
            _ => Err(format!("task {task_id} is not running")),
        }
    }

    pub(crate) fn remove(&self, task_id: &str) -> Result<(), String> {
        let dir = task_dir(&self.tasks_dir, task_id)?;
        if let Some(Entry::Started { abort, .. }) = self.entries.lock().remove(task_id) {
            abort.abort();
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(format!("removing {}: {error}", dir.display())),
        }
    }

    /// The task's state; a wasi task of an earlier run of the host is reported as exited.
    pub(crate) fn state(&self, task_id: &str) -> TaskState {
        let Ok(dir) = task_dir(&self.tasks_dir, task_id) else {
            return TaskState::Missing;
        };
        match self.entries.lock().get(task_id) {
            Some(Entry::Prepared(_)) => return TaskState::Prepared,
            Some(Entry::Started { exit, .. }) => {
                return match &*exit.borrow() {
                    Some(status) => TaskState::Exited(status.clone()),
                    None => TaskState::Running,
                };
            }
            None => {}
        }
        if !dir.join(MARKER_FILE).is_file() {
            return TaskState::Missing;
        }
        TaskState::Exited(read_exit_file(&dir).unwrap_or_else(|| ExitStatus {
            code: -1,
            signal: None,
            message:
                "the wasi task was lost when its host stopped; its exit code is unknown".to_owned(),
        }))
    }

    /// Interrupts every running task (the host is going away and they run inside it).
    pub(crate) fn abort_all(&self) {
        for entry in self.entries.lock().values() {
            if let Entry::Started { abort, .. } = entry {
                abort.abort();
            }
        }
    }
}

fn set_once(current: &mut Option<ExitStatus>, exit: ExitStatus) -> bool {
    if current.is_some() {
        return false;
    }
    *current = Some(exit);
    true
}

async fn run(task_id: &str, prepared: Prepared, dir: &Path) -> ExitStatus {
    let failed = |message: String| ExitStatus {
        code: -1,
        signal: None,
        message,
    };
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .map_err(|e| format!("opening the {name} log: {e}"))
    };
    let (stdout, stderr) = match (open("stdout"), open("stderr")) {
        (Ok(stdout), Ok(stderr)) => (stdout, stderr),
        (Err(message), _) | (_, Err(message)) => return failed(message),
    };
    let program = Path::new(&prepared.spec.module_path)
        .file_name()
        .map_or_else(
            || "task".to_owned(),
            |name| name.to_string_lossy().into_owned(),
        );
    let mut argv = vec![program];
    argv.extend(prepared.spec.args.iter().cloned());
    let wasi = WasiCtxBuilder::new()
        .args(&argv)
        .envs(&prepared.spec.env)
        .stdout(OutputFile::new(stdout))
        .stderr(OutputFile::new(stderr))
        .build();
    let mut store = Store::new(
        prepared.pre.engine(),
        TaskStore {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit_bytes: prepared.memory_limit_bytes,
                hit: false,
            },
        },
    );
    store.limiter(|state| &mut state.limiter);
    // No deadline: a task runs until it ends or is killed; yield at every tick so it can be.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    let result = match prepared.pre.instantiate_async(&mut store).await {
        Ok(command) => command.wasi_cli_run().call_run(&mut store).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(Ok(())) => ExitStatus {
            code: 0,
            signal: None,
            message: "exited with code 0".to_owned(),
        },
        Ok(Err(())) => ExitStatus {
            code: 1,
            signal: None,
            message: "exited with an error".to_owned(),
        },
        Err(error) => {
            if let Some(exit) = error.downcast_ref::<I32Exit>() {
                ExitStatus {
                    code: exit.0,
                    signal: None,
                    message: format!("exited with code {}", exit.0),
                }
            } else if store.data().limiter.hit {
                failed(format!(
                    "exceeded its memory limit of {} bytes",
                    prepared.memory_limit_bytes
                ))
            } else {
                tracing::debug!(task_id, ?error, "wasi task trapped");
                failed(format!("trapped: {error}"))
            }
        }
    }
}

impl Host for StoreState {
    async fn prepare(
        &mut self,
        task_id: String,
        spec: WasiSpec,
        limits: TaskLimits,
    ) -> Result<(), String> {
        let capabilities = self.capabilities.clone();
        // Compiling the task's component is host work, not the plugin's.
        CallClock::host(&mut self.clock, async {
            capabilities.wasi.prepare(&task_id, spec, limits)
        })
        .await
    }

    async fn start(&mut self, task_id: String) -> Result<(), String> {
        self.capabilities.wasi.start(&task_id)
    }

    async fn kill(&mut self, task_id: String) -> Result<(), String> {
        self.capabilities.wasi.kill(&task_id)
    }

    async fn status(&mut self, task_id: String) -> TaskState {
        self.capabilities.wasi.state(&task_id)
    }

    async fn remove(&mut self, task_id: String) -> Result<(), String> {
        self.capabilities.wasi.remove(&task_id)
    }
}
