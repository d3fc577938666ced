use chat_domain::{
    Action, ChannelName, ChannelPatch, ChannelProfile, ConversationKind, Denied, DirectMembers,
    Member, MemberRole, Message, NewChannel, NewDirect, NoticeKind, Principal, Sender, StaffUserId,
    SystemNotice, Visibility,
};

use super::{ChannelListRequest, NewChannelRequest, MAX_MEMBERS_PER_REQUEST};
use crate::error::{Conflict, Field, Reason, Resource};
use crate::ports::{
    ChatEvent, ConversationPage, MemberChangeOutcome, MemberOp, MembershipError, MembershipFacts,
    PolicyAction, Route,
};
use crate::test_support::*;
use crate::{ChatError, ConversationSummary, PageLimit};

fn channel_named(name: &str, visibility: Visibility, archived: bool) -> chat_domain::Conversation {
    NewChannel {
        id: CONVERSATION_ID,
        tenant: TENANT,
        profile: ChannelProfile {
            name: ChannelName::parse(name).unwrap(),
            topic: None,
        },
        visibility,
        owner: ADMIN,
        members: vec![],
        now: earlier(),
    }
    .prospective()
    .archived_if(archived)
}

trait ArchivedIf {
    fn archived_if(self, archived: bool) -> Self;
}

impl ArchivedIf for chat_domain::Conversation {
    fn archived_if(mut self, archived: bool) -> Self {
        if let ConversationKind::Channel { archived_at, .. } = &mut self.kind {
            *archived_at = archived.then(earlier);
        }
        self
    }
}

fn public() -> chat_domain::Conversation {
    channel_named("General", Visibility::Public, false)
}

fn private() -> chat_domain::Conversation {
    channel_named("Pharmacists", Visibility::Private, false)
}

fn notice(seq_no: u64, kind: NoticeKind, user: StaffUserId, by: StaffUserId) -> Message {
    Message {
        sender: Sender::System,
        body: None,
        seq: seq(seq_no),
        system: Some(SystemNotice {
            kind,
            user: Some(user),
            by,
        }),
        ..stored_message(Sender::System, "unused")
    }
}

impl Harness {
    /// `member_role` of `user` in [`CONVERSATION_ID`] answers `role`.
    fn role_is(&mut self, user: StaffUserId, role: Option<MemberRole>) -> &mut Self {
        self.members
            .expect_member_role()
            .withf(move |t, id, u| *t == TENANT && *id == CONVERSATION_ID && *u == user)
            .times(1)
            .return_once(move |_, _, _| Ok(role));
        self
    }

    /// The conversation is stored, `principal` has `role` in it, and the
    /// policy lets them do `action`.
    fn member_authorized(
        &mut self,
        principal: Principal,
        stored: chat_domain::Conversation,
        role: Option<MemberRole>,
        action: Action,
    ) -> &mut Self {
        let Principal::Staff { user_id, .. } = principal else {
            panic!("members are staff");
        };
        self.find_returns(TENANT, Some(stored.clone()))
            .role_is(user_id, role)
            .policy_answers(principal, stored, PolicyAction::Act(action), Ok(()))
    }

    /// The store makes `op` on [`CONVERSATION_ID`] by `by` and answers
    /// `outcome`.
    fn changes(
        &mut self,
        by: StaffUserId,
        op: MemberOp,
        outcome: Result<MemberChangeOutcome, MembershipError>,
    ) -> &mut Self {
        self.members
            .expect_change_members()
            .withf(move |c| {
                c.tenant == TENANT
                    && c.conversation_id == CONVERSATION_ID
                    && c.by == by
                    && c.op == op
            })
            .times(1)
            .return_once(move |_| outcome);
        self
    }
}

fn me() -> StaffUserId {
    COLLEAGUE
}

// ---------------------------------------------------------------------------
// Direct conversations

#[tokio::test]
async fn a_direct_conversation_is_got_or_created_for_the_caller_and_the_others() {
    let mut h = Harness::new();
    let members = DirectMembers::new(me(), &[CLINICIAN, CLINICIAN]).unwrap();
    let new = NewDirect {
        id: NEW_CONVERSATION_ID,
        tenant: TENANT,
        members,
        now: now(),
    };
    h.policy_answers(staff(), new.prospective(), PolicyAction::Create, Ok(()));
    let (expected, stored) = (new.clone(), new.prospective());
    h.members
        .expect_get_or_create_direct()
        .withf(move |n| *n == expected)
        .times(1)
        .return_once(move |_| Ok((stored, true)));
    h.publishes_nothing();

    let (conversation, created) = h
        .service()
        .open_direct(&staff(), &[CLINICIAN, CLINICIAN])
        .await
        .unwrap();
    assert!(created);
    assert_eq!(conversation.kind, ConversationKind::Direct);
}

#[tokio::test]
async fn a_direct_conversation_needs_someone_else_and_at_most_eight_people() {
    let many: Vec<StaffUserId> = (0..8).map(|_| StaffUserId::new_v4()).collect();
    let cases: [(&[StaffUserId], Reason); 3] = [
        (
            &[],
            Reason::DirectMembers(chat_domain::DirectMembersError::Alone),
        ),
        (
            &[COLLEAGUE],
            Reason::DirectMembers(chat_domain::DirectMembersError::Alone),
        ),
        (
            &many,
            Reason::DirectMembers(chat_domain::DirectMembersError::TooMany),
        ),
    ];
    for (others, reason) in cases {
        let mut h = Harness::new();
        h.policy_not_asked();
        let err = h.service().open_direct(&staff(), others).await.unwrap_err();
        assert_invalid(&err, Field::UserIds, reason);
    }
}

#[tokio::test]
async fn customers_reach_no_staff_conversation_use_case() {
    let service = {
        let mut h = Harness::new();
        h.policy_not_asked().publishes_nothing();
        h.service()
    };
    let request = NewChannelRequest {
        name: ChannelName::parse("x").unwrap(),
        visibility: Visibility::Public,
        topic: None,
        member_ids: vec![],
    };
    let c = customer();
    let results = [
        service.open_direct(&c, &[CLINICIAN]).await.map(|_| ()),
        service.create_channel(&c, request).await.map(|_| ()),
        service.join_channel(&c, CONVERSATION_ID).await.map(|_| ()),
        service.leave_channel(&c, CONVERSATION_ID).await,
        service
            .add_members(&c, CONVERSATION_ID, &[CLINICIAN], MemberRole::Member)
            .await
            .map(|_| ()),
        service.remove_member(&c, CONVERSATION_ID, CLINICIAN).await,
        service
            .list_channels(&c, ChannelListRequest::default())
            .await
            .map(|_| ()),
    ];
    for result in results {
        assert!(matches!(result, Err(ChatError::Forbidden)), "{result:?}");
    }
}

// ---------------------------------------------------------------------------
// Channels

#[tokio::test]
async fn a_new_channel_is_owned_by_its_creator_and_announces_its_members() {
    let mut h = Harness::new();
    let request = NewChannelRequest {
        name: ChannelName::parse("Night shift").unwrap(),
        visibility: Visibility::Private,
        topic: None,
        member_ids: vec![CLINICIAN, me(), CLINICIAN, ADMIN],
    };
    let new = NewChannel {
        id: NEW_CONVERSATION_ID,
        tenant: TENANT,
        profile: ChannelProfile {
            name: request.name.clone(),
            topic: None,
        },
        visibility: Visibility::Private,
        owner: me(),
        members: vec![CLINICIAN, ADMIN],
        now: now(),
    };
    h.policy_answers(staff(), new.prospective(), PolicyAction::Create, Ok(()));
    let mut stored = new.prospective();
    stored.last_seq = seq(2);
    let notices = vec![
        notice(1, NoticeKind::MemberAdded, CLINICIAN, me()),
        notice(2, NoticeKind::MemberAdded, ADMIN, me()),
    ];
    let (expected, answer) = (new.clone(), (stored.clone(), notices.clone()));
    h.members
        .expect_create_channel()
        .withf(move |n, ids| *n == expected && ids == [NEW_MESSAGE_ID, NEW_MESSAGE_ID])
        .times(1)
        .return_once(move |_, _| Ok(answer));
    let mut published = Vec::new();
    for message in notices {
        let event = ChatEvent::MessageCreated {
            route: Route::of(&stored),
            message,
        };
        published.push(event);
    }
    let mut seq_events = mockall::Sequence::new();
    for event in published {
        h.events
            .expect_publish()
            .withf(move |e| *e == event)
            .times(1)
            .in_sequence(&mut seq_events)
            .return_const(());
    }

    let channel = h.service().create_channel(&staff(), request).await.unwrap();
    assert_eq!(channel, stored);
}

#[tokio::test]
async fn a_taken_name_is_a_conflict_and_announces_nothing() {
    let mut h = Harness::new();
    h.policy.expect_check().return_const(Ok(()));
    h.members
        .expect_create_channel()
        .times(1)
        .return_once(|_, _| Err(MembershipError::NameTaken));
    h.publishes_nothing();
    let request = NewChannelRequest {
        name: ChannelName::parse("General").unwrap(),
        visibility: Visibility::Public,
        topic: None,
        member_ids: vec![],
    };
    let err = h
        .service()
        .create_channel(&staff(), request)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChatError::Conflict(Conflict::NameTaken)),
        "{err:?}"
    );
}

#[tokio::test]
async fn too_many_members_in_one_request_are_refused_before_any_store_call() {
    let many: Vec<StaffUserId> = (0..=MAX_MEMBERS_PER_REQUEST)
        .map(|_| StaffUserId::new_v4())
        .collect();
    let mut h = Harness::new();
    h.policy_not_asked();
    let err = h
        .service()
        .add_members(&staff(), CONVERSATION_ID, &many, MemberRole::Member)
        .await
        .unwrap_err();
    assert_invalid(
        &err,
        Field::UserIds,
        Reason::TooMany {
            max: MAX_MEMBERS_PER_REQUEST,
        },
    );
}

#[tokio::test]
async fn joining_adds_a_non_member_once_and_leaves_a_member_as_is() {
    // A member: nothing to do.
    let mut h = Harness::new();
    h.member_authorized(staff(), public(), Some(MemberRole::Member), Action::Join)
        .publishes_nothing();
    h.members.expect_change_members().never();
    h.service()
        .join_channel(&staff(), CONVERSATION_ID)
        .await
        .unwrap();

    // Not yet one: added, and the notice published.
    let mut h = Harness::new();
    h.member_authorized(staff(), public(), None, Action::Join);
    let mut after = public();
    after.last_seq = seq(1);
    let posted = notice(1, NoticeKind::MemberAdded, me(), me());
    let outcome = MemberChangeOutcome {
        conversation: after.clone(),
        changed: vec![Member {
            user: me(),
            role: MemberRole::Member,
            joined_at: now(),
        }],
        notices: vec![posted.clone()],
    };
    h.changes(
        me(),
        MemberOp::Add {
            users: vec![me()],
            role: MemberRole::Member,
        },
        Ok(outcome),
    )
    .publishes(ChatEvent::MessageCreated {
        route: Route::of(&after),
        message: posted,
    });
    let joined = h
        .service()
        .join_channel(&staff(), CONVERSATION_ID)
        .await
        .unwrap();
    assert_eq!(joined, after);
}

#[tokio::test]
async fn the_rules_refuse_before_the_store_is_asked_to_change_anything() {
    let archived = channel_named("Old", Visibility::Public, true);
    type Call = fn(
        &crate::ChatService,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), ChatError>> + Send + '_>,
    >;
    let join: Call =
        |s| Box::pin(async move { s.join_channel(&staff(), CONVERSATION_ID).await.map(|_| ()) });
    let leave: Call = |s| Box::pin(async move { s.leave_channel(&staff(), CONVERSATION_ID).await });
    let remove: Call =
        |s| Box::pin(async move { s.remove_member(&staff(), CONVERSATION_ID, CLINICIAN).await });
    let add_owner: Call = |s| {
        Box::pin(async move {
            s.add_members(&staff(), CONVERSATION_ID, &[CLINICIAN], MemberRole::Owner)
                .await
                .map(|_| ())
        })
    };
    let rename: Call = |s| {
        Box::pin(async move {
            let patch = ChannelPatch {
                name: Some(ChannelName::parse("New").unwrap()),
                ..ChannelPatch::default()
            };
            s.update_channel(&staff(), CONVERSATION_ID, patch)
                .await
                .map(|_| ())
        })
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, chat_domain::Conversation, Option<MemberRole>, Call, Denied)> = vec![
        ("joining a private channel one may not see",  private(),        None,                     join,      Denied::NotFound),
        ("leaving a channel one is not in",            public(),         None,                     leave,     Denied::Forbidden),
        ("a member removing another",                  public(),         Some(MemberRole::Member), remove,    Denied::Forbidden),
        ("a member adding an owner",                   public(),         Some(MemberRole::Member), add_owner, Denied::Forbidden),
        ("a member renaming",                          public(),         Some(MemberRole::Member), rename,    Denied::Forbidden),
        ("joining an archived channel",                archived.clone(), None,                     join,      Denied::Archived),
        ("an owner renaming an archived channel",      archived,         Some(MemberRole::Owner),  rename,    Denied::Archived),
    ];
    for (label, stored, role, call, denied) in cases {
        let mut h = Harness::new();
        h.find_returns(TENANT, Some(stored))
            .role_is(me(), role)
            .policy_not_asked()
            .publishes_nothing();
        h.members.expect_change_members().never();
        h.members.expect_update_channel().never();
        let err = call(&h.service()).await.unwrap_err();
        let expected = ChatError::from(denied);
        assert_eq!(format!("{err:?}"), format!("{expected:?}"), "{label}");
    }
}

#[tokio::test]
async fn the_last_owner_leaving_is_a_conflict_and_announces_nothing() {
    let mut h = Harness::new();
    h.member_authorized(staff(), public(), Some(MemberRole::Owner), Action::Leave)
        .changes(
            me(),
            MemberOp::Remove { user: me() },
            Err(MembershipError::LastOwner(chat_domain::LastOwner)),
        )
        .publishes_nothing();
    let err = h
        .service()
        .leave_channel(&staff(), CONVERSATION_ID)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChatError::Conflict(Conflict::LastOwner)),
        "{err:?}"
    );
}

#[tokio::test]
async fn removing_a_non_member_is_not_found_as_a_member() {
    let mut h = Harness::new();
    h.member_authorized(
        staff(),
        private(),
        Some(MemberRole::Owner),
        Action::ManageMembers,
    )
    .changes(
        me(),
        MemberOp::Remove { user: CLINICIAN },
        Err(MembershipError::MemberNotFound),
    )
    .publishes_nothing();
    let err = h
        .service()
        .remove_member(&staff(), CONVERSATION_ID, CLINICIAN)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChatError::NotFound(Resource::Member)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_owner_brings_an_archived_channel_back_and_it_is_announced() {
    let archived = channel_named("Old", Visibility::Public, true);
    let back = ChannelPatch {
        archived: Some(false),
        ..ChannelPatch::default()
    };
    let mut after = archived.clone().archived_if(false);
    after.last_seq = seq(1);
    let posted = Message {
        system: Some(SystemNotice {
            kind: NoticeKind::ChannelUpdated,
            user: None,
            by: me(),
        }),
        ..notice(1, NoticeKind::ChannelUpdated, me(), me())
    };
    let mut h = Harness::new();
    h.member_authorized(staff(), archived, Some(MemberRole::Owner), Action::Archive);
    let (expected, answer) = (back.clone(), (after.clone(), posted.clone()));
    h.members
        .expect_update_channel()
        .withf(move |t, id, p, by, notice_id, at| {
            (*t, *id, p, *by, *notice_id, *at)
                == (
                    TENANT,
                    CONVERSATION_ID,
                    &expected,
                    me(),
                    NEW_MESSAGE_ID,
                    now(),
                )
        })
        .times(1)
        .return_once(move |_, _, _, _, _, _| Ok(answer));
    h.publishes(ChatEvent::ConversationUpdated {
        conversation: after.clone(),
    })
    .publishes(ChatEvent::MessageCreated {
        route: Route::of(&after),
        message: posted,
    });
    let updated = h
        .service()
        .update_channel(&staff(), CONVERSATION_ID, back)
        .await
        .unwrap();
    assert_eq!(updated, after);
}

#[tokio::test]
async fn an_empty_channel_patch_is_invalid() {
    let mut h = Harness::new();
    h.member_authorized(staff(), public(), Some(MemberRole::Owner), Action::Rename)
        .publishes_nothing();
    let err = h
        .service()
        .update_channel(&staff(), CONVERSATION_ID, ChannelPatch::default())
        .await
        .unwrap_err();
    assert_invalid(&err, Field::Patch, Reason::Empty);
}

#[tokio::test]
async fn channel_lists_ask_with_a_folded_prefix_and_hide_what_the_policy_hides() {
    let mut h = Harness::new();
    h.members
        .expect_list_channels()
        .withf(|q| {
            q.tenant == TENANT
                && q.viewer == me()
                && q.prefix.as_deref() == Some("night é")
                && q.joined == Some(true)
                && q.limit == 10
        })
        .times(1)
        .return_once(|_| {
            Ok(crate::ChannelPage {
                channels: vec![
                    crate::ChannelListing {
                        conversation: public(),
                        member_count: 3,
                        role: None,
                    },
                    crate::ChannelListing {
                        conversation: private(),
                        member_count: 2,
                        role: Some(MemberRole::Member),
                    },
                ],
                next_cursor: None,
            })
        });
    h.policy.expect_check().returning(|_, c, _| {
        if c.channel.as_ref().unwrap().name.as_str() == "General" {
            Err(Denied::NotFound)
        } else {
            Ok(())
        }
    });
    let page = h
        .service()
        .list_channels(
            &staff(),
            ChannelListRequest {
                joined: Some(true),
                prefix: Some("  Night É ".to_owned()),
                limit: PageLimit::parse(10).unwrap(),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.channels.len(), 1);
    assert_eq!(page.channels[0].member_count, 2);
}

#[tokio::test]
async fn lists_carry_the_membership_of_staff_kinds_from_one_store_call() {
    let mut h = Harness::new();
    let (inbox, channel) = (inbox(), public());
    let mut channel = channel;
    channel.id = SECOND_CONVERSATION_ID;
    let page = ConversationPage {
        items: vec![summary(inbox, 0), summary(channel.clone(), 1)],
        next_cursor: None,
    };
    h.conversations
        .expect_list_conversations()
        .times(1)
        .return_once(move |_| Ok(page));
    h.policy.expect_check().return_const(Ok(()));
    let facts = MembershipFacts {
        member_count: 4,
        role: Some(MemberRole::Owner),
        member_ids: vec![],
    };
    let answer = std::collections::HashMap::from([(SECOND_CONVERSATION_ID, facts.clone())]);
    h.members
        .expect_membership_facts()
        .withf(|t, ids, viewer| *t == TENANT && ids == [SECOND_CONVERSATION_ID] && *viewer == me())
        .times(1)
        .return_once(move |_, _, _| Ok(answer));
    let listed = h
        .service()
        .list_conversations(&staff(), None, None, PageLimit::default(), None)
        .await
        .unwrap();
    let memberships: Vec<Option<MembershipFacts>> = listed
        .items
        .into_iter()
        .map(|s: ConversationSummary| s.membership)
        .collect();
    assert_eq!(memberships, vec![None, Some(facts)]);
}

#[tokio::test]
async fn only_members_send_in_a_channel_and_the_role_is_read_on_every_send() {
    let mut h = Harness::new();
    h.policy_refuses_nothing = true;
    h.find_returns(TENANT, Some(public()))
        .role_is(me(), None)
        .policy_not_asked()
        .publishes_nothing();
    h.messages.expect_append().never();
    let err = h
        .service()
        .send_message(&staff(), CONVERSATION_ID, send_request("hello"))
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn a_message_id_is_drawn_per_notice() {
    // Adding two members draws two notice ids; a role change draws none.
    let mut h = Harness::new();
    h.member_authorized(
        staff(),
        private(),
        Some(MemberRole::Owner),
        Action::AddMembers,
    );
    h.members
        .expect_change_members()
        .withf(|c| c.notice_ids == [NEW_MESSAGE_ID, NEW_MESSAGE_ID])
        .times(1)
        .return_once(|_| {
            Ok(MemberChangeOutcome {
                conversation: private(),
                changed: vec![],
                notices: vec![],
            })
        });
    h.service()
        .add_members(
            &staff(),
            CONVERSATION_ID,
            &[CLINICIAN, ADMIN],
            MemberRole::Member,
        )
        .await
        .unwrap();

    let mut h = Harness::new();
    h.member_authorized(
        staff(),
        private(),
        Some(MemberRole::Owner),
        Action::ManageMembers,
    );
    let member = Member {
        user: CLINICIAN,
        role: MemberRole::Owner,
        joined_at: earlier(),
    };
    h.members
        .expect_change_members()
        .withf(|c| c.notice_ids.is_empty())
        .times(1)
        .return_once(move |_| {
            Ok(MemberChangeOutcome {
                conversation: private(),
                changed: vec![member],
                notices: vec![],
            })
        });
    h.publishes_nothing();
    let changed = h
        .service()
        .set_member_role(&staff(), CONVERSATION_ID, CLINICIAN, MemberRole::Owner)
        .await
        .unwrap();
    assert_eq!(changed, member);
}
