//! End-to-end suites: a real `swarmd` process, driven by the real `swarmctl` binary, running
//! real processes and WASI components.

mod errors;
mod recovery;
mod runtimes;
mod tour;
