//! Staff conversations: direct conversations and channels, their members,
//! joining and leaving. Staff only: a customer token gets 401 here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chat_app::{ChannelListRequest, ListCursor, NewChannelRequest};
use chat_domain::{
    ChannelName, ChannelPatch, ChannelTopic, ConversationId, MemberRole, Principal, StaffUserId,
    Visibility,
};

use super::page_limit;
use crate::dto::{
    AddMembersRequest, ChannelListDto, ConversationDto, CreateChannelRequest, ListChannelsQuery,
    ListMembersQuery, MemberDto, MemberListDto, OpenDirectRequest, UpdateChannelRequest,
    UpdateMemberRequest,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, PathId, StaffCaller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/direct", post(open_direct))
        .route("/channels", get(list).post(create))
        .route("/channels/{id}", patch(update))
        .route("/channels/{id}/join", post(join))
        .route("/channels/{id}/leave", post(leave))
        .route("/channels/{id}/members", get(members).post(add_members))
        .route(
            "/channels/{id}/members/{user_id}",
            patch(update_member).delete(remove_member),
        )
}

fn staff_ids(raw: &[uuid::Uuid]) -> Vec<StaffUserId> {
    raw.iter().copied().map(StaffUserId::from_uuid).collect()
}

fn name(raw: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(raw).map_err(|e| ApiError::invalid(format!("name {e}")))
}

fn topic(raw: &str) -> Result<Option<ChannelTopic>, ApiError> {
    ChannelTopic::parse(raw).map_err(|e| ApiError::invalid(format!("topic {e}")))
}

fn visibility(raw: &str) -> Result<Visibility, ApiError> {
    raw.parse::<Visibility>()
        .map_err(|e| ApiError::invalid(e.to_string()))
}

fn role(raw: &str) -> Result<MemberRole, ApiError> {
    raw.parse::<MemberRole>()
        .map_err(|e| ApiError::invalid(e.to_string()))
}

fn cursor(raw: Option<&str>) -> Result<Option<ListCursor>, ApiError> {
    raw.map(str::parse::<ListCursor>)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))
}

/// The conversation as the caller now sees it, with its membership facts.
async fn shown(
    state: &AppState,
    principal: &Principal,
    id: ConversationId,
) -> Result<Json<ConversationDto>, ApiError> {
    Ok(Json(
        state.service.get_conversation(principal, id).await?.into(),
    ))
}

async fn open_direct(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    ApiJson(request): ApiJson<OpenDirectRequest>,
) -> Result<(StatusCode, Json<ConversationDto>), ApiError> {
    let (conversation, created) = state
        .service
        .open_direct(&principal, &staff_ids(&request.user_ids))
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, shown(&state, &principal, conversation.id).await?))
}

async fn create(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    ApiJson(request): ApiJson<CreateChannelRequest>,
) -> Result<(StatusCode, Json<ConversationDto>), ApiError> {
    let request = NewChannelRequest {
        name: name(&request.name)?,
        visibility: visibility(&request.visibility)?,
        topic: request.topic.as_deref().map(topic).transpose()?.flatten(),
        member_ids: staff_ids(&request.member_ids),
    };
    let channel = state.service.create_channel(&principal, request).await?;
    Ok((
        StatusCode::CREATED,
        shown(&state, &principal, channel.id).await?,
    ))
}

async fn list(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    ApiQuery(query): ApiQuery<ListChannelsQuery>,
) -> Result<Json<ChannelListDto>, ApiError> {
    if let Some(q) = &query.q {
        if q.chars().count() > ChannelName::MAX_CHARS {
            return Err(ApiError::invalid(format!(
                "q must be at most {} characters",
                ChannelName::MAX_CHARS
            )));
        }
    }
    let request = ChannelListRequest {
        joined: query.joined,
        prefix: query.q,
        limit: page_limit(query.limit)?,
        cursor: cursor(query.cursor.as_deref())?,
    };
    let page = state.service.list_channels(&principal, request).await?;
    Ok(Json(ChannelListDto {
        channels: page.channels.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn update(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    PathId(id): PathId<ConversationId>,
    ApiJson(request): ApiJson<UpdateChannelRequest>,
) -> Result<Json<ConversationDto>, ApiError> {
    let patch = ChannelPatch {
        name: request.name.as_deref().map(name).transpose()?,
        topic: request
            .topic
            .map(|t| t.as_deref().map(topic).transpose().map(Option::flatten))
            .transpose()?,
        visibility: request.visibility.as_deref().map(visibility).transpose()?,
        archived: request.archived,
    };
    state.service.update_channel(&principal, id, patch).await?;
    shown(&state, &principal, id).await
}

async fn join(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    PathId(id): PathId<ConversationId>,
) -> Result<Json<ConversationDto>, ApiError> {
    state.service.join_channel(&principal, id).await?;
    shown(&state, &principal, id).await
}

async fn leave(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    PathId(id): PathId<ConversationId>,
) -> Result<StatusCode, ApiError> {
    state.service.leave_channel(&principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    PathId(id): PathId<ConversationId>,
    ApiQuery(query): ApiQuery<ListMembersQuery>,
) -> Result<Json<MemberListDto>, ApiError> {
    let cursor = cursor(query.cursor.as_deref())?;
    if cursor.as_ref().is_some_and(|c| c.joined_at().is_none()) {
        return Err(ApiError::invalid("cursor is not one of a member list"));
    }
    let page = state
        .service
        .list_members(&principal, id, page_limit(query.limit)?, cursor)
        .await?;
    Ok(Json(MemberListDto {
        members: page.members.into_iter().map(Into::into).collect(),
        next_cursor: Some(page.next_cursor.map(|c| c.to_string())),
    }))
}

async fn add_members(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    PathId(id): PathId<ConversationId>,
    ApiJson(request): ApiJson<AddMembersRequest>,
) -> Result<Json<MemberListDto>, ApiError> {
    let role = request
        .role
        .as_deref()
        .map(role)
        .transpose()?
        .unwrap_or(MemberRole::Member);
    let outcome = state
        .service
        .add_members(&principal, id, &staff_ids(&request.user_ids), role)
        .await?;
    Ok(Json(MemberListDto {
        members: outcome.changed.into_iter().map(Into::into).collect(),
        next_cursor: None,
    }))
}

/// The channel and member of a `/channels/{id}/members/{user_id}` path;
/// anything that is not two ids is no such route.
struct MemberPath(ConversationId, StaffUserId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let not_found = || ApiError::not_found("not found");
        let Path((id, user)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        let id = ConversationId::parse(&id).map_err(|_| not_found())?;
        let user = StaffUserId::parse(&user).map_err(|_| not_found())?;
        Ok(Self(id, user))
    }
}

async fn update_member(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    MemberPath(id, user): MemberPath,
    ApiJson(request): ApiJson<UpdateMemberRequest>,
) -> Result<Json<MemberDto>, ApiError> {
    let member = state
        .service
        .set_member_role(&principal, id, user, role(&request.role)?)
        .await?;
    Ok(Json(member.into()))
}

async fn remove_member(
    State(state): State<AppState>,
    StaffCaller(principal): StaffCaller,
    MemberPath(id, user): MemberPath,
) -> Result<StatusCode, ApiError> {
    state.service.remove_member(&principal, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
