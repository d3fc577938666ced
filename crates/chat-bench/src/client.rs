//! The WebSocket client side: connecting (many sockets, bounded
//! concurrency), send frames, and the little of each server frame the
//! tool needs to correlate acks and deliveries.

use std::time::Duration;

use anyhow::{bail, Context};
use futures::stream::SplitStream;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// One client socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a socket, retrying briefly when the server's accept queue is full.
///
/// # Errors
/// When the upgrade is refused or the connection keeps failing.
pub async fn connect(url: &str) -> anyhow::Result<Socket> {
    let mut last = None;
    for attempt in 0..5u32 {
        match tokio::time::timeout(
            Duration::from_secs(20),
            // TCP_NODELAY: small frames go out at once, as the server's do.
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await
        {
            Ok(Ok((socket, _))) => return Ok(socket),
            Ok(Err(err)) => last = Some(anyhow::Error::new(err)),
            Err(_) => last = Some(anyhow::anyhow!("connect timed out")),
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("connect failed"))).context("opening a WebSocket")
}

/// The body of every message the load sends (and of the baseline's
/// inserts).
pub const MESSAGE_BODY: &str = "benchmark message: is my prescription ready for pick-up?";

/// The `send_message` frame of message `client_msg_id`; the request id is
/// the same key, so an `error` can be matched too.
pub fn send_frame(conversation: &str, client_msg_id: &str) -> Message {
    Message::text(
        json!({
            "type": "send_message",
            "request_id": client_msg_id,
            "conversation_id": conversation,
            "body": MESSAGE_BODY,
            "client_msg_id": client_msg_id,
        })
        .to_string(),
    )
}

/// What the tool reads of a server frame.
#[derive(Debug, Deserialize)]
pub struct Incoming {
    /// `ack`, `new_message`, `error`, `presence`...
    #[serde(rename = "type")]
    pub kind: String,
    /// Echoed request id (acks and errors).
    #[serde(default)]
    pub request_id: Option<serde_json::Value>,
    /// The message of acks and `new_message` events.
    #[serde(default)]
    pub message: Option<IncomingMessage>,
    /// Error code of `error` frames.
    #[serde(default)]
    pub code: Option<String>,
}

/// The fields of a message the tool correlates on.
#[derive(Debug, Deserialize)]
pub struct IncomingMessage {
    /// The sender's idempotency key (the tool encodes its schedule in it).
    #[serde(default)]
    pub client_msg_id: Option<String>,
    /// Who sent it.
    pub sender: IncomingSender,
    /// Its place in its conversation.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Its conversation.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

/// A sender object.
#[derive(Debug, Deserialize)]
pub struct IncomingSender {
    /// `staff`, `customer` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Parses a text frame; `None` for control frames.
///
/// # Errors
/// When a text frame is not the JSON the server promises.
pub fn parse(message: &Message) -> anyhow::Result<Option<Incoming>> {
    match message {
        Message::Text(text) => serde_json::from_str(text.as_str())
            .map(Some)
            .context("a server frame that is not valid JSON"),
        Message::Close(frame) => bail!("the server closed the socket: {frame:?}"),
        _ => Ok(None),
    }
}

/// Reads (and so answers the server's pings) until `stop` is cancelled;
/// `true` when the server closed the socket (or it failed) first.
pub async fn read_until(stream: &mut SplitStream<Socket>, stop: &CancellationToken) -> bool {
    loop {
        tokio::select! {
            () = stop.cancelled() => return false,
            frame = stream.next() => if !matches!(frame, Some(Ok(_))) {
                return true;
            },
        }
    }
}

/// Sends a close frame and waits briefly for the socket to wind down.
pub async fn close(mut socket: Socket) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = socket.close(None).await;
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}
