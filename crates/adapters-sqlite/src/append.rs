//! The append of messages, one code path for every send: a batch of the
//! group commit ([`crate::group_commit`]) and a lone send (attachments, a
//! `reply_to`, the fallback of a failed batch), which is a batch of one.
//!
//! A batch is one `begin immediate` transaction on the single writer, so
//! nothing else writes while it runs. Every statement costs a round trip to
//! the connection's worker thread, so the steps (see
//! [`chat_app::store_support`]) take a fixed number of rounds whatever the
//! batch's size, the rows bound as parameters of multi-row `values` lists
//! (at most [`MAX_VARIABLES`] per round: more rows take more rounds), each
//! statement written for a power of two of rows so that a few prepared
//! statements serve every batch size:
//!
//! 1. `load_state`: `load_conversations` reads the batch's conversations
//!    whole; `find_originals` looks up the `client_msg_id`s already stored
//!    and `find_reply_targets` the reply targets, each one round, only
//!    when a send needs it.
//! 2. `assign`: seqs and outcomes ([`store_support::assign`]).
//! 3. `write_fresh`: one round of three statements, `insert_messages`,
//!    `bump_conversations` (newest seq and activity, reopened when asked)
//!    and `advance_senders` (the sender has read what they wrote); then
//!    `link_attachments`, only for a send that carries some.
//! 4. Commit, or roll back when nothing was written.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::Context as _;
use chat_app::store_support::{
    self, Append, Assigned, BatchError, Fresh, Outcome, StageError, State,
};
use chat_app::{AppendError, AppendOutcome};
use chat_domain::{Conversation, Message, NewMessage};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments as _, SqliteConnection};
use uuid::Uuid;

use crate::codec::{self, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use crate::{attachments, SqliteStore};

/// Most bound parameters in one round: the `SQLITE_MAX_VARIABLE_NUMBER` of
/// the bundled SQLite (32,766 since 3.32).
pub(crate) const MAX_VARIABLES: usize = 32_766;

impl SqliteStore {
    /// Appends `batch` (at most one send per conversation) in one
    /// transaction; each send's outcome, in batch order, once committed.
    pub(crate) async fn append_batch(&self, batch: &[Append]) -> Result<Vec<Outcome>, BatchError> {
        // Dropping `tx` on an early return rolls it back.
        let mut tx = self.begin_write().await.map_err(StageError::from)?;
        let assigned = stage(&mut tx, batch).await?;
        if assigned.writes() {
            tx.commit()
                .await
                .map_err(|err| BatchError::Commit(err.into()))?;
        } else {
            // Replays and refusals: nothing to keep.
            tx.rollback()
                .await
                .context("ending an append that stored nothing")
                .map_err(StageError::from)?;
        }
        Ok(assigned.into_outcomes())
    }

    /// One send in a transaction of its own: a batch of one.
    // No `err` here: a missing conversation or reply target is an outcome
    // for the use case to report, not a storage failure to log.
    #[tracing::instrument(
        skip_all,
        fields(tenant_id = %append.message.tenant, conversation_id = %append.message.conversation_id)
    )]
    pub(crate) async fn append_alone(&self, append: &Append) -> Outcome {
        match self.append_batch(std::slice::from_ref(append)).await {
            Ok(mut outcomes) => outcomes
                .pop()
                .context("a batch of one without its outcome")?,
            Err(err) => match err.into_lone_error() {
                Ok(err) => Err(err),
                Err(err) => {
                    // Another writer on the same file stored this key first
                    // and committed: hand back its message. Ours is rolled
                    // back.
                    if let Some(original) = self.replayed_after_conflict(append).await? {
                        return Ok(AppendOutcome::Replayed(original));
                    }
                    Err(AppendError::Unexpected(err))
                }
            },
        }
    }

    /// The original of a send whose insert hit the `client_msg_id` index, if
    /// that is what it hit.
    async fn replayed_after_conflict(&self, append: &Append) -> anyhow::Result<Option<Message>> {
        if append.message.client_msg_id.is_none() {
            return Ok(None);
        }
        let mut conn = self
            .read
            .acquire()
            .await
            .context("acquiring connection after a client_msg_id conflict")?;
        Ok(
            find_originals(&mut conn, std::slice::from_ref(append), &[0])
                .await?
                .remove(&0),
        )
    }
}

/// Runs the batch's steps in `tx`.
async fn stage(tx: &mut SqliteConnection, batch: &[Append]) -> Result<Assigned, StageError> {
    let state = load_state(tx, batch).await?;
    let mut assigned = store_support::assign(batch, state)?;
    if assigned.writes() {
        write_fresh(tx, assigned.fresh()).await?;
        // After the insert: the links reference the message rows.
        link_attachments(tx, batch, assigned.fresh_mut()).await?;
    }
    Ok(assigned)
}

/// What the batch's sends find; the writer transaction excludes every
/// other writer.
async fn load_state(tx: &mut SqliteConnection, batch: &[Append]) -> anyhow::Result<State> {
    let mut state = State::new(load_conversations(tx, batch).await?);
    let keyed = state.keyed(batch);
    state.originals = find_originals(tx, batch, &keyed).await?;
    let replying = state.replying(batch);
    state.reply_targets = find_reply_targets(tx, batch, &replying).await?;
    Ok(state)
}

/// `rows` parenthesised groups of `columns` placeholders, comma-separated:
/// the body of a multi-row `values` list.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut row = String::with_capacity(columns * 3 + 2);
    row.push('(');
    for column in 0..columns {
        row.push_str(if column == 0 { "?" } else { ", ?" });
    }
    row.push(')');
    let mut sql = String::with_capacity(rows * (row.len() + 2));
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

/// The rows a statement is written for: `rows` rounded up to a power of
/// two (at most `most`). A handful of statements then serve every batch
/// size and stay in the connection's statement cache (sqlx keeps 100)
/// instead of being prepared anew for each size; the extra rows, bound as
/// nulls by [`pad`], match nothing and are skipped.
fn padded(rows: usize, most: usize) -> usize {
    rows.next_power_of_two().min(most).max(rows)
}

/// Binds the null rows that take `rows` up to `padded` rows of `columns`.
fn pad(
    args: &mut SqliteArguments<'_>,
    rows: usize,
    padded: usize,
    columns: usize,
) -> anyhow::Result<()> {
    for _ in 0..(padded - rows) * columns {
        bind(args, None::<i64>)?;
    }
    Ok(())
}

/// Adds `value` to `args`.
fn bind<'q, T>(args: &mut SqliteArguments<'q>, value: T) -> anyhow::Result<()>
where
    T: 'q + sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    args.add(value)
        .map_err(|err| anyhow::anyhow!("binding a parameter: {err}"))
}

/// The rounds of a lookup of the sends at `positions`: each round's padded
/// row count and arguments, a row being the send's position (which the
/// rows the query returns name it by) and what `bind_row` binds of it,
/// `columns` in all.
fn lookup_rounds<'q>(
    batch: &'q [Append],
    positions: &[usize],
    columns: usize,
    bind_row: impl Fn(&mut SqliteArguments<'q>, &'q NewMessage) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(usize, SqliteArguments<'q>)>> {
    let most = MAX_VARIABLES / columns;
    positions
        .chunks(most)
        .map(|chunk| {
            let rows = padded(chunk.len(), most);
            let mut args = SqliteArguments::default();
            for &position in chunk {
                let position_arg = i64::try_from(position).context("batch position overflows")?;
                bind(&mut args, position_arg)?;
                bind_row(&mut args, &batch[position].message)?;
            }
            pad(&mut args, chunk.len(), rows, columns)?;
            Ok((rows, args))
        })
        .collect()
}

/// Reads the batch's conversations whole (each send's outcome carries its
/// conversation as the batch leaves it). One send per conversation per
/// batch: the ids are distinct.
pub(crate) fn load_conversations_sql(rows: usize) -> String {
    format!(
        "select {CONVERSATION_COLUMNS} from conversations c where c.id in ({})",
        vec!["?"; rows].join(", ")
    )
}

async fn load_conversations(
    tx: &mut SqliteConnection,
    batch: &[Append],
) -> anyhow::Result<Vec<Conversation>> {
    let mut conversations = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(MAX_VARIABLES) {
        let rows = padded(chunk.len(), MAX_VARIABLES);
        let mut args = SqliteArguments::default();
        for append in chunk {
            bind(&mut args, *append.message.conversation_id.as_uuid())?;
        }
        pad(&mut args, chunk.len(), rows, 1)?;
        let rows = sqlx::query_with(&load_conversations_sql(rows), args)
            .fetch_all(&mut *tx)
            .await
            .context("reading the batch's conversations")?;
        for row in &rows {
            conversations.push(codec::conversation(row)?);
        }
    }
    Ok(conversations)
}

/// Parameters per key of [`find_originals_sql`].
const ORIGINAL_COLUMNS: usize = 6;

/// The messages stored under the keys of a `values` list; the terms match
/// `messages_client_msg_id_key`, so each key is one index lookup.
pub(crate) fn find_originals_sql(rows: usize) -> String {
    format!(
        "with k(position, conversation_id, tenant_id, sender_type, sender_id, client_msg_id) \
             as (values {}) \
         select {MESSAGE_COLUMNS}, k.position as position from k \
         join messages as m on m.conversation_id = k.conversation_id \
             and m.sender_type = k.sender_type \
             and coalesce(m.sender_id, x'') = coalesce(k.sender_id, x'') \
             and m.client_msg_id = k.client_msg_id and m.client_msg_id is not null \
             and m.tenant_id = k.tenant_id",
        placeholders(rows, ORIGINAL_COLUMNS)
    )
}

/// The messages already stored under the `client_msg_id`s of the sends at
/// `positions` (same sender, same conversation), by position.
async fn find_originals(
    conn: &mut SqliteConnection,
    batch: &[Append],
    positions: &[usize],
) -> anyhow::Result<HashMap<usize, Message>> {
    let mut originals = HashMap::new();
    let rounds = lookup_rounds(batch, positions, ORIGINAL_COLUMNS, |args, m| {
        bind(args, *m.conversation_id.as_uuid())?;
        bind(args, *m.tenant.as_uuid())?;
        bind(args, m.sender.kind())?;
        bind(args, m.sender.id())?;
        bind(args, m.client_msg_id.as_ref().map(|k| k.as_str()))
    })?;
    for (rows, args) in rounds {
        let rows: Vec<SqliteRow> = sqlx::query_with(&find_originals_sql(rows), args)
            .fetch_all(&mut *conn)
            .await
            .context("looking up client_msg_ids")?;
        for row in &rows {
            let position: i64 = sqlx::Row::try_get(row, "position").context("reading position")?;
            let mut original = codec::message(row)?;
            attachments::load_into(&mut *conn, original.tenant, &mut [&mut original]).await?;
            originals.insert(usize::try_from(position).context("bad position")?, original);
        }
    }
    Ok(originals)
}

/// Parameters per reply of [`find_reply_targets_sql`].
const REPLY_COLUMNS: usize = 4;

/// The positions of a `values` list whose reply target is a message of
/// their conversation.
pub(crate) fn find_reply_targets_sql(rows: usize) -> String {
    format!(
        "with r(position, id, conversation_id, tenant_id) as (values {}) \
         select r.position from r where exists (select 1 from messages as m \
             where m.id = r.id and m.conversation_id = r.conversation_id \
             and m.tenant_id = r.tenant_id)",
        placeholders(rows, REPLY_COLUMNS)
    )
}

/// The positions, among `positions`, of the sends whose `reply_to` names a
/// message of their conversation.
async fn find_reply_targets(
    tx: &mut SqliteConnection,
    batch: &[Append],
    positions: &[usize],
) -> anyhow::Result<HashSet<usize>> {
    let mut found = HashSet::new();
    let rounds = lookup_rounds(batch, positions, REPLY_COLUMNS, |args, m| {
        bind(args, m.reply_to.map(Uuid::from))?;
        bind(args, *m.conversation_id.as_uuid())?;
        bind(args, *m.tenant.as_uuid())
    })?;
    for (rows, args) in rounds {
        let positions: Vec<i64> = sqlx::query_scalar_with(&find_reply_targets_sql(rows), args)
            .fetch_all(&mut *tx)
            .await
            .context("checking the reply targets")?;
        for position in positions {
            found.insert(usize::try_from(position).context("bad position")?);
        }
    }
    Ok(found)
}

/// Parameters per message of [`insert_messages_sql`].
const MESSAGE_VALUES: usize = 10;
/// Parameters per conversation of [`bump_conversations_sql`].
const BUMP_VALUES: usize = 5;
/// Parameters per sender of [`advance_senders_sql`].
const SENDER_VALUES: usize = 6;

/// Stores the fresh messages.
pub(crate) fn insert_messages_sql(rows: usize) -> String {
    format!(
        "with v(id, tenant_id, conversation_id, seq, sender_type, sender_id, body, reply_to, \
             client_msg_id, created_at) as (values {}) \
         insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
             body, reply_to, client_msg_id, created_at) \
         select * from v where v.id is not null",
        placeholders(rows, MESSAGE_VALUES)
    )
}

/// Moves each conversation to its new message: newest seq and activity,
/// reopened when asked.
pub(crate) fn bump_conversations_sql(rows: usize) -> String {
    format!(
        "with v(id, tenant_id, last_seq, at, reopened) as (values {}) \
         update conversations set last_seq = v.last_seq, updated_at = v.at, \
             last_activity_at = v.at, \
             status = case when v.reopened then 'open' else status end \
         from v where conversations.id = v.id and conversations.tenant_id = v.tenant_id",
        placeholders(rows, BUMP_VALUES)
    )
}

/// Moves each sender's read marker to their message: the sender has seen
/// it, it never counts as unread for them.
pub(crate) fn advance_senders_sql(rows: usize) -> String {
    format!(
        "with v(tenant_id, conversation_id, reader_type, reader_id, seq, at) as (values {}) \
         insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
             last_read_seq, last_delivered_seq, updated_at) \
         select tenant_id, conversation_id, reader_type, reader_id, seq, seq, at \
         from v where v.conversation_id is not null \
         on conflict (conversation_id, reader_type, reader_id) do update set \
             last_read_seq = max(last_read_seq, excluded.last_read_seq), \
             last_delivered_seq = max(last_delivered_seq, excluded.last_delivered_seq), \
             updated_at = excluded.updated_at",
        placeholders(rows, SENDER_VALUES)
    )
}

/// Writes every fresh send: `insert_messages`, `bump_conversations` and
/// `advance_senders` as one round of three statements (sqlx runs them in
/// one call to the worker thread, each binding its own parameters in
/// order), one row each per send (one send per conversation).
async fn write_fresh(tx: &mut SqliteConnection, fresh: &[Fresh]) -> Result<(), StageError> {
    let most = MAX_VARIABLES / (MESSAGE_VALUES + BUMP_VALUES + SENDER_VALUES);
    for chunk in fresh.chunks(most) {
        let rows = padded(chunk.len(), most);
        let mut args = SqliteArguments::default();
        for f in chunk {
            let m = &f.message;
            bind(&mut args, *m.id.as_uuid())?;
            bind(&mut args, *m.tenant.as_uuid())?;
            bind(&mut args, *m.conversation_id.as_uuid())?;
            bind(&mut args, f.seq().as_i64())?;
            bind(&mut args, m.sender.kind())?;
            bind(&mut args, m.sender.id())?;
            bind(&mut args, m.body.as_ref().map(|b| b.as_str().to_owned()))?;
            bind(&mut args, m.reply_to.map(Uuid::from))?;
            bind(
                &mut args,
                m.client_msg_id.as_ref().map(|k| k.as_str().to_owned()),
            )?;
            bind(&mut args, codec::micros(m.created_at))?;
        }
        pad(&mut args, chunk.len(), rows, MESSAGE_VALUES)?;
        for f in chunk {
            let m = &f.message;
            bind(&mut args, *m.conversation_id.as_uuid())?;
            bind(&mut args, *m.tenant.as_uuid())?;
            bind(&mut args, f.seq().as_i64())?;
            bind(&mut args, codec::micros(m.created_at))?;
            bind(&mut args, f.reopened)?;
        }
        pad(&mut args, chunk.len(), rows, BUMP_VALUES)?;
        for f in chunk {
            let m = &f.message;
            bind(&mut args, *m.tenant.as_uuid())?;
            bind(&mut args, *m.conversation_id.as_uuid())?;
            bind(&mut args, m.sender.kind())?;
            bind(&mut args, codec::reader_id(m.sender))?;
            bind(&mut args, f.seq().as_i64())?;
            bind(&mut args, codec::micros(m.created_at))?;
        }
        pad(&mut args, chunk.len(), rows, SENDER_VALUES)?;
        let mut sql = insert_messages_sql(rows);
        let _ = write!(
            sql,
            "; {}; {}",
            bump_conversations_sql(rows),
            advance_senders_sql(rows)
        );
        match sqlx::query_with(&sql, args).execute(&mut *tx).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                return Err(StageError::ClientMsgIdTaken(
                    anyhow::Error::new(err).context("inserting messages"),
                ))
            }
            Err(err) => return Err(anyhow::Error::new(err).context("writing the sends").into()),
        }
    }
    Ok(())
}

/// Links the attachments of the fresh sends that carry some, in order.
async fn link_attachments(
    tx: &mut SqliteConnection,
    batch: &[Append],
    fresh: &mut [Fresh],
) -> Result<(), StageError> {
    for fresh in fresh {
        let new: &NewMessage = &batch[fresh.position].message;
        if !new.attachments.is_empty() {
            fresh.message.attachments = attachments::link(tx, new).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chat_app::batch_contract::{self, seqs};
    use chat_app::ConversationRepository;
    use chat_domain::{ConversationId, CustomerId, NewCustomerConversation, TenantId};

    use super::*;

    fn append(conversation: ConversationId, tenant: TenantId, key: &str) -> Append {
        batch_contract::append(conversation, tenant, key, codec::truncate)
    }

    async fn conversations(store: &SqliteStore, tenant: TenantId, n: usize) -> Vec<ConversationId> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let (conversation, _) = store
                .get_or_create_customer(&NewCustomerConversation {
                    id: ConversationId::from_uuid(Uuid::now_v7()),
                    tenant,
                    customer_id: CustomerId::from_uuid(Uuid::now_v7()),
                    clinician: None,
                    now: chrono::Utc::now(),
                })
                .await
                .unwrap();
            ids.push(conversation.id);
        }
        ids
    }

    #[tokio::test]
    async fn a_batch_gives_each_send_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&dir.path().join("batch.db"))
            .await
            .unwrap();
        batch_contract::a_batch_gives_each_send_its_own_outcome(
            &store,
            |batch| {
                let store = &store;
                async move { store.append_batch(&batch).await }
            },
            codec::truncate,
        )
        .await;
        store.close().await;
    }

    /// More rows than one round may bind take several rounds; rows padded to
    /// a statement's size store nothing.
    #[tokio::test]
    async fn a_batch_larger_than_one_round_is_stored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&dir.path().join("big.db"))
            .await
            .unwrap();
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let rows_per_round = MAX_VARIABLES / (MESSAGE_VALUES + BUMP_VALUES + SENDER_VALUES);
        let ids = conversations(&store, tenant, rows_per_round + 3).await;
        let batch: Vec<Append> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| append(id, tenant, &format!("k{i}")))
            .collect();
        let outcomes = store.append_batch(&batch).await.unwrap();
        assert!(seqs(&outcomes).iter().all(|s| *s == Some(1)));
        let again = store.append_batch(&batch).await.unwrap();
        assert!(seqs(&again).iter().all(Option::is_none), "all replayed");

        // Five sends are written as eight rows, three of them null: those
        // store nothing.
        let five: Vec<Append> = ids[..5]
            .iter()
            .map(|&id| append(id, tenant, "second"))
            .collect();
        let outcomes = store.append_batch(&five).await.unwrap();
        assert!(seqs(&outcomes).iter().all(|s| *s == Some(2)));
        let count = |table: &str| format!("select count(*) from {table}");
        for (table, expected) in [("messages", ids.len() + 5), ("read_states", ids.len())] {
            let stored: i64 = sqlx::query_scalar(&count(table))
                .fetch_one(&store.read)
                .await
                .unwrap();
            assert_eq!(usize::try_from(stored).unwrap(), expected, "{table}");
        }
        store.close().await;
    }
}
