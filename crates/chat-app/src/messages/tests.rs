use chat_domain::{
    Action, AttachmentId, AttachmentIdsError, ClientMsgId, Conversation, ConversationKind,
    ConversationPatch, ConversationStatus, Message, MessageBody, MessageId, NewMessage, Principal,
    Sender,
};
use uuid::Uuid;

use crate::error::{Field, Reason, Resource};
use crate::ports::{
    AppendError, AppendOutcome, ChatEvent, MessageCursor, MessagePage, MessageQuery, RepoError,
    Route,
};
use crate::test_support::*;
use crate::{ChatError, PageLimit, SendMessage, SendOutcome};

// ---------------------------------------------------------------------------
// list_messages

fn message_page() -> MessagePage {
    MessagePage {
        messages: vec![stored_message(
            Sender::Staff(COLLEAGUE),
            "Ready for pick-up.",
        )],
        has_more: true,
    }
}

fn expect_message_listing(
    h: &mut Harness,
    query: MessageQuery,
    result: Result<MessagePage, RepoError>,
) {
    h.messages
        .expect_list_messages()
        .withf(move |t, id, q| *t == TENANT && *id == CONVERSATION_ID && *q == query)
        .times(1)
        .return_once(move |_, _, _| result);
}

fn expect_no_message_listing(h: &mut Harness) {
    h.messages.expect_list_messages().never();
}

#[tokio::test]
async fn customer_lists_messages_with_the_given_cursor_and_limit() {
    let query = MessageQuery {
        cursor: MessageCursor::Before(seq(10)),
        limit: 25,
    };
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Read);
    expect_message_listing(&mut h, query, Ok(message_page()));
    h.publishes_nothing();

    let page = h
        .service()
        .list_messages(
            &customer(),
            CONVERSATION_ID,
            MessageCursor::Before(seq(10)),
            PageLimit::parse(25).unwrap(),
        )
        .await
        .unwrap();

    assert_eq!(page, message_page());
}

#[tokio::test]
async fn clinician_catches_up_on_their_private_thread() {
    let query = MessageQuery {
        cursor: MessageCursor::After(seq(3)),
        limit: 50,
    };
    let mut h = Harness::new();
    h.authorized(clinician(), private_thread(), Action::Read);
    expect_message_listing(&mut h, query, Ok(message_page()));

    let page = h
        .service()
        .list_messages(
            &clinician(),
            CONVERSATION_ID,
            MessageCursor::After(seq(3)),
            PageLimit::default(),
        )
        .await
        .unwrap();

    assert_eq!(page, message_page());
}

#[tokio::test]
async fn listing_messages_is_denied_to_whoever_the_rules_or_the_policy_refuse() {
    assert_denied(
        Action::Read,
        (customer(), inbox()),
        expect_no_message_listing,
        |service, who| async move {
            service
                .list_messages(
                    &who,
                    CONVERSATION_ID,
                    MessageCursor::Latest,
                    PageLimit::default(),
                )
                .await
        },
    )
    .await;
}

#[tokio::test]
async fn storage_failure_while_listing_messages_is_unexpected() {
    let query = MessageQuery {
        cursor: MessageCursor::Latest,
        limit: 50,
    };
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Read);
    expect_message_listing(&mut h, query, Err(RepoError::Unexpected(storage_failure())));

    let err = h
        .service()
        .list_messages(
            &customer(),
            CONVERSATION_ID,
            MessageCursor::Latest,
            PageLimit::default(),
        )
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

// ---------------------------------------------------------------------------
// send_message

/// `append` is called once with exactly `new` and `reopen`, and returns
/// `result`.
fn expect_append(
    h: &mut Harness,
    new: NewMessage,
    reopen: bool,
    result: Result<AppendOutcome, AppendError>,
) {
    h.messages
        .expect_append()
        .withf(move |m, r| *m == new && *r == reopen)
        .times(1)
        .return_once(move |_, _| result);
}

/// What a store answers when it appends `message` to `before`, asked to
/// reopen it or not.
fn created(before: &Conversation, message: &Message, reopen: bool) -> AppendOutcome {
    let mut conversation = before.clone();
    let reopened = conversation.record_message(message.seq, message.created_at, reopen);
    AppendOutcome::Created {
        message: message.clone(),
        conversation,
        reopened,
    }
}

fn expect_no_append(h: &mut Harness) {
    h.messages.expect_append().never();
    h.publishes_nothing();
}

/// `principal` sends `request` into `before`, a conversation they may send
/// into: the message, from `sender`, is appended once at seq 5, asking the
/// store to reopen the conversation iff the sender is a customer;
/// `MessageCreated` is published with the conversation as the store says
/// the append left it, and `ConversationUpdated` too iff the store says it
/// reopened it (checked to be `reopens`). Returns the outcome, checked to be
/// the created message.
async fn assert_send_creates(
    principal: Principal,
    sender: Sender,
    before: Conversation,
    request: SendMessage,
    reopens: bool,
) -> SendOutcome {
    let new = expected_new_message(sender, &request);
    let stored = new.clone().into_message(seq(5), Vec::new());
    let reopen = !principal.is_staff();
    let appended = created(&before, &stored, reopen);
    let AppendOutcome::Created {
        conversation: after,
        reopened,
        ..
    } = appended.clone()
    else {
        unreachable!("created() creates");
    };
    assert_eq!(reopened, reopens, "the case's expectation");
    let mut h = Harness::new();
    h.authorized(principal, before, Action::Send);
    expect_append(&mut h, new, reopen, Ok(appended));
    h.publishes(ChatEvent::MessageCreated {
        route: Route::of(&after),
        message: stored.clone(),
    });
    if reopens {
        // The reopening is announced too.
        h.publishes(ChatEvent::ConversationUpdated {
            conversation: after,
        });
    }

    let outcome = h
        .service()
        .send_message(&principal, CONVERSATION_ID, request)
        .await
        .unwrap();

    assert!(outcome.created);
    assert_eq!(outcome.message, stored);
    outcome
}

#[tokio::test]
async fn staff_sends_a_message_and_publishes_message_created() {
    let request = SendMessage {
        body: Some(MessageBody::parse("  Your prescription is ready  ").unwrap()),
        attachment_ids: Vec::new(),
        reply_to: Some(STORED_MESSAGE_ID),
        client_msg_id: Some(ClientMsgId::parse("c-81").unwrap()),
    };
    let outcome =
        assert_send_creates(staff(), Sender::Staff(COLLEAGUE), inbox(), request, false).await;
    assert_eq!(outcome.message.seq, seq(5));
}

#[tokio::test]
async fn a_customer_send_reopens_a_closed_conversation_and_a_staff_send_does_not() {
    use ConversationStatus::{Archived, Open, Resolved};
    #[rustfmt::skip]
    let cases = [
        // (who, principal, status before, text, reopens)
        ("customer, open",     customer(), Open,     "Is my refill ready?", false),
        ("customer, resolved", customer(), Resolved, "One more question",   true),
        ("customer, archived", customer(), Archived, "Hello again",         true),
        ("staff, resolved",    staff(),    Resolved, "Closing note",        false),
    ];
    for (who, principal, status, text, reopens) in cases {
        eprintln!("{who}");
        let sender = principal.as_sender();
        let before = inbox_with_status(status);
        assert_send_creates(principal, sender, before, send_request(text), reopens).await;
    }
}

#[tokio::test]
async fn a_replayed_client_msg_id_returns_the_original_and_publishes_nothing() {
    let request = SendMessage {
        client_msg_id: Some(ClientMsgId::parse("c-81").unwrap()),
        ..send_request("Is my refill ready?")
    };
    let new = expected_new_message(Sender::Customer(CUSTOMER), &request);
    let original = Message {
        client_msg_id: request.client_msg_id.clone(),
        ..stored_message(Sender::Customer(CUSTOMER), "Is my refill ready?")
    };
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Send);
    expect_append(
        &mut h,
        new,
        true,
        Ok(AppendOutcome::Replayed(original.clone())),
    );
    h.publishes_nothing();

    let outcome = h
        .service()
        .send_message(&customer(), CONVERSATION_ID, request)
        .await
        .unwrap();

    assert!(!outcome.created);
    assert_eq!(outcome.message, original);
    assert_eq!(outcome.message.id, STORED_MESSAGE_ID);
}

#[tokio::test]
async fn sending_is_denied_to_whoever_the_rules_or_the_policy_refuse() {
    assert_denied(
        Action::Send,
        (customer(), private_thread()),
        expect_no_append,
        |service, who| async move {
            service
                .send_message(&who, CONVERSATION_ID, send_request("hi"))
                .await
        },
    )
    .await;
}

/// Under a policy that refuses nothing, the first send reads the
/// conversation and later ones decide from its access facts: one read for
/// many sends, and the same answers as the full check, denials included.
#[tokio::test]
async fn sends_under_a_policy_that_refuses_nothing_read_the_conversation_once() {
    let request = send_request("hi");
    let staff_message = expected_new_message(Sender::Staff(COLLEAGUE), &request);
    let customer_message = expected_new_message(Sender::Customer(CUSTOMER), &request);
    let mut h = Harness::new();
    h.policy_refuses_nothing = true;
    // One read, and the policy asked once (by the shared full check).
    h.authorized(staff(), inbox(), Action::Send);
    for (new, reopen) in [(staff_message, false), (customer_message, true)] {
        let stored = new.clone().into_message(seq(5), Vec::new());
        let appended = created(&inbox(), &stored, reopen);
        h.messages
            .expect_append()
            .withf(move |m, r| *m == new && *r == reopen)
            .times(2)
            .returning(move |_, _| Ok(appended.clone()));
    }
    h.events.expect_publish().times(4).return_const(());
    let service = h.service();

    for principal in [staff(), staff(), customer(), customer()] {
        let sent = service
            .send_message(&principal, CONVERSATION_ID, request.clone())
            .await;
        assert!(sent.unwrap().created);
    }
    // Refused from the facts alone, with what the full check would say.
    for (label, principal) in [
        ("another customer", other_customer()),
        ("a customer of another tenant", foreign_customer()),
    ] {
        let err = service
            .send_message(&principal, CONVERSATION_ID, request.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ChatError::NotFound(Resource::Conversation)),
            "{label}: {err:?}"
        );
    }
}

/// Access facts this service learns have changed (here from the
/// conversation an update returns, which a real store cannot change) are
/// not trusted any more: the next send reads the conversation again.
#[tokio::test]
async fn a_published_conversation_with_other_access_facts_drops_them() {
    let request = send_request("hi");
    let new = expected_new_message(Sender::Staff(COLLEAGUE), &request);
    let stored = new.clone().into_message(seq(5), Vec::new());
    let moved = Conversation {
        kind: ConversationKind::Customer {
            customer_id: CUSTOMER,
            clinician: Some(CLINICIAN),
        },
        ..inbox()
    };
    let mut h = Harness::new();
    h.policy_refuses_nothing = true;
    // The first send, the update and the send after it: three reads.
    h.conversations
        .expect_find()
        .times(3)
        .returning(|_, _| Ok(Some(inbox())));
    h.policy.expect_check().times(3).returning(|_, _, _| Ok(()));
    let returned = moved.clone();
    h.conversations
        .expect_update()
        .times(1)
        .return_once(move |_, _, _, _| Ok(Some(returned)));
    h.messages
        .expect_append()
        .times(3)
        .returning(move |_, _| Ok(created(&inbox(), &stored, false)));
    h.events.expect_publish().times(4).return_const(());
    let service = h.service();

    service
        .send_message(&staff(), CONVERSATION_ID, request.clone())
        .await
        .unwrap();
    // Known now: no read.
    service
        .send_message(&staff(), CONVERSATION_ID, request.clone())
        .await
        .unwrap();
    let patch = ConversationPatch {
        status: Some(ConversationStatus::Resolved),
        ..ConversationPatch::default()
    };
    service
        .update_conversation(&staff(), CONVERSATION_ID, patch)
        .await
        .unwrap();
    // The update announced other facts: read again.
    service
        .send_message(&staff(), CONVERSATION_ID, request)
        .await
        .unwrap();
}

/// A policy that may refuse sees the current conversation on every send.
#[tokio::test]
async fn sends_under_a_policy_that_may_refuse_read_the_conversation_each_time() {
    let request = send_request("hi");
    let new = expected_new_message(Sender::Staff(COLLEAGUE), &request);
    let stored = new.clone().into_message(seq(5), Vec::new());
    let mut h = Harness::new();
    h.conversations
        .expect_find()
        .times(3)
        .returning(|_, _| Ok(Some(inbox())));
    h.policy.expect_check().times(3).returning(|_, _, _| Ok(()));
    h.messages
        .expect_append()
        .times(3)
        .returning(move |_, _| Ok(created(&inbox(), &stored, false)));
    h.events.expect_publish().times(3).return_const(());
    let service = h.service();
    for _ in 0..3 {
        service
            .send_message(&staff(), CONVERSATION_ID, request.clone())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_message_without_a_body_is_invalid() {
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Send);
    expect_no_append(&mut h);

    let err = h
        .service()
        .send_message(
            &staff(),
            CONVERSATION_ID,
            SendMessage {
                body: None,
                attachment_ids: Vec::new(),
                reply_to: None,
                client_msg_id: Some(ClientMsgId::parse("c-82").unwrap()),
            },
        )
        .await
        .unwrap_err();

    assert_invalid(&err, Field::Body, Reason::Required);
}

#[tokio::test]
async fn a_reply_to_a_message_outside_the_conversation_is_invalid() {
    let request = SendMessage {
        reply_to: Some(MessageId::from_uuid(Uuid::from_u128(0x3e_dead))),
        ..send_request("Answering that")
    };
    let new = expected_new_message(Sender::Staff(COLLEAGUE), &request);
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Send);
    expect_append(&mut h, new, false, Err(AppendError::ReplyTargetNotFound));
    h.publishes_nothing();

    let err = h
        .service()
        .send_message(&staff(), CONVERSATION_ID, request)
        .await
        .unwrap_err();

    assert_invalid(&err, Field::ReplyTo, Reason::NotInConversation);
}

#[tokio::test]
async fn a_conversation_gone_before_the_append_is_not_found() {
    let request = send_request("hi");
    let new = expected_new_message(Sender::Staff(COLLEAGUE), &request);
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Send);
    expect_append(&mut h, new, false, Err(AppendError::ConversationNotFound));
    h.publishes_nothing();

    let err = h
        .service()
        .send_message(&staff(), CONVERSATION_ID, request)
        .await
        .unwrap_err();

    assert!(
        matches!(err, ChatError::NotFound(Resource::Conversation)),
        "{err:?}"
    );
}

#[tokio::test]
async fn storage_failure_while_appending_is_unexpected_and_publishes_nothing() {
    let request = send_request("hi");
    let new = expected_new_message(Sender::Staff(COLLEAGUE), &request);
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Send);
    expect_append(
        &mut h,
        new,
        false,
        Err(AppendError::Unexpected(storage_failure())),
    );
    h.publishes_nothing();

    let err = h
        .service()
        .send_message(&staff(), CONVERSATION_ID, request)
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

#[tokio::test]
async fn storage_failure_while_finding_the_conversation_to_send_into_is_unexpected() {
    let mut h = Harness::new();
    h.conversations
        .expect_find()
        .times(1)
        .return_once(|_, _| Err(RepoError::Unexpected(storage_failure())));
    h.policy_not_asked();
    expect_no_append(&mut h);

    let err = h
        .service()
        .send_message(&staff(), CONVERSATION_ID, send_request("hi"))
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

// ---------------------------------------------------------------------------
// send_message with attachments

fn with_attachments(ids: Vec<AttachmentId>) -> SendMessage {
    SendMessage {
        body: None,
        attachment_ids: ids,
        reply_to: None,
        client_msg_id: None,
    }
}

#[tokio::test]
async fn a_message_may_be_attachments_only() {
    let request = with_attachments(vec![UPLOAD_ID, OTHER_UPLOAD_ID]);
    let new = expected_new_message(Sender::Customer(CUSTOMER), &request);
    assert_eq!(new.attachments, vec![UPLOAD_ID, OTHER_UPLOAD_ID]);
    let stored = new
        .clone()
        .into_message(seq(5), vec![stored_attachment(None).into()]);
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Send);
    expect_append(&mut h, new, true, Ok(created(&inbox(), &stored, true)));
    h.events.expect_publish().times(1).return_const(());
    let outcome = h
        .service()
        .send_message(&customer(), CONVERSATION_ID, request)
        .await
        .unwrap();
    assert_eq!(outcome.message, stored);
}

#[tokio::test]
async fn repeated_or_more_than_ten_attachments_are_invalid() {
    let eleven: Vec<AttachmentId> = (0..11_u128)
        .map(|i| AttachmentId::from_uuid(Uuid::from_u128(0xa7_1000 + i)))
        .collect();
    for (ids, field, reason) in [
        (
            vec![UPLOAD_ID, UPLOAD_ID],
            Field::AttachmentIds,
            Reason::AttachmentIds(AttachmentIdsError::Repeated(UPLOAD_ID)),
        ),
        (
            eleven,
            Field::AttachmentIds,
            Reason::AttachmentIds(AttachmentIdsError::TooMany(11)),
        ),
        (Vec::new(), Field::Body, Reason::Required),
    ] {
        let mut h = Harness::new();
        h.authorized(customer(), inbox(), Action::Send);
        expect_no_append(&mut h);
        let err = h
            .service()
            .send_message(&customer(), CONVERSATION_ID, with_attachments(ids))
            .await
            .unwrap_err();
        assert_invalid(&err, field, reason);
    }
}

#[tokio::test]
async fn attachments_the_store_refuses_are_not_found_or_invalid() {
    for (refusal, not_found) in [
        (AppendError::AttachmentNotFound(UPLOAD_ID), true),
        (AppendError::AttachmentAlreadyUsed(UPLOAD_ID), false),
    ] {
        let request = with_attachments(vec![UPLOAD_ID]);
        let new = expected_new_message(Sender::Customer(CUSTOMER), &request);
        let mut h = Harness::new();
        h.authorized(customer(), inbox(), Action::Send);
        expect_append(&mut h, new, true, Err(refusal));
        h.publishes_nothing();
        let err = h
            .service()
            .send_message(&customer(), CONVERSATION_ID, request)
            .await
            .unwrap_err();
        if not_found {
            assert!(
                matches!(err, ChatError::NotFound(Resource::Attachment(id)) if id == UPLOAD_ID),
                "{err:?}"
            );
        } else {
            assert_invalid(
                &err,
                Field::AttachmentIds,
                Reason::AlreadyAttached(UPLOAD_ID),
            );
        }
    }
}
