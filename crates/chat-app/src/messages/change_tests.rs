//! Unit tests of the edit and delete use cases, with mocked ports.

use std::sync::Arc;

use anyhow::anyhow;
use chat_domain::{
    Conversation, ConversationId, CustomerId, Message, MessageBody, MessageId, Principal, Sender,
    StaffRole, StaffUserId, TenantId,
};
use chrono::{DateTime, Utc};

use crate::error::{Conflict, Resource};
use crate::ports::{
    ChatEvent, MockClock, MockConversationRepository, MockEventPublisher, MockMessageRepository,
    MockReadStateRepository, Route,
};
use crate::{AllowAll, ChatError, ChatService, Ports, RepoError, UuidV7Generator};

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid time")
}

struct World {
    conversation: Conversation,
    author: Principal,
    colleague: Principal,
    admin: Principal,
    customer: Principal,
}

fn world() -> World {
    let tenant = TenantId::new_v4();
    let customer = CustomerId::new_v4();
    let conversation = Conversation {
        created_at: at(),
        updated_at: at(),
        last_activity_at: at(),
        ..crate::fixtures::conversation(tenant, customer, None)
    };
    World {
        conversation,
        author: Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff),
        colleague: Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff),
        admin: Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Admin),
        customer: Principal::customer(tenant, customer),
    }
}

fn message(w: &World, sender: Sender) -> Message {
    Message {
        body: Some(MessageBody::parse("Pick-up at 5").unwrap()),
        created_at: at(),
        ..crate::fixtures::message(&w.conversation, 1, sender)
    }
}

fn service(w: &World, messages: MockMessageRepository, events: MockEventPublisher) -> ChatService {
    let mut conversations = MockConversationRepository::new();
    let found = w.conversation.clone();
    conversations
        .expect_find()
        .returning(move |_, _| Ok(Some(found.clone())));
    let mut clock = MockClock::new();
    clock.expect_now().returning(at);
    ChatService::new(Ports {
        conversations: Arc::new(conversations),
        messages: Arc::new(messages),
        read_states: Arc::new(MockReadStateRepository::new()),
        members: Arc::new(crate::ports::MockMembershipRepository::new()),
        events: Arc::new(events),
        policy: Arc::new(AllowAll),
        clock: Arc::new(clock),
        ids: Arc::new(UuidV7Generator),
    })
}

fn finds(messages: &mut MockMessageRepository, found: Message) {
    messages
        .expect_find_message()
        .times(1)
        .returning(move |_, _, _| Ok(Some(found.clone())));
}

/// A publisher that expects `message_changed` of `message` once.
fn announces_change(w: &World, message: &Message) -> MockEventPublisher {
    let announced = ChatEvent::MessageChanged {
        route: Route::of(&w.conversation),
        message: message.clone(),
    };
    let mut events = MockEventPublisher::new();
    events
        .expect_publish()
        .withf(move |e| *e == announced)
        .times(1)
        .return_const(());
    events
}

#[tokio::test]
async fn the_sender_edits_their_message_and_it_is_announced() {
    let w = world();
    let original = message(&w, w.author.as_sender());
    let body = MessageBody::parse("Pick-up at 6").unwrap();
    let mut edited = original.clone();
    edited.body = Some(body.clone());
    edited.edited_at = Some(at());
    let mut messages = MockMessageRepository::new();
    finds(&mut messages, original.clone());
    let (id, returned, expected_body) = (original.id, edited.clone(), body.clone());
    messages
        .expect_edit_message()
        .withf(move |_, _, m, b, when| *m == id && *b == expected_body && *when == at())
        .times(1)
        .returning(move |_, _, _, _, _| Ok(Some(returned.clone())));
    let events = announces_change(&w, &edited);
    let result = service(&w, messages, events)
        .edit_message(&w.author, w.conversation.id, original.id, body)
        .await
        .unwrap();
    assert_eq!(result, edited);
}

#[tokio::test]
async fn nobody_else_edits_a_message() {
    let w = world();
    for editor in [w.colleague, w.admin, w.customer] {
        let original = message(&w, w.author.as_sender());
        let mut messages = MockMessageRepository::new();
        finds(&mut messages, original.clone());
        messages.expect_edit_message().never();
        let mut events = MockEventPublisher::new();
        events.expect_publish().never();
        let err = service(&w, messages, events)
            .edit_message(
                &editor,
                w.conversation.id,
                original.id,
                MessageBody::parse("x").unwrap(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::Forbidden), "{editor:?}: {err:?}");
    }
}

#[tokio::test]
async fn a_deleted_message_cannot_be_edited() {
    let w = world();
    let mut original = message(&w, w.author.as_sender());
    original.body = None;
    original.deleted_at = Some(at());
    let mut messages = MockMessageRepository::new();
    finds(&mut messages, original.clone());
    messages.expect_edit_message().never();
    let err = service(&w, messages, MockEventPublisher::new())
        .edit_message(
            &w.author,
            w.conversation.id,
            original.id,
            MessageBody::parse("x").unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::Conflict(Conflict::MessageDeleted)));
}

#[tokio::test]
async fn an_unknown_message_is_not_found() {
    let w = world();
    let mut messages = MockMessageRepository::new();
    messages.expect_find_message().returning(|_, _, _| Ok(None));
    let service = service(&w, messages, MockEventPublisher::new());
    let edit = service
        .edit_message(
            &w.author,
            w.conversation.id,
            MessageId::new_v7(),
            MessageBody::parse("x").unwrap(),
        )
        .await;
    assert!(matches!(edit, Err(ChatError::NotFound(Resource::Message))));
    let delete = service
        .delete_message(&w.admin, w.conversation.id, MessageId::new_v7())
        .await;
    assert!(matches!(
        delete,
        Err(ChatError::NotFound(Resource::Message))
    ));

    // A message of another conversation is not one of this one's, whatever
    // a store hands back.
    let mut messages = MockMessageRepository::new();
    let stray = Message {
        conversation_id: ConversationId::new_v7(),
        ..message(&w, w.admin.as_sender())
    };
    finds(&mut messages, stray.clone());
    let delete = self::service(&w, messages, MockEventPublisher::new())
        .delete_message(&w.admin, w.conversation.id, stray.id)
        .await;
    assert!(
        matches!(delete, Err(ChatError::NotFound(Resource::Message))),
        "{delete:?}"
    );
}

#[tokio::test]
async fn an_admin_deletes_any_message_and_it_is_announced_once() {
    let w = world();
    let original = message(&w, w.customer.as_sender());
    let mut deleted = original.clone();
    deleted.body = None;
    deleted.deleted_at = Some(at());
    let mut messages = MockMessageRepository::new();
    finds(&mut messages, original.clone());
    let returned = deleted.clone();
    messages
        .expect_delete_message()
        .times(1)
        .returning(move |_, _, _, _| Ok(Some(returned.clone())));
    let events = announces_change(&w, &deleted);
    let result = service(&w, messages, events)
        .delete_message(&w.admin, w.conversation.id, original.id)
        .await
        .unwrap();
    assert_eq!(result, deleted);

    // Deleting again returns it, announces nothing and writes nothing.
    let mut messages = MockMessageRepository::new();
    finds(&mut messages, deleted.clone());
    messages.expect_delete_message().never();
    let mut events = MockEventPublisher::new();
    events.expect_publish().never();
    let again = service(&w, messages, events)
        .delete_message(&w.customer, w.conversation.id, original.id)
        .await
        .unwrap();
    assert_eq!(again, deleted);
}

#[tokio::test]
async fn staff_cannot_delete_a_colleagues_message_and_store_failures_are_unexpected() {
    let w = world();
    let original = message(&w, w.author.as_sender());
    let mut messages = MockMessageRepository::new();
    finds(&mut messages, original.clone());
    messages.expect_delete_message().never();
    let err = service(&w, messages, MockEventPublisher::new())
        .delete_message(&w.colleague, w.conversation.id, original.id)
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::Forbidden));

    let mut messages = MockMessageRepository::new();
    messages
        .expect_find_message()
        .returning(|_, _, _| Err(RepoError::Unexpected(anyhow!("connection reset"))));
    let err = service(&w, messages, MockEventPublisher::new())
        .delete_message(&w.author, w.conversation.id, original.id)
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::Unexpected(_)));
}
