//! Store faults as a client sees them: sends refused while the disk is
//! full, nothing closed for it, sending again once space is freed.

use adapters_sqlite::testing::SmallDisk;
use serde_json::json;

use crate::helpers::*;

/// A WebSocket client whose sends fail because the SQLite disk is full gets
/// an `internal` error for each, far more often than the 30 refused frames
/// a minute that close an abusive client, and stays connected: the server's
/// failure is not the client's abuse. Once space is freed the same
/// connection sends again, with the next seq, and only acked messages are
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_without_closing_the_client_and_sending_resumes_once_freed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(disk) = SmallDisk::mount(dir.path(), "16m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data_dir = disk.path().display().to_string();
    let app = TestApp::spawn_with(Db::Sqlite, &[("CHAT_DATA_DIR", &data_dir)]).await;
    let chat = app.chat().await;
    let mut customer = Client::connect(&app, &chat.customer_token).await;
    let first = customer
        .request(send_frame(&chat.id, "before", "k-before"))
        .await;
    assert_eq!(first["type"], "ack", "{first}");
    let mut acked = vec!["before".to_owned()];

    let ballast = disk.fill("ballast");
    let mut failed = 0;
    for i in 0..400 {
        let body = format!("full {i} {}", "x".repeat(3900));
        let answer = customer
            .request(send_frame(&chat.id, &body, &format!("k-{i}")))
            .await;
        match answer["type"].as_str() {
            Some("ack") => acked.push(body),
            Some("error") => {
                assert_eq!(answer["code"], "internal", "{answer}");
                failed += 1;
            }
            _ => panic!("unexpected answer {answer}"),
        }
        if failed == 40 {
            break;
        }
    }
    assert_eq!(failed, 40, "a full disk refuses sends");
    let pong = customer.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "still connected: {pong}");

    std::fs::remove_file(ballast).expect("free the disk");
    let after = customer
        .request(send_frame(&chat.id, "after", "k-after"))
        .await;
    assert_eq!(after["type"], "ack", "{after}");
    assert_eq!(after["message"]["seq"], acked.len() + 1);
    acked.push("after".to_owned());

    let history = app
        .get(
            &format!("/api/v1/chat/conversations/{}/messages?limit=100", chat.id),
            &chat.staff,
        )
        .await;
    let mut stored: Vec<(u64, String)> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let seq = m["seq"].as_u64().expect("seq");
            (seq, m["body"].as_str().expect("body").to_owned())
        })
        .collect();
    stored.sort();
    let bodies: Vec<String> = stored.into_iter().map(|(_, body)| body).collect();
    assert_eq!(bodies, acked, "exactly the acked messages");
}
