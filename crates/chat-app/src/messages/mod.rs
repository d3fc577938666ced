//! Messages: history pages, sends (with their attachments, replies and
//! idempotency keys), edits and deletions. Threads, reactions, pins,
//! forwarding and mentions extend this area.
//!
//! Its share of [`ChatError`]: `NotFound(Resource::Conversation |
//! Resource::Message | Resource::Attachment(..))`, `Forbidden`,
//! `Invalid { field: Field::Body | Field::AttachmentIds | Field::ReplyTo, .. }`,
//! `Conflict(Conflict::MessageDeleted)` and `Unexpected`.

use chat_domain::{
    authorize_access, authorize_message_change, Action, AttachmentId, AttachmentIds, ClientMsgId,
    Conversation, ConversationId, Denied, Message, MessageBody, MessageChange, MessageId,
    NewMessage, Principal,
};

use crate::error::{ChatError, Conflict, Field, Reason, Resource};
use crate::page::PageLimit;
use crate::ports::{
    AppendError, AppendOutcome, ChatEvent, MessageCursor, MessagePage, MessageQuery, Route,
};
use crate::service::ChatService;

#[cfg(test)]
mod change_tests;
#[cfg(test)]
mod tests;

/// A send request, already validated field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    /// The text; may be left out when attachments are given.
    pub body: Option<MessageBody>,
    /// Uploads of the sender in this conversation to attach, in order, as
    /// the caller gave them. The send checks them as [`AttachmentIds`] (at
    /// most [`chat_domain::MAX_ATTACHMENTS_PER_MESSAGE`], no duplicates) only once the
    /// caller may send here, so that a conversation they cannot reach is not
    /// found whatever the list.
    pub attachment_ids: Vec<AttachmentId>,
    /// The message answered, in the same conversation.
    pub reply_to: Option<MessageId>,
    /// The sender's idempotency key.
    pub client_msg_id: Option<ClientMsgId>,
}

/// The result of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// The stored message (the original one on a replay).
    pub message: chat_domain::Message,
    /// `false` when the `client_msg_id` had been used already.
    pub created: bool,
}

impl ChatService {
    /// Checks that `principal` may send into conversation `id`. Under a
    /// policy that refuses nothing, the domain rules decide from the
    /// conversation's access facts when they are known, and nothing is read
    /// (the append finds out if the conversation is gone).
    async fn authorize_send(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<(), ChatError> {
        if self.ports.policy.refuses_nothing() {
            if let Some(access) = self.access.get(id) {
                // Cached facts are of customer conversations only, which
                // have no members.
                return Ok(authorize_access(principal, &access, None, Action::Send)?);
            }
        }
        self.authorized(principal, id, Action::Send).await?;
        Ok(())
    }

    /// A page of messages by `seq`.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] ([`Resource::Conversation`]) when the
    /// conversation is missing or not readable; [`ChatError::Unexpected`] on storage failure.
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn list_messages(
        &self,
        principal: &Principal,
        id: ConversationId,
        cursor: MessageCursor,
        limit: PageLimit,
    ) -> Result<MessagePage, ChatError> {
        self.authorized(principal, id, Action::Read).await?;
        Ok(self
            .ports
            .messages
            .list_messages(
                principal.tenant(),
                id,
                MessageQuery {
                    cursor,
                    limit: limit.get(),
                },
            )
            .await?)
    }

    /// Sends a message. Acknowledged only once committed; a replayed
    /// `client_msg_id` returns the original message and publishes nothing. A
    /// customer writing into a resolved or archived conversation reopens it.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] about [`Field::Body`] without a body or
    /// attachment, about [`Field::AttachmentIds`] with more than
    /// [`chat_domain::MAX_ATTACHMENTS_PER_MESSAGE`] or repeated attachments or with one
    /// already sent, about [`Field::ReplyTo`] with a `reply_to` outside the
    /// conversation; [`ChatError::NotFound`] of [`Resource::Conversation`],
    /// or of [`Resource::Attachment`] for an attachment that is not the
    /// sender's to use here; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn send_message(
        &self,
        principal: &Principal,
        id: ConversationId,
        request: SendMessage,
    ) -> Result<SendOutcome, ChatError> {
        self.authorize_send(principal, id).await?;
        let attachments = message_attachments(request.body.is_some(), request.attachment_ids)?;
        let new = NewMessage {
            id: self.ports.ids.message_id(),
            tenant: principal.tenant(),
            conversation_id: id,
            sender: principal.as_sender(),
            body: request.body,
            attachments: attachments.into_vec(),
            reply_to: request.reply_to,
            client_msg_id: request.client_msg_id,
            created_at: self.ports.clock.now(),
        };
        // A customer's message reopens a resolved or archived conversation;
        // staff answer without changing its status.
        let reopen = !principal.is_staff();
        let outcome = self
            .ports
            .messages
            .append(&new, reopen)
            .await
            .map_err(|err| match err {
                AppendError::ConversationNotFound => ChatError::NotFound(Resource::Conversation),
                AppendError::ReplyTargetNotFound => {
                    ChatError::invalid(Field::ReplyTo, Reason::NotInConversation)
                }
                AppendError::AttachmentNotFound(attachment) => {
                    ChatError::NotFound(Resource::Attachment(attachment))
                }
                AppendError::AttachmentAlreadyUsed(attachment) => {
                    ChatError::invalid(Field::AttachmentIds, Reason::AlreadyAttached(attachment))
                }
                AppendError::Unexpected(err) => ChatError::Unexpected(err),
            })?;
        match outcome {
            AppendOutcome::Created {
                message,
                conversation,
                reopened,
            } => {
                self.publish(ChatEvent::MessageCreated {
                    route: Route::of(&conversation),
                    message: message.clone(),
                })
                .await;
                if reopened {
                    // Listeners see the conversation as the append left it:
                    // its new last_seq, activity and reopened status.
                    self.publish(ChatEvent::ConversationUpdated { conversation })
                        .await;
                }
                Ok(SendOutcome {
                    message,
                    created: true,
                })
            }
            AppendOutcome::Replayed(message) => Ok(SendOutcome {
                message,
                created: false,
            }),
        }
    }

    /// Loads message `message_id` of conversation `id` and checks that
    /// `principal` may make `change` to it: an edit needs the right to send
    /// in the conversation, a deletion the right to read it, and both the
    /// message rules of [`authorize_message_change`].
    async fn changeable_message(
        &self,
        principal: &Principal,
        id: ConversationId,
        message_id: MessageId,
        change: MessageChange,
    ) -> Result<(Conversation, Message), ChatError> {
        let action = match change {
            MessageChange::Edit => Action::Send,
            MessageChange::Delete => Action::Read,
        };
        let (conversation, role) = self.authorized_as(principal, id, action).await?;
        let message = self
            .ports
            .messages
            .find_message(principal.tenant(), id, message_id)
            .await?
            .ok_or(ChatError::NotFound(Resource::Message))?;
        // The conversation is readable (checked above): a refusal to see is
        // about the message.
        authorize_message_change(principal, &conversation, role, &message, change).map_err(
            |denied| match denied {
                Denied::NotFound => ChatError::NotFound(Resource::Message),
                denied => denied.into(),
            },
        )?;
        Ok((conversation, message))
    }

    /// Replaces the text of one of the principal's own messages.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] of [`Resource::Conversation`] for an unknown
    /// or unreadable conversation, of [`Resource::Message`] for a message
    /// that is not one of its messages; [`ChatError::Forbidden`] for someone
    /// else's message; [`ChatError::Conflict`] ([`Conflict::MessageDeleted`])
    /// for a deleted one; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message_id), err(level = "debug"))]
    pub async fn edit_message(
        &self,
        principal: &Principal,
        id: ConversationId,
        message_id: MessageId,
        body: MessageBody,
    ) -> Result<Message, ChatError> {
        let (conversation, message) = self
            .changeable_message(principal, id, message_id, MessageChange::Edit)
            .await?;
        if message.deleted_at.is_some() {
            return Err(ChatError::Conflict(Conflict::MessageDeleted));
        }
        let edited = self
            .ports
            .messages
            .edit_message(
                principal.tenant(),
                id,
                message_id,
                &body,
                self.ports.clock.now(),
            )
            .await?
            .ok_or(ChatError::NotFound(Resource::Conversation))?;
        if edited.deleted_at.is_some() {
            return Err(ChatError::Conflict(Conflict::MessageDeleted));
        }
        self.publish(ChatEvent::MessageChanged {
            route: Route::of(&conversation),
            message: edited.clone(),
        })
        .await;
        Ok(edited)
    }

    /// Deletes a message softly: its sender may, and so may a tenant admin.
    /// Deleting a deleted message returns it unchanged and announces
    /// nothing.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] of [`Resource::Conversation`] or
    /// [`Resource::Message`];
    /// [`ChatError::Forbidden`] for someone else's message (unless an
    /// admin); [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message_id), err(level = "debug"))]
    pub async fn delete_message(
        &self,
        principal: &Principal,
        id: ConversationId,
        message_id: MessageId,
    ) -> Result<Message, ChatError> {
        let (conversation, message) = self
            .changeable_message(principal, id, message_id, MessageChange::Delete)
            .await?;
        if message.deleted_at.is_some() {
            return Ok(message);
        }
        let deleted = self
            .ports
            .messages
            .delete_message(principal.tenant(), id, message_id, self.ports.clock.now())
            .await?
            .ok_or(ChatError::NotFound(Resource::Conversation))?;
        self.publish(ChatEvent::MessageChanged {
            route: Route::of(&conversation),
            message: deleted.clone(),
        })
        .await;
        Ok(deleted)
    }
}

/// "A message needs a body or 1..=10 attachments, each named once": the
/// attachments as a validated list.
fn message_attachments(has_body: bool, ids: Vec<AttachmentId>) -> Result<AttachmentIds, ChatError> {
    if !has_body && ids.is_empty() {
        return Err(ChatError::invalid(Field::Body, Reason::Required));
    }
    AttachmentIds::parse(ids).map_err(|err| ChatError::invalid(Field::AttachmentIds, err))
}
