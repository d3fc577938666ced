//! [`ReadStateRepository`] for [`MemoryStore`]: read and delivered markers
//! that only move forward.

use async_trait::async_trait;
use chat_app::{ReadStateRepository, Receipt, ReceiptUpdate, RepoError};
use chat_domain::{ConversationId, ReadState, Sender, Seq, TenantId};
use chrono::{DateTime, Utc};

use crate::{truncate, Inner, MemoryStore};

impl Inner {
    /// Moves `reader`'s markers in conversation `id` to at least `seq`:
    /// what a sender has written (or a member's own notice) is read and
    /// delivered for them.
    pub(crate) fn mark_read(
        &mut self,
        id: ConversationId,
        reader: Sender,
        seq: Seq,
        at: DateTime<Utc>,
    ) {
        let state = self.read_states.entry((id, reader)).or_insert(ReadState {
            conversation_id: id,
            reader,
            last_read_seq: Seq::ZERO,
            last_delivered_seq: Seq::ZERO,
            updated_at: at,
        });
        state.last_read_seq = state.last_read_seq.max(seq);
        state.last_delivered_seq = state.last_delivered_seq.max(seq);
        state.updated_at = at;
    }

    fn advance(
        &mut self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
        receipt: Receipt,
        up_to: Seq,
        at: DateTime<Utc>,
    ) -> Option<ReceiptUpdate> {
        let last_seq = self.conversation(tenant, id)?.last_seq;
        let target = up_to.min(last_seq);
        let at = truncate(at);
        let current = self.read_states.get(&(id, reader)).copied();
        let (read, delivered) = current.map_or((Seq::ZERO, Seq::ZERO), |s| {
            (s.last_read_seq, s.last_delivered_seq)
        });
        let new_read = match receipt {
            Receipt::Read => read.max(target),
            Receipt::Delivered => read,
        };
        let new_delivered = delivered.max(target);
        let moved = match receipt {
            Receipt::Read => new_read > read,
            Receipt::Delivered => new_delivered > delivered,
        };
        let state = if new_read > read || new_delivered > delivered {
            let state = ReadState {
                conversation_id: id,
                reader,
                last_read_seq: new_read,
                last_delivered_seq: new_delivered,
                updated_at: at,
            };
            self.read_states.insert((id, reader), state);
            state
        } else {
            // Nothing moved, nothing is stored: a reader without markers
            // still has none.
            current.unwrap_or(ReadState {
                conversation_id: id,
                reader,
                last_read_seq: read,
                last_delivered_seq: delivered,
                updated_at: at,
            })
        };
        Some(ReceiptUpdate { state, moved })
    }

    fn list_receipts(&self, tenant: TenantId, id: ConversationId) -> Vec<ReadState> {
        if self.conversation(tenant, id).is_none() {
            return Vec::new();
        }
        let mut found: Vec<ReadState> = self
            .read_states
            .values()
            .filter(|state| state.conversation_id == id)
            .copied()
            .collect();
        found.sort_by_key(|state| (state.reader.kind(), state.reader.id()));
        found
    }
}

#[async_trait]
impl ReadStateRepository for MemoryStore {
    async fn advance(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
        receipt: Receipt,
        up_to: Seq,
        at: DateTime<Utc>,
    ) -> Result<Option<ReceiptUpdate>, RepoError> {
        Ok(self.lock().advance(tenant, id, reader, receipt, up_to, at))
    }

    async fn list_receipts(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<ReadState>, RepoError> {
        Ok(self.lock().list_receipts(tenant, id))
    }
}
