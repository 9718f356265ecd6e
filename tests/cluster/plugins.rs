//! Plugins through the CLI: `plugin install/ls/inspect/rm` against a real swarmd, with real
//! components, `cluster update --scheduler`, and the refusals (wrong world, names in use).

use serde_json::Value;
use swarm_plugin_artifacts::{
    EXECUTOR_DEFAULT, EXECUTOR_DEFAULT_PATH, SCHEDULER, SCHEDULER_PATH, TEST_WRONG_WORLD_PATH,
};
use swarm_tests::{TestNode, poll};

fn plugins(node: &TestNode) -> Vec<Value> {
    node.ctl(&["--format", "json", "plugin", "ls"])
        .ok()
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn plugins_install_list_inspect_switch_and_remove_through_the_cli() {
    let node = TestNode::start();
    assert!(plugins(&node).is_empty());

    let installed = node
        .ctl(&[
            "plugin",
            "install",
            "--kind",
            "executor",
            "runner",
            EXECUTOR_DEFAULT_PATH,
            "--allow",
            "process,wasi-runner",
        ])
        .ok()
        .stdout;
    assert!(
        installed.contains("Digest:") && installed.contains("sha256:"),
        "install prints the digest: {installed}"
    );
    let scheduler = node
        .ctl(&[
            "--format",
            "json",
            "plugin",
            "install",
            "--kind",
            "scheduler",
            "spread",
            SCHEDULER_PATH,
        ])
        .ok()
        .json();
    assert_eq!(scheduler["spec"]["kind"], "scheduler");
    assert_eq!(scheduler["size_bytes"], SCHEDULER.len() as u64);

    let listed = plugins(&node);
    let names: Vec<&str> = listed
        .iter()
        .map(|p| p["spec"]["annotations"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["runner", "spread"], "sorted by name");
    let runner = &listed[0];
    assert_eq!(runner["spec"]["kind"], "executor");
    assert_eq!(
        runner["spec"]["capabilities"],
        serde_json::json!(["process", "wasi-runner"])
    );
    assert_eq!(runner["size_bytes"], EXECUTOR_DEFAULT.len() as u64);
    let digest = runner["digest"].as_str().expect("digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(
        runner.get("component").is_none(),
        "listings leave the bytes out"
    );
    assert!(installed.contains(digest), "{installed}");

    let table = node.ctl(&["plugin", "ls"]).ok().stdout;
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "NAME",
            "KIND",
            "DIGEST",
            "SIZE",
            "CAPABILITIES",
            "STATUS"
        ]
    );
    assert!(table.contains(&digest[..19]), "short digest: {table}");
    assert!(table.contains("process,wasi-runner"), "{table}");

    let inspected = node
        .ctl(&["--format", "json", "plugin", "inspect", "runner"])
        .ok()
        .json();
    assert_eq!(inspected["id"], runner["id"]);
    assert!(
        inspected["runtimes"]
            .as_array()
            .expect("runtimes")
            .iter()
            .any(|r| r == "process"),
        "{inspected}"
    );
    assert_eq!(inspected["status"]["quarantined"], false);

    // A component of another world is refused, with the expected world named; nothing is stored.
    let wrong = node.ctl(&[
        "plugin",
        "install",
        "--kind",
        "executor",
        "wrong",
        TEST_WRONG_WORLD_PATH,
    ]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong.stderr.contains("swarm:plugin/executor@0.2.0"),
        "{}",
        wrong.stderr
    );
    assert_eq!(plugins(&node).len(), 2);

    // The cluster switches scheduler without a restart; the manager logs the switch.
    node.ctl(&["cluster", "update", "--scheduler", "spread"])
        .ok();
    let cluster = node
        .ctl(&["--format", "json", "cluster", "inspect"])
        .ok()
        .json();
    assert_eq!(cluster["spec"]["scheduler"], "spread");
    poll("the scheduler driver to switch to spread", || {
        node.log()
            .lines()
            .any(|l| {
                l.contains("scheduler switched to an installed plugin") && l.contains("spread")
            })
            .then_some(())
    });
    node.ctl(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--process",
        "--",
        "sleep",
        "1000",
    ])
    .ok();
    poll("2 running tasks placed by spread", || {
        (node.running("web").len() == 2).then_some(())
    });
    let table = node.ctl(&["plugin", "inspect", "spread"]).ok().stdout;
    assert!(
        table.contains("Used by:") && table.contains("cluster default"),
        "{table}"
    );

    // A plugin in use cannot be removed; the error names who uses it.
    let in_use = node.ctl(&["plugin", "rm", "spread"]);
    assert_eq!(in_use.code, 1, "{in_use:?}");
    assert!(
        in_use.stderr.contains("in use by cluster default"),
        "{}",
        in_use.stderr
    );
    let unknown = node.ctl(&["cluster", "update", "--scheduler", "nope"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("no plugin named \"nope\" is installed"),
        "{}",
        unknown.stderr
    );

    node.ctl(&["cluster", "update", "--scheduler", ""]).ok();
    let removed = node.ctl(&["plugin", "rm", "spread", "runner"]).ok().stdout;
    assert_eq!(removed.lines().collect::<Vec<_>>(), ["spread", "runner"]);
    assert!(plugins(&node).is_empty());
    // Tasks placed by the removed scheduler keep running.
    assert_eq!(node.running("web").len(), 2);
}

#[test]
fn a_service_runs_on_an_installed_executor_delivered_with_its_assignments() {
    let mut node = TestNode::start();
    node.ctl(&[
        "plugin",
        "install",
        "--kind",
        "executor",
        "runner",
        EXECUTOR_DEFAULT_PATH,
        "--allow",
        "process,wasi-runner",
    ])
    .ok();
    node.ctl(&[
        "service",
        "create",
        "--name",
        "custom",
        "--replicas",
        "2",
        "--executor",
        "runner",
        "--process",
        "--",
        "sleep",
        "1000",
    ])
    .ok();
    poll("2 tasks running on the installed executor", || {
        (node.running("custom").len() == 2).then_some(())
    });
    let tasks = node.ctl(&["--format", "json", "task", "ls"]).ok().json();
    let executors: Vec<&str> = tasks
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["executor"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(executors, ["runner", "runner"], "{tasks}");
    // The agent got the component with the assignments and checked its digest.
    assert!(
        node.log()
            .lines()
            .any(|l| l.contains("installed executor loaded") && l.contains("runner")),
        "{}",
        node.log()
    );
    let in_use = node.ctl(&["plugin", "rm", "runner"]);
    assert_eq!(in_use.code, 1, "{in_use:?}");
    assert!(
        in_use.stderr.contains("service custom"),
        "{}",
        in_use.stderr
    );

    // kill -9 and restart: the agent loads the executor it kept before adopting its tasks, so
    // the same processes keep running under it (not failed, not restarted).
    let ids = |node: &TestNode| {
        let mut ids: Vec<String> = node
            .running("custom")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    };
    let before = ids(&node);
    let pids: Vec<Option<i32>> = before.iter().map(|id| node.task_pid(id)).collect();
    assert!(pids.iter().all(Option::is_some), "{pids:?}");
    node.kill9();
    node.restart();
    // The store still says "running" from before the kill, so wait for the agent itself: it
    // reconciles its stored tasks (a second time in this log) only after loading the executor.
    poll("the restarted agent to reconcile its stored tasks", || {
        let log = node.log();
        (log.matches("stored tasks reconciled").count() >= 2).then_some(())
    });
    poll("the adopted tasks running again", || {
        (node.running("custom").len() == 2).then_some(())
    });
    assert_eq!(ids(&node), before, "tasks were replaced instead of adopted");
    let after: Vec<Option<i32>> = before.iter().map(|id| node.task_pid(id)).collect();
    assert_eq!(after, pids, "the same processes");
    assert!(
        node.log()
            .contains("loading installed executors kept from the last run"),
        "{}",
        node.log()
    );
}
