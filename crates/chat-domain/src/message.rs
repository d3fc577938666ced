//! Messages: validated bodies, idempotency keys, per-conversation sequence
//! numbers.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::attachment::AttachedFile;
use crate::ids::{AttachmentId, ConversationId, MessageId, TenantId};
use crate::membership::SystemNotice;
use crate::principal::Sender;

/// The longest message body, in characters (Unicode scalar values), after
/// trimming.
pub const MAX_BODY_CHARS: usize = 4000;

/// A message's position in its conversation: 1, 2, 3... without gaps.
/// [`Seq::ZERO`] stands for "before the first message".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Seq(u64);

/// A sequence number outside `0..=i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a seq must be between 0 and {max}", max = i64::MAX)]
pub struct SeqError;

impl Seq {
    /// Before the first message.
    pub const ZERO: Self = Self(0);

    /// A sequence number from its stored (signed) form.
    ///
    /// # Errors
    /// [`SeqError`] when negative.
    pub fn from_i64(raw: i64) -> Result<Self, SeqError> {
        u64::try_from(raw).map(Self).map_err(|_| SeqError)
    }

    /// A sequence number from a client-supplied unsigned value.
    ///
    /// # Errors
    /// [`SeqError`] when above `i64::MAX` (no database can store it).
    pub fn from_u64(raw: u64) -> Result<Self, SeqError> {
        if i64::try_from(raw).is_ok() {
            Ok(Self(raw))
        } else {
            Err(SeqError)
        }
    }

    /// The value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The value as stored by databases.
    pub fn as_i64(self) -> i64 {
        // Invariant: every constructor keeps the value within i64.
        i64::try_from(self.0).expect("Seq is always within i64")
    }

    /// The next sequence number.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A message body: plain text, trimmed, 1..=[`MAX_BODY_CHARS`] characters, no
/// control characters but newline and tab (`\r\n` is folded to `\n`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageBody(String);

/// Why a message body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageBodyError {
    /// Nothing left after trimming.
    #[error("body must not be empty")]
    Empty,
    /// Longer than [`MAX_BODY_CHARS`] after trimming.
    #[error("body must be at most {MAX_BODY_CHARS} characters, got {0}")]
    TooLong(usize),
    /// Contains NUL or another control character.
    #[error("body must not contain control characters other than newline and tab")]
    ControlCharacter,
}

impl MessageBody {
    /// Validates and normalises a body.
    ///
    /// # Errors
    /// [`MessageBodyError`] naming the broken rule.
    ///
    /// ```
    /// use chat_domain::{MessageBody, MessageBodyError};
    /// assert_eq!(MessageBody::parse(" hi\r\nthere ").unwrap().as_str(), "hi\nthere");
    /// assert_eq!(MessageBody::parse("  "), Err(MessageBodyError::Empty));
    /// ```
    pub fn parse(raw: &str) -> Result<Self, MessageBodyError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(MessageBodyError::Empty);
        }
        let normalised = if trimmed.contains('\r') {
            trimmed.replace("\r\n", "\n")
        } else {
            trimmed.to_owned()
        };
        if normalised
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(MessageBodyError::ControlCharacter);
        }
        let chars = normalised.chars().count();
        if chars > MAX_BODY_CHARS {
            return Err(MessageBodyError::TooLong(chars));
        }
        Ok(Self(normalised))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The sender's idempotency key for a send: 1..=[`ClientMsgId::MAX_CHARS`]
/// characters, no control characters, compared exactly (not trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientMsgId(String);

/// Why a client message id was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientMsgIdError {
    /// Empty string.
    #[error("client_msg_id must not be empty")]
    Empty,
    /// Longer than [`ClientMsgId::MAX_CHARS`].
    #[error("client_msg_id must be at most {max} characters", max = ClientMsgId::MAX_CHARS)]
    TooLong,
    /// Contains a control character.
    #[error("client_msg_id must not contain control characters")]
    ControlCharacter,
}

impl ClientMsgId {
    /// The longest key, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Validates a key.
    ///
    /// # Errors
    /// [`ClientMsgIdError`] naming the broken rule.
    pub fn parse(raw: &str) -> Result<Self, ClientMsgIdError> {
        if raw.is_empty() {
            return Err(ClientMsgIdError::Empty);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(ClientMsgIdError::TooLong);
        }
        if raw.chars().any(char::is_control) {
            return Err(ClientMsgIdError::ControlCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id (UUIDv7).
    pub id: MessageId,
    /// The tenant of its conversation.
    pub tenant: TenantId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its position in the conversation.
    pub seq: Seq,
    /// Who wrote it.
    pub sender: Sender,
    /// The text; `None` for an attachment-only message.
    pub body: Option<MessageBody>,
    /// The files it carries, in the order the sender gave them.
    pub attachments: Vec<AttachedFile>,
    /// The message this one answers, in the same conversation.
    pub reply_to: Option<MessageId>,
    /// The sender's idempotency key.
    pub client_msg_id: Option<ClientMsgId>,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When it was deleted (soft).
    pub deleted_at: Option<DateTime<Utc>>,
    /// What a system message reports (membership changes); `None` for
    /// messages of people.
    pub system: Option<SystemNotice>,
}

/// A message to append to a conversation. The store assigns its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The id to use if it is stored (a replay returns the original's).
    pub id: MessageId,
    /// The tenant.
    pub tenant: TenantId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The author.
    pub sender: Sender,
    /// The text.
    pub body: Option<MessageBody>,
    /// Uploads of the sender in the same conversation, not yet attached to
    /// any message, to attach to this one (in this order).
    pub attachments: Vec<AttachmentId>,
    /// The message answered, which must be in the same conversation.
    pub reply_to: Option<MessageId>,
    /// The sender's idempotency key.
    pub client_msg_id: Option<ClientMsgId>,
    /// Commit time.
    pub created_at: DateTime<Utc>,
}

impl NewMessage {
    /// The message as stored with `seq`, carrying `attachments` (the
    /// stored form of [`NewMessage::attachments`]).
    pub fn into_message(self, seq: Seq, attachments: Vec<AttachedFile>) -> Message {
        Message {
            id: self.id,
            tenant: self.tenant,
            conversation_id: self.conversation_id,
            seq,
            sender: self.sender,
            body: self.body,
            attachments,
            reply_to: self.reply_to,
            client_msg_id: self.client_msg_id,
            created_at: self.created_at,
            edited_at: None,
            deleted_at: None,
            system: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_rules() {
        let long_ok = "é".repeat(MAX_BODY_CHARS);
        let too_long = "a".repeat(MAX_BODY_CHARS + 1);
        let padded_ok = format!("   {}   ", "a".repeat(MAX_BODY_CHARS));
        let cases: Vec<(&str, Result<&str, MessageBodyError>)> = vec![
            ("hello", Ok("hello")),
            ("  hello \n", Ok("hello")),
            ("line 1\nline 2\tend", Ok("line 1\nline 2\tend")),
            ("a\r\nb", Ok("a\nb")),
            ("", Err(MessageBodyError::Empty)),
            (" \n\t ", Err(MessageBodyError::Empty)),
            ("nul\0inside", Err(MessageBodyError::ControlCharacter)),
            ("bell\u{7}", Err(MessageBodyError::ControlCharacter)),
            ("lone\rreturn", Err(MessageBodyError::ControlCharacter)),
            ("esc\u{1b}[31m", Err(MessageBodyError::ControlCharacter)),
            (&long_ok, Ok(&long_ok)),
            (&padded_ok, Ok(padded_ok.trim())),
            (
                &too_long,
                Err(MessageBodyError::TooLong(MAX_BODY_CHARS + 1)),
            ),
        ];
        for (raw, expected) in cases {
            let got = MessageBody::parse(raw);
            match expected {
                Ok(text) => assert_eq!(got.as_ref().map(MessageBody::as_str), Ok(text), "{raw:?}"),
                Err(err) => assert_eq!(got, Err(err), "{raw:?}"),
            }
        }
    }

    #[test]
    fn client_msg_id_rules() {
        let cases: Vec<(String, Result<(), ClientMsgIdError>)> = vec![
            ("c-81".into(), Ok(())),
            (" spaced ".into(), Ok(())),
            ("x".repeat(64), Ok(())),
            (String::new(), Err(ClientMsgIdError::Empty)),
            ("x".repeat(65), Err(ClientMsgIdError::TooLong)),
            ("a\nb".into(), Err(ClientMsgIdError::ControlCharacter)),
        ];
        for (raw, expected) in cases {
            assert_eq!(ClientMsgId::parse(&raw).map(|_| ()), expected, "{raw:?}");
        }
        assert_eq!(ClientMsgId::parse(" spaced ").unwrap().as_str(), " spaced ");
    }

    #[test]
    fn seq_stays_within_what_databases_store() {
        assert_eq!(Seq::from_i64(-1), Err(SeqError));
        assert_eq!(Seq::from_u64(u64::MAX), Err(SeqError));
        assert_eq!(Seq::from_i64(7).unwrap().as_i64(), 7);
        assert_eq!(Seq::ZERO.next().get(), 1);
    }
}
