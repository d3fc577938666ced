//! Events: what happened ([`ChatEvent`]), the [`EventPublisher`] a
//! [`crate::ChatService`] hands them to, and the [`EventBus`] that carries
//! them between server nodes.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chat_domain::{
    Conversation, ConversationAccess, ConversationId, Message, ReadState, Sender, TenantId,
};
use futures::Stream;

use super::Receipt;

/// Where an event of one conversation goes: the conversation, and the
/// facts that decide who may read it. Events carry this header rather than
/// the whole conversation, so what crosses the bus is what routing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its tenant, kind and participants.
    pub access: ConversationAccess,
}

impl Route {
    /// The route of `conversation`'s events.
    pub const fn of(conversation: &Conversation) -> Self {
        Self {
            conversation_id: conversation.id,
            access: conversation.access(),
        }
    }
}

/// Something that happened, for real-time fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A message was committed.
    MessageCreated {
        /// Its conversation.
        route: Route,
        /// The message.
        message: Message,
    },
    /// A message was edited, or deleted (softly: it keeps its `seq`, and
    /// `deleted_at` says so).
    MessageChanged {
        /// Its conversation.
        route: Route,
        /// The message after the change.
        message: Message,
    },
    /// Status, assignee or tags changed.
    ConversationUpdated {
        /// The conversation after the change.
        conversation: Conversation,
    },
    /// A read or delivered marker moved.
    ReceiptMoved {
        /// The conversation.
        route: Route,
        /// Which marker.
        receipt: Receipt,
        /// The markers after the move.
        state: ReadState,
    },
    /// A participant started or stopped typing. Not stored.
    Typing {
        /// The conversation.
        route: Route,
        /// Who is typing.
        sender: Sender,
        /// Started (`true`) or stopped (`false`).
        is_typing: bool,
    },
    /// A user's presence changed. Seen by the tenant's staff.
    PresenceChanged {
        /// The user's tenant.
        tenant: TenantId,
        /// The presence after the change.
        presence: chat_domain::Presence,
    },
    /// A node dropped events it could not publish (its queue to the bus
    /// was full): every node asks its connections to reconnect and
    /// `resume`, so what was dropped is read from the database. Published
    /// by [`crate::QueuedPublisher`] once the bus takes events again.
    EventsLost {
        /// How many events were dropped.
        dropped: u64,
    },
}

impl ChatEvent {
    /// The conversation the event belongs to, if it belongs to one.
    pub const fn route(&self) -> Option<Route> {
        // Every event is listed: a new one must say where it goes.
        match self {
            Self::MessageCreated { route, .. }
            | Self::MessageChanged { route, .. }
            | Self::ReceiptMoved { route, .. }
            | Self::Typing { route, .. } => Some(*route),
            Self::ConversationUpdated { conversation } => Some(Route::of(conversation)),
            Self::PresenceChanged { .. } | Self::EventsLost { .. } => None,
        }
    }
}

/// Publishes events to whoever delivers them in real time. Best effort: the
/// database is the truth, so a failure is the adapter's to log, never the
/// caller's to handle.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Hands `event` to the fan-out.
    async fn publish(&self, event: ChatEvent);
}

/// What a bus subscription yields.
// Events are moved, never stored in bulk: boxing would only add an
// allocation per event on the delivery path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// The next event.
    Event(ChatEvent),
    /// The subscriber fell behind and `n` events were dropped: whoever
    /// delivers them must resynchronise from the database.
    Lagged(u64),
}

/// A subscription to the bus.
pub type EventStream = Pin<Box<dyn Stream<Item = BusEvent> + Send>>;

/// The bus could not take an event (for example Redis is down or did not
/// answer in time); the caller may try again.
#[derive(Debug, thiserror::Error)]
#[error("the event bus did not take the event")]
pub struct BusError(#[source] pub anyhow::Error);

/// Carries events to every server node (including the publishing one).
/// Fan-out is best effort: the database is the truth.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Sends `event` to every node's subscribers.
    ///
    /// # Errors
    /// [`BusError`] when the bus did not take it (nothing was sent).
    async fn publish(&self, event: &ChatEvent) -> Result<(), BusError>;

    /// Every event published from now on, on any node.
    fn subscribe(&self) -> EventStream;
}

/// Lets any [`EventBus`] serve as the [`EventPublisher`] of a
/// [`crate::ChatService`], publishing each event before the use case goes
/// on: right for a bus that never waits ([`crate::InProcessBus`]). For one
/// that may ([`crate::QueuedPublisher`]), a use case would wait for it.
#[derive(Clone)]
pub struct BusPublisher(pub Arc<dyn EventBus>);

#[async_trait]
impl EventPublisher for BusPublisher {
    async fn publish(&self, event: ChatEvent) {
        if let Err(err) = self.0.publish(&event).await {
            tracing::warn!(error = %err, "an event was not published; readers catch up from the database");
        }
    }
}
