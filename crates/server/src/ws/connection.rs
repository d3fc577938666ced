//! One WebSocket connection: a reader loop that handles client frames, hub
//! events, the connection's sends, heartbeats and typing expiry under one
//! `select!`, and a writer task that owns the socket's sending half.
//!
//! Sends are stored one at a time, in the order they came, while the loop
//! goes on forwarding events: a client's own sends never hold up what it
//! receives. Only the echo of a pending send (and what follows it in that
//! conversation) waits, so that the sender gets its `ack` first.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use chat_app::{
    ChatError, ConnectionId, MessageCursor, PageLimit, Receipt, SendMessage, SendOutcome,
};
use chat_domain::{ConversationId, PresenceStatus, Principal, Seq};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::hub::{CloseReason, ConnControl, EchoKey, Outbound};
use super::protocol::{self, ClientFrame, Frame};
use super::{Realtime, Seat};
use crate::dto::{self, MessageDto};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Errors tolerated per window before the connection is closed (1008).
const ABUSE_LIMIT: u32 = 30;
/// The abuse window.
const ABUSE_WINDOW: Duration = Duration::from_secs(60);
/// How long one write may take before the client is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting for the writer.
const WRITER_QUEUE: usize = 64;
/// How long a closing connection's last frames and close frame may take to
/// be read: a client that stopped reading gets this long to catch up and
/// see why it was closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Sends received and not yet stored, per connection; beyond it the client's
/// next frames wait in the socket (events keep flowing).
const SEND_QUEUE: usize = 32;
/// How long a closing connection waits for the sends it already received.
const SEND_DRAIN: Duration = Duration::from_secs(5);

/// What this connection has sent of one conversation: every `seq` from
/// `lo` to `hi` (contiguous, as the hub delivers in order).
#[derive(Debug, Clone, Copy)]
struct Track {
    lo: u64,
    hi: u64,
}

struct Typing {
    relayed_at: Option<Instant>,
    refreshed_at: Instant,
}

/// The writer half went away: the connection is over.
struct Gone;

/// A send received from the client: what answering it takes.
struct Ticket {
    request_id: Option<Value>,
    conversation: ConversationId,
    echo: Option<EchoKey>,
}

type SendFuture = Pin<Box<dyn Future<Output = Result<SendOutcome, ChatError>> + Send>>;

/// The send being stored.
struct Running {
    ticket: Ticket,
    future: SendFuture,
}

/// The connection's sends: one running, the rest queued in arrival order.
#[derive(Default)]
struct Sends {
    running: Option<Running>,
    queued: VecDeque<(Ticket, SendMessage)>,
}

/// Events held back, per conversation, behind the echo of a send of this
/// connection that is not acked yet: the echo and whatever follows it in
/// its conversation, in order.
#[derive(Default)]
struct Held(HashMap<ConversationId, Vec<Outbound>>);

impl Held {
    /// Returns `out` when it may be delivered now, or keeps it.
    fn offer(&mut self, out: Outbound, sends: &Sends) -> Option<Outbound> {
        let Some(conversation) = out.conversation else {
            return Some(out);
        };
        if let Some(held) = self.0.get_mut(&conversation) {
            held.push(out);
            return None;
        }
        if out
            .echo
            .is_some_and(|echo| sends.pending(conversation, echo))
        {
            self.0.insert(conversation, vec![out]);
            return None;
        }
        Some(out)
    }

    /// What was held for `conversation`, to be offered again (after an ack).
    fn release(&mut self, conversation: ConversationId) -> Vec<Outbound> {
        self.0.remove(&conversation).unwrap_or_default()
    }
}

impl Sends {
    fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.running
            .iter()
            .map(|r| &r.ticket)
            .chain(self.queued.iter().map(|(ticket, _)| ticket))
    }

    fn has_room(&self) -> bool {
        self.queued.len() < SEND_QUEUE
    }

    /// Whether `echo` is the key of a send of this connection not yet acked.
    fn pending(&self, conversation: ConversationId, echo: EchoKey) -> bool {
        self.tickets()
            .any(|t| t.conversation == conversation && t.echo == Some(echo))
    }

    /// Completes when the running send does (never when none runs); cancel
    /// safe: the send stays where it is until it has completed.
    async fn finished(running: &mut Option<Running>) -> (Ticket, Result<SendOutcome, ChatError>) {
        let Some(current) = running.as_mut() else {
            return std::future::pending().await;
        };
        let result = current.future.as_mut().await;
        let done = running.take().map(|r| r.ticket);
        (done.expect("the running send is still there"), result)
    }
}

struct Connection {
    id: ConnectionId,
    principal: Principal,
    rt: Arc<Realtime>,
    /// Counts the messages this connection stores.
    metrics: Arc<Metrics>,
    out: mpsc::Sender<WsMessage>,
    control: ConnControl,
    tracks: HashMap<ConversationId, Track>,
    typing: HashMap<ConversationId, Typing>,
    sends: Sends,
    held: Held,
    errors: u32,
    errors_since: Instant,
    last_heard: Instant,
}

fn close(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

fn close_for(reason: CloseReason) -> CloseFrame {
    match reason {
        CloseReason::Shutdown => close(1001, "server shutting down"),
        CloseReason::Overflow => close(1013, "too slow: reconnect and resume"),
        CloseReason::Resync => close(1013, "reconnect and resume"),
    }
}

/// The code and message of an `error` frame: those of the REST error.
fn chat_error(err: ChatError) -> (&'static str, String) {
    ApiError::from(err).into_parts()
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
        tracks: HashMap::new(),
        typing: HashMap::new(),
        sends: Sends::default(),
        held: Held::default(),
        errors: 0,
        errors_since: now,
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

/// Writes frames until the queue closes; a write that takes longer than
/// [`WRITE_TIMEOUT`] (a client that stopped reading) ends the connection.
///
/// A close frame from `closing` overtakes whatever is being written: the
/// frames already queued, then the close, get [`CLOSE_GRACE`] together to
/// go out. A client that stopped reading and starts again within it reads
/// them and learns why it was closed (1013 when it fell behind).
async fn write_loop(
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

/// Validates a `send_message` frame into a send of `principal`.
fn send_request(
    request_id: Option<Value>,
    principal: &Principal,
    frame: protocol::SendMessageFrame,
) -> Result<(Ticket, SendMessage), ChatError> {
    let request = dto::send_message(
        frame.body.as_deref(),
        frame.attachment_ids,
        frame.reply_to,
        Some(&frame.client_msg_id),
    )?;
    let ticket = Ticket {
        request_id,
        conversation: ConversationId::from_uuid(frame.conversation_id),
        echo: request
            .client_msg_id
            .as_ref()
            .map(|key| EchoKey::new(principal.as_sender(), key)),
    };
    Ok((ticket, request))
}

fn is_too_large(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Message too big")
        || text.contains("frame too big")
}

impl Connection {
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
            tokio::select! {
                () = self.control.closed() => return Some(close_for(self.control.reason())),
                (ticket, result) = Sends::finished(&mut self.sends.running) => {
                    match self.sent(ticket, result).await {
                        Ok(None) => {}
                        Ok(Some(frame)) => return Some(frame),
                        Err(Gone) => return self.gone(),
                    }
                }
                incoming = stream.next(), if self.sends.has_room() => {
                    let message = match incoming {
                        None => return None,
                        Some(Err(err)) if is_too_large(&err) => {
                            return Some(close(1009, "frame too large"));
                        }
                        Some(Err(_)) => return None,
                        Some(Ok(message)) => message,
                    };
                    self.last_heard = Instant::now();
                    let result = match message {
                        // Checked here rather than by tungstenite, which refuses
                        // an oversized frame after its header and leaves the
                        // rest unread: closing then resets the connection and
                        // the client never sees the 1009.
                        WsMessage::Text(text) if text.len() > self.rt.settings.max_frame_bytes => {
                            return Some(close(1009, "frame too large"));
                        }
                        WsMessage::Text(text) => self.on_text(text.as_str()).await,
                        WsMessage::Binary(_) => {
                            self.refuse(None, "binary frames are not supported: send JSON text frames").await
                        }
                        WsMessage::Ping(_) | WsMessage::Pong(_) => Ok(None),
                        WsMessage::Close(_) => return None,
                    };
                    match result {
                        Ok(None) => {}
                        Ok(Some(frame)) => return Some(frame),
                        Err(Gone) => return self.gone(),
                    }
                }
                event = events.recv() => match event {
                    Some(out) => {
                        if self.forward(out).await.is_err() {
                            return self.gone();
                        }
                    }
                    None => return Some(close_for(self.control.reason())),
                },
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > self.rt.settings.idle_timeout {
                        tracing::debug!(connection = %self.id, "no sign of life: dropping");
                        return Some(close(1001, "idle timeout"));
                    }
                    if self.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return self.gone();
                    }
                    if let Err(err) = self.rt.presence.refresh(&self.principal, self.id).await {
                        tracing::warn!(error = ?err, "presence refresh failed");
                    }
                }
                // Only while an indicator is up: idle sockets are not woken.
                _ = typing.tick(), if !self.typing.is_empty() => self.expire_typing().await,
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

    async fn emit(&mut self, frame: Frame) -> Result<(), Gone> {
        self.send(WsMessage::Text(frame)).await
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
            match self.tracks.get_mut(&conversation) {
                None => {
                    self.tracks.insert(conversation, Track { lo: seq, hi: seq });
                }
                Some(track) if seq > track.hi => track.hi = seq,
                Some(track) if seq >= track.lo => return Ok(()),
                Some(_) => {}
            }
        }
        self.emit(out.frame).await
    }

    /// Answers a bad frame; repeated abuse closes the connection (1008).
    async fn refuse(
        &mut self,
        request_id: Option<&Value>,
        message: &str,
    ) -> Result<Option<CloseFrame>, Gone> {
        self.fail(request_id, "invalid_request", message).await
    }

    async fn fail(
        &mut self,
        request_id: Option<&Value>,
        code: &str,
        message: &str,
    ) -> Result<Option<CloseFrame>, Gone> {
        let now = Instant::now();
        if now.duration_since(self.errors_since) > ABUSE_WINDOW {
            self.errors = 0;
            self.errors_since = now;
        }
        self.errors += 1;
        self.emit(protocol::error(request_id, code, message))
            .await?;
        if self.errors > ABUSE_LIMIT {
            return Ok(Some(close(1008, "too many invalid frames")));
        }
        Ok(None)
    }

    async fn on_text(&mut self, text: &str) -> Result<Option<CloseFrame>, Gone> {
        let parsed = protocol::parse(text);
        let request_id = parsed.request_id;
        let rid = request_id.as_ref();
        let frame = match parsed.frame {
            Ok(frame) => frame,
            Err(err) => return self.refuse(rid, &err.0).await,
        };
        // Typing, receipts and statuses are acked only when the client asked
        // (gave a request_id): a keystroke needs no answer.
        let always_answer = matches!(
            frame,
            ClientFrame::Ping | ClientFrame::SendMessage(_) | ClientFrame::Resume(_)
        );
        let outcome: Result<Frame, ChatError> = match frame {
            ClientFrame::Ping => Ok(protocol::pong(rid)),
            ClientFrame::SendMessage(frame) => {
                if let Err(wait) = self.rt.send_limiter.check(&self.principal) {
                    let message =
                        format!("too many messages: retry in {} ms", wait.as_millis().max(1));
                    return self.fail(rid, "rate_limited", &message).await;
                }
                match send_request(request_id.clone(), &self.principal, frame) {
                    Ok(send) => {
                        // Answered when stored, by `sent`.
                        self.sends.queued.push_back(send);
                        self.start_next_send();
                        return Ok(None);
                    }
                    Err(err) => Err(err),
                }
            }
            ClientFrame::Typing(frame) => self
                .typing(
                    ConversationId::from_uuid(frame.conversation_id),
                    frame.is_typing,
                )
                .await
                .map(|()| protocol::ack(rid, None)),
            ClientFrame::Read(frame) => {
                self.receipt(rid, Receipt::Read, frame.conversation_id, frame.up_to_seq)
                    .await
            }
            ClientFrame::Delivered(frame) => {
                self.receipt(
                    rid,
                    Receipt::Delivered,
                    frame.conversation_id,
                    frame.up_to_seq,
                )
                .await
            }
            ClientFrame::SetStatus(frame) => match PresenceStatus::parse_chosen(&frame.status) {
                Ok(status) => self
                    .rt
                    .presence
                    .set_status(&self.principal, status)
                    .await
                    .map(|_| protocol::ack(rid, None)),
                Err(err) => Err(ChatError::invalid(chat_app::Field::Status, err)),
            },
            ClientFrame::Resume(frame) => self.resume(rid, frame.cursors).await,
        };
        match outcome {
            Ok(_) if rid.is_none() && !always_answer => Ok(None),
            Ok(frame) => self.emit(frame).await.map(|()| None),
            Err(err) => {
                let (code, message) = chat_error(err);
                self.fail(rid, code, &message).await
            }
        }
    }

    /// Starts the oldest queued send when none is running.
    fn start_next_send(&mut self) {
        if self.sends.running.is_some() {
            return;
        }
        let Some((ticket, request)) = self.sends.queued.pop_front() else {
            return;
        };
        let rt = self.rt.clone();
        let principal = self.principal;
        let conversation = ticket.conversation;
        let future: SendFuture = Box::pin(async move {
            rt.service
                .send_message(&principal, conversation, request)
                .await
        });
        self.sends.running = Some(Running { ticket, future });
    }

    /// Answers a finished send, starts the next one and releases the events
    /// held behind its echo.
    async fn sent(
        &mut self,
        ticket: Ticket,
        result: Result<SendOutcome, ChatError>,
    ) -> Result<Option<CloseFrame>, Gone> {
        self.start_next_send();
        let rid = ticket.request_id.as_ref();
        let conversation = ticket.conversation;
        let ok = result.is_ok();
        let answer = match result {
            Ok(sent) => {
                if sent.created {
                    self.metrics.message_sent();
                }
                let ack = protocol::ack(
                    rid,
                    Some(("message", json!(MessageDto::from(sent.message)))),
                );
                self.emit(ack).await.map(|()| None)?
            }
            Err(err) => {
                let (code, message) = chat_error(err);
                self.fail(rid, code, &message).await?
            }
        };
        for out in self.held.release(conversation) {
            self.forward(out).await?;
        }
        if ok {
            // Sending stops the sender's typing indicator (the others have
            // the message already).
            self.stop_relayed(conversation).await;
        }
        Ok(answer)
    }

    /// Stores the sends already received, and acks them while the socket
    /// can still take frames.
    async fn drain_sends(&mut self) {
        let drained = tokio::time::timeout(SEND_DRAIN, async {
            while self.sends.running.is_some() {
                let (ticket, result) = Sends::finished(&mut self.sends.running).await;
                // Whether the ack still gets out does not matter any more.
                let _ = self.sent(ticket, result).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(connection = %self.id, "sends still pending at close: dropped unanswered");
        }
    }

    async fn receipt(
        &mut self,
        rid: Option<&Value>,
        receipt: Receipt,
        conversation: uuid::Uuid,
        up_to: u64,
    ) -> Result<Frame, ChatError> {
        let up_to =
            Seq::from_u64(up_to).map_err(|e| ChatError::invalid(chat_app::Field::UpTo, e))?;
        let state = self
            .rt
            .service
            .mark(
                &self.principal,
                ConversationId::from_uuid(conversation),
                receipt,
                up_to,
            )
            .await?;
        Ok(protocol::ack(
            rid,
            Some((
                "receipt",
                json!({
                    "last_read_seq": state.last_read_seq.get(),
                    "last_delivered_seq": state.last_delivered_seq.get(),
                }),
            )),
        ))
    }

    /// Relays typing, throttled: a start at most once per throttle period,
    /// a stop only after a relayed start. Access is checked either way, so
    /// a foreign conversation is refused even when nothing is relayed.
    async fn typing(
        &mut self,
        conversation: ConversationId,
        is_typing: bool,
    ) -> Result<(), ChatError> {
        let now = Instant::now();
        let relay = if is_typing {
            self.typing
                .get(&conversation)
                .and_then(|t| t.relayed_at)
                .is_none_or(|at| now.duration_since(at) >= self.rt.settings.typing_throttle)
        } else {
            self.typing
                .remove(&conversation)
                .is_some_and(|t| t.relayed_at.is_some())
        };
        if relay {
            self.rt
                .service
                .typing(&self.principal, conversation, is_typing)
                .await?;
        } else {
            self.rt
                .service
                .check_participant(&self.principal, conversation)
                .await?;
        }
        if is_typing {
            let entry = self.typing.entry(conversation).or_insert(Typing {
                relayed_at: None,
                refreshed_at: now,
            });
            entry.refreshed_at = now;
            if relay {
                entry.relayed_at = Some(now);
            }
        }
        Ok(())
    }

    /// Stops indicators that were not refreshed in time.
    async fn expire_typing(&mut self) {
        let now = Instant::now();
        let expiry = self.rt.settings.typing_expiry;
        let expired: Vec<ConversationId> = self
            .typing
            .iter()
            .filter(|(_, t)| now.duration_since(t.refreshed_at) >= expiry)
            .map(|(id, _)| *id)
            .collect();
        for conversation in expired {
            self.stop_relayed(conversation).await;
        }
    }

    async fn stop_typing(&mut self) {
        let conversations: Vec<ConversationId> = self.typing.keys().copied().collect();
        for conversation in conversations {
            self.stop_relayed(conversation).await;
        }
    }

    /// Forgets the indicator of `conversation`, relaying its stop when its
    /// start was relayed.
    async fn stop_relayed(&mut self, conversation: ConversationId) {
        if self
            .typing
            .remove(&conversation)
            .is_some_and(|t| t.relayed_at.is_some())
        {
            let _ = self
                .rt
                .service
                .typing(&self.principal, conversation, false)
                .await;
        }
    }

    /// Replays, in `seq` order, every message after each cursor, skipping
    /// what this connection already sent live; later live events for those
    /// conversations continue without gap or duplicate.
    ///
    /// At most `resume_max_messages` are replayed per conversation: the
    /// ack says, per conversation, how many were, whether that was all
    /// (`recovered`) and up to which seq, so a client pages the rest over
    /// REST rather than guess.
    async fn resume(
        &mut self,
        rid: Option<&Value>,
        cursors: HashMap<uuid::Uuid, u64>,
    ) -> Result<Frame, ChatError> {
        let max = self.rt.settings.resume_max_messages;
        let limit = PageLimit::parse(PageLimit::MAX)?;
        let mut replayed_total = 0usize;
        let mut failures = Vec::new();
        let mut resumed = serde_json::Map::new();
        let mut cursors: Vec<(uuid::Uuid, u64)> = cursors.into_iter().collect();
        cursors.sort_unstable();
        for (conversation, cursor) in cursors {
            let conversation = ConversationId::from_uuid(conversation);
            let Ok(mut after) = Seq::from_u64(cursor) else {
                failures.push(
                    json!({"conversation_id": conversation.to_string(), "code": "invalid_request"}),
                );
                continue;
            };
            let known = self.tracks.get(&conversation).copied();
            let mut replayed = 0usize;
            let mut last_sent = cursor;
            let outcome: Result<bool, ChatError> = async {
                loop {
                    let page = self
                        .rt
                        .service
                        .list_messages(
                            &self.principal,
                            conversation,
                            MessageCursor::After(after),
                            limit,
                        )
                        .await?;
                    for message in &page.messages {
                        let seq = message.seq.get();
                        if known.is_some_and(|t| (t.lo..=t.hi).contains(&seq)) {
                            after = message.seq;
                            continue;
                        }
                        if replayed >= max {
                            return Ok(false);
                        }
                        after = message.seq;
                        let frame = protocol::event(
                            "new_message",
                            json!({"message": MessageDto::from(message.clone())}),
                        );
                        self.emit(frame).await.map_err(|Gone| {
                            ChatError::Unexpected(anyhow::anyhow!("connection gone"))
                        })?;
                        replayed += 1;
                        last_sent = last_sent.max(seq);
                    }
                    if !page.has_more {
                        return Ok(true);
                    }
                }
            }
            .await;
            // Whatever was sent, live events must continue after it.
            let hi = known.map_or(last_sent, |t| t.hi.max(last_sent));
            let lo = known.map_or(cursor + 1, |t| t.lo.min(cursor + 1));
            if hi >= cursor {
                self.tracks.insert(conversation, Track { lo, hi });
            }
            replayed_total += replayed;
            match outcome {
                Ok(recovered) => {
                    resumed.insert(
                        conversation.to_string(),
                        json!({"replayed": replayed, "recovered": recovered, "up_to_seq": after.get()}),
                    );
                }
                Err(err) => {
                    let (code, message) = chat_error(err);
                    failures.push(json!({"conversation_id": conversation.to_string(), "code": code, "message": message}));
                }
            }
        }
        let recovered = failures.is_empty() && resumed.values().all(|c| c["recovered"] == true);
        let mut frame = if failures.is_empty() {
            json!({"type": "ack"})
        } else {
            let code = failures[0]["code"].clone();
            json!({"type": "error", "code": code, "message": "some conversations could not be resumed", "failures": failures})
        };
        frame["replayed"] = json!(replayed_total);
        frame["recovered"] = json!(recovered);
        frame["conversations"] = Value::Object(resumed);
        frame["request_id"] = rid.cloned().unwrap_or(Value::Null);
        Ok(Utf8Bytes::from(frame.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{ClientMsgId, CustomerId, MessageBody, Sender};

    use super::*;

    fn conversation() -> ConversationId {
        ConversationId::from_uuid(uuid::Uuid::now_v7())
    }

    fn key(n: u32) -> EchoKey {
        let sender = Sender::Customer(CustomerId::from_uuid(uuid::Uuid::from_u128(1)));
        EchoKey::new(sender, &ClientMsgId::parse(&format!("k-{n}")).expect("key"))
    }

    fn send(conversation: ConversationId, n: u32) -> (Ticket, SendMessage) {
        let ticket = Ticket {
            request_id: None,
            conversation,
            echo: Some(key(n)),
        };
        let request = SendMessage {
            body: Some(MessageBody::parse("hi").expect("body")),
            attachment_ids: Vec::new(),
            reply_to: None,
            client_msg_id: None,
        };
        (ticket, request)
    }

    fn message(conversation: ConversationId, seq: u64, echo: Option<EchoKey>) -> Outbound {
        Outbound {
            conversation: Some(conversation),
            seq: Some(seq),
            echo,
            frame: Utf8Bytes::from(format!("{seq}")),
        }
    }

    fn seqs(events: &[Outbound]) -> Vec<u64> {
        events.iter().filter_map(|o| o.seq).collect()
    }

    #[test]
    fn the_echo_of_a_pending_send_and_what_follows_it_wait_for_the_ack() {
        let (c, other) = (conversation(), conversation());
        let mut sends = Sends::default();
        sends.queued.push_back(send(c, 1));
        let mut held = Held::default();

        // Before the echo, and in other conversations, events pass.
        assert!(held.offer(message(c, 1, Some(key(9))), &sends).is_some());
        assert!(held.offer(message(c, 2, None), &sends).is_some());
        // The echo is held, and everything after it in its conversation.
        assert!(held.offer(message(c, 3, Some(key(1))), &sends).is_none());
        assert!(held.offer(message(c, 4, Some(key(9))), &sends).is_none());
        let receipt = Outbound {
            conversation: Some(c),
            seq: None,
            echo: None,
            frame: Utf8Bytes::from_static("read"),
        };
        assert!(held.offer(receipt, &sends).is_none());
        assert!(held.offer(message(other, 1, None), &sends).is_some());
        let presence = Outbound {
            conversation: None,
            seq: None,
            echo: None,
            frame: Utf8Bytes::from_static("presence"),
        };
        assert!(held.offer(presence, &sends).is_some());

        // Acked: released in order, and nothing is held any more.
        sends.queued.clear();
        let released = held.release(c);
        assert_eq!(seqs(&released), [3, 4]);
        assert_eq!(released.len(), 3);
        for out in released {
            assert!(held.offer(out, &sends).is_some());
        }
        assert!(held.release(c).is_empty());
    }

    #[test]
    fn released_events_stop_again_at_the_echo_of_the_next_pending_send() {
        let c = conversation();
        let mut sends = Sends::default();
        sends.queued.push_back(send(c, 1));
        sends.queued.push_back(send(c, 2));
        let mut held = Held::default();
        for (seq, echo) in [(1, Some(key(1))), (2, None), (3, Some(key(2))), (4, None)] {
            assert!(held.offer(message(c, seq, echo), &sends).is_none());
        }

        // The first send is acked: its echo and the next message go, the
        // echo of the second waits again, with what follows it.
        sends.queued.pop_front();
        let mut delivered = Vec::new();
        for out in held.release(c) {
            delivered.extend(held.offer(out, &sends));
        }
        assert_eq!(seqs(&delivered), [1, 2]);
        sends.queued.pop_front();
        let rest: Vec<Outbound> = held
            .release(c)
            .into_iter()
            .filter_map(|out| held.offer(out, &sends))
            .collect();
        assert_eq!(seqs(&rest), [3, 4]);
    }

    #[test]
    fn echo_keys_tell_senders_and_client_ids_apart() {
        let key_of = |sender, id: &str| EchoKey::new(sender, &ClientMsgId::parse(id).expect("id"));
        let customer = Sender::Customer(CustomerId::from_uuid(uuid::Uuid::from_u128(1)));
        let other = Sender::Customer(CustomerId::from_uuid(uuid::Uuid::from_u128(2)));
        assert_eq!(key_of(customer, "a"), key_of(customer, "a"));
        assert_ne!(key_of(customer, "a"), key_of(customer, "b"));
        assert_ne!(key_of(customer, "a"), key_of(other, "a"));
    }
}
