//! Presence: connections coming and going, chosen statuses, who of the
//! tenant's staff is online. [`PresenceService`] works over the shared
//! [`PresenceStore`] rather than over [`crate::ChatService`]'s ports:
//! presence belongs to no conversation.
//!
//! Its share of [`ChatError`]: `Forbidden`, `Invalid { field: Field::Users,
//! .. }` and `Unexpected`.

use std::sync::Arc;

use chat_domain::{ChosenStatus, Presence, Principal, Sender, TenantId};

use crate::error::{ChatError, Field, Reason};
use crate::ports::{ChatEvent, Clock, ConnectionId, EventPublisher, PresenceChange, PresenceStore};

#[cfg(test)]
mod tests;

/// Presence use cases: connections coming and going, chosen statuses, and
/// the staff's view of who is online. Changes are published as
/// [`ChatEvent::PresenceChanged`].
#[derive(Clone)]
pub struct PresenceService {
    store: Arc<dyn PresenceStore>,
    events: Arc<dyn EventPublisher>,
    clock: Arc<dyn Clock>,
}

impl PresenceService {
    /// The most users one presence query may name.
    pub const MAX_QUERY: usize = 200;

    /// A service over `store`, publishing to `events`.
    pub fn new(
        store: Arc<dyn PresenceStore>,
        events: Arc<dyn EventPublisher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            events,
            clock,
        }
    }

    async fn announce(&self, tenant: TenantId, change: PresenceChange) -> Presence {
        if change.changed {
            self.events
                .publish(ChatEvent::PresenceChanged {
                    tenant,
                    presence: change.presence,
                })
                .await;
        }
        change.presence
    }

    /// A connection of `principal` opened.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn connected(
        &self,
        principal: &Principal,
        connection: ConnectionId,
    ) -> Result<Presence, ChatError> {
        let (tenant, user, now) = (principal.tenant(), principal.as_sender(), self.clock.now());
        let change = self.store.connected(tenant, user, connection, now).await?;
        Ok(self.announce(tenant, change).await)
    }

    /// A connection of `principal` opens if they have fewer than `limit`
    /// (when given) open on all nodes; `None` when refused, and then
    /// nothing was recorded.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn connect_within(
        &self,
        principal: &Principal,
        connection: ConnectionId,
        limit: Option<usize>,
    ) -> Result<Option<Presence>, ChatError> {
        let change = self
            .store
            .connect_within(
                principal.tenant(),
                principal.as_sender(),
                connection,
                limit,
                self.clock.now(),
            )
            .await?;
        Ok(match change {
            Some(change) => Some(self.announce(principal.tenant(), change).await),
            None => None,
        })
    }

    /// A connection of `principal` closed.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn disconnected(
        &self,
        principal: &Principal,
        connection: ConnectionId,
    ) -> Result<Presence, ChatError> {
        let (tenant, user, now) = (principal.tenant(), principal.as_sender(), self.clock.now());
        let change = self
            .store
            .disconnected(tenant, user, connection, now)
            .await?;
        Ok(self.announce(tenant, change).await)
    }

    /// Keeps a connection of `principal` alive.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn refresh(
        &self,
        principal: &Principal,
        connection: ConnectionId,
    ) -> Result<(), ChatError> {
        Ok(self
            .store
            .refresh(
                principal.tenant(),
                principal.as_sender(),
                connection,
                self.clock.now(),
            )
            .await?)
    }

    /// Sets the status `principal` shows while connected (`offline` is no
    /// choice: [`ChosenStatus`] cannot hold it).
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn set_status(
        &self,
        principal: &Principal,
        status: ChosenStatus,
    ) -> Result<Presence, ChatError> {
        let change = self
            .store
            .set_status(
                principal.tenant(),
                principal.as_sender(),
                status.into(),
                self.clock.now(),
            )
            .await?;
        Ok(self.announce(principal.tenant(), change).await)
    }

    /// How many expired users [`PresenceService::announce_expired`] takes
    /// from the store at a time.
    pub const EXPIRY_BATCH: usize = 100;

    /// Announces the users whose connections expired in the store (see
    /// [`PresenceStore::take_expired`]) as gone offline; returns how many.
    /// Every node runs it periodically: each user is announced once.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn announce_expired(&self) -> Result<usize, ChatError> {
        let mut announced = 0;
        loop {
            let expired = self.store.take_expired(Self::EXPIRY_BATCH).await?;
            let taken = expired.len();
            for (tenant, presence) in expired {
                self.events
                    .publish(ChatEvent::PresenceChanged { tenant, presence })
                    .await;
            }
            announced += taken;
            if taken < Self::EXPIRY_BATCH {
                return Ok(announced);
            }
        }
    }

    /// The presence of `users` of the caller's tenant. Staff only.
    ///
    /// # Errors
    /// [`ChatError::Forbidden`] for customers; [`ChatError::Invalid`] ([`Field::Users`]) for
    /// more than [`PresenceService::MAX_QUERY`] users;
    /// [`ChatError::Unexpected`].
    pub async fn presence_of(
        &self,
        principal: &Principal,
        users: &[Sender],
    ) -> Result<Vec<Presence>, ChatError> {
        if !principal.is_staff() {
            return Err(ChatError::Forbidden);
        }
        if users.len() > Self::MAX_QUERY {
            return Err(ChatError::invalid(
                Field::Users,
                Reason::TooMany {
                    max: Self::MAX_QUERY,
                },
            ));
        }
        Ok(self.store.get(principal.tenant(), users).await?)
    }
}
