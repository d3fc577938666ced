//! Spawning the application and talking to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_domain::{CustomerId, StaffUserId, TenantId};
use chat_server::auth::mint_staff_token;
use chat_server::config::Settings;
use chat_server::Application;
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Which store the app runs on.
#[derive(Debug, Clone, Copy)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Expands each listed `async fn name(db: Db)` into one test per database.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Postgres).await;
                }
            )*
        }
    };
}

pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";
pub const AUDIENCE: &str = "chat-api";
pub const ISSUER: &str = "https://host.example";

/// How long a test waits for what should come.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub tenant: TenantId,
    /// The WebSocket transport of the running app.
    pub realtime: std::sync::Arc<chat_server::ws::Realtime>,
    /// Completing this stops the app gracefully.
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The app's serving task, done once it stopped.
    pub served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The variables it was built from, for [`TestApp::spawn_peer`].
    env: HashMap<String, String>,
    _dir: tempfile::TempDir,
}

/// A JSON response: status and parsed body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// Asserts the API error shape and returns the code.
    #[track_caller]
    pub fn error_code(&self) -> &str {
        let code = self.body["error"]["code"].as_str();
        assert!(
            code.is_some() && self.body["error"]["message"].is_string(),
            "not an API error: {self:?}"
        );
        code.unwrap_or_default()
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.error_code(), code, "{self:?}");
    }
}

/// The inbox conversation of a new customer, as [`TestApp::chat`] opens it.
pub struct Chat {
    /// The token of the staff member who opened it.
    pub staff: String,
    pub customer: CustomerId,
    /// The conversation's id.
    pub id: String,
    /// The customer's chat token.
    pub customer_token: String,
}

impl TestApp {
    pub async fn spawn(db: Db) -> Self {
        Self::spawn_with(db, &[]).await
    }

    /// Spawns with extra `CHAT_*` variables.
    pub async fn spawn_with(db: Db, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("CHAT_BIND_ADDR".into(), "127.0.0.1:0".into());
        env.insert("CHAT_DATA_DIR".into(), dir.path().display().to_string());
        env.insert("CHAT_JWT_SECRET".into(), JWT_SECRET.into());
        env.insert("CHAT_JWT_AUDIENCE".into(), AUDIENCE.into());
        env.insert("CHAT_JWT_ISSUER".into(), ISSUER.into());
        env.insert("CHAT_DB_MAX_CONNECTIONS".into(), "5".into());
        // Tests send in bulk; the tests of the limit itself turn it on.
        env.insert("CHAT_SEND_RATE_PER_MINUTE".into(), "0".into());
        if let Db::Postgres = db {
            let url = adapters_postgres::testing::fresh_database(
                &adapters_postgres::testing::admin_url(),
            )
            .await
            .expect("a fresh PostgreSQL database (is PostgreSQL running?)");
            env.insert("CHAT_DATABASE_URL".into(), url);
        }
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        Self::launch(env, dir, TenantId::new_v4()).await
    }

    /// Spawns another node of this app's deployment: the same database,
    /// secrets, tenant and variables (`extra` added or overriding), on its
    /// own port with its own data folder. Nodes share events and presence
    /// only through Redis (`CHAT_REDIS_URL`); PostgreSQL only, as SQLite is
    /// a single node's file.
    pub async fn spawn_peer(&self, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env = self.env.clone();
        env.insert("CHAT_DATA_DIR".into(), dir.path().display().to_string());
        // Generated into the first node's data folder otherwise.
        env.insert(
            "CHAT_CUSTOMER_TOKEN_SECRET".into(),
            self.settings.customer_token_secret.expose().to_owned(),
        );
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        Self::launch(env, dir, self.tenant).await
    }

    async fn launch(
        env: HashMap<String, String>,
        dir: tempfile::TempDir,
        tenant: TenantId,
    ) -> Self {
        let settings = Settings::from_source(&env).expect("settings");
        let app = Application::build(settings.clone())
            .await
            .expect("app builds");
        let addr = app.local_addr().expect("bound");
        let realtime = app.realtime();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Self {
            base: format!("http://{addr}"),
            client,
            settings,
            tenant,
            realtime,
            stop: Some(stop),
            served: Some(served),
            env,
            _dir: dir,
        }
    }

    /// The `ws://` URL of the WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!(
            "{}/api/v1/chat/ws",
            self.base.replacen("http://", "ws://", 1)
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A staff token of this app's tenant.
    pub fn staff(&self, user: StaffUserId) -> String {
        self.token(self.tenant, user, "pharmacist")
    }

    pub fn admin(&self, user: StaffUserId) -> String {
        self.token(self.tenant, user, "admin")
    }

    pub fn token(&self, tenant: TenantId, user: StaffUserId, role: &str) -> String {
        mint_staff_token(
            &self.settings.staff_jwt,
            tenant,
            user,
            role,
            Duration::from_secs(600),
        )
        .expect("mint")
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request completes");
        Self::reply(response).await
    }

    pub async fn reply(response: reqwest::Response) -> Reply {
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        assert!(status.as_u16() < 500, "server error {status}: {body}");
        Reply { status, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Sends raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        Self::reply(request.send().await.expect("request completes")).await
    }

    /// Creates (or gets) the inbox conversation of `customer`; returns its id.
    pub async fn open_conversation(&self, staff_token: &str, customer: CustomerId) -> String {
        let reply = self
            .post(
                "/api/v1/chat/conversations",
                staff_token,
                serde_json::json!({"customer_id": customer.to_string()}),
            )
            .await;
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::OK,
            "{reply:?}"
        );
        reply.body["id"].as_str().expect("id").to_owned()
    }

    /// A customer chat token issued through the API.
    pub async fn customer_token(&self, staff_token: &str, customer: CustomerId) -> String {
        let reply = self
            .post(
                "/api/v1/chat/customer-token",
                staff_token,
                serde_json::json!({"customer_id": customer.to_string()}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.body["token"].as_str().expect("token").to_owned()
    }

    /// A new customer's inbox conversation, opened by a new staff member,
    /// and the customer's token.
    pub async fn chat(&self) -> Chat {
        let staff = self.staff(StaffUserId::new_v4());
        let customer = CustomerId::new_v4();
        let id = self.open_conversation(&staff, customer).await;
        let customer_token = self.customer_token(&staff, customer).await;
        Chat {
            staff,
            customer,
            id,
            customer_token,
        }
    }

    /// Sends a message; returns the reply.
    pub async fn send(&self, token: &str, conversation: &str, body: &str) -> Reply {
        self.post(
            &format!("/api/v1/chat/conversations/{conversation}/messages"),
            token,
            serde_json::json!({"body": body}),
        )
        .await
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics answer");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }

    /// Waits until the app has `n` open sockets (registration follows the
    /// upgrade asynchronously).
    pub async fn wait_connections(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.realtime.hub.connection_count() != n {
            assert!(
                Instant::now() < deadline,
                "expected {n} connections, have {}",
                self.realtime.hub.connection_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A test WebSocket client.
pub struct Client {
    pub socket: Socket,
}

impl Client {
    pub async fn connect(app: &TestApp, token: &str) -> Self {
        let url = format!("{}?token={token}", app.ws_url());
        let (socket, response) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        Self { socket }
    }

    /// Tries to connect and expects a refusal before the upgrade: its
    /// status and JSON error body.
    pub async fn refused(app: &TestApp, token: &str) -> (StatusCode, Value) {
        let url = format!("{}?token={token}", app.ws_url());
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response.body().as_deref().unwrap_or_default();
                (status, serde_json::from_slice(body).unwrap_or(Value::Null))
            }
            other => panic!("expected a refusal before the upgrade, got {other:?}"),
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.socket
            .send(Message::text(value.to_string()))
            .await
            .expect("frame sent");
    }

    /// The next JSON frame, skipping control frames.
    pub async fn next(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .expect("a frame within the deadline")
                .expect("socket still open")
                .expect("frame readable");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next frame of type `kind`, skipping the others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Frames arriving within `window` (none expected to be control-only).
    pub async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        let deadline = Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Err(_) => return frames,
                Ok(Some(Ok(Message::Text(text)))) => {
                    frames.push(serde_json::from_str(&text).expect("JSON"))
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The frames of the types `kinds` arriving within `window`.
    pub async fn drain_of(&mut self, window: Duration, kinds: &[&str]) -> Vec<Value> {
        let mut frames = self.drain(window).await;
        frames.retain(|f| kinds.iter().any(|kind| f["type"] == *kind));
        frames
    }

    /// Sends a frame and returns its answer (`ack` or `error`, matched by
    /// request id), skipping events.
    pub async fn request(&mut self, value: Value) -> Value {
        self.request_keeping(value, &mut Vec::new()).await
    }

    /// [`Client::request`], adding the frames that come before the answer
    /// to `skipped`.
    pub async fn request_keeping(&mut self, mut value: Value, skipped: &mut Vec<Value>) -> Value {
        let id = uuid::Uuid::now_v7().to_string();
        value["request_id"] = json!(id);
        self.send(value).await;
        loop {
            let frame = self.next().await;
            if frame["request_id"] == id.as_str() {
                return frame;
            }
            skipped.push(frame);
        }
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn closed(&mut self) -> Option<CloseCode> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.next())
                .await
                .expect("closed within the deadline")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// A `send_message` frame.
pub fn send_frame(conversation: &str, body: &str, key: &str) -> Value {
    json!({"type": "send_message", "conversation_id": conversation, "body": body, "client_msg_id": key})
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
pub fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {metrics}"))
}
