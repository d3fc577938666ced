//! Staff conversations with members: `direct` conversations (a fixed set of
//! 2 to [`DirectMembers::MAX`] staff of one tenant) and `channel`s (named,
//! public or private, with owners who manage members), and the notices a
//! membership change posts into the conversation.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::conversation::{Conversation, ConversationKind, ConversationStatus, Tags};
use crate::ids::{ConversationId, StaffUserId, TenantId};
use crate::message::Seq;

/// What a member may do beyond reading and sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberRole {
    /// Manages the channel: members, roles, name, topic, archiving.
    Owner,
    /// Reads, sends, leaves.
    Member,
}

impl MemberRole {
    /// The wire name: `owner` or `member`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is neither `owner` nor `member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("role must be owner or member")]
pub struct MemberRoleError;

impl FromStr for MemberRole {
    type Err = MemberRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Self::Owner),
            "member" => Ok(Self::Member),
            _ => Err(MemberRoleError),
        }
    }
}

/// Who may find and read a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Any staff of the tenant may read its history and join.
    Public,
    /// Its members (and the tenant's admins) only.
    Private,
}

impl Visibility {
    /// The wire name: `public` or `private`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// The text is neither `public` nor `private`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("visibility must be public or private")]
pub struct VisibilityError;

impl FromStr for Visibility {
    type Err = VisibilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            _ => Err(VisibilityError),
        }
    }
}

/// Why a channel name or topic was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelTextError {
    /// Nothing left after trimming (names only: an empty topic is none).
    #[error("must not be empty")]
    Empty,
    /// More characters than allowed.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The most characters allowed.
        max: usize,
    },
    /// Contains a control character (a topic may hold line breaks).
    #[error("must not contain control characters")]
    ForbiddenCharacter,
}

fn checked_text(raw: &str, max: usize, allow_newlines: bool) -> Result<String, ChannelTextError> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > max {
        return Err(ChannelTextError::TooLong { max });
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && c == '\n'))
    {
        return Err(ChannelTextError::ForbiddenCharacter);
    }
    Ok(trimmed.to_owned())
}

/// A channel's name: trimmed, 1 to [`ChannelName::MAX_CHARS`] characters,
/// no control characters. Unique per tenant ignoring case
/// ([`ChannelName::folded`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelName(String);

impl ChannelName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 80;

    /// Validates a name.
    ///
    /// # Errors
    /// [`ChannelTextError`] naming the broken rule.
    pub fn parse(raw: &str) -> Result<Self, ChannelTextError> {
        let name = checked_text(raw, Self::MAX_CHARS, false)?;
        if name.is_empty() {
            return Err(ChannelTextError::Empty);
        }
        Ok(Self(name))
    }

    /// The name as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as compared for uniqueness: lower case (Unicode).
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A channel's topic: trimmed, at most [`ChannelTopic::MAX_CHARS`]
/// characters, no control characters but line breaks; empty means none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelTopic(String);

impl ChannelTopic {
    /// The longest topic, in characters.
    pub const MAX_CHARS: usize = 250;

    /// Validates a topic; `None` when nothing is left after trimming.
    ///
    /// # Errors
    /// [`ChannelTextError`] naming the broken rule.
    pub fn parse(raw: &str) -> Result<Option<Self>, ChannelTextError> {
        let topic = checked_text(raw, Self::MAX_CHARS, true)?;
        Ok((!topic.is_empty()).then_some(Self(topic)))
    }

    /// The topic's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a channel shows besides its access facts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelProfile {
    /// Its name.
    pub name: ChannelName,
    /// Its topic, if set.
    pub topic: Option<ChannelTopic>,
}

/// The people of a direct conversation: the caller and 1 to
/// [`DirectMembers::MAX`]` - 1` other staff of the tenant, each once, in id
/// order. The set is the conversation's identity ([`DirectMembers::key`]):
/// one conversation per set and tenant, and it never changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirectMembers(Vec<StaffUserId>);

/// Why a set of direct members was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DirectMembersError {
    /// Nobody but the caller.
    #[error("name at least one other staff member")]
    Alone,
    /// More people than [`DirectMembers::MAX`].
    #[error("a direct conversation has at most {max} people", max = DirectMembers::MAX)]
    TooMany,
}

impl DirectMembers {
    /// The most people in one direct conversation, the caller included.
    pub const MAX: usize = 8;

    /// The set of `caller` and `others` (repeats and the caller among them
    /// are dropped).
    ///
    /// # Errors
    /// [`DirectMembersError`] for nobody else or too many people.
    pub fn new(caller: StaffUserId, others: &[StaffUserId]) -> Result<Self, DirectMembersError> {
        let mut set: BTreeSet<StaffUserId> = others.iter().copied().collect();
        set.insert(caller);
        match set.len() {
            0 | 1 => Err(DirectMembersError::Alone),
            n if n > Self::MAX => Err(DirectMembersError::TooMany),
            _ => Ok(Self(set.into_iter().collect())),
        }
    }

    /// The members, in id order.
    pub fn ids(&self) -> &[StaffUserId] {
        &self.0
    }

    /// The set's key, unique per tenant: the ids in order, joined by `.`.
    pub fn key(&self) -> String {
        let mut key = String::with_capacity(self.0.len() * 33);
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                key.push('.');
            }
            key.push_str(&id.as_uuid().simple().to_string());
        }
        key
    }
}

/// A direct conversation to get or create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDirect {
    /// The id to use if it is created.
    pub id: ConversationId,
    /// The tenant.
    pub tenant: TenantId,
    /// Its people.
    pub members: DirectMembers,
    /// Creation time.
    pub now: DateTime<Utc>,
}

impl NewDirect {
    /// The conversation as it would be stored.
    pub fn prospective(&self) -> Conversation {
        staff_conversation(
            self.id,
            self.tenant,
            ConversationKind::Direct,
            None,
            self.now,
        )
    }
}

/// A channel to create; its creator becomes its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    /// Its id.
    pub id: ConversationId,
    /// The tenant.
    pub tenant: TenantId,
    /// Name and topic.
    pub profile: ChannelProfile,
    /// Public or private.
    pub visibility: Visibility,
    /// The creator, its first owner.
    pub owner: StaffUserId,
    /// Further members (the owner left out), each once.
    pub members: Vec<StaffUserId>,
    /// Creation time.
    pub now: DateTime<Utc>,
}

impl NewChannel {
    /// The channel as it would be stored, before its members' notices.
    pub fn prospective(&self) -> Conversation {
        staff_conversation(
            self.id,
            self.tenant,
            ConversationKind::Channel {
                visibility: self.visibility,
                archived_at: None,
            },
            Some(self.profile.clone()),
            self.now,
        )
    }
}

fn staff_conversation(
    id: ConversationId,
    tenant: TenantId,
    kind: ConversationKind,
    channel: Option<ChannelProfile>,
    now: DateTime<Utc>,
) -> Conversation {
    Conversation {
        id,
        tenant,
        kind,
        status: ConversationStatus::Open,
        assignee: None,
        tags: Tags::default(),
        channel,
        last_seq: Seq::ZERO,
        created_at: now,
        updated_at: now,
        last_activity_at: now,
    }
}

/// A change to a channel's settings; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPatch {
    /// A new name.
    pub name: Option<ChannelName>,
    /// A new topic (`Some(None)` clears it).
    pub topic: Option<Option<ChannelTopic>>,
    /// A new visibility.
    pub visibility: Option<Visibility>,
    /// Archive (`true`) or bring back (`false`).
    pub archived: Option<bool>,
}

impl ChannelPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.topic.is_none()
            && self.visibility.is_none()
            && self.archived.is_none()
    }

    /// Whether it only archives or brings back (allowed on an archived
    /// channel, where every other change waits until it is brought back).
    pub fn only_archiving(&self) -> bool {
        self.archived.is_some()
            && self.name.is_none()
            && self.topic.is_none()
            && self.visibility.is_none()
    }

    /// Applies the patch to `conversation` (a channel) at `now`; `false`
    /// when it is not a channel.
    pub fn apply(&self, conversation: &mut Conversation, now: DateTime<Utc>) -> bool {
        let (
            ConversationKind::Channel {
                visibility,
                archived_at,
            },
            Some(profile),
        ) = (&mut conversation.kind, &mut conversation.channel)
        else {
            return false;
        };
        if let Some(name) = &self.name {
            profile.name = name.clone();
        }
        if let Some(topic) = &self.topic {
            profile.topic = topic.clone();
        }
        if let Some(new) = self.visibility {
            *visibility = new;
        }
        match self.archived {
            Some(true) if archived_at.is_none() => *archived_at = Some(now),
            Some(false) => *archived_at = None,
            _ => {}
        }
        conversation.updated_at = now;
        true
    }
}

/// One member of a direct conversation or channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Member {
    /// The staff member.
    pub user: StaffUserId,
    /// Their role.
    pub role: MemberRole,
    /// When they joined or were added.
    pub joined_at: DateTime<Utc>,
}

/// What a system notice reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// `user` was added by `by` (or joined: `by` is `user`).
    MemberAdded,
    /// `user` was removed by `by`.
    MemberRemoved,
    /// `user` left.
    MemberLeft,
    /// `by` changed the channel's settings.
    ChannelUpdated,
}

impl NoticeKind {
    /// The wire name: `member_added`, `member_removed`, `member_left` or
    /// `channel_updated`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
            Self::MemberLeft => "member_left",
            Self::ChannelUpdated => "channel_updated",
        }
    }
}

/// The text names no notice kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown system notice kind")]
pub struct NoticeKindError;

impl FromStr for NoticeKind {
    type Err = NoticeKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member_added" => Ok(Self::MemberAdded),
            "member_removed" => Ok(Self::MemberRemoved),
            "member_left" => Ok(Self::MemberLeft),
            "channel_updated" => Ok(Self::ChannelUpdated),
            _ => Err(NoticeKindError),
        }
    }
}

/// The content of a system message: what happened, to whom, by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SystemNotice {
    /// What happened.
    pub kind: NoticeKind,
    /// The member concerned (none for a settings change).
    pub user: Option<StaffUserId>,
    /// Who did it.
    pub by: StaffUserId,
}

/// A membership change refused by the rule of owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the last owner cannot leave while other members stay")]
pub struct LastOwner;

/// Whether a member of role `role` may stop being an owner (leave, be
/// removed, or be made a plain member) in a channel of `owners` owners and
/// `members` members in all (them included): the last owner may not while
/// anybody else stays.
///
/// # Errors
/// [`LastOwner`] when they are the last owner and others stay.
pub const fn check_owner_departure(
    role: MemberRole,
    owners: u64,
    members: u64,
) -> Result<(), LastOwner> {
    match role {
        MemberRole::Owner if owners <= 1 && members > 1 => Err(LastOwner),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_trimmed_bounded_and_fold_case() {
        let cases: [(&str, Result<&str, ChannelTextError>); 6] = [
            ("  Pharmacy Team ", Ok("Pharmacy Team")),
            ("", Err(ChannelTextError::Empty)),
            ("   ", Err(ChannelTextError::Empty)),
            ("a\u{7}b", Err(ChannelTextError::ForbiddenCharacter)),
            ("line\nbreak", Err(ChannelTextError::ForbiddenCharacter)),
            ("ü", Ok("ü")),
        ];
        for (raw, want) in cases {
            assert_eq!(
                ChannelName::parse(raw).map(|n| n.as_str().to_owned()),
                want.map(str::to_owned),
                "{raw:?}"
            );
        }
        assert!(ChannelName::parse(&"é".repeat(80)).is_ok());
        assert_eq!(
            ChannelName::parse(&"é".repeat(81)),
            Err(ChannelTextError::TooLong { max: 80 })
        );
        assert_eq!(
            ChannelName::parse("Night Shift").unwrap().folded(),
            ChannelName::parse("NIGHT shift").unwrap().folded()
        );
    }

    #[test]
    fn topics_may_be_empty_or_span_lines() {
        assert_eq!(ChannelTopic::parse("  "), Ok(None));
        assert_eq!(
            ChannelTopic::parse("a\nb").unwrap().unwrap().as_str(),
            "a\nb"
        );
        assert_eq!(
            ChannelTopic::parse("a\tb"),
            Err(ChannelTextError::ForbiddenCharacter)
        );
        assert_eq!(
            ChannelTopic::parse(&"x".repeat(251)),
            Err(ChannelTextError::TooLong { max: 250 })
        );
    }

    #[test]
    fn a_direct_set_is_ordered_unique_and_bounded() {
        let me = StaffUserId::new_v4();
        let others: Vec<StaffUserId> = (0..8).map(|_| StaffUserId::new_v4()).collect();
        let cases: [(&[StaffUserId], Result<usize, DirectMembersError>); 6] = [
            (&[], Err(DirectMembersError::Alone)),
            (&[me], Err(DirectMembersError::Alone)),
            (&others[..1], Ok(2)),
            (&[others[0], others[0], me], Ok(2)),
            (&others[..7], Ok(8)),
            (&others[..8], Err(DirectMembersError::TooMany)),
        ];
        for (given, want) in cases {
            assert_eq!(
                DirectMembers::new(me, given).map(|m| m.ids().len()),
                want,
                "{} given",
                given.len()
            );
        }
        let a = DirectMembers::new(me, &[others[1], others[0]]).unwrap();
        let b = DirectMembers::new(others[0], &[me, others[1]]).unwrap();
        assert_eq!(a.key(), b.key(), "one key per set, whoever asks");
        assert!(a.ids().windows(2).all(|w| w[0] < w[1]));
        assert_ne!(a.key(), DirectMembers::new(me, &others[..1]).unwrap().key());
    }

    #[test]
    fn the_last_owner_stays_while_others_do() {
        use MemberRole::{Member, Owner};
        let cases = [
            (Owner, 1, 1, Ok(())),
            (Owner, 1, 2, Err(LastOwner)),
            (Owner, 2, 5, Ok(())),
            (Member, 1, 5, Ok(())),
        ];
        for (role, owners, members, want) in cases {
            assert_eq!(
                check_owner_departure(role, owners, members),
                want,
                "{role} of {owners} owners, {members} members"
            );
        }
    }

    #[test]
    fn a_patch_applies_to_channels_only() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let new = NewChannel {
            id: ConversationId::new_v7(),
            tenant: TenantId::new_v4(),
            profile: ChannelProfile {
                name: ChannelName::parse("rx").unwrap(),
                topic: None,
            },
            visibility: Visibility::Public,
            owner: StaffUserId::new_v4(),
            members: vec![],
            now,
        };
        let mut channel = new.prospective();
        let patch = ChannelPatch {
            name: Some(ChannelName::parse("Rx desk").unwrap()),
            topic: Some(ChannelTopic::parse("refills").unwrap()),
            visibility: Some(Visibility::Private),
            archived: Some(true),
        };
        assert!(patch.apply(&mut channel, now));
        assert_eq!(
            channel.kind,
            ConversationKind::Channel {
                visibility: Visibility::Private,
                archived_at: Some(now)
            }
        );
        assert_eq!(channel.channel.as_ref().unwrap().name.as_str(), "Rx desk");
        assert!(ChannelPatch {
            archived: Some(false),
            ..ChannelPatch::default()
        }
        .apply(&mut channel, now));
        assert!(channel.kind.archived_at().is_none());

        let mut direct = NewDirect {
            id: ConversationId::new_v7(),
            tenant: new.tenant,
            members: DirectMembers::new(new.owner, &[StaffUserId::new_v4()]).unwrap(),
            now,
        }
        .prospective();
        assert!(!patch.apply(&mut direct, now));
    }
}
