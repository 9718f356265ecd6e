//! Plugins written with `swarm-plugin-sdk`, loaded by the host: the `nodes://` discovery backend
//! and the three examples of the plugin author's guide (plugins/README.md).

use std::time::Duration;

use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host::{
    Capability, ExecTask, NodeAvailability, NodeInfo, NodeRole, NodeStatus, Placement, PluginError,
    PluginKind, ProcessSpec, Resources, TaskGroup, TaskLimits, TaskRuntime, TaskRuntimeState,
    WasiSpec,
};

use crate::common::{config, must_host};

const HEARTBEAT: Duration = Duration::from_secs(5);
const TTL: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_backend_expands_ranges_and_refuses_register() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let summary = host
        .validate(
            PluginKind::Discovery,
            "nodes",
            artifacts::DISCOVERY_NODES,
            &[],
        )
        .await
        .expect("the nodes backend needs no capability");
    assert_eq!(summary.schemes, ["nodes"]);
    assert!(summary.imports.is_empty(), "{:?}", summary.imports);

    let mut nodes = host
        .load_discovery("nodes", artifacts::DISCOVERY_NODES, &[])
        .expect("load");
    nodes
        .initialize("nodes://10.0.0.[1:3]:4242,node-9:2375", HEARTBEAT, TTL)
        .await
        .expect("initialize");
    let expected = [
        "10.0.0.1:4242",
        "10.0.0.2:4242",
        "10.0.0.3:4242",
        "node-9:2375",
    ];
    assert_eq!(nodes.watch().await.expect("watch"), expected);

    let error = nodes.register("10.0.0.9:4242").await.expect_err("static");
    let message = error.to_string();
    assert!(matches!(error, PluginError::Guest { .. }), "{message}");
    assert!(message.contains("the nodes backend is static"), "{message}");

    // A bad entry is named, and the list from before stands.
    let error = nodes
        .initialize("nodes://10.0.0.1:4242,10.0.[1:2].1:4242", HEARTBEAT, TTL)
        .await
        .expect_err("a range outside the last octet");
    assert!(error.to_string().contains("`10.0.[1:2].1:4242`"), "{error}");
    assert_eq!(nodes.watch().await.expect("watch"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_executor_runs_a_process_task() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    // It imports `process` only.
    let Err(error) = host.load_executor("example", artifacts::EXAMPLE_EXECUTOR, &[]) else {
        panic!("loaded without the process capability");
    };
    assert!(error.to_string().contains("--allow process"), "{error}");
    let summary = host
        .validate(
            PluginKind::Executor,
            "example",
            artifacts::EXAMPLE_EXECUTOR,
            &Capability::ALL,
        )
        .await
        .expect("valid");
    assert_eq!(summary.imports, [Capability::Process]);
    assert_eq!(summary.runtimes, ["process"]);

    let executor = host
        .load_executor(
            "example",
            artifacts::EXAMPLE_EXECUTOR,
            &[Capability::Process],
        )
        .expect("load");
    let task = ExecTask {
        id: "example-task".to_owned(),
        service_id: "svc".to_owned(),
        service_name: "service".to_owned(),
        slot: 1,
        runtime: TaskRuntime::Process(ProcessSpec {
            command: "/bin/sh".to_owned(),
            args: vec!["-c".to_owned(), "echo from-example; exit 3".to_owned()],
            env: vec![],
            dir: None,
        }),
        limits: TaskLimits {
            nano_cpus: 0,
            memory_bytes: 0,
        },
    };
    executor.prepare(&task).await.expect("prepare");
    assert_eq!(
        executor.inspect(&task.id).await.expect("inspect"),
        TaskRuntimeState::Prepared
    );
    executor.start(&task.id).await.expect("start");
    let exit = tokio::time::timeout(Duration::from_secs(60), executor.wait(&task.id))
        .await
        .expect("the task ends")
        .expect("wait");
    assert_eq!(exit.code, 3, "{exit:?}");
    let stdout = host
        .read_logs(&task.id, swarm_plugin_host::LogStream::Stdout, 0)
        .await
        .expect("logs");
    assert_eq!(String::from_utf8_lossy(&stdout), "from-example\n");
    executor.remove(&task.id).await.expect("remove");
    assert_eq!(
        executor.inspect(&task.id).await.expect("inspect"),
        TaskRuntimeState::Missing
    );

    // Other runtimes are refused with the executor's own error.
    let mut wasi = task.clone();
    wasi.id = "example-wasi".to_owned();
    wasi.runtime = TaskRuntime::Wasi(WasiSpec {
        module_path: artifacts::SAMPLE_TASK_PATH.to_owned(),
        args: vec![],
        env: vec![],
    });
    let error = executor.prepare(&wasi).await.expect_err("not a process");
    assert!(matches!(error, PluginError::Guest { .. }), "{error}");
    assert!(
        error.to_string().contains("only `process` tasks"),
        "{error}"
    );
}

fn node(id: &str, tasks_total: u32, memory_bytes: i64) -> NodeInfo {
    let resources = Resources {
        nano_cpus: 2_000_000_000,
        memory_bytes,
    };
    NodeInfo {
        id: id.to_owned(),
        hostname: format!("host-{id}"),
        role: NodeRole::Worker,
        os: "linux".to_owned(),
        arch: "amd64".to_owned(),
        labels: vec![],
        engine_labels: vec![],
        addr: "127.0.0.1".to_owned(),
        status: NodeStatus::Ready,
        availability: NodeAvailability::Active,
        total_resources: resources,
        available_resources: resources,
        runtimes: vec!["process".to_owned()],
        plugins: vec![],
        tasks_total,
        service_tasks: vec![],
        recent_failures: vec![],
    }
}

fn group(service: &str, tasks: usize, memory_bytes: i64, constraints: &[&str]) -> TaskGroup {
    TaskGroup {
        service_id: service.to_owned(),
        task_ids: (0..tasks).map(|i| format!("{service}.{i}")).collect(),
        placement: Placement {
            runtime: "process".to_owned(),
            reservations: Resources {
                nano_cpus: 0,
                memory_bytes,
            },
            constraints: constraints.iter().map(|c| (*c).to_owned()).collect(),
            platforms: vec![],
            max_replicas: 0,
            required_plugins: vec![],
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_scheduler_fills_the_emptiest_node_first() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let mut scheduler = host
        .load_scheduler("example", artifacts::EXAMPLE_SCHEDULER)
        .expect("load");
    let mut drained = node("c", 0, 100);
    drained.availability = NodeAvailability::Drain;
    scheduler
        .update_nodes(vec![node("a", 2, 100), node("b", 0, 100), drained], vec![])
        .await
        .expect("update nodes");
    let results = scheduler
        .schedule(vec![
            group("web", 3, 10, &[]),
            group("db", 1, 0, &["node.labels.zone==east"]),
            group("big", 1, 1000, &[]),
        ])
        .await
        .expect("schedule");
    let web: Vec<&str> = results[0]
        .assignments
        .iter()
        .map(|(_, node)| node.as_str())
        .collect();
    // b (0 tasks) twice, then a and b are even at 2; ties go to the first id.
    assert_eq!(web, ["b", "b", "a"]);
    assert_eq!(results[1].unplaced.len(), 1);
    assert!(results[1].unplaced[0].1.contains("constraints"));
    assert_eq!(results[2].unplaced[0].1, "no suitable node (of 3)");

    // The placements stay in the resident node set: b now has 80 bytes left.
    scheduler
        .update_nodes(vec![], vec!["a".to_owned()])
        .await
        .expect("remove a");
    let results = scheduler
        .schedule(vec![group("fits", 1, 80, &[]), group("not", 1, 1, &[])])
        .await
        .expect("schedule");
    assert_eq!(
        results[0].assignments,
        [("fits.0".to_owned(), "b".to_owned())]
    );
    assert_eq!(results[1].unplaced[0].1, "no suitable node (of 2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_discovery_remembers_registrations() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let mut discovery = host
        .load_discovery("example", artifacts::EXAMPLE_DISCOVERY, &[])
        .expect("load");
    assert_eq!(discovery.schemes().await.expect("schemes"), ["example"]);
    let error = discovery
        .initialize("nodes://a:1", HEARTBEAT, TTL)
        .await
        .expect_err("another scheme");
    assert!(
        error.to_string().contains("not an example:// URI"),
        "{error}"
    );
    discovery
        .initialize("example://a:1,b:2", HEARTBEAT, TTL)
        .await
        .expect("initialize");
    discovery.register("c:3").await.expect("register");
    discovery.register("a:1").await.expect("register again");
    let error = discovery
        .register("nonsense")
        .await
        .expect_err("bad address");
    assert!(
        error.to_string().contains("`nonsense` is not host:port"),
        "{error}"
    );
    assert_eq!(
        discovery.watch().await.expect("watch"),
        ["a:1", "b:2", "c:3"]
    );
}
