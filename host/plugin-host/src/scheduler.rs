//! A scheduler plugin with one resident instance, and the host-side mirror of the node set that
//! is re-sent to a fresh instance after a failure.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::Instrument;
use wasmtime::Store;

use crate::HostInner;
use crate::bindings::scheduler_world::{SchedulerPlugin as Bindings, SchedulerPluginPre};
use crate::bindings::types::{GroupResult, NodeInfo, TaskGroup};
use crate::error::PluginError;
use crate::health::{Health, PluginHealth};
use crate::state::{StoreState, begin_call, classify, new_store};

struct Live {
    store: Store<StoreState>,
    bindings: Bindings,
}

/// A loaded scheduler plugin. It owns one resident instance holding the node set; calls take
/// `&mut self` and run one at a time.
pub struct SchedulerPlugin {
    host: Arc<HostInner>,
    name: Arc<str>,
    pre: SchedulerPluginPre<StoreState>,
    live: Option<Live>,
    /// The node set as the instance should hold it, including the effect of its placements.
    mirror: BTreeMap<String, NodeInfo>,
    health: Health,
}

impl SchedulerPlugin {
    pub(crate) fn new(
        host: Arc<HostInner>,
        name: &str,
        pre: SchedulerPluginPre<StoreState>,
    ) -> Self {
        SchedulerPlugin {
            name: name.into(),
            pre,
            live: None,
            mirror: BTreeMap::new(),
            health: Health::new(host.failure_budget()),
            host,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Failures counted against the plugin's budget, and whether it is quarantined.
    pub fn health(&self) -> PluginHealth {
        self.health.snapshot()
    }

    /// Adds or replaces nodes (by id) and removes the nodes named in `removals`.
    pub async fn update_nodes(
        &mut self,
        upserts: Vec<NodeInfo>,
        removals: Vec<String>,
    ) -> Result<(), PluginError> {
        let span = tracing::info_span!(
            "plugin_call",
            plugin = %self.name,
            call = "update-nodes",
            upserts = upserts.len(),
            removals = removals.len()
        );
        async move {
            self.health.admit(&self.name)?;
            for node in &upserts {
                self.mirror.insert(node.id.clone(), node.clone());
            }
            for id in &removals {
                self.mirror.remove(id);
            }
            if self.live.is_none() {
                // A fresh instance gets the whole mirror, which already includes this change.
                return self.live().await.map(|_| ());
            }
            let live = self.live().await?;
            begin_call(&mut live.store);
            let result = live
                .bindings
                .swarm_plugin_scheduler()
                .call_update_nodes(&mut live.store, &upserts, &removals)
                .await;
            self.check(result)
        }
        .instrument(span)
        .await
    }

    /// Places every group, in order. Tasks that cannot be placed come back in `unplaced` with
    /// SwarmKit's reason.
    pub async fn schedule(
        &mut self,
        groups: Vec<TaskGroup>,
    ) -> Result<Vec<GroupResult>, PluginError> {
        let span = tracing::info_span!(
            "plugin_call",
            plugin = %self.name,
            call = "schedule",
            groups = groups.len()
        );
        async move {
            self.health.admit(&self.name)?;
            let live = self.live().await?;
            begin_call(&mut live.store);
            let result = live
                .bindings
                .swarm_plugin_scheduler()
                .call_schedule(&mut live.store, &groups)
                .await;
            let results = self.check(result)?;
            self.apply(&groups, &results);
            Ok(results)
        }
        .instrument(span)
        .await
    }

    /// The resident instance, instantiating one (and sending it the mirror) if needed.
    async fn live(&mut self) -> Result<&mut Live, PluginError> {
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
            if !self.mirror.is_empty() {
                tracing::debug!(
                    nodes = self.mirror.len(),
                    "sending the node set to a fresh instance"
                );
                let nodes: Vec<NodeInfo> = self.mirror.values().cloned().collect();
                begin_call(&mut store);
                let result = bindings
                    .swarm_plugin_scheduler()
                    .call_update_nodes(&mut store, &nodes, &[])
                    .await;
                if let Err(error) = result {
                    let error = classify(store.data(), &error);
                    self.health.record(&self.name, &error);
                    return Err(error);
                }
            }
            self.live = Some(Live { store, bindings });
        }
        self.live.as_mut().ok_or_else(|| PluginError::Instantiate {
            plugin: self.name.to_string(),
            message: "no instance".to_owned(),
        })
    }

    /// Passes a call's result through, dropping the instance if the call failed.
    fn check<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, PluginError> {
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                let error = match &self.live {
                    Some(live) => classify(live.store.data(), &error),
                    None => PluginError::Trap {
                        plugin: self.name.to_string(),
                        message: format!("{error:?}"),
                    },
                };
                tracing::warn!(%error, "scheduler call failed; the instance will be replaced");
                self.live = None;
                self.health.record(&self.name, &error);
                Err(error)
            }
        }
    }

    /// Applies placements to the mirror the way the guest applies them to its resident nodes.
    fn apply(&mut self, groups: &[TaskGroup], results: &[GroupResult]) {
        crate::guest_values::apply_placements(&mut self.mirror, groups, results);
    }
}

pub(crate) fn instantiate_error(state: &StoreState, error: &wasmtime::Error) -> PluginError {
    match classify(state, error) {
        error @ (PluginError::MemoryLimit { .. } | PluginError::DeadlineExceeded { .. }) => error,
        _ if error.downcast_ref::<wasmtime::Trap>().is_some() => classify(state, error),
        _ => PluginError::Instantiate {
            plugin: state.plugin.to_string(),
            message: format!("{error:?}"),
        },
    }
}
