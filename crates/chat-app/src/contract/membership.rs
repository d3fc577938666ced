//! Contract cases of the [`MembershipRepository`]: direct conversations,
//! channels, members and their notices.

use std::collections::HashSet;
use std::sync::Arc;

use chat_domain::{
    ChannelName, ChannelPatch, ChannelProfile, ChannelTopic, Conversation, ConversationId,
    ConversationKind, ConversationScope, DirectMembers, KindName, MemberRole, Message, MessageId,
    NewChannel, NewDirect, NoticeKind, Sender, StaffUserId, SystemNotice, TenantId, Visibility,
};

use super::{open_inbox, page, send, seq, t0};
use crate::ports::{
    ChannelListQuery, ConversationListQuery, ListCursor, MemberChange, MemberOp, MembershipError,
    MessageCursor,
};

use super::Store;

fn staff() -> StaffUserId {
    StaffUserId::new_v4()
}

fn direct(tenant: TenantId, me: StaffUserId, others: &[StaffUserId]) -> NewDirect {
    NewDirect {
        id: ConversationId::new_v7(),
        tenant,
        members: DirectMembers::new(me, others).expect("a valid set"),
        now: t0(),
    }
}

fn new_channel(
    tenant: TenantId,
    name: &str,
    visibility: Visibility,
    owner: StaffUserId,
    members: &[StaffUserId],
) -> NewChannel {
    NewChannel {
        id: ConversationId::new_v7(),
        tenant,
        profile: ChannelProfile {
            name: ChannelName::parse(name).expect("valid name"),
            topic: None,
        },
        visibility,
        owner,
        members: members.to_vec(),
        now: t0(),
    }
}

fn ids(n: usize) -> Vec<MessageId> {
    (0..n).map(|_| MessageId::new_v7()).collect()
}

/// Creates a channel; panics unless it is stored.
async fn channel<S: Store>(
    store: &S,
    tenant: TenantId,
    name: &str,
    visibility: Visibility,
    owner: StaffUserId,
    members: &[StaffUserId],
) -> Conversation {
    let new = new_channel(tenant, name, visibility, owner, members);
    store
        .create_channel(&new, &ids(members.len()))
        .await
        .expect("create channel")
        .0
}

fn change(channel: &Conversation, by: StaffUserId, op: MemberOp) -> MemberChange {
    let notices = match &op {
        MemberOp::Add { users, .. } => users.len(),
        MemberOp::Remove { .. } => 1,
        MemberOp::SetRole { .. } => 0,
    };
    MemberChange {
        tenant: channel.tenant,
        conversation_id: channel.id,
        by,
        op,
        at: t0(),
        notice_ids: ids(notices),
    }
}

fn add(users: &[StaffUserId]) -> MemberOp {
    MemberOp::Add {
        users: users.to_vec(),
        role: MemberRole::Member,
    }
}

fn notice(kind: NoticeKind, user: Option<StaffUserId>, by: StaffUserId) -> Option<SystemNotice> {
    Some(SystemNotice { kind, user, by })
}

async fn members_of<S: Store>(store: &S, conversation: &Conversation) -> HashSet<StaffUserId> {
    store
        .member_ids(conversation.tenant, conversation.id)
        .await
        .expect("member ids")
        .into_iter()
        .collect()
}

async fn history<S: Store>(store: &S, conversation: &Conversation) -> Vec<Message> {
    page(
        store,
        conversation,
        MessageCursor::After(chat_domain::Seq::ZERO),
        200,
    )
    .await
    .messages
}

/// One direct conversation per set of people and tenant, whoever asks, with
/// every one of them a member.
pub(super) async fn a_direct_conversation_is_one_per_set_of_people<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let (a, b, c) = (staff(), staff(), staff());
    let (first, created) = store
        .get_or_create_direct(&direct(tenant, a, &[b]))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.kind, ConversationKind::Direct);
    assert_eq!(first.tenant, tenant);
    let (again, created) = store
        .get_or_create_direct(&direct(tenant, b, &[a, a]))
        .await
        .unwrap();
    assert!(!created, "the same pair, asked by the other");
    assert_eq!(again, first);
    assert_eq!(
        store.find(tenant, first.id).await.unwrap().as_ref(),
        Some(&first)
    );

    let (group, created) = store
        .get_or_create_direct(&direct(tenant, a, &[b, c]))
        .await
        .unwrap();
    assert!(created && group.id != first.id, "another set");
    let (elsewhere, created) = store
        .get_or_create_direct(&direct(TenantId::new_v4(), a, &[b]))
        .await
        .unwrap();
    assert!(created && elsewhere.id != first.id, "another tenant");

    assert_eq!(members_of(&*store, &group).await, HashSet::from([a, b, c]));
    for user in [a, b, c] {
        assert_eq!(
            store.member_role(tenant, group.id, user).await.unwrap(),
            Some(MemberRole::Member)
        );
    }
    assert_eq!(store.member_role(tenant, first.id, c).await.unwrap(), None);
}

/// Concurrent get-or-create of one set stores one conversation.
pub(super) async fn concurrent_get_or_create_of_one_direct_set_gives_one_conversation<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let people = [staff(), staff(), staff()];
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let (me, others) = (people[i % 3], people);
            tokio::spawn(async move {
                store
                    .get_or_create_direct(&direct(tenant, me, &others))
                    .await
                    .expect("get or create")
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let (conversation, fresh) = task.await.expect("task");
        ids.insert(conversation.id);
        created += usize::from(fresh);
    }
    assert_eq!((ids.len(), created), (1, 1));
    let id = *ids.iter().next().unwrap();
    assert_eq!(
        store.member_ids(tenant, id).await.unwrap().len(),
        3,
        "members stored once"
    );
}

/// Channel names are unique per tenant ignoring case, on creation and on
/// renaming.
pub(super) async fn channel_names_are_unique_per_tenant_ignoring_case<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let owner = staff();
    let night = channel(
        &*store,
        tenant,
        "Night Shift",
        Visibility::Public,
        owner,
        &[],
    )
    .await;
    assert_eq!(
        night.channel.as_ref().map(|c| c.name.as_str()),
        Some("Night Shift")
    );
    let taken = store
        .create_channel(
            &new_channel(tenant, "night SHIFT", Visibility::Private, owner, &[]),
            &[],
        )
        .await;
    assert!(
        matches!(taken, Err(MembershipError::NameTaken)),
        "{taken:?}"
    );
    channel(
        &*store,
        TenantId::new_v4(),
        "night shift",
        Visibility::Public,
        owner,
        &[],
    )
    .await;

    let day = channel(&*store, tenant, "Day", Visibility::Public, owner, &[]).await;
    let rename = |name: &str| ChannelPatch {
        name: Some(ChannelName::parse(name).unwrap()),
        ..ChannelPatch::default()
    };
    let clash = store
        .update_channel(
            tenant,
            day.id,
            &rename("NIGHT shift"),
            owner,
            MessageId::new_v7(),
            t0(),
        )
        .await;
    assert!(
        matches!(clash, Err(MembershipError::NameTaken)),
        "{clash:?}"
    );
    let (renamed, _) = store
        .update_channel(
            tenant,
            night.id,
            &rename("night shift"),
            owner,
            MessageId::new_v7(),
            t0(),
        )
        .await
        .expect("a channel may change its own name's case");
    assert_eq!(renamed.channel.unwrap().name.as_str(), "night shift");
}

/// A new channel: its owner is `owner`, each other member gets a
/// `member_added` notice, seq 1, 2... in the given order.
pub(super) async fn a_new_channel_posts_a_notice_per_member_but_its_owner<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let (owner, b, c) = (staff(), staff(), staff());
    let new = new_channel(tenant, "Rx desk", Visibility::Private, owner, &[b, c]);
    let notice_ids = ids(2);
    let (created, notices) = store.create_channel(&new, &notice_ids).await.unwrap();
    let mut expected = new.prospective();
    expected.last_seq = seq(2);
    assert_eq!(created, expected);
    assert_eq!(notices.iter().map(|m| m.id).collect::<Vec<_>>(), notice_ids);
    assert_eq!(
        notices
            .iter()
            .map(|m| (m.seq, m.system))
            .collect::<Vec<_>>(),
        vec![
            (seq(1), notice(NoticeKind::MemberAdded, Some(b), owner)),
            (seq(2), notice(NoticeKind::MemberAdded, Some(c), owner)),
        ]
    );
    assert!(notices
        .iter()
        .all(|m| m.sender == Sender::System && m.body.is_none()));
    assert_eq!(
        history(&*store, &created).await,
        notices,
        "reads find the notices"
    );
    assert_eq!(store.find(tenant, new.id).await.unwrap(), Some(created));
    assert_eq!(
        store.member_role(tenant, new.id, owner).await.unwrap(),
        Some(MemberRole::Owner)
    );
    assert_eq!(
        store.member_role(tenant, new.id, b).await.unwrap(),
        Some(MemberRole::Member)
    );
    let unread = |user| {
        let store = store.clone();
        async move {
            store
                .find_summary(tenant, new.id, Sender::Staff(user))
                .await
                .unwrap()
                .unwrap()
                .unread_count
        }
    };
    assert_eq!(
        (unread(owner).await, unread(b).await),
        (0, 2),
        "one's own notices are read"
    );
}

/// Adding, removing and leaving take the next seqs after the messages;
/// adding a member again changes nothing and posts nothing.
pub(super) async fn membership_changes_post_notices_in_the_seq_stream<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let (owner, b, c) = (staff(), staff(), staff());
    let room = channel(&*store, tenant, "General", Visibility::Public, owner, &[]).await;
    send(&*store, &room, Sender::Staff(owner), "hello").await;

    let added = store
        .change_members(&change(&room, owner, add(&[b, c])))
        .await
        .unwrap();
    assert_eq!(
        added
            .changed
            .iter()
            .map(|m| (m.user, m.role))
            .collect::<Vec<_>>(),
        vec![(b, MemberRole::Member), (c, MemberRole::Member)]
    );
    assert_eq!(added.conversation.last_seq, seq(3));
    let again = store
        .change_members(&change(&room, owner, add(&[b])))
        .await
        .unwrap();
    assert!(again.changed.is_empty() && again.notices.is_empty());
    assert_eq!(again.conversation.last_seq, seq(3));

    let removed = store
        .change_members(&change(&room, owner, MemberOp::Remove { user: b }))
        .await
        .unwrap();
    let left = store
        .change_members(&change(&room, c, MemberOp::Remove { user: c }))
        .await
        .unwrap();
    send(&*store, &room, Sender::Staff(owner), "still here").await;
    let stream: Vec<_> = history(&*store, &room)
        .await
        .into_iter()
        .map(|m| (m.seq, m.system))
        .collect();
    assert_eq!(
        stream,
        vec![
            (seq(1), None),
            (seq(2), notice(NoticeKind::MemberAdded, Some(b), owner)),
            (seq(3), notice(NoticeKind::MemberAdded, Some(c), owner)),
            (seq(4), notice(NoticeKind::MemberRemoved, Some(b), owner)),
            (seq(5), notice(NoticeKind::MemberLeft, Some(c), c)),
            (seq(6), None),
        ]
    );
    assert_eq!(removed.notices.len() + left.notices.len(), 2);
    assert_eq!(members_of(&*store, &room).await, HashSet::from([owner]));
}

/// The last owner stays while others do, whether leaving, removed or made
/// a plain member; with a second owner, or alone, they may go.
pub(super) async fn the_last_owner_cannot_leave_while_members_stay<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let (owner, b) = (staff(), staff());
    let room = channel(
        &*store,
        tenant,
        "Pharmacists",
        Visibility::Private,
        owner,
        &[b],
    )
    .await;
    let leave = MemberOp::Remove { user: owner };
    let demote = MemberOp::SetRole {
        user: owner,
        role: MemberRole::Member,
    };
    for op in [leave.clone(), demote] {
        let refused = store.change_members(&change(&room, owner, op)).await;
        assert!(
            matches!(refused, Err(MembershipError::LastOwner(_))),
            "{refused:?}"
        );
    }
    assert_eq!(
        store.find(tenant, room.id).await.unwrap().unwrap().last_seq,
        seq(1)
    );

    let promoted = store
        .change_members(&change(
            &room,
            owner,
            MemberOp::SetRole {
                user: b,
                role: MemberRole::Owner,
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        promoted
            .changed
            .iter()
            .map(|m| (m.user, m.role))
            .collect::<Vec<_>>(),
        vec![(b, MemberRole::Owner)]
    );
    assert!(promoted.notices.is_empty(), "a role change posts nothing");
    store
        .change_members(&change(&room, owner, leave))
        .await
        .expect("another owner stays");
    store
        .change_members(&change(&room, b, MemberOp::Remove { user: b }))
        .await
        .expect("the last one out may go");
    assert!(members_of(&*store, &room).await.is_empty());
}

/// Twenty people joining at once, one of them five times over: each is
/// added once, and the notices take seq 1 to 20 without a gap.
pub(super) async fn concurrent_joins_add_each_member_once_with_gap_free_notices<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let owner = staff();
    let room = channel(&*store, tenant, "Open", Visibility::Public, owner, &[]).await;
    let people: Vec<StaffUserId> = (0..20).map(|_| staff()).collect();
    let mut joiners = people.clone();
    joiners.extend(std::iter::repeat_n(people[0], 4));
    let tasks: Vec<_> = joiners
        .into_iter()
        .map(|user| {
            let (store, join) = (store.clone(), change(&room, user, add(&[user])));
            tokio::spawn(async move { store.change_members(&join).await.expect("join") })
        })
        .collect();
    let mut added = 0;
    for task in tasks {
        added += task.await.expect("task").changed.len();
    }
    assert_eq!(added, 20);
    let stream = history(&*store, &room).await;
    assert_eq!(
        stream.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).map(seq).collect::<Vec<_>>()
    );
    let joined: HashSet<_> = stream.iter().filter_map(|m| m.system?.user).collect();
    assert_eq!(joined, people.iter().copied().collect());
    assert_eq!(members_of(&*store, &room).await.len(), 21);
}

/// A removed member is gone for every read at once; removing or changing
/// a non-member is refused and stores nothing.
pub(super) async fn a_removal_is_immediate_and_only_of_members<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let (owner, b, stranger) = (staff(), staff(), staff());
    let room = channel(&*store, tenant, "Team", Visibility::Private, owner, &[b]).await;
    store
        .change_members(&change(&room, owner, MemberOp::Remove { user: b }))
        .await
        .unwrap();
    assert_eq!(store.member_role(tenant, room.id, b).await.unwrap(), None);
    assert!(!members_of(&*store, &room).await.contains(&b));
    let facts = store.membership_facts(tenant, &[room.id], b).await.unwrap();
    assert_eq!(
        (facts[&room.id].member_count, facts[&room.id].role),
        (1, None)
    );
    for op in [
        MemberOp::Remove { user: stranger },
        MemberOp::SetRole {
            user: stranger,
            role: MemberRole::Owner,
        },
        MemberOp::Remove { user: b },
    ] {
        let refused = store.change_members(&change(&room, owner, op)).await;
        assert!(
            matches!(refused, Err(MembershipError::MemberNotFound)),
            "{refused:?}"
        );
    }
    assert_eq!(
        store.find(tenant, room.id).await.unwrap().unwrap().last_seq,
        seq(2)
    );
}

/// A patch changes only what it names; archiving stamps the time, bringing
/// back clears it; each update posts a `channel_updated` notice.
pub(super) async fn channel_updates_apply_the_patch_and_post_a_notice<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let owner = staff();
    let room = channel(&*store, tenant, "Refills", Visibility::Public, owner, &[]).await;
    let later = t0() + chrono::Duration::minutes(5);
    let patch = ChannelPatch {
        topic: Some(ChannelTopic::parse("repeat prescriptions").unwrap()),
        visibility: Some(Visibility::Private),
        archived: Some(true),
        ..ChannelPatch::default()
    };
    let notice_id = MessageId::new_v7();
    let (updated, posted) = store
        .update_channel(tenant, room.id, &patch, owner, notice_id, later)
        .await
        .unwrap();
    let mut expected = room.clone();
    assert!(patch.apply(&mut expected, later));
    expected.last_seq = seq(1);
    expected.last_activity_at = later;
    assert_eq!(updated, expected);
    assert_eq!(updated.kind.archived_at(), Some(later));
    assert_eq!(
        (posted.id, posted.seq, posted.system),
        (
            notice_id,
            seq(1),
            notice(NoticeKind::ChannelUpdated, None, owner)
        )
    );
    assert_eq!(store.find(tenant, room.id).await.unwrap(), Some(updated));

    let back = ChannelPatch {
        archived: Some(false),
        topic: Some(None),
        ..ChannelPatch::default()
    };
    let (back, _) = store
        .update_channel(tenant, room.id, &back, owner, MessageId::new_v7(), later)
        .await
        .unwrap();
    assert_eq!(back.kind.archived_at(), None);
    assert_eq!(back.channel.unwrap().topic, None);
    let missing = store
        .update_channel(
            TenantId::new_v4(),
            room.id,
            &patch,
            owner,
            MessageId::new_v7(),
            later,
        )
        .await;
    assert!(
        matches!(missing, Err(MembershipError::ConversationNotFound)),
        "{missing:?}"
    );
}

/// Lists: the public channels and the viewer's private ones, by name
/// ignoring case, filtered by prefix and by joined, every one once over
/// the pages, with counts and the viewer's role.
pub(super) async fn channel_lists_show_public_and_own_private_channels_by_name<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let (me, other) = (staff(), staff());
    channel(&*store, tenant, "beta", Visibility::Public, other, &[]).await;
    channel(&*store, tenant, "Alpha", Visibility::Public, other, &[me]).await;
    channel(&*store, tenant, "alps", Visibility::Private, me, &[other]).await;
    channel(&*store, tenant, "Hidden", Visibility::Private, other, &[]).await;
    channel(
        &*store,
        TenantId::new_v4(),
        "Also",
        Visibility::Public,
        me,
        &[],
    )
    .await;
    store
        .get_or_create_direct(&direct(tenant, me, &[other]))
        .await
        .unwrap();

    let list = |joined, prefix: Option<&str>, limit, cursor| ChannelListQuery {
        tenant,
        viewer: me,
        joined,
        prefix: prefix.map(str::to_owned),
        limit,
        cursor,
    };
    let names = |page: &crate::ports::ChannelPage| {
        page.channels
            .iter()
            .map(|c| {
                let name = c
                    .conversation
                    .channel
                    .as_ref()
                    .unwrap()
                    .name
                    .as_str()
                    .to_owned();
                (name, c.member_count, c.role)
            })
            .collect::<Vec<_>>()
    };
    let mut walked = Vec::new();
    let mut cursor: Option<ListCursor> = None;
    loop {
        let page = store
            .list_channels(&list(None, None, 2, cursor))
            .await
            .unwrap();
        walked.extend(names(&page));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        walked,
        vec![
            ("Alpha".to_owned(), 2, Some(MemberRole::Member)),
            ("alps".to_owned(), 2, Some(MemberRole::Owner)),
            ("beta".to_owned(), 1, None),
        ]
    );
    let al = store
        .list_channels(&list(None, Some("al"), 10, None))
        .await
        .unwrap();
    assert_eq!(names(&al).len(), 2);
    let joined = store
        .list_channels(&list(Some(true), None, 10, None))
        .await
        .unwrap();
    assert_eq!(names(&joined).len(), 2);
    let others = store
        .list_channels(&list(Some(false), None, 10, None))
        .await
        .unwrap();
    assert_eq!(names(&others), vec![("beta".to_owned(), 1, None)]);
    let odd = store
        .list_channels(&list(None, Some("%_"), 10, None))
        .await
        .unwrap();
    assert!(odd.channels.is_empty(), "a prefix is text, not a pattern");
}

/// Member pages, earliest joined first, walk every member once.
pub(super) async fn member_pages_walk_every_member_once<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let owner = staff();
    let others: Vec<StaffUserId> = (0..4).map(|_| staff()).collect();
    let room = channel(&*store, tenant, "Big", Visibility::Public, owner, &others).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_members(tenant, room.id, 2, cursor)
            .await
            .unwrap();
        assert!(page.members.len() <= 2);
        seen.extend(page.members.iter().map(|m| (m.user, m.role)));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen.iter().map(|(u, _)| *u).collect::<HashSet<_>>().len(),
        5
    );
    assert!(seen.contains(&(owner, MemberRole::Owner)));
    let foreign = store
        .list_members(TenantId::new_v4(), room.id, 10, None)
        .await
        .unwrap();
    assert!(foreign.members.is_empty());
}

/// Lists and unread totals: a staff reader takes part in the customer
/// conversations of their scope, their direct conversations and their
/// joined channels, never a public channel they did not join; customers
/// never see these kinds; `kind` filters.
pub(super) async fn conversation_lists_and_unread_totals_include_joined_kinds_only<S: Store>(
    store: Arc<S>,
) {
    let tenant = TenantId::new_v4();
    let (me, other) = (staff(), staff());
    let inbox = open_inbox(&*store, tenant).await;
    let (dm, _) = store
        .get_or_create_direct(&direct(tenant, me, &[other]))
        .await
        .unwrap();
    let joined = channel(&*store, tenant, "Joined", Visibility::Public, other, &[me]).await;
    let not_joined = channel(
        &*store,
        tenant,
        "Not joined",
        Visibility::Public,
        other,
        &[],
    )
    .await;
    let theirs = store
        .get_or_create_direct(&direct(tenant, other, &[staff()]))
        .await
        .unwrap()
        .0;
    for conversation in [&inbox, &dm, &joined, &not_joined, &theirs] {
        send(&*store, conversation, Sender::Staff(other), "news").await;
    }
    let scope = ConversationScope::InboxAndClinician {
        tenant,
        clinician: me,
    };
    let listed = |kind| {
        let store = store.clone();
        async move {
            let page = store
                .list_conversations(&ConversationListQuery {
                    scope,
                    kind,
                    reader: Sender::Staff(me),
                    status: None,
                    limit: 50,
                    cursor: None,
                })
                .await
                .unwrap();
            page.items
                .iter()
                .map(|s| (s.conversation.id, s.unread_count))
                .collect::<HashSet<_>>()
        }
    };
    // The joined channel has its member_added notice too.
    assert_eq!(
        listed(None).await,
        HashSet::from([(inbox.id, 1), (dm.id, 1), (joined.id, 2)])
    );
    assert_eq!(
        listed(Some(KindName::Direct)).await,
        HashSet::from([(dm.id, 1)])
    );
    assert_eq!(
        listed(Some(KindName::Channel)).await,
        HashSet::from([(joined.id, 2)])
    );
    assert_eq!(
        listed(Some(KindName::Customer)).await,
        HashSet::from([(inbox.id, 1)])
    );
    assert_eq!(
        store.unread_total(scope, Sender::Staff(me)).await.unwrap(),
        4
    );
    let admin_scope = ConversationScope::All { tenant };
    assert_eq!(
        store
            .unread_total(admin_scope, Sender::Staff(staff()))
            .await
            .unwrap(),
        1,
        "an admin takes part in every customer conversation, and in no staff one unless a member"
    );

    let customer = inbox.kind.customer_id().unwrap();
    let customer_scope = ConversationScope::Customer {
        tenant,
        customer_id: customer,
    };
    let theirs = store
        .list_conversations(&ConversationListQuery {
            scope: customer_scope,
            kind: None,
            reader: Sender::Customer(customer),
            status: None,
            limit: 50,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(
        theirs
            .items
            .iter()
            .map(|s| s.conversation.id)
            .collect::<Vec<_>>(),
        vec![inbox.id]
    );
    let summary = store
        .find_summary(tenant, joined.id, Sender::Staff(me))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (summary.conversation, summary.unread_count),
        (store.find(tenant, joined.id).await.unwrap().unwrap(), 2)
    );
}

/// Facts for a page: counts and the viewer's role for channels, the
/// members of direct conversations, nothing for customer conversations.
pub(super) async fn membership_facts_cover_a_page_in_one_call<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let (me, b, c) = (staff(), staff(), staff());
    let inbox = open_inbox(&*store, tenant).await;
    let (dm, _) = store
        .get_or_create_direct(&direct(tenant, me, &[c, b]))
        .await
        .unwrap();
    let room = channel(&*store, tenant, "Room", Visibility::Public, b, &[c]).await;
    let facts = store
        .membership_facts(tenant, &[inbox.id, dm.id, room.id], me)
        .await
        .unwrap();
    assert!(!facts.contains_key(&inbox.id));
    let mut people = vec![me, b, c];
    people.sort();
    let dm_facts = &facts[&dm.id];
    assert_eq!(
        (
            dm_facts.member_count,
            dm_facts.role,
            dm_facts.member_ids.clone()
        ),
        (3, Some(MemberRole::Member), people)
    );
    let room_facts = &facts[&room.id];
    assert_eq!(
        (
            room_facts.member_count,
            room_facts.role,
            room_facts.member_ids.is_empty()
        ),
        (2, None, true)
    );
    let foreign = store
        .membership_facts(TenantId::new_v4(), &[dm.id], me)
        .await
        .unwrap();
    assert!(foreign.is_empty());
}

/// Nothing of one tenant's memberships is reached from another, and a
/// customer conversation has no members to change.
pub(super) async fn no_membership_row_crosses_tenants<S: Store>(store: Arc<S>) {
    let tenant = TenantId::new_v4();
    let other_tenant = TenantId::new_v4();
    let owner = staff();
    let room = channel(&*store, tenant, "Mine", Visibility::Public, owner, &[]).await;
    let (dm, _) = store
        .get_or_create_direct(&direct(tenant, owner, &[staff()]))
        .await
        .unwrap();
    assert_eq!(
        store
            .member_role(other_tenant, room.id, owner)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .member_ids(other_tenant, dm.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.find(other_tenant, room.id).await.unwrap(), None);
    let mut foreign = change(&room, owner, add(&[staff()]));
    foreign.tenant = other_tenant;
    let refused = store.change_members(&foreign).await;
    assert!(
        matches!(refused, Err(MembershipError::ConversationNotFound)),
        "{refused:?}"
    );
    let foreign_list = store
        .list_channels(&ChannelListQuery {
            tenant: other_tenant,
            viewer: owner,
            joined: None,
            prefix: None,
            limit: 10,
            cursor: None,
        })
        .await
        .unwrap();
    assert!(foreign_list.channels.is_empty());

    let inbox = open_inbox(&*store, tenant).await;
    let not_a_channel = store
        .change_members(&change(&inbox, owner, add(&[staff()])))
        .await;
    assert!(
        matches!(not_a_channel, Err(MembershipError::ConversationNotFound)),
        "{not_a_channel:?}"
    );
    let direct_members = store
        .change_members(&change(&dm, owner, add(&[staff()])))
        .await;
    assert!(
        matches!(direct_members, Err(MembershipError::ConversationNotFound)),
        "a direct conversation's people never change: {direct_members:?}"
    );
    assert_eq!(
        store.find(tenant, room.id).await.unwrap().unwrap().last_seq,
        chat_domain::Seq::ZERO
    );
}
