//! The docker executor (`artifacts::EXECUTOR_DOCKER`) and the host's `docker` capability against
//! the real Docker Engine of this machine, with the local image `swarm-test/busybox` (built by
//! `scripts/docker-test-image.sh`). Every container a test makes carries the label
//! `swarm-test.run=<run id>` and is removed when the test ends, passed or failed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host::{
    Capability, ContainerSpec, ExecTask, ExecutorPlugin, LogStream, Mount, MountKind, PluginError,
    PluginHost, ProcessSpec, TaskLimits, TaskRuntime, TaskRuntimeState,
};

use crate::common::{config, must_eventually, must_host};

const IMAGE: &str = "swarm-test/busybox:latest";
const RUN_LABEL: &str = "swarm-test.run";
const LONG: Duration = Duration::from_secs(60);

/// The engine the tests use: `DOCKER_HOST` when set, else the default socket.
fn engine_addr() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| swarm_plugin_host::DEFAULT_ENGINE_ADDR.into())
}

/// A run id unique to this test in this process, for task ids, names and the cleanup label.
fn run_id(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{test}-{}-{nanos:x}", std::process::id())
}

/// Removes the run's containers (and named volumes) when dropped, even when the test fails.
struct Cleanup {
    run: String,
    volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={RUN_LABEL}={}", self.run);
        let listed = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output();
        if let Ok(listed) = listed {
            let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", "-v"])
                    .args(&ids)
                    .output();
            }
        }
        for volume in &self.volumes {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f", volume])
                .output();
        }
    }
}

struct Fixture {
    host: PluginHost,
    executor: ExecutorPlugin,
    docker: Docker,
    run: String,
    _tasks: tempfile::TempDir,
    _cleanup: Cleanup,
}

async fn engine() -> Docker {
    let addr = engine_addr();
    let docker = if addr.starts_with("unix://") {
        Docker::connect_with_unix(&addr, 60, bollard::API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_http(&addr, 60, bollard::API_DEFAULT_VERSION)
    }
    .expect("docker client");
    let docker = docker
        .negotiate_version()
        .await
        .expect("the engine answers");
    docker
        .inspect_image(IMAGE)
        .await
        .unwrap_or_else(|e| panic!("{IMAGE} is missing ({e}): run scripts/docker-test-image.sh"));
    docker
}

fn docker_host(tasks: &std::path::Path, addr: &str) -> PluginHost {
    let mut config = config(tasks);
    config.engine_addr = Some(addr.to_owned());
    must_host(config)
}

fn docker_executor(host: &PluginHost) -> ExecutorPlugin {
    host.load_executor("docker", artifacts::EXECUTOR_DOCKER, &[Capability::Docker])
        .expect("load the docker executor")
}

async fn fixture(test: &str) -> Fixture {
    let docker = engine().await;
    let run = run_id(test);
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = docker_host(tasks.path(), &engine_addr());
    let executor = docker_executor(&host);
    Fixture {
        host,
        executor,
        docker,
        _cleanup: Cleanup {
            run: run.clone(),
            volumes: vec![format!("{run}-vol")],
        },
        run,
        _tasks: tasks,
    }
}

impl Fixture {
    fn task(&self, n: u32, args: &[&str]) -> ExecTask {
        ExecTask {
            id: format!("{}-t{n}", self.run),
            service_id: "svc-1".to_owned(),
            service_name: "web".to_owned(),
            slot: u64::from(n),
            runtime: TaskRuntime::Container(ContainerSpec {
                image: IMAGE.to_owned(),
                entrypoint: Vec::new(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                env: vec![("GREETING".to_owned(), "hi".to_owned())],
                labels: vec![(RUN_LABEL.to_owned(), self.run.clone())],
                mounts: Vec::new(),
                workdir: None,
                user: None,
                hostname: None,
            }),
            limits: TaskLimits {
                nano_cpus: 0,
                memory_bytes: 0,
            },
        }
    }

    /// The ids of the containers labelled with `task_id`.
    async fn containers_of(&self, task_id: &str) -> Vec<String> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{}={task_id}", swarm_plugin_host::TASK_LABEL)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .expect("list containers")
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    }

    async fn logs(&self, task_id: &str, stream: LogStream) -> String {
        let bytes = self.host.read_logs(task_id, stream, 0).await.expect("logs");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn must_start(executor: &ExecutorPlugin, task: &ExecTask) {
    executor.prepare(task).await.expect("prepare");
    assert_eq!(
        executor.inspect(&task.id).await.expect("inspect"),
        TaskRuntimeState::Prepared
    );
    executor.start(&task.id).await.expect("start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_container_with_the_tasks_settings() {
    let f = fixture("settings").await;
    let data = tempfile::tempdir().expect("bind source");
    std::fs::write(data.path().join("f"), "from-the-node\n").expect("write");
    let mut task = f.task(1, &[]);
    let TaskRuntime::Container(spec) = &mut task.runtime else {
        unreachable!("a container task")
    };
    spec.entrypoint = vec!["/bin/sh".into(), "-c".into()];
    spec.args = vec![
        "echo out-$GREETING; echo err-$(id -u) >&2; cat /data/f; touch /scratch/x; exec sleep 600"
            .into(),
    ];
    spec.mounts = vec![
        Mount {
            kind: MountKind::Bind,
            source: data.path().to_str().expect("utf-8").to_owned(),
            target: "/data".into(),
            read_only: true,
        },
        Mount {
            kind: MountKind::Tmpfs,
            source: String::new(),
            target: "/scratch".into(),
            read_only: false,
        },
        Mount {
            kind: MountKind::Volume,
            source: format!("{}-vol", f.run),
            target: "/vol".into(),
            read_only: false,
        },
    ];
    spec.workdir = Some("/data".into());
    spec.user = Some("65534".into());
    spec.hostname = Some("box".into());
    task.limits = TaskLimits {
        nano_cpus: 500_000_000,
        memory_bytes: 64 << 20,
    };
    must_start(&f.executor, &task).await;
    assert_eq!(
        f.executor.inspect(&task.id).await.expect("inspect"),
        TaskRuntimeState::Running
    );

    let ids = f.containers_of(&task.id).await;
    assert_eq!(ids.len(), 1, "one container per task: {ids:?}");
    let inspected = f
        .docker
        .inspect_container(&ids[0], None)
        .await
        .expect("docker inspect");
    assert_eq!(
        inspected.name.as_deref(),
        Some(format!("/web.1.{}", task.id).as_str())
    );
    let config = inspected.config.expect("config");
    let labels = config.labels.expect("labels");
    for (key, want) in [
        ("io.swarm.task.id", task.id.as_str()),
        ("io.swarm.service.id", "svc-1"),
        ("io.swarm.service.name", "web"),
        ("io.swarm.task.slot", "1"),
        (RUN_LABEL, f.run.as_str()),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(want),
            "label {key}"
        );
    }
    assert!(
        config
            .env
            .unwrap_or_default()
            .contains(&"GREETING=hi".to_owned()),
        "env"
    );
    assert_eq!(config.working_dir.as_deref(), Some("/data"));
    assert_eq!(config.user.as_deref(), Some("65534"));
    assert_eq!(config.hostname.as_deref(), Some("box"));
    let host_config = inspected.host_config.expect("host config");
    assert_eq!(host_config.nano_cpus, Some(500_000_000));
    assert_eq!(host_config.memory, Some(64 << 20));
    let mounts = inspected.mounts.unwrap_or_default();
    let mount = |target: &str| {
        mounts
            .iter()
            .find(|m| m.destination.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
    };
    assert_eq!(mount("/data").rw, Some(false), "read-only bind");
    assert_eq!(
        mount("/vol").name.as_deref(),
        Some(format!("{}-vol", f.run).as_str())
    );

    // Logs come from the engine, stdout and stderr apart, and a tail is a tail.
    must_eventually("the container's output", LONG, || async {
        f.logs(&task.id, LogStream::Stdout).await == "out-hi\nfrom-the-node\n"
    })
    .await;
    assert_eq!(f.logs(&task.id, LogStream::Stderr).await, "err-65534\n");
    assert_eq!(
        f.host
            .read_logs(&task.id, LogStream::Stdout, 5)
            .await
            .expect("tail"),
        b"node\n"
    );

    // `sh` as pid 1 ignores SIGTERM: the stop times out and the engine kills it. The wait is
    // longer than the plugin's call deadline (5 s): time awaiting the engine is not the guest's.
    let stopping = Instant::now();
    f.executor
        .shutdown(&task.id, Duration::from_millis(6000))
        .await
        .expect("shutdown");
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(30),
        "stop took {took:?}"
    );
    match f.executor.inspect(&task.id).await.expect("inspect") {
        TaskRuntimeState::Exited(exit) => {
            assert_eq!(exit.code, 137, "{exit:?}");
            assert_eq!(exit.message, "exited with code 137");
        }
        other => panic!("expected exited, got {other:?}"),
    }
    f.executor.remove(&task.id).await.expect("remove");
    assert_eq!(
        f.executor.inspect(&task.id).await.expect("inspect"),
        TaskRuntimeState::Missing
    );
    assert!(f.containers_of(&task.id).await.is_empty(), "removed");
    // Removing again is not an error.
    f.executor.remove(&task.id).await.expect("remove again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_out_of_memory_kills_reach_the_waiter() {
    let f = fixture("exits").await;
    let failing = f.task(1, &["sh", "-c", "sleep 0.2; exit 3"]);
    must_start(&f.executor, &failing).await;
    let exit = tokio::time::timeout(LONG, f.executor.wait(&failing.id))
        .await
        .expect("the container ends")
        .expect("wait");
    assert_eq!((exit.code, exit.signal), (3, None), "{exit:?}");
    assert_eq!(exit.message, "exited with code 3");

    let ok = f.task(2, &["true"]);
    must_start(&f.executor, &ok).await;
    let exit = tokio::time::timeout(LONG, f.executor.wait(&ok.id))
        .await
        .expect("the container ends")
        .expect("wait");
    assert_eq!(exit.code, 0, "{exit:?}");

    // 16 MiB of memory, no swap: a 64 MiB buffer gets the container killed.
    let mut hungry = f.task(
        3,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=4"],
    );
    hungry.limits.memory_bytes = 16 << 20;
    must_start(&f.executor, &hungry).await;
    let exit = tokio::time::timeout(LONG, f.executor.wait(&hungry.id))
        .await
        .expect("the container ends")
        .expect("wait");
    assert_eq!(exit.code, 137, "{exit:?}");
    assert!(
        exit.message.contains("more memory than its limit"),
        "{exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_host_adopts_a_running_container() {
    let f = fixture("adopt").await;
    let task = f.task(1, &["sh", "-c", "echo started; exec sleep 600"]);
    must_start(&f.executor, &task).await;
    let before = f.containers_of(&task.id).await;
    assert_eq!(before.len(), 1);

    // A new host (an agent restart) knows nothing but the engine's labels.
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = docker_host(tasks.path(), &engine_addr());
    let executor = docker_executor(&host);
    assert_eq!(
        executor.inspect(&task.id).await.expect("inspect"),
        TaskRuntimeState::Running
    );
    assert_eq!(
        f.containers_of(&task.id).await,
        before,
        "the same container"
    );
    must_eventually("the adopted container's logs", LONG, || async {
        host.read_logs(&task.id, LogStream::Stdout, 0)
            .await
            .is_ok_and(|out| out == b"started\n")
    })
    .await;
    // The new host watches it: its end wakes a waiter.
    let waiter = {
        let executor = executor.clone();
        let id = task.id.clone();
        tokio::spawn(async move { executor.wait(&id).await })
    };
    let _ = std::process::Command::new("docker")
        .args(["kill", "--signal", "KILL", &before[0]])
        .output()
        .expect("docker kill");
    let exit = tokio::time::timeout(LONG, waiter)
        .await
        .expect("the waiter wakes")
        .expect("join")
        .expect("wait");
    assert_eq!(exit.code, 137, "{exit:?}");
    executor.remove(&task.id).await.expect("remove");
    assert!(f.containers_of(&task.id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_reports_the_engine() {
    let f = fixture("describe").await;
    let info = f.executor.describe().await.expect("describe");
    assert_eq!(info.name, "docker");
    assert_eq!(info.runtimes, ["container"]);
    let engine = info.engine.expect("engine info");
    let system = f.docker.info().await.expect("docker info");
    assert_eq!(Some(engine.hostname.as_str()), system.name.as_deref());
    assert_eq!(
        engine.version,
        format!("docker {}", system.server_version.unwrap_or_default())
    );
    assert_eq!(engine.platform.os, "linux");
    assert_eq!(
        engine.platform.arch,
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
    );
    assert_eq!(engine.nano_cpus, system.ncpu.expect("ncpu") * 1_000_000_000);
    assert_eq!(Some(engine.memory_bytes), system.mem_total);
    let version = swarm_plugin_host::probe_engine(&engine_addr(), Duration::from_secs(3))
        .await
        .expect("probe");
    assert!(engine.version.ends_with(&version), "{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_other_runtimes_and_absent_images() {
    let f = fixture("refuse").await;
    let mut process = f.task(1, &[]);
    process.runtime = TaskRuntime::Process(ProcessSpec {
        command: "true".into(),
        args: Vec::new(),
        env: Vec::new(),
        dir: None,
    });
    let error = f.executor.prepare(&process).await.expect_err("a process");
    assert!(
        matches!(&error, PluginError::Guest { message, .. } if message.contains("runs container tasks only, not process tasks")),
        "{error}"
    );
    let mut absent = f.task(2, &[]);
    if let TaskRuntime::Container(spec) = &mut absent.runtime {
        spec.image = "swarm-test/absent:none".into();
    }
    let error = f.executor.prepare(&absent).await.expect_err("no image");
    let text = error.to_string();
    assert!(
        text.contains("image \"swarm-test/absent:none\" is not present on the engine")
            && text.contains(&absent.id)
            && text.contains(&engine_addr()),
        "{text}"
    );
    assert_eq!(
        f.executor.inspect(&absent.id).await.expect("inspect"),
        TaskRuntimeState::Missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_engine_address_fails_fast_with_a_clear_error() {
    let tasks = tempfile::tempdir().expect("temp dir");
    for (addr, want) in [
        (
            "unix:///nonexistent/docker.sock",
            "cannot reach the container engine at unix:///nonexistent/docker.sock",
        ),
        (
            "tcp://127.0.0.1:1",
            "cannot reach the container engine at tcp://127.0.0.1:1",
        ),
        // A black hole: nothing answers, nothing refuses.
        (
            "tcp://10.255.255.1:2375",
            "cannot reach the container engine at tcp://10.255.255.1:2375",
        ),
        ("ftp://engine", "unsupported container engine address"),
    ] {
        let host = docker_host(tasks.path(), addr);
        let executor = docker_executor(&host);
        let started = Instant::now();
        let info = executor.describe().await.expect("describe still answers");
        assert_eq!(info.engine, None, "{addr}");
        let task = ExecTask {
            id: "wrong-engine-1".into(),
            service_id: "s".into(),
            service_name: "web".into(),
            slot: 1,
            runtime: TaskRuntime::Container(ContainerSpec {
                image: IMAGE.into(),
                entrypoint: Vec::new(),
                args: Vec::new(),
                env: Vec::new(),
                labels: Vec::new(),
                mounts: Vec::new(),
                workdir: None,
                user: None,
                hostname: None,
            }),
            limits: TaskLimits {
                nano_cpus: 0,
                memory_bytes: 0,
            },
        };
        let error = executor.prepare(&task).await.expect_err(addr).to_string();
        assert!(
            error.contains(want) && error.contains("wrong-engine-1"),
            "{addr}: {error}"
        );
        assert_eq!(
            executor.inspect(&task.id).await.expect("inspect"),
            TaskRuntimeState::Missing
        );
        let probe = swarm_plugin_host::probe_engine(addr, Duration::from_secs(1))
            .await
            .expect_err(addr);
        assert!(probe.contains(addr), "{probe}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{addr}: took {took:?}");
    }
}
