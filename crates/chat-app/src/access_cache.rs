//! [`AccessCache`]: the access facts ([`ConversationAccess`]) of the
//! conversations a node has loaded, so that a send, the hottest use case,
//! can be authorized without reading its conversation again.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use chat_domain::{ConversationAccess, ConversationId};

use crate::ports::ChatEvent;

/// Known access facts by conversation id (ids are unique across tenants; the
/// facts carry the tenant, which the permission rules check).
///
/// # The rule: only facts that cannot change are kept
///
/// An entry is only ever a copy of facts for which
/// [`ConversationAccess::never_changes`] is `true` (today: every customer
/// conversation, whose tenant, customer and clinician are its identity), so
/// it cannot go stale, whichever node changed what. Facts that may change
/// are never kept: `remember` ignores them, and a conversation with such
/// facts is read on every send, as under a host policy.
///
/// On top of that, every event this node's service publishes passes through
/// [`AccessCache::observe`]: an event whose conversation disagrees with the
/// entry, or whose facts may change, drops the entry; so does a fresh load
/// that disagrees ([`AccessCache::remember`] keeps the newest facts).
///
/// Direct conversations and channels answer `false` from `never_changes`
/// (their members join, leave, are added or removed; a channel is archived
/// or made private), so nothing about them is kept: every action on them
/// reads the conversation and the caller's membership afresh
/// ([`crate::ChatService`]'s `authorized_as`), on whichever node, and a
/// removed member is refused from the commit of their removal on. Caching
/// them would need every node to drop the entry on each membership notice,
/// including those published by other nodes.
///
/// The cache is bounded and starts over when full (a miss costs one read,
/// as without it).
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
        // one insert, remove or clear. Go on with it.
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
    }

    /// Keeps the facts of conversation `id`, just loaded, if they never
    /// change (replacing older ones that disagree); drops what was known of
    /// it otherwise.
    pub(crate) fn remember(&self, id: ConversationId, access: ConversationAccess) {
        if !access.never_changes() {
            self.forget(id);
            return;
        }
        if self.get(id) == Some(access) {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&id) {
            entries.clear();
        }
        entries.insert(id, access);
    }

    /// Drops what is known of conversation `id`.
    pub(crate) fn forget(&self, id: ConversationId) {
        if self.get(id).is_none() {
            return;
        }
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Brings the cache in line with `event`: the entry of its conversation
    /// is dropped when the event's facts disagree with it or may change.
    pub(crate) fn observe(&self, event: &ChatEvent) {
        let Some(route) = event.route() else {
            return;
        };
        match self.get(route.conversation_id) {
            Some(known) if known == route.access && route.access.never_changes() => {}
            Some(_) => self.forget(route.conversation_id),
            None => {}
        }
    }
}

impl Default for AccessCache {
    fn default() -> Self {
        Self::new(Self::CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{
        Conversation, ConversationKind, CustomerId, NewCustomerConversation, Presence,
        PresenceStatus, Sender, StaffUserId, TenantId,
    };

    use crate::ports::Route;
    use chrono::DateTime;

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

    fn conversation(clinician: Option<StaffUserId>) -> Conversation {
        NewCustomerConversation {
            id: ConversationId::new_v7(),
            tenant: TenantId::new_v4(),
            customer_id: CustomerId::new_v4(),
            clinician,
            now: DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
        }
        .prospective()
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

    #[test]
    fn keeps_the_facts_of_every_kind_whose_facts_never_change() {
        let cache = AccessCache::default();
        for conversation in [
            conversation(None),
            conversation(Some(StaffUserId::new_v4())),
        ] {
            let facts = conversation.access();
            assert!(facts.never_changes(), "{facts:?}");
            cache.remember(conversation.id, facts);
            assert_eq!(cache.get(conversation.id), Some(facts));
        }
    }

    #[test]
    fn a_fresh_load_that_disagrees_replaces_the_entry() {
        let cache = AccessCache::default();
        let id = ConversationId::new_v7();
        let (stale, fresh) = (access(), access());
        cache.remember(id, stale);
        cache.remember(id, fresh);
        assert_eq!(cache.get(id), Some(fresh));
    }

    #[test]
    fn forgetting_drops_one_entry() {
        let cache = AccessCache::default();
        let (a, b) = (ConversationId::new_v7(), ConversationId::new_v7());
        cache.remember(a, access());
        cache.remember(b, access());
        cache.forget(a);
        cache.forget(ConversationId::new_v7());
        assert_eq!(cache.get(a), None);
        assert!(cache.get(b).is_some());
    }

    #[test]
    fn an_event_whose_conversation_disagrees_drops_the_entry() {
        let cache = AccessCache::default();
        let known = conversation(None);
        cache.remember(known.id, known.access());

        // Events that agree with the entry, or are about another
        // conversation or none, leave it.
        let agreeing = ChatEvent::ConversationUpdated {
            conversation: known.clone(),
        };
        let elsewhere = ChatEvent::ConversationUpdated {
            conversation: conversation(None),
        };
        let presence = ChatEvent::PresenceChanged {
            tenant: known.tenant,
            presence: Presence {
                user: Sender::System,
                status: PresenceStatus::Online,
                last_seen_at: None,
            },
        };
        for event in [agreeing, elsewhere, presence] {
            cache.observe(&event);
            assert_eq!(cache.get(known.id), Some(known.access()), "{event:?}");
        }

        // The same conversation with other facts: the entry was stale.
        let changed = Conversation {
            kind: ConversationKind::Customer {
                customer_id: CustomerId::new_v4(),
                clinician: None,
            },
            ..known.clone()
        };
        cache.observe(&ChatEvent::Typing {
            route: Route::of(&changed),
            sender: Sender::System,
            is_typing: true,
        });
        assert_eq!(cache.get(known.id), None);
    }
}
