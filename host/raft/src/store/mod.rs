//! Durable storage for openraft: the log store (WAL segments and redb), the state machine over the application and
//! its snapshot files.

pub(crate) mod cipher;
pub(crate) mod codec;
mod log_store;
mod snapshot_files;
mod state_machine;
pub(crate) mod wal;

#[cfg(test)]
mod conformance_tests;

pub use log_store::LOG_FILE_NAME;
pub(crate) use log_store::LogStore;
pub(crate) use log_store::open_database;
pub(crate) use log_store::sync_database;
pub(crate) use snapshot_files::SNAPSHOT_DIR_NAME;
pub(crate) use state_machine::StateMachineStore;
pub(crate) use wal::DurableWatch;
