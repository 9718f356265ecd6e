//! Measures the store at scale (not asserted): 100,000 task creates in one batch, then every
//! task assigned to a node in batches, through `build` and `apply`, plus snapshot and restore.
//! Run with `cargo run --release -p swarm-store --example apply_bench [tasks] [batch]`.

use std::time::{Duration, Instant};

use swarm_store::{Action, Batch, MemoryStore, StoreError, StoreRead, WatchItem};
use swarm_types::{
    Annotations, Meta, Node, ProcessSpec, Runtime, Service, ServiceMode, ServiceSpec, Task,
    TaskSpec, TaskState, TaskStatus, new_id,
};

fn task_spec() -> TaskSpec {
    TaskSpec {
        runtime: Runtime::Process(ProcessSpec {
            command: "sleep".into(),
            args: vec!["1000".into()],
            ..Default::default()
        }),
        resources: Default::default(),
        restart: Default::default(),
        placement: Default::default(),
        force_update: 0,
        secrets: vec![],
        configs: vec![],
    }
}

fn row(what: &str, count: usize, took: Duration) {
    let per = took.as_nanos() as f64 / count.max(1) as f64;
    println!(
        "{what:<52} {count:>8} {:>10.1} ms {per:>9.0} ns/op",
        took.as_secs_f64() * 1e3
    );
}

fn main() -> Result<(), StoreError> {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let batch_size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let store = MemoryStore::new();
    let mut watcher = store.watch();

    let service = Service {
        id: new_id(),
        meta: Meta::default(),
        spec: ServiceSpec {
            annotations: Annotations {
                name: "bench".into(),
                labels: Default::default(),
            },
            task: task_spec(),
            mode: ServiceMode::Replicated {
                replicas: tasks as u64,
            },
            executor: String::new(),
        },
        spec_version: 1,
    };
    let nodes: Vec<Node> = (0..1000)
        .map(|_| Node {
            id: new_id(),
            ..Default::default()
        })
        .collect();
    let mut setup = vec![Action::Create(service.clone().into())];
    setup.extend(nodes.iter().map(|n| Action::Create(n.clone().into())));
    store.apply(1, Batch::new(setup))?;

    println!(
        "{:<52} {:>8} {:>13} {:>15}",
        "operation", "count", "total", "per object"
    );
    // What this machine does with plain std collections of the same ids, for scale.
    let sample: Vec<String> = (0..tasks).map(|_| new_id()).collect();
    let start = Instant::now();
    let mut baseline = std::collections::BTreeSet::new();
    for id in &sample {
        baseline.insert(id.clone());
    }
    row(
        "baseline: BTreeSet<String> insert (same ids)",
        tasks,
        start.elapsed(),
    );
    let start = Instant::now();
    let hits = sample.iter().filter(|id| baseline.contains(*id)).count();
    row("baseline: BTreeSet<String> lookup", hits, start.elapsed());
    drop(baseline);
    let new_tasks: Vec<Action> = (1..=tasks as u64)
        .map(|slot| {
            Action::Create(
                Task {
                    id: new_id(),
                    meta: Meta::default(),
                    annotations: Annotations {
                        name: format!("bench.{slot}"),
                        labels: Default::default(),
                    },
                    service_id: service.id.clone(),
                    slot,
                    node_id: String::new(),
                    spec: task_spec(),
                    spec_version: 1,
                    executor: String::new(),
                    desired_state: TaskState::Running,
                    status: TaskStatus {
                        state: TaskState::Pending,
                        ..Default::default()
                    },
                }
                .into(),
            )
        })
        .collect();
    let start = Instant::now();
    store.apply(2, Batch::new(new_tasks))?;
    row("apply: create tasks, one batch", tasks, start.elapsed());

    // Assign every task to a node, `batch_size` tasks per proposal, as the scheduler would.
    let ids: Vec<String> = store.view(|tx| tx.tasks().map(|t| t.id.clone()).collect());
    let (mut building, mut applying) = (Duration::ZERO, Duration::ZERO);
    for (n, chunk) in ids.chunks(batch_size).enumerate() {
        let start = Instant::now();
        let ((), batch) = store.build(|tx| {
            for (i, id) in chunk.iter().enumerate() {
                let Some(t) = tx.task(id) else { continue };
                let mut t = (**t).clone();
                t.node_id = nodes[(n * batch_size + i) % nodes.len()].id.clone();
                t.status.state = TaskState::Assigned;
                tx.update(t)?;
            }
            Ok::<_, StoreError>(())
        })?;
        building += start.elapsed();
        let start = Instant::now();
        store.apply(store.last_index() + 1, batch)?;
        applying += start.elapsed();
    }
    row(
        &format!("build: assign tasks, batches of {batch_size}"),
        tasks,
        building,
    );
    row(
        &format!("apply: assign tasks, batches of {batch_size}"),
        tasks,
        applying,
    );

    let start = Instant::now();
    let per_node = store.view(|tx| {
        nodes
            .iter()
            .map(|n| tx.tasks_by_node(&n.id).count())
            .sum::<usize>()
    });
    row(
        "read: tasks_by_node over all nodes",
        per_node,
        start.elapsed(),
    );

    let start = Instant::now();
    let snapshot = store.snapshot();
    row(
        "snapshot (Arc copies)",
        snapshot.tasks.len(),
        start.elapsed(),
    );
    let start = Instant::now();
    let other = MemoryStore::new();
    other.restore(snapshot);
    row(
        "restore (rebuild tables and indexes)",
        tasks,
        start.elapsed(),
    );

    let mut events = 0;
    while let Ok(Some(item)) = watcher.try_recv() {
        if let WatchItem::Changes(set) = item {
            events += set.events.len();
        }
    }
    println!(
        "watcher received {events} events; store at index {}",
        store.last_index()
    );
    Ok(())
}
