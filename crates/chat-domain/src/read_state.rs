//! Per-participant read and delivered markers of a conversation.

use chrono::{DateTime, Utc};

use crate::ids::ConversationId;
use crate::message::Seq;
use crate::principal::Sender;

/// How far one participant has received and read a conversation. Both
/// markers only ever move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Whose markers these are.
    pub reader: Sender,
    /// Highest `seq` read.
    pub last_read_seq: Seq,
    /// Highest `seq` delivered to one of the reader's devices.
    pub last_delivered_seq: Seq,
    /// When a marker last moved.
    pub updated_at: DateTime<Utc>,
}
