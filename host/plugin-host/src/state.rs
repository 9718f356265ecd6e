//! Per-store data of a plugin instance: WASI context, memory limiter, deadline clock, and the
//! host capabilities it may use. Also turns a failed call into a [`PluginError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::HostInner;
use crate::capabilities::Capabilities;
use crate::error::PluginError;

/// Refuses memory or table growth past a limit and remembers that it did, so a failed call can be
/// reported as [`PluginError::MemoryLimit`] whatever error wasmtime surfaces.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) limit_bytes: usize,
    pub(crate) hit: bool,
}

/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.limit_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Guest time of the current call: wall time since the call started, less the time spent
/// awaiting long host operations (a process `wait` is not the guest's fault).
#[derive(Debug)]
pub(crate) struct CallClock {
    started: Instant,
    host_time: Duration,
    deadline: Duration,
    pub(crate) expired: bool,
}

impl CallClock {
    fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.host_time)
    }

    /// Excludes time spent in `operation` (a host await) from the guest's time.
    pub(crate) async fn host<F: Future>(clock: &mut CallClock, operation: F) -> F::Output {
        let started = Instant::now();
        let output = operation.await;
        clock.host_time += started.elapsed();
        output
    }
}

pub(crate) struct StoreState {
    pub(crate) plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) clock: CallClock,
    pub(crate) capabilities: Arc<Capabilities>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Makes a store for one plugin instance: no preopens, no environment, no network, output
/// discarded (plugins log through the `log` capability), a memory limit and a deadline checked at
/// every epoch tick, yielding to the async runtime at each tick so a spinning guest never holds a
/// thread. The host config gives the limits; the deadline clock starts now (for instantiation).
pub(crate) fn new_store(host: &HostInner, plugin: &Arc<str>) -> Store<StoreState> {
    let engine = host.plugins.engine();
    let memory_limit_bytes = host.config.memory_limit_bytes;
    let deadline = host.config.call_deadline;
    let capabilities = &host.capabilities;
    let wasi = WasiCtxBuilder::new().build();
    let state = StoreState {
        plugin: plugin.clone(),
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            limit_bytes: memory_limit_bytes,
            hit: false,
        },
        clock: CallClock {
            started: Instant::now(),
            host_time: Duration::ZERO,
            deadline,
            expired: false,
        },
        capabilities: capabilities.clone(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_callback(|mut context| {
        let clock = &mut context.data_mut().clock;
        if clock.guest_time() > clock.deadline {
            clock.expired = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Yield(1))
    });
    begin_call(&mut store);
    store
}

/// Starts the deadline clock for a new call.
pub(crate) fn begin_call(store: &mut Store<StoreState>) {
    let clock = &mut store.data_mut().clock;
    clock.started = Instant::now();
    clock.host_time = Duration::ZERO;
    clock.expired = false;
    store.set_epoch_deadline(1);
}

/// Turns the error of a failed call (or instantiation) into a [`PluginError`], using what the
/// store saw: an expired deadline or a refused memory growth wins over the raw trap.
pub(crate) fn classify(state: &StoreState, error: &wasmtime::Error) -> PluginError {
    let plugin = state.plugin.to_string();
    if state.clock.expired {
        PluginError::DeadlineExceeded {
            plugin,
            deadline: state.clock.deadline,
        }
    } else if state.limiter.hit {
        PluginError::MemoryLimit {
            plugin,
            limit_bytes: state.limiter.limit_bytes,
        }
    } else if let Some(trap) = error.downcast_ref::<Trap>() {
        PluginError::Trap {
            plugin,
            message: format!("{trap}: {error:?}"),
        }
    } else {
        PluginError::Trap {
            plugin,
            message: format!("{error:?}"),
        }
    }
}
