//! Conversations of three kinds: a customer's (shared inbox or private
//! clinician thread), a staff `direct` conversation and a staff `channel`
//! (their members and settings: [`crate::membership`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::ids::{ConversationId, CustomerId, StaffUserId, TenantId};
use crate::membership::{ChannelProfile, Visibility};
use crate::message::Seq;

/// What a conversation is and who it is between.
///
/// Marked `non_exhaustive`: further kinds may follow, so match with a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConversationKind {
    /// A customer and the tenant's staff. Without a clinician it is the
    /// tenant's shared inbox (any staff may answer); with one it is a private
    /// thread between that clinician and the patient (plus admins).
    Customer {
        /// The customer or patient.
        customer_id: CustomerId,
        /// The clinician of a private thread; `None` for the shared inbox.
        clinician: Option<StaffUserId>,
    },
    /// A fixed set of 2 to 8 staff of the tenant, its members
    /// ([`crate::DirectMembers`]).
    Direct,
    /// A named group of staff with members, owners among them.
    Channel {
        /// Who may find and read it.
        visibility: Visibility,
        /// When it was archived (read-only since); `None` while active.
        archived_at: Option<DateTime<Utc>>,
    },
}

impl ConversationKind {
    /// The wire name of the kind: `customer`, `direct` or `channel`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Customer { .. } => "customer",
            Self::Direct => "direct",
            Self::Channel { .. } => "channel",
        }
    }

    /// The customer of a customer conversation.
    pub const fn customer_id(&self) -> Option<CustomerId> {
        match self {
            Self::Customer { customer_id, .. } => Some(*customer_id),
            Self::Direct | Self::Channel { .. } => None,
        }
    }

    /// The clinician of a private customer thread.
    pub const fn clinician(&self) -> Option<StaffUserId> {
        match self {
            Self::Customer { clinician, .. } => *clinician,
            Self::Direct | Self::Channel { .. } => None,
        }
    }

    /// Whether its readers are its members (direct conversations and
    /// channels) rather than fixed by its identity.
    pub const fn has_members(&self) -> bool {
        matches!(self, Self::Direct | Self::Channel { .. })
    }

    /// When a channel was archived.
    pub const fn archived_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Channel { archived_at, .. } => *archived_at,
            Self::Customer { .. } | Self::Direct => None,
        }
    }

    /// A channel's visibility.
    pub const fn visibility(&self) -> Option<Visibility> {
        match self {
            Self::Channel { visibility, .. } => Some(*visibility),
            Self::Customer { .. } | Self::Direct => None,
        }
    }
}

/// The wire name names no kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("kind must be one of customer, direct, channel")]
pub struct KindNameError;

/// A kind by its wire name alone, for filters (`?kind=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KindName {
    /// Customer conversations.
    Customer,
    /// Direct conversations.
    Direct,
    /// Channels.
    Channel,
}

impl KindName {
    /// The wire name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Direct => "direct",
            Self::Channel => "channel",
        }
    }

    /// Whether `kind` is of this name.
    pub const fn matches(&self, kind: &ConversationKind) -> bool {
        matches!(
            (self, kind),
            (Self::Customer, ConversationKind::Customer { .. })
                | (Self::Direct, ConversationKind::Direct)
                | (Self::Channel, ConversationKind::Channel { .. })
        )
    }
}

impl FromStr for KindName {
    type Err = KindNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Self::Customer),
            "direct" => Ok(Self::Direct),
            "channel" => Ok(Self::Channel),
            _ => Err(KindNameError),
        }
    }
}

/// Where a conversation stands in the staff's workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationStatus {
    /// Waiting for, or in, an answer.
    Open,
    /// Answered; reopens when the conversation is set back to open.
    Resolved,
    /// Out of the working lists.
    Archived,
}

impl ConversationStatus {
    /// The wire name: `open`, `resolved` or `archived`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Archived => "archived",
        }
    }
}

impl fmt::Display for ConversationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `open`, `resolved`, `archived`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status must be one of open, resolved, archived")]
pub struct ConversationStatusError;

impl FromStr for ConversationStatus {
    type Err = ConversationStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "resolved" => Ok(Self::Resolved),
            "archived" => Ok(Self::Archived),
            _ => Err(ConversationStatusError),
        }
    }
}

/// One label on a conversation: 1 to [`Tag::MAX_CHARS`] characters after
/// trimming, no control characters, no commas.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// Why a tag was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Nothing left after trimming.
    #[error("a tag must not be empty")]
    Empty,
    /// Longer than [`Tag::MAX_CHARS`].
    #[error("a tag must be at most {max} characters", max = Tag::MAX_CHARS)]
    TooLong,
    /// Contains a control character or a comma.
    #[error("a tag must not contain control characters or commas")]
    ForbiddenCharacter,
}

impl Tag {
    /// The longest tag, in characters.
    pub const MAX_CHARS: usize = 40;

    /// Validates one tag.
    ///
    /// # Errors
    /// [`TagError`] naming the broken rule.
    pub fn parse(raw: &str) -> Result<Self, TagError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TagError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(TagError::TooLong);
        }
        if trimmed.chars().any(|c| c.is_control() || c == ',') {
            return Err(TagError::ForbiddenCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The tag's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The set of tags of a conversation: at most [`Tags::MAX`], no duplicates,
/// kept in the order first given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags(Vec<Tag>);

/// Why a list of tags was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagsError {
    /// More than [`Tags::MAX`] distinct tags.
    #[error("at most {max} tags are allowed", max = Tags::MAX)]
    TooMany,
    /// One tag is invalid.
    #[error("tag {index}: {source}")]
    Invalid {
        /// Position of the bad tag in the input.
        index: usize,
        /// What is wrong with it.
        source: TagError,
    },
}

impl Tags {
    /// The most tags one conversation may carry.
    pub const MAX: usize = 20;

    /// Validates a list of tags, dropping exact duplicates.
    ///
    /// # Errors
    /// [`TagsError`] for an invalid tag or too many tags.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, TagsError> {
        let mut tags: Vec<Tag> = Vec::with_capacity(raw.len().min(Self::MAX));
        for (index, item) in raw.iter().enumerate() {
            let tag =
                Tag::parse(item.as_ref()).map_err(|source| TagsError::Invalid { index, source })?;
            if !tags.contains(&tag) {
                if tags.len() == Self::MAX {
                    return Err(TagsError::TooMany);
                }
                tags.push(tag);
            }
        }
        Ok(Self(tags))
    }

    /// The tags in order.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    /// The tags as plain strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| t.0.clone()).collect()
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A stored conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Kind and participants.
    pub kind: ConversationKind,
    /// Workflow status.
    pub status: ConversationStatus,
    /// The staff member currently responsible, if any.
    pub assignee: Option<StaffUserId>,
    /// Labels set by staff.
    pub tags: Tags,
    /// A channel's name and topic; `None` for the other kinds.
    pub channel: Option<ChannelProfile>,
    /// The `seq` of the newest message; [`Seq::ZERO`] before the first one.
    pub last_seq: Seq,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When anything about it last changed (message, status, tags...).
    pub updated_at: DateTime<Utc>,
    /// When the last message was sent (creation time before any): the
    /// ordering key of conversation lists.
    pub last_activity_at: DateTime<Utc>,
}

impl Conversation {
    /// Records message `seq`, sent at `at`, as the conversation's newest:
    /// `last_seq`, `updated_at` and `last_activity_at` move to it. With
    /// `reopen` (a customer's message), a resolved or archived conversation
    /// goes back to open. Returns whether it did, so that the change of
    /// status can be announced.
    pub fn record_message(&mut self, seq: Seq, at: DateTime<Utc>, reopen: bool) -> bool {
        self.last_seq = seq;
        self.updated_at = at;
        self.last_activity_at = at;
        let reopened = self.reopens(reopen);
        if reopened {
            self.status = ConversationStatus::Open;
        }
        reopened
    }

    /// Whether a message recorded with `reopen` would reopen it: asked to,
    /// and not open.
    pub fn reopens(&self, reopen: bool) -> bool {
        reopen && self.status != ConversationStatus::Open
    }
}

/// A request to get or create a customer conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomerConversation {
    /// The id to use if the conversation does not exist yet.
    pub id: ConversationId,
    /// The tenant.
    pub tenant: TenantId,
    /// The customer or patient.
    pub customer_id: CustomerId,
    /// The clinician of a private thread; `None` for the shared inbox.
    pub clinician: Option<StaffUserId>,
    /// Creation time, if it is created.
    pub now: DateTime<Utc>,
}

impl NewCustomerConversation {
    /// The conversation this request would create, for permission checks
    /// before anything is stored.
    pub fn prospective(&self) -> Conversation {
        Conversation {
            id: self.id,
            tenant: self.tenant,
            kind: ConversationKind::Customer {
                customer_id: self.customer_id,
                clinician: self.clinician,
            },
            status: ConversationStatus::Open,
            assignee: None,
            tags: Tags::default(),
            channel: None,
            last_seq: Seq::ZERO,
            created_at: self.now,
            updated_at: self.now,
            last_activity_at: self.now,
        }
    }
}

/// A staff change to a conversation's workflow fields. `None` leaves a field
/// as it is; `assignee: Some(None)` unassigns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationPatch {
    /// New status.
    pub status: Option<ConversationStatus>,
    /// New assignee, or `Some(None)` to clear it.
    pub assignee: Option<Option<StaffUserId>>,
    /// New tags, replacing the old ones.
    pub tags: Option<Tags>,
}

impl ConversationPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.assignee.is_none() && self.tags.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_a_message() {
        use ConversationStatus::*;
        let before = NewCustomerConversation {
            id: ConversationId::new_v7(),
            tenant: TenantId::new_v4(),
            customer_id: CustomerId::new_v4(),
            clinician: None,
            now: DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        }
        .prospective();
        let at = DateTime::from_timestamp(1_767_225_700, 0).unwrap();
        // (status before, reopen asked, status after, reopened)
        let table = [
            (Open, false, Open, false),
            (Open, true, Open, false),
            (Resolved, false, Resolved, false),
            (Resolved, true, Open, true),
            (Archived, false, Archived, false),
            (Archived, true, Open, true),
        ];
        for (status, reopen, after, reopened) in table {
            let mut conversation = Conversation {
                status,
                ..before.clone()
            };
            let seq = Seq::from_u64(7).unwrap();
            assert_eq!(
                conversation.record_message(seq, at, reopen),
                reopened,
                "{status:?} reopen={reopen}"
            );
            assert_eq!(conversation.status, after, "{status:?} reopen={reopen}");
            assert_eq!(conversation.last_seq, seq);
            assert_eq!(conversation.updated_at, at);
            assert_eq!(conversation.last_activity_at, at);
            assert_eq!(conversation.created_at, before.created_at);
        }
    }

    #[test]
    fn tag_rules() {
        let cases: &[(&str, Result<&str, TagError>)] = &[
            ("refill", Ok("refill")),
            ("  urgent  ", Ok("urgent")),
            ("", Err(TagError::Empty)),
            ("   ", Err(TagError::Empty)),
            ("a,b", Err(TagError::ForbiddenCharacter)),
            ("bad\u{7}", Err(TagError::ForbiddenCharacter)),
            (&"x".repeat(41), Err(TagError::TooLong)),
        ];
        for (raw, expected) in cases {
            let got = Tag::parse(raw);
            match expected {
                Ok(text) => assert_eq!(got.as_ref().map(Tag::as_str), Ok(*text), "{raw:?}"),
                Err(err) => assert_eq!(got.as_ref().err(), Some(err), "{raw:?}"),
            }
        }
    }

    #[test]
    fn tags_drop_duplicates_and_keep_order() {
        let tags = Tags::parse(&["b", "a", "b"]).unwrap();
        assert_eq!(tags.to_strings(), vec!["b", "a"]);
    }

    #[test]
    fn too_many_tags_are_rejected() {
        let raw: Vec<String> = (0..=Tags::MAX).map(|i| format!("t{i}")).collect();
        assert_eq!(Tags::parse(&raw), Err(TagsError::TooMany));
        assert!(Tags::parse(&raw[..Tags::MAX]).is_ok());
    }

    #[test]
    fn an_invalid_tag_is_reported_with_its_position() {
        assert_eq!(
            Tags::parse(&["ok", ""]),
            Err(TagsError::Invalid {
                index: 1,
                source: TagError::Empty
            })
        );
    }

    #[test]
    fn status_parses_its_wire_names_only() {
        for status in [
            ConversationStatus::Open,
            ConversationStatus::Resolved,
            ConversationStatus::Archived,
        ] {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert_eq!(
            "closed".parse::<ConversationStatus>(),
            Err(ConversationStatusError)
        );
        assert_eq!(
            "OPEN".parse::<ConversationStatus>(),
            Err(ConversationStatusError)
        );
    }
}
