//! The plugin API contract at load time: the package version check, capability grants, the
//! summary `validate` gives before an install, and discovery plugins' failures.

use std::time::Duration;

use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host::{
    Capability, DEFAULT_EXECUTOR_GRANTS, FailureBudget, PluginError, PluginKind, WIT_VERSION,
};

use crate::common::{config, must_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_against_another_version_is_refused_naming_both() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let Err(error) =
        host.load_executor("old", artifacts::TEST_OLD_VERSION, DEFAULT_EXECUTOR_GRANTS)
    else {
        panic!("a 0.1.0 component loaded");
    };
    let message = error.to_string();
    assert!(matches!(error, PluginError::Version { .. }), "{message}");
    assert!(message.contains("swarm:plugin@0.1.0"), "{message}");
    assert!(
        message.contains(&format!("swarm:plugin@{WIT_VERSION}")),
        "{message}"
    );
    assert!(
        message.contains("swarm:plugin/executor-plugin@0.2.0"),
        "names the expected world: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_must_be_granted() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    // The default executor imports `process` and `wasi-runner`.
    let Err(error) = host.load_executor("default", artifacts::EXECUTOR_DEFAULT, &[]) else {
        panic!("loaded without its capabilities");
    };
    let message = error.to_string();
    assert!(matches!(error, PluginError::NotGranted { .. }), "{message}");
    assert!(message.contains("`process`"), "{message}");
    assert!(message.contains("--allow process"), "{message}");
    let Err(error) = host.load_executor(
        "default",
        artifacts::EXECUTOR_DEFAULT,
        &[Capability::Process],
    ) else {
        panic!("loaded without wasi-runner");
    };
    assert!(error.to_string().contains("`wasi-runner`"), "{error}");
    assert!(error.to_string().contains("granted: process"), "{error}");
    // Granting more than it imports is fine.
    let all = Capability::ALL;
    host.load_executor("default", artifacts::EXECUTOR_DEFAULT, &all)
        .expect("loads with every capability granted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_summarises_what_an_install_stores() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let summary = host
        .validate(
            PluginKind::Executor,
            "default",
            artifacts::EXECUTOR_DEFAULT,
            &Capability::ALL,
        )
        .await
        .expect("valid executor");
    assert_eq!(summary.kind, PluginKind::Executor);
    assert_eq!(
        summary.imports,
        vec![Capability::Process, Capability::WasiRunner]
    );
    assert_eq!(summary.runtimes, vec!["process", "wasi"]);
    assert_eq!(summary.size_bytes, artifacts::EXECUTOR_DEFAULT.len() as u64);
    assert!(summary.digest.starts_with("sha256:"), "{}", summary.digest);
    assert_eq!(summary.digest.len(), "sha256:".len() + 64);
    let scheduler = host
        .validate(PluginKind::Scheduler, "s", artifacts::SCHEDULER, &[])
        .await
        .expect("valid scheduler");
    assert!(scheduler.imports.is_empty());
    assert_ne!(scheduler.digest, summary.digest);
    // The wrong kind, and a guest that traps in `describe`, are refused.
    let error = host
        .validate(PluginKind::Scheduler, "d", artifacts::EXECUTOR_DEFAULT, &[])
        .await
        .expect_err("an executor is not a scheduler");
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{error}");
    let error = host
        .validate(PluginKind::Executor, "trap", artifacts::TEST_TRAP, &[])
        .await
        .expect_err("describe traps");
    assert!(matches!(error, PluginError::Trap { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_discovery_plugins_fail_their_calls_only() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let mut strict = config(tasks.path());
    strict.call_deadline = Duration::from_millis(200);
    strict.memory_limit_bytes = 16 << 20;
    let host = must_host(strict);
    for (bytes, expected) in [
        (artifacts::TEST_TRAP, "trap"),
        (artifacts::TEST_SPIN, "deadline"),
        (artifacts::TEST_MEMBOMB, "memory"),
    ] {
        let mut discovery = host
            .load_discovery("bad", bytes, &[Capability::Http])
            .expect("loads");
        let error = discovery
            .initialize(
                "nodes://127.0.0.1:1",
                Duration::from_secs(1),
                Duration::from_secs(3),
            )
            .await
            .expect_err("fails");
        let kind = match error {
            PluginError::Trap { .. } => "trap",
            PluginError::DeadlineExceeded { .. } => "deadline",
            PluginError::MemoryLimit { .. } => "memory",
            _ => "other",
        };
        assert_eq!(kind, expected, "{error}");
        // Calls before a successful initialize say so instead of calling the guest.
        let error = discovery.watch().await.expect_err("not initialized");
        assert!(error.to_string().contains("not initialized"), "{error}");
    }
    // An executor cannot be granted a discovery capability, nor a discovery backend `process`.
    let Err(error) = host.load_discovery("exec", artifacts::EXECUTOR_DEFAULT, &Capability::ALL)
    else {
        panic!("an executor loaded as a discovery backend");
    };
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_failing_is_quarantined_and_others_are_not() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    host.set_failure_budget(FailureBudget {
        max_failures: 3,
        window: Duration::from_secs(60),
    });
    let trap = host
        .load_executor("trap", artifacts::TEST_TRAP, DEFAULT_EXECUTOR_GRANTS)
        .expect("loads");
    let good = host
        .load_executor(
            "default",
            artifacts::EXECUTOR_DEFAULT,
            DEFAULT_EXECUTOR_GRANTS,
        )
        .expect("loads");
    for _ in 0..3 {
        let error = trap.describe().await.expect_err("traps");
        assert!(matches!(error, PluginError::Trap { .. }), "{error}");
    }
    let health = trap.health();
    assert!(health.quarantined, "{health:?}");
    assert_eq!(health.total_failures, 3);
    let error = trap.describe().await.expect_err("quarantined");
    assert!(matches!(error, PluginError::Quarantined { .. }), "{error}");
    assert!(
        error.to_string().contains("trapped"),
        "names the last failure: {error}"
    );
    // A quarantined call does not run the guest, so it does not count again.
    assert_eq!(trap.health().total_failures, 3);
    // Clones share the health; the other plugin is unaffected.
    assert!(trap.clone().health().quarantined);
    assert_eq!(good.describe().await.expect("describe").name, "default");
    assert!(!good.health().quarantined);
    // A scheduler quarantines the same way.
    let mut scheduler = host
        .load_scheduler("trap", artifacts::TEST_TRAP)
        .expect("loads");
    for _ in 0..3 {
        let error = scheduler.schedule(Vec::new()).await.expect_err("traps");
        assert!(matches!(error, PluginError::Trap { .. }), "{error}");
    }
    let error = scheduler
        .update_nodes(Vec::new(), Vec::new())
        .await
        .expect_err("quarantined");
    assert!(matches!(error, PluginError::Quarantined { .. }), "{error}");
    assert!(scheduler.health().quarantined);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_failing_only_in_schedule_keeps_its_node_set_calls() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let mut flaky = host
        .load_scheduler("flaky", artifacts::TEST_FLAKY_SCHEDULER)
        .expect("loads");
    flaky
        .update_nodes(Vec::new(), Vec::new())
        .await
        .expect("takes the node set");
    let error = flaky.schedule(Vec::new()).await.expect_err("traps");
    assert!(matches!(error, PluginError::Trap { .. }), "{error}");
    assert_eq!(flaky.health().total_failures, 1);
    // A fresh instance takes the node set again.
    flaky
        .update_nodes(Vec::new(), Vec::new())
        .await
        .expect("a fresh instance");
}
