//! What a component may import: the package version check and the capability grants, checked
//! from the component's type before anything is instantiated.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::PluginError;
use crate::{DISCOVERY_INTERFACE, EXECUTOR_INTERFACE, EngineInfo, SCHEDULER_INTERFACE};

/// The WIT package this host implements.
pub const WIT_PACKAGE: &str = "swarm:plugin";
/// Its version; a component must have been built against exactly this version.
pub const WIT_VERSION: &str = "0.2.0";

/// The kinds of plugin, one world each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    Scheduler,
    Executor,
    Discovery,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [
        PluginKind::Executor,
        PluginKind::Scheduler,
        PluginKind::Discovery,
    ];

    /// `executor`, `scheduler` or `discovery`.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Scheduler => "scheduler",
            PluginKind::Executor => "executor",
            PluginKind::Discovery => "discovery",
        }
    }

    pub fn parse(name: &str) -> Result<PluginKind, String> {
        PluginKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                format!("unknown plugin kind {name:?}: use executor, scheduler or discovery")
            })
    }

    /// The world a component of this kind implements, e.g. `swarm:plugin/executor-plugin@0.2.0`.
    pub fn world(self) -> String {
        format!("{WIT_PACKAGE}/{}-plugin@{WIT_VERSION}", self.name())
    }

    /// The interface a component of this kind exports.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Scheduler => SCHEDULER_INTERFACE,
            PluginKind::Executor => EXECUTOR_INTERFACE,
            PluginKind::Discovery => DISCOVERY_INTERFACE,
        }
    }

    /// The capabilities the world of this kind offers.
    pub fn capabilities(self) -> &'static [Capability] {
        match self {
            PluginKind::Scheduler => &[],
            PluginKind::Executor => &[
                Capability::Process,
                Capability::WasiRunner,
                Capability::Docker,
            ],
            PluginKind::Discovery => &[Capability::Http],
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host capability an operator grants a plugin at install. `log` is always granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Process,
    WasiRunner,
    Docker,
    Http,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::Process,
        Capability::WasiRunner,
        Capability::Docker,
        Capability::Http,
    ];

    /// The interface's name in the package: `process`, `wasi-runner`, `docker`, `http`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Process => "process",
            Capability::WasiRunner => "wasi-runner",
            Capability::Docker => "docker",
            Capability::Http => "http",
        }
    }

    pub fn parse(name: &str) -> Result<Capability, String> {
        Capability::ALL
            .into_iter()
            .find(|capability| capability.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown capability {name:?}: use {}",
                    Capability::ALL.map(Capability::name).join(", ")
                )
            })
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the embedded default executor is granted: it runs processes and wasi tasks.
pub const DEFAULT_EXECUTOR_GRANTS: &[Capability] = &[Capability::Process, Capability::WasiRunner];

/// What [`crate::PluginHost::validate`] learnt about a component.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginSummary {
    pub kind: PluginKind,
    /// `sha256:<64 hex digits>` of the component's bytes.
    pub digest: String,
    pub size_bytes: u64,
    /// The capabilities the component imports (a subset of those granted).
    pub imports: Vec<Capability>,
    /// For executors: the runtimes `describe` reported.
    pub runtimes: Vec<String>,
    /// For discovery backends: the URI schemes they serve.
    pub schemes: Vec<String>,
    /// For executors with an engine: what `describe` reported of it.
    pub engine: Option<EngineInfo>,
}

/// Interfaces of the package every world may import.
const ALWAYS: [&str; 2] = ["types", "log"];

/// Splits `swarm:plugin/<interface>@<version>`; `None` for other packages.
fn package_item(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

fn version_error(plugin: &str, kind: PluginKind, item: &str, version: &str) -> PluginError {
    let built = if version.is_empty() {
        "an unversioned swarm:plugin package".to_owned()
    } else {
        format!("{WIT_PACKAGE}@{version}")
    };
    PluginError::Version {
        plugin: plugin.to_owned(),
        detail: format!(
            "it was built against {built} (it uses `{item}`), but this host implements \
             {WIT_PACKAGE}@{WIT_VERSION}: rebuild it against the world `{}` from this \
             release's wit/",
            kind.world()
        ),
    }
}

/// Checks the component's exports (the world of `kind`, this version) and imports (WASI, the
/// package's shared interfaces, and granted capabilities of this kind's world only).
pub(crate) fn check(
    plugin: &str,
    component: &Component,
    engine: &Engine,
    kind: PluginKind,
    granted: &[Capability],
) -> Result<(), PluginError> {
    let ty = component.component_type();
    let expected = kind.interface();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if !exports.iter().any(|export| export == expected) {
        let wanted = kind.name();
        if let Some((item, version)) = exports
            .iter()
            .filter_map(|export| package_item(export))
            .find(|(item, version)| *item == wanted && *version != WIT_VERSION)
        {
            return Err(version_error(plugin, kind, item, version));
        }
        let found = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        };
        return Err(PluginError::WrongWorld {
            plugin: plugin.to_owned(),
            expected,
            detail: format!(
                "it does not export `{expected}` of the world `{}` (it exports: {found})",
                kind.world()
            ),
        });
    }
    for (import, _) in ty.imports(engine) {
        if import.starts_with("wasi:") {
            continue;
        }
        let Some((item, version)) = package_item(import) else {
            return Err(PluginError::WrongWorld {
                plugin: plugin.to_owned(),
                expected,
                detail: format!("it imports `{import}`, which this host does not provide"),
            });
        };
        if version != WIT_VERSION {
            return Err(version_error(plugin, kind, item, version));
        }
        if ALWAYS.contains(&item) {
            continue;
        }
        let Ok(capability) = Capability::parse(item) else {
            return Err(PluginError::WrongWorld {
                plugin: plugin.to_owned(),
                expected,
                detail: format!("it imports `{import}`, which this host does not provide"),
            });
        };
        if !kind.capabilities().contains(&capability) {
            return Err(PluginError::NotGranted {
                plugin: plugin.to_owned(),
                detail: format!(
                    "it imports the `{capability}` capability, which {kind} plugins cannot have \
                     (the world `{}` offers: {})",
                    kind.world(),
                    list(kind.capabilities())
                ),
            });
        }
        if !granted.contains(&capability) {
            return Err(PluginError::NotGranted {
                plugin: plugin.to_owned(),
                detail: format!(
                    "it imports the `{capability}` capability, which was not granted \
                     (granted: {}); grant it with --allow {capability}",
                    list(granted)
                ),
            });
        }
    }
    Ok(())
}

/// The capabilities a component imports, in [`Capability::ALL`] order.
pub(crate) fn imported_capabilities(component: &Component, engine: &Engine) -> Vec<Capability> {
    let ty = component.component_type();
    let imported: Vec<Capability> = ty
        .imports(engine)
        .filter_map(|(name, _)| package_item(name))
        .filter_map(|(item, _)| Capability::parse(item).ok())
        .collect();
    Capability::ALL
        .into_iter()
        .filter(|capability| imported.contains(capability))
        .collect()
}

fn list(capabilities: &[Capability]) -> String {
    if capabilities.is_empty() {
        "none".to_owned()
    } else {
        capabilities
            .iter()
            .map(|capability| capability.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    //! Names and parsing; the checks themselves are tested against real components in tests/it.

    use super::*;

    #[test]
    fn names_round_trip() {
        for capability in Capability::ALL {
            assert_eq!(Capability::parse(capability.name()), Ok(capability));
        }
        for kind in PluginKind::ALL {
            assert_eq!(PluginKind::parse(kind.name()), Ok(kind));
            assert!(kind.interface().starts_with("swarm:plugin/"));
            assert!(kind.interface().ends_with(WIT_VERSION));
        }
        assert!(Capability::parse("network").is_err());
        assert!(PluginKind::parse("volume").is_err());
    }

    #[test]
    fn package_items() {
        assert_eq!(
            package_item("swarm:plugin/process@0.2.0"),
            Some(("process", "0.2.0"))
        );
        assert_eq!(
            package_item("swarm:plugin/process@0.1.0"),
            Some(("process", "0.1.0"))
        );
        assert_eq!(package_item("swarm:plugin/log"), Some(("log", "")));
        assert_eq!(package_item("wasi:cli/environment@0.2.6"), None);
        assert_eq!(package_item("swarm:pluginx/log@0.2.0"), None);
    }
}
