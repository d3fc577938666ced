//! [`ChatError`]: why a use case of [`crate::ChatService`] or
//! [`crate::PresenceService`] failed, with typed causes: which
//! [`Resource`] was not found, which [`Field`] was invalid and for what
//! [`Reason`], which [`Conflict`] stopped a change.
//!
//! One error type with typed causes rather than one per area: every area
//! fails in the same five ways (not found, forbidden, invalid, conflict,
//! unexpected), the transports answer them with the same five codes, and a
//! transport that serves many use cases from one loop (the WebSocket) would
//! otherwise convert each area's type into a common one anyway. What differs
//! between areas is carried by the causes, each area adding the variants it
//! needs (a `membership` area, for instance, `Resource::Member` and
//! `Conflict::LastOwner`).
//!
//! The causes are data, not wording: no wire field name or client message is
//! written here. The server turns each cause into its error code and
//! message (`crates/server/src/error.rs`). The enums are exhaustive on
//! purpose, so a new cause does not compile until every transport words it.

use chat_domain::{
    AttachmentId, AttachmentIdsError, ChannelTextError, ClientMsgIdError, Denied,
    DirectMembersError, MessageBodyError, PresenceStatusError, SeqError,
};

use crate::ports::{MembershipError, RepoError};

/// Why a use case failed. Each variant maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// What was named does not exist for this caller (missing, another
    /// tenant's, or not readable by them: existence is not leaked).
    #[error("{0} not found")]
    NotFound(Resource),
    /// The caller may see the object but not do this.
    #[error("forbidden")]
    Forbidden,
    /// A parameter of the request is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which parameter.
        field: Field,
        /// What is wrong with it.
        reason: Reason,
    },
    /// The request conflicts with the object's state.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// A store or other port failed; the cause is for logs, not for callers.
    #[error("unexpected failure")]
    Unexpected(#[source] anyhow::Error),
}

impl ChatError {
    /// [`ChatError::Invalid`]: `field` is not acceptable, for `reason`
    /// (a [`Reason`] or a domain parse error that converts into one).
    ///
    /// ```
    /// use chat_app::{ChatError, Field, Reason};
    /// use chat_domain::MessageBody;
    ///
    /// let err = MessageBody::parse("  ").map_err(|e| ChatError::invalid(Field::Body, e));
    /// assert!(matches!(
    ///     err,
    ///     Err(ChatError::Invalid { field: Field::Body, reason: Reason::Body(_) })
    /// ));
    /// ```
    pub fn invalid(field: Field, reason: impl Into<Reason>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// What a [`ChatError::NotFound`] could not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The conversation named by the request (also when only the caller
    /// may not know it).
    Conversation,
    /// A message of a readable conversation that is not one of its
    /// messages.
    Message,
    /// An attachment named by a send that is not an upload of the sender in
    /// this conversation (another conversation's, tenant's or uploader's,
    /// swept, or deleted with its message).
    Attachment(AttachmentId),
    /// A member of a direct conversation or channel named by the request
    /// who is not one.
    Member,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conversation => f.write_str("conversation"),
            Self::Message => f.write_str("message"),
            Self::Attachment(id) => write!(f, "attachment {id}"),
            Self::Member => f.write_str("member"),
        }
    }
}

/// A parameter of a use case, by its name in the app's API (not in any
/// wire format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// A page size ([`crate::PageLimit`]).
    Limit,
    /// The patch of a conversation update.
    Patch,
    /// A message body.
    Body,
    /// The attachments of a send ([`crate::SendMessage::attachment_ids`]).
    AttachmentIds,
    /// The message a send answers ([`crate::SendMessage::reply_to`]).
    ReplyTo,
    /// The idempotency key of a send.
    ClientMsgId,
    /// How far a receipt moves a marker (`up_to` of
    /// [`crate::ChatService::mark`]).
    UpTo,
    /// A chosen presence status.
    Status,
    /// The users of a presence query.
    Users,
    /// The other people of a direct conversation, or members to add.
    UserIds,
    /// A channel's name.
    Name,
    /// A channel's topic.
    Topic,
    /// A member's role.
    Role,
    /// A conversation kind filter.
    Kind,
}

impl Field {
    /// The parameter's name in the app's API.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Limit => "limit",
            Self::Patch => "patch",
            Self::Body => "body",
            Self::AttachmentIds => "attachment_ids",
            Self::ReplyTo => "reply_to",
            Self::ClientMsgId => "client_msg_id",
            Self::UpTo => "up_to",
            Self::Status => "status",
            Self::Users => "users",
            Self::UserIds => "user_ids",
            Self::Name => "name",
            Self::Topic => "topic",
            Self::Role => "role",
            Self::Kind => "kind",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with an invalid [`Field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// A number outside `min..=max`.
    #[error("not between {min} and {max}")]
    OutOfRange {
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// Nothing given where something is needed (an update without a
    /// change).
    #[error("empty")]
    Empty,
    /// Left out where the request needs it (a message without attachments
    /// needs a body).
    #[error("required")]
    Required,
    /// More items than `max`.
    #[error("more than {max} items")]
    TooMany {
        /// The most accepted.
        max: usize,
    },
    /// Names a message that is not of this conversation.
    #[error("not a message of this conversation")]
    NotInConversation,
    /// Names an upload another message already carries.
    #[error("attachment {0} is already attached to a message")]
    AlreadyAttached(AttachmentId),
    /// Not a valid message body.
    #[error(transparent)]
    Body(#[from] MessageBodyError),
    /// Not a valid idempotency key.
    #[error(transparent)]
    ClientMsgId(#[from] ClientMsgIdError),
    /// Not a valid list of attachments.
    #[error(transparent)]
    AttachmentIds(#[from] AttachmentIdsError),
    /// Not a valid sequence number.
    #[error(transparent)]
    Seq(#[from] SeqError),
    /// Not a status a user may choose.
    #[error(transparent)]
    Status(#[from] PresenceStatusError),
    /// A channel name or topic breaks a rule.
    #[error(transparent)]
    ChannelText(#[from] ChannelTextError),
    /// Not a valid set of people for a direct conversation.
    #[error(transparent)]
    DirectMembers(#[from] DirectMembersError),
}

/// Why a change conflicts with the state of what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Conflict {
    /// The message to edit was deleted.
    #[error("the message was deleted")]
    MessageDeleted,
    /// The channel is archived: read-only until brought back.
    #[error("the channel is archived")]
    Archived,
    /// Another channel of the tenant has this name.
    #[error("the channel name is taken")]
    NameTaken,
    /// The last owner cannot go while other members stay.
    #[error("the last owner cannot leave while other members stay")]
    LastOwner,
}

impl From<Denied> for ChatError {
    /// A refusal of the permission rules or the host policy about a
    /// conversation.
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::NotFound => Self::NotFound(Resource::Conversation),
            Denied::Forbidden => Self::Forbidden,
            Denied::Archived => Self::Conflict(Conflict::Archived),
        }
    }
}

impl From<MembershipError> for ChatError {
    fn from(err: MembershipError) -> Self {
        match err {
            MembershipError::ConversationNotFound => Self::NotFound(Resource::Conversation),
            MembershipError::MemberNotFound => Self::NotFound(Resource::Member),
            MembershipError::NameTaken => Self::Conflict(Conflict::NameTaken),
            MembershipError::LastOwner(_) => Self::Conflict(Conflict::LastOwner),
            MembershipError::Unexpected(err) => Self::Unexpected(err),
        }
    }
}

impl From<RepoError> for ChatError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unexpected(err) => Self::Unexpected(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_parse_errors_become_reasons_of_the_field_named() {
        let cases = [
            (
                ChatError::invalid(Field::Body, MessageBodyError::Empty),
                Field::Body,
                Reason::Body(MessageBodyError::Empty),
            ),
            (
                ChatError::invalid(Field::ClientMsgId, ClientMsgIdError::TooLong),
                Field::ClientMsgId,
                Reason::ClientMsgId(ClientMsgIdError::TooLong),
            ),
            (
                ChatError::invalid(Field::UpTo, SeqError),
                Field::UpTo,
                Reason::Seq(SeqError),
            ),
            (
                ChatError::invalid(Field::Status, PresenceStatusError),
                Field::Status,
                Reason::Status(PresenceStatusError),
            ),
            (
                ChatError::invalid(Field::AttachmentIds, AttachmentIdsError::TooMany(11)),
                Field::AttachmentIds,
                Reason::AttachmentIds(AttachmentIdsError::TooMany(11)),
            ),
        ];
        for (err, field, reason) in cases {
            match err {
                ChatError::Invalid {
                    field: got_field,
                    reason: got_reason,
                } => {
                    assert_eq!((got_field, got_reason), (field, reason));
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn denials_of_a_conversation_are_about_the_conversation() {
        assert!(matches!(
            ChatError::from(Denied::NotFound),
            ChatError::NotFound(Resource::Conversation)
        ));
        assert!(matches!(
            ChatError::from(Denied::Forbidden),
            ChatError::Forbidden
        ));
    }
}
