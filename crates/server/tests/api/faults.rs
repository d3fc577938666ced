//! Store faults as a client sees them: sends refused while the disk is
//! full, nothing closed for it, sending again once space is freed; a
//! PostgreSQL that cannot be reached answered at once with 503, and
//! everything working again once it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adapters_sqlite::testing::SmallDisk;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// A WebSocket client whose sends fail because the SQLite disk is full gets
/// an `unavailable` error for each ("the database is full"), far more often than the 30 refused frames
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
                assert_eq!(answer["code"], "unavailable", "{answer}");
                assert!(
                    answer["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("full")),
                    "{answer}"
                );
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
    ready_becomes(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;

    std::fs::remove_file(ballast).expect("free the disk");
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(5)).await;
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

/// A TCP proxy to PostgreSQL that the test can cut (every open connection
/// dropped, new ones closed at once) and restore: the database is
/// unreachable for the server without touching the shared server.
struct CuttableProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, links) = (cut.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Self {
            port,
            cut,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// `/ready`'s status and how long it took.
async fn ready(app: &TestApp) -> (StatusCode, Duration) {
    let started = Instant::now();
    let status = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .expect("ready answers")
        .status();
    (status, started.elapsed())
}

/// Polls `/ready` until it says `want`, each answer within 1.5 s.
async fn ready_becomes(app: &TestApp, want: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, took) = ready(app).await;
        assert!(took < Duration::from_millis(1500), "/ready took {took:?}");
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/ready still {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL unreachable: `/ready` says 503 within a second and a half
/// of the cut (each answer within the same bound), then REST and WebSocket
/// sends are answered at once with 503 / `unavailable` and `Retry-After`
/// (not 500 after the pool's timeout), the socket stays open, and once the
/// database is back the same sends go through with the next seqs: only
/// acked messages are stored, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_answered_at_once_with_503_and_sending_resumes_when_back() {
    let direct =
        adapters_postgres::testing::fresh_database(&adapters_postgres::testing::admin_url())
            .await
            .expect("a fresh PostgreSQL database (is PostgreSQL running?)");
    // postgres://user@host:port/db?...: the proxy stands in for host:port.
    let (scheme_user, rest) = direct.split_once('@').expect("a URL with a user");
    let (upstream, path) = rest.split_once('/').expect("a URL with a database");
    let proxy = CuttableProxy::start(upstream.to_owned()).await;
    let via_proxy = format!("{scheme_user}@127.0.0.1:{}/{path}", proxy.port);
    let app = TestApp::spawn_with(Db::Postgres, &[("CHAT_DATABASE_URL", &via_proxy)]).await;
    let chat = app.chat().await;
    let mut customer = Client::connect(&app, &chat.customer_token).await;
    let first = customer
        .request(send_frame(&chat.id, "before", "k-1"))
        .await;
    assert_eq!(first["type"], "ack", "{first}");
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(1)).await;

    proxy.cut();
    ready_becomes(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    let started = Instant::now();
    let refused = app
        .client
        .post(app.url(&format!("/api/v1/chat/conversations/{}/messages", chat.id)))
        .bearer_auth(&chat.staff)
        .json(&json!({"body": "during", "client_msg_id": "k-rest"}))
        .send()
        .await
        .expect("an answer");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let started = Instant::now();
    let answer = customer
        .request(send_frame(&chat.id, "during", "k-2"))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["code"], "unavailable", "{answer}");
    let pong = customer.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "still connected: {pong}");

    proxy.restore();
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(10)).await;
    let again = customer
        .request(send_frame(&chat.id, "during", "k-2"))
        .await;
    assert_eq!(
        (again["type"].as_str(), again["message"]["seq"].as_u64()),
        (Some("ack"), Some(2)),
        "{again}"
    );
    let rest = app
        .post(
            &format!("/api/v1/chat/conversations/{}/messages", chat.id),
            &chat.staff,
            json!({"body": "during", "client_msg_id": "k-rest"}),
        )
        .await;
    assert_eq!(rest.status, StatusCode::CREATED, "{rest:?}");
    assert_eq!(rest.body["seq"], 3, "{rest:?}");
    let history = app
        .get(
            &format!("/api/v1/chat/conversations/{}/messages?limit=100", chat.id),
            &chat.staff,
        )
        .await;
    let mut seqs: Vec<u64> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2, 3], "each acked message once, nothing else");
}
