//! [`ChatService`] itself: the [`Ports`] it drives and the checks every
//! area shares (loading a conversation the caller may act on, publishing
//! an event). The use cases live in their areas' modules, each with its own
//! `impl ChatService` block; none belongs here.

use std::sync::Arc;

use chat_domain::{authorize, Action, Conversation, ConversationId, Principal};

use crate::access_cache::AccessCache;
use crate::error::{ChatError, Resource};
use crate::ports::{
    AccessPolicy, AllowAll, ChatEvent, Clock, ConversationRepository, EventPublisher, IdGenerator,
    MessageRepository, PolicyAction, ReadStateRepository, SystemClock, UuidV7Generator,
};

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
    pub(crate) access: Arc<AccessCache>,
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
            .ok_or(ChatError::NotFound(Resource::Conversation))?;
        self.access.remember(conversation.id, conversation.access());
        authorize(principal, &conversation, action)?;
        self.ports
            .policy
            .check(principal, &conversation, PolicyAction::Act(action))
            .await?;
        Ok(conversation)
    }

    /// Hands `event` to the publisher, after the access cache has seen it
    /// (see [`AccessCache`] for what an event may drop there). Every use
    /// case publishes through here.
    pub(crate) async fn publish(&self, event: ChatEvent) {
        self.access.observe(&event);
        self.ports.events.publish(event).await;
    }
}
