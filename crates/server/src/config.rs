//! Configuration: one [`Settings`] value, read from `CHAT_*` environment
//! variables with defaults that run the embedded setup (SQLite under
//! `./data/`) without any variable set.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

/// A secret value that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; keep the result out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where conversations and messages are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSettings {
    /// An SQLite file (the embedded default).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres {
        /// Connection URL.
        url: Secret,
        /// Pool size.
        max_connections: u32,
    },
}

/// The signature algorithm staff tokens must use. Tokens with any other
/// `alg`, `none` included, are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with a public key.
    Rs256,
    /// Ed25519, verified with a public key.
    EdDsa,
}

/// How staff tokens issued by the host backend are verified.
#[derive(Debug, Clone)]
pub struct StaffJwtSettings {
    /// The pinned algorithm.
    pub algorithm: JwtAlgorithm,
    /// HS256 secret.
    pub secret: Option<Secret>,
    /// RS256 / EdDSA public key, PEM.
    pub public_key_pem: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values, when set.
    pub audience: Vec<String>,
    /// Name of the claim that carries the tenant id.
    pub tenant_claim: String,
    /// Role claim values that mean admin.
    pub admin_roles: Vec<String>,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_seconds: u64,
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Folder for the SQLite file and generated development secrets.
    pub data_dir: PathBuf,
    /// The store.
    pub database: DatabaseSettings,
    /// Staff token verification.
    pub staff_jwt: StaffJwtSettings,
    /// Key that signs and verifies customer chat tokens.
    pub customer_token_secret: Secret,
    /// Longest customer token lifetime a staff member may ask for.
    pub customer_token_max_ttl: Duration,
    /// Requests taking longer are cut off with 408.
    pub request_timeout: Duration,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// WebSocket transport and cross-node fan-out.
    pub realtime: RealtimeSettings,
    /// Attachments: file store, limits, scanning, orphan sweep.
    pub attachments: crate::attachments::AttachmentConfig,
    /// Sends allowed per sender and minute (0: no limit).
    pub send_rate_per_minute: u32,
    /// Sends a sender may make in a burst before the rate applies.
    pub send_burst: u32,
    /// Connection limits and timeouts of the HTTP listener.
    pub listener: crate::listener::ListenerSettings,
    /// Response headers for browsers: HSTS and CORS.
    pub browser: BrowserSettings,
}

/// What the server tells browsers beside the API itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserSettings {
    /// `Strict-Transport-Security: max-age=<this>` on every response, when
    /// set (for deployments that browsers reach over HTTPS only).
    pub hsts_max_age_seconds: Option<u64>,
    /// Origins allowed to call the API from a browser (CORS); none by
    /// default.
    pub cors_origins: Vec<String>,
}

/// WebSocket transport and cross-node fan-out.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// Largest accepted WebSocket message, in bytes (larger closes with 1009).
    pub max_frame_bytes: usize,
    /// Events queued per connection before a slow client is disconnected.
    pub queue_capacity: usize,
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// A connection silent for this long (no frame, no pong) is dropped.
    pub idle_timeout: Duration,
    /// Most messages one `resume` replays per conversation.
    pub resume_max_messages: usize,
    /// A typing start is relayed at most this often per conversation.
    pub typing_throttle: Duration,
    /// A typing indicator not refreshed for this long stops by itself.
    pub typing_expiry: Duration,
    /// Redis URL for cross-node events and presence; `None` runs one node
    /// with the in-process bus.
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key and channel (several deployments can share
    /// one Redis).
    pub redis_prefix: String,
    /// With Redis: how long a connection counts as open without a refresh
    /// (every ping interval), so that the users of a crashed node go
    /// offline.
    pub redis_presence_ttl: Duration,
    /// Most WebSocket connections one user (staff member or customer) may
    /// have open at once, over every node; 0 for no limit.
    pub max_connections_per_user: usize,
}

/// A source of configuration variables (the process environment, or a map
/// in tests).
pub trait Env {
    /// The value of `name`, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.trim().is_empty())
    }
}

pub(crate) fn parse_var<T: std::str::FromStr>(
    env: &dyn Env,
    name: &str,
    default: T,
) -> anyhow::Result<T>
where
    T::Err: fmt::Display,
{
    match env.var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}")),
    }
}

fn list_var(env: &dyn Env, name: &str) -> Vec<String> {
    env.var(name)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `data_dir/name`, or creates it with a fresh random secret. Used
/// only when no secret is configured, so the embedded default runs (and the
/// `mint-token` command signs with the same key) without any set-up.
fn load_or_create_secret(data_dir: &Path, name: &str) -> anyhow::Result<Secret> {
    use rand::RngCore;
    let path = data_dir.join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing));
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private_file(&path, &secret)
        .with_context(|| format!("writing generated secret to {}", path.display()))?;
    tracing::warn!(
        file = %path.display(),
        "no secret configured: generated a development secret; configure one for production"
    );
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// The log format from `CHAT_LOG_FORMAT` (`text`, the default, or `json`).
///
/// # Errors
/// For any other value.
pub fn log_format(env: &dyn Env) -> anyhow::Result<LogFormat> {
    match env.var("CHAT_LOG_FORMAT").as_deref() {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => bail!("CHAT_LOG_FORMAT={other:?}: expected text or json"),
    }
}

fn realtime_settings(env: &dyn Env) -> anyhow::Result<RealtimeSettings> {
    let max_frame_bytes: usize = parse_var(env, "CHAT_WS_MAX_FRAME_BYTES", 64 * 1024)?;
    let queue_capacity: usize = parse_var(env, "CHAT_WS_QUEUE_CAPACITY", 1024)?;
    let ping_ms: u64 = parse_var(env, "CHAT_WS_PING_INTERVAL_MS", 20_000)?;
    let idle_ms: u64 = parse_var(env, "CHAT_WS_IDLE_TIMEOUT_MS", 60_000)?;
    let resume_max_messages: usize = parse_var(env, "CHAT_WS_RESUME_MAX_MESSAGES", 10_000)?;
    let typing_throttle_ms: u64 = parse_var(env, "CHAT_WS_TYPING_THROTTLE_MS", 2_000)?;
    let typing_expiry_ms: u64 = parse_var(env, "CHAT_WS_TYPING_EXPIRY_MS", 6_000)?;
    if typing_expiry_ms == 0 {
        bail!("CHAT_WS_TYPING_EXPIRY_MS must be at least 1");
    }
    if max_frame_bytes < 1024 {
        bail!("CHAT_WS_MAX_FRAME_BYTES must be at least 1024");
    }
    if queue_capacity == 0 {
        bail!("CHAT_WS_QUEUE_CAPACITY must be at least 1");
    }
    if ping_ms == 0 || idle_ms <= ping_ms {
        bail!("CHAT_WS_IDLE_TIMEOUT_MS must be longer than CHAT_WS_PING_INTERVAL_MS (and both above 0)");
    }
    if resume_max_messages == 0 {
        bail!("CHAT_WS_RESUME_MAX_MESSAGES must be at least 1");
    }
    let redis_url = match env.var("CHAT_REDIS_URL") {
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Some(Secret::new(url))
        }
        Some(_) => bail!("CHAT_REDIS_URL must start with redis:// (or rediss:// for TLS)"),
        None => None,
    };
    let redis_prefix = env
        .var("CHAT_REDIS_PREFIX")
        .unwrap_or_else(|| "chat".into());
    if redis_prefix.chars().any(char::is_whitespace) {
        bail!("CHAT_REDIS_PREFIX must not contain whitespace");
    }
    let presence_ttl_ms: u64 =
        parse_var(env, "CHAT_REDIS_PRESENCE_TTL_MS", ping_ms.saturating_mul(3))?;
    let max_connections_per_user: usize = parse_var(env, "CHAT_WS_MAX_CONNECTIONS_PER_USER", 20)?;
    if presence_ttl_ms <= ping_ms {
        bail!("CHAT_REDIS_PRESENCE_TTL_MS must be longer than CHAT_WS_PING_INTERVAL_MS (connections are refreshed every ping)");
    }
    Ok(RealtimeSettings {
        max_frame_bytes,
        queue_capacity,
        ping_interval: Duration::from_millis(ping_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        resume_max_messages,
        typing_throttle: Duration::from_millis(typing_throttle_ms),
        typing_expiry: Duration::from_millis(typing_expiry_ms),
        redis_url,
        redis_prefix,
        redis_presence_ttl: Duration::from_millis(presence_ttl_ms),
        max_connections_per_user,
    })
}

fn listener_settings(env: &dyn Env) -> anyhow::Result<crate::listener::ListenerSettings> {
    let defaults = crate::listener::ListenerSettings::default();
    let header_ms: u64 = parse_var(
        env,
        "CHAT_HTTP_HEADER_TIMEOUT_MS",
        u64::try_from(defaults.header_timeout.as_millis()).unwrap_or(u64::MAX),
    )?;
    let idle_ms: u64 = parse_var(
        env,
        "CHAT_HTTP_IDLE_TIMEOUT_MS",
        u64::try_from(defaults.idle_timeout.as_millis()).unwrap_or(u64::MAX),
    )?;
    if header_ms == 0 || idle_ms == 0 {
        bail!("CHAT_HTTP_HEADER_TIMEOUT_MS and CHAT_HTTP_IDLE_TIMEOUT_MS must be at least 1");
    }
    let max_connections = match env.var("CHAT_MAX_CONNECTIONS") {
        None => None,
        Some(_) => {
            let max: usize = parse_var(env, "CHAT_MAX_CONNECTIONS", 0)?;
            if max == 0 {
                bail!("CHAT_MAX_CONNECTIONS must be at least 1 (leave it unset for the default)");
            }
            Some(max)
        }
    };
    Ok(crate::listener::ListenerSettings {
        header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
        max_connections_per_ip: parse_var(
            env,
            "CHAT_MAX_CONNECTIONS_PER_IP",
            defaults.max_connections_per_ip,
        )?,
    })
}

fn browser_settings(env: &dyn Env) -> anyhow::Result<BrowserSettings> {
    let hsts_max_age_seconds = match env.var("CHAT_HSTS_MAX_AGE_SECONDS") {
        None => None,
        Some(_) => Some(parse_var(env, "CHAT_HSTS_MAX_AGE_SECONDS", 0u64)?),
    };
    let cors_origins = list_var(env, "CHAT_CORS_ORIGINS");
    for origin in &cors_origins {
        let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.ends_with('/')
            && axum::http::HeaderValue::from_str(origin).is_ok();
        if !valid {
            bail!("CHAT_CORS_ORIGINS: {origin:?} is not an origin (scheme://host[:port], no path)");
        }
    }
    Ok(BrowserSettings {
        hsts_max_age_seconds,
        cors_origins,
    })
}

impl Settings {
    /// Settings from the process environment.
    ///
    /// # Errors
    /// A message naming the variable that is invalid.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Settings from any variable source. Generates and stores development
    /// secrets under the data folder when none are configured.
    ///
    /// # Errors
    /// A message naming the variable that is invalid.
    pub fn from_source(env: &dyn Env) -> anyhow::Result<Self> {
        let bind: SocketAddr = parse_var(env, "CHAT_BIND_ADDR", ([127, 0, 0, 1], 8080).into())?;
        let data_dir = PathBuf::from(env.var("CHAT_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let max_connections: u32 = parse_var(env, "CHAT_DB_MAX_CONNECTIONS", 10)?;
        if max_connections == 0 {
            bail!("CHAT_DB_MAX_CONNECTIONS must be at least 1");
        }
        let database = match env.var("CHAT_DATABASE_URL") {
            None => DatabaseSettings::Sqlite {
                path: data_dir.join("chat.db"),
            },
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseSettings::Postgres {
                    url: Secret::new(url),
                    max_connections,
                }
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//")
                    .split('?')
                    .next()
                    .unwrap_or_default();
                if path.is_empty() {
                    bail!("CHAT_DATABASE_URL: an sqlite URL needs a file path, e.g. sqlite://data/chat.db");
                }
                DatabaseSettings::Sqlite {
                    path: PathBuf::from(path),
                }
            }
            Some(_) => {
                bail!("CHAT_DATABASE_URL must start with postgres://, postgresql:// or sqlite://")
            }
        };

        let algorithm = match env.var("CHAT_JWT_ALGORITHM").as_deref().map(str::trim) {
            None | Some("HS256") => JwtAlgorithm::Hs256,
            Some("RS256") => JwtAlgorithm::Rs256,
            Some("EdDSA") => JwtAlgorithm::EdDsa,
            Some(other) => bail!("CHAT_JWT_ALGORITHM={other:?}: expected HS256, RS256 or EdDSA"),
        };
        let public_key_pem = match (
            env.var("CHAT_JWT_PUBLIC_KEY"),
            env.var("CHAT_JWT_PUBLIC_KEY_FILE"),
        ) {
            (Some(pem), _) => Some(pem),
            (None, Some(file)) => Some(
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading CHAT_JWT_PUBLIC_KEY_FILE {file}"))?,
            ),
            (None, None) => None,
        };
        let secret = match (algorithm, env.var("CHAT_JWT_SECRET")) {
            (JwtAlgorithm::Hs256, Some(secret)) => {
                if secret.len() < 32 {
                    bail!("CHAT_JWT_SECRET must be at least 32 bytes long");
                }
                Some(Secret::new(secret))
            }
            (JwtAlgorithm::Hs256, None) => {
                Some(load_or_create_secret(&data_dir, "dev-jwt-secret")?)
            }
            (_, _) => {
                if public_key_pem.is_none() {
                    bail!("CHAT_JWT_ALGORITHM RS256/EdDSA needs CHAT_JWT_PUBLIC_KEY or CHAT_JWT_PUBLIC_KEY_FILE");
                }
                None
            }
        };
        let staff_jwt = StaffJwtSettings {
            algorithm,
            secret,
            public_key_pem,
            issuer: env.var("CHAT_JWT_ISSUER"),
            audience: list_var(env, "CHAT_JWT_AUDIENCE"),
            tenant_claim: env
                .var("CHAT_JWT_TENANT_CLAIM")
                .unwrap_or_else(|| "tenant_id".into()),
            admin_roles: {
                let roles = list_var(env, "CHAT_JWT_ADMIN_ROLES");
                if roles.is_empty() {
                    vec!["admin".into()]
                } else {
                    roles
                }
            },
            leeway_seconds: parse_var(env, "CHAT_JWT_LEEWAY_SECONDS", 30)?,
        };

        let customer_token_secret = match env.var("CHAT_CUSTOMER_TOKEN_SECRET") {
            Some(secret) if secret.len() < 32 => {
                bail!("CHAT_CUSTOMER_TOKEN_SECRET must be at least 32 bytes long")
            }
            Some(secret) => Secret::new(secret),
            None => load_or_create_secret(&data_dir, "dev-customer-token-secret")?,
        };
        let max_ttl: u64 = parse_var(env, "CHAT_CUSTOMER_TOKEN_MAX_TTL_SECONDS", 86_400)?;
        if max_ttl == 0 || max_ttl > 86_400 {
            bail!("CHAT_CUSTOMER_TOKEN_MAX_TTL_SECONDS must be between 1 and 86400 (24 h)");
        }
        let timeout: u64 = parse_var(env, "CHAT_REQUEST_TIMEOUT_SECONDS", 30)?;
        if timeout == 0 {
            bail!("CHAT_REQUEST_TIMEOUT_SECONDS must be at least 1");
        }
        let log_format = log_format(env)?;
        let attachments = crate::attachments::AttachmentConfig::from_source(env, &data_dir)?;
        Ok(Self {
            bind,
            data_dir,
            database,
            staff_jwt,
            customer_token_secret,
            customer_token_max_ttl: Duration::from_secs(max_ttl),
            request_timeout: Duration::from_secs(timeout),
            max_request_bytes: parse_var(env, "CHAT_MAX_REQUEST_BYTES", 64 * 1024)?,
            log_format,
            realtime: realtime_settings(env)?,
            send_rate_per_minute: parse_var(env, "CHAT_SEND_RATE_PER_MINUTE", 600)?,
            send_burst: parse_var(env, "CHAT_SEND_BURST", 100)?,
            attachments,
            listener: listener_settings(env)?,
            browser: browser_settings(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)], dir: &Path) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.entry("CHAT_DATA_DIR".into())
            .or_insert_with(|| dir.display().to_string());
        map
    }

    #[test]
    fn defaults_run_the_embedded_setup_and_persist_generated_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_source(&env(&[], dir.path())).unwrap();
        assert_eq!(settings.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            settings.database,
            DatabaseSettings::Sqlite {
                path: dir.path().join("chat.db")
            }
        );
        assert_eq!(settings.staff_jwt.algorithm, JwtAlgorithm::Hs256);
        assert_eq!(settings.staff_jwt.tenant_claim, "tenant_id");
        let again = Settings::from_source(&env(&[], dir.path())).unwrap();
        assert_eq!(
            again.staff_jwt.secret, settings.staff_jwt.secret,
            "secret is reused"
        );
        assert_ne!(
            settings.staff_jwt.secret.as_ref().map(Secret::expose),
            Some(settings.customer_token_secret.expose())
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("CHAT_BIND_ADDR", "nope", "CHAT_BIND_ADDR"),
            ("CHAT_DATABASE_URL", "mysql://x", "CHAT_DATABASE_URL"),
            ("CHAT_JWT_ALGORITHM", "none", "CHAT_JWT_ALGORITHM"),
            ("CHAT_JWT_SECRET", "short", "CHAT_JWT_SECRET"),
            ("CHAT_LOG_FORMAT", "xml", "CHAT_LOG_FORMAT"),
            (
                "CHAT_CUSTOMER_TOKEN_MAX_TTL_SECONDS",
                "90000",
                "CHAT_CUSTOMER_TOKEN_MAX_TTL_SECONDS",
            ),
        ];
        for (name, value, expected) in cases {
            let err = Settings::from_source(&env(&[(name, value)], dir.path())).unwrap_err();
            assert!(err.to_string().contains(expected), "{name}: {err}");
        }
    }

    #[test]
    fn database_urls_pick_the_adapter() {
        let dir = tempfile::tempdir().unwrap();
        let pg = Settings::from_source(&env(
            &[("CHAT_DATABASE_URL", "postgres://u@h/db")],
            dir.path(),
        ))
        .unwrap();
        assert!(matches!(
            pg.database,
            DatabaseSettings::Postgres {
                max_connections: 10,
                ..
            }
        ));
        let lite = Settings::from_source(&env(
            &[("CHAT_DATABASE_URL", "sqlite://x/y.db")],
            dir.path(),
        ))
        .unwrap();
        assert_eq!(
            lite.database,
            DatabaseSettings::Sqlite {
                path: PathBuf::from("x/y.db")
            }
        );
    }

    #[test]
    fn public_key_algorithms_need_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::from_source(&env(&[("CHAT_JWT_ALGORITHM", "RS256")], dir.path()))
            .unwrap_err();
        assert!(err.to_string().contains("CHAT_JWT_PUBLIC_KEY"));
    }

    #[test]
    fn redis_settings_default_to_three_pings_of_presence_and_name_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let plain = Settings::from_source(&env(&[], dir.path())).unwrap();
        assert!(plain.realtime.redis_url.is_none());
        assert_eq!(plain.realtime.redis_prefix, "chat");
        assert_eq!(
            plain.realtime.redis_presence_ttl,
            3 * plain.realtime.ping_interval
        );
        let redis = Settings::from_source(&env(
            &[
                ("CHAT_REDIS_URL", "redis://cache:6379/2"),
                ("CHAT_REDIS_PREFIX", "pharmacy-eu"),
                ("CHAT_REDIS_PRESENCE_TTL_MS", "45000"),
            ],
            dir.path(),
        ))
        .unwrap();
        assert_eq!(
            redis.realtime.redis_url.as_ref().map(Secret::expose),
            Some("redis://cache:6379/2")
        );
        assert_eq!(redis.realtime.redis_prefix, "pharmacy-eu");
        let tls = Settings::from_source(&env(
            &[("CHAT_REDIS_URL", "rediss://:secret@cache:6380")],
            dir.path(),
        ))
        .unwrap();
        assert_eq!(
            tls.realtime.redis_url.as_ref().map(Secret::expose),
            Some("rediss://:secret@cache:6380")
        );
        assert_eq!(
            redis.realtime.redis_presence_ttl,
            Duration::from_millis(45_000)
        );
        let cases: [&[(&str, &str)]; 4] = [
            &[("CHAT_REDIS_URL", "http://cache")],
            &[("CHAT_REDIS_URL", "cache:6379")],
            &[("CHAT_REDIS_PRESENCE_TTL_MS", "20000")],
            &[("CHAT_REDIS_PREFIX", "two words")],
        ];
        for pairs in cases {
            let err = Settings::from_source(&env(pairs, dir.path())).unwrap_err();
            assert!(err.to_string().contains(pairs[0].0), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
