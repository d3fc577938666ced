//! [`ChatService`]: the use cases, each a permission check followed by one
//! port call and, for writes, an event.

use std::sync::Arc;

use chat_domain::{
    authorize, authorize_access, authorize_create, authorize_message_change, conversation_scope,
    Action, AttachmentId, ClientMsgId, Conversation, ConversationId, ConversationPatch,
    ConversationStatus, CustomerId, Denied, Message, MessageBody, MessageChange, MessageId,
    NewCustomerConversation, NewMessage, Principal, ReadState, Seq, StaffUserId,
    MAX_ATTACHMENTS_PER_MESSAGE,
};

use crate::access_cache::AccessCache;
use crate::error::ChatError;
use crate::ports::{
    AccessPolicy, AllowAll, AppendError, AppendOutcome, ChatEvent, Clock, ConversationCursor,
    ConversationListQuery, ConversationPage, ConversationRepository, ConversationSummary,
    EventPublisher, IdGenerator, MessageCursor, MessagePage, MessageQuery, MessageRepository,
    PolicyAction, ReadStateRepository, Receipt, SystemClock, UuidV7Generator,
};

/// A validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// The largest page.
    pub const MAX: u32 = 200;
    /// The page size when none is given.
    pub const DEFAULT: Self = Self(50);

    /// Validates a page size (1..=[`PageLimit::MAX`]).
    ///
    /// # Errors
    /// [`ChatError::Invalid`] outside that range.
    pub fn parse(raw: u32) -> Result<Self, ChatError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ChatError::Invalid(format!(
                "limit must be between 1 and {}",
                Self::MAX
            )))
        }
    }

    /// The size.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A send request, already validated field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    /// The text; may be left out when attachments are given.
    pub body: Option<MessageBody>,
    /// Uploads of the sender in this conversation to attach, in order:
    /// at most [`MAX_ATTACHMENTS_PER_MESSAGE`], no duplicates.
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

/// Everything [`ChatService`] talks to.
#[derive(Clone)]
pub struct Ports {
    /// Conversation storage.
    pub conversations: Arc<dyn ConversationRepository>,
    /// Message storage.
    pub messages: Arc<dyn MessageRepository>,
    /// Read-marker storage.
    pub read_states: Arc<dyn ReadStateRepository>,
    /// Real-time fan-out.
    pub events: Arc<dyn EventPublisher>,
    /// The host's extra access rules ([`AllowAll`] by default).
    pub policy: Arc<dyn AccessPolicy>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Identifiers.
    pub ids: Arc<dyn IdGenerator>,
}

impl Ports {
    /// Ports from one store that implements all three repositories, with the
    /// system clock, UUIDv7 ids and the [`AllowAll`] policy.
    pub fn from_store<S>(store: Arc<S>, events: Arc<dyn EventPublisher>) -> Self
    where
        S: ConversationRepository + MessageRepository + ReadStateRepository + 'static,
    {
        Self {
            conversations: store.clone(),
            messages: store.clone(),
            read_states: store,
            events,
            policy: Arc::new(AllowAll),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Generator),
        }
    }

    /// Replaces the access policy.
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<dyn AccessPolicy>) -> Self {
        self.policy = policy;
        self
    }
}

/// The chat use cases. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct ChatService {
    pub(crate) ports: Ports,
    /// Access facts of the conversations loaded so far, shared by clones.
    access: Arc<AccessCache>,
}

impl ChatService {
    /// A service over `ports`.
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            access: Arc::default(),
        }
    }

    /// Loads conversation `id` and checks that `principal` may do `action`
    /// on it, through the domain rules and then the host policy.
    pub(crate) async fn authorized(
        &self,
        principal: &Principal,
        id: ConversationId,
        action: Action,
    ) -> Result<Conversation, ChatError> {
        let conversation = self
            .ports
            .conversations
            .find(principal.tenant(), id)
            .await?
            .ok_or(ChatError::NotFound)?;
        self.access.remember(conversation.id, conversation.access());
        authorize(principal, &conversation, action)?;
        self.ports
            .policy
            .check(principal, &conversation, PolicyAction::Act(action))
            .await?;
        Ok(conversation)
    }

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
                return Ok(authorize_access(principal, &access, Action::Send)?);
            }
        }
        self.authorized(principal, id, Action::Send).await?;
        Ok(())
    }

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
        let prospective = new.prospective();
        authorize_create(principal, &prospective)?;
        self.ports
            .policy
            .check(principal, &prospective, PolicyAction::Create)
            .await?;
        Ok(self
            .ports
            .conversations
            .get_or_create_customer(&new)
            .await?)
    }

    /// The conversations `principal` may read, most recent activity first,
    /// with their last message and the principal's unread count.
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
        limit: PageLimit,
        cursor: Option<ConversationCursor>,
    ) -> Result<ConversationPage, ChatError> {
        let query = ConversationListQuery {
            scope: conversation_scope(principal),
            reader: principal.as_sender(),
            status,
            limit: limit.get(),
            cursor,
        };
        let mut page = self.ports.conversations.list_conversations(&query).await?;
        let mut visible = Vec::with_capacity(page.items.len());
        for item in page.items {
            let allowed = self
                .ports
                .policy
                .check(
                    principal,
                    &item.conversation,
                    PolicyAction::Act(Action::Read),
                )
                .await
                .is_ok();
            if allowed {
                visible.push(item);
            }
        }
        page.items = visible;
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
        self.ports
            .conversations
            .find_summary(principal.tenant(), id, principal.as_sender())
            .await?
            .ok_or(ChatError::NotFound)
    }

    /// Changes status, assignee or tags. Staff only.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] for an empty patch; [`ChatError::NotFound`];
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
            return Err(ChatError::Invalid(
                "nothing to update: give status, assignee_id or tags".into(),
            ));
        }
        let conversation = self
            .ports
            .conversations
            .update(principal.tenant(), id, &patch, self.ports.clock.now())
            .await?
            .ok_or(ChatError::NotFound)?;
        self.ports
            .events
            .publish(ChatEvent::ConversationUpdated {
                conversation: conversation.clone(),
            })
            .await;
        Ok(conversation)
    }

    /// A page of messages by `seq`.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] when the conversation is missing or not
    /// readable; [`ChatError::Unexpected`] on storage failure.
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
    /// [`ChatError::Invalid`] without a body or attachment, with more than
    /// [`MAX_ATTACHMENTS_PER_MESSAGE`] or repeated attachments, with an
    /// attachment already sent, or with a `reply_to` outside the
    /// conversation; [`ChatError::NotFound`] for a conversation, and
    /// [`ChatError::AttachmentNotFound`] for an
    /// attachment, that is not the sender's to use here;
    /// [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn send_message(
        &self,
        principal: &Principal,
        id: ConversationId,
        request: SendMessage,
    ) -> Result<SendOutcome, ChatError> {
        self.authorize_send(principal, id).await?;
        check_attachment_ids(request.body.is_some(), &request.attachment_ids)?;
        let new = NewMessage {
            id: self.ports.ids.message_id(),
            tenant: principal.tenant(),
            conversation_id: id,
            sender: principal.as_sender(),
            body: request.body,
            attachments: request.attachment_ids,
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
                AppendError::ConversationNotFound => ChatError::NotFound,
                AppendError::ReplyTargetNotFound => {
                    ChatError::Invalid("reply_to must name a message of this conversation".into())
                }
                AppendError::AttachmentNotFound(attachment) => {
                    ChatError::AttachmentNotFound(attachment)
                }
                AppendError::AttachmentAlreadyUsed(attachment) => ChatError::Invalid(format!(
                    "attachment_ids: {attachment} is already attached to a message"
                )),
                AppendError::Unexpected(err) => ChatError::Unexpected(err),
            })?;
        match outcome {
            AppendOutcome::Created {
                message,
                conversation,
                reopened,
            } => {
                // Listeners see the conversation as the append left it: its
                // new last_seq, activity and (re)opened status. A copy only
                // when a second event needs one.
                let updated = reopened.then(|| conversation.clone());
                self.ports
                    .events
                    .publish(ChatEvent::MessageCreated {
                        conversation,
                        message: message.clone(),
                    })
                    .await;
                if let Some(conversation) = updated {
                    self.ports
                        .events
                        .publish(ChatEvent::ConversationUpdated { conversation })
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

    /// Marks the conversation read (or delivered) up to `up_to` for the
    /// principal. Never moves backwards; capped at the newest message.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn mark(
        &self,
        principal: &Principal,
        id: ConversationId,
        receipt: Receipt,
        up_to: Seq,
    ) -> Result<ReadState, ChatError> {
        let conversation = self.authorized(principal, id, Action::MarkRead).await?;
        let update = self
            .ports
            .read_states
            .advance(
                principal.tenant(),
                id,
                principal.as_sender(),
                receipt,
                up_to,
                self.ports.clock.now(),
            )
            .await?
            .ok_or(ChatError::NotFound)?;
        if update.moved {
            self.ports
                .events
                .publish(ChatEvent::ReceiptMoved {
                    conversation,
                    receipt,
                    state: update.state,
                })
                .await;
        }
        Ok(update.state)
    }

    /// The principal's unread messages over all conversations they may
    /// read.
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
        let conversation = self.authorized(principal, id, action).await?;
        let message = self
            .ports
            .messages
            .find_message(principal.tenant(), id, message_id)
            .await?
            .ok_or(ChatError::MessageNotFound)?;
        // The conversation is readable (checked above): a refusal to see is
        // about the message.
        authorize_message_change(principal, &conversation, &message, change).map_err(|denied| {
            match denied {
                Denied::NotFound => ChatError::MessageNotFound,
                Denied::Forbidden => ChatError::Forbidden,
            }
        })?;
        Ok((conversation, message))
    }

    /// Replaces the text of one of the principal's own messages.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] for an unknown or unreadable conversation,
    /// [`ChatError::MessageNotFound`] for a message that is not one of its
    /// messages; [`ChatError::Forbidden`] for someone else's message;
    /// [`ChatError::Conflict`] for a deleted one; [`ChatError::Unexpected`].
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
            return Err(ChatError::Conflict("the message was deleted".into()));
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
            .ok_or(ChatError::NotFound)?;
        if edited.deleted_at.is_some() {
            return Err(ChatError::Conflict("the message was deleted".into()));
        }
        self.ports
            .events
            .publish(ChatEvent::MessageUpdated {
                conversation,
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
    /// [`ChatError::NotFound`] for the conversation,
    /// [`ChatError::MessageNotFound`] for the message;
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
            .ok_or(ChatError::NotFound)?;
        self.ports
            .events
            .publish(ChatEvent::MessageDeleted {
                conversation,
                message: deleted.clone(),
            })
            .await;
        Ok(deleted)
    }
}

/// "A message needs a body or 1..=10 attachments, each named once."
fn check_attachment_ids(has_body: bool, ids: &[AttachmentId]) -> Result<(), ChatError> {
    if !has_body && ids.is_empty() {
        return Err(ChatError::Invalid(
            "a message needs a body or an attachment".into(),
        ));
    }
    if ids.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(ChatError::Invalid(format!(
            "attachment_ids: at most {MAX_ATTACHMENTS_PER_MESSAGE} attachments per message"
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    if let Some(repeated) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(ChatError::Invalid(format!(
            "attachment_ids: {repeated} is given twice"
        )));
    }
    Ok(())
}
