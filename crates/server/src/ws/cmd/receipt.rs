//! `read` and `delivered`: move the caller's marker; acked, when asked,
//! with both markers.

use chat_app::{ChatError, Receipt};
use chat_domain::{ConversationId, Seq};

use super::{Handled, Reply};
use crate::ws::connection::Connection;
use crate::ws::protocol::{ReceiptFrame, ReceiptMarkers, RequestId, ServerFrame};

impl ReceiptFrame {
    /// Moves the `receipt` marker.
    pub(super) async fn apply(
        self,
        conn: &mut Connection,
        receipt: Receipt,
        request_id: Option<&RequestId>,
    ) -> Handled {
        let up_to = Seq::from_u64(self.up_to_seq)
            .map_err(|e| ChatError::invalid(chat_app::Field::UpTo, e))?;
        let state = conn
            .rt
            .service
            .mark(
                &conn.principal,
                ConversationId::from_uuid(self.conversation_id),
                receipt,
                up_to,
            )
            .await?;
        Ok(Reply::IfAsked(ServerFrame::Marked {
            request_id: request_id.cloned(),
            receipt: ReceiptMarkers {
                last_read_seq: state.last_read_seq.get(),
                last_delivered_seq: state.last_delivered_seq.get(),
            },
        }))
    }
}
