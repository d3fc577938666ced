//! Test support (feature `testing`): a private key prefix per test, so tests
//! share one Redis and run in parallel without seeing each other's keys or
//! events, and the removal of those keys afterwards.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use adapters_redis::testing::{delete_prefix, fresh_prefix, redis_url};
//! use adapters_redis::{RedisPresence, RedisSettings};
//!
//! let settings = RedisSettings::new(redis_url(), fresh_prefix());
//! let presence = RedisPresence::connect(&settings).await?;
//! // ...
//! delete_prefix(&settings.url, &settings.prefix).await?;
//! # Ok(()) }
//! ```

use anyhow::Context as _;
use redis::AsyncCommands as _;

/// The environment variable naming the Redis that tests use.
pub const URL_VAR: &str = "CHAT_TEST_REDIS_URL";

/// The Redis of tests when [`URL_VAR`] is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// [`URL_VAR`], or [`DEFAULT_URL`].
pub fn redis_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A prefix no other test uses: `chat-test-<uuid>`.
pub fn fresh_prefix() -> String {
    format!("chat-test-{}", uuid::Uuid::now_v7().simple())
}

/// Deletes every key under `prefix` (`<prefix>:*`).
///
/// # Errors
/// When Redis cannot be reached.
pub async fn delete_prefix(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url).context("parsing the Redis URL")?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let escaped: String = prefix
        .chars()
        .flat_map(|c| {
            let escape = matches!(c, '*' | '?' | '[' | ']' | '\\').then_some('\\');
            escape.into_iter().chain(std::iter::once(c))
        })
        .collect();
    let pattern = format!("{escaped}:*");
    let mut keys: Vec<String> = Vec::new();
    {
        let mut scan = connection
            .scan_match::<_, String>(&pattern)
            .await
            .context("listing the test's keys")?;
        while let Some(key) = futures::StreamExt::next(&mut scan).await {
            keys.push(key.context("listing the test's keys")?);
        }
    }
    for chunk in keys.chunks(500) {
        let _: () = connection
            .del(chunk)
            .await
            .context("deleting the test's keys")?;
    }
    Ok(())
}
