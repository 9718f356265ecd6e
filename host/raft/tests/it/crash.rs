//! A real `kill -9`: a child process proposes until it is killed; a restart must hold every
//! acknowledged command, each applied exactly once, with no gaps.

use std::io::BufRead;
use std::io::BufReader;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use swarm_raft::RaftConfig;

use crate::common::TIMEOUT;
use crate::common::must_propose;
use crate::common::must_start_leader;

/// Set in the child process: the state directory to run the workload in.
const CHILD_ENV: &str = "SWARM_RAFT_CRASH_CHILD_STATE_DIR";
const WRITERS: usize = 4;
const ACKS_BEFORE_KILL: usize = 400;

fn crash_config(dir: &std::path::Path) -> RaftConfig {
    let mut config = crate::common::test_config(dir);
    config.snapshot_interval = 50;
    config.logs_to_keep = 10;
    config
}

/// The child side of [`kill_9_loses_no_acknowledged_command`]; does nothing in a normal run.
#[test]
fn crash_child_workload() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let (node, _app) = must_start_leader(crash_config(std::path::Path::new(&dir))).await;
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let node = node.clone();
            tasks.spawn(async move {
                for i in 0.. {
                    must_propose(&node, &format!("set w{writer}-{i:08} {i}")).await;
                    println!("ACK {writer} {i}");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash::crash_child_workload",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut acked = [None::<u64>; WRITERS];
    let mut acks = 0;
    let deadline = Instant::now() + TIMEOUT;
    while acks < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left.max(Duration::from_millis(1)))
            .unwrap_or_else(|e| panic!("child stopped acknowledging after {acks} acks: {e}"));
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (writer, i) = rest.split_once(' ').expect("ACK writer index");
        let (writer, i): (usize, u64) =
            (writer.parse().expect("writer"), i.parse().expect("index"));
        acked[writer] = acked[writer].max(Some(i));
        acks += 1;
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap child");
    // Acks printed before the kill but not read yet count too.
    while let Ok(line) = lines_rx.try_recv() {
        if let Some((writer, i)) = line
            .strip_prefix("ACK ")
            .and_then(|rest| rest.split_once(' '))
        {
            let writer: usize = writer.parse().expect("writer");
            acked[writer] = acked[writer].max(Some(i.parse().expect("index")));
        }
    }

    let app = std::sync::Arc::new(crate::common::KvApp::default());
    let node = swarm_raft::RaftNode::start(crash_config(dir.path()), app.clone())
        .await
        .expect("restart after kill -9");
    node.wait_for_leader(TIMEOUT)
        .await
        .expect("leader after kill -9");
    let state = app.state();
    for (writer, last_acked) in acked.iter().enumerate() {
        let last_acked = last_acked.expect("every writer was acknowledged at least once");
        let prefix = format!("w{writer}-");
        let keys: Vec<u64> = state
            .entries
            .keys()
            .filter_map(|key| key.strip_prefix(&prefix))
            .map(|i| i.parse().expect("key index"))
            .collect();
        // Writers propose one by one: what survived is a prefix of each writer's sequence,
        // and it holds every acknowledged command.
        assert_eq!(
            keys,
            (0..keys.len() as u64).collect::<Vec<_>>(),
            "writer {writer} has a gap"
        );
        assert!(
            keys.len() as u64 > last_acked,
            "writer {writer}: acked {last_acked}, kept {}",
            keys.len()
        );
    }
    // Every key was set once: the command count shows nothing was applied twice.
    assert_eq!(state.commands, state.entries.len() as u64);
    assert!(
        node.metrics().snapshot_index.is_some(),
        "the run was long enough to snapshot"
    );
    node.shutdown().await.expect("shutdown");
}
