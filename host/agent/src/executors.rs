//! The node's executors by name, and which one runs a task.
//!
//! The first executor is the node's default. A task runs on the executor it names (when the
//! managers name one), else on the default if that runs the task's runtime, else on the first
//! executor that does. The worker database records which executor a task was given, so a
//! restarted agent adopts the task with the same executor.

use std::sync::Arc;

use parking_lot::RwLock;
use swarm_types::Task;

use crate::executor::{Executor, ExecutorHealth, ExecutorInfo};

/// One executor and what it said of itself.
#[derive(Clone)]
pub struct NamedExecutor {
    pub info: ExecutorInfo,
    pub executor: Arc<dyn Executor>,
}

/// The executors of a node; the first is the default. Cheap to clone; shared by all controllers.
#[derive(Clone, Default)]
pub struct Executors {
    inner: Arc<RwLock<Vec<NamedExecutor>>>,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.inner.read().iter().map(|e| &e.info))
            .finish()
    }
}

impl Executors {
    /// Executors in order of preference; the first is the node's default.
    pub fn new(executors: Vec<NamedExecutor>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(executors)),
        }
    }

    /// Adds an executor, or replaces the one of the same name (running tasks keep the instance
    /// they were started with until they end).
    pub fn insert(&self, executor: NamedExecutor) {
        let mut executors = self.inner.write();
        match executors
            .iter_mut()
            .find(|e| e.info.name == executor.info.name)
        {
            Some(existing) => *existing = executor,
            None => executors.push(executor),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Executor>> {
        self.inner
            .read()
            .iter()
            .find(|e| e.info.name == name)
            .map(|e| Arc::clone(&e.executor))
    }

    /// The executors whose failure budget ran out, with their health.
    pub fn quarantined(&self) -> Vec<(String, ExecutorHealth)> {
        self.inner
            .read()
            .iter()
            .filter_map(|e| {
                let health = e.executor.health()?;
                health.quarantined.then(|| (e.info.name.clone(), health))
            })
            .collect()
    }

    /// What each executor said of itself, default first.
    pub fn infos(&self) -> Vec<ExecutorInfo> {
        self.inner.read().iter().map(|e| e.info.clone()).collect()
    }

    /// The executor for `task`: `requested` when given (it must run the task's runtime), else
    /// the default when it runs the runtime, else the first that does. The error says why none
    /// fits, naming the executors and their runtimes.
    pub fn choose(
        &self,
        task: &Task,
        requested: Option<&str>,
    ) -> Result<(String, Arc<dyn Executor>), String> {
        let runtime = task.spec.runtime.kind();
        let executors = self.inner.read();
        let runs = |e: &NamedExecutor| e.info.runtimes.iter().any(|r| r == runtime);
        let chosen = match requested.filter(|name| !name.is_empty()) {
            Some(name) => {
                let Some(named) = executors.iter().find(|e| e.info.name == name) else {
                    return Err(format!(
                        "the executor {name:?} is not available on this node ({})",
                        summary(&executors)
                    ));
                };
                if !runs(named) {
                    return Err(format!(
                        "the executor {name:?} does not run {runtime} tasks ({})",
                        summary(&executors)
                    ));
                }
                named
            }
            None => executors.iter().find(|e| runs(e)).ok_or_else(|| {
                format!(
                    "no executor on this node runs {runtime} tasks ({})",
                    summary(&executors)
                )
            })?,
        };
        Ok((chosen.info.name.clone(), Arc::clone(&chosen.executor)))
    }
}

/// `executors: docker (container), default (process, wasi)`.
fn summary(executors: &[NamedExecutor]) -> String {
    if executors.is_empty() {
        return "it has no executor".to_string();
    }
    let list = executors
        .iter()
        .map(|e| format!("{} ({})", e.info.name, e.info.runtimes.join(", ")))
        .collect::<Vec<_>>()
        .join(", ");
    format!("executors: {list}")
}

/// The executor a task names: the managers fix it at assignment (the service's
/// `spec.executor`, else the node's); `None` lets the node choose by runtime.
pub(crate) fn requested_executor(task: &Task) -> Option<&str> {
    Some(task.executor.as_str()).filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use swarm_types::{ContainerSpec, Runtime, TaskState};

    use super::*;
    use crate::controller::tests::Fake;
    use crate::db::tests::task;
    use crate::executor::ExecState;

    fn named(name: &str, runtimes: &[&str]) -> NamedExecutor {
        NamedExecutor {
            info: ExecutorInfo {
                name: name.into(),
                runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
                engine: None,
            },
            executor: Fake::new(ExecState::Missing, &[]),
        }
    }

    #[test]
    fn the_default_wins_when_it_runs_the_runtime_else_the_first_that_does() {
        let executors = Executors::new(vec![
            named("docker", &["container"]),
            named("default", &["process", "wasi"]),
        ]);
        let process = task("t", TaskState::Assigned);
        let mut container = task("c", TaskState::Assigned);
        container.spec.runtime = Runtime::Container(ContainerSpec {
            image: "img".into(),
            ..Default::default()
        });
        let name = |task: &Task, requested| executors.choose(task, requested).map(|(n, _)| n);
        assert_eq!(name(&process, None), Ok("default".to_string()));
        assert_eq!(name(&container, None), Ok("docker".to_string()));
        assert_eq!(name(&process, Some("default")), Ok("default".to_string()));
        assert_eq!(
            name(&process, Some("docker")),
            Err(
                "the executor \"docker\" does not run process tasks (executors: docker \
                 (container), default (process, wasi))"
                    .to_string()
            )
        );
        assert!(
            name(&process, Some("gone"))
                .expect_err("unknown")
                .starts_with("the executor \"gone\" is not available on this node")
        );

        let without_docker = Executors::new(vec![named("default", &["process", "wasi"])]);
        assert_eq!(
            without_docker.choose(&container, None).map(|(n, _)| n),
            Err(
                "no executor on this node runs container tasks (executors: default (process, \
                 wasi))"
                    .to_string()
            )
        );
        without_docker.insert(named("docker", &["container"]));
        assert_eq!(
            without_docker.choose(&container, None).map(|(n, _)| n),
            Ok("docker".to_string())
        );
    }
}
