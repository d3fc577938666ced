//! Two server nodes on different ports sharing one PostgreSQL database and
//! one Redis (one key prefix per test): a customer on one node and staff on
//! the other converse over WebSocket, see each other's typing, receipts and
//! presence, and a client that moves to the other node resumes exactly what
//! it missed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adapters_redis::testing::{redis_url, TestPrefix};
use adapters_redis::{RedisPresence, RedisSettings};
use chat_app::{ConnectionId, PresenceStore};
use chat_domain::Sender;
use chat_domain::{CustomerId, StaffUserId};
use serde_json::{json, Value};

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{metric, send_frame, Client, Db, TestApp};

/// Two nodes of one deployment.
struct Cluster {
    a: TestApp,
    b: TestApp,
    /// Deletes the test's Redis keys when dropped, also after a failure.
    keys: TestPrefix,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Both nodes with `extra` variables too.
    async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_on(&redis_url(), extra).await
    }

    /// Both nodes on the Redis at `url`, with `extra` variables too.
    async fn start_on(url: &str, extra: &[(&str, &str)]) -> Self {
        let keys = TestPrefix::new();
        let mut env = vec![
            ("CHAT_REDIS_URL", url),
            ("CHAT_REDIS_PREFIX", keys.as_str()),
        ];
        env.extend_from_slice(extra);
        let a = TestApp::spawn_with(Db::Postgres, &env).await;
        let b = a.spawn_peer(&[]).await;
        assert_ne!(a.base, b.base, "two nodes, two ports");
        Self { a, b, keys }
    }

    /// A customer conversation of the deployment's tenant, with its
    /// customer connected to node A and a staff member to node B.
    async fn conversation_across(&self) -> AcrossNodes {
        let (a, b) = (&self.a, &self.b);
        let staff_token = b.staff(StaffUserId::new_v4());
        let customer = CustomerId::new_v4();
        let id = a.open_conversation(&staff_token, customer).await;
        let customer_token = a.customer_token(&staff_token, customer).await;
        let staff = Peer::connect(b, &staff_token).await;
        b.wait_connections(1).await;
        let patient = Peer::connect(a, &customer_token).await;
        a.wait_connections(1).await;
        AcrossNodes {
            id,
            staff_token,
            staff,
            patient,
        }
    }

    /// Both nodes on a `redis-server` of the test's own (which the test may
    /// pause or reconfigure); `None`, with a message, where one cannot be
    /// started.
    async fn on_private_redis(extra: &[(&str, &str)]) -> Option<(PrivateRedis, Self)> {
        let Some(redis) = PrivateRedis::start().await else {
            eprintln!("SKIPPED: cannot start a redis-server of the test's own");
            return None;
        };
        let cluster = Self::start_on(&redis.url, extra).await;
        Some((redis, cluster))
    }

    /// Stops both nodes (every connection closes and leaves presence), then
    /// removes the test's Redis keys.
    async fn stop(mut self) {
        for app in [&mut self.a, &mut self.b] {
            if let Some(stop) = app.stop.take() {
                let _ = stop.send(());
            }
            if let Some(served) = app.served.take() {
                served
                    .await
                    .expect("node task")
                    .expect("node stopped cleanly");
            }
        }
        self.keys.delete_keys().expect("test keys deleted");
    }
}

/// A conversation across nodes ([`Cluster::conversation_across`]).
struct AcrossNodes {
    id: String,
    staff_token: String,
    /// The staff member's socket, on node B.
    staff: Peer,
    /// The customer's socket, on node A.
    patient: Peer,
}

/// A WebSocket client that keeps every event it receives, so that nothing
/// is skipped while it waits for an answer.
struct Peer {
    client: Client,
    events: Vec<Value>,
}

impl Peer {
    async fn connect(app: &TestApp, token: &str) -> Self {
        Self {
            client: Client::connect(app, token).await,
            events: Vec::new(),
        }
    }

    /// Sends `frame` and returns its answer (`ack` or `error`), keeping the
    /// events before it.
    async fn request(&mut self, frame: Value) -> Value {
        self.client.request_keeping(frame, &mut self.events).await
    }

    /// The first event, received or to come, that `matches`.
    async fn event(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.events.iter().find(|e| matches(e)) {
            return found.clone();
        }
        loop {
            let next = self.client.next().await;
            self.events.push(next.clone());
            if matches(&next) {
                return next;
            }
        }
    }

    /// Receives for `window` more, keeping everything.
    async fn settle(&mut self, window: Duration) {
        let more = self.client.drain(window).await;
        self.events.extend(more);
    }

    /// The `seq`s of the `new_message` events of `conversation`, in arrival
    /// order.
    fn seqs(&self, conversation: &str) -> Vec<u64> {
        self.events
            .iter()
            .filter(|e| {
                e["type"] == "new_message" && e["message"]["conversation_id"] == conversation
            })
            .map(|e| e["message"]["seq"].as_u64().expect("seq"))
            .collect()
    }
}

fn customer_sender(customer: CustomerId) -> Value {
    json!({"type": "customer", "id": customer.to_string()})
}

fn staff_sender(user: StaffUserId) -> Value {
    json!({"type": "staff", "id": user.to_string()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_on_one_node_and_staff_on_the_other_converse_with_typing_receipts_and_presence()
{
    let cluster = Cluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    let pharmacist = StaffUserId::new_v4();
    let staff_token = b.staff(pharmacist);
    let customer = CustomerId::new_v4();
    let id = a.open_conversation(&staff_token, customer).await;
    let customer_token = a.customer_token(&staff_token, customer).await;

    // Staff on B watches; the customer comes online on A.
    let mut staff = Peer::connect(b, &staff_token).await;
    b.wait_connections(1).await;
    let mut patient = Peer::connect(a, &customer_token).await;
    a.wait_connections(1).await;
    let online = staff
        .event(|e| e["type"] == "presence" && e["user"] == customer_sender(customer))
        .await;
    assert_eq!(online["status"], "online");
    assert!(online["last_seen_at"].is_null());
    // Presence is shared: each node answers for the other's users.
    let query = format!("/api/v1/chat/presence?customer_ids={customer}&user_ids={pharmacist}");
    for node in [a, b] {
        let seen = node.get(&query, &staff_token).await;
        assert_eq!(seen.body[0]["status"], "online", "{seen:?}");
        assert_eq!(seen.body[1]["status"], "online", "{seen:?}");
    }

    // Typing crosses nodes both ways.
    let typing = patient
        .request(json!({"type": "typing", "conversation_id": id, "is_typing": true}))
        .await;
    assert_eq!(typing["type"], "ack", "{typing}");
    let seen = staff.event(|e| e["type"] == "typing").await;
    assert_eq!(seen["sender"], customer_sender(customer));
    assert_eq!(seen["conversation_id"], id.as_str());
    assert_eq!(seen["is_typing"], true);
    staff
        .request(json!({"type": "typing", "conversation_id": id, "is_typing": true}))
        .await;
    let seen = patient.event(|e| e["type"] == "typing").await;
    assert_eq!(seen["sender"], staff_sender(pharmacist));

    // The conversation: acked after commit (the other node reads it from
    // the database at once), delivered live across nodes.
    let first = patient
        .request(send_frame(&id, "Is my prescription ready?", "question"))
        .await;
    assert_eq!(first["type"], "ack", "{first}");
    assert_eq!(first["message"]["seq"], 1);
    let stored = b
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages?after=0"),
            &staff_token,
        )
        .await;
    assert_eq!(stored.body["messages"][0]["id"], first["message"]["id"]);
    let reply = staff
        .request(send_frame(&id, "Yes, it is ready", "ready"))
        .await;
    assert_eq!(reply["message"]["seq"], 2);
    // Then both sides at once.
    const EACH: usize = 10;
    let patient_sends = async {
        for i in 0..EACH {
            let frame = send_frame(&id, &format!("patient {i}"), &format!("p-{i}"));
            let ack = patient.request(frame).await;
            assert_eq!(ack["type"], "ack", "{ack}");
        }
    };
    let staff_sends = async {
        for i in 0..EACH {
            let frame = send_frame(&id, &format!("staff {i}"), &format!("s-{i}"));
            let ack = staff.request(frame).await;
            assert_eq!(ack["type"], "ack", "{ack}");
        }
    };
    tokio::join!(patient_sends, staff_sends);
    let last = 2 + 2 * EACH as u64;
    for peer in [&mut patient, &mut staff] {
        peer.event(|e| e["type"] == "new_message" && e["message"]["seq"] == last)
            .await;
        peer.settle(Duration::from_millis(300)).await;
        assert_eq!(
            peer.seqs(&id),
            (1..=last).collect::<Vec<_>>(),
            "every message exactly once, in seq order"
        );
    }
    let from_staff = patient
        .events
        .iter()
        .filter(|e| {
            e["type"] == "new_message" && e["message"]["sender"] == staff_sender(pharmacist)
        })
        .count();
    assert_eq!(from_staff, EACH + 1, "the customer got every staff message");

    // Receipts cross nodes both ways. Each marker is moved past the
    // reader's own messages, which count as read already.
    let see_you = staff
        .request(send_frame(&id, "See you at the counter", "see-you"))
        .await;
    let s = see_you["message"]["seq"].as_u64().expect("seq");
    assert_eq!(s, last + 1);
    let delivered = patient
        .request(json!({"type": "delivered", "conversation_id": id, "up_to_seq": s}))
        .await;
    assert_eq!(delivered["type"], "ack", "{delivered}");
    let seen = staff
        .event(|e| e["type"] == "delivered" && e["reader"] == customer_sender(customer))
        .await;
    assert_eq!(seen["up_to_seq"], s);
    assert_eq!(seen["conversation_id"], id.as_str());
    patient
        .request(json!({"type": "read", "conversation_id": id, "up_to_seq": s}))
        .await;
    let seen = staff
        .event(|e| e["type"] == "read" && e["reader"] == customer_sender(customer))
        .await;
    assert_eq!(seen["up_to_seq"], s);
    let thanks = patient.request(send_frame(&id, "Thanks!", "thanks")).await;
    assert_eq!(thanks["message"]["seq"], s + 1);
    staff
        .request(json!({"type": "read", "conversation_id": id, "up_to_seq": s + 1}))
        .await;
    let seen = patient
        .event(|e| e["type"] == "read" && e["reader"] == staff_sender(pharmacist))
        .await;
    assert_eq!(seen["up_to_seq"], s + 1);
    staff.settle(Duration::from_millis(300)).await;
    let customer_receipts = |kind: &str| {
        staff
            .events
            .iter()
            .filter(|e| e["type"] == kind && e["reader"] == customer_sender(customer))
            .count()
    };
    assert_eq!(
        customer_receipts("delivered"),
        1,
        "each receipt exactly once"
    );
    assert_eq!(customer_receipts("read"), 1, "each receipt exactly once");
    assert_eq!(staff.seqs(&id), (1..=s + 1).collect::<Vec<_>>());

    // The customer leaves node A: staff on B sees them go offline.
    drop(patient);
    let offline = staff
        .event(|e| {
            e["type"] == "presence"
                && e["user"] == customer_sender(customer)
                && e["status"] == "offline"
        })
        .await;
    assert!(offline["last_seen_at"].is_string(), "{offline}");
    let seen = b.get(&query, &staff_token).await;
    let of_customer = seen
        .body
        .as_array()
        .and_then(|all| all.iter().find(|p| p["user"] == customer_sender(customer)))
        .cloned()
        .expect("the customer's presence");
    assert_eq!(of_customer["status"], "offline");
    assert_eq!(of_customer["last_seen_at"], offline["last_seen_at"]);
    let online_events = staff
        .events
        .iter()
        .filter(|e| e["type"] == "presence" && e["user"] == customer_sender(customer))
        .count();
    assert_eq!(
        online_events, 2,
        "one online, one offline: {:?}",
        staff.events
    );

    drop(staff);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_limit_of_a_user_counts_their_connections_on_every_node() {
    let cluster = Cluster::start_with(&[("CHAT_WS_MAX_CONNECTIONS_PER_USER", "2")]).await;
    let (a, b) = (&cluster.a, &cluster.b);
    let token = a.staff(StaffUserId::new_v4());
    let on_a = Client::connect(a, &token).await;
    let on_b = Client::connect(b, &token).await;
    for node in [a, b] {
        let (status, body) = Client::refused(node, &token).await;
        assert_eq!(status, reqwest::StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    drop((on_a, on_b));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_to_the_other_node_resumes_exactly_what_it_missed() {
    let cluster = Cluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    let pharmacist = StaffUserId::new_v4();
    let staff_token = a.staff(pharmacist);
    let customer = CustomerId::new_v4();
    let id = a.open_conversation(&staff_token, customer).await;
    let customer_token = a.customer_token(&staff_token, customer).await;

    let mut staff = Peer::connect(a, &staff_token).await;
    let mut patient = Peer::connect(a, &customer_token).await;
    a.wait_connections(2).await;
    for i in 1..=3 {
        let frame = send_frame(&id, &format!("before {i}"), &format!("b-{i}"));
        staff.request(frame).await;
    }
    patient
        .event(|e| e["type"] == "new_message" && e["message"]["seq"] == 3)
        .await;
    assert_eq!(patient.seqs(&id), vec![1, 2, 3]);

    // The customer drops off node A; the staff goes on writing meanwhile,
    // over REST on node B.
    drop(patient);
    a.wait_connections(1).await;
    for i in 4..=8 {
        let sent = b.send(&staff_token, &id, &format!("while away {i}")).await;
        assert_eq!(sent.body["seq"], i, "{sent:?}");
    }

    // Back on node B, resuming from seq 3.
    let mut patient = Peer::connect(b, &customer_token).await;
    b.wait_connections(1).await;
    let resumed = patient
        .request(json!({"type": "resume", "cursors": {id.clone(): 3}}))
        .await;
    assert_eq!(resumed["type"], "ack", "{resumed}");
    // Events are published after the ack of each send, so some of 4..8 may
    // still be on their way and reach the new socket live: the replay then
    // skips them. Either way each arrives once, in order.
    assert_eq!(patient.seqs(&id), vec![4, 5, 6, 7, 8]);

    // Live delivery goes on after the replay, still across nodes.
    staff
        .request(send_frame(&id, "after the resume", "after"))
        .await;
    patient
        .event(|e| e["type"] == "new_message" && e["message"]["seq"] == 9)
        .await;
    patient.settle(Duration::from_millis(300)).await;
    assert_eq!(patient.seqs(&id), (4..=9).collect::<Vec<_>>());

    drop((staff, patient));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_crashed_node_are_announced_offline_once_their_connections_expire() {
    // Connections are refreshed every 100 ms and count for 400 ms.
    let cluster = Cluster::start_with(&[
        ("CHAT_WS_PING_INTERVAL_MS", "100"),
        ("CHAT_REDIS_PRESENCE_TTL_MS", "400"),
    ])
    .await;
    let b = &cluster.b;
    let pharmacist = StaffUserId::new_v4();
    let staff_token = b.staff(pharmacist);
    let mut staff = Peer::connect(b, &staff_token).await;
    b.wait_connections(1).await;

    // A third node registers a customer's connection, then dies: nothing
    // refreshes it and nothing closes it.
    let customer = CustomerId::new_v4();
    let crashed = RedisPresence::connect(&RedisSettings {
        presence_ttl: Duration::from_millis(400),
        ..RedisSettings::new(redis_url(), cluster.keys.as_str())
    })
    .await
    .expect("Redis is running");
    crashed
        .connected(
            b.tenant,
            Sender::Customer(customer),
            ConnectionId::new(),
            chrono::Utc::now(),
        )
        .await
        .expect("connection recorded");
    drop(crashed);
    let query = format!("/api/v1/chat/presence?customer_ids={customer}");
    assert_eq!(
        b.get(&query, &staff_token).await.body[0]["status"],
        "online"
    );

    let offline = staff
        .event(|e| e["type"] == "presence" && e["user"] == customer_sender(customer))
        .await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen_at"].is_string(), "{offline}");
    let seen = b.get(&query, &staff_token).await;
    assert_eq!(seen.body[0]["status"], "offline");
    assert_eq!(seen.body[0]["last_seen_at"], offline["last_seen_at"]);
    // Both nodes sweep; one announces.
    staff.settle(Duration::from_millis(500)).await;
    let announced = staff
        .events
        .iter()
        .filter(|e| e["type"] == "presence" && e["user"] == customer_sender(customer))
        .count();
    assert_eq!(announced, 1, "{:?}", staff.events);
    // The staff member's own connection, refreshed by its node, still counts.
    let me = b
        .get(
            &format!("/api/v1/chat/presence?user_ids={pharmacist}"),
            &staff_token,
        )
        .await;
    assert_eq!(me.body[0]["status"], "online");

    drop(staff);
    cluster.stop().await;
}

/// A staff member added to a channel on node A while their socket sits on
/// node B hears its messages from then on; removed on A, they hear nothing
/// more on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changed_on_one_node_moves_the_audience_of_the_other() {
    let cluster = Cluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    let (owner, colleague) = (StaffUserId::new_v4(), StaffUserId::new_v4());
    let owner_token = a.staff(owner);
    let created = a
        .post(
            "/api/v1/chat/channels",
            &owner_token,
            json!({"name": "Ward 3", "visibility": "private"}),
        )
        .await;
    let room = created.body["id"].as_str().expect("channel id").to_owned();
    let mut sender = Peer::connect(a, &owner_token).await;
    let mut far = Peer::connect(b, &b.staff(colleague)).await;
    b.wait_connections(1).await;
    sender.request(send_frame(&room, "before", "m1")).await;

    let added = a
        .post(
            &format!("/api/v1/chat/channels/{room}/members"),
            &owner_token,
            json!({"user_ids": [colleague.to_string()]}),
        )
        .await;
    assert_eq!(added.status.as_u16(), 200, "{added:?}");
    for i in 0..3 {
        sender
            .request(send_frame(&room, &format!("after {i}"), &format!("a{i}")))
            .await;
    }
    far.event(|e| e["type"] == "new_message" && e["message"]["seq"] == 5)
        .await;
    assert_eq!(
        far.seqs(&room),
        vec![2, 3, 4, 5],
        "the notice, then each message once"
    );
    far.event(|e| e["type"] == "member_added").await;

    let removed = a
        .delete(
            &format!("/api/v1/chat/channels/{room}/members/{colleague}"),
            &owner_token,
        )
        .await;
    assert_eq!(removed.status.as_u16(), 204, "{removed:?}");
    sender.request(send_frame(&room, "secret", "s1")).await;
    far.event(|e| e["type"] == "member_removed").await;
    far.settle(Duration::from_millis(500)).await;
    assert_eq!(
        far.seqs(&room),
        vec![2, 3, 4, 5],
        "nothing after the removal"
    );
    cluster.stop().await;
}

/// A `redis-server` of the test's own on a free port, which the test may
/// pause and wake (`SIGSTOP`, `SIGCONT`); killed when dropped.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    /// `None` when `redis-server` cannot be started here.
    async fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(server)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Runs a command with `redis-cli` against it.
    fn cli(&self, args: &[&str]) {
        let port = self.url.rsplit(':').next().expect("a port");
        let status = Command::new("redis-cli")
            .args(["-p", port])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("run redis-cli");
        assert!(status.success(), "redis-cli {args:?}");
    }

    fn pause(&self) {
        self.signal("-STOP");
    }

    fn wake(&self) {
        self.signal("-CONT");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // A paused server would not die of SIGKILL's cleanup otherwise.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis paused while a customer on node A writes to staff on node B:
/// every send is acked at once (the database is the truth; events wait in
/// the node's queue, not the client), and once Redis wakes every message
/// reaches the other node live, in order and once, with no `resume`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_never_wait_for_a_paused_redis_and_its_events_arrive_once_it_wakes() {
    let Some((redis, cluster)) = Cluster::on_private_redis(&[]).await else {
        return;
    };
    let a = &cluster.a;
    let AcrossNodes {
        id,
        mut staff,
        mut patient,
        ..
    } = cluster.conversation_across().await;
    let first = patient.request(send_frame(&id, "hello", "k-0")).await;
    assert_eq!(first["type"], "ack", "{first}");
    staff
        .event(|e| e["type"] == "new_message" && e["message"]["seq"] == 1)
        .await;

    redis.pause();
    const SENDS: u64 = 10;
    let started = Instant::now();
    for i in 1..=SENDS {
        let ack = patient
            .request(send_frame(
                &id,
                &format!("while paused {i}"),
                &format!("k-{i}"),
            ))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["message"]["seq"], i + 1);
    }
    let acked_in = started.elapsed();
    // Waiting for each publish (500 ms) would take 5 s or more.
    assert!(
        acked_in < Duration::from_secs(2),
        "{SENDS} acks took {acked_in:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.wake();

    let last = SENDS + 1;
    staff
        .event(|e| e["type"] == "new_message" && e["message"]["seq"] == last)
        .await;
    staff.settle(Duration::from_millis(500)).await;
    assert_eq!(
        staff.seqs(&id),
        (1..=last).collect::<Vec<_>>(),
        "every message live, once, in order"
    );
    let metrics = a.metrics().await;
    assert_eq!(metric(&metrics, "chat_events_pending"), 0, "{metrics}");
    assert_eq!(
        metric(&metrics, "chat_events_dropped_total"),
        0,
        "{metrics}"
    );
    let failures = metric(&metrics, "chat_event_publish_failures_total");
    assert!(
        failures >= 1,
        "the paused Redis refused publishes: {metrics}"
    );
    cluster.stop().await;
}

/// More events than the queue holds while Redis is paused: node A drops
/// the rest, and once Redis wakes it announces the loss, so node B asks its
/// staff client to reconnect (1013). The client does what the README says
/// (reconnect, `resume` from the last `seq` it saw) and ends with every
/// acked message exactly once: delivered live or recovered, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_dropped_while_redis_is_paused_make_clients_resume_and_nothing_is_lost() {
    let Some((redis, cluster)) =
        Cluster::on_private_redis(&[("CHAT_REDIS_EVENT_QUEUE", "4")]).await
    else {
        return;
    };
    let (a, b) = (&cluster.a, &cluster.b);
    let AcrossNodes {
        id,
        staff_token,
        mut staff,
        mut patient,
    } = cluster.conversation_across().await;
    let first = patient.request(send_frame(&id, "hello", "k-0")).await;
    assert_eq!(first["type"], "ack", "{first}");
    let live = staff
        .event(|e| e["type"] == "new_message" && e["message"]["seq"] == 1)
        .await;
    assert_eq!(live["message"]["id"], first["message"]["id"]);

    redis.pause();
    const SENDS: u64 = 20;
    for i in 1..=SENDS {
        let ack = patient
            .request(send_frame(
                &id,
                &format!("while paused {i}"),
                &format!("k-{i}"),
            ))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    redis.wake();

    // What reaches the staff socket live, until it is asked to resume.
    let mut seen = vec![1_u64];
    let close = loop {
        let message = tokio::time::timeout(Duration::from_secs(15), staff.client.socket.next())
            .await
            .expect("the staff socket hears something")
            .expect("a frame or the close")
            .expect("readable");
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("json");
                if frame["type"] == "new_message" {
                    seen.push(frame["message"]["seq"].as_u64().expect("seq"));
                }
            }
            Message::Close(frame) => break frame,
            _ => {}
        }
    };
    assert_eq!(
        close.map(|f| u16::from(f.code)),
        Some(1013),
        "asked to reconnect and resume"
    );
    let live_count = seen.len();
    let last = *seen.iter().max().expect("seq 1 at least");

    let mut again = Client::connect(b, &staff_token).await;
    again
        .send(json!({"type": "resume", "request_id": "r", "cursors": {id.clone(): last}}))
        .await;
    let mut acked = false;
    while !acked || seen.len() < usize::try_from(SENDS + 1).unwrap() {
        let frame = again.next().await;
        match frame["type"].as_str() {
            Some("new_message") => seen.push(frame["message"]["seq"].as_u64().expect("seq")),
            Some("ack") => acked = true,
            _ => {}
        }
    }
    let extra = again.drain(Duration::from_millis(300)).await;
    assert!(
        !extra.iter().any(|f| f["type"] == "new_message"),
        "no duplicate: {extra:?}"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "each once: {seen:?}");
    assert_eq!(sorted, (1..=SENDS + 1).collect::<Vec<_>>(), "none lost");
    eprintln!(
        "acked {}, delivered live {live_count}, recovered by resume {}",
        SENDS + 1,
        seen.len() - live_count
    );
    let metrics = a.metrics().await;
    assert!(
        metric(&metrics, "chat_events_dropped_total") > 0,
        "{metrics}"
    );
    cluster.stop().await;
}

/// Redis closes idle connections after 1 s (its `timeout`), so node A's
/// publishing connection is closed between messages while the
/// subscriptions (which Redis never times out) stay up: every message
/// still reaches the staff socket on node B live, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_publishing_connection_closed_by_redis_loses_no_live_event() {
    let Some((redis, cluster)) = Cluster::on_private_redis(&[]).await else {
        return;
    };
    redis.cli(&["config", "set", "timeout", "1"]);
    let AcrossNodes {
        id,
        mut staff,
        mut patient,
        ..
    } = cluster.conversation_across().await;
    const SENDS: u64 = 3;
    for i in 1..=SENDS {
        // Longer than Redis's timeout: the publishing connection is idle
        // long enough to be closed before each send.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let ack = patient
            .request(send_frame(
                &id,
                &format!("after idling {i}"),
                &format!("k-{i}"),
            ))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let started = Instant::now();
        staff
            .event(|e| e["type"] == "new_message" && e["message"]["seq"] == i)
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "seq {i} arrived live, after {:?}",
            started.elapsed()
        );
    }
    staff.settle(Duration::from_millis(300)).await;
    assert_eq!(staff.seqs(&id), (1..=SENDS).collect::<Vec<_>>());
    cluster.stop().await;
}
