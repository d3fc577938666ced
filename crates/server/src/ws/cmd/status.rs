//! `set_status`: the caller's chosen presence status.

use chat_app::ChatError;
use chat_domain::PresenceStatus;

use super::{Handled, Reply};
use crate::ws::connection::Connection;
use crate::ws::protocol::{RequestId, ServerFrame, SetStatusFrame};

impl SetStatusFrame {
    /// Sets the status; acked only when asked.
    pub(super) async fn apply(
        self,
        conn: &mut Connection,
        request_id: Option<&RequestId>,
    ) -> Handled {
        let status = PresenceStatus::parse_chosen(&self.status)
            .map_err(|err| ChatError::invalid(chat_app::Field::Status, err))?;
        conn.rt.presence.set_status(&conn.principal, status).await?;
        Ok(Reply::IfAsked(ServerFrame::Ack {
            request_id: request_id.cloned(),
        }))
    }
}
