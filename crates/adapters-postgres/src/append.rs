//! The append of messages, one code path for every send: a batch of the
//! group commit ([`crate::group_commit`]) and a lone send (attachments, a
//! `reply_to`, the fallback of a failed batch), which is a batch of one.
//!
//! A batch is one transaction of a fixed number of set-based statements
//! whatever its size (see [`chat_app::store_support`] for the steps):
//!
//! 1. `load_state`: `load_conversations` locks the batch's conversations
//!    (`for no key update`, in id order, so two batches, or a batch and a
//!    lone send, never deadlock) and reads them whole; `find_originals`
//!    looks up the `client_msg_id`s already stored and `find_reply_targets`
//!    the reply targets, each one statement, only when a send needs it.
//!    Under the locks every earlier send of these conversations is
//!    committed or rolled back.
//! 2. `assign`: seqs and outcomes ([`store_support::assign`]).
//! 3. `write_fresh`: one statement whose parts `insert_messages`,
//!    `bump_conversations` and `advance_senders` store the new messages,
//!    their conversations' newest seq and activity (reopened when asked)
//!    and their senders' read markers; then `link_attachments`, one
//!    statement per file, only for a send that carries some.
//! 4. Commit, or roll back when nothing was written.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use chat_app::store_support::{
    self, Append, Assigned, BatchError, Fresh, Outcome, StageError, State,
};
use chat_app::AppendOutcome;
use chat_domain::{Conversation, Message, NewMessage};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::rows::{self, CONVERSATION_COLUMNS, PLAIN};
use crate::{attachments, PostgresStore};

/// The unique index behind idempotent sends (see the migration).
const CLIENT_MSG_ID_KEY: &str = "messages_client_msg_id_key";

impl PostgresStore {
    /// Appends `batch` (at most one send per conversation) in one
    /// transaction; each send's outcome, in batch order, once committed.
    pub(crate) async fn append_batch(&self, batch: &[Append]) -> Result<Vec<Outcome>, BatchError> {
        // Dropping `tx` on an early return rolls it back.
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting the append transaction")
            .map_err(StageError::from)?;
        let assigned = stage(&mut tx, batch).await?;
        if assigned.writes() {
            tx.commit()
                .await
                .map_err(|err| BatchError::Commit(err.into()))?;
        } else {
            // Replays and refusals: nothing to make durable.
            tx.rollback()
                .await
                .context("ending an append that stored nothing")
                .map_err(StageError::from)?;
        }
        Ok(assigned.into_outcomes())
    }

    /// One send in a transaction of its own: a batch of one.
    #[tracing::instrument(
        skip_all,
        fields(
            conversation_id = %append.message.conversation_id,
            message_id = %append.message.id,
            seq,
            replayed
        )
    )]
    pub(crate) async fn append_alone(&self, append: &Append) -> Outcome {
        let outcome = match self.append_batch(std::slice::from_ref(append)).await {
            Ok(mut outcomes) => outcomes
                .pop()
                .context("a batch of one without its outcome")?,
            Err(err) => match err.into_lone_error() {
                Ok(err) => Err(err),
                // Unreachable while every append takes the row lock first,
                // but a writer that does not must still get the idempotent
                // answer.
                Err(_) => Ok(AppendOutcome::Replayed(
                    self.replayed_after_conflict(&append.message).await?,
                )),
            },
        };
        let span = tracing::Span::current();
        match &outcome {
            Ok(AppendOutcome::Created { message, .. }) => {
                span.record("seq", message.seq.get());
                span.record("replayed", false);
            }
            Ok(AppendOutcome::Replayed(_)) => {
                span.record("replayed", true);
            }
            Err(_) => {}
        }
        outcome
    }

    /// The original of a send that lost the race on [`CLIENT_MSG_ID_KEY`].
    async fn replayed_after_conflict(&self, message: &NewMessage) -> anyhow::Result<Message> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("acquiring a connection")?;
        let lone = [Append {
            message: message.clone(),
            reopen: false,
        }];
        find_originals(&mut conn, &lone, &[0])
            .await?
            .remove(&0)
            .context("the message that won the client_msg_id race is gone")
    }
}

/// Runs the batch's steps in `tx`.
async fn stage(tx: &mut PgConnection, batch: &[Append]) -> Result<Assigned, StageError> {
    let state = load_state(tx, batch).await?;
    let mut assigned = store_support::assign(batch, state)?;
    if assigned.writes() {
        write_fresh(tx, assigned.fresh()).await?;
        // After the insert: the links reference the message rows.
        link_attachments(tx, batch, assigned.fresh_mut()).await?;
    }
    Ok(assigned)
}

/// What the batch's sends find, under the locks of their conversations.
async fn load_state(tx: &mut PgConnection, batch: &[Append]) -> anyhow::Result<State> {
    let mut state = State::new(load_conversations(tx, batch).await?);
    let keyed = state.keyed(batch);
    state.originals = find_originals(tx, batch, &keyed).await?;
    let replying = state.replying(batch);
    state.reply_targets = find_reply_targets(tx, batch, &replying).await?;
    Ok(state)
}

/// Locks the batch's conversations (one send each), in id order, and reads
/// them whole: each send's outcome carries its conversation as the batch
/// leaves it, and nothing else can change them under the locks.
async fn load_conversations(
    tx: &mut PgConnection,
    batch: &[Append],
) -> anyhow::Result<Vec<Conversation>> {
    let ids: Vec<Uuid> = batch
        .iter()
        .map(|a| *a.message.conversation_id.as_uuid())
        .collect();
    // `id = any(..)`: primary key lookups whatever the planner estimates (a
    // join with the array may be planned as a scan of the table). `no key
    // update` is enough (no key changes) and leaves foreign-key checks of
    // other writers, such as receipts, unblocked.
    let locked = sqlx::query(&format!(
        "select {CONVERSATION_COLUMNS} from conversations where id = any($1::uuid[]) \
         order by id for no key update"
    ))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .context("locking the batch's conversations")?;
    locked.iter().map(rows::conversation).collect()
}

/// The messages already stored under the `client_msg_id`s of the sends at
/// `positions` (same sender, same conversation), by position; one index
/// lookup per key.
async fn find_originals(
    conn: &mut PgConnection,
    batch: &[Append],
    positions: &[usize],
) -> anyhow::Result<HashMap<usize, Message>> {
    let mut originals = HashMap::new();
    if positions.is_empty() {
        return Ok(originals);
    }
    let column = |f: &dyn Fn(&NewMessage) -> Uuid| -> Vec<Uuid> {
        positions.iter().map(|&i| f(&batch[i].message)).collect()
    };
    let client_msg_ids: Vec<Option<&str>> = positions
        .iter()
        .map(|&i| batch[i].message.client_msg_id.as_ref().map(|k| k.as_str()))
        .collect();
    let sender_types: Vec<&str> = positions
        .iter()
        .map(|&i| batch[i].message.sender.kind())
        .collect();
    let sender_ids: Vec<Option<Uuid>> = positions
        .iter()
        .map(|&i| batch[i].message.sender.id())
        .collect();
    let found = sqlx::query(
        "select m.*, k.position \
         from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::int4[]) \
             as k(conversation_id, tenant_id, client_msg_id, sender_type, sender_id, position) \
         cross join lateral (select * from messages as m \
             where m.conversation_id = k.conversation_id and m.client_msg_id = k.client_msg_id \
             and m.sender_type = k.sender_type \
             and m.sender_id is not distinct from k.sender_id and m.tenant_id = k.tenant_id \
             limit 1) as m",
    )
    .bind(column(&|m| *m.conversation_id.as_uuid()))
    .bind(column(&|m| *m.tenant.as_uuid()))
    .bind(&client_msg_ids)
    .bind(&sender_types)
    .bind(&sender_ids)
    .bind(positions_column(positions)?)
    .fetch_all(&mut *conn)
    .await
    .context("looking up client_msg_ids")?;
    for row in &found {
        let position: i32 = sqlx::Row::try_get(row, "position").context("reading position")?;
        let mut original = rows::message(row, &PLAIN)?;
        attachments::load_into(&mut *conn, original.tenant, &mut [&mut original]).await?;
        originals.insert(
            usize::try_from(position).context("negative position")?,
            original,
        );
    }
    Ok(originals)
}

/// The positions, among `positions`, of the sends whose `reply_to` names a
/// message of their conversation.
async fn find_reply_targets(
    tx: &mut PgConnection,
    batch: &[Append],
    positions: &[usize],
) -> anyhow::Result<HashSet<usize>> {
    if positions.is_empty() {
        return Ok(HashSet::new());
    }
    let column = |f: &dyn Fn(&NewMessage) -> Option<Uuid>| -> Vec<Option<Uuid>> {
        positions.iter().map(|&i| f(&batch[i].message)).collect()
    };
    let found: Vec<i32> = sqlx::query_scalar(
        "select k.position \
         from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int4[]) \
             as k(id, conversation_id, tenant_id, position) \
         where exists (select 1 from messages as m \
             where m.id = k.id and m.conversation_id = k.conversation_id \
             and m.tenant_id = k.tenant_id)",
    )
    .bind(column(&|m| m.reply_to.map(Uuid::from)))
    .bind(column(&|m| Some(*m.conversation_id.as_uuid())))
    .bind(column(&|m| Some(*m.tenant.as_uuid())))
    .bind(positions_column(positions)?)
    .fetch_all(&mut *tx)
    .await
    .context("checking the reply targets")?;
    found
        .into_iter()
        .map(|position| usize::try_from(position).context("negative position"))
        .collect()
}

fn positions_column(positions: &[usize]) -> anyhow::Result<Vec<i32>> {
    positions
        .iter()
        .map(|&i| i32::try_from(i).context("batch position overflows"))
        .collect()
}

/// One statement writes every fresh send: `insert_messages`, then
/// `bump_conversations` (newest seq and activity, reopened when asked) and
/// `advance_senders` (the sender has read what they wrote), one row each
/// (one send per conversation).
async fn write_fresh(tx: &mut PgConnection, fresh: &[Fresh]) -> Result<(), StageError> {
    let column = |f: &dyn Fn(&Fresh) -> Uuid| -> Vec<Uuid> { fresh.iter().map(f).collect() };
    let written: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "with insert_messages as ( \
             insert into messages (id, tenant_id, conversation_id, seq, sender_type, \
                 sender_id, body, reply_to, client_msg_id, created_at) \
             select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], \
                 $5::text[], $6::uuid[], $7::text[], $8::uuid[], $9::text[], \
                 $10::timestamptz[]) \
             returning id), \
         bump_conversations as ( \
             update conversations as c set last_seq = v.last_seq, updated_at = v.at, \
                 last_activity_at = v.at, \
                 status = case when v.reopened then 'open' else c.status end \
             from unnest($3::uuid[], $2::uuid[], $4::int8[], $10::timestamptz[], \
                 $11::bool[]) as v(id, tenant_id, last_seq, at, reopened) \
             where c.id = any($3::uuid[]) and c.id = v.id and c.tenant_id = v.tenant_id), \
         advance_senders as ( \
             insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                 last_read_seq, last_delivered_seq, updated_at) \
             select v.tenant_id, v.conversation_id, v.reader_type, v.reader_id, v.seq, \
                 v.seq, v.at \
             from unnest($2::uuid[], $3::uuid[], $5::text[], $12::uuid[], $4::int8[], \
                 $10::timestamptz[]) \
                 as v(tenant_id, conversation_id, reader_type, reader_id, seq, at) \
             on conflict (conversation_id, reader_type, reader_id) do update set \
                 last_read_seq = greatest(read_states.last_read_seq, excluded.last_read_seq), \
                 last_delivered_seq = \
                     greatest(read_states.last_delivered_seq, excluded.last_delivered_seq), \
                 updated_at = excluded.updated_at) \
         select count(*) from insert_messages",
    )
    .bind(column(&|f| *f.message.id.as_uuid()))
    .bind(column(&|f| *f.message.tenant.as_uuid()))
    .bind(column(&|f| *f.message.conversation_id.as_uuid()))
    .bind(fresh.iter().map(|f| f.seq().as_i64()).collect::<Vec<_>>())
    .bind(
        fresh
            .iter()
            .map(|f| f.message.sender.kind())
            .collect::<Vec<_>>(),
    )
    .bind(
        fresh
            .iter()
            .map(|f| f.message.sender.id())
            .collect::<Vec<_>>(),
    )
    .bind(
        fresh
            .iter()
            .map(|f| f.message.body.as_ref().map(|b| b.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(
        fresh
            .iter()
            .map(|f| f.message.reply_to.map(Uuid::from))
            .collect::<Vec<_>>(),
    )
    .bind(
        fresh
            .iter()
            .map(|f| f.message.client_msg_id.as_ref().map(|k| k.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(
        fresh
            .iter()
            .map(|f| f.message.created_at)
            .collect::<Vec<_>>(),
    )
    .bind(fresh.iter().map(|f| f.reopened).collect::<Vec<_>>())
    .bind(column(&|f| rows::reader_id(f.message.sender)))
    .fetch_one(&mut *tx)
    .await;
    match written {
        Ok(count) if usize::try_from(count).ok() == Some(fresh.len()) => Ok(()),
        Ok(count) => Err(anyhow::anyhow!("{count} of {} messages were stored", fresh.len()).into()),
        Err(sqlx::Error::Database(err)) if err.constraint() == Some(CLIENT_MSG_ID_KEY) => Err(
            StageError::ClientMsgIdTaken(anyhow::Error::new(err).context("inserting messages")),
        ),
        Err(err) => Err(anyhow::Error::new(err).context("writing the sends").into()),
    }
}

/// Links the attachments of the fresh sends that carry some, in order;
/// the conversation rows are locked, so two sends cannot link one upload
/// twice.
async fn link_attachments(
    tx: &mut PgConnection,
    batch: &[Append],
    fresh: &mut [Fresh],
) -> Result<(), StageError> {
    for fresh in fresh {
        let new = &batch[fresh.position].message;
        if !new.attachments.is_empty() {
            fresh.message.attachments = attachments::link(tx, new).await?;
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_gives_each_send_its_own_outcome() {
        let url = crate::testing::fresh_database(&crate::testing::admin_url())
            .await
            .unwrap();
        let store = PostgresStore::connect(&url, 2).await.unwrap();
        chat_app::batch_contract::a_batch_gives_each_send_its_own_outcome(
            &store,
            |batch| {
                let store = &store;
                async move { store.append_batch(&batch).await }
            },
            rows::truncate,
        )
        .await;
    }
}
