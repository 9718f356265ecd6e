//! Services: the desired state an operator declares (what to run, how many, where, how to restart).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::constraint::check_constraints;
use crate::container::ContainerSpec;
use crate::meta::{Annotations, Meta};
use crate::node::Platform;
use crate::plugin::check_plugin_ref;
use crate::resources::ResourceRequirements;
use crate::secret::{DataKind, FileRef, check_file_refs};
use crate::validate::{ValidationError, check_labels, check_name};

/// How many tasks a service runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// A fixed number of tasks, spread over the eligible nodes.
    Replicated { replicas: u64 },
    /// One task on every eligible node.
    Global,
}

impl ServiceMode {
    pub fn name(&self) -> &'static str {
        match self {
            ServiceMode::Replicated { .. } => "replicated",
            ServiceMode::Global => "global",
        }
    }
}

/// A host process, run by the `process` runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// A WASI command component, run sandboxed by the `wasi` runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasiSpec {
    /// Absolute path of the component on the node.
    pub module: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

/// What a task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Process(ProcessSpec),
    Wasi(WasiSpec),
    Container(ContainerSpec),
}

impl Runtime {
    /// The runtime's name as executors advertise it.
    pub fn kind(&self) -> &'static str {
        match self {
            Runtime::Process(_) => "process",
            Runtime::Wasi(_) => "wasi",
            Runtime::Container(_) => "container",
        }
    }

    /// A one-line summary for tables: the command, module or image and its arguments.
    pub fn summary(&self) -> String {
        let (head, args) = match self {
            Runtime::Process(p) => (&p.command, &p.args),
            Runtime::Wasi(w) => (&w.module, &w.args),
            Runtime::Container(c) => (&c.image, &c.args),
        };
        std::iter::once(head.as_str())
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let check_env = |field: &str, env: &[String]| {
            for (i, e) in env.iter().enumerate() {
                match e.split_once('=') {
                    Some((k, _)) if !k.is_empty() => {}
                    _ => {
                        return Err(ValidationError::new(
                            format!("{field}[{i}]"),
                            format!("{e:?} must have the form NAME=VALUE"),
                        ));
                    }
                }
            }
            Ok(())
        };
        match self {
            Runtime::Process(p) => {
                if p.command.trim().is_empty() {
                    return Err(ValidationError::new(
                        "spec.task.runtime.process.command",
                        "must not be empty",
                    ));
                }
                if let Some(dir) = &p.dir
                    && !dir.starts_with('/')
                {
                    return Err(ValidationError::new(
                        "spec.task.runtime.process.dir",
                        format!("{dir:?} must be an absolute path"),
                    ));
                }
                check_env("spec.task.runtime.process.env", &p.env)
            }
            Runtime::Wasi(w) => {
                if !w.module.starts_with('/') {
                    return Err(ValidationError::new(
                        "spec.task.runtime.wasi.module",
                        format!("{:?} must be an absolute path", w.module),
                    ));
                }
                check_env("spec.task.runtime.wasi.env", &w.env)
            }
            Runtime::Container(c) => {
                c.validate("spec.task.runtime.container")?;
                check_env("spec.task.runtime.container.env", &c.env)
            }
        }
    }
}

/// When a task that ended is replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// Wait between a task ending and its replacement starting.
    #[serde(with = "crate::meta::duration_text")]
    pub delay: Duration,
    /// Most restarts within `window` (0: no limit).
    pub max_attempts: u64,
    /// The window `max_attempts` counts over (0: the service's lifetime).
    #[serde(with = "crate::meta::duration_text")]
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// SwarmKit's defaults: restart on any exit after 5 s, without limit.
    fn default() -> Self {
        Self {
            condition: RestartCondition::Any,
            delay: Duration::from_secs(5),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

/// Where tasks may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Expressions like `node.labels.zone==east`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Acceptable platforms (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
    /// Most tasks of this service on one node (0: no limit).
    #[serde(default)]
    pub max_replicas: u64,
}

/// What every task of a service runs and under which rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub runtime: Runtime,
    #[serde(default)]
    pub resources: ResourceRequirements,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub placement: Placement,
    /// Bumped to force a new rollout with an unchanged spec.
    #[serde(default)]
    pub force_update: u64,
    /// Secrets given to each task as files (`$SWARM_SECRETS_DIR/<target>`, or
    /// `/run/secrets/<target>` in a container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    /// Configs given to each task as files (`$SWARM_CONFIGS_DIR/<target>`, or `/<target>` in a
    /// container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
}

impl TaskSpec {
    /// The task's references to secrets or to configs.
    pub fn refs(&self, kind: DataKind) -> &[FileRef] {
        match kind {
            DataKind::Secret => &self.secrets,
            DataKind::Config => &self.configs,
        }
    }

    /// The task's references to secrets or to configs, to change them.
    pub fn refs_mut(&mut self, kind: DataKind) -> &mut Vec<FileRef> {
        match kind {
            DataKind::Secret => &mut self.secrets,
            DataKind::Config => &mut self.configs,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub annotations: Annotations,
    pub task: TaskSpec,
    pub mode: ServiceMode,
    /// The executor plugin for this service's tasks (an installed plugin's name); empty: each
    /// node's choice.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub executor: String,
}

impl ServiceSpec {
    /// Check the spec; the error names the field at fault.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_name("spec.annotations.name", &self.annotations.name)?;
        check_labels("spec.annotations.labels", &self.annotations.labels)?;
        check_plugin_ref("spec.executor", &self.executor)?;
        self.task.runtime.validate()?;
        for kind in [DataKind::Secret, DataKind::Config] {
            let field = format!("spec.task.{kind}s");
            let refs = self.task.refs(kind);
            check_file_refs(&field, refs)?;
            if matches!(self.task.runtime, Runtime::Wasi(_)) && !refs.is_empty() {
                return Err(ValidationError::new(
                    field,
                    "wasi tasks have no file system to receive them; use the process or container runtime",
                ));
            }
        }
        self.task.resources.validate("spec.task.resources")?;
        check_constraints(
            "spec.task.placement.constraints",
            &self.task.placement.constraints,
        )?;
        for (i, p) in self.task.placement.platforms.iter().enumerate() {
            if p.os.is_empty() && p.arch.is_empty() {
                return Err(ValidationError::new(
                    format!("spec.task.placement.platforms[{i}]"),
                    "must name an os, an arch or both",
                ));
            }
        }
        if let ServiceMode::Replicated { replicas } = self.mode
            && replicas > MAX_REPLICAS
        {
            return Err(ValidationError::new(
                "spec.replicas",
                format!("must be <= {MAX_REPLICAS}"),
            ));
        }
        Ok(())
    }
}

/// Upper bound on replicas of one service, to refuse typos like `--replicas 10000000000`.
pub const MAX_REPLICAS: u64 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub meta: Meta,
    pub spec: ServiceSpec,
    /// Incremented on every spec change; tasks record the version they were created from.
    pub spec_version: u64,
}

impl Service {
    pub fn name(&self) -> &str {
        &self.spec.annotations.name
    }
}

/// Labels as `BTreeMap`, parsed from `KEY=VALUE` strings (a missing `=` gives an empty value).
pub fn parse_labels(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (s.clone(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            annotations: Annotations {
                name: "web".into(),
                labels: Default::default(),
            },
            task: TaskSpec {
                runtime: Runtime::Process(ProcessSpec {
                    command: "sleep".into(),
                    args: vec!["1000".into()],
                    ..Default::default()
                }),
                resources: Default::default(),
                restart: Default::default(),
                placement: Default::default(),
                force_update: 0,
                secrets: vec![],
                configs: vec![],
            },
            mode: ServiceMode::Replicated { replicas: 3 },
            executor: String::new(),
        }
    }

    #[test]
    fn a_good_spec_validates() {
        assert_eq!(spec().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        type Mutation = Box<dyn Fn(&mut ServiceSpec)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|s| s.annotations.name = String::new()),
                "spec.annotations.name: must not be empty",
            ),
            (
                Box::new(|s| s.annotations.name = "a b".into()),
                "spec.annotations.name: \"a b\" contains ' '",
            ),
            (
                Box::new(|s| s.task.runtime = Runtime::Process(ProcessSpec::default())),
                "spec.task.runtime.process.command: must not be empty",
            ),
            (
                Box::new(|s| s.task.placement.constraints = vec!["node.role=manager".into()]),
                "spec.task.placement.constraints[0]:",
            ),
            (
                Box::new(|s| {
                    s.mode = ServiceMode::Replicated {
                        replicas: MAX_REPLICAS + 1,
                    }
                }),
                "spec.replicas: must be <=",
            ),
            (
                Box::new(|s| s.task.resources.reservations.memory_bytes = -1),
                "spec.task.resources.reservations.memory_bytes: must be >= 0",
            ),
            (
                Box::new(|s| {
                    s.task.runtime = Runtime::Wasi(WasiSpec {
                        module: "x.wasm".into(),
                        ..Default::default()
                    })
                }),
                "spec.task.runtime.wasi.module: \"x.wasm\" must be an absolute path",
            ),
            (
                Box::new(|s| {
                    if let Runtime::Process(p) = &mut s.task.runtime {
                        p.env = vec!["NOVALUE".into()];
                    }
                }),
                "spec.task.runtime.process.env[0]: \"NOVALUE\" must have the form NAME=VALUE",
            ),
            (
                Box::new(|s| s.task.secrets = vec![FileRef::named("key", "a/b")]),
                "spec.task.secrets[0].target: \"a/b\" must be a plain file name",
            ),
            (
                Box::new(|s| {
                    s.task.runtime = Runtime::Wasi(WasiSpec {
                        module: "/x.wasm".into(),
                        ..Default::default()
                    });
                    s.task.configs = vec![FileRef::named("conf", "")];
                }),
                "spec.task.configs: wasi tasks have no file system",
            ),
            (
                Box::new(|s| s.executor = "my executor".into()),
                "spec.executor: \"my executor\" contains ' '",
            ),
        ];
        for (mutate, want) in cases {
            let mut s = spec();
            mutate(&mut s);
            let err = s.validate().expect_err(want).to_string();
            assert!(err.starts_with(want), "got {err:?}, want prefix {want:?}");
        }
    }

    #[test]
    fn durations_round_trip_as_text() {
        let p = RestartPolicy {
            delay: Duration::from_millis(1500),
            ..Default::default()
        };
        let json = serde_json::to_string(&p).expect("serialize");
        assert!(json.contains("\"1s 500ms\""), "{json}");
        let back: RestartPolicy = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, p);
    }
}
