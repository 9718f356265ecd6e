//! Conversions between `pb` messages and `swarm_types` objects, both ways.

use std::time::Duration;

use swarm_types as t;

use crate::pb;

/// A message could not become a domain object: a required field is missing or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConversionError {
    pub field: String,
    pub message: String,
}

impl ConversionError {
    fn missing(field: &str) -> Self {
        Self {
            field: field.to_string(),
            message: "is required".to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, ConversionError>;

pub fn timestamp_to_pb(ts: t::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.unix_nanos.div_euclid(1_000_000_000),
        nanos: i32::try_from(ts.unix_nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

pub fn timestamp_from_pb(ts: Option<prost_types::Timestamp>) -> t::Timestamp {
    let ts = ts.unwrap_or_default();
    t::Timestamp::from_unix_nanos(
        ts.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(ts.nanos)),
    )
}

pub fn duration_to_pb(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf duration as a `Duration`; negative values are refused, naming `field`.
pub fn duration_from_pb(field: &str, d: Option<prost_types::Duration>) -> Result<Duration> {
    let d = d.unwrap_or_default();
    if d.seconds < 0 || d.nanos < 0 {
        return Err(ConversionError {
            field: field.to_string(),
            message: "must not be negative".to_string(),
        });
    }
    Ok(Duration::new(
        d.seconds.unsigned_abs(),
        d.nanos.unsigned_abs(),
    ))
}

fn meta_to_pb(m: t::Meta) -> pb::Meta {
    pb::Meta {
        version: m.version,
        created_at: Some(timestamp_to_pb(m.created_at)),
        updated_at: Some(timestamp_to_pb(m.updated_at)),
    }
}

fn meta_from_pb(m: Option<pb::Meta>) -> t::Meta {
    let m = m.unwrap_or_default();
    t::Meta {
        version: m.version,
        created_at: timestamp_from_pb(m.created_at),
        updated_at: timestamp_from_pb(m.updated_at),
    }
}

fn annotations_to_pb(a: t::Annotations) -> pb::Annotations {
    pb::Annotations {
        name: a.name,
        labels: a.labels.into_iter().collect(),
    }
}

fn annotations_from_pb(a: Option<pb::Annotations>) -> t::Annotations {
    let a = a.unwrap_or_default();
    t::Annotations {
        name: a.name,
        labels: a.labels.into_iter().collect(),
    }
}

fn resources_to_pb(r: t::Resources) -> pb::Resources {
    pb::Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    }
}

fn resources_from_pb(r: Option<pb::Resources>) -> t::Resources {
    let r = r.unwrap_or_default();
    t::Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    }
}

fn platform_to_pb(p: t::Platform) -> pb::Platform {
    pb::Platform {
        os: p.os,
        arch: p.arch,
    }
}

fn platform_from_pb(p: Option<pb::Platform>) -> t::Platform {
    let p = p.unwrap_or_default();
    t::Platform {
        os: p.os,
        arch: p.arch,
    }
}

// ---- enums -------------------------------------------------------------------------------

impl From<t::NodeRole> for pb::NodeRole {
    fn from(r: t::NodeRole) -> Self {
        match r {
            t::NodeRole::Worker => pb::NodeRole::Worker,
            t::NodeRole::Manager => pb::NodeRole::Manager,
        }
    }
}

fn role_to_pb(r: t::NodeRole) -> pb::NodeRole {
    r.into()
}

fn role_from_pb(field: &str, v: i32) -> Result<t::NodeRole> {
    match pb::NodeRole::try_from(v) {
        Ok(pb::NodeRole::Worker) => Ok(t::NodeRole::Worker),
        Ok(pb::NodeRole::Manager) => Ok(t::NodeRole::Manager),
        Err(_) => Err(unknown_enum(field, v)),
    }
}

fn unknown_enum(field: &str, v: i32) -> ConversionError {
    ConversionError {
        field: field.to_string(),
        message: format!("unknown value {v}"),
    }
}

impl From<t::TaskState> for pb::TaskState {
    fn from(s: t::TaskState) -> Self {
        use pb::TaskState as P;
        use t::TaskState as S;
        match s {
            S::New => P::New,
            S::Pending => P::Pending,
            S::Assigned => P::Assigned,
            S::Accepted => P::Accepted,
            S::Preparing => P::Preparing,
            S::Ready => P::Ready,
            S::Starting => P::Starting,
            S::Running => P::Running,
            S::Complete => P::Complete,
            S::Shutdown => P::Shutdown,
            S::Failed => P::Failed,
            S::Rejected => P::Rejected,
            S::Remove => P::Remove,
            S::Orphaned => P::Orphaned,
        }
    }
}

impl From<pb::TaskState> for t::TaskState {
    fn from(s: pb::TaskState) -> Self {
        use pb::TaskState as P;
        use t::TaskState as S;
        match s {
            P::New => S::New,
            P::Pending => S::Pending,
            P::Assigned => S::Assigned,
            P::Accepted => S::Accepted,
            P::Preparing => S::Preparing,
            P::Ready => S::Ready,
            P::Starting => S::Starting,
            P::Running => S::Running,
            P::Complete => S::Complete,
            P::Shutdown => S::Shutdown,
            P::Failed => S::Failed,
            P::Rejected => S::Rejected,
            P::Remove => S::Remove,
            P::Orphaned => S::Orphaned,
        }
    }
}

/// A task state from its wire value, naming `field` if the value is unknown.
pub(crate) fn task_state_from_pb(field: &str, v: i32) -> Result<t::TaskState> {
    pb::TaskState::try_from(v)
        .map(Into::into)
        .map_err(|_| unknown_enum(field, v))
}

impl pb::TaskState {
    /// The domain state of a wire value (unknown values are errors naming the field).
    pub fn from_wire(field: &str, v: i32) -> Result<t::TaskState> {
        task_state_from_pb(field, v)
    }
}

// ---- nodes -------------------------------------------------------------------------------

impl From<t::NodeSpec> for pb::NodeSpec {
    fn from(s: t::NodeSpec) -> Self {
        pb::NodeSpec {
            annotations: Some(annotations_to_pb(s.annotations)),
            desired_role: role_to_pb(s.desired_role) as i32,
            membership: match s.membership {
                t::Membership::Pending => pb::Membership::Pending,
                t::Membership::Accepted => pb::Membership::Accepted,
            } as i32,
            availability: match s.availability {
                t::Availability::Active => pb::Availability::Active,
                t::Availability::Pause => pb::Availability::Pause,
                t::Availability::Drain => pb::Availability::Drain,
            } as i32,
            executor: s.executor,
        }
    }
}

impl TryFrom<pb::NodeSpec> for t::NodeSpec {
    type Error = ConversionError;
    fn try_from(s: pb::NodeSpec) -> Result<Self> {
        Ok(t::NodeSpec {
            annotations: annotations_from_pb(s.annotations),
            desired_role: role_from_pb("spec.desired_role", s.desired_role)?,
            membership: match pb::Membership::try_from(s.membership) {
                Ok(pb::Membership::Pending) => t::Membership::Pending,
                Ok(pb::Membership::Accepted) => t::Membership::Accepted,
                Err(_) => return Err(unknown_enum("spec.membership", s.membership)),
            },
            availability: match pb::Availability::try_from(s.availability) {
                Ok(pb::Availability::Active) => t::Availability::Active,
                Ok(pb::Availability::Pause) => t::Availability::Pause,
                Ok(pb::Availability::Drain) => t::Availability::Drain,
                Err(_) => return Err(unknown_enum("spec.availability", s.availability)),
            },
            executor: s.executor,
        })
    }
}

impl From<t::NodeDescription> for pb::NodeDescription {
    fn from(d: t::NodeDescription) -> Self {
        pb::NodeDescription {
            hostname: d.hostname,
            platform: Some(platform_to_pb(d.platform)),
            resources: Some(resources_to_pb(d.resources)),
            engine: Some(pb::EngineDescription {
                version: d.engine.version,
                labels: d.engine.labels.into_iter().collect(),
                plugins: d.engine.plugins,
            }),
            executor: d.executor,
            runtimes: d.runtimes,
        }
    }
}

impl From<pb::NodeDescription> for t::NodeDescription {
    fn from(d: pb::NodeDescription) -> Self {
        let engine = d.engine.unwrap_or_default();
        t::NodeDescription {
            hostname: d.hostname,
            platform: platform_from_pb(d.platform),
            resources: resources_from_pb(d.resources),
            engine: t::EngineDescription {
                version: engine.version,
                labels: engine.labels.into_iter().collect(),
                plugins: engine.plugins,
            },
            executor: d.executor,
            runtimes: d.runtimes,
        }
    }
}

fn node_state_to_pb(s: t::NodeState) -> pb::NodeState {
    match s {
        t::NodeState::Unknown => pb::NodeState::Unknown,
        t::NodeState::Down => pb::NodeState::Down,
        t::NodeState::Ready => pb::NodeState::Ready,
        t::NodeState::Disconnected => pb::NodeState::Disconnected,
    }
}

fn node_state_from_pb(v: i32) -> Result<t::NodeState> {
    Ok(match pb::NodeState::try_from(v) {
        Ok(pb::NodeState::Unknown) => t::NodeState::Unknown,
        Ok(pb::NodeState::Down) => t::NodeState::Down,
        Ok(pb::NodeState::Ready) => t::NodeState::Ready,
        Ok(pb::NodeState::Disconnected) => t::NodeState::Disconnected,
        Err(_) => return Err(unknown_enum("status.state", v)),
    })
}

impl From<t::Node> for pb::Node {
    fn from(n: t::Node) -> Self {
        pb::Node {
            id: n.id,
            meta: Some(meta_to_pb(n.meta)),
            spec: Some(n.spec.into()),
            role: role_to_pb(n.role) as i32,
            description: n.description.map(Into::into),
            status: Some(pb::NodeStatus {
                state: node_state_to_pb(n.status.state) as i32,
                message: n.status.message,
                addr: n.status.addr,
                last_seen: Some(timestamp_to_pb(n.status.last_seen)),
            }),
            manager_status: n.manager_status.map(|m| pb::ManagerStatus {
                raft_id: m.raft_id,
                addr: m.addr,
                leader: m.leader,
                reachability: match m.reachability {
                    t::Reachability::Unknown => pb::Reachability::Unknown,
                    t::Reachability::Unreachable => pb::Reachability::Unreachable,
                    t::Reachability::Reachable => pb::Reachability::Reachable,
                } as i32,
            }),
        }
    }
}

impl TryFrom<pb::Node> for t::Node {
    type Error = ConversionError;
    fn try_from(n: pb::Node) -> Result<Self> {
        let status = n.status.unwrap_or_default();
        Ok(t::Node {
            id: n.id,
            meta: meta_from_pb(n.meta),
            spec: n
                .spec
                .ok_or_else(|| ConversionError::missing("spec"))?
                .try_into()?,
            role: role_from_pb("role", n.role)?,
            description: n.description.map(Into::into),
            status: t::NodeStatus {
                state: node_state_from_pb(status.state)?,
                message: status.message,
                addr: status.addr,
                last_seen: timestamp_from_pb(status.last_seen),
            },
            manager_status: n.manager_status.map(|m| t::ManagerStatus {
                raft_id: m.raft_id,
                addr: m.addr,
                leader: m.leader,
                reachability: match pb::Reachability::try_from(m.reachability) {
                    Ok(pb::Reachability::Reachable) => t::Reachability::Reachable,
                    Ok(pb::Reachability::Unreachable) => t::Reachability::Unreachable,
                    _ => t::Reachability::Unknown,
                },
            }),
        })
    }
}

// ---- services ----------------------------------------------------------------------------

impl From<t::TaskSpec> for pb::TaskSpec {
    fn from(s: t::TaskSpec) -> Self {
        let runtime = match s.runtime {
            t::Runtime::Process(p) => pb::task_spec::Runtime::Process(pb::ProcessSpec {
                command: p.command,
                args: p.args,
                env: p.env,
                dir: p.dir,
            }),
            t::Runtime::Wasi(w) => pb::task_spec::Runtime::Wasi(pb::WasiSpec {
                module: w.module,
                args: w.args,
                env: w.env,
            }),
            t::Runtime::Container(c) => pb::task_spec::Runtime::Container(container_to_pb(c)),
        };
        pb::TaskSpec {
            runtime: Some(runtime),
            resources: Some(pb::ResourceRequirements {
                limits: Some(resources_to_pb(s.resources.limits)),
                reservations: Some(resources_to_pb(s.resources.reservations)),
            }),
            restart: Some(pb::RestartPolicy {
                condition: match s.restart.condition {
                    t::RestartCondition::None => pb::RestartCondition::None,
                    t::RestartCondition::OnFailure => pb::RestartCondition::OnFailure,
                    t::RestartCondition::Any => pb::RestartCondition::Any,
                } as i32,
                delay: Some(duration_to_pb(s.restart.delay)),
                max_attempts: s.restart.max_attempts,
                window: Some(duration_to_pb(s.restart.window)),
            }),
            placement: Some(pb::Placement {
                constraints: s.placement.constraints,
                platforms: s
                    .placement
                    .platforms
                    .into_iter()
                    .map(platform_to_pb)
                    .collect(),
                max_replicas: s.placement.max_replicas,
            }),
            force_update: s.force_update,
            secrets: s.secrets.into_iter().map(file_ref_to_pb).collect(),
            configs: s.configs.into_iter().map(file_ref_to_pb).collect(),
        }
    }
}

fn container_to_pb(c: t::ContainerSpec) -> pb::ContainerSpec {
    pb::ContainerSpec {
        image: c.image,
        entrypoint: c.entrypoint,
        args: c.args,
        env: c.env,
        labels: c.labels.into_iter().collect(),
        mounts: c
            .mounts
            .into_iter()
            .map(|m| pb::Mount {
                kind: match m.kind {
                    t::MountKind::Bind => pb::MountKind::Bind,
                    t::MountKind::Volume => pb::MountKind::Volume,
                    t::MountKind::Tmpfs => pb::MountKind::Tmpfs,
                } as i32,
                source: m.source,
                target: m.target,
                read_only: m.read_only,
            })
            .collect(),
        workdir: c.workdir,
        user: c.user,
        hostname: c.hostname,
    }
}

fn container_from_pb(c: pb::ContainerSpec) -> Result<t::ContainerSpec> {
    let mounts = c
        .mounts
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let kind = match pb::MountKind::try_from(m.kind) {
                Ok(pb::MountKind::Bind) => t::MountKind::Bind,
                Ok(pb::MountKind::Volume) => t::MountKind::Volume,
                Ok(pb::MountKind::Tmpfs) => t::MountKind::Tmpfs,
                Err(_) => {
                    return Err(unknown_enum(
                        &format!("spec.task.runtime.container.mounts[{i}].kind"),
                        m.kind,
                    ));
                }
            };
            Ok(t::Mount {
                kind,
                source: m.source,
                target: m.target,
                read_only: m.read_only,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(t::ContainerSpec {
        image: c.image,
        entrypoint: c.entrypoint,
        args: c.args,
        env: c.env,
        labels: c.labels.into_iter().collect(),
        mounts,
        workdir: c.workdir,
        user: c.user,
        hostname: c.hostname,
    })
}

impl TryFrom<pb::TaskSpec> for t::TaskSpec {
    type Error = ConversionError;
    fn try_from(s: pb::TaskSpec) -> Result<Self> {
        let runtime = match s.runtime {
            Some(pb::task_spec::Runtime::Process(p)) => t::Runtime::Process(t::ProcessSpec {
                command: p.command,
                args: p.args,
                env: p.env,
                dir: p.dir,
            }),
            Some(pb::task_spec::Runtime::Wasi(w)) => t::Runtime::Wasi(t::WasiSpec {
                module: w.module,
                args: w.args,
                env: w.env,
            }),
            Some(pb::task_spec::Runtime::Container(c)) => {
                t::Runtime::Container(container_from_pb(c)?)
            }
            None => {
                return Err(ConversionError {
                    field: "spec.task.runtime".to_string(),
                    message: "is required: set process, wasi or container".to_string(),
                });
            }
        };
        let resources = s.resources.unwrap_or_default();
        let restart = match s.restart {
            None => t::RestartPolicy::default(),
            Some(r) => t::RestartPolicy {
                condition: match pb::RestartCondition::try_from(r.condition) {
                    Ok(pb::RestartCondition::None) => t::RestartCondition::None,
                    Ok(pb::RestartCondition::OnFailure) => t::RestartCondition::OnFailure,
                    Ok(pb::RestartCondition::Any) => t::RestartCondition::Any,
                    Err(_) => return Err(unknown_enum("spec.task.restart.condition", r.condition)),
                },
                delay: duration_from_pb("spec.task.restart.delay", r.delay)?,
                max_attempts: r.max_attempts,
                window: duration_from_pb("spec.task.restart.window", r.window)?,
            },
        };
        let placement = s.placement.unwrap_or_default();
        Ok(t::TaskSpec {
            runtime,
            resources: t::ResourceRequirements {
                limits: resources_from_pb(resources.limits),
                reservations: resources_from_pb(resources.reservations),
            },
            restart,
            placement: t::Placement {
                constraints: placement.constraints,
                platforms: placement
                    .platforms
                    .into_iter()
                    .map(|p| platform_from_pb(Some(p)))
                    .collect(),
                max_replicas: placement.max_replicas,
            },
            force_update: s.force_update,
            secrets: s.secrets.into_iter().map(file_ref_from_pb).collect(),
            configs: s.configs.into_iter().map(file_ref_from_pb).collect(),
        })
    }
}

impl From<t::ServiceSpec> for pb::ServiceSpec {
    fn from(s: t::ServiceSpec) -> Self {
        pb::ServiceSpec {
            annotations: Some(annotations_to_pb(s.annotations)),
            task: Some(s.task.into()),
            mode: Some(match s.mode {
                t::ServiceMode::Replicated { replicas } => {
                    pb::service_spec::Mode::Replicated(pb::ReplicatedService { replicas })
                }
                t::ServiceMode::Global => pb::service_spec::Mode::Global(pb::GlobalService {}),
            }),
            executor: s.executor,
        }
    }
}

impl TryFrom<pb::ServiceSpec> for t::ServiceSpec {
    type Error = ConversionError;
    fn try_from(s: pb::ServiceSpec) -> Result<Self> {
        Ok(t::ServiceSpec {
            annotations: annotations_from_pb(s.annotations),
            task: s
                .task
                .ok_or_else(|| ConversionError::missing("spec.task"))?
                .try_into()?,
            mode: match s.mode {
                Some(pb::service_spec::Mode::Replicated(r)) => t::ServiceMode::Replicated {
                    replicas: r.replicas,
                },
                Some(pb::service_spec::Mode::Global(_)) => t::ServiceMode::Global,
                None => t::ServiceMode::Replicated { replicas: 1 },
            },
            executor: s.executor,
        })
    }
}

impl From<t::Service> for pb::Service {
    fn from(s: t::Service) -> Self {
        pb::Service {
            id: s.id,
            meta: Some(meta_to_pb(s.meta)),
            spec: Some(s.spec.into()),
            spec_version: s.spec_version,
        }
    }
}

impl TryFrom<pb::Service> for t::Service {
    type Error = ConversionError;
    fn try_from(s: pb::Service) -> Result<Self> {
        Ok(t::Service {
            id: s.id,
            meta: meta_from_pb(s.meta),
            spec: s
                .spec
                .ok_or_else(|| ConversionError::missing("spec"))?
                .try_into()?,
            spec_version: s.spec_version,
        })
    }
}

// ---- tasks -------------------------------------------------------------------------------

impl From<t::TaskStatus> for pb::TaskStatus {
    fn from(s: t::TaskStatus) -> Self {
        pb::TaskStatus {
            state: pb::TaskState::from(s.state) as i32,
            timestamp: Some(timestamp_to_pb(s.timestamp)),
            message: s.message,
            err: s.err,
            exit: s.exit.map(|e| pb::ExitInfo {
                code: e.code,
                signal: e.signal,
            }),
        }
    }
}

impl TryFrom<pb::TaskStatus> for t::TaskStatus {
    type Error = ConversionError;
    fn try_from(s: pb::TaskStatus) -> Result<Self> {
        Ok(t::TaskStatus {
            state: task_state_from_pb("status.state", s.state)?,
            timestamp: timestamp_from_pb(s.timestamp),
            message: s.message,
            err: s.err,
            exit: s.exit.map(|e| t::ExitInfo {
                code: e.code,
                signal: e.signal,
            }),
        })
    }
}

impl From<t::Task> for pb::Task {
    fn from(task: t::Task) -> Self {
        pb::Task {
            id: task.id,
            meta: Some(meta_to_pb(task.meta)),
            annotations: Some(annotations_to_pb(task.annotations)),
            service_id: task.service_id,
            slot: task.slot,
            node_id: task.node_id,
            spec: Some(task.spec.into()),
            spec_version: task.spec_version,
            desired_state: pb::TaskState::from(task.desired_state) as i32,
            status: Some(task.status.into()),
            executor: task.executor,
        }
    }
}

impl TryFrom<pb::Task> for t::Task {
    type Error = ConversionError;
    fn try_from(task: pb::Task) -> Result<Self> {
        Ok(t::Task {
            id: task.id,
            meta: meta_from_pb(task.meta),
            annotations: annotations_from_pb(task.annotations),
            service_id: task.service_id,
            slot: task.slot,
            node_id: task.node_id,
            spec: task
                .spec
                .ok_or_else(|| ConversionError::missing("spec"))?
                .try_into()?,
            spec_version: task.spec_version,
            desired_state: task_state_from_pb("desired_state", task.desired_state)?,
            status: task.status.unwrap_or_default().try_into()?,
            executor: task.executor,
        })
    }
}

// ---- cluster -----------------------------------------------------------------------------

impl From<t::ClusterSpec> for pb::ClusterSpec {
    fn from(s: t::ClusterSpec) -> Self {
        pb::ClusterSpec {
            annotations: Some(annotations_to_pb(s.annotations)),
            orchestration: Some(pb::OrchestrationConfig {
                task_history_retention_limit: s.orchestration.task_history_retention_limit,
            }),
            dispatcher: Some(pb::DispatcherConfig {
                heartbeat_period: Some(duration_to_pb(s.dispatcher.heartbeat_period)),
                grace_multiplier: s.dispatcher.grace_multiplier,
            }),
            raft: Some(pb::RaftConfig {
                snapshot_interval: s.raft.snapshot_interval,
                log_entries_for_slow_followers: s.raft.log_entries_for_slow_followers,
                heartbeat_tick: s.raft.heartbeat_tick,
                election_tick: s.raft.election_tick,
            }),
            scheduler: s.scheduler,
            autolock: s.autolock,
        }
    }
}

impl TryFrom<pb::ClusterSpec> for t::ClusterSpec {
    type Error = ConversionError;
    fn try_from(s: pb::ClusterSpec) -> Result<Self> {
        let orchestration = s
            .orchestration
            .ok_or_else(|| ConversionError::missing("spec.orchestration"))?;
        let dispatcher = s
            .dispatcher
            .ok_or_else(|| ConversionError::missing("spec.dispatcher"))?;
        let raft = s
            .raft
            .ok_or_else(|| ConversionError::missing("spec.raft"))?;
        Ok(t::ClusterSpec {
            annotations: annotations_from_pb(s.annotations),
            orchestration: t::OrchestrationConfig {
                task_history_retention_limit: orchestration.task_history_retention_limit,
            },
            dispatcher: t::DispatcherConfig {
                heartbeat_period: duration_from_pb(
                    "spec.dispatcher.heartbeat_period",
                    dispatcher.heartbeat_period,
                )?,
                grace_multiplier: dispatcher.grace_multiplier,
            },
            raft: t::RaftConfigSpec {
                snapshot_interval: raft.snapshot_interval,
                log_entries_for_slow_followers: raft.log_entries_for_slow_followers,
                heartbeat_tick: raft.heartbeat_tick,
                election_tick: raft.election_tick,
            },
            scheduler: s.scheduler,
            autolock: s.autolock,
        })
    }
}

impl From<t::Cluster> for pb::Cluster {
    fn from(c: t::Cluster) -> Self {
        // The keys stay in the store: the API shows the certificate and the tokens only.
        let digest = c
            .root_ca
            .join_tokens()
            .map(|tokens| t::digest_hex(&tokens.worker.ca_digest()))
            .unwrap_or_default();
        pb::Cluster {
            id: c.id,
            meta: Some(meta_to_pb(c.meta)),
            spec: Some(c.spec.into()),
            root_ca: Some(pb::RootCa {
                cert_pem: c.root_ca.cert_pem,
                digest,
                join_tokens: Some(pb::JoinTokens {
                    worker: c.root_ca.worker_token,
                    manager: c.root_ca.manager_token,
                }),
            }),
        }
    }
}

impl TryFrom<pb::Cluster> for t::Cluster {
    type Error = ConversionError;
    fn try_from(c: pb::Cluster) -> Result<Self> {
        let root_ca = c.root_ca.unwrap_or_default();
        let tokens = root_ca.join_tokens.unwrap_or_default();
        Ok(t::Cluster {
            id: c.id,
            meta: meta_from_pb(c.meta),
            spec: c
                .spec
                .ok_or_else(|| ConversionError::missing("spec"))?
                .try_into()?,
            root_ca: t::RootCaState {
                cert_pem: root_ca.cert_pem,
                key_pem: String::new(),
                worker_token: tokens.worker,
                manager_token: tokens.manager,
                unlock_key: String::new(),
            },
        })
    }
}

// ---- plugins -----------------------------------------------------------------------------

impl From<t::PluginKind> for pb::PluginKind {
    fn from(k: t::PluginKind) -> Self {
        match k {
            t::PluginKind::Executor => pb::PluginKind::Executor,
            t::PluginKind::Scheduler => pb::PluginKind::Scheduler,
            t::PluginKind::Discovery => pb::PluginKind::Discovery,
        }
    }
}

/// A wire plugin kind, refused with `field` named when unknown.
pub fn plugin_kind_from_pb(field: &str, v: i32) -> Result<t::PluginKind> {
    match pb::PluginKind::try_from(v) {
        Ok(pb::PluginKind::Executor) => Ok(t::PluginKind::Executor),
        Ok(pb::PluginKind::Scheduler) => Ok(t::PluginKind::Scheduler),
        Ok(pb::PluginKind::Discovery) => Ok(t::PluginKind::Discovery),
        Err(_) => Err(unknown_enum(field, v)),
    }
}

impl From<t::PluginSpec> for pb::PluginSpec {
    fn from(s: t::PluginSpec) -> Self {
        pb::PluginSpec {
            annotations: Some(annotations_to_pb(s.annotations)),
            kind: pb::PluginKind::from(s.kind) as i32,
            capabilities: s.capabilities,
        }
    }
}

impl TryFrom<pb::PluginSpec> for t::PluginSpec {
    type Error = ConversionError;
    fn try_from(s: pb::PluginSpec) -> Result<Self> {
        Ok(t::PluginSpec {
            annotations: annotations_from_pb(s.annotations),
            kind: plugin_kind_from_pb("spec.kind", s.kind)?,
            capabilities: s.capabilities,
        })
    }
}

fn file_ref_to_pb(r: t::FileRef) -> pb::FileReference {
    pb::FileReference {
        id: r.id,
        name: r.name,
        target: r.target,
    }
}

fn file_ref_from_pb(r: pb::FileReference) -> t::FileRef {
    t::FileRef {
        id: r.id,
        name: r.name,
        target: r.target,
    }
}

/// Secrets and configs convert alike: the data is copied both ways (the control API blanks a
/// secret's data itself), `data_size` is filled from it.
macro_rules! data_object_conversions {
    ($ty:ident, $spec:ident) => {
        impl From<t::$ty> for pb::$ty {
            fn from(o: t::$ty) -> Self {
                pb::$ty {
                    id: o.id,
                    meta: Some(meta_to_pb(o.meta)),
                    data_size: o.spec.data.len() as u64,
                    spec: Some(o.spec.into()),
                }
            }
        }

        impl From<t::DataSpec> for pb::$spec {
            fn from(s: t::DataSpec) -> Self {
                pb::$spec {
                    annotations: Some(annotations_to_pb(s.annotations)),
                    data: s.data.to_vec(),
                }
            }
        }

        impl From<pb::$spec> for t::DataSpec {
            fn from(s: pb::$spec) -> Self {
                t::DataSpec {
                    annotations: annotations_from_pb(s.annotations),
                    data: t::Blob::from(s.data),
                }
            }
        }

        impl TryFrom<pb::$ty> for t::$ty {
            type Error = ConversionError;
            fn try_from(o: pb::$ty) -> Result<Self> {
                Ok(t::$ty {
                    id: o.id,
                    meta: meta_from_pb(o.meta),
                    spec: o
                        .spec
                        .ok_or_else(|| ConversionError::missing("spec"))?
                        .into(),
                })
            }
        }
    };
}

data_object_conversions!(Secret, SecretSpec);
data_object_conversions!(Config, ConfigSpec);

impl From<t::Plugin> for pb::Plugin {
    /// Copies the component's bytes when the plugin carries them; see
    /// [`t::Plugin::without_component`] for listings.
    fn from(p: t::Plugin) -> Self {
        pb::Plugin {
            id: p.id,
            meta: Some(meta_to_pb(p.meta)),
            spec: Some(p.spec.into()),
            digest: p.digest,
            size_bytes: p.size_bytes,
            component: p.component.to_vec(),
            imports: p.imports,
            runtimes: p.runtimes,
            schemes: p.schemes,
            status: Some(pb::PluginStatus {
                quarantined: p.status.quarantined,
                failures: p.status.failures,
                message: p.status.message,
                updated_at: Some(timestamp_to_pb(p.status.updated_at)),
            }),
        }
    }
}

impl TryFrom<pb::Plugin> for t::Plugin {
    type Error = ConversionError;
    fn try_from(p: pb::Plugin) -> Result<Self> {
        let status = p.status.unwrap_or_default();
        Ok(t::Plugin {
            id: p.id,
            meta: meta_from_pb(p.meta),
            spec: p
                .spec
                .ok_or_else(|| ConversionError::missing("spec"))?
                .try_into()?,
            digest: p.digest,
            size_bytes: p.size_bytes,
            component: t::ComponentBytes::from(p.component),
            imports: p.imports,
            runtimes: p.runtimes,
            schemes: p.schemes,
            status: t::PluginStatus {
                quarantined: status.quarantined,
                failures: status.failures,
                message: status.message,
                updated_at: timestamp_from_pb(status.updated_at),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> t::Task {
        t::Task {
            id: "t1".into(),
            meta: t::Meta {
                version: 7,
                created_at: t::Timestamp::from_unix_nanos(1_500_000_123),
                updated_at: t::Timestamp::now(),
            },
            annotations: t::Annotations {
                name: "web.1".into(),
                labels: [("a".to_string(), "b".to_string())].into(),
            },
            service_id: "s1".into(),
            slot: 1,
            node_id: "n1".into(),
            spec: t::TaskSpec {
                runtime: t::Runtime::Process(t::ProcessSpec {
                    command: "sleep".into(),
                    args: vec!["10".into()],
                    env: vec!["A=1".into()],
                    dir: Some("/tmp".into()),
                }),
                resources: t::ResourceRequirements {
                    limits: t::Resources {
                        nano_cpus: 2,
                        memory_bytes: 3,
                    },
                    reservations: t::Resources {
                        nano_cpus: 1,
                        memory_bytes: 2,
                    },
                },
                restart: t::RestartPolicy {
                    condition: t::RestartCondition::OnFailure,
                    delay: Duration::from_millis(1500),
                    max_attempts: 3,
                    window: Duration::from_secs(60),
                },
                placement: t::Placement {
                    constraints: vec!["node.role==manager".into()],
                    platforms: vec![t::Platform {
                        os: "linux".into(),
                        arch: "x86_64".into(),
                    }],
                    max_replicas: 2,
                },
                force_update: 4,
                secrets: vec![t::FileRef {
                    id: "s1".into(),
                    name: "db-password".into(),
                    target: "db.pass".into(),
                }],
                configs: vec![t::FileRef::named("nginx-conf", "")],
            },
            spec_version: 2,
            executor: String::new(),
            desired_state: t::TaskState::Running,
            status: t::TaskStatus {
                state: t::TaskState::Failed,
                timestamp: t::Timestamp::now(),
                message: "exited".into(),
                err: "code 3".into(),
                exit: Some(t::ExitInfo {
                    code: 3,
                    signal: None,
                }),
            },
        }
    }

    #[test]
    fn task_round_trips() {
        let original = task();
        let back: t::Task = pb::Task::from(original.clone())
            .try_into()
            .expect("convert back");
        assert_eq!(back, original);
    }

    #[test]
    fn container_tasks_round_trip_and_bad_mount_kinds_are_named() {
        let mut original = task();
        original.spec.runtime = t::Runtime::Container(t::ContainerSpec {
            image: "swarm-test/busybox:latest".into(),
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            args: vec!["sleep 600".into()],
            env: vec!["A=1".into()],
            labels: [("tier".to_string(), "web".to_string())].into(),
            mounts: vec![
                t::Mount {
                    kind: t::MountKind::Volume,
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: true,
                },
                t::Mount {
                    kind: t::MountKind::Tmpfs,
                    source: String::new(),
                    target: "/scratch".into(),
                    read_only: false,
                },
            ],
            workdir: Some("/data".into()),
            user: Some("1000".into()),
            hostname: Some("web".into()),
        });
        let mut wire = pb::Task::from(original.clone());
        let back: t::Task = wire.clone().try_into().expect("convert back");
        assert_eq!(back, original);
        let Some(pb::task_spec::Runtime::Container(c)) =
            wire.spec.as_mut().and_then(|spec| spec.runtime.as_mut())
        else {
            panic!("expected a container runtime on the wire");
        };
        c.mounts[1].kind = 9;
        let err = t::Task::try_from(wire).expect_err("bad mount kind");
        assert_eq!(
            err.to_string(),
            "spec.task.runtime.container.mounts[1].kind: unknown value 9"
        );
    }

    #[test]
    fn cluster_and_node_round_trip() {
        let token = |fill: u8| t::JoinToken::new([7; 32], [fill; 16]).to_string();
        let mut cluster = t::Cluster {
            id: "c".into(),
            meta: Default::default(),
            spec: t::ClusterSpec::with_defaults(),
            root_ca: t::RootCaState {
                cert_pem: "-----BEGIN CERTIFICATE-----".into(),
                key_pem: "-----BEGIN PRIVATE KEY-----".into(),
                worker_token: token(1),
                manager_token: token(2),
                unlock_key: "SWMKEY-1-secret".into(),
            },
        };
        cluster.spec.autolock = true;
        let wire = pb::Cluster::from(cluster.clone());
        assert_eq!(
            wire.root_ca.as_ref().map(|ca| ca.digest.as_str()),
            Some("07".repeat(32).as_str()),
            "the API shows the digest the tokens pin"
        );
        let back: t::Cluster = wire.try_into().expect("cluster");
        assert!(
            back.root_ca.key_pem.is_empty() && back.root_ca.unlock_key.is_empty(),
            "the CA key and the unlock key never leave the store"
        );
        assert!(back.spec.autolock);
        cluster.root_ca.key_pem.clear();
        cluster.root_ca.unlock_key.clear();
        assert_eq!(back, cluster);
        let node = t::Node {
            id: "n".into(),
            spec: t::NodeSpec {
                availability: t::Availability::Drain,
                ..Default::default()
            },
            role: t::NodeRole::Manager,
            description: Some(t::NodeDescription {
                hostname: "h".into(),
                runtimes: vec!["process".into()],
                ..Default::default()
            }),
            status: t::NodeStatus {
                state: t::NodeState::Ready,
                ..Default::default()
            },
            manager_status: Some(t::ManagerStatus {
                raft_id: 1,
                addr: "a".into(),
                leader: true,
                reachability: t::Reachability::Reachable,
            }),
            ..Default::default()
        };
        let back: t::Node = pb::Node::from(node.clone()).try_into().expect("node");
        assert_eq!(back, node);
    }

    #[test]
    fn plugin_references_round_trip() {
        let mut cluster = t::ClusterSpec::with_defaults();
        cluster.scheduler = "binpack".into();
        let back: t::ClusterSpec = pb::ClusterSpec::from(cluster.clone())
            .try_into()
            .expect("cluster spec");
        assert_eq!(back.scheduler, "binpack");
        let node = t::NodeSpec {
            executor: "runner".into(),
            ..Default::default()
        };
        let back: t::NodeSpec = pb::NodeSpec::from(node).try_into().expect("node spec");
        assert_eq!(back.executor, "runner");
        let service = t::ServiceSpec {
            annotations: Default::default(),
            task: task().spec,
            mode: t::ServiceMode::Global,
            executor: "runner".into(),
        };
        let back: t::ServiceSpec = pb::ServiceSpec::from(service)
            .try_into()
            .expect("service spec");
        assert_eq!(back.executor, "runner");
    }

    #[test]
    fn plugins_round_trip_and_bad_kinds_are_named() {
        let plugin = t::Plugin {
            id: "p1".into(),
            meta: t::Meta {
                version: 7,
                created_at: t::Timestamp::from_unix_nanos(1_500_000_000),
                updated_at: t::Timestamp::from_unix_nanos(2_500_000_000),
            },
            spec: t::PluginSpec {
                annotations: t::Annotations {
                    name: "runner".into(),
                    labels: [("team".to_string(), "infra".to_string())].into(),
                },
                kind: t::PluginKind::Discovery,
                capabilities: vec!["http".into()],
            },
            digest: format!("sha256:{}", "0f".repeat(32)),
            size_bytes: 3,
            component: t::ComponentBytes::from(vec![1, 2, 3]),
            imports: vec!["http".into()],
            runtimes: Vec::new(),
            schemes: vec!["nodes".into()],
            status: t::PluginStatus {
                quarantined: true,
                failures: 4,
                message: "trapped 4 times".into(),
                updated_at: t::Timestamp::from_unix_nanos(3_000_000_000),
            },
        };
        let mut wire = pb::Plugin::from(plugin.clone());
        assert_eq!(wire.component, vec![1, 2, 3]);
        let back: t::Plugin = wire.clone().try_into().expect("plugin");
        assert_eq!(back, plugin);
        wire.spec.as_mut().expect("spec").kind = 7;
        assert_eq!(
            t::Plugin::try_from(wire).expect_err("bad kind").to_string(),
            "spec.kind: unknown value 7"
        );
    }

    #[test]
    fn secrets_and_configs_round_trip_with_their_size() {
        let secret = t::Secret {
            id: "s1".into(),
            meta: t::Meta::default(),
            spec: t::DataSpec {
                annotations: t::Annotations {
                    name: "db-password".into(),
                    labels: [("env".to_string(), "prod".to_string())].into(),
                },
                data: t::Blob::from(b"hunter2".to_vec()),
            },
        };
        let wire: pb::Secret = secret.clone().into();
        assert_eq!(wire.data_size, 7);
        assert_eq!(t::Secret::try_from(wire).expect("converts"), secret);
        let config = t::Config {
            id: "c1".into(),
            meta: t::Meta::default(),
            spec: secret.spec.clone(),
        };
        let wire: pb::Config = config.clone().into();
        assert_eq!(t::Config::try_from(wire).expect("converts"), config);
        let err = t::Secret::try_from(pb::Secret::default()).expect_err("no spec");
        assert!(err.to_string().contains("spec"), "{err}");
    }

    #[test]
    fn missing_and_bad_fields_are_named() {
        let mut spec = pb::ServiceSpec::from(t::ServiceSpec {
            annotations: Default::default(),
            task: task().spec,
            mode: t::ServiceMode::Global,
            executor: String::new(),
        });
        spec.task.as_mut().expect("task").runtime = None;
        let err = t::ServiceSpec::try_from(spec.clone()).expect_err("no runtime");
        assert_eq!(err.field, "spec.task.runtime");
        spec.task = None;
        assert_eq!(
            t::ServiceSpec::try_from(spec)
                .expect_err("no task")
                .to_string(),
            "spec.task: is required"
        );
        let mut status = pb::TaskStatus::from(task().status);
        status.state = 5;
        assert_eq!(
            t::TaskStatus::try_from(status)
                .expect_err("bad state")
                .to_string(),
            "status.state: unknown value 5"
        );
        let neg = duration_from_pb(
            "spec.task.restart.delay",
            Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
        );
        assert_eq!(neg.expect_err("negative").field, "spec.task.restart.delay");
    }
}
