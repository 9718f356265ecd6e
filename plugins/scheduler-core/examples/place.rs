//! Times one group of 100,000 tasks over 1,000 nodes: `cargo run --release --example place`.

use std::time::Instant;

use swarm_scheduler_core::{Node, Placement, Resources, Scheduler, TaskGroup};

fn main() {
    let nodes: Vec<Node> = (0..1_000)
        .map(|i| {
            let mut node = Node::new(format!("node-{i:04}"));
            node.labels.push((
                "zone".into(),
                if i % 2 == 0 { "east" } else { "west" }.into(),
            ));
            node.total = Resources {
                nano_cpus: 64_000_000_000,
                memory_bytes: 256 << 30,
            };
            node.available = node.total;
            node
        })
        .collect();
    let mut scheduler = Scheduler::new();
    scheduler.update_nodes(nodes, &[]);
    let group = TaskGroup {
        service_id: "service".into(),
        task_ids: (0..100_000).map(|i| format!("task-{i:06}")).collect(),
        placement: Placement {
            runtime: "process".into(),
            reservations: Resources {
                nano_cpus: 1_000_000,
                memory_bytes: 1 << 20,
            },
            constraints: vec!["node.labels.zone!=north".into()],
            ..Placement::default()
        },
    };
    let start = Instant::now();
    let results = scheduler.schedule(vec![group]);
    let elapsed = start.elapsed();
    println!(
        "placed {} tasks ({} unplaced) on 1000 nodes in {:.1} ms",
        results[0].assignments.len(),
        results[0].unplaced.len(),
        elapsed.as_secs_f64() * 1e3
    );
}
