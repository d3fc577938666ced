//! Read and delivered markers: the [`ReadStateRepository`] port.

use async_trait::async_trait;
use chat_domain::{ConversationId, ReadState, Sender, Seq, TenantId};
use chrono::{DateTime, Utc};

use super::RepoError;

/// Which marker a receipt moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Receipt {
    /// Messages reached one of the reader's devices.
    Delivered,
    /// The reader has read them (implies delivered).
    Read,
}

/// The result of moving a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptUpdate {
    /// The markers after the update.
    pub state: ReadState,
    /// Whether the requested marker actually moved forward.
    pub moved: bool,
}

/// Storage of read and delivered markers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReadStateRepository: Send + Sync {
    /// Moves `reader`'s `receipt` marker in conversation `id` forward to
    /// `up_to`, capped at the conversation's `last_seq`; never backwards. A
    /// read also moves the delivered marker. `None` when the conversation
    /// does not exist in `tenant`.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn advance(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
        receipt: Receipt,
        up_to: Seq,
        at: DateTime<Utc>,
    ) -> Result<Option<ReceiptUpdate>, RepoError>;

    /// Every participant's markers in conversation `id` of `tenant` (empty
    /// for an unknown conversation), ordered by reader kind then id.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn list_receipts(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<ReadState>, RepoError>;
}
