//! A discovery plugin with one resident instance. The host remembers the `initialize` arguments
//! so a fresh instance (after a trap, a deadline or running out of memory) is initialized again
//! before its next call.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wasmtime::Store;

use crate::HostInner;
use crate::bindings::discovery_world::{DiscoveryPlugin as Bindings, DiscoveryPluginPre};
use crate::bindings::types::DiscoveryError;
use crate::error::PluginError;
use crate::health::{Health, PluginHealth};
use crate::scheduler::instantiate_error;
use crate::state::{StoreState, begin_call, classify, new_store};

struct Live {
    store: Store<StoreState>,
    bindings: Bindings,
    initialized: bool,
}

/// What `initialize` was called with.
#[derive(Clone, Debug)]
struct Init {
    uri: String,
    heartbeat_ms: u64,
    ttl_ms: u64,
}

/// A loaded discovery plugin. Calls take `&mut self` and run one at a time.
pub struct DiscoveryPlugin {
    host: Arc<HostInner>,
    name: Arc<str>,
    pre: DiscoveryPluginPre<StoreState>,
    live: Option<Live>,
    init: Option<Init>,
    health: Health,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl DiscoveryPlugin {
    pub(crate) fn new(
        host: Arc<HostInner>,
        name: &str,
        pre: DiscoveryPluginPre<StoreState>,
    ) -> Self {
        DiscoveryPlugin {
            health: Health::new(host.failure_budget()),
            host,
            name: name.into(),
            pre,
            live: None,
            init: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Failures counted against the plugin's budget, and whether it is quarantined.
    pub fn health(&self) -> PluginHealth {
        self.health.snapshot()
    }

    /// The URI schemes the backend serves (without `://`).
    pub async fn schemes(&mut self) -> Result<Vec<String>, PluginError> {
        let span = self.span("schemes");
        async move {
            let live = self.live().await?;
            begin_call(&mut live.store);
            let result = live
                .bindings
                .swarm_plugin_discovery()
                .call_schemes(&mut live.store)
                .await;
            self.check(result.map(Ok))
        }
        .instrument(span)
        .await
    }

    /// Parses and remembers `uri`; entries expire after `ttl` unless refreshed every `heartbeat`.
    pub async fn initialize(
        &mut self,
        uri: &str,
        heartbeat: Duration,
        ttl: Duration,
    ) -> Result<(), PluginError> {
        let span = self.span("initialize");
        let init = Init {
            uri: uri.to_owned(),
            heartbeat_ms: millis(heartbeat),
            ttl_ms: millis(ttl),
        };
        async move {
            let live = self.live().await?;
            begin_call(&mut live.store);
            let result = live
                .bindings
                .swarm_plugin_discovery()
                .call_initialize(&mut live.store, &init.uri, init.heartbeat_ms, init.ttl_ms)
                .await;
            self.check(result)?;
            if let Some(live) = self.live.as_mut() {
                live.initialized = true;
            }
            self.init = Some(init);
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// The current entries (`host:port`).
    pub async fn watch(&mut self) -> Result<Vec<String>, PluginError> {
        let span = self.span("watch");
        async move {
            let live = self.initialized().await?;
            begin_call(&mut live.store);
            let result = live
                .bindings
                .swarm_plugin_discovery()
                .call_watch(&mut live.store)
                .await;
            self.check(result)
        }
        .instrument(span)
        .await
    }

    /// Announces `addr`.
    pub async fn register(&mut self, addr: &str) -> Result<(), PluginError> {
        let span = self.span("register");
        async move {
            let live = self.initialized().await?;
            begin_call(&mut live.store);
            let result = live
                .bindings
                .swarm_plugin_discovery()
                .call_register(&mut live.store, addr)
                .await;
            self.check(result)
        }
        .instrument(span)
        .await
    }

    fn span(&self, call: &'static str) -> tracing::Span {
        tracing::info_span!("plugin_call", plugin = %self.name, call)
    }

    /// The resident instance, initialized again if it was replaced since `initialize`.
    async fn initialized(&mut self) -> Result<&mut Live, PluginError> {
        let Some(init) = self.init.clone() else {
            return Err(PluginError::Guest {
                plugin: self.name.to_string(),
                message: "the discovery backend is not initialized".to_owned(),
            });
        };
        let needs_init = !self.live().await?.initialized;
        if needs_init {
            let live = self.live().await?;
            begin_call(&mut live.store);
            let result = live
                .bindings
                .swarm_plugin_discovery()
                .call_initialize(&mut live.store, &init.uri, init.heartbeat_ms, init.ttl_ms)
                .await;
            self.check(result)?;
        }
        let live = self.live().await?;
        live.initialized = true;
        Ok(live)
    }

    async fn live(&mut self) -> Result<&mut Live, PluginError> {
        self.health.admit(&self.name)?;
        if self.live.is_none() {
            let mut store = new_store(&self.host, &self.name);
            let bindings = match self.pre.instantiate_async(&mut store).await {
                Ok(bindings) => bindings,
                Err(error) => {
                    let error = instantiate_error(store.data(), &error);
                    self.health.record(&self.name, &error);
                    return Err(error);
                }
            };
            self.live = Some(Live {
                store,
                bindings,
                initialized: false,
            });
        }
        self.live.as_mut().ok_or_else(|| PluginError::Instantiate {
            plugin: self.name.to_string(),
            message: "no instance".to_owned(),
        })
    }

    /// Passes a call's result through; a failed call drops the instance, a guest error does not.
    fn check<T>(
        &mut self,
        result: wasmtime::Result<Result<T, DiscoveryError>>,
    ) -> Result<T, PluginError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(PluginError::Guest {
                plugin: self.name.to_string(),
                message: error.message,
            }),
            Err(error) => {
                let error = match &self.live {
                    Some(live) => classify(live.store.data(), &error),
                    None => PluginError::Trap {
                        plugin: self.name.to_string(),
                        message: format!("{error:?}"),
                    },
                };
                tracing::warn!(%error, "discovery call failed; the instance will be replaced");
                self.live = None;
                self.health.record(&self.name, &error);
                Err(error)
            }
        }
    }
}
