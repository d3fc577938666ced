use chat_domain::{Action, CustomerId, Principal, ReadState, Sender, Seq, TenantId};

use crate::error::Resource;
use crate::ports::{ChatEvent, Receipt, ReceiptUpdate, RepoError, Route};
use crate::test_support::*;
use crate::{ChatError, MockEventPublisher};

// ---------------------------------------------------------------------------
// mark

/// `advance` is called once with these arguments at [`now`] and returns
/// `result`.
fn expect_advance(
    h: &mut Harness,
    reader: Sender,
    receipt: Receipt,
    up_to: Seq,
    result: Result<Option<ReceiptUpdate>, RepoError>,
) {
    h.read_states
        .expect_advance()
        .withf(move |t, id, who, what, to, at| {
            *t == TENANT
                && *id == CONVERSATION_ID
                && *who == reader
                && *what == receipt
                && *to == up_to
                && *at == now()
        })
        .times(1)
        .return_once(move |_, _, _, _, _, _| result);
}

fn expect_no_advance(h: &mut Harness) {
    h.read_states.expect_advance().never();
    h.publishes_nothing();
}

#[tokio::test]
async fn a_participant_moves_a_marker_and_it_is_announced() {
    let cases = [
        (
            "a customer marks read",
            customer(),
            inbox(),
            Receipt::Read,
            (4, 4),
            4,
        ),
        (
            "a clinician marks delivered",
            clinician(),
            private_thread(),
            Receipt::Delivered,
            (1, 3),
            3,
        ),
    ];
    for (who, principal, conversation, receipt, (read, delivered), up_to) in cases {
        let reader = principal.as_sender();
        let state = read_state(reader, read, delivered);
        let mut h = Harness::new();
        h.authorized(principal, conversation.clone(), Action::MarkRead);
        expect_advance(
            &mut h,
            reader,
            receipt,
            seq(up_to),
            Ok(Some(ReceiptUpdate { state, moved: true })),
        );
        h.publishes(ChatEvent::ReceiptMoved {
            route: Route::of(&conversation),
            receipt,
            state,
        });

        let got = h
            .service()
            .mark(&principal, CONVERSATION_ID, receipt, seq(up_to))
            .await
            .unwrap();

        assert_eq!(got, state, "{who}");
    }
}

#[tokio::test]
async fn a_marker_that_does_not_move_publishes_nothing_and_returns_the_state() {
    let reader = Sender::Customer(CUSTOMER);
    // Asked for 2, already at 4: markers never move backwards.
    let state = read_state(reader, 4, 4);
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::MarkRead);
    expect_advance(
        &mut h,
        reader,
        Receipt::Read,
        seq(2),
        Ok(Some(ReceiptUpdate {
            state,
            moved: false,
        })),
    );
    h.publishes_nothing();

    let got = h
        .service()
        .mark(&customer(), CONVERSATION_ID, Receipt::Read, seq(2))
        .await
        .unwrap();

    assert_eq!(got, state);
}

#[tokio::test]
async fn marking_read_is_denied_to_whoever_the_rules_or_the_policy_refuse() {
    assert_denied(
        Action::MarkRead,
        (customer(), inbox()),
        expect_no_advance,
        |service, who| async move {
            service
                .mark(&who, CONVERSATION_ID, Receipt::Read, seq(4))
                .await
        },
    )
    .await;
}

#[tokio::test]
async fn marking_delivered_is_denied_to_whoever_the_rules_or_the_policy_refuse() {
    assert_denied(
        Action::MarkRead,
        (customer(), inbox()),
        expect_no_advance,
        |service, who| async move {
            service
                .mark(&who, CONVERSATION_ID, Receipt::Delivered, seq(4))
                .await
        },
    )
    .await;
}

#[tokio::test]
async fn a_conversation_gone_before_the_marker_moves_is_not_found() {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::MarkRead);
    expect_advance(
        &mut h,
        Sender::Customer(CUSTOMER),
        Receipt::Read,
        seq(4),
        Ok(None),
    );
    h.publishes_nothing();

    let err = h
        .service()
        .mark(&customer(), CONVERSATION_ID, Receipt::Read, seq(4))
        .await
        .unwrap_err();

    assert!(
        matches!(err, ChatError::NotFound(Resource::Conversation)),
        "{err:?}"
    );
}

#[tokio::test]
async fn storage_failure_while_marking_is_unexpected() {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::MarkRead);
    expect_advance(
        &mut h,
        Sender::Customer(CUSTOMER),
        Receipt::Read,
        seq(4),
        Err(RepoError::Unexpected(storage_failure())),
    );
    h.publishes_nothing();

    let err = h
        .service()
        .mark(&customer(), CONVERSATION_ID, Receipt::Read, seq(4))
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

#[tokio::test]
async fn receipts_are_listed_for_readers_only() {
    let tenant = TenantId::new_v4();
    let found = fresh_inbox(tenant);
    let state = ReadState {
        conversation_id: found.id,
        reader: Sender::Customer(found.kind.customer_id().unwrap()),
        last_read_seq: chat_domain::Seq::ZERO,
        last_delivered_seq: chat_domain::Seq::ZERO,
        updated_at: now(),
    };
    let mut read_states = crate::ports::MockReadStateRepository::new();
    let id = found.id;
    read_states
        .expect_list_receipts()
        .withf(move |t, i| *t == tenant && *i == id)
        .times(1)
        .returning(move |_, _| Ok(vec![state]));
    let service = chat_finding(found.clone(), MockEventPublisher::new(), read_states);
    assert_eq!(
        service.receipts(&staff_in(tenant), found.id).await.unwrap(),
        vec![state]
    );
    let stranger = Principal::customer(tenant, CustomerId::new_v4());
    assert!(matches!(
        service.receipts(&stranger, found.id).await,
        Err(ChatError::NotFound(Resource::Conversation))
    ));
}
