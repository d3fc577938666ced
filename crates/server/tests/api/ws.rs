//! The WebSocket transport over real sockets: authentication before the
//! upgrade, acked and idempotent sends, fan-out by permission, resume
//! without gap or duplicate, receipts, typing, presence, backpressure,
//! heartbeats, hostile frames and graceful shutdown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_domain::{CustomerId, StaffUserId, TenantId};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::both_databases;
use crate::helpers::{send_frame, Chat, Client, Db, TestApp, WAIT};

both_databases!(
    a_bad_or_missing_token_is_refused_before_the_upgrade,
    websockets_beyond_the_per_user_limit_are_refused_until_one_closes,
    sends_are_acked_after_commit_and_reach_everyone_allowed_and_nobody_else,
    a_rest_send_fans_out_like_a_websocket_send,
    a_replayed_client_msg_id_acks_the_original_and_emits_nothing_new,
    ten_clients_sending_concurrently_receive_every_message_once_in_seq_order,
    a_client_offline_for_100_messages_resumes_exactly_those_then_live_follows,
    a_resume_beyond_the_replay_cap_says_what_it_did_not_recover,
    read_and_delivered_receipts_are_stored_and_broadcast,
    typing_is_relayed_to_the_others_and_stops_by_itself,
    presence_follows_connections_and_chosen_status,
    every_bad_frame_gets_an_error_and_the_connection_stays_open,
    a_client_that_never_reads_is_disconnected_without_slowing_the_others,
    silent_connections_are_dropped_by_the_heartbeat,
    shutdown_closes_every_socket_with_1001,
    edits_and_deletions_follow_the_rules_and_reach_every_reader,
    websocket_sends_share_the_rate_limit,
    a_pending_send_does_not_hold_up_what_its_sender_receives,
    pipelined_sends_are_acked_in_order_each_before_its_own_echo,
    a_stalled_store_keeps_pings_answered_and_refuses_sends_beyond_the_queue,
    answers_keep_their_exact_bytes_on_the_wire,
);

async fn a_bad_or_missing_token_is_refused_before_the_upgrade(db: Db) {
    let app = TestApp::spawn(db).await;
    for url in [app.ws_url(), format!("{}?token=garbage", app.ws_url())] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
            other => panic!("expected a 401 before the upgrade, got {other:?}"),
        }
    }
    // A bearer header works as well as ?token=.
    let token = app.staff(StaffUserId::new_v4());
    let mut request = app.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("header auth");
    socket
        .send(Message::text(r#"{"type":"ping","request_id":7}"#))
        .await
        .unwrap();
    let pong = loop {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!(pong, json!({"type": "pong", "request_id": 7}));
    assert_eq!(app.realtime.hub.connection_count(), 1);
}

async fn websockets_beyond_the_per_user_limit_are_refused_until_one_closes(db: Db) {
    let app = TestApp::spawn_with(db, &[("CHAT_WS_MAX_CONNECTIONS_PER_USER", "3")]).await;
    let Chat {
        staff,
        customer_token,
        ..
    } = app.chat().await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(Client::connect(&app, &customer_token).await);
    }
    let (status, body) = Client::refused(&app, &customer_token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{body}"
    );
    // Others have their own count, and the open ones work.
    let mut colleague = Client::connect(&app, &staff).await;
    assert_eq!(
        colleague.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    assert_eq!(
        tabs[0].request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    app.wait_connections(4).await;
    // Closing one makes room for the next.
    drop(tabs.pop());
    app.wait_connections(3).await;
    let deadline = Instant::now() + WAIT;
    let admitted = loop {
        let url = format!("{}?token={customer_token}", app.ws_url());
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => break socket,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("no room after a close: {err}"),
        }
    };
    drop(admitted);
}

async fn sends_are_acked_after_commit_and_reach_everyone_allowed_and_nobody_else(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff: pharmacist,
        customer,
        id,
        customer_token,
    } = app.chat().await;
    let other_customer = app.customer_token(&pharmacist, CustomerId::new_v4()).await;
    let foreign_staff = app.token(TenantId::new_v4(), StaffUserId::new_v4(), "admin");
    let clinician = StaffUserId::new_v4();
    let clinician_token = app.staff(clinician);

    let mut customer_tab_1 = Client::connect(&app, &customer_token).await;
    let mut customer_tab_2 = Client::connect(&app, &customer_token).await;
    let mut staff = Client::connect(&app, &pharmacist).await;
    let mut colleague = Client::connect(&app, &clinician_token).await;
    let mut intruder = Client::connect(&app, &other_customer).await;
    let mut foreigner = Client::connect(&app, &foreign_staff).await;
    app.wait_connections(6).await;

    let ack = customer_tab_1
        .request(send_frame(&id, "Is my prescription ready?", "c-1"))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["message"]["seq"], 1);
    assert_eq!(ack["message"]["body"], "Is my prescription ready?");
    // The row is committed by the time the ack arrives.
    let history = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages"),
            &pharmacist,
        )
        .await;
    assert_eq!(history.body["messages"][0]["id"], ack["message"]["id"]);

    for client in [
        &mut customer_tab_1,
        &mut customer_tab_2,
        &mut staff,
        &mut colleague,
    ] {
        let event = client.next_of("new_message").await;
        assert_eq!(event["message"]["id"], ack["message"]["id"]);
        assert_eq!(event["message"]["sender"]["type"], "customer");
    }
    // A private thread of the clinician reaches the clinician, not the
    // pharmacist.
    let thread = app
        .post(
            "/api/v1/chat/conversations",
            &clinician_token,
            json!({"customer_id": customer.to_string(), "staff_user_id": clinician.to_string()}),
        )
        .await;
    let thread_id = thread.body["id"].as_str().unwrap().to_owned();
    let ack = colleague
        .request(send_frame(&thread_id, "Private advice", "p-1"))
        .await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(
        colleague.next_of("new_message").await["message"]["conversation_id"],
        thread_id.as_str()
    );
    assert_eq!(
        customer_tab_2.next_of("new_message").await["message"]["conversation_id"],
        thread_id.as_str()
    );

    let leaked = [
        intruder
            .drain_of(Duration::from_millis(300), &["new_message"])
            .await,
        foreigner
            .drain_of(Duration::from_millis(50), &["new_message"])
            .await,
        staff
            .drain_of(Duration::from_millis(50), &["new_message"])
            .await,
    ]
    .concat();
    assert!(leaked.is_empty(), "events leaked: {leaked:?}");
}

async fn a_rest_send_fans_out_like_a_websocket_send(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        id,
        customer_token,
        ..
    } = app.chat().await;
    let mut listener = Client::connect(&app, &customer_token).await;
    app.wait_connections(1).await;
    let sent = app.send(&staff, &id, "Sent over REST").await;
    let event = listener.next_of("new_message").await;
    assert_eq!(event["message"]["id"], sent.body["id"]);
    assert_eq!(event["message"]["body"], "Sent over REST");
}

async fn a_replayed_client_msg_id_acks_the_original_and_emits_nothing_new(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let mut sender = Client::connect(&app, &staff).await;
    let mut watcher = Client::connect(&app, &app.staff(StaffUserId::new_v4())).await;
    app.wait_connections(2).await;
    let first = sender.request(send_frame(&id, "once", "k-1")).await;
    let again = sender.request(send_frame(&id, "once", "k-1")).await;
    assert_eq!(again["type"], "ack");
    assert_eq!(again["message"], first["message"]);
    let events = watcher
        .drain_of(Duration::from_millis(400), &["new_message"])
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    // Counted once, as a REST send is.
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("chat_messages_sent_total 1\n"), "{text}");
}

async fn ten_clients_sending_concurrently_receive_every_message_once_in_seq_order(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.admin(StaffUserId::new_v4());
    let customer = CustomerId::new_v4();
    let id = app.open_conversation(&admin, customer).await;
    let mut tokens = vec![app.customer_token(&admin, customer).await];
    tokens.extend((0..9).map(|_| app.staff(StaffUserId::new_v4())));
    let mut clients = Vec::new();
    for token in &tokens {
        clients.push(Client::connect(&app, token).await);
    }
    app.wait_connections(10).await;
    const EACH: usize = 10;
    let total = EACH * clients.len();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            let id = id.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    client
                        .send(send_frame(
                            &id,
                            &format!("client {n} message {i}"),
                            &format!("{n}-{i}"),
                        ))
                        .await;
                }
                let mut seqs = Vec::new();
                let mut acks = 0;
                while seqs.len() < total || acks < EACH {
                    let frame = client.next().await;
                    match frame["type"].as_str() {
                        Some("new_message") => seqs.push(frame["message"]["seq"].as_u64().unwrap()),
                        Some("ack") => acks += 1,
                        Some("presence") => {}
                        _ => panic!("unexpected frame {frame}"),
                    }
                }
                let extra: Vec<Value> = client
                    .drain(Duration::from_millis(200))
                    .await
                    .into_iter()
                    .filter(|f| f["type"] != "presence")
                    .collect();
                (seqs, acks, extra)
            })
        })
        .collect();
    for task in tasks {
        let (seqs, acks, extra) = task.await.unwrap();
        assert_eq!(acks, EACH);
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "every message once, in seq order"
        );
        assert!(extra.is_empty(), "nothing after: {extra:?}");
    }
}

async fn a_client_offline_for_100_messages_resumes_exactly_those_then_live_follows(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        id,
        customer_token,
        ..
    } = app.chat().await;
    for i in 0..5 {
        app.send(&staff, &id, &format!("seen {i}")).await;
    }
    // The customer saw up to seq 5, then went offline for 100 messages.
    for i in 0..100 {
        app.send(&staff, &id, &format!("missed {i}")).await;
    }
    let mut client = Client::connect(&app, &customer_token).await;
    app.wait_connections(1).await;
    let id_for_sender = id.clone();
    let staff_for_sender = staff.clone();
    let base = app.base.clone();
    // Live traffic keeps flowing while the client resumes.
    let live = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for i in 0..20 {
            let response = client
                .post(format!(
                    "{base}/api/v1/chat/conversations/{id_for_sender}/messages"
                ))
                .bearer_auth(&staff_for_sender)
                .json(&json!({"body": format!("live {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
    });
    client
        .send(json!({"type": "resume", "request_id": "r", "cursors": {id.clone(): 5}}))
        .await;
    let mut seqs = Vec::new();
    let mut acked = false;
    while seqs.len() < 120 || !acked {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("new_message") => seqs.push(frame["message"]["seq"].as_u64().unwrap()),
            Some("ack") => {
                assert_eq!(frame["request_id"], "r");
                assert_eq!(frame["recovered"], true, "{frame}");
                assert_eq!(frame["conversations"][&id]["recovered"], true);
                acked = true;
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    live.await.unwrap();
    let extra = client.drain(Duration::from_millis(300)).await;
    assert!(
        extra.is_empty(),
        "no duplicate after the boundary: {extra:?}"
    );
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted,
        (6..=125).collect::<Vec<_>>(),
        "exactly the missed and the live messages"
    );
    assert_eq!(seqs.len(), 120, "no duplicate");
    // The 100 missed come first and in order.
    assert_eq!(seqs[..100], (6..=105).collect::<Vec<_>>()[..]);

    // Resuming a conversation one may not read is refused, and the
    // connection stays usable.
    let foreign = client
        .request(json!({"type": "resume", "cursors": {uuid::Uuid::now_v7().to_string(): 0}}))
        .await;
    assert_eq!(foreign["type"], "error");
    assert_eq!(foreign["code"], "not_found");
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

async fn a_resume_beyond_the_replay_cap_says_what_it_did_not_recover(db: Db) {
    let app = TestApp::spawn_with(db, &[("CHAT_WS_RESUME_MAX_MESSAGES", "10")]).await;
    let Chat { staff, id, .. } = app.chat().await;
    let other = app.open_conversation(&staff, CustomerId::new_v4()).await;
    for i in 0..25 {
        app.send(&staff, &id, &format!("missed {i}")).await;
    }
    for i in 0..3 {
        app.send(&staff, &other, &format!("few {i}")).await;
    }
    // The live events of those sends must have passed the dispatcher before
    // the client connects, or some would reach it live and not be replayed:
    // a colleague's socket sees a later message, so everything before it
    // has been dispatched.
    let mut colleague = Client::connect(&app, &app.staff(StaffUserId::new_v4())).await;
    app.wait_connections(1).await;
    let barrier = app.open_conversation(&staff, CustomerId::new_v4()).await;
    app.send(&staff, &barrier, "barrier").await;
    while colleague.next_of("new_message").await["message"]["conversation_id"] != barrier.as_str() {
    }
    let mut client = Client::connect(&app, &staff).await;
    app.wait_connections(2).await;
    client
        .send(json!({"type": "resume", "request_id": "r", "cursors": {id.clone(): 2, other.clone(): 0}}))
        .await;
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    let ack = loop {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("new_message") => seqs
                .entry(
                    frame["message"]["conversation_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
                .or_default()
                .push(frame["message"]["seq"].as_u64().unwrap()),
            Some("ack") => break frame,
            _ => panic!("unexpected {frame}"),
        }
    };
    assert_eq!(ack["replayed"], 13, "{ack}");
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(
        ack["conversations"][&id],
        json!({"replayed": 10, "recovered": false, "up_to_seq": 12})
    );
    assert_eq!(
        ack["conversations"][&other],
        json!({"replayed": 3, "recovered": true, "up_to_seq": 3})
    );
    assert_eq!(seqs[&id], (3..=12).collect::<Vec<_>>());
    assert_eq!(seqs[&other], vec![1, 2, 3]);
    // The rest pages over REST from where the replay stopped.
    let rest = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages?after=12&limit=100"),
            &staff,
        )
        .await;
    assert_eq!(rest.body["messages"].as_array().unwrap().len(), 13);
}

async fn read_and_delivered_receipts_are_stored_and_broadcast(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        customer,
        id,
        customer_token,
    } = app.chat().await;
    let mut pharmacist = Client::connect(&app, &staff).await;
    let mut patient = Client::connect(&app, &customer_token).await;
    app.wait_connections(2).await;
    for i in 0..3 {
        pharmacist
            .request(send_frame(&id, &format!("m{i}"), &format!("m{i}")))
            .await;
    }
    let delivered = patient
        .request(json!({"type": "delivered", "conversation_id": id, "up_to_seq": 3}))
        .await;
    assert_eq!(delivered["type"], "ack", "{delivered}");
    let event = pharmacist.next_of("delivered").await;
    assert_eq!(event["conversation_id"], id.as_str());
    assert_eq!(
        event["reader"],
        json!({"type": "customer", "id": customer.to_string()})
    );
    assert_eq!(event["up_to_seq"], 3);
    assert!(event["at"].is_string());

    let read = patient
        .request(json!({"type": "read", "conversation_id": id, "up_to_seq": 2}))
        .await;
    assert_eq!(
        read["receipt"],
        json!({"last_read_seq": 2, "last_delivered_seq": 3})
    );
    let event = pharmacist.next_of("read").await;
    assert_eq!(event["up_to_seq"], 2);
    // Backwards is a no-op: nothing broadcast, the marker stays.
    let back = patient
        .request(json!({"type": "read", "conversation_id": id, "up_to_seq": 1}))
        .await;
    assert_eq!(back["receipt"]["last_read_seq"], 2);
    let quiet = pharmacist
        .drain_of(Duration::from_millis(300), &["read"])
        .await;
    assert!(quiet.is_empty(), "{quiet:?}");

    // The sender derives each message's status from the stored receipts.
    let receipts = app
        .get(&format!("/api/v1/chat/conversations/{id}/receipts"), &staff)
        .await;
    let customer_receipt = receipts.body["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reader"]["type"] == "customer")
        .cloned()
        .unwrap();
    assert_eq!(customer_receipt["last_read_seq"], 2);
    assert_eq!(customer_receipt["last_delivered_seq"], 3);
    // Foreign conversations stay hidden here too.
    let intruder = app.customer_token(&staff, CustomerId::new_v4()).await;
    app.get(
        &format!("/api/v1/chat/conversations/{id}/receipts"),
        &intruder,
    )
    .await
    .expect_error(404, "not_found");
}

async fn typing_is_relayed_to_the_others_and_stops_by_itself(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("CHAT_WS_TYPING_EXPIRY_MS", "400"),
            ("CHAT_WS_TYPING_THROTTLE_MS", "1000"),
        ],
    )
    .await;
    let Chat {
        staff,
        id,
        customer_token,
        ..
    } = app.chat().await;
    let mut typist = Client::connect(&app, &customer_token).await;
    let mut pharmacist = Client::connect(&app, &staff).await;
    app.wait_connections(2).await;

    for _ in 0..5 {
        let ack = typist
            .request(json!({"type": "typing", "conversation_id": id, "is_typing": true}))
            .await;
        assert_eq!(ack["type"], "ack");
    }
    let started = pharmacist.next_of("typing").await;
    assert_eq!(started["is_typing"], true);
    assert_eq!(started["sender"]["type"], "customer");
    // Throttled: five starts, one relay; then it expires by itself.
    let stopped = pharmacist.next_of("typing").await;
    assert_eq!(stopped["is_typing"], false, "{stopped}");
    let own = typist
        .drain_of(Duration::from_millis(100), &["typing"])
        .await;
    assert!(
        own.is_empty(),
        "the typist does not see their own indicator"
    );

    // Without a request_id a keystroke gets no answer.
    typist
        .send(json!({"type": "typing", "conversation_id": id, "is_typing": false}))
        .await;
    let answers = typist.drain(Duration::from_millis(200)).await;
    assert!(answers.is_empty(), "{answers:?}");

    // Typing into someone else's conversation is refused.
    let foreign = typist
        .request(
            json!({"type": "typing", "conversation_id": uuid::Uuid::now_v7(), "is_typing": true}),
        )
        .await;
    assert_eq!(foreign["code"], "not_found");
}

async fn presence_follows_connections_and_chosen_status(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let customer = CustomerId::new_v4();
    let mut watcher = Client::connect(&app, &staff).await;
    app.wait_connections(1).await;
    let customer_token = app.customer_token(&staff, customer).await;
    let mut tab_1 = Client::connect(&app, &customer_token).await;
    let online = watcher.next_of("presence").await;
    assert_eq!(
        online["user"],
        json!({"type": "customer", "id": customer.to_string()})
    );
    assert_eq!(online["status"], "online");
    let mut tab_2 = Client::connect(&app, &customer_token).await;
    app.wait_connections(3).await;

    let away = tab_2
        .request(json!({"type": "set_status", "status": "away"}))
        .await;
    assert_eq!(away["type"], "ack");
    assert_eq!(watcher.next_of("presence").await["status"], "away");
    let bad = tab_2
        .request(json!({"type": "set_status", "status": "offline"}))
        .await;
    assert_eq!(bad["code"], "invalid_request");

    let query = format!("/api/v1/chat/presence?customer_ids={customer}");
    assert_eq!(app.get(&query, &staff).await.body[0]["status"], "away");
    drop(tab_1.socket.close(None).await);
    app.wait_connections(2).await;
    assert_eq!(
        app.get(&query, &staff).await.body[0]["status"],
        "away",
        "still one tab open"
    );
    drop(tab_2.socket.close(None).await);
    let offline = watcher.next_of("presence").await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen_at"].is_string());
    let now = app.get(&query, &staff).await;
    assert_eq!(now.body[0]["status"], "offline");
    assert!(now.body[0]["last_seen_at"].is_string());
    // Customers may not ask.
    app.get(&query, &customer_token)
        .await
        .expect_error(401, "unauthenticated");
    app.get("/api/v1/chat/presence?user_ids=nope", &staff)
        .await
        .expect_error(400, "invalid_request");
}

async fn every_bad_frame_gets_an_error_and_the_connection_stays_open(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        id,
        customer_token,
        ..
    } = app.chat().await;
    let other = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let mut client = Client::connect(&app, &customer_token).await;
    let too_long = "a".repeat(4001);
    let frames: Vec<(String, &str)> = vec![
        ("{not json".into(), "invalid_request"),
        ("[]".into(), "invalid_request"),
        (json!({"no": "type"}).to_string(), "invalid_request"),
        (json!({"type": "launch_missiles"}).to_string(), "invalid_request"),
        (json!({"type": "send_message", "body": "x", "client_msg_id": "a"}).to_string(), "invalid_request"),
        (json!({"type": "send_message", "conversation_id": 5, "body": "x", "client_msg_id": "a"}).to_string(), "invalid_request"),
        (json!({"type": "send_message", "conversation_id": id, "body": too_long, "client_msg_id": "a"}).to_string(), "invalid_request"),
        (json!({"type": "send_message", "conversation_id": id, "body": "  ", "client_msg_id": "a"}).to_string(), "invalid_request"),
        (json!({"type": "send_message", "conversation_id": id, "body": "x", "client_msg_id": ""}).to_string(), "invalid_request"),
        (json!({"type": "send_message", "conversation_id": other, "body": "x", "client_msg_id": "a"}).to_string(), "not_found"),
        (json!({"type": "read", "conversation_id": id, "up_to_seq": "3"}).to_string(), "invalid_request"),
        (json!({"type": "read", "conversation_id": other, "up_to_seq": 3}).to_string(), "not_found"),
        (json!({"type": "typing", "conversation_id": id}).to_string(), "invalid_request"),
        (json!({"type": "set_status", "status": 3}).to_string(), "invalid_request"),
        (json!({"type": "resume", "cursors": [1, 2]}).to_string(), "invalid_request"),
    ];
    for (text, code) in frames {
        client
            .socket
            .send(Message::text(text.clone()))
            .await
            .unwrap();
        let error = client.next().await;
        assert_eq!(error["type"], "error", "{text}: {error}");
        assert_eq!(error["code"], code, "{text}: {error}");
        assert!(error["message"].is_string());
    }
    client
        .socket
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(client.next().await["code"], "invalid_request");
    // Still open and working.
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    let sent = client.request(send_frame(&id, "still here", "ok-1")).await;
    assert_eq!(sent["message"]["seq"], 1, "bad frames stored nothing");

    // An oversized frame closes the connection with 1009.
    let huge = "x".repeat(70 * 1024);
    client
        .socket
        .send(Message::text(
            json!({"type": "ping", "pad": huge}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(client.closed().await, Some(CloseCode::Size));

    // Endless garbage closes with 1008.
    let mut abuser = Client::connect(&app, &staff).await;
    for _ in 0..40 {
        if abuser.socket.send(Message::text("garbage")).await.is_err() {
            break;
        }
    }
    assert_eq!(abuser.closed().await, Some(CloseCode::Policy));
}

async fn a_client_that_never_reads_is_disconnected_without_slowing_the_others(db: Db) {
    let app = TestApp::spawn_with(db, &[("CHAT_WS_QUEUE_CAPACITY", "8")]).await;
    let Chat {
        staff,
        id,
        customer_token,
        ..
    } = app.chat().await;
    // The stuck client: connects with a tiny receive buffer and never reads.
    let stuck_token = app.staff(StaffUserId::new_v4());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let request = format!("{}?token={stuck_token}", app.ws_url())
        .into_client_request()
        .unwrap();
    let (stuck, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let mut healthy = Client::connect(&app, &customer_token).await;
    app.wait_connections(2).await;

    let body = "x".repeat(3900);
    let mut worst = Duration::ZERO;
    let mut sent = 0;
    let started = Instant::now();
    while app.realtime.hub.connection_count() == 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stuck client was never disconnected"
        );
        let at = Instant::now();
        let reply = app.send(&staff, &id, &body).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        sent += 1;
        let event = healthy.next_of("new_message").await;
        assert_eq!(event["message"]["seq"], sent);
        worst = worst.max(at.elapsed());
    }
    println!("stuck client dropped after {sent} messages; worst send-to-delivery for the healthy client {worst:?}");
    // The healthy one keeps receiving.
    let reply = app.send(&staff, &id, "after").await;
    assert_eq!(
        healthy.next_of("new_message").await["message"]["id"],
        reply.body["id"]
    );
    assert_eq!(app.realtime.hub.connection_count(), 1);
    assert!(
        worst < Duration::from_secs(2),
        "healthy delivery delayed by {worst:?}"
    );
    // It reads only now, after the server gave up on it: what was already
    // queued, then why it was closed.
    let mut stuck = stuck;
    let code = tokio::time::timeout(WAIT, async {
        loop {
            match stuck.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the close frame arrives");
    assert_eq!(code, Some(CloseCode::Again), "1013: reconnect and resume");
}

async fn silent_connections_are_dropped_by_the_heartbeat(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("CHAT_WS_PING_INTERVAL_MS", "100"),
            ("CHAT_WS_IDLE_TIMEOUT_MS", "400"),
        ],
    )
    .await;
    let staff = app.staff(StaffUserId::new_v4());
    // A client that never reads never answers pings.
    let silent = Client::connect(&app, &staff).await;
    let mut lively = Client::connect(&app, &staff).await;
    app.wait_connections(2).await;
    let started = Instant::now();
    // The lively one reads (and so answers pings) for a while.
    let frames = lively.drain(Duration::from_millis(1000)).await;
    assert!(frames.is_empty());
    app.wait_connections(1).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}

async fn shutdown_closes_every_socket_with_1001(db: Db) {
    let mut app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(&app, &staff).await);
    }
    app.wait_connections(3).await;
    let ack = clients[0]
        .request(send_frame(&id, "before shutdown", "s-1"))
        .await;
    assert_eq!(ack["type"], "ack");
    app.stop.take().unwrap().send(()).unwrap();
    for client in &mut clients {
        assert_eq!(client.closed().await, Some(CloseCode::Away));
    }
    let served = tokio::time::timeout(WAIT, app.served.take().unwrap())
        .await
        .expect("server stops");
    served.unwrap().unwrap();
}

async fn edits_and_deletions_follow_the_rules_and_reach_every_reader(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        id,
        customer_token,
        ..
    } = app.chat().await;
    let admin = app.admin(StaffUserId::new_v4());
    let mut reader = Client::connect(&app, &customer_token).await;
    app.wait_connections(1).await;
    let sent = app.send(&staff, &id, "Pick-up at 5").await;
    let question = app.send(&customer_token, &id, "Can I come at 6?").await;
    let path = |message: &Value| {
        format!(
            "/api/v1/chat/conversations/{id}/messages/{}",
            message["id"].as_str().unwrap()
        )
    };

    // Only the sender edits.
    app.patch(
        &path(&sent.body),
        &customer_token,
        json!({"body": "hacked"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.patch(&path(&sent.body), &admin, json!({"body": "moderated"}))
        .await
        .expect_error(403, "forbidden");
    app.patch(&path(&sent.body), &staff, json!({"body": "   "}))
        .await
        .expect_error(400, "invalid_request");
    let edited = app
        .patch(&path(&sent.body), &staff, json!({"body": "Pick-up at 6"}))
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{edited:?}");
    assert_eq!(edited.body["body"], "Pick-up at 6");
    assert!(edited.body["edited_at"].is_string());
    assert_eq!(edited.body["seq"], sent.body["seq"]);
    let event = reader.next_of("message_updated").await;
    assert_eq!(event["message"]["body"], "Pick-up at 6");

    // The sender or an admin deletes; the text is gone, the seq stays.
    let deleted = app.delete(&path(&question.body), &admin).await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert_eq!(deleted.body["body"], Value::Null);
    assert!(deleted.body["deleted_at"].is_string());
    let event = reader.next_of("message_deleted").await;
    assert_eq!(event["message"]["id"], question.body["id"]);
    assert_eq!(event["message"]["body"], Value::Null);
    app.patch(
        &path(&question.body),
        &customer_token,
        json!({"body": "again"}),
    )
    .await
    .expect_error(409, "conflict");
    let again = app.delete(&path(&question.body), &customer_token).await;
    assert_eq!(again.status, StatusCode::OK, "deleting twice is harmless");
    let history = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages?after=0"),
            &staff,
        )
        .await;
    assert_eq!(history.body["messages"][1]["body"], Value::Null);
    assert_eq!(history.body["messages"][1]["seq"], 2);

    // Strangers learn nothing.
    let foreign = app.token(TenantId::new_v4(), StaffUserId::new_v4(), "admin");
    let refused = app.delete(&path(&sent.body), &foreign).await;
    refused.expect_error(404, "not_found");
    assert_eq!(
        refused.body["error"]["message"], "conversation not found",
        "{refused:?}"
    );
    let unknown = format!(
        "/api/v1/chat/conversations/{id}/messages/{}",
        uuid::Uuid::now_v7()
    );
    let missing = app.patch(&unknown, &staff, json!({"body": "x"})).await;
    missing.expect_error(404, "not_found");
    assert_eq!(
        missing.body["error"]["message"], "message not found",
        "the conversation is there, the message is not: {missing:?}"
    );
    app.patch(
        &format!("/api/v1/chat/conversations/{id}/messages/nope"),
        &staff,
        json!({"body": "x"}),
    )
    .await
    .expect_error(404, "not_found");
    let quiet = reader
        .drain_of(
            Duration::from_millis(200),
            &["message_deleted", "message_updated"],
        )
        .await;
    assert!(
        quiet.is_empty(),
        "refused or repeated changes announce nothing: {quiet:?}"
    );
}

async fn websocket_sends_share_the_rate_limit(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("CHAT_SEND_RATE_PER_MINUTE", "60"),
            ("CHAT_SEND_BURST", "2"),
        ],
    )
    .await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let mut client = Client::connect(&app, &staff).await;
    assert_eq!(
        app.send(&staff, &id, "over REST").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        client
            .request(send_frame(&id, "over the socket", "w-1"))
            .await["type"],
        "ack"
    );
    let limited = client.request(send_frame(&id, "too many", "w-2")).await;
    assert_eq!(limited["type"], "error");
    assert_eq!(limited["code"], "rate_limited");
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong",
        "still open"
    );
}

/// Holds the write lock of conversation `id` from outside the server (a row
/// lock on PostgreSQL, the database's write lock on SQLite) until released:
/// sends to it wait meanwhile.
enum WriteLock {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl WriteLock {
    async fn take(app: &TestApp, id: &str) -> Self {
        use sqlx::Connection as _;
        let id = uuid::Uuid::parse_str(id).expect("uuid");
        match &app.settings.database {
            chat_server::config::DatabaseSettings::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url.expose())
                    .await
                    .expect("connects");
                exec(&mut conn, "begin").await;
                sqlx::query("select 1 from conversations where id = $1 for update")
                    .bind(id)
                    .execute(&mut conn)
                    .await
                    .expect("row locked");
                Self::Postgres(conn)
            }
            chat_server::config::DatabaseSettings::Sqlite { path } => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .expect("connects");
                exec(&mut conn, "begin immediate").await;
                Self::Sqlite(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Postgres(mut conn) => exec(&mut conn, "rollback").await,
            Self::Sqlite(mut conn) => exec(&mut conn, "rollback").await,
        }
    }
}

/// Runs one SQL statement on `conn`.
async fn exec<'e>(conn: impl sqlx::Executor<'e>, sql: &'static str) {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A customer and a staff member connected to the customer's inbox
/// conversation: its id, the customer's client, the staff member's.
async fn patient_and_staff(app: &TestApp) -> (String, Client, Client) {
    let Chat {
        staff,
        id,
        customer_token,
        ..
    } = app.chat().await;
    let patient = Client::connect(app, &customer_token).await;
    let staff = Client::connect(app, &staff).await;
    app.wait_connections(2).await;
    (id, patient, staff)
}

async fn a_pending_send_does_not_hold_up_what_its_sender_receives(db: Db) {
    let app = TestApp::spawn(db).await;
    let (id, mut patient, mut staff) = patient_and_staff(&app).await;

    let lock = WriteLock::take(&app, &id).await;
    let mut frame = send_frame(&id, "Can I take it with food?", "q-1");
    frame["request_id"] = json!("r-1");
    patient.send(frame).await;
    // While the patient's send waits for the database, what others do still
    // reaches the patient.
    staff
        .send(json!({"type": "typing", "conversation_id": id, "is_typing": true}))
        .await;
    let typing = tokio::time::timeout(Duration::from_secs(2), patient.next())
        .await
        .expect("a frame while the send is pending");
    assert_eq!(typing["type"], "typing", "{typing}");
    assert_eq!(typing["sender"]["type"], "staff");
    lock.release().await;

    // Then the ack, and only after it the echo of the message.
    let ack = patient.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["request_id"], "r-1");
    let echo = patient.next_of("new_message").await;
    assert_eq!(echo["message"]["id"], ack["message"]["id"]);
    let delivered = staff.next_of("new_message").await;
    assert_eq!(delivered["message"]["id"], ack["message"]["id"]);
}

/// While the store stalls, a client that keeps sending still has its pings
/// answered: the connection goes on reading. Sends beyond the queue (64
/// waiting, one being stored) are refused with `rate_limited` and not
/// counted as abuse; once the store is back every queued send is acked in
/// order, the refused ones go through when sent again, and nothing is
/// stored twice.
async fn a_stalled_store_keeps_pings_answered_and_refuses_sends_beyond_the_queue(db: Db) {
    let app = TestApp::spawn(db).await;
    let (id, mut patient, _staff) = patient_and_staff(&app).await;
    let lock = WriteLock::take(&app, &id).await;
    const SENDS: usize = 100;
    for i in 0..SENDS {
        let mut frame = send_frame(&id, &format!("stalled {i}"), &format!("k-{i}"));
        frame["request_id"] = json!(format!("r-{i}"));
        patient.send(frame).await;
    }
    patient
        .socket
        .send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .expect("ping sent");
    // 64 wait and one is being stored: the rest is refused. The pong may
    // overtake the refusals (it is written by the socket itself).
    let beyond = SENDS - 65;
    let mut refused = Vec::new();
    let mut ponged = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !ponged || refused.len() < beyond {
        let message = tokio::time::timeout_at(deadline, patient.socket.next())
            .await
            .expect("a pong and the refusals while the store stalls")
            .expect("socket open")
            .expect("frame");
        match message {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"still there?");
                ponged = true;
            }
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("json");
                assert_eq!(frame["type"], "error", "{frame}");
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                refused.push(frame["request_id"].as_str().expect("request id").to_owned());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<String> = (SENDS - beyond..SENDS).map(|i| format!("r-{i}")).collect();
    assert_eq!(refused, expected, "the last sends are refused");
    lock.release().await;

    let mut acked = Vec::new();
    while acked.len() < SENDS - refused.len() {
        let frame = patient.next().await;
        if frame["type"] == "ack" {
            acked.push(frame["request_id"].as_str().expect("request id").to_owned());
        }
    }
    let in_order: Vec<String> = (0..acked.len()).map(|i| format!("r-{i}")).collect();
    assert_eq!(acked, in_order);
    for i in SENDS - refused.len()..SENDS {
        let ack = patient
            .request(send_frame(&id, &format!("stalled {i}"), &format!("k-{i}")))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["message"]["seq"], i + 1, "{ack}");
    }
    let page = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages?after=0&limit=100"),
            &app.staff(StaffUserId::new_v4()),
        )
        .await;
    let bodies: Vec<&str> = page.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default())
        .collect();
    let sent: Vec<String> = (0..SENDS).map(|i| format!("stalled {i}")).collect();
    assert_eq!(bodies, sent, "each stored once, in order");
}

async fn pipelined_sends_are_acked_in_order_each_before_its_own_echo(db: Db) {
    let app = TestApp::spawn(db).await;
    let (id, mut patient, mut staff) = patient_and_staff(&app).await;

    // Both sides send at once, the patient without waiting for any ack.
    const EACH: usize = 40;
    for i in 0..EACH {
        let mut frame = send_frame(&id, &format!("patient {i}"), &format!("p-{i}"));
        frame["request_id"] = json!(format!("r-{i}"));
        patient.send(frame).await;
    }
    let staff_sends = async {
        for i in 0..EACH {
            let ack = staff
                .request(send_frame(&id, &format!("staff {i}"), &format!("s-{i}")))
                .await;
            assert_eq!(ack["type"], "ack", "{ack}");
        }
    };
    let patient_frames = async {
        let mut frames = Vec::new();
        let mut acks = 0;
        let mut messages = 0;
        while acks < EACH || messages < 2 * EACH {
            let frame = patient.next().await;
            match frame["type"].as_str() {
                Some("ack") => acks += 1,
                Some("new_message") => messages += 1,
                _ => continue,
            }
            frames.push(frame);
        }
        frames
    };
    let ((), frames) = tokio::join!(staff_sends, patient_frames);

    // Acks in request order, each before the echo of its message; every
    // message once, in seq order.
    let acked: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "ack")
        .map(|f| f["request_id"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<String> = (0..EACH).map(|i| format!("r-{i}")).collect();
    assert_eq!(acked, expected);
    let seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "new_message")
        .map(|f| f["message"]["seq"].as_u64().unwrap_or_default())
        .collect();
    assert_eq!(seqs, (1..=2 * EACH as u64).collect::<Vec<_>>());
    for (at, frame) in frames.iter().enumerate() {
        if frame["type"] != "ack" {
            continue;
        }
        let echo_at = frames
            .iter()
            .position(|f| {
                f["type"] == "new_message" && f["message"]["id"] == frame["message"]["id"]
            })
            .expect("every acked message is delivered");
        assert!(at < echo_at, "ack after its echo: {frame}");
    }
}

/// The next text frame exactly as it came off the socket.
async fn raw_text(client: &mut Client) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, client.socket.next())
            .await
            .expect("a frame within the deadline")
            .expect("socket still open")
            .expect("frame readable");
        match message {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn answers_keep_their_exact_bytes_on_the_wire(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat { staff, id, .. } = app.chat().await;
    let mut client = Client::connect(&app, &staff).await;
    let cases = [
        (json!({"type": "ping"}), r#"{"type":"pong"}"#.to_owned()),
        (
            json!({"type": "ping", "request_id": 7}),
            r#"{"request_id":7,"type":"pong"}"#.to_owned(),
        ),
        (
            json!({"type": "typing", "conversation_id": id, "is_typing": false, "request_id": "t-1"}),
            r#"{"request_id":"t-1","type":"ack"}"#.to_owned(),
        ),
        (
            json!({"type": "set_status", "status": "away", "request_id": "s"}),
            r#"{"request_id":"s","type":"ack"}"#.to_owned(),
        ),
        (
            json!({"type": "launch"}),
            r#"{"code":"invalid_request","message":"unknown frame type `launch`","type":"error"}"#
                .to_owned(),
        ),
        (
            json!({"type": "resume", "cursors": {}, "request_id": "r"}),
            r#"{"conversations":{},"recovered":true,"replayed":0,"request_id":"r","type":"ack"}"#
                .to_owned(),
        ),
    ];
    for (frame, expected) in cases {
        client.send(frame.clone()).await;
        assert_eq!(raw_text(&mut client).await, expected, "{frame}");
    }
}
