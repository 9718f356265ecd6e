//! The README's tour: node ls, service create/ls/scale/rm, task ls, with the processes checked.

use swarm_tests::{TestNode, cmdline, poll, process_alive};

#[test]
fn a_replicated_service_runs_scales_and_stops() {
    let node = TestNode::start();

    let nodes = node.ctl(&["node", "ls"]).ok().stdout;
    let node_id = node.ctl(&["--format", "json", "node", "ls"]).ok().json()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    insta::assert_snapshot!(
        "node_ls",
        nodes.replace(&node_id, &format!("{:<25}", "[NODE ID]"))
    );

    let created = node
        .ctl(&[
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
    let service_id = created.stdout.trim().to_string();
    assert_eq!(
        service_id.len(),
        25,
        "service create prints the new id: {created:?}"
    );

    let running = poll("3 running tasks", || {
        let r = node.running("web");
        (r.len() == 3).then_some(r)
    });
    // The processes really exist, one per task, and run the command.
    for t in &running {
        let id = t["id"].as_str().expect("task id");
        let pid = poll("the task's pid", || node.task_pid(id));
        assert!(process_alive(pid), "task {id}'s process {pid} is not alive");
        assert_eq!(cmdline(pid), "sleep 1000");
    }
    let mut slots: Vec<u64> = running
        .iter()
        .map(|t| t["slot"].as_u64().expect("slot"))
        .collect();
    slots.sort();
    assert_eq!(slots, vec![1, 2, 3]);

    let ls = node.ctl(&["service", "ls"]).ok().stdout;
    insta::assert_snapshot!(
        "service_ls",
        ls.replace(&service_id, &format!("{:<25}", "[SERVICE ID]"))
    );

    // Each task object carries its current and desired state.
    let tasks = node
        .ctl(&["--format", "json", "task", "ls", "--service", "web"])
        .ok()
        .json();
    for t in tasks.as_array().expect("array") {
        assert_eq!(t["desired_state"], "running");
        assert_eq!(t["status"]["state"], "running");
        assert_eq!(t["service_id"], service_id.as_str());
    }
    let table = node.ctl(&["task", "ls", "--service", "web"]).ok().stdout;
    for name in ["web.1", "web.2", "web.3"] {
        assert!(table.contains(name), "task ls lacks {name}:\n{table}");
    }

    node.ctl(&["service", "scale", "web", "5"]).ok();
    poll("5 running tasks", || {
        (node.running("web").len() == 5).then_some(())
    });
    poll("5 live processes", || {
        (node.live_task_pids().len() == 5).then_some(())
    });

    node.ctl(&["service", "scale", "web", "2"]).ok();
    poll("2 live processes", || {
        (node.live_task_pids().len() == 2).then_some(())
    });
    poll("scaled-down tasks reaped", || {
        (node.tasks("web").len() == 2).then_some(())
    });

    node.ctl(&["service", "rm", "web"]).ok();
    poll("every process stopped", || {
        node.live_task_pids().is_empty().then_some(())
    });
    poll("the tasks reaped", || {
        let all = node
            .ctl(&["--format", "json", "task", "ls", "--all"])
            .ok()
            .json();
        all.as_array().is_some_and(|a| a.is_empty()).then_some(())
    });
    let services = node.ctl(&["--format", "json", "service", "ls"]).ok().json();
    assert_eq!(services, serde_json::json!([]));
}

#[test]
fn a_global_service_runs_one_task_per_node_and_follows_drain() {
    let node = TestNode::start();
    node.ctl(&[
        "service",
        "create",
        "--name",
        "agent",
        "--mode",
        "global",
        "--process",
        "--",
        "sleep",
        "1000",
    ])
    .ok();
    let running = poll("one global task", || {
        let r = node.running("agent");
        (r.len() == 1).then_some(r)
    });
    assert_eq!(running[0]["slot"], 0);
    let node_id = node.ctl(&["--format", "json", "node", "ls"]).ok().json()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(running[0]["node_id"], node_id.as_str());

    // Draining the node stops its tasks and places none.
    node.ctl(&["node", "update", &node_id, "--availability", "drain"])
        .ok();
    poll("no live process on the drained node", || {
        node.live_task_pids().is_empty().then_some(())
    });
    assert!(node.running("agent").is_empty());
    node.ctl(&["node", "update", &node_id, "--availability", "active"])
        .ok();
    poll("the global task back", || {
        (node.running("agent").len() == 1).then_some(())
    });
    node.ctl(&["service", "rm", "agent"]).ok();
    poll("every process stopped", || {
        node.live_task_pids().is_empty().then_some(())
    });
}

#[test]
fn cluster_settings_can_be_read_and_changed() {
    let node = TestNode::start();
    let cluster = node
        .ctl(&["--format", "json", "cluster", "inspect"])
        .ok()
        .json();
    assert_eq!(
        cluster["spec"]["orchestration"]["task_history_retention_limit"],
        5
    );
    assert_eq!(cluster["spec"]["dispatcher"]["heartbeat_period"], "5s");
    node.ctl(&[
        "cluster",
        "update",
        "--task-history-limit",
        "2",
        "--heartbeat-period",
        "2s",
    ])
    .ok();
    let cluster = node
        .ctl(&["--format", "json", "cluster", "inspect"])
        .ok()
        .json();
    assert_eq!(
        cluster["spec"]["orchestration"]["task_history_retention_limit"],
        2
    );
    assert_eq!(cluster["spec"]["dispatcher"]["heartbeat_period"], "2s");

    // With a history limit of 2, a crash-looping slot keeps its current task and 2 old ones.
    node.ctl(&[
        "service",
        "create",
        "--name",
        "crash",
        "--restart-delay",
        "0s",
        "--process",
        "--",
        "false",
    ])
    .ok();
    poll("several restarts", || {
        let failed = node
            .tasks("crash")
            .iter()
            .filter(|t| t["status"]["state"] == "failed")
            .count();
        (failed >= 2).then_some(())
    });
    // Let it go on restarting for a while; the history stays bounded the whole time.
    let mut seen_restarts = 0;
    poll("many restarts with a bounded history", || {
        let tasks = node.tasks("crash");
        assert!(
            tasks.len() <= 4,
            "history not trimmed: {} tasks",
            tasks.len()
        );
        seen_restarts += 1;
        (seen_restarts >= 20).then_some(())
    });
    node.ctl(&["service", "rm", "crash"]).ok();
}
