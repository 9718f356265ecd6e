//! `kill -9` of swarmd: the committed state comes back exactly, and running tasks are adopted,
//! not restarted.

use std::collections::BTreeMap;

use swarm_tests::{TestNode, poll, process_alive};

#[test]
fn kill9_and_restart_recover_the_state_and_adopt_running_tasks() {
    let mut node = TestNode::start();
    node.ctl(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--process",
        "--",
        "sleep",
        "1000",
    ])
    .ok();
    node.ctl(&[
        "service",
        "create",
        "--name",
        "api",
        "--replicas",
        "2",
        "--process",
        "--",
        "sleep",
        "1001",
    ])
    .ok();
    poll("5 running tasks", || {
        (node.running("web").len() == 3 && node.running("api").len() == 2).then_some(())
    });

    let pids = |node: &TestNode| -> BTreeMap<String, i32> {
        ["web", "api"]
            .iter()
            .flat_map(|s| node.running(s))
            .map(|t| {
                let id = t["id"].as_str().expect("id").to_string();
                let pid = node.task_pid(&id).expect("pid");
                (id, pid)
            })
            .collect()
    };
    let before_pids = pids(&node);
    let services_before = node.ctl(&["--format", "json", "service", "ls"]).ok().json();
    let tasks_before = node
        .ctl(&["--format", "json", "task", "ls", "--all"])
        .ok()
        .json();

    node.kill9();
    // The tasks outlive swarmd.
    for pid in before_pids.values() {
        assert!(process_alive(*pid), "task process {pid} died with swarmd");
    }
    node.restart();

    let services_after = node.ctl(&["--format", "json", "service", "ls"]).ok().json();
    assert_eq!(
        services_after, services_before,
        "services changed across kill -9"
    );
    let ids = |v: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    };
    let tasks_after = node
        .ctl(&["--format", "json", "task", "ls", "--all"])
        .ok()
        .json();
    assert_eq!(
        ids(&tasks_after),
        ids(&tasks_before),
        "tasks changed across kill -9"
    );

    // The agent re-registers and adopts the same processes.
    poll("the tasks running again", || {
        (node.running("web").len() == 3 && node.running("api").len() == 2).then_some(())
    });
    assert_eq!(
        pids(&node),
        before_pids,
        "tasks were restarted instead of adopted"
    );

    // The cluster keeps working after the restart.
    node.ctl(&["service", "scale", "web", "4"]).ok();
    poll("4 running web tasks", || {
        (node.running("web").len() == 4).then_some(())
    });
    node.ctl(&["service", "rm", "web", "api"]).ok();
    poll("every process stopped", || {
        node.live_task_pids().is_empty().then_some(())
    });
    assert!(
        !node.log().contains("panicked"),
        "swarmd panicked:\n{}",
        node.log()
    );
}
