//! The event dispatcher of one node ([`Hub::run`]): reads the bus through
//! the ordered feed, so each conversation's messages come once and in
//! order, turns each event into one [`ServerFrame`], encoded once, and
//! hands it to the hub with whom it is for.
//!
//! A new event is one arm of [`route`]: its frame (a variant in
//! `protocol/server.rs`) and its audience (a conversation's readers, the
//! tenant's staff...).

use std::sync::Arc;
use std::time::Duration;

use chat_app::{BusEvent, ChatEvent, EventStream, OrderedFeed, Route};
use chat_domain::{NoticeKind, SystemNotice};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::hub::Hub;
use super::outbound::{EchoKey, Outbound};
use super::protocol::ServerFrame;

/// How often the hub forgets the audiences of quiet conversations.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Hub {
    /// Routes bus events, in delivery order, until `shutdown`. Lost events
    /// (the dispatcher fell behind, or the bus closed) close every
    /// connection with 1013, so that each resumes from the database.
    pub async fn run(self: Arc<Self>, events: EventStream, shutdown: CancellationToken) {
        let mut feed = OrderedFeed::new(events, self.messages.clone()).into_stream();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = sweep.tick() => self.sweep(),
                next = feed.next() => match next {
                    Some(BusEvent::Event(event)) => route(&self, event).await,
                    Some(BusEvent::Lagged(missed)) => {
                        // Some connections may have missed events: make them
                        // all reconnect and resume from the database.
                        tracing::error!(missed, "event dispatcher fell behind: asking every connection to resume");
                        self.resync_all();
                    }
                    None => {
                        tracing::error!("event bus closed: asking every connection to resume");
                        self.resync_all();
                        break;
                    }
                },
            }
        }
    }
}

/// Queues `frame`, an event of the conversation of `route`, for its
/// readers.
async fn to_readers(hub: &Hub, route: Route, frame: &ServerFrame) {
    let out = Outbound::of_conversation(route.conversation_id, frame.encode());
    hub.to_readers(route, |_| true, &out).await;
}

/// Moves the audience of the conversation of `route` as its membership
/// `notice` says, before the notice itself is delivered: a member added
/// hears it and all that follows; a member removed hears only that they
/// were (on every connection, even where the audience was not cached), and
/// nothing after.
async fn membership_moves(hub: &Hub, route: Route, notice: &SystemNotice) {
    let Some(user) = notice.user else {
        return;
    };
    match notice.kind {
        NoticeKind::MemberAdded => hub.add_member(route.conversation_id, user),
        NoticeKind::MemberRemoved | NoticeKind::MemberLeft => {
            hub.remove_member(route.conversation_id, user);
            if let Some(frame) = ServerFrame::membership(route.conversation_id, notice) {
                let out = Outbound::of_conversation(route.conversation_id, frame.encode());
                hub.to_staff_user(route.access.tenant, user, &out);
            }
        }
        NoticeKind::ChannelUpdated => {}
    }
}

/// Delivers one event to whom it concerns.
pub(super) async fn route(hub: &Hub, event: ChatEvent) {
    match event {
        ChatEvent::MessageCreated { route, message } => {
            let notice = message.system;
            if let Some(notice) = notice {
                membership_moves(hub, route, &notice).await;
            }
            let out = Outbound {
                conversation: Some(route.conversation_id),
                seq: Some(message.seq.get()),
                echo: message
                    .client_msg_id
                    .as_ref()
                    .map(|key| EchoKey::new(message.sender, key)),
                frame: ServerFrame::new_message(message).encode(),
            };
            hub.to_readers(route, |_| true, &out).await;
            if let Some(frame) =
                notice.and_then(|n| ServerFrame::membership(route.conversation_id, &n))
            {
                to_readers(hub, route, &frame).await;
            }
        }
        ChatEvent::MessageChanged { route, message } => {
            to_readers(hub, route, &ServerFrame::message_changed(message)).await;
        }
        ChatEvent::ConversationUpdated { conversation } => {
            let route = Route::of(&conversation);
            to_readers(hub, route, &ServerFrame::conversation_updated(conversation)).await;
        }
        ChatEvent::ReceiptMoved {
            route,
            receipt,
            state,
        } => {
            let frame = ServerFrame::receipt_moved(route.conversation_id, receipt, &state);
            to_readers(hub, route, &frame).await;
        }
        ChatEvent::Typing {
            route,
            sender,
            is_typing,
        } => {
            let frame = ServerFrame::typing(route.conversation_id, sender, is_typing);
            // The other participants only; never held behind a send.
            hub.to_readers(
                route,
                |principal| principal.as_sender() != sender,
                &Outbound::passing(frame.encode()),
            )
            .await;
        }
        ChatEvent::PresenceChanged { tenant, presence } => {
            let out = Outbound::passing(ServerFrame::presence(&presence).encode());
            // The user's own sockets know their status already.
            hub.to_staff(
                tenant,
                |principal| principal.as_sender() != presence.user,
                &out,
            );
        }
        ChatEvent::EventsLost { dropped } => {
            tracing::warn!(
                dropped,
                "a node dropped events it could not publish: asking every connection to resume"
            );
            hub.resync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_app::{
        AccessPolicy, ConnectionId, MockConversationRepository, MockMessageRepository, PolicyAction,
    };
    use chat_domain::{
        Conversation, CustomerId, Message, Principal, Sender, StaffRole, StaffUserId, TenantId,
    };
    use tokio::sync::mpsc;

    use super::*;
    use crate::ws::outbound::{ConnControl, Outbound};
    use crate::ws::protocol::Frame;

    /// Registers a connection of `principal`; returns its queue.
    fn connect(hub: &Hub, principal: Principal) -> mpsc::Receiver<Outbound> {
        let (tx, rx) = mpsc::channel(8);
        hub.register(ConnectionId::new(), principal, tx, ConnControl::default());
        rx
    }

    fn frames(queue: &mut mpsc::Receiver<Outbound>) -> usize {
        let mut count = 0;
        while queue.try_recv().is_ok() {
            count += 1;
        }
        count
    }

    fn created(conversation: &Conversation, message: Message) -> ChatEvent {
        ChatEvent::MessageCreated {
            route: Route::of(conversation),
            message,
        }
    }

    /// A hub asking `policy`, whose store holds the conversations `stored`
    /// (and fails for any other, which a policy that refuses nothing never
    /// asks about).
    fn hub(policy: Arc<dyn AccessPolicy>, stored: Vec<Conversation>) -> Arc<Hub> {
        let mut conversations = MockConversationRepository::new();
        conversations.expect_find().returning(move |tenant, id| {
            Ok(stored
                .iter()
                .find(|c| c.tenant == tenant && c.id == id)
                .cloned())
        });
        Hub::new(
            Arc::new(MockMessageRepository::new()),
            Arc::new(conversations),
            Arc::new(chat_app::MockMembershipRepository::new()),
            policy,
        )
    }

    #[tokio::test]
    async fn events_lost_by_a_node_ask_every_connection_here_to_resume() {
        let hub = hub(Arc::new(chat_app::AllowAll), Vec::new());
        let controls: Vec<ConnControl> = (0..3)
            .map(|i| {
                let control = ConnControl::default();
                let (tx, _rx) = mpsc::channel(8);
                let principal = if i == 0 {
                    Principal::customer(TenantId::new_v4(), CustomerId::new_v4())
                } else {
                    Principal::staff(TenantId::new_v4(), StaffUserId::new_v4(), StaffRole::Staff)
                };
                hub.register(ConnectionId::new(), principal, tx, control.clone());
                control
            })
            .collect();
        route(&hub, ChatEvent::EventsLost { dropped: 7 }).await;
        for control in &controls {
            assert!(control.is_closed());
            assert_eq!(control.reason(), crate::ws::outbound::CloseReason::Resync);
        }
        assert_eq!(hub.resyncs(), 1);
    }

    #[tokio::test]
    async fn events_reach_the_readers_of_their_conversation_and_nobody_else() {
        let hub = hub(Arc::new(chat_app::AllowAll), Vec::new());
        let tenant = TenantId::new_v4();
        let (customer, other_customer) = (CustomerId::new_v4(), CustomerId::new_v4());
        let clinician = StaffUserId::new_v4();
        let conversation =
            |clinician| chat_app::fixtures::conversation(tenant, customer, clinician);
        let (inbox, private) = (conversation(None), conversation(Some(clinician)));
        let staff = Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff);
        let mut queues = vec![
            ("staff", connect(&hub, staff)),
            (
                "the clinician",
                connect(&hub, Principal::staff(tenant, clinician, StaffRole::Staff)),
            ),
            (
                "an admin",
                connect(
                    &hub,
                    Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Admin),
                ),
            ),
            (
                "the customer",
                connect(&hub, Principal::customer(tenant, customer)),
            ),
            (
                "the customer's phone",
                connect(&hub, Principal::customer(tenant, customer)),
            ),
            (
                "another customer",
                connect(&hub, Principal::customer(tenant, other_customer)),
            ),
            (
                "staff of another tenant",
                connect(
                    &hub,
                    Principal::staff(TenantId::new_v4(), StaffUserId::new_v4(), StaffRole::Admin),
                ),
            ),
            (
                "the same customer id in another tenant",
                connect(&hub, Principal::customer(TenantId::new_v4(), customer)),
            ),
        ];
        // (conversation, who gets the event: one flag per queue above)
        let table = [
            (&inbox, [true, true, true, true, true, false, false, false]),
            (
                &private,
                [false, true, true, true, true, false, false, false],
            ),
        ];
        for (conversation, expected) in table {
            let out = Outbound::of_conversation(conversation.id, Frame::from("{}"));
            hub.to_readers(Route::of(conversation), |_| true, &out)
                .await;
            for ((who, queue), expected) in queues.iter_mut().zip(expected) {
                assert_eq!(
                    frames(queue),
                    usize::from(expected),
                    "{who}, {:?}",
                    conversation.kind
                );
            }
        }

        // Presence goes to staff only; a closed connection is dropped.
        route(
            &hub,
            ChatEvent::PresenceChanged {
                tenant,
                presence: chat_domain::Presence {
                    user: Sender::Customer(customer),
                    status: chat_domain::PresenceStatus::Online,
                    last_seen_at: None,
                },
            },
        )
        .await;
        let got: Vec<usize> = queues.iter_mut().map(|(_, q)| frames(q)).collect();
        assert_eq!(got, [1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(hub.connection_count(), 8);
        drop(queues.remove(4));
        let out = Outbound::of_conversation(inbox.id, Frame::from("{}"));
        hub.to_readers(Route::of(&inbox), |_| true, &out).await;
        assert_eq!(hub.connection_count(), 7, "the phone's connection is gone");
        hub.unregister(&Principal::customer(tenant, customer), ConnectionId::new());
        assert_eq!(hub.connection_count(), 7, "unknown ids change nothing");
    }

    /// The frame types in `queue`, in order.
    fn types(queue: &mut mpsc::Receiver<Outbound>) -> Vec<String> {
        let mut types = Vec::new();
        while let Ok(out) = queue.try_recv() {
            let value: serde_json::Value = serde_json::from_str(out.frame.as_str()).unwrap();
            types.push(value["type"].as_str().unwrap().to_owned());
        }
        types
    }

    #[tokio::test]
    async fn membership_notices_move_a_channel_s_audience_at_their_place_in_the_stream() {
        use chat_domain::{
            ChannelName, ChannelProfile, MessageId, NewChannel, NoticeKind, SystemNotice,
            Visibility,
        };
        let tenant = TenantId::new_v4();
        let (owner, joiner, outsider) = (
            StaffUserId::new_v4(),
            StaffUserId::new_v4(),
            StaffUserId::new_v4(),
        );
        let channel = NewChannel {
            id: chat_domain::ConversationId::new_v7(),
            tenant,
            profile: ChannelProfile {
                name: ChannelName::parse("Night shift").unwrap(),
                topic: None,
            },
            visibility: Visibility::Public,
            owner,
            members: vec![],
            now: chrono::Utc::now(),
        }
        .prospective();
        let mut members = chat_app::MockMembershipRepository::new();
        // Loaded once, when the first event needs the audience.
        members
            .expect_member_ids()
            .times(1)
            .returning(move |_, _| Ok(vec![owner]));
        let hub = Hub::new(
            Arc::new(MockMessageRepository::new()),
            Arc::new(MockConversationRepository::new()),
            Arc::new(members),
            Arc::new(chat_app::AllowAll),
        );
        let mut owner_q = connect(&hub, Principal::staff(tenant, owner, StaffRole::Staff));
        let mut joiner_q = connect(&hub, Principal::staff(tenant, joiner, StaffRole::Admin));
        let mut outsider_q = connect(&hub, Principal::staff(tenant, outsider, StaffRole::Staff));
        let message = |seq: u64, system: Option<SystemNotice>| Message {
            id: MessageId::new_v7(),
            seq: chat_domain::Seq::from_u64(seq).unwrap(),
            sender: if system.is_some() {
                Sender::System
            } else {
                Sender::Staff(owner)
            },
            system,
            ..chat_app::fixtures::message(&channel, seq, Sender::Staff(owner))
        };
        let notice = |kind, by| {
            Some(SystemNotice {
                kind,
                user: Some(joiner),
                by,
            })
        };
        for event in [
            message(1, None),
            message(2, notice(NoticeKind::MemberAdded, joiner)),
            message(3, None),
            message(4, notice(NoticeKind::MemberRemoved, owner)),
            message(5, None),
        ] {
            route(&hub, created(&channel, event)).await;
        }
        let said = |s: &[&str]| s.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            types(&mut owner_q),
            said(&[
                "new_message",
                "new_message",
                "member_added",
                "new_message",
                "new_message",
                "member_removed",
                "new_message"
            ])
        );
        assert_eq!(
            types(&mut joiner_q),
            said(&[
                "new_message",
                "member_added",
                "new_message",
                "member_removed"
            ]),
            "from their notice on, up to their removal"
        );
        assert!(
            types(&mut outsider_q).is_empty(),
            "staff who are not members hear nothing of a channel, public or not"
        );
    }

    /// A host policy that keeps one staff member out of one customer's
    /// conversations (say, not of their care team).
    struct CareTeam {
        outsider: StaffUserId,
        customer: CustomerId,
    }

    #[async_trait::async_trait]
    impl AccessPolicy for CareTeam {
        async fn check(
            &self,
            principal: &Principal,
            conversation: &Conversation,
            _action: PolicyAction,
        ) -> Result<(), chat_domain::Denied> {
            let outsider = principal.as_sender() == Sender::Staff(self.outsider);
            if outsider && conversation.kind.customer_id() == Some(self.customer) {
                Err(chat_domain::Denied::NotFound)
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn the_host_policy_keeps_conversation_events_from_whom_it_refuses() {
        let tenant = TenantId::new_v4();
        let (customer, other_customer) = (CustomerId::new_v4(), CustomerId::new_v4());
        let outsider = StaffUserId::new_v4();
        let inbox_of = |customer| chat_app::fixtures::conversation(tenant, customer, None);
        let (refused, other) = (inbox_of(customer), inbox_of(other_customer));
        let hub = hub(
            Arc::new(CareTeam { outsider, customer }),
            vec![refused.clone(), other.clone()],
        );
        let mut outsider_queue =
            connect(&hub, Principal::staff(tenant, outsider, StaffRole::Staff));
        let mut outsider_phone =
            connect(&hub, Principal::staff(tenant, outsider, StaffRole::Staff));
        let mut colleague = connect(
            &hub,
            Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff),
        );
        let mut the_customer = connect(&hub, Principal::customer(tenant, customer));

        // A message, a receipt-like update and typing: all kept from the
        // outsider, on every socket of theirs.
        let message = |conversation: &Conversation| {
            chat_app::fixtures::message(conversation, 1, Sender::Customer(customer))
        };
        route(&hub, created(&refused, message(&refused))).await;
        route(
            &hub,
            ChatEvent::ConversationUpdated {
                conversation: refused.clone(),
            },
        )
        .await;
        route(
            &hub,
            ChatEvent::Typing {
                route: Route::of(&refused),
                sender: Sender::Customer(customer),
                is_typing: true,
            },
        )
        .await;
        assert_eq!(frames(&mut outsider_queue), 0);
        assert_eq!(frames(&mut outsider_phone), 0);
        assert_eq!(frames(&mut colleague), 3);
        assert_eq!(frames(&mut the_customer), 2, "not their own typing");

        // Other customers' conversations still reach the outsider.
        route(&hub, created(&other, message(&other))).await;
        assert_eq!(frames(&mut outsider_queue), 1);
        assert_eq!(frames(&mut outsider_phone), 1);
        assert_eq!(frames(&mut colleague), 1);
        assert_eq!(frames(&mut the_customer), 0);

        // The policy decides by the stored conversation: one the store does
        // not have (or cannot read) reaches nobody; readers resume later.
        let unknown = inbox_of(other_customer);
        route(&hub, created(&unknown, message(&unknown))).await;
        assert_eq!(frames(&mut outsider_queue), 0);
        assert_eq!(frames(&mut colleague), 0);
    }
}
