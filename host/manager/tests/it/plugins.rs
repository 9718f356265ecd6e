//! The plugin registry through the control API served on a unix socket, with real components
//! validated by the real plugin host: install, list, get, remove, the refusals (wrong world,
//! capability not granted, a trapping describe, oversize, names in use) and the scheduler
//! switch driven by `UpdateCluster`.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use swarm_manager::{
    ControlService, Dispatcher, DispatcherConfig, MAX_CONTROL_MESSAGE_BYTES, SchedulerDriver,
};
use swarm_plugin_artifacts::{
    EXECUTOR_DEFAULT, SCHEDULER, TEST_FLAKY_SCHEDULER, TEST_TRAP, TEST_WRONG_WORLD,
};
use swarm_proto::pb;
use swarm_proto::pb::control_client::ControlClient;
use swarm_store::StoreRead as _;
use swarm_types::{MAX_PLUGIN_BYTES, TaskState};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::support::{Harness, TIMEOUT, must_load_scheduler, plugin_host, service_spec};

struct Served {
    h: Harness,
    client: ControlClient<Channel>,
    _dir: tempfile::TempDir,
}

/// A harness with `nodes` READY workers whose control service, with the test plugin host, is
/// served on a unix socket.
async fn must_serve(nodes: usize) -> Served {
    let mut h = Harness::new(nodes).await;
    let dispatcher = Arc::new(Dispatcher::new(
        h.store.clone(),
        h.committer.clone(),
        DispatcherConfig {
            manager_node_id: "node-1".into(),
            advertise_addr: "127.0.0.1:4242".into(),
            raft_id: 1,
        },
    ));
    let control = ControlService::new(h.store.clone(), h.committer.clone(), dispatcher)
        .with_plugin_host(plugin_host().clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("control.sock");
    let listener = UnixListener::bind(&path).expect("bind the control socket");
    let cancel = h.cancel_token();
    h.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                pb::control_server::ControlServer::new(control)
                    .max_decoding_message_size(MAX_CONTROL_MESSAGE_BYTES),
            )
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
        client: ControlClient::new(channel).max_decoding_message_size(64 << 20),
        _dir: dir,
    }
}

fn spec(name: &str, kind: pb::PluginKind, allow: &[&str]) -> pb::PluginSpec {
    pb::PluginSpec {
        annotations: Some(pb::Annotations {
            name: name.into(),
            labels: Default::default(),
        }),
        kind: kind as i32,
        capabilities: allow.iter().map(|c| c.to_string()).collect(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

impl Served {
    /// Starts a scheduler driver with the embedded default scheduler; following the cluster's
    /// `spec.scheduler` through the test plugin host when `follow_cluster`. Returns the name of
    /// the scheduler placing, as the driver reports it.
    fn spawn_driver(&mut self, follow_cluster: bool) -> tokio::sync::watch::Receiver<String> {
        let mut driver = SchedulerDriver::new(
            self.h.store.clone(),
            self.h.committer.clone(),
            Box::new(must_load_scheduler()),
        );
        if follow_cluster {
            driver = driver.with_plugin_host(plugin_host().clone());
        }
        let active = driver.active_scheduler();
        self.h.spawn(driver.run(self.h.cancel_token()));
        active
    }

    async fn shutdown(self) {
        drop(self.client);
        self.h.shutdown().await;
    }

    async fn install(
        &mut self,
        name: &str,
        kind: pb::PluginKind,
        allow: &[&str],
        bytes: &[u8],
    ) -> Result<pb::Plugin, tonic::Status> {
        let request = pb::InstallPluginRequest {
            spec: Some(spec(name, kind, allow)),
            component: bytes.to_vec(),
        };
        let response = self.client.install_plugin(request).await?;
        Ok(response
            .into_inner()
            .plugin
            .expect("a plugin in the answer"))
    }

    async fn must_install(
        &mut self,
        name: &str,
        kind: pb::PluginKind,
        allow: &[&str],
        bytes: &[u8],
    ) -> pb::Plugin {
        self.install(name, kind, allow, bytes)
            .await
            .unwrap_or_else(|s| panic!("install {name}: {s:?}"))
    }

    async fn list(&mut self, include_component: bool) -> Vec<pb::Plugin> {
        self.client
            .list_plugins(pb::ListPluginsRequest {
                filters: None,
                include_component,
            })
            .await
            .expect("list plugins")
            .into_inner()
            .plugins
    }

    async fn get(
        &mut self,
        id: &str,
        name: &str,
        include_component: bool,
    ) -> Result<pb::Plugin, tonic::Status> {
        let response = self
            .client
            .get_plugin(pb::GetPluginRequest {
                plugin_id: id.into(),
                name: name.into(),
                include_component,
            })
            .await?;
        Ok(response
            .into_inner()
            .plugin
            .expect("a plugin in the answer"))
    }

    async fn remove(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.client
            .remove_plugin(pb::RemovePluginRequest {
                plugin_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    async fn set_scheduler(&mut self, scheduler: &str) -> Result<pb::Cluster, tonic::Status> {
        let cluster = self.h.view(|tx| (**tx.cluster().expect("cluster")).clone());
        let mut spec = pb::ClusterSpec::from(cluster.spec);
        spec.scheduler = scheduler.into();
        let response = self
            .client
            .update_cluster(pb::UpdateClusterRequest {
                cluster_id: cluster.id,
                cluster_version: cluster.meta.version,
                spec: Some(spec),
                rotation: None,
            })
            .await?;
        Ok(response
            .into_inner()
            .cluster
            .expect("a cluster in the answer"))
    }
}

/// The code and message of a refusal, failing the test on success.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) -> (Code, String) {
    match result {
        Ok(value) => panic!("{what} should be refused, got {value:?}"),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

#[tokio::test]
async fn install_list_get_and_remove_a_real_executor() {
    let mut s = must_serve(1).await;
    let installed = s
        .must_install(
            "runner",
            pb::PluginKind::Executor,
            &["wasi-runner", "process"],
            EXECUTOR_DEFAULT,
        )
        .await;
    assert_eq!(installed.digest, sha256(EXECUTOR_DEFAULT));
    assert_eq!(installed.size_bytes, EXECUTOR_DEFAULT.len() as u64);
    assert!(
        installed.component.is_empty(),
        "answers leave the bytes out"
    );
    let spec = installed.spec.clone().expect("spec");
    assert_eq!(spec.capabilities, ["process", "wasi-runner"], "sorted");
    // What validation found: the imports (within the grants) and describe's runtimes.
    assert!(!installed.imports.is_empty());
    assert!(
        installed
            .imports
            .iter()
            .all(|i| spec.capabilities.contains(i)),
        "{:?}",
        installed.imports
    );
    assert!(
        installed.runtimes.iter().any(|r| r == "process"),
        "{:?}",
        installed.runtimes
    );

    // The store holds the bytes.
    let stored =
        s.h.view(|tx| tx.plugin(&installed.id).cloned())
            .expect("stored");
    assert_eq!(stored.component.as_bytes(), EXECUTOR_DEFAULT);

    let listed = s.list(false).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, installed.id);
    assert!(listed[0].component.is_empty());
    let with_bytes = s.list(true).await;
    assert_eq!(with_bytes[0].component, EXECUTOR_DEFAULT);

    let by_name = s.get("", "RUNNER", true).await.expect("get by name");
    assert_eq!(by_name.id, installed.id);
    assert_eq!(by_name.component, EXECUTOR_DEFAULT);
    let by_id = s.get(&installed.id, "", false).await.expect("get by id");
    assert_eq!(by_id.digest, installed.digest);
    assert!(by_id.component.is_empty());
    let (code, message) = refused(s.get("", "", false).await, "a get naming nothing");
    assert_eq!(code, Code::InvalidArgument, "{message}");

    // Installing the same thing again is a no-op; anything different under that name is not.
    let again = s
        .must_install(
            "runner",
            pb::PluginKind::Executor,
            &["process", "wasi-runner"],
            EXECUTOR_DEFAULT,
        )
        .await;
    assert_eq!(again.id, installed.id);
    let (code, message) = refused(
        s.install(
            "Runner",
            pb::PluginKind::Executor,
            &["process"],
            EXECUTOR_DEFAULT,
        )
        .await,
        "the name with other grants",
    );
    assert_eq!(code, Code::AlreadyExists, "{message}");
    assert!(
        message.contains("\"runner\" is already installed")
            && message.contains(&installed.id)
            && message.contains("capabilities"),
        "{message}"
    );
    let (code, message) = refused(
        s.install("runner", pb::PluginKind::Scheduler, &[], SCHEDULER)
            .await,
        "the name with other bytes",
    );
    assert_eq!(code, Code::AlreadyExists, "{message}");
    assert!(message.contains("digest"), "{message}");

    s.remove(&installed.id).await.expect("remove");
    assert!(s.list(false).await.is_empty());
    let (code, _) = refused(s.get("", "runner", false).await, "a removed plugin");
    assert_eq!(code, Code::NotFound);
    let (code, _) = refused(s.remove(&installed.id).await, "removing twice");
    assert_eq!(code, Code::NotFound);
    s.shutdown().await;
}

#[tokio::test]
async fn components_that_do_not_fit_are_refused_before_anything_is_stored() {
    let mut s = must_serve(1).await;
    /// Name, kind, grants, bytes, and what the refusal must say.
    type Case<'a> = (
        &'a str,
        pb::PluginKind,
        &'a [&'a str],
        Vec<u8>,
        Vec<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong-world",
            pb::PluginKind::Executor,
            &["process", "wasi-runner"],
            TEST_WRONG_WORLD.to_vec(),
            vec!["does not implement", "swarm:plugin/executor@0.2.0"],
        ),
        (
            "ungranted",
            pb::PluginKind::Executor,
            &["process"],
            EXECUTOR_DEFAULT.to_vec(),
            vec!["wasi-runner", "not granted"],
        ),
        (
            "trapper",
            pb::PluginKind::Executor,
            &[],
            TEST_TRAP.to_vec(),
            vec!["trapped"],
        ),
        (
            "not-wasm",
            pb::PluginKind::Scheduler,
            &[],
            b"this is not a component".to_vec(),
            vec!["not a valid component"],
        ),
        (
            "too-big",
            pb::PluginKind::Executor,
            &[],
            vec![0u8; MAX_PLUGIN_BYTES as usize + 1],
            vec!["16777217 bytes", "16777216 bytes (16 MiB)"],
        ),
        (
            "greedy",
            pb::PluginKind::Scheduler,
            &["process"],
            SCHEDULER.to_vec(),
            vec![
                "spec.capabilities[0]",
                "scheduler plugins cannot be granted",
            ],
        ),
        (
            "bad name",
            pb::PluginKind::Scheduler,
            &[],
            SCHEDULER.to_vec(),
            vec!["spec.annotations.name"],
        ),
    ];
    for (name, kind, allow, bytes, wants) in cases {
        let (code, message) = refused(s.install(name, kind, allow, &bytes).await, name);
        assert_eq!(code, Code::InvalidArgument, "{name}: {message}");
        for want in wants {
            assert!(message.contains(want), "{name}: {message:?} lacks {want:?}");
        }
    }
    assert!(s.list(false).await.is_empty());
    assert_eq!(s.h.view(|tx| tx.plugin_count()), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn plugins_in_use_cannot_be_removed_and_references_must_exist() {
    let mut s = must_serve(2).await;
    let runner = s
        .must_install(
            "runner",
            pb::PluginKind::Executor,
            &["process", "wasi-runner"],
            EXECUTOR_DEFAULT,
        )
        .await;
    let binpack = s
        .must_install("binpack", pb::PluginKind::Scheduler, &[], SCHEDULER)
        .await;

    // Specs naming a plugin that is missing or of another kind are refused.
    let mut web = pb::ServiceSpec::from(service_spec("web", 1));
    web.executor = "missing".into();
    let (code, message) = refused(
        s.client
            .create_service(pb::CreateServiceRequest {
                spec: Some(web.clone()),
            })
            .await,
        "a service naming a missing executor",
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("spec.executor: no plugin named \"missing\" is installed"),
        "{message}"
    );
    let (code, message) = refused(s.set_scheduler("runner").await, "an executor as scheduler");
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "spec.scheduler: plugin \"runner\" is of kind executor, not scheduler"
    );

    // An executor that does not run the tasks' runtime is refused: every node would reject them.
    web.executor = "docker".into();
    let (code, message) = refused(
        s.client
            .create_service(pb::CreateServiceRequest {
                spec: Some(web.clone()),
            })
            .await,
        "process tasks on the docker executor",
    );
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "spec.executor: \"docker\" runs container tasks, not process tasks"
    );

    web.executor = "runner".into();
    s.client
        .create_service(pb::CreateServiceRequest { spec: Some(web) })
        .await
        .expect("a service naming the installed executor");
    let node = s.h.must_node("node-2");
    let mut node_spec = pb::NodeSpec::from(node.spec.clone());
    node_spec.executor = "RUNNER".into();
    s.client
        .update_node(pb::UpdateNodeRequest {
            node_id: node.id.clone(),
            node_version: node.meta.version,
            spec: Some(node_spec),
        })
        .await
        .expect("a node naming the installed executor");
    s.set_scheduler("binpack").await.expect("switch scheduler");

    let (code, message) = refused(s.remove(&runner.id).await, "an executor in use");
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(
        message,
        "plugin \"runner\" is in use by service web, node node-2; point them at another plugin \
         (or none) before removing it"
    );
    let (code, message) = refused(s.remove(&binpack.id).await, "the cluster's scheduler");
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        message.contains("in use by cluster default (its scheduler)"),
        "{message}"
    );
    assert_eq!(s.list(false).await.len(), 2);

    // Once nobody names it, it goes.
    s.set_scheduler("").await.expect("back to the default");
    s.remove(&binpack.id)
        .await
        .expect("remove the unused scheduler");
    assert_eq!(s.list(false).await.len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn the_scheduler_switches_to_an_installed_plugin_and_keeps_placing() {
    let mut s = must_serve(3).await;
    s.h.start_orchestrator();
    let mut active = s.spawn_driver(true);
    assert_eq!(*active.borrow(), "", "the embedded default places first");

    // The default scheduler's bytes, installed under another name.
    s.must_install("second", pb::PluginKind::Scheduler, &[], SCHEDULER)
        .await;
    let cluster = s.set_scheduler("second").await.expect("switch");
    assert_eq!(cluster.spec.expect("spec").scheduler, "second");
    tokio::time::timeout(TIMEOUT, active.wait_for(|name| name == "second"))
        .await
        .expect("the driver reports the switch in time")
        .expect("the driver runs");

    let web = s.h.must_create_service(service_spec("web", 3)).await;
    let placed =
        s.h.must_tasks(
            &web.id,
            "3 tasks placed by the installed scheduler",
            |tasks| {
                let assigned: Vec<&str> = tasks
                    .iter()
                    .filter(|t| t.status.state == TaskState::Assigned)
                    .map(|t| t.node_id.as_str())
                    .collect();
                (assigned.len() == 3)
                    .then(|| assigned.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            },
        )
        .await;
    // Spread over the three nodes: the new scheduler got the whole node set.
    let mut nodes = placed.clone();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "{placed:?}");

    // A scheduler that traps as soon as it is given the nodes is not switched to: the
    // installed one keeps placing.
    s.must_install("trapper", pb::PluginKind::Scheduler, &[], TEST_TRAP)
        .await;
    s.set_scheduler("trapper")
        .await
        .expect("name the trapping scheduler");
    let api = s.h.must_create_service(service_spec("api", 2)).await;
    s.h.must_tasks(
        &api.id,
        "2 tasks placed despite the trapping scheduler",
        |tasks| {
            (tasks
                .iter()
                .filter(|t| t.status.state == TaskState::Assigned)
                .count()
                == 2)
                .then_some(())
        },
    )
    .await;
    assert_eq!(*active.borrow(), "second");

    // Back to the embedded default.
    s.set_scheduler("").await.expect("back to the default");
    tokio::time::timeout(TIMEOUT, active.wait_for(|name| name.is_empty()))
        .await
        .expect("the driver reports the switch back in time")
        .expect("the driver runs");
    let db = s.h.must_create_service(service_spec("db", 1)).await;
    s.h.must_tasks(
        &db.id,
        "a task placed by the embedded default again",
        |tasks| {
            tasks
                .iter()
                .any(|t| t.status.state == TaskState::Assigned)
                .then_some(())
        },
    )
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_keeps_failing_is_quarantined_and_the_default_takes_over() {
    let mut s = must_serve(2).await;
    s.h.start_orchestrator();
    let mut active = s.spawn_driver(true);

    // It takes the node set, so the driver switches to it; then every placement traps.
    s.must_install(
        "flaky",
        pb::PluginKind::Scheduler,
        &[],
        TEST_FLAKY_SCHEDULER,
    )
    .await;
    s.set_scheduler("flaky").await.expect("switch");
    tokio::time::timeout(TIMEOUT, active.wait_for(|name| name == "flaky"))
        .await
        .expect("the driver switches in time")
        .expect("the driver runs");
    let web = s.h.must_create_service(service_spec("web", 2)).await;

    // After its failure budget the plugin is quarantined, recorded on the plugin, and the
    // embedded default places the tasks.
    s.h.must_tasks(&web.id, "2 tasks placed by the embedded default", |tasks| {
        (tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Assigned)
            .count()
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(*active.borrow(), "", "the default places again");
    let plugin = s.get("", "flaky", false).await.expect("get");
    let status = plugin.status.expect("status");
    assert!(status.quarantined, "{status:?}");
    assert!(status.failures >= 5, "{status:?}");
    assert!(status.message.contains("trapped"), "{}", status.message);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_a_quarantined_executor_wait_with_the_reason() {
    let mut s = must_serve(2).await;
    s.h.start_orchestrator();
    s.spawn_driver(false);
    s.must_install(
        "runner",
        pb::PluginKind::Executor,
        &["process", "wasi-runner"],
        EXECUTOR_DEFAULT,
    )
    .await;
    // As the dispatcher records a node's quarantine report.
    s.h.must_commit(|tx| {
        let mut plugin = swarm_types::Plugin::clone(tx.plugin_by_name("runner").expect("plugin"));
        plugin.component = Default::default();
        plugin.status.quarantined = true;
        plugin.status.message = "quarantined on node n1 after 5 failures".into();
        Ok(tx.update(plugin)?)
    })
    .await;
    let mut spec = service_spec("web", 2);
    spec.executor = "runner".into();
    let web = s.h.must_create_service(spec).await;
    let reasons =
        s.h.must_tasks(&web.id, "2 tasks held with the reason", |tasks| {
            let reasons: Vec<String> = tasks
                .iter()
                .filter(|t| t.status.state == TaskState::Pending && !t.status.err.is_empty())
                .map(|t| t.status.err.clone())
                .collect();
            (reasons.len() == 2).then_some(reasons)
        })
        .await;
    assert!(
        reasons[0].contains("\"runner\" is quarantined"),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("after 5 failures"), "{reasons:?}");

    // Installing the same component again lifts the quarantine; the tasks are placed.
    let again = s
        .must_install(
            "runner",
            pb::PluginKind::Executor,
            &["process", "wasi-runner"],
            EXECUTOR_DEFAULT,
        )
        .await;
    assert!(!again.status.expect("status").quarantined);
    s.h.must_tasks(&web.id, "2 tasks placed once lifted", |tasks| {
        (tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Assigned && t.executor == "runner")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_executor_applies_to_tasks_whose_service_names_none() {
    let mut s = must_serve(1).await;
    s.h.start_orchestrator();
    s.spawn_driver(false);
    s.must_install(
        "runner",
        pb::PluginKind::Executor,
        &["process", "wasi-runner"],
        EXECUTOR_DEFAULT,
    )
    .await;
    let node_id =
        s.h.view(|tx| tx.nodes().next().map(|n| n.id.clone()))
            .expect("a node");
    s.h.must_update_node(&node_id, |n| n.spec.executor = "runner".into())
        .await;
    let web = s.h.must_create_service(service_spec("web", 1)).await;
    let mut named = service_spec("named", 1);
    named.executor = "default".into();
    let named = s.h.must_create_service(named).await;
    let executor_of = |id: &str| {
        let id = id.to_string();
        move |tasks: &[swarm_types::Task]| {
            tasks
                .iter()
                .find(|t| t.status.state == TaskState::Assigned)
                .map(|t| (id.clone(), t.executor.clone()))
        }
    };
    let (_, executor) =
        s.h.must_tasks(&web.id, "web placed", executor_of(&web.id))
            .await;
    assert_eq!(executor, "runner", "the node's executor");
    let (_, executor) =
        s.h.must_tasks(&named.id, "named placed", executor_of(&named.id))
            .await;
    assert_eq!(executor, "default", "the service's choice wins");
    s.shutdown().await;
}
