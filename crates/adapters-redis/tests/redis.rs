//! The Redis adapters against a real Redis (`CHAT_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`): the bus between two nodes, its recovery from
//! lost and stalled connections, and the presence contract of
//! `InMemoryPresence` shared by two store instances, plus expiry. Each test
//! uses its own key prefix and removes its keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters_redis::testing::{redis_url, TestPrefix};
use adapters_redis::{RedisEventBus, RedisPresence, RedisSettings};
use chat_app::{BusEvent, ChatEvent, ConnectionId, EventBus, EventStream, PresenceStore};
use chat_domain::{CustomerId, Presence, PresenceStatus, Sender, StaffUserId, TenantId};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

/// Settings over a prefix of the test's own, whose keys are deleted when
/// the returned guard drops.
fn settings() -> (RedisSettings, TestPrefix) {
    let keys = TestPrefix::new();
    (RedisSettings::new(redis_url(), keys.as_str()), keys)
}

async fn raw_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is running")
}

/// Closes the connection of Redis client `id` from the server's side, as
/// its idle `timeout` or an operator's `CLIENT KILL` would.
async fn kill_client(id: i64) {
    let count: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut raw_connection().await)
        .await
        .unwrap();
    assert_eq!(count, 1, "client {id} was found and killed");
}

/// Event `n` of `publisher`, recognisable on arrival.
fn numbered(publisher: u8, n: u32) -> ChatEvent {
    ChatEvent::PresenceChanged {
        tenant: TenantId::from_uuid(Uuid::from_u128(u128::from(publisher))),
        presence: Presence {
            user: Sender::System,
            status: PresenceStatus::Online,
            last_seen_at: DateTime::from_timestamp(i64::from(n), 0),
        },
    }
}

fn number_of(event: &ChatEvent) -> (u8, u32) {
    let ChatEvent::PresenceChanged { tenant, presence } = event else {
        panic!("unexpected event {event:?}");
    };
    let publisher = u8::try_from(tenant.as_uuid().as_u128()).unwrap();
    let n = u32::try_from(presence.last_seen_at.unwrap().timestamp()).unwrap();
    (publisher, n)
}

async fn next(stream: &mut EventStream) -> BusEvent {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event within the deadline")
        .expect("the bus is open")
}

/// Asserts that nothing arrives for a while.
async fn quiet(stream: &mut EventStream, window: Duration) {
    if let Ok(item) = tokio::time::timeout(window, stream.next()).await {
        panic!("expected nothing more, got {item:?}");
    }
}

#[tokio::test]
async fn every_event_reaches_every_node_exactly_once_in_publish_order() {
    let (settings, _keys) = settings();
    let node_a = RedisEventBus::connect(&settings).await.unwrap();
    let node_b = RedisEventBus::connect(&settings).await.unwrap();
    let other_prefix = TestPrefix::new();
    let other_deployment = RedisEventBus::connect(&RedisSettings {
        prefix: other_prefix.as_str().to_owned(),
        ..settings.clone()
    })
    .await
    .unwrap();
    let mut elsewhere = other_deployment.subscribe();
    let mut subscribers = vec![node_a.subscribe(), node_a.subscribe(), node_b.subscribe()];

    const PER_NODE: u32 = 200;
    let publish = |bus: RedisEventBus, publisher: u8| async move {
        for n in 0..PER_NODE {
            bus.publish(&numbered(publisher, n))
                .await
                .expect("published");
        }
    };
    tokio::join!(publish(node_a.clone(), 1), publish(node_b.clone(), 2));

    for subscriber in &mut subscribers {
        let mut last: HashMap<u8, u32> = HashMap::new();
        for _ in 0..PER_NODE * 2 {
            let BusEvent::Event(event) = next(subscriber).await else {
                panic!("no lag expected");
            };
            let (publisher, n) = number_of(&event);
            let expected = last.get(&publisher).map_or(0, |l| l + 1);
            assert_eq!(
                n, expected,
                "publisher {publisher}: in order, no gap, no duplicate"
            );
            last.insert(publisher, n);
        }
        assert_eq!(last, HashMap::from([(1, PER_NODE - 1), (2, PER_NODE - 1)]));
    }
    for subscriber in &mut subscribers {
        quiet(subscriber, Duration::from_millis(200)).await;
    }
    // Another prefix is another deployment.
    quiet(&mut elsewhere, Duration::from_millis(10)).await;
}

#[tokio::test]
async fn undecodable_payloads_are_skipped_and_delivery_goes_on() {
    let (settings, _keys) = settings();
    let bus = RedisEventBus::connect(&settings).await.unwrap();
    let mut events = bus.subscribe();
    let mut raw = raw_connection().await;
    for garbage in [
        &b"not json"[..],
        br#"{"v": 99, "event": {}}"#,
        br#"{"v": 1, "event": {"type": "typing"}}"#,
        b"\xff\x00\xfe",
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(settings.events_channel())
            .arg(garbage)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    bus.publish(&numbered(7, 1)).await.expect("published");
    assert_eq!(next(&mut events).await, BusEvent::Event(numbered(7, 1)));
    quiet(&mut events, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_killed_subscription_reconnects_and_reports_lag_before_newer_events() {
    let (settings, _keys) = settings();
    let bus = RedisEventBus::connect(&settings).await.unwrap();
    let publisher = RedisEventBus::connect(&settings).await.unwrap();
    let mut events = bus.subscribe();
    publisher.publish(&numbered(1, 0)).await.expect("published");
    assert_eq!(next(&mut events).await, BusEvent::Event(numbered(1, 0)));

    let killed = bus.subscriber_client_id();
    kill_client(killed).await;

    assert_eq!(next(&mut events).await, BusEvent::Lagged(0));
    assert_ne!(bus.subscriber_client_id(), killed, "a new connection");
    publisher.publish(&numbered(1, 1)).await.expect("published");
    assert_eq!(next(&mut events).await, BusEvent::Event(numbered(1, 1)));
    // The publishing side of the bus was not affected.
    bus.publish(&numbered(2, 0)).await.expect("published");
    assert_eq!(next(&mut events).await, BusEvent::Event(numbered(2, 0)));
}

/// Only the publishing connection closed by Redis (its idle `timeout`, or
/// `CLIENT KILL TYPE normal`), the subscriptions up: every event published
/// afterwards still arrives, each time.
#[tokio::test]
async fn a_publishing_connection_closed_by_redis_is_replaced_and_nothing_is_dropped() {
    let (settings, _keys) = settings();
    let bus = RedisEventBus::connect(&settings).await.unwrap();
    let publisher = RedisEventBus::connect(&settings).await.unwrap();
    let mut events = bus.subscribe();
    for n in 0..3 {
        let killed = publisher.publisher_client_id().await.unwrap();
        kill_client(killed).await;
        publisher.publish(&numbered(1, n)).await.expect("published");
        assert_eq!(next(&mut events).await, BusEvent::Event(numbered(1, n)));
        assert_ne!(publisher.publisher_client_id().await.unwrap(), killed);
    }
    quiet(&mut events, Duration::from_millis(200)).await;
}

/// A TCP relay to Redis that can be stalled: while stalled it accepts and
/// reads, but forwards nothing (a network partition, a frozen server).
struct StallingProxy {
    url: String,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(relay(client_read, server_write, flag.clone()));
                tokio::spawn(relay(server_read, client_write, flag.clone()));
            }
        });
        Self {
            url: format!("redis://{addr}"),
            stalled,
        }
    }

    fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    // A connection that saw a stall stays dead, like one cut by a
    // partition: what it carried is lost.
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 || stalled.load(Ordering::SeqCst) {
            if n == 0 {
                return;
            }
            // Hold the connection open without forwarding, forever.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_publish_to_a_stalled_redis_gives_up_within_its_timeout() {
    let proxy = StallingProxy::start().await;
    let (base, _keys) = settings();
    let settings = RedisSettings {
        url: proxy.url.clone(),
        publish_timeout: Duration::from_millis(200),
        ..base
    };
    let bus = RedisEventBus::connect(&settings).await.unwrap();
    proxy.stall(true);
    let started = Instant::now();
    let published = bus.publish(&numbered(1, 0)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(1),
        "{took:?}"
    );
    let err = published.expect_err("a stalled Redis does not take the event");
    assert!(format!("{:#}", err.0).contains("timed out"), "{:#}", err.0);
}

#[tokio::test]
async fn a_stalled_subscription_is_detected_and_reported_as_lag_once_redis_answers_again() {
    let proxy = StallingProxy::start().await;
    let (base, _keys) = settings();
    let settings = RedisSettings {
        url: proxy.url.clone(),
        command_timeout: Duration::from_millis(200),
        liveness_interval: Duration::from_millis(200),
        ..base
    };
    let bus = RedisEventBus::connect(&settings).await.unwrap();
    // Published straight to Redis, not through the stalled relay.
    let direct = RedisEventBus::connect(&RedisSettings {
        url: redis_url(),
        ..settings.clone()
    })
    .await
    .unwrap();
    let mut events = bus.subscribe();
    let before = bus.subscriber_client_id();

    proxy.stall(true);
    direct.publish(&numbered(1, 0)).await.expect("published"); // lost to the stalled node
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.stall(false);

    assert_eq!(next(&mut events).await, BusEvent::Lagged(0));
    assert_ne!(bus.subscriber_client_id(), before);
    direct.publish(&numbered(1, 1)).await.expect("published");
    assert_eq!(next(&mut events).await, BusEvent::Event(numbered(1, 1)));
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_with_a_clear_error() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    drop(listener);
    let settings = RedisSettings::new(url, "chat-test-unreachable");
    let started = Instant::now();
    let bus = RedisEventBus::connect(&settings).await;
    assert!(
        matches!(bus, Err(adapters_redis::ConnectError::Unreachable(_))),
        "{bus:?}"
    );
    assert!(RedisPresence::connect(&settings).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        RedisEventBus::connect(&RedisSettings::new("http://nope", "x")).await,
        Err(adapters_redis::ConnectError::InvalidUrl(_))
    ));
}

/// A Redis of the test's own that speaks TLS only, on a free port, with a
/// self-signed certificate; stopped on drop. `None` when `redis-server`
/// or `openssl` is not installed.
struct TlsRedis {
    server: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> Option<Self> {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let certificate = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .args(["-keyout", &path("key.pem"), "-out", &path("cert.pem")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(certificate, Ok(status) if status.success()) {
            return None;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let server = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &path("cert.pem"),
                "--tls-key-file",
                &path("key.pem"),
            ])
            .args([
                "--tls-ca-cert-file",
                &path("cert.pem"),
                "--tls-auth-clients",
                "no",
            ])
            .args(["--save", "", "--appendonly", "no", "--dir", &path("")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self {
            server,
            port,
            _dir: dir,
        })
    }

    /// Its URL; `#insecure` accepts the self-signed certificate.
    fn url(&self, insecure: bool) -> String {
        let fragment = if insecure { "#insecure" } else { "" };
        format!("rediss://127.0.0.1:{}/{fragment}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[tokio::test]
async fn events_cross_a_tls_connection_and_untrusted_certificates_are_refused() {
    let Some(redis) = TlsRedis::start() else {
        eprintln!("SKIPPED: redis-server or openssl is missing, so TLS is not tried here");
        return;
    };
    let settings = RedisSettings::new(redis.url(true), "chat-test-tls");
    // Until the server listens.
    let deadline = Instant::now() + WAIT;
    let node_a = loop {
        match RedisEventBus::connect(&settings).await {
            Ok(bus) => break bus,
            Err(err) if Instant::now() < deadline => {
                tracing::debug!(error = ?err, "TLS Redis not up yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("no TLS connection: {err:?}"),
        }
    };
    let node_b = RedisEventBus::connect(&settings).await.unwrap();
    let mut subscriber = node_b.subscribe();
    // The subscription may still be settling: publish until one arrives.
    let mut n = 0;
    let event = loop {
        node_a.publish(&numbered(1, n)).await.expect("published");
        match tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await {
            Ok(Some(BusEvent::Event(event))) => break event,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => n += 1,
        }
        assert!(Instant::now() < deadline, "no event crossed TLS");
    };
    assert_eq!(number_of(&event).0, 1);
    let presence = RedisPresence::connect(&settings).await;
    assert!(presence.is_ok(), "{presence:?}");

    // Without `#insecure` the self-signed certificate is not trusted.
    let strict = RedisSettings::new(redis.url(false), "chat-test-tls");
    let refused = RedisEventBus::connect(&strict).await;
    assert!(
        matches!(refused, Err(adapters_redis::ConnectError::Unreachable(_))),
        "{refused:?}"
    );
}

// ---------------------------------------------------------------- presence

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid time")
}

fn staff() -> Sender {
    Sender::Staff(StaffUserId::new_v4())
}

/// Two store instances (two nodes) over one prefix.
async fn two_nodes(ttl: Duration) -> (TestPrefix, RedisPresence, RedisPresence) {
    let (base, keys) = settings();
    let settings = RedisSettings {
        presence_ttl: ttl,
        ..base
    };
    let a = RedisPresence::connect(&settings).await.unwrap();
    let b = RedisPresence::connect(&settings).await.unwrap();
    (keys, a, b)
}

async fn presence_of(store: &RedisPresence, tenant: TenantId, user: Sender) -> Presence {
    store.get(tenant, &[user]).await.unwrap().remove(0)
}

/// Presence over a connection Redis closed (idle `timeout`, `CLIENT
/// KILL`): the next command is sent again on a new connection.
#[tokio::test]
async fn presence_survives_its_connection_being_closed_by_redis() {
    let (_keys, a, b) = two_nodes(Duration::from_secs(60)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    for (n, tab) in [ConnectionId::new(), ConnectionId::new()]
        .into_iter()
        .enumerate()
    {
        for store in [&a, &b] {
            kill_client(store.client_id().await.unwrap()).await;
        }
        let change = a
            .connected(tenant, pharmacist, tab, at(i64::try_from(n).unwrap()))
            .await
            .expect("recorded on a new connection");
        assert_eq!(change.presence.status, PresenceStatus::Online);
        assert_eq!(
            presence_of(&b, tenant, pharmacist).await.status,
            PresenceStatus::Online
        );
    }
}

#[tokio::test]
async fn a_user_is_online_while_any_connection_is_open_on_any_node() {
    let (_keys, a, b) = two_nodes(Duration::from_secs(60)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let (tab_1, tab_2) = (ConnectionId::new(), ConnectionId::new());

    let first = a.connected(tenant, pharmacist, tab_1, at(0)).await.unwrap();
    assert!(first.changed);
    assert_eq!(first.presence.status, PresenceStatus::Online);
    assert_eq!(first.presence.last_seen_at, None);
    let second = b.connected(tenant, pharmacist, tab_2, at(1)).await.unwrap();
    assert!(!second.changed);
    let still = a
        .disconnected(tenant, pharmacist, tab_1, at(2))
        .await
        .unwrap();
    assert!(!still.changed, "second tab still open on the other node");
    assert_eq!(still.presence.status, PresenceStatus::Online);
    let gone = b
        .disconnected(tenant, pharmacist, tab_2, at(3))
        .await
        .unwrap();
    assert!(gone.changed);
    assert_eq!(
        gone.presence,
        Presence {
            user: pharmacist,
            status: PresenceStatus::Offline,
            last_seen_at: Some(at(3)),
        }
    );
    assert_eq!(presence_of(&a, tenant, pharmacist).await, gone.presence);
    // Closing an unknown or already closed connection changes nothing.
    let again = a
        .disconnected(tenant, pharmacist, tab_2, at(9))
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.presence.last_seen_at, Some(at(3)));
}

#[tokio::test]
async fn the_connection_limit_counts_every_node_and_holds_under_races() {
    let (_keys, a, b) = two_nodes(Duration::from_secs(60)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store
                    .connect_within(tenant, pharmacist, ConnectionId::new(), Some(5), at(0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        admitted.extend(task.await.unwrap());
    }
    assert_eq!(admitted.len(), 5, "exactly the limit is admitted");
    assert_eq!(admitted.iter().filter(|c| c.changed).count(), 1);
    // Refused connections left nothing behind; one closing makes room.
    let open = a.connect_within(tenant, pharmacist, ConnectionId::new(), None, at(1));
    let tab = ConnectionId::new();
    assert!(open.await.unwrap().is_some(), "no limit: admitted");
    let refused = b.connect_within(tenant, pharmacist, tab, Some(6), at(1));
    assert!(refused.await.unwrap().is_none());
    let other = staff();
    let theirs = b.connect_within(tenant, other, ConnectionId::new(), Some(1), at(1));
    assert!(theirs.await.unwrap().is_some(), "each user has a count");
}

#[tokio::test]
async fn connections_of_a_crashed_node_stop_counting_toward_the_limit() {
    let (_keys, a, b) = two_nodes(Duration::from_millis(300)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let crashed = a.connect_within(tenant, pharmacist, ConnectionId::new(), Some(1), at(0));
    assert!(crashed.await.unwrap().is_some());
    let refused = b.connect_within(tenant, pharmacist, ConnectionId::new(), Some(1), at(0));
    assert!(refused.await.unwrap().is_none());
    // Node a never refreshes: once its connection expires, there is room.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let admitted = b.connect_within(tenant, pharmacist, ConnectionId::new(), Some(1), at(1));
    assert!(admitted.await.unwrap().is_some());
}

#[tokio::test]
async fn a_chosen_status_shows_while_connected_and_resets_offline() {
    let (_keys, a, b) = two_nodes(Duration::from_secs(60)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let tab = ConnectionId::new();
    a.connected(tenant, pharmacist, tab, at(0)).await.unwrap();
    let away = b
        .set_status(tenant, pharmacist, PresenceStatus::Away, at(1))
        .await
        .unwrap();
    assert!(away.changed);
    assert_eq!(away.presence.status, PresenceStatus::Away);
    assert_eq!(
        presence_of(&a, tenant, pharmacist).await.status,
        PresenceStatus::Away
    );
    let same = a
        .set_status(tenant, pharmacist, PresenceStatus::Away, at(2))
        .await
        .unwrap();
    assert!(!same.changed, "the same status again changes nothing");
    let busy = a
        .set_status(tenant, pharmacist, PresenceStatus::Busy, at(2))
        .await
        .unwrap();
    assert!(busy.changed);
    let offline_choice = a
        .set_status(tenant, pharmacist, PresenceStatus::Offline, at(2))
        .await
        .unwrap();
    assert!(!offline_choice.changed, "offline is not a choice");
    assert_eq!(offline_choice.presence.status, PresenceStatus::Busy);

    let gone = b
        .disconnected(tenant, pharmacist, tab, at(3))
        .await
        .unwrap();
    assert!(gone.changed);
    assert_eq!(gone.presence.status, PresenceStatus::Offline);
    let back = b
        .connected(tenant, pharmacist, ConnectionId::new(), at(4))
        .await
        .unwrap();
    assert!(back.changed);
    assert_eq!(
        back.presence.status,
        PresenceStatus::Online,
        "reset offline"
    );
}

#[tokio::test]
async fn a_status_chosen_while_offline_shows_once_connected() {
    let (_keys, a, _b) = two_nodes(Duration::from_secs(60)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let busy = a
        .set_status(tenant, pharmacist, PresenceStatus::Busy, at(0))
        .await
        .unwrap();
    assert!(!busy.changed);
    assert_eq!(busy.presence.status, PresenceStatus::Offline);
    let connected = a
        .connected(tenant, pharmacist, ConnectionId::new(), at(1))
        .await
        .unwrap();
    assert!(connected.changed);
    assert_eq!(connected.presence.status, PresenceStatus::Busy);
}

#[tokio::test]
async fn presence_is_scoped_to_the_tenant_and_answers_in_the_order_asked() {
    let (_keys, a, b) = two_nodes(Duration::from_secs(60)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let customer = Sender::Customer(CustomerId::new_v4());
    let stranger = staff();
    a.connected(tenant, pharmacist, ConnectionId::new(), at(0))
        .await
        .unwrap();
    let tab = ConnectionId::new();
    a.connected(tenant, customer, tab, at(0)).await.unwrap();
    a.disconnected(tenant, customer, tab, at(5)).await.unwrap();

    let asked = b
        .get(tenant, &[customer, stranger, pharmacist])
        .await
        .unwrap();
    assert_eq!(
        asked,
        vec![
            Presence {
                user: customer,
                status: PresenceStatus::Offline,
                last_seen_at: Some(at(5)),
            },
            Presence {
                user: stranger,
                status: PresenceStatus::Offline,
                last_seen_at: None,
            },
            Presence {
                user: pharmacist,
                status: PresenceStatus::Online,
                last_seen_at: None,
            },
        ]
    );
    // The same users asked from another tenant are unknown there.
    let other = b
        .get(TenantId::new_v4(), &[pharmacist, customer])
        .await
        .unwrap();
    assert!(other
        .iter()
        .all(|p| p.status == PresenceStatus::Offline && p.last_seen_at.is_none()));
    assert!(b.get(tenant, &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_connection_not_refreshed_within_the_ttl_counts_as_gone() {
    let ttl = Duration::from_millis(400);
    let (_keys, a, b) = two_nodes(ttl).await;
    let tenant = TenantId::new_v4();
    let (crashed, alive) = (staff(), staff());
    let crashed_tab = ConnectionId::new();
    let alive_tab = ConnectionId::new();
    let started = Utc::now();
    a.connected(tenant, crashed, crashed_tab, at(0))
        .await
        .unwrap();
    a.set_status(tenant, crashed, PresenceStatus::Away, at(0))
        .await
        .unwrap();
    b.connected(tenant, alive, alive_tab, at(0)).await.unwrap();
    // Node A "crashes": nothing refreshes its connection; B keeps
    // refreshing its own.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.refresh(tenant, alive, alive_tab, at(0)).await.unwrap();
    }
    let [gone, still] = <[Presence; 2]>::try_from(b.get(tenant, &[crashed, alive]).await.unwrap())
        .expect("two answers");
    assert_eq!(gone.status, PresenceStatus::Offline);
    let seen = gone.last_seen_at.expect("last seen at its last heartbeat");
    assert!(
        seen >= started - chrono::Duration::seconds(1) && seen <= Utc::now(),
        "{seen} vs {started}"
    );
    assert_eq!(still.status, PresenceStatus::Online);

    // Back after the crash: online again (the chosen status went with the
    // expired session), and announced as a change.
    let back = b
        .connected(tenant, crashed, ConnectionId::new(), at(1))
        .await
        .unwrap();
    assert!(back.changed);
    assert_eq!(back.presence.status, PresenceStatus::Online);
    // The expired connection's late close changes nothing.
    let late = a
        .disconnected(tenant, crashed, crashed_tab, at(2))
        .await
        .unwrap();
    assert!(!late.changed);
    assert_eq!(late.presence.status, PresenceStatus::Online);
}

#[tokio::test]
async fn users_whose_connections_expired_are_taken_once_by_whichever_node_asks_first() {
    let (_keys, a, b) = two_nodes(Duration::from_millis(300)).await;
    let tenant = TenantId::new_v4();
    let (crashed, left, stays) = (staff(), Sender::Customer(CustomerId::new_v4()), staff());
    let started = Utc::now();
    a.connected(tenant, crashed, ConnectionId::new(), at(0))
        .await
        .unwrap();
    let tab = ConnectionId::new();
    a.connected(tenant, left, tab, at(0)).await.unwrap();
    let gone = a.disconnected(tenant, left, tab, at(1)).await.unwrap();
    assert!(gone.changed, "a clean disconnect announces itself");
    let stays_tab = ConnectionId::new();
    b.connected(tenant, stays, stays_tab, at(0)).await.unwrap();
    assert!(
        a.take_expired(10).await.unwrap().is_empty(),
        "nothing expired yet"
    );

    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.refresh(tenant, stays, stays_tab, at(0)).await.unwrap();
    }
    let (from_a, from_b) = tokio::join!(a.take_expired(10), b.take_expired(10));
    let taken: Vec<_> = from_a.unwrap().into_iter().chain(from_b.unwrap()).collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    let (taken_tenant, presence) = taken[0];
    assert_eq!(taken_tenant, tenant);
    assert_eq!(presence.user, crashed);
    assert_eq!(presence.status, PresenceStatus::Offline);
    let seen = presence
        .last_seen_at
        .expect("last seen at its last refresh");
    assert!(seen >= started - chrono::Duration::seconds(1) && seen <= Utc::now());
    assert_eq!(presence_of(&b, tenant, crashed).await, presence);
    assert!(a.take_expired(10).await.unwrap().is_empty(), "taken once");

    // Back again: online, and once more taken when it expires.
    let back = b
        .connected(tenant, crashed, ConnectionId::new(), at(2))
        .await
        .unwrap();
    assert!(back.changed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = b.take_expired(10).await.unwrap();
    let users: Vec<Sender> = again.iter().map(|(_, p)| p.user).collect();
    assert!(users.contains(&crashed), "{again:?}");
}

#[tokio::test]
async fn nodes_racing_to_connect_and_disconnect_one_user_see_exactly_one_change_each_way() {
    let (_keys, a, b) = two_nodes(Duration::from_secs(60)).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let tabs: Vec<ConnectionId> = (0..40).map(|_| ConnectionId::new()).collect();

    let race = |connect: bool| {
        let handles: Vec<_> = tabs
            .iter()
            .enumerate()
            .map(|(i, tab)| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let tab = *tab;
                tokio::spawn(async move {
                    if connect {
                        store.connected(tenant, pharmacist, tab, at(0)).await
                    } else {
                        store.disconnected(tenant, pharmacist, tab, at(1)).await
                    }
                })
            })
            .collect();
        async move {
            let mut changes = 0;
            for handle in handles {
                if handle.await.unwrap().unwrap().changed {
                    changes += 1;
                }
            }
            changes
        }
    };
    assert_eq!(race(true).await, 1, "one connect brought the user online");
    assert_eq!(
        presence_of(&a, tenant, pharmacist).await.status,
        PresenceStatus::Online
    );
    assert_eq!(race(false).await, 1, "one disconnect took the user offline");
    let last = presence_of(&b, tenant, pharmacist).await;
    assert_eq!(last.status, PresenceStatus::Offline);
    assert_eq!(last.last_seen_at, Some(at(1)));
}

#[tokio::test]
async fn presence_keys_live_under_the_prefix_and_expire() {
    let (keys, a, _b) = two_nodes(Duration::from_secs(60)).await;
    let tenant = TenantId::new_v4();
    let pharmacist = staff();
    let tab = ConnectionId::new();
    a.connected(tenant, pharmacist, tab, at(0)).await.unwrap();
    a.set_status(tenant, pharmacist, PresenceStatus::Busy, at(0))
        .await
        .unwrap();

    let mut raw = raw_connection().await;
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", keys.as_str()))
        .query_async(&mut raw)
        .await
        .unwrap();
    let index = format!("{}:presence:expiring", keys.as_str());
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.contains(&index), "{found:?}");
    for key in found.iter().filter(|key| **key != index) {
        assert!(key.contains(&tenant.to_string()), "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} must expire");
    }
    a.disconnected(tenant, pharmacist, tab, at(1))
        .await
        .unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", keys.as_str()))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        left.len(),
        1,
        "only the last-seen state stays (the index is empty): {left:?}"
    );
    keys.delete_keys().unwrap();
    let none: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", keys.as_str()))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}
