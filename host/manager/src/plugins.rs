//! The plugin registry behind the control API: install (validated by the plugin host before the
//! proposal), list, get, remove (refused while the cluster, a service or a node names the
//! plugin), and the checks of the specs that refer to plugins by name.

use std::sync::Arc;

use swarm_plugin_host as ph;
use swarm_proto::pb;
use swarm_store::{MemoryStore, ObjectKind, StoreRead};
use swarm_types::{
    BUILTIN_EXECUTORS, ComponentBytes, Meta, Plugin, PluginKind, PluginSpec, PluginStatus,
    Timestamp, check_plugin_size, new_id,
};
use tracing::info;

use crate::commit::{Committer, commit_with};
use crate::error::{ManagerError, Result};

/// Refuse a spec that names a plugin (`field`: `spec.scheduler`, `spec.executor`) that is not
/// installed or is not of `kind`. An empty name refers to no plugin.
pub fn check_ref(tx: &impl StoreRead, field: &str, name: &str, kind: PluginKind) -> Result<()> {
    if name.is_empty() || (kind == PluginKind::Executor && BUILTIN_EXECUTORS.contains(&name)) {
        return Ok(());
    }
    let Some(plugin) = tx.plugin_by_name(name) else {
        return Err(ManagerError::InvalidArgument(format!(
            "{field}: no plugin named {name:?} is installed; install it first (swarmctl plugin \
             install --kind {kind} {name} FILE.wasm)"
        )));
    };
    if plugin.spec.kind != kind {
        return Err(ManagerError::InvalidArgument(format!(
            "{field}: plugin {name:?} is of kind {}, not {kind}",
            plugin.spec.kind
        )));
    }
    Ok(())
}

/// The runtimes the executor `name` runs: the embedded ones' fixed sets, or what an installed
/// one's `describe` said at install. `None` for no name or an unknown one.
pub fn executor_runtimes(tx: &impl StoreRead, name: &str) -> Option<Vec<String>> {
    match name {
        "" => None,
        "default" => Some(vec!["process".into(), "wasi".into()]),
        "docker" => Some(vec!["container".into()]),
        name => tx
            .plugin_by_name(name)
            .map(|plugin| plugin.runtimes.clone()),
    }
}

/// Refuse a service whose executor (`spec.executor`, already known to exist) does not run its
/// tasks' runtime: it would be placed and then rejected by every node, over and over.
pub fn check_runs(tx: &impl StoreRead, executor: &str, runtime: &str) -> Result<()> {
    let Some(runtimes) = executor_runtimes(tx, executor) else {
        return Ok(());
    };
    if runtimes.iter().any(|r| r == runtime) {
        return Ok(());
    }
    Err(ManagerError::InvalidArgument(format!(
        "spec.executor: {executor:?} runs {} tasks, not {runtime} tasks",
        if runtimes.is_empty() {
            "no".to_string()
        } else {
            runtimes.join(", ")
        }
    )))
}

/// Who refers to the plugin named `name`: the cluster's scheduler, services' and nodes'
/// executors, as `kind name` phrases.
pub fn users(tx: &impl StoreRead, name: &str) -> Vec<String> {
    let same = |other: &str| !other.is_empty() && other.eq_ignore_ascii_case(name);
    let mut users = Vec::new();
    for c in tx.clusters().filter(|c| same(&c.spec.scheduler)) {
        users.push(format!(
            "cluster {} (its scheduler)",
            c.spec.annotations.name
        ));
    }
    for s in tx.services().filter(|s| same(&s.spec.executor)) {
        users.push(format!("service {}", s.spec.annotations.name));
    }
    for n in tx.nodes().filter(|n| same(&n.spec.executor)) {
        users.push(format!("node {}", n.display_name()));
    }
    users
}

fn host_kind(kind: PluginKind) -> ph::PluginKind {
    match kind {
        PluginKind::Executor => ph::PluginKind::Executor,
        PluginKind::Scheduler => ph::PluginKind::Scheduler,
        PluginKind::Discovery => ph::PluginKind::Discovery,
    }
}

/// Why the plugin host refused a component: the component's fault (an invalid argument) or the
/// host's (internal).
fn refusal(error: ph::PluginError) -> ManagerError {
    match error {
        ph::PluginError::Config(_) | ph::PluginError::Io { .. } => {
            ManagerError::Internal(format!("validating the plugin: {error}"))
        }
        other => ManagerError::InvalidArgument(format!("plugin refused: {other}")),
    }
}

/// The registry: the store, the committer and the plugin host that validates components.
#[derive(Clone)]
pub(crate) struct Registry {
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) committer: Arc<dyn Committer>,
    pub(crate) host: Option<ph::PluginHost>,
}

impl Registry {
    /// Validate and install a plugin. Installing the same name again succeeds only with the
    /// same kind, grants, labels and bytes, and returns the installed plugin.
    pub(crate) async fn install(
        &self,
        spec: Option<pb::PluginSpec>,
        component: Vec<u8>,
    ) -> Result<Plugin> {
        let mut spec: PluginSpec = spec
            .ok_or_else(|| ManagerError::InvalidArgument("spec: is required".into()))?
            .try_into()?;
        spec.validate()?;
        spec.normalize();
        check_plugin_size(component.len() as u64)?;
        let digest = ph::component_digest(&component);
        let name = spec.annotations.name.clone();
        if let Some(existing) = self.store.view(|tx| tx.plugin_by_name(&name).cloned()) {
            let same = same_install(&existing, &spec, &digest)?;
            if !existing.status.quarantined {
                return Ok(same);
            }
            // Installing the same plugin again is how an operator lifts its quarantine.
            let now = Timestamp::now();
            commit_with(&self.store, self.committer.as_ref(), |tx| {
                let Some(current) = tx.plugin_by_name(&name) else {
                    return Ok(());
                };
                Ok(tx.update(current.with_status(PluginStatus::healthy(now)))?)
            })
            .await?;
            info!(plugin = %name, "plugin quarantine lifted by a new install of the same component");
            return self.get(None, Some(&name), false);
        }
        let Some(host) = self.host.clone() else {
            return Err(ManagerError::FailedPrecondition(
                "this manager was started without a plugin host, so it cannot validate plugins"
                    .into(),
            ));
        };
        let granted = spec
            .capabilities
            .iter()
            .map(|c| ph::Capability::parse(c).map_err(ManagerError::InvalidArgument))
            .collect::<Result<Vec<_>>>()?;
        let component: Arc<[u8]> = component.into();
        let summary = validate(host, spec.kind, &name, component.clone(), granted).await?;
        if summary.digest != digest {
            return Err(ManagerError::Internal(format!(
                "the plugin host computed digest {} for the component, the manager {digest}",
                summary.digest
            )));
        }
        let now = Timestamp::now();
        let plugin = Plugin {
            id: new_id(),
            meta: Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            },
            spec,
            digest,
            size_bytes: component.len() as u64,
            component: ComponentBytes::new(component),
            imports: summary
                .imports
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            runtimes: summary.runtimes,
            schemes: summary.schemes,
            status: PluginStatus::healthy(now),
        };
        plugin.validate()?;
        let listed = plugin.without_component();
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            if let Some(existing) = tx.plugin_by_name(&name) {
                // Installed by a concurrent request while this one was validating.
                same_install(existing, &listed.spec, &listed.digest)?;
                return Ok(());
            }
            Ok(tx.create(plugin)?)
        })
        .await?;
        let installed = self.get(None, Some(&name), false)?;
        info!(
            plugin_id = %installed.id,
            name = %name,
            kind = %installed.spec.kind,
            digest = %installed.digest,
            size = installed.size_bytes,
            "plugin installed"
        );
        Ok(installed)
    }

    pub(crate) fn list(
        &self,
        filters: pb::list_plugins_request::Filters,
        include_component: bool,
    ) -> Result<Vec<Plugin>> {
        let mut kinds = Vec::with_capacity(filters.kinds.len());
        for (i, k) in filters.kinds.iter().enumerate() {
            kinds.push(swarm_proto::plugin_kind_from_pb(
                &format!("filters.kinds[{i}]"),
                *k,
            )?);
        }
        Ok(self.store.view(|tx| {
            tx.plugins()
                .filter(|p| {
                    filters.id_prefixes.is_empty()
                        || filters
                            .id_prefixes
                            .iter()
                            .any(|prefix| p.id.starts_with(prefix.as_str()))
                })
                .filter(|p| {
                    filters.names.is_empty()
                        || filters
                            .names
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(p.name()))
                })
                .filter(|p| kinds.is_empty() || kinds.contains(&p.spec.kind))
                .map(|p| shown(p, include_component))
                .collect()
        }))
    }

    /// One plugin by id or by name (exactly one of them).
    pub(crate) fn get(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        include_component: bool,
    ) -> Result<Plugin> {
        match (id.filter(|s| !s.is_empty()), name.filter(|s| !s.is_empty())) {
            (Some(id), None) => self
                .store
                .view(|tx| tx.plugin(id).map(|p| shown(p, include_component)))
                .ok_or_else(|| ManagerError::NotFound(format!("plugin {id} not found"))),
            (None, Some(name)) => self
                .store
                .view(|tx| tx.plugin_by_name(name).map(|p| shown(p, include_component)))
                .ok_or_else(|| {
                    ManagerError::NotFound(format!("no plugin named {name:?} is installed"))
                }),
            (Some(_), Some(_)) => Err(ManagerError::InvalidArgument(
                "plugin_id, name: set one of them, not both".into(),
            )),
            (None, None) => Err(ManagerError::InvalidArgument(
                "plugin_id, name: set one of them".into(),
            )),
        }
    }

    /// Remove a plugin nobody uses. Running tasks keep the executor that started them.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(ManagerError::InvalidArgument(
                "plugin_id: must not be empty".into(),
            ));
        }
        let name = commit_with(&self.store, self.committer.as_ref(), |tx| {
            let Some(plugin) = tx.plugin(id) else {
                return Err(ManagerError::NotFound(format!("plugin {id} not found")));
            };
            let name = plugin.name().to_string();
            let users = users(tx, &name);
            if !users.is_empty() {
                return Err(ManagerError::FailedPrecondition(format!(
                    "plugin {name:?} is in use by {}; point them at another plugin (or none) \
                     before removing it",
                    users.join(", ")
                )));
            }
            tx.delete(ObjectKind::Plugin, id)?;
            Ok(name)
        })
        .await?
        .0;
        info!(plugin_id = %id, name = %name, "plugin removed");
        Ok(())
    }
}

/// A plugin as a response shows it.
fn shown(plugin: &Plugin, include_component: bool) -> Plugin {
    if include_component {
        plugin.clone()
    } else {
        plugin.without_component()
    }
}

/// An install of a name that exists: the installed plugin when it is the same install, else
/// a refusal saying what differs.
fn same_install(existing: &Plugin, spec: &PluginSpec, digest: &str) -> Result<Plugin> {
    let mut differences = Vec::new();
    if existing.spec.kind != spec.kind {
        differences.push(format!("kind {} (not {})", existing.spec.kind, spec.kind));
    }
    if existing.spec.capabilities != spec.capabilities {
        differences.push(format!(
            "capabilities [{}] (not [{}])",
            existing.spec.capabilities.join(","),
            spec.capabilities.join(",")
        ));
    }
    if existing.spec.annotations.labels != spec.annotations.labels {
        differences.push("other labels".to_string());
    }
    if existing.digest != digest {
        differences.push(format!("digest {} (not {digest})", existing.digest));
    }
    if differences.is_empty() {
        return Ok(existing.without_component());
    }
    Err(ManagerError::AlreadyExists(format!(
        "plugin name {:?} is already installed as plugin {} with {}; installing a name again \
         succeeds only with the same kind, capabilities, labels and bytes: remove it first or \
         choose another name",
        existing.name(),
        existing.id,
        differences.join(", ")
    )))
}

/// Run the plugin host's validation on a blocking thread: compiling a component takes a while
/// and must not hold up the runtime's workers.
async fn validate(
    host: ph::PluginHost,
    kind: PluginKind,
    name: &str,
    component: Arc<[u8]>,
    granted: Vec<ph::Capability>,
) -> Result<ph::PluginSummary> {
    let name = name.to_string();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        runtime.block_on(host.validate(host_kind(kind), &name, &component, &granted))
    })
    .await
    .map_err(|e| ManagerError::Internal(format!("validating the plugin: {e}")))?
    .map_err(refusal)
}
