//! Whether the store can be reached, and the fast refusal of what needs it
//! while it cannot: a circuit breaker whose probe is the readiness check.
//!
//! A background task checks the store every [`PROBE_EVERY`], each check
//! given [`PROBE_TIMEOUT`]. After a failed check the breaker is open: REST
//! requests under `/api/v1/chat` and WebSocket sends are answered at once
//! with 503 `unavailable` and `Retry-After`, instead of each waiting for the
//! connection pool's timeout and then failing with 500. The next check that
//! succeeds closes it again (it is the half-open probe: one check at a
//! time, never a crowd of requests). `/ready` answers from a check of its
//! own, bounded by the same timeout.
//!
//! Failures of the store that a request meets before the next check (a
//! connection refused or reset, the pool's timeout, a full SQLite disk) are
//! answered 503 `unavailable` too (see `error.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::error::{store_fault, StoreFault};
use crate::state::Readiness;

/// How often the store is checked.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How long a check may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a client is told to wait before trying again, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// The store's reachability, as the last check found it.
pub struct StoreHealth {
    readiness: Arc<dyn Readiness>,
    down: AtomicBool,
    /// Whether the last failed check found the disk full.
    full: AtomicBool,
    /// Checks that failed since start, for logs.
    failed_checks: AtomicU64,
}

impl std::fmt::Debug for StoreHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHealth")
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

impl StoreHealth {
    /// The health of the store `readiness` checks; up until a check says
    /// otherwise.
    pub fn new(readiness: Arc<dyn Readiness>) -> Self {
        Self {
            readiness,
            down: AtomicBool::new(false),
            full: AtomicBool::new(false),
            failed_checks: AtomicU64::new(0),
        }
    }

    /// Whether the last check failed: the breaker is open.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Why the store is down, as the last failed check found it (a full
    /// disk, or unreachable for any other reason).
    pub fn fault(&self) -> StoreFault {
        if self.full.load(Ordering::Relaxed) {
            StoreFault::Full
        } else {
            StoreFault::Unreachable
        }
    }

    /// Checks the store now (within [`PROBE_TIMEOUT`]) and records the
    /// outcome.
    ///
    /// # Errors
    /// Why the store cannot be reached.
    pub async fn check(&self) -> anyhow::Result<()> {
        let checked = tokio::time::timeout(PROBE_TIMEOUT, self.readiness.check())
            .await
            .context("the store did not answer in time")
            .and_then(|answer| answer);
        if let Err(err) = &checked {
            let full = store_fault(err) == Some(StoreFault::Full);
            self.full.store(full, Ordering::Relaxed);
        }
        let was_down = self.down.swap(checked.is_err(), Ordering::Relaxed);
        match (&checked, was_down) {
            (Err(err), false) => {
                self.failed_checks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = ?err, "the store cannot be reached: refusing what needs it until it answers");
            }
            (Err(_), true) => {
                self.failed_checks.fetch_add(1, Ordering::Relaxed);
            }
            (Ok(()), true) => tracing::info!(
                failed_checks = self.failed_checks.load(Ordering::Relaxed),
                "the store answers again"
            ),
            (Ok(()), false) => {}
        }
        checked
    }

    /// Checks the store every [`PROBE_EVERY`] until `shutdown`.
    pub fn spawn_probe(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PROBE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = every.tick() => {
                        // The outcome is recorded (and logged) by `check`.
                        let _ = self.check().await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    struct Switch(Mutex<Option<Duration>>);

    /// `None`: answers; `Some(d)`: fails after `d`.
    #[async_trait]
    impl Readiness for Switch {
        async fn check(&self) -> anyhow::Result<()> {
            let delay = *self.0.lock().unwrap();
            match delay {
                None => Ok(()),
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    anyhow::bail!("connection refused")
                }
            }
        }
    }

    #[tokio::test]
    async fn a_failed_check_opens_the_breaker_and_the_next_good_one_closes_it() {
        let switch = Arc::new(Switch(Mutex::new(None)));
        let health = StoreHealth::new(switch.clone());
        assert!(health.check().await.is_ok() && !health.is_down());
        *switch.0.lock().unwrap() = Some(Duration::ZERO);
        assert!(health.check().await.is_err());
        assert!(health.is_down());
        *switch.0.lock().unwrap() = None;
        assert!(health.check().await.is_ok());
        assert!(!health.is_down());
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_within_the_probe_timeout() {
        let switch = Arc::new(Switch(Mutex::new(Some(Duration::from_secs(3600)))));
        let health = StoreHealth::new(switch);
        let started = std::time::Instant::now();
        let err = health.check().await.expect_err("no answer");
        assert!(
            started.elapsed() < PROBE_TIMEOUT * 2,
            "{:?}",
            started.elapsed()
        );
        assert!(format!("{err:#}").contains("in time"), "{err:#}");
        assert!(health.is_down());
    }
}
