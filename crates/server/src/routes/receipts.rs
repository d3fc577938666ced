//! Read state: marking a conversation read, every participant's receipts,
//! and the caller's unread total.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_app::Receipt;
use chat_domain::{ConversationId, Seq};
use serde_json::{json, Value};

use crate::dto::{time, ReadRequest};
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller, PathId};
use crate::state::AppState;
use crate::ws::protocol::sender;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations/{id}/read", post(read))
        .route("/conversations/{id}/receipts", get(receipts))
        .route("/unread-count", get(unread_count))
}

async fn read(
    State(state): State<AppState>,
    Caller(principal): Caller,
    PathId(id): PathId<ConversationId>,
    ApiJson(request): ApiJson<ReadRequest>,
) -> Result<Json<Value>, ApiError> {
    let up_to = Seq::from_u64(request.up_to_seq)
        .map_err(|e| ApiError::invalid(format!("up_to_seq: {e}")))?;
    let state = state
        .service
        .mark(&principal, id, Receipt::Read, up_to)
        .await?;
    Ok(Json(json!({
        "conversation_id": state.conversation_id.to_string(),
        "last_read_seq": state.last_read_seq.get(),
        "last_delivered_seq": state.last_delivered_seq.get(),
    })))
}

/// `GET /conversations/{id}/receipts`: every participant's read and
/// delivered markers, from which a sender derives each message's status.
async fn receipts(
    State(state): State<AppState>,
    Caller(principal): Caller,
    PathId(id): PathId<ConversationId>,
) -> Result<Json<Value>, ApiError> {
    let states = state.service.receipts(&principal, id).await?;
    Ok(Json(json!({
        "receipts": states.into_iter().map(|s| json!({
            "reader": sender(s.reader),
            "last_read_seq": s.last_read_seq.get(),
            "last_delivered_seq": s.last_delivered_seq.get(),
            "updated_at": time(s.updated_at),
        })).collect::<Vec<_>>(),
    })))
}

async fn unread_count(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Json<Value>, ApiError> {
    let total = state.service.unread_total(&principal).await?;
    Ok(Json(json!({"unread_count": total})))
}
