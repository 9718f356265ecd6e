//! The one place where bindings for `wit/` are generated: the scheduler, executor and discovery
//! worlds of `swarm:plugin@0.2.0`.

/// Bindings for `swarm:plugin/scheduler-plugin`, including the shared `types` and `log`.
pub mod scheduler_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "swarm:plugin/scheduler-plugin@0.2.0",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

/// Bindings for `swarm:plugin/executor-plugin`; `types` and `log` come from [`scheduler_world`].
pub mod executor_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "swarm:plugin/executor-plugin@0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "swarm:plugin/types": super::scheduler_world::swarm::plugin::types,
            "swarm:plugin/log": super::scheduler_world::swarm::plugin::log,
        },
    });
}

/// Bindings for `swarm:plugin/discovery-plugin`; `types` and `log` come from [`scheduler_world`].
pub mod discovery_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "swarm:plugin/discovery-plugin@0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "swarm:plugin/types": super::scheduler_world::swarm::plugin::types,
            "swarm:plugin/log": super::scheduler_world::swarm::plugin::log,
        },
    });
}

pub use scheduler_world::swarm::plugin::types;
