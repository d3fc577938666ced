//! Abuse counting: every refused frame is answered with an `error`, and a
//! client that keeps sending bad frames is closed (1008). A refusal that is
//! the server's fault (a store outage) is answered too but never counted:
//! an outage must not close healthy clients with a false reason.

use std::time::{Duration, Instant};

use axum::extract::ws::CloseFrame;

use super::writer::close;
use super::{Connection, Gone};
use crate::ws::cmd::Refusal;
use crate::ws::protocol::{RequestId, ServerFrame};

/// Errors tolerated per window before the connection is closed (1008).
const ABUSE_LIMIT: u32 = 30;
/// The abuse window.
const ABUSE_WINDOW: Duration = Duration::from_secs(60);

/// Refused frames of one connection in the current window.
#[derive(Debug)]
pub(super) struct Abuse {
    errors: u32,
    since: Instant,
}

impl Abuse {
    /// No refusal yet, the window starting `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            errors: 0,
            since: now,
        }
    }

    /// Counts a refusal at `now`; `true` once the window holds more than
    /// [`ABUSE_LIMIT`].
    fn count(&mut self, now: Instant) -> bool {
        if now.duration_since(self.since) > ABUSE_WINDOW {
            self.errors = 0;
            self.since = now;
        }
        self.errors += 1;
        self.errors > ABUSE_LIMIT
    }
}

impl Connection {
    /// Answers a malformed frame; repeated abuse closes the connection.
    pub(in crate::ws) async fn refuse(
        &mut self,
        request_id: Option<&RequestId>,
        message: &str,
    ) -> Result<Option<CloseFrame>, Gone> {
        let refusal = Refusal::client("invalid_request", message.to_owned());
        self.fail(request_id, refusal).await
    }

    /// Answers a refused frame with an `error`; returns the 1008 close once
    /// the client has been refused too often (server faults do not count).
    pub(in crate::ws) async fn fail(
        &mut self,
        request_id: Option<&RequestId>,
        refusal: Refusal,
    ) -> Result<Option<CloseFrame>, Gone> {
        let abusive = !refusal.server_fault && self.abuse.count(Instant::now());
        self.emit(&ServerFrame::error(
            request_id,
            refusal.code,
            refusal.message,
        ))
        .await?;
        if abusive {
            return Ok(Some(close(1008, "too many invalid frames")));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_the_limit_within_a_window_is_abuse_and_a_new_window_starts_over() {
        let start = Instant::now();
        let mut abuse = Abuse::new(start);
        for n in 1..=ABUSE_LIMIT {
            assert!(!abuse.count(start), "refusal {n}");
        }
        assert!(abuse.count(start + ABUSE_WINDOW), "still the same window");

        let later = start + ABUSE_WINDOW + Duration::from_secs(1);
        assert!(!abuse.count(later), "a new window");
        for _ in 2..=ABUSE_LIMIT {
            assert!(!abuse.count(later));
        }
        assert!(abuse.count(later));
    }
}
