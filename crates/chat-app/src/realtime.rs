//! Real-time use cases: presence, typing indicators and receipts.

use std::sync::Arc;

use chat_domain::{
    Action, ConversationId, Presence, PresenceStatus, Principal, ReadState, Sender, TenantId,
};

use crate::error::ChatError;
use crate::ports::{ChatEvent, Clock, ConnectionId, EventPublisher, PresenceChange, PresenceStore};
use crate::service::ChatService;

/// Presence use cases: connections coming and going, chosen statuses, and
/// the staff's view of who is online. Changes are published as
/// [`ChatEvent::PresenceChanged`].
#[derive(Clone)]
pub struct PresenceService {
    store: Arc<dyn PresenceStore>,
    events: Arc<dyn EventPublisher>,
    clock: Arc<dyn Clock>,
}

impl PresenceService {
    /// The most users one presence query may name.
    pub const MAX_QUERY: usize = 200;

    /// A service over `store`, publishing to `events`.
    pub fn new(
        store: Arc<dyn PresenceStore>,
        events: Arc<dyn EventPublisher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            events,
            clock,
        }
    }

    async fn announce(&self, tenant: TenantId, change: PresenceChange) -> Presence {
        if change.changed {
            self.events
                .publish(ChatEvent::PresenceChanged {
                    tenant,
                    presence: change.presence,
                })
                .await;
        }
        change.presence
    }

    /// A connection of `principal` opened.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn connected(
        &self,
        principal: &Principal,
        connection: ConnectionId,
    ) -> Result<Presence, ChatError> {
        let change = self
            .store
            .connected(
                principal.tenant(),
                principal.as_sender(),
                connection,
                self.clock.now(),
            )
            .await?;
        Ok(self.announce(principal.tenant(), change).await)
    }

    /// A connection of `principal` opens if they have fewer than `limit`
    /// (when given) open on all nodes; `None` when refused, and then
    /// nothing was recorded.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn connect_within(
        &self,
        principal: &Principal,
        connection: ConnectionId,
        limit: Option<usize>,
    ) -> Result<Option<Presence>, ChatError> {
        let change = self
            .store
            .connect_within(
                principal.tenant(),
                principal.as_sender(),
                connection,
                limit,
                self.clock.now(),
            )
            .await?;
        Ok(match change {
            Some(change) => Some(self.announce(principal.tenant(), change).await),
            None => None,
        })
    }

    /// A connection of `principal` closed.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn disconnected(
        &self,
        principal: &Principal,
        connection: ConnectionId,
    ) -> Result<Presence, ChatError> {
        let change = self
            .store
            .disconnected(
                principal.tenant(),
                principal.as_sender(),
                connection,
                self.clock.now(),
            )
            .await?;
        Ok(self.announce(principal.tenant(), change).await)
    }

    /// Keeps a connection of `principal` alive.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn refresh(
        &self,
        principal: &Principal,
        connection: ConnectionId,
    ) -> Result<(), ChatError> {
        Ok(self
            .store
            .refresh(
                principal.tenant(),
                principal.as_sender(),
                connection,
                self.clock.now(),
            )
            .await?)
    }

    /// Sets the status `principal` shows (`online`, `away`, `busy`).
    ///
    /// # Errors
    /// [`ChatError::Invalid`] for `offline`; [`ChatError::Unexpected`].
    pub async fn set_status(
        &self,
        principal: &Principal,
        status: PresenceStatus,
    ) -> Result<Presence, ChatError> {
        if status == PresenceStatus::Offline {
            return Err(ChatError::Invalid(
                chat_domain::PresenceStatusError.to_string(),
            ));
        }
        let change = self
            .store
            .set_status(
                principal.tenant(),
                principal.as_sender(),
                status,
                self.clock.now(),
            )
            .await?;
        Ok(self.announce(principal.tenant(), change).await)
    }

    /// How many expired users [`PresenceService::announce_expired`] takes
    /// from the store at a time.
    pub const EXPIRY_BATCH: usize = 100;

    /// Announces the users whose connections expired in the store (see
    /// [`PresenceStore::take_expired`]) as gone offline; returns how many.
    /// Every node runs it periodically: each user is announced once.
    ///
    /// # Errors
    /// [`ChatError::Unexpected`] when the store fails.
    pub async fn announce_expired(&self) -> Result<usize, ChatError> {
        let mut announced = 0;
        loop {
            let expired = self.store.take_expired(Self::EXPIRY_BATCH).await?;
            let taken = expired.len();
            for (tenant, presence) in expired {
                self.events
                    .publish(ChatEvent::PresenceChanged { tenant, presence })
                    .await;
            }
            announced += taken;
            if taken < Self::EXPIRY_BATCH {
                return Ok(announced);
            }
        }
    }

    /// The presence of `users` of the caller's tenant. Staff only.
    ///
    /// # Errors
    /// [`ChatError::Forbidden`] for customers; [`ChatError::Invalid`] for
    /// more than [`PresenceService::MAX_QUERY`] users;
    /// [`ChatError::Unexpected`].
    pub async fn presence_of(
        &self,
        principal: &Principal,
        users: &[Sender],
    ) -> Result<Vec<Presence>, ChatError> {
        if !principal.is_staff() {
            return Err(ChatError::Forbidden);
        }
        if users.len() > Self::MAX_QUERY {
            return Err(ChatError::Invalid(format!(
                "at most {} users per query",
                Self::MAX_QUERY
            )));
        }
        Ok(self.store.get(principal.tenant(), users).await?)
    }
}

impl ChatService {
    /// Relays that `principal` started or stopped typing in conversation
    /// `id`. Nothing is stored; throttling is the transport's job.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] when the conversation is not the
    /// principal's to write in; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn typing(
        &self,
        principal: &Principal,
        id: ConversationId,
        is_typing: bool,
    ) -> Result<(), ChatError> {
        let conversation = self.authorized(principal, id, Action::Send).await?;
        self.ports
            .events
            .publish(ChatEvent::Typing {
                conversation,
                sender: principal.as_sender(),
                is_typing,
            })
            .await;
        Ok(())
    }

    /// Checks that `principal` may write in conversation `id` (what
    /// [`ChatService::typing`] checks), without doing anything: for
    /// transports that answer a throttled or redundant frame.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Unexpected`].
    pub async fn check_participant(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<(), ChatError> {
        self.authorized(principal, id, Action::Send)
            .await
            .map(|_| ())
    }

    /// Every participant's read and delivered markers in conversation `id`:
    /// from them a sender derives the sent / delivered / read status of
    /// each message (delivered once another participant's delivered marker
    /// reaches its `seq`, read likewise).
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn receipts(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<Vec<ReadState>, ChatError> {
        self.authorized(principal, id, Action::Read).await?;
        Ok(self
            .ports
            .read_states
            .list_receipts(principal.tenant(), id)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{CustomerId, StaffRole, StaffUserId};

    use chrono::{DateTime, Utc};
    use futures::StreamExt as _;
    use uuid::Uuid;

    use super::*;
    use crate::memory::{InMemoryPresence, InProcessBus};
    use crate::ports::{BusEvent, EventBus as _, MockClock, MockEventPublisher, SystemClock};

    fn staff(tenant: TenantId) -> Principal {
        Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff)
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid time")
    }

    fn service(events: MockEventPublisher) -> PresenceService {
        let mut clock = MockClock::new();
        clock.expect_now().returning(at);
        PresenceService::new(
            Arc::new(InMemoryPresence::default()),
            Arc::new(events),
            Arc::new(clock),
        )
    }

    fn expect_presence(events: &mut MockEventPublisher, status: PresenceStatus, times: usize) {
        events
            .expect_publish()
            .withf(move |e| {
                matches!(e, ChatEvent::PresenceChanged { presence, .. } if presence.status == status)
            })
            .times(times)
            .return_const(());
    }

    #[tokio::test]
    async fn a_user_is_online_while_any_connection_is_open() {
        let mut events = MockEventPublisher::new();
        expect_presence(&mut events, PresenceStatus::Online, 1);
        expect_presence(&mut events, PresenceStatus::Offline, 1);
        let presence = service(events);
        let tenant = TenantId::new_v4();
        let pharmacist = staff(tenant);
        let (tab_1, tab_2) = (ConnectionId::new(), ConnectionId::new());

        let first = presence.connected(&pharmacist, tab_1).await.unwrap();
        assert_eq!(first.status, PresenceStatus::Online);
        presence.connected(&pharmacist, tab_2).await.unwrap();
        let still = presence.disconnected(&pharmacist, tab_1).await.unwrap();
        assert_eq!(
            still.status,
            PresenceStatus::Online,
            "second tab still open"
        );
        let gone = presence.disconnected(&pharmacist, tab_2).await.unwrap();
        assert_eq!(gone.status, PresenceStatus::Offline);
        assert_eq!(gone.last_seen_at, Some(at()));

        let asked = presence
            .presence_of(&staff(tenant), &[pharmacist.as_sender()])
            .await
            .unwrap();
        assert_eq!(asked, vec![gone]);
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused_until_one_closes() {
        let mut events = MockEventPublisher::new();
        // The pharmacist, then the colleague, come online.
        expect_presence(&mut events, PresenceStatus::Online, 2);
        let presence = service(events);
        let pharmacist = staff(TenantId::new_v4());
        let colleague = staff(pharmacist.tenant());
        let tabs: Vec<ConnectionId> = (0..3).map(|_| ConnectionId::new()).collect();
        for tab in &tabs[..2] {
            let admitted = presence.connect_within(&pharmacist, *tab, Some(2)).await;
            assert!(admitted.unwrap().is_some());
        }
        // Full: a third is refused, the same one again is not a new one, and
        // another user has a count of their own.
        let refused = presence.connect_within(&pharmacist, tabs[2], Some(2)).await;
        assert!(refused.unwrap().is_none());
        let again = presence.connect_within(&pharmacist, tabs[0], Some(2)).await;
        assert!(again.unwrap().is_some());
        let other = presence
            .connect_within(&colleague, ConnectionId::new(), Some(2))
            .await;
        assert!(other.unwrap().is_some());
        presence.disconnected(&pharmacist, tabs[0]).await.unwrap();
        let admitted = presence.connect_within(&pharmacist, tabs[2], Some(2)).await;
        assert!(admitted.unwrap().is_some());
        let unlimited = presence
            .connect_within(&pharmacist, ConnectionId::new(), None)
            .await;
        assert!(unlimited.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_chosen_status_shows_while_connected_and_resets_offline() {
        let mut events = MockEventPublisher::new();
        expect_presence(&mut events, PresenceStatus::Online, 2);
        expect_presence(&mut events, PresenceStatus::Away, 1);
        expect_presence(&mut events, PresenceStatus::Offline, 1);
        let presence = service(events);
        let pharmacist = staff(TenantId::new_v4());
        let tab = ConnectionId::new();
        presence.connected(&pharmacist, tab).await.unwrap();
        let away = presence
            .set_status(&pharmacist, PresenceStatus::Away)
            .await
            .unwrap();
        assert_eq!(away.status, PresenceStatus::Away);
        // Setting the same status again changes nothing and announces nothing.
        presence
            .set_status(&pharmacist, PresenceStatus::Away)
            .await
            .unwrap();
        presence.disconnected(&pharmacist, tab).await.unwrap();
        let back = presence
            .connected(&pharmacist, ConnectionId::new())
            .await
            .unwrap();
        assert_eq!(back.status, PresenceStatus::Online);
    }

    #[tokio::test]
    async fn users_whose_connections_expired_are_announced_offline_batch_by_batch() {
        let tenant = TenantId::new_v4();
        let gone = move |n: u32| {
            (
                tenant,
                Presence {
                    user: Sender::Staff(StaffUserId::from_uuid(Uuid::from_u128(u128::from(n)))),
                    status: PresenceStatus::Offline,
                    last_seen_at: Some(at()),
                },
            )
        };
        let mut store = crate::MockPresenceStore::new();
        let mut sequence = mockall::Sequence::new();
        let full: Vec<_> = (0..PresenceService::EXPIRY_BATCH)
            .map(|n| gone(u32::try_from(n).unwrap()))
            .collect();
        store
            .expect_take_expired()
            .withf(|limit| *limit == PresenceService::EXPIRY_BATCH)
            .times(1)
            .in_sequence(&mut sequence)
            .return_once(move |_| Ok(full));
        store
            .expect_take_expired()
            .times(1)
            .in_sequence(&mut sequence)
            .return_once(move |_| Ok(vec![gone(999)]));
        let mut events = MockEventPublisher::new();
        events
            .expect_publish()
            .withf(move |e| {
                matches!(e, ChatEvent::PresenceChanged { tenant: t, presence }
                    if *t == tenant && presence.status == PresenceStatus::Offline)
            })
            .times(PresenceService::EXPIRY_BATCH + 1)
            .return_const(());
        let presence =
            PresenceService::new(Arc::new(store), Arc::new(events), Arc::new(SystemClock));
        assert_eq!(
            presence.announce_expired().await.unwrap(),
            PresenceService::EXPIRY_BATCH + 1
        );
    }

    #[tokio::test]
    async fn stores_without_expiry_have_nothing_to_announce() {
        let presence = service(MockEventPublisher::new());
        assert_eq!(presence.announce_expired().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn offline_cannot_be_chosen() {
        let presence = service(MockEventPublisher::new());
        let err = presence
            .set_status(&staff(TenantId::new_v4()), PresenceStatus::Offline)
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::Invalid(_)));
    }

    #[tokio::test]
    async fn customers_cannot_query_presence() {
        let presence = service(MockEventPublisher::new());
        let customer = Principal::customer(TenantId::new_v4(), CustomerId::new_v4());
        let err = presence.presence_of(&customer, &[]).await.unwrap_err();
        assert!(matches!(err, ChatError::Forbidden));
    }

    #[tokio::test]
    async fn presence_queries_are_bounded_and_scoped_to_the_tenant() {
        let mut events = MockEventPublisher::new();
        events.expect_publish().return_const(());
        let presence = service(events);
        let tenant = TenantId::new_v4();
        let pharmacist = staff(tenant);
        presence
            .connected(&pharmacist, ConnectionId::new())
            .await
            .unwrap();
        let too_many = vec![Sender::System; PresenceService::MAX_QUERY + 1];
        assert!(matches!(
            presence.presence_of(&pharmacist, &too_many).await,
            Err(ChatError::Invalid(_))
        ));
        // The same user id asked from another tenant is unknown there.
        let other = presence
            .presence_of(&staff(TenantId::new_v4()), &[pharmacist.as_sender()])
            .await
            .unwrap();
        assert_eq!(other[0].status, PresenceStatus::Offline);
        assert_eq!(other[0].last_seen_at, None);
    }

    fn conversation(tenant: TenantId) -> chat_domain::Conversation {
        chat_domain::NewCustomerConversation {
            id: ConversationId::new_v7(),
            tenant,
            customer_id: CustomerId::new_v4(),
            clinician: None,
            now: at(),
        }
        .prospective()
    }

    fn chat(
        found: chat_domain::Conversation,
        events: MockEventPublisher,
        read_states: crate::ports::MockReadStateRepository,
    ) -> ChatService {
        let mut conversations = crate::ports::MockConversationRepository::new();
        conversations
            .expect_find()
            .withf(move |tenant, id| *tenant == found.tenant && *id == found.id)
            .returning(move |_, _| Ok(Some(found.clone())));
        conversations.expect_find().returning(|_, _| Ok(None));
        ChatService::new(crate::Ports {
            conversations: Arc::new(conversations),
            messages: Arc::new(crate::ports::MockMessageRepository::new()),
            read_states: Arc::new(read_states),
            events: Arc::new(events),
            policy: Arc::new(crate::AllowAll),
            clock: Arc::new(SystemClock),
            ids: Arc::new(crate::UuidV7Generator),
        })
    }

    #[tokio::test]
    async fn typing_is_published_for_participants_only() {
        let tenant = TenantId::new_v4();
        let found = conversation(tenant);
        let customer = Principal::customer(tenant, found.kind.customer_id().unwrap());
        let mut events = MockEventPublisher::new();
        let expected = found.clone();
        events
            .expect_publish()
            .withf(move |e| {
                *e == ChatEvent::Typing {
                    conversation: expected.clone(),
                    sender: customer.as_sender(),
                    is_typing: true,
                }
            })
            .times(1)
            .return_const(());
        let service = chat(
            found.clone(),
            events,
            crate::ports::MockReadStateRepository::new(),
        );
        service.typing(&customer, found.id, true).await.unwrap();

        let stranger = Principal::customer(tenant, CustomerId::new_v4());
        let err = service.typing(&stranger, found.id, true).await.unwrap_err();
        assert!(matches!(err, ChatError::NotFound));
        let foreign = staff(TenantId::new_v4());
        assert!(matches!(
            service.typing(&foreign, found.id, false).await,
            Err(ChatError::NotFound)
        ));
    }

    #[tokio::test]
    async fn receipts_are_listed_for_readers_only() {
        let tenant = TenantId::new_v4();
        let found = conversation(tenant);
        let state = ReadState {
            conversation_id: found.id,
            reader: Sender::Customer(found.kind.customer_id().unwrap()),
            last_read_seq: chat_domain::Seq::ZERO,
            last_delivered_seq: chat_domain::Seq::ZERO,
            updated_at: at(),
        };
        let mut read_states = crate::ports::MockReadStateRepository::new();
        let id = found.id;
        read_states
            .expect_list_receipts()
            .withf(move |t, i| *t == tenant && *i == id)
            .times(1)
            .returning(move |_, _| Ok(vec![state]));
        let service = chat(found.clone(), MockEventPublisher::new(), read_states);
        assert_eq!(
            service.receipts(&staff(tenant), found.id).await.unwrap(),
            vec![state]
        );
        let stranger = Principal::customer(tenant, CustomerId::new_v4());
        assert!(matches!(
            service.receipts(&stranger, found.id).await,
            Err(ChatError::NotFound)
        ));
    }

    #[tokio::test]
    async fn the_in_process_bus_reaches_every_subscriber_and_reports_lag() {
        let bus = InProcessBus::new(2);
        let mut first = bus.subscribe();
        let mut second = bus.subscribe();
        let event = ChatEvent::PresenceChanged {
            tenant: TenantId::new_v4(),
            presence: Presence {
                user: Sender::System,
                status: PresenceStatus::Online,
                last_seen_at: None,
            },
        };
        for _ in 0..3 {
            bus.publish(event.clone()).await;
        }
        assert_eq!(first.next().await, Some(BusEvent::Lagged(1)));
        assert_eq!(first.next().await, Some(BusEvent::Event(event.clone())));
        assert_eq!(second.next().await, Some(BusEvent::Lagged(1)));
        let _ = SystemClock;
    }
}
