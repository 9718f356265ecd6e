//! A thin layer over the store's watcher for the manager's loops: change sets, or "re-read
//! everything" after a lag or a snapshot restore.

use std::sync::Arc;

use swarm_store::{ChangeSet, WatchError, WatchItem, Watcher};

pub(crate) enum Update {
    Changes(Arc<ChangeSet>),
    /// Events were lost (lag) or the state was replaced (restore): re-read the store.
    Resync,
    /// The store is gone.
    Closed,
}

fn classify(r: Result<WatchItem, WatchError>) -> Update {
    match r {
        Ok(WatchItem::Changes(c)) => Update::Changes(c),
        Ok(WatchItem::Reset { .. }) | Err(WatchError::Lagged { .. }) => Update::Resync,
        Err(WatchError::Closed) => Update::Closed,
    }
}

/// Wait for the next update.
pub(crate) async fn next(watcher: &mut Watcher) -> Update {
    classify(watcher.recv().await)
}

/// Every update already queued, without waiting.
pub(crate) fn drain(watcher: &mut Watcher) -> Vec<Update> {
    let mut out = Vec::new();
    loop {
        match watcher.try_recv() {
            Ok(Some(item)) => out.push(classify(Ok(item))),
            Ok(None) => return out,
            Err(e) => {
                let u = classify(Err(e));
                let closed = matches!(u, Update::Closed);
                out.push(u);
                if closed {
                    return out;
                }
            }
        }
    }
}
