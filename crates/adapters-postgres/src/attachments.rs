//! [`AttachmentRepository`] for [`PostgresStore`], and the attachment side
//! of messages: linking uploads inside the append transaction and loading
//! the attachments of the messages a query returns.

use std::collections::HashMap;

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::{AppendError, AttachmentRepository, ConversationSummary, RepoError};
use chat_domain::{
    AttachedFile, Attachment, AttachmentId, AttachmentName, ConversationId, MediaType, Message,
    MessageId, NewAttachment, NewMessage, Sender, Sha256Digest, StorageKey, TenantId,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row as _};
use uuid::Uuid;

use crate::PostgresStore;

/// The attachment columns, in the order [`attachment`] reads them.
const ATTACHMENT_COLUMNS: &str = "id, tenant_id, conversation_id, uploader_type, uploader_id, \
     name, content_type, size, sha256, storage_key, created_at, message_id";

/// An attachment from the [`ATTACHMENT_COLUMNS`] of a row. Corrupt rows are
/// errors naming the attachment, never panics.
fn attachment(row: &PgRow) -> anyhow::Result<Attachment> {
    let id: Uuid = row.try_get("id").context("reading attachment id")?;
    decode(row).with_context(|| format!("attachment {id} is corrupt"))
}

fn decode(row: &PgRow) -> anyhow::Result<Attachment> {
    let uploader_type: String = row.try_get("uploader_type")?;
    let uploader_id: Option<Uuid> = row.try_get("uploader_id")?;
    let uploader = Sender::from_parts(&uploader_type, uploader_id)
        .with_context(|| format!("invalid uploader `{uploader_type}`"))?;
    let content_type: String = row.try_get("content_type")?;
    let size: i64 = row.try_get("size")?;
    let sha256: String = row.try_get("sha256")?;
    let storage_key: String = row.try_get("storage_key")?;
    let name: String = row.try_get("name")?;
    let message_id: Option<Uuid> = row.try_get("message_id")?;
    Ok(Attachment {
        id: AttachmentId::from_uuid(row.try_get("id")?),
        tenant: TenantId::from_uuid(row.try_get("tenant_id")?),
        conversation_id: ConversationId::from_uuid(row.try_get("conversation_id")?),
        uploader,
        name: AttachmentName::parse(&name)?,
        media_type: MediaType::from_mime(&content_type)
            .with_context(|| format!("unknown content type `{content_type}`"))?,
        size: u64::try_from(size).context("negative size")?,
        sha256: Sha256Digest::parse_hex(&sha256)?,
        storage_key: StorageKey::parse(&storage_key)?,
        created_at: row.try_get("created_at")?,
        message_id: message_id.map(MessageId::from_uuid),
    })
}

/// Links the attachments of `message` (stored as `message.id`) inside the
/// append transaction, in order, and returns them. The conversation row is
/// locked by the caller, so two sends cannot link one upload twice.
pub(crate) async fn link(
    tx: &mut PgConnection,
    message: &NewMessage,
) -> Result<Vec<AttachedFile>, AppendError> {
    let mut linked = Vec::with_capacity(message.attachments.len());
    for (position, id) in message.attachments.iter().enumerate() {
        let position = i16::try_from(position).context("attachment position overflows")?;
        let row = sqlx::query(&format!(
            "update attachments set message_id = $1, position = $2 \
             where id = $3 and tenant_id = $4 and conversation_id = $5 \
             and uploader_type = $6 and uploader_id is not distinct from $7 \
             and message_id is null \
             returning {ATTACHMENT_COLUMNS}"
        ))
        .bind(*message.id.as_uuid())
        .bind(position)
        .bind(*id.as_uuid())
        .bind(*message.tenant.as_uuid())
        .bind(*message.conversation_id.as_uuid())
        .bind(message.sender.kind())
        .bind(message.sender.id())
        .fetch_optional(&mut *tx)
        .await
        .context("linking an attachment")?;
        let Some(row) = row else {
            // Tell "already sent" apart from "not yours to send here".
            let used: bool = sqlx::query_scalar(
                "select exists (select 1 from attachments \
                 where id = $1 and tenant_id = $2 and conversation_id = $3 \
                 and uploader_type = $4 and uploader_id is not distinct from $5 \
                 and message_id is not null)",
            )
            .bind(*id.as_uuid())
            .bind(*message.tenant.as_uuid())
            .bind(*message.conversation_id.as_uuid())
            .bind(message.sender.kind())
            .bind(message.sender.id())
            .fetch_one(&mut *tx)
            .await
            .context("checking an attachment that could not be linked")?;
            return Err(if used {
                AppendError::AttachmentAlreadyUsed(*id)
            } else {
                AppendError::AttachmentNotFound(*id)
            });
        };
        linked.push(attachment(&row)?.into());
    }
    Ok(linked)
}

/// Fills in the attachments of `messages` (all of `tenant`) with one query.
pub(crate) async fn load_into<'e>(
    executor: impl PgExecutor<'e>,
    tenant: TenantId,
    messages: &mut [&mut Message],
) -> anyhow::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = messages.iter().map(|m| *m.id.as_uuid()).collect();
    let rows = sqlx::query(&format!(
        "select {ATTACHMENT_COLUMNS} from attachments \
         where message_id = any($1) and tenant_id = $2 and deleted_at is null \
         order by message_id, position"
    ))
    .bind(&ids)
    .bind(*tenant.as_uuid())
    .fetch_all(executor)
    .await
    .context("loading the attachments of messages")?;
    let mut by_message: HashMap<MessageId, Vec<AttachedFile>> = HashMap::new();
    for row in &rows {
        let attachment = attachment(row)?;
        if let Some(message_id) = attachment.message_id {
            by_message
                .entry(message_id)
                .or_default()
                .push(attachment.into());
        }
    }
    for message in messages.iter_mut() {
        message.attachments = by_message.remove(&message.id).unwrap_or_default();
    }
    Ok(())
}

/// Fills in the attachments of the last messages of `summaries`.
pub(crate) async fn load_into_summaries<'e>(
    executor: impl PgExecutor<'e>,
    tenant: TenantId,
    summaries: &mut [ConversationSummary],
) -> anyhow::Result<()> {
    let mut last: Vec<&mut Message> = summaries
        .iter_mut()
        .filter_map(|s| s.last_message.as_mut())
        .collect();
    load_into(executor, tenant, &mut last).await
}

/// The attachments of `rows`, in order.
fn attachments(rows: &[PgRow]) -> anyhow::Result<Vec<Attachment>> {
    rows.iter().map(attachment).collect()
}

impl PostgresStore {
    /// Deletes the record of attachment `id` of `tenant` if `condition`
    /// (SQL on its row) holds; `true` when it was deleted.
    async fn delete_attachment_if(
        &self,
        tenant: TenantId,
        id: AttachmentId,
        condition: &str,
        what: &'static str,
    ) -> Result<bool, RepoError> {
        let deleted = sqlx::query(&format!(
            "delete from attachments where id = $1 and tenant_id = $2 and {condition}"
        ))
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .execute(&self.pool)
        .await
        .context(what)?
        .rows_affected();
        Ok(deleted == 1)
    }
}

#[async_trait]
impl AttachmentRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(attachment_id = %new.id), err(level = "debug"))]
    async fn insert_attachment(&self, new: &NewAttachment) -> Result<Attachment, RepoError> {
        let row = sqlx::query(&format!(
            "insert into attachments (id, tenant_id, conversation_id, uploader_type, \
                 uploader_id, name, content_type, size, sha256, storage_key, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             returning {ATTACHMENT_COLUMNS}"
        ))
        .bind(*new.id.as_uuid())
        .bind(*new.tenant.as_uuid())
        .bind(*new.conversation_id.as_uuid())
        .bind(new.uploader.kind())
        .bind(new.uploader.id())
        .bind(new.name.as_str())
        .bind(new.media_type.mime())
        .bind(i64::try_from(new.size).context("attachment size overflows")?)
        .bind(new.sha256.to_string())
        .bind(new.storage_key.as_str())
        .bind(new.created_at)
        .fetch_one(&self.pool)
        .await
        .context("inserting an attachment")?;
        Ok(attachment(&row)?)
    }

    #[tracing::instrument(skip_all, fields(attachment_id = %id), err(level = "debug"))]
    async fn find_attachment(
        &self,
        tenant: TenantId,
        id: AttachmentId,
    ) -> Result<Option<Attachment>, RepoError> {
        let row = sqlx::query(&format!(
            "select {ATTACHMENT_COLUMNS} from attachments \
             where id = $1 and tenant_id = $2 and deleted_at is null"
        ))
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .context("loading an attachment")?;
        Ok(row.as_ref().map(attachment).transpose()?)
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn list_orphans(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Attachment>, RepoError> {
        let rows = sqlx::query(&format!(
            "select {ATTACHMENT_COLUMNS} from attachments \
             where message_id is null and created_at < $1 \
             order by created_at, id limit $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("listing orphan attachments")?;
        Ok(attachments(&rows)?)
    }

    #[tracing::instrument(skip_all, fields(attachment_id = %id), err(level = "debug"))]
    async fn delete_unattached(
        &self,
        tenant: TenantId,
        id: AttachmentId,
    ) -> Result<bool, RepoError> {
        self.delete_attachment_if(
            tenant,
            id,
            "message_id is null",
            "deleting an orphan attachment",
        )
        .await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn list_deleted(&self, limit: u32) -> Result<Vec<Attachment>, RepoError> {
        let rows = sqlx::query(&format!(
            "select {ATTACHMENT_COLUMNS} from attachments where deleted_at is not null \
             order by deleted_at, id limit $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("listing deleted attachments")?;
        Ok(attachments(&rows)?)
    }

    #[tracing::instrument(skip_all, fields(attachment_id = %id), err(level = "debug"))]
    async fn purge_deleted(&self, tenant: TenantId, id: AttachmentId) -> Result<bool, RepoError> {
        self.delete_attachment_if(
            tenant,
            id,
            "deleted_at is not null",
            "purging a deleted attachment",
        )
        .await
    }
}
