//! `POST /customer-token`: staff hand a customer a short-lived chat token.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chat_domain::CustomerId;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::dto::CustomerTokenRequest;
use crate::error::ApiError;
use crate::extract::{ApiJson, StaffCaller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/customer-token", post(issue))
}

const DEFAULT_TTL: Duration = Duration::from_secs(3600);

async fn issue(
    State(state): State<AppState>,
    StaffCaller(staff): StaffCaller,
    ApiJson(request): ApiJson<CustomerTokenRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ttl = request.ttl_seconds.map_or(DEFAULT_TTL, Duration::from_secs);
    let max = state.customer_token_max_ttl;
    if ttl.is_zero() || ttl > max {
        return Err(ApiError::invalid(format!(
            "ttl_seconds must be between 1 and {}",
            max.as_secs()
        )));
    }
    let now = Utc::now();
    let expires_at =
        now + chrono::Duration::from_std(ttl).map_err(|e| ApiError::internal(e.into()))?;
    let token = state
        .auth
        .customers
        .issue(
            staff.tenant(),
            CustomerId::from_uuid(request.customer_id),
            now,
            expires_at,
        )
        .map_err(ApiError::internal)?;
    tracing::info!(customer_id = %request.customer_id, ttl_seconds = ttl.as_secs(), "customer token issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        })),
    ))
}
