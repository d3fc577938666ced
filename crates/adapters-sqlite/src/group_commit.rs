//! Group commit of sends on the single writer: concurrent appends of plain
//! messages (no attachments, no `reply_to`) share one `begin immediate`
//! transaction.
//!
//! Every statement costs a round trip to the connection's worker thread,
//! so the one writer connection, one statement at a time, caps a lone
//! append per transaction at a little over a thousand per second. Here a
//! collector task takes whatever sends are waiting, up to [`MAX_BATCH`],
//! and stores them with five set-based statements whatever their number,
//! the rows passed as one JSON array (`json_each`, ids as hex); while a
//! batch runs, the next one gathers.
//!
//! The guarantees of a lone append hold for each message:
//!
//! - `seq` is gap-free and follows arrival order: the writer transaction
//!   excludes every other writer, at most one send per conversation goes
//!   into a batch (the next waits for the next batch), and each reads its
//!   conversation's `last_seq` in the transaction.
//! - Idempotency: keys already stored replay their original.
//! - Per-send outcomes: a missing conversation fails that send only; any
//!   unexpected failure before the commit rolls the batch back and stores
//!   its messages one transaction each; a failed commit fails the batch's
//!   sends.

use std::collections::HashMap;

use anyhow::Context as _;
use chat_app::append_batch::{self, Outcome, Pending};
use chat_app::{AppendError, AppendOutcome};
use chat_domain::Message;
use serde_json::{json, Value};
use sqlx::SqliteConnection;

use uuid::Uuid;

use crate::codec::{self, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use crate::{attachments, SqliteStore};

/// Most messages per transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Sends waiting for a batch before submitters wait too.
const QUEUE: usize = 8192;

/// Starts a group commit's collector task on the current runtime; it
/// appends through `store` (whose own group commit it never uses) and ends
/// when the last [`append_batch::Submitter`] returned is dropped.
pub(crate) fn start(store: SqliteStore) -> append_batch::Submitter {
    let (submitter, collector) = append_batch::channel(QUEUE, MAX_BATCH);
    tokio::spawn(collect(store, collector));
    submitter
}

async fn collect(store: SqliteStore, mut collector: append_batch::Collector) {
    while collector.ready().await {
        // One writer: the batch runs here, and the next one gathers
        // meanwhile in the channel.
        run(&store, collector.take_batch()).await;
    }
}

async fn run(store: &SqliteStore, batch: Vec<Pending>) {
    let staged = async {
        let mut tx = store.begin_write().await?;
        let outcomes = stage(&mut tx, &batch).await?;
        anyhow::Ok((tx, outcomes))
    }
    .await;
    for pending in append_batch::settle(batch, staged, |tx| tx.commit()).await {
        let outcome = store.append_one(&pending.message, pending.reopen).await;
        let _ = pending.done.send(outcome);
    }
}

fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

/// Runs the batch's statements in `tx` and returns each send's outcome.
async fn stage(tx: &mut SqliteConnection, batch: &[Pending]) -> anyhow::Result<Vec<Outcome>> {
    // 1. The conversations and their last seq (the writer transaction holds
    // the database's only write lock).
    // One send per conversation per batch: the ids are distinct.
    let ids: Vec<String> = batch
        .iter()
        .map(|p| hex(*p.message.conversation_id.as_uuid()))
        .collect();
    // Read whole: each send's outcome carries its conversation as the batch
    // leaves it.
    let found = sqlx::query(&format!(
        "select {CONVERSATION_COLUMNS} from conversations c \
         where c.id in (select unhex(value) from json_each(?1))"
    ))
    .bind(Value::from(ids).to_string())
    .fetch_all(&mut *tx)
    .await
    .context("reading the batch's conversations")?;
    let mut conversations = append_batch::by_key(
        found
            .iter()
            .map(codec::conversation)
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let key = append_batch::key;

    // 2. Keys already stored.
    let keyed: Vec<Value> = batch
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.message.client_msg_id.is_some() && conversations.contains_key(&key(&p.message))
        })
        .map(|(i, p)| {
            let m = &p.message;
            json!({
                "i": i,
                "c": hex(*m.conversation_id.as_uuid()),
                "n": hex(*m.tenant.as_uuid()),
                "t": m.sender.kind(),
                "s": m.sender.id().map(hex),
                "k": m.client_msg_id.as_ref().map(|k| k.as_str()),
            })
        })
        .collect();
    let mut originals: HashMap<usize, Message> = HashMap::new();
    if !keyed.is_empty() {
        // The terms match `messages_client_msg_id_key`: one index lookup per
        // key.
        let rows = sqlx::query(&format!(
            "select {MESSAGE_COLUMNS}, k.value ->> '$.i' as position \
             from json_each(?1) as k \
             join messages as m on m.conversation_id = unhex(k.value ->> '$.c') \
                 and m.sender_type = (k.value ->> '$.t') \
                 and coalesce(m.sender_id, x'') = coalesce(unhex(k.value ->> '$.s'), x'') \
                 and m.client_msg_id = (k.value ->> '$.k') and m.client_msg_id is not null \
                 and m.tenant_id = unhex(k.value ->> '$.n')"
        ))
        .bind(Value::from(keyed).to_string())
        .fetch_all(&mut *tx)
        .await
        .context("looking up the batch's client_msg_ids")?;
        for row in &rows {
            let position: i64 = sqlx::Row::try_get(row, "position").context("reading position")?;
            let mut original = codec::message(row)?;
            attachments::load_into(&mut *tx, original.tenant, &mut [&mut original]).await?;
            originals.insert(usize::try_from(position).context("bad position")?, original);
        }
    }

    // 3. Seqs in arrival order (one send per conversation per batch).
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
    let mut messages = Vec::new();
    let mut bumps = Vec::new();
    let mut markers = Vec::new();
    for (i, pending) in batch.iter().enumerate() {
        let new = &pending.message;
        let Some(conversation) = conversations.get(&key(new)) else {
            outcomes.push(Err(AppendError::ConversationNotFound));
            continue;
        };
        if let Some(original) = originals.remove(&i) {
            outcomes.push(Ok(AppendOutcome::Replayed(original)));
            continue;
        }
        let seq = conversation.last_seq.next();
        let mut message = new.clone().into_message(seq, Vec::new());
        message.created_at = codec::truncate(message.created_at);
        // One send per conversation: each is taken once.
        let mut after = conversations
            .remove(&key(new))
            .context("a batched conversation went missing")?;
        let reopened = after.record_message(seq, message.created_at, pending.reopen);
        let at = codec::micros(message.created_at);
        let conversation = hex(*new.conversation_id.as_uuid());
        let tenant = hex(*new.tenant.as_uuid());
        messages.push(json!({
            "id": hex(*message.id.as_uuid()),
            "n": tenant,
            "c": conversation,
            "q": seq.as_i64(),
            "t": new.sender.kind(),
            "s": new.sender.id().map(hex),
            "b": new.body.as_ref().map(|b| b.as_str()),
            "k": new.client_msg_id.as_ref().map(|k| k.as_str()),
            "at": at,
        }));
        bumps.push(
            json!({"c": conversation, "n": tenant, "q": seq.as_i64(), "at": at, "r": reopened}),
        );
        markers.push(json!({
            "n": tenant,
            "c": conversation,
            "t": new.sender.kind(),
            "r": hex(codec::reader_id(new.sender)),
            "q": seq.as_i64(),
            "at": at,
        }));
        outcomes.push(Ok(AppendOutcome::Created {
            message,
            conversation: after,
            reopened,
        }));
    }
    if messages.is_empty() {
        return Ok(outcomes);
    }

    // 4. The messages, the conversations, the senders' read markers.
    sqlx::query(
        "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
             body, client_msg_id, created_at) \
         select unhex(value ->> '$.id'), unhex(value ->> '$.n'), unhex(value ->> '$.c'), \
             value ->> '$.q', value ->> '$.t', unhex(value ->> '$.s'), value ->> '$.b', \
             value ->> '$.k', value ->> '$.at' \
         from json_each(?1)",
    )
    .bind(Value::from(messages).to_string())
    .execute(&mut *tx)
    .await
    .context("inserting the batch's messages")?;
    sqlx::query(
        "update conversations set last_seq = v.q, updated_at = v.at, last_activity_at = v.at, \
             status = case when v.r then 'open' else status end \
         from (select unhex(value ->> '$.c') as id, unhex(value ->> '$.n') as tenant_id, \
                 value ->> '$.q' as q, value ->> '$.at' as at, value ->> '$.r' as r \
             from json_each(?1)) as v \
         where conversations.id = v.id and conversations.tenant_id = v.tenant_id",
    )
    .bind(Value::from(bumps).to_string())
    .execute(&mut *tx)
    .await
    .context("bumping the batch's conversations")?;
    sqlx::query(
        "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
             last_read_seq, last_delivered_seq, updated_at) \
         select unhex(value ->> '$.n'), unhex(value ->> '$.c'), value ->> '$.t', \
             unhex(value ->> '$.r'), value ->> '$.q', value ->> '$.q', value ->> '$.at' \
         from json_each(?1) where true \
         on conflict (conversation_id, reader_type, reader_id) do update set \
             last_read_seq = max(last_read_seq, excluded.last_read_seq), \
             last_delivered_seq = max(last_delivered_seq, excluded.last_delivered_seq), \
             updated_at = excluded.updated_at",
    )
    .bind(Value::from(markers).to_string())
    .execute(&mut *tx)
    .await
    .context("moving the batch's senders' read markers")?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use chat_app::ConversationRepository;
    use chat_domain::{
        ClientMsgId, ConversationId, CustomerId, MessageBody, MessageId, NewCustomerConversation,
        NewMessage, Sender, TenantId,
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
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&dir.path().join("batch.db"))
            .await
            .unwrap();
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
        let mut tx = store.begin_write().await.unwrap();
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
        let mut tx = store.begin_write().await.unwrap();
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
