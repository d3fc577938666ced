//! Fixtures shared by the unit tests of every area: fixed identifiers, a
//! fixed clock, stored conversations and messages, the [`Harness`] of
//! mocked ports, and [`assert_denied`], the access-denial table every use
//! case on one conversation must pass.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use anyhow::anyhow;
use chat_domain::{
    Action, Attachment, AttachmentId, AttachmentName, Conversation, ConversationId,
    ConversationKind, ConversationStatus, CustomerId, Denied, MediaType, Message, MessageBody,
    MessageId, NewCustomerConversation, NewMessage, Principal, ReadState, Sender, Seq,
    Sha256Digest, StaffRole, StaffUserId, StorageKey, Tags, TenantId,
};
use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt as _;
use uuid::Uuid;

use crate::error::{Field, Reason, Resource};
use crate::ports::{ChatEvent, ConversationSummary, PolicyAction};
use crate::{
    ChatError, ChatService, MockAccessPolicy, MockClock, MockConversationRepository,
    MockEventPublisher, MockIdGenerator, MockMembershipRepository, MockMessageRepository,
    MockReadStateRepository, Ports, SendMessage, SystemClock,
};

pub(crate) const TENANT: TenantId = TenantId::from_uuid(Uuid::from_u128(0x7e_0001));
pub(crate) const OTHER_TENANT: TenantId = TenantId::from_uuid(Uuid::from_u128(0x7e_0002));
pub(crate) const CUSTOMER: CustomerId = CustomerId::from_uuid(Uuid::from_u128(0xc0_0001));
pub(crate) const OTHER_CUSTOMER: CustomerId = CustomerId::from_uuid(Uuid::from_u128(0xc0_0002));
pub(crate) const CLINICIAN: StaffUserId = StaffUserId::from_uuid(Uuid::from_u128(0x5f_0001));
pub(crate) const COLLEAGUE: StaffUserId = StaffUserId::from_uuid(Uuid::from_u128(0x5f_0002));
pub(crate) const ADMIN: StaffUserId = StaffUserId::from_uuid(Uuid::from_u128(0x5f_0003));

/// The conversation the tests act on.
pub(crate) const CONVERSATION_ID: ConversationId =
    ConversationId::from_uuid(Uuid::from_u128(0xc1_0001));
/// Another stored conversation, for lists.
pub(crate) const SECOND_CONVERSATION_ID: ConversationId =
    ConversationId::from_uuid(Uuid::from_u128(0xc1_0002));
/// Another stored conversation, for lists.
pub(crate) const THIRD_CONVERSATION_ID: ConversationId =
    ConversationId::from_uuid(Uuid::from_u128(0xc1_0003));
/// What the mocked id generator hands out for a new conversation.
pub(crate) const NEW_CONVERSATION_ID: ConversationId =
    ConversationId::from_uuid(Uuid::from_u128(0xc1_00ff));
/// What the mocked id generator hands out for a new message.
pub(crate) const NEW_MESSAGE_ID: MessageId = MessageId::from_uuid(Uuid::from_u128(0x3e_00ff));
/// A message stored before the test starts.
pub(crate) const STORED_MESSAGE_ID: MessageId = MessageId::from_uuid(Uuid::from_u128(0x3e_0001));

/// An upload of the customer in [`CONVERSATION_ID`].
pub(crate) const UPLOAD_ID: AttachmentId = AttachmentId::from_uuid(Uuid::from_u128(0xa7_0001));
/// Another upload of the customer there.
pub(crate) const OTHER_UPLOAD_ID: AttachmentId =
    AttachmentId::from_uuid(Uuid::from_u128(0xa7_0002));
/// A small PDF file.
pub(crate) const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";

/// What the mocked clock says, whenever asked.
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).unwrap()
}

/// When the stored fixtures were created, distinct from [`now`] so that a
/// mix-up shows.
pub(crate) fn earlier() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 8, 0, 0).unwrap()
}

pub(crate) fn seq(raw: u64) -> Seq {
    Seq::from_u64(raw).unwrap()
}

pub(crate) fn staff() -> Principal {
    Principal::staff(TENANT, COLLEAGUE, StaffRole::Staff)
}

pub(crate) fn clinician() -> Principal {
    Principal::staff(TENANT, CLINICIAN, StaffRole::Staff)
}

pub(crate) fn admin() -> Principal {
    Principal::staff(TENANT, ADMIN, StaffRole::Admin)
}

pub(crate) fn customer() -> Principal {
    Principal::customer(TENANT, CUSTOMER)
}

pub(crate) fn other_customer() -> Principal {
    Principal::customer(TENANT, OTHER_CUSTOMER)
}

pub(crate) fn foreign_customer() -> Principal {
    Principal::customer(OTHER_TENANT, CUSTOMER)
}

pub(crate) fn conversation(
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
        channel: None,
        last_seq: seq(4),
        created_at: earlier(),
        updated_at: earlier(),
        last_activity_at: earlier(),
    }
}

/// The customer's open shared-inbox conversation.
pub(crate) fn inbox() -> Conversation {
    conversation(CONVERSATION_ID, None, ConversationStatus::Open)
}

/// The customer's open private thread with [`CLINICIAN`].
pub(crate) fn private_thread() -> Conversation {
    conversation(CONVERSATION_ID, Some(CLINICIAN), ConversationStatus::Open)
}

pub(crate) fn inbox_with_status(status: ConversationStatus) -> Conversation {
    conversation(CONVERSATION_ID, None, status)
}

pub(crate) fn stored_message(sender: Sender, text: &str) -> Message {
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
        system: None,
    }
}

/// The customer's PDF upload [`UPLOAD_ID`] in the inbox, sent in `message`
/// or not yet.
pub(crate) fn stored_attachment(message: Option<MessageId>) -> Attachment {
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

pub(crate) fn summary(conversation: Conversation, unread_count: u64) -> ConversationSummary {
    ConversationSummary {
        conversation,
        last_message: Some(stored_message(
            Sender::Customer(CUSTOMER),
            "Is my refill ready?",
        )),
        unread_count,
        membership: None,
    }
}

pub(crate) fn read_state(reader: Sender, last_read: u64, last_delivered: u64) -> ReadState {
    ReadState {
        conversation_id: CONVERSATION_ID,
        reader,
        last_read_seq: seq(last_read),
        last_delivered_seq: seq(last_delivered),
        updated_at: now(),
    }
}

pub(crate) fn send_request(text: &str) -> SendMessage {
    SendMessage {
        body: Some(MessageBody::parse(text).unwrap()),
        attachment_ids: Vec::new(),
        reply_to: None,
        client_msg_id: None,
    }
}

/// The message the service should hand to `append` for `request` by `sender`.
pub(crate) fn expected_new_message(sender: Sender, request: &SendMessage) -> NewMessage {
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

pub(crate) fn storage_failure() -> anyhow::Error {
    anyhow!("connection reset by peer")
}

/// Asserts that `err` is [`ChatError::Unexpected`] carrying the cause built by
/// [`storage_failure`].
pub(crate) fn assert_unexpected(err: &ChatError) {
    match err {
        ChatError::Unexpected(cause) => assert_eq!(cause.to_string(), "connection reset by peer"),
        other => panic!("expected ChatError::Unexpected, got {other:?}"),
    }
}

/// Asserts that `err` is [`ChatError::Invalid`] about `field`, for `reason`.
pub(crate) fn assert_invalid(err: &ChatError, field: Field, reason: Reason) {
    match err {
        ChatError::Invalid {
            field: got_field,
            reason: got_reason,
        } => assert_eq!((*got_field, *got_reason), (field, reason)),
        other => panic!("expected ChatError::Invalid about {field}, got {other:?}"),
    }
}

/// The mocked ports of one test. A port method without an expectation panics
/// when called, so whatever a test does not set up must not happen; tests
/// still say `.never()` where that is the point.
#[derive(Default)]
pub(crate) struct Harness {
    pub(crate) conversations: MockConversationRepository,
    pub(crate) messages: MockMessageRepository,
    pub(crate) read_states: MockReadStateRepository,
    pub(crate) members: MockMembershipRepository,
    pub(crate) events: MockEventPublisher,
    pub(crate) policy: MockAccessPolicy,
    /// What the policy answers to `refuses_nothing` (a real policy that
    /// refuses nothing is [`AllowAll`]).
    pub(crate) policy_refuses_nothing: bool,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The service over these mocks, with a clock stuck at [`now`] and ids
    /// [`NEW_CONVERSATION_ID`] / [`NEW_MESSAGE_ID`].
    pub(crate) fn service(self) -> ChatService {
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
            members: Arc::new(self.members),
            events: Arc::new(self.events),
            policy: Arc::new(policy),
            clock: Arc::new(clock),
            ids: Arc::new(ids),
        })
    }

    /// `find` is called once, in `tenant`, for [`CONVERSATION_ID`], and
    /// returns `stored`.
    pub(crate) fn find_returns(
        &mut self,
        tenant: TenantId,
        stored: Option<Conversation>,
    ) -> &mut Self {
        self.conversations
            .expect_find()
            .withf(move |t, id| *t == tenant && *id == CONVERSATION_ID)
            .times(1)
            .return_once(move |_, _| Ok(stored));
        self
    }

    /// The host policy is asked once whether `principal` may do `action` on
    /// `conversation`, and answers `answer`.
    pub(crate) fn policy_answers(
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
    pub(crate) fn authorized(
        &mut self,
        principal: Principal,
        stored: Conversation,
        action: Action,
    ) -> &mut Self {
        self.find_returns(principal.tenant(), Some(stored.clone()))
            .policy_answers(principal, stored, PolicyAction::Act(action), Ok(()))
    }

    pub(crate) fn policy_not_asked(&mut self) -> &mut Self {
        self.policy.expect_check().never();
        self
    }

    pub(crate) fn publishes_nothing(&mut self) -> &mut Self {
        self.events.expect_publish().never();
        self
    }

    /// `publish` is called exactly once, with `event`.
    pub(crate) fn publishes(&mut self, event: ChatEvent) -> &mut Self {
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
pub(crate) struct Denial {
    /// Names the row in failure messages.
    label: &'static str,
    principal: Principal,
    /// What `find` returns, asked in the caller's tenant.
    stored: Option<Conversation>,
    /// `None`: the domain rules refuse, and the host policy must not be
    /// asked. `Some`: the domain rules let the caller through and the policy
    /// answers this.
    pub(crate) policy: Option<Denied>,
    /// The error the caller gets.
    expected: Denied,
}

/// Every way a use case on [`CONVERSATION_ID`] must refuse its caller.
/// `participant` may do the use case's action on `their_conversation` by the
/// domain rules, so that the host policy has the last word on it.
pub(crate) fn denials(participant: Principal, their_conversation: Conversation) -> Vec<Denial> {
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
pub(crate) async fn labelled<T>(label: &str, fut: impl Future<Output = T>) -> T {
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
pub(crate) async fn assert_denied<T, Fut>(
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
            Denied::NotFound => matches!(err, ChatError::NotFound(Resource::Conversation)),
            Denied::Forbidden => matches!(err, ChatError::Forbidden),
            Denied::Archived => matches!(err, ChatError::Conflict(crate::Conflict::Archived)),
        };
        assert!(
            as_expected,
            "{label}: expected {:?}, got {err:?}",
            row.expected
        );
    }
}

// ---------------------------------------------------------------------------
// Fixtures with fresh ids, for tests that need no fixed ones

/// A new shared-inbox conversation of a fresh customer in `tenant`.
pub(crate) fn fresh_inbox(tenant: TenantId) -> Conversation {
    NewCustomerConversation {
        id: ConversationId::new_v7(),
        tenant,
        customer_id: CustomerId::new_v4(),
        clinician: None,
        now: now(),
    }
    .prospective()
}

/// The service over mocks that find `found` (by its tenant and id) and
/// nothing else, with `events` and `read_states`; the real clock and ids,
/// and the [`crate::AllowAll`] policy.
pub(crate) fn chat_finding(
    found: Conversation,
    events: MockEventPublisher,
    read_states: crate::ports::MockReadStateRepository,
) -> ChatService {
    let mut conversations = crate::ports::MockConversationRepository::new();
    conversations
        .expect_find()
        .withf(move |tenant, id| *tenant == found.tenant && *id == found.id)
        .returning(move |_, _| Ok(Some(found.clone())));
    conversations.expect_find().returning(|_, _| Ok(None));
    ChatService::new(crate::Ports {
        conversations: Arc::new(conversations),
        messages: Arc::new(crate::ports::MockMessageRepository::new()),
        read_states: Arc::new(read_states),
        members: Arc::new(crate::ports::MockMembershipRepository::new()),
        events: Arc::new(events),
        policy: Arc::new(crate::AllowAll),
        clock: Arc::new(SystemClock),
        ids: Arc::new(crate::UuidV7Generator),
    })
}

/// A staff member (not an admin) of `tenant` with a fresh id.
pub(crate) fn staff_in(tenant: TenantId) -> Principal {
    Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff)
}
