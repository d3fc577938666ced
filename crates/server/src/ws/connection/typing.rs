//! Typing indicators of one connection: the throttle that relays a start
//! at most once per period and a stop only after a relayed start, and the
//! expiry that stops indicators the client stopped refreshing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_app::ChatError;
use chat_domain::ConversationId;

use super::Connection;

struct Indicator {
    /// When a start was last relayed; `None` while throttled since.
    relayed_at: Option<Instant>,
    /// When the client last said it types.
    refreshed_at: Instant,
}

/// The indicators this connection's client has up, by conversation.
#[derive(Default)]
pub(super) struct Indicators(HashMap<ConversationId, Indicator>);

impl Indicators {
    /// Whether the client's start (`is_typing`) or stop in `conversation`
    /// is to be relayed at `now`. A stop forgets the indicator.
    fn relays(
        &mut self,
        conversation: ConversationId,
        is_typing: bool,
        now: Instant,
        throttle: Duration,
    ) -> bool {
        if is_typing {
            self.0
                .get(&conversation)
                .and_then(|t| t.relayed_at)
                .is_none_or(|at| now.duration_since(at) >= throttle)
        } else {
            self.take(conversation)
        }
    }

    /// Records a start handled at `now` (`relayed` or throttled).
    fn started(&mut self, conversation: ConversationId, relayed: bool, now: Instant) {
        let indicator = self.0.entry(conversation).or_insert(Indicator {
            relayed_at: None,
            refreshed_at: now,
        });
        indicator.refreshed_at = now;
        if relayed {
            indicator.relayed_at = Some(now);
        }
    }

    /// Forgets the indicator of `conversation`; `true` when its start was
    /// relayed (the others then need a stop).
    fn take(&mut self, conversation: ConversationId) -> bool {
        self.0
            .remove(&conversation)
            .is_some_and(|t| t.relayed_at.is_some())
    }

    /// The indicators not refreshed within `expiry` of `now`.
    fn expired(&self, now: Instant, expiry: Duration) -> Vec<ConversationId> {
        self.0
            .iter()
            .filter(|(_, t)| now.duration_since(t.refreshed_at) >= expiry)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether any indicator is up (idle sockets are not woken to expire).
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Connection {
    /// Relays typing, throttled. Access is checked either way, so a foreign
    /// conversation is refused even when nothing is relayed.
    pub(in crate::ws) async fn typing(
        &mut self,
        conversation: ConversationId,
        is_typing: bool,
    ) -> Result<(), ChatError> {
        let now = Instant::now();
        let throttle = self.rt.settings.typing_throttle;
        let relay = self.typing.relays(conversation, is_typing, now, throttle);
        if relay {
            self.rt
                .service
                .typing(&self.principal, conversation, is_typing)
                .await?;
        } else {
            self.rt
                .service
                .check_participant(&self.principal, conversation)
                .await?;
        }
        if is_typing {
            self.typing.started(conversation, relay, now);
        }
        Ok(())
    }

    /// Stops indicators that were not refreshed in time.
    pub(super) async fn expire_typing(&mut self) {
        let expired = self
            .typing
            .expired(Instant::now(), self.rt.settings.typing_expiry);
        for conversation in expired {
            self.stop_relayed(conversation).await;
        }
    }

    /// Stops every indicator (the connection closes).
    pub(super) async fn stop_typing(&mut self) {
        let conversations: Vec<ConversationId> = self.typing.0.keys().copied().collect();
        for conversation in conversations {
            self.stop_relayed(conversation).await;
        }
    }

    /// Forgets the indicator of `conversation`, relaying its stop when its
    /// start was relayed.
    pub(super) async fn stop_relayed(&mut self, conversation: ConversationId) {
        if self.typing.take(conversation) {
            let _ = self
                .rt
                .service
                .typing(&self.principal, conversation, false)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THROTTLE: Duration = Duration::from_secs(3);

    #[test]
    fn starts_are_relayed_once_per_throttle_period_and_stops_only_after_a_relayed_start() {
        let c = ConversationId::new_v7();
        let start = Instant::now();
        let mut typing = Indicators::default();
        assert!(!typing.relays(c, false, start, THROTTLE), "nothing to stop");

        assert!(typing.relays(c, true, start, THROTTLE));
        typing.started(c, true, start);
        let soon = start + THROTTLE / 2;
        assert!(!typing.relays(c, true, soon, THROTTLE), "throttled");
        typing.started(c, false, soon);
        assert!(typing.relays(c, true, start + THROTTLE, THROTTLE));

        assert!(typing.relays(c, false, soon, THROTTLE), "a relayed start");
        assert!(typing.is_empty());
    }

    #[test]
    fn a_start_that_failed_is_not_counted() {
        let c = ConversationId::new_v7();
        let now = Instant::now();
        let mut typing = Indicators::default();
        // Relayed, but refused by the service: `started` is never called.
        assert!(typing.relays(c, true, now, THROTTLE));
        assert!(typing.relays(c, true, now, THROTTLE), "still unthrottled");
        assert!(typing.is_empty());
    }

    #[test]
    fn indicators_not_refreshed_in_time_expire() {
        let (fresh, stale) = (ConversationId::new_v7(), ConversationId::new_v7());
        let expiry = Duration::from_secs(5);
        let start = Instant::now();
        let mut typing = Indicators::default();
        typing.started(stale, true, start);
        typing.started(fresh, true, start);
        typing.started(fresh, false, start + expiry / 2);
        assert_eq!(typing.expired(start + expiry, expiry), [stale]);
        assert!(typing.take(stale), "its start was relayed: a stop is due");
    }
}
