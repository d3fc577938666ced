//! The HTTP section: the listener's timeouts and connection limits
//! (`CHAT_HTTP_*`, `CHAT_MAX_CONNECTIONS*`) and what browsers are told
//! (`CHAT_HSTS_MAX_AGE_SECONDS`, `CHAT_CORS_ORIGINS`).

use std::time::Duration;

use anyhow::bail;

use super::{list_var, parse_var, Env};
use crate::listener::ListenerSettings;

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

impl BrowserSettings {
    /// Reads `CHAT_HSTS_MAX_AGE_SECONDS` and `CHAT_CORS_ORIGINS`.
    ///
    /// # Errors
    /// A message naming the variable that is invalid.
    pub fn from_source(env: &dyn Env) -> anyhow::Result<Self> {
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
        Ok(Self {
            hsts_max_age_seconds,
            cors_origins,
        })
    }
}

/// The listener settings from `CHAT_HTTP_HEADER_TIMEOUT_MS`,
/// `CHAT_HTTP_IDLE_TIMEOUT_MS`, `CHAT_MAX_CONNECTIONS` and
/// `CHAT_MAX_CONNECTIONS_PER_IP`.
///
/// # Errors
/// A message naming the variable that is invalid.
pub fn listener_settings(env: &dyn Env) -> anyhow::Result<ListenerSettings> {
    let defaults = ListenerSettings::default();
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
    Ok(ListenerSettings {
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
