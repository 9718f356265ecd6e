//! Linearizability under faults: clients read and write registers (the labels of one service)
//! through random managers of a 3-manager cluster while the leader is killed with SIGKILL and
//! brought back, then a follower (one test), or while the leader and then a follower are cut
//! off the network and rejoin (another, in network namespaces); the recorded history must be
//! linearizable and every acknowledged write must survive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use swarm_tests::linearizability::{self, Kind, Operation};
use swarm_tests::netns::Mesh;
use swarm_tests::{TestCluster, binary, poll};

const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const CLIENTS: usize = 4;
/// How long the clients run; the faults happen within it.
const RUN: Duration = Duration::from_secs(12);

/// Failures that say the request was not applied: refused before it reached the store, or a
/// version conflict (the update carried the version it read; the store checks it when it
/// applies the entry). Any other failure may or may not have taken effect.
const NOT_APPLIED: &[&str] = &[
    "out of sequence",
    "no leader: the managers are electing one",
    "was just elected leader and is catching up",
    "is not in this manager's membership yet",
    "this manager does not lead",
    "leadership moved while the call was forwarded",
    "Connection refused",
];

/// xorshift64*, seeded from the clock (the seed is printed to replay a schedule's choices).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One swarmctl run with a short per-request timeout: (exit code, stdout, stderr).
fn ctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("swarmctl"))
        .arg("-s")
        .arg(socket)
        .args(["--timeout", "3s"])
        .args(args)
        .output()
        .expect("run swarmctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Read every register: `None` when the read failed.
fn read(socket: &Path) -> Option<Value> {
    let (code, stdout, _) = ctl(socket, &["--format", "json", "service", "inspect", "reg"]);
    if code != 0 {
        return None;
    }
    let service: Value = serde_json::from_str(&stdout).expect("inspect JSON");
    Some(service["spec"]["annotations"]["labels"].clone())
}

fn label(labels: &Value, key: &str) -> Option<String> {
    labels[key].as_str().map(str::to_string)
}

/// What one client did: the operations, and when each write failed and how (for the report).
fn client(
    id: usize,
    seed: u64,
    sockets: &[PathBuf],
    alive: &[AtomicBool],
    start: Instant,
) -> (Vec<Operation>, Vec<(Duration, String)>) {
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut ops, mut failures) = (Vec::new(), Vec::new());
    let mut seq = 0;
    while start.elapsed() < RUN {
        let key = KEYS[rng.below(KEYS.len())];
        let up: Vec<usize> = (0..sockets.len())
            .filter(|&i| alive[i].load(Ordering::SeqCst))
            .collect();
        let manager = up[rng.below(up.len())];
        let socket = &sockets[manager];
        let invoke = start.elapsed();
        if rng.below(2) == 0 {
            seq += 1;
            let value = format!("c{id}-{seq}");
            let (code, _, stderr) = ctl(
                socket,
                &[
                    "service",
                    "update",
                    "reg",
                    "--label-add",
                    &format!("{key}={value}"),
                ],
            );
            let end = start.elapsed();
            let complete = match code {
                0 => Some(end),
                _ => {
                    let message = stderr
                        .trim()
                        .replace(&socket.display().to_string(), &format!("manager {manager}"));
                    let applied = !NOT_APPLIED.iter().any(|m| stderr.contains(m));
                    let outcome = if applied { "unknown" } else { "not applied" };
                    failures.push((invoke, format!("{outcome}: {message}")));
                    if !applied {
                        continue;
                    }
                    None
                }
            };
            ops.push(Operation {
                client: id,
                key: key.to_string(),
                kind: Kind::Write(value),
                invoke,
                complete,
            });
        } else if let Some(labels) = read(socket) {
            ops.push(Operation {
                client: id,
                key: key.to_string(),
                kind: Kind::Read(label(&labels, key)),
                invoke,
                complete: Some(start.elapsed()),
            });
        }
    }
    (ops, failures)
}

/// `m` with every run of digits replaced by `N` (to count failures by kind).
fn digits_to_n(m: &str) -> String {
    let mut out = String::new();
    for c in m.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('N') {
            out.push('N');
        }
    }
    out
}

/// Wait until a manager's own socket answers a call that needs the leader.
fn wait_serving(socket: &Path, what: &str) {
    poll(what, || (read(socket).is_some()).then_some(()));
}

#[test]
fn register_history_under_leader_and_follower_kills_is_linearizable() {
    let mut cluster = TestCluster::start(3, 0);
    check_history(&mut cluster, |cluster, alive, pace, start, sockets| {
        let mut faults = Vec::new();
        // Kill -9 the leader, bring it back, then kill a follower.
        pace(2000);
        let old = cluster.leader();
        alive[old].store(false, Ordering::SeqCst);
        cluster.managers[old].kill9();
        faults.push(format!(
            "{:?}: killed leader manager {old}",
            start.elapsed()
        ));
        pace(5000);
        cluster.managers[old].respawn();
        wait_serving(&sockets[old], "the old leader to serve again");
        alive[old].store(true, Ordering::SeqCst);
        faults.push(format!("{:?}: manager {old} serves again", start.elapsed()));
        pace(7500);
        let leader = cluster.leader();
        let follower = (0..3)
            .find(|&i| i != leader && i != old)
            .unwrap_or((leader + 1) % 3);
        alive[follower].store(false, Ordering::SeqCst);
        cluster.managers[follower].kill9();
        faults.push(format!(
            "{:?}: leader is manager {leader}, killed follower manager {follower}",
            start.elapsed()
        ));
        pace(10000);
        cluster.managers[follower].respawn();
        wait_serving(&sockets[follower], "the follower to serve again");
        alive[follower].store(true, Ordering::SeqCst);
        faults.push(format!(
            "{:?}: manager {follower} serves again",
            start.elapsed()
        ));
        faults
    });
}

#[test]
fn register_history_under_partitions_is_linearizable() {
    let mesh = Mesh::new(3);
    let mut cluster = TestCluster::start_in(&mesh);
    check_history(&mut cluster, |cluster, _alive, pace, start, _sockets| {
        // Every manager stays up and keeps being asked: an isolated one must answer nothing
        // stale and acknowledge nothing.
        let mut faults = Vec::new();
        pace(2000);
        let old = cluster.leader();
        mesh.isolate(old + 1);
        faults.push(format!(
            "{:?}: isolated leader manager {old}",
            start.elapsed()
        ));
        pace(5000);
        mesh.rejoin(old + 1);
        faults.push(format!("{:?}: manager {old} rejoined", start.elapsed()));
        pace(7500);
        let leader = cluster.leader();
        let follower = (leader + 1) % 3;
        mesh.isolate(follower + 1);
        faults.push(format!(
            "{:?}: leader is manager {leader}, isolated follower manager {follower}",
            start.elapsed()
        ));
        pace(10000);
        mesh.rejoin(follower + 1);
        faults.push(format!(
            "{:?}: manager {follower} rejoined",
            start.elapsed()
        ));
        faults
    });
}

/// Runs the clients against `cluster` while `schedule` injects faults, then checks the history.
/// The schedule gets the cluster, which managers clients may call (cleared while one is down),
/// a pacer (sleeps until that many ms into the run), the start and the managers' sockets, and
/// says what it did.
fn check_history(
    cluster: &mut TestCluster,
    schedule: impl FnOnce(
        &mut TestCluster,
        &[AtomicBool],
        &dyn Fn(u64),
        Instant,
        &[PathBuf],
    ) -> Vec<String>,
) {
    cluster
        .any_manager()
        .ctl(&[
            "service",
            "create",
            "--name",
            "reg",
            "--replicas",
            "0",
            "--process",
            "--",
            "sleep",
            "1",
        ])
        .ok();
    let sockets: Vec<PathBuf> = cluster.managers.iter().map(|m| m.socket()).collect();
    for socket in &sockets {
        wait_serving(socket, "every manager to serve reads");
    }
    let alive: Vec<AtomicBool> = sockets.iter().map(|_| AtomicBool::new(true)).collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    println!("seed {seed}");

    let start = Instant::now();
    let pace = |at: u64| {
        let at = Duration::from_millis(at);
        thread::sleep(at.saturating_sub(start.elapsed()));
    };
    let (mut history, failures, faults) = thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let (sockets, alive) = (&sockets, &alive);
                s.spawn(move || client(id, seed, sockets, alive, start))
            })
            .collect();
        let faults = schedule(&mut *cluster, &alive, &pace, start, &sockets);

        let mut history = Vec::new();
        let mut failures = Vec::new();
        for c in clients {
            let (ops, f) = c.join().expect("client thread");
            history.extend(ops);
            failures.extend(f);
        }
        (history, failures, faults)
    });

    // A final read of every register through each manager, after the faults.
    for socket in &sockets {
        let invoke = start.elapsed();
        let labels = poll("a final read", || read(socket));
        for key in KEYS {
            history.push(Operation {
                client: CLIENTS,
                key: key.to_string(),
                kind: Kind::Read(label(&labels, key)),
                invoke,
                complete: Some(start.elapsed()),
            });
        }
    }

    let writes = |f: fn(&Operation) -> bool| {
        history
            .iter()
            .filter(|o| matches!(o.kind, Kind::Write(_)) && f(o))
            .count()
    };
    let acked_writes = writes(|o| o.complete.is_some());
    let unknown_writes = writes(|o| o.complete.is_none());
    let acked = history.iter().filter(|o| o.complete.is_some()).count();
    // Failed writes by message: how many, first and last invocation.
    let mut kinds: BTreeMap<&str, (usize, Duration, Duration)> = BTreeMap::new();
    let failures: Vec<(Duration, String)> = failures
        .into_iter()
        .map(|(at, m)| (at, digits_to_n(&m)))
        .collect();
    for (at, message) in &failures {
        let entry = kinds.entry(message).or_insert((0, *at, *at));
        entry.0 += 1;
        entry.1 = entry.1.min(*at);
        entry.2 = entry.2.max(*at);
    }
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(m, (n, first, last))| format!("{n} x [{first:.1?} .. {last:.1?}] {m}"))
        .collect();
    let summary = format!(
        "{} operations: {acked} acknowledged ({acked_writes} writes), {unknown_writes} writes \
         with unknown outcome, {} writes not applied\nfaults:\n  {}\nfailed writes:\n  {}",
        history.len(),
        failures.len() - unknown_writes,
        faults.join("\n  "),
        kinds.join("\n  ")
    );
    println!("{summary}");

    if let Err(violation) = linearizability::check(&history) {
        let logs: Vec<String> = cluster
            .managers
            .iter()
            .map(|m| format!("--- {} ---\n{}", m.hostname(), m.log()))
            .collect();
        panic!("{violation}\n{summary}\n{}", logs.join("\n"));
    }
    // The last value of each register was written by an acknowledged or unknown write (the
    // checker also insists that no acknowledged write was lost: the final reads come after all).
    for key in KEYS {
        let last = history
            .iter()
            .rev()
            .find(|o| o.key == key && o.client == CLIENTS)
            .and_then(|o| match &o.kind {
                Kind::Read(v) => v.clone(),
                Kind::Write(_) => None,
            });
        if let Some(value) = last {
            assert!(
                history
                    .iter()
                    .any(|o| o.key == key && o.kind == Kind::Write(value.clone())),
                "{key}={value} was never written (or its write was refused)\n{summary}"
            );
        }
    }
    assert!(
        acked >= 40 && acked_writes >= 20,
        "too few operations acknowledged for the history to mean anything\n{summary}"
    );
}
