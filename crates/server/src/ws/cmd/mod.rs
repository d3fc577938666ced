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
use crate::error::{ApiError, StoreFault};

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
    /// The server failed (a 5xx on REST), not the client: it is answered
    /// but never counted as the client's abuse.
    pub(in crate::ws) server_fault: bool,
}

impl Refusal {
    /// The client's mistake, answered with `code` and `message`.
    pub(in crate::ws) fn client(code: &'static str, message: String) -> Self {
        Self {
            code,
            message,
            server_fault: false,
        }
    }

    /// `unavailable`: the store cannot be reached now; send again shortly.
    pub(in crate::ws) fn unavailable(fault: StoreFault) -> Self {
        let (code, message) = ApiError::store_unavailable(fault).into_parts();
        Self {
            code,
            message,
            server_fault: true,
        }
    }

    /// `rate_limited` because the server is slow, not because the client
    /// sent too much: answered, never counted as abuse.
    pub(in crate::ws) fn busy(message: String) -> Self {
        Self {
            code: "rate_limited",
            message,
            server_fault: true,
        }
    }
}

impl From<ChatError> for Refusal {
    /// The code and message of the REST error.
    fn from(err: ChatError) -> Self {
        let api = ApiError::from(err);
        let server_fault = api.status().is_server_error();
        let (code, message) = api.into_parts();
        Self {
            code,
            message,
            server_fault,
        }
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
        Err(refusal) => conn.fail(rid, refusal).await,
    }
}

#[cfg(test)]
mod tests {
    use chat_app::{Conflict, Field, Reason, Resource};

    use super::*;

    #[test]
    fn only_the_servers_own_failures_are_server_faults() {
        let cases = [
            (ChatError::NotFound(Resource::Conversation), false),
            (ChatError::Forbidden, false),
            (ChatError::invalid(Field::Status, Reason::Empty), false),
            (ChatError::Conflict(Conflict::MessageDeleted), false),
            (ChatError::Unexpected(anyhow::anyhow!("store down")), true),
        ];
        for (err, server_fault) in cases {
            let shown = format!("{err:?}");
            let refusal = Refusal::from(err);
            assert_eq!(refusal.server_fault, server_fault, "{shown}");
        }
        assert!(!Refusal::client("rate_limited", "slow down".into()).server_fault);
    }
}
