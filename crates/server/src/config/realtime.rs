//! The real-time section: the WebSocket transport (`CHAT_WS_*`) and
//! cross-node fan-out (`CHAT_REDIS_*`).

use std::time::Duration;

use anyhow::bail;

use super::{parse_var, Env, Secret};

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
    /// With Redis: most events waiting to be published (a Redis outage
    /// longer than this many events drops the rest and makes every client
    /// resume).
    pub redis_event_queue: usize,
    /// Most WebSocket connections one user (staff member or customer) may
    /// have open at once, over every node; 0 for no limit.
    pub max_connections_per_user: usize,
}

impl RealtimeSettings {
    /// Reads the `CHAT_WS_*` and `CHAT_REDIS_*` variables.
    ///
    /// # Errors
    /// A message naming the variable that is invalid.
    pub fn from_source(env: &dyn Env) -> anyhow::Result<Self> {
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
        let max_connections_per_user: usize =
            parse_var(env, "CHAT_WS_MAX_CONNECTIONS_PER_USER", 20)?;
        let redis_event_queue: usize = parse_var(
            env,
            "CHAT_REDIS_EVENT_QUEUE",
            chat_app::QueuedPublisher::DEFAULT_CAPACITY,
        )?;
        if redis_event_queue == 0 {
            bail!("CHAT_REDIS_EVENT_QUEUE must be at least 1");
        }
        if presence_ttl_ms <= ping_ms {
            bail!("CHAT_REDIS_PRESENCE_TTL_MS must be longer than CHAT_WS_PING_INTERVAL_MS (connections are refreshed every ping)");
        }
        Ok(Self {
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
            redis_event_queue,
            max_connections_per_user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;
    use crate::config::Settings;

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
}
