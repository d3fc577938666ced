//! Shared state of the HTTP handlers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_app::ChatService;

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::ws::Realtime;

/// Answers the readiness probe: can the store be reached?
#[async_trait]
pub trait Readiness: Send + Sync {
    /// `Ok` when the store answers.
    ///
    /// # Errors
    /// The reason it does not.
    async fn check(&self) -> anyhow::Result<()>;
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub service: ChatService,
    /// Token verification and customer token issuing.
    pub auth: Arc<Authenticator>,
    /// Whether the store can be reached (the readiness probe and the
    /// breaker in front of what needs the store).
    pub store_health: Arc<crate::store_health::StoreHealth>,
    /// Longest customer token lifetime.
    pub customer_token_max_ttl: Duration,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Upload, download and orphan sweep of attachments.
    pub attachments: chat_app::AttachmentService,
    /// The WebSocket transport, presence and the hub.
    pub realtime: Arc<Realtime>,
}

impl AppState {
    /// The send rate limiter (shared with the WebSocket transport).
    pub fn send_limiter(&self) -> &crate::limits::SendLimiter {
        &self.realtime.send_limiter
    }
}
