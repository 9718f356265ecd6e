//! The watch queue: every applied batch's [`ChangeSet`], in order, to every watcher.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::event::ChangeSet;

/// What a watcher receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// The changes of one applied batch. Batches arrive in raft order.
    Changes(Arc<ChangeSet>),
    /// The whole state was replaced by [`MemoryStore::restore`](crate::MemoryStore::restore)
    /// (now at raft `index`): anything derived from earlier reads is stale; re-read the store.
    Reset { index: u64 },
}

/// Why a watcher got no item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The watcher fell behind and the oldest `missed` change sets were dropped for it.
    ///
    /// The watcher keeps going from the oldest change set still queued. To recover, re-read
    /// the store (`view`, noting [`StoreRead::index`](crate::StoreRead::index)) and ignore
    /// change sets whose index is at or below the index read; or take a fresh pair with
    /// [`MemoryStore::view_and_watch`](crate::MemoryStore::view_and_watch).
    #[error(
        "watcher fell behind and missed {missed} change sets; re-read the store, then keep watching"
    )]
    Lagged { missed: u64 },
    /// The store was dropped; nothing more will come.
    #[error("the store was dropped")]
    Closed,
}

/// A subscription to the store's changes, from the moment it was taken.
/// Each watcher has its own bounded queue (see [`MemoryStore::with_watch_capacity`](crate::MemoryStore::with_watch_capacity)).
#[derive(Debug)]
pub struct Watcher {
    pub(crate) receiver: broadcast::Receiver<WatchItem>,
}

impl Watcher {
    /// Wait for the next item. Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Result<WatchItem, WatchError> {
        self.receiver.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(missed) => WatchError::Lagged { missed },
            broadcast::error::RecvError::Closed => WatchError::Closed,
        })
    }

    /// The next item if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<WatchItem>, WatchError> {
        match self.receiver.try_recv() {
            Ok(item) => Ok(Some(item)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Err(WatchError::Lagged { missed })
            }
            Err(broadcast::error::TryRecvError::Closed) => Err(WatchError::Closed),
        }
    }
}
