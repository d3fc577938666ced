//! The server under test: a release `chat-server` process the tool starts
//! itself (fresh SQLite file or fresh PostgreSQL database, known secrets),
//! the same server in this process (the CI smoke run), or already running
//! servers given by URL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chat_domain::{CustomerId, StaffUserId, TenantId};
use chat_server::config::{JwtAlgorithm, Settings, StaffJwtSettings};
use reqwest::Method;
use serde_json::{json, Value};

/// The store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    /// The embedded default: one SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Database {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// How to reach (or start) the server.
#[derive(Debug, Clone)]
pub enum Launch {
    /// Start this `chat-server` binary as a child process.
    Process(PathBuf),
    /// Run the server inside this process (no separate memory figure).
    InProcess,
    /// Servers already running at these base URLs (several for
    /// multi-node).
    Running(Vec<String>),
}

/// Everything needed to start or reach the server.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Where the server comes from.
    pub launch: Launch,
    /// Its store.
    pub database: Database,
    /// Database URL of a running server (`--database-url`), for the seeding
    /// and the baseline; for a started server the tool creates its own.
    pub database_url: Option<String>,
    /// PostgreSQL server on which fresh databases are created.
    pub postgres_admin_url: String,
    /// The server's PostgreSQL pool size (`CHAT_DB_MAX_CONNECTIONS`).
    pub pool_size: u32,
    /// HS256 secret of staff tokens (the server's `CHAT_JWT_SECRET`).
    pub jwt_secret: String,
    /// Process id of a running server, to read its memory.
    pub server_pid: Option<u32>,
}

/// The staff token secret given to servers the tool starts.
pub const BENCH_JWT_SECRET: &str = "chat-bench-staff-token-secret-0123456789abcdef";
const BENCH_CUSTOMER_SECRET: &str = "chat-bench-customer-token-secret-0123456789abcdef";

enum Running {
    Child(tokio::process::Child),
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        served: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
    External,
}

impl Running {
    /// Starts the server of `launch` with `env`; also gives the process whose
    /// memory is the server's and whether that is this process.
    async fn start(
        launch: &Launch,
        env: &HashMap<String, String>,
        dir: &Path,
    ) -> anyhow::Result<(Self, Option<u32>, bool)> {
        Ok(match launch {
            Launch::Process(bin) => {
                let log = std::fs::File::create(dir.join("server.log"))
                    .context("creating the server log file")?;
                let child = tokio::process::Command::new(bin)
                    .envs(env)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| {
                        format!(
                            "starting {} (build it with `cargo build --release -p server`, or pass --server-bin / --in-process)",
                            bin.display()
                        )
                    })?;
                let pid = child.id();
                (Self::Child(child), pid, false)
            }
            Launch::InProcess => {
                let settings = Settings::from_source(env).context("server settings")?;
                let app = chat_server::Application::build(settings)
                    .await
                    .context("building the in-process server")?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let served = tokio::spawn(app.run_until(async move {
                    let _ = stopped.await;
                }));
                (
                    Self::InProcess {
                        stop: Some(stop),
                        served,
                    },
                    Some(std::process::id()),
                    true,
                )
            }
            Launch::Running(_) => bail!("a running server is reached, not started"),
        })
    }
}

/// A server ready to take load.
pub struct Target {
    /// Base URLs (`http://host:port`), one per node.
    pub bases: Vec<String>,
    /// Its store.
    pub database: Database,
    /// The database the server uses, when known (seeding).
    pub database_url: Option<String>,
    /// PostgreSQL server for the baseline's fresh databases.
    pub postgres_admin_url: String,
    /// Process whose resident memory is the server's (`None` when unknown).
    pub pid: Option<u32>,
    /// Whether the load generator shares the server's process.
    pub in_process: bool,
    /// HTTP client for set-up calls.
    pub http: reqwest::Client,
    staff_jwt: StaffJwtSettings,
    running: Running,
    created_database: Option<String>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("bases", &self.bases)
            .field("database", &self.database)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

pub use adapters_postgres::testing::{drop_database, with_database};

/// Creates an empty database `chat_bench_<uuid>` and returns its name.
///
/// # Errors
/// When PostgreSQL cannot be reached or refuses.
pub async fn create_database(admin_url: &str) -> anyhow::Result<String> {
    adapters_postgres::testing::create_database(admin_url, "chat_bench")
        .await
        .context("creating a database on --postgres-url")
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("reading the port")?.port())
}

impl Target {
    /// Starts (or reaches) the server and waits until it answers `/health`.
    ///
    /// # Errors
    /// When the server cannot be started or does not become healthy.
    pub async fn start(options: &TargetOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("chat-bench-")
            .tempdir()
            .context("creating a temporary folder")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        let staff_jwt = StaffJwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            secret: Some(chat_server::config::Secret::new(options.jwt_secret.clone())),
            public_key_pem: None,
            issuer: None,
            audience: Vec::new(),
            tenant_claim: "tenant_id".into(),
            admin_roles: vec!["admin".into()],
            leeway_seconds: 30,
        };
        let (bases, database_url, created_database, running, pid, in_process) =
            if let Launch::Running(bases) = &options.launch {
                (
                    bases
                        .iter()
                        .map(|b| b.trim_end_matches('/').to_owned())
                        .collect(),
                    options.database_url.clone(),
                    None,
                    Running::External,
                    options.server_pid,
                    false,
                )
            } else {
                let mut created_database = None;
                let database_url = match options.database {
                    Database::Sqlite => {
                        format!("sqlite://{}", dir.path().join("chat.db").display())
                    }
                    Database::Postgres => {
                        let name = create_database(&options.postgres_admin_url).await?;
                        created_database = Some(name.clone());
                        with_database(&options.postgres_admin_url, &name)
                    }
                };
                let port = free_port()?;
                let mut env: HashMap<String, String> = HashMap::new();
                env.insert("CHAT_BIND_ADDR".into(), format!("127.0.0.1:{port}"));
                env.insert("CHAT_DATA_DIR".into(), dir.path().display().to_string());
                env.insert("CHAT_DATABASE_URL".into(), database_url.clone());
                env.insert(
                    "CHAT_DB_MAX_CONNECTIONS".into(),
                    options.pool_size.to_string(),
                );
                env.insert("CHAT_JWT_SECRET".into(), options.jwt_secret.clone());
                env.insert(
                    "CHAT_CUSTOMER_TOKEN_SECRET".into(),
                    BENCH_CUSTOMER_SECRET.into(),
                );
                // Capacity is measured, not the per-sender abuse limit.
                env.insert("CHAT_SEND_RATE_PER_MINUTE".into(), "0".into());
                // Every simulated client comes from 127.0.0.1, and the idle
                // scenario holds thousands of sockets per user.
                env.insert("CHAT_MAX_CONNECTIONS_PER_IP".into(), "0".into());
                env.insert("CHAT_WS_MAX_CONNECTIONS_PER_USER".into(), "0".into());
                let (running, pid, in_process) =
                    Running::start(&options.launch, &env, dir.path()).await?;
                (
                    vec![format!("http://127.0.0.1:{port}")],
                    Some(database_url),
                    created_database,
                    running,
                    pid,
                    in_process,
                )
            };
        let mut target = Self {
            bases,
            database: options.database,
            database_url,
            postgres_admin_url: options.postgres_admin_url.clone(),
            pid,
            in_process,
            http,
            staff_jwt,
            running,
            created_database,
            dir,
        };
        if let Launch::Running(_) = options.launch {
            target.wait_healthy(Duration::from_secs(10)).await?;
        } else if let Err(err) = target.wait_healthy(Duration::from_secs(60)).await {
            let log =
                std::fs::read_to_string(target.dir.path().join("server.log")).unwrap_or_default();
            target.stop().await;
            bail!("{err:#}\nserver log:\n{log}");
        }
        Ok(target)
    }

    async fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for base in &self.bases {
            loop {
                if let Running::Child(child) = &mut self.running {
                    if let Ok(Some(status)) = child.try_wait() {
                        bail!("the server exited at start-up ({status})");
                    }
                }
                let ok = self
                    .http
                    .get(format!("{base}/ready"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{base} did not become ready within {within:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The WebSocket URL of node `i` (round robin over the nodes).
    pub fn ws_url(&self, i: usize, token: &str) -> String {
        let base = &self.bases[i % self.bases.len()];
        format!(
            "{}/api/v1/chat/ws?token={token}",
            base.replacen("http://", "ws://", 1)
                .replacen("https://", "wss://", 1)
        )
    }

    /// The base URL of node `i` (round robin).
    pub fn base(&self, i: usize) -> &str {
        &self.bases[i % self.bases.len()]
    }

    /// A staff token (HS256, one hour).
    ///
    /// # Errors
    /// When signing fails.
    pub fn staff_token(
        &self,
        tenant: TenantId,
        user: StaffUserId,
        role: &str,
    ) -> anyhow::Result<String> {
        chat_server::auth::mint_staff_token(
            &self.staff_jwt,
            tenant,
            user,
            role,
            Duration::from_secs(3600),
        )
    }

    /// A request to the chat API of node 0 (`path` after `/api/v1/chat`)
    /// with a bearer token; the JSON answer of a success.
    ///
    /// # Errors
    /// When the request fails or the server answers with an error.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/chat{path}", self.base(0));
        let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer of {method} {path}"))?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {body}");
        }
        Ok(body)
    }

    /// `GET path` (see [`Target::request`]).
    ///
    /// # Errors
    /// When the request fails or the server answers with an error.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.request(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// A customer chat token, issued by the server to `staff_token`'s
    /// tenant.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn customer_token(
        &self,
        staff_token: &str,
        customer: CustomerId,
    ) -> anyhow::Result<String> {
        let body = self
            .post(
                "/customer-token",
                staff_token,
                json!({"customer_id": customer.to_string(), "ttl_seconds": 3600}),
            )
            .await?;
        body["token"]
            .as_str()
            .map(str::to_owned)
            .context("customer-token answer without a token")
    }

    /// Gets or creates the conversation of `customer` (the shared inbox,
    /// or `clinician`'s private thread); returns its id.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn open_conversation(
        &self,
        staff_token: &str,
        customer: CustomerId,
        clinician: Option<StaffUserId>,
    ) -> anyhow::Result<String> {
        let mut body = json!({"customer_id": customer.to_string()});
        if let Some(clinician) = clinician {
            body["staff_user_id"] = json!(clinician.to_string());
        }
        let body = self.post("/conversations", staff_token, body).await?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .context("conversation answer without an id")
    }

    /// Creates a private channel named `name` (made unique) owned by
    /// `owner_token`'s user, with `members`; returns its id.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn create_channel(
        &self,
        owner_token: &str,
        name: &str,
        members: &[StaffUserId],
    ) -> anyhow::Result<String> {
        let members: Vec<String> = members.iter().map(ToString::to_string).collect();
        let body = json!({
            "name": format!("{name} {}", uuid::Uuid::now_v7().simple()),
            "visibility": "private",
            "member_ids": members,
        });
        let body = self.post("/channels", owner_token, body).await?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .context("channel answer without an id")
    }

    /// Adds `users` (at most 100) to channel `channel`.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn add_members(
        &self,
        token: &str,
        channel: &str,
        users: &[StaffUserId],
    ) -> anyhow::Result<()> {
        let users: Vec<String> = users.iter().map(ToString::to_string).collect();
        self.post(
            &format!("/channels/{channel}/members"),
            token,
            json!({"user_ids": users}),
        )
        .await?;
        Ok(())
    }

    /// Removes `user` from channel `channel`.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn remove_member(
        &self,
        token: &str,
        channel: &str,
        user: StaffUserId,
    ) -> anyhow::Result<()> {
        let url = format!(
            "{}/api/v1/chat/channels/{channel}/members/{user}",
            self.base(0)
        );
        let response = self
            .http
            .delete(&url)
            .bearer_auth(token)
            .send()
            .await
            .context("removing a member")?;
        if !response.status().is_success() {
            bail!("removing a member: {}", response.status());
        }
        Ok(())
    }

    /// The server's resident memory in KiB (`VmRSS`), when its process is
    /// known.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid?)
    }

    /// Stops a server the tool started and drops its database.
    pub async fn stop(mut self) {
        match &mut self.running {
            Running::Child(child) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Running::InProcess { stop, served } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                let _ = tokio::time::timeout(Duration::from_secs(15), served).await;
            }
            Running::External => {}
        }
        if let Some(name) = self.created_database.take() {
            drop_database(&self.postgres_admin_url, &name).await;
        }
    }
}

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_memory_can_be_read() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
