//! swarm-bench: benchmark workloads (placeholder).
fn main() {}
