//! [`MessageRepository`] for [`PostgresStore`]: the atomic, idempotent append
//! (see [`crate::append`]) and paging by `seq`.

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::store_support::Append;
use chat_app::{
    AppendError, AppendOutcome, MessageCursor, MessagePage, MessageQuery, MessageRepository,
    RepoError,
};
use chat_domain::{ConversationId, Message, MessageBody, MessageId, NewMessage, TenantId};
use chrono::{DateTime, Utc};

use crate::attachments;
use crate::group_commit;
use crate::rows::{self, MESSAGE_COLUMNS, PLAIN};
use crate::PostgresStore;

#[async_trait]
impl MessageRepository for PostgresStore {
    async fn append(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError> {
        // Plain messages (the bulk of the traffic) go through the group
        // commit, the rest alone; both take the one append path.
        let mut message = message.clone();
        message.created_at = rows::truncate(message.created_at);
        let append = Append { message, reopen };
        let group = self
            .group
            .get_or_init(|| group_commit::start(self.pool.clone()));
        match group.submit(append).await {
            Ok(outcome) => outcome,
            Err(append) => self.append_alone(&append).await,
        }
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id, limit = query.limit, items), err(level = "debug"))]
    async fn list_messages(
        &self,
        tenant: TenantId,
        id: ConversationId,
        query: MessageQuery,
    ) -> Result<MessagePage, RepoError> {
        let (condition, order, bound) = match query.cursor {
            MessageCursor::Latest => ("", "desc", None),
            MessageCursor::Before(seq) => (" and seq < $4", "desc", Some(seq)),
            MessageCursor::After(seq) => (" and seq > $4", "asc", Some(seq)),
        };
        let sql = format!(
            "select {MESSAGE_COLUMNS} from messages \
             where conversation_id = $1 and tenant_id = $2{condition} \
             order by seq {order} limit $3"
        );
        let mut select = sqlx::query(&sql)
            .bind(*id.as_uuid())
            .bind(*tenant.as_uuid())
            .bind(i64::from(query.limit) + 1);
        if let Some(seq) = bound {
            select = select.bind(seq.as_i64());
        }
        let rows = select
            .fetch_all(&self.pool)
            .await
            .context("listing messages")?;
        let limit = usize::try_from(query.limit).context("page size does not fit in memory")?;
        let has_more = rows.len() > limit;
        let mut messages = rows
            .iter()
            .take(limit)
            .map(|row| rows::message(row, &PLAIN))
            .collect::<anyhow::Result<Vec<_>>>()?;
        attachments::load_into(
            &self.pool,
            tenant,
            &mut messages.iter_mut().collect::<Vec<_>>(),
        )
        .await?;
        tracing::Span::current().record("items", messages.len());
        Ok(MessagePage { messages, has_more })
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message), err(level = "debug"))]
    async fn find_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>, RepoError> {
        let row = sqlx::query(&format!(
            "select {MESSAGE_COLUMNS} from messages \
             where id = $1 and conversation_id = $2 and tenant_id = $3"
        ))
        .bind(*message.as_uuid())
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .context("loading a message")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = rows::message(&row, &PLAIN)?;
        attachments::load_into(&self.pool, tenant, &mut [&mut found]).await?;
        Ok(Some(found))
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message), err(level = "debug"))]
    async fn edit_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        body: &MessageBody,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError> {
        sqlx::query(
            "update messages set body = $4, edited_at = $5 \
             where id = $1 and conversation_id = $2 and tenant_id = $3 and deleted_at is null",
        )
        .bind(*message.as_uuid())
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .bind(body.as_str())
        .bind(at)
        .execute(&self.pool)
        .await
        .context("editing a message")?;
        self.find_message(tenant, id, message).await
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message), err(level = "debug"))]
    async fn delete_message(
        &self,
        tenant: TenantId,
        id: ConversationId,
        message: MessageId,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, RepoError> {
        // One statement, so one transaction: the text and the files go
        // together. Only a message of this conversation takes its files.
        sqlx::query(
            "with erased as ( \
                 update messages set body = null, deleted_at = coalesce(deleted_at, $4) \
                 where id = $1 and conversation_id = $2 and tenant_id = $3 \
                 returning id, deleted_at) \
             update attachments as a set deleted_at = erased.deleted_at \
             from erased \
             where a.message_id = erased.id and a.tenant_id = $3 and a.deleted_at is null",
        )
        .bind(*message.as_uuid())
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .bind(at)
        .execute(&self.pool)
        .await
        .context("deleting a message")?;
        self.find_message(tenant, id, message).await
    }
}
