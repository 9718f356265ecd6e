//! `swarmctl`: the operators' command line for a swarm cluster. It talks to one manager's
//! control API (gRPC over the manager's unix socket) and prints tables for people or JSON for
//! programs.
//!
//! *Architecture invariant*: swarmctl speaks only the public control API (`swarm-proto`'s
//! `Control` client) and reads answers as `swarm-types` objects; it never touches the store, raft
//! or a node directly.
//!
//! *API boundary*: `--format json` prints `swarm-types` objects as serde serializes them (lists as
//! a JSON array, inspect as one object); tables are for people and may change.
//!
//! Failures are [`CliError`]s inside `anyhow::Error`: exit status 1 for a user error (bad input,
//! an unknown object, a request the manager refused, with the manager's message as it is) and 2
//! when the manager cannot be reached or fails.

pub mod cli;
mod client;
mod commands;
mod error;
mod parse;
mod render;
mod resolve;

use std::io::Write;

pub use error::CliError;

use crate::cli::{Cli, Command};
use crate::commands::Context;

/// Run one parsed command line, writing results to `out` and task logs' stderr to `err`.
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let context = Context {
        socket: cli.socket,
        timeout: cli.timeout,
        format: cli.format,
    };
    match cli.command {
        Command::Version => writeln!(out, "swarmctl {}", env!("CARGO_PKG_VERSION"))?,
        Command::Node(command) => commands::node::run(&context, command, out).await?,
        Command::Service(command) => commands::service::run(&context, command, out, err).await?,
        Command::Task(command) => commands::task::run(&context, command, out, err).await?,
        Command::Cluster(command) => commands::cluster::run(&context, command, out).await?,
        Command::Plugin(command) => commands::plugin::run(&context, command, out, err).await?,
        Command::Secret(command) => {
            commands::data::run(&context, swarm_types::DataKind::Secret, command, out, err).await?
        }
        Command::Config(command) => {
            commands::data::run(&context, swarm_types::DataKind::Config, command, out, err).await?
        }
    }
    Ok(())
}

/// The exit status for a failure: the [`CliError`] in its chain decides; other errors are 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<CliError>())
        .map_or(1, CliError::exit_code)
}
