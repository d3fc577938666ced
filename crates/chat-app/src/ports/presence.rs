//! Presence: the [`PresenceStore`] port shared by every node, the
//! [`ConnectionId`] of one open connection and what an update changed.

use async_trait::async_trait;
use chat_domain::{Presence, PresenceStatus, Sender, TenantId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::RepoError;

/// One open real-time connection (a browser tab, a device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The result of a presence update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    /// The presence after the update.
    pub presence: Presence,
    /// Whether what others see changed (came online, went offline, new
    /// status).
    pub changed: bool,
}

/// Who is connected, shared by every node.
///
/// A user is online while any of their connections is open on any node;
/// their chosen status (`online`, `away`, `busy`) shows while they are
/// connected and resets to `online` once they go offline.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Records an open connection, unless `user` already has `limit` (when
    /// given) live connections on all nodes together: then nothing is
    /// recorded and the answer is `None`. Counting and recording are one
    /// step, so racing connections cannot overshoot the limit.
    ///
    /// # Errors
    /// [`RepoError`] when the store fails.
    async fn connect_within(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        limit: Option<usize>,
        now: DateTime<Utc>,
    ) -> Result<Option<PresenceChange>, RepoError>;

    /// Records an open connection, whatever the user's other connections.
    ///
    /// # Errors
    /// [`RepoError`] when the store fails.
    async fn connected(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<PresenceChange, RepoError> {
        self.connect_within(tenant, user, connection, None, now)
            .await?
            .ok_or_else(|| {
                RepoError::Unexpected(anyhow::anyhow!(
                    "presence store refused a connection without a limit"
                ))
            })
    }

    /// Records a closed connection; the user goes offline with the last
    /// one, with `last_seen_at = now`.
    ///
    /// # Errors
    /// [`RepoError`] when the store fails.
    async fn disconnected(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<PresenceChange, RepoError>;

    /// Keeps a connection alive in stores that expire connections of
    /// crashed nodes.
    ///
    /// # Errors
    /// [`RepoError`] when the store fails.
    async fn refresh(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;

    /// Sets the status a connected user shows.
    ///
    /// # Errors
    /// [`RepoError`] when the store fails.
    async fn set_status(
        &self,
        tenant: TenantId,
        user: Sender,
        status: PresenceStatus,
        now: DateTime<Utc>,
    ) -> Result<PresenceChange, RepoError>;

    /// The presence of `users` of `tenant`, in the order asked.
    ///
    /// # Errors
    /// [`RepoError`] when the store fails.
    async fn get(&self, tenant: TenantId, users: &[Sender]) -> Result<Vec<Presence>, RepoError>;

    /// Takes up to `limit` users whose last connection expired without
    /// closing (its node crashed or lost the store), each with its tenant
    /// and its presence now (offline, last seen at its last refresh). Each
    /// such user is taken once, by whichever node asks first, so that
    /// exactly one announces it. Stores without expiry have none: the
    /// default.
    ///
    /// # Errors
    /// [`RepoError`] when the store fails.
    async fn take_expired(&self, limit: usize) -> Result<Vec<(TenantId, Presence)>, RepoError> {
        let _ = limit;
        Ok(Vec::new())
    }
}
