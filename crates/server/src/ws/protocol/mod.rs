//! The WebSocket wire protocol (API.md): what clients send ([`client`]) and
//! what the server sends ([`server`]).
//!
//! A new client frame goes in `client.rs` (and its handler in `ws/cmd/`);
//! a new server frame is a variant of [`ServerFrame`] in `server.rs`, with
//! a test pinning its JSON.

pub mod client;
pub mod server;

pub use client::{
    parse, ClientFrame, FrameError, Parsed, PingFrame, ReceiptFrame, ResumeFrame, SendMessageFrame,
    SetStatusFrame, TypingFrame, MAX_RESUME_CURSORS,
};
pub use server::{
    ConversationResumed, Frame, ReceiptMarkers, RequestId, ResumeFailure, ResumeReport, ServerFrame,
};

use serde_json::Value;

use crate::dto::SenderDto;

/// A sender object as the WebSocket frames carry it, for REST bodies that
/// show the same (presence and receipt lists).
pub fn sender(sender: chat_domain::Sender) -> Value {
    serde_json::to_value(SenderDto::from(sender)).unwrap_or(Value::Null)
}
