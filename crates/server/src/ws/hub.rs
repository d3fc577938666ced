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
    BusEvent, ChatEvent, EventStream, MessageCursor, MessageQuery, MessageRepository, Receipt,
};
use chat_domain::{
    authorize, Action, ClientMsgId, Conversation, ConversationId, Message, Principal, Sender, Seq,
    TenantId,
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
    connections: RwLock<HashMap<TenantId, HashMap<ConnectionId, Conn>>>,
    count: AtomicUsize,
    messages: Arc<dyn MessageRepository>,
}

impl Hub {
    /// A hub that reads missing messages from `messages`.
    pub fn new(messages: Arc<dyn MessageRepository>) -> Arc<Self> {
        Arc::new(Self {
            connections: RwLock::default(),
            count: AtomicUsize::new(0),
            messages,
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

    /// Removes a connection (a no-op when the hub already dropped it).
    pub fn unregister(&self, tenant: TenantId, id: ConnectionId) {
        let mut connections = self
            .connections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tenant_connections) = connections.get_mut(&tenant) {
            if tenant_connections.remove(&id).is_some() {
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
        for conn in connections.values().flat_map(HashMap::values) {
            conn.control.close(reason);
        }
    }

    /// Queues `out` for every connection of `tenant` that `wants`, without
    /// ever waiting: a connection whose queue is full is closed (it resumes
    /// later) so that it cannot slow anybody else down.
    fn fan_out(&self, tenant: TenantId, wants: impl Fn(&Principal) -> bool, out: &Outbound) {
        let mut dead = Vec::new();
        {
            let connections = self
                .connections
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(tenant_connections) = connections.get(&tenant) else {
                return;
            };
            for (id, conn) in tenant_connections {
                if !wants(&conn.principal) {
                    continue;
                }
                match conn.tx.try_send(out.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(connection = %id, "client too slow: closing its connection");
                        conn.control.close(CloseReason::Overflow);
                        dead.push(*id);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => dead.push(*id),
                }
            }
        }
        for id in dead {
            self.unregister(tenant, id);
        }
    }

    /// Queues `frame` for every connection that may read `conversation`.
    fn to_readers(&self, conversation: &Conversation, frame: Frame) {
        self.fan_out_to_readers(
            conversation,
            &Outbound {
                conversation: Some(conversation.id),
                seq: None,
                echo: None,
                frame,
            },
        );
    }

    fn deliver_message(&self, conversation: &Conversation, message: Message) {
        let echo = message
            .client_msg_id
            .as_ref()
            .map(|key| EchoKey::new(message.sender, key));
        self.fan_out_to_readers(
            conversation,
            &Outbound {
                conversation: Some(conversation.id),
                seq: Some(message.seq.get()),
                echo,
                frame: protocol::event(
                    "new_message",
                    json!({"message": MessageDto::from(message)}),
                ),
            },
        );
    }

    fn fan_out_to_readers(&self, conversation: &Conversation, out: &Outbound) {
        self.fan_out(
            conversation.tenant,
            |principal| authorize(principal, conversation, Action::Read).is_ok(),
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
            self.deliver_message(&conversation, message);
            return;
        };
        state.touched = now;
        if seq == state.upto + 1 {
            state.upto = seq;
            self.deliver_message(&conversation, message);
        } else if seq > state.upto + 1 {
            for missed in self.missing(&conversation, state.upto, seq).await {
                self.deliver_message(&conversation, missed);
            }
            state.upto = seq;
            self.deliver_message(&conversation, message);
        } else if seq < state.floor && state.late.insert(seq) {
            // Published before, delivered after, the first message this
            // node saw: late, but never lost.
            self.deliver_message(&conversation, message);
        }
        // Otherwise a duplicate (already fetched on a gap): dropped.
    }

    fn route(&self, event: ChatEvent) {
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
                self.to_readers(&conversation, frame);
            }
            ChatEvent::ConversationUpdated { conversation } => {
                let frame = protocol::event(
                    "conversation_updated",
                    json!({"conversation": ConversationDto::from(conversation.clone())}),
                );
                self.to_readers(&conversation, frame);
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
                self.to_readers(&conversation, frame);
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
                self.fan_out(
                    conversation.tenant,
                    |principal| {
                        principal.as_sender() != sender
                            && authorize(principal, &conversation, Action::Read).is_ok()
                    },
                    &out,
                );
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
                    Some(BusEvent::Event(event)) => self.route(event),
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
