//! Integration tests of swarm-store through its public API: one binary, one module per area.

mod indexes;
mod plugins;
mod rules;
mod secrets;
mod snapshot;
mod support;
mod tidy;
mod watch;
mod write_tx;
