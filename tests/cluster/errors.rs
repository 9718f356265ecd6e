//! Bad input gets a clear error naming what is wrong, changes nothing, and exits 1; an
//! unreachable manager exits 2 with what to do; unplaceable tasks say why and are placed once
//! the cluster changes.

use std::process::Command;

use swarm_tests::{TestNode, binary, poll};

#[test]
fn invalid_specs_are_refused_with_the_field_named() {
    let node = TestNode::start();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "service",
                "create",
                "--name",
                "bad name",
                "--process",
                "--",
                "true",
            ],
            "spec.annotations.name",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "c",
                "--constraint",
                "node.color==red",
                "--process",
                "--",
                "true",
            ],
            "unknown key \"node.color\"",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "e",
                "--env",
                "NOVALUE",
                "--process",
                "--",
                "true",
            ],
            "NOVALUE",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "r",
                "--replicas",
                "2000000",
                "--process",
                "--",
                "true",
            ],
            "spec.replicas",
        ),
    ];
    for (args, field) in cases {
        let out = node.ctl(args);
        assert_eq!(out.code, 1, "{args:?} should be a user error: {out:?}");
        assert!(
            out.stderr.contains(field),
            "{args:?}: error does not name {field}: {}",
            out.stderr
        );
    }
    // Nothing was created.
    assert_eq!(
        node.ctl(&["--format", "json", "service", "ls"]).ok().json(),
        serde_json::json!([])
    );

    node.ctl(&[
        "service",
        "create",
        "--name",
        "dup",
        "--process",
        "--",
        "sleep",
        "1000",
    ])
    .ok();
    let again = node.ctl(&[
        "service",
        "create",
        "--name",
        "dup",
        "--process",
        "--",
        "sleep",
        "1000",
    ]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already"), "{}", again.stderr);
    let missing = node.ctl(&["service", "inspect", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
    node.ctl(&["service", "rm", "dup"]).ok();
}

#[test]
fn an_unreachable_manager_exits_2_and_swarm_socket_works() {
    let out = Command::new(binary("swarmctl"))
        .args(["-s", "/nonexistent/swarmd.sock", "node", "ls"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/swarmd.sock") && err.contains("swarmd"),
        "{err}"
    );

    let node = TestNode::start();
    let out = Command::new(binary("swarmctl"))
        .env("SWARM_SOCKET", node.socket())
        .args(["--format", "json", "node", "ls"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(nodes.as_array().map(Vec::len), Some(1));
}

#[test]
fn an_unplaceable_task_says_why_and_is_placed_when_a_node_fits() {
    let node = TestNode::start();
    node.ctl(&[
        "service",
        "create",
        "--name",
        "picky",
        "--constraint",
        "node.labels.zone==east",
        "--process",
        "--",
        "sleep",
        "1000",
    ])
    .ok();
    let reason = poll("the scheduler's reason", || {
        let tasks = node.tasks("picky");
        let t = tasks.first()?;
        let err = t["status"]["err"].as_str()?.to_string();
        (t["status"]["state"] == "pending" && !err.is_empty()).then_some(err)
    });
    assert_eq!(
        reason,
        "no suitable node (scheduling constraints not satisfied on 1 node)"
    );

    let huge = node.ctl(&[
        "service",
        "create",
        "--name",
        "huge",
        "--reserve-memory",
        "100TiB",
        "--process",
        "--",
        "sleep",
        "1000",
    ]);
    huge.ok();
    let reason = poll("the memory reason", || {
        let tasks = node.tasks("huge");
        let err = tasks.first()?["status"]["err"].as_str()?.to_string();
        (!err.is_empty()).then_some(err)
    });
    assert_eq!(reason, "no suitable node (1 node has insufficient memory)");

    let node_id = node.ctl(&["--format", "json", "node", "ls"]).ok().json()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    node.ctl(&["node", "update", &node_id, "--label-add", "zone=east"])
        .ok();
    poll("the task placed and running", || {
        (node.running("picky").len() == 1).then_some(())
    });
    node.ctl(&["service", "rm", "picky", "huge"]).ok();
    poll("every process stopped", || {
        node.live_task_pids().is_empty().then_some(())
    });
}
