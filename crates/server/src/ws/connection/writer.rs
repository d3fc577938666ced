//! The writer task of a connection, which owns the socket's sending half,
//! and the close frames the server ends connections with.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures::stream::SplitSink;
use futures::SinkExt;
use tokio::sync::{mpsc, oneshot};

use crate::ws::outbound::CloseReason;

/// How long one write may take before the client is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting for the writer.
pub(super) const WRITER_QUEUE: usize = 64;
/// How long a closing connection's last frames and close frame may take to
/// be read: a client that stopped reading gets this long to catch up and
/// see why it was closed.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A close frame.
pub(super) fn close(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

/// The close frame of a connection closed from outside.
pub(super) fn close_for(reason: CloseReason) -> CloseFrame {
    match reason {
        CloseReason::Shutdown => close(1001, "server shutting down"),
        CloseReason::Overflow => close(1013, "too slow: reconnect and resume"),
        CloseReason::Resync => close(1013, "reconnect and resume"),
    }
}

/// The close of a frame above the size limit (1009).
pub(super) fn too_large() -> CloseFrame {
    close(1009, "frame too large")
}

/// Writes frames until the queue closes; a write that takes longer than
/// [`WRITE_TIMEOUT`] (a client that stopped reading) ends the connection.
///
/// A close frame from `closing` overtakes whatever is being written: the
/// frames already queued, then the close, get [`CLOSE_GRACE`] together to
/// go out. A client that stopped reading and starts again within it reads
/// them and learns why it was closed (1013 when it fell behind).
pub(super) async fn write_loop(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut queue: mpsc::Receiver<WsMessage>,
    closing: oneshot::Receiver<CloseFrame>,
) {
    let mut closing = Some(closing);
    let close = loop {
        let message = tokio::select! {
            biased;
            frame = close_asked(&mut closing) => break Some(frame),
            message = queue.recv() => message,
        };
        let Some(message) = message else {
            break None;
        };
        // Dropping a write half-way is safe: what the socket accepted of
        // the frame stays buffered and is written before the next frame.
        tokio::select! {
            biased;
            written = tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)) => {
                if !matches!(written, Ok(Ok(()))) {
                    break None;
                }
            }
            frame = close_asked(&mut closing) => break Some(frame),
        }
    };
    if let Some(frame) = close {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Ok(message) = queue.try_recv() {
                sink.feed(message).await?;
            }
            sink.send(WsMessage::Close(Some(frame))).await
        })
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// The close frame, once asked for; never when the connection ends
/// without one (the queue then just drains).
async fn close_asked(closing: &mut Option<oneshot::Receiver<CloseFrame>>) -> CloseFrame {
    if let Some(receiver) = closing {
        if let Ok(frame) = receiver.await {
            return frame;
        }
        *closing = None;
    }
    std::future::pending().await
}
