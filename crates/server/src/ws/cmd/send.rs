//! `send_message`: checked against the sender's rate limit, validated, and
//! queued on the connection's send pipeline, which acks it once stored.

use chat_app::{ChatError, SendMessage};
use chat_domain::{ConversationId, Principal};

use super::{Handled, Refusal, Reply};
use crate::dto;
use crate::ws::connection::{Connection, Ticket};
use crate::ws::outbound::EchoKey;
use crate::ws::protocol::{RequestId, SendMessageFrame};

impl SendMessageFrame {
    /// Queues the send; answered when stored.
    pub(super) fn apply(self, conn: &mut Connection, request_id: Option<&RequestId>) -> Handled {
        if let Err(wait) = conn.rt.send_limiter.check(&conn.principal) {
            return Err(Refusal::client(
                "rate_limited",
                format!("too many messages: retry in {} ms", wait.as_millis().max(1)),
            ));
        }
        if conn.rt.store_health.is_down() {
            return Err(Refusal::unavailable(conn.rt.store_health.fault()));
        }
        if conn.send_queue_full() {
            return Err(Refusal::busy(
                "too many sends are waiting to be stored: send it again after an ack".to_owned(),
            ));
        }
        let (ticket, request) = self.into_send(request_id.cloned(), &conn.principal)?;
        conn.queue_send(ticket, request);
        Ok(Reply::Later)
    }

    /// Validates the frame into a send of `principal`.
    fn into_send(
        self,
        request_id: Option<RequestId>,
        principal: &Principal,
    ) -> Result<(Ticket, SendMessage), ChatError> {
        let request = dto::send_message(
            self.body.as_deref(),
            self.attachment_ids,
            self.reply_to,
            Some(&self.client_msg_id),
        )?;
        let ticket = Ticket {
            request_id,
            conversation: ConversationId::from_uuid(self.conversation_id),
            echo: request
                .client_msg_id
                .as_ref()
                .map(|key| EchoKey::new(principal.as_sender(), key)),
        };
        Ok((ticket, request))
    }
}
