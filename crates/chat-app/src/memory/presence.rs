//! [`InMemoryPresence`]: the presence store of a single node.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chat_domain::{Presence, PresenceStatus, Sender, TenantId};
use chrono::{DateTime, Utc};

use crate::ports::{ConnectionId, PresenceChange, PresenceStore, RepoError};

#[derive(Debug)]
struct PresenceEntry {
    connections: HashSet<ConnectionId>,
    chosen: PresenceStatus,
    last_seen_at: Option<DateTime<Utc>>,
}

impl PresenceEntry {
    fn presence(&self, user: Sender) -> Presence {
        if self.connections.is_empty() {
            Presence {
                user,
                status: PresenceStatus::Offline,
                last_seen_at: self.last_seen_at,
            }
        } else {
            Presence {
                user,
                status: self.chosen,
                last_seen_at: None,
            }
        }
    }
}

/// Presence of a single node, in memory.
#[derive(Debug, Default)]
pub struct InMemoryPresence {
    entries: Mutex<HashMap<(TenantId, Sender), PresenceEntry>>,
}

impl InMemoryPresence {
    fn update<F>(&self, tenant: TenantId, user: Sender, change: F) -> PresenceChange
    where
        F: FnOnce(&mut PresenceEntry),
    {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries
            .entry((tenant, user))
            .or_insert_with(|| PresenceEntry {
                connections: HashSet::new(),
                chosen: PresenceStatus::Online,
                last_seen_at: None,
            });
        let before = entry.presence(user).status;
        change(entry);
        let presence = entry.presence(user);
        PresenceChange {
            presence,
            changed: presence.status != before,
        }
    }
}

#[async_trait]
impl PresenceStore for InMemoryPresence {
    async fn connect_within(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        limit: Option<usize>,
        _now: DateTime<Utc>,
    ) -> Result<Option<PresenceChange>, RepoError> {
        let mut admitted = false;
        let change = self.update(tenant, user, |entry| {
            let full = limit.is_some_and(|limit| entry.connections.len() >= limit);
            admitted = entry.connections.contains(&connection) || !full;
            if admitted {
                entry.connections.insert(connection);
            }
        });
        Ok(admitted.then_some(change))
    }

    async fn disconnected(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<PresenceChange, RepoError> {
        Ok(self.update(tenant, user, |entry| {
            if entry.connections.remove(&connection) && entry.connections.is_empty() {
                entry.last_seen_at = Some(now);
                entry.chosen = PresenceStatus::Online;
            }
        }))
    }

    async fn refresh(
        &self,
        _tenant: TenantId,
        _user: Sender,
        _connection: ConnectionId,
        _now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        Ok(())
    }

    async fn set_status(
        &self,
        tenant: TenantId,
        user: Sender,
        status: PresenceStatus,
        _now: DateTime<Utc>,
    ) -> Result<PresenceChange, RepoError> {
        Ok(self.update(tenant, user, |entry| {
            if status != PresenceStatus::Offline {
                entry.chosen = status;
            }
        }))
    }

    async fn get(&self, tenant: TenantId, users: &[Sender]) -> Result<Vec<Presence>, RepoError> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(users
            .iter()
            .map(|user| {
                entries.get(&(tenant, *user)).map_or(
                    Presence {
                        user: *user,
                        status: PresenceStatus::Offline,
                        last_seen_at: None,
                    },
                    |entry| entry.presence(*user),
                )
            })
            .collect())
    }
}
