//! The hub of one server node: the registry of its open connections and the
//! dispatcher that routes every bus event to the connections allowed to see
//! it.
//!
//! The dispatcher also restores per-conversation `seq` order: events may
//! reach it out of order (two senders racing, two nodes publishing), but a
//! message is committed only after every lower `seq` of its conversation, so
//! on a gap the missing messages are read from the database and delivered
//! first. Each connection therefore sees every conversation's messages
//! exactly once, in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chat_app::{
    AccessPolicy, BusEvent, ChatEvent, EventStream, MessageCursor, MessageQuery, MessageRepository,
    PolicyAction, Receipt,
};
use chat_domain::{
    authorize, Action, ClientMsgId, Conversation, ConversationId, CustomerId, Message, Principal,
    Sender, Seq, TenantId,
};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Frame};
use crate::dto::{time, ConversationDto, MessageDto};
use chat_app::ConnectionId;

/// One frame queued for a connection. Message frames carry their
/// conversation and `seq` so the connection can drop what a `resume` already
/// replayed, and the [`EchoKey`] of their send so the sending connection can
/// put its ack first.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The conversation of a conversation's event (messages, receipts,
    /// updates); `None` for typing and presence.
    pub conversation: Option<ConversationId>,
    /// The message's `seq`, for `new_message` frames.
    pub seq: Option<u64>,
    /// Who sent a `new_message`, under which `client_msg_id`.
    pub echo: Option<EchoKey>,
    /// The serialised frame.
    pub frame: Frame,
}

/// A send's identity, its sender and `client_msg_id`, folded into a number
/// that costs nothing to copy to every recipient. Two different sends may
/// share one (rarely): the only effect is that a connection holds an event
/// back until its own pending send of that conversation is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EchoKey(u64);

impl EchoKey {
    /// The key of `sender`'s send under `client_msg_id`.
    pub fn new(sender: Sender, client_msg_id: &ClientMsgId) -> Self {
        use std::hash::{Hash, Hasher};
        // Fixed keys: equal on every node and every run.
        let mut hasher = std::hash::DefaultHasher::new();
        sender.hash(&mut hasher);
        client_msg_id.hash(&mut hasher);
        Self(hasher.finish())
    }
}

/// Why the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down (1001).
    Shutdown,
    /// The client did not keep up with its events (1013); it should
    /// reconnect and `resume`.
    Overflow,
    /// This node missed events and cannot vouch for completeness (1013);
    /// the client should reconnect and `resume`.
    Resync,
}

/// Closes one connection from outside its task.
#[derive(Debug, Clone, Default)]
pub struct ConnControl {
    token: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
}

impl ConnControl {
    /// A control that is also cancelled by `parent` (server shutdown).
    pub fn child_of(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            reason: Arc::default(),
        }
    }

    /// Asks the connection to close for `reason` (the first reason wins).
    pub fn close(&self, reason: CloseReason) {
        let mut slot = self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(reason);
        drop(slot);
        self.token.cancel();
    }

    /// Completes when the connection is asked to close.
    pub async fn closed(&self) {
        self.token.cancelled().await;
    }

    /// Whether the connection was asked to close.
    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why it was asked to close; shutdown when nobody said.
    pub fn reason(&self) -> CloseReason {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or(CloseReason::Shutdown)
    }
}

struct Conn {
    principal: Principal,
    tx: mpsc::Sender<Outbound>,
    control: ConnControl,
}

/// The connections of one tenant, indexed by who may read what: every
/// staff connection, and each customer's connections under that customer.
/// An event of a customer's conversation then visits the staff and that
/// customer's sockets, never the tenant's other customers.
#[derive(Default)]
struct TenantConnections {
    staff: HashMap<ConnectionId, Conn>,
    customers: HashMap<CustomerId, HashMap<ConnectionId, Conn>>,
}

/// Whose connections an event may concern (the permission rules then
/// decide among them).
#[derive(Debug, Clone, Copy)]
enum Audience {
    /// Staff connections only.
    Staff,
    /// Staff connections, and those of this customer, if any.
    StaffAnd(Option<CustomerId>),
}

impl Audience {
    /// Who may read `conversation`: staff, and its customer.
    fn readers_of(conversation: &Conversation) -> Self {
        Self::StaffAnd(conversation.kind.customer_id())
    }
}

impl TenantConnections {
    fn insert(&mut self, id: ConnectionId, conn: Conn) {
        match conn.principal {
            Principal::Staff { .. } => self.staff.insert(id, conn),
            Principal::Customer { customer_id, .. } => self
                .customers
                .entry(customer_id)
                .or_default()
                .insert(id, conn),
        };
    }

    /// Removes connection `id` of `principal`; `true` when it was there.
    fn remove(&mut self, principal: &Principal, id: ConnectionId) -> bool {
        match principal {
            Principal::Staff { .. } => self.staff.remove(&id).is_some(),
            Principal::Customer { customer_id, .. } => {
                let Some(own) = self.customers.get_mut(customer_id) else {
                    return false;
                };
                let removed = own.remove(&id).is_some();
                if own.is_empty() {
                    self.customers.remove(customer_id);
                }
                removed
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.staff.is_empty() && self.customers.is_empty()
    }

    fn all(&self) -> impl Iterator<Item = (&ConnectionId, &Conn)> {
        self.staff
            .iter()
            .chain(self.customers.values().flat_map(HashMap::iter))
    }

    fn of(&self, audience: Audience) -> impl Iterator<Item = (&ConnectionId, &Conn)> {
        let customer = match audience {
            Audience::Staff | Audience::StaffAnd(None) => None,
            Audience::StaffAnd(Some(customer)) => self.customers.get(&customer),
        };
        self.staff
            .iter()
            .chain(customer.into_iter().flat_map(HashMap::iter))
    }
}

/// Per-conversation delivery order kept by the dispatcher.
struct Order {
    /// Highest `seq` fanned out; every `seq` from `floor` to it has been.
    upto: u64,
    /// The first `seq` this node fanned out for the conversation.
    floor: u64,
    /// `seq`s below `floor` delivered late (out of order, never twice).
    late: HashSet<u64>,
    touched: Instant,
}

/// How long an idle conversation's order state is kept.
const ORDER_IDLE: Duration = Duration::from_secs(600);

/// The connection registry and event router of one node.
pub struct Hub {
    connections: RwLock<HashMap<TenantId, TenantConnections>>,
    count: AtomicUsize,
    messages: Arc<dyn MessageRepository>,
    policy: Arc<dyn AccessPolicy>,
}

impl Hub {
    /// A hub that reads missing messages from `messages` and asks `policy`
    /// (the host's, as the use cases do) who may read a conversation's
    /// events, beside the domain rules.
    pub fn new(messages: Arc<dyn MessageRepository>, policy: Arc<dyn AccessPolicy>) -> Arc<Self> {
        Arc::new(Self {
            connections: RwLock::default(),
            count: AtomicUsize::new(0),
            messages,
            policy,
        })
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds a connection.
    pub fn register(
        &self,
        id: ConnectionId,
        principal: Principal,
        tx: mpsc::Sender<Outbound>,
        control: ConnControl,
    ) {
        let mut connections = self
            .connections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.entry(principal.tenant()).or_default().insert(
            id,
            Conn {
                principal,
                tx,
                control,
            },
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes connection `id` of `principal` (a no-op when the hub already
    /// dropped it).
    pub fn unregister(&self, principal: &Principal, id: ConnectionId) {
        let tenant = principal.tenant();
        let mut connections = self
            .connections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tenant_connections) = connections.get_mut(&tenant) {
            if tenant_connections.remove(principal, id) {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            if tenant_connections.is_empty() {
                connections.remove(&tenant);
            }
        }
    }

    /// Asks every connection of this node to close.
    pub fn close_all(&self, reason: CloseReason) {
        let connections = self
            .connections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, conn) in connections.values().flat_map(TenantConnections::all) {
            conn.control.close(reason);
        }
    }

    /// Queues `out` for every connection of `tenant` in `audience` that
    /// `wants`, without ever waiting: a connection whose queue is full is
    /// closed (it resumes later) so that it cannot slow anybody else down.
    fn fan_out(
        &self,
        tenant: TenantId,
        audience: Audience,
        wants: impl Fn(&Principal) -> bool,
        out: &Outbound,
    ) {
        let mut dead = Vec::new();
        {
            let connections = self
                .connections
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(tenant_connections) = connections.get(&tenant) else {
                return;
            };
            for (id, conn) in tenant_connections.of(audience) {
                if !wants(&conn.principal) {
                    continue;
                }
                match conn.tx.try_send(out.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(connection = %id, "client too slow: closing its connection");
                        conn.control.close(CloseReason::Overflow);
                        dead.push((conn.principal, *id));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => dead.push((conn.principal, *id)),
                }
            }
        }
        for (principal, id) in dead {
            self.unregister(&principal, id);
        }
    }

    /// Queues `frame` for every connection that may read `conversation`.
    async fn to_readers(&self, conversation: &Conversation, frame: Frame) {
        self.fan_out_to_readers(
            conversation,
            |_| true,
            &Outbound {
                conversation: Some(conversation.id),
                seq: None,
                echo: None,
                frame,
            },
        )
        .await;
    }

    async fn deliver_message(&self, conversation: &Conversation, message: Message) {
        let echo = message
            .client_msg_id
            .as_ref()
            .map(|key| EchoKey::new(message.sender, key));
        self.fan_out_to_readers(
            conversation,
            |_| true,
            &Outbound {
                conversation: Some(conversation.id),
                seq: Some(message.seq.get()),
                echo,
                frame: protocol::event(
                    "new_message",
                    json!({"message": MessageDto::from(message)}),
                ),
            },
        )
        .await;
    }

    /// Queues `out` for the connections that `wants` among those that may
    /// read `conversation`: by the domain rules and, unless it refuses
    /// nothing, by the host's policy, asked once per principal outside the
    /// registry's lock (a connection that opens meanwhile is left out; it
    /// catches up with `resume`).
    async fn fan_out_to_readers(
        &self,
        conversation: &Conversation,
        wants: impl Fn(&Principal) -> bool,
        out: &Outbound,
    ) {
        let audience = Audience::readers_of(conversation);
        let readable = |principal: &Principal| {
            authorize(principal, conversation, Action::Read).is_ok() && wants(principal)
        };
        if self.policy.refuses_nothing() {
            self.fan_out(conversation.tenant, audience, readable, out);
            return;
        }
        let candidates: HashSet<Principal> = {
            let connections = self
                .connections
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(tenant_connections) = connections.get(&conversation.tenant) else {
                return;
            };
            tenant_connections
                .of(audience)
                .map(|(_, conn)| conn.principal)
                .filter(|principal| readable(principal))
                .collect()
        };
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
        // Only readable principals were asked: the set decides alone.
        self.fan_out(
            conversation.tenant,
            audience,
            |principal| allowed.contains(principal),
            out,
        );
    }

    /// Reads the messages of `conversation` after `upto` and below `below`
    /// from the database, in order.
    async fn missing(&self, conversation: &Conversation, upto: u64, below: u64) -> Vec<Message> {
        let mut found = Vec::new();
        let mut after = upto;
        while after + 1 < below {
            let Ok(cursor) = Seq::from_u64(after) else {
                break;
            };
            let limit = u32::try_from((below - after - 1).min(200)).unwrap_or(200);
            match self
                .messages
                .list_messages(
                    conversation.tenant,
                    conversation.id,
                    MessageQuery {
                        cursor: MessageCursor::After(cursor),
                        limit,
                    },
                )
                .await
            {
                Ok(page) => {
                    let before_len = found.len();
                    for message in page.messages {
                        if message.seq.get() < below {
                            after = message.seq.get();
                            found.push(message);
                        }
                    }
                    if found.len() == before_len || !page.has_more {
                        break;
                    }
                }
                Err(err) => {
                    tracing::error!(error = ?err, conversation_id = %conversation.id, "cannot read missed messages; clients will resume");
                    break;
                }
            }
        }
        found
    }

    async fn on_message(
        &self,
        order: &mut HashMap<ConversationId, Order>,
        conversation: Conversation,
        message: Message,
    ) {
        let seq = message.seq.get();
        let now = Instant::now();
        let Some(state) = order.get_mut(&conversation.id) else {
            order.insert(
                conversation.id,
                Order {
                    upto: seq,
                    floor: seq,
                    late: HashSet::new(),
                    touched: now,
                },
            );
            self.deliver_message(&conversation, message).await;
            return;
        };
        state.touched = now;
        if seq == state.upto + 1 {
            state.upto = seq;
            self.deliver_message(&conversation, message).await;
        } else if seq > state.upto + 1 {
            for missed in self.missing(&conversation, state.upto, seq).await {
                self.deliver_message(&conversation, missed).await;
            }
            state.upto = seq;
            self.deliver_message(&conversation, message).await;
        } else if seq < state.floor && state.late.insert(seq) {
            // Published before, delivered after, the first message this
            // node saw: late, but never lost.
            self.deliver_message(&conversation, message).await;
        }
        // Otherwise a duplicate (already fetched on a gap): dropped.
    }

    async fn route(&self, event: ChatEvent) {
        match event {
            ChatEvent::MessageCreated { .. } => {}
            ChatEvent::MessageUpdated {
                conversation,
                message,
            }
            | ChatEvent::MessageDeleted {
                conversation,
                message,
            } => {
                let kind = if message.deleted_at.is_some() {
                    "message_deleted"
                } else {
                    "message_updated"
                };
                let frame = protocol::event(kind, json!({"message": MessageDto::from(message)}));
                self.to_readers(&conversation, frame).await;
            }
            ChatEvent::ConversationUpdated { conversation } => {
                let frame = protocol::event(
                    "conversation_updated",
                    json!({"conversation": ConversationDto::from(conversation.clone())}),
                );
                self.to_readers(&conversation, frame).await;
            }
            ChatEvent::ReceiptMoved {
                conversation,
                receipt,
                state,
            } => {
                let (kind, up_to) = match receipt {
                    Receipt::Read => ("read", state.last_read_seq),
                    Receipt::Delivered => ("delivered", state.last_delivered_seq),
                };
                let frame = protocol::event(
                    kind,
                    json!({
                        "conversation_id": conversation.id.to_string(),
                        "reader": protocol::sender(state.reader),
                        "up_to_seq": up_to.get(),
                        "at": time(state.updated_at),
                    }),
                );
                self.to_readers(&conversation, frame).await;
            }
            ChatEvent::Typing {
                conversation,
                sender,
                is_typing,
            } => {
                let out = Outbound {
                    conversation: None,
                    seq: None,
                    echo: None,
                    frame: protocol::event(
                        "typing",
                        json!({
                            "conversation_id": conversation.id.to_string(),
                            "sender": protocol::sender(sender),
                            "is_typing": is_typing,
                        }),
                    ),
                };
                // The other participants only.
                self.fan_out_to_readers(
                    &conversation,
                    |principal| principal.as_sender() != sender,
                    &out,
                )
                .await;
            }
            ChatEvent::PresenceChanged { tenant, presence } => {
                let out = Outbound {
                    conversation: None,
                    seq: None,
                    echo: None,
                    frame: protocol::event(
                        "presence",
                        json!({
                            "user": protocol::sender(presence.user),
                            "status": presence.status.as_str(),
                            "last_seen_at": presence.last_seen_at.map(time),
                        }),
                    ),
                };
                // The user's own sockets know their status already.
                self.fan_out(
                    tenant,
                    Audience::Staff,
                    |principal| principal.is_staff() && principal.as_sender() != presence.user,
                    &out,
                );
            }
        }
    }

    /// Routes bus events until `shutdown`.
    pub async fn run(self: Arc<Self>, mut events: EventStream, shutdown: CancellationToken) {
        let mut order: HashMap<ConversationId, Order> = HashMap::new();
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    let now = Instant::now();
                    order.retain(|_, state| now.duration_since(state.touched) < ORDER_IDLE);
                }
                next = events.next() => match next {
                    Some(BusEvent::Event(ChatEvent::MessageCreated { conversation, message })) => {
                        self.on_message(&mut order, conversation, message).await;
                    }
                    Some(BusEvent::Event(event)) => self.route(event).await,
                    Some(BusEvent::Lagged(missed)) => {
                        // Some connections may have missed events: make them
                        // all reconnect and resume from the database.
                        tracing::error!(missed, "event dispatcher fell behind: asking every connection to resume");
                        order.clear();
                        self.close_all(CloseReason::Resync);
                    }
                    None => {
                        tracing::error!("event bus closed: asking every connection to resume");
                        self.close_all(CloseReason::Resync);
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_app::MockMessageRepository;
    use chat_domain::{NewCustomerConversation, StaffRole, StaffUserId};

    use super::*;

    /// Registers a connection of `principal`; returns its queue.
    fn connect(hub: &Hub, principal: Principal) -> mpsc::Receiver<Outbound> {
        let (tx, rx) = mpsc::channel(8);
        hub.register(ConnectionId::new(), principal, tx, ConnControl::default());
        rx
    }

    fn frames(queue: &mut mpsc::Receiver<Outbound>) -> usize {
        let mut count = 0;
        while queue.try_recv().is_ok() {
            count += 1;
        }
        count
    }

    fn hub(policy: Arc<dyn AccessPolicy>) -> Arc<Hub> {
        Hub::new(Arc::new(MockMessageRepository::new()), policy)
    }

    #[tokio::test]
    async fn events_reach_the_readers_of_their_conversation_and_nobody_else() {
        let hub = hub(Arc::new(chat_app::AllowAll));
        let tenant = TenantId::new_v4();
        let (customer, other_customer) = (CustomerId::new_v4(), CustomerId::new_v4());
        let clinician = StaffUserId::new_v4();
        let conversation = |clinician| {
            NewCustomerConversation {
                id: ConversationId::new_v7(),
                tenant,
                customer_id: customer,
                clinician,
                now: chrono::Utc::now(),
            }
            .prospective()
        };
        let (inbox, private) = (conversation(None), conversation(Some(clinician)));
        let staff = Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff);
        let mut queues = vec![
            ("staff", connect(&hub, staff)),
            (
                "the clinician",
                connect(&hub, Principal::staff(tenant, clinician, StaffRole::Staff)),
            ),
            (
                "an admin",
                connect(
                    &hub,
                    Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Admin),
                ),
            ),
            (
                "the customer",
                connect(&hub, Principal::customer(tenant, customer)),
            ),
            (
                "the customer's phone",
                connect(&hub, Principal::customer(tenant, customer)),
            ),
            (
                "another customer",
                connect(&hub, Principal::customer(tenant, other_customer)),
            ),
            (
                "staff of another tenant",
                connect(
                    &hub,
                    Principal::staff(TenantId::new_v4(), StaffUserId::new_v4(), StaffRole::Admin),
                ),
            ),
            (
                "the same customer id in another tenant",
                connect(&hub, Principal::customer(TenantId::new_v4(), customer)),
            ),
        ];
        // (conversation, who gets the event: one flag per queue above)
        let table = [
            (&inbox, [true, true, true, true, true, false, false, false]),
            (
                &private,
                [false, true, true, true, true, false, false, false],
            ),
        ];
        for (conversation, expected) in table {
            hub.to_readers(conversation, Frame::from("{}")).await;
            for ((who, queue), expected) in queues.iter_mut().zip(expected) {
                assert_eq!(
                    frames(queue),
                    usize::from(expected),
                    "{who}, {:?}",
                    conversation.kind
                );
            }
        }

        // Presence goes to staff only; a closed connection is dropped.
        hub.route(ChatEvent::PresenceChanged {
            tenant,
            presence: chat_domain::Presence {
                user: Sender::Customer(customer),
                status: chat_domain::PresenceStatus::Online,
                last_seen_at: None,
            },
        })
        .await;
        let got: Vec<usize> = queues.iter_mut().map(|(_, q)| frames(q)).collect();
        assert_eq!(got, [1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(hub.connection_count(), 8);
        drop(queues.remove(4));
        hub.to_readers(&inbox, Frame::from("{}")).await;
        assert_eq!(hub.connection_count(), 7, "the phone's connection is gone");
        hub.unregister(&Principal::customer(tenant, customer), ConnectionId::new());
        assert_eq!(hub.connection_count(), 7, "unknown ids change nothing");
    }

    /// A host policy that keeps one staff member out of one customer's
    /// conversations (say, not of their care team).
    struct CareTeam {
        outsider: StaffUserId,
        customer: CustomerId,
    }

    #[async_trait::async_trait]
    impl AccessPolicy for CareTeam {
        async fn check(
            &self,
            principal: &Principal,
            conversation: &Conversation,
            _action: PolicyAction,
        ) -> Result<(), chat_domain::Denied> {
            let outsider = principal.as_sender() == Sender::Staff(self.outsider);
            if outsider && conversation.kind.customer_id() == Some(self.customer) {
                Err(chat_domain::Denied::NotFound)
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn the_host_policy_keeps_conversation_events_from_whom_it_refuses() {
        let tenant = TenantId::new_v4();
        let (customer, other_customer) = (CustomerId::new_v4(), CustomerId::new_v4());
        let outsider = StaffUserId::new_v4();
        let hub = hub(Arc::new(CareTeam { outsider, customer }));
        let inbox_of = |customer| {
            NewCustomerConversation {
                id: ConversationId::new_v7(),
                tenant,
                customer_id: customer,
                clinician: None,
                now: chrono::Utc::now(),
            }
            .prospective()
        };
        let (refused, other) = (inbox_of(customer), inbox_of(other_customer));
        let mut outsider_queue =
            connect(&hub, Principal::staff(tenant, outsider, StaffRole::Staff));
        let mut outsider_phone =
            connect(&hub, Principal::staff(tenant, outsider, StaffRole::Staff));
        let mut colleague = connect(
            &hub,
            Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff),
        );
        let mut the_customer = connect(&hub, Principal::customer(tenant, customer));

        // A message, a receipt-like update and typing: all kept from the
        // outsider, on every socket of theirs.
        let message = |conversation: &Conversation| Message {
            id: chat_domain::MessageId::new_v7(),
            tenant,
            conversation_id: conversation.id,
            seq: Seq::from_u64(1).unwrap(),
            sender: Sender::Customer(customer),
            body: None,
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: None,
            created_at: chrono::Utc::now(),
            edited_at: None,
            deleted_at: None,
        };
        hub.deliver_message(&refused, message(&refused)).await;
        hub.route(ChatEvent::ConversationUpdated {
            conversation: refused.clone(),
        })
        .await;
        hub.route(ChatEvent::Typing {
            conversation: refused.clone(),
            sender: Sender::Customer(customer),
            is_typing: true,
        })
        .await;
        assert_eq!(frames(&mut outsider_queue), 0);
        assert_eq!(frames(&mut outsider_phone), 0);
        assert_eq!(frames(&mut colleague), 3);
        assert_eq!(frames(&mut the_customer), 2, "not their own typing");

        // Other customers' conversations still reach the outsider.
        hub.deliver_message(&other, message(&other)).await;
        assert_eq!(frames(&mut outsider_queue), 1);
        assert_eq!(frames(&mut outsider_phone), 1);
        assert_eq!(frames(&mut colleague), 1);
        assert_eq!(frames(&mut the_customer), 0);
    }
}
