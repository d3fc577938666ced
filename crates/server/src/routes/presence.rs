//! Presence over REST: who of a list of staff and customers is online.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chat_domain::{CustomerId, Sender, StaffUserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::dto::time;
use crate::error::ApiError;
use crate::extract::{ApiQuery, StaffCaller};
use crate::state::AppState;
use crate::ws::protocol::sender;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/presence", get(presence))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceQuery {
    /// Staff user ids, comma-separated.
    #[serde(default)]
    user_ids: Option<String>,
    /// Customer ids, comma-separated.
    #[serde(default)]
    customer_ids: Option<String>,
}

fn ids<T>(
    raw: Option<&str>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse(s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "{name}: `{}` is not a UUID",
                    s.chars().take(64).collect::<String>()
                ))
            })
        })
        .collect()
}

/// `GET /presence?user_ids=a,b&customer_ids=c`: staff only.
async fn presence(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    ApiQuery(query): ApiQuery<PresenceQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut users: Vec<Sender> = ids(query.user_ids.as_deref(), "user_ids", |s| {
        StaffUserId::parse(s).ok().map(Sender::Staff)
    })?;
    users.extend(ids(query.customer_ids.as_deref(), "customer_ids", |s| {
        CustomerId::parse(s).ok().map(Sender::Customer)
    })?);
    if users.is_empty() {
        return Err(ApiError::invalid("give user_ids and/or customer_ids"));
    }
    let found = state
        .realtime
        .presence
        .presence_of(&principal, &users)
        .await?;
    Ok(Json(Value::Array(
        found
            .into_iter()
            .map(|p| {
                json!({
                    "user": sender(p.user),
                    "status": p.status.as_str(),
                    "last_seen_at": p.last_seen_at.map(time),
                })
            })
            .collect(),
    )))
}
