//! The HTTP routes: one module per resource, assembled by [`router`].
//! A new route goes into the module of the resource its path names
//! (`conversations`, `channels` (with `/direct`), `messages`, `receipts`, `presence`, `attachments`,
//! `tokens`, `health`); a new resource gets a module and one `merge` line.

mod attachments;
mod channels;
mod conversations;
mod health;
mod messages;
mod presence;
mod receipts;
mod tokens;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use chat_app::PageLimit;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store_health::StoreHealth;

/// The page size of a `limit` query parameter, the default when absent.
fn page_limit(raw: Option<u32>) -> Result<PageLimit, ApiError> {
    raw.map_or(Ok(PageLimit::DEFAULT), |l| {
        PageLimit::parse(l).map_err(ApiError::from)
    })
}

/// Every route of the server with its state: the REST API under
/// `/api/v1/chat`, plus `/health`, `/ready` and `/metrics`. Hosts can `merge` or `nest`
/// it into their own axum application; [`crate::Application`] adds request
/// tracing and timeouts around it.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(conversations::router())
        .merge(channels::router())
        .merge(attachments::router())
        .merge(tokens::router())
        .merge(messages::router())
        .merge(receipts::router())
        .merge(presence::router())
        .merge(crate::ws::router())
        .layer(axum::middleware::from_fn_with_state(
            state.store_health.clone(),
            refuse_while_store_down,
        ));
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

/// Answers 503 `unavailable` at once while the store cannot be reached
/// (see [`crate::store_health`]), instead of letting the request wait for
/// the connection pool and fail.
async fn refuse_while_store_down(
    State(health): State<Arc<StoreHealth>>,
    request: Request,
    next: Next,
) -> Response {
    if health.is_down() {
        return ApiError::store_unavailable(health.fault()).into_response();
    }
    next.run(request).await
}

/// Adds what browsers need to `router`: `Cache-Control: no-store` on every
/// response that does not say otherwise (API answers carry health data,
/// which no browser or proxy cache may keep), `Strict-Transport-Security`
/// when configured, and CORS for the configured origins.
///
/// # Errors
/// When a configured origin is not a valid header value.
pub fn with_browser_headers(
    router: Router,
    settings: &crate::config::BrowserSettings,
) -> anyhow::Result<Router> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    use tower_http::set_header::SetResponseHeaderLayer;

    let mut router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    if let Some(max_age) = settings.hsts_max_age_seconds {
        let value = HeaderValue::from_str(&format!("max-age={max_age}; includeSubDomains"))?;
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            value,
        ));
    }
    if !settings.cors_origins.is_empty() {
        let origins = settings
            .cors_origins
            .iter()
            .map(|origin| HeaderValue::from_str(origin))
            .collect::<Result<Vec<_>, _>>()?;
        // Bearer tokens, not cookies: no credentials mode.
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::HeaderName::from_static("x-request-id"),
                ])
                .expose_headers([
                    header::RETRY_AFTER,
                    header::HeaderName::from_static("x-request-id"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    Ok(router)
}
