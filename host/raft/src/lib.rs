//! swarm-raft: a generic raft layer (openraft 0.9; log in WAL segments, vote in redb) replicating
//! opaque commands.
//!
//! The layer knows nothing of the store's types: a [`StateMachineApp`] applies committed command
//! bytes and serialises its whole state for snapshots. [`RaftNode`] owns the durable log, the
//! snapshots and the openraft instance, and offers one way to change state: [`RaftNode::propose`],
//! which resolves once the command is committed and applied.
//!
//! Layout (openraft's example layout): `store/` holds the log store, the state machine and the
//! snapshot files; `network/` the raft network over tonic (`swarm.v1.Raft`): the client openraft
//! reaches peers with, through a [`ChannelMaker`] the caller chooses (plaintext or mutual TLS),
//! and the service the caller serves ([`RaftNode::grpc_service`]; this crate binds no socket).
//! AppendEntries may instead go on append lanes (one framed connection per peer) when the
//! caller gives a [`StreamMaker`] and serves [`RaftNode::append_lane_service`].
//! Snapshots travel in chunks of 1 MiB; an AppendEntries carries at most
//! [`APPEND_ENTRIES_BUDGET_BYTES`] of entries (or one larger entry); a command is at most
//! [`MAX_COMMAND_BYTES`] so that every entry fits in a message.
//!
//! Membership: a node starts uninitialised unless bootstrapped; the leader adds it
//! ([`RaftNode::add_learner`], which waits until it caught up), then promotes, demotes, removes
//! it or records a new address. Leader reads go through [`RaftNode::ensure_linearizable`].
//!
//! Invariants:
//! - The vote is fsync'd (redb `Durability::Immediate`) before openraft learns it is stored. Log
//!   entries are written to WAL segments and openraft hears at once that they are flushed (the
//!   sync follows), but nothing depends on an entry outside this node (a follower's answer, a
//!   commit index sent, an apply, the saved committed pointer) before it is synced, and a node
//!   that led restarts as a candidate for a new term, never as leader of its old one; a
//!   snapshot is fsync'd and renamed into place before older ones are removed.
//! - After a crash, a restart restores the newest snapshot and re-applies the committed entries
//!   after it: the application sees exactly the committed commands, in log order, once each.
//! - Concurrent proposals may share one log entry (and index); the application applies them in
//!   order, one by one.
//! - Nothing a peer sends panics the node or makes it allocate beyond the message: requests are
//!   decoded and checked (entries in sequence, snapshot chunks not skipping ahead) before
//!   openraft sees them, and answers contradicting their request are network errors.

mod config;
mod error;
mod network;
mod node;
mod store;
mod types;

pub mod bench;

pub use config::RaftConfig;
pub use error::RaftError;
pub use network::stream::{APPEND_STREAM_ALPN, BoxedStream, PeerStream, StreamMaker};
pub use network::{
    APPEND_ENTRIES_BUDGET_BYTES, ChannelMaker, MAX_COMMAND_BYTES, MAX_RAFT_MESSAGE_BYTES,
    RaftService, plain_channels,
};
pub use node::RaftMember;
pub use node::RaftNode;
pub use node::RaftRole;
pub use node::RaftStatus;
pub use store::LOG_FILE_NAME;

/// The replicated application: applies committed commands deterministically.
pub trait StateMachineApp: Send + Sync + 'static {
    /// Applies the command committed at `index` and returns the response bytes (an error is
    /// encoded by the application in the bytes). Commands proposed concurrently may share an
    /// index; they are applied in order.
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8>;
    /// Serialises the whole application state (called for snapshots, between two applies).
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot's.
    fn restore(&self, snapshot: &[u8]) -> Result<(), String>;
}
