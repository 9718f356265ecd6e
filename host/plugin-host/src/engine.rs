//! The wasmtime engines (plugins: pooling allocator; wasi tasks: on demand), the epoch ticker, and
//! the compile cache keyed by content digest.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::PluginError;

/// How often the epoch advances: the granularity of deadlines and of yields to the runtime.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Plugin instances that may exist at once per host (the pooling allocator's capacity). Every
/// executor call in flight holds one, so this bounds the tasks a node can wait on at once.
pub const MAX_PLUGIN_INSTANCES: u32 = 1_000;

const WASM_PAGE: usize = 64 * 1024;

/// The engine for plugins: async, epoch interruption, pooling allocator whose memory slots hold
/// `memory_limit_bytes` (plus a page so the limiter, not the pool, refuses growth first).
pub(crate) fn plugin_engine(memory_limit_bytes: usize) -> Result<Engine, PluginError> {
    let slot = memory_limit_bytes.div_ceil(WASM_PAGE) * WASM_PAGE + WASM_PAGE;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(MAX_PLUGIN_INSTANCES)
        .total_core_instances(MAX_PLUGIN_INSTANCES * 8)
        .total_memories(MAX_PLUGIN_INSTANCES * 2)
        .total_tables(MAX_PLUGIN_INSTANCES * 4)
        .total_stacks(MAX_PLUGIN_INSTANCES)
        .max_memory_size(slot);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .memory_reservation(slot as u64)
        .memory_guard_size(WASM_PAGE as u64)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(|error| PluginError::Config(format!("creating the plugin engine: {error:?}")))
}

/// The engine for wasi tasks: async, epoch interruption (to yield and to be killed), instances
/// allocated on demand since each task sets its own memory limit.
pub(crate) fn task_engine() -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    Engine::new(&config)
        .map_err(|error| PluginError::Config(format!("creating the task engine: {error:?}")))
}

/// Advances the epoch of its engines every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engines: Vec<Engine>) -> Result<EpochTicker, PluginError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .map_err(|error| PluginError::io("starting the epoch ticker thread", error))?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Compiled components by content digest: in memory, and serialized under the cache directory.
///
/// A cache file is `sha256(artifact) || artifact`; a file whose digest does not match, or that the
/// engine refuses, is recompiled and overwritten.
pub(crate) struct ComponentCache {
    engine: Engine,
    dir: PathBuf,
    /// Distinguishes engines whose compiled code differs (settings, wasmtime version).
    engine_key: String,
    loaded: Mutex<HashMap<[u8; 32], Component>>,
}

impl ComponentCache {
    pub(crate) fn new(engine: Engine, dir: &Path, kind: &str) -> ComponentCache {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            engine_key: format!("{kind}-{:016x}", hasher.finish()),
            engine,
            dir: dir.to_owned(),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled component for `bytes`, from memory, the cache directory, or a fresh compile.
    pub(crate) fn get(&self, plugin: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(component) = self.loaded.lock().get(&digest) {
            return Ok(component.clone());
        }
        let path = self
            .dir
            .join(format!("{}-{}.cwasm", self.engine_key, hex::encode(digest)));
        let component = match self.read_cached(&path) {
            Some(component) => component,
            None => {
                let component =
                    Component::new(&self.engine, bytes).map_err(|error| PluginError::Invalid {
                        plugin: plugin.to_owned(),
                        detail: format!("{error:?}"),
                    })?;
                if let Err(error) = self.write_cached(&path, &component) {
                    tracing::warn!(path = %path.display(), %error, "cannot cache compiled plugin");
                }
                component
            }
        };
        self.loaded.lock().insert(digest, component.clone());
        Ok(component)
    }

    fn read_cached(&self, path: &Path) -> Option<Component> {
        let file = match std::fs::read(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read cached plugin");
                return None;
            }
        };
        let (digest, artifact) = file.split_at_checked(32)?;
        if Sha256::digest(artifact).as_slice() != digest {
            tracing::warn!(path = %path.display(), "corrupt cached plugin; recompiling");
            return None;
        }
        match deserialize(&self.engine, artifact) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), ?error, "unusable cached plugin; recompiling");
                None
            }
        }
    }

    fn write_cached(&self, path: &Path, component: &Component) -> Result<(), String> {
        let artifact = component.serialize().map_err(|e| format!("{e:?}"))?;
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::File::create(&temporary).map_err(|e| e.to_string())?;
        file.write_all(&Sha256::digest(&artifact))
            .and_then(|()| file.write_all(&artifact))
            .and_then(|()| file.sync_all())
            .map_err(|e| e.to_string())?;
        std::fs::rename(&temporary, path).map_err(|e| e.to_string())
    }
}

#[expect(
    unsafe_code,
    reason = "wasmtime cannot check compiled code: deserializing needs trusted bytes"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` was produced by `Component::serialize` for an engine with the same
    // compatibility hash (it is in the file name), written by this crate into its own cache
    // directory, and its sha256 digest was just checked, so it is not truncated or corrupted.
    unsafe { Component::deserialize(engine, artifact) }
}

/// A component's digest as the cluster stores and checks it: `sha256:<64 lowercase hex>`.
pub fn component_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
