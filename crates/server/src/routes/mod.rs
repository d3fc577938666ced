//! The HTTP routes: one module per area, assembled by [`router`].

mod attachments;
mod conversations;
mod health;
mod messages;
mod realtime;
mod tokens;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the server with its state: the REST API under
/// `/api/v1/chat`, plus `/health`, `/ready` and `/metrics`. Hosts can `merge` or `nest`
/// it into their own axum application; [`crate::Application`] adds request
/// tracing and timeouts around it.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(conversations::router())
        .merge(attachments::router())
        .merge(tokens::router())
        .merge(messages::router())
        .merge(realtime::router())
        .merge(crate::ws::router());
    Router::new()
        .nest("/api/v1/chat", api)
        .merge(health::router())
        .route("/metrics", get(crate::metrics::serve))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(state.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}
