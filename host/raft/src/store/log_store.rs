//! Durable raft log: entries in WAL segment files ([`wal`](crate::store::wal)), the vote and the
//! purge point in one redb file (`raft.redb`), the committed pointer in `wal/committed`.
//!
//! Appends are written, then openraft hears at once that they are flushed, and the WAL's syncer
//! `fdatasync`s them behind (one sync for every append made meanwhile). openraft 0.9 sends a
//! leader's new entries to followers only after that answer, so this lets the leader's own sync
//! run alongside the followers' (Raft thesis 10.2.1; etcd does the same) instead of before them.
//! openraft's "flushed" may then run ahead of the disk, so nothing that leaves this node or
//! outlives the process depends on an entry until [`DurableWatch`] says it is on disk:
//! - a follower answers an AppendEntries only once the entries it took are durable
//!   (`network::RaftService`), so a leader counts a follower's copy only when it is on disk;
//! - a leader tells followers a commit index only once its own log is durable up to it
//!   (`network::PeerClient`);
//! - the state machine applies an entry (so a client hears of it, and snapshots hold it) only
//!   once it is durable locally (`state_machine.rs`), and the committed pointer is saved only up
//!   to what is durable.
//!
//! A leader counts its own copy toward a quorum before syncing it, but no client hears of a
//! commit before the leader's copy and a quorum's worth of followers' copies are on disk. Two
//! things openraft 0.9 would otherwise get wrong after a power cut: a leader's vote for itself is
//! stored committed, so it would restart as leader in the same term on a log missing entries
//! its followers hold, and give one of their indexes a different entry;
//! [`LogStore::stand_for_election`] reads such a vote back as not committed, so the node has to
//! win a new term on the log actually on disk. And a candidate's vote request may claim entries
//! not yet synced; if it then loses them, the same rule makes it run again on its real log,
//! and voters judge that one. Entries lost that way were never acknowledged.
//!
//! A failed sync stops the log for good (every waiter gets the error). The vote is committed with
//! `Durability::Immediate`, and so is the purge point, before the segments it covers are deleted.
//! The committed pointer is overwritten in place on every commit without
//! fsync (openraft awaits it before each apply, so it must cost microseconds, not a
//! transaction); it survives a killed process, and losing it to a machine crash is harmless: it
//! only spares replaying committed entries at start, which the leader commits again. Logs written
//! by earlier versions kept their entries (and the pointer) in redb; they move on open.

use std::fmt::Debug;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::StorageIOError;
use openraft::storage::LogFlushed;
use openraft::storage::RaftLogStorage;
use redb::Database;
use redb::Durability;
use redb::ReadableDatabase;
use redb::ReadableTable;
use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::cipher::Sealer;
use crate::store::codec;
use crate::store::wal::DurableWatch;
use crate::store::wal::Syncer;
use crate::store::wal::WAL_DIR_NAME;
use crate::store::wal::Wal;
use crate::store::wal::WalError;
use crate::store::wal::spawn_syncer;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::StorageError;
use crate::types::TypeConfig;
use crate::types::Vote;

/// Log entries by index, encoded by [`codec`], as versions before the WAL kept them.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small JSON values: the vote, the last purged log id, and (before `wal/committed`, and at a
/// force-new-cluster) the committed log id.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// The raft log database inside the raft directory.
pub const LOG_FILE_NAME: &str = "raft.redb";

/// Opens (or creates) the raft database and makes sure its tables exist.
pub(crate) fn open_database(path: &Path) -> Result<Arc<Database>, redb::Error> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    {
        txn.open_table(LOG)?;
        txn.open_table(META)?;
    }
    txn.commit()?;
    Ok(Arc::new(db))
}

/// Makes every earlier non-durable commit durable (used on shutdown).
pub(crate) fn sync_database(db: &Database) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(())
}

/// openraft's log storage. Cheap to clone: readers share the segments and the database.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
    wal: Arc<Mutex<Wal>>,
    syncer: Syncer,
    durable: DurableWatch,
    committed: Arc<CommittedFile>,
    /// Seals entries at rest when the node has a key.
    sealer: Option<Sealer>,
}

impl LogStore {
    /// Opens the segments under `raft_dir` next to `db` (blocking), moving entries an earlier
    /// version kept in redb into them.
    pub(crate) fn open(
        raft_dir: &Path,
        db: Arc<Database>,
        sealer: Option<Sealer>,
    ) -> Result<Self, String> {
        let open = || -> Result<Self, WriteError> {
            let purged: Option<LogId> = read_meta(&db, KEY_LAST_PURGED)?;
            let wal_dir = raft_dir.join(WAL_DIR_NAME);
            let mut wal = Wal::open(&wal_dir, purged.map(|p| p.index))?;
            migrate_redb_entries(&db, &mut wal, purged.map(|p| p.index))?;
            let committed = CommittedFile::open(&wal_dir.join(COMMITTED_FILE_NAME))?;
            let durable = wal.durable_watch();
            let wal = Arc::new(Mutex::new(wal));
            let syncer = spawn_syncer(wal.clone())?;
            Ok(Self {
                db,
                wal,
                syncer,
                durable,
                committed: Arc::new(committed),
                sealer,
            })
        };
        open().map_err(|e| e.to_string())
    }

    /// Waits for entries to be on disk (see the module documentation).
    pub(crate) fn durable_watch(&self) -> DurableWatch {
        self.durable.clone()
    }

    /// Makes every written entry durable now (blocking; at shutdown).
    pub(crate) fn sync(&self) -> Result<(), String> {
        self.wal.lock().sync().map_err(|e| e.to_string())
    }

    /// Checks that the newest entry can be read with this store's key (or lack of one), so a
    /// wrong key fails the start with a clear message instead of later inside openraft.
    pub(crate) fn check_readable(&self) -> Result<(), String> {
        let read = || -> Result<(), WriteError> {
            if let Some(bytes) = self.wal.lock().read_last()? {
                codec::decode_stored(&bytes, self.sealer.as_ref())?;
            }
            Ok(())
        };
        read().map_err(|e| e.to_string())
    }

    /// Reads back this node's own committed vote (it led in that term) as not committed, so
    /// openraft starts it as a follower that must win an election on the log that is actually
    /// on disk, instead of as leader in the old term (blocking; before openraft starts).
    /// Returns the term it led in, if it did.
    ///
    /// Needed because appends are reported flushed before they are synced: a leader that lost
    /// power may have lost entries its followers hold, and leading again in the same term it
    /// could give one of their indexes another entry. A new term rules that out (Raft's
    /// election restriction then compares real logs). A single voter elects itself at once.
    pub(crate) fn stand_for_election(&self, node_id: u64) -> Result<Option<u64>, String> {
        let run = || -> Result<Option<u64>, WriteError> {
            let vote: Option<Vote> = read_meta(&self.db, KEY_VOTE)?;
            let Some(vote) = vote else { return Ok(None) };
            if !vote.is_committed() || vote.leader_id().voted_for() != Some(node_id) {
                return Ok(None);
            }
            let term = vote.leader_id().get_term();
            let reopened = Vote::new(term, node_id);
            commit(&self.db, Durability::Immediate, |txn| {
                put_meta(txn, KEY_VOTE, &reopened)
            })?;
            Ok(Some(term))
        };
        run().map_err(|e| e.to_string())
    }

    /// The vote and every entry after `after` (blocking; used by force-new-cluster before
    /// openraft starts).
    pub(crate) fn read_for_recovery(
        &self,
        after: Option<u64>,
    ) -> Result<(Option<Vote>, Vec<Entry>), String> {
        let read = || -> Result<(Option<Vote>, Vec<Entry>), WriteError> {
            let vote: Option<Vote> = read_meta(&self.db, KEY_VOTE)?;
            let start = match after {
                Some(index) => Bound::Excluded(index),
                None => Bound::Unbounded,
            };
            Ok((vote, self.read_entries((start, Bound::Unbounded))?))
        };
        read().map_err(|e| e.to_string())
    }

    /// Empties the log as if purged up to `purged` (which a snapshot covers), records it as
    /// committed and saves `vote` (blocking; force-new-cluster). The pointers are durable before
    /// the segments go, so a crash in between leaves only entries the purge point skips.
    pub(crate) fn reset_after_snapshot(&self, purged: LogId, vote: Vote) -> Result<(), String> {
        let write = || -> Result<(), WriteError> {
            commit(&self.db, Durability::Immediate, |txn| {
                put_meta(txn, KEY_LAST_PURGED, &purged)?;
                put_meta(txn, KEY_COMMITTED, &Some(purged))?;
                put_meta(txn, KEY_VOTE, &vote)
            })?;
            self.committed.save(Some(purged))?;
            self.committed.sync()?;
            self.wal.lock().clear()?;
            Ok(())
        };
        write().map_err(|e| e.to_string())
    }

    fn read_entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, WriteError> {
        let stored = self.wal.lock().read(range)?;
        stored
            .iter()
            .map(|bytes| Ok(codec::decode_stored(bytes, self.sealer.as_ref())?))
            .collect()
    }

    /// Runs `work` on the blocking pool.
    async fn blocking<F>(&self, work: F) -> Result<(), WriteError>
    where
        F: FnOnce(&Database, &Mutex<Wal>) -> Result<(), WriteError> + Send + 'static,
    {
        let db = self.db.clone();
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || work(&db, &wal))
            .await
            .map_err(|e| WriteError::Blocking(e.to_string()))?
    }
}

/// The committed pointer's file inside the WAL directory.
const COMMITTED_FILE_NAME: &str = "committed";
/// `present:u8 term:u64le leader:u64le index:u64le crc32:u32le` (crc over the first 25 bytes).
const COMMITTED_LEN: usize = 29;

/// The committed log id, overwritten in place (one `pwrite`, no fsync).
struct CommittedFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl CommittedFile {
    fn open(path: &Path) -> Result<Self, WalError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| WalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> WalError + '_ {
        move |source| WalError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn save(&self, committed: Option<LogId>) -> Result<(), WalError> {
        use std::os::unix::fs::FileExt;
        let mut record = [0u8; COMMITTED_LEN];
        if let Some(log_id) = committed {
            record[0] = 1;
            record[1..9].copy_from_slice(&log_id.leader_id.term.to_le_bytes());
            record[9..17].copy_from_slice(&log_id.leader_id.node_id.to_le_bytes());
            record[17..25].copy_from_slice(&log_id.index.to_le_bytes());
        }
        let crc = crc32fast::hash(&record[..25]);
        record[25..].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&record, 0).map_err(self.io())
    }

    fn sync(&self) -> Result<(), WalError> {
        self.file.sync_data().map_err(self.io())
    }

    /// The saved pointer; `None` when nothing valid was saved (a new file, or one torn by a
    /// machine crash), and the caller falls back to what redb holds.
    fn load(&self) -> Option<Option<LogId>> {
        use std::os::unix::fs::FileExt;
        let mut record = [0u8; COMMITTED_LEN];
        self.file.read_exact_at(&mut record, 0).ok()?;
        let crc = u32::from_le_bytes(record[25..].try_into().ok()?);
        if crc32fast::hash(&record[..25]) != crc {
            return None;
        }
        if record[0] == 0 {
            return Some(None);
        }
        let field = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(record[at..at + 8].try_into().ok()?))
        };
        Some(Some(LogId::new(
            openraft::CommittedLeaderId::new(field(1)?, field(9)?),
            field(17)?,
        )))
    }
}

/// Moves the entries of a log written before the WAL existed into `wal` (once: the redb table is
/// emptied after the segments are on disk; a crash in between finds them in both and keeps the
/// segments').
fn migrate_redb_entries(
    db: &Database,
    wal: &mut Wal,
    purged: Option<u64>,
) -> Result<(), WriteError> {
    let txn = db.begin_read().map_err(redb::Error::from)?;
    let table = txn.open_table(LOG).map_err(redb::Error::from)?;
    if table.first().map_err(redb::Error::from)?.is_none() {
        return Ok(());
    }
    if wal.bounds().is_none() {
        let mut records = Vec::new();
        for item in table.iter().map_err(redb::Error::from)? {
            let (index, value) = item.map_err(redb::Error::from)?;
            if purged.is_none_or(|p| index.value() > p) {
                records.push((index.value(), value.value().to_vec()));
            }
        }
        wal.append(&records)?;
        wal.sync()?;
        tracing::info!(
            entries = records.len(),
            "moved the raft log's entries from raft.redb into segment files"
        );
    }
    drop(table);
    drop(txn);
    commit(db, Durability::Immediate, |txn| {
        let mut table = txn.open_table(LOG).map_err(redb::Error::from)?;
        table
            .retain_in::<u64, _>(.., |_, _| false)
            .map_err(redb::Error::from)?;
        Ok(())
    })
}

/// One write transaction committed with `durability`.
fn commit<F>(db: &Database, durability: Durability, write: F) -> Result<(), WriteError>
where
    F: FnOnce(&redb::WriteTransaction) -> Result<(), WriteError>,
{
    let mut txn = db.begin_write().map_err(redb::Error::from)?;
    txn.set_durability(durability).map_err(redb::Error::from)?;
    write(&txn)?;
    txn.commit().map_err(redb::Error::from)?;
    Ok(())
}

fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let Some(value) = table.get(key)? else {
        return Ok(None);
    };
    let parsed = serde_json::from_slice(value.value())
        .map_err(|e| redb::Error::Corrupted(format!("raft meta {key}: {e}")))?;
    Ok(Some(parsed))
}

/// Why a write failed; converted to openraft's `StorageError` with the right subject.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    #[error("encoding raft metadata: {0}")]
    Json(#[from] serde_json::Error),
    #[error("storage task failed: {0}")]
    Blocking(String),
}

fn put_meta<T: Serialize>(
    txn: &redb::WriteTransaction,
    key: &str,
    value: &T,
) -> Result<(), WriteError> {
    let bytes = serde_json::to_vec(value)?;
    let mut table = txn.open_table(META).map_err(redb::Error::from)?;
    table
        .insert(key, bytes.as_slice())
        .map_err(redb::Error::from)?;
    Ok(())
}

fn owned_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(owned_bounds(&range))
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = || -> Result<LogState<TypeConfig>, WriteError> {
            let last_purged_log_id: Option<LogId> = read_meta(&self.db, KEY_LAST_PURGED)?;
            let last_in_log = match self.wal.lock().read_last()? {
                Some(bytes) => Some(codec::decode_log_id(&bytes)?),
                None => None,
            };
            Ok(LogState {
                last_log_id: last_in_log.or(last_purged_log_id),
                last_purged_log_id,
            })
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db, _| {
            commit(db, Durability::Immediate, |txn| {
                put_meta(txn, KEY_VOTE, &vote)
            })
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        read_meta(&self.db, KEY_VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Never ahead of the durable log, but not fsync'd itself: see the module documentation.
        if let Some(log_id) = committed {
            self.durable
                .wait(log_id.index)
                .await
                .map_err(|e| StorageIOError::write(&WriteError::from(WalError::Failed(e))))?;
        }
        self.committed
            .save(committed)
            .map_err(|e| StorageIOError::write(&WriteError::from(e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(committed) = self.committed.load() {
            return Ok(committed);
        }
        let committed: Option<Option<LogId>> =
            read_meta(&self.db, KEY_COMMITTED).map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let sealer = self.sealer.clone();
        let encoded = entries
            .into_iter()
            .map(|entry| {
                Ok((
                    entry.log_id.index,
                    codec::encode_stored(&entry, sealer.as_ref())?,
                ))
            })
            .collect::<Result<Vec<(u64, Vec<u8>)>, codec::CodecError>>();
        // A write into the page cache, done in place: a hop to the blocking pool cost more
        // (about 60 us per append, measured) than the write. Starting a new segment (every 32
        // MiB) also allocates and syncs it here.
        let result = match encoded {
            Ok(encoded) => self.wal.lock().append(&encoded).map_err(WriteError::from),
            Err(e) => Err(WriteError::Codec(e)),
        };
        // Written, not yet synced: openraft hears of it now and the syncer catches up (see the
        // module documentation for who waits for the sync, and why that is safe).
        if result.is_ok() {
            self.syncer.wake();
        }
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let since = log_id.index;
        self.blocking(move |_, wal| Ok(wal.lock().truncate(since)?))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let upto = log_id.index;
        // The purge point is durable before any segment goes: a crash in between leaves entries
        // that the next open skips, never a log that starts after a gap.
        self.blocking(move |db, wal| {
            commit(db, Durability::Immediate, |txn| {
                put_meta(txn, KEY_LAST_PURGED, &log_id)
            })?;
            Ok(wal.lock().purge(upto)?)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;
    use openraft::EntryPayload;

    use super::*;
    use crate::types::CommandBatch;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(CommandBatch {
                commands: vec![format!("command {index}").into_bytes()],
            }),
        }
    }

    #[test]
    fn entries_an_earlier_version_kept_in_redb_move_to_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_database(&dir.path().join(LOG_FILE_NAME)).expect("open redb");
        // What an earlier version left: entries 1-5 in the LOG table, 1-2 purged.
        commit(&db, Durability::Immediate, |txn| {
            let mut table = txn.open_table(LOG).map_err(redb::Error::from)?;
            for index in 1..=5 {
                let bytes = codec::encode_stored(&entry(index), None)?;
                table
                    .insert(index, bytes.as_slice())
                    .map_err(redb::Error::from)?;
            }
            drop(table);
            put_meta(txn, KEY_LAST_PURGED, &entry(2).log_id)
        })
        .expect("old layout");

        let store = LogStore::open(dir.path(), db.clone(), None).expect("open");
        let indexes = |store: &LogStore| -> Vec<u64> {
            store
                .read_entries((Bound::Unbounded, Bound::Unbounded))
                .expect("read")
                .iter()
                .map(|e| e.log_id.index)
                .collect()
        };
        assert_eq!(indexes(&store), [3, 4, 5]);
        let txn = db.begin_read().expect("read txn");
        let table = txn.open_table(LOG).expect("table");
        assert!(
            table.first().expect("first").is_none(),
            "redb table emptied"
        );
        drop(table);
        drop(txn);
        drop(store);

        // Opening again finds them in the segments only.
        let store = LogStore::open(dir.path(), db, None).expect("reopen");
        assert_eq!(indexes(&store), [3, 4, 5]);
    }

    #[tokio::test]
    async fn the_committed_pointer_survives_a_reopen_and_a_torn_one_falls_back_to_redb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_database(&dir.path().join(LOG_FILE_NAME)).expect("open redb");
        let mut store = LogStore::open(dir.path(), db.clone(), None).expect("open");
        assert_eq!(store.read_committed().await.expect("read"), None);
        store
            .save_committed(Some(entry(7).log_id))
            .await
            .expect("save");
        drop(store);
        let mut store = LogStore::open(dir.path(), db.clone(), None).expect("reopen");
        assert_eq!(
            store.read_committed().await.expect("read"),
            Some(entry(7).log_id)
        );
        drop(store);

        // A torn pointer (a machine crash mid-write) is ignored in favour of redb's older one.
        commit(&db, Durability::Immediate, |txn| {
            put_meta(txn, KEY_COMMITTED, &Some(entry(3).log_id))
        })
        .expect("redb pointer");
        let path = dir.path().join(WAL_DIR_NAME).join(COMMITTED_FILE_NAME);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[17] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
        let mut store = LogStore::open(dir.path(), db, None).expect("reopen");
        assert_eq!(
            store.read_committed().await.expect("read"),
            Some(entry(3).log_id)
        );
    }

    #[tokio::test]
    async fn only_a_committed_vote_for_this_node_is_read_back_as_uncommitted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_database(&dir.path().join(LOG_FILE_NAME)).expect("open redb");
        let mut store = LogStore::open(dir.path(), db, None).expect("open");
        assert_eq!(store.stand_for_election(1).expect("no vote yet"), None);

        // A vote for another node, committed or not, and this node's own uncommitted vote (a
        // candidacy) stay as they are.
        for vote in [Vote::new_committed(4, 2), Vote::new(4, 2), Vote::new(5, 1)] {
            store.save_vote(&vote).await.expect("save");
            assert_eq!(store.stand_for_election(1).expect("read"), None);
            assert_eq!(store.read_vote().await.expect("read"), Some(vote));
        }

        // It led in term 6: it has to win a term again.
        store
            .save_vote(&Vote::new_committed(6, 1))
            .await
            .expect("save");
        assert_eq!(store.stand_for_election(1).expect("read"), Some(6));
        let vote = store.read_vote().await.expect("read").expect("a vote");
        assert_eq!(vote, Vote::new(6, 1));
        assert!(!vote.is_committed());
        assert_eq!(store.stand_for_election(1).expect("again"), None);
    }
}
