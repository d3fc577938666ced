//! The access facts ([`ConversationAccess`]) of the conversations a node has
//! loaded, so that a send, the hottest use case, can be authorized without
//! reading its conversation again. The facts never change once a
//! conversation exists, so an entry never goes stale; the cache is bounded
//! and starts over when full (a miss costs one read, as without it).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use chat_domain::{ConversationAccess, ConversationId};

/// Known access facts by conversation id (ids are unique across tenants; the
/// facts carry the tenant, which the permission rules check).
#[derive(Debug)]
pub(crate) struct AccessCache {
    entries: RwLock<HashMap<ConversationId, ConversationAccess>>,
    capacity: usize,
}

impl AccessCache {
    /// Entries kept before the cache starts over (a few MiB).
    pub(crate) const CAPACITY: usize = 65_536;

    /// An empty cache holding at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The facts of conversation `id`, if known.
    pub(crate) fn get(&self, id: ConversationId) -> Option<ConversationAccess> {
        // A panic elsewhere cannot leave a map half-written: every write is
        // one insert or clear. Go on with it.
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
    }

    /// Keeps the facts of conversation `id`.
    pub(crate) fn remember(&self, id: ConversationId, access: ConversationAccess) {
        if self.get(id).is_some() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(id, access);
    }
}

impl Default for AccessCache {
    fn default() -> Self {
        Self::new(Self::CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{ConversationKind, CustomerId, TenantId};

    use super::*;

    fn access() -> ConversationAccess {
        ConversationAccess {
            tenant: TenantId::new_v4(),
            kind: ConversationKind::Customer {
                customer_id: CustomerId::new_v4(),
                clinician: None,
            },
        }
    }

    #[test]
    fn remembers_what_it_was_told() {
        let cache = AccessCache::default();
        let (id, facts) = (ConversationId::new_v7(), access());
        assert_eq!(cache.get(id), None);
        cache.remember(id, facts);
        assert_eq!(cache.get(id), Some(facts));
        assert_eq!(cache.get(ConversationId::new_v7()), None);
    }

    #[test]
    fn starts_over_when_full() {
        let cache = AccessCache::new(2);
        let ids: Vec<_> = (0..3).map(|_| ConversationId::new_v7()).collect();
        for &id in &ids {
            cache.remember(id, access());
        }
        // The third entry found the cache full: only it is left.
        assert_eq!(cache.get(ids[0]), None);
        assert_eq!(cache.get(ids[1]), None);
        assert!(cache.get(ids[2]).is_some());
        // Remembering a known entry does not count against the bound.
        cache.remember(ids[2], access());
        cache.remember(ids[0], access());
        assert!(cache.get(ids[0]).is_some() && cache.get(ids[2]).is_some());
    }
}
