//! Conversations: list, open (get or create), show and update.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chat_app::ConversationCursor;
use chat_domain::{
    ConversationId, ConversationPatch, ConversationStatus, CustomerId, KindName, StaffUserId, Tags,
};

use super::page_limit;
use crate::dto::{
    ConversationDto, ConversationListDto, CreateConversationRequest, ListConversationsQuery,
    UpdateConversationRequest,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, PathId, StaffCaller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list).post(create))
        .route("/conversations/{id}", get(show).patch(update))
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
    let kind = query
        .kind
        .as_deref()
        .map(str::parse::<KindName>)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let cursor = query
        .cursor
        .as_deref()
        .map(str::parse::<ConversationCursor>)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let page = state
        .service
        .list_conversations(&principal, status, kind, page_limit(query.limit)?, cursor)
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
