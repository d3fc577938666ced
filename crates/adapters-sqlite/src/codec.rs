//! Conversions between domain values and their stored SQLite form: times as
//! integer microseconds, ids as uuid blobs, enums as their wire names. Rows
//! that do not decode into valid domain values are reported as errors with
//! the row's id, never as panics.

use anyhow::{anyhow, bail, Context};
use chat_domain::{
    ChannelName, ChannelProfile, ChannelTopic, ClientMsgId, Conversation, ConversationId,
    ConversationKind, ConversationStatus, CustomerId, Message, MessageBody, MessageId, Sender, Seq,
    StaffUserId, SystemNotice, Tags, TenantId, Visibility,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

/// The columns of a conversation aliased `c`, as [`conversation`] reads them.
pub(crate) const CONVERSATION_COLUMNS: &str = "c.id as id, c.tenant_id as tenant_id, \
    c.kind as kind, c.customer_id as customer_id, c.staff_user_id as staff_user_id, \
    c.status as status, c.assignee_id as assignee_id, c.tags as tags, c.last_seq as last_seq, \
    c.created_at as created_at, c.updated_at as updated_at, \
    c.last_activity_at as last_activity_at, c.visibility as visibility, \
    c.archived_at as archived_at, c.name as name, c.topic as topic";

/// The columns of a message aliased `m`, prefixed `m_` so they can sit beside
/// a conversation's, as [`message`] and [`optional_message`] read them.
pub(crate) const MESSAGE_COLUMNS: &str = "m.id as m_id, m.tenant_id as m_tenant_id, \
    m.conversation_id as m_conversation_id, m.seq as m_seq, m.sender_type as m_sender_type, \
    m.sender_id as m_sender_id, m.body as m_body, m.reply_to as m_reply_to, \
    m.client_msg_id as m_client_msg_id, m.created_at as m_created_at, \
    m.edited_at as m_edited_at, m.deleted_at as m_deleted_at, \
    m.system_event as m_system_event, m.system_user_id as m_system_user_id, \
    m.system_by_id as m_system_by_id";

/// A time as stored: microseconds since the Unix epoch.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A time cut to what the store keeps, so values handed back by a write
/// equal the ones later reads return.
pub(crate) fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// A stored time back as a `DateTime`.
pub(crate) fn time(raw: i64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(raw).ok_or_else(|| anyhow!("timestamp {raw} is out of range"))
}

/// A stored sequence number back as a [`Seq`].
pub(crate) fn seq(raw: i64) -> anyhow::Result<Seq> {
    Seq::from_i64(raw).with_context(|| format!("seq {raw} is negative"))
}

/// The stored id of a read state's owner. The system has no id of its own,
/// so it is stored as the nil uuid to keep the primary key not null.
pub(crate) fn reader_id(reader: Sender) -> Uuid {
    reader.id().unwrap_or(Uuid::nil())
}

/// Tags as stored: a json array of strings.
pub(crate) fn tags_json(tags: &Tags) -> anyhow::Result<String> {
    serde_json::to_string(&tags.to_strings()).context("encoding tags")
}

fn tags(raw: &str) -> anyhow::Result<Tags> {
    let list: Vec<String> = serde_json::from_str(raw).context("tags are not a json array")?;
    Tags::parse(&list).context("stored tags are invalid")
}

/// Reads a conversation from a row selected with [`CONVERSATION_COLUMNS`].
pub(crate) fn conversation(row: &SqliteRow) -> anyhow::Result<Conversation> {
    let id: Uuid = row.try_get("id").context("reading conversation id")?;
    decode_conversation(row, id).with_context(|| format!("conversation {id} is corrupt"))
}

fn decode_conversation(row: &SqliteRow, id: Uuid) -> anyhow::Result<Conversation> {
    let kind: String = row.try_get("kind")?;
    let kind = match kind.as_str() {
        "customer" => {
            let customer: Option<Uuid> = row.try_get("customer_id")?;
            let clinician: Option<Uuid> = row.try_get("staff_user_id")?;
            ConversationKind::Customer {
                customer_id: CustomerId::from_uuid(
                    customer.context("customer conversation without customer_id")?,
                ),
                clinician: clinician.map(StaffUserId::from_uuid),
            }
        }
        "direct" => ConversationKind::Direct,
        "channel" => {
            let visibility: Option<String> = row.try_get("visibility")?;
            let visibility = visibility.context("channel without visibility")?;
            let archived_at: Option<i64> = row.try_get("archived_at")?;
            ConversationKind::Channel {
                visibility: visibility
                    .parse::<Visibility>()
                    .with_context(|| format!("unknown visibility {visibility:?}"))?,
                archived_at: archived_at.map(time).transpose()?,
            }
        }
        other => bail!("unknown conversation kind {other:?}"),
    };
    let channel = match kind {
        ConversationKind::Channel { .. } => Some(channel_profile(row)?),
        _ => None,
    };
    let status: String = row.try_get("status")?;
    let status: ConversationStatus = status
        .parse()
        .with_context(|| format!("unknown status {status:?}"))?;
    let assignee: Option<Uuid> = row.try_get("assignee_id")?;
    let raw_tags: String = row.try_get("tags")?;
    Ok(Conversation {
        channel,
        id: ConversationId::from_uuid(id),
        tenant: TenantId::from_uuid(row.try_get("tenant_id")?),
        kind,
        status,
        assignee: assignee.map(StaffUserId::from_uuid),
        tags: tags(&raw_tags)?,
        last_seq: seq(row.try_get("last_seq")?)?,
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
        last_activity_at: time(row.try_get("last_activity_at")?)?,
    })
}

fn channel_profile(row: &SqliteRow) -> anyhow::Result<ChannelProfile> {
    let name: Option<String> = row.try_get("name")?;
    let topic: Option<String> = row.try_get("topic")?;
    Ok(ChannelProfile {
        name: ChannelName::parse(&name.context("channel without name")?)
            .context("stored channel name is invalid")?,
        topic: topic
            .map(|raw| ChannelTopic::parse(&raw))
            .transpose()
            .context("stored topic is invalid")?
            .flatten(),
    })
}

/// Reads a message from a row selected with [`MESSAGE_COLUMNS`].
pub(crate) fn message(row: &SqliteRow) -> anyhow::Result<Message> {
    let id: Uuid = row.try_get("m_id").context("reading message id")?;
    decode_message(row, id).with_context(|| format!("message {id} is corrupt"))
}

/// Reads the message of a left join selected with [`MESSAGE_COLUMNS`]:
/// `None` when the join found none.
pub(crate) fn optional_message(row: &SqliteRow) -> anyhow::Result<Option<Message>> {
    let id: Option<Uuid> = row.try_get("m_id").context("reading message id")?;
    id.map(|id| decode_message(row, id).with_context(|| format!("message {id} is corrupt")))
        .transpose()
}

fn decode_message(row: &SqliteRow, id: Uuid) -> anyhow::Result<Message> {
    let sender_type: String = row.try_get("m_sender_type")?;
    let sender_id: Option<Uuid> = row.try_get("m_sender_id")?;
    let sender = Sender::from_parts(&sender_type, sender_id)
        .with_context(|| format!("unknown sender {sender_type:?}"))?;
    let body: Option<String> = row.try_get("m_body")?;
    let body = body
        .map(|raw| MessageBody::parse(&raw))
        .transpose()
        .context("stored body is invalid")?;
    let client_msg_id: Option<String> = row.try_get("m_client_msg_id")?;
    let client_msg_id = client_msg_id
        .map(|raw| ClientMsgId::parse(&raw))
        .transpose()
        .context("stored client_msg_id is invalid")?;
    let reply_to: Option<Uuid> = row.try_get("m_reply_to")?;
    let edited_at: Option<i64> = row.try_get("m_edited_at")?;
    let deleted_at: Option<i64> = row.try_get("m_deleted_at")?;
    let system: Option<String> = row.try_get("m_system_event")?;
    let system = system
        .map(|kind| -> anyhow::Result<SystemNotice> {
            let user: Option<Uuid> = row.try_get("m_system_user_id")?;
            let by: Option<Uuid> = row.try_get("m_system_by_id")?;
            Ok(SystemNotice {
                kind: kind
                    .parse()
                    .with_context(|| format!("unknown system notice {kind:?}"))?,
                user: user.map(StaffUserId::from_uuid),
                by: StaffUserId::from_uuid(by.context("system notice without its author")?),
            })
        })
        .transpose()?;
    Ok(Message {
        system,
        id: MessageId::from_uuid(id),
        tenant: TenantId::from_uuid(row.try_get("m_tenant_id")?),
        conversation_id: ConversationId::from_uuid(row.try_get("m_conversation_id")?),
        seq: seq(row.try_get("m_seq")?)?,
        sender,
        body,
        // Filled in by `attachments::load_into`.
        attachments: Vec::new(),
        reply_to: reply_to.map(MessageId::from_uuid),
        client_msg_id,
        created_at: time(row.try_get("m_created_at")?)?,
        edited_at: edited_at.map(time).transpose()?,
        deleted_at: deleted_at.map(time).transpose()?,
    })
}

/// Reads the `unread_count` column of a summary query.
pub(crate) fn unread_count(row: &SqliteRow) -> anyhow::Result<u64> {
    let raw: i64 = row
        .try_get("unread_count")
        .context("reading unread_count")?;
    u64::try_from(raw).with_context(|| format!("unread count {raw} is negative"))
}
