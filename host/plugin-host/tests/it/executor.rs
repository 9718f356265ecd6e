//! The default executor running real processes and wasi tasks, concurrently, and adopting a
//! process that kept running across a restart of the host.

use std::time::Duration;

use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host::{
    ExecTask, ExecutorPlugin, LogStream, PluginError, PluginHost, ProcessSpec, TaskLimits,
    TaskRuntime, TaskRuntimeState, WasiSpec,
};

use crate::common::{config, must_eventually, must_host};

const LONG: Duration = Duration::from_secs(60);

fn process_task(id: &str, command: &str, args: &[&str]) -> ExecTask {
    ExecTask {
        id: id.to_owned(),
        service_id: "svc".to_owned(),
        service_name: "service".to_owned(),
        slot: 1,
        runtime: TaskRuntime::Process(ProcessSpec {
            command: command.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![("GREETING".to_owned(), "hi".to_owned())],
            dir: None,
        }),
        limits: TaskLimits {
            nano_cpus: 0,
            memory_bytes: 0,
        },
    }
}

fn wasi_task(id: &str, args: &[&str]) -> ExecTask {
    ExecTask {
        id: id.to_owned(),
        service_id: "svc".to_owned(),
        service_name: "service".to_owned(),
        slot: 1,
        runtime: TaskRuntime::Wasi(WasiSpec {
            module_path: artifacts::SAMPLE_TASK_PATH.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![("SAMPLE_MESSAGE".to_owned(), "from-the-test".to_owned())],
        }),
        limits: TaskLimits {
            nano_cpus: 0,
            memory_bytes: 32 << 20,
        },
    }
}

fn must_executor(host: &PluginHost) -> ExecutorPlugin {
    host.load_executor(
        "default",
        artifacts::EXECUTOR_DEFAULT,
        swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
    )
    .expect("load executor")
}

async fn must_run(executor: &ExecutorPlugin, task: &ExecTask) {
    executor.prepare(task).await.expect("prepare");
    assert_eq!(
        executor.inspect(&task.id).await.expect("inspect"),
        TaskRuntimeState::Prepared
    );
    executor.start(&task.id).await.expect("start");
}

async fn logs(host: &PluginHost, task_id: &str, stream: LogStream) -> String {
    String::from_utf8_lossy(&host.read_logs(task_id, stream, 0).await.expect("logs")).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describes_itself() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let info = must_executor(&host).describe().await.expect("describe");
    assert_eq!(info.name, "default");
    assert_eq!(info.runtimes, ["process", "wasi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_process_to_its_exit_code() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let executor = must_executor(&host);
    let task = process_task("t1", "sh", &["-c", "echo $GREETING; echo oops >&2; exit 3"]);
    must_run(&executor, &task).await;
    let exit = executor.wait("t1").await.expect("wait");
    assert_eq!((exit.code, exit.signal), (3, None), "{exit:?}");
    assert_eq!(logs(&host, "t1", LogStream::Stdout).await, "hi\n");
    assert_eq!(logs(&host, "t1", LogStream::Stderr).await, "oops\n");
    assert_eq!(
        host.read_logs("t1", LogStream::Stdout, 2)
            .await
            .expect("tail"),
        b"i\n"
    );
    assert!(matches!(
        executor.inspect("t1").await.expect("inspect"),
        TaskRuntimeState::Exited(status) if status.code == 3
    ));
    // Starting twice is the guest's error, not a failure of the host.
    let error = executor.start("t1").await.expect_err("second start");
    assert!(matches!(error, PluginError::Guest { .. }), "{error:?}");
    executor.remove("t1").await.expect("remove");
    assert_eq!(
        executor.inspect("t1").await.expect("inspect"),
        TaskRuntimeState::Missing
    );
    assert!(host.read_logs("t1", LogStream::Stdout, 0).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_task_ids_and_commands() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let executor = must_executor(&host);
    let error = executor
        .prepare(&process_task("../escape", "true", &[]))
        .await
        .expect_err("bad id");
    assert!(error.to_string().contains("invalid task id"), "{error}");
    executor
        .prepare(&process_task("nocmd", "/nonexistent/command", &[]))
        .await
        .expect("prepare");
    let error = executor.start("nocmd").await.expect_err("no such command");
    assert!(matches!(error, PluginError::Guest { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_is_not_charged_to_the_call_deadline() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let mut config = config(tasks.path());
    config.call_deadline = Duration::from_millis(50);
    let host = must_host(config);
    let executor = must_executor(&host);
    // The process outlives the deadline many times over.
    must_run(&executor, &process_task("slow", "sleep", &["0.5"])).await;
    let exit = executor.wait("slow").await.expect("wait");
    assert_eq!(exit.code, 0, "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_process_group() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let executor = must_executor(&host);
    must_run(
        &executor,
        &process_task("sleeper", "sh", &["-c", "sleep 600; echo never"]),
    )
    .await;
    assert_eq!(
        executor.inspect("sleeper").await.expect("inspect"),
        TaskRuntimeState::Running
    );
    executor
        .shutdown("sleeper", Duration::from_secs(10))
        .await
        .expect("shutdown");
    let exit = executor.wait("sleeper").await.expect("wait");
    assert_eq!(exit.signal, Some(15), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_wasi_task() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let executor = must_executor(&host);
    let task = wasi_task("w1", &["echo", "hello", "exit", "4"]);
    must_run(&executor, &task).await;
    let exit = executor.wait("w1").await.expect("wait");
    // WASI 0.2's `wasi:cli/exit` carries only success or failure: any non-zero code becomes 1.
    assert_eq!(exit.code, 1, "{exit:?}");
    let stdout = logs(&host, "w1", LogStream::Stdout).await;
    assert!(
        stdout.contains("args=[\"echo\", \"hello\", \"exit\", \"4\"] SAMPLE_MESSAGE=from-the-test"),
        "{stdout}"
    );
    assert!(stdout.contains("hello\n"), "{stdout}");
    assert_eq!(
        logs(&host, "w1", LogStream::Stderr).await,
        "sample-task stderr line\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_a_sleeping_wasi_task() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let executor = must_executor(&host);
    must_run(&executor, &wasi_task("w2", &["sleep", "600000"])).await;
    assert_eq!(
        executor.inspect("w2").await.expect("inspect"),
        TaskRuntimeState::Running
    );
    let waiter = tokio::spawn({
        let executor = executor.clone();
        async move { executor.wait("w2").await }
    });
    executor
        .shutdown("w2", Duration::from_secs(1))
        .await
        .expect("shutdown");
    let exit = tokio::time::timeout(LONG, waiter)
        .await
        .expect("wait returns after kill")
        .expect("join")
        .expect("wait");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    executor.remove("w2").await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_does_not_block_other_tasks() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let executor = must_executor(&host);
    must_run(&executor, &process_task("long", "sleep", &["600"])).await;
    let long = tokio::spawn({
        let executor = executor.clone();
        async move { executor.wait("long").await }
    });
    let mut short = Vec::new();
    for i in 0..49 {
        let executor = executor.clone();
        short.push(tokio::spawn(async move {
            let id = format!("short{i}");
            let code = i % 7;
            let script = format!("exit {code}");
            let task = process_task(&id, "sh", &["-c", &script]);
            executor.prepare(&task).await?;
            executor.start(&id).await?;
            let exit = executor.wait(&id).await?;
            Ok::<_, PluginError>((exit.code, code))
        }));
    }
    for handle in short {
        let (code, expected) = tokio::time::timeout(LONG, handle)
            .await
            .expect("a short task finished")
            .expect("join")
            .expect("short task");
        assert_eq!(code, expected);
    }
    assert!(!long.is_finished(), "the long task's wait returned early");
    assert_eq!(
        executor.inspect("long").await.expect("inspect"),
        TaskRuntimeState::Running
    );
    executor
        .shutdown("long", Duration::from_secs(5))
        .await
        .expect("shutdown");
    let exit = tokio::time::timeout(LONG, long)
        .await
        .expect("long wait returns")
        .expect("join")
        .expect("wait");
    assert_eq!(exit.signal, Some(15), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_process_after_a_restart_of_the_host() {
    let tasks = tempfile::tempdir().expect("temp dir");
    {
        let host = must_host(config(tasks.path()));
        let executor = must_executor(&host);
        must_run(&executor, &process_task("adopted", "sleep", &["600"])).await;
    }
    let host = must_host(config(tasks.path()));
    let executor = must_executor(&host);
    assert_eq!(
        executor.inspect("adopted").await.expect("inspect"),
        TaskRuntimeState::Running
    );
    let waiter = tokio::spawn({
        let executor = executor.clone();
        async move { executor.wait("adopted").await }
    });
    executor
        .shutdown("adopted", Duration::from_secs(5))
        .await
        .expect("shutdown");
    let exit = tokio::time::timeout(LONG, waiter)
        .await
        .expect("wait returns after kill")
        .expect("join")
        .expect("wait");
    // Either the first host's monitor recorded the signal, or the code is unknown and said so.
    assert!(
        exit.signal == Some(15) || (exit.code == -1 && exit.message.contains("unknown")),
        "{exit:?}"
    );
    must_eventually("the adopted task to show as exited", LONG, || async {
        matches!(
            executor.inspect("adopted").await,
            Ok(TaskRuntimeState::Exited(_))
        )
    })
    .await;
}
