//! `typing`: relayed to the conversation's other readers, throttled by the
//! connection.

use chat_domain::ConversationId;

use super::{Handled, Reply};
use crate::ws::connection::Connection;
use crate::ws::protocol::{RequestId, ServerFrame, TypingFrame};

impl TypingFrame {
    /// Relays the indicator; acked only when asked.
    pub(super) async fn apply(
        self,
        conn: &mut Connection,
        request_id: Option<&RequestId>,
    ) -> Handled {
        conn.typing(
            ConversationId::from_uuid(self.conversation_id),
            self.is_typing,
        )
        .await?;
        Ok(Reply::IfAsked(ServerFrame::Ack {
            request_id: request_id.cloned(),
        }))
    }
}
