//! Message storage: the [`MessageRepository`] port, with the atomic append
//! (its outcome and its refusals) and message pages.

use async_trait::async_trait;
use chat_domain::{
    Conversation, ConversationId, Message, MessageBody, MessageId, NewMessage, Seq, TenantId,
};
use chrono::{DateTime, Utc};

use super::RepoError;

/// What an append did.
// One per send, moved straight to its caller: boxing the larger variant
// would cost an allocation per send to save a few bytes of stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The message was stored with the next `seq`.
    Created {
        /// The stored message.
        message: Message,
        /// The conversation as the append left it (read under the append's
        /// lock, so no other write came between): its new `last_seq` and
        /// activity time, and its status.
        conversation: Conversation,
        /// Whether the append reopened the conversation.
        reopened: bool,
    },
    /// The sender had already used this `client_msg_id` in this
    /// conversation: the original message, nothing stored.
    Replayed(Message),
}

impl AppendOutcome {
    /// The stored message, new or original.
    pub fn message(&self) -> &Message {
        match self {
            Self::Created { message, .. } | Self::Replayed(message) => message,
        }
    }
}

/// Why an append stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The conversation does not exist in the message's tenant.
    #[error("conversation not found")]
    ConversationNotFound,
    /// `reply_to` names no message of the same conversation.
    #[error("reply_to does not name a message of this conversation")]
    ReplyTargetNotFound,
    /// An attachment id names no upload of the sender in this conversation
    /// (missing, another conversation's, another tenant's, another
    /// uploader's, or swept as an orphan).
    #[error("attachment {0} is not an upload of the sender in this conversation")]
    AttachmentNotFound(chat_domain::AttachmentId),
    /// An attachment is already attached to another message.
    #[error("attachment {0} is already attached to a message")]
    AttachmentAlreadyUsed(chat_domain::AttachmentId),
    /// Storage failure.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Where a page of messages starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageCursor {
    /// The newest messages, newest first.
    Latest,
    /// The newest messages below this `seq`, newest first (history).
    Before(Seq),
    /// The oldest messages above this `seq`, oldest first (catching up).
    After(Seq),
}

/// A page request for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageQuery {
    /// Where to start.
    pub cursor: MessageCursor,
    /// Page size (already validated).
    pub limit: u32,
}

/// One page of messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagePage {
    /// In the order the cursor asks for.
    pub messages: Vec<Message>,
    /// Whether more messages lie beyond this page in the same direction.
    pub has_more: bool,
}

/// Storage of messages.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageRepository: Send + Sync {
    /// Appends `message` atomically: assigns the conversation's next `seq`
    /// (gap-free and unique under concurrent senders), stores it, bumps the
    /// conversation's `last_seq` and activity time, and moves the sender's
    /// read marker to it. With `reopen`, a resolved or archived conversation
    /// goes back to `open` in the same transaction (decided under the same
    /// lock, so a status change racing the append is never lost), and the
    /// outcome says whether it did. The message's
    /// attachments are linked to it in the same transaction, in the given
    /// order; each must be an upload of the sender in this conversation
    /// that no message carries yet.
    ///
    /// When the sender already used `client_msg_id` in this conversation, the
    /// original message is returned as [`AppendOutcome::Replayed`] and
    /// nothing changes, also when the replays race each other.
    ///
    /// # Errors
    /// [`AppendError::ConversationNotFound`],
    /// [`AppendError::ReplyTargetNotFound`],
    /// [`AppendError::AttachmentNotFound`],
    /// [`AppendError::AttachmentAlreadyUsed`] (nothing is stored), or a
    /// storage failure.
    async fn append(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError>;

    /// A page of the messages of conversation `id` of `tenant`, by `seq`.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn list_messages(
        &self,
        tenant: TenantId,
        id: ConversationId,
        query: MessageQuery,
    ) -> Result<MessagePage, RepoError>;

    /// Message `message` of conversation `id` of `tenant`, if it exists.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn find_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>, RepoError>;

    /// Replaces the body of message `message` and sets `edited_at = at`,
    /// unless it is deleted. Returns the message as it is afterwards (a
    /// deleted one unchanged), `None` when it does not exist there.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn edit_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        body: &MessageBody,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError>;

    /// Soft-deletes message `message`: erases its body, sets
    /// `deleted_at = at` (the first deletion's time is kept) and keeps its
    /// `seq`. Its attachments go with it in the same transaction: no read
    /// returns them any more (the message comes back without them) and
    /// [`crate::AttachmentRepository::list_deleted`] lists them until their
    /// bytes are removed. Returns the message afterwards, `None` when it
    /// does not exist there.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn delete_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError>;
}
