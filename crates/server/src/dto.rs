//! Wire types of the REST API (API.md), kept apart from the domain types.

use chat_app::{
    ChannelListing, ChatError, ConversationSummary, MembershipFacts, MessagePage, SendMessage,
};
use chat_domain::{
    AttachedFile, Attachment, AttachmentId, ClientMsgId, Conversation, ConversationKind, Member,
    Message, MessageBody, MessageId, Sender, SystemNotice,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A message author on the wire.
#[derive(Debug, Serialize)]
pub struct SenderDto {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Option<Uuid>,
}

impl From<Sender> for SenderDto {
    fn from(sender: Sender) -> Self {
        Self {
            kind: sender.kind(),
            id: sender.id(),
        }
    }
}

/// An attachment on the wire.
#[derive(Debug, Serialize)]
pub struct AttachmentDto {
    id: Uuid,
    name: String,
    content_type: &'static str,
    size: u64,
    url: String,
}

impl From<Attachment> for AttachmentDto {
    fn from(a: Attachment) -> Self {
        AttachedFile::from(a).into()
    }
}

impl From<AttachedFile> for AttachmentDto {
    fn from(a: AttachedFile) -> Self {
        Self {
            url: format!("/api/v1/chat/attachments/{}", a.id),
            id: a.id.into(),
            name: a.name.as_str().to_owned(),
            content_type: a.media_type.mime(),
            size: a.size,
        }
    }
}

/// A message on the wire.
#[derive(Debug, Serialize)]
pub struct MessageDto {
    id: Uuid,
    conversation_id: Uuid,
    seq: u64,
    sender: SenderDto,
    body: Option<String>,
    attachments: Vec<AttachmentDto>,
    reply_to: Option<Uuid>,
    client_msg_id: Option<String>,
    created_at: String,
    edited_at: Option<String>,
    deleted_at: Option<String>,
    /// What a system message reports; absent on people's messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<NoticeDto>,
}

/// What a system message reports: `{"event", "user", "by"}`.
#[derive(Debug, Serialize)]
pub struct NoticeDto {
    event: &'static str,
    user: Option<SenderDto>,
    by: SenderDto,
}

impl From<SystemNotice> for NoticeDto {
    fn from(notice: SystemNotice) -> Self {
        Self {
            event: notice.kind.as_str(),
            user: notice.user.map(|u| Sender::Staff(u).into()),
            by: Sender::Staff(notice.by).into(),
        }
    }
}

impl From<Message> for MessageDto {
    fn from(m: Message) -> Self {
        let deleted = m.deleted_at.is_some();
        Self {
            id: m.id.into(),
            conversation_id: m.conversation_id.into(),
            seq: m.seq.get(),
            sender: m.sender.into(),
            // A deleted message keeps its place in the sequence, not its text.
            body: if deleted {
                None
            } else {
                m.body.map(chat_domain::MessageBody::into_string)
            },
            // A deleted message keeps neither its text nor its files.
            attachments: if deleted {
                Vec::new()
            } else {
                m.attachments.into_iter().map(Into::into).collect()
            },
            reply_to: m.reply_to.map(Into::into),
            client_msg_id: m.client_msg_id.map(|c| c.as_str().to_owned()),
            created_at: time(m.created_at),
            edited_at: m.edited_at.map(time),
            deleted_at: m.deleted_at.map(time),
            system: m.system.map(Into::into),
        }
    }
}

/// A conversation on the wire; list and get add the last message and the
/// caller's unread count.
#[derive(Debug, Serialize)]
pub struct ConversationDto {
    id: Uuid,
    tenant_id: Uuid,
    kind: &'static str,
    customer_id: Option<Uuid>,
    staff_user_id: Option<Uuid>,
    status: &'static str,
    assignee_id: Option<Uuid>,
    tags: Vec<String>,
    last_seq: u64,
    created_at: String,
    updated_at: String,
    last_activity_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message: Option<Option<MessageDto>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unread_count: Option<u64>,
    /// A channel's name, topic, visibility and archiving time.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    channel: Option<ChannelFieldsDto>,
    /// A direct conversation's people, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    member_ids: Option<Vec<Uuid>>,
    /// How many members a channel has, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    member_count: Option<u64>,
    /// Whether the caller is a member of the channel, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    is_member: Option<bool>,
    /// The caller's role in the channel, when a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

/// The fields only channels have.
#[derive(Debug, Serialize)]
pub struct ChannelFieldsDto {
    name: String,
    topic: Option<String>,
    visibility: &'static str,
    archived_at: Option<String>,
}

impl From<Conversation> for ConversationDto {
    fn from(c: Conversation) -> Self {
        Self {
            id: c.id.into(),
            tenant_id: c.tenant.into(),
            kind: c.kind.name(),
            customer_id: c.kind.customer_id().map(Into::into),
            staff_user_id: c.kind.clinician().map(Into::into),
            status: c.status.as_str(),
            assignee_id: c.assignee.map(Into::into),
            tags: c.tags.to_strings(),
            last_seq: c.last_seq.get(),
            created_at: time(c.created_at),
            updated_at: time(c.updated_at),
            last_activity_at: time(c.last_activity_at),
            last_message: None,
            unread_count: None,
            channel: c.channel.map(|profile| ChannelFieldsDto {
                name: profile.name.as_str().to_owned(),
                topic: profile.topic.map(|t| t.as_str().to_owned()),
                visibility: c.kind.visibility().map_or("public", |v| v.as_str()),
                archived_at: c.kind.archived_at().map(time),
            }),
            member_ids: None,
            member_count: None,
            is_member: None,
            role: None,
        }
    }
}

impl ConversationDto {
    /// With what the caller knows of its members.
    fn with_membership(mut self, kind: &ConversationKind, facts: Option<MembershipFacts>) -> Self {
        let Some(facts) = facts else {
            return self;
        };
        match kind {
            ConversationKind::Direct => {
                self.member_ids = Some(facts.member_ids.into_iter().map(Into::into).collect());
            }
            _ => {
                self.member_count = Some(facts.member_count);
                self.is_member = Some(facts.role.is_some());
                self.role = facts.role.map(|r| r.as_str());
            }
        }
        self
    }
}

impl From<ChannelListing> for ConversationDto {
    fn from(listing: ChannelListing) -> Self {
        let kind = listing.conversation.kind;
        let facts = MembershipFacts {
            member_count: listing.member_count,
            role: listing.role,
            member_ids: Vec::new(),
        };
        ConversationDto::from(listing.conversation).with_membership(&kind, Some(facts))
    }
}

impl From<ConversationSummary> for ConversationDto {
    fn from(s: ConversationSummary) -> Self {
        let kind = s.conversation.kind;
        Self {
            last_message: Some(s.last_message.map(Into::into)),
            unread_count: Some(s.unread_count),
            ..s.conversation.into()
        }
        .with_membership(&kind, s.membership)
    }
}

/// A page of channels.
#[derive(Debug, Serialize)]
pub struct ChannelListDto {
    pub channels: Vec<ConversationDto>,
    pub next_cursor: Option<String>,
}

/// A member on the wire: `{"user": {sender}, "role", "joined_at"}`.
#[derive(Debug, Serialize)]
pub struct MemberDto {
    user: SenderDto,
    role: &'static str,
    joined_at: String,
}

impl From<Member> for MemberDto {
    fn from(m: Member) -> Self {
        Self {
            user: Sender::Staff(m.user).into(),
            role: m.role.as_str(),
            joined_at: time(m.joined_at),
        }
    }
}

/// A page of members, or the members a request added.
#[derive(Debug, Serialize)]
pub struct MemberListDto {
    pub members: Vec<MemberDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Option<String>>,
}

/// `POST /direct`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenDirectRequest {
    pub user_ids: Vec<Uuid>,
}

/// `POST /channels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    pub name: String,
    pub visibility: String,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub member_ids: Vec<Uuid>,
}

/// `PATCH /channels/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub topic: Option<Option<String>>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub archived: Option<bool>,
}

/// `POST /channels/{id}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMembersRequest {
    pub user_ids: Vec<Uuid>,
    #[serde(default)]
    pub role: Option<String>,
}

/// `PATCH /channels/{id}/members/{user_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role: String,
}

/// `GET /channels` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListChannelsQuery {
    #[serde(default)]
    pub joined: Option<bool>,
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `GET /channels/{id}/members` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMembersQuery {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A page of conversations.
#[derive(Debug, Serialize)]
pub struct ConversationListDto {
    pub conversations: Vec<ConversationDto>,
    pub next_cursor: Option<String>,
}

/// A page of messages.
#[derive(Debug, Serialize)]
pub struct MessagePageDto {
    messages: Vec<MessageDto>,
    has_more: bool,
}

impl From<MessagePage> for MessagePageDto {
    fn from(page: MessagePage) -> Self {
        Self {
            messages: page.messages.into_iter().map(Into::into).collect(),
            has_more: page.has_more,
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`).
fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /conversations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    pub customer_id: Uuid,
    #[serde(default)]
    pub staff_user_id: Option<Uuid>,
}

/// `PATCH /conversations/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversationRequest {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub assignee_id: Option<Option<Uuid>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// `POST /conversations/{id}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub attachment_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    #[serde(default)]
    pub client_msg_id: Option<String>,
}

/// `POST /conversations/{id}/read`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    pub up_to_seq: u64,
}

/// `POST /customer-token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerTokenRequest {
    pub customer_id: Uuid,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// `GET /conversations` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConversationsQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `GET /conversations/{id}/messages` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMessagesQuery {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub before: Option<u64>,
    #[serde(default)]
    pub after: Option<u64>,
}

/// Validates the fields of a send, over REST or WebSocket, into a
/// [`SendMessage`]: the body first, then the `client_msg_id`.
///
/// # Errors
/// [`ChatError::Invalid`] naming the field.
pub fn send_message(
    body: Option<&str>,
    attachment_ids: Option<Vec<Uuid>>,
    reply_to: Option<Uuid>,
    client_msg_id: Option<&str>,
) -> Result<SendMessage, ChatError> {
    let body = body
        .map(MessageBody::parse)
        .transpose()
        .map_err(|e| ChatError::invalid(chat_app::Field::Body, e))?;
    let client_msg_id = client_msg_id
        .map(ClientMsgId::parse)
        .transpose()
        .map_err(|e| ChatError::invalid(chat_app::Field::ClientMsgId, e))?;
    Ok(SendMessage {
        body,
        attachment_ids: attachment_ids
            .unwrap_or_default()
            .into_iter()
            .map(AttachmentId::from_uuid)
            .collect(),
        reply_to: reply_to.map(MessageId::from_uuid),
        client_msg_id,
    })
}
