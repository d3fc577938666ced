//! Row <-> domain mapping shared by the repositories. A row that breaks a
//! domain rule (unknown status, sender kind...) is an error with context,
//! never a panic.

use anyhow::{bail, Context as _};
use chat_app::ConversationSummary;
use chat_domain::{
    ChannelName, ChannelProfile, ChannelTopic, ClientMsgId, Conversation, ConversationId,
    ConversationKind, ConversationStatus, CustomerId, Member, MemberRole, Message, MessageBody,
    MessageId, NoticeKind, Sender, Seq, StaffUserId, SystemNotice, Tags, TenantId, Visibility,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row as _;
use uuid::Uuid;

/// The conversation columns, in the order [`conversation`] reads them.
pub(crate) const CONVERSATION_COLUMNS: &str = "id, tenant_id, kind, customer_id, staff_user_id, \
     status, assignee_id, tags, last_seq, created_at, updated_at, last_activity_at, visibility, \
     archived_at, name, topic";

/// [`CONVERSATION_COLUMNS`] of the table aliased `c`, for joins.
pub(crate) const C_CONVERSATION_COLUMNS: &str = "c.id, c.tenant_id, c.kind, c.customer_id, \
     c.staff_user_id, c.status, c.assignee_id, c.tags, c.last_seq, c.created_at, c.updated_at, \
     c.last_activity_at, c.visibility, c.archived_at, c.name, c.topic";

/// The message columns, unqualified.
pub(crate) const MESSAGE_COLUMNS: &str = "id, tenant_id, conversation_id, seq, sender_type, \
     sender_id, body, reply_to, client_msg_id, created_at, edited_at, deleted_at, system_event, \
     system_user_id, system_by_id";

/// The names under which a query returns the columns of a message.
pub(crate) struct MessageColumns {
    id: &'static str,
    tenant_id: &'static str,
    conversation_id: &'static str,
    seq: &'static str,
    sender_type: &'static str,
    sender_id: &'static str,
    body: &'static str,
    reply_to: &'static str,
    client_msg_id: &'static str,
    created_at: &'static str,
    edited_at: &'static str,
    deleted_at: &'static str,
    system_event: &'static str,
    system_user_id: &'static str,
    system_by_id: &'static str,
}

/// A message selected on its own ([`MESSAGE_COLUMNS`]).
pub(crate) const PLAIN: MessageColumns = MessageColumns {
    id: "id",
    tenant_id: "tenant_id",
    conversation_id: "conversation_id",
    seq: "seq",
    sender_type: "sender_type",
    sender_id: "sender_id",
    body: "body",
    reply_to: "reply_to",
    client_msg_id: "client_msg_id",
    created_at: "created_at",
    edited_at: "edited_at",
    deleted_at: "deleted_at",
    system_event: "system_event",
    system_user_id: "system_user_id",
    system_by_id: "system_by_id",
};

/// The last message beside a conversation ([`LAST_MESSAGE_SELECT`]).
pub(crate) const LAST_MESSAGE: MessageColumns = MessageColumns {
    id: "m_id",
    tenant_id: "m_tenant_id",
    conversation_id: "m_conversation_id",
    seq: "m_seq",
    sender_type: "m_sender_type",
    sender_id: "m_sender_id",
    body: "m_body",
    reply_to: "m_reply_to",
    client_msg_id: "m_client_msg_id",
    created_at: "m_created_at",
    edited_at: "m_edited_at",
    deleted_at: "m_deleted_at",
    system_event: "m_system_event",
    system_user_id: "m_system_user_id",
    system_by_id: "m_system_by_id",
};

/// Selects a lateral `m` under the names of [`LAST_MESSAGE`].
pub(crate) const LAST_MESSAGE_SELECT: &str = "m.id as m_id, m.tenant_id as m_tenant_id, \
     m.conversation_id as m_conversation_id, m.seq as m_seq, m.sender_type as m_sender_type, \
     m.sender_id as m_sender_id, m.body as m_body, m.reply_to as m_reply_to, \
     m.client_msg_id as m_client_msg_id, m.created_at as m_created_at, \
     m.edited_at as m_edited_at, m.deleted_at as m_deleted_at, \
     m.system_event as m_system_event, m.system_user_id as m_system_user_id, \
     m.system_by_id as m_system_by_id";

/// The id a read state is keyed by: the nil uuid stands for the system, which
/// has no id (the primary key needs a value).
pub(crate) fn reader_id(reader: Sender) -> Uuid {
    reader.id().unwrap_or(Uuid::nil())
}

/// `at` as PostgreSQL stores it: whole microseconds since 2000-01-01, cut
/// toward that epoch as sqlx encodes a `timestamptz`, so a value handed back
/// by a write equals the one later reads return.
pub(crate) fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    let epoch = DateTime::from_timestamp(946_684_800, 0).unwrap_or(at);
    (at - epoch)
        .num_microseconds()
        .and_then(|micros| epoch.checked_add_signed(chrono::TimeDelta::microseconds(micros)))
        .unwrap_or(at)
}

/// A stored sequence number.
pub(crate) fn seq(raw: i64, what: &str) -> anyhow::Result<Seq> {
    Seq::from_i64(raw).with_context(|| format!("stored {what} {raw} is negative"))
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> anyhow::Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .with_context(|| format!("reading column `{column}`"))
}

/// A conversation from the [`CONVERSATION_COLUMNS`] of a row.
pub(crate) fn conversation(row: &PgRow) -> anyhow::Result<Conversation> {
    let id: Uuid = get(row, "id")?;
    let kind: String = get(row, "kind")?;
    let kind = match kind.as_str() {
        "customer" => {
            let customer_id: Option<Uuid> = get(row, "customer_id")?;
            let customer_id = customer_id
                .with_context(|| format!("customer conversation {id} has no customer_id"))?;
            let clinician: Option<Uuid> = get(row, "staff_user_id")?;
            ConversationKind::Customer {
                customer_id: CustomerId::from_uuid(customer_id),
                clinician: clinician.map(StaffUserId::from_uuid),
            }
        }
        "direct" => ConversationKind::Direct,
        "channel" => {
            let visibility: Option<String> = get(row, "visibility")?;
            let visibility: Visibility = visibility
                .with_context(|| format!("channel {id} has no visibility"))?
                .parse()
                .with_context(|| format!("channel {id} has an unknown visibility"))?;
            ConversationKind::Channel {
                visibility,
                archived_at: get(row, "archived_at")?,
            }
        }
        other => bail!("conversation {id} has unknown kind `{other}`"),
    };
    let channel = match kind {
        ConversationKind::Channel { .. } => {
            let name: Option<String> = get(row, "name")?;
            let name =
                ChannelName::parse(&name.with_context(|| format!("channel {id} has no name"))?)
                    .with_context(|| format!("channel {id} has an invalid name"))?;
            let topic: Option<String> = get(row, "topic")?;
            let topic = match topic {
                Some(raw) => ChannelTopic::parse(&raw)
                    .with_context(|| format!("channel {id} has an invalid topic"))?,
                None => None,
            };
            Some(ChannelProfile { name, topic })
        }
        _ => None,
    };
    let status: String = get(row, "status")?;
    let status: ConversationStatus = status
        .parse()
        .with_context(|| format!("conversation {id} has unknown status `{status}`"))?;
    let tags: Vec<String> = get(row, "tags")?;
    let tags = Tags::parse(&tags).with_context(|| format!("conversation {id} has invalid tags"))?;
    let assignee: Option<Uuid> = get(row, "assignee_id")?;
    Ok(Conversation {
        id: ConversationId::from_uuid(id),
        tenant: TenantId::from_uuid(get(row, "tenant_id")?),
        kind,
        status,
        assignee: assignee.map(StaffUserId::from_uuid),
        tags,
        channel,
        last_seq: seq(get(row, "last_seq")?, "last_seq")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        last_activity_at: get(row, "last_activity_at")?,
    })
}

/// A message from a row, reading the columns named by `cols`.
pub(crate) fn message(row: &PgRow, cols: &MessageColumns) -> anyhow::Result<Message> {
    let id: Uuid = get(row, cols.id)?;
    let sender_type: String = get(row, cols.sender_type)?;
    let sender_id: Option<Uuid> = get(row, cols.sender_id)?;
    let sender = Sender::from_parts(&sender_type, sender_id)
        .with_context(|| format!("message {id} has an invalid sender `{sender_type}`"))?;
    let body: Option<String> = get(row, cols.body)?;
    // The body is health data: the error names the message, never the text.
    let body = body
        .map(|raw| MessageBody::parse(&raw))
        .transpose()
        .with_context(|| format!("message {id} has an invalid body"))?;
    let client_msg_id: Option<String> = get(row, cols.client_msg_id)?;
    let client_msg_id = client_msg_id
        .map(|raw| ClientMsgId::parse(&raw))
        .transpose()
        .with_context(|| format!("message {id} has an invalid client_msg_id"))?;
    let reply_to: Option<Uuid> = get(row, cols.reply_to)?;
    let edited_at: Option<DateTime<Utc>> = get(row, cols.edited_at)?;
    let deleted_at: Option<DateTime<Utc>> = get(row, cols.deleted_at)?;
    let system =
        notice(row, cols).with_context(|| format!("message {id} has an invalid notice"))?;
    Ok(Message {
        id: MessageId::from_uuid(id),
        tenant: TenantId::from_uuid(get(row, cols.tenant_id)?),
        conversation_id: ConversationId::from_uuid(get(row, cols.conversation_id)?),
        seq: seq(get(row, cols.seq)?, "seq")?,
        sender,
        body,
        // Filled in by `attachments::load_into`.
        attachments: Vec::new(),
        reply_to: reply_to.map(MessageId::from_uuid),
        client_msg_id,
        created_at: get(row, cols.created_at)?,
        edited_at,
        deleted_at,
        system,
    })
}

/// The system notice of a message row, if it carries one.
fn notice(row: &PgRow, cols: &MessageColumns) -> anyhow::Result<Option<SystemNotice>> {
    let event: Option<String> = get(row, cols.system_event)?;
    let Some(event) = event else {
        return Ok(None);
    };
    let kind: NoticeKind = event
        .parse()
        .with_context(|| format!("unknown notice kind `{event}`"))?;
    let user: Option<Uuid> = get(row, cols.system_user_id)?;
    let by: Option<Uuid> = get(row, cols.system_by_id)?;
    Ok(Some(SystemNotice {
        kind,
        user: user.map(StaffUserId::from_uuid),
        by: StaffUserId::from_uuid(by.context("a notice without its author")?),
    }))
}

/// A member from a row of `user_id`, `role` and `joined_at`.
pub(crate) fn member(row: &PgRow) -> anyhow::Result<Member> {
    let user: Uuid = get(row, "user_id")?;
    let role: String = get(row, "role")?;
    let role: MemberRole = role
        .parse()
        .with_context(|| format!("member {user} has an unknown role `{role}`"))?;
    Ok(Member {
        user: StaffUserId::from_uuid(user),
        role,
        joined_at: get(row, "joined_at")?,
    })
}

/// A conversation summary: [`CONVERSATION_COLUMNS`], the
/// [`LAST_MESSAGE_SELECT`] columns (all null without a message) and
/// `unread_count`.
pub(crate) fn summary(row: &PgRow) -> anyhow::Result<ConversationSummary> {
    let conversation = conversation(row)?;
    let last_message_id: Option<Uuid> = get(row, LAST_MESSAGE.id)?;
    let last_message = match last_message_id {
        Some(_) => Some(message(row, &LAST_MESSAGE)?),
        None => None,
    };
    let unread: i64 = get(row, "unread_count")?;
    let unread_count = u64::try_from(unread)
        .with_context(|| format!("negative unread count for conversation {}", conversation.id))?;
    Ok(ConversationSummary {
        conversation,
        last_message,
        unread_count,
        // Filled in by the service from the membership facts.
        membership: None,
    })
}
