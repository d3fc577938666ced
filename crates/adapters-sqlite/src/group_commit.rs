//! Group commit of sends on the single writer: concurrent appends of plain
//! messages (no attachments, no `reply_to`) share one `begin immediate`
//! transaction.
//!
//! Every statement costs a round trip to the connection's worker thread,
//! so the one writer connection, one statement at a time, caps a lone
//! append per transaction at a little over a thousand per second. Here a
//! collector task takes whatever sends are waiting, up to [`MAX_BATCH`],
//! and appends them as one batch ([`crate::append`], the code path of every
//! send: a fixed number of rounds whatever the batch's size); while a batch
//! runs, the next one gathers.
//!
//! The guarantees of a lone append hold for each message:
//!
//! - `seq` is gap-free and follows arrival order: the writer transaction
//!   excludes every other writer, at most one send per conversation goes
//!   into a batch (the next waits for the next batch), and each reads its
//!   conversation's `last_seq` in the transaction.
//! - Idempotency: keys already stored replay their original.
//! - Per-send outcomes: a missing conversation fails that send only; any
//!   unexpected failure before the commit rolls the batch back and stores
//!   its messages one transaction each; a failed commit fails the batch's
//!   sends.

use chat_app::store_support::{self, Batch};

use crate::SqliteStore;

/// Most messages per transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Sends waiting for a batch before submitters wait too.
const QUEUE: usize = 8192;

/// Starts a group commit's collector task on the current runtime; it
/// appends through `store` (whose own group commit it never uses) and ends
/// when the last [`store_support::Submitter`] returned is dropped.
pub(crate) fn start(store: SqliteStore) -> store_support::Submitter {
    let (submitter, collector) = store_support::channel(QUEUE, MAX_BATCH);
    tokio::spawn(collect(store, collector));
    submitter
}

async fn collect(store: SqliteStore, mut collector: store_support::Collector) {
    while collector.ready().await {
        // One writer: the batch runs here, and the next one gathers
        // meanwhile in the channel.
        run(&store, collector.take_batch()).await;
    }
}

/// Appends `batch` and answers its sends; when it fails before its commit,
/// appends them alone, one by one.
async fn run(store: &SqliteStore, batch: Batch) {
    let appended = store.append_batch(batch.appends()).await;
    if let Some(batch) = batch.settle(appended) {
        for (append, answer) in batch {
            answer.send(store.append_alone(&append).await);
        }
    }
}
