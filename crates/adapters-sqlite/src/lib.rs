//! SQLite repositories for the chat core: the embedded default store.
//!
//! [`SqliteStore`] implements [`chat_app::ConversationRepository`],
//! [`chat_app::MessageRepository`], [`chat_app::ReadStateRepository`],
//! [`chat_app::AttachmentRepository`] and
//! [`chat_app::MembershipRepository`] over one database file, so a single process needs nothing else to run the chat.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//!
//! use adapters_sqlite::SqliteStore;
//!
//! let store = Arc::new(SqliteStore::connect("data/chat.db".as_ref()).await?);
//! store.ping().await?;
//! // Hand the store to `chat_app::Ports::from_store(store, events)`.
//! # Ok(()) }
//! ```
//!
//! SQLite allows one writer at a time. Every write therefore goes through a
//! pool of exactly one connection, inside a `begin immediate` transaction:
//! writers queue in the pool instead of failing with `SQLITE_BUSY` when two
//! deferred transactions try to upgrade their read locks. Reads use a
//! separate pool of several connections and, thanks to WAL, never wait for
//! the writer.
//!
//! One module per repository (`conversations`, `messages`, `read_states`,
//! `attachments`, `membership`); `append` is the one append path (a lone send is a batch
//! of one: `load_state`, then `chat_app::store_support::assign`, then
//! `write_fresh` and `link_attachments`, in one transaction), and
//! `group_commit` only collects concurrent sends into batches for it. A
//! new message column is written in `append` and read in `messages`, in
//! both SQL adapters alike.

#![warn(missing_docs)]

mod append;
mod attachments;
mod codec;
mod conversations;
mod group_commit;
mod membership;
mod messages;
#[cfg(test)]
mod plans;
mod read_states;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, Sqlite, Transaction};
use tokio::sync::watch;

/// The schema, embedded at compile time and applied by [`SqliteStore::connect`].
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a connection waits for a lock held by another process before
/// giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of the read pool.
const READ_CONNECTIONS: u32 = 4;

/// How often the WAL is copied back into the database file, off the
/// writer's connection.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL size (pages) at which the writer checkpoints by itself: only a
/// safety net for when the checkpoint task is gone (its runtime shut down).
const WRITER_AUTOCHECKPOINT_PAGES: &str = "16384";

/// Conversations, messages and read markers in one SQLite database file.
///
/// Cheap to clone: clones share the same connection pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: SQLite has a single writer.
    write: SqlitePool,
    /// Several connections that only ever read.
    read: SqlitePool,
    /// One connection that checkpoints the WAL in the background.
    checkpoint: SqlitePool,
    /// Dropped with the last clone of the store: stops the checkpoint task.
    checkpoints: Arc<watch::Sender<()>>,
    /// Concurrent sends share write transactions (see `group_commit`);
    /// started on the first send, on that caller's runtime.
    group: Arc<OnceLock<chat_app::store_support::Submitter>>,
    /// The folder of the database file, whose disk the readiness check
    /// measures.
    dir: Arc<std::path::PathBuf>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and its parent
    /// directory when missing, and applies pending migrations.
    ///
    /// Connections use WAL journaling, `synchronous = NORMAL` (durable across
    /// process crashes; a power loss may lose the last transactions, never
    /// corrupt the file), foreign keys and a busy timeout.
    ///
    /// # Errors
    /// When the directory or file cannot be created or opened, or a migration
    /// fails (for example a database written by a newer version).
    #[tracing::instrument(skip_all, fields(path = %path.display()), err(level = "debug"))]
    pub async fn connect(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A one-off at start-up, before any connection exists.
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating directory {}", parent.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let write = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            // A commit that failed (a full disk) may leave the connection
            // inside a transaction SQLite has already rolled back, where
            // sqlx's own rollback fails too: every later `begin` would then
            // be refused. Such a connection is closed instead of handed
            // out, and the pool opens a fresh writer.
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(
                options
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // Checkpoints run on a connection of their own (see
                    // `checkpoint_in_background`): done by the writer, each
                    // one held up every commit queued behind it (measured:
                    // p90 send latency 21 ms instead of 6 ms at 1,000
                    // msgs/s).
                    .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES),
            )
            .await
            .with_context(|| format!("opening sqlite database {}", path.display()))?;
        MIGRATOR
            .run(&write)
            .await
            .with_context(|| format!("migrating sqlite database {}", path.display()))?;
        let checkpoint = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening the checkpoint connection to {}", path.display()))?;
        // `query_only` rather than a read-only open: a read-only connection
        // cannot recreate the WAL index files once the last writer closed.
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.pragma("query_only", "on"))
            .await
            .with_context(|| format!("opening read connections to {}", path.display()))?;
        let (checkpoints, stopped) = watch::channel(());
        tokio::spawn(checkpoint_in_background(checkpoint.clone(), stopped));
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        Ok(Self {
            write,
            read,
            checkpoint,
            checkpoints: Arc::new(checkpoints),
            group: Arc::default(),
            dir: Arc::new(dir),
        })
    }

    /// Checks that the database can be read and written, for readiness
    /// probes: the writer commits one row of its own (`store_probe`), and
    /// the disk must have [`MIN_FREE_BYTES`] free (a write into space the
    /// WAL already holds succeeds on a full disk, a send that needs more
    /// does not). The write does not wait for a lock another process
    /// holds: a database that another writer is writing to is not down.
    ///
    /// # Errors
    /// When a connection cannot be acquired, or the read or the write fails.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("select 1")
            .execute(&self.read)
            .await
            .context("pinging the sqlite read pool")?;
        let mut writer = self
            .write
            .acquire()
            .await
            .context("acquiring the sqlite writer")?;
        sqlx::query("pragma busy_timeout = 0")
            .execute(&mut *writer)
            .await
            .context("setting the probe's busy timeout")?;
        let wrote = sqlx::query("update store_probe set checked_at = ?1 where id = 1")
            .bind(codec::micros(chrono::Utc::now()))
            .execute(&mut *writer)
            .await;
        sqlx::query(&format!(
            "pragma busy_timeout = {}",
            BUSY_TIMEOUT.as_millis()
        ))
        .execute(&mut *writer)
        .await
        .context("restoring the writer's busy timeout")?;
        match wrote {
            Ok(_) => {}
            Err(sqlx::Error::Database(err)) if is_busy(err.code().as_deref()) => {}
            Err(err) => return Err(err).context("writing the sqlite store probe"),
        }
        let free = free_bytes(&self.dir)
            .with_context(|| format!("measuring the free space of {}", self.dir.display()))?;
        if free < MIN_FREE_BYTES {
            return Err(anyhow::Error::new(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("{free} bytes free on the database's disk"),
            )));
        }
        Ok(())
    }

    /// Closes every connection, waiting for those in use to be returned, so
    /// the WAL is checkpointed into the database file. Later calls fail.
    pub async fn close(&self) {
        // A receiver that already stopped is fine.
        let _ = self.checkpoints.send(());
        self.checkpoint.close().await;
        self.read.close().await;
        self.write.close().await;
    }

    /// A clone without the group commit of this one, for that group
    /// commit's own appends.
    fn without_group_commit(&self) -> Self {
        Self {
            group: Arc::default(),
            ..self.clone()
        }
    }

    /// Starts a write transaction on the single writer connection.
    /// `begin immediate` takes the write lock at once, so another process
    /// sharing the file makes this wait (busy timeout) instead of failing a
    /// later lock upgrade.
    async fn begin_write(&self) -> anyhow::Result<Transaction<'static, Sqlite>> {
        self.write
            .begin_with("begin immediate")
            .await
            .context("starting a sqlite write transaction")
    }
}

/// The least free space on the database's disk for the store to count as
/// able to write: a batch of sends and its WAL frames fit in it.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// The bytes an unprivileged process may still write on the disk of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Whether an SQLite result code is `SQLITE_BUSY` or one of its extended
/// codes (the primary code is the low byte).
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// Copies the WAL back into the database file every [`CHECKPOINT_EVERY`]
/// (`passive`: it never waits for, nor blocks, the writer or the readers),
/// until the store is dropped or closed.
async fn checkpoint_in_background(pool: SqlitePool, mut stopped: watch::Receiver<()>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = every.tick() => {
                if pool.is_closed() {
                    break;
                }
                if let Err(err) = sqlx::query("pragma wal_checkpoint(passive)").execute(&pool).await {
                    tracing::warn!(error = %err, "sqlite checkpoint failed");
                }
            }
        }
    }
    pool.close().await;
}
