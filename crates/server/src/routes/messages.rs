//! Changes to one message: edit (its sender) and soft delete (its sender or
//! a tenant admin). Both are announced in real time.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::patch;
use axum::{Json, Router};
use chat_domain::{ConversationId, MessageBody, MessageId};
use serde::Deserialize;

use crate::dto::MessageDto;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route(
        "/conversations/{id}/messages/{message_id}",
        patch(edit).delete(delete),
    )
}

/// `PATCH .../messages/{message_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditRequest {
    body: String,
}

fn ids(
    raw: Result<Path<(String, String)>, PathRejection>,
) -> Result<(ConversationId, MessageId), ApiError> {
    let Path(raw) = raw.map_err(|_| ApiError::not_found("not found"))?;
    let conversation = raw
        .0
        .parse()
        .map_err(|_| ApiError::not_found("not found"))?;
    let message = raw
        .1
        .parse()
        .map_err(|_| ApiError::not_found("not found"))?;
    Ok((conversation, message))
}

async fn edit(
    State(state): State<AppState>,
    Caller(principal): Caller,
    raw: Result<Path<(String, String)>, PathRejection>,
    ApiJson(request): ApiJson<EditRequest>,
) -> Result<Json<MessageDto>, ApiError> {
    let (conversation, message) = ids(raw)?;
    let body =
        MessageBody::parse(&request.body).map_err(|e| ApiError::invalid(format!("body: {e}")))?;
    let edited = state
        .service
        .edit_message(&principal, conversation, message, body)
        .await?;
    Ok(Json(edited.into()))
}

async fn delete(
    State(state): State<AppState>,
    Caller(principal): Caller,
    raw: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<MessageDto>, ApiError> {
    let (conversation, message) = ids(raw)?;
    let deleted = state
        .service
        .delete_message(&principal, conversation, message)
        .await?;
    // Its files are unreachable now; the sweeper frees their storage.
    state.attachments.request_purge();
    Ok(Json(deleted.into()))
}
