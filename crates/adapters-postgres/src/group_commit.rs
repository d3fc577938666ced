//! Group commit of sends: concurrent appends of plain messages (no
//! attachments, no `reply_to`), of the same or different conversations,
//! share one transaction and so one WAL flush.
//!
//! A commit waits for the disk (a few milliseconds on ordinary storage), so
//! one transaction per message caps a node at a few hundred commits per
//! connection and second whatever the CPU could do. Here a collector task
//! takes whatever sends are waiting, up to [`MAX_BATCH`], and stores them
//! with a fixed number of set-based statements (lock, idempotency lookup,
//! one statement that writes everything), while up to
//! [`CONCURRENT_BATCHES`] batches are in flight; under light load a batch is
//! one message and costs what a lone transaction costs, under heavy load
//! batches grow by themselves.
//!
//! The guarantees of a single append hold for each message of a batch:
//!
//! - `seq` stays gap-free and follows arrival order: a batch holds at most
//!   one send per conversation (the next waits for a later batch, which
//!   waits for the lock), locks its conversations in id order (so two
//!   batches, or a batch and a lone append, never deadlock) and reads their
//!   `last_seq` under the lock.
//! - Idempotency: keys already stored replay their original (a key cannot
//!   repeat within a batch: it holds one send per conversation).
//! - Per-send outcomes: a missing conversation fails that send only. Any
//!   unexpected failure before the commit rolls the batch back and stores
//!   its messages one transaction each, so one bad send cannot fail the
//!   others; a failed commit fails the batch's sends (as a failed commit of
//!   a lone append fails its send).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use chat_app::append_batch::{self, Outcome, Pending};
use chat_app::{AppendError, AppendOutcome};
use chat_domain::{Message, NewMessage, Seq};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::rows::{self, PLAIN};
use crate::{attachments, PostgresStore};

/// Most messages per transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Batches in flight at once (each holds one pooled connection). One: the
/// sends that arrive while a batch runs make the next one, so batches grow
/// with the load and PostgreSQL runs a fixed number of statements for many
/// messages. Measured with the `max` benchmark on 2 cores where a WAL flush
/// takes 0.13 ms: one batch in flight sustained 3,000 msgs/s, two only
/// 2,000 (smaller batches, more statements per message, PostgreSQL short of
/// CPU); on a disk with 3 ms flushes two had been slightly better at 1,000
/// msgs/s (p99 18 ms against 23 ms).
pub(crate) const CONCURRENT_BATCHES: usize = 1;
/// Sends waiting for a batch before submitters wait too.
const QUEUE: usize = 8192;

/// Starts a group commit's collector task on the current runtime; it ends
/// when the last [`append_batch::Submitter`] returned is dropped.
pub(crate) fn start(pool: PgPool) -> append_batch::Submitter {
    let (submitter, collector) = append_batch::channel(QUEUE, MAX_BATCH);
    tokio::spawn(collect(pool, collector));
    submitter
}

async fn collect(pool: PgPool, mut collector: append_batch::Collector) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_BATCHES));
    // Lone appends (the fallback) on a store without a group commit of its
    // own.
    let single = PostgresStore::from_pool(pool.clone());
    while collector.ready().await {
        // While every slot is busy, sends pile up: they make the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        // At most one send per conversation per batch: the next one waits
        // for a later batch, which waits for this one's lock. Each send is
        // then acknowledged (and its event published) after the previous
        // one of its conversation, in order, as with lone appends.
        let batch = collector.take_batch();
        let pool = pool.clone();
        let single = single.clone();
        tokio::spawn(async move {
            run(&pool, &single, batch).await;
            drop(slot);
        });
    }
}

async fn run(pool: &PgPool, single: &PostgresStore, batch: Vec<Pending>) {
    let staged = async {
        let mut tx = pool.begin().await.context("starting a batch")?;
        let outcomes = stage(&mut tx, &batch).await?;
        anyhow::Ok((tx, outcomes))
    }
    .await;
    for pending in append_batch::settle(batch, staged, |tx| tx.commit()).await {
        let outcome = single.append_one(&pending.message, pending.reopen).await;
        let _ = pending.done.send(outcome);
    }
}

/// Runs the batch's statements in `tx` and returns each send's outcome.
async fn stage(tx: &mut PgConnection, batch: &[Pending]) -> anyhow::Result<Vec<Outcome>> {
    // 1. Lock every conversation of the batch (one send each), in id order.
    let ids: Vec<Uuid> = batch
        .iter()
        .map(|p| *p.message.conversation_id.as_uuid())
        .collect();
    // `id = any(..)`: primary key lookups whatever the planner estimates
    // (a join with the arrays may be planned as a scan of the table).
    // Read whole: each send's outcome carries its conversation as the
    // batch leaves it, and nothing else can change them under the locks.
    let locked = sqlx::query(&format!(
        "select {} from conversations where id = any($1::uuid[]) \
         order by id for no key update",
        rows::CONVERSATION_COLUMNS
    ))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .context("locking the batch's conversations")?;
    let mut conversations = append_batch::by_key(
        locked
            .iter()
            .map(rows::conversation)
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let key = append_batch::key;

    // 2. Keys already stored: under the locks, every earlier send of these
    // conversations is committed or rolled back.
    let keyed: Vec<usize> = (0..batch.len())
        .filter(|&i| {
            let m = &batch[i].message;
            m.client_msg_id.is_some() && conversations.contains_key(&key(m))
        })
        .collect();
    let mut originals: HashMap<usize, Message> = HashMap::new();
    if !keyed.is_empty() {
        let column = |f: &dyn Fn(&NewMessage) -> Uuid| -> Vec<Uuid> {
            keyed.iter().map(|&i| f(&batch[i].message)).collect()
        };
        let conversations = column(&|m| *m.conversation_id.as_uuid());
        let tenants = column(&|m| *m.tenant.as_uuid());
        let client_msg_ids: Vec<&str> = keyed
            .iter()
            .filter_map(|&i| batch[i].message.client_msg_id.as_ref().map(|k| k.as_str()))
            .collect();
        let sender_types: Vec<&str> = keyed
            .iter()
            .map(|&i| batch[i].message.sender.kind())
            .collect();
        let sender_ids: Vec<Option<Uuid>> = keyed
            .iter()
            .map(|&i| batch[i].message.sender.id())
            .collect();
        let positions: Vec<i32> = keyed
            .iter()
            .map(|&i| i32::try_from(i).unwrap_or(i32::MAX))
            .collect();
        // One index lookup per key (lateral), never a scan of messages.
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
        .bind(&conversations)
        .bind(&tenants)
        .bind(&client_msg_ids)
        .bind(&sender_types)
        .bind(&sender_ids)
        .bind(&positions)
        .fetch_all(&mut *tx)
        .await
        .context("looking up the batch's client_msg_ids")?;
        for row in &found {
            let position: i32 = sqlx::Row::try_get(row, "position").context("reading position")?;
            let mut original = rows::message(row, &PLAIN)?;
            attachments::load_into(&mut *tx, original.tenant, &mut [&mut original]).await?;
            originals.insert(
                usize::try_from(position).context("negative position")?,
                original,
            );
        }
    }

    // 3. Seqs in arrival order: each send is either answered already or
    // stored now as the next message of its conversation.
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
    let mut fresh: Vec<(&Pending, Seq, bool)> = Vec::new();
    for (i, pending) in batch.iter().enumerate() {
        let m = &pending.message;
        let Some(conversation) = conversations.get(&key(m)) else {
            outcomes.push(Some(Err(AppendError::ConversationNotFound)));
            continue;
        };
        if let Some(original) = originals.remove(&i) {
            outcomes.push(Some(Ok(AppendOutcome::Replayed(original))));
            continue;
        }
        fresh.push((
            pending,
            conversation.last_seq.next(),
            conversation.reopens(pending.reopen),
        ));
        outcomes.push(None);
    }

    // 4. One statement writes everything: the new messages, their
    // conversations (newest seq and activity, reopened when asked) and
    // their senders' read markers, one row each (one send per conversation).
    let mut stored: HashMap<Uuid, Message> = HashMap::new();
    if !fresh.is_empty() {
        let column = |f: &dyn Fn(&NewMessage) -> Uuid| -> Vec<Uuid> {
            fresh.iter().map(|(p, ..)| f(&p.message)).collect()
        };
        let inserted = sqlx::query(&format!(
            "with inserted as ( \
                 insert into messages (id, tenant_id, conversation_id, seq, sender_type, \
                     sender_id, body, client_msg_id, created_at) \
                 select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], \
                     $5::text[], $6::uuid[], $7::text[], $8::text[], $9::timestamptz[]) \
                 returning {columns}), \
             bumped as ( \
                 update conversations as c set last_seq = v.last_seq, updated_at = v.at, \
                     last_activity_at = v.at, \
                     status = case when v.reopen then 'open' else c.status end \
                 from unnest($3::uuid[], $2::uuid[], $4::int8[], $9::timestamptz[], \
                     $10::bool[]) as v(id, tenant_id, last_seq, at, reopen) \
                 where c.id = any($3::uuid[]) and c.id = v.id and c.tenant_id = v.tenant_id), \
             marked as ( \
                 insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                     last_read_seq, last_delivered_seq, updated_at) \
                 select v.tenant_id, v.conversation_id, v.reader_type, v.reader_id, v.seq, \
                     v.seq, v.at \
                 from unnest($2::uuid[], $3::uuid[], $5::text[], $11::uuid[], $4::int8[], \
                     $9::timestamptz[]) \
                     as v(tenant_id, conversation_id, reader_type, reader_id, seq, at) \
                 on conflict (conversation_id, reader_type, reader_id) do update set \
                     last_read_seq = greatest(read_states.last_read_seq, excluded.last_read_seq), \
                     last_delivered_seq = \
                         greatest(read_states.last_delivered_seq, excluded.last_delivered_seq), \
                     updated_at = excluded.updated_at) \
             select * from inserted",
            columns = rows::MESSAGE_COLUMNS
        ))
        .bind(column(&|m| *m.id.as_uuid()))
        .bind(column(&|m| *m.tenant.as_uuid()))
        .bind(column(&|m| *m.conversation_id.as_uuid()))
        .bind(
            fresh
                .iter()
                .map(|(_, seq, _)| seq.as_i64())
                .collect::<Vec<_>>(),
        )
        .bind(
            fresh
                .iter()
                .map(|(p, ..)| p.message.sender.kind())
                .collect::<Vec<_>>(),
        )
        .bind(
            fresh
                .iter()
                .map(|(p, ..)| p.message.sender.id())
                .collect::<Vec<_>>(),
        )
        .bind(
            fresh
                .iter()
                .map(|(p, ..)| p.message.body.as_ref().map(|b| b.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            fresh
                .iter()
                .map(|(p, ..)| p.message.client_msg_id.as_ref().map(|k| k.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            fresh
                .iter()
                .map(|(p, ..)| p.message.created_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            fresh
                .iter()
                .map(|(_, _, reopens)| *reopens)
                .collect::<Vec<_>>(),
        )
        .bind(column(&|m| rows::reader_id(m.sender)))
        .fetch_all(&mut *tx)
        .await
        .context("writing the batch")?;
        for row in &inserted {
            let message = rows::message(row, &PLAIN)?;
            stored.insert(*message.id.as_uuid(), message);
        }
    }

    let mut fresh = fresh.into_iter();
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Some(outcome) => Ok(outcome),
            None => {
                let (pending, seq, _) = fresh.next().context("a batched send went missing")?;
                let message = stored
                    .remove(pending.message.id.as_uuid())
                    .context("a batched message was not stored")?;
                // One send per conversation: each is taken once.
                let mut conversation = conversations
                    .remove(&key(&pending.message))
                    .context("a batched conversation went missing")?;
                let reopened = conversation.record_message(seq, message.created_at, pending.reopen);
                Ok(Ok(AppendOutcome::Created {
                    message,
                    conversation,
                    reopened,
                }))
            }
        })
        .collect()
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use chat_app::ConversationRepository;
    use chat_domain::{
        ClientMsgId, ConversationId, CustomerId, MessageBody, MessageId, NewCustomerConversation,
        Sender, TenantId,
    };

    use super::*;

    fn pending(conversation: ConversationId, tenant: TenantId, key: &str) -> Pending {
        let (done, _) = tokio::sync::oneshot::channel();
        Pending {
            message: NewMessage {
                id: MessageId::from_uuid(Uuid::now_v7()),
                tenant,
                conversation_id: conversation,
                sender: Sender::Customer(CustomerId::from_uuid(Uuid::from_u128(7))),
                body: Some(MessageBody::parse("batched").unwrap()),
                attachments: Vec::new(),
                reply_to: None,
                client_msg_id: Some(ClientMsgId::parse(key).unwrap()),
                created_at: chrono::Utc::now(),
            },
            reopen: false,
            done,
        }
    }

    #[tokio::test]
    async fn a_batch_gives_each_send_its_own_outcome() {
        let url = crate::testing::fresh_database(&crate::testing::admin_url())
            .await
            .unwrap();
        let store = PostgresStore::connect(&url, 2).await.unwrap();
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let mut conversations = Vec::new();
        for _ in 0..2 {
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
            conversations.push(conversation.id);
        }
        let other_tenant = TenantId::from_uuid(Uuid::now_v7());
        let batch = vec![
            pending(conversations[0], tenant, "a"),
            pending(conversations[1], tenant, "b"),
            pending(conversations[0], other_tenant, "c"),
        ];
        let mut tx = store.pool.begin().await.unwrap();
        let outcomes = stage(&mut tx, &batch).await.unwrap();
        tx.commit().await.unwrap();
        let seqs: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                Ok(AppendOutcome::Created { message, .. }) => Some(message.seq.get()),
                Ok(AppendOutcome::Replayed(_)) => panic!("nothing to replay"),
                Err(AppendError::ConversationNotFound) => None,
                Err(err) => panic!("{err}"),
            })
            .collect();
        assert_eq!(seqs, [Some(1), Some(1), None]);

        // The same key again replays the stored message; a new one follows.
        let again = vec![
            pending(conversations[0], tenant, "a"),
            pending(conversations[1], tenant, "d"),
        ];
        let mut tx = store.pool.begin().await.unwrap();
        let outcomes = stage(&mut tx, &again).await.unwrap();
        tx.commit().await.unwrap();
        match &outcomes[0] {
            Ok(AppendOutcome::Replayed(m)) => {
                assert_eq!(m.id, batch[0].message.id);
                assert_eq!(m.seq.get(), 1);
            }
            other => panic!("{other:?}"),
        }
        match &outcomes[1] {
            Ok(AppendOutcome::Created { message, .. }) => assert_eq!(message.seq.get(), 2),
            other => panic!("{other:?}"),
        }
    }
}
