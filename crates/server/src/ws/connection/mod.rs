//! One WebSocket connection: its lifecycle (open, serve, drain, close), and
//! the reader loop that handles client frames, hub events, finished sends,
//! heartbeats and typing expiry under one `select!`.
//!
//! Each concern has its file: the writer task and close frames
//! (`writer`), the send pipeline (`sends`), typing (`typing`), what was
//! sent for `resume` (`resume`), abuse counting (`abuse`), oversized frames
//! (`oversize`). Client frames are handled in `ws/cmd/`.

mod abuse;
mod oversize;
mod resume;
mod sends;
mod typing;
mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use chat_app::ConnectionId;
use chat_domain::Principal;
use futures::stream::SplitStream;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

pub(in crate::ws) use sends::Ticket;

use super::outbound::{ConnControl, Outbound};
use super::protocol::ServerFrame;
use super::{cmd, Realtime, Seat};
use crate::metrics::Metrics;
use abuse::Abuse;
use resume::Tracks;
use sends::{Held, Sends};
use typing::Indicators;
use writer::{close, close_for, too_large, write_loop, CLOSE_GRACE, WRITER_QUEUE};

/// The writer half went away: the connection is over.
#[derive(Debug)]
pub(in crate::ws) struct Gone;

/// One connection's state, owned by its task.
pub(in crate::ws) struct Connection {
    id: ConnectionId,
    /// Whose connection it is.
    pub(in crate::ws) principal: Principal,
    /// The use cases and settings.
    pub(in crate::ws) rt: Arc<Realtime>,
    /// Counts the messages this connection stores.
    metrics: Arc<Metrics>,
    out: mpsc::Sender<WsMessage>,
    control: ConnControl,
    /// What was sent of each conversation, for `resume`.
    pub(in crate::ws) tracks: Tracks,
    typing: Indicators,
    sends: Sends,
    held: Held,
    abuse: Abuse,
    last_heard: Instant,
}

/// Serves one upgraded socket until it closes.
pub(super) async fn run(socket: WebSocket, seat: Seat, rt: Arc<Realtime>, metrics: Arc<Metrics>) {
    let (id, principal) = (seat.id(), seat.principal());
    let (tx, mut events) = mpsc::channel(rt.settings.queue_capacity);
    let control = ConnControl::child_of(&rt.shutdown);
    rt.hub.register(id, principal, tx, control.clone());
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel(WRITER_QUEUE);
    let (closer, closing) = oneshot::channel();
    let mut writer = tokio::spawn(write_loop(sink, out_rx, closing));
    let now = Instant::now();
    let mut connection = Connection {
        id,
        principal,
        rt: rt.clone(),
        metrics,
        out,
        control,
        tracks: Tracks::default(),
        typing: Indicators::default(),
        sends: Sends::default(),
        held: Held::default(),
        abuse: Abuse::new(now),
        last_heard: now,
    };
    tracing::debug!(connection = %id, "websocket open");
    let close_frame = connection.serve(&mut stream, &mut events).await;
    rt.hub.unregister(&principal, id);
    // What the client sent is stored (and, on a clean close, acked) before
    // the socket goes.
    connection.drain_sends().await;
    connection.stop_typing().await;
    let mut writer_done = false;
    if let Some(frame) = close_frame {
        // Ahead of anything still to be queued, behind what is: acks of
        // the sends just drained go first.
        let _ = closer.send(frame);
        // Complete the closing handshake: read (and discard) until the
        // client's close, while the writer gets the close frame out and
        // briefly after. Dropping a socket with unread client data makes
        // the kernel reset it, and the client would lose our close frame
        // and the frames before it.
        let handshake = async {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, WsMessage::Close(_)) {
                    break;
                }
            }
        };
        let written = async {
            let _ = (&mut writer).await;
            writer_done = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        tokio::select! {
            () = handshake => {}
            () = written => {}
        }
    }
    drop(connection.out);
    drop(stream);
    if !writer_done
        && tokio::time::timeout(CLOSE_GRACE + Duration::from_secs(1), writer)
            .await
            .is_err()
    {
        tracing::debug!(connection = %id, "writer did not finish: socket dropped");
    }
    seat.release().await;
    tracing::debug!(connection = %id, "websocket closed");
}

impl Connection {
    /// Serves the connection until it is to close; returns the close frame
    /// to send, if any (none when the socket itself is gone).
    async fn serve(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        events: &mut mpsc::Receiver<Outbound>,
    ) -> Option<CloseFrame> {
        let ping_every = self.rt.settings.ping_interval;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let tick = (self.rt.settings.typing_expiry / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut typing = tokio::time::interval(tick);
        typing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            // Unbiased: a client streaming frames must not starve its own
            // deliveries, nor a burst of events its frames.
            let step = tokio::select! {
                () = self.control.closed() => return Some(close_for(self.control.reason())),
                (ticket, result) = self.sends.finished() => self.sent(ticket, result).await,
                // Always read, even while sends wait for the store: pings
                // are answered and a close is seen (a send beyond the queue
                // is refused, see `sends`).
                incoming = stream.next() => {
                    let message = match incoming {
                        None => return None,
                        Some(Err(err)) if oversize::is_too_large(&err) => return Some(too_large()),
                        Some(Err(_)) => return None,
                        Some(Ok(message)) => message,
                    };
                    self.last_heard = Instant::now();
                    match message {
                        // Checked here rather than by tungstenite, which refuses
                        // an oversized frame after its header and leaves the
                        // rest unread: closing then resets the connection and
                        // the client never sees the 1009.
                        WsMessage::Text(text) if text.len() > self.rt.settings.max_frame_bytes => {
                            return Some(too_large());
                        }
                        WsMessage::Text(text) => cmd::handle(self, text.as_str()).await,
                        WsMessage::Binary(_) => {
                            self.refuse(None, "binary frames are not supported: send JSON text frames").await
                        }
                        WsMessage::Ping(_) | WsMessage::Pong(_) => Ok(None),
                        WsMessage::Close(_) => return None,
                    }
                }
                event = events.recv() => match event {
                    Some(out) => self.forward(out).await.map(|()| None),
                    None => return Some(close_for(self.control.reason())),
                },
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > self.rt.settings.idle_timeout {
                        tracing::debug!(connection = %self.id, "no sign of life: dropping");
                        return Some(close(1001, "idle timeout"));
                    }
                    match self.send(WsMessage::Ping(Default::default())).await {
                        Ok(()) => {
                            if let Err(err) = self.rt.presence.refresh(&self.principal, self.id).await {
                                tracing::warn!(error = ?err, "presence refresh failed");
                            }
                            Ok(None)
                        }
                        Err(Gone) => Err(Gone),
                    }
                }
                // Only while an indicator is up: idle sockets are not woken.
                _ = typing.tick(), if !self.typing.is_empty() => {
                    self.expire_typing().await;
                    Ok(None)
                }
            };
            match step {
                Ok(None) => {}
                Ok(Some(frame)) => return Some(frame),
                Err(Gone) => return self.gone(),
            }
        }
    }

    /// Queues a frame for the writer; gives up when the writer is gone or
    /// the connection is asked to close while the queue is full.
    async fn send(&mut self, message: WsMessage) -> Result<(), Gone> {
        tokio::select! {
            // A frame that fits goes out even when a close was asked for
            // meanwhile: it was due before the close.
            biased;
            sent = self.out.send(message) => sent.map_err(|_| Gone),
            () = self.control.closed() => Err(Gone),
        }
    }

    /// The close frame after a write gave up: the reason the connection was
    /// asked to close (1001 on shutdown), or none when the socket itself is
    /// gone. Without this, a shutdown that lands while a frame is being
    /// queued would drop the socket without its close frame.
    fn gone(&self) -> Option<CloseFrame> {
        self.control
            .is_closed()
            .then(|| close_for(self.control.reason()))
    }

    /// Queues a frame for this client alone.
    pub(in crate::ws) async fn emit(&mut self, frame: &ServerFrame) -> Result<(), Gone> {
        self.send(WsMessage::Text(frame.encode())).await
    }

    /// Queues a hub event, unless it is the echo of a send of this
    /// connection not acked yet, or follows such an echo in its
    /// conversation: those wait for the ack ([`Connection::sent`]).
    async fn forward(&mut self, out: Outbound) -> Result<(), Gone> {
        match self.held.offer(out, &self.sends) {
            Some(out) => self.deliver(out).await,
            None => Ok(()),
        }
    }

    /// Queues an event, dropping messages a `resume` already replayed.
    async fn deliver(&mut self, out: Outbound) -> Result<(), Gone> {
        if let (Some(conversation), Some(seq)) = (out.conversation, out.seq) {
            if !self.tracks.live(conversation, seq) {
                return Ok(());
            }
        }
        self.send(WsMessage::Text(out.frame)).await
    }
}
