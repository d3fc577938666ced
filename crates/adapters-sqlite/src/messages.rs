//! [`MessageRepository`] for [`SqliteStore`]: the atomic, idempotent append
//! and pages of messages by `seq`.

use anyhow::Context;
use async_trait::async_trait;
use chat_app::{
    AppendError, AppendOutcome, MessageCursor, MessagePage, MessageQuery, MessageRepository,
    RepoError,
};
use chat_domain::{ConversationId, Message, MessageBody, MessageId, NewMessage, Seq, TenantId};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use uuid::Uuid;

use crate::attachments;
use crate::codec::{self, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use crate::group_commit;
use crate::SqliteStore;

/// A sender's message by `client_msg_id`. The sender and key terms match
/// `messages_client_msg_id_key` exactly, so this is one index lookup. Binds:
/// `?1` tenant, `?2` conversation, `?3`/`?4` sender, `?5` key.
pub(crate) fn replay_sql() -> String {
    format!(
        "select {MESSAGE_COLUMNS} from messages m \
         where m.conversation_id = ?2 and m.sender_type = ?3 \
         and coalesce(m.sender_id, x'') = coalesce(?4, x'') and m.client_msg_id = ?5 \
         and m.tenant_id = ?1"
    )
}

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

/// The message `new`'s sender already stored under its `client_msg_id` in
/// its conversation, if any.
async fn find_replayed(
    conn: &mut SqliteConnection,
    new: &NewMessage,
) -> anyhow::Result<Option<Message>> {
    let Some(client_msg_id) = &new.client_msg_id else {
        return Ok(None);
    };
    let row = sqlx::query(&replay_sql())
        .bind(*new.tenant.as_uuid())
        .bind(*new.conversation_id.as_uuid())
        .bind(new.sender.kind())
        .bind(new.sender.id())
        .bind(client_msg_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .context("looking up message by client_msg_id")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut original = codec::message(&row)?;
    attachments::load_into(&mut *conn, new.tenant, &mut [&mut original]).await?;
    Ok(Some(original))
}

impl SqliteStore {
    /// The append transaction. A unique violation surfaces as the sqlx error
    /// so that [`MessageRepository::append`] can tell a racing replay apart.
    async fn try_append(
        &self,
        new: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendFailure> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(&format!(
            "select {CONVERSATION_COLUMNS} from conversations c where c.tenant_id = ?1 and c.id = ?2"
        ))
        .bind(*new.tenant.as_uuid())
        .bind(*new.conversation_id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .context("selecting conversation to append to")?;
        let Some(found) = found else {
            return Err(AppendError::ConversationNotFound.into());
        };
        // The writer transaction excludes every other writer: this is the
        // conversation as the append leaves it, once recorded below.
        let mut after = codec::conversation(&found)?;
        if let Some(original) = find_replayed(&mut tx, new).await? {
            return Ok(AppendOutcome::Replayed(original));
        }
        if let Some(reply_to) = new.reply_to {
            let found: Option<i64> = sqlx::query_scalar(
                "select 1 from messages where id = ?1 and conversation_id = ?2 and tenant_id = ?3",
            )
            .bind(*reply_to.as_uuid())
            .bind(*new.conversation_id.as_uuid())
            .bind(*new.tenant.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .context("looking up reply_to target")?;
            if found.is_none() {
                return Err(AppendError::ReplyTargetNotFound.into());
            }
        }
        let seq = after.last_seq.next();
        let mut message = new.clone().into_message(seq, Vec::new());
        message.created_at = codec::truncate(message.created_at);
        let created_at = codec::micros(message.created_at);
        sqlx::query(
            "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
                 body, reply_to, client_msg_id, created_at) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(*message.id.as_uuid())
        .bind(*message.tenant.as_uuid())
        .bind(*message.conversation_id.as_uuid())
        .bind(seq.as_i64())
        .bind(message.sender.kind())
        .bind(message.sender.id())
        .bind(message.body.as_ref().map(|b| b.as_str()))
        .bind(message.reply_to.map(Uuid::from))
        .bind(message.client_msg_id.as_ref().map(|c| c.as_str()))
        .bind(created_at)
        .execute(&mut *tx)
        .await
        .map_err(AppendFailure::Insert)?;
        // After the insert: the links reference the message row.
        message.attachments = attachments::link(&mut tx, new).await?;
        let reopened = after.record_message(seq, message.created_at, reopen);
        sqlx::query(
            "update conversations set last_seq = ?3, updated_at = ?4, last_activity_at = ?4, \
                 status = case when ?5 then 'open' else status end \
             where tenant_id = ?1 and id = ?2",
        )
        .bind(*new.tenant.as_uuid())
        .bind(*new.conversation_id.as_uuid())
        .bind(seq.as_i64())
        .bind(created_at)
        .bind(reopened)
        .execute(&mut *tx)
        .await
        .context("bumping conversation last_seq")?;
        // The sender has seen their own message: it never counts as unread
        // for them.
        sqlx::query(
            "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                 last_read_seq, last_delivered_seq, updated_at) \
             values (?1, ?2, ?3, ?4, ?5, ?5, ?6) \
             on conflict (conversation_id, reader_type, reader_id) do update set \
                 last_read_seq = max(last_read_seq, excluded.last_read_seq), \
                 last_delivered_seq = max(last_delivered_seq, excluded.last_delivered_seq), \
                 updated_at = excluded.updated_at",
        )
        .bind(*new.tenant.as_uuid())
        .bind(*new.conversation_id.as_uuid())
        .bind(new.sender.kind())
        .bind(codec::reader_id(new.sender))
        .bind(seq.as_i64())
        .bind(created_at)
        .execute(&mut *tx)
        .await
        .context("moving the sender's read marker")?;
        tx.commit().await.context("committing message")?;
        Ok(AppendOutcome::Created {
            message,
            conversation: after,
            reopened,
        })
    }
}

/// Why [`SqliteStore::try_append`] stored nothing.
enum AppendFailure {
    /// A domain outcome or an unexpected failure.
    Append(AppendError),
    /// The insert itself failed, possibly on the `client_msg_id` key.
    Insert(sqlx::Error),
}

impl From<AppendError> for AppendFailure {
    fn from(err: AppendError) -> Self {
        Self::Append(err)
    }
}

impl From<anyhow::Error> for AppendFailure {
    fn from(err: anyhow::Error) -> Self {
        Self::Append(AppendError::Unexpected(err))
    }
}

impl SqliteStore {
    /// The append in a transaction of its own: messages with attachments
    /// or a `reply_to`, and the fallback of a failed batch.
    // No `err` here: a missing conversation or reply target is an outcome
    // for the use case to report, not a storage failure to log.
    #[tracing::instrument(
        skip_all,
        fields(tenant_id = %message.tenant, conversation_id = %message.conversation_id)
    )]
    pub(crate) async fn append_one(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError> {
        match self.try_append(message, reopen).await {
            Ok(outcome) => Ok(outcome),
            Err(AppendFailure::Append(err)) => Err(err),
            Err(AppendFailure::Insert(err)) => {
                let unique = matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation());
                if unique && message.client_msg_id.is_some() {
                    // Another writer on the same file stored this key first
                    // and committed: hand back its message. Ours is rolled
                    // back.
                    let mut conn = self
                        .read
                        .acquire()
                        .await
                        .context("acquiring connection after a client_msg_id conflict")?;
                    if let Some(original) = find_replayed(&mut conn, message).await? {
                        return Ok(AppendOutcome::Replayed(original));
                    }
                }
                Err(anyhow::Error::new(err).context("inserting message").into())
            }
        }
    }
}

#[async_trait]
impl MessageRepository for SqliteStore {
    async fn append(
        &self,
        message: &NewMessage,
        reopen: bool,
    ) -> Result<AppendOutcome, AppendError> {
        // Plain messages (the bulk of the traffic) go through the group
        // commit, the rest alone.
        let group = self
            .group
            .get_or_init(|| group_commit::start(self.without_group_commit()));
        match group.append(message, reopen).await {
            Some(outcome) => outcome,
            None => self.append_one(message, reopen).await,
        }
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err)]
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

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id, message_id = %message), err)]
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

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id, message_id = %message), err)]
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

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id, message_id = %message), err)]
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
