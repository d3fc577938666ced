//! The event bus over Redis pub/sub.
//!
//! Every node publishes to, and subscribes to, one channel
//! (`<prefix>:events`): a node hosts connections of any tenant, so it needs
//! every event anyway, and one channel gives every node the same order of
//! events. One background task per bus holds the subscription, decodes what
//! arrives and hands it to the local subscribers through a broadcast
//! channel. Publishing never delivers locally: the publisher's own events
//! come back through Redis like everyone else's, exactly once.
//!
//! Pub/sub keeps nothing for a subscriber that is away, so when the
//! subscription breaks the task reconnects with backoff and then reports
//! [`BusEvent::Lagged`] to every local subscriber: they resynchronise from
//! the database, the truth.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_app::{broadcast_stream, BusError, BusEvent, ChatEvent, EventBus, EventStream};
use futures::stream::{self, PollNext, StreamExt};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Msg, PushInfo, PushKind};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::retry::{client_id, once_more_if_closed};
use crate::{codec, ConnectError, RedisSettings};

/// Events kept per local subscriber before it sees [`BusEvent::Lagged`].
const LOCAL_CAPACITY: usize = 65_536;
/// The first and the longest wait between two reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The [`EventBus`] of a node among several, over Redis pub/sub.
///
/// Cloning is cheap and shares the subscription; the background task stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct RedisEventBus {
    inner: Arc<Inner>,
}

struct Inner {
    publisher: ConnectionManager,
    channel: String,
    publish_timeout: Duration,
    events: broadcast::Sender<ChatEvent>,
    /// Bumped after every re-subscription: each bump is one `Lagged` for
    /// every local subscriber.
    resyncs: watch::Sender<u64>,
    subscriber_id: Arc<AtomicI64>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for RedisEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventBus")
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

impl RedisEventBus {
    /// Subscribes to `<prefix>:events` and opens the publishing connection.
    /// Returns once the subscription is confirmed, so that every event
    /// published afterwards, by any node, reaches this one.
    ///
    /// # Errors
    /// [`ConnectError`] when Redis is unreachable or the URL is invalid.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, ConnectError> {
        let channel = settings.events_channel();
        let subscriber = Subscriber {
            client: settings.client(true)?,
            channel: channel.clone(),
            timeout: settings.command_timeout,
            liveness: settings.liveness_interval,
        };
        let first = subscriber.open().await?;
        let publisher = settings.connection_manager().await?;
        let (events, _) = broadcast::channel(LOCAL_CAPACITY);
        let (resyncs, _) = watch::channel(0);
        let subscriber_id = Arc::new(AtomicI64::new(first.client_id));
        let task = tokio::spawn(subscriber.run(
            first,
            events.clone(),
            resyncs.clone(),
            subscriber_id.clone(),
        ));
        tracing::info!(%channel, "subscribed to Redis events");
        Ok(Self {
            inner: Arc::new(Inner {
                publisher,
                channel,
                publish_timeout: settings.publish_timeout,
                events,
                resyncs,
                subscriber_id,
                task,
            }),
        })
    }

    /// The Redis client id (`CLIENT LIST`, `CLIENT KILL ID`) of the
    /// connection currently holding the subscription.
    pub fn subscriber_client_id(&self) -> i64 {
        self.inner.subscriber_id.load(Ordering::Relaxed)
    }

    /// The Redis client id of the connection events are published on (it
    /// changes when the connection is replaced).
    ///
    /// # Errors
    /// When Redis does not answer.
    pub async fn publisher_client_id(&self) -> redis::RedisResult<i64> {
        client_id(&self.inner.publisher).await
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    #[tracing::instrument(skip_all)]
    async fn publish(&self, event: &ChatEvent) -> Result<(), BusError> {
        let payload = match codec::encode(event) {
            Ok(payload) => payload,
            Err(err) => {
                // Sending it again would fail again: dropped, not retried.
                tracing::error!(error = %err, "cannot encode an event for Redis: dropped");
                return Ok(());
            }
        };
        let mut command = redis::cmd("PUBLISH");
        command.arg(&self.inner.channel).arg(payload);
        // A connection Redis closed while it was idle (its `timeout`, a
        // `CLIENT KILL`) fails the first command sent on it; the manager then
        // opens a new one, which the second attempt waits for. Both attempts
        // share one timeout.
        let publish = once_more_if_closed(&self.inner.publisher, |mut connection| {
            let command = &command;
            async move { command.query_async::<i64>(&mut connection).await }
        });
        match tokio::time::timeout(self.inner.publish_timeout, publish).await {
            Ok(Ok(_receivers)) => Ok(()),
            Ok(Err(err)) => Err(BusError(
                anyhow::Error::new(err).context("publishing to Redis failed"),
            )),
            Err(_) => Err(BusError(anyhow::anyhow!(
                "publishing to Redis timed out after {:?}",
                self.inner.publish_timeout
            ))),
        }
    }

    fn subscribe(&self) -> EventStream {
        let events = broadcast_stream(self.inner.events.subscribe());
        // A fresh receiver has seen the current value: only re-subscriptions
        // from now on count.
        let resyncs = stream::unfold(self.inner.resyncs.subscribe(), |mut resyncs| async move {
            resyncs.changed().await.ok()?;
            resyncs.borrow_and_update();
            // How many events went by during the outage is unknown.
            Some((BusEvent::Lagged(0), resyncs))
        });
        // Resyncs first: the task bumps the counter before it forwards
        // anything received on the new subscription, so a subscriber sees
        // `Lagged` before any event that followed the outage.
        stream::select_with_strategy(resyncs, events, |_: &mut ()| PollNext::Left).boxed()
    }
}

/// How to (re)open the subscription.
struct Subscriber {
    client: redis::Client,
    channel: String,
    timeout: Duration,
    liveness: Duration,
}

/// An open subscription: a RESP3 connection whose pushes arrive on
/// `pushes`.
struct Subscription {
    connection: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    client_id: i64,
}

impl Subscriber {
    async fn open(&self) -> Result<Subscription, ConnectError> {
        tokio::time::timeout(self.timeout * 2, self.try_open())
            .await
            .map_err(|_| ConnectError::Timeout(self.timeout * 2))?
    }

    async fn try_open(&self) -> Result<Subscription, ConnectError> {
        let (tx, pushes) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(tx);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(ConnectError::Unreachable)?;
        let client_id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut connection)
            .await
            .map_err(ConnectError::Unreachable)?;
        connection
            .subscribe(&self.channel)
            .await
            .map_err(ConnectError::Unreachable)?;
        Ok(Subscription {
            connection,
            pushes,
            client_id,
        })
    }

    /// Forwards events until the bus is dropped (the task is aborted),
    /// re-subscribing whenever the subscription breaks.
    async fn run(
        self,
        first: Subscription,
        events: broadcast::Sender<ChatEvent>,
        resyncs: watch::Sender<u64>,
        subscriber_id: Arc<AtomicI64>,
    ) {
        let mut subscription = first;
        loop {
            self.pump(&mut subscription, &events).await;
            tracing::warn!(channel = %self.channel, "lost the Redis subscription: reconnecting");
            let mut backoff = Backoff::default();
            subscription = loop {
                tokio::time::sleep(backoff.next_delay()).await;
                match self.open().await {
                    Ok(subscription) => break subscription,
                    Err(err) => tracing::warn!(error = %err, "cannot subscribe to Redis yet"),
                }
            };
            subscriber_id.store(subscription.client_id, Ordering::Relaxed);
            // Events published while we were away are lost to this node: its
            // subscribers must resynchronise from the database.
            resyncs.send_modify(|n| *n += 1);
            tracing::warn!(channel = %self.channel, "re-subscribed to Redis events: asking subscribers to resynchronise");
        }
    }

    /// Forwards what arrives until the subscription breaks: the connection
    /// reports its loss, or stops answering the liveness check.
    async fn pump(&self, subscription: &mut Subscription, events: &broadcast::Sender<ChatEvent>) {
        let mut liveness =
            tokio::time::interval_at(tokio::time::Instant::now() + self.liveness, self.liveness);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = subscription.pushes.recv() => match push {
                    None => return,
                    Some(push) if push.kind == PushKind::Disconnection => return,
                    Some(push) if push.kind == PushKind::Message => {
                        if let Some(message) = Msg::from_push_info(push) {
                            self.forward(&message, events);
                        }
                    }
                    // Subscription confirmations and the like.
                    Some(_) => {}
                },
                _ = liveness.tick() => {
                    let command = redis::cmd("PING");
                    let ping = command.query_async::<String>(&mut subscription.connection);
                    match tokio::time::timeout(self.timeout, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "Redis subscription failed its liveness check");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!("Redis subscription did not answer its liveness check");
                            return;
                        }
                    }
                }
            }
        }
    }

    fn forward(&self, message: &Msg, events: &broadcast::Sender<ChatEvent>) {
        if message.get_channel_name() != self.channel {
            return;
        }
        match codec::decode(message.get_payload_bytes()) {
            // No local subscriber only means nobody is connected here.
            Ok(event) => {
                let _ = events.send(event);
            }
            Err(err) => tracing::warn!(
                error = %err,
                channel = %self.channel,
                "skipping an event from Redis that cannot be decoded"
            ),
        }
    }
}

/// Exponential backoff with jitter, so that nodes cut off together do not
/// reconnect in lockstep.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(BACKOFF_MAX);
        self.attempt = self.attempt.saturating_add(1);
        // Between half and all of the ceiling; std's hasher keys are random.
        let random = RandomState::new().build_hasher().finish();
        let fraction = 0.5 + (random % 1_000) as f64 / 2_000.0;
        ceiling.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(
            first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN,
            "{first:?}"
        );
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(delay <= BACKOFF_MAX, "{delay:?}");
        }
        assert!(backoff.next_delay() >= BACKOFF_MAX / 2);
    }
}
