//! What passes between the hub and one connection: the frames queued for
//! it ([`Outbound`], with the [`EchoKey`] of the send they echo) and the
//! handle that closes it from outside ([`ConnControl`], [`CloseReason`]).

use std::sync::{Arc, Mutex};

use chat_domain::{ClientMsgId, ConversationId, Sender};
use tokio_util::sync::CancellationToken;

use super::protocol::Frame;

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

impl Outbound {
    /// An event of `conversation` that is not a new message.
    pub fn of_conversation(conversation: ConversationId, frame: Frame) -> Self {
        Self {
            conversation: Some(conversation),
            seq: None,
            echo: None,
            frame,
        }
    }

    /// An event that no send holds back and no resume replays (typing,
    /// presence).
    pub fn passing(frame: Frame) -> Self {
        Self {
            conversation: None,
            seq: None,
            echo: None,
            frame,
        }
    }
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

#[cfg(test)]
mod tests {
    use chat_domain::CustomerId;

    use super::*;

    #[test]
    fn echo_keys_tell_senders_and_client_ids_apart() {
        let key_of = |sender, id: &str| EchoKey::new(sender, &ClientMsgId::parse(id).expect("id"));
        let customer = Sender::Customer(CustomerId::from_uuid(uuid::Uuid::from_u128(1)));
        let other = Sender::Customer(CustomerId::from_uuid(uuid::Uuid::from_u128(2)));
        assert_eq!(key_of(customer, "a"), key_of(customer, "a"));
        assert_ne!(key_of(customer, "a"), key_of(customer, "b"));
        assert_ne!(key_of(customer, "a"), key_of(other, "a"));
    }

    #[test]
    fn the_first_close_reason_wins() {
        let control = ConnControl::default();
        assert!(!control.is_closed());
        assert_eq!(control.reason(), CloseReason::Shutdown, "nobody said");
        control.close(CloseReason::Overflow);
        control.close(CloseReason::Resync);
        assert!(control.is_closed());
        assert_eq!(control.reason(), CloseReason::Overflow);
    }
}
