//! The scheduler-switch workload: on a fresh one-node `swarmd`, install a scheduler plugin, name
//! it as the cluster's scheduler, create a service, and time until its task is placed by it.
//! The installed component is the default scheduler with a custom section appended, so its
//! digest is new and the install really compiles it (nothing is found in a cache).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use swarm_proto::pb;
use swarm_types::{
    Annotations, ProcessSpec, RestartPolicy, Runtime, ServiceMode, ServiceSpec, TaskSpec,
};

use crate::report::{Output, Row};
use crate::swarmd::{self, Swarmd};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PLACED_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(2);

/// `swarm-bench scheduler-switch`.
#[derive(Debug, clap::Args)]
pub struct SchedulerSwitchArgs {
    /// The swarmd binary [default: the swarmd next to this binary].
    #[arg(long)]
    swarmd: Option<PathBuf>,
    /// Runs (each on a fresh swarmd).
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// The default scheduler component with a custom section naming `run`: a valid component with
/// a digest of its own.
fn fresh_component(run: u32) -> Vec<u8> {
    let mut bytes = swarm_plugin_artifacts::SCHEDULER.to_vec();
    let name = b"swarm-bench";
    let payload = format!("run {run} at {:?}", std::time::SystemTime::now());
    let content_len = 1 + name.len() + payload.len();
    bytes.push(0); // custom section id
    leb128(&mut bytes, content_len);
    leb128(&mut bytes, name.len());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn spec() -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations {
            name: "bench-switch".to_owned(),
            labels: Default::default(),
        },
        task: TaskSpec {
            runtime: Runtime::Process(ProcessSpec {
                command: "sleep".to_owned(),
                args: vec!["600".to_owned()],
                ..Default::default()
            }),
            resources: Default::default(),
            restart: RestartPolicy::default(),
            placement: Default::default(),
            force_update: 0,
            secrets: vec![],
            configs: vec![],
        },
        mode: ServiceMode::Replicated { replicas: 1 },
        executor: String::new(),
    }
}

pub async fn run(args: SchedulerSwitchArgs, output: &mut Output) -> anyhow::Result<()> {
    let binary = swarmd::binary(args.swarmd)?;
    for run in 0..args.runs {
        let mut daemon = Swarmd::spawn(&binary)?;
        let mut client = daemon.wait_ready(READY_TIMEOUT).await?;
        let component = fresh_component(run);
        let size = component.len();

        let started = Instant::now();
        client
            .install_plugin(pb::InstallPluginRequest {
                spec: Some(pb::PluginSpec {
                    annotations: Some(pb::Annotations {
                        name: "bench-scheduler".to_owned(),
                        labels: Default::default(),
                    }),
                    kind: pb::PluginKind::Scheduler as i32,
                    capabilities: Vec::new(),
                }),
                component,
            })
            .await
            .context("installing the scheduler")?;
        let installed = started.elapsed();

        let cluster = client
            .list_clusters(pb::ListClustersRequest {})
            .await
            .context("reading the cluster")?
            .into_inner()
            .clusters
            .into_iter()
            .next()
            .context("no cluster object")?;
        let mut cluster_spec = cluster.spec.context("the cluster has no spec")?;
        cluster_spec.scheduler = "bench-scheduler".to_owned();
        client
            .update_cluster(pb::UpdateClusterRequest {
                cluster_id: cluster.id.clone(),
                cluster_version: cluster.meta.map(|m| m.version).unwrap_or_default(),
                spec: Some(cluster_spec),
                rotation: None,
            })
            .await
            .context("naming the scheduler")?;
        let switched = started.elapsed();
        let service = client
            .create_service(pb::CreateServiceRequest {
                spec: Some(spec().into()),
            })
            .await
            .context("creating the service")?
            .into_inner()
            .service
            .context("CreateService returned no service")?;
        loop {
            let tasks = client
                .list_tasks(pb::ListTasksRequest {
                    filters: Some(pb::list_tasks_request::Filters {
                        service_ids: vec![service.id.clone()],
                        ..Default::default()
                    }),
                })
                .await
                .context("listing tasks")?
                .into_inner()
                .tasks;
            if tasks.iter().any(|t| !t.node_id.is_empty()) {
                break;
            }
            if started.elapsed() > PLACED_TIMEOUT {
                bail!("no task placed after {PLACED_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        let placed = started.elapsed();
        let log = daemon.log_text();
        if !log.contains("scheduler switched to an installed plugin") {
            bail!("swarmd did not log the switch to the installed scheduler");
        }
        drop(client);
        daemon.stop().await?;
        output.push(
            Row::new()
                .int("run", u64::from(run + 1))
                .int("component_bytes", size as u64)
                .seconds("install_seconds", installed)
                .seconds("named_seconds", switched)
                .seconds("first_placed_seconds", placed),
        )?;
    }
    Ok(())
}
