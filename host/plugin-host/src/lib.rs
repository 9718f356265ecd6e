//! swarm-plugin-host: loads WebAssembly scheduler, executor and discovery plugins (components
//! implementing `wit/`, package `swarm:plugin@0.2.0`) and provides their host capabilities.
//!
//! Invariants:
//! - Components are compiled once per content digest (sha256) and cached, serialized, under the
//!   cache directory; instances come from `InstancePre` and the pooling allocator.
//! - Every plugin call runs under a deadline (epoch interruption; time the guest spends awaiting
//!   the host, such as stopping a process, is not charged) and a memory limit. A trap, a hang or
//!   an out-of-memory guest fails that call with a [`PluginError`]; the host keeps running and the
//!   instance is replaced (the scheduler's resident node set is re-sent from a host-side mirror).
//! - Each loaded plugin has a failure budget ([`FailureBudget`]): past it, the plugin is
//!   quarantined and its calls fail at once with [`PluginError::Quarantined`]; other plugins are
//!   unaffected.
//! - A component that does not implement the expected world, or was built against another
//!   version of the package, is refused at load time with a message naming the expected world
//!   and version and what is missing.
//! - Plugins get capabilities, not ambient authority: a component may import only the capability
//!   interfaces it was granted (`process`, `wasi-runner`, `docker` for executors, `http` for
//!   discovery; `log` always). All get WASI with no files, environment or network.
//! - Executors are stateless: every executor call runs in its own fresh instance, so calls run
//!   concurrently. A running task holds no instance: the host watches the task through the
//!   capability that started it and calls the executor's `inspect` when it ends.
//! - No guest data is trusted: task ids are checked before they become paths, nothing unwraps.

mod bindings;
mod capabilities;
mod discovery;
mod docker;
mod engine;
mod error;
mod executor;
mod grants;
mod guest_values;
mod health;
mod http;
mod log;
mod native;
mod process;
mod scheduler;
mod state;
mod wasi_runner;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, InstancePre, Linker};

pub use bindings::types::{
    ContainerSpec, EngineInfo, ExecutorInfo, ExitStatus, GroupResult, Mount, MountKind,
    NodeAvailability, NodeInfo, NodeRole, NodeStatus, Placement, Platform, ProcessSpec, Resources,
    Task as ExecTask, TaskGroup, TaskLimits, TaskRuntime, TaskState as TaskRuntimeState, WasiSpec,
};
pub use capabilities::LogStream;
pub use discovery::DiscoveryPlugin;
pub use docker::{DEFAULT_ENGINE_ADDR, TASK_LABEL, probe_engine};
pub use engine::{EPOCH_TICK, MAX_PLUGIN_INSTANCES, component_digest};
pub use error::PluginError;
pub use executor::{ExecutorPlugin, HOST_TIME_ALLOWANCE, INSPECT_INTERVAL};
pub use grants::{
    Capability, DEFAULT_EXECUTOR_GRANTS, PluginKind, PluginSummary, WIT_PACKAGE, WIT_VERSION,
};
pub use health::{FailureBudget, PluginHealth};
#[doc(hidden)]
pub use native::NativeCapabilities;
pub use scheduler::SchedulerPlugin;
pub use wasi_runner::DEFAULT_TASK_MEMORY_BYTES;

/// The host's pure handling of values that come back from guests, for the fuzz target in
/// `fuzz/` (build with the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::capabilities::check_task_id;
    pub use crate::guest_values::apply_placements;
}

use capabilities::Capabilities;
use engine::{ComponentCache, EpochTicker};
use state::StoreState;

/// The interface a scheduler plugin must export.
pub const SCHEDULER_INTERFACE: &str = "swarm:plugin/scheduler@0.2.0";
/// The interface an executor plugin must export.
pub const EXECUTOR_INTERFACE: &str = "swarm:plugin/executor@0.2.0";
/// The interface a discovery plugin must export.
pub const DISCOVERY_INTERFACE: &str = "swarm:plugin/discovery@0.2.0";

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
    /// The container engine behind the `docker` capability (`unix:///var/run/docker.sock`,
    /// `tcp://host:2375`); `None` when the node has none.
    pub engine_addr: Option<String>,
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
    discovery_linker: Linker<StoreState>,
    failure_budget: parking_lot::Mutex<FailureBudget>,
    _ticker: EpochTicker,
}

impl HostInner {
    pub(crate) fn failure_budget(&self) -> FailureBudget {
        *self.failure_budget.lock()
    }
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
            docker: docker::DockerEngine::new(config.engine_addr.clone()),
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
        let mut discovery_linker = Linker::new(&plugin_engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut discovery_linker).map_err(link_error)?;
        bindings::discovery_world::DiscoveryPlugin::add_to_linker::<_, HasSelf<StoreState>>(
            &mut discovery_linker,
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
                discovery_linker,
                failure_budget: parking_lot::Mutex::new(FailureBudget::default()),
                _ticker: ticker,
            }),
        })
    }

    /// The capabilities, called without a plugin (benchmarks only).
    #[doc(hidden)]
    pub fn native_capabilities(&self) -> NativeCapabilities {
        NativeCapabilities {
            capabilities: self.inner.capabilities.clone(),
        }
    }

    /// Sets the failure budget of plugins loaded from now on (default: 5 failures a minute).
    pub fn set_failure_budget(&self, budget: FailureBudget) {
        *self.inner.failure_budget.lock() = budget;
    }

    /// Compiles (or finds in the cache) a scheduler component and creates its resident instance
    /// lazily, at the first call. Schedulers are granted nothing but `log`.
    pub fn load_scheduler(
        &self,
        name: &str,
        component: &[u8],
    ) -> Result<SchedulerPlugin, PluginError> {
        let _span = tracing::info_span!("load_scheduler", plugin = name).entered();
        let pre = self.link(name, component, PluginKind::Scheduler, &[])?;
        let pre = bindings::scheduler_world::SchedulerPluginPre::new(pre)
            .map_err(|error| wrong_export(name, SCHEDULER_INTERFACE, &error))?;
        Ok(SchedulerPlugin::new(self.inner.clone(), name, pre))
    }

    /// Compiles (or finds in the cache) an executor component that may import the `granted`
    /// capabilities.
    pub fn load_executor(
        &self,
        name: &str,
        component: &[u8],
        granted: &[Capability],
    ) -> Result<ExecutorPlugin, PluginError> {
        let _span = tracing::info_span!("load_executor", plugin = name).entered();
        let pre = self.link(name, component, PluginKind::Executor, granted)?;
        let pre = bindings::executor_world::ExecutorPluginPre::new(pre)
            .map_err(|error| wrong_export(name, EXECUTOR_INTERFACE, &error))?;
        Ok(ExecutorPlugin::new(self.inner.clone(), name, pre))
    }

    /// Compiles (or finds in the cache) a discovery component that may import the `granted`
    /// capabilities; its resident instance is created at the first call.
    pub fn load_discovery(
        &self,
        name: &str,
        component: &[u8],
        granted: &[Capability],
    ) -> Result<DiscoveryPlugin, PluginError> {
        let _span = tracing::info_span!("load_discovery", plugin = name).entered();
        let pre = self.link(name, component, PluginKind::Discovery, granted)?;
        let pre = bindings::discovery_world::DiscoveryPluginPre::new(pre)
            .map_err(|error| wrong_export(name, DISCOVERY_INTERFACE, &error))?;
        Ok(DiscoveryPlugin::new(self.inner.clone(), name, pre))
    }

    /// Checks a component before it is installed: it compiles, implements the world of `kind`
    /// at this host's package version, imports only `granted` capabilities, and answers its
    /// first call (`describe` for executors, `schemes` for discovery). Nothing is kept but the
    /// compiled code in the cache.
    pub async fn validate(
        &self,
        kind: PluginKind,
        name: &str,
        component: &[u8],
        granted: &[Capability],
    ) -> Result<PluginSummary, PluginError> {
        let mut summary = PluginSummary {
            kind,
            digest: component_digest(component),
            size_bytes: component.len() as u64,
            imports: Vec::new(),
            runtimes: Vec::new(),
            schemes: Vec::new(),
            engine: None,
        };
        match kind {
            PluginKind::Scheduler => {
                self.load_scheduler(name, component)?;
            }
            PluginKind::Executor => {
                let executor = self.load_executor(name, component, granted)?;
                let info = executor.describe().await?;
                summary.runtimes = info.runtimes;
                summary.engine = info.engine;
            }
            PluginKind::Discovery => {
                let mut discovery = self.load_discovery(name, component, granted)?;
                summary.schemes = discovery.schemes().await?;
            }
        }
        let compiled = self.inner.plugins.get(name, component)?;
        summary.imports = grants::imported_capabilities(&compiled, self.inner.plugins.engine());
        Ok(summary)
    }

    /// The last `tail_bytes` of a task's stdout or stderr (everything when `tail_bytes` is 0):
    /// from the task's log files (process and wasi tasks), else from the container engine's log
    /// of the task's container.
    pub async fn read_logs(
        &self,
        task_id: &str,
        stream: LogStream,
        tail_bytes: u64,
    ) -> Result<Vec<u8>, PluginError> {
        let tasks_dir = self.inner.config.tasks_dir.clone();
        let has_files = capabilities::task_dir(&tasks_dir, task_id).is_ok_and(|dir| dir.is_dir());
        if !has_files {
            let from_engine = self
                .inner
                .capabilities
                .docker
                .logs(task_id, stream, tail_bytes)
                .await
                .map_err(|message| {
                    PluginError::io(
                        format!("reading the logs of task {task_id}"),
                        std::io::Error::other(message),
                    )
                })?;
            if let Some(bytes) = from_engine {
                return Ok(bytes);
            }
        }
        let task_id = task_id.to_owned();
        tokio::task::spawn_blocking(move || {
            capabilities::read_logs(&tasks_dir, &task_id, stream, tail_bytes)
        })
        .await
        .map_err(|e| PluginError::io("reading task logs", std::io::Error::other(e.to_string())))?
    }

    /// Compiles `bytes` and checks its exports, package version and imports against `kind`
    /// and `granted` before linking it.
    fn link(
        &self,
        name: &str,
        bytes: &[u8],
        kind: PluginKind,
        granted: &[Capability],
    ) -> Result<InstancePre<StoreState>, PluginError> {
        let component = self.inner.plugins.get(name, bytes)?;
        grants::check(name, &component, self.inner.plugins.engine(), kind, granted)?;
        let linker = match kind {
            PluginKind::Scheduler => &self.inner.scheduler_linker,
            PluginKind::Executor => &self.inner.executor_linker,
            PluginKind::Discovery => &self.inner.discovery_linker,
        };
        linker
            .instantiate_pre(&component)
            .map_err(|error| PluginError::WrongWorld {
                plugin: name.to_owned(),
                expected: kind.interface(),
                detail: format!("it imports something this host does not provide: {error}"),
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
