//! Redis adapters of the chat core, for running several server nodes side
//! by side: [`RedisEventBus`] carries every [`chat_app::ChatEvent`] to every
//! node over one pub/sub channel, and [`RedisPresence`] keeps who is
//! connected where every node sees it, with connections that expire when
//! their node stops refreshing them (a crashed node's users go offline).
//!
//! Both need Redis 6 or newer (the bus subscribes over RESP3). Every key and
//! channel starts with the configured prefix, so several deployments can
//! share one Redis.
//!
//! ```no_run
//! # async fn demo() -> Result<(), adapters_redis::ConnectError> {
//! use std::sync::Arc;
//! use adapters_redis::{RedisEventBus, RedisPresence, RedisSettings};
//! use chat_app::{EventBus, PresenceStore};
//!
//! let settings = RedisSettings::new("redis://127.0.0.1:6379", "chat");
//! let bus: Arc<dyn EventBus> = Arc::new(RedisEventBus::connect(&settings).await?);
//! let presence: Arc<dyn PresenceStore> = Arc::new(RedisPresence::connect(&settings).await?);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::fmt;
use std::time::Duration;

mod bus;
pub mod codec;
mod presence;
mod retry;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::RedisEventBus;
pub use presence::RedisPresence;

/// Where Redis is and how the adapters use it.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://...` for
    /// TLS (server certificates checked against the system's roots; a
    /// trailing `#insecure` skips the check, for self-signed test servers
    /// only).
    pub url: String,
    /// Prefix of every key and channel, without the trailing `:`.
    pub prefix: String,
    /// How long a connection counts as open without a refresh. The server
    /// refreshes every ping interval: keep this a few intervals long.
    pub presence_ttl: Duration,
    /// The longest a publish may hold up the send that caused it; an event
    /// not published by then is dropped (and logged): receivers catch up
    /// from the database.
    pub publish_timeout: Duration,
    /// The longest a connection attempt, or a presence command, may take.
    pub command_timeout: Duration,
    /// How often the bus checks that its subscription is still alive (a
    /// half-open TCP connection would otherwise go unnoticed).
    pub liveness_interval: Duration,
}

impl RedisSettings {
    /// Settings with the default timings: presence TTL 60 s, publish
    /// timeout 500 ms, command timeout 2 s, liveness check every 5 s.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            presence_ttl: Duration::from_secs(60),
            publish_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_secs(2),
            liveness_interval: Duration::from_secs(5),
        }
    }

    /// The pub/sub channel of events.
    pub fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    fn client(&self, resp3: bool) -> Result<redis::Client, ConnectError> {
        use redis::IntoConnectionInfo;
        if self.url.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider and cannot pick
            // one itself when a program enables several: use ring unless
            // the host installed one already (then this does nothing).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(ConnectError::InvalidUrl)?;
        // Commands are small and answers awaited: without TCP_NODELAY a
        // command written while an earlier one is unacknowledged waits for
        // the peer's delayed ACK (tens of milliseconds).
        let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let info = if resp3 {
            let redis = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            info.set_redis_settings(redis)
        } else {
            info
        };
        redis::Client::open(info).map_err(ConnectError::InvalidUrl)
    }

    async fn connection_manager(&self) -> Result<redis::aio::ConnectionManager, ConnectError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.command_timeout))
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let client = self.client(false)?;
        redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(ConnectError::Unreachable)
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisSettings")
            .field("url", &"***")
            .field("prefix", &self.prefix)
            .field("presence_ttl", &self.presence_ttl)
            .field("publish_timeout", &self.publish_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("liveness_interval", &self.liveness_interval)
            .finish()
    }
}

/// Why an adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// Redis could not be reached or refused the connection.
    #[error("cannot reach Redis")]
    Unreachable(#[source] redis::RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_urls_are_accepted_and_others_refused() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:secret@redis.internal:6380/2",
            "rediss://redis.example.com:6380",
            "rediss://127.0.0.1:6390/#insecure",
        ] {
            for resp3 in [false, true] {
                assert!(
                    RedisSettings::new(url, "chat").client(resp3).is_ok(),
                    "{url}"
                );
            }
        }
        for url in ["http://127.0.0.1:6379", "not a url"] {
            assert!(
                matches!(
                    RedisSettings::new(url, "chat").client(false),
                    Err(ConnectError::InvalidUrl(_))
                ),
                "{url}"
            );
        }
    }
}
