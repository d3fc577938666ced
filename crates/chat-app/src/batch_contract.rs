//! The batch case every SQL store's `append_batch` runs (feature
//! `contract-tests`): the step behind the group commit is adapter-internal,
//! so the store passes it in.

use std::future::Future;

use chat_domain::{
    ClientMsgId, ConversationId, CustomerId, MessageBody, MessageId, NewCustomerConversation,
    NewMessage, Sender, TenantId,
};
use chrono::{DateTime, Utc};

use crate::store_support::{Append, BatchError, Outcome, StageError};
use crate::{AppendError, AppendOutcome, ConversationRepository};

/// A plain send of one customer into `conversation`, keyed `key`, its time
/// cut to the store's precision by `truncate`.
///
/// # Panics
/// When `key` is not a valid `client_msg_id`.
pub fn append(
    conversation: ConversationId,
    tenant: TenantId,
    key: &str,
    truncate: fn(DateTime<Utc>) -> DateTime<Utc>,
) -> Append {
    Append {
        message: NewMessage {
            id: MessageId::new_v7(),
            tenant,
            conversation_id: conversation,
            sender: Sender::Customer(CustomerId::from_uuid(uuid::Uuid::from_u128(7))),
            body: Some(MessageBody::parse("batched").expect("a body")),
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: Some(ClientMsgId::parse(key).expect("a key")),
            created_at: truncate(Utc::now()),
        },
        reopen: false,
    }
}

/// Each outcome as its seq: `None` for a replay, `Some(0)` for a
/// conversation not found.
///
/// # Panics
/// On any other failure.
pub fn seqs(outcomes: &[Outcome]) -> Vec<Option<u64>> {
    outcomes
        .iter()
        .map(|o| match o {
            Ok(AppendOutcome::Created { message, .. }) => Some(message.seq.get()),
            Ok(AppendOutcome::Replayed(_)) => None,
            Err(AppendError::ConversationNotFound) => Some(0),
            Err(err) => panic!("{err}"),
        })
        .collect()
}

/// A batch gives each send its own outcome: new sends their seqs, a repeated
/// key its original, a conversation of another tenant "not found"; two sends
/// of one conversation are refused before anything is written.
///
/// # Panics
/// When the store breaks the rule.
pub async fn a_batch_gives_each_send_its_own_outcome<S, B, F>(
    store: &S,
    append_batch: B,
    truncate: fn(DateTime<Utc>) -> DateTime<Utc>,
) where
    S: ConversationRepository,
    B: Fn(Vec<Append>) -> F,
    F: Future<Output = Result<Vec<Outcome>, BatchError>>,
{
    let tenant = TenantId::new_v4();
    let mut conversations = Vec::new();
    for _ in 0..2 {
        let (conversation, _) = store
            .get_or_create_customer(&NewCustomerConversation {
                id: ConversationId::new_v7(),
                tenant,
                customer_id: CustomerId::new_v4(),
                clinician: None,
                now: Utc::now(),
            })
            .await
            .expect("a conversation");
        conversations.push(conversation.id);
    }
    let other_tenant = TenantId::new_v4();
    let send = |conversation, tenant, key| append(conversation, tenant, key, truncate);
    let batch = vec![
        send(conversations[0], tenant, "a"),
        send(conversations[1], tenant, "b"),
        send(ConversationId::new_v7(), other_tenant, "c"),
    ];
    let outcomes = append_batch(batch.clone()).await.expect("the batch");
    assert_eq!(seqs(&outcomes), [Some(1), Some(1), Some(0)]);

    // The same key again replays the stored message, a new one follows; a
    // conversation of another tenant is not found.
    let again = vec![
        send(conversations[0], tenant, "a"),
        send(conversations[1], tenant, "d"),
        send(conversations[0], other_tenant, "e"),
    ];
    let outcomes = append_batch(again).await.expect("the batch");
    assert_eq!(seqs(&outcomes), [None, Some(2), Some(0)]);
    match &outcomes[0] {
        Ok(AppendOutcome::Replayed(m)) => {
            assert_eq!(*m, batch[0].message.clone().into_message(m.seq, Vec::new()));
            assert_eq!(m.seq.get(), 1);
        }
        other => panic!("{other:?}"),
    }

    // Two sends of one conversation are refused before anything is
    // written, to be appended one by one.
    let twice = vec![
        send(conversations[0], tenant, "f"),
        send(conversations[0], tenant, "g"),
    ];
    assert!(matches!(
        append_batch(twice).await,
        Err(BatchError::Staging(StageError::Unexpected(_)))
    ));
    let after = store
        .find(tenant, conversations[0])
        .await
        .expect("a read")
        .expect("the conversation");
    assert_eq!(after.last_seq.get(), 1);
}
