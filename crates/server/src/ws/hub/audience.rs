//! Who hears a conversation: the audience rule, and the per-conversation
//! cache of what it resolved to.
//!
//! The rule:
//! - the staff of the conversation's tenant hear every customer
//!   conversation of the tenant;
//! - a customer conversation is also heard by its customer;
//! - a direct conversation or channel is heard by its members only (not
//!   by the tenant's other staff, admins included: they may read its
//!   history, not follow it live);
//! - nobody else.
//!
//! An audience only says whose connections to look at. At every event the
//! domain rules (`authorize(.., Action::Read)`: a private thread reaches
//! only its clinician and the admins) and then the host's `AccessPolicy`
//! pick among them, so a change of policy applies from the next event.
//!
//! An audience is resolved once per conversation and cached. For a
//! customer conversation it follows from the conversation's
//! `ConversationAccess`, which never changes. The members of a conversation
//! with members come from the store (the hub loads them, [`Audience::of_members`]);
//! each membership notice then changes the cached audience one member at a
//! time ([`Audiences::add_member`], [`Audiences::remove_member`]) as it
//! passes the ordered feed, at its `seq`: what comes after a removal never
//! reaches the removed member.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::{ConversationAccess, ConversationId, Principal, StaffUserId, TenantId};

/// How long an audience no event used is kept.
pub const AUDIENCE_IDLE: Duration = Duration::from_secs(600);

/// Whose connections the events of one conversation concern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience {
    /// The tenant whose staff all hear it.
    pub staff_of: Option<TenantId>,
    /// Principals who hear it by name (its customer).
    pub named: HashSet<Principal>,
    /// The members who hear it, staff of the tenant, whatever their staff
    /// role.
    pub members: Option<(TenantId, HashSet<StaffUserId>)>,
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
            members: None,
        }
    }

    /// The audience of a conversation with members: `members`, staff of
    /// `tenant`.
    pub fn of_members(tenant: TenantId, members: impl IntoIterator<Item = StaffUserId>) -> Self {
        Self {
            staff_of: None,
            named: HashSet::new(),
            members: Some((tenant, members.into_iter().collect())),
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

    /// The cached audience of `id`, if any (marking it used).
    pub fn cached(&mut self, id: ConversationId, now: Instant) -> Option<Arc<Audience>> {
        self.0.get_mut(&id).map(|cached| {
            cached.used = now;
            cached.audience.clone()
        })
    }

    /// Caches `audience` as that of `id`.
    pub fn insert(
        &mut self,
        id: ConversationId,
        audience: Audience,
        now: Instant,
    ) -> Arc<Audience> {
        let audience = Arc::new(audience);
        self.0.insert(
            id,
            Cached {
                audience: audience.clone(),
                used: now,
            },
        );
        audience
    }

    /// Adds member `user` to the cached audience of `id`, a conversation
    /// with members; `false` when none is cached (the next event loads one
    /// from the store, which has them).
    pub fn add_member(&mut self, id: ConversationId, user: StaffUserId) -> bool {
        self.0.get_mut(&id).is_some_and(|cached| {
            if let Some((_, members)) = &mut Arc::make_mut(&mut cached.audience).members {
                members.insert(user);
            }
            true
        })
    }

    /// Removes member `user` from the cached audience of `id`; `false` when
    /// none is cached.
    pub fn remove_member(&mut self, id: ConversationId, user: StaffUserId) -> bool {
        self.0.get_mut(&id).is_some_and(|cached| {
            if let Some((_, members)) = &mut Arc::make_mut(&mut cached.audience).members {
                members.remove(&user);
            }
            true
        })
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
    fn a_member_audience_changes_one_member_at_a_time() {
        let (id, tenant) = (ConversationId::new_v7(), TenantId::new_v4());
        let (a, b) = (StaffUserId::new_v4(), StaffUserId::new_v4());
        let now = Instant::now();
        let mut audiences = Audiences::default();
        assert!(!audiences.add_member(id, b), "nothing cached");
        assert_eq!(audiences.cached(id, now), None);
        audiences.insert(id, Audience::of_members(tenant, [a]), now);
        assert!(audiences.add_member(id, b));
        let members = |audiences: &mut Audiences| {
            audiences
                .cached(id, now)
                .unwrap()
                .members
                .clone()
                .unwrap()
                .1
        };
        assert_eq!(members(&mut audiences), HashSet::from([a, b]));
        assert!(audiences.remove_member(id, a));
        assert_eq!(members(&mut audiences), HashSet::from([b]));
        let audience = audiences.cached(id, now).unwrap();
        assert!(audience.staff_of.is_none() && audience.named.is_empty());
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
