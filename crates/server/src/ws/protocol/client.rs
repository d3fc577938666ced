//! Client frames (API.md): parsed in two steps, the envelope (`type`,
//! `request_id`) then the fields of its type, so every malformed frame
//! gets a precise error that echoes its `request_id`.
//!
//! A new client frame is a struct here, a variant of [`ClientFrame`], a
//! line in [`parse`], and its handler in `ws/cmd/`.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::extract::client_wording;

/// The most cursors one `resume` frame may carry.
pub const MAX_RESUME_CURSORS: usize = 1000;

/// A parsed client frame.
#[derive(Debug)]
pub enum ClientFrame {
    /// Keepalive.
    Ping(PingFrame),
    /// Send a message.
    SendMessage(SendMessageFrame),
    /// Typing indicator.
    Typing(TypingFrame),
    /// Read receipt.
    Read(ReceiptFrame),
    /// Delivered receipt.
    Delivered(ReceiptFrame),
    /// Presence status.
    SetStatus(SetStatusFrame),
    /// Replay what was missed.
    Resume(ResumeFrame),
}

/// `ping`: nothing but the envelope.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingFrame {
    #[serde(default, rename = "type")]
    _type: Option<String>,
    #[serde(default, rename = "request_id")]
    _request_id: Option<Value>,
}

/// `send_message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessageFrame {
    #[serde(default, rename = "type")]
    _type: Option<String>,
    #[serde(default, rename = "request_id")]
    _request_id: Option<Value>,
    pub conversation_id: Uuid,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub attachment_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    pub client_msg_id: String,
}

/// `typing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingFrame {
    #[serde(default, rename = "type")]
    _type: Option<String>,
    #[serde(default, rename = "request_id")]
    _request_id: Option<Value>,
    pub conversation_id: Uuid,
    pub is_typing: bool,
}

/// `read` and `delivered`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptFrame {
    #[serde(default, rename = "type")]
    _type: Option<String>,
    #[serde(default, rename = "request_id")]
    _request_id: Option<Value>,
    pub conversation_id: Uuid,
    pub up_to_seq: u64,
}

/// `set_status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStatusFrame {
    #[serde(default, rename = "type")]
    _type: Option<String>,
    #[serde(default, rename = "request_id")]
    _request_id: Option<Value>,
    pub status: String,
}

/// `resume`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeFrame {
    #[serde(default, rename = "type")]
    _type: Option<String>,
    #[serde(default, rename = "request_id")]
    _request_id: Option<Value>,
    pub cursors: HashMap<Uuid, u64>,
}

/// Why a frame could not be parsed: the message for the `error` frame.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError(pub String);

/// A frame with its (possibly absent) request id.
#[derive(Debug)]
pub struct Parsed {
    /// The id to echo in the `ack` or `error`.
    pub request_id: Option<Value>,
    /// The frame, or why it is malformed.
    pub frame: Result<ClientFrame, FrameError>,
}

fn fields<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, FrameError> {
    serde_json::from_value(Value::Object(object))
        .map_err(|e| FrameError(client_wording(&e.to_string())))
}

/// Parses one text frame.
pub fn parse(text: &str) -> Parsed {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            return Parsed {
                request_id: None,
                frame: Err(FrameError(format!(
                    "frame is not valid JSON: {}",
                    client_wording(&e.to_string())
                ))),
            }
        }
    };
    let Value::Object(object) = value else {
        return Parsed {
            request_id: None,
            frame: Err(FrameError("frame must be a JSON object".into())),
        };
    };
    let request_id = match object.get("request_id") {
        None | Some(Value::Null) => None,
        Some(id @ Value::String(s)) if s.chars().count() <= 128 => Some(id.clone()),
        Some(id @ Value::Number(_)) => Some(id.clone()),
        Some(_) => {
            return Parsed {
                request_id: None,
                frame: Err(FrameError(
                    "request_id must be a string of at most 128 characters or a number".into(),
                )),
            }
        }
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Parsed {
                request_id,
                frame: Err(FrameError("type must be a string".into())),
            }
        }
        None => {
            return Parsed {
                request_id,
                frame: Err(FrameError("missing field `type`".into())),
            }
        }
    };
    let frame = match kind.as_str() {
        "ping" => fields(object).map(ClientFrame::Ping),
        "send_message" => fields(object).map(ClientFrame::SendMessage),
        "typing" => fields(object).map(ClientFrame::Typing),
        "read" => fields(object).map(ClientFrame::Read),
        "delivered" => fields(object).map(ClientFrame::Delivered),
        "set_status" => fields(object).map(ClientFrame::SetStatus),
        "resume" => fields::<ResumeFrame>(object).and_then(|resume| {
            if resume.cursors.len() > MAX_RESUME_CURSORS {
                Err(FrameError(format!(
                    "at most {MAX_RESUME_CURSORS} cursors per resume"
                )))
            } else {
                Ok(ClientFrame::Resume(resume))
            }
        }),
        other => Err(FrameError(format!(
            "unknown frame type `{}`",
            other.chars().take(64).collect::<String>()
        ))),
    };
    Parsed { request_id, frame }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(text: &str) -> String {
        match parse(text).frame {
            Err(FrameError(message)) => message,
            Ok(frame) => panic!("{text} parsed as {frame:?}"),
        }
    }

    #[test]
    fn every_client_frame_parses() {
        let conversation = Uuid::now_v7();
        let frames = [
            json!({"type": "ping"}),
            json!({"type": "send_message", "conversation_id": conversation, "body": "hi", "client_msg_id": "c1", "request_id": "r1"}),
            json!({"type": "typing", "conversation_id": conversation, "is_typing": true}),
            json!({"type": "read", "conversation_id": conversation, "up_to_seq": 3}),
            json!({"type": "delivered", "conversation_id": conversation, "up_to_seq": 3}),
            json!({"type": "set_status", "status": "away"}),
            json!({"type": "resume", "cursors": {conversation.to_string(): 7}}),
        ];
        for value in frames {
            let parsed = parse(&value.to_string());
            assert!(parsed.frame.is_ok(), "{value}: {:?}", parsed.frame);
        }
    }

    #[test]
    fn malformed_frames_are_explained() {
        let conversation = Uuid::now_v7();
        let cases = [
            ("{", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"request_id": "x"}"#, "missing field `type`"),
            (r#"{"type": 5}"#, "type must be a string"),
            (r#"{"type": "launch"}"#, "unknown frame type"),
            (
                r#"{"type": "typing", "is_typing": true}"#,
                "missing field `conversation_id`",
            ),
            (
                &json!({"type": "typing", "conversation_id": conversation, "is_typing": "yes"})
                    .to_string(),
                "invalid type",
            ),
            (
                &json!({"type": "read", "conversation_id": conversation, "up_to_seq": -1})
                    .to_string(),
                "invalid value",
            ),
            (
                &json!({"type": "send_message", "conversation_id": conversation, "body": "x"})
                    .to_string(),
                "missing field `client_msg_id`",
            ),
            (
                &json!({"type": "ping", "extra": 1}).to_string(),
                "unknown field",
            ),
            (r#"{"type": "ping", "request_id": {"a": 1}}"#, "request_id"),
        ];
        for (text, expected) in cases {
            let message = error_of(text);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn frame_errors_name_no_rust_types() {
        let conversation = Uuid::now_v7();
        let cases = [
            (
                json!({"type": "send_message", "conversation_id": "nope", "client_msg_id": "c"}),
                "expected a UUID",
            ),
            (
                json!({"type": "send_message", "conversation_id": 5, "client_msg_id": "c"}),
                "invalid type: integer `5`, expected a UUID",
            ),
            (
                json!({"type": "send_message", "conversation_id": conversation, "client_msg_id": "c", "attachment_ids": "a"}),
                r#"invalid type: string "a", expected a sequence"#,
            ),
            (
                json!({"type": "read", "conversation_id": conversation, "up_to_seq": -1}),
                "invalid value: integer `-1`, expected a non-negative integer",
            ),
            (
                json!({"type": "typing", "conversation_id": conversation, "is_typing": "yes"}),
                r#"invalid type: string "yes", expected a boolean"#,
            ),
            (
                json!({"type": "resume", "cursors": [1, 2]}),
                "invalid type: sequence, expected an object",
            ),
            (
                json!({"type": "resume", "cursors": {"nope": 1}}),
                "expected a UUID",
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(error_of(&frame.to_string()), expected, "{frame}");
        }
        assert_eq!(
            error_of("{"),
            "frame is not valid JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn the_request_id_is_kept_even_when_the_frame_is_bad() {
        let parsed = parse(r#"{"type": "nope", "request_id": "r-9"}"#);
        assert_eq!(parsed.request_id, Some(json!("r-9")));
        assert!(parsed.frame.is_err());
    }

    #[test]
    fn too_many_resume_cursors_are_refused() {
        let cursors: serde_json::Map<String, Value> = (0..=MAX_RESUME_CURSORS)
            .map(|_| (Uuid::now_v7().to_string(), json!(1)))
            .collect();
        let text = json!({"type": "resume", "cursors": cursors}).to_string();
        assert!(error_of(&text).contains("at most"));
    }
}
