//! Identifiers: the [`IdGenerator`] port and the [`UuidV7Generator`].

use chat_domain::{ConversationId, MessageId};

/// New identifiers; replaceable for deterministic tests.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdGenerator: Send + Sync {
    /// A new conversation id.
    fn conversation_id(&self) -> ConversationId;
    /// A new message id.
    fn message_id(&self) -> MessageId;
}

/// UUIDv7 ids: unique, and sorted by creation time.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Generator;

impl IdGenerator for UuidV7Generator {
    fn conversation_id(&self) -> ConversationId {
        ConversationId::new_v7()
    }

    fn message_id(&self) -> MessageId {
        MessageId::new_v7()
    }
}
