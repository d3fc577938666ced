//! An in-memory store for the chat core, for hosts' fast unit tests and for
//! demos.
//!
//! [`MemoryStore`] implements every repository port of `chat-app`:
//! [`chat_app::ConversationRepository`], [`chat_app::MessageRepository`],
//! [`chat_app::ReadStateRepository`], [`chat_app::AttachmentRepository`]
//! and [`chat_app::MembershipRepository`], and passes the same adapter
//! contract suite as the SQL stores (gap-free `seq`s, idempotent
//! `client_msg_id`s, list order and cursors, scopes, unread counts,
//! membership notices, tenant isolation). A host can therefore test its
//! own chat code against real store behaviour without a database file or
//! a server.
//!
//! **It is not durable.** Everything lives in the process's memory and is
//! lost when the last clone of the store is dropped or the process ends.
//! Do not use it for data anyone needs to keep. It keeps attachment
//! *metadata* only; file bytes go to a [`chat_app::FileStorage`] of the
//! host's choice.
//!
//! ```
//! use std::sync::Arc;
//!
//! use adapters_memory::MemoryStore;
//! use chat_app::{BusPublisher, ChatService, InProcessBus, Ports};
//!
//! let store = Arc::new(MemoryStore::new());
//! let events = Arc::new(BusPublisher(Arc::new(InProcessBus::default())));
//! let service = ChatService::new(Ports::from_store(store, events));
//! # drop(service);
//! ```
//!
//! Every method takes one lock for its whole work and never holds it across
//! an `.await`: each call is one critical section, so concurrent calls see
//! each other's writes whole, as transactions of a SQL store would. One
//! module per repository (`conversations`, `messages`, `read_states`,
//! `attachments`, `membership`); the append reuses
//! [`chat_app::store_support::assign`], so seqs, replays and refusals are
//! decided by the same code as in the SQL stores. Times are cut to
//! microseconds on the way in, as the SQL stores keep them, so what a call
//! hands back equals what later reads return.

#![warn(missing_docs)]

mod attachments;
mod conversations;
mod membership;
mod messages;
mod read_states;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chat_domain::{
    Attachment, AttachmentId, ClientMsgId, Conversation, ConversationId, CustomerId, Member,
    Message, MessageId, ReadState, Sender, StaffUserId, TenantId,
};
use chrono::{DateTime, Utc};

/// Conversations, messages, read markers, attachment records and members,
/// all in memory. Cheap to clone: clones share the same data.
///
/// Not durable: see the [crate docs](crate).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The data, locked. A panic while it was held (a bug) leaves no
    /// half-done write behind: every method checks everything before it
    /// writes anything, so the data is taken as it is.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the store holds.
#[derive(Debug, Default)]
struct Inner {
    /// Every conversation, of every tenant and kind.
    conversations: HashMap<ConversationId, Conversation>,
    /// The customer conversation of each (tenant, customer, clinician).
    customer_keys: HashMap<(TenantId, CustomerId, Option<StaffUserId>), ConversationId>,
    /// The direct conversation of each (tenant, set of people).
    direct_keys: HashMap<(TenantId, String), ConversationId>,
    /// The messages of each conversation.
    threads: HashMap<ConversationId, Thread>,
    /// Where each message is: its conversation and index in the thread.
    message_at: HashMap<MessageId, (ConversationId, usize)>,
    /// Read and delivered markers, by conversation and reader.
    read_states: HashMap<(ConversationId, Sender), ReadState>,
    /// Attachment records.
    attachments: HashMap<AttachmentId, StoredAttachment>,
    /// The members of direct conversations and channels.
    members: HashMap<ConversationId, HashMap<StaffUserId, Member>>,
}

/// The messages of one conversation.
#[derive(Debug, Default)]
struct Thread {
    /// In `seq` order, with the attachments they carry (a deleted message
    /// carries none).
    messages: Vec<Message>,
    /// The index of each message sent with a `client_msg_id`, by sender
    /// and key.
    keys: HashMap<(Sender, ClientMsgId), usize>,
}

/// An attachment record with what only the store needs.
#[derive(Debug, Clone)]
struct StoredAttachment {
    /// The record as reads return it.
    attachment: Attachment,
    /// When its message was deleted: from then on no read returns it and
    /// it waits for its bytes to be removed.
    deleted_at: Option<DateTime<Utc>>,
}

impl Inner {
    /// The conversation `id` if it belongs to `tenant`.
    fn conversation(&self, tenant: TenantId, id: ConversationId) -> Option<&Conversation> {
        self.conversations.get(&id).filter(|c| c.tenant == tenant)
    }

    /// The messages of conversation `id` of `tenant`, empty when there is
    /// no such conversation.
    fn messages(&self, tenant: TenantId, id: ConversationId) -> &[Message] {
        match self.conversation(tenant, id) {
            Some(_) => self.threads.get(&id).map_or(&[], |t| t.messages.as_slice()),
            None => &[],
        }
    }

    /// Adds `message` at the end of its conversation's thread (its `seq`
    /// is the conversation's next).
    fn push_message(&mut self, message: Message) {
        let thread = self.threads.entry(message.conversation_id).or_default();
        let index = thread.messages.len();
        if let Some(key) = &message.client_msg_id {
            thread.keys.insert((message.sender, key.clone()), index);
        }
        self.message_at
            .insert(message.id, (message.conversation_id, index));
        thread.messages.push(message);
    }

    /// Where message `message` is, if it is in conversation `id` of
    /// `tenant`: its index in the thread.
    fn locate(&self, tenant: TenantId, id: ConversationId, message: MessageId) -> Option<usize> {
        self.conversation(tenant, id)?;
        let &(conversation, index) = self.message_at.get(&message)?;
        (conversation == id).then_some(index)
    }

    /// Message `message` of conversation `id` of `tenant`.
    fn message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
    ) -> Option<&Message> {
        let index = self.locate(tenant, id, message)?;
        self.threads.get(&id)?.messages.get(index)
    }

    /// Message `message` of conversation `id` of `tenant`, to change it.
    fn message_mut(
        &mut self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
    ) -> Option<&mut Message> {
        let index = self.locate(tenant, id, message)?;
        self.threads.get_mut(&id)?.messages.get_mut(index)
    }
}

/// `at` cut to whole microseconds, the precision the SQL stores keep.
fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_cut_to_microseconds() {
        let at = DateTime::from_timestamp(1_767_225_600, 123_456_789).unwrap();
        assert_eq!(truncate(at).timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(truncate(truncate(at)), truncate(at));
    }

    #[test]
    fn clones_share_one_store() {
        let store = MemoryStore::new();
        let clone = store.clone();
        assert!(Arc::ptr_eq(&store.inner, &clone.inner));
    }
}
