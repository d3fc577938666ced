//! Staff conversations end to end: direct conversations, channels and their
//! members over REST, and membership changes followed live over WebSocket.

use std::time::Duration;

use chat_domain::{CustomerId, StaffUserId, TenantId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_databases;
use crate::helpers::{send_frame, Client, Db, TestApp};

both_databases!(
    colleagues_message_directly_and_a_third_joins_a_channel_reads_and_leaves,
    channel_settings_and_members_follow_the_owner_rules,
    a_member_added_mid_stream_gets_every_later_message_once_and_in_order,
    a_removed_member_gets_nothing_further_live_and_404_on_history,
    customers_and_other_tenants_never_reach_staff_conversations,
);

const API: &str = "/api/v1/chat";

fn path(rest: &str) -> String {
    format!("{API}{rest}")
}

fn staff_sender(user: StaffUserId) -> Value {
    json!({"type": "staff", "id": user.to_string()})
}

/// Creates a channel as `token`; returns its id.
async fn channel(
    app: &TestApp,
    token: &str,
    name: &str,
    visibility: &str,
    members: &[StaffUserId],
) -> String {
    let members: Vec<String> = members.iter().map(ToString::to_string).collect();
    let reply = app
        .post(
            &path("/channels"),
            token,
            json!({"name": name, "visibility": visibility, "member_ids": members}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body["id"].as_str().expect("id").to_owned()
}

/// The `(seq, body or system event)` of a conversation's history, oldest
/// first.
async fn history(app: &TestApp, token: &str, id: &str) -> Vec<(u64, String)> {
    let reply = app
        .get(
            &path(&format!("/conversations/{id}/messages?after=0")),
            token,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let what = m["body"]
                .as_str()
                .or_else(|| m["system"]["event"].as_str())
                .unwrap_or_default();
            (m["seq"].as_u64().expect("seq"), what.to_owned())
        })
        .collect()
}

/// The README's walkthrough: two colleagues message directly, one creates
/// a channel, a third finds it, reads it, joins, writes and leaves.
async fn colleagues_message_directly_and_a_third_joins_a_channel_reads_and_leaves(db: Db) {
    let app = TestApp::spawn(db).await;
    let (ana, ben, cleo) = (
        StaffUserId::new_v4(),
        StaffUserId::new_v4(),
        StaffUserId::new_v4(),
    );
    let (a, b, c) = (app.staff(ana), app.staff(ben), app.staff(cleo));

    // A direct conversation: created once, found by either of the two.
    let dm = app
        .post(&path("/direct"), &a, json!({"user_ids": [ben.to_string()]}))
        .await;
    assert_eq!(dm.status, StatusCode::CREATED, "{dm:?}");
    assert_eq!(dm.body["kind"], "direct");
    let mut people = vec![ana.to_string(), ben.to_string()];
    people.sort();
    assert_eq!(dm.body["member_ids"], json!(people));
    let dm_id = dm.body["id"].as_str().unwrap().to_owned();
    let again = app
        .post(
            &path("/direct"),
            &b,
            json!({"user_ids": [ana.to_string(), ben.to_string()]}),
        )
        .await;
    assert_eq!(
        (again.status, again.body["id"].as_str()),
        (StatusCode::OK, Some(dm_id.as_str()))
    );
    assert_eq!(
        app.send(&b, &dm_id, "Can you cover the counter at 3?")
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.send(&c, &dm_id, "me too").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&path(&format!("/conversations/{dm_id}")), &c)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let unread = app.get(&path("/unread-count"), &a).await;
    assert_eq!(unread.body["unread_count"], 1);

    // A public channel, with a topic; its name is taken ignoring case.
    let created = app
        .post(
            &path("/channels"),
            &a,
            json!({"name": "  Night Shift ", "visibility": "public", "topic": "Hand-over notes"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(
        (
            &created.body["kind"],
            &created.body["name"],
            &created.body["topic"]
        ),
        (
            &json!("channel"),
            &json!("Night Shift"),
            &json!("Hand-over notes")
        )
    );
    assert_eq!(
        (
            &created.body["member_count"],
            &created.body["is_member"],
            &created.body["role"]
        ),
        (&json!(1), &json!(true), &json!("owner"))
    );
    let room = created.body["id"].as_str().unwrap().to_owned();
    app.post(
        &path("/channels"),
        &b,
        json!({"name": "night shift", "visibility": "private"}),
    )
    .await
    .expect_error(409, "conflict");
    app.send(&a, &room, "Fridge log is on the wall").await;

    // Cleo finds it by prefix, reads it without joining, cannot write.
    let found = app.get(&path("/channels?q=NIGHT"), &c).await;
    let channels = found.body["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 1, "{found:?}");
    assert_eq!(
        (&channels[0]["is_member"], &channels[0]["member_count"]),
        (&json!(false), &json!(1))
    );
    assert_eq!(
        history(&app, &c, &room).await,
        vec![(1, "Fridge log is on the wall".to_owned())]
    );
    app.send(&c, &room, "hi")
        .await
        .expect_error(403, "forbidden");
    let listed = app.get(&path("/conversations"), &c).await;
    assert_eq!(
        listed.body["conversations"],
        json!([]),
        "not joined: not hers"
    );

    // She joins: a notice in the stream, and the channel is hers.
    let joined = app
        .post(&path(&format!("/channels/{room}/join")), &c, json!({}))
        .await;
    assert_eq!(
        (joined.status, &joined.body["is_member"]),
        (StatusCode::OK, &json!(true)),
        "{joined:?}"
    );
    let again = app
        .post(&path(&format!("/channels/{room}/join")), &c, json!({}))
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "joining twice changes nothing"
    );
    let messages = app
        .get(
            &path(&format!("/conversations/{room}/messages?after=0")),
            &c,
        )
        .await;
    let notice = &messages.body["messages"][1];
    assert_eq!(notice["sender"], json!({"type": "system", "id": null}));
    assert_eq!(
        notice["system"],
        json!({"event": "member_added", "user": staff_sender(cleo), "by": staff_sender(cleo)})
    );
    assert_eq!(
        app.send(&c, &room, "Thanks, checked").await.status,
        StatusCode::CREATED
    );
    let mine = app.get(&path("/conversations?kind=channel"), &c).await;
    let mine = mine.body["conversations"].as_array().expect("list");
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (&mine[0]["id"], &mine[0]["unread_count"]),
        (&json!(room), &json!(0)),
        "her own message marks all before it read"
    );
    let ana_unread = app.get(&path("/unread-count"), &a).await;
    assert_eq!(
        ana_unread.body["unread_count"], 3,
        "the DM, Cleo's notice and message"
    );
    let members = app
        .get(&path(&format!("/channels/{room}/members")), &c)
        .await;
    let roles: Vec<(&Value, &Value)> = members.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (&m["user"]["id"], &m["role"]))
        .collect();
    assert_eq!(
        roles,
        vec![
            (&json!(ana.to_string()), &json!("owner")),
            (&json!(cleo.to_string()), &json!("member"))
        ]
    );

    // She leaves; the owner cannot while she stays.
    app.post(&path(&format!("/channels/{room}/leave")), &a, json!({}))
        .await
        .expect_error(409, "conflict");
    let left = app
        .post(&path(&format!("/channels/{room}/leave")), &c, json!({}))
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{left:?}");
    let stream = history(&app, &a, &room).await;
    assert_eq!(stream.last(), Some(&(4, "member_left".to_owned())));
    app.send(&c, &room, "one more")
        .await
        .expect_error(403, "forbidden");
    let list = app.get(&path("/conversations?kind=direct"), &a).await;
    assert_eq!(list.body["conversations"][0]["id"], json!(dm_id));
    app.get(&path("/conversations?kind=group"), &a)
        .await
        .expect_error(400, "invalid_request");
}

/// Renaming, archiving and managing members are the owners' and admins';
/// an archived channel is read-only until brought back; roles change.
async fn channel_settings_and_members_follow_the_owner_rules(db: Db) {
    let app = TestApp::spawn(db).await;
    let (owner, member, other, boss) = (
        StaffUserId::new_v4(),
        StaffUserId::new_v4(),
        StaffUserId::new_v4(),
        StaffUserId::new_v4(),
    );
    let (o, m, x, admin) = (
        app.staff(owner),
        app.staff(member),
        app.staff(other),
        app.admin(boss),
    );
    let room = channel(&app, &o, "Refills", "private", &[member]).await;
    let settings = path(&format!("/channels/{room}"));

    // Who may see and change what.
    app.patch(&settings, &m, json!({"name": "Mine now"}))
        .await
        .expect_error(403, "forbidden");
    app.patch(&settings, &x, json!({"name": "Mine now"}))
        .await
        .expect_error(404, "not_found");
    app.post(&path(&format!("/channels/{room}/join")), &x, json!({}))
        .await
        .expect_error(404, "not_found");
    app.post(
        &path(&format!("/channels/{room}/members")),
        &m,
        json!({"user_ids": [other.to_string()]}),
    )
    .await
    .expect_error(403, "forbidden");
    app.patch(&settings, &o, json!({}))
        .await
        .expect_error(400, "invalid_request");
    app.patch(&settings, &o, json!({"name": "x".repeat(81)}))
        .await
        .expect_error(400, "invalid_request");
    app.patch(&settings, &o, json!({"visibility": "secret"}))
        .await
        .expect_error(400, "invalid_request");

    let renamed = app
        .patch(
            &settings,
            &o,
            json!({"name": "Repeat refills", "topic": "weekly"}),
        )
        .await;
    assert_eq!(
        (
            renamed.status,
            &renamed.body["name"],
            &renamed.body["topic"]
        ),
        (StatusCode::OK, &json!("Repeat refills"), &json!("weekly")),
        "{renamed:?}"
    );
    let cleared = app.patch(&settings, &admin, json!({"topic": null})).await;
    assert_eq!(
        cleared.body["topic"],
        Value::Null,
        "admins manage every channel"
    );

    // Archived: read-only, then brought back.
    let archived = app.patch(&settings, &o, json!({"archived": true})).await;
    assert!(archived.body["archived_at"].is_string(), "{archived:?}");
    app.send(&m, &room, "still open?")
        .await
        .expect_error(409, "conflict");
    app.patch(&settings, &o, json!({"name": "Old"}))
        .await
        .expect_error(409, "conflict");
    assert_eq!(
        app.get(&path(&format!("/conversations/{room}/messages")), &m)
            .await
            .status,
        StatusCode::OK
    );
    let back = app.patch(&settings, &o, json!({"archived": false})).await;
    assert_eq!(back.body["archived_at"], Value::Null);
    assert_eq!(
        app.send(&m, &room, "back again").await.status,
        StatusCode::CREATED
    );
    let events: Vec<String> = history(&app, &o, &room)
        .await
        .into_iter()
        .map(|(_, what)| what)
        .collect();
    assert_eq!(
        events,
        [
            "member_added",
            "channel_updated",
            "channel_updated",
            "channel_updated",
            "channel_updated",
            "back again"
        ]
    );

    // Members: added, made owner, removed.
    let added = app
        .post(
            &path(&format!("/channels/{room}/members")),
            &o,
            json!({"user_ids": [other.to_string(), member.to_string()]}),
        )
        .await;
    assert_eq!(
        added.body["members"].as_array().map(Vec::len),
        Some(1),
        "only the new one: {added:?}"
    );
    let member_path = path(&format!("/channels/{room}/members/{member}"));
    app.patch(&member_path, &m, json!({"role": "owner"}))
        .await
        .expect_error(403, "forbidden");
    app.patch(&member_path, &o, json!({"role": "boss"}))
        .await
        .expect_error(400, "invalid_request");
    let promoted = app.patch(&member_path, &o, json!({"role": "owner"})).await;
    assert_eq!(promoted.body["role"], "owner", "{promoted:?}");
    let removed = app
        .delete(&path(&format!("/channels/{room}/members/{other}")), &m)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    app.delete(&path(&format!("/channels/{room}/members/{other}")), &m)
        .await
        .expect_error(404, "not_found");
    app.delete(&path(&format!("/channels/{room}/members/not-a-uuid")), &m)
        .await
        .expect_error(404, "not_found");
    let page = app
        .get(&path(&format!("/channels/{room}/members?limit=1")), &m)
        .await;
    assert_eq!(
        page.body["members"].as_array().map(Vec::len),
        Some(1),
        "{page:?}"
    );
    let next = page.body["next_cursor"].as_str().expect("a next page");
    let second = app
        .get(
            &path(&format!("/channels/{room}/members?limit=1&cursor={next}")),
            &m,
        )
        .await;
    assert_eq!(
        second.body["members"].as_array().map(Vec::len),
        Some(1),
        "{second:?}"
    );
    assert_ne!(second.body["members"], page.body["members"]);
    assert_eq!(
        second.body["next_cursor"],
        Value::Null,
        "two members in all"
    );
    // A cursor of the channel list (a name for a key) is not one of a member list.
    let channel_cursor = format!("{}_{}", uuid::Uuid::nil().simple(), "6e69676874");
    for junk in ["junk", channel_cursor.as_str()] {
        app.get(
            &path(&format!("/channels/{room}/members?cursor={junk}")),
            &m,
        )
        .await
        .expect_error(400, "invalid_request");
    }
    assert_eq!(
        app.post(&path(&format!("/channels/{room}/leave")), &o, json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT,
        "another owner stays"
    );
}

/// Frames of `kinds` until `n` of them came.
async fn collect(client: &mut Client, kinds: &[&str], n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = client.next().await;
        if kinds.iter().any(|k| frame["type"] == *k) {
            got.push(frame);
        }
    }
    got
}

/// A member added while messages flow gets, on every open socket and
/// without reconnecting, the notice of their adding and every message
/// after it, once and in order, and nothing from before.
async fn a_member_added_mid_stream_gets_every_later_message_once_and_in_order(db: Db) {
    let app = TestApp::spawn(db).await;
    let (owner, late) = (StaffUserId::new_v4(), StaffUserId::new_v4());
    let (o, l) = (app.staff(owner), app.staff(late));
    let room = channel(&app, &o, "Pharmacists", "private", &[]).await;
    let mut sender = Client::connect(&app, &o).await;
    let mut laptop = Client::connect(&app, &l).await;
    let mut phone = Client::connect(&app, &l).await;
    app.wait_connections(3).await;

    for i in 0..3 {
        let ack = sender
            .request(send_frame(&room, &format!("before {i}"), &format!("b{i}")))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let added = app
        .post(
            &path(&format!("/channels/{room}/members")),
            &o,
            json!({"user_ids": [late.to_string()]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{added:?}");
    for i in 0..5 {
        sender
            .request(send_frame(&room, &format!("after {i}"), &format!("a{i}")))
            .await;
    }
    for socket in [&mut laptop, &mut phone] {
        let frames = collect(socket, &["new_message", "member_added"], 7).await;
        assert_eq!(frames[0]["message"]["system"]["event"], "member_added");
        assert_eq!(frames[0]["message"]["seq"], 4);
        assert_eq!(
            frames[1],
            json!({"type": "member_added", "conversation_id": room, "user": staff_sender(late), "by": staff_sender(owner)})
        );
        let seqs: Vec<u64> = frames[2..]
            .iter()
            .map(|f| f["message"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![5, 6, 7, 8, 9]);
        let more = socket
            .drain_of(Duration::from_millis(300), &["new_message"])
            .await;
        assert!(more.is_empty(), "each once: {more:?}");
    }
    // And they take part at once: typing reaches the owner.
    let typed = laptop
        .request(json!({"type": "typing", "conversation_id": room, "is_typing": true}))
        .await;
    assert_eq!(typed["type"], "ack", "{typed}");
    let typing = sender.next_of("typing").await;
    assert_eq!(typing["sender"], staff_sender(late));
    // Receipts too: the owner hears what the new member has read.
    let read = phone
        .request(json!({"type": "read", "conversation_id": room, "up_to_seq": 9}))
        .await;
    assert_eq!(read["type"], "ack", "{read}");
    let receipt = sender.next_of("read").await;
    assert_eq!(
        (&receipt["reader"], &receipt["up_to_seq"]),
        (&staff_sender(late), &json!(9))
    );
}

/// A member removed hears that they were, then nothing more; history,
/// sends and resumes of the channel are refused from then on.
async fn a_removed_member_gets_nothing_further_live_and_404_on_history(db: Db) {
    let app = TestApp::spawn(db).await;
    let (owner, gone) = (StaffUserId::new_v4(), StaffUserId::new_v4());
    let (o, g) = (app.staff(owner), app.staff(gone));
    let room = channel(&app, &o, "Controlled drugs", "private", &[gone]).await;
    let mut sender = Client::connect(&app, &o).await;
    let mut removed = Client::connect(&app, &g).await;
    app.wait_connections(2).await;
    sender
        .request(send_frame(&room, "count at six", "c1"))
        .await;
    assert_eq!(
        removed.next_of("new_message").await["message"]["body"],
        "count at six"
    );

    let reply = app
        .delete(&path(&format!("/channels/{room}/members/{gone}")), &o)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    for i in 0..5 {
        sender
            .request(send_frame(&room, &format!("secret {i}"), &format!("s{i}")))
            .await;
    }
    let heard = removed.drain(Duration::from_millis(800)).await;
    assert_eq!(
        heard,
        vec![
            json!({"type": "member_removed", "conversation_id": room, "user": staff_sender(gone), "by": staff_sender(owner)})
        ],
        "that they were removed, and nothing after"
    );

    app.get(&path(&format!("/conversations/{room}/messages")), &g)
        .await
        .expect_error(404, "not_found");
    app.send(&g, &room, "still here?")
        .await
        .expect_error(404, "not_found");
    let refused = removed.request(send_frame(&room, "hello?", "h1")).await;
    assert_eq!(
        (&refused["type"], &refused["code"]),
        (&json!("error"), &json!("not_found")),
        "{refused}"
    );
    let resumed = removed
        .request(json!({"type": "resume", "cursors": {room.clone(): 0}}))
        .await;
    assert_eq!(resumed["type"], "error", "{resumed}");
    let frames = removed
        .drain_of(Duration::from_millis(300), &["new_message"])
        .await;
    assert!(frames.is_empty(), "{frames:?}");
}

/// Customer tokens get 401 on every staff route and never an event of a
/// staff conversation; other tenants get 404 everywhere.
async fn customers_and_other_tenants_never_reach_staff_conversations(db: Db) {
    let app = TestApp::spawn(db).await;
    let owner = StaffUserId::new_v4();
    let o = app.staff(owner);
    let room = channel(&app, &o, "Front desk", "public", &[]).await;
    let customer = CustomerId::new_v4();
    let customer_token = app.customer_token(&o, customer).await;
    let routes = [
        (
            Method::POST,
            path("/direct"),
            Some(json!({"user_ids": [owner.to_string()]})),
        ),
        (
            Method::POST,
            path("/channels"),
            Some(json!({"name": "x", "visibility": "public"})),
        ),
        (Method::GET, path("/channels"), None),
        (
            Method::PATCH,
            path(&format!("/channels/{room}")),
            Some(json!({"name": "y"})),
        ),
        (Method::POST, path(&format!("/channels/{room}/join")), None),
        (Method::POST, path(&format!("/channels/{room}/leave")), None),
        (
            Method::GET,
            path(&format!("/channels/{room}/members")),
            None,
        ),
        (
            Method::POST,
            path(&format!("/channels/{room}/members")),
            Some(json!({"user_ids": []})),
        ),
        (
            Method::PATCH,
            path(&format!("/channels/{room}/members/{owner}")),
            Some(json!({"role": "member"})),
        ),
        (
            Method::DELETE,
            path(&format!("/channels/{room}/members/{owner}")),
            None,
        ),
    ];
    for (method, route, body) in &routes {
        app.call(method.clone(), route, Some(&customer_token), body.clone())
            .await
            .expect_error(401, "unauthenticated");
    }
    for rest in ["", "/messages"] {
        app.get(
            &path(&format!("/conversations/{room}{rest}")),
            &customer_token,
        )
        .await
        .expect_error(404, "not_found");
    }
    let mut watcher = Client::connect(&app, &customer_token).await;
    app.wait_connections(1).await;
    app.send(&o, &room, "staff only").await;
    let seen = watcher.drain(Duration::from_millis(400)).await;
    assert!(seen.is_empty(), "{seen:?}");

    let stranger = app.token(TenantId::new_v4(), StaffUserId::new_v4(), "admin");
    app.get(&path(&format!("/conversations/{room}")), &stranger)
        .await
        .expect_error(404, "not_found");
    app.post(
        &path(&format!("/channels/{room}/join")),
        &stranger,
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    app.patch(
        &path(&format!("/channels/{room}")),
        &stranger,
        json!({"archived": true}),
    )
    .await
    .expect_error(404, "not_found");
    app.get(&path(&format!("/channels/{room}/members")), &stranger)
        .await
        .expect_error(404, "not_found");
    let theirs = app.get(&path("/channels"), &stranger).await;
    assert_eq!(theirs.body["channels"], json!([]));
    app.post(&path("/direct"), &o, json!({"user_ids": []}))
        .await
        .expect_error(400, "invalid_request");
}
