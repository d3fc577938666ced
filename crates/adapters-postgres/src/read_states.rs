//! [`ReadStateRepository`] for [`PostgresStore`]: read and delivered markers
//! that only move forward and never past the newest message.

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::{ReadStateRepository, Receipt, ReceiptUpdate, RepoError};
use chat_domain::{ConversationId, ReadState, Sender, Seq, TenantId};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row as _;

use crate::rows;
use crate::PostgresStore;

/// The advance statement for one receipt: `$read` is the value offered to
/// `last_read_seq`, `$marker` the column whose increase counts as a move.
///
/// One round trip: it checks the conversation is in the tenant, caps the
/// target at `last_seq`, and upserts with `greatest()`. The conditional `do
/// update ... where` returns a row only when the requested marker grew, which
/// is exact under concurrency (it is evaluated on the latest row version).
macro_rules! advance_sql {
    ($read:literal, $marker:literal) => {
        concat!(
            "with conv as ( \
                 select id, tenant_id, least($5, last_seq) as target from conversations \
                 where id = $1 and tenant_id = $2 \
             ), moved as ( \
                 insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                     last_read_seq, last_delivered_seq, updated_at) \
                 select tenant_id, id, $3, $4, ",
            $read,
            ", target, $6 from conv where target > 0 \
                 on conflict (conversation_id, reader_type, reader_id) do update set \
                     last_read_seq = greatest(read_states.last_read_seq, excluded.last_read_seq), \
                     last_delivered_seq = \
                         greatest(read_states.last_delivered_seq, excluded.last_delivered_seq), \
                     updated_at = excluded.updated_at \
                 where read_states.",
            $marker,
            " < excluded.",
            $marker,
            " returning last_read_seq, last_delivered_seq, updated_at \
             ) \
             select exists (select 1 from conv) as found, \
                 moved.last_read_seq, moved.last_delivered_seq, moved.updated_at \
             from (select 1) as one left join moved on true"
        )
    };
}

/// A read moves both markers; it has moved when the read marker grew.
const ADVANCE_READ: &str = advance_sql!("target", "last_read_seq");
/// A delivery moves the delivered marker only.
const ADVANCE_DELIVERED: &str = advance_sql!("0", "last_delivered_seq");

/// The markers of a row holding `last_read_seq`, `last_delivered_seq` and
/// `updated_at`.
fn markers(row: &PgRow) -> anyhow::Result<(Seq, Seq, DateTime<Utc>)> {
    let read: i64 = row
        .try_get("last_read_seq")
        .context("reading last_read_seq")?;
    let delivered: i64 = row
        .try_get("last_delivered_seq")
        .context("reading last_delivered_seq")?;
    let updated_at = row.try_get("updated_at").context("reading updated_at")?;
    Ok((
        rows::seq(read, "last_read_seq")?,
        rows::seq(delivered, "last_delivered_seq")?,
        updated_at,
    ))
}

#[async_trait]
impl ReadStateRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(conversation_id = %id, ?receipt, up_to = %up_to, moved), err(level = "debug"))]
    async fn advance(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
        receipt: Receipt,
        up_to: Seq,
        at: DateTime<Utc>,
    ) -> Result<Option<ReceiptUpdate>, RepoError> {
        let sql = match receipt {
            Receipt::Read => ADVANCE_READ,
            Receipt::Delivered => ADVANCE_DELIVERED,
        };
        let row = sqlx::query(sql)
            .bind(*id.as_uuid())
            .bind(*tenant.as_uuid())
            .bind(reader.kind())
            .bind(rows::reader_id(reader))
            .bind(up_to.as_i64())
            .bind(at)
            .fetch_one(&self.pool)
            .await
            .context("advancing a read marker")?;
        let found: bool = row.try_get("found").context("reading found")?;
        if !found {
            return Ok(None);
        }
        let moved_to: Option<i64> = row
            .try_get("last_read_seq")
            .context("reading last_read_seq")?;
        let (moved, (last_read_seq, last_delivered_seq, updated_at)) = if moved_to.is_some() {
            (true, markers(&row)?)
        } else {
            let current = sqlx::query(
                "select last_read_seq, last_delivered_seq, updated_at from read_states \
                 where conversation_id = $1 and tenant_id = $2 and reader_type = $3 \
                 and reader_id = $4",
            )
            .bind(*id.as_uuid())
            .bind(*tenant.as_uuid())
            .bind(reader.kind())
            .bind(rows::reader_id(reader))
            .fetch_optional(&self.pool)
            .await
            .context("loading a read marker")?;
            let markers = match current {
                Some(row) => markers(&row)?,
                // Nothing read or delivered yet: the implicit zero markers.
                None => (Seq::ZERO, Seq::ZERO, at),
            };
            (false, markers)
        };
        tracing::Span::current().record("moved", moved);
        Ok(Some(ReceiptUpdate {
            state: ReadState {
                conversation_id: id,
                reader,
                last_read_seq,
                last_delivered_seq,
                updated_at,
            },
            moved,
        }))
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    async fn list_receipts(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<ReadState>, RepoError> {
        let found = sqlx::query(
            "select reader_type, reader_id, last_read_seq, last_delivered_seq, updated_at \
             from read_states where conversation_id = $1 and tenant_id = $2 \
             order by reader_type, reader_id",
        )
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_all(&self.pool)
        .await
        .context("listing read markers")?;
        found
            .iter()
            .map(|row| {
                let kind: String = row.try_get("reader_type").context("reading reader_type")?;
                let reader_id: uuid::Uuid =
                    row.try_get("reader_id").context("reading reader_id")?;
                let reader = Sender::from_parts(&kind, Some(reader_id))
                    .with_context(|| format!("unknown reader type {kind:?} in read_states"))?;
                let (last_read_seq, last_delivered_seq, updated_at) = markers(row)?;
                Ok(ReadState {
                    conversation_id: id,
                    reader,
                    last_read_seq,
                    last_delivered_seq,
                    updated_at,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(RepoError::from)
    }
}
