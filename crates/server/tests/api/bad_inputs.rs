//! Bad input of every kind gets a clear 4xx in the API's error shape, never
//! a 500 or a hang (every reply is checked for `< 500` in the helpers).

use chat_domain::{CustomerId, StaffUserId, TenantId};
use reqwest::StatusCode;
use serde_json::json;

use crate::both_databases;
use crate::helpers::{Client, Db, TestApp};

both_databases!(
    malformed_json_is_a_400,
    missing_and_wrong_typed_fields_are_400,
    message_bodies_are_validated,
    oversized_requests_are_413_and_untyped_ones_415,
    unknown_and_foreign_conversations_are_404,
    another_customer_gets_404_on_every_route,
    bad_query_parameters_are_400,
    bad_customer_token_requests_are_400,
    unknown_routes_and_methods_answer_in_the_error_shape,
    refused_writes_store_nothing,
    sends_beyond_the_rate_limit_get_429_with_retry_after,
    parse_errors_name_no_rust_types,
);

async fn malformed_json_is_a_400(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    for raw in [
        &b"{"[..],
        b"not json",
        b"{\"body\": \"x\",}",
        b"[1, 2]",
        b"\xff\xfe",
        b"",
    ] {
        let reply = app
            .post_raw(
                &format!("/api/v1/chat/conversations/{id}/messages"),
                &staff,
                Some("application/json"),
                raw.to_vec(),
            )
            .await;
        reply.expect_error(400, "invalid_request");
    }
}

async fn missing_and_wrong_typed_fields_are_400(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let conversations = "/api/v1/chat/conversations";
    let cases = [
        (conversations.to_owned(), json!({})),
        (conversations.to_owned(), json!({"customer_id": 5})),
        (
            conversations.to_owned(),
            json!({"customer_id": "not-a-uuid"}),
        ),
        (
            conversations.to_owned(),
            json!({"customer_id": CustomerId::new_v4().to_string(), "extra": true}),
        ),
        (
            conversations.to_owned(),
            json!({"customer_id": CustomerId::new_v4().to_string(), "staff_user_id": "x"}),
        ),
        (
            format!("{conversations}/{id}/messages"),
            json!({"body": 123}),
        ),
        (
            format!("{conversations}/{id}/messages"),
            json!({"body": "hi", "client_msg_id": 7}),
        ),
        (
            format!("{conversations}/{id}/messages"),
            json!({"body": "hi", "reply_to": "nope"}),
        ),
        (format!("{conversations}/{id}/read"), json!({})),
        (
            format!("{conversations}/{id}/read"),
            json!({"up_to_seq": -1}),
        ),
        (
            format!("{conversations}/{id}/read"),
            json!({"up_to_seq": "3"}),
        ),
        (
            format!("{conversations}/{id}/read"),
            json!({"up_to_seq": 1.5}),
        ),
        (
            format!("{conversations}/{id}/read"),
            json!({"up_to_seq": u64::MAX}),
        ),
    ];
    for (path, body) in cases {
        let reply = app.post(&path, &staff, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {reply:?}"
        );
        assert_eq!(reply.error_code(), "invalid_request");
    }
    let patch = format!("{conversations}/{id}");
    for body in [
        json!({}),
        json!({"status": "closed"}),
        json!({"status": 1}),
        json!({"assignee_id": "bob"}),
        json!({"tags": "refill"}),
        json!({"tags": [""]}),
        json!({"tags": ["a,b"]}),
        json!({"tags": (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
    ] {
        let reply = app.patch(&patch, &staff, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
        assert_eq!(reply.error_code(), "invalid_request");
    }
}

async fn message_bodies_are_validated(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let path = format!("/api/v1/chat/conversations/{id}/messages");
    let too_long = "a".repeat(4001);
    for body in [
        json!({"body": too_long}),
        json!({"body": ""}),
        json!({"body": "   \n  "}),
        json!({"body": "nul\u{0}byte"}),
        json!({"body": "escape \u{1b}[2J"}),
        json!({}),
        json!({"body": "hi", "client_msg_id": ""}),
        json!({"body": "hi", "client_msg_id": "x".repeat(65)}),
        json!({"body": "hi", "reply_to": uuid::Uuid::now_v7()}),
        json!({"body": "hi", "attachment_ids": vec![uuid::Uuid::now_v7(); 11]}),
    ] {
        let reply = app.post(&path, &staff, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
        assert_eq!(reply.error_code(), "invalid_request");
    }
    // Exactly at the limit (after trimming) is fine, multi-byte characters
    // count as one.
    let at_limit = format!("  {}  ", "é".repeat(4000));
    assert_eq!(
        app.send(&staff, &id, &at_limit).await.status,
        StatusCode::CREATED
    );
}

async fn oversized_requests_are_413_and_untyped_ones_415(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let path = format!("/api/v1/chat/conversations/{id}/messages");
    let huge = serde_json::to_vec(&json!({"body": "a".repeat(70 * 1024)})).unwrap();
    app.post_raw(&path, &staff, Some("application/json"), huge)
        .await
        .expect_error(413, "payload_too_large");
    app.post_raw(&path, &staff, None, br#"{"body": "hi"}"#.to_vec())
        .await
        .expect_error(415, "unsupported_media_type");
    app.post_raw(
        &path,
        &staff,
        Some("text/plain"),
        br#"{"body": "hi"}"#.to_vec(),
    )
    .await
    .expect_error(415, "unsupported_media_type");
}

async fn unknown_and_foreign_conversations_are_404(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    app.send(&staff, &id, "private").await;
    let foreign_staff = app.token(TenantId::new_v4(), StaffUserId::new_v4(), "admin");
    let unknown = uuid::Uuid::now_v7().to_string();
    for (token, target) in [
        (&staff, unknown.as_str()),
        (&staff, "not-a-uuid"),
        (&foreign_staff, id.as_str()),
    ] {
        let base = format!("/api/v1/chat/conversations/{target}");
        app.get(&base, token).await.expect_error(404, "not_found");
        app.get(&format!("{base}/messages"), token)
            .await
            .expect_error(404, "not_found");
        app.post(&format!("{base}/messages"), token, json!({"body": "hi"}))
            .await
            .expect_error(404, "not_found");
        app.post(&format!("{base}/read"), token, json!({"up_to_seq": 1}))
            .await
            .expect_error(404, "not_found");
        app.patch(&base, token, json!({"status": "resolved"}))
            .await
            .expect_error(404, "not_found");
    }
    // The other tenant's lists and totals are empty.
    let listed = app.get("/api/v1/chat/conversations", &foreign_staff).await;
    assert_eq!(listed.body["conversations"], json!([]));
    assert_eq!(
        app.get("/api/v1/chat/unread-count", &foreign_staff)
            .await
            .body,
        json!({"unread_count": 0})
    );
}

async fn another_customer_gets_404_on_every_route(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let owner = CustomerId::new_v4();
    let id = app.open_conversation(&staff, owner).await;
    app.send(&staff, &id, "for the owner only").await;
    let intruder = app.customer_token(&staff, CustomerId::new_v4()).await;
    let base = format!("/api/v1/chat/conversations/{id}");
    app.get(&base, &intruder)
        .await
        .expect_error(404, "not_found");
    app.get(&format!("{base}/messages"), &intruder)
        .await
        .expect_error(404, "not_found");
    app.post(
        &format!("{base}/messages"),
        &intruder,
        json!({"body": "hi"}),
    )
    .await
    .expect_error(404, "not_found");
    app.post(&format!("{base}/read"), &intruder, json!({"up_to_seq": 1}))
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        app.get("/api/v1/chat/conversations", &intruder).await.body["conversations"],
        json!([])
    );
    assert_eq!(
        app.get("/api/v1/chat/unread-count", &intruder).await.body,
        json!({"unread_count": 0})
    );
    // The same customer id in another tenant sees nothing either.
    let foreign_staff = app.token(TenantId::new_v4(), StaffUserId::new_v4(), "admin");
    let foreign_customer = app.customer_token(&foreign_staff, owner).await;
    app.get(&base, &foreign_customer)
        .await
        .expect_error(404, "not_found");
}

async fn bad_query_parameters_are_400(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let messages = format!("/api/v1/chat/conversations/{id}/messages");
    for query in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "before=1&after=1",
        "before=x",
        "after=-2",
        "unknown=1",
    ] {
        app.get(&format!("{messages}?{query}"), &staff)
            .await
            .expect_error(400, "invalid_request");
    }
    for query in [
        "status=closed",
        "limit=0",
        "limit=1000",
        "cursor=garbage",
        "cursor=1_2",
        "foo=bar",
    ] {
        app.get(&format!("/api/v1/chat/conversations?{query}"), &staff)
            .await
            .expect_error(400, "invalid_request");
    }
}

async fn bad_customer_token_requests_are_400(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    for body in [
        json!({}),
        json!({"customer_id": "x"}),
        json!({"customer_id": CustomerId::new_v4().to_string(), "ttl_seconds": 0}),
        json!({"customer_id": CustomerId::new_v4().to_string(), "ttl_seconds": 86_401}),
        json!({"customer_id": CustomerId::new_v4().to_string(), "ttl_seconds": -5}),
    ] {
        let reply = app
            .post("/api/v1/chat/customer-token", &staff, body.clone())
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {reply:?}");
    }
}

async fn unknown_routes_and_methods_answer_in_the_error_shape(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    app.get("/api/v1/chat/nothing-here", &staff)
        .await
        .expect_error(404, "not_found");
    app.delete("/api/v1/chat/conversations", &staff)
        .await
        .expect_error(405, "method_not_allowed");
}

async fn refused_writes_store_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let path = format!("/api/v1/chat/conversations/{id}/messages");
    app.post(&path, &staff, json!({"body": "a".repeat(5000)}))
        .await;
    app.post(
        &path,
        &staff,
        json!({"body": "x", "reply_to": uuid::Uuid::now_v7()}),
    )
    .await;
    app.post_raw(&path, &staff, Some("application/json"), b"{".to_vec())
        .await;
    let sent = app.send(&staff, &id, "the only message").await;
    assert_eq!(sent.body["seq"], 1, "refused sends consumed no seq");
    let history = app.get(&path, &staff).await;
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 1);
}

async fn sends_beyond_the_rate_limit_get_429_with_retry_after(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("CHAT_SEND_RATE_PER_MINUTE", "60"),
            ("CHAT_SEND_BURST", "3"),
        ],
    )
    .await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    for i in 0..3 {
        assert_eq!(
            app.send(&staff, &id, &format!("burst {i}")).await.status,
            StatusCode::CREATED
        );
    }
    let response = app
        .client
        .post(app.url(&format!("/api/v1/chat/conversations/{id}/messages")))
        .bearer_auth(&staff)
        .json(&json!({"body": "one too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another sender is not held back, and nothing extra was stored.
    let colleague = app.staff(StaffUserId::new_v4());
    assert_eq!(app.send(&colleague, &id, "mine").await.body["seq"], 4);
}

/// What a message must not contain: Rust type names and their syntax.
const TYPE_NAME_MARKS: [&str; 6] = ["struct", "enum ", "::", "Uuid", "Option<", "Vec<"];

#[track_caller]
fn assert_no_type_names(what: &str, message: &str) {
    for mark in TYPE_NAME_MARKS {
        assert!(!message.contains(mark), "{what}: {message}");
    }
}

async fn parse_errors_name_no_rust_types(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let conversations = "/api/v1/chat/conversations";
    let messages = format!("{conversations}/{id}/messages");
    let read = format!("{conversations}/{id}/read");
    let cases = [
        (conversations.to_owned(), json!("x"), "expected an object"),
        (
            conversations.to_owned(),
            json!({"customer_id": "not-a-uuid"}),
            "customer_id: expected a UUID",
        ),
        (
            messages.clone(),
            json!({"attachment_ids": ["nope"]}),
            "attachment_ids[0]: expected a UUID",
        ),
        (
            messages.clone(),
            json!({"attachment_ids": "nope"}),
            "expected a sequence",
        ),
        (
            messages.clone(),
            json!({"body": "hi", "reply_to": 5}),
            "reply_to: invalid type: integer `5`, expected a UUID",
        ),
        (
            read.clone(),
            json!({"up_to_seq": -1}),
            "expected a non-negative integer",
        ),
        (read.clone(), json!([]), "expected an object"),
        (
            "/api/v1/chat/customer-token".to_owned(),
            json!({"customer_id": "x"}),
            "customer_id: expected a UUID",
        ),
    ];
    for (path, body, expected) in cases {
        let reply = app.post(&path, &staff, body.clone()).await;
        reply.expect_error(400, "invalid_request");
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{path} {body}: {message}");
        assert_no_type_names(&format!("{path} {body}"), message);
    }
    let reply = app
        .patch(
            &format!("{conversations}/{id}"),
            &staff,
            json!({"assignee_id": 5}),
        )
        .await;
    reply.expect_error(400, "invalid_request");
    assert_no_type_names(
        "patch",
        reply.body["error"]["message"].as_str().unwrap_or_default(),
    );

    let mut client = Client::connect(&app, &staff).await;
    let frames = [
        (
            json!({"type": "send_message", "conversation_id": "nope", "body": "x", "client_msg_id": "a"}),
            "expected a UUID",
        ),
        (
            json!({"type": "send_message", "conversation_id": id, "body": "x", "client_msg_id": "a", "attachment_ids": [7]}),
            "expected a UUID",
        ),
        (
            json!({"type": "read", "conversation_id": id, "up_to_seq": -3}),
            "expected a non-negative integer",
        ),
        (
            json!({"type": "resume", "cursors": [1, 2]}),
            "expected an object",
        ),
        (
            json!({"type": "resume", "cursors": {"nope": 1}}),
            "expected a UUID",
        ),
    ];
    for (frame, expected) in frames {
        let error = client.request(frame.clone()).await;
        assert_eq!(error["type"], "error", "{frame}: {error}");
        assert_eq!(error["code"], "invalid_request", "{frame}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{frame}: {message}");
        assert_no_type_names(&frame.to_string(), message);
    }
}
