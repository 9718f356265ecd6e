//! The docker-replicas workload: on a fresh one-node `swarmd` whose container engine answers
//! (docker is then its default executor), create a replicated container service and time until
//! every replica is RUNNING; then start the same number of the same containers with `docker run
//! -d` in a shell loop on the same engine. The ratio of the two times is the figure.
//!
//! Every container carries the label `swarm-bench.run=<run id>` and is removed on every exit
//! path (the guard's drop), including SIGINT and SIGTERM.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use swarm_proto::pb;
use swarm_types::{
    Annotations, ContainerSpec, RestartPolicy, Runtime, ServiceMode, ServiceSpec, TaskSpec,
};

use crate::report::{Output, Row};
use crate::swarmd::{self, Swarmd};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const RUNNING_TIMEOUT: Duration = Duration::from_secs(300);
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);
const RUN_LABEL: &str = "swarm-bench.run";

/// `swarm-bench docker-replicas`.
#[derive(Debug, clap::Args)]
pub struct DockerReplicasArgs {
    /// The swarmd binary [default: the swarmd next to this binary].
    #[arg(long)]
    swarmd: Option<PathBuf>,
    /// Containers to start each way.
    #[arg(long, default_value_t = 50)]
    replicas: u64,
    /// The image, present on the engine (`scripts/docker-test-image.sh` builds the default).
    #[arg(long, default_value = "swarm-test/busybox:latest")]
    image: String,
}

/// Removes the run's containers when dropped.
struct Containers {
    label: String,
}

impl Containers {
    fn ids(&self) -> anyhow::Result<Vec<String>> {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label={}", self.label)])
            .output()
            .context("running `docker ps`")?;
        if !out.status.success() {
            bail!(
                "docker ps failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    fn remove_all(&self) {
        if let Ok(ids) = self.ids()
            && !ids.is_empty()
        {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.remove_all();
    }
}

fn spec(replicas: u64, image: &str, label: (&str, &str)) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations {
            name: "bench-containers".to_owned(),
            labels: Default::default(),
        },
        task: TaskSpec {
            runtime: Runtime::Container(ContainerSpec {
                image: image.to_owned(),
                args: vec!["sleep".to_owned(), "600".to_owned()],
                labels: [(label.0.to_owned(), label.1.to_owned())].into(),
                ..Default::default()
            }),
            resources: Default::default(),
            restart: RestartPolicy {
                delay: Duration::ZERO,
                ..Default::default()
            },
            placement: Default::default(),
            force_update: 0,
            secrets: vec![],
            configs: vec![],
        },
        executor: String::new(),
        mode: ServiceMode::Replicated { replicas },
    }
}

fn is_running(task: &pb::Task) -> bool {
    let running = pb::TaskState::Running as i32;
    task.desired_state == running && task.status.as_ref().is_some_and(|s| s.state == running)
}

pub async fn run(args: DockerReplicasArgs, output: &mut Output) -> anyhow::Result<()> {
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let image = Command::new("docker")
        .args(["image", "inspect", &args.image])
        .output()
        .context("running the docker client (is docker installed?)")?;
    if !image.status.success() {
        bail!(
            "image {} is not on the engine: run scripts/docker-test-image.sh ({})",
            args.image,
            String::from_utf8_lossy(&image.stderr).trim()
        );
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let run_id = format!("{}-{nanos:x}", std::process::id());
    let containers = Containers {
        label: format!("{RUN_LABEL}={run_id}"),
    };

    // swarm: one service of N replicas, until all RUNNING.
    let binary = swarmd::binary(args.swarmd)?;
    let mut daemon = Swarmd::spawn(&binary)?;
    let mut client = daemon.wait_ready(READY_TIMEOUT).await?;
    let created = Instant::now();
    let service = client
        .create_service(pb::CreateServiceRequest {
            spec: Some(spec(args.replicas, &args.image, (RUN_LABEL, &run_id)).into()),
        })
        .await
        .context("creating the service (is docker the node's default executor?)")?
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
        let running = tasks.iter().filter(|t| is_running(t)).count() as u64;
        if running >= args.replicas {
            break;
        }
        if let Some(err) = tasks
            .iter()
            .filter_map(|t| t.status.as_ref())
            .find(|s| !s.err.is_empty())
        {
            bail!("a task failed: {}", err.err);
        }
        if created.elapsed() > RUNNING_TIMEOUT {
            bail!(
                "{running} of {} replicas RUNNING after {RUNNING_TIMEOUT:?}",
                args.replicas
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let swarm_time = created.elapsed();
    let started = containers.ids()?.len() as u64;
    eprintln!(
        "docker-replicas: {} replicas RUNNING through swarm after {swarm_time:?} ({started} containers)",
        args.replicas
    );
    client
        .remove_service(pb::RemoveServiceRequest {
            service_id: service.id.clone(),
        })
        .await
        .context("removing the service")?;
    let removing = Instant::now();
    while !containers.ids()?.is_empty() && removing.elapsed() < REMOVAL_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    daemon.stop().await?;
    containers.remove_all();

    // docker run: the same containers, one `docker run -d` after another in a shell loop.
    let script = format!(
        "for i in $(seq 1 {n}); do docker run -d --label {label} --name swarm-bench-{run_id}-$i \
         {image} sleep 600 >/dev/null || exit 1; done",
        n = args.replicas,
        label = containers.label,
        image = args.image,
    );
    let looped = Instant::now();
    let status = Command::new("sh")
        .args(["-c", &script])
        .status()
        .context("running the docker run loop")?;
    let docker_time = looped.elapsed();
    if !status.success() {
        bail!("the docker run loop failed: {status}");
    }
    eprintln!(
        "docker-replicas: {} containers started by docker run after {docker_time:?}",
        args.replicas
    );
    containers.remove_all();

    let ratio = swarm_time.as_secs_f64() / docker_time.as_secs_f64();
    for (method, took, ratio) in [
        ("swarm service create --replicas", swarm_time, ratio),
        ("docker run -d (shell loop)", docker_time, 1.0),
    ] {
        output.push(
            Row::new()
                .text("method", method)
                .int("containers", args.replicas)
                .seconds("seconds", took)
                .float(
                    "containers_per_second",
                    args.replicas as f64 / took.as_secs_f64(),
                    1,
                )
                .float("time_vs_docker_run", ratio, 2),
        )?;
    }
    Ok(())
}
