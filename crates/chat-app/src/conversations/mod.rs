//! Conversations: getting or creating one, listing them, reading one with
//! its unread count, changing its status, assignee or tags, and the unread
//! total over all of them.
//!
//! Its share of [`ChatError`]: `NotFound(Resource::Conversation)`,
//! `Forbidden`, `Invalid { field: Field::Patch, .. }` and `Unexpected`.

use chat_domain::{
    conversation_scope, Action, Conversation, ConversationId, ConversationPatch,
    ConversationStatus, CustomerId, KindName, NewCustomerConversation, Principal, StaffUserId,
};

use crate::error::{ChatError, Field, Reason, Resource};
use crate::page::PageLimit;
use crate::ports::{
    ChatEvent, ConversationCursor, ConversationListQuery, ConversationPage, ConversationSummary,
};
use crate::service::ChatService;

#[cfg(test)]
mod tests;

impl ChatService {
    /// Gets the customer conversation of the principal's tenant for
    /// (`customer_id`, `clinician`), creating it if needed. The flag is
    /// `true` when it was created. Staff only; see
    /// [`chat_domain::authorize_create`].
    ///
    /// # Errors
    /// [`ChatError::Forbidden`] for customers and for staff naming another
    /// clinician; [`ChatError::Unexpected`] on storage failure.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn get_or_create_conversation(
        &self,
        principal: &Principal,
        customer_id: CustomerId,
        clinician: Option<StaffUserId>,
    ) -> Result<(Conversation, bool), ChatError> {
        let new = NewCustomerConversation {
            id: self.ports.ids.conversation_id(),
            tenant: principal.tenant(),
            customer_id,
            clinician,
            now: self.ports.clock.now(),
        };
        self.may_create(principal, &new.prospective()).await?;
        Ok(self
            .ports
            .conversations
            .get_or_create_customer(&new)
            .await?)
    }

    /// The conversations `principal` takes part in (customer conversations
    /// they may read; for staff also their direct conversations and joined
    /// channels), most recent activity first, with their last message, the
    /// principal's unread count and, for kinds with members, membership
    /// facts; only `kind` when set.
    ///
    /// Conversations the host policy hides are left out of the page, so a
    /// page may hold fewer than `limit` items while more follow.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] on storage failure.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn list_conversations(
        &self,
        principal: &Principal,
        status: Option<ConversationStatus>,
        kind: Option<KindName>,
        limit: PageLimit,
        cursor: Option<ConversationCursor>,
    ) -> Result<ConversationPage, ChatError> {
        let query = ConversationListQuery {
            scope: conversation_scope(principal),
            kind,
            reader: principal.as_sender(),
            status,
            limit: limit.get(),
            cursor,
        };
        let mut page = self.ports.conversations.list_conversations(&query).await?;
        page.items = self
            .readable(principal, page.items, |item| &item.conversation)
            .await;
        self.with_membership(principal, &mut page.items).await?;
        Ok(page)
    }

    /// One conversation with its last message and the principal's unread
    /// count.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] when missing or not readable by `principal`;
    /// [`ChatError::Unexpected`] on storage failure.
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn get_conversation(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<ConversationSummary, ChatError> {
        self.authorized(principal, id, Action::Read).await?;
        let summary = self
            .ports
            .conversations
            .find_summary(principal.tenant(), id, principal.as_sender())
            .await?
            .ok_or(ChatError::NotFound(Resource::Conversation))?;
        let mut one = [summary];
        self.with_membership(principal, &mut one).await?;
        let [summary] = one;
        Ok(summary)
    }

    /// Changes status, assignee or tags. Staff only.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] ([`Field::Patch`], [`Reason::Empty`]) for an
    /// empty patch; [`ChatError::NotFound`];
    /// [`ChatError::Forbidden`] for customers; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn update_conversation(
        &self,
        principal: &Principal,
        id: ConversationId,
        patch: ConversationPatch,
    ) -> Result<Conversation, ChatError> {
        self.authorized(principal, id, Action::Update).await?;
        if patch.is_empty() {
            return Err(ChatError::invalid(Field::Patch, Reason::Empty));
        }
        let conversation = self
            .ports
            .conversations
            .update(principal.tenant(), id, &patch, self.ports.clock.now())
            .await?
            .ok_or(ChatError::NotFound(Resource::Conversation))?;
        self.publish(ChatEvent::ConversationUpdated {
            conversation: conversation.clone(),
        })
        .await;
        Ok(conversation)
    }

    /// The principal's unread messages over all conversations they take
    /// part in (a public channel not joined counts nothing).
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] on storage failure.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn unread_total(&self, principal: &Principal) -> Result<u64, ChatError> {
        Ok(self
            .ports
            .conversations
            .unread_total(conversation_scope(principal), principal.as_sender())
            .await?)
    }
}
