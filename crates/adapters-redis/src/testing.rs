//! Test support (feature `testing`): a private key prefix per test, so tests
//! share one Redis and run in parallel without seeing each other's keys or
//! events, removed when the test ends, whether it passed or failed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), adapters_redis::ConnectError> {
//! use adapters_redis::testing::{redis_url, TestPrefix};
//! use adapters_redis::{RedisPresence, RedisSettings};
//!
//! let keys = TestPrefix::new();
//! let settings = RedisSettings::new(redis_url(), keys.as_str());
//! let presence = RedisPresence::connect(&settings).await?;
//! // ... every key under the prefix is deleted when `keys` drops.
//! # Ok(()) }
//! ```

use anyhow::Context as _;

/// The environment variable naming the Redis that tests use.
pub const URL_VAR: &str = "CHAT_TEST_REDIS_URL";

/// The Redis of tests when [`URL_VAR`] is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// [`URL_VAR`], or [`DEFAULT_URL`].
pub fn redis_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A prefix no other test uses (`chat-test-<uuid>`) on the Redis of
/// [`redis_url`]. Dropping it deletes every key under it; that blocks
/// briefly, which is fine in a test.
#[derive(Debug)]
pub struct TestPrefix {
    url: String,
    prefix: String,
}

impl TestPrefix {
    /// A fresh prefix.
    pub fn new() -> Self {
        Self {
            url: redis_url(),
            prefix: format!("chat-test-{}", uuid::Uuid::now_v7().simple()),
        }
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// Deletes every key under the prefix (`<prefix>:*`).
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub fn delete_keys(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.url.as_str()).context("parsing the Redis URL")?;
        let mut connection = client
            .get_connection_with_timeout(std::time::Duration::from_secs(5))
            .context("connecting to Redis")?;
        // The prefix is ours (no glob characters).
        let pattern = format!("{}:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)
                .context("listing the test's keys")?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query::<()>(&mut connection)
                    .context("deleting the test's keys")?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl Default for TestPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        if let Err(err) = self.delete_keys() {
            eprintln!("cannot delete the keys of {}: {err:#}", self.prefix);
        }
    }
}
