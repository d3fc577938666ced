//! Group commit of sends: concurrent appends of plain messages (no
//! attachments, no `reply_to`), of the same or different conversations,
//! share one transaction and so one WAL flush.
//!
//! A commit waits for the disk (a few milliseconds on ordinary storage), so
//! one transaction per message caps a node at a few hundred commits per
//! connection and second whatever the CPU could do. Here a collector task
//! takes whatever sends are waiting, up to [`MAX_BATCH`], and appends them
//! as one batch ([`crate::append`], the code path of every send: a fixed
//! number of set-based statements whatever the batch's size), while up to
//! [`CONCURRENT_BATCHES`] batches are in flight; under light load a batch is
//! one message and costs what a lone transaction costs, under heavy load
//! batches grow by themselves.
//!
//! The guarantees of a single append hold for each message of a batch:
//!
//! - `seq` stays gap-free and follows arrival order: a batch holds at most
//!   one send per conversation (the next waits for a later batch, which
//!   waits for the lock), locks its conversations in id order (so two
//!   batches, or a batch and a lone append, never deadlock) and reads their
//!   `last_seq` under the lock.
//! - Idempotency: keys already stored replay their original (a key cannot
//!   repeat within a batch: it holds one send per conversation).
//! - Per-send outcomes: a missing conversation fails that send only. Any
//!   unexpected failure before the commit rolls the batch back and stores
//!   its messages one transaction each, so one bad send cannot fail the
//!   others; a failed commit fails the batch's sends (as a failed commit of
//!   a lone append fails its send).

use std::sync::Arc;

use chat_app::store_support::{self, Batch};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::PostgresStore;

/// Most messages per transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Batches in flight at once (each holds one pooled connection). One: the
/// sends that arrive while a batch runs make the next one, so batches grow
/// with the load and PostgreSQL runs a fixed number of statements for many
/// messages. Measured with the `max` benchmark on 2 cores where a WAL flush
/// takes 0.13 ms: one batch in flight sustained 3,000 msgs/s, two only
/// 2,000 (smaller batches, more statements per message, PostgreSQL short of
/// CPU); on a disk with 3 ms flushes two had been slightly better at 1,000
/// msgs/s (p99 18 ms against 23 ms).
pub(crate) const CONCURRENT_BATCHES: usize = 1;
/// Sends waiting for a batch before submitters wait too.
const QUEUE: usize = 8192;

/// Starts a group commit's collector task on the current runtime; it ends
/// when the last [`store_support::Submitter`] returned is dropped.
pub(crate) fn start(pool: PgPool) -> store_support::Submitter {
    let (submitter, collector) = store_support::channel(QUEUE, MAX_BATCH);
    // A store without a group commit of its own: holding this one's would
    // keep the submitter, and so the task, alive for ever.
    tokio::spawn(collect(PostgresStore::from_pool(pool), collector));
    submitter
}

async fn collect(store: PostgresStore, mut collector: store_support::Collector) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_BATCHES));
    while collector.ready().await {
        // While every slot is busy, sends pile up: they make the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        // At most one send per conversation per batch: the next one waits
        // for a later batch, which waits for this one's lock. Each send is
        // then acknowledged (and its event published) after the previous
        // one of its conversation, in order, as with lone appends.
        let batch = collector.take_batch();
        let store = store.clone();
        tokio::spawn(async move {
            run(&store, batch).await;
            drop(slot);
        });
    }
}

/// Appends `batch` and answers its sends; when it fails before its commit,
/// appends them alone, one by one.
async fn run(store: &PostgresStore, batch: Batch) {
    let appended = store.append_batch(batch.appends()).await;
    if let Some(batch) = batch.settle(appended) {
        for (append, answer) in batch {
            answer.send(store.append_alone(&append).await);
        }
    }
}
