//! One handler per client frame: each frame type of [`ClientFrame`] has its
//! file here with an `apply` that does what the frame asks and says what to
//! answer. [`handle`] parses a text frame and dispatches it with one flat
//! `match`.
//!
//! A new client frame: its struct and parser line in `protocol/client.rs`,
//! a file here with its `apply`, an arm in [`handle`].

mod ping;
mod receipt;
mod resume;
mod send;
mod status;
mod typing;

use axum::extract::ws::CloseFrame;
use chat_app::{ChatError, Receipt};

use super::connection::{Connection, Gone};
use super::protocol::{self, ClientFrame, FrameError, Parsed, ServerFrame};
use crate::error::ApiError;

/// What a handler answers the client.
#[derive(Debug)]
pub(in crate::ws) enum Reply {
    /// This frame, now.
    Now(ServerFrame),
    /// This frame, only when the client gave a `request_id`: a keystroke
    /// or a receipt needs no answer unless asked for.
    IfAsked(ServerFrame),
    /// Nothing yet: the answer comes later (a send's, once stored).
    Later,
}

/// Why a frame was refused: the code and message of its `error` frame.
#[derive(Debug)]
pub(in crate::ws) struct Refusal {
    /// The REST error code.
    pub(in crate::ws) code: &'static str,
    /// What was wrong.
    pub(in crate::ws) message: String,
}

impl From<ChatError> for Refusal {
    /// The code and message of the REST error.
    fn from(err: ChatError) -> Self {
        let (code, message) = ApiError::from(err).into_parts();
        Self { code, message }
    }
}

/// What a handler returns.
pub(in crate::ws) type Handled = Result<Reply, Refusal>;

/// Handles one text frame; returns the close frame when the connection is
/// to close (too many refused frames).
pub(in crate::ws) async fn handle(
    conn: &mut Connection,
    text: &str,
) -> Result<Option<CloseFrame>, Gone> {
    let Parsed { request_id, frame } = protocol::parse(text);
    let rid = request_id.as_ref();
    let frame = match frame {
        Ok(frame) => frame,
        Err(FrameError(message)) => return conn.refuse(rid, &message).await,
    };
    let handled = match frame {
        ClientFrame::Ping(frame) => frame.apply(rid),
        ClientFrame::SendMessage(frame) => frame.apply(conn, rid),
        ClientFrame::Typing(frame) => frame.apply(conn, rid).await,
        ClientFrame::Read(frame) => frame.apply(conn, Receipt::Read, rid).await,
        ClientFrame::Delivered(frame) => frame.apply(conn, Receipt::Delivered, rid).await,
        ClientFrame::SetStatus(frame) => frame.apply(conn, rid).await,
        ClientFrame::Resume(frame) => frame.apply(conn, rid).await,
    };
    match handled {
        Ok(Reply::Now(frame)) => conn.emit(&frame).await.map(|()| None),
        Ok(Reply::IfAsked(frame)) if rid.is_some() => conn.emit(&frame).await.map(|()| None),
        Ok(Reply::IfAsked(_) | Reply::Later) => Ok(None),
        Err(Refusal { code, message }) => conn.fail(rid, code, &message).await,
    }
}
