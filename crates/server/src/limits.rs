//! Per-sender rate limits on sends, over REST and WebSocket alike: a burst
//! is allowed, then a steady rate; beyond it the caller is told when to try
//! again (429 `rate_limited` with `Retry-After`, or an `error` frame).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chat_domain::{Principal, Sender, TenantId};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Limits the sends of each (tenant, sender).
#[derive(Clone)]
pub struct SendLimiter {
    limiter: Option<Arc<DefaultKeyedRateLimiter<(TenantId, Sender)>>>,
}

impl std::fmt::Debug for SendLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendLimiter")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl SendLimiter {
    /// `per_minute` sends a minute with bursts of `burst`; `per_minute = 0`
    /// turns limiting off.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::keyed(
                Quota::per_minute(rate).allow_burst(burst),
            ))
        });
        Self { limiter }
    }

    /// No limit.
    pub fn unlimited() -> Self {
        Self { limiter: None }
    }

    /// `Ok` when `principal` may send now; otherwise how long to wait.
    ///
    /// # Errors
    /// The time until the next send is allowed.
    pub fn check(&self, principal: &Principal) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&(principal.tenant(), principal.as_sender()))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets senders whose bucket is full again, so memory stays bounded
    /// by the recently active ones. Call periodically.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{CustomerId, StaffRole, StaffUserId};

    use super::*;

    #[test]
    fn a_burst_passes_then_the_sender_waits_and_others_do_not() {
        let limiter = SendLimiter::new(60, 3);
        let tenant = TenantId::new_v4();
        let busy = Principal::customer(tenant, CustomerId::new_v4());
        for _ in 0..3 {
            assert_eq!(limiter.check(&busy), Ok(()));
        }
        let wait = limiter.check(&busy).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        let other = Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff);
        assert_eq!(limiter.check(&other), Ok(()));
        // The same id in another tenant has its own bucket.
        let elsewhere = Principal::customer(
            TenantId::new_v4(),
            match busy {
                Principal::Customer { customer_id, .. } => customer_id,
                Principal::Staff { .. } => unreachable!("built as a customer"),
            },
        );
        assert_eq!(limiter.check(&elsewhere), Ok(()));
        limiter.forget_idle();
    }

    #[test]
    fn zero_turns_limiting_off() {
        let limiter = SendLimiter::new(0, 0);
        let who = Principal::customer(TenantId::new_v4(), CustomerId::new_v4());
        for _ in 0..10_000 {
            assert_eq!(limiter.check(&who), Ok(()));
        }
        assert_eq!(SendLimiter::unlimited().check(&who), Ok(()));
    }
}
