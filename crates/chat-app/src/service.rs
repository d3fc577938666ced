//! [`ChatService`] itself: the [`Ports`] it drives and the checks every
//! area shares (loading a conversation the caller may act on, publishing
//! an event). The use cases live in their areas' modules, each with its own
//! `impl ChatService` block; none belongs here.

use std::sync::Arc;

use chat_domain::{
    authorize, authorize_create, Action, Conversation, ConversationId, MemberRole, Principal,
};

use crate::access_cache::AccessCache;
use crate::error::{ChatError, Resource};
use crate::ports::{
    AccessPolicy, AllowAll, ChatEvent, Clock, ConversationRepository, EventPublisher, IdGenerator,
    MembershipRepository, MessageRepository, PolicyAction, ReadStateRepository, SystemClock,
    UuidV7Generator,
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
    /// Members of direct conversations and channels.
    pub members: Arc<dyn MembershipRepository>,
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
    /// Ports from one store that implements all four repositories, with the
    /// system clock, UUIDv7 ids and the [`AllowAll`] policy.
    pub fn from_store<S>(store: Arc<S>, events: Arc<dyn EventPublisher>) -> Self
    where
        S: ConversationRepository
            + MessageRepository
            + ReadStateRepository
            + MembershipRepository
            + 'static,
    {
        Self {
            conversations: store.clone(),
            messages: store.clone(),
            read_states: store.clone(),
            members: store,
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
        Ok(self.authorized_as(principal, id, action).await?.0)
    }

    /// [`ChatService::authorized`], also giving the principal's role in a
    /// conversation with members (read fresh from the store every time:
    /// membership changes apply at once, on every node).
    pub(crate) async fn authorized_as(
        &self,
        principal: &Principal,
        id: ConversationId,
        action: Action,
    ) -> Result<(Conversation, Option<MemberRole>), ChatError> {
        let conversation = self
            .ports
            .conversations
            .find(principal.tenant(), id)
            .await?
            .ok_or(ChatError::NotFound(Resource::Conversation))?;
        self.access.remember(conversation.id, conversation.access());
        let role = self.role_in(principal, &conversation).await?;
        authorize(principal, &conversation, role, action)?;
        self.ports
            .policy
            .check(principal, &conversation, PolicyAction::Act(action))
            .await?;
        Ok((conversation, role))
    }

    /// The role of `principal` in `conversation`, for kinds with members
    /// (customers are never members; customer conversations have none).
    pub(crate) async fn role_in(
        &self,
        principal: &Principal,
        conversation: &Conversation,
    ) -> Result<Option<MemberRole>, ChatError> {
        match principal {
            Principal::Staff { user_id, .. } if conversation.kind.has_members() => Ok(self
                .ports
                .members
                .member_role(conversation.tenant, conversation.id, *user_id)
                .await?),
            _ => Ok(None),
        }
    }

    /// Checks that `principal` may create `prospective`, through the domain
    /// rules and then the host policy.
    pub(crate) async fn may_create(
        &self,
        principal: &Principal,
        prospective: &Conversation,
    ) -> Result<(), ChatError> {
        authorize_create(principal, prospective)?;
        self.ports
            .policy
            .check(principal, prospective, PolicyAction::Create)
            .await?;
        Ok(())
    }

    /// The items of a listed page whose conversation (`conversation` of
    /// each) the host policy lets `principal` read; the store has already
    /// applied the domain rules.
    pub(crate) async fn readable<T>(
        &self,
        principal: &Principal,
        items: Vec<T>,
        conversation: impl Fn(&T) -> &Conversation,
    ) -> Vec<T> {
        let mut visible = Vec::with_capacity(items.len());
        for item in items {
            let allowed = self
                .ports
                .policy
                .check(
                    principal,
                    conversation(&item),
                    PolicyAction::Act(Action::Read),
                )
                .await
                .is_ok();
            if allowed {
                visible.push(item);
            }
        }
        visible
    }

    /// Hands `event` to the publisher, after the access cache has seen it
    /// (see [`AccessCache`] for what an event may drop there). Every use
    /// case publishes through here.
    pub(crate) async fn publish(&self, event: ChatEvent) {
        self.access.observe(&event);
        self.ports.events.publish(event).await;
    }
}
