//! The send pipeline of one connection: sends are stored one at a time, in
//! the order they came (each with its [`Ticket`]), while the connection
//! goes on forwarding events, so a client's own sends never hold up what
//! it receives. Only the echo of a pending send, and what follows it in
//! that conversation, waits ([`Held`]), so that the sender gets its `ack`
//! first.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::CloseFrame;
use chat_app::{ChatError, SendMessage, SendOutcome};
use chat_domain::ConversationId;

use super::{Connection, Gone};
use crate::ws::cmd::Refusal;
use crate::ws::outbound::{EchoKey, Outbound};
use crate::ws::protocol::{RequestId, ServerFrame};

/// Sends received and not yet stored, per connection. A send beyond it is
/// refused (`rate_limited`, the client sends it again after an ack) rather
/// than left in the socket: the connection keeps reading, so it answers
/// pings and sees a close however long the store takes.
const SEND_QUEUE: usize = 64;
/// How long a closing connection waits for the sends it already received.
const SEND_DRAIN: Duration = Duration::from_secs(5);

/// A send received from the client: what answering it takes.
#[derive(Debug)]
pub(in crate::ws) struct Ticket {
    /// The `request_id` to echo in the `ack` or `error`.
    pub(in crate::ws) request_id: Option<RequestId>,
    /// Where the message goes.
    pub(in crate::ws) conversation: ConversationId,
    /// The key of its echo, when it has a `client_msg_id`.
    pub(in crate::ws) echo: Option<EchoKey>,
}

type SendFuture = Pin<Box<dyn Future<Output = Result<SendOutcome, ChatError>> + Send>>;

/// The send being stored.
struct Running {
    ticket: Ticket,
    future: SendFuture,
}

/// The connection's sends: one running, the rest queued in arrival order.
#[derive(Default)]
pub(super) struct Sends {
    running: Option<Running>,
    queued: VecDeque<(Ticket, SendMessage)>,
}

impl Sends {
    fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.running
            .iter()
            .map(|r| &r.ticket)
            .chain(self.queued.iter().map(|(ticket, _)| ticket))
    }

    /// Whether another send would exceed [`SEND_QUEUE`].
    fn is_full(&self) -> bool {
        self.queued.len() >= SEND_QUEUE
    }

    /// Whether `echo` is the key of a send of this connection not yet acked.
    fn pending(&self, conversation: ConversationId, echo: EchoKey) -> bool {
        self.tickets()
            .any(|t| t.conversation == conversation && t.echo == Some(echo))
    }

    /// Completes when the running send does (never when none runs); cancel
    /// safe: the send stays where it is until it has completed.
    pub(super) async fn finished(&mut self) -> (Ticket, Result<SendOutcome, ChatError>) {
        let Some(current) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let result = current.future.as_mut().await;
        let done = self.running.take().map(|r| r.ticket);
        (done.expect("the running send is still there"), result)
    }
}

/// Events held back, per conversation, behind the echo of a send of this
/// connection that is not acked yet: the echo and whatever follows it in
/// its conversation, in order.
#[derive(Default)]
pub(super) struct Held(HashMap<ConversationId, Vec<Outbound>>);

impl Held {
    /// Returns `out` when it may be delivered now, or keeps it.
    pub(super) fn offer(&mut self, out: Outbound, sends: &Sends) -> Option<Outbound> {
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

impl Connection {
    /// Whether the sends waiting to be stored fill their queue: a new one
    /// is refused until one is answered.
    pub(in crate::ws) fn send_queue_full(&self) -> bool {
        self.sends.is_full()
    }

    /// Queues a send; it is answered once stored ([`Connection::sent`]).
    pub(in crate::ws) fn queue_send(&mut self, ticket: Ticket, request: SendMessage) {
        self.sends.queued.push_back((ticket, request));
        self.start_next_send();
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
    pub(super) async fn sent(
        &mut self,
        ticket: Ticket,
        result: Result<SendOutcome, ChatError>,
    ) -> Result<Option<CloseFrame>, Gone> {
        self.start_next_send();
        let conversation = ticket.conversation;
        let ok = result.is_ok();
        let answer = match result {
            Ok(sent) => {
                if sent.created {
                    self.metrics.message_sent();
                }
                let ack = ServerFrame::Sent {
                    request_id: ticket.request_id,
                    message: sent.message.into(),
                };
                self.emit(&ack).await.map(|()| None)?
            }
            Err(err) => {
                self.fail(ticket.request_id.as_ref(), Refusal::from(err))
                    .await?
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
    pub(super) async fn drain_sends(&mut self) {
        let drained = tokio::time::timeout(SEND_DRAIN, async {
            while self.sends.running.is_some() {
                let (ticket, result) = self.sends.finished().await;
                // Whether the ack still gets out does not matter any more.
                let _ = self.sent(ticket, result).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(connection = %self.id, "sends still pending at close: dropped unanswered");
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::Utf8Bytes;
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
        let receipt = Outbound::of_conversation(c, Utf8Bytes::from_static("read"));
        assert!(held.offer(receipt, &sends).is_none());
        assert!(held.offer(message(other, 1, None), &sends).is_some());
        let presence = Outbound::passing(Utf8Bytes::from_static("presence"));
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
}
