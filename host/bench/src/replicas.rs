//! The replicas workload: on a fresh one-node `swarmd`, create a replicated service of `sleep 600`
//! processes and time until the control API shows every replica RUNNING; then remove the service
//! and time until the processes have exited and the tasks are gone from the store.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use swarm_proto::pb;
use swarm_proto::pb::control_client::ControlClient;
use swarm_types::{
    Annotations, ProcessSpec, RestartPolicy, Runtime, ServiceMode, ServiceSpec, TaskSpec,
};
use tonic::transport::Channel;

use crate::report::{Output, Row};
use crate::swarmd::{self, Swarmd};
use crate::sys;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const RUNNING_TIMEOUT: Duration = Duration::from_secs(300);
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);

/// `swarm-bench replicas`.
#[derive(Debug, clap::Args)]
pub struct ReplicasArgs {
    /// The swarmd binary [default: the swarmd next to this binary].
    #[arg(long)]
    swarmd: Option<PathBuf>,
    /// Replicas of the service.
    #[arg(long, default_value_t = 100)]
    replicas: u64,
    /// The tasks' command, run as `COMMAND 600`. A bare name is looked up in PATH by swarmd;
    /// `/bin/sleep` names the file directly.
    #[arg(long, default_value = "sleep")]
    command: String,
}

pub(crate) fn spec(replicas: u64, command: &str) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations {
            name: "bench-sleep".to_owned(),
            labels: Default::default(),
        },
        task: TaskSpec {
            runtime: Runtime::Process(ProcessSpec {
                command: command.to_owned(),
                args: vec!["600".to_owned()],
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

async fn service_tasks(
    client: &mut ControlClient<Channel>,
    service_id: &str,
) -> anyhow::Result<Vec<pb::Task>> {
    let request = pb::ListTasksRequest {
        filters: Some(pb::list_tasks_request::Filters {
            service_ids: vec![service_id.to_owned()],
            ..Default::default()
        }),
    };
    Ok(client
        .list_tasks(request)
        .await
        .context("listing tasks")?
        .into_inner()
        .tasks)
}

/// Whether the scheduler has placed the task (ASSIGNED or any later state).
fn is_assigned(task: &pb::Task) -> bool {
    let assigned = pb::TaskState::Assigned as i32;
    !task.node_id.is_empty() && task.status.as_ref().is_some_and(|s| s.state >= assigned)
}

fn is_running(task: &pb::Task) -> bool {
    let running = pb::TaskState::Running as i32;
    task.desired_state == running && task.status.as_ref().is_some_and(|s| s.state == running)
}

pub async fn run(args: ReplicasArgs, output: &mut Output) -> anyhow::Result<()> {
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let binary = swarmd::binary(args.swarmd)?;
    let started = Instant::now();
    let mut daemon = Swarmd::spawn(&binary)?;
    let mut client = daemon.wait_ready(READY_TIMEOUT).await?;
    let ready_after = started.elapsed();
    eprintln!(
        "replicas: swarmd ready after {ready_after:?}; creating {} replicas",
        args.replicas
    );

    let created = Instant::now();
    let service = client
        .create_service(pb::CreateServiceRequest {
            spec: Some(spec(args.replicas, &args.command).into()),
        })
        .await
        .context("creating the service")?
        .into_inner()
        .service
        .context("CreateService returned no service")?;
    let mut running;
    let mut all_assigned = None;
    let mut first_running = None;
    loop {
        let tasks = service_tasks(&mut client, &service.id).await?;
        running = tasks.iter().filter(|t| is_running(t)).count() as u64;
        let assigned = tasks.iter().filter(|t| is_assigned(t)).count() as u64;
        if all_assigned.is_none() && assigned >= args.replicas {
            all_assigned = Some(created.elapsed());
        }
        if first_running.is_none() && running > 0 {
            first_running = Some(created.elapsed());
        }
        if running >= args.replicas {
            break;
        }
        if created.elapsed() > RUNNING_TIMEOUT {
            bail!(
                "{running} of {} replicas RUNNING after {RUNNING_TIMEOUT:?}",
                args.replicas
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let to_running = created.elapsed();
    let processes: BTreeSet<(u32, u64)> = daemon.record_task_processes();
    eprintln!(
        "replicas: {running} RUNNING after {to_running:?} ({} task processes)",
        processes.len()
    );

    let removing = Instant::now();
    client
        .remove_service(pb::RemoveServiceRequest {
            service_id: service.id.clone(),
        })
        .await
        .context("removing the service")?;
    let mut processes_gone = None;
    let mut tasks_gone = None;
    while processes_gone.is_none() || tasks_gone.is_none() {
        if processes_gone.is_none()
            && processes
                .iter()
                .all(|&(pid, start)| !sys::is_alive(pid, start))
        {
            processes_gone = Some(removing.elapsed());
        }
        if tasks_gone.is_none() && service_tasks(&mut client, &service.id).await?.is_empty() {
            tasks_gone = Some(removing.elapsed());
        }
        if removing.elapsed() > REMOVAL_TIMEOUT {
            let alive = processes
                .iter()
                .filter(|&&(pid, start)| sys::is_alive(pid, start))
                .count();
            eprintln!(
                "replicas: after {REMOVAL_TIMEOUT:?}: {alive} task processes alive, tasks in the store: {}",
                if tasks_gone.is_some() { "none" } else { "some" }
            );
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    drop(client);
    daemon.stop().await?;

    output.push(
        Row::new()
            .int("replicas", args.replicas)
            .text("command", format!("{} 600", args.command))
            .seconds("seconds", to_running)
            .float(
                "tasks_per_second",
                args.replicas as f64 / to_running.as_secs_f64(),
                1,
            )
            .opt_seconds(
                "all_assigned_seconds",
                all_assigned.map(|d| d.as_secs_f64()),
            )
            .opt_seconds(
                "first_running_seconds",
                first_running.map(|d| d.as_secs_f64()),
            )
            .int("task_processes", processes.len() as u64)
            .opt_seconds(
                "processes_exited_seconds",
                processes_gone.map(|d| d.as_secs_f64()),
            )
            .opt_seconds("tasks_removed_seconds", tasks_gone.map(|d| d.as_secs_f64()))
            .seconds("swarmd_ready_seconds", ready_after),
    )
}
