use std::sync::Arc;

use chat_domain::{
    ChosenStatus, CustomerId, Presence, PresenceStatus, Principal, Sender, StaffRole, StaffUserId,
    TenantId,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::error::{Field, Reason};
use crate::memory::InMemoryPresence;
use crate::ports::{MockClock, MockEventPublisher, SystemClock};

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
        .set_status(&pharmacist, ChosenStatus::Away)
        .await
        .unwrap();
    assert_eq!(away.status, PresenceStatus::Away);
    // Setting the same status again changes nothing and announces nothing.
    presence
        .set_status(&pharmacist, ChosenStatus::Away)
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
    let presence = PresenceService::new(Arc::new(store), Arc::new(events), Arc::new(SystemClock));
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
        Err(ChatError::Invalid {
            field: Field::Users,
            reason: Reason::TooMany { max: 200 }
        })
    ));
    // The same user id asked from another tenant is unknown there.
    let other = presence
        .presence_of(&staff(TenantId::new_v4()), &[pharmacist.as_sender()])
        .await
        .unwrap();
    assert_eq!(other[0].status, PresenceStatus::Offline);
    assert_eq!(other[0].last_seen_at, None);
}
