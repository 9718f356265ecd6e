//! Write throughput of a real cluster against etcd's, in the same run on the same machine: N
//! swarmd managers on loopback take `CreateService` calls on the leader's control socket; then
//! an etcd cluster of N members (Debian's `etcd-server`) takes `Put`s of values as large as
//! those requests, from the same number of clients, also on the leader. Both fsync every commit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use prost::Message as _;
use swarm_proto::pb;
use tonic::transport::Channel;

use crate::raft_writes::percentile;
use crate::report::{Output, Row};
use crate::swarmd::{self, POLL};

/// The generated etcd client (`proto/etcd_kv.proto`).
mod etcd {
    tonic::include_proto!("etcdserverpb");
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `swarm-bench cluster-writes`.
#[derive(Debug, clap::Args)]
pub struct ClusterWritesArgs {
    /// The swarmd binary [default: the swarmd next to this binary].
    #[arg(long)]
    swarmd: Option<PathBuf>,
    /// The etcd binary to compare against; none: skip etcd.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Managers (and etcd members).
    #[arg(long, default_value_t = 3)]
    managers: usize,
    /// Concurrent clients per row (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// How long each row writes.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

fn row(
    system: &str,
    managers: usize,
    clients: usize,
    value_bytes: usize,
    elapsed: Duration,
    mut latencies: Vec<Duration>,
) -> Row {
    latencies.sort_unstable();
    let writes = latencies.len() as u64;
    Row::new()
        .text("system", system)
        .int("members", managers as u64)
        .int("clients", clients as u64)
        .int("value_bytes", value_bytes as u64)
        .int("writes", writes)
        .float(
            "writes_per_second",
            writes as f64 / elapsed.as_secs_f64(),
            0,
        )
        .opt_seconds("p50_seconds", percentile(&latencies, 0.50))
        .opt_seconds("p99_seconds", percentile(&latencies, 0.99))
}

/// A service with no replicas: a write that only the store sees.
fn create_request(client: usize, sequence: u64) -> pb::CreateServiceRequest {
    let mut spec = crate::replicas::spec(0, "sleep");
    spec.annotations.name = format!("w-{client}-{sequence}");
    pb::CreateServiceRequest {
        spec: Some(spec.into()),
    }
}

/// Runs `clients` loops of `write` for `duration`; returns every acknowledged write's latency.
pub(crate) async fn drive<F, Fut>(
    clients: usize,
    duration: Duration,
    write: F,
) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for client in 0..clients {
        let write = write.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                write(client, sequence).await?;
                latencies.push(sent.elapsed());
                sequence += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = workers.join_next().await {
        latencies.extend(joined.context("a client task failed")??);
    }
    Ok((started.elapsed(), latencies))
}

/// The swarmd rows: a cluster of `managers`, clients on the leader's control socket.
async fn swarmd_rows(
    binary: &Path,
    args: &ClusterWritesArgs,
    duration: Duration,
    output: &mut Output,
) -> anyhow::Result<()> {
    let mut cluster = crate::cluster::start_managers(binary, args.managers, 10).await?;
    let leader = cluster.leader_socket().await?;
    let value_bytes = create_request(0, 0).encoded_len();
    for &clients in &args.clients {
        eprintln!(
            "cluster-writes: swarmd, {} managers, {clients} clients for {duration:?}",
            args.managers
        );
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients {
            connections.push(swarmd::connect(&leader).await?);
        }
        let connections = std::sync::Arc::new(connections);
        let tag = clients;
        let (elapsed, latencies) = drive(clients, duration, move |client, sequence| {
            let mut control = connections[client].clone();
            async move {
                control
                    .create_service(create_request(tag * 1_000_000 + client, sequence))
                    .await
                    .context("CreateService")?;
                Ok(())
            }
        })
        .await?;
        output.push(row(
            "swarmd",
            args.managers,
            clients,
            value_bytes,
            elapsed,
            latencies,
        ))?;
    }
    cluster.stop().await;
    Ok(())
}

/// An etcd cluster of `members` on loopback, in a temporary directory.
struct Etcd {
    children: Vec<Child>,
    endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start(binary: &Path, members: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("a directory for etcd")?;
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for i in 0..members {
            peers.push(format!(
                "m{i}=http://127.0.0.1:{}",
                crate::cluster::free_port()?
            ));
            clients.push(format!("http://127.0.0.1:{}", crate::cluster::free_port()?));
        }
        let initial = peers.join(",");
        let mut children = Vec::new();
        for (i, (peer, client)) in peers.iter().zip(&clients).enumerate() {
            let peer_url = peer.split_once('=').map(|(_, url)| url).unwrap_or_default();
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log")))?;
            let child = Command::new(binary)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args([
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                ])
                .args([
                    "--listen-peer-urls",
                    peer_url,
                    "--initial-advertise-peer-urls",
                    peer_url,
                ])
                .args([
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                ])
                .args([
                    "--initial-cluster-token",
                    "swarm-bench",
                    "--logger",
                    "zap",
                    "--log-level",
                    "error",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            children.push(child);
        }
        Ok(Self {
            children,
            endpoints: clients,
            _dir: dir,
        })
    }

    async fn channel(&self, i: usize) -> anyhow::Result<Channel> {
        let endpoint = &self.endpoints[i % self.endpoints.len()];
        Ok(tonic::transport::Endpoint::from_shared(endpoint.clone())?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }

    /// Which member leads (by endpoint position), from the members' own status.
    async fn leader(&self) -> anyhow::Result<usize> {
        for i in 0..self.endpoints.len() {
            let mut maintenance =
                etcd::maintenance_client::MaintenanceClient::new(self.channel(i).await?);
            let status = maintenance
                .status(etcd::StatusRequest {})
                .await
                .context("etcd Status")?
                .into_inner();
            let member = status.header.map(|h| h.member_id);
            if status.leader != 0 && member == Some(status.leader) {
                return Ok(i);
            }
        }
        bail!("no etcd member says it leads")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn etcd_rows(
    args: &ClusterWritesArgs,
    value_bytes: usize,
    duration: Duration,
    output: &mut Output,
) -> anyhow::Result<()> {
    let cluster = Etcd::start(&args.etcd, args.managers)?;
    // Ready once a put through the first member commits.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(channel) = cluster.channel(0).await {
            let mut kv = etcd::kv_client::KvClient::new(channel);
            if kv
                .put(etcd::PutRequest {
                    key: b"ready".to_vec(),
                    value: Vec::new(),
                })
                .await
                .is_ok()
            {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("etcd did not take a write within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL * 20).await;
    }
    let value = vec![b'x'; value_bytes];
    for &clients in &args.clients {
        eprintln!(
            "cluster-writes: etcd, {} members, {clients} clients for {duration:?}",
            args.managers
        );
        // Every client on the leader, as for swarmd: a follower would forward each Put to it.
        let leader = cluster.leader().await?;
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients {
            connections.push(etcd::kv_client::KvClient::new(
                cluster.channel(leader).await?,
            ));
        }
        let connections = std::sync::Arc::new(connections);
        let value = value.clone();
        let (elapsed, latencies) = drive(clients, duration, move |client, sequence| {
            let mut kv = connections[client].clone();
            let request = etcd::PutRequest {
                key: format!("w-{clients}-{client}-{sequence}").into_bytes(),
                value: value.clone(),
            };
            async move {
                kv.put(request).await.context("etcd Put")?;
                Ok(())
            }
        })
        .await?;
        output.push(row(
            "etcd",
            args.managers,
            clients,
            value_bytes,
            elapsed,
            latencies,
        ))?;
    }
    Ok(())
}

pub async fn run(args: ClusterWritesArgs, output: &mut Output) -> anyhow::Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!(
            "--seconds must be a positive number of seconds, not {}",
            args.seconds
        );
    }
    if args.clients.contains(&0) || args.managers == 0 {
        bail!("--clients and --managers must be at least 1");
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let binary = swarmd::binary(args.swarmd.clone())?;
    swarmd_rows(&binary, &args, duration, output).await?;
    if args.etcd.is_file() {
        let value_bytes = create_request(0, 0).encoded_len();
        etcd_rows(&args, value_bytes, duration, output).await?;
    } else {
        eprintln!(
            "cluster-writes: no etcd at {}; install Debian's etcd-server to compare",
            args.etcd.display()
        );
    }
    Ok(())
}
