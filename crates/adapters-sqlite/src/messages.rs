//! [`MessageRepository`] for [`SqliteStore`]: the atomic, idempotent append
//! (see [`crate::append`]) and pages of messages by `seq`.

use anyhow::Context;
use async_trait::async_trait;
use chat_app::store_support::Append;
use chat_app::{
    AppendError, AppendOutcome, MessageCursor, MessagePage, MessageQuery, MessageRepository,
    RepoError,
};
use chat_domain::{ConversationId, Message, MessageBody, MessageId, NewMessage, Seq, TenantId};
use chrono::{DateTime, Utc};

use crate::attachments;
use crate::codec::{self, MESSAGE_COLUMNS};
use crate::group_commit;
use crate::SqliteStore;

/// A page of messages in the cursor's direction. Binds: `?1` tenant, `?2`
/// conversation, `?3` cursor seq, `?4` rows to fetch.
pub(crate) fn page_sql(cursor: MessageCursor) -> String {
    let (bound, order) = match cursor {
        MessageCursor::Latest => ("", "desc"),
        MessageCursor::Before(_) => (" and m.seq < ?3", "desc"),
        MessageCursor::After(_) => (" and m.seq > ?3", "asc"),
    };
    format!(
        "select {MESSAGE_COLUMNS} from messages m \
         where m.conversation_id = ?2 and m.tenant_id = ?1{bound} \
         order by m.seq {order} limit ?4"
    )
}

#[async_trait]
impl MessageRepository for SqliteStore {
    async fn append(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError> {
        // Plain messages (the bulk of the traffic) go through the group
        // commit, the rest alone; both take the one append path.
        let mut message = message.clone();
        message.created_at = codec::truncate(message.created_at);
        let append = Append { message, reopen };
        let group = self
            .group
            .get_or_init(|| group_commit::start(self.without_group_commit()));
        match group.submit(append).await {
            Ok(outcome) => outcome,
            Err(append) => self.append_alone(&append).await,
        }
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn list_messages(
        &self,
        tenant: TenantId,
        id: ConversationId,
        query: MessageQuery,
    ) -> Result<MessagePage, RepoError> {
        let from = match query.cursor {
            MessageCursor::Latest => Seq::ZERO,
            MessageCursor::Before(seq) | MessageCursor::After(seq) => seq,
        };
        let limit = usize::try_from(query.limit).context("page size overflows usize")?;
        let rows = sqlx::query(&page_sql(query.cursor))
            .bind(*tenant.as_uuid())
            .bind(*id.as_uuid())
            .bind(from.as_i64())
            .bind(i64::from(query.limit) + 1)
            .fetch_all(&self.read)
            .await
            .context("listing messages")?;
        let mut messages = rows
            .iter()
            .map(codec::message)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        attachments::load_into(
            &self.read,
            tenant,
            &mut messages.iter_mut().collect::<Vec<_>>(),
        )
        .await?;
        Ok(MessagePage { messages, has_more })
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id, message_id = %message), err(level = "debug"))]
    async fn find_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>, RepoError> {
        let row = sqlx::query(&format!(
            "select {MESSAGE_COLUMNS} from messages m \
             where m.id = ?1 and m.conversation_id = ?2 and m.tenant_id = ?3"
        ))
        .bind(*message.as_uuid())
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_optional(&self.read)
        .await
        .context("loading a message")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = codec::message(&row)?;
        attachments::load_into(&self.read, tenant, &mut [&mut found]).await?;
        Ok(Some(found))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id, message_id = %message), err(level = "debug"))]
    async fn edit_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        body: &MessageBody,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "update messages set body = ?4, edited_at = ?5 \
             where id = ?1 and conversation_id = ?2 and tenant_id = ?3 and deleted_at is null",
        )
        .bind(*message.as_uuid())
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .bind(body.as_str())
        .bind(codec::micros(at))
        .execute(&mut *tx)
        .await
        .context("editing a message")?;
        tx.commit().await.context("committing an edit")?;
        self.find_message(tenant, id, message).await
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id, message_id = %message), err(level = "debug"))]
    async fn delete_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "update messages set body = null, deleted_at = coalesce(deleted_at, ?4) \
             where id = ?1 and conversation_id = ?2 and tenant_id = ?3",
        )
        .bind(*message.as_uuid())
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .bind(codec::micros(at))
        .execute(&mut *tx)
        .await
        .context("deleting a message")?;
        // Its files go with it, in the same transaction, with its deletion
        // time; only a message of this conversation takes its files.
        sqlx::query(
            "update attachments set deleted_at = m.deleted_at \
             from (select id, deleted_at from messages \
                 where id = ?1 and conversation_id = ?2 and tenant_id = ?3) as m \
             where attachments.message_id = m.id and attachments.tenant_id = ?3 \
             and attachments.deleted_at is null",
        )
        .bind(*message.as_uuid())
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .execute(&mut *tx)
        .await
        .context("deleting a message's attachments")?;
        tx.commit().await.context("committing a deletion")?;
        self.find_message(tenant, id, message).await
    }
}
