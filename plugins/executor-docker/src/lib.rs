//! The docker executor plugin: runs `container` tasks, one container per task, through the host's
//! `docker` capability. It keeps no state: the engine holds it, and the host finds a task's
//! container again by the labels it carries, so the host may run each call in a fresh instance
//! and a restarted agent adopts containers that kept running.

wit_bindgen::generate!({
    path: "../../wit",
    world: "swarm:plugin/executor-plugin@0.2.0",
});

use exports::swarm::plugin::executor::Guest;
use swarm::plugin::docker;
use swarm::plugin::log::log;
use swarm::plugin::types::{ExecutorError, ExecutorInfo, LogLevel, Task, TaskRuntime, TaskState};

/// Labels this executor puts on every container, besides the host's `io.swarm.task.id`.
const LABEL_SERVICE_ID: &str = "io.swarm.service.id";
const LABEL_SERVICE_NAME: &str = "io.swarm.service.name";
const LABEL_SLOT: &str = "io.swarm.task.slot";
/// Longest container name this executor makes.
const MAX_NAME_LEN: usize = 128;

struct Plugin;

fn error(message: impl Into<String>) -> ExecutorError {
    ExecutorError {
        message: message.into(),
    }
}

/// `<service-name>.<slot>.<task-id>` with every character Docker refuses in a name replaced by
/// `-` (names match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`), cut to [`MAX_NAME_LEN`].
fn container_name(task: &Task) -> String {
    let raw = format!("{}.{}.{}", task.service_name, task.slot, task.id);
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 't');
    }
    if name.len() > MAX_NAME_LEN {
        // Keep the end: the task id makes the name unique.
        name = name[name.len() - MAX_NAME_LEN..].to_owned();
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            name.replace_range(..1, "t");
        }
    }
    name
}

/// Adds (or replaces) `key` in `labels`.
fn set_label(labels: &mut Vec<(String, String)>, key: &str, value: String) {
    labels.retain(|(k, _)| k != key);
    labels.push((key.to_owned(), value));
}

impl Guest for Plugin {
    fn describe() -> ExecutorInfo {
        let engine = match docker::info() {
            Ok(info) => Some(info),
            Err(message) => {
                log(
                    LogLevel::Warn,
                    &format!("the container engine does not answer: {message}"),
                );
                None
            }
        };
        ExecutorInfo {
            name: "docker".to_owned(),
            runtimes: vec!["container".to_owned()],
            engine,
        }
    }

    fn prepare(task: Task) -> Result<(), ExecutorError> {
        let name = container_name(&task);
        let TaskRuntime::Container(mut spec) = task.runtime else {
            let kind = match task.runtime {
                TaskRuntime::Process(_) => "process",
                TaskRuntime::Wasi(_) => "wasi",
                TaskRuntime::Container(_) => "container",
            };
            return Err(error(format!(
                "task {}: the docker executor runs container tasks only, not {kind} tasks",
                task.id
            )));
        };
        match docker::status(&task.id) {
            TaskState::Missing => {}
            // Prepared before (an agent restart between create and the report): keep it.
            TaskState::Prepared => return Ok(()),
            TaskState::Running | TaskState::Exited(_) => {
                return Err(error(format!(
                    "task {}: its container has already been started",
                    task.id
                )));
            }
        }
        if spec.image.trim().is_empty() {
            return Err(error(format!("task {}: the image is empty", task.id)));
        }
        set_label(&mut spec.labels, LABEL_SERVICE_ID, task.service_id.clone());
        set_label(
            &mut spec.labels,
            LABEL_SERVICE_NAME,
            task.service_name.clone(),
        );
        set_label(&mut spec.labels, LABEL_SLOT, task.slot.to_string());
        log(
            LogLevel::Debug,
            &format!("creating container {name} for task {}", task.id),
        );
        docker::create(&task.id, &name, &spec, task.limits).map_err(error)
    }

    fn start(task_id: String) -> Result<(), ExecutorError> {
        match docker::status(&task_id) {
            TaskState::Prepared => docker::start(&task_id).map_err(error),
            TaskState::Running => Err(error(format!("task {task_id} is already running"))),
            TaskState::Exited(_) => Err(error(format!("task {task_id} has already run"))),
            TaskState::Missing => Err(error(format!(
                "task {task_id} has no container: prepare it first"
            ))),
        }
    }

    fn shutdown(task_id: String, timeout_ms: u64) -> Result<(), ExecutorError> {
        match docker::status(&task_id) {
            TaskState::Running => docker::stop(&task_id, timeout_ms).map_err(error),
            _ => Ok(()),
        }
    }

    fn remove(task_id: String) -> Result<(), ExecutorError> {
        docker::remove(&task_id).map_err(error)
    }

    fn inspect(task_id: String) -> Result<TaskState, ExecutorError> {
        Ok(docker::status(&task_id))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use swarm::plugin::types::{ContainerSpec, TaskLimits};

    fn task(service: &str, id: &str) -> Task {
        Task {
            id: id.to_owned(),
            service_id: "s1".to_owned(),
            service_name: service.to_owned(),
            slot: 3,
            runtime: TaskRuntime::Container(ContainerSpec {
                image: "busybox".to_owned(),
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
        }
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(container_name(&task("web", "abc")), "web.3.abc");
        assert_eq!(container_name(&task("_x y", "abc")), "t_x-y.3.abc");
        let long = container_name(&task(&"w".repeat(300), "id9"));
        assert_eq!(long.len(), MAX_NAME_LEN);
        assert!(long.ends_with(".3.id9"), "{long}");
    }
}
