//! Conversations, messages, read markers and unread totals.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_app::{ConversationCursor, MessageCursor, PageLimit, Receipt};
use chat_domain::{
    ConversationId, ConversationPatch, ConversationStatus, CustomerId, Seq, StaffUserId, Tags,
};
use serde_json::{json, Value};

use crate::dto::{
    self, ConversationDto, ConversationListDto, CreateConversationRequest, ListConversationsQuery,
    ListMessagesQuery, MessageDto, MessagePageDto, ReadRequest, SendMessageRequest,
    UpdateConversationRequest,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, PathId, StaffCaller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list).post(create))
        .route("/conversations/{id}", get(show).patch(update))
        .route("/conversations/{id}/messages", get(messages).post(send))
        .route("/conversations/{id}/read", post(read))
        .route("/unread-count", get(unread_count))
}

fn limit(raw: Option<u32>) -> Result<PageLimit, ApiError> {
    raw.map_or(Ok(PageLimit::DEFAULT), |l| {
        PageLimit::parse(l).map_err(ApiError::from)
    })
}

fn status(raw: &str) -> Result<ConversationStatus, ApiError> {
    raw.parse::<ConversationStatus>()
        .map_err(|e| ApiError::invalid(e.to_string()))
}

async fn list(
    State(state): State<AppState>,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<ListConversationsQuery>,
) -> Result<Json<ConversationListDto>, ApiError> {
    let status = query.status.as_deref().map(status).transpose()?;
    let cursor = query
        .cursor
        .as_deref()
        .map(str::parse::<ConversationCursor>)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let page = state
        .service
        .list_conversations(&principal, status, limit(query.limit)?, cursor)
        .await?;
    Ok(Json(ConversationListDto {
        conversations: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn create(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    ApiJson(request): ApiJson<CreateConversationRequest>,
) -> Result<(StatusCode, Json<ConversationDto>), ApiError> {
    let (conversation, created) = state
        .service
        .get_or_create_conversation(
            &principal,
            CustomerId::from_uuid(request.customer_id),
            request.staff_user_id.map(StaffUserId::from_uuid),
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conversation.into())))
}

async fn show(
    State(state): State<AppState>,
    Caller(principal): Caller,
    PathId(id): PathId<ConversationId>,
) -> Result<Json<ConversationDto>, ApiError> {
    let summary = state.service.get_conversation(&principal, id).await?;
    Ok(Json(summary.into()))
}

async fn update(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    PathId(id): PathId<ConversationId>,
    ApiJson(request): ApiJson<UpdateConversationRequest>,
) -> Result<Json<ConversationDto>, ApiError> {
    let patch = ConversationPatch {
        status: request.status.as_deref().map(status).transpose()?,
        assignee: request
            .assignee_id
            .map(|assignee| assignee.map(StaffUserId::from_uuid)),
        tags: request
            .tags
            .map(|tags| Tags::parse(&tags))
            .transpose()
            .map_err(|e| ApiError::invalid(format!("tags: {e}")))?,
    };
    let conversation = state
        .service
        .update_conversation(&principal, id, patch)
        .await?;
    Ok(Json(conversation.into()))
}

async fn messages(
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
        .list_messages(&principal, id, cursor, limit(query.limit)?)
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

async fn unread_count(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Json<Value>, ApiError> {
    let total = state.service.unread_total(&principal).await?;
    Ok(Json(json!({"unread_count": total})))
}
