//! Spawning the application and talking to it.

use std::collections::HashMap;
use std::time::Duration;

use chat_domain::{CustomerId, StaffUserId, TenantId};
use chat_server::auth::mint_staff_token;
use chat_server::config::Settings;
use chat_server::Application;
use reqwest::{Method, StatusCode};
use serde_json::Value;

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

    /// Sends a message; returns the reply.
    pub async fn send(&self, token: &str, conversation: &str, body: &str) -> Reply {
        self.post(
            &format!("/api/v1/chat/conversations/{conversation}/messages"),
            token,
            serde_json::json!({"body": body}),
        )
        .await
    }
}
