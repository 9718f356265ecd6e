//! The executor plugin of `swarm-plugin-host` as the agent's [`Executor`], and the plugin host
//! as its [`LogReader`]; the conversions from `swarm_types` to the plugin's task record.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use swarm_plugin_host as host;
use swarm_types::{MountKind, Runtime, Task};

use crate::executor::{
    EngineInfo, ExecState, Executor, ExecutorError, ExecutorHealth, ExecutorInfo, ExecutorLoader,
    ExitStatus, LoadedExecutor, LogReader, LogStream,
};

impl ExecutorLoader for host::PluginHost {
    fn load<'a>(
        &'a self,
        name: &'a str,
        capabilities: &'a [String],
        component: &'a [u8],
    ) -> BoxFuture<'a, Result<LoadedExecutor, ExecutorError>> {
        async move {
            let granted = capabilities
                .iter()
                .map(|c| host::Capability::parse(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(ExecutorError::new)?;
            // Compiling is CPU work (the cache makes it once per digest): off the runtime.
            let this = self.clone();
            let (owned_name, bytes) = (name.to_string(), component.to_vec());
            let plugin = tokio::task::spawn_blocking(move || {
                this.load_executor(&owned_name, &bytes, &granted)
            })
            .await
            .map_err(|e| ExecutorError::new(format!("loading executor {name}: {e}")))?
            .map_err(error)?;
            let mut info = Executor::describe(&plugin).await?;
            // The cluster knows it by its installed name, whatever it calls itself.
            info.name = name.to_string();
            Ok((
                info,
                std::sync::Arc::new(plugin) as std::sync::Arc<dyn Executor>,
            ))
        }
        .boxed()
    }
}

impl Executor for host::ExecutorPlugin {
    fn describe(&self) -> BoxFuture<'_, Result<ExecutorInfo, ExecutorError>> {
        async move {
            let info = host::ExecutorPlugin::describe(self).await.map_err(error)?;
            Ok(ExecutorInfo {
                name: info.name,
                runtimes: info.runtimes,
                engine: info.engine.map(|engine| EngineInfo {
                    hostname: engine.hostname,
                    version: engine.version,
                    os: engine.platform.os,
                    arch: engine.platform.arch,
                    nano_cpus: engine.nano_cpus,
                    memory_bytes: engine.memory_bytes,
                    labels: engine.labels,
                }),
            })
        }
        .boxed()
    }

    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), ExecutorError>> {
        async move {
            let task = exec_task(task);
            host::ExecutorPlugin::prepare(self, &task)
                .await
                .map_err(error)
        }
        .boxed()
    }

    fn start<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecutorError>> {
        async move {
            host::ExecutorPlugin::start(self, task_id)
                .await
                .map_err(error)
        }
        .boxed()
    }

    fn wait<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, ExecutorError>> {
        async move {
            host::ExecutorPlugin::wait(self, task_id)
                .await
                .map(exit_status)
                .map_err(error)
        }
        .boxed()
    }

    fn shutdown<'a>(
        &'a self,
        task_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ExecutorError>> {
        async move {
            host::ExecutorPlugin::shutdown(self, task_id, timeout)
                .await
                .map_err(error)
        }
        .boxed()
    }

    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecutorError>> {
        async move {
            host::ExecutorPlugin::remove(self, task_id)
                .await
                .map_err(error)
        }
        .boxed()
    }

    fn inspect<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ExecState, ExecutorError>> {
        async move {
            let state = host::ExecutorPlugin::inspect(self, task_id)
                .await
                .map_err(error)?;
            Ok(match state {
                host::TaskRuntimeState::Missing => ExecState::Missing,
                host::TaskRuntimeState::Prepared => ExecState::Prepared,
                host::TaskRuntimeState::Running => ExecState::Running,
                host::TaskRuntimeState::Exited(exit) => ExecState::Exited(exit_status(exit)),
            })
        }
        .boxed()
    }

    fn health(&self) -> Option<ExecutorHealth> {
        let health = host::ExecutorPlugin::health(self);
        Some(ExecutorHealth {
            quarantined: health.quarantined,
            failures: health.recent_failures,
            last_error: health.last_error.unwrap_or_default(),
        })
    }
}

impl LogReader for host::PluginHost {
    fn read_logs<'a>(
        &'a self,
        task_id: &'a str,
        stream: LogStream,
        tail_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, ExecutorError>> {
        let stream = match stream {
            LogStream::Stdout => host::LogStream::Stdout,
            LogStream::Stderr => host::LogStream::Stderr,
        };
        async move {
            host::PluginHost::read_logs(self, task_id, stream, tail_bytes)
                .await
                .map_err(error)
        }
        .boxed()
    }
}

fn error(error: host::PluginError) -> ExecutorError {
    ExecutorError::new(error.to_string())
}

fn exit_status(exit: host::ExitStatus) -> ExitStatus {
    ExitStatus {
        code: exit.code,
        signal: exit.signal,
        message: exit.message,
    }
}

/// The plugin's view of a task.
pub(crate) fn exec_task(task: &Task) -> host::ExecTask {
    let runtime = match &task.spec.runtime {
        Runtime::Process(process) => host::TaskRuntime::Process(host::ProcessSpec {
            command: process.command.clone(),
            args: process.args.clone(),
            env: env_pairs(&process.env),
            dir: process.dir.clone(),
        }),
        Runtime::Wasi(wasi) => host::TaskRuntime::Wasi(host::WasiSpec {
            module_path: wasi.module.clone(),
            args: wasi.args.clone(),
            env: env_pairs(&wasi.env),
        }),
        Runtime::Container(container) => host::TaskRuntime::Container(host::ContainerSpec {
            image: container.image.clone(),
            entrypoint: container.entrypoint.clone(),
            args: container.args.clone(),
            env: env_pairs(&container.env),
            labels: container
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            mounts: container
                .mounts
                .iter()
                .map(|m| host::Mount {
                    kind: match m.kind {
                        MountKind::Bind => host::MountKind::Bind,
                        MountKind::Volume => host::MountKind::Volume,
                        MountKind::Tmpfs => host::MountKind::Tmpfs,
                    },
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            workdir: container.workdir.clone(),
            user: container.user.clone(),
            hostname: container.hostname.clone(),
        }),
    };
    let limits = &task.spec.resources.limits;
    host::ExecTask {
        id: task.id.clone(),
        service_id: task.service_id.clone(),
        service_name: service_name(task),
        slot: task.slot,
        runtime,
        limits: host::TaskLimits {
            nano_cpus: limits.nano_cpus,
            memory_bytes: limits.memory_bytes,
        },
    }
}

/// `NAME=VALUE` items as pairs (an item without `=` is a name with an empty value).
fn env_pairs(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|item| match item.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (item.clone(), String::new()),
        })
        .collect()
}

/// The service's name from the task's (`<service>.<slot or node id>`), else the service id.
fn service_name(task: &Task) -> String {
    match task.annotations.name.rsplit_once('.') {
        Some((service, _)) if !service.is_empty() => service.to_string(),
        _ => task.service_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use swarm_types::{ProcessSpec, TaskState};

    use super::*;
    use crate::db::tests::task;

    #[test]
    fn tasks_convert_to_the_plugin_record() {
        let mut task = task("t1", TaskState::Assigned);
        task.annotations.name = "web.2".into();
        task.slot = 2;
        task.spec.runtime = Runtime::Process(ProcessSpec {
            command: "sleep".into(),
            args: vec!["5".into()],
            env: vec!["A=1".into(), "B=x=y".into(), "EMPTY".into()],
            dir: Some("/tmp".into()),
        });
        task.spec.resources.limits.memory_bytes = 1 << 20;
        let converted = exec_task(&task);
        assert_eq!(converted.service_name, "web");
        assert_eq!(converted.slot, 2);
        assert_eq!(converted.limits.memory_bytes, 1 << 20);
        let host::TaskRuntime::Process(process) = converted.runtime else {
            panic!("expected a process runtime");
        };
        assert_eq!(
            process.env,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "x=y".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
        );
        assert_eq!(process.dir.as_deref(), Some("/tmp"));
    }
}
