//! What an attacker on the network, or a careless client, must not be able
//! to do: hold sockets open without sending a request, crowd out
//! `/health`, exceed the per-address limit, or fill the logs with errors;
//! and the headers every API response carries for browsers.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chat_domain::{StaffUserId, TenantId};
use chat_server::auth::mint_staff_token;
use chat_server::config::Settings;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::both_databases;
use crate::helpers::{Db, TestApp, AUDIENCE, ISSUER, JWT_SECRET, WAIT};

both_databases!(
    half_sent_requests_neither_starve_health_nor_outlive_the_header_timeout,
    a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout,
    kept_alive_connections_close_after_the_idle_timeout,
    connections_beyond_the_per_address_limit_are_refused_with_429,
    api_responses_are_not_cached_and_carry_hsts_and_cors_when_configured,
);

fn addr(app: &TestApp) -> std::net::SocketAddr {
    app.base
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address")
}

/// Reads until the server closes the connection (EOF or reset), or
/// `deadline` passes: whether it closed, and what it sent.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0) | Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn half_sent_requests_neither_starve_health_nor_outlive_the_header_timeout(db: Db) {
    const SOCKETS: usize = 2_000;
    // Client and server ends of every socket live in this process.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let app = TestApp::spawn_with(
        db,
        &[
            ("CHAT_HTTP_HEADER_TIMEOUT_MS", "3000"),
            ("CHAT_MAX_CONNECTIONS", "1500"),
            ("CHAT_MAX_CONNECTIONS_PER_IP", "0"),
        ],
    )
    .await;
    let target = addr(&app);
    let mut sockets = Vec::with_capacity(SOCKETS);
    for i in 0..SOCKETS {
        let mut stream = TcpStream::connect(target).await.expect("connects");
        // Half a request line, a lone byte, or nothing at all.
        match i % 3 {
            0 => stream
                .write_all(b"GET /api/v1/chat/conversations")
                .await
                .expect("written"),
            1 => stream.write_all(b"G").await.expect("written"),
            _ => {}
        }
        sockets.push(stream);
    }
    let opened = Instant::now();
    // More than the limit are open or being evicted, and /health answers.
    let health = tokio::time::timeout(WAIT, app.client.get(app.url("/health")).send())
        .await
        .expect("/health answers while the limit is reached")
        .expect("a response");
    assert_eq!(health.status(), StatusCode::OK);
    // Every one of them is closed within the header timeout (plus the
    // watchers' slack), without a request ever completing.
    let deadline = opened + Duration::from_secs(3) + WAIT;
    for (i, stream) in sockets.iter_mut().enumerate() {
        let (closed, sent) = closed_by(stream, deadline).await;
        assert!(closed, "socket {i} still open after the header timeout");
        let text = String::from_utf8_lossy(&sent);
        assert!(
            sent.is_empty() || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 503"),
            "socket {i} got {text:?}"
        );
    }
    // And the server still serves.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout(db: Db) {
    let app = TestApp::spawn_with(db, &[("CHAT_HTTP_HEADER_TIMEOUT_MS", "1000")]).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let head = b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut cut_off = false;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
            Ok(Ok(0) | Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(_)) => {
                cut_off = true;
                break;
            }
            Err(_) => {}
        }
    }
    let elapsed = started.elapsed();
    assert!(cut_off, "the trickling head was never cut off");
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut off before the header timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3) + WAIT,
        "cut off long after the header timeout: {elapsed:?}"
    );
}

async fn kept_alive_connections_close_after_the_idle_timeout(db: Db) {
    let app = TestApp::spawn_with(db, &[("CHAT_HTTP_IDLE_TIMEOUT_MS", "700")]).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    // The server's idle clock starts once it has answered, which is after
    // this instant: a close earlier than the timeout after it is too early,
    // however late this test is scheduled (10 ms spare for the listener's
    // millisecond clock).
    let asked = Instant::now();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Kept alive (HTTP/1.1), then closed once idle for the timeout.
    let (closed, _) = closed_by(&mut stream, Instant::now() + WAIT).await;
    assert!(closed, "the idle connection was never closed");
    assert!(
        asked.elapsed() >= Duration::from_millis(690),
        "closed before the idle timeout: {:?}",
        asked.elapsed()
    );
}

async fn connections_beyond_the_per_address_limit_are_refused_with_429(db: Db) {
    let app = TestApp::spawn_with(db, &[("CHAT_MAX_CONNECTIONS_PER_IP", "5")]).await;
    let target = addr(&app);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(target).await.unwrap());
    }
    // Admission happens at accept: give the listener a moment to take them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(target).await.unwrap();
    let (closed, sent) = closed_by(&mut extra, Instant::now() + WAIT).await;
    assert!(closed);
    let text = String::from_utf8_lossy(&sent);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("\"rate_limited\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 5"),
        "{text}"
    );
    // Once those close, the address is welcome again.
    drop(held);
    let deadline = Instant::now() + WAIT;
    loop {
        match app.client.get(app.url("/health")).send().await {
            Ok(response) if response.status() == StatusCode::OK => break,
            _ if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("still refused after the others closed: {other:?}"),
        }
    }
}

async fn api_responses_are_not_cached_and_carry_hsts_and_cors_when_configured(db: Db) {
    let plain = TestApp::spawn(db).await;
    let staff = plain.staff(StaffUserId::new_v4());
    let response = plain
        .client
        .get(plain.url("/api/v1/chat/conversations"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());
    // Errors too: they may name what was asked for.
    let missing = plain
        .client
        .get(plain.url("/api/v1/chat/conversations/not-a-uuid"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["cache-control"], "no-store");
    // Without configured origins a browser on another origin gets no CORS
    // permission.
    let preflight = plain
        .client
        .request(
            reqwest::Method::OPTIONS,
            plain.url("/api/v1/chat/conversations"),
        )
        .header("origin", "https://pharmacy.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    drop(plain);

    let configured = TestApp::spawn_with(
        db,
        &[
            ("CHAT_HSTS_MAX_AGE_SECONDS", "31536000"),
            ("CHAT_CORS_ORIGINS", "https://pharmacy.example"),
        ],
    )
    .await;
    let staff = configured.staff(StaffUserId::new_v4());
    let response = configured
        .client
        .get(configured.url("/api/v1/chat/conversations"))
        .header("origin", "https://pharmacy.example")
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://pharmacy.example"
    );
    let preflight = configured
        .client
        .request(
            reqwest::Method::OPTIONS,
            configured.url("/api/v1/chat/conversations"),
        )
        .header("origin", "https://pharmacy.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://pharmacy.example"
    );
    let foreign = configured
        .client
        .request(
            reqwest::Method::OPTIONS,
            configured.url("/api/v1/chat/conversations"),
        )
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// A child process killed and reaped when dropped, also when a test fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release binary as an operator runs it: client mistakes, however
/// many, never reach the log at ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_are_not_logged_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env: HashMap<String, String> = [
        ("CHAT_BIND_ADDR", format!("127.0.0.1:{port}")),
        ("CHAT_DATA_DIR", dir.path().display().to_string()),
        ("CHAT_JWT_SECRET", JWT_SECRET.to_owned()),
        ("CHAT_JWT_AUDIENCE", AUDIENCE.to_owned()),
        ("CHAT_JWT_ISSUER", ISSUER.to_owned()),
        ("CHAT_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::from_source(&env).expect("settings");
    let token = mint_staff_token(
        &settings.staff_jwt,
        TenantId::new_v4(),
        StaffUserId::new_v4(),
        "pharmacist",
        Duration::from_secs(600),
    )
    .unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Reaped(
        std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the server binary starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(client.get(format!("{base}/health")).send().await, Ok(r) if r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the server never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for _ in 0..20 {
        let unknown = uuid::Uuid::now_v7();
        let response = client
            .get(format!(
                "{base}/api/v1/chat/conversations/{unknown}/messages"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = client
            .post(format!("{base}/api/v1/chat/conversations"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/api/v1/chat/ws?token={token}"
    ))
    .await
    .expect("websocket");
    let cursors: serde_json::Map<String, Value> = (0..1000)
        .map(|_| (uuid::Uuid::now_v7().to_string(), json!(0)))
        .collect();
    socket
        .send(Message::text(
            json!({"type": "resume", "request_id": 1, "cursors": cursors}).to_string(),
        ))
        .await
        .unwrap();
    let answer = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => break serde_json::from_str::<Value>(&text).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("no answer to resume: {other:?}"),
        }
    };
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["failures"].as_array().unwrap().len(), 1000);
    drop(socket);

    // Stop it and read everything it logged.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stopped = false;
    while !stopped && Instant::now() < deadline {
        stopped = matches!(server.0.try_wait(), Ok(Some(_)));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "the server stops on SIGTERM");
    let output = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("\"INFO\"")),
        "the log was captured: {output}"
    );
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("\"ERROR\"") || l.contains("\"WARN\""))
        .collect();
    assert!(
        errors.is_empty(),
        "client mistakes logged as errors: {errors:#?}"
    );
}
