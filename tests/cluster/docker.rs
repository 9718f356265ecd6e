//! The docker executor end to end: a real swarmd whose engine answers makes docker its default
//! executor, runs a container service from the local image `swarm-test/busybox` (built by
//! `scripts/docker-test-image.sh`), adopts the containers after a `kill -9` and removes them with
//! the service. Every container carries `swarm-test.run=<run id>` and is removed at the end.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use swarm_tests::{TestNode, poll};

const IMAGE: &str = "swarm-test/busybox";

/// Removes the run's containers when dropped, passed or failed.
struct Containers {
    run: String,
}

impl Containers {
    fn new(test: &str) -> Self {
        let image = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .expect("run the docker client");
        assert!(
            image.status.success(),
            "{IMAGE} is missing: run scripts/docker-test-image.sh ({})",
            String::from_utf8_lossy(&image.stderr)
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Containers {
            run: format!("{test}-{}-{nanos:x}", std::process::id()),
        }
    }

    fn label(&self) -> String {
        format!("swarm-test.run={}", self.run)
    }

    /// The run's containers (running or not), as `docker inspect` objects.
    fn inspect(&self) -> Vec<Value> {
        let ids = docker(&["ps", "-aq", "--filter", &format!("label={}", self.label())]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["inspect"];
        args.extend(ids);
        serde_json::from_str::<Value>(&docker(&args))
            .expect("docker inspect JSON")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("label={}", self.label())]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = Command::new("docker").args(&args).output();
        }
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Container id -> (task id label, running, start time).
fn containers_by_id(containers: &[Value]) -> BTreeMap<String, (String, bool, String)> {
    containers
        .iter()
        .map(|c| {
            (
                c["Id"].as_str().unwrap_or_default().to_string(),
                (
                    c["Config"]["Labels"]["io.swarm.task.id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["State"]["Running"] == true,
                    c["State"]["StartedAt"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn a_container_service_runs_survives_a_kill_9_and_is_removed() {
    let containers = Containers::new("cluster");
    let mut node = TestNode::start();

    let described = node
        .ctl(&["--format", "json", "node", "inspect", "node-1"])
        .ok()
        .json();
    let description = &described["description"];
    assert_eq!(description["executor"], "docker", "{described}");
    let runtimes = description["runtimes"].to_string();
    for runtime in ["container", "process", "wasi"] {
        assert!(runtimes.contains(runtime), "{runtimes}");
    }
    assert!(
        description["engine"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("docker ")),
        "{described}"
    );
    assert!(
        node.log()
            .contains("executors docker (the default) and default"),
        "the choice is logged:\n{}",
        node.log()
    );

    node.ctl(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--image",
        IMAGE,
        "--container-label",
        &containers.label(),
        "--",
        "sleep",
        "600",
    ])
    .ok();
    let running = poll("two running web tasks", || {
        let running = node.running("web");
        (running.len() == 2).then_some(running)
    });
    let mut task_ids: Vec<String> = running
        .iter()
        .map(|t| t["id"].as_str().expect("task id").to_string())
        .collect();
    task_ids.sort();

    let before = containers_by_id(&containers.inspect());
    assert_eq!(before.len(), 2, "{before:?}");
    let mut labelled: Vec<String> = before.values().map(|(task, ..)| task.clone()).collect();
    labelled.sort();
    assert_eq!(
        labelled, task_ids,
        "one container per task, labelled with it"
    );
    for container in containers.inspect() {
        let labels = &container["Config"]["Labels"];
        assert_eq!(labels["io.swarm.service.name"], "web", "{labels}");
        assert!(labels["io.swarm.service.id"].is_string(), "{labels}");
        assert!(container["State"]["Running"] == true, "{container}");
    }
    let inspected = node.ctl(&["service", "inspect", "web"]).ok();
    assert!(
        inspected.stdout.contains(IMAGE) && inspected.stdout.contains("container"),
        "{}",
        inspected.stdout
    );

    // swarmd dies without any shutdown; the containers keep running and are adopted.
    node.kill9();
    node.restart();
    poll("the same two tasks running after the restart", || {
        let mut ids: Vec<String> = node
            .running("web")
            .iter()
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        (ids == task_ids).then_some(())
    });
    // The managers' copy says running from before the kill; the agent's word is its log.
    poll("both containers adopted by the new agent", || {
        let adopted = node
            .log()
            .matches("adopting a task that kept running")
            .count();
        (adopted == 2).then_some(())
    });
    let after = containers_by_id(&containers.inspect());
    assert_eq!(after, before, "the same containers, never restarted");

    // Logs come from the engine, stdout and stderr apart.
    node.ctl(&[
        "service",
        "create",
        "--name",
        "echo",
        "--restart-condition",
        "none",
        "--image",
        IMAGE,
        "--container-label",
        &containers.label(),
        "--",
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ])
    .ok();
    let ended = poll("the echo task failed with code 3", || {
        node.tasks("echo")
            .into_iter()
            .find(|t| t["status"]["state"] == "failed")
    });
    assert_eq!(ended["status"]["exit"]["code"], 3, "{ended}");
    assert_eq!(ended["status"]["err"], "task exited with code 3", "{ended}");
    let logs = node
        .ctl(&["task", "logs", ended["id"].as_str().expect("id")])
        .ok();
    assert_eq!(logs.stdout, "hello\n");
    assert_eq!(logs.stderr, "oops\n");

    node.ctl(&["service", "rm", "web", "echo"]).ok();
    poll("the service's containers removed", || {
        containers.inspect().is_empty().then_some(())
    });
}

#[test]
fn a_container_reads_its_secret_and_config_from_read_only_files() {
    let containers = Containers::new("secrets");
    let node = TestNode::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, "hunter2\n").expect("write");
    let config_file = dir.path().join("conf");
    std::fs::write(&config_file, "listen=8080\n").expect("write");
    node.ctl(&[
        "secret",
        "create",
        "db-password",
        swarm_tests::path_str(&secret_file),
    ])
    .ok();
    node.ctl(&[
        "config",
        "create",
        "app-conf",
        swarm_tests::path_str(&config_file),
    ])
    .ok();
    node.ctl(&[
        "service",
        "create",
        "--name",
        "reader",
        "--restart-condition",
        "none",
        "--secret",
        "db-password",
        "--config",
        "source=app-conf,target=app.conf",
        "--image",
        IMAGE,
        "--container-label",
        &containers.label(),
        "--",
        "sh",
        "-c",
        "cat /run/secrets/db-password /app.conf; \
         (echo x > /run/secrets/db-password) 2>/dev/null && echo writable; true",
    ])
    .ok();
    let ended = poll("the reader task to complete", || {
        node.tasks("reader")
            .into_iter()
            .find(|t| t["status"]["state"] == "complete")
    });
    let logs = node
        .ctl(&["task", "logs", ended["id"].as_str().expect("id")])
        .ok();
    assert_eq!(logs.stdout, "hunter2\nlisten=8080\n", "and not writable");
    // The task ended: its files are gone from the tmpfs, though the task is still listed.
    let node_id = std::fs::read_to_string(node.state_dir().join("node-id")).expect("node id");
    let task_dir = format!(
        "/dev/shm/swarmd-{}/{}",
        node_id.trim(),
        ended["id"].as_str().expect("id")
    );
    poll("the ended task's files removed", || {
        (!std::path::Path::new(&task_dir).exists()).then_some(())
    });
    node.ctl(&["service", "rm", "reader"]).ok();
    poll("the service's containers removed", || {
        containers.inspect().is_empty().then_some(())
    });
}
