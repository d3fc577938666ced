//! [`ConversationRepository`] for [`MemoryStore`]: customer conversations,
//! lists with last message and unread count, and workflow updates.

use std::cmp::Reverse;

use async_trait::async_trait;
use chat_app::{
    ConversationCursor, ConversationListQuery, ConversationPage, ConversationRepository,
    ConversationSummary, RepoError,
};
use chat_domain::{
    Conversation, ConversationId, ConversationKind, ConversationPatch, ConversationScope, KindName,
    NewCustomerConversation, Sender, TenantId,
};
use chrono::{DateTime, Utc};

use crate::{truncate, Inner, MemoryStore};

/// Which conversations a list or an unread total reads: the customer
/// conversations of the scope, and the direct conversations and channels
/// its staff reader is a member of (never those they are not).
#[derive(Debug, Clone, Copy)]
struct Reach<'a> {
    scope: &'a ConversationScope,
    reader: Sender,
    kind: Option<KindName>,
}

impl Reach<'_> {
    /// Whether `conversation` is read.
    fn includes(&self, inner: &Inner, conversation: &Conversation) -> bool {
        if conversation.tenant != self.scope.tenant()
            || self
                .kind
                .is_some_and(|kind| !kind.matches(&conversation.kind))
        {
            return false;
        }
        match conversation.kind {
            ConversationKind::Customer {
                customer_id,
                clinician,
            } => match *self.scope {
                ConversationScope::All { .. } => true,
                ConversationScope::InboxAndClinician {
                    clinician: reader, ..
                } => clinician.is_none_or(|clinician| clinician == reader),
                ConversationScope::Customer {
                    customer_id: reader,
                    ..
                } => customer_id == reader,
            },
            // Staff conversations are read by their members only, and a
            // customer's scope never reaches them.
            _ => match (self.reader, self.scope) {
                (_, ConversationScope::Customer { .. }) => false,
                (Sender::Staff(user), _) => inner
                    .members
                    .get(&conversation.id)
                    .is_some_and(|members| members.contains_key(&user)),
                _ => false,
            },
        }
    }
}

impl Inner {
    /// `reader`'s unread count in `conversation`: the messages above their
    /// read marker.
    fn unread(&self, conversation: &Conversation, reader: Sender) -> u64 {
        let read = self
            .read_states
            .get(&(conversation.id, reader))
            .map_or(0, |state| state.last_read_seq.get());
        conversation.last_seq.get().saturating_sub(read)
    }

    /// `conversation` with its newest message and `reader`'s unread count.
    fn summary(&self, conversation: &Conversation, reader: Sender) -> ConversationSummary {
        ConversationSummary {
            conversation: conversation.clone(),
            last_message: self
                .messages(conversation.tenant, conversation.id)
                .last()
                .cloned(),
            unread_count: self.unread(conversation, reader),
            membership: None,
        }
    }

    fn get_or_create_customer(
        &mut self,
        new: &NewCustomerConversation,
    ) -> Result<(Conversation, bool), RepoError> {
        let key = (new.tenant, new.customer_id, new.clinician);
        if let Some(id) = self.customer_keys.get(&key) {
            let found = self.conversations.get(id).cloned();
            return Ok((found.ok_or_else(|| missing(*id))?, false));
        }
        if self.conversations.contains_key(&new.id) {
            return Err(taken(new.id));
        }
        let mut new = new.clone();
        new.now = truncate(new.now);
        let created = new.prospective();
        self.customer_keys.insert(key, created.id);
        self.conversations.insert(created.id, created.clone());
        Ok((created, true))
    }

    fn list_conversations(&self, query: &ConversationListQuery) -> ConversationPage {
        let reach = Reach {
            scope: &query.scope,
            reader: query.reader,
            kind: query.kind,
        };
        let mut found: Vec<&Conversation> = self
            .conversations
            .values()
            .filter(|c| reach.includes(self, c))
            .filter(|c| query.status.is_none_or(|status| c.status == status))
            .filter(|c| {
                query.cursor.is_none_or(|after| {
                    (c.last_activity_at, c.id) < (after.last_activity_at, after.id)
                })
            })
            .collect();
        // Newest activity first, ties by id, descending.
        found.sort_unstable_by_key(|c| Reverse((c.last_activity_at, c.id)));
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = found
            .last()
            .filter(|_| more)
            .map(|last| ConversationCursor {
                last_activity_at: last.last_activity_at,
                id: last.id,
            });
        let items = found
            .into_iter()
            .map(|c| self.summary(c, query.reader))
            .collect();
        ConversationPage { items, next_cursor }
    }

    fn update(
        &mut self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ConversationPatch,
        now: DateTime<Utc>,
    ) -> Option<Conversation> {
        let conversation = self
            .conversations
            .get_mut(&id)
            .filter(|c| c.tenant == tenant)?;
        if let Some(status) = patch.status {
            conversation.status = status;
        }
        if let Some(assignee) = patch.assignee {
            conversation.assignee = assignee;
        }
        if let Some(tags) = &patch.tags {
            conversation.tags = tags.clone();
        }
        conversation.updated_at = truncate(now);
        Some(conversation.clone())
    }

    fn unread_total(&self, scope: &ConversationScope, reader: Sender) -> u64 {
        let reach = Reach {
            scope,
            reader,
            kind: None,
        };
        self.conversations
            .values()
            .filter(|c| reach.includes(self, c))
            .map(|c| self.unread(c, reader))
            .sum()
    }
}

/// A conversation index names a conversation that is not stored: a bug.
fn missing(id: ConversationId) -> RepoError {
    RepoError::Unexpected(anyhow::anyhow!(
        "conversation {id} is indexed but not stored"
    ))
}

/// Another conversation already has the id a new one was to get.
pub(crate) fn taken(id: ConversationId) -> RepoError {
    RepoError::Unexpected(anyhow::anyhow!("conversation id {id} is already taken"))
}

#[async_trait]
impl ConversationRepository for MemoryStore {
    async fn get_or_create_customer(
        &self,
        new: &NewCustomerConversation,
    ) -> Result<(Conversation, bool), RepoError> {
        self.lock().get_or_create_customer(new)
    }

    async fn find(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Option<Conversation>, RepoError> {
        Ok(self.lock().conversation(tenant, id).cloned())
    }

    async fn find_summary(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
    ) -> Result<Option<ConversationSummary>, RepoError> {
        let inner = self.lock();
        Ok(inner
            .conversation(tenant, id)
            .map(|c| inner.summary(c, reader)))
    }

    async fn list_conversations(
        &self,
        query: &ConversationListQuery,
    ) -> Result<ConversationPage, RepoError> {
        Ok(self.lock().list_conversations(query))
    }

    async fn update(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ConversationPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Conversation>, RepoError> {
        Ok(self.lock().update(tenant, id, patch, now))
    }

    async fn unread_total(
        &self,
        scope: ConversationScope,
        reader: Sender,
    ) -> Result<u64, RepoError> {
        Ok(self.lock().unread_total(&scope, reader))
    }
}
