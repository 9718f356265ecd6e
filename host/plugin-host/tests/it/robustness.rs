//! Misbehaving guests (trap, endless loop, memory bomb, wrong world, not wasm) fail their call or
//! their load with the right error, and the host keeps serving good plugins.

use std::time::Duration;

use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host::{
    EXECUTOR_INTERFACE, HostConfig, PluginError, PluginHost, SCHEDULER_INTERFACE,
};

use crate::common::{config, must_host};

fn strict_config(tasks: &std::path::Path) -> HostConfig {
    let mut config = config(tasks);
    config.call_deadline = Duration::from_millis(200);
    config.memory_limit_bytes = 16 << 20;
    config
}

fn kind(error: &PluginError) -> &'static str {
    match error {
        PluginError::Trap { .. } => "trap",
        PluginError::DeadlineExceeded { .. } => "deadline",
        PluginError::MemoryLimit { .. } => "memory",
        PluginError::WrongWorld { .. } => "wrong-world",
        PluginError::Version { .. } => "version",
        PluginError::NotGranted { .. } => "not-granted",
        PluginError::Quarantined { .. } => "quarantined",
        PluginError::Invalid { .. } => "invalid",
        PluginError::Instantiate { .. } => "instantiate",
        PluginError::Guest { .. } => "guest",
        PluginError::Io { .. } => "io",
        PluginError::Config(_) => "config",
    }
}

/// The good plugins still work on `host`.
async fn must_still_serve(host: &PluginHost) {
    let executor = host
        .load_executor(
            "default",
            artifacts::EXECUTOR_DEFAULT,
            swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
        )
        .expect("load executor");
    assert_eq!(executor.describe().await.expect("describe").name, "default");
    let mut scheduler = host
        .load_scheduler("default", artifacts::SCHEDULER)
        .expect("load scheduler");
    scheduler
        .update_nodes(vec![], vec![])
        .await
        .expect("update nodes");
    assert!(
        scheduler
            .schedule(vec![])
            .await
            .expect("schedule")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_guests_fail_their_calls_with_the_right_error() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(strict_config(tasks.path()));
    host.set_failure_budget(swarm_plugin_host::FailureBudget {
        max_failures: 2,
        window: Duration::from_secs(60),
    });
    for (name, bytes, expected) in [
        ("trap", artifacts::TEST_TRAP, "trap"),
        ("spin", artifacts::TEST_SPIN, "deadline"),
        ("membomb", artifacts::TEST_MEMBOMB, "memory"),
    ] {
        let executor = host
            .load_executor(name, bytes, swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS)
            .expect("load executor");
        let error = executor.describe().await.expect_err("describe fails");
        assert_eq!(kind(&error), expected, "{name}: {error}");
        // `wait` retries a failed `inspect` (it says nothing about the task) until the failure
        // budget quarantines the plugin: the second failure here.
        let error = executor.wait("t1").await.expect_err("wait fails");
        assert_eq!(kind(&error), "quarantined", "{name}: {error}");
        assert!(executor.health().total_failures >= 2, "{name}");
        let mut scheduler = host.load_scheduler(name, bytes).expect("load scheduler");
        for _ in 0..2 {
            let error = scheduler
                .schedule(vec![])
                .await
                .expect_err("schedule fails");
            assert_eq!(kind(&error), expected, "{name}: {error}");
        }
        must_still_serve(&host).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_does_not_hold_up_other_calls() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let mut config = config(tasks.path());
    config.call_deadline = Duration::from_secs(5);
    let host = must_host(config);
    let spin = host
        .load_executor(
            "spin",
            artifacts::TEST_SPIN,
            swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
        )
        .expect("load spin");
    let good = host
        .load_executor(
            "default",
            artifacts::EXECUTOR_DEFAULT,
            swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
        )
        .expect("load executor");
    // Two spinning calls on a two-thread runtime: they yield at every epoch tick.
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let spin = spin.clone();
            tokio::spawn(async move { spin.describe().await })
        })
        .collect();
    assert_eq!(good.describe().await.expect("describe").name, "default");
    assert!(spinners.iter().any(|s| !s.is_finished()));
    for spinner in spinners {
        let error = spinner.await.expect("join").expect_err("spin fails");
        assert_eq!(kind(&error), "deadline", "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_worlds_are_refused_at_load_time() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let Err(error) = host.load_executor(
        "wrong",
        artifacts::TEST_WRONG_WORLD,
        swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
    ) else {
        panic!("the wrong world loaded as an executor");
    };
    let message = error.to_string();
    assert!(
        matches!(error, PluginError::WrongWorld { expected, .. } if expected == EXECUTOR_INTERFACE),
        "{message}"
    );
    assert!(message.contains("swarm:plugin/executor@0.2.0"), "{message}");
    assert!(message.contains("swarm-test:wrong/greeter"), "{message}");
    let Err(error) = host.load_scheduler("wrong", artifacts::TEST_WRONG_WORLD) else {
        panic!("the wrong world loaded as a scheduler");
    };
    assert!(
        matches!(error, PluginError::WrongWorld { expected, .. } if expected == SCHEDULER_INTERFACE),
        "{error}"
    );
    // A scheduler is not an executor, and an executor is not a scheduler.
    let Err(error) = host.load_executor(
        "scheduler",
        artifacts::SCHEDULER,
        swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
    ) else {
        panic!("the scheduler loaded as an executor");
    };
    assert_eq!(kind(&error), "wrong-world", "{error}");
    let Err(error) = host.load_scheduler("executor", artifacts::EXECUTOR_DEFAULT) else {
        panic!("the executor loaded as a scheduler");
    };
    assert_eq!(kind(&error), "wrong-world", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_not_a_component() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let Err(error) = host.load_executor(
        "garbage",
        b"definitely not wasm",
        swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
    ) else {
        panic!("garbage loaded");
    };
    assert_eq!(kind(&error), "invalid", "{error}");
    must_still_serve(&host).await;
}

#[test]
fn config_is_validated() {
    let tasks = tempfile::tempdir().expect("temp dir");
    for (change, expected) in [
        (
            (|c: &mut HostConfig| c.call_deadline = Duration::ZERO) as fn(&mut HostConfig),
            "call_deadline",
        ),
        (|c| c.memory_limit_bytes = 1024, "memory_limit_bytes"),
        (|c| c.cache_dir = Default::default(), "cache_dir"),
        (|c| c.tasks_dir = Default::default(), "tasks_dir"),
    ] {
        let mut config = config(tasks.path());
        change(&mut config);
        let error = config.validate().expect_err("invalid config");
        assert!(error.to_string().contains(expected), "{error}");
        assert!(PluginHost::new(config).is_err());
    }
}
