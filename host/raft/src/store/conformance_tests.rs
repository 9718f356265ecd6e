//! openraft's storage conformance suite run against the log store and the state machine, and
//! the state machine's wait for durable entries.

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

/// The state machine applies an entry only once the local log holds it on disk: with the syncer
/// held back, an apply waits; a sync lets it through.
#[tokio::test]
async fn entries_are_applied_only_once_durable() {
    use openraft::CommittedLeaderId;
    use openraft::EntryPayload;
    use openraft::storage::RaftStateMachine;

    use crate::store::codec;
    use crate::store::wal::Wal;
    use crate::types::CommandBatch;
    use crate::types::Entry;
    use crate::types::LogId;

    let dir = TempDir::new().expect("temp dir");
    let mut wal = Wal::open(&dir.path().join("wal"), None).expect("open wal");
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(CommandBatch {
            commands: vec![b"set x".to_vec()],
        }),
    };
    wal.append(&[(1, codec::encode_entry(&entry).expect("encode"))])
        .expect("append");
    let app = Arc::new(RecordingApp::default());
    let mut sm = StateMachineStore::open(
        dir.path().join(SNAPSHOT_DIR_NAME),
        app.clone(),
        None,
        wal.durable_watch(),
    )
    .expect("open state machine");

    let mut apply = Box::pin(sm.apply(vec![entry]));
    let waited = tokio::time::timeout(std::time::Duration::from_millis(200), &mut apply).await;
    assert!(waited.is_err(), "applied before the entry was durable");
    assert!(app.applied.lock().expect("lock").is_empty());

    wal.sync().expect("sync");
    let responses = tokio::time::timeout(std::time::Duration::from_secs(10), apply)
        .await
        .expect("applied once durable")
        .expect("apply");
    assert_eq!(responses.len(), 1);
    assert_eq!(app.applied.lock().expect("lock").len(), 1);
}
