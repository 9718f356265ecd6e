//! openraft's storage conformance suite run against the log store and the state machine.

use std::sync::Arc;
use std::sync::Mutex;

use openraft::testing::StoreBuilder;
use openraft::testing::Suite;
use tempfile::TempDir;

use crate::StateMachineApp;
use crate::store::LOG_FILE_NAME;
use crate::store::LogStore;
use crate::store::SNAPSHOT_DIR_NAME;
use crate::store::StateMachineStore;
use crate::store::cipher::Sealer;
use crate::store::open_database;
use crate::types::StorageError;
use crate::types::TypeConfig;

/// A trivial application: remembers the commands it applied.
#[derive(Default)]
struct RecordingApp {
    applied: Mutex<Vec<Vec<u8>>>,
}

impl StateMachineApp for RecordingApp {
    fn apply(&self, _index: u64, command: &[u8]) -> Vec<u8> {
        let mut applied = self.applied.lock().expect("lock");
        applied.push(command.to_vec());
        applied.len().to_string().into_bytes()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.applied.lock().expect("lock")).expect("encode")
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let restored: Vec<Vec<u8>> = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
        *self.applied.lock().expect("lock") = restored;
        Ok(())
    }
}

/// Builds stores, encrypted at rest when `key` is set.
struct Builder {
    key: Option<[u8; 32]>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let db = open_database(&dir.path().join(LOG_FILE_NAME)).expect("open redb");
        let app: Arc<dyn StateMachineApp> = Arc::new(RecordingApp::default());
        let sealer = self.key.as_ref().map(Sealer::new);
        let log = LogStore::open(dir.path(), db, sealer.clone()).expect("open log");
        let sm = StateMachineStore::open(
            dir.path().join(SNAPSHOT_DIR_NAME),
            app,
            sealer,
            log.durable_watch(),
        )
        .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder { key: None }).expect("openraft storage conformance suite");
}

#[test]
fn openraft_storage_suite_encrypted() {
    Suite::test_all(Builder { key: Some([5; 32]) })
        .expect("openraft storage conformance suite, encrypted at rest");
}
