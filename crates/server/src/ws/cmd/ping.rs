//! `ping`: answered with `pong`.

use super::{Handled, Reply};
use crate::ws::protocol::{PingFrame, RequestId, ServerFrame};

impl PingFrame {
    /// Answers with `pong`.
    pub(super) fn apply(self, request_id: Option<&RequestId>) -> Handled {
        Ok(Reply::Now(ServerFrame::Pong {
            request_id: request_id.cloned(),
        }))
    }
}
