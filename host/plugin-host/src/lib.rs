//! swarm-plugin-host: loads WebAssembly scheduler and executor plugins (components implementing
//! `wit/`, package `swarm:plugin@0.1.0`) and provides their host capabilities.
//!
//! Invariants:
//! - Components are compiled once per content digest (sha256) and cached, serialized, under the
//!   cache directory; instances come from `InstancePre` and the pooling allocator.
//! - Every plugin call runs under a deadline (epoch interruption; time the guest spends awaiting
//!   the host, such as a process `wait`, is not charged) and a memory limit. A trap, a hang or an
//!   out-of-memory guest fails that call with a [`PluginError`]; the host keeps running and the
//!   instance is replaced (the scheduler's resident node set is re-sent from a host-side mirror).
//! - A component that does not implement the expected world is refused at load time with a
//!   message naming the missing interface.
//! - Plugins get capabilities, not ambient authority: schedulers import only `log`; executors
//!   `process`, `wasi-runner` and `log`. Both get WASI with no files, environment or network.
//! - Executors are stateless: every executor call runs in its own fresh instance, so calls run
//!   concurrently and a long `wait` never blocks another task. Task state lives in the
//!   capabilities, keyed by task id, and on disk under the tasks directory.
//! - No guest data is trusted: task ids are checked before they become paths, nothing unwraps.

mod bindings;
mod capabilities;
mod engine;
mod error;
mod executor;
mod log;
mod process;
mod scheduler;
mod state;
mod wasi_runner;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, InstancePre, Linker};

pub use bindings::types::{
    ExecutorInfo, ExitStatus, GroupResult, NodeAvailability, NodeInfo, NodeRole, NodeStatus,
    Placement, Platform, ProcessSpec, Resources, Task as ExecTask, TaskGroup, TaskLimits,
    TaskRuntime, TaskState as TaskRuntimeState, WasiSpec,
};
pub use capabilities::LogStream;
pub use engine::{EPOCH_TICK, MAX_PLUGIN_INSTANCES};
pub use error::PluginError;
pub use executor::ExecutorPlugin;
pub use scheduler::SchedulerPlugin;
pub use wasi_runner::DEFAULT_TASK_MEMORY_BYTES;

use capabilities::Capabilities;
use engine::{ComponentCache, EpochTicker};
use state::StoreState;

/// The interface a scheduler plugin must export.
pub const SCHEDULER_INTERFACE: &str = "swarm:plugin/scheduler@0.1.0";
/// The interface an executor plugin must export.
pub const EXECUTOR_INTERFACE: &str = "swarm:plugin/executor@0.1.0";

/// Smallest memory limit accepted: a Rust guest starts with about 1.1 MiB.
const MIN_MEMORY_LIMIT_BYTES: usize = 2 << 20;
const MAX_MEMORY_LIMIT_BYTES: usize = 4 << 30;
const MAX_CALL_DEADLINE: Duration = Duration::from_secs(3600);

/// How the plugin host runs; build it, then [`HostConfig::validate`] (done by [`PluginHost::new`]).
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Where compiled components are cached, by content digest.
    pub cache_dir: PathBuf,
    /// Where task files live: `<tasks_dir>/<task-id>/{stdout,stderr,pid,exit}`.
    pub tasks_dir: PathBuf,
    /// Guest time allowed to one plugin call (time awaiting the host is not counted).
    pub call_deadline: Duration,
    /// Linear memory allowed to one plugin instance.
    pub memory_limit_bytes: usize,
}

impl HostConfig {
    pub fn validate(&self) -> Result<(), PluginError> {
        if self.cache_dir.as_os_str().is_empty() {
            return Err(PluginError::Config("cache_dir is empty".to_owned()));
        }
        if self.tasks_dir.as_os_str().is_empty() {
            return Err(PluginError::Config("tasks_dir is empty".to_owned()));
        }
        if self.call_deadline < EPOCH_TICK || self.call_deadline > MAX_CALL_DEADLINE {
            return Err(PluginError::Config(format!(
                "call_deadline must be between {EPOCH_TICK:?} and {MAX_CALL_DEADLINE:?}, not {:?}",
                self.call_deadline
            )));
        }
        if !(MIN_MEMORY_LIMIT_BYTES..=MAX_MEMORY_LIMIT_BYTES).contains(&self.memory_limit_bytes) {
            return Err(PluginError::Config(format!(
                "memory_limit_bytes must be between {MIN_MEMORY_LIMIT_BYTES} and \
                 {MAX_MEMORY_LIMIT_BYTES}, not {}",
                self.memory_limit_bytes
            )));
        }
        Ok(())
    }
}

/// Loads plugins and runs their calls. Cheap to clone; everything is behind one `Arc`.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) config: HostConfig,
    pub(crate) plugins: ComponentCache,
    pub(crate) capabilities: Arc<Capabilities>,
    scheduler_linker: Linker<StoreState>,
    executor_linker: Linker<StoreState>,
    _ticker: EpochTicker,
}

impl Drop for HostInner {
    fn drop(&mut self) {
        // Wasi tasks run inside this process: they cannot outlive the host.
        self.capabilities.wasi.abort_all();
    }
}

impl PluginHost {
    /// Validates `config`, creates its directories and starts the engines and the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self, PluginError> {
        config.validate()?;
        for dir in [&config.cache_dir, &config.tasks_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| PluginError::io(format!("creating {}", dir.display()), e))?;
        }
        let plugin_engine = engine::plugin_engine(config.memory_limit_bytes)?;
        let task_engine = engine::task_engine()?;
        let ticker = EpochTicker::start(vec![plugin_engine.clone(), task_engine.clone()])?;
        let wasi = wasi_runner::WasiRunner::new(
            &config.tasks_dir,
            ComponentCache::new(task_engine, &config.cache_dir, "task"),
        )
        .map_err(PluginError::Config)?;
        let capabilities = Arc::new(Capabilities {
            processes: process::ProcessTable::new(&config.tasks_dir),
            wasi,
        });
        let link_error = |error: wasmtime::Error| PluginError::Config(format!("{error:?}"));
        let mut scheduler_linker = Linker::new(&plugin_engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut scheduler_linker).map_err(link_error)?;
        bindings::scheduler_world::SchedulerPlugin::add_to_linker::<_, HasSelf<StoreState>>(
            &mut scheduler_linker,
            |state| state,
        )
        .map_err(link_error)?;
        let mut executor_linker = Linker::new(&plugin_engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut executor_linker).map_err(link_error)?;
        bindings::executor_world::ExecutorPlugin::add_to_linker::<_, HasSelf<StoreState>>(
            &mut executor_linker,
            |state| state,
        )
        .map_err(link_error)?;
        let plugins = ComponentCache::new(plugin_engine, &config.cache_dir, "plugin");
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                config,
                plugins,
                capabilities,
                scheduler_linker,
                executor_linker,
                _ticker: ticker,
            }),
        })
    }

    /// Compiles (or finds in the cache) a scheduler component and creates its resident instance
    /// lazily, at the first call.
    pub fn load_scheduler(
        &self,
        name: &str,
        component: &[u8],
    ) -> Result<SchedulerPlugin, PluginError> {
        let _span = tracing::info_span!("load_scheduler", plugin = name).entered();
        let pre = self.link(
            name,
            component,
            SCHEDULER_INTERFACE,
            &self.inner.scheduler_linker,
        )?;
        let pre = bindings::scheduler_world::SchedulerPluginPre::new(pre)
            .map_err(|error| wrong_export(name, SCHEDULER_INTERFACE, &error))?;
        Ok(SchedulerPlugin::new(self.inner.clone(), name, pre))
    }

    /// Compiles (or finds in the cache) an executor component.
    pub fn load_executor(
        &self,
        name: &str,
        component: &[u8],
    ) -> Result<ExecutorPlugin, PluginError> {
        let _span = tracing::info_span!("load_executor", plugin = name).entered();
        let pre = self.link(
            name,
            component,
            EXECUTOR_INTERFACE,
            &self.inner.executor_linker,
        )?;
        let pre = bindings::executor_world::ExecutorPluginPre::new(pre)
            .map_err(|error| wrong_export(name, EXECUTOR_INTERFACE, &error))?;
        Ok(ExecutorPlugin::new(self.inner.clone(), name, pre))
    }

    /// The last `tail_bytes` of a task's stdout or stderr (everything when `tail_bytes` is 0).
    pub fn read_logs(
        &self,
        task_id: &str,
        stream: LogStream,
        tail_bytes: u64,
    ) -> Result<Vec<u8>, PluginError> {
        capabilities::read_logs(&self.inner.config.tasks_dir, task_id, stream, tail_bytes)
    }

    /// Compiles `bytes` and checks that the component exports `expected` and imports only what
    /// `linker` provides.
    fn link(
        &self,
        name: &str,
        bytes: &[u8],
        expected: &'static str,
        linker: &Linker<StoreState>,
    ) -> Result<InstancePre<StoreState>, PluginError> {
        let component = self.inner.plugins.get(name, bytes)?;
        let engine = self.inner.plugins.engine();
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(export, _)| export.to_owned())
            .collect();
        if !exports.iter().any(|export| export == expected) {
            let found = if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            };
            return Err(PluginError::WrongWorld {
                plugin: name.to_owned(),
                expected,
                detail: format!("it does not export `{expected}` (it exports: {found})"),
            });
        }
        linker
            .instantiate_pre(&component)
            .map_err(|error| PluginError::WrongWorld {
                plugin: name.to_owned(),
                expected,
                detail: format!("it imports something this host does not grant it: {error}"),
            })
    }
}

fn wrong_export(name: &str, expected: &'static str, error: &wasmtime::Error) -> PluginError {
    PluginError::WrongWorld {
        plugin: name.to_owned(),
        expected,
        detail: format!("its `{expected}` export does not match the WIT: {error:?}"),
    }
}
