//! Who hears a conversation: the audience rule, and the per-conversation
//! cache of what it resolved to.
//!
//! The rule, today:
//! - the staff of the conversation's tenant hear every conversation of the
//!   tenant;
//! - a customer conversation is also heard by its customer;
//! - nobody else.
//!
//! An audience only says whose connections to look at. At every event the
//! domain rules (`authorize(.., Action::Read)`: a private thread reaches
//! only its clinician and the admins) and then the host's `AccessPolicy`
//! pick among them, so a change of policy applies from the next event.
//!
//! An audience is resolved once per conversation and cached. Today it
//! follows from the conversation's `ConversationAccess`, which never
//! changes. A rule that needs the store (the members of a staff channel)
//! resolves here too; a membership event then changes the cached audience
//! one principal at a time ([`Audiences::add`], [`Audiences::remove`]) or
//! drops it ([`Audiences::forget`]) so the next event resolves it afresh.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::{ConversationAccess, ConversationId, Principal, TenantId};

/// How long an audience no event used is kept.
pub const AUDIENCE_IDLE: Duration = Duration::from_secs(600);

/// Whose connections the events of one conversation concern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience {
    /// The tenant whose staff all hear it.
    pub staff_of: Option<TenantId>,
    /// Principals who hear it by name (its customer; a channel's members).
    pub named: HashSet<Principal>,
}

impl Audience {
    /// The audience of a conversation with `access`, by the rule above.
    pub fn of(access: &ConversationAccess) -> Self {
        Self {
            staff_of: Some(access.tenant),
            named: access
                .kind
                .customer_id()
                .map(|customer| Principal::customer(access.tenant, customer))
                .into_iter()
                .collect(),
        }
    }
}

struct Cached {
    audience: Arc<Audience>,
    used: Instant,
}

/// The audiences resolved so far, by conversation.
#[derive(Default)]
pub struct Audiences(HashMap<ConversationId, Cached>);

impl Audiences {
    /// The audience of conversation `id`, resolved from `access` when it is
    /// not cached.
    pub fn resolve(
        &mut self,
        id: ConversationId,
        access: &ConversationAccess,
        now: Instant,
    ) -> Arc<Audience> {
        let cached = self.0.entry(id).or_insert_with(|| Cached {
            audience: Arc::new(Audience::of(access)),
            used: now,
        });
        cached.used = now;
        cached.audience.clone()
    }

    /// Adds `principal` to the cached audience of `id`; `false` when none
    /// is cached (the next event resolves one that should include them).
    pub fn add(&mut self, id: ConversationId, principal: Principal) -> bool {
        self.0.get_mut(&id).is_some_and(|cached| {
            Arc::make_mut(&mut cached.audience).named.insert(principal);
            true
        })
    }

    /// Removes `principal` from the cached audience of `id`; `false` when
    /// none is cached.
    pub fn remove(&mut self, id: ConversationId, principal: &Principal) -> bool {
        self.0.get_mut(&id).is_some_and(|cached| {
            Arc::make_mut(&mut cached.audience).named.remove(principal);
            true
        })
    }

    /// Drops the cached audience of `id`.
    pub fn forget(&mut self, id: ConversationId) {
        self.0.remove(&id);
    }

    /// Drops the audiences no event used since [`AUDIENCE_IDLE`].
    pub fn sweep(&mut self, now: Instant) {
        self.0
            .retain(|_, cached| now.duration_since(cached.used) < AUDIENCE_IDLE);
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{ConversationKind, CustomerId, StaffRole, StaffUserId};

    use super::*;

    fn access(clinician: Option<StaffUserId>) -> ConversationAccess {
        ConversationAccess {
            tenant: TenantId::new_v4(),
            kind: ConversationKind::Customer {
                customer_id: CustomerId::new_v4(),
                clinician,
            },
        }
    }

    #[test]
    fn a_customer_conversation_is_heard_by_its_tenant_staff_and_its_customer() {
        for clinician in [None, Some(StaffUserId::new_v4())] {
            let access = access(clinician);
            let customer = access.kind.customer_id().expect("a customer conversation");
            let audience = Audience::of(&access);
            assert_eq!(audience.staff_of, Some(access.tenant));
            assert_eq!(
                audience.named,
                HashSet::from([Principal::customer(access.tenant, customer)])
            );
        }
    }

    #[test]
    fn a_cached_audience_changes_one_principal_at_a_time() {
        let (id, access) = (ConversationId::new_v7(), access(None));
        let member = Principal::staff(access.tenant, StaffUserId::new_v4(), StaffRole::Staff);
        let now = Instant::now();
        let mut audiences = Audiences::default();
        assert!(
            !audiences.add(id, member),
            "nothing cached: nothing to change"
        );

        let before = audiences.resolve(id, &access, now);
        assert!(audiences.add(id, member));
        let after = audiences.resolve(id, &access, now);
        assert!(after.named.contains(&member));
        assert!(
            !before.named.contains(&member),
            "a copy in use is not changed"
        );

        assert!(audiences.remove(id, &member));
        assert_eq!(audiences.resolve(id, &access, now), before);

        audiences.add(id, member);
        audiences.forget(id);
        assert_eq!(
            *audiences.resolve(id, &access, now),
            Audience::of(&access),
            "resolved afresh"
        );
    }

    #[test]
    fn audiences_no_event_used_are_dropped() {
        let (busy, idle) = (ConversationId::new_v7(), ConversationId::new_v7());
        let access = access(None);
        let member = Principal::customer(access.tenant, CustomerId::new_v4());
        let start = Instant::now();
        let mut audiences = Audiences::default();
        audiences.resolve(busy, &access, start);
        audiences.resolve(idle, &access, start);
        audiences.resolve(busy, &access, start + AUDIENCE_IDLE / 2);
        audiences.sweep(start + AUDIENCE_IDLE);
        assert!(audiences.add(busy, member));
        assert!(!audiences.add(idle, member));
    }
}
