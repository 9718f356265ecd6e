//! The embedded default executor's runtimes: host processes (with logs and the restart policy)
//! and WASI components.

use swarm_tests::{TestNode, path_str, poll};

#[test]
fn a_failing_process_is_restarted_by_policy_and_its_logs_are_readable() {
    let node = TestNode::start();
    node.ctl(&[
        "service",
        "create",
        "--name",
        "flaky",
        "--restart-condition",
        "on-failure",
        "--restart-delay",
        "100ms",
        "--restart-max-attempts",
        "2",
        "--env",
        "GREETING=hello",
        "--process",
        "--",
        "sh",
        "-c",
        "echo $GREETING; echo oops >&2; exit 3",
    ])
    .ok();
    // One run plus two restarts, then the slot stays failed.
    let tasks = poll("three failed runs", || {
        let tasks = node.tasks("flaky");
        let failed = tasks
            .iter()
            .filter(|t| t["status"]["state"] == "failed")
            .count();
        (failed == 3).then_some(tasks)
    });
    for t in &tasks {
        assert_eq!(t["status"]["exit"]["code"], 3, "{t}");
    }
    let id = tasks[0]["id"].as_str().expect("id");
    let logs = node.ctl(&["task", "logs", id]).ok();
    assert_eq!(logs.stdout, "hello\n");
    assert!(logs.stderr.contains("oops"), "{}", logs.stderr);

    // A task that completes is not restarted under on-failure.
    node.ctl(&[
        "service",
        "create",
        "--name",
        "once",
        "--restart-condition",
        "on-failure",
        "--process",
        "--",
        "true",
    ])
    .ok();
    poll("the task complete", || {
        let tasks = node.tasks("once");
        (tasks.len() == 1 && tasks[0]["status"]["state"] == "complete").then_some(())
    });
    assert_eq!(node.tasks("flaky").len(), 3, "max attempts exceeded");
    node.ctl(&["service", "rm", "flaky", "once"]).ok();
}

#[test]
fn a_wasi_component_runs_as_a_task() {
    let node = TestNode::start();
    let module = std::path::Path::new(swarm_plugin_artifacts::SAMPLE_TASK_PATH);
    node.ctl(&[
        "service",
        "create",
        "--name",
        "hello",
        "--restart-condition",
        "none",
        "--env",
        "SAMPLE_MESSAGE=from-the-spec",
        "--wasi",
        path_str(module),
        "--",
        "echo",
        "hi-there",
    ])
    .ok();
    let task = poll("the component to complete", || {
        let tasks = node.tasks("hello");
        let t = tasks.first()?.clone();
        (t["status"]["state"] == "complete").then_some(t)
    });
    let logs = node
        .ctl(&["task", "logs", task["id"].as_str().expect("id")])
        .ok();
    assert!(
        logs.stdout.contains("SAMPLE_MESSAGE=from-the-spec"),
        "{}",
        logs.stdout
    );
    assert!(logs.stdout.contains("hi-there"), "{}", logs.stdout);

    let missing = node.ctl(&[
        "service",
        "create",
        "--name",
        "nofile",
        "--wasi",
        "/nonexistent/x.wasm",
    ]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("/nonexistent/x.wasm"),
        "{}",
        missing.stderr
    );
}
