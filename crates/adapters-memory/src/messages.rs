//! [`MessageRepository`] for [`MemoryStore`]: the atomic, idempotent append
//! and pages of messages by `seq`.
//!
//! An append is a batch of one of [`chat_app::store_support`], as in the
//! SQL stores: `load_state` reads the conversation, the original of the
//! `client_msg_id` and the reply target; [`store_support::assign`] decides
//! the outcome and the `seq`; the attachments are checked; then the message,
//! its conversation, its attachments and the sender's read marker are
//! written, all under the one lock.

use std::collections::HashSet;

use async_trait::async_trait;
use chat_app::store_support::{self, Append, Fresh, Outcome, State};
use chat_app::{
    AppendError, AppendOutcome, MessageCursor, MessagePage, MessageQuery, MessageRepository,
    RepoError,
};
use chat_domain::{
    AttachedFile, AttachmentId, ConversationId, Message, MessageBody, MessageId, NewMessage,
    TenantId,
};
use chrono::{DateTime, Utc};

use crate::{truncate, Inner, MemoryStore};

impl Inner {
    /// What the sends of `batch` find: their conversations, the originals
    /// of their `client_msg_id`s and which reply targets exist.
    fn load_state(&self, batch: &[Append]) -> State {
        let mut state = State::new(
            batch
                .iter()
                .filter_map(|append| self.conversations.get(&append.message.conversation_id))
                .cloned(),
        );
        for position in state.keyed(batch) {
            let new = &batch[position].message;
            let original = new.client_msg_id.as_ref().and_then(|key| {
                let thread = self.threads.get(&new.conversation_id)?;
                let &index = thread.keys.get(&(new.sender, key.clone()))?;
                thread.messages.get(index)
            });
            if let Some(original) = original {
                state.originals.insert(position, original.clone());
            }
        }
        for position in state.replying(batch) {
            let new = &batch[position].message;
            let found = new.reply_to.and_then(|target| self.message_at.get(&target));
            if found.is_some_and(|&(conversation, _)| conversation == new.conversation_id) {
                state.reply_targets.insert(position);
            }
        }
        state
    }

    /// The attachments `new` asks for, in order, once each is checked: an
    /// upload of the sender in this conversation that no message carries.
    fn attachable(&self, new: &NewMessage) -> Result<Vec<AttachedFile>, AppendError> {
        let mut linked = Vec::with_capacity(new.attachments.len());
        let mut seen: HashSet<AttachmentId> = HashSet::new();
        for &id in &new.attachments {
            let Some(stored) = self.attachments.get(&id) else {
                return Err(AppendError::AttachmentNotFound(id));
            };
            let upload = &stored.attachment;
            if upload.tenant != new.tenant
                || upload.conversation_id != new.conversation_id
                || upload.uploader != new.sender
            {
                return Err(AppendError::AttachmentNotFound(id));
            }
            // Named twice in one send, it is used by the time it comes up
            // again.
            if upload.message_id.is_some() || !seen.insert(id) {
                return Err(AppendError::AttachmentAlreadyUsed(id));
            }
            linked.push(upload.clone().into());
        }
        Ok(linked)
    }

    /// Writes a fresh send: the message, its conversation as the send
    /// leaves it, its attachments' links and the sender's read marker.
    fn write_fresh(&mut self, fresh: &Fresh, new: &NewMessage) {
        for id in &new.attachments {
            if let Some(stored) = self.attachments.get_mut(id) {
                stored.attachment.message_id = Some(fresh.message.id);
            }
        }
        self.conversations
            .insert(fresh.conversation.id, fresh.conversation.clone());
        self.mark_read(
            fresh.conversation.id,
            fresh.message.sender,
            fresh.seq(),
            fresh.message.created_at,
        );
        self.push_message(fresh.message.clone());
    }

    /// Appends one send, a batch of one. Everything is checked before
    /// anything is written, so a refused send stores nothing.
    fn append(&mut self, append: Append) -> Outcome {
        let batch = [append];
        let state = self.load_state(&batch);
        let mut assigned = store_support::assign(&batch, state)?;
        for fresh in assigned.fresh_mut() {
            let new = &batch[fresh.position].message;
            if self.message_at.contains_key(&new.id) {
                return Err(anyhow::anyhow!("message id {} is already taken", new.id).into());
            }
            fresh.message.attachments = self.attachable(new)?;
        }
        for fresh in assigned.fresh() {
            self.write_fresh(fresh, &batch[fresh.position].message);
        }
        assigned
            .into_outcomes()
            .pop()
            .unwrap_or_else(|| Err(anyhow::anyhow!("a batch of one without its outcome").into()))
    }

    fn list_messages(
        &self,
        tenant: TenantId,
        id: ConversationId,
        query: MessageQuery,
    ) -> MessagePage {
        let messages = self.messages(tenant, id);
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let (page, has_more): (Vec<Message>, bool) = match query.cursor {
            MessageCursor::Latest => newest_first(messages, limit),
            MessageCursor::Before(seq) => {
                let below = messages.partition_point(|m| m.seq < seq);
                newest_first(&messages[..below], limit)
            }
            MessageCursor::After(seq) => {
                let above = &messages[messages.partition_point(|m| m.seq <= seq)..];
                (
                    above.iter().take(limit).cloned().collect(),
                    above.len() > limit,
                )
            }
        };
        MessagePage {
            messages: page,
            has_more,
        }
    }

    fn edit_message(
        &mut self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        body: &MessageBody,
        at: DateTime<Utc>,
    ) -> Option<Message> {
        let found = self.message_mut(tenant, id, message)?;
        if found.deleted_at.is_none() {
            found.body = Some(body.clone());
            found.edited_at = Some(truncate(at));
        }
        Some(found.clone())
    }

    fn delete_message(
        &mut self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        at: DateTime<Utc>,
    ) -> Option<Message> {
        let found = self.message_mut(tenant, id, message)?;
        found.body = None;
        let deleted_at = *found.deleted_at.get_or_insert(truncate(at));
        // Its files go with it: no read returns them, and they wait for
        // their bytes to be removed.
        let files = std::mem::take(&mut found.attachments);
        let deleted = found.clone();
        for file in files {
            if let Some(stored) = self.attachments.get_mut(&file.id) {
                stored.deleted_at.get_or_insert(deleted_at);
            }
        }
        Some(deleted)
    }
}

/// Up to `limit` of `messages` (in `seq` order), newest first, and whether
/// older ones remain.
fn newest_first(messages: &[Message], limit: usize) -> (Vec<Message>, bool) {
    (
        messages.iter().rev().take(limit).cloned().collect(),
        messages.len() > limit,
    )
}

#[async_trait]
impl MessageRepository for MemoryStore {
    async fn append(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let mut message = message.clone();
        message.created_at = truncate(message.created_at);
        self.lock().append(Append { message, reopen })
    }

    async fn list_messages(
        &self,
        tenant: TenantId,
        id: ConversationId,
        query: MessageQuery,
    ) -> Result<MessagePage, RepoError> {
        Ok(self.lock().list_messages(tenant, id, query))
    }

    async fn find_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>, RepoError> {
        Ok(self.lock().message(tenant, id, message).cloned())
    }

    async fn edit_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        body: &MessageBody,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError> {
        Ok(self.lock().edit_message(tenant, id, message, body, at))
    }

    async fn delete_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError> {
        Ok(self.lock().delete_message(tenant, id, message, at))
    }
}

#[cfg(test)]
mod tests {
    use chat_app::ConversationRepository;
    use chat_domain::{CustomerId, NewCustomerConversation, Sender, Seq};

    use super::*;

    /// A message id is a message's for good, as a primary key would keep
    /// it: a second send with it is refused and stores nothing.
    #[tokio::test]
    async fn a_taken_message_id_is_refused_and_stores_nothing() {
        let store = MemoryStore::new();
        let (conversation, _) = store
            .get_or_create_customer(&NewCustomerConversation {
                id: ConversationId::new_v7(),
                tenant: TenantId::new_v4(),
                customer_id: CustomerId::new_v4(),
                clinician: None,
                now: Utc::now(),
            })
            .await
            .unwrap();
        let new = NewMessage {
            id: MessageId::new_v7(),
            tenant: conversation.tenant,
            conversation_id: conversation.id,
            sender: Sender::System,
            body: Some(MessageBody::parse("once").unwrap()),
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: None,
            created_at: Utc::now(),
        };
        store.append(&new, false).await.unwrap();
        let again = store.append(&new, false).await;
        assert!(
            matches!(&again, Err(AppendError::Unexpected(err)) if err.to_string().contains("taken")),
            "{again:?}"
        );
        let after = store
            .find(conversation.tenant, conversation.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.last_seq, Seq::from_u64(1).unwrap());
    }
}
