//! Ports: the traits the application layer drives. Adapters implement them;
//! every port has a mockall mock (feature `mocks`) for unit tests.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chat_domain::{
    Action, Conversation, ConversationId, ConversationPatch, ConversationScope, ConversationStatus,
    Denied, Message, MessageBody, MessageId, NewCustomerConversation, NewMessage, Principal,
    ReadState, Sender, Seq, TenantId,
};
use chrono::{DateTime, Utc};

/// A repository failure that is not a domain outcome: connection lost,
/// constraint the adapter did not expect, corrupt row. Carries context for
/// the logs; callers see a generic internal error.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Anything the adapter could not map to a domain outcome.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A position in a conversation list, ordered by last activity (newest
/// first) then id. Opaque to clients: see its `Display` / `FromStr` forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    /// Last activity of the last conversation of the previous page.
    pub last_activity_at: DateTime<Utc>,
    /// Its id, to break ties.
    pub id: ConversationId,
}

/// A conversation cursor that was not produced by this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not valid")]
pub struct CursorError;

impl fmt::Display for ConversationCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}",
            self.last_activity_at.timestamp_micros(),
            self.id.as_uuid().simple()
        )
    }
}

impl FromStr for ConversationCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (micros, id) = s.split_once('_').ok_or(CursorError)?;
        let micros: i64 = micros.parse().map_err(|_| CursorError)?;
        let last_activity_at = DateTime::from_timestamp_micros(micros).ok_or(CursorError)?;
        let id = ConversationId::parse(id).map_err(|_| CursorError)?;
        Ok(Self {
            last_activity_at,
            id,
        })
    }
}

/// What to list of a principal's conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationListQuery {
    /// Which conversations may be listed at all.
    pub scope: ConversationScope,
    /// Whose unread counts to compute.
    pub reader: Sender,
    /// Only this status, when set.
    pub status: Option<ConversationStatus>,
    /// Page size (already validated).
    pub limit: u32,
    /// Start after this position; `None` for the first page.
    pub cursor: Option<ConversationCursor>,
}

/// A conversation with what a list shows beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// Its newest message, if any.
    pub last_message: Option<Message>,
    /// Messages above the reader's read marker.
    pub unread_count: u64,
}

/// One page of a conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConversationPage {
    /// The conversations, most recent activity first.
    pub items: Vec<ConversationSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<ConversationCursor>,
}

/// Storage of conversations.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ConversationRepository: Send + Sync {
    /// Returns the customer conversation for (tenant, customer, clinician),
    /// creating it from `new` when there is none. The flag is `true` when it
    /// was created. Concurrent calls for the same key return the same
    /// conversation.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn get_or_create_customer(
        &self,
        new: &NewCustomerConversation,
    ) -> Result<(Conversation, bool), RepoError>;

    /// The conversation `id` of `tenant`, if it exists.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn find(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Option<Conversation>, RepoError>;

    /// The conversation `id` of `tenant` with its last message and the
    /// unread count of `reader`.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn find_summary(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
    ) -> Result<Option<ConversationSummary>, RepoError>;

    /// A page of the conversations in `query.scope`, most recent activity
    /// first (ties by id, descending).
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn list_conversations(
        &self,
        query: &ConversationListQuery,
    ) -> Result<ConversationPage, RepoError>;

    /// Applies `patch` and sets `updated_at` to `now`; `None` when the
    /// conversation does not exist in `tenant`.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn update(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ConversationPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Conversation>, RepoError>;

    /// The sum of `reader`'s unread counts over every conversation in
    /// `scope`.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn unread_total(
        &self,
        scope: ConversationScope,
        reader: Sender,
    ) -> Result<u64, RepoError>;
}

/// What an append did.
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

/// Which marker a receipt moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Receipt {
    /// Messages reached one of the reader's devices.
    Delivered,
    /// The reader has read them (implies delivered).
    Read,
}

/// The result of moving a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptUpdate {
    /// The markers after the update.
    pub state: ReadState,
    /// Whether the requested marker actually moved forward.
    pub moved: bool,
}

/// Storage of read and delivered markers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReadStateRepository: Send + Sync {
    /// Moves `reader`'s `receipt` marker in conversation `id` forward to
    /// `up_to`, capped at the conversation's `last_seq`; never backwards. A
    /// read also moves the delivered marker. `None` when the conversation
    /// does not exist in `tenant`.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn advance(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
        receipt: Receipt,
        up_to: Seq,
        at: DateTime<Utc>,
    ) -> Result<Option<ReceiptUpdate>, RepoError>;

    /// Every participant's markers in conversation `id` of `tenant` (empty
    /// for an unknown conversation), ordered by reader kind then id.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn list_receipts(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<ReadState>, RepoError>;
}

/// Something that happened, for real-time fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A message was committed.
    MessageCreated {
        /// Its conversation (for routing: tenant, customer, clinician).
        conversation: Conversation,
        /// The message.
        message: Message,
    },
    /// A message's text was edited.
    MessageUpdated {
        /// Its conversation (for routing).
        conversation: Conversation,
        /// The message after the edit.
        message: Message,
    },
    /// A message was deleted (softly: it keeps its `seq`).
    MessageDeleted {
        /// Its conversation (for routing).
        conversation: Conversation,
        /// The message after the deletion.
        message: Message,
    },
    /// Status, assignee or tags changed.
    ConversationUpdated {
        /// The conversation after the change.
        conversation: Conversation,
    },
    /// A read or delivered marker moved.
    ReceiptMoved {
        /// The conversation (for routing).
        conversation: Conversation,
        /// Which marker.
        receipt: Receipt,
        /// The markers after the move.
        state: ReadState,
    },
    /// A participant started or stopped typing. Not stored.
    Typing {
        /// The conversation (for routing).
        conversation: Conversation,
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

/// The current time; replaceable for deterministic tests.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock, truncated to microseconds (what databases store).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }
}

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

/// What a principal asks to do, as seen by an [`AccessPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Get or create the conversation.
    Create,
    /// An action on an existing conversation.
    Act(Action),
}

/// A host's own rule that narrows the domain's permissions further (for
/// example: a patient may only reach clinicians of their care team). It is
/// asked only after the domain rules allowed the action.
///
/// Where it applies: every use case on one conversation (get, update,
/// messages, send, receipts, typing, edits), conversation lists, which
/// drop what it refuses, and the real-time events of a conversation, which
/// reach only the connections whose principal it lets read it (asked once
/// per principal and event, for `Act(Read)`: keep it quick, or cache).
/// Presence is no conversation's and goes to the tenant's staff. The
/// unread total uses the domain rules alone: it counts every conversation
/// of the principal's scope, so a host whose policy hides whole
/// conversations should keep them out of it too (e.g. by not creating
/// them).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccessPolicy: Send + Sync {
    /// Whether `principal` may do `action` on `conversation`.
    ///
    /// # Errors
    /// [`Denied::NotFound`] to hide the conversation, [`Denied::Forbidden`]
    /// to refuse the action.
    async fn check(
        &self,
        principal: &Principal,
        conversation: &Conversation,
        action: PolicyAction,
    ) -> Result<(), Denied>;

    /// Whether this policy never refuses anything, so that a use case may
    /// decide from the domain rules alone and skip loading what only the
    /// policy would look at (a send then checks the conversation's
    /// [`chat_domain::ConversationAccess`], kept from an earlier load,
    /// instead of reading the conversation again). Only [`AllowAll`] says
    /// `true`; a policy that ever refuses must keep the default, `false`.
    fn refuses_nothing(&self) -> bool {
        false
    }
}

/// The default policy: the domain rules alone decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl AccessPolicy for AllowAll {
    async fn check(
        &self,
        _principal: &Principal,
        _conversation: &Conversation,
        _action: PolicyAction,
    ) -> Result<(), Denied> {
        Ok(())
    }

    fn refuses_nothing(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_cursors_round_trip() {
        let cursor = ConversationCursor {
            last_activity_at: DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap(),
            id: ConversationId::new_v7(),
        };
        assert_eq!(cursor.to_string().parse(), Ok(cursor));
    }

    #[test]
    fn foreign_cursors_are_rejected() {
        for raw in [
            "",
            "abc",
            "12_notauuid",
            "x_0190a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
            "99999999999999999999_0190a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
        ] {
            assert_eq!(
                raw.parse::<ConversationCursor>(),
                Err(CursorError),
                "{raw:?}"
            );
        }
    }
}
