//! `StoreApp` under a real single-node `swarm_raft::RaftNode` in a temporary directory: batches
//! committed through `RaftCommitter` survive a restart, with and without a snapshot, and the
//! state machine's refusals come back as the manager's errors.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_manager::commit::commit_with;
use swarm_manager::{Committer, ManagerError, RaftCommitter, StoreApp};
use swarm_raft::{RaftConfig, RaftNode};
use swarm_store::{MemoryStore, ObjectKind, StoreRead as _, StoreSnapshot, WriteTx};
use swarm_types::TaskState;

use crate::support::{TIMEOUT, ready_node, service_spec, task_of};

fn config(dir: &Path) -> RaftConfig {
    let mut config = RaftConfig::new(1, dir);
    config.tick = Duration::from_millis(20);
    config
}

struct Running {
    store: Arc<MemoryStore>,
    raft: RaftNode,
    committer: RaftCommitter,
}

async fn must_start(dir: &Path, bootstrap: bool) -> Running {
    let store = Arc::new(MemoryStore::new());
    let app = Arc::new(StoreApp::new(store.clone()));
    let raft = RaftNode::start(config(dir), app).await.expect("start raft");
    if bootstrap {
        raft.bootstrap_single("127.0.0.1:4242".into())
            .await
            .expect("bootstrap");
    }
    raft.wait_for_leader(TIMEOUT).await.expect("a leader");
    Running {
        store,
        committer: RaftCommitter::new(raft.clone()),
        raft,
    }
}

impl Running {
    async fn commit(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<(), ManagerError>,
    ) -> Result<Option<u64>, ManagerError> {
        commit_with(&self.store, &self.committer, f)
            .await
            .map(|((), index)| index)
    }

    async fn must_commit(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<(), ManagerError>) {
        self.commit(f).await.expect("commit through raft");
    }

    async fn stop(self) {
        self.raft.shutdown().await.expect("raft shutdown");
    }
}

/// Commits a small history: nodes, a service, its tasks, updates and a deletion.
async fn must_commit_history(r: &Running) {
    for i in 1..=3 {
        let node = ready_node(&format!("node-{i}"), &[("zone", "east")]);
        r.must_commit(|tx| Ok(tx.create(node)?)).await;
    }
    let spec = service_spec("web", 3);
    let service = swarm_types::Service {
        id: swarm_types::new_id(),
        meta: Default::default(),
        spec,
        spec_version: 1,
    };
    let tasks: Vec<_> = (1..=3)
        .map(|slot| task_of(&service, slot, "", TaskState::Pending))
        .collect();
    let service_id = service.id.clone();
    r.must_commit(|tx| {
        tx.create(service)?;
        for t in tasks.iter().cloned() {
            tx.create(t)?;
        }
        Ok(())
    })
    .await;
    // Concurrent proposals may share a raft entry; each must still apply.
    let mut writes = Vec::new();
    for (t, node) in tasks.iter().zip(["node-1", "node-2", "node-3"]) {
        let id = t.id.clone();
        let node = node.to_string();
        writes.push(async move {
            r.must_commit(|tx| {
                let mut task = (**tx.task(&id).expect("task")).clone();
                task.node_id = node;
                task.status.state = TaskState::Assigned;
                Ok(tx.update(task)?)
            })
            .await;
        });
    }
    futures::future::join_all(writes).await;
    let gone = tasks[2].id.clone();
    r.must_commit(|tx| Ok(tx.delete(ObjectKind::Task, &gone)?))
        .await;
    r.must_commit(|tx| {
        let mut service = (**tx.service(&service_id).expect("service")).clone();
        service.spec.mode = swarm_types::ServiceMode::Replicated { replicas: 2 };
        Ok(tx.update(service)?)
    })
    .await;
}

/// Polls until the restarted store holds `want`.
async fn must_recover(store: &MemoryStore, want: &StoreSnapshot) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = store.snapshot();
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted store never matched: index {} vs {}, {} vs {} tasks",
            got.index,
            want.index,
            got.tasks.len(),
            want.tasks.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn committed_batches_survive_a_restart() {
    for snapshot in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = must_start(dir.path(), true).await;
        must_commit_history(&r).await;
        let before = r.store.snapshot();
        assert_eq!(
            (
                before.nodes.len(),
                before.services.len(),
                before.tasks.len()
            ),
            (3, 1, 2)
        );
        assert!(
            before
                .tasks
                .iter()
                .all(|t| t.status.state == TaskState::Assigned)
        );
        if snapshot {
            r.raft.trigger_snapshot().await.expect("snapshot");
        }
        r.stop().await;

        let r = must_start(dir.path(), false).await;
        must_recover(&r.store, &before).await;
        // And it goes on from there, at a later index.
        let node = ready_node("node-4", &[]);
        let index = r
            .commit(|tx| Ok(tx.create(node)?))
            .await
            .expect("commit after restart")
            .expect("an index");
        assert!(
            index > before.index,
            "snapshot={snapshot}: {index} after {}",
            before.index
        );
        let version = r.store.view(|tx| tx.node("node-4").map(|n| n.meta.version));
        assert_eq!(
            version,
            Some(index),
            "the committer returns the store index"
        );
        r.stop().await;
    }
}

#[tokio::test]
async fn refusals_by_the_state_machine_come_back_as_manager_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let r = must_start(dir.path(), true).await;
    let node = ready_node("node-1", &[]);
    r.must_commit(|tx| Ok(tx.create(node)?)).await;
    // Two writers read the same version; the second to apply loses.
    let stale = r
        .store
        .view(|tx| (**tx.node("node-1").expect("node")).clone());
    let (first, second) = {
        let build = |label: &str| {
            let mut node = stale.clone();
            node.spec.annotations.name = label.into();
            let (_, batch) = r
                .store
                .build(|tx: &mut WriteTx<'_>| tx.update(node).map_err(ManagerError::from))
                .expect("build");
            batch
        };
        (build("first"), build("second"))
    };
    r.committer
        .commit(first)
        .await
        .expect("the first write applies");
    let error = r
        .committer
        .commit(second)
        .await
        .expect_err("the second is stale");
    assert!(matches!(error, ManagerError::Conflict(_)), "{error:?}");
    assert_eq!(
        r.store
            .view(|tx| tx.node("node-1").map(|n| n.spec.annotations.name.clone())),
        Some("first".into())
    );
    // Empty batches are not proposed.
    assert_eq!(r.commit(|_| Ok(())).await.expect("empty"), None);
    r.stop().await;
}
