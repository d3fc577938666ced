//! [`MessageRepository`] for [`PostgresStore`]: the atomic, idempotent append
//! and paging by `seq`.

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::{
    AppendError, AppendOutcome, MessageCursor, MessagePage, MessageQuery, MessageRepository,
    RepoError,
};
use chat_domain::{
    ClientMsgId, ConversationId, Message, MessageBody, MessageId, NewMessage, Sender, TenantId,
};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::attachments;
use crate::group_commit;
use crate::rows::{self, CONVERSATION_COLUMNS, MESSAGE_COLUMNS, PLAIN};
use crate::PostgresStore;

/// The unique index behind idempotent sends (see the migration).
const CLIENT_MSG_ID_KEY: &str = "messages_client_msg_id_key";

/// The message `sender` already sent with `key` into `conversation`, if any.
async fn find_by_client_msg_id(
    conn: &mut PgConnection,
    tenant: TenantId,
    conversation: ConversationId,
    sender: Sender,
    key: &ClientMsgId,
) -> anyhow::Result<Option<Message>> {
    let row = sqlx::query(&format!(
        "select {MESSAGE_COLUMNS} from messages \
         where conversation_id = $1 and client_msg_id = $2 and sender_type = $3 \
         and sender_id is not distinct from $4 and tenant_id = $5"
    ))
    .bind(*conversation.as_uuid())
    .bind(key.as_str())
    .bind(sender.kind())
    .bind(sender.id())
    .bind(*tenant.as_uuid())
    .fetch_optional(&mut *conn)
    .await
    .context("looking up a client_msg_id")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut original = rows::message(&row, &PLAIN)?;
    attachments::load_into(&mut *conn, tenant, &mut [&mut original]).await?;
    Ok(Some(original))
}

impl PostgresStore {
    /// The original of a send that lost the race on [`CLIENT_MSG_ID_KEY`].
    async fn replayed_after_conflict(&self, message: &NewMessage) -> anyhow::Result<Message> {
        let key = message
            .client_msg_id
            .as_ref()
            .context("a client_msg_id conflict without a client_msg_id")?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("acquiring a connection")?;
        find_by_client_msg_id(
            &mut conn,
            message.tenant,
            message.conversation_id,
            message.sender,
            key,
        )
        .await?
        .context("the message that won the client_msg_id race is gone")
    }
}

impl PostgresStore {
    /// The append in a transaction of its own: messages with attachments
    /// or a `reply_to`, and the fallback of a failed batch.
    #[tracing::instrument(
        skip_all,
        fields(conversation_id = %message.conversation_id, message_id = %message.id, seq, replayed)
    )]
    pub(crate) async fn append_one(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let span = tracing::Span::current();
        let conversation = *message.conversation_id.as_uuid();
        let tenant = *message.tenant.as_uuid();
        // Dropping `tx` on an early return rolls it back.
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting the append transaction")?;

        // The row lock serialises the senders of one conversation: seq is
        // read, incremented and written under it. `no key update` is enough
        // (no key changes) and leaves foreign-key checks of other writers,
        // such as receipts, unblocked.
        let locked = sqlx::query(&format!(
            "select {CONVERSATION_COLUMNS} from conversations where id = $1 and tenant_id = $2 \
             for no key update"
        ))
        .bind(conversation)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await
        .context("locking the conversation")?;
        let Some(locked) = locked else {
            return Err(AppendError::ConversationNotFound);
        };
        let mut after = rows::conversation(&locked)?;

        // Under the lock, every earlier send of this conversation is either
        // committed (and visible to this statement) or rolled back.
        if let Some(key) = &message.client_msg_id {
            let original = find_by_client_msg_id(
                &mut tx,
                message.tenant,
                message.conversation_id,
                message.sender,
                key,
            )
            .await?;
            if let Some(original) = original {
                span.record("replayed", true);
                tx.rollback().await.context("ending a replayed append")?;
                return Ok(AppendOutcome::Replayed(original));
            }
        }

        if let Some(target) = message.reply_to {
            let exists: bool = sqlx::query_scalar(
                "select exists (select 1 from messages \
                 where id = $1 and conversation_id = $2 and tenant_id = $3)",
            )
            .bind(*target.as_uuid())
            .bind(conversation)
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await
            .context("checking the reply target")?;
            if !exists {
                return Err(AppendError::ReplyTargetNotFound);
            }
        }

        let seq = after.last_seq.next();
        span.record("seq", seq.get());
        let inserted = sqlx::query(&format!(
            "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
                 body, reply_to, client_msg_id, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             returning {MESSAGE_COLUMNS}"
        ))
        .bind(*message.id.as_uuid())
        .bind(tenant)
        .bind(conversation)
        .bind(seq.as_i64())
        .bind(message.sender.kind())
        .bind(message.sender.id())
        .bind(message.body.as_ref().map(|b| b.as_str()))
        .bind(message.reply_to.map(|r| *r.as_uuid()))
        .bind(message.client_msg_id.as_ref().map(ClientMsgId::as_str))
        .bind(message.created_at)
        .fetch_one(&mut *tx)
        .await;
        let mut stored = match inserted {
            Ok(row) => rows::message(&row, &PLAIN)?,
            // Unreachable while every append takes the row lock first, but
            // a writer that does not must still get the idempotent answer.
            Err(sqlx::Error::Database(err)) if err.constraint() == Some(CLIENT_MSG_ID_KEY) => {
                tx.rollback()
                    .await
                    .context("ending an append that lost the client_msg_id race")?;
                span.record("replayed", true);
                return Ok(AppendOutcome::Replayed(
                    self.replayed_after_conflict(message).await?,
                ));
            }
            Err(err) => {
                return Err(anyhow::Error::new(err)
                    .context("inserting a message")
                    .into())
            }
        };

        // Inserted first: the links reference the message row.
        stored.attachments = attachments::link(&mut tx, message).await?;
        let reopened = after.record_message(seq, stored.created_at, reopen);

        sqlx::query(
            "update conversations set last_seq = $1, updated_at = $2, last_activity_at = $2, \
                 status = case when $3 then 'open' else status end \
             where id = $4 and tenant_id = $5",
        )
        .bind(seq.as_i64())
        .bind(stored.created_at)
        .bind(reopened)
        .bind(conversation)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .context("bumping the conversation")?;

        // The sender has read what they wrote.
        sqlx::query(
            "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                 last_read_seq, last_delivered_seq, updated_at) \
             values ($1, $2, $3, $4, $5, $5, $6) \
             on conflict (conversation_id, reader_type, reader_id) do update set \
                 last_read_seq = greatest(read_states.last_read_seq, excluded.last_read_seq), \
                 last_delivered_seq = \
                     greatest(read_states.last_delivered_seq, excluded.last_delivered_seq), \
                 updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(conversation)
        .bind(message.sender.kind())
        .bind(rows::reader_id(message.sender))
        .bind(seq.as_i64())
        .bind(stored.created_at)
        .execute(&mut *tx)
        .await
        .context("moving the sender's read marker")?;

        tx.commit().await.context("committing the append")?;
        span.record("replayed", false);
        Ok(AppendOutcome::Created {
            message: stored,
            conversation: after,
            reopened,
        })
    }
}

#[async_trait]
impl MessageRepository for PostgresStore {
    async fn append(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError> {
        // Plain messages (the bulk of the traffic) go through the group
        // commit, the rest alone.
        let group = self
            .group
            .get_or_init(|| group_commit::start(self.pool.clone()));
        match group.append(message, reopen).await {
            Some(outcome) => outcome,
            None => self.append_one(message, reopen).await,
        }
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id, limit = query.limit, items), err)]
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

    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message), err)]
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

    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message), err)]
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

    #[tracing::instrument(skip_all, fields(conversation_id = %id, message_id = %message), err)]
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
