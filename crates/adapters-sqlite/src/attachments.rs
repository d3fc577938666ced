//! [`AttachmentRepository`] for [`SqliteStore`], and the attachment side of
//! messages: linking uploads inside the append transaction and loading the
//! attachments of the messages a query returns.

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use chat_app::{AppendError, AttachmentRepository, ConversationSummary, RepoError};
use chat_domain::{
    AttachedFile, Attachment, AttachmentId, AttachmentName, ConversationId, MediaType, Message,
    MessageId, NewAttachment, NewMessage, Sender, Sha256Digest, StorageKey, TenantId,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqliteExecutor};
use uuid::Uuid;

use crate::codec;
use crate::SqliteStore;

/// The attachment columns of table `a`, as [`attachment`] reads them.
const ATTACHMENT_COLUMNS: &str = "a.id as id, a.tenant_id as tenant_id, \
    a.conversation_id as conversation_id, a.uploader_type as uploader_type, \
    a.uploader_id as uploader_id, a.name as name, a.content_type as content_type, \
    a.size as size, a.sha256 as sha256, a.storage_key as storage_key, \
    a.created_at as created_at, a.message_id as message_id";

/// One attachment of a tenant. Binds: `?1` id, `?2` tenant.
pub(crate) fn find_sql() -> String {
    format!(
        "select {ATTACHMENT_COLUMNS} from attachments a \
         where a.id = ?1 and a.tenant_id = ?2 and a.deleted_at is null"
    )
}

/// Attachments of deleted messages, earliest deletion first, at most `?1`.
pub(crate) fn deleted_sql() -> String {
    format!(
        "select {ATTACHMENT_COLUMNS} from attachments a where a.deleted_at is not null \
         order by a.deleted_at, a.id limit ?1"
    )
}

/// Unattached uploads older than `?1`, oldest first, at most `?2`.
pub(crate) fn orphans_sql() -> String {
    format!(
        "select {ATTACHMENT_COLUMNS} from attachments a \
         where a.message_id is null and a.created_at < ?1 \
         order by a.created_at, a.id limit ?2"
    )
}

/// The attachments of `count` messages of a tenant, in order. Binds: `?1`
/// tenant, `?2`.. the message ids.
pub(crate) fn of_messages_sql(count: usize) -> String {
    let ids: Vec<String> = (0..count).map(|i| format!("?{}", i + 2)).collect();
    format!(
        "select {ATTACHMENT_COLUMNS} from attachments a \
         where a.message_id in ({}) and a.tenant_id = ?1 and a.deleted_at is null \
         order by a.message_id, a.position",
        ids.join(", ")
    )
}

/// The upload `?1` of sender (`?4`, `?5`) in conversation `?3` of tenant
/// `?2`, whether attached or not.
pub(crate) fn own_upload_sql() -> String {
    format!(
        "select {ATTACHMENT_COLUMNS} from attachments a \
         where a.id = ?1 and a.tenant_id = ?2 and a.conversation_id = ?3 \
         and a.uploader_type = ?4 and coalesce(a.uploader_id, x'') = coalesce(?5, x'')"
    )
}

fn attachment(row: &SqliteRow) -> anyhow::Result<Attachment> {
    let id: Uuid = row.try_get("id").context("reading attachment id")?;
    decode(row).with_context(|| format!("attachment {id} is corrupt"))
}

fn decode(row: &SqliteRow) -> anyhow::Result<Attachment> {
    let uploader_type: String = row.try_get("uploader_type")?;
    let uploader_id: Option<Uuid> = row.try_get("uploader_id")?;
    let uploader = Sender::from_parts(&uploader_type, uploader_id)
        .with_context(|| format!("unknown uploader {uploader_type:?}"))?;
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
            .with_context(|| format!("unknown content type {content_type:?}"))?,
        size: u64::try_from(size).context("negative size")?,
        sha256: Sha256Digest::parse_hex(&sha256)?,
        storage_key: StorageKey::parse(&storage_key)?,
        created_at: codec::time(row.try_get("created_at")?)?,
        message_id: message_id.map(MessageId::from_uuid),
    })
}

/// Links the attachments of `message` inside the append transaction (the
/// single writer), in order, and returns them.
pub(crate) async fn link(
    tx: &mut SqliteConnection,
    message: &NewMessage,
) -> Result<Vec<AttachedFile>, AppendError> {
    let mut linked = Vec::with_capacity(message.attachments.len());
    for (position, id) in message.attachments.iter().enumerate() {
        let row = sqlx::query(&own_upload_sql())
            .bind(*id.as_uuid())
            .bind(*message.tenant.as_uuid())
            .bind(*message.conversation_id.as_uuid())
            .bind(message.sender.kind())
            .bind(message.sender.id())
            .fetch_optional(&mut *tx)
            .await
            .context("looking up an attachment to link")?;
        let Some(row) = row else {
            return Err(AppendError::AttachmentNotFound(*id));
        };
        let mut found = attachment(&row)?;
        if found.message_id.is_some() {
            return Err(AppendError::AttachmentAlreadyUsed(*id));
        }
        sqlx::query("update attachments set message_id = ?1, position = ?2 where id = ?3")
            .bind(*message.id.as_uuid())
            .bind(i64::try_from(position).context("attachment position overflows")?)
            .bind(*id.as_uuid())
            .execute(&mut *tx)
            .await
            .context("linking an attachment")?;
        found.message_id = Some(message.id);
        linked.push(found.into());
    }
    Ok(linked)
}

/// Fills in the attachments of `messages` (all of `tenant`) with one query.
pub(crate) async fn load_into<'e>(
    executor: impl SqliteExecutor<'e>,
    tenant: TenantId,
    messages: &mut [&mut Message],
) -> anyhow::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let sql = of_messages_sql(messages.len());
    let mut query = sqlx::query(&sql).bind(*tenant.as_uuid());
    for message in messages.iter() {
        query = query.bind(*message.id.as_uuid());
    }
    let rows = query
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
    executor: impl SqliteExecutor<'e>,
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
fn attachments(rows: &[SqliteRow]) -> anyhow::Result<Vec<Attachment>> {
    rows.iter().map(attachment).collect()
}

impl SqliteStore {
    /// Deletes the record of attachment `id` of `tenant` if `condition`
    /// (SQL on its row) holds; `true` when it was deleted.
    async fn delete_attachment_if(
        &self,
        tenant: TenantId,
        id: AttachmentId,
        condition: &str,
        what: &'static str,
    ) -> Result<bool, RepoError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(&format!(
            "delete from attachments where id = ?1 and tenant_id = ?2 and {condition}"
        ))
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .execute(&mut *tx)
        .await
        .context(what)?
        .rows_affected();
        tx.commit().await.context(what)?;
        Ok(deleted == 1)
    }
}

#[async_trait]
impl AttachmentRepository for SqliteStore {
    #[tracing::instrument(skip_all, fields(attachment_id = %new.id), err(level = "debug"))]
    async fn insert_attachment(&self, new: &NewAttachment) -> Result<Attachment, RepoError> {
        let mut stored = new.clone().into_attachment();
        stored.created_at = codec::truncate(stored.created_at);
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "insert into attachments (id, tenant_id, conversation_id, uploader_type, \
                 uploader_id, name, content_type, size, sha256, storage_key, created_at) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
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
        .bind(codec::micros(stored.created_at))
        .execute(&mut *tx)
        .await
        .context("inserting an attachment")?;
        tx.commit().await.context("committing an attachment")?;
        Ok(stored)
    }

    #[tracing::instrument(skip_all, fields(attachment_id = %id), err(level = "debug"))]
    async fn find_attachment(
        &self,
        tenant: TenantId,
        id: AttachmentId,
    ) -> Result<Option<Attachment>, RepoError> {
        let row = sqlx::query(&find_sql())
            .bind(*id.as_uuid())
            .bind(*tenant.as_uuid())
            .fetch_optional(&self.read)
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
        let rows = sqlx::query(&orphans_sql())
            .bind(codec::micros(before))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
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
        let rows = sqlx::query(&deleted_sql())
            .bind(i64::from(limit))
            .fetch_all(&self.read)
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
