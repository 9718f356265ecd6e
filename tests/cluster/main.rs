//! End-to-end suites: a real `swarmd` process, driven by the real `swarmctl` binary, running
//! real processes and WASI components.

mod autolock;
mod docker;
mod errors;
mod history;
mod multi;
mod partition;
mod plugins;
mod recovery;
mod runtimes;
mod secrets;
mod security;
mod tour;
