//! The openraft type configuration: what a log entry carries and what applying it returns.

use std::fmt;
use std::io::Cursor;

use serde::Deserialize;
use serde::Serialize;

/// Opaque application commands proposed together and committed as one raft log entry.
///
/// openraft 0.9 appends and flushes every client write separately, so grouping concurrent
/// proposals into one entry is what lets them share one fsync. The state machine hands the
/// commands to the application one by one, in order.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommandBatch {
    pub(crate) commands: Vec<Vec<u8>>,
}

impl fmt::Debug for CommandBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes: usize = self.commands.iter().map(Vec::len).sum();
        write!(
            f,
            "CommandBatch({} commands, {bytes} bytes)",
            self.commands.len()
        )
    }
}

/// The application's responses for one applied entry: one per command of its batch (none for
/// blank and membership entries).
pub(crate) type BatchResponse = Vec<Vec<u8>>;

openraft::declare_raft_types!(
    /// The raft types of swarm-raft: node ids are `u64`, nodes carry their address.
    pub(crate) TypeConfig:
        D = CommandBatch,
        R = BatchResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type NodeId = u64;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
