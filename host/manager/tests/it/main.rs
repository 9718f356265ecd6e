//! Integration tests of swarm-manager: one binary, one module per area. Loops run as tasks
//! against a store committed through `DirectCommitter` (or raft where raft is the subject);
//! services are served over real gRPC; the scheduler driver drives the real scheduler plugin.

mod control;
mod dispatcher;
mod orchestrator;
mod plugins;
mod raft;
mod scheduler;
mod support;
mod tidy;
