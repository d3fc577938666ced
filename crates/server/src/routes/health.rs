//! Liveness and readiness probes.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// The process is up.
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers (within a second; 503 otherwise).
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .store_health
        .check()
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(json!({"status": "ready"})))
}
