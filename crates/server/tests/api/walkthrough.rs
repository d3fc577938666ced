//! The README walkthrough, and the everyday flows around it.

use chat_domain::{CustomerId, StaffUserId};
use reqwest::StatusCode;
use serde_json::json;

use crate::both_databases;
use crate::helpers::{Db, TestApp};

both_databases!(
    readme_walkthrough_staff_and_customer_converse,
    staff_update_status_assignee_and_tags_and_a_customer_message_reopens,
    private_threads_are_visible_to_their_clinician_and_admins_only,
    conversation_lists_paginate_and_filter_by_status,
    health_and_readiness_answer,
);

async fn readme_walkthrough_staff_and_customer_converse(db: Db) {
    let app = TestApp::spawn(db).await;
    let pharmacist = StaffUserId::new_v4();
    let staff = app.staff(pharmacist);
    let customer = CustomerId::new_v4();

    // Staff opens the conversation: 201 the first time, 200 after.
    let created = app
        .post(
            "/api/v1/chat/conversations",
            &staff,
            json!({"customer_id": customer.to_string()}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["kind"], "customer");
    assert_eq!(created.body["status"], "open");
    assert_eq!(created.body["customer_id"], customer.to_string());
    assert_eq!(created.body["tenant_id"], app.tenant.to_string());
    assert_eq!(created.body["staff_user_id"], serde_json::Value::Null);
    assert_eq!(created.body["last_seq"], 0);
    let again = app
        .post(
            "/api/v1/chat/conversations",
            &staff,
            json!({"customer_id": customer.to_string()}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], id.as_str());

    // The customer gets a chat token and sees their conversation.
    let issued = app
        .post(
            "/api/v1/chat/customer-token",
            &staff,
            json!({"customer_id": customer.to_string(), "ttl_seconds": 900}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    assert!(issued.body["expires_at"].as_str().unwrap().ends_with('Z'));
    let customer_token = issued.body["token"].as_str().unwrap().to_owned();
    let listed = app.get("/api/v1/chat/conversations", &customer_token).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["conversations"][0]["id"], id.as_str());

    // Both sides send; a replayed client_msg_id returns the original.
    let messages = format!("/api/v1/chat/conversations/{id}/messages");
    let first = app
        .post(
            &messages,
            &customer_token,
            json!({"body": "Is my prescription ready?", "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body["seq"], 1);
    assert_eq!(
        first.body["sender"],
        json!({"type": "customer", "id": customer.to_string()})
    );
    assert_eq!(first.body["client_msg_id"], "c-1");
    assert_eq!(first.body["attachments"], json!([]));
    let replay = app
        .post(
            &messages,
            &customer_token,
            json!({"body": "Is my prescription ready?", "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body["id"], first.body["id"]);
    let answer = app
        .post(
            &messages,
            &staff,
            json!({"body": "Yes, ready for pick-up.", "reply_to": first.body["id"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body["seq"], 2);
    assert_eq!(answer.body["reply_to"], first.body["id"]);
    assert_eq!(answer.body["sender"]["type"], "staff");

    // History, both directions.
    let newest = app.get(&messages, &customer_token).await;
    let seqs = |reply: &crate::helpers::Reply| -> Vec<u64> {
        reply.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&newest), vec![2, 1]);
    assert_eq!(newest.body["has_more"], false);
    let older = app
        .get(&format!("{messages}?before=2&limit=1"), &staff)
        .await;
    assert_eq!(seqs(&older), vec![1]);
    assert_eq!(older.body["has_more"], false);
    let catch_up = app
        .get(&format!("{messages}?after=0&limit=1"), &staff)
        .await;
    assert_eq!(seqs(&catch_up), vec![1]);
    assert_eq!(catch_up.body["has_more"], true);
    assert_eq!(
        catch_up.body["messages"][0]["body"],
        "Is my prescription ready?"
    );

    // Unread counts: the customer has the answer unread; staff has none
    // (answering marks the conversation read for them).
    let unread = app.get("/api/v1/chat/unread-count", &customer_token).await;
    assert_eq!(unread.body, json!({"unread_count": 1}));
    let staff_unread = app.get("/api/v1/chat/unread-count", &staff).await;
    assert_eq!(staff_unread.body, json!({"unread_count": 0}));
    let colleague_unread = app
        .get(
            "/api/v1/chat/unread-count",
            &app.staff(StaffUserId::new_v4()),
        )
        .await;
    assert_eq!(colleague_unread.body, json!({"unread_count": 2}));

    let read = app
        .post(
            &format!("/api/v1/chat/conversations/{id}/read"),
            &customer_token,
            json!({"up_to_seq": 2}),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.body["last_read_seq"], 2);
    let backwards = app
        .post(
            &format!("/api/v1/chat/conversations/{id}/read"),
            &customer_token,
            json!({"up_to_seq": 1}),
        )
        .await;
    assert_eq!(
        backwards.body["last_read_seq"], 2,
        "read state never moves backwards"
    );
    let unread = app.get("/api/v1/chat/unread-count", &customer_token).await;
    assert_eq!(unread.body, json!({"unread_count": 0}));

    // The conversation carries its last message and the caller's unread count.
    let one = app
        .get(&format!("/api/v1/chat/conversations/{id}"), &staff)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["last_seq"], 2);
    assert_eq!(one.body["last_message"]["seq"], 2);
    assert_eq!(one.body["unread_count"], 0);
    let list = app.get("/api/v1/chat/conversations", &staff).await;
    assert_eq!(
        list.body["conversations"][0]["last_message"]["body"],
        "Yes, ready for pick-up."
    );
    assert_eq!(list.body["next_cursor"], serde_json::Value::Null);
}

async fn staff_update_status_assignee_and_tags_and_a_customer_message_reopens(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff_user = StaffUserId::new_v4();
    let staff = app.staff(staff_user);
    let customer = CustomerId::new_v4();
    let id = app.open_conversation(&staff, customer).await;
    let path = format!("/api/v1/chat/conversations/{id}");

    let updated = app
        .patch(&path, &staff, json!({"status": "resolved", "assignee_id": staff_user.to_string(), "tags": ["refill", "urgent", "refill"]}))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.body["status"], "resolved");
    assert_eq!(updated.body["assignee_id"], staff_user.to_string());
    assert_eq!(updated.body["tags"], json!(["refill", "urgent"]));

    let cleared = app.patch(&path, &staff, json!({"assignee_id": null})).await;
    assert_eq!(cleared.body["assignee_id"], serde_json::Value::Null);
    assert_eq!(cleared.body["status"], "resolved", "untouched fields stay");
    assert_eq!(cleared.body["tags"], json!(["refill", "urgent"]));

    let customer_token = app.customer_token(&staff, customer).await;
    let sent = app.send(&customer_token, &id, "One more question").await;
    assert_eq!(sent.status, StatusCode::CREATED);
    let after = app.get(&path, &staff).await;
    assert_eq!(
        after.body["status"], "open",
        "a customer message reopens the conversation"
    );

    // A staff message does not reopen an archived conversation.
    app.patch(&path, &staff, json!({"status": "archived"}))
        .await;
    app.send(&staff, &id, "Closing note").await;
    let archived = app.get(&path, &staff).await;
    assert_eq!(archived.body["status"], "archived");
}

async fn private_threads_are_visible_to_their_clinician_and_admins_only(db: Db) {
    let app = TestApp::spawn(db).await;
    let clinician = StaffUserId::new_v4();
    let clinician_token = app.staff(clinician);
    let colleague_token = app.staff(StaffUserId::new_v4());
    let admin_token = app.admin(StaffUserId::new_v4());
    let patient = CustomerId::new_v4();

    let thread = app
        .post(
            "/api/v1/chat/conversations",
            &clinician_token,
            json!({"customer_id": patient.to_string(), "staff_user_id": clinician.to_string()}),
        )
        .await;
    assert_eq!(thread.status, StatusCode::CREATED);
    assert_eq!(thread.body["staff_user_id"], clinician.to_string());
    let id = thread.body["id"].as_str().unwrap().to_owned();
    let inbox = app.open_conversation(&colleague_token, patient).await;
    assert_ne!(inbox, id, "the shared inbox is another conversation");

    let path = format!("/api/v1/chat/conversations/{id}");
    app.get(&path, &colleague_token)
        .await
        .expect_error(404, "not_found");
    app.send(&colleague_token, &id, "peek")
        .await
        .expect_error(404, "not_found");
    assert_eq!(app.get(&path, &admin_token).await.status, StatusCode::OK);
    assert_eq!(
        app.send(&clinician_token, &id, "How are you feeling?")
            .await
            .status,
        StatusCode::CREATED
    );

    let patient_token = app.customer_token(&clinician_token, patient).await;
    let listed = app.get("/api/v1/chat/conversations", &patient_token).await;
    assert_eq!(listed.body["conversations"].as_array().unwrap().len(), 2);
    let colleague_list = app
        .get("/api/v1/chat/conversations", &colleague_token)
        .await;
    let ids: Vec<&str> = colleague_list.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![inbox.as_str()]);

    // Staff cannot open a private thread for someone else; admins can.
    let other = StaffUserId::new_v4();
    app.post(
        "/api/v1/chat/conversations",
        &colleague_token,
        json!({"customer_id": patient.to_string(), "staff_user_id": other.to_string()}),
    )
    .await
    .expect_error(403, "forbidden");
    let by_admin = app
        .post(
            "/api/v1/chat/conversations",
            &admin_token,
            json!({"customer_id": patient.to_string(), "staff_user_id": other.to_string()}),
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::CREATED);
}

async fn conversation_lists_paginate_and_filter_by_status(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
        app.send(&staff, &id, "hello").await;
        ids.push(id);
    }
    // Most recent activity first.
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/v1/chat/conversations?limit=2".to_owned();
    for _ in 0..5 {
        let page = app.get(&path, &staff).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        for c in page.body["conversations"].as_array().unwrap() {
            seen.push(c["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/chat/conversations?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    app.patch(
        &format!("/api/v1/chat/conversations/{}", ids[1]),
        &staff,
        json!({"status": "resolved"}),
    )
    .await;
    let resolved = app
        .get("/api/v1/chat/conversations?status=resolved", &staff)
        .await;
    let found: Vec<&str> = resolved.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec![ids[1].as_str()]);
}

async fn health_and_readiness_answer(db: Db) {
    let app = TestApp::spawn(db).await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(ready.headers().contains_key("x-request-id"));

    let staff = app.staff(StaffUserId::new_v4());
    let id = app.open_conversation(&staff, CustomerId::new_v4()).await;
    app.send(&staff, &id, "counted").await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("chat_messages_sent_total 1"), "{text}");
    assert!(
        text.contains(r#"route="/api/v1/chat/conversations/{id}/messages""#),
        "routes are labelled by their pattern: {text}"
    );
    assert!(!text.contains(&id), "raw paths never become labels");
}
