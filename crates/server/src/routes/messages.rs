//! Messages of a conversation: history, send, edit (its sender) and soft
//! delete (its sender or a tenant admin). Sends, edits and deletes are
//! announced in real time.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use chat_app::MessageCursor;
use chat_domain::{ConversationId, MessageBody, MessageId, Seq};
use serde::Deserialize;

use super::page_limit;
use crate::dto::{self, ListMessagesQuery, MessageDto, MessagePageDto, SendMessageRequest};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations/{id}/messages", get(history).post(send))
        .route(
            "/conversations/{id}/messages/{message_id}",
            patch(edit).delete(delete),
        )
}

async fn history(
    State(state): State<AppState>,
    Caller(principal): Caller,
    PathId(id): PathId<ConversationId>,
    ApiQuery(query): ApiQuery<ListMessagesQuery>,
) -> Result<Json<MessagePageDto>, ApiError> {
    let seq = |raw: u64, name: &str| {
        Seq::from_u64(raw).map_err(|e| ApiError::invalid(format!("{name}: {e}")))
    };
    let cursor = match (query.before, query.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give either before or after, not both"))
        }
        (Some(before), None) => MessageCursor::Before(seq(before, "before")?),
        (None, Some(after)) => MessageCursor::After(seq(after, "after")?),
        (None, None) => MessageCursor::Latest,
    };
    let page = state
        .service
        .list_messages(&principal, id, cursor, page_limit(query.limit)?)
        .await?;
    Ok(Json(page.into()))
}

async fn send(
    State(state): State<AppState>,
    Caller(principal): Caller,
    PathId(id): PathId<ConversationId>,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> Result<(StatusCode, Json<MessageDto>), ApiError> {
    state
        .send_limiter()
        .check(&principal)
        .map_err(ApiError::rate_limited)?;
    let send = dto::send_message(
        request.body.as_deref(),
        request.attachment_ids,
        request.reply_to,
        request.client_msg_id.as_deref(),
    )?;
    let outcome = state.service.send_message(&principal, id, send).await?;
    let status = if outcome.created {
        state.metrics.message_sent();
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome.message.into())))
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
