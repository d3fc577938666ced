//! Configuration: one [`Settings`] value, read from `CHAT_*` environment
//! variables with defaults that run the embedded setup (SQLite under
//! `./data/`) without any variable set.
//!
//! One module per section, each with the settings type it reads and its
//! `from_source`: `database`, `auth` (staff JWTs, customer tokens),
//! `realtime` (WebSocket, Redis), `http` (listener, browsers) and
//! `attachments`. A new variable goes into its section's `from_source`,
//! the README's configuration table and a test of that section.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

mod attachments;
mod auth;
mod database;
mod http;
mod realtime;

pub use attachments::{AttachmentConfig, StorageSettings};
pub use auth::{customer_token_secret, JwtAlgorithm, StaffJwtSettings};
pub use database::DatabaseSettings;
pub use http::{listener_settings, BrowserSettings};
pub use realtime::RealtimeSettings;

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
    pub attachments: AttachmentConfig,
    /// Sends allowed per sender and minute (0: no limit).
    pub send_rate_per_minute: u32,
    /// Sends a sender may make in a burst before the rate applies.
    pub send_burst: u32,
    /// Connection limits and timeouts of the HTTP listener.
    pub listener: crate::listener::ListenerSettings,
    /// Response headers for browsers: HSTS and CORS.
    pub browser: BrowserSettings,
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
        let database = DatabaseSettings::from_source(env, &data_dir)?;
        let staff_jwt = StaffJwtSettings::from_source(env, &data_dir)?;
        let customer_token_secret = auth::customer_token_secret(env, &data_dir)?;
        let max_ttl: u64 = parse_var(env, "CHAT_CUSTOMER_TOKEN_MAX_TTL_SECONDS", 86_400)?;
        if max_ttl == 0 || max_ttl > 86_400 {
            bail!("CHAT_CUSTOMER_TOKEN_MAX_TTL_SECONDS must be between 1 and 86400 (24 h)");
        }
        let timeout: u64 = parse_var(env, "CHAT_REQUEST_TIMEOUT_SECONDS", 30)?;
        if timeout == 0 {
            bail!("CHAT_REQUEST_TIMEOUT_SECONDS must be at least 1");
        }
        let log_format = log_format(env)?;
        let attachments = AttachmentConfig::from_source(env, &data_dir)?;
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
            realtime: RealtimeSettings::from_source(env)?,
            send_rate_per_minute: parse_var(env, "CHAT_SEND_RATE_PER_MINUTE", 600)?,
            send_burst: parse_var(env, "CHAT_SEND_BURST", 100)?,
            attachments,
            listener: http::listener_settings(env)?,
            browser: BrowserSettings::from_source(env)?,
        })
    }
}

/// Test variables: `pairs`, with `CHAT_DATA_DIR` set to `dir` unless given.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)], dir: &Path) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.entry("CHAT_DATA_DIR".into())
        .or_insert_with(|| dir.display().to_string());
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_env as env;

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
    fn secrets_are_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
