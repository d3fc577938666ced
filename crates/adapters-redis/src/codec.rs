//! The wire codec of events crossing Redis: versioned JSON, independent of
//! the domain types so that the domain needs no serde, and strict on the
//! way in: every value is rebuilt through the domain's own `parse` /
//! `from_parts` constructors, so a hostile or corrupt payload is rejected
//! instead of becoming an invalid value.
//!
//! A payload is `{"v": 2, "event": {"type": "...", ...}}`. An event of a
//! conversation carries a route (the conversation's id, tenant and kind),
//! not the conversation; a message carries its files as readers see them,
//! never where their bytes are or their checksums. Fields may be added
//! within a version when older nodes can ignore them; anything older nodes
//! must understand gets a new version, which they skip (and log) until they
//! are upgraded. `tests/golden/` holds one payload per event and version.
//!
//! Version 2 (this one): routes instead of whole conversations, files
//! without storage keys or checksums, one `message_changed` for edits and
//! deletions. Version 1 shipped the whole conversation with every event.
//! Added within version 2, since a node that predates them has nothing to
//! route them to and skips the event as invalid: the `direct` and `channel`
//! kinds, a channel's `channel` profile, and a message's `system` notice.

use chat_app::{ChatEvent, Receipt, Route};
use chat_domain::{
    AttachedFile, AttachmentId, AttachmentName, ChannelName, ChannelProfile, ChannelTopic,
    ClientMsgId, Conversation, ConversationAccess, ConversationId, ConversationKind,
    ConversationStatus, CustomerId, MediaType, Message, MessageBody, MessageId, NoticeKind,
    Presence, PresenceStatus, ReadState, Sender, Seq, StaffUserId, SystemNotice, Tags, TenantId,
    Visibility, MAX_ATTACHMENTS_PER_MESSAGE,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The version this codec writes, and the only one it reads.
pub const VERSION: u32 = 2;

/// The largest payload [`decode`] accepts. The largest real event (a
/// message of 4000 four-byte characters with ten attachments, in a
/// conversation with twenty tags) is far below it.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Why a payload could not be turned into an event, or an event into a
/// payload.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload of {0} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    /// Not JSON, or not of the shape of any event.
    #[error("malformed payload: {0}")]
    Malformed(#[source] serde_json::Error),
    /// Written by a codec version this one does not read.
    #[error("unsupported payload version {0} (this node reads version {VERSION})")]
    UnsupportedVersion(u64),
    /// Well-formed, but a value breaks a domain rule.
    #[error("invalid {0} in payload")]
    Invalid(&'static str),
    /// The event holds something this version cannot express (a
    /// conversation kind added to the domain after it).
    #[error("cannot encode {0} in wire version {VERSION}")]
    Unsupported(&'static str),
}

/// Encodes `event` as a version [`VERSION`] payload.
///
/// # Errors
/// [`CodecError::Unsupported`] for a value this version cannot express.
///
/// ```
/// use adapters_redis::codec::{decode, encode};
/// use chat_app::ChatEvent;
/// use chat_domain::{Presence, PresenceStatus, Sender, TenantId};
///
/// let event = ChatEvent::PresenceChanged {
///     tenant: TenantId::new_v4(),
///     presence: Presence { user: Sender::System, status: PresenceStatus::Away, last_seen_at: None },
/// };
/// assert_eq!(decode(&encode(&event).unwrap()).unwrap(), event);
/// ```
pub fn encode(event: &ChatEvent) -> Result<Vec<u8>, CodecError> {
    let envelope = Envelope {
        v: VERSION,
        event: EventDto::from_domain(event)?,
    };
    serde_json::to_vec(&envelope).map_err(CodecError::Malformed)
}

/// Decodes a payload written by [`encode`] (of this version).
///
/// # Errors
/// [`CodecError`] naming what is wrong; never panics, whatever the bytes.
pub fn decode(payload: &[u8]) -> Result<ChatEvent, CodecError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(CodecError::TooLarge(payload.len()));
    }
    match serde_json::from_slice::<Envelope>(payload) {
        Ok(envelope) if envelope.v == VERSION => envelope.event.into_domain(),
        Ok(envelope) => Err(CodecError::UnsupportedVersion(u64::from(envelope.v))),
        // Read again for the version alone (only when the payload is not of
        // this version's shape): another version is reported as such.
        Err(err) => match serde_json::from_slice::<Header>(payload) {
            Ok(header) if header.v != u64::from(VERSION) => {
                Err(CodecError::UnsupportedVersion(header.v))
            }
            _ => Err(CodecError::Malformed(err)),
        },
    }
}

/// Just the version, for a payload that is not of this version's shape.
#[derive(Deserialize)]
struct Header {
    v: u64,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    event: EventDto,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventDto {
    MessageCreated {
        route: RouteDto,
        message: MessageDto,
    },
    MessageChanged {
        route: RouteDto,
        message: MessageDto,
    },
    ConversationUpdated {
        conversation: ConversationDto,
    },
    ReceiptMoved {
        route: RouteDto,
        receipt: ReceiptDto,
        state: ReadStateDto,
    },
    Typing {
        route: RouteDto,
        sender: SenderDto,
        is_typing: bool,
    },
    PresenceChanged {
        tenant: Uuid,
        presence: PresenceDto,
    },
    EventsLost {
        dropped: u64,
    },
}

impl EventDto {
    fn from_domain(event: &ChatEvent) -> Result<Self, CodecError> {
        Ok(match event {
            ChatEvent::MessageCreated { route, message } => Self::MessageCreated {
                route: RouteDto::from_domain(route)?,
                message: MessageDto::from_domain(message),
            },
            ChatEvent::MessageChanged { route, message } => Self::MessageChanged {
                route: RouteDto::from_domain(route)?,
                message: MessageDto::from_domain(message),
            },
            ChatEvent::ConversationUpdated { conversation } => Self::ConversationUpdated {
                conversation: ConversationDto::from_domain(conversation)?,
            },
            ChatEvent::ReceiptMoved {
                route,
                receipt,
                state,
            } => Self::ReceiptMoved {
                route: RouteDto::from_domain(route)?,
                receipt: match receipt {
                    Receipt::Delivered => ReceiptDto::Delivered,
                    Receipt::Read => ReceiptDto::Read,
                },
                state: ReadStateDto::from_domain(state),
            },
            ChatEvent::Typing {
                route,
                sender,
                is_typing,
            } => Self::Typing {
                route: RouteDto::from_domain(route)?,
                sender: SenderDto::from_domain(*sender),
                is_typing: *is_typing,
            },
            ChatEvent::PresenceChanged { tenant, presence } => Self::PresenceChanged {
                tenant: *tenant.as_uuid(),
                presence: PresenceDto::from_domain(presence),
            },
            ChatEvent::EventsLost { dropped } => Self::EventsLost { dropped: *dropped },
        })
    }

    fn into_domain(self) -> Result<ChatEvent, CodecError> {
        Ok(match self {
            Self::MessageCreated { route, message } => {
                let (route, message) = message_in(route, message)?;
                ChatEvent::MessageCreated { route, message }
            }
            Self::MessageChanged { route, message } => {
                let (route, message) = message_in(route, message)?;
                ChatEvent::MessageChanged { route, message }
            }
            Self::ConversationUpdated { conversation } => ChatEvent::ConversationUpdated {
                conversation: conversation.into_domain()?,
            },
            Self::ReceiptMoved {
                route,
                receipt,
                state,
            } => {
                let route = route.into_domain()?;
                let state = state.into_domain()?;
                if state.conversation_id != route.conversation_id {
                    return Err(CodecError::Invalid("read state of another conversation"));
                }
                ChatEvent::ReceiptMoved {
                    route,
                    receipt: match receipt {
                        ReceiptDto::Delivered => Receipt::Delivered,
                        ReceiptDto::Read => Receipt::Read,
                    },
                    state,
                }
            }
            Self::Typing {
                route,
                sender,
                is_typing,
            } => ChatEvent::Typing {
                route: route.into_domain()?,
                sender: sender.into_domain()?,
                is_typing,
            },
            Self::PresenceChanged { tenant, presence } => ChatEvent::PresenceChanged {
                tenant: TenantId::from_uuid(tenant),
                presence: presence.into_domain()?,
            },
            Self::EventsLost { dropped } => ChatEvent::EventsLost { dropped },
        })
    }
}

/// A message and the route it travels by, which must be its conversation's.
fn message_in(route: RouteDto, message: MessageDto) -> Result<(Route, Message), CodecError> {
    let route = route.into_domain()?;
    let message = message.into_domain()?;
    if message.conversation_id != route.conversation_id || message.tenant != route.access.tenant {
        return Err(CodecError::Invalid("message of another conversation"));
    }
    Ok((route, message))
}

/// Times as RFC 3339 with nanoseconds: exact, and readable when someone
/// watches the channel.
type Time = String;

fn time(at: DateTime<Utc>) -> Time {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, CodecError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| CodecError::Invalid("time"))
}

fn parse_optional_time(raw: Option<&str>) -> Result<Option<DateTime<Utc>>, CodecError> {
    raw.map(parse_time).transpose()
}

fn parse_seq(raw: u64) -> Result<Seq, CodecError> {
    Seq::from_u64(raw).map_err(|_| CodecError::Invalid("seq"))
}

#[derive(Serialize, Deserialize)]
struct SenderDto {
    kind: String,
    #[serde(default)]
    id: Option<Uuid>,
}

impl SenderDto {
    fn from_domain(sender: Sender) -> Self {
        Self {
            kind: sender.kind().to_owned(),
            id: sender.id(),
        }
    }

    fn into_domain(self) -> Result<Sender, CodecError> {
        match (self.kind.as_str(), self.id) {
            // The system has no id; one given is a corrupt payload, not
            // something to drop silently.
            ("system", Some(_)) => Err(CodecError::Invalid("sender")),
            (kind, id) => Sender::from_parts(kind, id).ok_or(CodecError::Invalid("sender")),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KindDto {
    Customer {
        customer_id: Uuid,
        #[serde(default)]
        clinician: Option<Uuid>,
    },
    Direct,
    Channel {
        visibility: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archived_at: Option<Time>,
    },
}

impl KindDto {
    fn from_domain(kind: ConversationKind) -> Result<Self, CodecError> {
        match kind {
            ConversationKind::Customer {
                customer_id,
                clinician,
            } => Ok(Self::Customer {
                customer_id: *customer_id.as_uuid(),
                clinician: clinician.map(|c| *c.as_uuid()),
            }),
            ConversationKind::Direct => Ok(Self::Direct),
            ConversationKind::Channel {
                visibility,
                archived_at,
            } => Ok(Self::Channel {
                visibility: visibility.as_str().to_owned(),
                archived_at: archived_at.map(time),
            }),
            _ => Err(CodecError::Unsupported("conversation kind")),
        }
    }

    fn into_domain(self) -> Result<ConversationKind, CodecError> {
        Ok(match self {
            Self::Customer {
                customer_id,
                clinician,
            } => ConversationKind::Customer {
                customer_id: CustomerId::from_uuid(customer_id),
                clinician: clinician.map(StaffUserId::from_uuid),
            },
            Self::Direct => ConversationKind::Direct,
            Self::Channel {
                visibility,
                archived_at,
            } => ConversationKind::Channel {
                visibility: visibility
                    .parse::<Visibility>()
                    .map_err(|_| CodecError::Invalid("channel visibility"))?,
                archived_at: parse_optional_time(archived_at.as_deref())?,
            },
        })
    }
}

/// A channel's name and topic, exactly as stored (trimmed and valid).
#[derive(Serialize, Deserialize)]
struct ChannelDto {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
}

impl ChannelDto {
    fn from_domain(profile: &ChannelProfile) -> Self {
        Self {
            name: profile.name.as_str().to_owned(),
            topic: profile.topic.as_ref().map(|t| t.as_str().to_owned()),
        }
    }

    fn into_domain(self) -> Result<ChannelProfile, CodecError> {
        let name = ChannelName::parse(&self.name)
            .ok()
            .filter(|name| name.as_str() == self.name)
            .ok_or(CodecError::Invalid("channel name"))?;
        let topic = match self.topic {
            None => None,
            Some(raw) => Some(
                ChannelTopic::parse(&raw)
                    .ok()
                    .flatten()
                    .filter(|topic| topic.as_str() == raw)
                    .ok_or(CodecError::Invalid("channel topic"))?,
            ),
        };
        Ok(ChannelProfile { name, topic })
    }
}

/// What a system message reports.
#[derive(Serialize, Deserialize)]
struct NoticeDto {
    event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<Uuid>,
    by: Uuid,
}

impl NoticeDto {
    fn from_domain(notice: &SystemNotice) -> Self {
        Self {
            event: notice.kind.as_str().to_owned(),
            user: notice.user.map(|u| *u.as_uuid()),
            by: *notice.by.as_uuid(),
        }
    }

    fn into_domain(self) -> Result<SystemNotice, CodecError> {
        Ok(SystemNotice {
            kind: self
                .event
                .parse::<NoticeKind>()
                .map_err(|_| CodecError::Invalid("system notice"))?,
            user: self.user.map(StaffUserId::from_uuid),
            by: StaffUserId::from_uuid(self.by),
        })
    }
}

/// What routing needs of a conversation: its id and access facts.
#[derive(Serialize, Deserialize)]
struct RouteDto {
    conversation_id: Uuid,
    tenant: Uuid,
    kind: KindDto,
}

impl RouteDto {
    fn from_domain(route: &Route) -> Result<Self, CodecError> {
        Ok(Self {
            conversation_id: *route.conversation_id.as_uuid(),
            tenant: *route.access.tenant.as_uuid(),
            kind: KindDto::from_domain(route.access.kind)?,
        })
    }

    fn into_domain(self) -> Result<Route, CodecError> {
        Ok(Route {
            conversation_id: ConversationId::from_uuid(self.conversation_id),
            access: ConversationAccess {
                tenant: TenantId::from_uuid(self.tenant),
                kind: self.kind.into_domain()?,
            },
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ConversationDto {
    id: Uuid,
    tenant: Uuid,
    kind: KindDto,
    status: String,
    #[serde(default)]
    assignee: Option<Uuid>,
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<ChannelDto>,
    last_seq: u64,
    created_at: Time,
    updated_at: Time,
    last_activity_at: Time,
}

impl ConversationDto {
    fn from_domain(conversation: &Conversation) -> Result<Self, CodecError> {
        Ok(Self {
            id: *conversation.id.as_uuid(),
            tenant: *conversation.tenant.as_uuid(),
            kind: KindDto::from_domain(conversation.kind)?,
            status: conversation.status.as_str().to_owned(),
            assignee: conversation.assignee.map(|a| *a.as_uuid()),
            tags: conversation.tags.to_strings(),
            channel: conversation.channel.as_ref().map(ChannelDto::from_domain),
            last_seq: conversation.last_seq.get(),
            created_at: time(conversation.created_at),
            updated_at: time(conversation.updated_at),
            last_activity_at: time(conversation.last_activity_at),
        })
    }

    fn into_domain(self) -> Result<Conversation, CodecError> {
        let tags = Tags::parse(&self.tags).map_err(|_| CodecError::Invalid("tags"))?;
        // Tags::parse drops duplicates; a list that shrank was not written by
        // this codec.
        if tags.iter().count() != self.tags.len() {
            return Err(CodecError::Invalid("tags"));
        }
        let kind = self.kind.into_domain()?;
        let channel = self.channel.map(ChannelDto::into_domain).transpose()?;
        // A channel has a name, and nothing else has one.
        if matches!(kind, ConversationKind::Channel { .. }) != channel.is_some() {
            return Err(CodecError::Invalid("channel"));
        }
        Ok(Conversation {
            id: ConversationId::from_uuid(self.id),
            tenant: TenantId::from_uuid(self.tenant),
            kind,
            channel,
            status: self
                .status
                .parse::<ConversationStatus>()
                .map_err(|_| CodecError::Invalid("conversation status"))?,
            assignee: self.assignee.map(StaffUserId::from_uuid),
            tags,
            last_seq: parse_seq(self.last_seq)?,
            created_at: parse_time(&self.created_at)?,
            updated_at: parse_time(&self.updated_at)?,
            last_activity_at: parse_time(&self.last_activity_at)?,
        })
    }
}

/// An attached file as readers see it: where its bytes are and their
/// checksum stay in the database.
#[derive(Serialize, Deserialize)]
struct AttachmentDto {
    id: Uuid,
    name: String,
    media_type: String,
    size: u64,
}

impl AttachmentDto {
    fn from_domain(file: &AttachedFile) -> Self {
        Self {
            id: *file.id.as_uuid(),
            name: file.name.as_str().to_owned(),
            media_type: file.media_type.mime().to_owned(),
            size: file.size,
        }
    }

    fn into_domain(self) -> Result<AttachedFile, CodecError> {
        if self.size == 0 {
            return Err(CodecError::Invalid("attachment size"));
        }
        Ok(AttachedFile {
            id: AttachmentId::from_uuid(self.id),
            name: AttachmentName::parse(&self.name)
                .map_err(|_| CodecError::Invalid("attachment name"))?,
            media_type: MediaType::from_mime(&self.media_type)
                .ok_or(CodecError::Invalid("attachment media type"))?,
            size: self.size,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct MessageDto {
    id: Uuid,
    tenant: Uuid,
    conversation_id: Uuid,
    seq: u64,
    sender: SenderDto,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    attachments: Vec<AttachmentDto>,
    #[serde(default)]
    reply_to: Option<Uuid>,
    #[serde(default)]
    client_msg_id: Option<String>,
    created_at: Time,
    #[serde(default)]
    edited_at: Option<Time>,
    #[serde(default)]
    deleted_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system: Option<NoticeDto>,
}

impl MessageDto {
    fn from_domain(message: &Message) -> Self {
        Self {
            id: *message.id.as_uuid(),
            tenant: *message.tenant.as_uuid(),
            conversation_id: *message.conversation_id.as_uuid(),
            seq: message.seq.get(),
            sender: SenderDto::from_domain(message.sender),
            body: message.body.as_ref().map(|b| b.as_str().to_owned()),
            attachments: message
                .attachments
                .iter()
                .map(AttachmentDto::from_domain)
                .collect(),
            reply_to: message.reply_to.map(|r| *r.as_uuid()),
            client_msg_id: message
                .client_msg_id
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            created_at: time(message.created_at),
            edited_at: message.edited_at.map(time),
            deleted_at: message.deleted_at.map(time),
            system: message.system.as_ref().map(NoticeDto::from_domain),
        }
    }

    fn into_domain(self) -> Result<Message, CodecError> {
        let body = match self.body {
            None => None,
            Some(raw) => {
                let body =
                    MessageBody::parse(&raw).map_err(|_| CodecError::Invalid("message body"))?;
                // A stored body is already trimmed and normalised; one that
                // parsing would change was not written by this codec.
                if body.as_str() != raw {
                    return Err(CodecError::Invalid("message body"));
                }
                Some(body)
            }
        };
        if self.attachments.len() > MAX_ATTACHMENTS_PER_MESSAGE {
            return Err(CodecError::Invalid("attachment count"));
        }
        let attachments = self
            .attachments
            .into_iter()
            .map(AttachmentDto::into_domain)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Message {
            id: MessageId::from_uuid(self.id),
            tenant: TenantId::from_uuid(self.tenant),
            conversation_id: ConversationId::from_uuid(self.conversation_id),
            seq: parse_seq(self.seq)?,
            sender: self.sender.into_domain()?,
            body,
            attachments,
            reply_to: self.reply_to.map(MessageId::from_uuid),
            client_msg_id: self
                .client_msg_id
                .as_deref()
                .map(ClientMsgId::parse)
                .transpose()
                .map_err(|_| CodecError::Invalid("client_msg_id"))?,
            created_at: parse_time(&self.created_at)?,
            edited_at: parse_optional_time(self.edited_at.as_deref())?,
            deleted_at: parse_optional_time(self.deleted_at.as_deref())?,
            system: self.system.map(NoticeDto::into_domain).transpose()?,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReceiptDto {
    Delivered,
    Read,
}

#[derive(Serialize, Deserialize)]
struct ReadStateDto {
    conversation_id: Uuid,
    reader: SenderDto,
    last_read_seq: u64,
    last_delivered_seq: u64,
    updated_at: Time,
}

impl ReadStateDto {
    fn from_domain(state: &ReadState) -> Self {
        Self {
            conversation_id: *state.conversation_id.as_uuid(),
            reader: SenderDto::from_domain(state.reader),
            last_read_seq: state.last_read_seq.get(),
            last_delivered_seq: state.last_delivered_seq.get(),
            updated_at: time(state.updated_at),
        }
    }

    fn into_domain(self) -> Result<ReadState, CodecError> {
        Ok(ReadState {
            conversation_id: ConversationId::from_uuid(self.conversation_id),
            reader: self.reader.into_domain()?,
            last_read_seq: parse_seq(self.last_read_seq)?,
            last_delivered_seq: parse_seq(self.last_delivered_seq)?,
            updated_at: parse_time(&self.updated_at)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct PresenceDto {
    user: SenderDto,
    status: String,
    #[serde(default)]
    last_seen_at: Option<Time>,
}

impl PresenceDto {
    fn from_domain(presence: &Presence) -> Self {
        Self {
            user: SenderDto::from_domain(presence.user),
            status: presence.status.as_str().to_owned(),
            last_seen_at: presence.last_seen_at.map(time),
        }
    }

    fn into_domain(self) -> Result<Presence, CodecError> {
        Ok(Presence {
            user: self.user.into_domain()?,
            status: self
                .status
                .parse::<PresenceStatus>()
                .map_err(|_| CodecError::Invalid("presence status"))?,
            last_seen_at: parse_optional_time(self.last_seen_at.as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{DirectMembers, NewChannel, NewCustomerConversation, NewDirect};
    use chrono::TimeZone;
    use serde_json::{json, Value};

    use super::*;

    fn at(nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 15)
            .single()
            .expect("valid time")
            + chrono::Duration::nanoseconds(i64::from(nanos))
    }

    fn conversation() -> Conversation {
        let mut conversation = NewCustomerConversation {
            id: ConversationId::new_v7(),
            tenant: TenantId::new_v4(),
            customer_id: CustomerId::new_v4(),
            clinician: Some(StaffUserId::new_v4()),
            now: at(123_456_789),
        }
        .prospective();
        conversation.status = ConversationStatus::Resolved;
        conversation.assignee = Some(StaffUserId::new_v4());
        conversation.tags = Tags::parse(&["refill", "urgent ünïcödé"]).expect("valid tags");
        conversation.last_seq = Seq::from_u64(42).expect("valid seq");
        conversation.updated_at = at(5);
        conversation.last_activity_at = at(999_999_999);
        conversation
    }

    fn attachment(media: MediaType) -> AttachedFile {
        AttachedFile {
            id: AttachmentId::new_v7(),
            name: AttachmentName::sanitize(Some("Überweisung (1).pdf"), media),
            media_type: media,
            size: 52_311,
        }
    }

    fn message(conversation: &Conversation) -> Message {
        Message {
            id: MessageId::new_v7(),
            tenant: conversation.tenant,
            conversation_id: conversation.id,
            seq: Seq::from_u64(42).expect("valid seq"),
            sender: Sender::Staff(StaffUserId::new_v4()),
            body: Some(MessageBody::parse("Your prescription is ready\n\tpick-up 💊").unwrap()),
            attachments: MediaType::ALL.into_iter().map(attachment).collect(),
            reply_to: Some(MessageId::new_v7()),
            client_msg_id: Some(ClientMsgId::parse(" c-81 ").unwrap()),
            created_at: at(1),
            edited_at: Some(at(2)),
            deleted_at: Some(at(3)),
            system: None,
        }
    }

    /// An archived public channel with a topic, and a direct conversation.
    fn staff_conversations() -> (Conversation, Conversation) {
        let tenant = TenantId::new_v4();
        let mut channel = NewChannel {
            id: ConversationId::new_v7(),
            tenant,
            profile: ChannelProfile {
                name: ChannelName::parse("Night shift").unwrap(),
                topic: ChannelTopic::parse("Hand-over notes\nand refills").unwrap(),
            },
            visibility: Visibility::Public,
            owner: StaffUserId::new_v4(),
            members: vec![],
            now: at(0),
        }
        .prospective();
        channel.kind = ConversationKind::Channel {
            visibility: Visibility::Private,
            archived_at: Some(at(77)),
        };
        let direct = NewDirect {
            id: ConversationId::new_v7(),
            tenant,
            members: DirectMembers::new(StaffUserId::new_v4(), &[StaffUserId::new_v4()]).unwrap(),
            now: at(0),
        }
        .prospective();
        (channel, direct)
    }

    /// One event of every variant, with every optional field both set and
    /// unset somewhere.
    fn every_event() -> Vec<ChatEvent> {
        let conversation = conversation();
        let shared_inbox = NewCustomerConversation {
            id: ConversationId::new_v7(),
            tenant: TenantId::new_v4(),
            customer_id: CustomerId::new_v4(),
            clinician: None,
            now: at(0),
        }
        .prospective();
        let bare = Message {
            body: None,
            attachments: vec![attachment(MediaType::Png)],
            reply_to: None,
            client_msg_id: None,
            edited_at: None,
            deleted_at: None,
            sender: Sender::System,
            ..message(&shared_inbox)
        };
        let state = ReadState {
            conversation_id: conversation.id,
            reader: Sender::Customer(CustomerId::new_v4()),
            last_read_seq: Seq::from_u64(7).unwrap(),
            last_delivered_seq: Seq::from_u64(9).unwrap(),
            updated_at: at(77),
        };
        let (route, shared_route) = (Route::of(&conversation), Route::of(&shared_inbox));
        let (channel, direct) = staff_conversations();
        let notice = Message {
            body: None,
            attachments: vec![],
            reply_to: None,
            client_msg_id: None,
            edited_at: None,
            deleted_at: None,
            sender: Sender::System,
            system: Some(SystemNotice {
                kind: NoticeKind::MemberRemoved,
                user: Some(StaffUserId::new_v4()),
                by: StaffUserId::new_v4(),
            }),
            ..message(&channel)
        };
        let update_notice = Message {
            system: Some(SystemNotice {
                kind: NoticeKind::ChannelUpdated,
                user: None,
                by: StaffUserId::new_v4(),
            }),
            ..notice.clone()
        };
        vec![
            ChatEvent::MessageCreated {
                route,
                message: message(&conversation),
            },
            ChatEvent::MessageCreated {
                route: shared_route,
                message: bare,
            },
            ChatEvent::MessageChanged {
                route,
                message: Message {
                    deleted_at: None,
                    ..message(&conversation)
                },
            },
            ChatEvent::MessageChanged {
                route,
                message: Message {
                    body: None,
                    edited_at: None,
                    ..message(&conversation)
                },
            },
            ChatEvent::ConversationUpdated {
                conversation: conversation.clone(),
            },
            ChatEvent::ConversationUpdated {
                conversation: shared_inbox,
            },
            ChatEvent::ReceiptMoved {
                route,
                receipt: Receipt::Read,
                state,
            },
            ChatEvent::ReceiptMoved {
                route,
                receipt: Receipt::Delivered,
                state: ReadState {
                    reader: Sender::Staff(StaffUserId::new_v4()),
                    ..state
                },
            },
            ChatEvent::Typing {
                route: shared_route,
                sender: Sender::Customer(CustomerId::new_v4()),
                is_typing: true,
            },
            ChatEvent::Typing {
                route,
                sender: Sender::Staff(StaffUserId::new_v4()),
                is_typing: false,
            },
            ChatEvent::PresenceChanged {
                tenant: TenantId::new_v4(),
                presence: Presence {
                    user: Sender::Staff(StaffUserId::new_v4()),
                    status: PresenceStatus::Busy,
                    last_seen_at: None,
                },
            },
            ChatEvent::PresenceChanged {
                tenant: TenantId::new_v4(),
                presence: Presence {
                    user: Sender::Customer(CustomerId::new_v4()),
                    status: PresenceStatus::Offline,
                    last_seen_at: Some(at(31_415)),
                },
            },
            ChatEvent::MessageCreated {
                route: Route::of(&channel),
                message: notice,
            },
            ChatEvent::MessageCreated {
                route: Route::of(&channel),
                message: update_notice,
            },
            ChatEvent::ConversationUpdated {
                conversation: channel.clone(),
            },
            ChatEvent::Typing {
                route: Route::of(&direct),
                sender: Sender::Staff(StaffUserId::new_v4()),
                is_typing: true,
            },
            ChatEvent::EventsLost { dropped: 1_000 },
        ]
    }

    fn encoded(event: &ChatEvent) -> Value {
        serde_json::from_slice(&encode(event).unwrap()).unwrap()
    }

    fn decode_value(value: &Value) -> Result<ChatEvent, CodecError> {
        decode(value.to_string().as_bytes())
    }

    /// Payloads of wire version 2 as they are on the bus, one per event
    /// shape (`tests/golden/v2/`). Every one must decode, and encode back
    /// to the same JSON: a change of the format, either way, fails here and
    /// has to be a deliberate new version (or a field older nodes ignore,
    /// with the files updated in the same change).
    const GOLDEN_V2: [(&str, &str); 16] = [
        (
            "message_created",
            include_str!("../tests/golden/v2/message_created.json"),
        ),
        (
            "message_created_bare",
            include_str!("../tests/golden/v2/message_created_bare.json"),
        ),
        (
            "message_changed_edited",
            include_str!("../tests/golden/v2/message_changed_edited.json"),
        ),
        (
            "message_changed_deleted",
            include_str!("../tests/golden/v2/message_changed_deleted.json"),
        ),
        (
            "conversation_updated",
            include_str!("../tests/golden/v2/conversation_updated.json"),
        ),
        (
            "conversation_updated_shared_inbox",
            include_str!("../tests/golden/v2/conversation_updated_shared_inbox.json"),
        ),
        (
            "receipt_read",
            include_str!("../tests/golden/v2/receipt_read.json"),
        ),
        (
            "receipt_delivered",
            include_str!("../tests/golden/v2/receipt_delivered.json"),
        ),
        (
            "typing_started",
            include_str!("../tests/golden/v2/typing_started.json"),
        ),
        (
            "typing_stopped",
            include_str!("../tests/golden/v2/typing_stopped.json"),
        ),
        (
            "presence_busy",
            include_str!("../tests/golden/v2/presence_busy.json"),
        ),
        (
            "events_lost",
            include_str!("../tests/golden/v2/events_lost.json"),
        ),
        (
            "presence_offline",
            include_str!("../tests/golden/v2/presence_offline.json"),
        ),
        (
            "message_created_notice",
            include_str!("../tests/golden/v2/message_created_notice.json"),
        ),
        (
            "conversation_updated_channel",
            include_str!("../tests/golden/v2/conversation_updated_channel.json"),
        ),
        (
            "typing_direct",
            include_str!("../tests/golden/v2/typing_direct.json"),
        ),
    ];

    /// Payloads of wire version 1, which this codec no longer reads: a node
    /// still on it is reported as such, never misread.
    const GOLDEN_V1: [(&str, &str); 12] = [
        (
            "message_created",
            include_str!("../tests/golden/v1/message_created.json"),
        ),
        (
            "message_created_bare",
            include_str!("../tests/golden/v1/message_created_bare.json"),
        ),
        (
            "message_updated",
            include_str!("../tests/golden/v1/message_updated.json"),
        ),
        (
            "message_deleted",
            include_str!("../tests/golden/v1/message_deleted.json"),
        ),
        (
            "conversation_updated",
            include_str!("../tests/golden/v1/conversation_updated.json"),
        ),
        (
            "conversation_updated_shared_inbox",
            include_str!("../tests/golden/v1/conversation_updated_shared_inbox.json"),
        ),
        (
            "receipt_read",
            include_str!("../tests/golden/v1/receipt_read.json"),
        ),
        (
            "receipt_delivered",
            include_str!("../tests/golden/v1/receipt_delivered.json"),
        ),
        (
            "typing_started",
            include_str!("../tests/golden/v1/typing_started.json"),
        ),
        (
            "typing_stopped",
            include_str!("../tests/golden/v1/typing_stopped.json"),
        ),
        (
            "presence_busy",
            include_str!("../tests/golden/v1/presence_busy.json"),
        ),
        (
            "presence_offline",
            include_str!("../tests/golden/v1/presence_offline.json"),
        ),
    ];

    /// The number of files in `tests/golden/<version>`.
    fn golden_files(version: &str) -> usize {
        let dir = format!("{}/tests/golden/{version}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_dir(dir).expect("the golden folder").count()
    }

    #[test]
    fn golden_payloads_of_version_2_decode_and_encode_back_unchanged() {
        let mut variants = std::collections::HashSet::new();
        for (name, text) in GOLDEN_V2 {
            let golden: Value = serde_json::from_str(text).expect(name);
            let event = decode(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(encoded(&event), golden, "{name}");
            variants.insert(std::mem::discriminant(&event));
        }
        assert_eq!(
            variants.len(),
            7,
            "every event variant has a golden payload"
        );
        assert_eq!(
            golden_files("v2"),
            GOLDEN_V2.len(),
            "every golden file is checked"
        );
    }

    #[test]
    fn golden_payloads_of_version_1_are_refused_as_version_1() {
        for (name, text) in GOLDEN_V1 {
            assert!(
                matches!(
                    decode(text.as_bytes()),
                    Err(CodecError::UnsupportedVersion(1))
                ),
                "{name}"
            );
        }
        assert_eq!(golden_files("v1"), GOLDEN_V1.len());
    }

    #[test]
    fn every_event_variant_round_trips_exactly() {
        for event in every_event() {
            let payload = encode(&event).unwrap();
            assert_eq!(decode(&payload).unwrap(), event, "{event:?}");
        }
    }

    #[test]
    fn the_fixtures_cover_every_event_variant() {
        // No wildcard: a new variant fails to compile here until it has a
        // fixture (and a DTO).
        let variants: std::collections::HashSet<u8> = every_event()
            .iter()
            .map(|event| match event {
                ChatEvent::MessageCreated { .. } => 0,
                ChatEvent::MessageChanged { .. } => 1,
                ChatEvent::ConversationUpdated { .. } => 2,
                ChatEvent::ReceiptMoved { .. } => 3,
                ChatEvent::Typing { .. } => 4,
                ChatEvent::PresenceChanged { .. } => 5,
                ChatEvent::EventsLost { .. } => 6,
            })
            .collect();
        assert_eq!(variants.len(), 7);
    }

    #[test]
    fn every_presence_status_and_media_type_round_trips() {
        for status in [
            PresenceStatus::Online,
            PresenceStatus::Away,
            PresenceStatus::Busy,
            PresenceStatus::Offline,
        ] {
            let event = ChatEvent::PresenceChanged {
                tenant: TenantId::new_v4(),
                presence: Presence {
                    user: Sender::System,
                    status,
                    last_seen_at: None,
                },
            };
            assert_eq!(decode(&encode(&event).unwrap()).unwrap(), event);
        }
        // MediaType::ALL is covered by the first message of every_event().
        let ChatEvent::MessageCreated { message, .. } = &every_event()[0] else {
            unreachable!("the first event is a message")
        };
        assert_eq!(message.attachments.len(), MediaType::ALL.len());
    }

    #[test]
    fn payloads_carry_their_version_and_a_readable_event_type() {
        let value = encoded(&every_event()[0]);
        assert_eq!(value["v"], json!(2));
        assert_eq!(value["event"]["type"], json!("message_created"));
        assert_eq!(
            value["event"]["message"]["created_at"],
            json!("2026-03-01T09:30:15.000000001Z")
        );
    }

    #[test]
    fn events_of_a_conversation_carry_its_route_not_its_state_nor_where_files_are() {
        for event in every_event() {
            let value = encoded(&event);
            let text = value.to_string();
            for secret in ["storage_key", "sha256", "uploader"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            let routed = event.route().is_some();
            if routed && !matches!(event, ChatEvent::ConversationUpdated { .. }) {
                for state in ["assignee", "tags", "last_seq", "status"] {
                    assert!(!text.contains(state), "{state} in {text}");
                }
            }
        }
    }

    #[test]
    fn unknown_versions_are_rejected_as_such() {
        for version in [json!(0), json!(1), json!(3), json!(u64::MAX)] {
            let mut value = encoded(&every_event()[0]);
            value["v"] = version;
            assert!(
                matches!(decode_value(&value), Err(CodecError::UnsupportedVersion(_))),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_payloads_are_rejected_without_panicking() {
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"not json".to_vec(),
            b"\xff\xfe\x00".to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            br#"{"event": {}}"#.to_vec(),
            br#"{"v": "1", "event": {}}"#.to_vec(),
            br#"{"v": -1}"#.to_vec(),
            br#"{"v": 2}"#.to_vec(),
            br#"{"v": 2, "event": null}"#.to_vec(),
            br#"{"v": 2, "event": {"type": "message_exploded"}}"#.to_vec(),
            br#"{"v": 2, "event": {"type": "typing"}}"#.to_vec(),
            b"{\"v\": 2, \"event\": {\"type\": \"typing\", \"route\": ".to_vec(),
        ];
        for payload in cases {
            assert!(
                matches!(decode(&payload), Err(CodecError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    #[test]
    fn oversized_payloads_are_rejected_before_parsing() {
        let payload = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(decode(&payload), Err(CodecError::TooLarge(_))));
    }

    #[test]
    fn values_that_break_domain_rules_are_rejected() {
        let message = || encoded(&every_event()[0]);
        let typing = || encoded(&every_event()[8]);
        let updated = || encoded(&every_event()[4]);
        let receipt = || encoded(&every_event()[6]);
        let presence = || encoded(&every_event()[10]);
        let notice = || encoded(&every_event()[12]);
        let channel = || encoded(&every_event()[14]);
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Value, Edit)> = vec![
            (
                "unknown notice",
                notice(),
                Box::new(|v| v["event"]["message"]["system"]["event"] = json!("member_banned")),
            ),
            (
                "unknown visibility",
                notice(),
                Box::new(|v| v["event"]["route"]["kind"]["visibility"] = json!("secret")),
            ),
            (
                "channel without a name",
                channel(),
                Box::new(|v| v["event"]["conversation"]["channel"] = json!(null)),
            ),
            (
                "name on a customer conversation",
                updated(),
                Box::new(|v| v["event"]["conversation"]["channel"] = json!({"name": "x"})),
            ),
            (
                "untrimmed channel name",
                channel(),
                Box::new(|v| v["event"]["conversation"]["channel"]["name"] = json!(" x ")),
            ),
            (
                "empty topic",
                channel(),
                Box::new(|v| v["event"]["conversation"]["channel"]["topic"] = json!("")),
            ),
            (
                "empty body",
                message(),
                Box::new(|v| v["event"]["message"]["body"] = json!("   ")),
            ),
            (
                "untrimmed body",
                message(),
                Box::new(|v| v["event"]["message"]["body"] = json!(" hi ")),
            ),
            (
                "control character",
                message(),
                Box::new(|v| v["event"]["message"]["body"] = json!("a\u{7}b")),
            ),
            (
                "long body",
                message(),
                Box::new(|v| v["event"]["message"]["body"] = json!("x".repeat(4001))),
            ),
            (
                "seq above i64",
                message(),
                Box::new(|v| v["event"]["message"]["seq"] = json!(u64::MAX)),
            ),
            (
                "bad client_msg_id",
                message(),
                Box::new(|v| v["event"]["message"]["client_msg_id"] = json!("")),
            ),
            (
                "bad time",
                message(),
                Box::new(|v| v["event"]["message"]["created_at"] = json!("yesterday")),
            ),
            (
                "message of another conversation",
                message(),
                Box::new(|v| v["event"]["message"]["conversation_id"] = json!(Uuid::now_v7())),
            ),
            (
                "message of another tenant",
                message(),
                Box::new(|v| v["event"]["message"]["tenant"] = json!(Uuid::new_v4())),
            ),
            (
                "path in attachment name",
                message(),
                Box::new(|v| {
                    v["event"]["message"]["attachments"][0]["name"] = json!("../../etc/passwd")
                }),
            ),
            (
                "svg attachment",
                message(),
                Box::new(|v| {
                    v["event"]["message"]["attachments"][0]["media_type"] = json!("image/svg+xml")
                }),
            ),
            (
                "empty attachment",
                message(),
                Box::new(|v| v["event"]["message"]["attachments"][0]["size"] = json!(0)),
            ),
            (
                "message routed to another conversation",
                message(),
                Box::new(|v| v["event"]["route"]["conversation_id"] = json!(Uuid::now_v7())),
            ),
            (
                "message routed to another tenant",
                message(),
                Box::new(|v| v["event"]["route"]["tenant"] = json!(Uuid::new_v4())),
            ),
            (
                "too many attachments",
                message(),
                Box::new(|v| {
                    let first = v["event"]["message"]["attachments"][0].clone();
                    v["event"]["message"]["attachments"] =
                        json!(vec![first; MAX_ATTACHMENTS_PER_MESSAGE + 1]);
                }),
            ),
            (
                "unknown status",
                updated(),
                Box::new(|v| v["event"]["conversation"]["status"] = json!("closed")),
            ),
            (
                "bad tag",
                updated(),
                Box::new(|v| v["event"]["conversation"]["tags"] = json!(["a,b"])),
            ),
            (
                "duplicate tags",
                updated(),
                Box::new(|v| v["event"]["conversation"]["tags"] = json!(["a", "a"])),
            ),
            (
                "robot sender",
                typing(),
                Box::new(|v| v["event"]["sender"] = json!({"kind": "robot", "id": Uuid::new_v4()})),
            ),
            (
                "staff without id",
                typing(),
                Box::new(|v| v["event"]["sender"] = json!({"kind": "staff"})),
            ),
            (
                "system with an id",
                typing(),
                Box::new(|v| {
                    v["event"]["sender"] = json!({"kind": "system", "id": Uuid::new_v4()})
                }),
            ),
            (
                "receipt of another conversation",
                receipt(),
                Box::new(|v| v["event"]["state"]["conversation_id"] = json!(Uuid::now_v7())),
            ),
            (
                "receipt routed to another conversation",
                receipt(),
                Box::new(|v| v["event"]["route"]["conversation_id"] = json!(Uuid::now_v7())),
            ),
            (
                "unknown presence status",
                presence(),
                Box::new(|v| v["event"]["presence"]["status"] = json!("invisible")),
            ),
        ];
        for (name, mut value, edit) in cases {
            edit(&mut value);
            let result = decode_value(&value);
            assert!(
                matches!(result, Err(CodecError::Invalid(_))),
                "{name}: {:?}",
                result.map(|_| ())
            );
        }
    }

    #[test]
    fn fields_added_within_a_version_are_ignored() {
        let event = every_event().remove(10);
        let mut value = encoded(&event);
        value["event"]["added_later"] = json!({"anything": [1, 2]});
        value["sent_by"] = json!("node-7");
        assert_eq!(decode_value(&value).unwrap(), event);
    }
}
