//! Unit tests of [`ChatService`]: every use case against mocked ports, with a
//! fixed clock and fixed identifiers.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use anyhow::anyhow;
use chat_domain::{
    Action, ClientMsgId, Conversation, ConversationId, ConversationKind, ConversationPatch,
    ConversationScope, ConversationStatus, CustomerId, Denied, Message, MessageBody, MessageId,
    NewCustomerConversation, NewMessage, Principal, ReadState, Sender, Seq, StaffRole, StaffUserId,
    Tags, TenantId,
};
use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt as _;
use uuid::Uuid;

use crate::ports::{
    AppendError, AppendOutcome, ChatEvent, ConversationCursor, ConversationListQuery,
    ConversationPage, ConversationSummary, MessageCursor, MessagePage, MessageQuery, PolicyAction,
    Receipt, ReceiptUpdate, RepoError,
};
use crate::{
    ChatError, ChatService, MockAccessPolicy, MockClock, MockConversationRepository,
    MockEventPublisher, MockIdGenerator, MockMessageRepository, MockReadStateRepository, PageLimit,
    Ports, SendMessage, SendOutcome,
};

const TENANT: TenantId = TenantId::from_uuid(Uuid::from_u128(0x7e_0001));
const OTHER_TENANT: TenantId = TenantId::from_uuid(Uuid::from_u128(0x7e_0002));
const CUSTOMER: CustomerId = CustomerId::from_uuid(Uuid::from_u128(0xc0_0001));
const OTHER_CUSTOMER: CustomerId = CustomerId::from_uuid(Uuid::from_u128(0xc0_0002));
const CLINICIAN: StaffUserId = StaffUserId::from_uuid(Uuid::from_u128(0x5f_0001));
const COLLEAGUE: StaffUserId = StaffUserId::from_uuid(Uuid::from_u128(0x5f_0002));
const ADMIN: StaffUserId = StaffUserId::from_uuid(Uuid::from_u128(0x5f_0003));

/// The conversation the tests act on.
const CONVERSATION_ID: ConversationId = ConversationId::from_uuid(Uuid::from_u128(0xc1_0001));
/// Another stored conversation, for lists.
const SECOND_CONVERSATION_ID: ConversationId =
    ConversationId::from_uuid(Uuid::from_u128(0xc1_0002));
/// Another stored conversation, for lists.
const THIRD_CONVERSATION_ID: ConversationId = ConversationId::from_uuid(Uuid::from_u128(0xc1_0003));
/// What the mocked id generator hands out for a new conversation.
const NEW_CONVERSATION_ID: ConversationId = ConversationId::from_uuid(Uuid::from_u128(0xc1_00ff));
/// What the mocked id generator hands out for a new message.
const NEW_MESSAGE_ID: MessageId = MessageId::from_uuid(Uuid::from_u128(0x3e_00ff));
/// A message stored before the test starts.
const STORED_MESSAGE_ID: MessageId = MessageId::from_uuid(Uuid::from_u128(0x3e_0001));

/// What the mocked clock says, whenever asked.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).unwrap()
}

/// When the stored fixtures were created, distinct from [`now`] so that a
/// mix-up shows.
fn earlier() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 8, 0, 0).unwrap()
}

fn seq(raw: u64) -> Seq {
    Seq::from_u64(raw).unwrap()
}

fn staff() -> Principal {
    Principal::staff(TENANT, COLLEAGUE, StaffRole::Staff)
}

fn clinician() -> Principal {
    Principal::staff(TENANT, CLINICIAN, StaffRole::Staff)
}

fn admin() -> Principal {
    Principal::staff(TENANT, ADMIN, StaffRole::Admin)
}

fn customer() -> Principal {
    Principal::customer(TENANT, CUSTOMER)
}

fn other_customer() -> Principal {
    Principal::customer(TENANT, OTHER_CUSTOMER)
}

fn foreign_customer() -> Principal {
    Principal::customer(OTHER_TENANT, CUSTOMER)
}

fn conversation(
    id: ConversationId,
    clinician: Option<StaffUserId>,
    status: ConversationStatus,
) -> Conversation {
    Conversation {
        id,
        tenant: TENANT,
        kind: ConversationKind::Customer {
            customer_id: CUSTOMER,
            clinician,
        },
        status,
        assignee: None,
        tags: Tags::default(),
        last_seq: seq(4),
        created_at: earlier(),
        updated_at: earlier(),
        last_activity_at: earlier(),
    }
}

/// The customer's open shared-inbox conversation.
fn inbox() -> Conversation {
    conversation(CONVERSATION_ID, None, ConversationStatus::Open)
}

/// The customer's open private thread with [`CLINICIAN`].
fn private_thread() -> Conversation {
    conversation(CONVERSATION_ID, Some(CLINICIAN), ConversationStatus::Open)
}

fn inbox_with_status(status: ConversationStatus) -> Conversation {
    conversation(CONVERSATION_ID, None, status)
}

fn stored_message(sender: Sender, text: &str) -> Message {
    Message {
        id: STORED_MESSAGE_ID,
        tenant: TENANT,
        conversation_id: CONVERSATION_ID,
        seq: seq(4),
        sender,
        body: Some(MessageBody::parse(text).unwrap()),
        attachments: Vec::new(),
        reply_to: None,
        client_msg_id: None,
        created_at: earlier(),
        edited_at: None,
        deleted_at: None,
    }
}

fn summary(conversation: Conversation, unread_count: u64) -> ConversationSummary {
    ConversationSummary {
        conversation,
        last_message: Some(stored_message(
            Sender::Customer(CUSTOMER),
            "Is my refill ready?",
        )),
        unread_count,
    }
}

fn read_state(reader: Sender, last_read: u64, last_delivered: u64) -> ReadState {
    ReadState {
        conversation_id: CONVERSATION_ID,
        reader,
        last_read_seq: seq(last_read),
        last_delivered_seq: seq(last_delivered),
        updated_at: now(),
    }
}

fn send_request(text: &str) -> SendMessage {
    SendMessage {
        body: Some(MessageBody::parse(text).unwrap()),
        attachment_ids: Vec::new(),
        reply_to: None,
        client_msg_id: None,
    }
}

/// The message the service should hand to `append` for `request` by `sender`.
fn expected_new_message(sender: Sender, request: &SendMessage) -> NewMessage {
    NewMessage {
        id: NEW_MESSAGE_ID,
        tenant: TENANT,
        conversation_id: CONVERSATION_ID,
        sender,
        body: request.body.clone(),
        attachments: request.attachment_ids.clone(),
        reply_to: request.reply_to,
        client_msg_id: request.client_msg_id.clone(),
        created_at: now(),
    }
}

fn storage_failure() -> anyhow::Error {
    anyhow!("connection reset by peer")
}

/// Asserts that `err` is [`ChatError::Unexpected`] carrying the cause built by
/// [`storage_failure`].
fn assert_unexpected(err: &ChatError) {
    match err {
        ChatError::Unexpected(cause) => assert_eq!(cause.to_string(), "connection reset by peer"),
        other => panic!("expected ChatError::Unexpected, got {other:?}"),
    }
}

fn assert_invalid(err: &ChatError, needle: &str) {
    match err {
        ChatError::Invalid(message) => assert!(
            message.contains(needle),
            "message {message:?} does not mention {needle:?}"
        ),
        other => panic!("expected ChatError::Invalid, got {other:?}"),
    }
}

/// The mocked ports of one test. A port method without an expectation panics
/// when called, so whatever a test does not set up must not happen; tests
/// still say `.never()` where that is the point.
#[derive(Default)]
struct Harness {
    conversations: MockConversationRepository,
    messages: MockMessageRepository,
    read_states: MockReadStateRepository,
    events: MockEventPublisher,
    policy: MockAccessPolicy,
    /// What the policy answers to `refuses_nothing` (a real policy that
    /// refuses nothing is [`AllowAll`]).
    policy_refuses_nothing: bool,
}

impl Harness {
    fn new() -> Self {
        Self::default()
    }

    /// The service over these mocks, with a clock stuck at [`now`] and ids
    /// [`NEW_CONVERSATION_ID`] / [`NEW_MESSAGE_ID`].
    fn service(self) -> ChatService {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let mut ids = MockIdGenerator::new();
        ids.expect_conversation_id()
            .return_const(NEW_CONVERSATION_ID);
        ids.expect_message_id().return_const(NEW_MESSAGE_ID);
        let mut policy = self.policy;
        policy
            .expect_refuses_nothing()
            .return_const(self.policy_refuses_nothing);
        ChatService::new(Ports {
            conversations: Arc::new(self.conversations),
            messages: Arc::new(self.messages),
            read_states: Arc::new(self.read_states),
            events: Arc::new(self.events),
            policy: Arc::new(policy),
            clock: Arc::new(clock),
            ids: Arc::new(ids),
        })
    }

    /// `find` is called once, in `tenant`, for [`CONVERSATION_ID`], and
    /// returns `stored`.
    fn find_returns(&mut self, tenant: TenantId, stored: Option<Conversation>) -> &mut Self {
        self.conversations
            .expect_find()
            .withf(move |t, id| *t == tenant && *id == CONVERSATION_ID)
            .times(1)
            .return_once(move |_, _| Ok(stored));
        self
    }

    /// The host policy is asked once whether `principal` may do `action` on
    /// `conversation`, and answers `answer`.
    fn policy_answers(
        &mut self,
        principal: Principal,
        conversation: Conversation,
        action: PolicyAction,
        answer: Result<(), Denied>,
    ) -> &mut Self {
        self.policy
            .expect_check()
            .withf(move |p, c, a| *p == principal && *c == conversation && *a == action)
            .times(1)
            .return_once(move |_, _, _| answer);
        self
    }

    /// The conversation is stored and both the domain rules and the policy
    /// are expected to let `principal` do `action` on it.
    fn authorized(
        &mut self,
        principal: Principal,
        stored: Conversation,
        action: Action,
    ) -> &mut Self {
        self.find_returns(principal.tenant(), Some(stored.clone()))
            .policy_answers(principal, stored, PolicyAction::Act(action), Ok(()))
    }

    fn policy_not_asked(&mut self) -> &mut Self {
        self.policy.expect_check().never();
        self
    }

    fn publishes_nothing(&mut self) -> &mut Self {
        self.events.expect_publish().never();
        self
    }

    /// `publish` is called exactly once, with `event`.
    fn publishes(&mut self, event: ChatEvent) -> &mut Self {
        self.events
            .expect_publish()
            .withf(move |e| *e == event)
            .times(1)
            .return_const(());
        self
    }
}

// ---------------------------------------------------------------------------
// Access denial, shared by every use case on one stored conversation

/// One way a caller is kept away from [`CONVERSATION_ID`].
struct Denial {
    /// Names the row in failure messages.
    label: &'static str,
    principal: Principal,
    /// What `find` returns, asked in the caller's tenant.
    stored: Option<Conversation>,
    /// `None`: the domain rules refuse, and the host policy must not be
    /// asked. `Some`: the domain rules let the caller through and the policy
    /// answers this.
    policy: Option<Denied>,
    /// The error the caller gets.
    expected: Denied,
}

/// Every way a use case on [`CONVERSATION_ID`] must refuse its caller.
/// `participant` may do the use case's action on `their_conversation` by the
/// domain rules, so that the host policy has the last word on it.
fn denials(participant: Principal, their_conversation: Conversation) -> Vec<Denial> {
    let refused_by_the_rules = |label, principal, stored| Denial {
        label,
        principal,
        stored,
        policy: None,
        expected: Denied::NotFound,
    };
    let refused_by_the_policy = |label, answer| Denial {
        label,
        principal: participant,
        stored: Some(their_conversation.clone()),
        policy: Some(answer),
        expected: answer,
    };
    vec![
        refused_by_the_rules("missing conversation, asked by staff", staff(), None),
        refused_by_the_rules(
            "missing conversation, asked by a customer",
            customer(),
            None,
        ),
        // The lookup is scoped to the caller's tenant; the domain rules still
        // stop a store that ignores it.
        refused_by_the_rules(
            "customer of another tenant, store returns the conversation anyway",
            foreign_customer(),
            Some(inbox()),
        ),
        refused_by_the_rules(
            "another customer of the tenant",
            other_customer(),
            Some(inbox()),
        ),
        refused_by_the_rules(
            "staff on another clinician's private thread",
            staff(),
            Some(private_thread()),
        ),
        refused_by_the_policy("hidden by the host policy", Denied::NotFound),
        refused_by_the_policy("refused by the host policy", Denied::Forbidden),
    ]
}

/// Runs `fut`, naming `label` in any panic it raises (a failed assertion or
/// an unmet mock expectation), so that a failing table row is identifiable.
async fn labelled<T>(label: &str, fut: impl Future<Output = T>) -> T {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(value) => value,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(panic without a message)");
            panic!("{label}: {message}");
        }
    }
}

/// Runs `call` once per [`denials`] row, as the row's caller: the
/// conversation is looked up once in the caller's tenant, the host policy is
/// asked about `action` only when the domain rules let the caller through,
/// the caller gets the row's error and `no_effect` holds (nothing is stored
/// or published).
async fn assert_denied<T, Fut>(
    action: Action,
    (participant, their_conversation): (Principal, Conversation),
    no_effect: fn(&mut Harness),
    call: impl Fn(ChatService, Principal) -> Fut,
) where
    T: std::fmt::Debug,
    Fut: Future<Output = Result<T, ChatError>>,
{
    for row in denials(participant, their_conversation) {
        let label = row.label;
        let mut h = Harness::new();
        h.find_returns(row.principal.tenant(), row.stored.clone());
        match row.policy {
            Some(answer) => {
                let stored = row.stored.expect("a policy row stores the conversation");
                h.policy_answers(
                    row.principal,
                    stored,
                    PolicyAction::Act(action),
                    Err(answer),
                );
            }
            None => {
                h.policy_not_asked();
            }
        }
        no_effect(&mut h);

        let err = labelled(label, async {
            match call(h.service(), row.principal).await {
                Ok(value) => panic!("expected {:?}, got Ok({value:?})", row.expected),
                Err(err) => err,
            }
        })
        .await;

        let as_expected = match row.expected {
            Denied::NotFound => matches!(err, ChatError::NotFound),
            Denied::Forbidden => matches!(err, ChatError::Forbidden),
        };
        assert!(
            as_expected,
            "{label}: expected {:?}, got {err:?}",
            row.expected
        );
    }
}

// ---------------------------------------------------------------------------
// PageLimit::parse

#[test]
fn page_limit_accepts_one_and_the_maximum() {
    assert_eq!(PageLimit::parse(1).unwrap().get(), 1);
    assert_eq!(PageLimit::parse(200).unwrap().get(), 200);
    assert_eq!(PageLimit::MAX, 200);
}

#[test]
fn page_limit_of_zero_is_invalid() {
    assert_invalid(&PageLimit::parse(0).unwrap_err(), "between 1 and 200");
}

#[test]
fn page_limit_above_the_maximum_is_invalid() {
    assert_invalid(&PageLimit::parse(201).unwrap_err(), "between 1 and 200");
    assert_invalid(
        &PageLimit::parse(u32::MAX).unwrap_err(),
        "between 1 and 200",
    );
}

#[test]
fn page_limit_defaults_to_fifty() {
    assert_eq!(PageLimit::default(), PageLimit::DEFAULT);
    assert_eq!(PageLimit::default().get(), 50);
}

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

    assert!(matches!(err, ChatError::NotFound), "{err:?}");
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
        .list_conversations(&admin(), None, PageLimit::default(), None)
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
        .list_conversations(&admin(), None, PageLimit::parse(3).unwrap(), None)
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
        .list_conversations(&staff(), None, PageLimit::default(), None)
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
        .list_conversations(&staff(), None, PageLimit::default(), None)
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

    assert!(matches!(err, ChatError::NotFound), "{err:?}");
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

    assert_invalid(&err, "nothing to update");
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

    assert!(matches!(err, ChatError::NotFound), "{err:?}");
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
        conversation: after.clone(),
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
async fn customer_sends_into_their_open_conversation_without_reopening_it() {
    let request = send_request("Is my refill ready?");
    assert_send_creates(
        customer(),
        Sender::Customer(CUSTOMER),
        inbox(),
        request,
        false,
    )
    .await;
}

#[tokio::test]
async fn customer_sending_into_a_resolved_conversation_reopens_it() {
    let resolved = inbox_with_status(ConversationStatus::Resolved);
    let request = send_request("One more question");
    assert_send_creates(
        customer(),
        Sender::Customer(CUSTOMER),
        resolved,
        request,
        true,
    )
    .await;
}

#[tokio::test]
async fn customer_sending_into_an_archived_conversation_reopens_it() {
    let archived = inbox_with_status(ConversationStatus::Archived);
    let request = send_request("Hello again");
    assert_send_creates(
        customer(),
        Sender::Customer(CUSTOMER),
        archived,
        request,
        true,
    )
    .await;
}

#[tokio::test]
async fn staff_sending_into_a_resolved_conversation_does_not_reopen_it() {
    let resolved = inbox_with_status(ConversationStatus::Resolved);
    let request = send_request("Closing note");
    assert_send_creates(staff(), Sender::Staff(COLLEAGUE), resolved, request, false).await;
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
        assert!(matches!(err, ChatError::NotFound), "{label}: {err:?}");
    }
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

    assert_invalid(&err, "body");
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

    assert_invalid(&err, "reply_to");
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

    assert!(matches!(err, ChatError::NotFound), "{err:?}");
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
async fn customer_marks_read_and_publishes_receipt_moved() {
    let reader = Sender::Customer(CUSTOMER);
    let state = read_state(reader, 4, 4);
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::MarkRead);
    expect_advance(
        &mut h,
        reader,
        Receipt::Read,
        seq(4),
        Ok(Some(ReceiptUpdate { state, moved: true })),
    );
    h.publishes(ChatEvent::ReceiptMoved {
        conversation: inbox(),
        receipt: Receipt::Read,
        state,
    });

    let got = h
        .service()
        .mark(&customer(), CONVERSATION_ID, Receipt::Read, seq(4))
        .await
        .unwrap();

    assert_eq!(got, state);
}

#[tokio::test]
async fn clinician_marks_delivered_and_publishes_receipt_moved() {
    let reader = Sender::Staff(CLINICIAN);
    let state = read_state(reader, 1, 3);
    let mut h = Harness::new();
    h.authorized(clinician(), private_thread(), Action::MarkRead);
    expect_advance(
        &mut h,
        reader,
        Receipt::Delivered,
        seq(3),
        Ok(Some(ReceiptUpdate { state, moved: true })),
    );
    h.publishes(ChatEvent::ReceiptMoved {
        conversation: private_thread(),
        receipt: Receipt::Delivered,
        state,
    });

    let got = h
        .service()
        .mark(&clinician(), CONVERSATION_ID, Receipt::Delivered, seq(3))
        .await
        .unwrap();

    assert_eq!(got, state);
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

    assert!(matches!(err, ChatError::NotFound), "{err:?}");
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
async fn staff_unread_total_covers_the_inbox_and_their_own_threads() {
    let mut h = Harness::new();
    expect_unread_total(
        &mut h,
        ConversationScope::InboxAndClinician {
            tenant: TENANT,
            clinician: COLLEAGUE,
        },
        Sender::Staff(COLLEAGUE),
        Ok(7),
    );
    h.policy_not_asked();

    let total = h.service().unread_total(&staff()).await.unwrap();

    assert_eq!(total, 7);
}

#[tokio::test]
async fn admin_unread_total_covers_the_whole_tenant() {
    let mut h = Harness::new();
    expect_unread_total(
        &mut h,
        ConversationScope::All { tenant: TENANT },
        Sender::Staff(ADMIN),
        Ok(42),
    );

    let total = h.service().unread_total(&admin()).await.unwrap();

    assert_eq!(total, 42);
}

#[tokio::test]
async fn customer_unread_total_covers_their_own_conversations() {
    let mut h = Harness::new();
    expect_unread_total(
        &mut h,
        ConversationScope::Customer {
            tenant: TENANT,
            customer_id: CUSTOMER,
        },
        Sender::Customer(CUSTOMER),
        Ok(0),
    );

    let total = h.service().unread_total(&customer()).await.unwrap();

    assert_eq!(total, 0);
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

/// Sending with attachments, and [`crate::AttachmentService`]: upload,
/// download and the orphan sweep against mocked stores and scanner.
mod attachments {
    use std::time::Duration;

    use bytes::Bytes;
    use chat_domain::{
        Attachment, AttachmentId, AttachmentName, MediaType, Sha256Digest, StorageKey,
    };
    use futures::{FutureExt as _, StreamExt as _};
    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::{
        AttachmentError, AttachmentPorts, AttachmentService, AttachmentSettings, ByteStream,
        Download, MockAttachmentRepository, MockFileStorage, MockScanner, ScanVerdict,
        StorageError,
    };

    const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";
    const UPLOAD_ID: AttachmentId = AttachmentId::from_uuid(Uuid::from_u128(0xa7_0001));
    const OTHER_UPLOAD_ID: AttachmentId = AttachmentId::from_uuid(Uuid::from_u128(0xa7_0002));

    fn body(bytes: &'static [u8]) -> ByteStream {
        let pieces: Vec<std::io::Result<Bytes>> =
            bytes.chunks(7).map(|c| Ok(Bytes::from_static(c))).collect();
        futures::stream::iter(pieces).boxed()
    }

    /// Reads a body to its end the way a store does; in-memory bodies never
    /// wait, so one poll finishes it.
    fn drain(mut body: ByteStream) -> Result<u64, StorageError> {
        async move {
            let mut stored = 0;
            while let Some(chunk) = body.next().await {
                stored += chunk.map_err(StorageError::Body)?.len() as u64;
            }
            Ok(stored)
        }
        .now_or_never()
        .expect("an in-memory body never waits")
    }

    fn stored_attachment(message: Option<MessageId>) -> Attachment {
        Attachment {
            id: UPLOAD_ID,
            tenant: TENANT,
            conversation_id: CONVERSATION_ID,
            uploader: Sender::Customer(CUSTOMER),
            name: AttachmentName::sanitize(Some("rx.pdf"), MediaType::Pdf),
            media_type: MediaType::Pdf,
            size: PDF.len() as u64,
            sha256: Sha256Digest::from_bytes([1; 32]),
            storage_key: StorageKey::for_attachment(
                TENANT,
                CONVERSATION_ID,
                UPLOAD_ID,
                MediaType::Pdf,
                earlier(),
            ),
            created_at: earlier(),
            message_id: message,
        }
    }

    #[derive(Default)]
    struct Files {
        repository: MockAttachmentRepository,
        storage: MockFileStorage,
        scanner: Option<MockScanner>,
        signed_url_ttl: Option<Duration>,
        max_bytes: Option<u64>,
    }

    impl Files {
        fn service(self, h: Harness) -> AttachmentService {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(now());
            AttachmentService::new(
                h.service(),
                AttachmentPorts {
                    repository: Arc::new(self.repository),
                    storage: Arc::new(self.storage),
                    scanner: self.scanner.map(|s| Arc::new(s) as Arc<dyn crate::Scanner>),
                    clock: Arc::new(clock),
                },
                AttachmentSettings {
                    max_bytes: self.max_bytes.unwrap_or(1024),
                    signed_url_ttl: self.signed_url_ttl,
                },
            )
        }

        /// The store reads the body to its end and keeps it.
        fn stores_once(&mut self) {
            self.storage
                .expect_put()
                .withf(|key, media, _, max| {
                    key.as_str()
                        .starts_with(&format!("chat/{TENANT}/{CONVERSATION_ID}/2026/03/"))
                        && *media == MediaType::Pdf
                        && *max == 1024
                })
                .times(1)
                .returning(|_, _, body, _| drain(body));
        }

        fn nothing_stored(&mut self) {
            self.storage.expect_put().never();
            self.repository.expect_insert_attachment().never();
        }

        fn removed_once(&mut self) {
            self.storage.expect_delete().times(1).returning(|_| Ok(()));
        }
    }

    async fn upload(
        files: Files,
        h: Harness,
        principal: Principal,
        data: &'static [u8],
    ) -> Result<Attachment, AttachmentError> {
        files
            .service(h)
            .upload(
                &principal,
                CONVERSATION_ID,
                Some("../scans/rx.pdf"),
                body(data),
            )
            .await
    }

    #[tokio::test]
    async fn a_participant_uploads_a_pdf_which_is_stored_hashed_and_recorded() {
        let mut h = Harness::new();
        h.authorized(customer(), inbox(), Action::Send);
        let mut files = Files::default();
        files.stores_once();
        let digest = Sha256Digest::from_bytes(Sha256::digest(PDF).into());
        files
            .repository
            .expect_insert_attachment()
            .withf(move |new| {
                new.tenant == TENANT
                    && new.conversation_id == CONVERSATION_ID
                    && new.uploader == Sender::Customer(CUSTOMER)
                    && new.name.as_str() == "rx.pdf"
                    && new.media_type == MediaType::Pdf
                    && new.size == PDF.len() as u64
                    && new.sha256 == digest
                    && new.created_at == now()
                    && new
                        .storage_key
                        .as_str()
                        .ends_with(&format!("{}.pdf", new.id))
            })
            .times(1)
            .returning(|new| Ok(new.clone().into_attachment()));

        let attachment = upload(files, h, customer(), PDF).await.unwrap();
        assert_eq!(attachment.sha256, digest);
        assert_eq!(attachment.message_id, None);
    }

    #[tokio::test]
    async fn an_upload_into_a_conversation_the_caller_cannot_see_is_not_found() {
        let mut h = Harness::new();
        h.find_returns(TENANT, Some(inbox())).policy_not_asked();
        let mut files = Files::default();
        files.nothing_stored();
        let err = upload(files, h, other_customer(), PDF).await.unwrap_err();
        assert!(matches!(err, AttachmentError::NotFound), "{err:?}");
    }

    #[tokio::test]
    async fn unsupported_and_empty_uploads_are_refused_before_anything_is_stored() {
        for (data, html) in [
            (&b"<html><script>x</script></html>"[..], true),
            (&b""[..], false),
        ] {
            let mut h = Harness::new();
            h.authorized(customer(), inbox(), Action::Send);
            let mut files = Files::default();
            files.nothing_stored();
            let err = upload(files, h, customer(), data).await.unwrap_err();
            if html {
                assert!(
                    matches!(err, AttachmentError::UnsupportedType(_)),
                    "{err:?}"
                );
            } else {
                assert!(matches!(err, AttachmentError::Empty), "{err:?}");
            }
        }
    }

    #[tokio::test]
    async fn an_upload_over_the_limit_is_refused_and_not_recorded() {
        let mut h = Harness::new();
        h.authorized(customer(), inbox(), Action::Send);
        let mut files = Files {
            max_bytes: Some(16),
            ..Files::default()
        };
        files
            .storage
            .expect_put()
            .times(1)
            .returning(|_, _, body, _| drain(body));
        files.repository.expect_insert_attachment().never();
        let err = upload(files, h, customer(), PDF).await.unwrap_err();
        assert!(
            matches!(err, AttachmentError::TooLarge { max_bytes: 16 }),
            "{err:?}"
        );
    }

    /// A participant's upload is stored, read back and handed to a scanner
    /// that answers `verdict` once; the stored bytes are then removed, nothing
    /// is recorded, and the upload's error is returned.
    async fn upload_refused_by_the_scan(verdict: anyhow::Result<ScanVerdict>) -> AttachmentError {
        let mut h = Harness::new();
        h.authorized(customer(), inbox(), Action::Send);
        let mut files = Files::default();
        files.stores_once();
        files
            .storage
            .expect_get()
            .times(1)
            .returning(|_| Ok(body(PDF)));
        let mut scanner = MockScanner::new();
        scanner.expect_scan().times(1).return_once(|_| verdict);
        files.scanner = Some(scanner);
        files.removed_once();
        files.repository.expect_insert_attachment().never();
        upload(files, h, customer(), PDF).await.unwrap_err()
    }

    #[tokio::test]
    async fn an_infected_upload_is_removed_and_refused() {
        let err =
            upload_refused_by_the_scan(Ok(ScanVerdict::Infected("Eicar-Test-Signature".into())))
                .await;
        assert!(matches!(err, AttachmentError::Infected(name) if name == "Eicar-Test-Signature"));
    }

    #[tokio::test]
    async fn an_unreachable_scanner_refuses_the_upload_and_removes_it() {
        let err = upload_refused_by_the_scan(Err(anyhow!("connection refused"))).await;
        assert!(
            matches!(err, AttachmentError::ScannerUnavailable(_)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_record_removes_the_stored_bytes() {
        let mut h = Harness::new();
        h.authorized(customer(), inbox(), Action::Send);
        let mut files = Files::default();
        files.stores_once();
        files
            .repository
            .expect_insert_attachment()
            .times(1)
            .return_once(|_| Err(RepoError::Unexpected(storage_failure())));
        files.removed_once();
        let err = upload(files, h, customer(), PDF).await.unwrap_err();
        assert!(matches!(err, AttachmentError::Unexpected(_)), "{err:?}");
    }

    fn finds(files: &mut Files, tenant: TenantId, found: Option<Attachment>) {
        files
            .repository
            .expect_find_attachment()
            .withf(move |t, id| *t == tenant && *id == UPLOAD_ID)
            .times(1)
            .return_once(move |_, _| Ok(found));
    }

    #[tokio::test]
    async fn a_download_outside_the_callers_conversations_is_not_found() {
        let mut h = Harness::new();
        h.find_returns(TENANT, Some(inbox())).policy_not_asked();
        let mut files = Files::default();
        finds(&mut files, TENANT, Some(stored_attachment(None)));
        files.storage.expect_get().never();
        let err = files
            .service(h)
            .download(&other_customer(), UPLOAD_ID)
            .await
            .unwrap_err();
        assert!(matches!(err, AttachmentError::NotFound), "{err:?}");

        // Another tenant does not even find the record.
        let mut files = Files::default();
        finds(&mut files, OTHER_TENANT, None);
        let err = files
            .service(Harness::new())
            .download(&foreign_customer(), UPLOAD_ID)
            .await
            .unwrap_err();
        assert!(matches!(err, AttachmentError::NotFound), "{err:?}");
    }

    #[tokio::test]
    async fn downloads_stream_the_bytes_or_redirect_to_a_signed_url() {
        let mut h = Harness::new();
        h.authorized(staff(), inbox(), Action::Read);
        let mut files = Files::default();
        finds(
            &mut files,
            TENANT,
            Some(stored_attachment(Some(STORED_MESSAGE_ID))),
        );
        files
            .storage
            .expect_get()
            .times(1)
            .returning(|_| Ok(body(PDF)));
        let download = files
            .service(h)
            .download(&staff(), UPLOAD_ID)
            .await
            .unwrap();
        assert!(matches!(download, Download::Stream { .. }), "{download:?}");

        let mut h = Harness::new();
        h.authorized(staff(), inbox(), Action::Read);
        let mut files = Files {
            signed_url_ttl: Some(Duration::from_secs(300)),
            ..Files::default()
        };
        finds(
            &mut files,
            TENANT,
            Some(stored_attachment(Some(STORED_MESSAGE_ID))),
        );
        files
            .storage
            .expect_signed_url()
            .withf(|_, ttl, headers| {
                *ttl == Duration::from_secs(300)
                    && headers.media_type == MediaType::Pdf
                    && headers.content_disposition.starts_with("attachment;")
            })
            .times(1)
            .return_once(|_, _, _| Ok(Some("https://s3.example/signed".into())));
        files.storage.expect_get().never();
        let download = files
            .service(h)
            .download(&staff(), UPLOAD_ID)
            .await
            .unwrap();
        assert!(
            matches!(&download, Download::Redirect { url, .. } if url == "https://s3.example/signed"),
            "{download:?}"
        );
    }

    #[tokio::test]
    async fn the_sweep_deletes_records_before_bytes_and_spares_uploads_sent_meanwhile() {
        let mut files = Files::default();
        let orphan = stored_attachment(None);
        let sent_meanwhile = Attachment {
            id: OTHER_UPLOAD_ID,
            ..stored_attachment(None)
        };
        let listed = vec![orphan.clone(), sent_meanwhile];
        files
            .repository
            .expect_list_orphans()
            .withf(|before, _| *before == now() - chrono::Duration::hours(24))
            .times(1)
            .return_once(move |_, _| Ok(listed));
        files
            .repository
            .expect_delete_unattached()
            .times(2)
            .returning(|_, id| Ok(id == UPLOAD_ID));
        let key = orphan.storage_key.clone();
        files
            .storage
            .expect_delete()
            .withf(move |k| *k == key)
            .times(1)
            .returning(|_| Ok(()));
        let deleted = files
            .service(Harness::new())
            .sweep_orphans(Duration::from_secs(86_400))
            .await
            .unwrap();
        assert_eq!(deleted, 1);
    }

    #[tokio::test]
    async fn the_purge_removes_bytes_before_records_and_keeps_what_it_cannot_remove() {
        let mut files = Files::default();
        let removable = stored_attachment(Some(STORED_MESSAGE_ID));
        let stuck = Attachment {
            id: OTHER_UPLOAD_ID,
            storage_key: StorageKey::for_attachment(
                TENANT,
                CONVERSATION_ID,
                OTHER_UPLOAD_ID,
                MediaType::Pdf,
                earlier(),
            ),
            ..stored_attachment(Some(STORED_MESSAGE_ID))
        };
        let listed = vec![removable.clone(), stuck.clone()];
        files
            .repository
            .expect_list_deleted()
            .times(1)
            .return_once(move |_| Ok(listed));
        let mut order = mockall::Sequence::new();
        let key = removable.storage_key.clone();
        files
            .storage
            .expect_delete()
            .withf(move |k| *k == key)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(()));
        files
            .repository
            .expect_purge_deleted()
            .withf(|tenant, id| *tenant == TENANT && *id == UPLOAD_ID)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(true));
        let stuck_key = stuck.storage_key.clone();
        files
            .storage
            .expect_delete()
            .withf(move |k| *k == stuck_key)
            .times(1)
            .returning(|_| Err(StorageError::Unexpected(anyhow::anyhow!("disk gone"))));
        // The stuck file keeps its record, to be tried again.
        files
            .repository
            .expect_purge_deleted()
            .withf(|_, id| *id == OTHER_UPLOAD_ID)
            .never();
        let purged = files.service(Harness::new()).purge_deleted().await.unwrap();
        assert_eq!(purged, 1);
    }

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
            .into_message(seq(5), vec![stored_attachment(None)]);
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
        for (ids, needle) in [
            (vec![UPLOAD_ID, UPLOAD_ID], "twice"),
            (eleven, "at most 10"),
            (Vec::new(), "body or an attachment"),
        ] {
            let mut h = Harness::new();
            h.authorized(customer(), inbox(), Action::Send);
            expect_no_append(&mut h);
            let err = h
                .service()
                .send_message(&customer(), CONVERSATION_ID, with_attachments(ids))
                .await
                .unwrap_err();
            assert_invalid(&err, needle);
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
                    matches!(err, ChatError::AttachmentNotFound(id) if id == UPLOAD_ID),
                    "{err:?}"
                );
            } else {
                assert_invalid(&err, "already attached");
            }
        }
    }
}
