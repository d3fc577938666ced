//! [`QueuedPublisher`]: the [`EventPublisher`] for a bus that can stall or
//! fail (Redis). A use case hands it an event and goes on at once: a send
//! is acked once committed, whatever the bus does. One task publishes the
//! queued events in the order they were handed over, trying an event again
//! until the bus takes it, so an outage shorter than the queue delays
//! events instead of losing them.
//!
//! Memory stays bounded: the queue holds at most its capacity, and an event
//! handed over while it is full is dropped and counted ([`PublishStats`]).
//! The next event the task publishes is then preceded by a
//! [`ChatEvent::EventsLost`], on which every node asks its connections to
//! reconnect and `resume`: what was dropped is read from the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::ports::{ChatEvent, EventBus, EventPublisher};

/// How long the task waits before trying an event again, at first; it
/// doubles with every failure in a row, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// The longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// What a [`QueuedPublisher`] has done, for metrics.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Events handed over and not yet published.
    pending: AtomicU64,
    /// Events dropped because the queue was full.
    dropped: AtomicU64,
    /// Tries the bus refused (each event may count several).
    failures: AtomicU64,
    /// Events dropped since the last [`ChatEvent::EventsLost`] went out.
    unannounced: AtomicU64,
}

impl PublishStats {
    /// Events waiting to be published.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Publish tries the bus refused, since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Publishes to an [`EventBus`] from a bounded queue, in order, in the
/// background (see the module docs).
///
/// Cheap to clone: clones share the queue. The publishing task ends once
/// every clone is dropped and the queue is empty.
#[derive(Debug, Clone)]
pub struct QueuedPublisher {
    queue: mpsc::Sender<ChatEvent>,
    stats: Arc<PublishStats>,
}

impl QueuedPublisher {
    /// The queue size of a server: about a minute of a busy node's events.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A publisher to `bus` holding at most `capacity` events, with its
    /// task spawned on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(bus: Arc<dyn EventBus>, capacity: usize) -> Self {
        let (queue, events) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(PublishStats::default());
        tokio::spawn(publish_in_order(bus, events, stats.clone()));
        Self { queue, stats }
    }

    /// What it has done so far.
    pub fn stats(&self) -> Arc<PublishStats> {
        self.stats.clone()
    }
}

#[async_trait]
impl EventPublisher for QueuedPublisher {
    async fn publish(&self, event: ChatEvent) {
        // Counted before it is queued, so the task never counts it down
        // first.
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        if self.queue.try_send(event).is_err() {
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            self.stats.unannounced.fetch_add(1, Ordering::Relaxed);
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The first of an outage, then one line per thousand.
            if dropped % 1000 == 1 {
                tracing::warn!(
                    dropped,
                    "the event queue is full: events are dropped, readers catch up from the database"
                );
            }
        }
    }
}

/// The publishing task: each event in turn, tried until the bus takes it;
/// after events were dropped, first a [`ChatEvent::EventsLost`] so that
/// their readers resume.
async fn publish_in_order(
    bus: Arc<dyn EventBus>,
    mut events: mpsc::Receiver<ChatEvent>,
    stats: Arc<PublishStats>,
) {
    while let Some(event) = events.recv().await {
        let dropped = stats.unannounced.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "announcing dropped events: every node's clients resume"
            );
            publish_until_taken(&*bus, &ChatEvent::EventsLost { dropped }, &stats).await;
        }
        publish_until_taken(&*bus, &event, &stats).await;
        stats.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Publishes `event`, trying again until the bus takes it.
async fn publish_until_taken(bus: &dyn EventBus, event: &ChatEvent, stats: &PublishStats) {
    let mut wait = RETRY_FIRST;
    let mut failed = 0_u32;
    while let Err(err) = bus.publish(event).await {
        stats.failures.fetch_add(1, Ordering::Relaxed);
        failed += 1;
        if failed == 1 {
            tracing::warn!(error = %err, pending = stats.pending(), "publishing an event failed: trying again, later events wait behind it");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
    if failed > 0 {
        tracing::info!(
            tries = failed + 1,
            pending = stats.pending(),
            "the event bus takes events again"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chat_domain::{Presence, PresenceStatus, Sender, TenantId};
    use futures::StreamExt;

    use super::*;
    use crate::ports::{BusError, BusEvent, EventStream};
    use crate::InProcessBus;

    fn event(n: u32) -> ChatEvent {
        ChatEvent::PresenceChanged {
            tenant: TenantId::from_uuid(uuid::Uuid::from_u128(u128::from(n))),
            presence: Presence {
                user: Sender::System,
                status: PresenceStatus::Online,
                last_seen_at: None,
            },
        }
    }

    /// An in-process bus that refuses every event while `down` is set and
    /// can hold every publish until `gate` opens.
    struct Flaky {
        inner: InProcessBus,
        down: Mutex<bool>,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl EventBus for Flaky {
        async fn publish(&self, event: &ChatEvent) -> Result<(), BusError> {
            let _permit = self.gate.acquire().await.expect("gate open");
            if *self.down.lock().unwrap() {
                return Err(BusError(anyhow::anyhow!("down")));
            }
            self.inner.publish(event).await
        }

        fn subscribe(&self) -> EventStream {
            self.inner.subscribe()
        }
    }

    fn flaky(down: bool, permits: usize) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: InProcessBus::new(1024),
            down: Mutex::new(down),
            gate: tokio::sync::Semaphore::new(permits),
        })
    }

    async fn received(stream: &mut EventStream, n: usize) -> Vec<ChatEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(BusEvent::Event(event))) => out.push(event),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn a_stalled_bus_never_holds_the_caller_and_gets_every_event_in_order_later() {
        let bus = flaky(false, 0);
        let mut stream = bus.subscribe();
        let publisher = QueuedPublisher::spawn(bus.clone(), 16);
        for n in 0..10 {
            // Returns although the bus takes nothing yet.
            publisher.publish(event(n)).await;
        }
        assert_eq!(publisher.stats().pending(), 10);
        bus.gate.add_permits(1000);
        assert_eq!(
            received(&mut stream, 10).await,
            (0..10).map(event).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_refused_event_is_tried_again_until_the_bus_takes_it_and_nothing_overtakes_it() {
        let bus = flaky(true, 1000);
        let mut stream = bus.subscribe();
        let publisher = QueuedPublisher::spawn(bus.clone(), 16);
        for n in 0..3 {
            publisher.publish(event(n)).await;
        }
        // Tries after 0, 50, 100 and 200 ms of waiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = publisher.stats();
        assert!(stats.failures() >= 3, "{stats:?}");
        assert_eq!(stats.pending(), 3);
        *bus.down.lock().unwrap() = false;
        assert_eq!(
            received(&mut stream, 3).await,
            (0..3).map(event).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!((stats.pending(), stats.dropped()), (0, 0));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_what_does_not_fit() {
        let bus = flaky(false, 0);
        let mut stream = bus.subscribe();
        let publisher = QueuedPublisher::spawn(bus.clone(), 4);
        for n in 0..10 {
            publisher.publish(event(n)).await;
        }
        let stats = publisher.stats();
        // The task holds one event (waiting at the gate), the queue four.
        assert_eq!(stats.dropped() + stats.pending(), 10);
        assert!((4..=5).contains(&stats.pending()), "{stats:?}");
        bus.gate.add_permits(1000);
        let kept = usize::try_from(stats.pending()).unwrap();
        let dropped = stats.dropped();
        // The drops are announced before the next event the task takes.
        let got = received(&mut stream, kept + 1).await;
        let lost = got
            .iter()
            .position(|e| *e == ChatEvent::EventsLost { dropped })
            .unwrap_or_else(|| panic!("no announcement in {got:?}"));
        assert!(lost <= 1, "{got:?}");
        let mut kept_events = got.clone();
        kept_events.remove(lost);
        assert_eq!(
            kept_events,
            (0..10).map(event).take(kept).collect::<Vec<_>>()
        );
    }
}
