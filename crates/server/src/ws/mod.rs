//! The WebSocket transport: `GET /api/v1/chat/ws`, authenticated before the
//! upgrade, then one task per connection fed by this node's [`Hub`].
//!
//! Where things go:
//! - `protocol/`: the wire: client frames (`client.rs`) and every server
//!   frame (`server.rs`, [`protocol::ServerFrame`]);
//! - `cmd/`: one handler per client frame;
//! - `connection/`: one connection's lifecycle, writer, send pipeline,
//!   typing, resume tracking and abuse counting;
//! - `hub/`: this node's registry of connections and the fan-out, with the
//!   audience rule (who hears a conversation);
//! - `dispatch.rs`: bus events (through `chat_app::OrderedFeed`) to frames
//!   and audiences;
//! - `outbound.rs`: what the hub queues for a connection, and how it closes
//!   one;
//! - `seat.rs`: a connection's place in presence and the per-user limit.

mod cmd;
mod connection;
mod dispatch;
pub mod hub;
pub mod outbound;
pub mod protocol;
mod seat;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chat_app::{ChatService, PresenceService};
use chat_domain::Principal;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use hub::Hub;
pub use outbound::CloseReason;
pub(crate) use seat::Seat;

use crate::auth::AuthError;
use crate::config::RealtimeSettings;
use crate::error::ApiError;
use crate::state::AppState;

/// Bytes read from a socket at a time.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Frames this many times the configured limit are cut off unread.
const HARD_LIMIT_FACTOR: usize = 4;

/// Everything the WebSocket transport needs.
pub struct Realtime {
    /// This node's connections and event router.
    pub hub: Arc<Hub>,
    /// The chat use cases.
    pub service: ChatService,
    /// Presence use cases.
    pub presence: PresenceService,
    /// Limits and timings.
    pub settings: RealtimeSettings,
    /// Cancelled when the server shuts down: every socket closes with 1001.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Per-sender send limits, shared with REST.
    pub send_limiter: crate::limits::SendLimiter,
    /// Whether the store can be reached: sends are refused at once while
    /// it cannot.
    pub store_health: Arc<crate::store_health::StoreHealth>,
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

/// The caller of a WebSocket upgrade: a bearer header, or `?token=` for
/// clients (browsers) that cannot set headers.
struct WsCaller(Principal);

impl FromRequestParts<AppState> for WsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let token = match header {
            Some(token) => token,
            None => {
                let Query(query) = Query::<TokenQuery>::from_request_parts(parts, state)
                    .await
                    .map_err(|_| ApiError::from(AuthError::Missing))?;
                query.token.ok_or(AuthError::Missing)?
            }
        };
        Ok(Self(state.auth.authenticate(&token)?))
    }
}

/// Authenticates, then upgrades. A bad or missing token is refused with 401
/// before any upgrade happens.
async fn upgrade(
    State(state): State<AppState>,
    WsCaller(principal): WsCaller,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let rt = state.realtime.clone();
    if rt.shutdown.is_cancelled() {
        return Err(ApiError::unavailable(anyhow::anyhow!("shutting down")));
    }
    // tungstenite only cuts off what is far too large; the connection closes
    // anything above the configured limit with 1009 once it is read whole.
    let limit = rt
        .settings
        .max_frame_bytes
        .saturating_mul(HARD_LIMIT_FACTOR);
    let seat = Seat::take(&rt, principal).await?;
    let tasks = rt.tasks.clone();
    let metrics = state.metrics.clone();
    Ok(ws
        // tungstenite zero-fills its whole read buffer before every read:
        // at the default 128 KiB that is 128 KiB of resident memory per
        // idle socket. Larger frames still grow the buffer as they need.
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|err| tracing::debug!(error = %err, "websocket upgrade failed"))
        .on_upgrade(move |socket| tasks.track_future(connection::run(socket, seat, rt, metrics))))
}
