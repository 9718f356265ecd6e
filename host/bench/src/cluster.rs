//! Cluster workloads over several real `swarmd` processes on loopback (mutual TLS, 100 ms
//! ticks): leader failover (kill -9 of the leader until the first write the new leader
//! acknowledges) and a worker's join (start until the managers list it READY).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use swarm_proto::pb;
use swarm_proto::pb::control_client::ControlClient;
use tonic::transport::Channel;

use crate::report::{Output, Row};
use crate::swarmd::{self, POLL, Swarmd};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one write attempt may take before the next is sent.
const WRITE_ATTEMPT: Duration = Duration::from_millis(500);

/// `swarm-bench cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// The swarmd binary [default: the swarmd next to this binary].
    #[arg(long)]
    swarmd: Option<PathBuf>,
    /// Failovers (and joins) to measure, each on a fresh cluster.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Managers per cluster.
    #[arg(long, default_value_t = 3)]
    managers: usize,
    /// swarmd's --election-tick (ticks of 100 ms).
    #[arg(long, default_value_t = 10)]
    election_tick: u64,
    /// Also measure a second manager joining (start to READY: learner, snapshot, caught up,
    /// voter, session) a manager whose store holds this many tasks (0: skip).
    #[arg(long, default_value_t = 0)]
    store_tasks: u64,
}

/// How long filling the store may take.
const FILL_TIMEOUT: Duration = Duration::from_secs(600);

/// A manager whose store holds `tasks` pending tasks (a service no node can run), then a second
/// manager joining it: the time from its start to READY.
async fn catch_up(binary: &Path, args: &ClusterArgs) -> anyhow::Result<(Duration, Duration)> {
    let mut cluster = start_managers(binary, 1, args.election_tick).await?;
    let mut spec = crate::replicas::spec(args.store_tasks, "sleep");
    spec.annotations.name = "fill".into();
    spec.task.placement.constraints = vec!["node.labels.bench==nowhere".into()];
    let filled = Instant::now();
    cluster
        .control
        .create_service(pb::CreateServiceRequest {
            spec: Some(spec.into()),
        })
        .await
        .context("creating the service that fills the store")?;
    loop {
        let statuses = cluster
            .control
            .list_service_statuses(pb::ListServiceStatusesRequest::default())
            .await
            .context("service statuses")?
            .into_inner()
            .statuses;
        if statuses.iter().map(|s| s.pending_tasks).sum::<u64>() >= args.store_tasks {
            break;
        }
        if filled.elapsed() > FILL_TIMEOUT {
            bail!(
                "the store did not reach {} tasks within {FILL_TIMEOUT:?}",
                args.store_tasks
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fill_time = filled.elapsed();
    let manager_token = token(&mut cluster.control, "manager").await?;
    let joined = Instant::now();
    let member = spawn(
        binary,
        "manager-2",
        args.election_tick,
        Some((&cluster.first_addr, &manager_token)),
    )?;
    let deadline = Instant::now() + FILL_TIMEOUT;
    loop {
        if nodes(&mut cluster.control)
            .await
            .iter()
            .any(|n| hostname_of(n) == "manager-2" && ready(n))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the new manager was not READY within {FILL_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    let join_time = joined.elapsed();
    cluster.members.push(member);
    cluster.stop().await;
    Ok((fill_time, join_time))
}

/// A free loopback port (bound, read, released).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Member {
    daemon: Swarmd,
    hostname: String,
    addr: String,
}

fn spawn(
    binary: &Path,
    hostname: &str,
    election_tick: u64,
    join: Option<(&str, &str)>,
) -> anyhow::Result<Member> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let tick = election_tick.to_string();
    let mut args = vec![
        "--listen-remote-api",
        &addr,
        "--hostname",
        hostname,
        "--election-tick",
        &tick,
    ];
    if let Some((join_addr, token)) = join {
        args.extend(["--join-addr", join_addr, "--join-token", token]);
    }
    let daemon = Swarmd::spawn_with_args(binary, None, &args)?;
    Ok(Member {
        daemon,
        hostname: hostname.to_string(),
        addr,
    })
}

async fn nodes(client: &mut ControlClient<Channel>) -> Vec<pb::Node> {
    client
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .map(|r| r.into_inner().nodes)
        .unwrap_or_default()
}

fn hostname_of(node: &pb::Node) -> &str {
    node.description
        .as_ref()
        .map_or("", |d| d.hostname.as_str())
}

fn ready(node: &pb::Node) -> bool {
    node.status
        .as_ref()
        .is_some_and(|s| s.state == pb::NodeState::Ready as i32)
}

/// Polls until `hostname` is READY as the managers see it.
async fn wait_listed_ready(
    client: &mut ControlClient<Channel>,
    hostname: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if nodes(client)
            .await
            .iter()
            .any(|n| hostname_of(n) == hostname && ready(n))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{hostname} was not READY within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn token(client: &mut ControlClient<Channel>, role: &str) -> anyhow::Result<String> {
    let cluster = client
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .context("listing clusters")?
        .into_inner()
        .clusters
        .into_iter()
        .next()
        .context("no cluster object")?;
    let tokens = cluster
        .root_ca
        .and_then(|ca| ca.join_tokens)
        .context("the cluster has no join tokens")?;
    Ok(if role == "manager" {
        tokens.manager
    } else {
        tokens.worker
    })
}

/// A write: a service with no replicas named `name`.
fn write_request(name: &str) -> pb::CreateServiceRequest {
    let mut spec = crate::replicas::spec(0, "sleep");
    spec.annotations.name = name.to_string();
    pb::CreateServiceRequest {
        spec: Some(spec.into()),
    }
}

/// A cluster of managers started for a measurement.
pub(crate) struct ManagerCluster {
    members: Vec<Member>,
    control: ControlClient<Channel>,
    first_addr: String,
}

/// Starts `managers` managers (the first creates the cluster, the others join with the manager
/// token) and waits until all are READY.
pub(crate) async fn start_managers(
    binary: &Path,
    managers: usize,
    election_tick: u64,
) -> anyhow::Result<ManagerCluster> {
    let mut first = spawn(binary, "manager-1", election_tick, None)?;
    let mut control = first.daemon.wait_ready(READY_TIMEOUT).await?;
    let first_addr = first.addr.clone();
    let manager_token = token(&mut control, "manager").await?;
    let mut members = vec![first];
    for i in 2..=managers {
        let hostname = format!("manager-{i}");
        let member = spawn(
            binary,
            &hostname,
            election_tick,
            Some((&first_addr, &manager_token)),
        )?;
        wait_listed_ready(&mut control, &hostname).await?;
        members.push(member);
    }
    Ok(ManagerCluster {
        members,
        control,
        first_addr,
    })
}

impl ManagerCluster {
    /// The index of the manager the cluster lists as leader.
    async fn leader(&mut self) -> anyhow::Result<usize> {
        let name = nodes(&mut self.control)
            .await
            .into_iter()
            .find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
            .map(|n| hostname_of(&n).to_string())
            .context("no leader listed")?;
        self.members
            .iter()
            .position(|m| m.hostname == name)
            .context("the leader is not one of ours")
    }

    /// The leader's control socket.
    pub(crate) async fn leader_socket(&mut self) -> anyhow::Result<PathBuf> {
        let leader = self.leader().await?;
        Ok(self.members[leader].daemon.socket())
    }

    pub(crate) async fn stop(self) {
        for member in self.members {
            let _ = member.daemon.stop().await;
        }
    }
}

/// One fresh cluster: the failover time and the worker's join time.
async fn one_run(
    binary: &Path,
    args: &ClusterArgs,
    run: usize,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let mut cluster = start_managers(binary, args.managers, args.election_tick).await?;
    // The worker's join: from spawning swarmd to READY in the managers' list.
    let worker_token = token(&mut cluster.control, "worker").await?;
    let joined = Instant::now();
    let worker = spawn(
        binary,
        "worker-1",
        args.election_tick,
        Some((&cluster.first_addr, &worker_token)),
    )?;
    wait_listed_ready(&mut cluster.control, "worker-1").await?;
    let join_time = joined.elapsed();

    let leader = cluster.leader().await?;
    let leader_name = cluster.members[leader].hostname.clone();
    let ManagerCluster {
        mut members,
        control,
        ..
    } = cluster;
    let mut survivors: Vec<ControlClient<Channel>> = Vec::new();
    for (i, member) in members.iter().enumerate() {
        if i != leader {
            survivors.push(swarmd::connect(&member.daemon.socket()).await?);
        }
    }
    drop(control);

    // Kill the leader; write through the survivors until one write is acknowledged.
    members[leader].daemon.kill9();
    let killed = Instant::now();
    let mut attempt = 0usize;
    let mut elected = None;
    let failover = loop {
        let count = survivors.len();
        let client = &mut survivors[attempt % count];
        attempt += 1;
        let name = format!("failover-{run}-{attempt}");
        let write =
            tokio::time::timeout(WRITE_ATTEMPT, client.create_service(write_request(&name))).await;
        if matches!(write, Ok(Ok(_))) {
            break killed.elapsed();
        }
        if elected.is_none()
            && nodes(client).await.iter().any(|n| {
                n.manager_status.as_ref().is_some_and(|m| m.leader) && hostname_of(n) != leader_name
            })
        {
            elected = Some(killed.elapsed());
        }
        if killed.elapsed() > READY_TIMEOUT {
            bail!("no write acknowledged within {READY_TIMEOUT:?} of killing the leader");
        }
        tokio::time::sleep(POLL).await;
    };
    let elected = elected.unwrap_or(failover);
    drop(worker);
    for member in members {
        let _ = member.daemon.stop().await;
    }
    Ok((failover, elected, join_time))
}

pub async fn run(args: ClusterArgs, output: &mut Output) -> anyhow::Result<()> {
    if args.runs == 0 || args.managers < 3 {
        bail!("--runs must be at least 1 and --managers at least 3 (to survive losing one)");
    }
    let binary = swarmd::binary(args.swarmd.clone())?;
    let mut failovers = Vec::new();
    let mut elections = Vec::new();
    let mut joins = Vec::new();
    for run in 1..=args.runs {
        let (failover, elected, join) = one_run(&binary, &args, run).await?;
        eprintln!(
            "cluster: run {run}: worker joined in {join:?}; new leader listed after {elected:?}; first write acknowledged after {failover:?}"
        );
        failovers.push(failover);
        elections.push(elected);
        joins.push(join);
    }
    if args.store_tasks > 0 {
        let (fill, join) = catch_up(&binary, &args).await?;
        eprintln!(
            "cluster: {} tasks stored in {fill:?}; a new manager caught up and was READY after {join:?}",
            args.store_tasks
        );
        output.push(
            Row::new()
                .text(
                    "measure",
                    format!("manager join on a store of {} tasks", args.store_tasks),
                )
                .int("managers", 2)
                .int("election_tick", args.election_tick)
                .int("runs", 1)
                .seconds("min_seconds", join)
                .seconds("median_seconds", join)
                .seconds("max_seconds", join),
        )?;
    }
    for (what, times) in [
        ("leader kill -9 to first acknowledged write", &failovers),
        ("leader kill -9 to new leader listed", &elections),
        ("worker join: start to READY", &joins),
    ] {
        let Some((median, max)) = swarmd::median_and_max(times) else {
            bail!("no run measured");
        };
        let min = times.iter().min().copied().unwrap_or_default();
        output.push(
            Row::new()
                .text("measure", what)
                .int("managers", args.managers as u64)
                .int("election_tick", args.election_tick)
                .int("runs", times.len() as u64)
                .seconds("min_seconds", min)
                .seconds("median_seconds", median)
                .seconds("max_seconds", max),
        )?;
    }
    Ok(())
}
