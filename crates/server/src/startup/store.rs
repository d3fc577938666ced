//! The store chosen by configuration (SQLite or PostgreSQL), opened with
//! its migrations and handed out as the ports the use cases need. A new
//! store is one more arm of [`Store::open`] and a [`Readiness`] impl.

use std::sync::Arc;

use adapters_postgres::PostgresStore;
use adapters_sqlite::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use chat_app::{
    AttachmentRepository, ConversationRepository, EventPublisher, MembershipRepository,
    MessageRepository, Ports, ReadStateRepository,
};

use crate::config::DatabaseSettings;
use crate::state::Readiness;

#[async_trait]
impl Readiness for SqliteStore {
    async fn check(&self) -> anyhow::Result<()> {
        self.ping().await
    }
}

#[async_trait]
impl Readiness for PostgresStore {
    async fn check(&self) -> anyhow::Result<()> {
        self.ping().await
    }
}

/// One open store, seen through each port it implements.
pub(super) struct Store {
    /// The ports of the chat use cases.
    pub ports: Ports,
    /// The readiness probe.
    pub readiness: Arc<dyn Readiness>,
    /// The attachment records.
    pub attachments: Arc<dyn AttachmentRepository>,
}

impl Store {
    /// Opens the configured store, running its migrations.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub async fn open(
        settings: &DatabaseSettings,
        events: Arc<dyn EventPublisher>,
    ) -> anyhow::Result<Self> {
        match settings {
            DatabaseSettings::Sqlite { path } => {
                let store = SqliteStore::connect(path)
                    .await
                    .with_context(|| format!("opening SQLite database {}", path.display()))?;
                tracing::info!(path = %path.display(), "using SQLite");
                Ok(Self::of(store, events))
            }
            DatabaseSettings::Postgres {
                url,
                max_connections,
            } => {
                let store = PostgresStore::connect(url.expose(), *max_connections)
                    .await
                    .context("connecting to PostgreSQL (CHAT_DATABASE_URL)")?;
                tracing::info!("using PostgreSQL");
                Ok(Self::of(store, events))
            }
        }
    }

    fn of<S>(store: S, events: Arc<dyn EventPublisher>) -> Self
    where
        S: ConversationRepository
            + MessageRepository
            + ReadStateRepository
            + AttachmentRepository
            + MembershipRepository
            + Readiness
            + 'static,
    {
        let store = Arc::new(store);
        Self {
            ports: Ports::from_store(store.clone(), events),
            readiness: store.clone(),
            attachments: store,
        }
    }
}
