//! Conversation storage: the [`ConversationRepository`] port and the list
//! types it pages through (cursor, query, summary, page).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chat_domain::{
    Conversation, ConversationId, ConversationPatch, ConversationScope, ConversationStatus,
    KindName, Message, NewCustomerConversation, Sender, TenantId,
};
use chrono::{DateTime, Utc};

use super::RepoError;

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

/// What to list of a principal's conversations: the customer conversations
/// of `scope`, and for a staff reader also the direct conversations and
/// channels they are a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationListQuery {
    /// Which customer conversations may be listed at all.
    pub scope: ConversationScope,
    /// Only this kind, when set.
    pub kind: Option<KindName>,
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
    /// For a direct conversation or channel, its members as the reader
    /// sees them. Stores leave it `None`: the service fills it from the
    /// [`super::MembershipRepository`].
    pub membership: Option<super::MembershipFacts>,
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
