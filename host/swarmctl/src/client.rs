//! The connection to the manager's control API over its unix socket, and typed calls that
//! return `swarm_types` objects and classify failures as [`CliError`]s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use swarm_proto::pb;
use swarm_proto::pb::control_client::ControlClient;
use swarm_types as t;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{CliError, deepest_cause, io_detail};

/// A connected control API client.
pub struct Manager {
    client: ControlClient<Channel>,
    socket: PathBuf,
    /// Autolock: answered by this manager itself, even while it is locked.
    unlock: pb::unlock_client::UnlockClient<Channel>,
}

/// The socket path from the flag, accepting a `unix://` prefix as in `swarmd --listen-control-api`.
fn socket_path(socket: &Path) -> PathBuf {
    let text = socket.to_string_lossy();
    match text.strip_prefix("unix://") {
        Some(rest) => PathBuf::from(rest),
        None => socket.to_path_buf(),
    }
}

impl Manager {
    /// Connect to the control socket; each request then has `timeout` to complete.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, CliError> {
        let path = socket_path(socket);
        // Check first so the common mistake (no socket there) gets the OS's own words.
        if let Err(e) = std::fs::metadata(&path) {
            return Err(CliError::unreachable(socket, io_detail(&e)));
        }
        // The URI is a placeholder: the connector below always opens the unix socket.
        let endpoint = Endpoint::from_static("http://localhost")
            .timeout(timeout)
            .connect_timeout(timeout);
        let connect_path = path.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let path = connect_path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        });
        tracing::debug!(socket = %path.display(), "connecting to the control API");
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| CliError::unreachable(socket, deepest_cause(&e)))?;
        Ok(Manager {
            client: ControlClient::new(channel.clone()).max_decoding_message_size(256 << 20),
            socket: socket.to_path_buf(),
            unlock: pb::unlock_client::UnlockClient::new(channel),
        })
    }

    fn status(&self, status: tonic::Status) -> CliError {
        tracing::debug!(code = ?status.code(), message = status.message(), "control API call failed");
        CliError::from_status(&self.socket, &status)
    }

    pub async fn list_nodes(&mut self) -> Result<Vec<t::Node>, CliError> {
        let response = self
            .client
            .list_nodes(pb::ListNodesRequest::default())
            .await;
        let nodes = response.map_err(|s| self.status(s))?.into_inner().nodes;
        nodes
            .into_iter()
            .map(|n| convert("node", t::Node::try_from(n)))
            .collect()
    }

    pub async fn update_node(
        &mut self,
        node: &t::Node,
        spec: t::NodeSpec,
    ) -> Result<t::Node, CliError> {
        let request = pb::UpdateNodeRequest {
            node_id: node.id.clone(),
            node_version: node.meta.version,
            spec: Some(spec.into()),
        };
        let response = self.client.update_node(request).await;
        let node = response.map_err(|s| self.status(s))?.into_inner().node;
        convert("node", t::Node::try_from(required("node", node)?))
    }

    pub async fn list_services(&mut self) -> Result<Vec<t::Service>, CliError> {
        let response = self
            .client
            .list_services(pb::ListServicesRequest::default())
            .await;
        let services = response.map_err(|s| self.status(s))?.into_inner().services;
        services
            .into_iter()
            .map(|s| convert("service", t::Service::try_from(s)))
            .collect()
    }

    pub async fn create_service(&mut self, spec: t::ServiceSpec) -> Result<t::Service, CliError> {
        let request = pb::CreateServiceRequest {
            spec: Some(spec.into()),
        };
        let response = self.client.create_service(request).await;
        let service = response.map_err(|s| self.status(s))?.into_inner().service;
        convert(
            "service",
            t::Service::try_from(required("service", service)?),
        )
    }

    /// Send `spec` as the new spec of `service`, with the version it was read at.
    pub async fn update_service(
        &mut self,
        service: &t::Service,
        spec: t::ServiceSpec,
    ) -> Result<t::Service, CliError> {
        let request = pb::UpdateServiceRequest {
            service_id: service.id.clone(),
            service_version: service.meta.version,
            spec: Some(spec.into()),
        };
        let response = self.client.update_service(request).await;
        let service = response.map_err(|s| self.status(s))?.into_inner().service;
        convert(
            "service",
            t::Service::try_from(required("service", service)?),
        )
    }

    /// The cluster's unlock key (empty when autolock is off); a new one first with `rotate`.
    pub async fn get_unlock_key(&mut self, rotate: bool) -> Result<String, CliError> {
        let request = pb::GetUnlockKeyRequest { rotate };
        let response = self.client.get_unlock_key(request).await;
        Ok(response
            .map_err(|s| self.status(s))?
            .into_inner()
            .unlock_key)
    }

    /// Unlocks a manager waiting at start.
    pub async fn unlock_node(&mut self, unlock_key: String) -> Result<(), CliError> {
        let request = pb::UnlockNodeRequest { unlock_key };
        let response = self.unlock.unlock_node(request).await;
        response.map_err(|s| self.status(s))?;
        Ok(())
    }

    pub async fn remove_node(&mut self, id: &str, force: bool) -> Result<(), CliError> {
        let request = pb::RemoveNodeRequest {
            node_id: id.to_string(),
            force,
        };
        let response = self.client.remove_node(request).await;
        response.map_err(|s| self.status(s))?;
        Ok(())
    }

    pub async fn remove_service(&mut self, id: &str) -> Result<(), CliError> {
        let request = pb::RemoveServiceRequest {
            service_id: id.to_string(),
        };
        let response = self.client.remove_service(request).await;
        response.map_err(|s| self.status(s))?;
        Ok(())
    }

    /// Running and desired task counts, by service id.
    pub async fn service_statuses(
        &mut self,
        ids: Vec<String>,
    ) -> Result<Vec<ServiceStatus>, CliError> {
        let request = pb::ListServiceStatusesRequest { service_ids: ids };
        let response = self.client.list_service_statuses(request).await;
        let statuses = response.map_err(|s| self.status(s))?.into_inner().statuses;
        Ok(statuses
            .into_iter()
            .map(|s| ServiceStatus {
                service_id: s.service_id,
                desired: s.desired_tasks,
                running: s.running_tasks,
                pending: s.pending_tasks,
            })
            .collect())
    }

    pub async fn list_tasks(
        &mut self,
        filters: pb::list_tasks_request::Filters,
    ) -> Result<Vec<t::Task>, CliError> {
        let request = pb::ListTasksRequest {
            filters: Some(filters),
        };
        let response = self.client.list_tasks(request).await;
        let tasks = response.map_err(|s| self.status(s))?.into_inner().tasks;
        tasks
            .into_iter()
            .map(|task| convert("task", t::Task::try_from(task)))
            .collect()
    }

    pub async fn remove_task(&mut self, id: &str) -> Result<(), CliError> {
        let request = pb::RemoveTaskRequest {
            task_id: id.to_string(),
        };
        let response = self.client.remove_task(request).await;
        response.map_err(|s| self.status(s))?;
        Ok(())
    }

    /// The tail of a task's stdout and stderr (`tail_bytes` 0: the manager's default).
    pub async fn task_logs(
        &mut self,
        id: &str,
        tail_bytes: u64,
    ) -> Result<(Vec<u8>, Vec<u8>), CliError> {
        let request = pb::GetTaskLogsRequest {
            task_id: id.to_string(),
            tail_bytes,
        };
        let response = self.client.get_task_logs(request).await;
        let logs = response.map_err(|s| self.status(s))?.into_inner();
        Ok((logs.stdout, logs.stderr))
    }

    pub async fn list_clusters(&mut self) -> Result<Vec<t::Cluster>, CliError> {
        let response = self
            .client
            .list_clusters(pb::ListClustersRequest::default())
            .await;
        let clusters = response.map_err(|s| self.status(s))?.into_inner().clusters;
        clusters
            .into_iter()
            .map(|c| convert("cluster", t::Cluster::try_from(c)))
            .collect()
    }

    pub async fn update_cluster(
        &mut self,
        cluster: &t::Cluster,
        spec: t::ClusterSpec,
        rotation: Option<pb::KeyRotation>,
    ) -> Result<t::Cluster, CliError> {
        let request = pb::UpdateClusterRequest {
            cluster_id: cluster.id.clone(),
            cluster_version: cluster.meta.version,
            spec: Some(spec.into()),
            rotation,
        };
        let response = self.client.update_cluster(request).await;
        let cluster = response.map_err(|s| self.status(s))?.into_inner().cluster;
        convert(
            "cluster",
            t::Cluster::try_from(required("cluster", cluster)?),
        )
    }
}

impl Manager {
    /// Install a plugin; the manager validates the component before storing it. Returns the
    /// installed plugin, without its bytes.
    pub async fn install_plugin(
        &mut self,
        spec: t::PluginSpec,
        component: Vec<u8>,
    ) -> Result<t::Plugin, CliError> {
        let request = pb::InstallPluginRequest {
            spec: Some(spec.into()),
            component,
        };
        let response = self.client.install_plugin(request).await;
        let plugin = response.map_err(|s| self.status(s))?.into_inner().plugin;
        convert("plugin", t::Plugin::try_from(required("plugin", plugin)?))
    }

    /// Every installed plugin, without the components' bytes.
    pub async fn list_plugins(&mut self) -> Result<Vec<t::Plugin>, CliError> {
        let response = self
            .client
            .list_plugins(pb::ListPluginsRequest::default())
            .await;
        let plugins = response.map_err(|s| self.status(s))?.into_inner().plugins;
        plugins
            .into_iter()
            .map(|p| convert("plugin", t::Plugin::try_from(p)))
            .collect()
    }

    pub async fn remove_plugin(&mut self, id: &str) -> Result<(), CliError> {
        let request = pb::RemovePluginRequest {
            plugin_id: id.to_string(),
        };
        let response = self.client.remove_plugin(request).await;
        response.map_err(|s| self.status(s))?;
        Ok(())
    }
}

/// A secret or config as swarmctl shows it (`--format json` prints these fields).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DataItem {
    pub id: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub size_bytes: u64,
    pub created_at: t::Timestamp,
    pub updated_at: t::Timestamp,
    /// A config's data, in `config inspect` only (base64 in JSON). A secret's never comes back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<t::Blob>,
}

impl DataItem {
    fn new(id: String, meta: t::Meta, spec: t::DataSpec, size_bytes: u64) -> Self {
        DataItem {
            id,
            name: spec.annotations.name,
            labels: spec.annotations.labels,
            size_bytes,
            created_at: meta.created_at,
            updated_at: meta.updated_at,
            data: Some(spec.data).filter(|d| !d.is_empty()),
        }
    }

    fn from_secret(s: pb::Secret) -> Result<Self, CliError> {
        let size = s.data_size;
        let s = convert("secret", t::Secret::try_from(s))?;
        Ok(DataItem::new(s.id, s.meta, s.spec, size))
    }

    fn from_config(c: pb::Config) -> Result<Self, CliError> {
        let size = c.data_size;
        let c = convert("config", t::Config::try_from(c))?;
        Ok(DataItem::new(c.id, c.meta, c.spec, size))
    }
}

impl Manager {
    /// Creates a secret or config; the answer never carries the data.
    pub async fn create_data(
        &mut self,
        kind: t::DataKind,
        spec: t::DataSpec,
    ) -> Result<DataItem, CliError> {
        let item = match kind {
            t::DataKind::Secret => {
                let request = pb::CreateSecretRequest {
                    spec: Some(spec.into()),
                };
                let response = self.client.create_secret(request).await;
                let secret = response.map_err(|s| self.status(s))?.into_inner().secret;
                DataItem::from_secret(required("secret", secret)?)?
            }
            t::DataKind::Config => {
                let request = pb::CreateConfigRequest {
                    spec: Some(spec.into()),
                };
                let response = self.client.create_config(request).await;
                let config = response.map_err(|s| self.status(s))?.into_inner().config;
                DataItem::from_config(required("config", config)?)?
            }
        };
        Ok(DataItem { data: None, ..item })
    }

    /// Every secret or config, without data.
    pub async fn list_data(&mut self, kind: t::DataKind) -> Result<Vec<DataItem>, CliError> {
        Ok(match kind {
            t::DataKind::Secret => {
                let response = self
                    .client
                    .list_secrets(pb::ListSecretsRequest::default())
                    .await;
                let found = response.map_err(|s| self.status(s))?.into_inner().secrets;
                found
                    .into_iter()
                    .map(DataItem::from_secret)
                    .collect::<Result<_, _>>()?
            }
            t::DataKind::Config => {
                let response = self
                    .client
                    .list_configs(pb::ListConfigsRequest::default())
                    .await;
                let found = response.map_err(|s| self.status(s))?.into_inner().configs;
                found
                    .into_iter()
                    .map(DataItem::from_config)
                    .collect::<Result<_, _>>()?
            }
        })
    }

    /// One secret (without data) or config (with its data), by id.
    pub async fn get_data(&mut self, kind: t::DataKind, id: &str) -> Result<DataItem, CliError> {
        Ok(match kind {
            t::DataKind::Secret => {
                let request = pb::GetSecretRequest {
                    secret_id: id.to_string(),
                };
                let response = self.client.get_secret(request).await;
                let secret = response.map_err(|s| self.status(s))?.into_inner().secret;
                DataItem::from_secret(required("secret", secret)?)?
            }
            t::DataKind::Config => {
                let request = pb::GetConfigRequest {
                    config_id: id.to_string(),
                };
                let response = self.client.get_config(request).await;
                let config = response.map_err(|s| self.status(s))?.into_inner().config;
                DataItem::from_config(required("config", config)?)?
            }
        })
    }

    pub async fn remove_data(&mut self, kind: t::DataKind, id: &str) -> Result<(), CliError> {
        let response = match kind {
            t::DataKind::Secret => self
                .client
                .remove_secret(pb::RemoveSecretRequest {
                    secret_id: id.to_string(),
                })
                .await
                .map(|_| ()),
            t::DataKind::Config => self
                .client
                .remove_config(pb::RemoveConfigRequest {
                    config_id: id.to_string(),
                })
                .await
                .map(|_| ()),
        };
        response.map_err(|s| self.status(s))
    }
}

/// Task counts of one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    pub service_id: String,
    pub desired: u64,
    pub running: u64,
    pub pending: u64,
}

fn required<T>(what: &str, value: Option<T>) -> Result<T, CliError> {
    value.ok_or_else(|| CliError::System(format!("the manager's answer has no {what}")))
}

fn convert<T>(what: &str, result: Result<T, swarm_proto::ConversionError>) -> Result<T, CliError> {
    result.map_err(|e| {
        CliError::System(format!(
            "the manager sent a {what} swarmctl cannot read: {e}"
        ))
    })
}
