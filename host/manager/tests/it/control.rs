//! The control service served on a unix socket and called through the generated
//! `ControlClient`, as `swarmctl` calls it: validation, conflicts, node rules and listings.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use swarm_manager::{ControlService, Dispatcher, DispatcherConfig};
use swarm_proto::pb;
use swarm_proto::pb::control_client::ControlClient;
use swarm_store::StoreRead as _;
use swarm_types::{NodeRole, NodeState, ServiceMode, ServiceSpec, TaskState};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::support::{Harness, service_spec};

const MANAGER: &str = "manager-1";

struct Served {
    h: Harness,
    client: ControlClient<Channel>,
    _dir: tempfile::TempDir,
}

/// A harness with three READY workers and the manager's node, whose control service is served
/// on a unix socket.
async fn must_serve() -> Served {
    let mut h = Harness::new(3).await;
    h.must_add_node(MANAGER, &[]).await;
    h.must_update_node(MANAGER, |n| {
        n.role = NodeRole::Manager;
        n.spec.desired_role = NodeRole::Manager;
    })
    .await;
    let dispatcher = Arc::new(Dispatcher::new(
        h.store.clone(),
        h.committer.clone(),
        DispatcherConfig {
            manager_node_id: MANAGER.into(),
            advertise_addr: "127.0.0.1:4242".into(),
            raft_id: 1,
        },
    ));
    let control = ControlService::new(h.store.clone(), h.committer.clone(), dispatcher);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("control.sock");
    let listener = UnixListener::bind(&path).expect("bind the control socket");
    let cancel = h.cancel_token();
    h.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::control_server::ControlServer::new(control))
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(listener),
                cancel.cancelled_owned(),
            )
            .await
            .expect("control server");
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to the control socket");
    Served {
        h,
        client: ControlClient::new(channel),
        _dir: dir,
    }
}

impl Served {
    async fn shutdown(self) {
        drop(self.client);
        self.h.shutdown().await;
    }

    async fn create(&mut self, spec: ServiceSpec) -> Result<pb::Service, tonic::Status> {
        let response = self
            .client
            .create_service(pb::CreateServiceRequest {
                spec: Some(spec.into()),
            })
            .await?;
        Ok(response.into_inner().service.expect("the created service"))
    }

    async fn update(
        &mut self,
        id: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<pb::Service, tonic::Status> {
        let response = self
            .client
            .update_service(pb::UpdateServiceRequest {
                service_id: id.into(),
                service_version: version,
                spec: Some(spec.into()),
            })
            .await?;
        Ok(response.into_inner().service.expect("the updated service"))
    }
}

fn version(service: &pb::Service) -> u64 {
    service.meta.as_ref().expect("meta").version
}

#[track_caller]
fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, contains: &str) {
    let status = result.expect_err("the call fails");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(contains),
        "{:?} does not contain {contains:?}",
        status.message()
    );
}

#[tokio::test]
async fn create_service_refuses_invalid_specs_naming_the_field() {
    let mut s = must_serve().await;
    let mut empty_command = service_spec("web", 1);
    empty_command.task.runtime = swarm_types::Runtime::Process(Default::default());
    assert_status(
        s.create(empty_command).await,
        Code::InvalidArgument,
        "spec.task.runtime.process.command: must not be empty",
    );
    let mut bad_constraint = service_spec("web", 1);
    bad_constraint.task.placement.constraints = vec!["node.colour==red".into()];
    assert_status(
        s.create(bad_constraint).await,
        Code::InvalidArgument,
        "spec.task.placement.constraints[0]",
    );
    assert_status(
        s.create(service_spec("", 1)).await,
        Code::InvalidArgument,
        "spec.annotations.name",
    );
    let missing_spec = s
        .client
        .create_service(pb::CreateServiceRequest { spec: None })
        .await;
    assert_status(missing_spec, Code::InvalidArgument, "spec: is required");
    let mut no_runtime: pb::ServiceSpec = service_spec("web", 1).into();
    if let Some(task) = no_runtime.task.as_mut() {
        task.runtime = None;
    }
    let no_runtime = s
        .client
        .create_service(pb::CreateServiceRequest {
            spec: Some(no_runtime),
        })
        .await;
    assert_status(no_runtime, Code::InvalidArgument, "spec.task.runtime");
    s.h.view(|tx| assert_eq!(tx.service_count(), 0, "nothing was created"));
    s.shutdown().await;
}

#[tokio::test]
async fn create_service_refuses_a_name_in_use() {
    let mut s = must_serve().await;
    let web = s.create(service_spec("web", 1)).await.expect("create");
    assert_eq!(web.spec_version, 1);
    assert_status(
        s.create(service_spec("web", 2)).await,
        Code::AlreadyExists,
        &web.id,
    );
    // Names compare ignoring case (they become host names).
    assert_status(
        s.create(service_spec("WEB", 2)).await,
        Code::AlreadyExists,
        &web.id,
    );
    s.h.view(|tx| assert_eq!(tx.service_count(), 1));
    s.shutdown().await;
}

#[tokio::test]
async fn update_service_checks_the_version_the_name_and_the_mode() {
    let mut s = must_serve().await;
    let web = s.create(service_spec("web", 1)).await.expect("create");

    // Scaling keeps the spec version; a task change bumps it.
    let scaled = s
        .update(&web.id, version(&web), service_spec("web", 3))
        .await
        .expect("scale");
    assert_eq!(scaled.spec_version, 1);
    let mut new_args = service_spec("web", 3);
    new_args.task.force_update = 1;
    let updated = s
        .update(&web.id, version(&scaled), new_args.clone())
        .await
        .expect("update");
    assert_eq!(updated.spec_version, 2);

    // A stale version: out of sequence.
    assert_status(
        s.update(&web.id, version(&scaled), service_spec("web", 4))
            .await,
        Code::Aborted,
        "out of sequence",
    );
    assert_status(
        s.update(&web.id, version(&updated), service_spec("web2", 3))
            .await,
        Code::InvalidArgument,
        "spec.annotations.name",
    );
    let mut global = service_spec("web", 3);
    global.mode = ServiceMode::Global;
    assert_status(
        s.update(&web.id, version(&updated), global).await,
        Code::InvalidArgument,
        "spec.mode",
    );
    let mut invalid = service_spec("web", 3);
    invalid.task.resources.reservations.memory_bytes = -1;
    assert_status(
        s.update(&web.id, version(&updated), invalid).await,
        Code::InvalidArgument,
        "spec.task.resources.reservations.memory_bytes",
    );
    assert_status(
        s.update("no-such-service", 1, service_spec("web", 3)).await,
        Code::NotFound,
        "no-such-service",
    );
    let stored = s.h.must_service(&web.id);
    assert_eq!(stored.spec, new_args, "refused updates change nothing");
    s.shutdown().await;
}

#[tokio::test]
async fn node_removal_rules() {
    let mut s = must_serve().await;
    let remove = |id: &str, force: bool| pb::RemoveNodeRequest {
        node_id: id.into(),
        force,
    };
    assert_status(
        s.client.remove_node(remove(MANAGER, true)).await,
        Code::FailedPrecondition,
        "demote it",
    );
    assert_status(
        s.client.remove_node(remove("node-1", false)).await,
        Code::FailedPrecondition,
        "--force",
    );
    s.client
        .remove_node(remove("node-1", true))
        .await
        .expect("a READY worker goes with force");
    s.h.must_update_node("node-2", |n| n.status.state = NodeState::Down)
        .await;
    s.client
        .remove_node(remove("node-2", false))
        .await
        .expect("a DOWN worker goes");
    assert_status(
        s.client.remove_node(remove("node-2", false)).await,
        Code::NotFound,
        "node-2",
    );
    assert_status(
        s.client.remove_node(remove("", false)).await,
        Code::InvalidArgument,
        "node_id",
    );
    s.h.view(|tx| {
        assert!(tx.node("node-1").is_none() && tx.node("node-2").is_none());
        assert!(tx.node(MANAGER).is_some() && tx.node("node-3").is_some());
    });

    // Demoting the last manager is refused.
    let manager = s.h.must_node(MANAGER);
    let mut spec: pb::NodeSpec = manager.spec.clone().into();
    spec.desired_role = pb::NodeRole::from(NodeRole::Worker) as i32;
    let demote = s
        .client
        .update_node(pb::UpdateNodeRequest {
            node_id: MANAGER.into(),
            node_version: manager.meta.version,
            spec: Some(spec),
        })
        .await;
    assert_status(demote, Code::FailedPrecondition, "last manager");
    s.shutdown().await;
}

#[tokio::test]
async fn list_tasks_filters() {
    let mut s = must_serve().await;
    let web = s.create(service_spec("web", 3)).await.expect("create");
    let db = s.create(service_spec("db", 1)).await.expect("create");
    let web_service = s.h.must_service(&web.id);
    let db_service = s.h.must_service(&db.id);
    let w1 =
        s.h.must_add_task(&web_service, 1, "node-1", TaskState::Running)
            .await;
    let w2 =
        s.h.must_add_task(&web_service, 2, "node-2", TaskState::Running)
            .await;
    let w3 =
        s.h.must_add_task(&web_service, 3, "", TaskState::Pending)
            .await;
    s.h.must_update_task(&w3.id, |t| t.desired_state = TaskState::Shutdown)
        .await;
    let d1 =
        s.h.must_add_task(&db_service, 1, "node-1", TaskState::Assigned)
            .await;

    let mut list = async |filters: pb::list_tasks_request::Filters| -> Vec<String> {
        let mut ids: Vec<String> = s
            .client
            .list_tasks(pb::ListTasksRequest {
                filters: Some(filters),
            })
            .await
            .expect("list tasks")
            .into_inner()
            .tasks
            .into_iter()
            .map(|t| t.id)
            .collect();
        ids.sort();
        ids
    };
    let sorted = |ids: &[&str]| {
        let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        ids.sort();
        ids
    };
    use pb::list_tasks_request::Filters;
    assert_eq!(
        list(Filters::default()).await,
        sorted(&[&w1.id, &w2.id, &w3.id, &d1.id])
    );
    assert_eq!(
        list(Filters {
            service_ids: vec![web.id.clone()],
            ..Default::default()
        })
        .await,
        sorted(&[&w1.id, &w2.id, &w3.id])
    );
    assert_eq!(
        list(Filters {
            service_ids: vec![web.id.clone(), web.id.clone()],
            ..Default::default()
        })
        .await,
        sorted(&[&w1.id, &w2.id, &w3.id]),
        "a service named twice lists its tasks once"
    );
    assert_eq!(
        list(Filters {
            node_ids: vec!["node-1".into()],
            ..Default::default()
        })
        .await,
        sorted(&[&w1.id, &d1.id])
    );
    assert_eq!(
        list(Filters {
            desired_states: vec![pb::TaskState::Running as i32],
            service_ids: vec![web.id.clone()],
            ..Default::default()
        })
        .await,
        sorted(&[&w1.id, &w2.id])
    );
    assert_eq!(
        list(Filters {
            names: vec!["web.2".into()],
            ..Default::default()
        })
        .await,
        sorted(&[&w2.id])
    );
    assert_eq!(
        list(Filters {
            id_prefixes: vec![d1.id[..6].to_string()],
            ..Default::default()
        })
        .await,
        sorted(&[&d1.id])
    );
    let bad_state = s
        .client
        .list_tasks(pb::ListTasksRequest {
            filters: Some(Filters {
                desired_states: vec![12345],
                ..Default::default()
            }),
        })
        .await;
    assert_status(
        bad_state,
        Code::InvalidArgument,
        "filters.desired_states[0]",
    );
    s.shutdown().await;
}

#[tokio::test]
async fn list_service_statuses_counts_tasks() {
    let mut s = must_serve().await;
    let web = s.create(service_spec("web", 4)).await.expect("create");
    let mut global = service_spec("agent", 0);
    global.mode = ServiceMode::Global;
    let agent = s.create(global).await.expect("create");
    let web_service = s.h.must_service(&web.id);
    let agent_service = s.h.must_service(&agent.id);
    s.h.must_add_task(&web_service, 1, "node-1", TaskState::Running)
        .await;
    s.h.must_add_task(&web_service, 2, "node-2", TaskState::Running)
        .await;
    s.h.must_add_task(&web_service, 3, "", TaskState::Pending)
        .await;
    let old =
        s.h.must_add_task(&web_service, 1, "node-1", TaskState::Failed)
            .await;
    s.h.must_update_task(&old.id, |t| t.desired_state = TaskState::Shutdown)
        .await;
    s.h.must_add_task(&agent_service, 0, "node-1", TaskState::Running)
        .await;
    s.h.must_add_task(&agent_service, 0, "node-2", TaskState::Pending)
        .await;

    let statuses = s
        .client
        .list_service_statuses(pb::ListServiceStatusesRequest {
            service_ids: vec![web.id.clone(), agent.id.clone(), "gone".into()],
        })
        .await
        .expect("statuses")
        .into_inner()
        .statuses;
    let status = |id: &str| {
        statuses
            .iter()
            .find(|st| st.service_id == id)
            .map(|st| (st.desired_tasks, st.running_tasks, st.pending_tasks))
    };
    assert_eq!(statuses.len(), 2, "unknown ids are skipped");
    assert_eq!(status(&web.id), Some((4, 2, 1)));
    assert_eq!(status(&agent.id), Some((2, 1, 1)));
    let all = s
        .client
        .list_service_statuses(pb::ListServiceStatusesRequest::default())
        .await
        .expect("statuses")
        .into_inner()
        .statuses;
    assert_eq!(all.len(), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn remove_service_and_task_and_update_cluster() {
    let mut s = must_serve().await;
    let web = s.create(service_spec("web", 1)).await.expect("create");
    let web_service = s.h.must_service(&web.id);
    let task =
        s.h.must_add_task(&web_service, 1, "", TaskState::Pending)
            .await;
    s.client
        .remove_task(pb::RemoveTaskRequest {
            task_id: task.id.clone(),
        })
        .await
        .expect("remove task");
    assert!(s.h.task(&task.id).is_none());
    s.client
        .remove_service(pb::RemoveServiceRequest {
            service_id: web.id.clone(),
        })
        .await
        .expect("remove service");
    assert_status(
        s.client
            .remove_service(pb::RemoveServiceRequest {
                service_id: web.id.clone(),
            })
            .await,
        Code::NotFound,
        &web.id,
    );

    let cluster = s.h.view(|tx| (**tx.cluster().expect("cluster")).clone());
    let mut spec = cluster.spec.clone();
    spec.dispatcher.heartbeat_period = std::time::Duration::from_secs(2);
    let request = |version: u64, spec: swarm_types::ClusterSpec| pb::UpdateClusterRequest {
        cluster_id: cluster.id.clone(),
        cluster_version: version,
        spec: Some(spec.into()),
        rotation: None,
    };
    let updated = s
        .client
        .update_cluster(request(cluster.meta.version, spec.clone()))
        .await
        .expect("update cluster")
        .into_inner()
        .cluster
        .expect("cluster");
    assert!(version_of(&updated) > cluster.meta.version);
    assert_status(
        s.client
            .update_cluster(request(cluster.meta.version, spec.clone()))
            .await,
        Code::Aborted,
        "out of sequence",
    );
    let mut invalid = spec;
    invalid.dispatcher.heartbeat_period = std::time::Duration::from_millis(1);
    assert_status(
        s.client
            .update_cluster(request(version_of(&updated), invalid))
            .await,
        Code::InvalidArgument,
        "spec.dispatcher.heartbeat_period",
    );
    s.shutdown().await;
}

fn version_of(cluster: &pb::Cluster) -> u64 {
    cluster.meta.as_ref().expect("meta").version
}

fn data_spec(name: &str, data: &[u8]) -> pb::SecretSpec {
    pb::SecretSpec {
        annotations: Some(pb::Annotations {
            name: name.into(),
            ..Default::default()
        }),
        data: data.to_vec(),
    }
}

#[tokio::test]
async fn secrets_never_come_back_and_are_kept_while_services_use_them() {
    let mut s = must_serve().await;
    let created = s
        .client
        .create_secret(pb::CreateSecretRequest {
            spec: Some(data_spec("db-password", b"hunter2")),
        })
        .await
        .expect("created")
        .into_inner()
        .secret
        .expect("secret");
    assert_eq!(created.data_size, 7);
    assert!(created.spec.as_ref().expect("spec").data.is_empty());
    let id = created.id.clone();
    // Stored whole (raft carries it to the nodes), answered without the data.
    let stored = s.h.view(|tx| tx.secret(&id).cloned()).expect("stored");
    assert_eq!(stored.spec.data.as_bytes(), b"hunter2");
    let got = s
        .client
        .get_secret(pb::GetSecretRequest {
            secret_id: id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .secret
        .expect("secret");
    assert!(got.spec.expect("spec").data.is_empty());
    assert_eq!(got.data_size, 7);
    let listed = s
        .client
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .secrets;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].spec.as_ref().expect("spec").data.is_empty());

    assert_status(
        s.client
            .create_secret(pb::CreateSecretRequest {
                spec: Some(data_spec("DB-PASSWORD", b"x")),
            })
            .await,
        Code::AlreadyExists,
        "secret name \"DB-PASSWORD\" is already used",
    );
    assert_status(
        s.client
            .create_secret(pb::CreateSecretRequest {
                spec: Some(data_spec(
                    "big",
                    &vec![0u8; swarm_types::MAX_SECRET_BYTES + 1],
                )),
            })
            .await,
        Code::InvalidArgument,
        "spec.data: 512001 bytes is over the secret limit",
    );

    // A service naming an unknown secret is refused; a known one is resolved to its id.
    let mut spec = service_spec("web", 1);
    spec.task.secrets = vec![swarm_types::FileRef::named("nope", "")];
    assert_status(
        s.create(spec.clone()).await,
        Code::InvalidArgument,
        "spec.task.secrets[0].name: secret \"nope\" not found",
    );
    spec.task.secrets = vec![swarm_types::FileRef::named("db-password", "pw")];
    let service = s.create(spec).await.expect("created");
    let refs = &service
        .spec
        .as_ref()
        .expect("spec")
        .task
        .as_ref()
        .expect("task")
        .secrets;
    assert_eq!(refs[0].id, id);

    assert_status(
        s.client
            .remove_secret(pb::RemoveSecretRequest {
                secret_id: id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "secret \"db-password\" is in use by service web",
    );
    s.client
        .remove_service(pb::RemoveServiceRequest {
            service_id: service.id.clone(),
        })
        .await
        .expect("service removed");
    s.client
        .remove_secret(pb::RemoveSecretRequest {
            secret_id: id.clone(),
        })
        .await
        .expect("removed once unused");
    assert!(s.h.view(|tx| tx.secret(&id).is_none()));
    s.shutdown().await;
}

#[tokio::test]
async fn configs_show_their_data_on_get_only() {
    let mut s = must_serve().await;
    let spec = pb::ConfigSpec {
        annotations: Some(pb::Annotations {
            name: "app-conf".into(),
            ..Default::default()
        }),
        data: b"listen=8080\n".to_vec(),
    };
    let created = s
        .client
        .create_config(pb::CreateConfigRequest { spec: Some(spec) })
        .await
        .expect("created")
        .into_inner()
        .config
        .expect("config");
    let got = s
        .client
        .get_config(pb::GetConfigRequest {
            config_id: created.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .config
        .expect("config");
    assert_eq!(got.spec.expect("spec").data, b"listen=8080\n");
    let listed = s
        .client
        .list_configs(pb::ListConfigsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .configs;
    assert!(listed[0].spec.as_ref().expect("spec").data.is_empty());
    assert_eq!(listed[0].data_size, 12);
    s.shutdown().await;
}

#[tokio::test]
async fn autolock_gives_the_cluster_one_unlock_key_that_rotates() {
    let mut s = must_serve().await;
    let key = |s: &mut Served, rotate: bool| {
        let mut client = s.client.clone();
        async move {
            client
                .get_unlock_key(pb::GetUnlockKeyRequest { rotate })
                .await
                .map(|r| r.into_inner().unlock_key)
        }
    };
    assert_eq!(key(&mut s, false).await.expect("off"), "");
    assert_status(
        key(&mut s, true).await,
        Code::FailedPrecondition,
        "autolock is off",
    );
    let update = |s: &Served, autolock: bool| {
        let cluster =
            s.h.view(|tx| tx.cluster().map(|c| (**c).clone()))
                .expect("cluster");
        let mut spec = cluster.spec.clone();
        spec.autolock = autolock;
        let mut client = s.client.clone();
        async move {
            client
                .update_cluster(pb::UpdateClusterRequest {
                    cluster_id: cluster.id.clone(),
                    cluster_version: cluster.meta.version,
                    spec: Some(spec.into()),
                    rotation: None,
                })
                .await
                .expect("updated")
                .into_inner()
                .cluster
                .expect("cluster")
        }
    };
    let shown = update(&s, true).await;
    let first = key(&mut s, false).await.expect("on");
    assert!(first.starts_with("SWMKEY-1-"), "{first}");
    assert!(
        !format!("{shown:?}").contains(&first),
        "the cluster object never carries the key out"
    );
    let second = key(&mut s, true).await.expect("rotated");
    assert!(second.starts_with("SWMKEY-1-") && second != first);
    assert_eq!(key(&mut s, false).await.expect("same"), second);
    update(&s, false).await;
    assert_eq!(key(&mut s, false).await.expect("off again"), "");
    s.shutdown().await;
}
