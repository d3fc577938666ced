//! The adapter contract suite: one set of behaviours every repository
//! adapter must show, written once and run against each adapter through
//! [`contract_tests!`](crate::contract_tests).
//!
//! An adapter's integration-test file provides a factory that returns a
//! fresh, empty store and invokes the macro:
//!
//! ```ignore
//! async fn fresh_store() -> std::sync::Arc<MyStore> { /* ... */ }
//! chat_app::contract_tests!(fresh_store);
//! ```
//!
//! To add a case, write it here as a private `async fn name<S: Store>(store:
//! Arc<S>)` and add `name` to the one list, in `contract_cases!` below:
//! every adapter then runs it, with no change on its side. A case left off
//! the list does not compile (this module denies dead code). A duty a new
//! port documents ("MUST ...") gets its case here.

#![allow(clippy::missing_panics_doc)]
// Every case must be reached from the list of `contract_cases!`.
#![deny(dead_code)]

use std::collections::HashSet;
use std::sync::Arc;

use chat_domain::{
    AttachedFile, Attachment, AttachmentId, AttachmentName, ClientMsgId, ConversationId,
    ConversationKind, ConversationPatch, ConversationScope, ConversationStatus, CustomerId,
    MediaType, MessageBody, MessageId, NewAttachment, NewCustomerConversation, NewMessage, Sender,
    Seq, Sha256Digest, StaffUserId, StorageKey, Tags, TenantId,
};
use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::ports::{
    AppendError, AppendOutcome, ConversationListQuery, ConversationRepository, MessageCursor,
    MessagePage, MessageQuery, MessageRepository, ReadStateRepository, Receipt, ReceiptUpdate,
};
use crate::ports::{AttachmentRepository, MembershipRepository};

/// A store the suite can run against: all the repositories in one.
pub trait Store:
    ConversationRepository
    + MessageRepository
    + ReadStateRepository
    + AttachmentRepository
    + MembershipRepository
    + 'static
{
}

impl<T> Store for T where
    T: ConversationRepository
        + MessageRepository
        + ReadStateRepository
        + AttachmentRepository
        + MembershipRepository
        + 'static
{
}

mod membership;
#[allow(clippy::wildcard_imports)]
use membership::*;

/// Declares the cases of the suite, once: the list below is the only one.
///
/// From it come [`cases`] (one public entry point per case) and
/// [`contract_tests!`](crate::contract_tests) (one test per case in every
/// adapter that invokes it), so a case listed here runs everywhere. The case
/// functions themselves are private and reached only through [`cases`], and
/// this module denies dead code: a case function left off the list does
/// not compile, nor does a listed name without a function.
macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {
        /// One entry point per contract case, each taking a fresh, empty
        /// store (what [`contract_tests!`](crate::contract_tests) calls).
        pub mod cases {
            use std::sync::Arc;

            use super::Store;

            $(
                #[doc = concat!("Runs the contract case `", stringify!($case), "` against `store`.")]
                pub async fn $case<S: Store>(store: Arc<S>) {
                    super::$case(store).await;
                }
            )*
        }

        /// Expands to one `#[tokio::test]` per contract case, each calling
        /// `$factory().await` for a fresh store. The calling crate needs
        /// `tokio` (with `macros` and `rt-multi-thread`) as a
        /// dev-dependency.
        #[macro_export]
        macro_rules! contract_tests {
            ($factory:ident) => {
                mod contract {
                    $(
                        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                        async fn $case() {
                            let store = super::$factory().await;
                            $crate::contract::cases::$case(store).await;
                        }
                    )*
                }
            };
        }
    };
}

contract_cases!(
    get_or_create_returns_one_conversation_per_customer_and_clinician,
    concurrent_get_or_create_creates_exactly_once,
    appends_number_messages_from_one_and_bump_the_conversation,
    fifty_concurrent_sends_get_seq_1_to_50_without_gap_or_duplicate,
    ten_concurrent_sends_with_one_client_msg_id_store_one_message,
    a_replayed_client_msg_id_returns_the_original_later_on,
    client_msg_ids_are_scoped_to_the_sender,
    reply_to_must_name_a_message_of_the_same_conversation,
    appending_to_a_missing_or_foreign_conversation_fails,
    a_customer_message_can_reopen_a_resolved_conversation,
    message_pages_follow_the_seq_cursor_both_ways,
    read_state_never_moves_backwards_and_is_capped,
    delivered_receipts_move_only_the_delivered_marker,
    unread_counts_follow_the_read_marker,
    conversation_lists_honour_scope_status_and_order,
    conversation_list_cursor_walks_every_row_once,
    updates_apply_only_the_given_fields,
    a_tenant_never_sees_another_tenants_rows,
    receipts_list_every_participants_markers,
    messages_are_edited_and_deleted_in_place,
    attachments_are_recorded_and_found_only_in_their_tenant,
    a_message_links_its_attachments_in_order_and_every_read_carries_them,
    a_message_may_carry_attachments_only,
    linking_refuses_foreign_used_and_missing_uploads_and_stores_nothing,
    a_replayed_send_returns_the_original_with_its_attachments,
    concurrent_sends_attach_one_upload_once,
    orphans_are_listed_oldest_first_and_deleted_only_while_unattached,
    deleting_a_message_takes_its_attachments_with_it,
    concurrent_new_and_retried_client_msg_ids_each_get_their_own_outcome,
    an_append_returns_what_reads_find_alone_or_batched,
    a_direct_conversation_is_one_per_set_of_people,
    concurrent_get_or_create_of_one_direct_set_gives_one_conversation,
    channel_names_are_unique_per_tenant_ignoring_case,
    a_new_channel_posts_a_notice_per_member_but_its_owner,
    membership_changes_post_notices_in_the_seq_stream,
    the_last_owner_cannot_leave_while_members_stay,
    concurrent_joins_add_each_member_once_with_gap_free_notices,
    a_removal_is_immediate_and_only_of_members,
    channel_updates_apply_the_patch_and_post_a_notice,
    channel_lists_show_public_and_own_private_channels_by_name,
    member_pages_walk_every_member_once,
    conversation_lists_and_unread_totals_include_joined_kinds_only,
    membership_facts_cover_a_page_in_one_call,
    no_membership_row_crosses_tenants,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
        .single()
        .expect("valid time")
}

fn body(text: &str) -> Option<MessageBody> {
    Some(MessageBody::parse(text).expect("valid body"))
}

fn new_conversation(
    tenant: TenantId,
    customer: CustomerId,
    clinician: Option<StaffUserId>,
    now: DateTime<Utc>,
) -> NewCustomerConversation {
    NewCustomerConversation {
        id: ConversationId::new_v7(),
        tenant,
        customer_id: customer,
        clinician,
        now,
    }
}

async fn open_inbox<S: Store>(store: &S, tenant: TenantId) -> chat_domain::Conversation {
    let (conversation, created) = store
        .get_or_create_customer(&new_conversation(tenant, CustomerId::new_v4(), None, t0()))
        .await
        .expect("create conversation");
    assert!(created);
    conversation
}

fn message(
    conversation: &chat_domain::Conversation,
    sender: Sender,
    text: &str,
    at: DateTime<Utc>,
) -> NewMessage {
    NewMessage {
        id: MessageId::new_v7(),
        tenant: conversation.tenant,
        conversation_id: conversation.id,
        sender,
        body: body(text),
        attachments: Vec::new(),
        reply_to: None,
        client_msg_id: None,
        created_at: at,
    }
}

async fn send<S: Store>(
    store: &S,
    conversation: &chat_domain::Conversation,
    sender: Sender,
    text: &str,
) -> chat_domain::Message {
    let new = message(conversation, sender, text, t0());
    created(store.append(&new, false).await.expect("append"))
}

/// Stores a message of `sender` carrying `attachments`.
async fn send_files<S: Store>(
    store: &S,
    conversation: &chat_domain::Conversation,
    sender: Sender,
    text: &str,
    attachments: &[&Attachment],
) -> chat_domain::Message {
    let new = with_attachments(message(conversation, sender, text, t0()), attachments);
    created(store.append(&new, false).await.expect("append"))
}

/// The message of an append that must have stored a new one.
fn created(outcome: AppendOutcome) -> chat_domain::Message {
    match outcome {
        AppendOutcome::Created { message, .. } => message,
        AppendOutcome::Replayed(m) => panic!("expected a new message, got a replay of {:?}", m.id),
    }
}

/// The customer of a customer conversation, as a sender.
fn customer_of(conversation: &chat_domain::Conversation) -> Sender {
    let customer = conversation.kind.customer_id();
    Sender::Customer(customer.expect("a customer conversation"))
}

fn seq(n: u64) -> Seq {
    Seq::from_u64(n).expect("small seq")
}

/// One page of `conversation`'s messages, asked for by its tenant and id.
async fn page<S: Store>(
    store: &S,
    conversation: &chat_domain::Conversation,
    cursor: MessageCursor,
    limit: u32,
) -> MessagePage {
    let query = MessageQuery { cursor, limit };
    store
        .list_messages(conversation.tenant, conversation.id, query)
        .await
        .expect("list messages")
}

/// Moves `reader`'s `receipt` marker in `conversation` (by its tenant and id)
/// up to seq `up_to`, at `t0()`; `None` when no such conversation exists.
async fn advance<S: Store>(
    store: &S,
    conversation: &chat_domain::Conversation,
    reader: Sender,
    receipt: Receipt,
    up_to: u64,
) -> Option<ReceiptUpdate> {
    let (tenant, id) = (conversation.tenant, conversation.id);
    store
        .advance(tenant, id, reader, receipt, seq(up_to), t0())
        .await
        .expect("advance")
}

/// One conversation per (tenant, customer, clinician): asking again returns
/// it; another clinician or the inbox is another conversation.
async fn get_or_create_returns_one_conversation_per_customer_and_clinician<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let customer = CustomerId::new_v4();
    let clinician = StaffUserId::new_v4();
    let (inbox, created) = store
        .get_or_create_customer(&new_conversation(tenant, customer, None, t0()))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(inbox.tenant, tenant);
    assert_eq!(
        inbox.kind,
        ConversationKind::Customer {
            customer_id: customer,
            clinician: None
        }
    );
    assert_eq!(inbox.status, ConversationStatus::Open);
    assert_eq!(inbox.last_seq, Seq::ZERO);
    assert_eq!(inbox.created_at, t0());

    let (again, created) = store
        .get_or_create_customer(&new_conversation(
            tenant,
            customer,
            None,
            t0() + Duration::hours(1),
        ))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, inbox);

    let (private, created) = store
        .get_or_create_customer(&new_conversation(tenant, customer, Some(clinician), t0()))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(private.id, inbox.id);
    assert_eq!(private.kind.clinician(), Some(clinician));

    let found = store.find(tenant, inbox.id).await.unwrap();
    assert_eq!(found, Some(inbox));
}

/// Racing get-or-create calls for one key create one row and all return it.
async fn concurrent_get_or_create_creates_exactly_once<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let customer = CustomerId::new_v4();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .get_or_create_customer(&new_conversation(tenant, customer, None, t0()))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let ids: HashSet<_> = results.iter().map(|(c, _)| c.id).collect();
    assert_eq!(ids.len(), 1, "all callers get the same conversation");
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
}

/// Seq counts 1, 2, 3; the conversation's last_seq and activity follow, and
/// the sender's own message counts as read by them.
async fn appends_number_messages_from_one_and_bump_the_conversation<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    let staff = Sender::Staff(StaffUserId::new_v4());
    let mut last_at = t0();
    for (i, sender) in [customer, staff, customer].into_iter().enumerate() {
        last_at = t0() + Duration::minutes(i as i64 + 1);
        let new = message(&conversation, sender, &format!("message {i}"), last_at);
        let stored = created(store.append(&new, false).await.unwrap());
        assert_eq!(
            stored,
            new.clone().into_message(seq(i as u64 + 1), Vec::new())
        );
    }
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, seq(3));
    assert_eq!(after.last_activity_at, last_at);
    assert_eq!(after.updated_at, last_at);

    let summary = store
        .find_summary(tenant, conversation.id, customer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.unread_count, 0, "own last message marks all read");
    assert_eq!(summary.last_message.map(|m| m.seq), Some(seq(3)));
    let staff_view = store
        .find_summary(tenant, conversation.id, staff)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staff_view.unread_count, 1);
}

/// 50 concurrent senders into one conversation: seq 1..=50, no gap, no
/// duplicate, last_seq 50.
async fn fifty_concurrent_sends_get_seq_1_to_50_without_gap_or_duplicate<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let new = message(
                &conversation,
                Sender::Staff(StaffUserId::new_v4()),
                &format!("concurrent {i}"),
                t0(),
            );
            tokio::spawn(async move { store.append(&new, false).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in futures::future::join_all(tasks).await {
        seqs.push(created(task.expect("task").expect("append")).seq.get());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
    let page = page(&*store, &conversation, MessageCursor::After(Seq::ZERO), 200).await;
    let stored: Vec<u64> = page.messages.iter().map(|m| m.seq.get()).collect();
    assert_eq!(stored, (1..=50).collect::<Vec<u64>>());
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, seq(50));
}

/// The same client_msg_id sent 10 times at once stores one message; every
/// call returns it.
async fn ten_concurrent_sends_with_one_client_msg_id_store_one_message<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let sender = customer_of(&conversation);
    let key = ClientMsgId::parse("c-81").unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let mut new = message(&conversation, sender, "hello", t0());
            new.client_msg_id = Some(key.clone());
            tokio::spawn(async move { store.append(&new, false).await })
        })
        .collect();
    let outcomes: Vec<AppendOutcome> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("append"))
        .collect();
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, AppendOutcome::Created { .. }))
        .count();
    assert_eq!(created, 1, "exactly one send stores the message");
    let ids: HashSet<_> = outcomes.iter().map(|o| o.message().id).collect();
    assert_eq!(ids.len(), 1, "every call returns the same message");
    assert!(outcomes.iter().all(|o| o.message().seq == seq(1)));
    let page = page(&*store, &conversation, MessageCursor::Latest, 50).await;
    assert_eq!(page.messages.len(), 1);
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, seq(1), "a replay consumes no seq");
}

/// A replay long after the original still returns the original, unchanged.
async fn a_replayed_client_msg_id_returns_the_original_later_on<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let sender = Sender::Staff(StaffUserId::new_v4());
    let mut first = message(&conversation, sender, "original", t0());
    first.client_msg_id = Some(ClientMsgId::parse("k1").unwrap());
    let original = created(store.append(&first, false).await.unwrap());
    send(&*store, &conversation, sender, "in between").await;
    let mut replay = message(
        &conversation,
        sender,
        "changed text",
        t0() + Duration::hours(1),
    );
    replay.client_msg_id = first.client_msg_id.clone();
    match store.append(&replay, false).await.unwrap() {
        AppendOutcome::Replayed(m) => assert_eq!(m, original),
        other => panic!("expected replay, got {other:?}"),
    }
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, seq(2));
}

/// Another sender may use the same client_msg_id: keys are per sender.
async fn client_msg_ids_are_scoped_to_the_sender<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let key = ClientMsgId::parse("same-key").unwrap();
    for sender in [
        Sender::Staff(StaffUserId::new_v4()),
        customer_of(&conversation),
    ] {
        let mut new = message(&conversation, sender, "hi", t0());
        new.client_msg_id = Some(key.clone());
        assert!(matches!(
            store.append(&new, false).await.unwrap(),
            AppendOutcome::Created { .. }
        ));
    }
    // The same key in another conversation is another message too.
    let other = open_inbox(&*store, tenant).await;
    let mut new = message(&other, Sender::System, "hi", t0());
    new.client_msg_id = Some(key);
    assert!(matches!(
        store.append(&new, false).await.unwrap(),
        AppendOutcome::Created { .. }
    ));
}

/// A reply names a message of the same conversation; anything else stores
/// nothing.
async fn reply_to_must_name_a_message_of_the_same_conversation<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let other = open_inbox(&*store, tenant).await;
    let sender = Sender::Staff(StaffUserId::new_v4());
    let elsewhere = send(&*store, &other, sender, "elsewhere").await;
    let first = send(&*store, &conversation, sender, "question").await;

    let mut reply = message(&conversation, sender, "answer", t0());
    reply.reply_to = Some(first.id);
    let stored = created(store.append(&reply, false).await.unwrap());
    assert_eq!(stored.reply_to, Some(first.id));

    for target in [elsewhere.id, MessageId::new_v7()] {
        let mut bad = message(&conversation, sender, "bad reply", t0());
        bad.reply_to = Some(target);
        assert!(matches!(
            store.append(&bad, false).await,
            Err(AppendError::ReplyTargetNotFound)
        ));
    }
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, seq(2), "refused replies consume no seq");
}

/// Appending to an unknown conversation, or one of another tenant, fails.
async fn appending_to_a_missing_or_foreign_conversation_fails<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let mut foreign = message(&conversation, Sender::System, "sneaky", t0());
    foreign.tenant = TenantId::new_v4();
    assert!(matches!(
        store.append(&foreign, false).await,
        Err(AppendError::ConversationNotFound)
    ));
    let mut missing = message(&conversation, Sender::System, "lost", t0());
    missing.conversation_id = ConversationId::new_v7();
    assert!(matches!(
        store.append(&missing, false).await,
        Err(AppendError::ConversationNotFound)
    ));
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, Seq::ZERO);
}

/// `reopen` sets a resolved conversation back to open in the same write,
/// and says so; every append returns the conversation as it left it, alone
/// (a reply) or batched (a plain message).
async fn a_customer_message_can_reopen_a_resolved_conversation<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    let resolve = ConversationPatch {
        status: Some(ConversationStatus::Resolved),
        ..ConversationPatch::default()
    };
    let mut previous: Option<chat_domain::MessageId> = None;
    // (status before, reopen asked, reply or plain, reopened)
    let steps = [
        (ConversationStatus::Open, true, false, false),
        (ConversationStatus::Resolved, false, false, false),
        (ConversationStatus::Resolved, true, false, true),
        (ConversationStatus::Resolved, false, true, false),
        (ConversationStatus::Resolved, true, true, true),
        (ConversationStatus::Open, true, true, false),
    ];
    for (step, (status, reopen, reply, expected)) in steps.into_iter().enumerate() {
        if status == ConversationStatus::Resolved {
            store
                .update(tenant, conversation.id, &resolve, t0())
                .await
                .unwrap()
                .unwrap();
        }
        let at = t0() + chrono::Duration::minutes(i64::try_from(step).unwrap() + 1);
        let mut new = message(&conversation, customer, "one more thing", at);
        if reply {
            new.reply_to = previous;
        }
        let outcome = store.append(&new, reopen).await.unwrap();
        let AppendOutcome::Created {
            message,
            conversation: returned,
            reopened,
        } = outcome
        else {
            panic!("step {step}: expected a new message");
        };
        previous = Some(message.id);
        let stored = store.find(tenant, conversation.id).await.unwrap().unwrap();
        assert_eq!(reopened, expected, "step {step}: reopened");
        assert_eq!(returned, stored, "step {step}: the conversation as left");
        assert_eq!(stored.last_seq, message.seq, "step {step}");
        assert_eq!(stored.last_activity_at, message.created_at, "step {step}");
        let status_after = if reopen {
            ConversationStatus::Open
        } else {
            status
        };
        assert_eq!(stored.status, status_after, "step {step}: status");
    }
}

/// Latest and before give newest first; after gives oldest first;
/// `has_more` tells whether more lie beyond.
async fn message_pages_follow_the_seq_cursor_both_ways<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let sender = Sender::Staff(StaffUserId::new_v4());
    for i in 1..=7 {
        send(&*store, &conversation, sender, &format!("m{i}")).await;
    }
    let seqs = async |cursor, limit| {
        let page = page(&*store, &conversation, cursor, limit).await;
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq.get()).collect();
        (seqs, page.has_more)
    };
    assert_eq!(seqs(MessageCursor::Latest, 3).await, (vec![7, 6, 5], true));
    assert_eq!(
        seqs(MessageCursor::Latest, 7).await,
        (vec![7, 6, 5, 4, 3, 2, 1], false)
    );
    assert_eq!(
        seqs(MessageCursor::Before(seq(5)), 3).await,
        (vec![4, 3, 2], true)
    );
    assert_eq!(
        seqs(MessageCursor::Before(seq(3)), 3).await,
        (vec![2, 1], false)
    );
    assert_eq!(
        seqs(MessageCursor::Before(seq(1)), 3).await,
        (vec![], false)
    );
    assert_eq!(
        seqs(MessageCursor::After(seq(2)), 3).await,
        (vec![3, 4, 5], true)
    );
    assert_eq!(
        seqs(MessageCursor::After(seq(4)), 3).await,
        (vec![5, 6, 7], false)
    );
    assert_eq!(seqs(MessageCursor::After(seq(7)), 3).await, (vec![], false));
    assert_eq!(seqs(MessageCursor::After(Seq::ZERO), 200).await.0.len(), 7);

    let stored = page(&*store, &conversation, MessageCursor::Latest, 1).await;
    let newest = &stored.messages[0];
    assert_eq!(newest.body.as_ref().map(MessageBody::as_str), Some("m7"));
    assert_eq!(newest.sender, sender);
    assert_eq!(newest.conversation_id, conversation.id);
    assert_eq!(newest.tenant, tenant);
}

/// Read markers only move forward and never past the newest message.
async fn read_state_never_moves_backwards_and_is_capped<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let staff = Sender::Staff(StaffUserId::new_v4());
    let reader = customer_of(&conversation);
    for i in 0..5 {
        send(&*store, &conversation, staff, &format!("m{i}")).await;
    }
    let read_up_to = async |up_to| {
        advance(&*store, &conversation, reader, Receipt::Read, up_to)
            .await
            .expect("conversation exists")
    };
    let first = read_up_to(3).await;
    assert!(first.moved);
    assert_eq!(first.state.last_read_seq, seq(3));
    assert_eq!(
        first.state.last_delivered_seq,
        seq(3),
        "read implies delivered"
    );
    assert_eq!(first.state.reader, reader);
    assert_eq!(first.state.conversation_id, conversation.id);

    let back = read_up_to(1).await;
    assert!(!back.moved);
    assert_eq!(back.state.last_read_seq, seq(3), "never backwards");

    let same = read_up_to(3).await;
    assert!(!same.moved);

    let capped = read_up_to(1_000).await;
    assert!(capped.moved);
    assert_eq!(capped.state.last_read_seq, seq(5), "capped at last_seq");

    // Racing markers end at the highest.
    let tasks: Vec<_> = (0..5u64)
        .map(|i| {
            let (store, conversation) = (store.clone(), conversation.clone());
            tokio::spawn(async move {
                advance(&*store, &conversation, staff, Receipt::Read, i + 1).await
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
    let summary = store
        .find_summary(tenant, conversation.id, staff)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.unread_count, 0);
}

/// A delivered receipt moves the delivered marker, never the read one.
async fn delivered_receipts_move_only_the_delivered_marker<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let staff = Sender::Staff(StaffUserId::new_v4());
    let reader = customer_of(&conversation);
    for i in 0..4 {
        send(&*store, &conversation, staff, &format!("m{i}")).await;
    }
    let delivered = advance(&*store, &conversation, reader, Receipt::Delivered, 4)
        .await
        .unwrap();
    assert!(delivered.moved);
    assert_eq!(delivered.state.last_delivered_seq, seq(4));
    assert_eq!(delivered.state.last_read_seq, Seq::ZERO);

    let read = advance(&*store, &conversation, reader, Receipt::Read, 2)
        .await
        .unwrap();
    assert!(read.moved);
    assert_eq!(read.state.last_read_seq, seq(2));
    assert_eq!(
        read.state.last_delivered_seq,
        seq(4),
        "delivered never goes back"
    );

    let again = advance(&*store, &conversation, reader, Receipt::Delivered, 3)
        .await
        .unwrap();
    assert!(!again.moved);
}

/// Unread counts per conversation and in total follow the read markers.
async fn unread_counts_follow_the_read_marker<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let customer = CustomerId::new_v4();
    let clinician = StaffUserId::new_v4();
    let reader = Sender::Customer(customer);
    let (inbox, _) = store
        .get_or_create_customer(&new_conversation(tenant, customer, None, t0()))
        .await
        .unwrap();
    let (private, _) = store
        .get_or_create_customer(&new_conversation(tenant, customer, Some(clinician), t0()))
        .await
        .unwrap();
    let staff = Sender::Staff(clinician);
    for i in 0..3 {
        send(&*store, &inbox, staff, &format!("inbox {i}")).await;
    }
    for i in 0..2 {
        send(&*store, &private, staff, &format!("private {i}")).await;
    }
    let customer_scope = ConversationScope::Customer {
        tenant,
        customer_id: customer,
    };
    assert_eq!(store.unread_total(customer_scope, reader).await.unwrap(), 5);
    advance(&*store, &inbox, reader, Receipt::Read, 2).await;
    assert_eq!(store.unread_total(customer_scope, reader).await.unwrap(), 3);
    let summary = store
        .find_summary(tenant, inbox.id, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.unread_count, 1);

    // Another staff member sees the inbox unread but not the private thread.
    let colleague = StaffUserId::new_v4();
    let colleague_scope = ConversationScope::InboxAndClinician {
        tenant,
        clinician: colleague,
    };
    assert_eq!(
        store
            .unread_total(colleague_scope, Sender::Staff(colleague))
            .await
            .unwrap(),
        3
    );
    // The clinician wrote everything: nothing unread for them.
    let clinician_scope = ConversationScope::InboxAndClinician { tenant, clinician };
    assert_eq!(store.unread_total(clinician_scope, staff).await.unwrap(), 0);
    // A fresh reader in an empty scope has zero.
    let nobody = ConversationScope::Customer {
        tenant,
        customer_id: CustomerId::new_v4(),
    };
    assert_eq!(store.unread_total(nobody, reader).await.unwrap(), 0);
}

/// Lists show what the scope allows, filter by status, newest activity
/// first, with last message and unread count.
async fn conversation_lists_honour_scope_status_and_order<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let customer = CustomerId::new_v4();
    let clinician = StaffUserId::new_v4();
    let colleague = StaffUserId::new_v4();
    let mk = |customer, clinician, minutes| {
        new_conversation(
            tenant,
            customer,
            clinician,
            t0() + Duration::minutes(minutes),
        )
    };
    let (inbox, _) = store
        .get_or_create_customer(&mk(customer, None, 1))
        .await
        .unwrap();
    let (private, _) = store
        .get_or_create_customer(&mk(customer, Some(clinician), 2))
        .await
        .unwrap();
    let (other_inbox, _) = store
        .get_or_create_customer(&mk(CustomerId::new_v4(), None, 3))
        .await
        .unwrap();
    let (colleague_thread, _) = store
        .get_or_create_customer(&mk(CustomerId::new_v4(), Some(colleague), 4))
        .await
        .unwrap();
    // Activity: the inbox gets the newest message.
    let new = message(
        &inbox,
        Sender::Customer(customer),
        "newest",
        t0() + Duration::minutes(10),
    );
    store.append(&new, false).await.unwrap();

    let list = |scope, reader, status| {
        let store = store.clone();
        async move {
            store
                .list_conversations(&ConversationListQuery {
                    kind: None,
                    scope,
                    reader,
                    status,
                    limit: 50,
                    cursor: None,
                })
                .await
                .unwrap()
        }
    };
    let ids = |page: &crate::ports::ConversationPage| -> Vec<ConversationId> {
        page.items.iter().map(|i| i.conversation.id).collect()
    };

    let admin_page = list(
        ConversationScope::All { tenant },
        Sender::Staff(StaffUserId::new_v4()),
        None,
    )
    .await;
    assert_eq!(
        ids(&admin_page),
        vec![inbox.id, colleague_thread.id, other_inbox.id, private.id]
    );
    assert!(admin_page.next_cursor.is_none());
    let first = &admin_page.items[0];
    assert_eq!(first.unread_count, 1);
    assert_eq!(
        first
            .last_message
            .as_ref()
            .and_then(|m| m.body.as_ref())
            .map(MessageBody::as_str),
        Some("newest")
    );
    assert!(admin_page.items[1].last_message.is_none());
    assert_eq!(admin_page.items[1].unread_count, 0);

    let clinician_page = list(
        ConversationScope::InboxAndClinician { tenant, clinician },
        Sender::Staff(clinician),
        None,
    )
    .await;
    assert_eq!(
        ids(&clinician_page),
        vec![inbox.id, other_inbox.id, private.id]
    );

    let customer_page = list(
        ConversationScope::Customer {
            tenant,
            customer_id: customer,
        },
        Sender::Customer(customer),
        None,
    )
    .await;
    assert_eq!(ids(&customer_page), vec![inbox.id, private.id]);
    assert_eq!(
        customer_page.items[0].unread_count, 0,
        "own message is read"
    );

    store
        .update(
            tenant,
            other_inbox.id,
            &ConversationPatch {
                status: Some(ConversationStatus::Archived),
                ..ConversationPatch::default()
            },
            t0(),
        )
        .await
        .unwrap();
    let archived = list(
        ConversationScope::All { tenant },
        Sender::System,
        Some(ConversationStatus::Archived),
    )
    .await;
    assert_eq!(ids(&archived), vec![other_inbox.id]);
    let open = list(
        ConversationScope::All { tenant },
        Sender::System,
        Some(ConversationStatus::Open),
    )
    .await;
    assert_eq!(open.items.len(), 3);
}

/// Walking a list page by page returns every conversation exactly once, in
/// order, also when several share the same activity time.
async fn conversation_list_cursor_walks_every_row_once<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let mut expected = Vec::new();
    for i in 0..23 {
        // Groups of three share one activity time, to exercise the id tie-break.
        let at = t0() + Duration::seconds(i / 3);
        let (c, _) = store
            .get_or_create_customer(&new_conversation(tenant, CustomerId::new_v4(), None, at))
            .await
            .unwrap();
        expected.push((c.last_activity_at, c.id));
    }
    expected.sort_by(|a, b| b.cmp(a));
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_conversations(&ConversationListQuery {
                kind: None,
                scope: ConversationScope::All { tenant },
                reader: Sender::System,
                status: None,
                limit: 5,
                cursor,
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 5);
        seen.extend(
            page.items
                .iter()
                .map(|i| (i.conversation.last_activity_at, i.conversation.id)),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination must terminate");
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, expected);
}

/// A patch changes only the fields it sets; clearing the assignee works.
async fn updates_apply_only_the_given_fields<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let assignee = StaffUserId::new_v4();
    let later = t0() + Duration::hours(2);
    let tags = Tags::parse(&["refill", "urgent"]).unwrap();
    let updated = store
        .update(
            tenant,
            conversation.id,
            &ConversationPatch {
                status: Some(ConversationStatus::Resolved),
                assignee: Some(Some(assignee)),
                tags: Some(tags.clone()),
            },
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, ConversationStatus::Resolved);
    assert_eq!(updated.assignee, Some(assignee));
    assert_eq!(updated.tags, tags);
    assert_eq!(updated.updated_at, later);
    assert_eq!(updated.created_at, conversation.created_at);

    let only_tags = store
        .update(
            tenant,
            conversation.id,
            &ConversationPatch {
                tags: Some(Tags::default()),
                ..ConversationPatch::default()
            },
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only_tags.status, ConversationStatus::Resolved);
    assert_eq!(only_tags.assignee, Some(assignee));
    assert!(only_tags.tags.is_empty());

    let cleared = store
        .update(
            tenant,
            conversation.id,
            &ConversationPatch {
                assignee: Some(None),
                ..ConversationPatch::default()
            },
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.assignee, None);
    assert_eq!(
        store.find(tenant, conversation.id).await.unwrap(),
        Some(cleared)
    );

    let missing = store
        .update(
            tenant,
            ConversationId::new_v7(),
            &ConversationPatch::default(),
            later,
        )
        .await
        .unwrap();
    assert_eq!(missing, None);
}

/// Nothing of one tenant is visible or writable through another tenant's id.
async fn a_tenant_never_sees_another_tenants_rows<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let intruder = TenantId::new_v4();
    let customer = CustomerId::new_v4();
    let (conversation, _) = store
        .get_or_create_customer(&new_conversation(tenant, customer, None, t0()))
        .await
        .unwrap();
    send(
        &*store,
        &conversation,
        Sender::Staff(StaffUserId::new_v4()),
        "private health data",
    )
    .await;

    assert_eq!(store.find(intruder, conversation.id).await.unwrap(), None);
    assert_eq!(
        store
            .find_summary(intruder, conversation.id, Sender::Customer(customer))
            .await
            .unwrap(),
        None
    );
    // The same conversation, addressed through the intruder's tenant.
    let mut as_intruder = conversation.clone();
    as_intruder.tenant = intruder;
    let page = page(&*store, &as_intruder, MessageCursor::Latest, 50).await;
    assert!(page.messages.is_empty());
    for scope in [
        ConversationScope::All { tenant: intruder },
        ConversationScope::Customer {
            tenant: intruder,
            customer_id: customer,
        },
        ConversationScope::InboxAndClinician {
            tenant: intruder,
            clinician: StaffUserId::new_v4(),
        },
    ] {
        let listed = store
            .list_conversations(&ConversationListQuery {
                kind: None,
                scope,
                reader: Sender::Customer(customer),
                status: None,
                limit: 50,
                cursor: None,
            })
            .await
            .unwrap();
        assert!(listed.items.is_empty(), "{scope:?}");
        assert_eq!(
            store
                .unread_total(scope, Sender::Customer(customer))
                .await
                .unwrap(),
            0
        );
    }
    let patch = ConversationPatch {
        status: Some(ConversationStatus::Archived),
        ..ConversationPatch::default()
    };
    assert_eq!(
        store
            .update(intruder, conversation.id, &patch, t0())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        advance(
            &*store,
            &as_intruder,
            Sender::Customer(customer),
            Receipt::Read,
            1
        )
        .await,
        None
    );
    // The same customer id in another tenant is another conversation.
    let (theirs, created) = store
        .get_or_create_customer(&new_conversation(intruder, customer, None, t0()))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(theirs.id, conversation.id);
    let untouched = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(untouched.status, ConversationStatus::Open);
    assert_eq!(untouched.last_seq, seq(1));
}

/// An upload of `uploader` into `conversation` at `at`.
fn new_upload(
    conversation: &chat_domain::Conversation,
    uploader: Sender,
    at: DateTime<Utc>,
) -> NewAttachment {
    let id = AttachmentId::new_v7();
    NewAttachment {
        id,
        tenant: conversation.tenant,
        conversation_id: conversation.id,
        uploader,
        name: AttachmentName::sanitize(Some("prescription scan.png"), MediaType::Png),
        media_type: MediaType::Png,
        size: 52_311,
        sha256: Sha256Digest::from_bytes([7; 32]),
        storage_key: StorageKey::for_attachment(
            conversation.tenant,
            conversation.id,
            id,
            MediaType::Png,
            at,
        ),
        created_at: at,
    }
}

async fn upload<S: Store>(
    store: &S,
    conversation: &chat_domain::Conversation,
    uploader: Sender,
    at: DateTime<Utc>,
) -> Attachment {
    store
        .insert_attachment(&new_upload(conversation, uploader, at))
        .await
        .expect("insert attachment")
}

fn with_attachments(mut new: NewMessage, attachments: &[&Attachment]) -> NewMessage {
    new.attachments = attachments.iter().map(|a| a.id).collect();
    new
}

fn linked(attachment: &Attachment, message: &chat_domain::Message) -> Attachment {
    Attachment {
        message_id: Some(message.id),
        ..attachment.clone()
    }
}

/// An upload is stored as given, unattached, and only its tenant finds it.
async fn attachments_are_recorded_and_found_only_in_their_tenant<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    let new = new_upload(&conversation, customer, t0());
    let stored = store.insert_attachment(&new).await.unwrap();
    assert_eq!(stored, new.clone().into_attachment());
    assert_eq!(
        store.find_attachment(tenant, new.id).await.unwrap(),
        Some(stored)
    );
    assert_eq!(
        store
            .find_attachment(TenantId::new_v4(), new.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_attachment(tenant, AttachmentId::new_v7())
            .await
            .unwrap(),
        None
    );
}

/// A send links its uploads in the given order; the stored message, pages
/// of history, the replay lookup and conversation summaries all carry them.
async fn a_message_links_its_attachments_in_order_and_every_read_carries_them<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    let first = upload(&*store, &conversation, customer, t0()).await;
    let second = upload(&*store, &conversation, customer, t0()).await;
    let plain = send(&*store, &conversation, customer, "no files").await;
    let new = with_attachments(
        message(&conversation, customer, "two photos", t0()),
        &[&second, &first],
    );
    let stored = created(store.append(&new, false).await.unwrap());
    let expected: Vec<AttachedFile> = vec![second.clone().into(), first.clone().into()];
    assert_eq!(stored.attachments, expected);
    assert_eq!(stored, new.clone().into_message(seq(2), expected.clone()));

    let page = page(&*store, &conversation, MessageCursor::After(Seq::ZERO), 10).await;
    assert_eq!(page.messages, vec![plain, stored.clone()]);

    let summary = store
        .find_summary(tenant, conversation.id, customer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.last_message.as_ref(), Some(&stored));
    let list = store
        .list_conversations(&ConversationListQuery {
            kind: None,
            scope: ConversationScope::All { tenant },
            reader: customer,
            status: None,
            limit: 10,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(list.items[0].last_message.as_ref(), Some(&stored));
    for upload in [&first, &second] {
        assert_eq!(
            store.find_attachment(tenant, upload.id).await.unwrap(),
            Some(linked(upload, &stored))
        );
    }
}

/// Body or not is the use case's rule; the store keeps a message that only
/// carries files.
async fn a_message_may_carry_attachments_only<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let staff = Sender::Staff(StaffUserId::new_v4());
    let file = upload(&*store, &conversation, staff, t0()).await;
    let mut new = with_attachments(message(&conversation, staff, "x", t0()), &[&file]);
    new.body = None;
    let stored = store.append(&new, false).await.unwrap();
    assert_eq!(stored.message().body, None);
    assert_eq!(stored.message().attachments.len(), 1);
}

/// Only the sender's own unattached uploads of this conversation may be
/// linked. Anything else refuses the whole send: no message, no seq, and the
/// valid uploads of the same send stay unattached.
async fn linking_refuses_foreign_used_and_missing_uploads_and_stores_nothing<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let other_conversation = open_inbox(&*store, tenant).await;
    let foreign_conversation = open_inbox(&*store, TenantId::new_v4()).await;
    let customer = customer_of(&conversation);
    let staff = Sender::Staff(StaffUserId::new_v4());
    let good = upload(&*store, &conversation, customer, t0()).await;
    let used = upload(&*store, &conversation, customer, t0()).await;
    let carrier = with_attachments(message(&conversation, customer, "first", t0()), &[&used]);
    store.append(&carrier, false).await.unwrap();

    let elsewhere = upload(&*store, &other_conversation, customer, t0()).await;
    let other_tenants = upload(
        &*store,
        &foreign_conversation,
        customer_of(&foreign_conversation),
        t0(),
    )
    .await;
    let staffs = upload(&*store, &conversation, staff, t0()).await;
    let missing = AttachmentId::new_v7();

    for (what, bad, expect_used) in [
        ("another conversation's upload", elsewhere.id, false),
        ("another tenant's upload", other_tenants.id, false),
        ("another uploader's upload", staffs.id, false),
        ("an id nobody uploaded", missing, false),
        ("an upload already sent", used.id, true),
    ] {
        let mut new = with_attachments(message(&conversation, customer, "again", t0()), &[&good]);
        new.attachments.push(bad);
        let result = store.append(&new, false).await;
        match (result, expect_used) {
            (Err(AppendError::AttachmentNotFound(id)), false)
            | (Err(AppendError::AttachmentAlreadyUsed(id)), true) => assert_eq!(id, bad, "{what}"),
            (other, _) => panic!("{what}: unexpected {other:?}"),
        }
    }
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, seq(1), "refused sends consume no seq");
    assert_eq!(
        store
            .find_attachment(tenant, good.id)
            .await
            .unwrap()
            .and_then(|a| a.message_id),
        None,
        "a refused send links nothing"
    );
}

/// A replay returns the original message with its attachments, and links
/// nothing again.
async fn a_replayed_send_returns_the_original_with_its_attachments<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    let file = upload(&*store, &conversation, customer, t0()).await;
    let mut new = with_attachments(message(&conversation, customer, "photo", t0()), &[&file]);
    new.client_msg_id = Some(ClientMsgId::parse("c-photo").unwrap());
    let original = created(store.append(&new, false).await.unwrap());
    let mut again = new.clone();
    again.id = MessageId::new_v7();
    match store.append(&again, false).await.unwrap() {
        AppendOutcome::Replayed(m) => assert_eq!(m, original),
        other => panic!("expected a replay, got {other:?}"),
    }
}

/// Ten concurrent sends naming one upload: exactly one carries it, the
/// others are refused as already used.
async fn concurrent_sends_attach_one_upload_once<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    let file = upload(&*store, &conversation, customer, t0()).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let new = with_attachments(
            message(&conversation, customer, &format!("{i}"), t0()),
            &[&file],
        );
        tasks.push(tokio::spawn(async move { store.append(&new, false).await }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(AppendOutcome::Created { message, .. }) => {
                assert_eq!(message.attachments.len(), 1);
                created += 1;
            }
            Err(AppendError::AttachmentAlreadyUsed(id)) => assert_eq!(id, file.id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1);
    let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, seq(1));
}

/// The sweep sees unattached uploads older than the cut-off, oldest first,
/// across tenants; an attached upload is never listed nor deleted.
async fn orphans_are_listed_oldest_first_and_deleted_only_while_unattached<S: Store>(
    store: Arc<S>,
) {
    let conversation = open_inbox(&*store, TenantId::new_v4()).await;
    let foreign = open_inbox(&*store, TenantId::new_v4()).await;
    let customer = customer_of(&conversation);
    let foreign_customer = customer_of(&foreign);
    let old = upload(&*store, &conversation, customer, t0()).await;
    let older_foreign = upload(
        &*store,
        &foreign,
        foreign_customer,
        t0() - Duration::hours(1),
    )
    .await;
    let recent = upload(&*store, &conversation, customer, t0() + Duration::hours(2)).await;
    let sent = upload(&*store, &conversation, customer, t0()).await;
    let carrier = with_attachments(message(&conversation, customer, "sent", t0()), &[&sent]);
    store.append(&carrier, false).await.unwrap();

    let cutoff = t0() + Duration::hours(1);
    let orphans = store.list_orphans(cutoff, 10).await.unwrap();
    let ids: Vec<AttachmentId> = orphans.iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![older_foreign.id, old.id]);
    let first = store.list_orphans(cutoff, 1).await.unwrap();
    assert_eq!(first.len(), 1);

    assert!(!store
        .delete_unattached(conversation.tenant, sent.id)
        .await
        .unwrap());
    assert!(
        !store
            .delete_unattached(foreign.tenant, old.id)
            .await
            .unwrap(),
        "tenant-scoped"
    );
    assert!(store
        .delete_unattached(conversation.tenant, old.id)
        .await
        .unwrap());
    assert!(!store
        .delete_unattached(conversation.tenant, old.id)
        .await
        .unwrap());
    assert_eq!(
        store
            .find_attachment(conversation.tenant, old.id)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .find_attachment(conversation.tenant, sent.id)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .find_attachment(conversation.tenant, recent.id)
        .await
        .unwrap()
        .is_some());
}

/// Every participant's markers are listed, for that conversation and tenant
/// only.
async fn receipts_list_every_participants_markers<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let other = open_inbox(&*store, tenant).await;
    let staff = Sender::Staff(StaffUserId::new_v4());
    let customer = customer_of(&conversation);
    assert!(store
        .list_receipts(tenant, conversation.id)
        .await
        .unwrap()
        .is_empty());
    for i in 0..3 {
        send(&*store, &conversation, staff, &format!("m{i}")).await;
    }
    send(&*store, &other, staff, "elsewhere").await;
    advance(&*store, &conversation, customer, Receipt::Delivered, 3).await;
    advance(&*store, &conversation, customer, Receipt::Read, 2).await;
    let mut receipts = store.list_receipts(tenant, conversation.id).await.unwrap();
    receipts.sort_by_key(|r| r.reader.kind());
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    assert_eq!(receipts[0].reader, customer);
    assert_eq!(receipts[0].last_read_seq, seq(2));
    assert_eq!(receipts[0].last_delivered_seq, seq(3));
    assert_eq!(receipts[0].conversation_id, conversation.id);
    assert_eq!(receipts[1].reader, staff);
    assert_eq!(
        receipts[1].last_read_seq,
        seq(3),
        "the sender has read their own messages"
    );
    assert!(
        store
            .list_receipts(TenantId::new_v4(), conversation.id)
            .await
            .unwrap()
            .is_empty(),
        "another tenant sees no receipts"
    );
}

/// An edit replaces the text and stamps `edited_at`; a deletion erases the
/// text, keeps the `seq` and its first time; a deleted message cannot be
/// edited; nothing is reachable through another tenant or conversation.
async fn messages_are_edited_and_deleted_in_place<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let other = open_inbox(&*store, tenant).await;
    let sender = Sender::Staff(StaffUserId::new_v4());
    let original = send(&*store, &conversation, sender, "Pick-up at 5").await;
    send(&*store, &conversation, sender, "second").await;
    let found = store
        .find_message(tenant, conversation.id, original.id)
        .await
        .unwrap();
    assert_eq!(found, Some(original.clone()));

    let later = t0() + Duration::minutes(5);
    let new_body = MessageBody::parse("Pick-up at 6").unwrap();
    let edited = store
        .edit_message(tenant, conversation.id, original.id, &new_body, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.body, Some(new_body.clone()));
    assert_eq!(edited.edited_at, Some(later));
    assert_eq!(edited.seq, original.seq);
    assert_eq!(edited.created_at, original.created_at);
    assert_eq!(
        store
            .find_message(tenant, conversation.id, original.id)
            .await
            .unwrap(),
        Some(edited.clone())
    );

    let deleted = store
        .delete_message(
            tenant,
            conversation.id,
            original.id,
            later + Duration::minutes(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.body, None, "the text is erased");
    assert_eq!(deleted.deleted_at, Some(later + Duration::minutes(1)));
    assert_eq!(deleted.seq, original.seq);
    let again = store
        .delete_message(
            tenant,
            conversation.id,
            original.id,
            later + Duration::hours(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.deleted_at, deleted.deleted_at,
        "the first deletion time stays"
    );
    let not_edited = store
        .edit_message(
            tenant,
            conversation.id,
            original.id,
            &new_body,
            later + Duration::hours(2),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(not_edited.body, None, "a deleted message stays deleted");
    assert_eq!(not_edited.deleted_at, deleted.deleted_at);

    // Pages keep the deleted message's place.
    let page = page(&*store, &conversation, MessageCursor::After(Seq::ZERO), 10).await;
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[0].deleted_at, deleted.deleted_at);

    for (t, c) in [(TenantId::new_v4(), conversation.id), (tenant, other.id)] {
        assert_eq!(store.find_message(t, c, original.id).await.unwrap(), None);
        assert_eq!(
            store
                .edit_message(t, c, original.id, &new_body, later)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .delete_message(t, c, original.id, later)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        store
            .find_message(tenant, conversation.id, MessageId::new_v7())
            .await
            .unwrap(),
        None
    );
}

/// A deleted message's attachments are gone from every read at once, and
/// listed for their bytes to be removed until their records are purged;
/// other messages keep theirs.
async fn deleting_a_message_takes_its_attachments_with_it<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    let first = upload(&*store, &conversation, customer, t0()).await;
    let second = upload(&*store, &conversation, customer, t0()).await;
    let kept = upload(&*store, &conversation, customer, t0()).await;
    let doomed = send_files(
        &*store,
        &conversation,
        customer,
        "wrong patient's photos",
        &[&first, &second],
    )
    .await;
    let other = send_files(&*store, &conversation, customer, "this one", &[&kept]).await;
    assert!(store.list_deleted(10).await.unwrap().is_empty());

    let at = t0() + Duration::minutes(3);
    let deleted = store
        .delete_message(tenant, conversation.id, doomed.id, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deleted.attachments,
        Vec::new(),
        "the files go with the text"
    );
    assert_eq!(
        store
            .find_message(tenant, conversation.id, doomed.id)
            .await
            .unwrap()
            .map(|m| m.attachments),
        Some(Vec::new())
    );
    let page = page(&*store, &conversation, MessageCursor::After(Seq::ZERO), 10).await;
    assert_eq!(page.messages[0].attachments, Vec::new());
    assert_eq!(page.messages[1], other, "another message keeps its files");
    for gone in [&first, &second] {
        assert_eq!(store.find_attachment(tenant, gone.id).await.unwrap(), None);
    }
    assert_eq!(
        store.find_attachment(tenant, kept.id).await.unwrap(),
        Some(linked(&kept, &other))
    );
    // A deleted upload cannot be sent again either.
    let resend = with_attachments(message(&conversation, customer, "again", t0()), &[&first]);
    assert!(matches!(
        store.append(&resend, false).await,
        Err(AppendError::AttachmentAlreadyUsed(id)) if id == first.id
    ));

    let listed: HashSet<_> = store
        .list_deleted(10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.storage_key))
        .collect();
    assert_eq!(
        listed,
        HashSet::from([
            (first.id, first.storage_key.clone()),
            (second.id, second.storage_key.clone())
        ]),
        "the two, with what the sweep needs to remove the bytes"
    );
    assert_eq!(store.list_deleted(1).await.unwrap().len(), 1, "bounded");

    // Only deleted attachments are purged, only in their tenant, once.
    assert!(!store.purge_deleted(tenant, kept.id).await.unwrap());
    assert!(!store
        .purge_deleted(TenantId::new_v4(), first.id)
        .await
        .unwrap());
    assert!(store.purge_deleted(tenant, first.id).await.unwrap());
    assert!(!store.purge_deleted(tenant, first.id).await.unwrap());
    assert!(store.purge_deleted(tenant, second.id).await.unwrap());
    assert!(store.list_deleted(10).await.unwrap().is_empty());
    // The message keeps its place, without text or files.
    let after = store
        .find_message(tenant, conversation.id, doomed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, deleted);
}

/// Concurrent sends, enough to share batches where a store batches them:
/// retries of stored `client_msg_id`s replay their originals, new keys are
/// stored with the next seq, sends to a missing conversation fail, each send
/// its own outcome whatever else it was stored with.
pub async fn concurrent_new_and_retried_client_msg_ids_each_get_their_own_outcome<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let mut conversations = Vec::new();
    let mut originals = Vec::new();
    for i in 0..12 {
        let conversation = open_inbox(&*store, tenant).await;
        let mut first = message(&conversation, customer_of(&conversation), "first", t0());
        first.client_msg_id = Some(ClientMsgId::parse(&format!("first-{i}")).unwrap());
        originals.push(created(store.append(&first, false).await.unwrap()));
        conversations.push(conversation);
    }
    /// What a send must get.
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug)]
    enum Expect {
        Replay(chat_domain::Message),
        Seq2,
        NotFound,
    }
    let mut sends = Vec::new();
    for (i, (conversation, original)) in conversations.iter().zip(&originals).enumerate() {
        let customer = customer_of(conversation);
        let at = t0() + Duration::minutes(1);
        let mut retry = message(conversation, customer, "first, again", at);
        retry.client_msg_id = original.client_msg_id.clone();
        sends.push((retry, Expect::Replay(original.clone())));
        let mut fresh = message(conversation, customer, "second", at);
        fresh.client_msg_id = Some(ClientMsgId::parse(&format!("second-{i}")).unwrap());
        sends.push((fresh, Expect::Seq2));
        let mut lost = message(conversation, customer, "lost", at);
        lost.conversation_id = ConversationId::new_v7();
        lost.client_msg_id = Some(ClientMsgId::parse(&format!("lost-{i}")).unwrap());
        sends.push((lost, Expect::NotFound));
    }
    let tasks: Vec<_> = sends
        .iter()
        .map(|(new, _)| {
            let (store, new) = (store.clone(), new.clone());
            tokio::spawn(async move { store.append(&new, false).await })
        })
        .collect();
    let outcomes = futures::future::join_all(tasks).await;
    for ((new, expected), outcome) in sends.iter().zip(outcomes) {
        match (outcome.expect("task"), expected) {
            (Ok(AppendOutcome::Replayed(replayed)), Expect::Replay(original)) => {
                assert_eq!(&replayed, original, "a retry replays its original");
            }
            (Ok(AppendOutcome::Created { message, .. }), Expect::Seq2) => {
                assert_eq!(message, new.clone().into_message(seq(2), Vec::new()));
            }
            (Err(AppendError::ConversationNotFound), Expect::NotFound) => {}
            (other, expected) => panic!("{other:?}, expected {expected:?}"),
        }
    }
    for conversation in &conversations {
        let after = store.find(tenant, conversation.id).await.unwrap().unwrap();
        assert_eq!(after.last_seq, seq(2), "a retry consumes no seq");
        let page = page(&*store, conversation, MessageCursor::After(Seq::ZERO), 10).await;
        let texts: Vec<_> = page
            .messages
            .iter()
            .map(|m| m.body.as_ref().map(|b| b.as_str().to_owned()))
            .collect();
        assert_eq!(texts, [Some("first".into()), Some("second".into())]);
    }
}

/// What an append hands back is what later reads find, whether the send
/// was stored with others (a plain message, where a store batches) or alone
/// (a reply), down to the time's stored precision.
pub async fn an_append_returns_what_reads_find_alone_or_batched<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let conversation = open_inbox(&*store, tenant).await;
    let customer = customer_of(&conversation);
    // Nanoseconds that a store may cut.
    let at = t0() + Duration::nanoseconds(123_456_789);
    let mut plain = message(&conversation, customer, "plain", at);
    plain.client_msg_id = Some(ClientMsgId::parse("plain").unwrap());
    let mut sent = Vec::new();
    for reply in [false, true] {
        let mut new = plain.clone();
        if reply {
            new.id = MessageId::new_v7();
            new.body = body("a reply");
            new.reply_to = sent.last().map(|m: &chat_domain::Message| m.id);
            new.client_msg_id = Some(ClientMsgId::parse("reply").unwrap());
        }
        let AppendOutcome::Created {
            message,
            conversation: returned,
            reopened,
        } = store.append(&new, true).await.unwrap()
        else {
            panic!("reply {reply}: expected a new message");
        };
        assert!(!reopened, "an open conversation stays as it is");
        let found = store
            .find_message(tenant, conversation.id, message.id)
            .await
            .unwrap();
        assert_eq!(
            found.as_ref(),
            Some(&message),
            "reply {reply}: the stored message"
        );
        let stored = store.find(tenant, conversation.id).await.unwrap().unwrap();
        assert_eq!(returned, stored, "reply {reply}: the conversation as left");
        assert_eq!(stored.last_activity_at, message.created_at, "reply {reply}");
        let summary = store
            .find_summary(tenant, conversation.id, customer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.unread_count, 0, "reply {reply}: read by its sender");
        match store.append(&new, true).await.unwrap() {
            AppendOutcome::Replayed(replayed) => assert_eq!(replayed, message),
            other => panic!("reply {reply}: expected a replay, got {other:?}"),
        }
        sent.push(message);
    }
    assert_eq!(sent.iter().map(|m| m.seq.get()).collect::<Vec<_>>(), [1, 2]);
}
