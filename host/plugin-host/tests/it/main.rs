//! Integration tests of the plugin host against the real default plugins and the test guests.

mod cache;
mod common;
mod docker;
mod executor;
mod plugin_api;
mod robustness;
mod scheduler;
mod sdk;

/// Every guest built by swarm-plugin-artifacts is named by some test here.
#[test]
fn every_guest_is_tested() {
    let sources = [
        include_str!("cache.rs"),
        include_str!("docker.rs"),
        include_str!("executor.rs"),
        include_str!("plugin_api.rs"),
        include_str!("robustness.rs"),
        include_str!("scheduler.rs"),
        include_str!("sdk.rs"),
    ]
    .concat();
    for (name, _) in swarm_plugin_artifacts::ALL {
        assert!(
            sources.contains(&format!("artifacts::{name}")),
            "no test uses the guest {name}"
        );
    }
}
