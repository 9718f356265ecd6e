//! Integration tests of swarm-raft: one test binary, one module per area.

mod common;
mod crash;
mod multi;
mod partition;
mod propose;
mod recovery;
mod restart;
mod snapshot;
