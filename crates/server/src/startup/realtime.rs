//! The real-time adapters chosen by configuration (Redis or in-process)
//! and the background tasks of the transport: the send limiter's idle
//! sweep and the announcement of expired presence.

use std::sync::Arc;

use adapters_redis::{RedisEventBus, RedisPresence, RedisSettings};
use anyhow::Context;
use chat_app::{
    BusPublisher, EventBus, EventPublisher, InMemoryPresence, InProcessBus, PresenceService,
    PresenceStore, PublishStats, QueuedPublisher,
};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// The real-time adapters of a node.
pub(super) struct RealtimeAdapters {
    /// Carries events between nodes.
    pub bus: Arc<dyn EventBus>,
    /// Who is online.
    pub presence: Arc<dyn PresenceStore>,
    /// What the use cases publish to: the bus itself in-process, a queue in
    /// front of Redis (a send is acked without waiting for Redis).
    pub events: Arc<dyn EventPublisher>,
    /// The queue's counts (zero in-process).
    pub publish_stats: Arc<PublishStats>,
}

/// The event bus and presence store: Redis when configured (several
/// nodes), in-process otherwise.
pub(super) async fn realtime_adapters(settings: &Settings) -> anyhow::Result<RealtimeAdapters> {
    match &settings.realtime.redis_url {
        None => {
            let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::default());
            Ok(RealtimeAdapters {
                events: Arc::new(BusPublisher(bus.clone())),
                bus,
                presence: Arc::new(InMemoryPresence::default()),
                publish_stats: Arc::default(),
            })
        }
        Some(url) => {
            let realtime = &settings.realtime;
            let redis = RedisSettings {
                presence_ttl: realtime.redis_presence_ttl,
                ..RedisSettings::new(url.expose(), realtime.redis_prefix.as_str())
            };
            let bus: Arc<dyn EventBus> = Arc::new(
                RedisEventBus::connect(&redis)
                    .await
                    .context("connecting the event bus to Redis (CHAT_REDIS_URL)")?,
            );
            let presence = RedisPresence::connect(&redis)
                .await
                .context("connecting presence to Redis (CHAT_REDIS_URL)")?;
            tracing::info!(
                prefix = %realtime.redis_prefix,
                presence_ttl = ?realtime.redis_presence_ttl,
                "using Redis for cross-node events and presence"
            );
            let queue = QueuedPublisher::spawn(bus.clone(), realtime.redis_event_queue);
            Ok(RealtimeAdapters {
                bus,
                presence: Arc::new(presence),
                publish_stats: queue.stats(),
                events: Arc::new(queue),
            })
        }
    }
}

/// The per-sender send limiter, with a background task that forgets idle
/// senders every minute so its memory stays bounded.
pub(super) fn send_limiter(settings: &Settings) -> crate::limits::SendLimiter {
    let limiter =
        crate::limits::SendLimiter::new(settings.send_rate_per_minute, settings.send_burst);
    let sweeper = limiter.clone();
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            sweeper.forget_idle();
        }
    });
    limiter
}

/// Announces, every `every` until `shutdown`, the users whose connections
/// expired in the presence store. Every node runs it; the store hands each
/// user to one of them.
pub(super) async fn announce_expired_presence(
    presence: PresenceService,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => match presence.announce_expired().await {
                Ok(0) => {}
                Ok(announced) => tracing::info!(announced, "users of lost connections announced offline"),
                Err(err) => tracing::warn!(error = ?err, "cannot announce expired presence"),
            },
        }
    }
}
