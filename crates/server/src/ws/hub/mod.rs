//! The hub of one server node: the registry of its open connections and
//! the fan-out that queues a frame for the connections allowed to hear it.
//! Nothing else: the event dispatcher (`ws/dispatch.rs`) turns bus events
//! into frames, the ordered feed (`chat_app::OrderedFeed`) puts messages
//! in order, the connections do the rest.
//!
//! Connections are indexed by user (their [`Principal`]), staff users by
//! tenant, and each conversation's audience is cached by conversation
//! (`hub/audience.rs`, where the audience rule is written down): who hears a
//! conversation is a lookup, never a scan of the tenant's connections.
//! Fan-out never waits: a connection whose queue is full is closed (it
//! resumes later) so that it cannot slow anybody else down.

mod audience;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Instant;

use chat_app::{
    AccessPolicy, ConnectionId, ConversationRepository, MembershipRepository, MessageRepository,
    PolicyAction, Route,
};
use chat_domain::{
    authorize_access, Action, ConversationId, MemberRole, Principal, StaffRole, StaffUserId,
    TenantId,
};
use tokio::sync::mpsc;

use audience::Audiences;
pub use audience::{Audience, AUDIENCE_IDLE};

use super::outbound::{CloseReason, ConnControl, Outbound};

struct Conn {
    tx: mpsc::Sender<Outbound>,
    control: ConnControl,
}

/// The open connections, by whose they are.
#[derive(Default)]
struct Registry {
    /// Every connection, by user.
    users: HashMap<Principal, HashMap<ConnectionId, Conn>>,
    /// The staff users with a connection, by tenant.
    staff: HashMap<TenantId, HashSet<Principal>>,
}

impl Registry {
    fn insert(&mut self, id: ConnectionId, principal: Principal, conn: Conn) {
        if principal.is_staff() {
            self.staff
                .entry(principal.tenant())
                .or_default()
                .insert(principal);
        }
        self.users.entry(principal).or_default().insert(id, conn);
    }

    /// Removes connection `id` of `principal`; `true` when it was there.
    fn remove(&mut self, principal: &Principal, id: ConnectionId) -> bool {
        let Some(own) = self.users.get_mut(principal) else {
            return false;
        };
        let removed = own.remove(&id).is_some();
        if own.is_empty() {
            self.users.remove(principal);
            if let Some(staff) = self.staff.get_mut(&principal.tenant()) {
                staff.remove(principal);
                if staff.is_empty() {
                    self.staff.remove(&principal.tenant());
                }
            }
        }
        removed
    }

    /// The staff users of `tenant` with a connection.
    fn staff_of(&self, tenant: TenantId) -> impl Iterator<Item = &Principal> {
        self.staff.get(&tenant).into_iter().flatten()
    }

    /// The users of `audience` with a connection, each once.
    fn heard_by<'a>(&'a self, audience: &'a Audience) -> impl Iterator<Item = &'a Principal> {
        let staff = audience.staff_of.and_then(|tenant| self.staff.get(&tenant));
        let named = audience
            .named
            .iter()
            .filter(move |p| self.users.contains_key(p) && !staff.is_some_and(|s| s.contains(p)));
        let members = audience.members.iter().flat_map(move |(tenant, users)| {
            users
                .iter()
                .flat_map(move |user| self.staff_user(*tenant, *user))
        });
        staff.into_iter().flatten().chain(named).chain(members)
    }

    /// The connected principals of staff member `user` of `tenant` (one per
    /// staff role they connected with).
    fn staff_user(
        &self,
        tenant: TenantId,
        user: StaffUserId,
    ) -> impl Iterator<Item = &Principal> + '_ {
        [StaffRole::Staff, StaffRole::Admin]
            .into_iter()
            .filter_map(move |role| {
                self.users
                    .get_key_value(&Principal::staff(tenant, user, role))
                    .map(|(principal, _)| principal)
            })
    }
}

/// The connection registry and fan-out of one node.
pub struct Hub {
    registry: RwLock<Registry>,
    audiences: Mutex<Audiences>,
    count: AtomicUsize,
    /// Times every connection was asked to resume.
    resyncs: AtomicU64,
    /// Read by the dispatcher's ordered feed to fill gaps.
    pub(super) messages: Arc<dyn MessageRepository>,
    /// Read for the host's policy, which decides by the stored conversation.
    conversations: Arc<dyn ConversationRepository>,
    /// Read for the audience of a conversation with members.
    members: Arc<dyn MembershipRepository>,
    policy: Arc<dyn AccessPolicy>,
}

impl Hub {
    /// A hub whose dispatcher reads missing messages from `messages`, the
    /// members of direct conversations and channels from `members`, and
    /// that asks `policy` (the host's, as the use cases do) who may read a
    /// conversation's events, beside the domain rules, showing it the
    /// conversation as `conversations` has it.
    pub fn new(
        messages: Arc<dyn MessageRepository>,
        conversations: Arc<dyn ConversationRepository>,
        members: Arc<dyn MembershipRepository>,
        policy: Arc<dyn AccessPolicy>,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry: RwLock::default(),
            audiences: Mutex::default(),
            count: AtomicUsize::new(0),
            resyncs: AtomicU64::new(0),
            messages,
            conversations,
            members,
            policy,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn audiences(&self) -> MutexGuard<'_, Audiences> {
        self.audiences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds connection `id` of `principal`, fed through `tx`.
    pub fn register(
        &self,
        id: ConnectionId,
        principal: Principal,
        tx: mpsc::Sender<Outbound>,
        control: ConnControl,
    ) {
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, principal, Conn { tx, control });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes connection `id` of `principal` (a no-op when the hub already
    /// dropped it).
    pub fn unregister(&self, principal: &Principal, id: ConnectionId) {
        let removed = self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(principal, id);
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Asks every connection to reconnect and `resume` (close code 1013):
    /// events may have been missed, the database has them.
    pub fn resync_all(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        self.close_all(CloseReason::Resync);
    }

    /// How many times every connection was asked to resume, since start.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Asks every connection of this node to close.
    pub fn close_all(&self, reason: CloseReason) {
        for conn in self.read().users.values().flat_map(HashMap::values) {
            conn.control.close(reason);
        }
    }

    /// Adds `principal` to the audience of `conversation`, for a membership
    /// event; a no-op when its audience is not cached (the next event
    /// resolves it).
    pub fn add_listener(&self, conversation: ConversationId, principal: Principal) {
        self.audiences().add(conversation, principal);
    }

    /// Removes `principal` from the audience of `conversation`.
    pub fn remove_listener(&self, conversation: ConversationId, principal: &Principal) {
        self.audiences().remove(conversation, principal);
    }

    /// Adds member `user` to the audience of `conversation`, for a
    /// membership notice; a no-op when its audience is not cached (the next
    /// event loads it from the store).
    pub fn add_member(&self, conversation: ConversationId, user: StaffUserId) {
        self.audiences().add_member(conversation, user);
    }

    /// Removes member `user` from the audience of `conversation`.
    pub fn remove_member(&self, conversation: ConversationId, user: StaffUserId) {
        self.audiences().remove_member(conversation, user);
    }

    /// Queues `out` for the connections of staff member `user` of
    /// `tenant`.
    pub fn to_staff_user(&self, tenant: TenantId, user: StaffUserId, out: &Outbound) {
        let dead = {
            let registry = self.read();
            Self::push(&registry, registry.staff_user(tenant, user), out)
        };
        self.bury(dead);
    }

    /// The audience of the conversation of `route`: cached, or resolved
    /// (from the store, for a conversation with members). `None` when the
    /// members cannot be read: nobody hears the event, readers resume.
    async fn audience(&self, route: &Route) -> Option<Arc<Audience>> {
        let id = route.conversation_id;
        if !route.access.kind.has_members() {
            return Some(self.audiences().resolve(id, &route.access, Instant::now()));
        }
        if let Some(cached) = self.audiences().cached(id, Instant::now()) {
            return Some(cached);
        }
        // The dispatcher routes one event at a time, so no membership
        // notice of this conversation can pass while this read runs.
        match self.members.member_ids(route.access.tenant, id).await {
            Ok(members) => Some(self.audiences().insert(
                id,
                Audience::of_members(route.access.tenant, members),
                Instant::now(),
            )),
            Err(err) => {
                tracing::error!(error = ?err, conversation_id = %id, "cannot read a conversation's members; they will resume");
                None
            }
        }
    }

    /// Drops the cached audience of `conversation`: the next event
    /// resolves it afresh.
    pub fn forget_audience(&self, conversation: ConversationId) {
        self.audiences().forget(conversation);
    }

    /// Drops the audiences of conversations without recent events.
    pub fn sweep(&self) {
        self.audiences().sweep(Instant::now());
    }

    /// Queues `out` for every connection of `principals` in `registry`;
    /// returns the connections to drop (closed, or closed now for being
    /// too slow).
    fn push<'a>(
        registry: &Registry,
        principals: impl Iterator<Item = &'a Principal>,
        out: &Outbound,
    ) -> Vec<(Principal, ConnectionId)> {
        let mut dead = Vec::new();
        for principal in principals {
            for (id, conn) in registry.users.get(principal).into_iter().flatten() {
                match conn.tx.try_send(out.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(connection = %id, "client too slow: closing its connection");
                        conn.control.close(CloseReason::Overflow);
                        dead.push((*principal, *id));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => dead.push((*principal, *id)),
                }
            }
        }
        dead
    }

    fn bury(&self, dead: Vec<(Principal, ConnectionId)>) {
        for (principal, id) in dead {
            self.unregister(&principal, id);
        }
    }

    /// Queues `out` for the staff connections of `tenant` whose user
    /// `wants` it.
    pub fn to_staff(&self, tenant: TenantId, wants: impl Fn(&Principal) -> bool, out: &Outbound) {
        let dead = {
            let registry = self.read();
            Self::push(
                &registry,
                registry.staff_of(tenant).filter(|p| wants(p)),
                out,
            )
        };
        self.bury(dead);
    }

    /// Queues `out` for the connections whose user `wants` it among those
    /// that may read the conversation of `route`: its audience, narrowed by
    /// the domain rules and, unless it refuses nothing, by the host's
    /// policy. The policy sees the conversation as stored (read once per
    /// event) and is asked once per user outside the registry's lock (a user
    /// who connects meanwhile is left out; they catch up with `resume`).
    /// When the conversation cannot be read, nobody hears the event; readers
    /// catch up from the database.
    pub async fn to_readers(
        &self,
        route: Route,
        wants: impl Fn(&Principal) -> bool,
        out: &Outbound,
    ) {
        let Some(audience) = self.audience(&route).await else {
            return;
        };
        // The audience of a conversation with members is its members.
        let member = route
            .access
            .kind
            .has_members()
            .then_some(MemberRole::Member);
        let readable = |principal: &&Principal| {
            authorize_access(principal, &route.access, member, Action::Read).is_ok()
                && wants(principal)
        };
        if self.policy.refuses_nothing() {
            let dead = {
                let registry = self.read();
                Self::push(
                    &registry,
                    registry.heard_by(&audience).filter(readable),
                    out,
                )
            };
            self.bury(dead);
            return;
        }
        let candidates: Vec<Principal> = self
            .read()
            .heard_by(&audience)
            .filter(readable)
            .copied()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let conversation = match self
            .conversations
            .find(route.access.tenant, route.conversation_id)
            .await
        {
            Ok(Some(conversation)) => conversation,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(error = ?err, conversation_id = %route.conversation_id, "cannot read a conversation for the access policy; its readers will resume");
                return;
            }
        };
        let conversation = &conversation;
        let allowed: HashSet<Principal> =
            futures::future::join_all(candidates.into_iter().map(|principal| async move {
                self.policy
                    .check(&principal, conversation, PolicyAction::Act(Action::Read))
                    .await
                    .is_ok()
                    .then_some(principal)
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        let dead = Self::push(&self.read(), allowed.iter(), out);
        self.bury(dead);
    }
}

#[cfg(test)]
mod tests {
    use chat_app::{AllowAll, MockConversationRepository, MockMessageRepository};
    use chat_domain::{Conversation, CustomerId, StaffRole, StaffUserId};

    use super::*;
    use crate::ws::protocol::Frame;

    fn hub() -> Arc<Hub> {
        Hub::new(
            Arc::new(MockMessageRepository::new()),
            Arc::new(MockConversationRepository::new()),
            Arc::new(chat_app::MockMembershipRepository::new()),
            Arc::new(AllowAll),
        )
    }

    /// Registers a connection of `principal` with room for `room` frames.
    fn connect_with(
        hub: &Hub,
        principal: Principal,
        room: usize,
    ) -> (ConnectionId, ConnControl, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(room);
        let (id, control) = (ConnectionId::new(), ConnControl::default());
        hub.register(id, principal, tx, control.clone());
        (id, control, rx)
    }

    fn connect(hub: &Hub, principal: Principal) -> mpsc::Receiver<Outbound> {
        connect_with(hub, principal, 8).2
    }

    fn frames(queue: &mut mpsc::Receiver<Outbound>) -> usize {
        let mut count = 0;
        while queue.try_recv().is_ok() {
            count += 1;
        }
        count
    }

    fn inbox(tenant: TenantId, customer: CustomerId) -> Conversation {
        chat_app::fixtures::conversation(tenant, customer, None)
    }

    async fn event(hub: &Hub, conversation: &Conversation) {
        let out = Outbound::of_conversation(conversation.id, Frame::from("{}"));
        hub.to_readers(Route::of(conversation), |_| true, &out)
            .await;
    }

    #[test]
    fn a_user_stays_indexed_until_their_last_connection_closes() {
        let hub = hub();
        let tenant = TenantId::new_v4();
        let staff = Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff);
        let (first, _, _q1) = connect_with(&hub, staff, 1);
        let (second, _, _q2) = connect_with(&hub, staff, 1);
        assert_eq!(
            hub.read().staff_of(tenant).count(),
            1,
            "one user, two sockets"
        );

        hub.unregister(&staff, first);
        assert_eq!(hub.read().staff_of(tenant).count(), 1);
        hub.unregister(&staff, second);
        hub.unregister(&staff, second);
        let registry = hub.read();
        assert!(registry.users.is_empty() && registry.staff.is_empty());
        assert_eq!(hub.connection_count(), 0);
    }

    #[tokio::test]
    async fn an_audience_changes_one_principal_at_a_time() {
        let hub = hub();
        let (tenant, customer) = (TenantId::new_v4(), CustomerId::new_v4());
        let conversation = inbox(tenant, customer);
        let customer_principal = Principal::customer(tenant, customer);
        let mut staff = connect(
            &hub,
            Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff),
        );
        let mut own = connect(&hub, customer_principal);

        hub.remove_listener(conversation.id, &customer_principal);
        event(&hub, &conversation).await;
        assert_eq!(
            (frames(&mut staff), frames(&mut own)),
            (1, 1),
            "not cached yet"
        );

        hub.remove_listener(conversation.id, &customer_principal);
        event(&hub, &conversation).await;
        assert_eq!((frames(&mut staff), frames(&mut own)), (1, 0));

        hub.add_listener(conversation.id, customer_principal);
        event(&hub, &conversation).await;
        assert_eq!((frames(&mut staff), frames(&mut own)), (1, 1));

        hub.remove_listener(conversation.id, &customer_principal);
        hub.forget_audience(conversation.id);
        event(&hub, &conversation).await;
        assert_eq!(
            (frames(&mut staff), frames(&mut own)),
            (1, 1),
            "resolved afresh"
        );
    }

    #[tokio::test]
    async fn a_staff_member_also_named_in_an_audience_hears_once() {
        let hub = hub();
        let tenant = TenantId::new_v4();
        let conversation = inbox(tenant, CustomerId::new_v4());
        let staff = Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff);
        let mut queue = connect(&hub, staff);
        event(&hub, &conversation).await;
        hub.add_listener(conversation.id, staff);
        event(&hub, &conversation).await;
        assert_eq!(frames(&mut queue), 2);
    }

    #[tokio::test]
    async fn a_full_queue_closes_its_connection_and_nobody_else_s() {
        let hub = hub();
        let (tenant, customer) = (TenantId::new_v4(), CustomerId::new_v4());
        let conversation = inbox(tenant, customer);
        let staff = Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff);
        let (_, slow, _stuck) = connect_with(&hub, staff, 1);
        let (_, fine, mut reading) = connect_with(&hub, staff, 8);
        event(&hub, &conversation).await;
        event(&hub, &conversation).await;
        assert_eq!(slow.reason(), CloseReason::Overflow);
        assert!(slow.is_closed() && !fine.is_closed());
        assert_eq!(hub.connection_count(), 1);
        assert_eq!(frames(&mut reading), 2);

        hub.close_all(CloseReason::Resync);
        assert_eq!(fine.reason(), CloseReason::Resync);
    }
}
