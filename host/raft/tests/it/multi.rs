//! Several raft nodes in one process, talking real gRPC over loopback sockets: joining as
//! learner then voter, replication, leader failover and catch-up, snapshots larger than a gRPC
//! message sent in chunks, refusals.

use std::time::Duration;

use swarm_proto::pb;
use swarm_raft::{RaftConfig, RaftError, RaftRole};

use crate::common::{Member, TIMEOUT, group, must_propose, wait_until};

/// Three fresh state directories.
fn dirs() -> [tempfile::TempDir; 3] {
    [(); 3].map(|()| tempfile::tempdir().expect("tempdir"))
}

/// A three-node group with default settings.
async fn three(dirs: &[tempfile::TempDir; 3]) -> Vec<Member> {
    group(dirs, |_, c, _| c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_as_learners_then_vote_and_replicate() {
    let dirs = dirs();
    let members = three(&dirs).await;
    let status = members[0].node.metrics();
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.voter), "{status:?}");

    let (index, _) = must_propose(&members[0].node, "set k v").await;
    for member in &members {
        wait_until("replication to every member", || {
            member.app.state().entries.get("k").map(String::as_str) == Some("v")
        })
        .await;
    }
    // The leader reports how far each follower's log matches; followers report nothing.
    wait_until("the leader to see both followers match", || {
        let replication = members[0].node.metrics().replication;
        [2, 3]
            .iter()
            .all(|id| replication.get(id).copied().flatten() >= Some(index))
    })
    .await;
    assert!(members[1].node.metrics().replication.is_empty());
    // Entries reached the followers over their append lanes, not gRPC calls.
    for follower in &members[1..] {
        assert!(
            follower
                .lane_connections
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0,
            "member {} took no append lane",
            follower.id
        );
    }
    // A follower refuses writes, naming the leader and its address.
    match members[1].node.propose(b"set x y".to_vec()).await {
        Err(RaftError::NotLeader {
            leader_id,
            leader_addr,
        }) => {
            assert_eq!(leader_id, Some(1));
            assert_eq!(leader_addr.as_deref(), Some(members[0].addr.as_str()));
        }
        other => panic!("a follower accepted a write: {other:?}"),
    }
    // The leader hears from both followers.
    wait_until("peers reachable", || {
        members[0].node.peer_reachable(2) && members[0].node.peer_reachable(3)
    })
    .await;
    members[0]
        .node
        .ensure_linearizable()
        .await
        .expect("leader read");
    assert!(matches!(
        members[1].node.ensure_linearizable().await,
        Err(RaftError::NotLeader { .. })
    ));
    for member in members {
        member.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_the_old_one_catches_up() {
    let dirs = dirs();
    let mut members = three(&dirs).await;
    must_propose(&members[0].node, "set before failover").await;
    let old = members.remove(0);
    let old_addr = old.addr.clone();
    old.stop().await;

    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let leader = loop {
        if let Some(m) = members
            .iter()
            .find(|m| m.node.metrics().role == RaftRole::Leader)
        {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    leader
        .node
        .wait_for_leader(TIMEOUT)
        .await
        .expect("caught up");
    must_propose(&leader.node, "set after failover").await;
    // The old leader restarts on the same directory and address, and catches up.
    let back = Member::start(1, dirs[0].path(), Some(&old_addr), |c, _| c).await;
    wait_until("the restarted node to catch up", || {
        let state = back.app.state();
        state.entries.get("before").map(String::as_str) == Some("failover")
            && state.entries.get("after").map(String::as_str) == Some("failover")
    })
    .await;
    assert_ne!(back.node.metrics().role, RaftRole::Leader);
    back.stop().await;
    for member in members {
        member.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_reaches_a_new_member_in_chunks() {
    let dirs = dirs();
    let small_snapshots = |mut c: RaftConfig, _: &str| {
        c.snapshot_interval = 5;
        c.logs_to_keep = 2;
        c
    };
    let first = Member::start(1, dirs[0].path(), None, small_snapshots).await;
    first
        .node
        .bootstrap_single(first.addr.clone())
        .await
        .expect("bootstrap");
    first.node.wait_for_leader(TIMEOUT).await.expect("leader");
    // Six values of 1 MiB: the snapshot is larger than tonic's default 4 MiB message limit.
    let value = "x".repeat(1 << 20);
    for i in 0..6 {
        must_propose(&first.node, &format!("set key{i} {value}")).await;
    }
    for i in 0..6 {
        must_propose(&first.node, &format!("set small{i} v")).await;
    }
    first.node.trigger_snapshot().await.expect("snapshot");
    wait_until("a snapshot that purged the log", || {
        first.node.metrics().purged_index.is_some()
    })
    .await;

    let joiner = Member::start(2, dirs[1].path(), None, small_snapshots).await;
    first
        .node
        .add_learner(2, joiner.addr.clone())
        .await
        .expect("learner catches up");
    wait_until("the learner to apply the snapshot", || {
        joiner.app.state().entries.len() == 12
    })
    .await;
    let state = joiner.app.state();
    assert_eq!(state.entries.get("key5").map(String::len), Some(1 << 20));
    // The leader purged the log through the big entries: the learner can only have them from
    // the snapshot, which is larger than a gRPC message and so went over in chunks.
    assert!(
        first.node.metrics().purged_index.is_some_and(|i| i >= 7),
        "{:?}",
        first.node.metrics()
    );
    joiner.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_and_removed_members() {
    let dirs = dirs();
    let mut members = three(&dirs).await;
    let leader = members[0].node.clone();
    step("demote", leader.demote(3)).await;
    let status = leader.metrics();
    assert!(
        status.members.iter().any(|m| m.id == 3 && !m.voter),
        "{status:?}"
    );
    step("promote", leader.promote(3)).await;
    // Node 3 dies for good: two voters of three still commit, and remove it.
    let dead = members.pop().expect("member 3");
    dead.stop().await;
    step("propose", leader.propose(b"set with one down".to_vec())).await;
    step("remove", leader.remove(3)).await;
    let status = leader.metrics();
    assert!(status.members.iter().all(|m| m.id != 3), "{status:?}");
    assert!(!status.replication.contains_key(&3), "{status:?}");
    // The quorum is now two of {1, 2}.
    step("propose", leader.propose(b"set after removal".to_vec())).await;
    assert!(matches!(
        leader.promote(3).await,
        Err(RaftError::Membership(_))
    ));

    // Node 2 restarts on another port; the leader records its new address and replicates to
    // it there.
    let moved = members.pop().expect("member 2");
    moved.stop().await;
    let moved = Member::start(2, dirs[1].path(), None, |c, _| c).await;
    step("set addr", leader.set_addr(2, moved.addr.clone())).await;
    let addr = leader
        .metrics()
        .members
        .iter()
        .find(|m| m.id == 2)
        .map(|m| m.addr.clone());
    assert_eq!(addr.as_deref(), Some(moved.addr.as_str()));
    step("propose", leader.propose(b"set moved yes".to_vec())).await;
    wait_until("replication to the moved member", || {
        moved.app.state().entries.get("moved").map(String::as_str) == Some("yes")
    })
    .await;
    moved.stop().await;
    for member in members {
        member.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_member_receives_large_entries_over_several_requests() {
    let dirs = dirs();
    let first = Member::start(1, dirs[0].path(), None, |c, _| c).await;
    first
        .node
        .bootstrap_single(first.addr.clone())
        .await
        .expect("bootstrap");
    first.node.wait_for_leader(TIMEOUT).await.expect("leader");
    // Three entries of 3 MiB: more than one AppendEntries may carry
    // (`APPEND_ENTRIES_BUDGET_BYTES`), and no snapshot to send instead.
    let value = "y".repeat(3 << 20);
    for i in 0..3 {
        must_propose(&first.node, &format!("set big{i} {value}")).await;
    }
    let joiner = Member::start(2, dirs[1].path(), None, |c, _| c).await;
    step(
        "add learner",
        first.node.add_learner(2, joiner.addr.clone()),
    )
    .await;
    wait_until("the learner to apply the large entries", || {
        joiner.app.state().entries.len() == 3
    })
    .await;
    assert_eq!(joiner.node.metrics().snapshot_index, None);
    joiner.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_learner_nobody_answers_for_gives_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Member::start(1, dir.path(), None, |mut c, _| {
        c.learner_stall_timeout = Duration::from_millis(500);
        c
    })
    .await;
    first
        .node
        .bootstrap_single(first.addr.clone())
        .await
        .expect("bootstrap");
    first.node.wait_for_leader(TIMEOUT).await.expect("leader");
    // A port from a listener that is closed again: nobody listens there.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .to_string();
    let result = tokio::time::timeout(TIMEOUT, first.node.add_learner(2, nowhere)).await;
    assert!(
        matches!(result, Ok(Err(RaftError::Timeout { .. }))),
        "{result:?}"
    );
    // It stays a learner until removed; the leader still commits alone.
    assert!(
        first
            .node
            .metrics()
            .members
            .iter()
            .any(|m| m.id == 2 && !m.voter)
    );
    must_propose(&first.node, "set still works").await;
    step("remove", first.node.remove(2)).await;
    first.stop().await;
}

/// Awaits a raft operation, failing the test (naming it) on error or after [`TIMEOUT`].
async fn step<T: std::fmt::Debug>(
    what: &str,
    op: impl std::future::Future<Output = Result<T, RaftError>>,
) -> T {
    tokio::time::timeout(TIMEOUT, op)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test]
async fn malformed_messages_are_refused_as_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let member = Member::start(1, dir.path(), None, |c, _| c).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", member.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = pb::raft_client::RaftClient::new(channel);
    let garbage = pb::RaftMessage {
        header: b"{not json".to_vec(),
        entries: vec![vec![0xff; 3]],
        data: Vec::new(),
    };
    for status in [
        client
            .append_entries(garbage.clone())
            .await
            .expect_err("append"),
        client.vote(garbage.clone()).await.expect_err("vote"),
        client
            .install_snapshot(garbage)
            .await
            .expect_err("snapshot"),
    ] {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    // A decodable snapshot chunk that skips ahead of the bytes received is refused before
    // openraft would grow its buffer to that offset.
    let chunk = |offset: u64, data: &[u8]| {
        let header = serde_json::json!({
            "vote": openraft::Vote::<u64>::new_committed(1, 9),
            "meta": openraft::SnapshotMeta::<u64, openraft::BasicNode> {
                last_log_id: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 9), 3)),
                last_membership: Default::default(),
                snapshot_id: "s1".into(),
            },
            "offset": offset,
            "done": false,
        });
        pb::RaftMessage {
            header: serde_json::to_vec(&header).expect("json"),
            entries: Vec::new(),
            data: data.to_vec(),
        }
    };
    client
        .install_snapshot(chunk(0, b"0123456789"))
        .await
        .expect("first chunk");
    client
        .install_snapshot(chunk(5, b"56789abc"))
        .await
        .expect("a chunk sent again from an earlier offset");
    let status = client
        .install_snapshot(chunk(1 << 40, b"x"))
        .await
        .expect_err("skips ahead");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("skips ahead"), "{status:?}");
    member.stop().await;
}

/// Reads one append-lane answer: its status byte and the rest.
async fn lane_answer(stream: &mut tokio::net::TcpStream) -> Option<(u8, String)> {
    use tokio::io::AsyncReadExt as _;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.ok()?;
    let (status, rest) = body.split_first()?;
    Some((*status, String::from_utf8_lossy(rest).into_owned()))
}

#[tokio::test]
async fn malformed_append_lane_frames_are_refused_and_change_nothing() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let member = Member::start(1, dir.path(), None, |c, _| c).await;
    member
        .node
        .bootstrap_single(member.addr.clone())
        .await
        .expect("bootstrap");
    member.node.wait_for_leader(TIMEOUT).await.expect("leader");
    must_propose(&member.node, "set k v").await;
    let before = member.node.metrics();

    // A frame that parses, with a header that does not: refused naming the header, and the
    // lane stays open for the next request.
    let mut lane = tokio::net::TcpStream::connect(&member.lane_addr)
        .await
        .expect("connect");
    let header = b"{not json";
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    frame.extend_from_slice(&0u32.to_be_bytes());
    for _ in 0..2 {
        lane.write_all(&frame).await.expect("write");
        let (status, message) = lane_answer(&mut lane).await.expect("an answer");
        assert_eq!(status, 1, "{message}");
        assert!(message.contains("header"), "{message}");
    }
    // A frame whose entry count runs past its end: refused, then the lane is closed.
    let mut short = Vec::new();
    short.extend_from_slice(&8u32.to_be_bytes());
    short.extend_from_slice(&0u32.to_be_bytes());
    short.extend_from_slice(&1000u32.to_be_bytes());
    lane.write_all(&short).await.expect("write");
    let (status, message) = lane_answer(&mut lane).await.expect("an answer");
    assert_eq!(status, 1, "{message}");
    assert!(message.contains("cannot fit"), "{message}");
    assert!(
        lane_answer(&mut lane).await.is_none(),
        "the lane stays open"
    );

    let after = member.node.metrics();
    assert_eq!(after.term, before.term);
    assert_eq!(after.last_log_index, before.last_log_index);
    assert_eq!(after.role, RaftRole::Leader);
    must_propose(&member.node, "set still works").await;
    member.stop().await;
}

/// A peer that takes no append lane (down when first tried, or an older version): entries go
/// over gRPC calls instead, and lanes are tried again later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_goes_over_grpc_when_no_lane_opens() {
    let dirs = dirs();
    let members = group(&dirs, |_, mut c, _| {
        c.append_lanes = Some(std::sync::Arc::new(|_: &str| {
            Box::pin(async { Err("this peer takes no append lanes".to_string()) })
        }));
        c
    })
    .await;
    must_propose(&members[0].node, "set k v").await;
    for member in &members {
        wait_until("replication over gRPC", || {
            member.app.state().entries.get("k").map(String::as_str) == Some("v")
        })
        .await;
    }
    for member in &members {
        assert_eq!(
            member
                .lane_connections
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    }
    for member in members {
        member.stop().await;
    }
}
