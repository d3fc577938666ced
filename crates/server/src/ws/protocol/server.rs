//! Server frames (API.md): every frame the server sends is a variant of
//! [`ServerFrame`], encoded once per event into a [`Frame`] that every
//! recipient shares.
//!
//! Frames are encoded through [`serde_json::Value`], whose objects keep
//! their keys sorted: the bytes on the wire stay what clients have always
//! received, whatever order the fields are declared in here.

use std::collections::BTreeMap;

use axum::extract::ws::Utf8Bytes;
use chat_app::Receipt;
use chat_domain::{
    Conversation, ConversationId, Message, NoticeKind, Presence, ReadState, Sender, SystemNotice,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::dto::{time, ConversationDto, MessageDto, SenderDto};

/// A server frame serialised once, shared by every recipient down to the
/// socket (cloning it only counts a reference).
pub type Frame = Utf8Bytes;

/// A client's `request_id` (a string or a number), echoed in the answer.
pub type RequestId = Value;

/// Every frame the server sends. Several variants share a wire `type`
/// (`ack` and `error` answer different frames with different fields).
// A frame is built, encoded and dropped: boxing its large variants would
// only add an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answers `ping`; carries the `request_id` only when there was one.
    Pong {
        /// The ping's request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// A frame was handled (`typing`, `set_status`); `request_id` is `null`
    /// when there was none.
    Ack {
        /// The frame's request id.
        request_id: Option<RequestId>,
    },
    /// A `send_message` was stored (or replayed): the message as stored.
    #[serde(rename = "ack")]
    Sent {
        /// The send's request id.
        request_id: Option<RequestId>,
        /// The stored message.
        message: MessageDto,
    },
    /// A `read` or `delivered` marker moved: both markers afterwards.
    #[serde(rename = "ack")]
    Marked {
        /// The receipt's request id.
        request_id: Option<RequestId>,
        /// The caller's markers.
        receipt: ReceiptMarkers,
    },
    /// A `resume` replayed every conversation it named.
    #[serde(rename = "ack")]
    Resumed {
        /// The resume's request id.
        request_id: Option<RequestId>,
        /// What was replayed.
        #[serde(flatten)]
        report: ResumeReport,
    },
    /// A frame was refused; carries the `request_id` only when there was one.
    Error {
        /// The frame's request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        /// The REST error code (`invalid_request`, `not_found`...).
        code: &'static str,
        /// What was wrong, in the client's terms.
        message: String,
    },
    /// A `resume` could not replay some conversations: which and why, and
    /// what it replayed of the others.
    #[serde(rename = "error")]
    ResumeFailed {
        /// The resume's request id.
        request_id: Option<RequestId>,
        /// The code of the first failure.
        code: &'static str,
        /// Always "some conversations could not be resumed".
        message: &'static str,
        /// The conversations that failed.
        failures: Vec<ResumeFailure>,
        /// What was replayed.
        #[serde(flatten)]
        report: ResumeReport,
    },
    /// A message was committed (live, or replayed by `resume`).
    NewMessage {
        /// The message.
        message: MessageDto,
    },
    /// A message's text was edited.
    MessageUpdated {
        /// The message after the edit.
        message: MessageDto,
    },
    /// A message was deleted (it keeps its `seq`, not its content).
    MessageDeleted {
        /// The message after the deletion.
        message: MessageDto,
    },
    /// A conversation's status, assignee or tags changed.
    ConversationUpdated {
        /// The conversation after the change.
        conversation: ConversationDto,
    },
    /// Somebody's read marker moved.
    Read(ReceiptMoved),
    /// Somebody's delivered marker moved.
    Delivered(ReceiptMoved),
    /// Somebody started or stopped typing.
    Typing {
        /// Where.
        conversation_id: Uuid,
        /// Who.
        sender: SenderDto,
        /// Started (`true`) or stopped.
        is_typing: bool,
    },
    /// A staff member joined or was added to a direct conversation or
    /// channel (sent to its members and to them).
    MemberAdded {
        /// Where.
        conversation_id: Uuid,
        /// Who.
        user: SenderDto,
        /// Who added them (themselves when joining).
        by: SenderDto,
    },
    /// A staff member left or was removed (sent to the members who stay
    /// and to them).
    MemberRemoved {
        /// Where.
        conversation_id: Uuid,
        /// Who.
        user: SenderDto,
        /// Who removed them (themselves when leaving).
        by: SenderDto,
    },
    /// A user's presence changed.
    Presence {
        /// Whose.
        user: SenderDto,
        /// `online`, `away` or `offline`.
        status: &'static str,
        /// When last seen; `null` while online.
        last_seen_at: Option<String>,
    },
}

/// The caller's markers of one conversation, in a receipt's `ack`.
#[derive(Debug, Serialize)]
pub struct ReceiptMarkers {
    /// Read up to this `seq`.
    pub last_read_seq: u64,
    /// Delivered up to this `seq`.
    pub last_delivered_seq: u64,
}

/// A marker that moved, as `read` and `delivered` frames carry it.
#[derive(Debug, Serialize)]
pub struct ReceiptMoved {
    /// Where.
    conversation_id: Uuid,
    /// Whose marker.
    reader: SenderDto,
    /// Up to which `seq`.
    up_to_seq: u64,
    /// When it moved.
    at: String,
}

/// What a `resume` replayed, in its `ack` (or `error`).
#[derive(Debug, Default, Serialize)]
pub struct ResumeReport {
    /// Messages replayed, over every conversation.
    pub replayed: usize,
    /// Whether everything missed was replayed (nothing failed, nothing was
    /// left beyond the cap).
    pub recovered: bool,
    /// Per conversation replayed.
    pub conversations: BTreeMap<Uuid, ConversationResumed>,
}

/// What a `resume` replayed of one conversation.
#[derive(Debug, Serialize)]
pub struct ConversationResumed {
    /// Messages replayed.
    pub replayed: usize,
    /// Whether that was all: `false` when the cap stopped it.
    pub recovered: bool,
    /// The last `seq` it covered: page the rest from there over REST.
    pub up_to_seq: u64,
}

/// A conversation a `resume` could not replay.
#[derive(Debug, Serialize)]
pub struct ResumeFailure {
    /// Which.
    pub conversation_id: Uuid,
    /// The REST error code.
    pub code: &'static str,
    /// Why; absent for a cursor that is not a valid `seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ServerFrame {
    /// `new_message`.
    pub fn new_message(message: Message) -> Self {
        Self::NewMessage {
            message: message.into(),
        }
    }

    /// `message_updated`, or `message_deleted` for a deleted message.
    pub fn message_changed(message: Message) -> Self {
        if message.deleted_at.is_some() {
            Self::MessageDeleted {
                message: message.into(),
            }
        } else {
            Self::MessageUpdated {
                message: message.into(),
            }
        }
    }

    /// `conversation_updated`.
    pub fn conversation_updated(conversation: Conversation) -> Self {
        Self::ConversationUpdated {
            conversation: conversation.into(),
        }
    }

    /// `read` or `delivered`: `receipt`'s marker of `state`.
    pub fn receipt_moved(
        conversation: ConversationId,
        receipt: Receipt,
        state: &ReadState,
    ) -> Self {
        let up_to = match receipt {
            Receipt::Read => state.last_read_seq,
            Receipt::Delivered => state.last_delivered_seq,
        };
        let moved = ReceiptMoved {
            conversation_id: conversation.into(),
            reader: state.reader.into(),
            up_to_seq: up_to.get(),
            at: time(state.updated_at),
        };
        match receipt {
            Receipt::Read => Self::Read(moved),
            Receipt::Delivered => Self::Delivered(moved),
        }
    }

    /// `typing`.
    pub fn typing(conversation: ConversationId, sender: Sender, is_typing: bool) -> Self {
        Self::Typing {
            conversation_id: conversation.into(),
            sender: sender.into(),
            is_typing,
        }
    }

    /// `member_added` or `member_removed`, as a membership `notice` of
    /// `conversation` reports it; `None` for a notice that changes no
    /// member (a channel's settings).
    pub fn membership(conversation: ConversationId, notice: &SystemNotice) -> Option<Self> {
        let user = Sender::Staff(notice.user?).into();
        let (conversation_id, by) = (conversation.into(), Sender::Staff(notice.by).into());
        match notice.kind {
            NoticeKind::MemberAdded => Some(Self::MemberAdded {
                conversation_id,
                user,
                by,
            }),
            NoticeKind::MemberRemoved | NoticeKind::MemberLeft => Some(Self::MemberRemoved {
                conversation_id,
                user,
                by,
            }),
            NoticeKind::ChannelUpdated => None,
        }
    }

    /// `presence`.
    pub fn presence(presence: &Presence) -> Self {
        Self::Presence {
            user: presence.user.into(),
            status: presence.status.as_str(),
            last_seen_at: presence.last_seen_at.map(time),
        }
    }

    /// `error` answering the frame of `request_id`.
    pub fn error(request_id: Option<&RequestId>, code: &'static str, message: String) -> Self {
        Self::Error {
            request_id: request_id.cloned(),
            code,
            message,
        }
    }

    /// The frame as it goes on the wire.
    pub fn encode(&self) -> Frame {
        let value = serde_json::to_value(self)
            .expect("server frames serialise: plain fields, string map keys");
        Utf8Bytes::from(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{
        ConversationId, ConversationStatus, CustomerId, MessageBody, MessageId,
        NewCustomerConversation, PresenceStatus, Seq, StaffUserId, TenantId,
    };
    use chrono::DateTime;

    use super::*;

    const CONVERSATION: &str = "00000000-0000-7000-8000-000000000001";
    const AT: &str = "2026-01-01T00:00:00.000000Z";

    fn at() -> chrono::DateTime<chrono::Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid time")
    }

    fn customer() -> CustomerId {
        CustomerId::from_uuid(Uuid::from_u128(2))
    }

    fn conversation() -> Conversation {
        NewCustomerConversation {
            id: ConversationId::from_uuid(CONVERSATION.parse().expect("uuid")),
            tenant: TenantId::from_uuid(Uuid::from_u128(3)),
            customer_id: customer(),
            clinician: None,
            now: at(),
        }
        .prospective()
    }

    fn message() -> Message {
        Message {
            id: MessageId::from_uuid(Uuid::from_u128(4)),
            body: Some(MessageBody::parse("hi").expect("body")),
            created_at: at(),
            ..chat_app::fixtures::message(&conversation(), 7, Sender::Customer(customer()))
        }
    }

    const MESSAGE: &str = concat!(
        r#"{"attachments":[],"body":"hi","client_msg_id":null,"conversation_id":"00000000-0000-7000-8000-000000000001","#,
        r#""created_at":"2026-01-01T00:00:00.000000Z","deleted_at":null,"edited_at":null,"#,
        r#""id":"00000000-0000-0000-0000-000000000004","reply_to":null,"#,
        r#""sender":{"id":"00000000-0000-0000-0000-000000000002","type":"customer"},"seq":7}"#
    );
    const CUSTOMER: &str = r#"{"id":"00000000-0000-0000-0000-000000000002","type":"customer"}"#;

    fn wire(frame: &ServerFrame) -> String {
        frame.encode().as_str().to_owned()
    }

    fn read_state() -> ReadState {
        ReadState {
            conversation_id: conversation().id,
            reader: Sender::Customer(customer()),
            last_read_seq: Seq::from_u64(5).expect("seq"),
            last_delivered_seq: Seq::from_u64(6).expect("seq"),
            updated_at: at(),
        }
    }

    fn resume_report() -> ResumeReport {
        ResumeReport {
            replayed: 3,
            recovered: false,
            conversations: BTreeMap::from([(
                CONVERSATION.parse().expect("uuid"),
                ConversationResumed {
                    replayed: 3,
                    recovered: false,
                    up_to_seq: 9,
                },
            )]),
        }
    }

    #[test]
    fn answers_echo_the_request_id_as_they_always_have() {
        let rid = serde_json::json!("r-1");
        let cases = [
            (ServerFrame::Pong { request_id: None }, r#"{"type":"pong"}"#.to_owned()),
            (
                ServerFrame::Pong {
                    request_id: Some(serde_json::json!(5)),
                },
                r#"{"request_id":5,"type":"pong"}"#.to_owned(),
            ),
            (
                ServerFrame::Ack { request_id: None },
                r#"{"request_id":null,"type":"ack"}"#.to_owned(),
            ),
            (
                ServerFrame::Ack {
                    request_id: Some(rid.clone()),
                },
                r#"{"request_id":"r-1","type":"ack"}"#.to_owned(),
            ),
            (
                ServerFrame::Sent {
                    request_id: Some(rid.clone()),
                    message: message().into(),
                },
                format!(r#"{{"message":{MESSAGE},"request_id":"r-1","type":"ack"}}"#),
            ),
            (
                ServerFrame::Marked {
                    request_id: None,
                    receipt: ReceiptMarkers {
                        last_read_seq: 5,
                        last_delivered_seq: 6,
                    },
                },
                r#"{"receipt":{"last_delivered_seq":6,"last_read_seq":5},"request_id":null,"type":"ack"}"#
                    .to_owned(),
            ),
            (
                ServerFrame::error(None, "not_found", "conversation not found".into()),
                r#"{"code":"not_found","message":"conversation not found","type":"error"}"#
                    .to_owned(),
            ),
            (
                ServerFrame::error(Some(&rid), "invalid_request", "bad".into()),
                r#"{"code":"invalid_request","message":"bad","request_id":"r-1","type":"error"}"#
                    .to_owned(),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(wire(&frame), expected, "{frame:?}");
        }
    }

    #[test]
    fn resume_answers_say_what_was_replayed() {
        let resumed = ServerFrame::Resumed {
            request_id: None,
            report: resume_report(),
        };
        assert_eq!(
            wire(&resumed),
            format!(
                r#"{{"conversations":{{"{CONVERSATION}":{{"recovered":false,"replayed":3,"up_to_seq":9}}}},"recovered":false,"replayed":3,"request_id":null,"type":"ack"}}"#
            )
        );
        let failed = ServerFrame::ResumeFailed {
            request_id: Some(serde_json::json!("r")),
            code: "invalid_request",
            message: "some conversations could not be resumed",
            failures: vec![
                ResumeFailure {
                    conversation_id: Uuid::from_u128(8),
                    code: "invalid_request",
                    message: None,
                },
                ResumeFailure {
                    conversation_id: Uuid::from_u128(9),
                    code: "not_found",
                    message: Some("conversation not found".into()),
                },
            ],
            report: resume_report(),
        };
        assert_eq!(
            wire(&failed),
            format!(
                concat!(
                    r#"{{"code":"invalid_request","conversations":{{"{c}":{{"recovered":false,"replayed":3,"up_to_seq":9}}}},"#,
                    r#""failures":[{{"code":"invalid_request","conversation_id":"00000000-0000-0000-0000-000000000008"}},"#,
                    r#"{{"code":"not_found","conversation_id":"00000000-0000-0000-0000-000000000009","message":"conversation not found"}}],"#,
                    r#""message":"some conversations could not be resumed","recovered":false,"replayed":3,"request_id":"r","type":"error"}}"#
                ),
                c = CONVERSATION
            )
        );
    }

    #[test]
    fn message_events_carry_the_message_as_rest_shows_it() {
        let mut deleted = message();
        deleted.deleted_at = Some(at());
        let deleted_json = MESSAGE
            .replace(r#""body":"hi""#, r#""body":null"#)
            .replace(r#""deleted_at":null"#, &format!(r#""deleted_at":"{AT}""#));
        let cases = [
            (
                ServerFrame::new_message(message()),
                format!(r#"{{"message":{MESSAGE},"type":"new_message"}}"#),
            ),
            (
                ServerFrame::message_changed(message()),
                format!(r#"{{"message":{MESSAGE},"type":"message_updated"}}"#),
            ),
            (
                ServerFrame::message_changed(deleted),
                format!(r#"{{"message":{deleted_json},"type":"message_deleted"}}"#),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(wire(&frame), expected, "{frame:?}");
        }
    }

    #[test]
    fn conversation_updates_carry_the_conversation_without_list_fields() {
        let mut conversation = conversation();
        conversation.status = ConversationStatus::Resolved;
        assert_eq!(
            wire(&ServerFrame::conversation_updated(conversation)),
            format!(
                concat!(
                    r#"{{"conversation":{{"assignee_id":null,"created_at":"{at}","customer_id":"00000000-0000-0000-0000-000000000002","#,
                    r#""id":"{c}","kind":"customer","last_activity_at":"{at}","last_seq":0,"staff_user_id":null,"#,
                    r#""status":"resolved","tags":[],"tenant_id":"00000000-0000-0000-0000-000000000003","updated_at":"{at}"}},"#,
                    r#""type":"conversation_updated"}}"#
                ),
                at = AT,
                c = CONVERSATION
            )
        );
    }

    #[test]
    fn receipts_typing_and_presence_name_who() {
        let staff = Sender::Staff(StaffUserId::from_uuid(Uuid::from_u128(6)));
        let staff_json = r#"{"id":"00000000-0000-0000-0000-000000000006","type":"staff"}"#;
        let cases = [
            (
                ServerFrame::receipt_moved(conversation().id, Receipt::Read, &read_state()),
                format!(
                    r#"{{"at":"{AT}","conversation_id":"{CONVERSATION}","reader":{CUSTOMER},"type":"read","up_to_seq":5}}"#
                ),
            ),
            (
                ServerFrame::receipt_moved(conversation().id, Receipt::Delivered, &read_state()),
                format!(
                    r#"{{"at":"{AT}","conversation_id":"{CONVERSATION}","reader":{CUSTOMER},"type":"delivered","up_to_seq":6}}"#
                ),
            ),
            (
                ServerFrame::typing(conversation().id, staff, true),
                format!(
                    r#"{{"conversation_id":"{CONVERSATION}","is_typing":true,"sender":{staff_json},"type":"typing"}}"#
                ),
            ),
            (
                ServerFrame::presence(&Presence {
                    user: staff,
                    status: PresenceStatus::Online,
                    last_seen_at: None,
                }),
                format!(
                    r#"{{"last_seen_at":null,"status":"online","type":"presence","user":{staff_json}}}"#
                ),
            ),
            (
                ServerFrame::presence(&Presence {
                    user: Sender::Customer(customer()),
                    status: PresenceStatus::Offline,
                    last_seen_at: Some(at()),
                }),
                format!(
                    r#"{{"last_seen_at":"{AT}","status":"offline","type":"presence","user":{CUSTOMER}}}"#
                ),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(wire(&frame), expected, "{frame:?}");
        }
    }
}
