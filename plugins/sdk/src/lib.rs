//! swarm-plugin-sdk: write swarm plugins in Rust without touching the generated bindings.
//!
//! The bindings of the three worlds of `swarm:plugin@0.2.0` (`executor-plugin`,
//! `scheduler-plugin`, `discovery-plugin`) are generated once, here, from the WIT in `wit/`.
//! A plugin crate (`crate-type = ["cdylib"]`, built with `--target wasm32-wasip2`) implements the
//! trait of its kind and names its type in the export macro of that kind:
//!
//! ```
//! use swarm_plugin_sdk::{Scheduler, types::{GroupResult, NodeInfo, TaskGroup}};
//!
//! struct Nowhere;
//!
//! impl Scheduler for Nowhere {
//!     fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {}
//!     fn schedule(groups: Vec<TaskGroup>) -> Vec<GroupResult> {
//!         groups.into_iter().map(|group| GroupResult {
//!             unplaced: group.task_ids.into_iter().map(|id| (id, "no".to_owned())).collect(),
//!             service_id: group.service_id,
//!             assignments: Vec::new(),
//!         }).collect()
//!     }
//! }
//!
//! swarm_plugin_sdk::export_scheduler!(Nowhere);
//! ```
//!
//! - [`types`]: the records of the WIT (`Task`, `NodeInfo`, `ExecutorError`, ...).
//! - [`process`], [`wasi_runner`], [`docker`], [`http`]: the host capabilities, as functions.
//!   A component imports only the capabilities it calls, and the operator must grant them at
//!   install; an executor cannot import `http`, a discovery backend nothing but `http`.
//! - [`log`]: the host's log, always granted.
//!
//! Errors: `ExecutorError` and `DiscoveryError` convert from `String` and `&str`, so a
//! capability's `Result<_, String>` passes through `?` in a plugin call.

// The generated export macros name this crate by its path; so does the code generated here.
extern crate self as swarm_plugin_sdk;

/// The generated bindings. Plugins use the re-exports at the crate root instead.
#[doc(hidden)]
pub mod bindings {
    /// The record types and every host capability (imports only, so a component keeps just
    /// the imports it calls).
    pub mod shared {
        wit_bindgen::generate!({
            path: "../../wit",
            inline: "
                package swarm-sdk:shared;
                world shared {
                    import swarm:plugin/types@0.2.0;
                    import swarm:plugin/process@0.2.0;
                    import swarm:plugin/wasi-runner@0.2.0;
                    import swarm:plugin/docker@0.2.0;
                    import swarm:plugin/http@0.2.0;
                    import swarm:plugin/log@0.2.0;
                }
            ",
            world: "swarm-sdk:shared/shared",
            generate_all,
            generate_unused_types: true,
            runtime_path: "swarm_plugin_sdk::__rt",
        });
    }

    /// `swarm:plugin/executor-plugin@0.2.0`: the `executor` export.
    pub mod executor {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "swarm:plugin/executor-plugin@0.2.0",
            with: {
                "swarm:plugin/types@0.2.0": swarm_plugin_sdk::types,
                "swarm:plugin/process@0.2.0": swarm_plugin_sdk::process,
                "swarm:plugin/wasi-runner@0.2.0": swarm_plugin_sdk::wasi_runner,
                "swarm:plugin/docker@0.2.0": swarm_plugin_sdk::docker,
                "swarm:plugin/log@0.2.0": swarm_plugin_sdk::bindings::shared::swarm::plugin::log,
            },
            runtime_path: "swarm_plugin_sdk::__rt",
            pub_export_macro: true,
            export_macro_name: "export_executor",
            default_bindings_module: "swarm_plugin_sdk::bindings::executor",
        });
    }

    /// `swarm:plugin/scheduler-plugin@0.2.0`: the `scheduler` export.
    pub mod scheduler {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "swarm:plugin/scheduler-plugin@0.2.0",
            with: {
                "swarm:plugin/types@0.2.0": swarm_plugin_sdk::types,
                "swarm:plugin/log@0.2.0": swarm_plugin_sdk::bindings::shared::swarm::plugin::log,
            },
            runtime_path: "swarm_plugin_sdk::__rt",
            pub_export_macro: true,
            export_macro_name: "export_scheduler",
            default_bindings_module: "swarm_plugin_sdk::bindings::scheduler",
        });
    }

    /// `swarm:plugin/discovery-plugin@0.2.0`: the `discovery` export.
    pub mod discovery {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "swarm:plugin/discovery-plugin@0.2.0",
            with: {
                "swarm:plugin/types@0.2.0": swarm_plugin_sdk::types,
                "swarm:plugin/http@0.2.0": swarm_plugin_sdk::http,
                "swarm:plugin/log@0.2.0": swarm_plugin_sdk::bindings::shared::swarm::plugin::log,
            },
            runtime_path: "swarm_plugin_sdk::__rt",
            pub_export_macro: true,
            export_macro_name: "export_discovery",
            default_bindings_module: "swarm_plugin_sdk::bindings::discovery",
        });
    }
}

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

pub mod log;

pub use bindings::shared::swarm::plugin::{docker, http, process, types, wasi_runner};

/// The WIT package version these bindings were generated from; the host refuses a component
/// built against another one.
pub const WIT_VERSION: &str = "0.2.0";

/// An executor plugin (`swarm:plugin/executor`): runs tasks through the host capabilities.
///
/// Stateless: the host may run every call in a fresh instance, and several at once, so keep
/// task state in the capabilities (keyed by task id), never in statics.
pub use bindings::executor::exports::swarm::plugin::executor::Guest as Executor;

/// A scheduler plugin (`swarm:plugin/scheduler`): places batches of tasks on a resident node set.
pub use bindings::scheduler::exports::swarm::plugin::scheduler::Guest as Scheduler;

/// A discovery plugin (`swarm:plugin/discovery`): lists the members of a cluster from a URI.
pub use bindings::discovery::exports::swarm::plugin::discovery::Guest as Discovery;

/// Exports a type implementing [`Executor`] as the component's `executor` interface:
/// `swarm_plugin_sdk::export_executor!(MyExecutor);` once, at the crate root.
pub use bindings::executor::export_executor;

/// Exports a type implementing [`Scheduler`]: `swarm_plugin_sdk::export_scheduler!(MyScheduler);`.
pub use bindings::scheduler::export_scheduler;

/// Exports a type implementing [`Discovery`]: `swarm_plugin_sdk::export_discovery!(MyBackend);`.
pub use bindings::discovery::export_discovery;

impl From<String> for types::ExecutorError {
    fn from(message: String) -> Self {
        types::ExecutorError { message }
    }
}

impl From<&str> for types::ExecutorError {
    fn from(message: &str) -> Self {
        types::ExecutorError {
            message: message.to_owned(),
        }
    }
}

impl From<String> for types::DiscoveryError {
    fn from(message: String) -> Self {
        types::DiscoveryError { message }
    }
}

impl From<&str> for types::DiscoveryError {
    fn from(message: &str) -> Self {
        types::DiscoveryError {
            message: message.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Native tests of the conversions (the capability functions only exist inside a component).

    use super::types::{DiscoveryError, ExecutorError};

    #[test]
    fn errors_convert_from_text() {
        fn fails() -> Result<(), ExecutorError> {
            Err(String::from("no such task"))?
        }
        assert_eq!(
            fails().map_err(|e| e.message),
            Err("no such task".to_owned())
        );
        assert_eq!(DiscoveryError::from("bad uri").message, "bad uri");
    }
}
