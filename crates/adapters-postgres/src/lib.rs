//! PostgreSQL repositories of the chat core: the production store.
//!
//! [`PostgresStore`] implements [`chat_app::ConversationRepository`],
//! [`chat_app::MessageRepository`], [`chat_app::ReadStateRepository`],
//! [`chat_app::AttachmentRepository`] and [`chat_app::MembershipRepository`]
//! over one sqlx pool. The schema lives in `migrations/postgres` and is
//! embedded in the binary; [`PostgresStore::connect`] applies it at start-up.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//!
//! use adapters_postgres::PostgresStore;
//!
//! let store = Arc::new(PostgresStore::connect("postgres://chat@db/chat", 10).await?);
//! store.ping().await?;
//! // let ports = chat_app::Ports::from_store(store, events);
//! # Ok(()) }
//! ```
//!
//! Every statement filters by tenant, so one tenant never reads or writes
//! another tenant's rows, whatever ids it guesses.
//!
//! One module per repository (`conversations`, `messages`, `read_states`,
//! `attachments`, `membership`); `append` is the one append path (a lone
//! send is a batch of one: `load_state`, then
//! `chat_app::store_support::assign`, then `write_fresh` and
//! `link_attachments`, in one transaction), and
//! `group_commit` only collects concurrent sends into batches for it. A
//! new message column is written in `append` and read in `messages`, in
//! both SQL adapters alike.

mod append;
mod attachments;
mod conversations;
mod group_commit;
mod membership;
mod messages;
mod read_states;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The embedded schema migrations.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long a caller waits for a pooled connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL store: conversations, messages, read markers,
/// attachments and members.
///
/// Cheap to clone (it shares one connection pool); share one per process,
/// typically as an `Arc` handed to [`chat_app::Ports::from_store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Concurrent sends share transactions (see `group_commit`); started
    /// on the first send, on that caller's runtime.
    group: Arc<OnceLock<chat_app::store_support::Submitter>>,
}

impl PostgresStore {
    /// Connects a pool of at most `max_connections` to `url` and applies the
    /// embedded migrations.
    ///
    /// # Errors
    /// When the database cannot be reached or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        // The URL may carry a password: it is deliberately left out of the
        // error context.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        let store = Self::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// A store over a pool the host already owns. Call
    /// [`PostgresStore::migrate`] once before use unless the host applies the
    /// migrations itself.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            group: Arc::default(),
        }
    }

    /// Applies the embedded migrations that are not applied yet. Safe to call
    /// on every start and from several nodes at once (sqlx takes an advisory
    /// lock).
    ///
    /// # Errors
    /// When a migration fails, or an applied one was edited since.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("applying the PostgreSQL migrations")
    }

    /// Checks that the database answers, for readiness probes.
    ///
    /// # Errors
    /// When no connection can be had or the query fails.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .context("pinging PostgreSQL")?;
        Ok(())
    }

    /// The underlying pool, for hosts that keep their own tables beside ours.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
