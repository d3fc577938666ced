use chat_domain::{
    Action, Conversation, ConversationId, ConversationPatch, ConversationScope, ConversationStatus,
    Denied, NewCustomerConversation, Principal, Sender, StaffUserId, Tags,
};

use crate::error::{Field, Reason, Resource};
use crate::ports::{
    ChatEvent, ConversationCursor, ConversationListQuery, ConversationPage, PolicyAction, RepoError,
};
use crate::test_support::*;
use crate::{ChatError, PageLimit};

// ---------------------------------------------------------------------------
// get_or_create_conversation

fn new_conversation_request(clinician: Option<StaffUserId>) -> NewCustomerConversation {
    NewCustomerConversation {
        id: NEW_CONVERSATION_ID,
        tenant: TENANT,
        customer_id: CUSTOMER,
        clinician,
        now: now(),
    }
}

/// Expects a successful creation flow: the policy is asked about the
/// prospective conversation, then the store gets `new` once.
fn expect_creation(
    h: &mut Harness,
    principal: Principal,
    new: &NewCustomerConversation,
    stored: (Conversation, bool),
) {
    h.policy_answers(principal, new.prospective(), PolicyAction::Create, Ok(()));
    let expected = new.clone();
    h.conversations
        .expect_get_or_create_customer()
        .withf(move |n| *n == expected)
        .times(1)
        .return_once(move |_| Ok(stored));
    h.publishes_nothing();
}

#[tokio::test]
async fn staff_creates_the_shared_inbox_with_a_fresh_id_and_the_current_time() {
    let new = new_conversation_request(None);
    let created = new.prospective();
    let mut h = Harness::new();
    expect_creation(&mut h, staff(), &new, (created.clone(), true));

    let (conversation, was_created) = h
        .service()
        .get_or_create_conversation(&staff(), CUSTOMER, None)
        .await
        .unwrap();

    assert_eq!(conversation, created);
    assert_eq!(conversation.id, NEW_CONVERSATION_ID);
    assert!(was_created);
}

#[tokio::test]
async fn an_existing_conversation_is_returned_with_created_false() {
    let new = new_conversation_request(None);
    let mut h = Harness::new();
    expect_creation(&mut h, staff(), &new, (inbox(), false));

    let (conversation, was_created) = h
        .service()
        .get_or_create_conversation(&staff(), CUSTOMER, None)
        .await
        .unwrap();

    assert_eq!(conversation, inbox());
    assert!(!was_created);
}

#[tokio::test]
async fn clinician_opens_a_private_thread_for_themself() {
    let new = new_conversation_request(Some(CLINICIAN));
    let created = new.prospective();
    let mut h = Harness::new();
    expect_creation(&mut h, clinician(), &new, (created.clone(), true));

    let (conversation, was_created) = h
        .service()
        .get_or_create_conversation(&clinician(), CUSTOMER, Some(CLINICIAN))
        .await
        .unwrap();

    assert_eq!(conversation, created);
    assert_eq!(conversation.kind.clinician(), Some(CLINICIAN));
    assert!(was_created);
}

#[tokio::test]
async fn admin_opens_a_private_thread_for_another_clinician() {
    let new = new_conversation_request(Some(CLINICIAN));
    let created = new.prospective();
    let mut h = Harness::new();
    expect_creation(&mut h, admin(), &new, (created.clone(), true));

    let (conversation, was_created) = h
        .service()
        .get_or_create_conversation(&admin(), CUSTOMER, Some(CLINICIAN))
        .await
        .unwrap();

    assert_eq!(conversation, created);
    assert!(was_created);
}

/// Expects a creation refused before the store: neither the store nor the
/// publisher is touched.
fn expect_no_creation(h: &mut Harness) {
    h.conversations.expect_get_or_create_customer().never();
    h.publishes_nothing();
}

#[tokio::test]
async fn customer_cannot_create_a_conversation_and_gets_forbidden() {
    let mut h = Harness::new();
    expect_no_creation(&mut h);
    h.policy_not_asked();

    let err = h
        .service()
        .get_or_create_conversation(&customer(), CUSTOMER, None)
        .await
        .unwrap_err();

    assert!(matches!(err, ChatError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn staff_cannot_open_a_private_thread_for_another_clinician_and_gets_forbidden() {
    let mut h = Harness::new();
    expect_no_creation(&mut h);
    h.policy_not_asked();

    let err = h
        .service()
        .get_or_create_conversation(&staff(), CUSTOMER, Some(CLINICIAN))
        .await
        .unwrap_err();

    assert!(matches!(err, ChatError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn creation_hidden_by_the_host_policy_gives_not_found() {
    let new = new_conversation_request(Some(CLINICIAN));
    let mut h = Harness::new();
    expect_no_creation(&mut h);
    h.policy_answers(
        clinician(),
        new.prospective(),
        PolicyAction::Create,
        Err(Denied::NotFound),
    );

    let err = h
        .service()
        .get_or_create_conversation(&clinician(), CUSTOMER, Some(CLINICIAN))
        .await
        .unwrap_err();

    assert!(
        matches!(err, ChatError::NotFound(Resource::Conversation)),
        "{err:?}"
    );
}

#[tokio::test]
async fn creation_refused_by_the_host_policy_gives_forbidden() {
    let new = new_conversation_request(None);
    let mut h = Harness::new();
    expect_no_creation(&mut h);
    h.policy_answers(
        staff(),
        new.prospective(),
        PolicyAction::Create,
        Err(Denied::Forbidden),
    );

    let err = h
        .service()
        .get_or_create_conversation(&staff(), CUSTOMER, None)
        .await
        .unwrap_err();

    assert!(matches!(err, ChatError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn storage_failure_while_creating_is_unexpected() {
    let mut h = Harness::new();
    h.policy_answers(
        staff(),
        new_conversation_request(None).prospective(),
        PolicyAction::Create,
        Ok(()),
    );
    h.conversations
        .expect_get_or_create_customer()
        .times(1)
        .return_once(|_| Err(RepoError::Unexpected(storage_failure())));
    h.publishes_nothing();

    let err = h
        .service()
        .get_or_create_conversation(&staff(), CUSTOMER, None)
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

// ---------------------------------------------------------------------------
// list_conversations

fn cursor() -> ConversationCursor {
    ConversationCursor {
        last_activity_at: earlier(),
        id: THIRD_CONVERSATION_ID,
    }
}

/// A page of three conversations (inbox, private thread, another inbox).
fn three_item_page() -> ConversationPage {
    ConversationPage {
        items: vec![
            summary(inbox(), 2),
            summary(
                conversation(
                    SECOND_CONVERSATION_ID,
                    Some(CLINICIAN),
                    ConversationStatus::Open,
                ),
                0,
            ),
            summary(
                conversation(THIRD_CONVERSATION_ID, None, ConversationStatus::Open),
                5,
            ),
        ],
        next_cursor: Some(cursor()),
    }
}

/// The store is asked once for `query` and returns `page`.
fn expect_listing(h: &mut Harness, query: ConversationListQuery, page: ConversationPage) {
    h.conversations
        .expect_list_conversations()
        .withf(move |q| *q == query)
        .times(1)
        .return_once(move |_| Ok(page));
}

/// The policy is asked about every item of a listing for `principal` and
/// refuses the conversations in `refused` with the paired answer.
fn expect_policy_on_items(
    h: &mut Harness,
    principal: Principal,
    items: usize,
    refused: Vec<(ConversationId, Denied)>,
) {
    h.policy
        .expect_check()
        .withf(move |p, _, a| *p == principal && *a == PolicyAction::Act(Action::Read))
        .times(items)
        .returning(move |_, c, _| {
            refused
                .iter()
                .find(|(id, _)| *id == c.id)
                .map_or(Ok(()), |(_, denied)| Err(*denied))
        });
}

#[tokio::test]
async fn staff_lists_the_inbox_and_their_own_threads_as_reader() {
    let page = three_item_page();
    let mut h = Harness::new();
    expect_listing(
        &mut h,
        ConversationListQuery {
            kind: None,
            scope: ConversationScope::InboxAndClinician {
                tenant: TENANT,
                clinician: COLLEAGUE,
            },
            reader: Sender::Staff(COLLEAGUE),
            status: Some(ConversationStatus::Open),
            limit: 20,
            cursor: Some(cursor()),
        },
        page.clone(),
    );
    expect_policy_on_items(&mut h, staff(), 3, vec![]);
    h.publishes_nothing();

    let listed = h
        .service()
        .list_conversations(
            &staff(),
            Some(ConversationStatus::Open),
            None,
            PageLimit::parse(20).unwrap(),
            Some(cursor()),
        )
        .await
        .unwrap();

    assert_eq!(listed, page);
}

#[tokio::test]
async fn admin_lists_every_conversation_of_the_tenant() {
    let page = three_item_page();
    let mut h = Harness::new();
    expect_listing(
        &mut h,
        ConversationListQuery {
            kind: None,
            scope: ConversationScope::All { tenant: TENANT },
            reader: Sender::Staff(ADMIN),
            status: None,
            limit: 50,
            cursor: None,
        },
        page.clone(),
    );
    expect_policy_on_items(&mut h, admin(), 3, vec![]);

    let listed = h
        .service()
        .list_conversations(&admin(), None, None, PageLimit::default(), None)
        .await
        .unwrap();

    assert_eq!(listed, page);
}

#[tokio::test]
async fn customer_lists_only_their_own_conversations() {
    let page = ConversationPage {
        items: vec![summary(inbox(), 1)],
        next_cursor: None,
    };
    let mut h = Harness::new();
    expect_listing(
        &mut h,
        ConversationListQuery {
            kind: None,
            scope: ConversationScope::Customer {
                tenant: TENANT,
                customer_id: CUSTOMER,
            },
            reader: Sender::Customer(CUSTOMER),
            status: Some(ConversationStatus::Resolved),
            limit: 1,
            cursor: None,
        },
        page.clone(),
    );
    expect_policy_on_items(&mut h, customer(), 1, vec![]);

    let listed = h
        .service()
        .list_conversations(
            &customer(),
            Some(ConversationStatus::Resolved),
            None,
            PageLimit::parse(1).unwrap(),
            None,
        )
        .await
        .unwrap();

    assert_eq!(listed, page);
}

#[tokio::test]
async fn conversations_the_host_policy_refuses_are_left_out_of_the_page() {
    let page = three_item_page();
    let mut h = Harness::new();
    expect_listing(
        &mut h,
        ConversationListQuery {
            kind: None,
            scope: ConversationScope::All { tenant: TENANT },
            reader: Sender::Staff(ADMIN),
            status: None,
            limit: 3,
            cursor: None,
        },
        page.clone(),
    );
    expect_policy_on_items(
        &mut h,
        admin(),
        3,
        vec![
            (CONVERSATION_ID, Denied::NotFound),
            (THIRD_CONVERSATION_ID, Denied::Forbidden),
        ],
    );

    let listed = h
        .service()
        .list_conversations(&admin(), None, None, PageLimit::parse(3).unwrap(), None)
        .await
        .unwrap();

    assert_eq!(listed.items, vec![page.items[1].clone()]);
    assert_eq!(listed.items[0].conversation.id, SECOND_CONVERSATION_ID);
    // The store's cursor still points past the refused items, so the next
    // page neither repeats nor skips anything.
    assert_eq!(listed.next_cursor, Some(cursor()));
}

#[tokio::test]
async fn an_empty_listing_asks_the_policy_nothing() {
    let mut h = Harness::new();
    h.conversations
        .expect_list_conversations()
        .times(1)
        .return_once(|_| Ok(ConversationPage::default()));
    h.policy_not_asked();

    let listed = h
        .service()
        .list_conversations(&staff(), None, None, PageLimit::default(), None)
        .await
        .unwrap();

    assert_eq!(listed, ConversationPage::default());
}

#[tokio::test]
async fn storage_failure_while_listing_conversations_is_unexpected() {
    let mut h = Harness::new();
    h.conversations
        .expect_list_conversations()
        .times(1)
        .return_once(|_| Err(RepoError::Unexpected(storage_failure())));
    h.policy_not_asked();

    let err = h
        .service()
        .list_conversations(&staff(), None, None, PageLimit::default(), None)
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

// ---------------------------------------------------------------------------
// get_conversation

/// `find_summary` must not be reached.
fn expect_no_summary(h: &mut Harness) {
    h.conversations.expect_find_summary().never();
}

#[tokio::test]
async fn customer_gets_their_conversation_with_their_unread_count() {
    let expected = summary(inbox(), 3);
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Read);
    let returned = expected.clone();
    h.conversations
        .expect_find_summary()
        .withf(|t, id, reader| {
            *t == TENANT && *id == CONVERSATION_ID && *reader == Sender::Customer(CUSTOMER)
        })
        .times(1)
        .return_once(move |_, _, _| Ok(Some(returned)));
    h.publishes_nothing();

    let got = h
        .service()
        .get_conversation(&customer(), CONVERSATION_ID)
        .await
        .unwrap();

    assert_eq!(got, expected);
}

#[tokio::test]
async fn clinician_gets_their_private_thread_with_their_unread_count() {
    let expected = summary(private_thread(), 0);
    let mut h = Harness::new();
    h.authorized(clinician(), private_thread(), Action::Read);
    let returned = expected.clone();
    h.conversations
        .expect_find_summary()
        .withf(|t, id, reader| {
            *t == TENANT && *id == CONVERSATION_ID && *reader == Sender::Staff(CLINICIAN)
        })
        .times(1)
        .return_once(move |_, _, _| Ok(Some(returned)));

    let got = h
        .service()
        .get_conversation(&clinician(), CONVERSATION_ID)
        .await
        .unwrap();

    assert_eq!(got, expected);
}

#[tokio::test]
async fn reading_a_conversation_is_denied_to_whoever_the_rules_or_the_policy_refuse() {
    assert_denied(
        Action::Read,
        (customer(), inbox()),
        expect_no_summary,
        |service, who| async move { service.get_conversation(&who, CONVERSATION_ID).await },
    )
    .await;
}

#[tokio::test]
async fn a_summary_gone_after_the_check_is_not_found() {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Read);
    h.conversations
        .expect_find_summary()
        .times(1)
        .return_once(|_, _, _| Ok(None));

    let err = h
        .service()
        .get_conversation(&customer(), CONVERSATION_ID)
        .await
        .unwrap_err();

    assert!(
        matches!(err, ChatError::NotFound(Resource::Conversation)),
        "{err:?}"
    );
}

#[tokio::test]
async fn storage_failure_while_finding_the_conversation_is_unexpected() {
    let mut h = Harness::new();
    h.conversations
        .expect_find()
        .times(1)
        .return_once(|_, _| Err(RepoError::Unexpected(storage_failure())));
    h.policy_not_asked();
    expect_no_summary(&mut h);

    let err = h
        .service()
        .get_conversation(&customer(), CONVERSATION_ID)
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

#[tokio::test]
async fn storage_failure_while_loading_the_summary_is_unexpected() {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Read);
    h.conversations
        .expect_find_summary()
        .times(1)
        .return_once(|_, _, _| Err(RepoError::Unexpected(storage_failure())));

    let err = h
        .service()
        .get_conversation(&customer(), CONVERSATION_ID)
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

// ---------------------------------------------------------------------------
// update_conversation

fn resolve_and_tag() -> ConversationPatch {
    ConversationPatch {
        status: Some(ConversationStatus::Resolved),
        assignee: Some(Some(COLLEAGUE)),
        tags: Some(Tags::parse(&["refill"]).unwrap()),
    }
}

fn updated(mut conversation: Conversation, patch: &ConversationPatch) -> Conversation {
    if let Some(status) = patch.status {
        conversation.status = status;
    }
    if let Some(assignee) = patch.assignee {
        conversation.assignee = assignee;
    }
    if let Some(tags) = &patch.tags {
        conversation.tags = tags.clone();
    }
    conversation.updated_at = now();
    conversation
}

/// The store is asked once to apply `patch` at [`now`] and returns
/// `result`.
fn expect_update(
    h: &mut Harness,
    patch: ConversationPatch,
    result: Result<Option<Conversation>, RepoError>,
) {
    h.conversations
        .expect_update()
        .withf(move |t, id, p, at| {
            *t == TENANT && *id == CONVERSATION_ID && *p == patch && *at == now()
        })
        .times(1)
        .return_once(move |_, _, _, _| result);
}

fn expect_no_update(h: &mut Harness) {
    h.conversations.expect_update().never();
    h.publishes_nothing();
}

#[tokio::test]
async fn staff_updates_the_conversation_and_publishes_conversation_updated() {
    let patch = resolve_and_tag();
    let after = updated(inbox(), &patch);
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Update);
    expect_update(&mut h, patch.clone(), Ok(Some(after.clone())));
    h.publishes(ChatEvent::ConversationUpdated {
        conversation: after.clone(),
    });

    let got = h
        .service()
        .update_conversation(&staff(), CONVERSATION_ID, patch)
        .await
        .unwrap();

    assert_eq!(got, after);
    assert_eq!(got.status, ConversationStatus::Resolved);
    assert_eq!(got.assignee, Some(COLLEAGUE));
}

#[tokio::test]
async fn admin_unassigns_a_private_thread() {
    let patch = ConversationPatch {
        assignee: Some(None),
        ..ConversationPatch::default()
    };
    let mut before = private_thread();
    before.assignee = Some(CLINICIAN);
    let after = updated(before.clone(), &patch);
    let mut h = Harness::new();
    h.authorized(admin(), before, Action::Update);
    expect_update(&mut h, patch.clone(), Ok(Some(after.clone())));
    h.publishes(ChatEvent::ConversationUpdated {
        conversation: after.clone(),
    });

    let got = h
        .service()
        .update_conversation(&admin(), CONVERSATION_ID, patch)
        .await
        .unwrap();

    assert_eq!(got, after);
    assert_eq!(got.assignee, None);
}

#[tokio::test]
async fn customer_cannot_update_their_conversation_and_gets_forbidden() {
    let mut h = Harness::new();
    h.find_returns(TENANT, Some(inbox())).policy_not_asked();
    expect_no_update(&mut h);

    let err = h
        .service()
        .update_conversation(&customer(), CONVERSATION_ID, resolve_and_tag())
        .await
        .unwrap_err();

    assert!(matches!(err, ChatError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn updating_is_denied_to_whoever_the_rules_or_the_policy_refuse() {
    assert_denied(
        Action::Update,
        (staff(), inbox()),
        expect_no_update,
        |service, who| async move {
            service
                .update_conversation(&who, CONVERSATION_ID, resolve_and_tag())
                .await
        },
    )
    .await;
}

#[tokio::test]
async fn an_empty_patch_is_invalid() {
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Update);
    expect_no_update(&mut h);

    let err = h
        .service()
        .update_conversation(&staff(), CONVERSATION_ID, ConversationPatch::default())
        .await
        .unwrap_err();

    assert_invalid(&err, Field::Patch, Reason::Empty);
}

#[tokio::test]
async fn a_conversation_gone_before_the_update_is_not_found_and_publishes_nothing() {
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Update);
    expect_update(&mut h, resolve_and_tag(), Ok(None));
    h.publishes_nothing();

    let err = h
        .service()
        .update_conversation(&staff(), CONVERSATION_ID, resolve_and_tag())
        .await
        .unwrap_err();

    assert!(
        matches!(err, ChatError::NotFound(Resource::Conversation)),
        "{err:?}"
    );
}

#[tokio::test]
async fn storage_failure_while_updating_is_unexpected_and_publishes_nothing() {
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Update);
    expect_update(
        &mut h,
        resolve_and_tag(),
        Err(RepoError::Unexpected(storage_failure())),
    );
    h.publishes_nothing();

    let err = h
        .service()
        .update_conversation(&staff(), CONVERSATION_ID, resolve_and_tag())
        .await
        .unwrap_err();

    assert_unexpected(&err);
}

// ---------------------------------------------------------------------------
// unread_total

fn expect_unread_total(
    h: &mut Harness,
    scope: ConversationScope,
    reader: Sender,
    result: Result<u64, RepoError>,
) {
    h.conversations
        .expect_unread_total()
        .withf(move |s, r| *s == scope && *r == reader)
        .times(1)
        .return_once(move |_, _| result);
}

#[tokio::test]
async fn each_principals_unread_total_covers_their_scope_by_the_domain_rules_alone() {
    let cases = [
        (
            "staff: the inbox and their own threads",
            staff(),
            ConversationScope::InboxAndClinician {
                tenant: TENANT,
                clinician: COLLEAGUE,
            },
            7,
        ),
        (
            "an admin: the whole tenant",
            admin(),
            ConversationScope::All { tenant: TENANT },
            42,
        ),
        (
            "a customer: their own conversations",
            customer(),
            ConversationScope::Customer {
                tenant: TENANT,
                customer_id: CUSTOMER,
            },
            0,
        ),
    ];
    for (who, principal, scope, expected) in cases {
        let mut h = Harness::new();
        expect_unread_total(&mut h, scope, principal.as_sender(), Ok(expected));
        h.policy_not_asked();

        let total = h.service().unread_total(&principal).await.unwrap();

        assert_eq!(total, expected, "{who}");
    }
}

#[tokio::test]
async fn storage_failure_while_counting_unread_is_unexpected() {
    let mut h = Harness::new();
    expect_unread_total(
        &mut h,
        ConversationScope::Customer {
            tenant: TENANT,
            customer_id: CUSTOMER,
        },
        Sender::Customer(CUSTOMER),
        Err(RepoError::Unexpected(storage_failure())),
    );

    let err = h.service().unread_total(&customer()).await.unwrap_err();

    assert_unexpected(&err);
}
