//! [`ReadStateRepository`] for [`SqliteStore`]: read and delivered markers
//! that only move forward.

use anyhow::Context;
use async_trait::async_trait;
use chat_app::{ReadStateRepository, Receipt, ReceiptUpdate, RepoError};
use chat_domain::{ConversationId, ReadState, Sender, Seq, TenantId};
use chrono::{DateTime, Utc};

use crate::codec;
use crate::SqliteStore;

#[async_trait]
impl ReadStateRepository for SqliteStore {
    #[tracing::instrument(
        skip_all,
        fields(tenant_id = %tenant, conversation_id = %id, receipt = ?receipt, up_to = %up_to),
        err(level = "debug")
    )]
    async fn advance(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
        receipt: Receipt,
        up_to: Seq,
        at: DateTime<Utc>,
    ) -> Result<Option<ReceiptUpdate>, RepoError> {
        let mut tx = self.begin_write().await?;
        let last_seq: Option<i64> = sqlx::query_scalar(
            "select last_seq from conversations where tenant_id = ?1 and id = ?2",
        )
        .bind(*tenant.as_uuid())
        .bind(*id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .context("selecting conversation of the read state")?;
        let Some(last_seq) = last_seq else {
            return Ok(None);
        };
        let target = up_to.min(codec::seq(last_seq)?);
        let current: Option<(i64, i64, i64)> = sqlx::query_as(
            "select last_read_seq, last_delivered_seq, updated_at from read_states \
             where conversation_id = ?1 and reader_type = ?2 and reader_id = ?3 \
             and tenant_id = ?4",
        )
        .bind(*id.as_uuid())
        .bind(reader.kind())
        .bind(codec::reader_id(reader))
        .bind(*tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .context("selecting read state")?;
        let (read, delivered, updated_at) = match current {
            Some((read, delivered, updated_at)) => (
                codec::seq(read)?,
                codec::seq(delivered)?,
                codec::time(updated_at)?,
            ),
            None => (Seq::ZERO, Seq::ZERO, codec::truncate(at)),
        };
        let new_read = match receipt {
            Receipt::Read => read.max(target),
            Receipt::Delivered => read,
        };
        let new_delivered = delivered.max(target);
        let moved = match receipt {
            Receipt::Read => new_read > read,
            Receipt::Delivered => new_delivered > delivered,
        };
        let changed = new_read > read || new_delivered > delivered;
        let updated_at = if changed {
            let at = codec::truncate(at);
            // The transaction holds the write lock since the reads above, so
            // the computed markers cannot have moved in between.
            sqlx::query(
                "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                     last_read_seq, last_delivered_seq, updated_at) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 on conflict (conversation_id, reader_type, reader_id) do update set \
                     last_read_seq = excluded.last_read_seq, \
                     last_delivered_seq = excluded.last_delivered_seq, \
                     updated_at = excluded.updated_at",
            )
            .bind(*tenant.as_uuid())
            .bind(*id.as_uuid())
            .bind(reader.kind())
            .bind(codec::reader_id(reader))
            .bind(new_read.as_i64())
            .bind(new_delivered.as_i64())
            .bind(codec::micros(at))
            .execute(&mut *tx)
            .await
            .context("moving read state")?;
            tx.commit().await.context("committing read state")?;
            at
        } else {
            updated_at
        };
        Ok(Some(ReceiptUpdate {
            state: ReadState {
                conversation_id: id,
                reader,
                last_read_seq: new_read,
                last_delivered_seq: new_delivered,
                updated_at,
            },
            moved,
        }))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn list_receipts(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<ReadState>, RepoError> {
        let found: Vec<(String, uuid::Uuid, i64, i64, i64)> = sqlx::query_as(
            "select reader_type, reader_id, last_read_seq, last_delivered_seq, updated_at \
             from read_states where conversation_id = ?1 and tenant_id = ?2 \
             order by reader_type, reader_id",
        )
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_all(&self.read)
        .await
        .context("listing read markers")?;
        found
            .into_iter()
            .map(|(kind, reader_id, read, delivered, updated_at)| {
                let reader = Sender::from_parts(&kind, Some(reader_id))
                    .with_context(|| format!("unknown reader type {kind:?} in read_states"))?;
                Ok(ReadState {
                    conversation_id: id,
                    reader,
                    last_read_seq: codec::seq(read)?,
                    last_delivered_seq: codec::seq(delivered)?,
                    updated_at: codec::time(updated_at)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(RepoError::from)
    }
}
