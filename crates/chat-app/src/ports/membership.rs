//! [`MembershipRepository`]: the members of direct conversations and
//! channels, the channels' settings, and the system notices that membership
//! changes post into the conversation's own `seq` stream.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chat_domain::{
    ChannelPatch, Conversation, ConversationId, Member, MemberRole, Message, MessageId, NewChannel,
    NewDirect, StaffUserId, TenantId,
};
use chrono::{DateTime, Utc};

use super::{CursorError, RepoError};

/// What a membership change does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOp {
    /// Adds `users` with `role` (those already members stay as they are);
    /// joining is adding oneself.
    Add {
        /// Who to add, each once.
        users: Vec<StaffUserId>,
        /// Their role.
        role: MemberRole,
    },
    /// Removes `user`; when `user` is the one doing it, they leave.
    Remove {
        /// Who goes.
        user: StaffUserId,
    },
    /// Gives `user`, a member, the role `role`.
    SetRole {
        /// The member.
        user: StaffUserId,
        /// Their new role.
        role: MemberRole,
    },
}

/// A membership change of one conversation (a channel), done by `by` at
/// `at`. Each member added or removed gets a system notice, stored with the
/// next id of `notice_ids` (at least one per user the change names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    /// The tenant.
    pub tenant: TenantId,
    /// The channel.
    pub conversation_id: ConversationId,
    /// Who makes the change.
    pub by: StaffUserId,
    /// What it does.
    pub op: MemberOp,
    /// When.
    pub at: DateTime<Utc>,
    /// Ids for the notices, in order.
    pub notice_ids: Vec<MessageId>,
}

/// What a membership change did, once committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChangeOutcome {
    /// The conversation after the change (its `last_seq` counts the
    /// notices).
    pub conversation: Conversation,
    /// The members added or removed (only those whose membership changed),
    /// or the member given a role (as they are now, even when the role was
    /// theirs already).
    pub changed: Vec<Member>,
    /// The notices posted, in `seq` order.
    pub notices: Vec<Message>,
}

/// Why a membership or channel change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// No such conversation of the tenant with members.
    #[error("conversation not found")]
    ConversationNotFound,
    /// The user named is not a member.
    #[error("not a member")]
    MemberNotFound,
    /// Another channel of the tenant has this name (ignoring case).
    #[error("the channel name is taken")]
    NameTaken,
    /// The last owner would go while others stay
    /// ([`chat_domain::check_owner_departure`]).
    #[error(transparent)]
    LastOwner(#[from] chat_domain::LastOwner),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for MembershipError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unexpected(err) => Self::Unexpected(err),
        }
    }
}

/// A position in a list of members (by join time, then user id) or of
/// channels (by folded name, then id): the last item of the page before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// The sort key of the last item: join time in microseconds, or the
    /// folded name.
    pub key: String,
    /// The id of the last item (user or channel).
    pub id: uuid::Uuid,
}

impl ListCursor {
    /// The cursor of a member page that ends with `member`.
    pub fn after_member(member: &Member) -> Self {
        Self {
            key: member.joined_at.timestamp_micros().to_string(),
            id: *member.user.as_uuid(),
        }
    }

    /// The join time of a member-page cursor; `None` when the key is not
    /// one (a cursor of another list, or made up).
    pub fn joined_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.key.parse().ok()?)
    }
}

impl fmt::Display for ListCursor {
    // `<id>_<key in hex>`: opaque, URL-safe, whatever the key holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_", self.id.simple())?;
        self.key.bytes().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for ListCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, hex) = s.split_once('_').ok_or(CursorError)?;
        let id = uuid::Uuid::try_parse(id).map_err(|_| CursorError)?;
        if hex.len() % 2 != 0 || !hex.is_ascii() {
            return Err(CursorError);
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| CursorError))
            .collect::<Result<Vec<u8>, _>>()?;
        let key = String::from_utf8(bytes).map_err(|_| CursorError)?;
        Ok(Self { key, id })
    }
}

/// A page of members, by join time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberPage {
    /// The members.
    pub members: Vec<Member>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<ListCursor>,
}

/// Which channels to list for a staff member of `tenant`: the public ones
/// and the private ones they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelListQuery {
    /// The tenant.
    pub tenant: TenantId,
    /// The staff member asking.
    pub viewer: StaffUserId,
    /// `Some(true)`: only those they belong to; `Some(false)`: only those
    /// they do not.
    pub joined: Option<bool>,
    /// A prefix of the name, compared ignoring case.
    pub prefix: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Where to start.
    pub cursor: Option<ListCursor>,
}

/// One channel in a list, with what the viewer needs to know of its
/// membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelListing {
    /// The channel.
    pub conversation: Conversation,
    /// How many members it has.
    pub member_count: u64,
    /// The viewer's role in it, if they are a member.
    pub role: Option<MemberRole>,
}

/// A page of channels, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelPage {
    /// The channels.
    pub channels: Vec<ChannelListing>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<ListCursor>,
}

/// Membership facts of one conversation for one viewer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MembershipFacts {
    /// How many members it has.
    pub member_count: u64,
    /// The viewer's role, if they are a member.
    pub role: Option<MemberRole>,
    /// Every member, in id order, for a direct conversation (a fixed set of
    /// at most 8); empty for channels.
    pub member_ids: Vec<StaffUserId>,
}

/// Members and channel settings of a store.
///
/// Every method is scoped to `tenant`: a conversation of another tenant is
/// not found. Notices are messages from [`chat_domain::Sender::System`]
/// carrying a [`chat_domain::SystemNotice`], appended with the next `seq`s of
/// the conversation in the same transaction as the change, so a change and
/// its notices are stored together or not at all. Like a sender's own
/// message, a notice is read by its author (`by`) while they are a member:
/// their read marker moves past it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MembershipRepository: Send + Sync {
    /// The role of `user` in conversation `id`, if they are a member.
    ///
    /// # Errors
    /// [`RepoError::Unexpected`] on storage failure.
    async fn member_role(
        &self,
        tenant: TenantId,
        id: ConversationId,
        user: StaffUserId,
    ) -> Result<Option<MemberRole>, RepoError>;

    /// Every member of conversation `id`, in no particular order (empty
    /// for a missing one).
    ///
    /// # Errors
    /// [`RepoError::Unexpected`] on storage failure.
    async fn member_ids(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<StaffUserId>, RepoError>;

    /// For each of conversations `ids` that has members: member count, the
    /// role of `viewer` and, for a direct conversation, its members (one
    /// round of queries for a whole page, not one per conversation).
    ///
    /// # Errors
    /// [`RepoError::Unexpected`] on storage failure.
    async fn membership_facts(
        &self,
        tenant: TenantId,
        ids: &[ConversationId],
        viewer: StaffUserId,
    ) -> Result<HashMap<ConversationId, MembershipFacts>, RepoError>;

    /// Gets the direct conversation of exactly `new.members`, creating it
    /// (with every one of them a member) if needed: one per set and tenant,
    /// even under concurrent calls. `true` when it was created.
    ///
    /// # Errors
    /// [`RepoError::Unexpected`] on storage failure.
    async fn get_or_create_direct(
        &self,
        new: &NewDirect,
    ) -> Result<(Conversation, bool), RepoError>;

    /// Creates a channel with its owner and members, posting a
    /// `member_added` notice for each member but the owner (ids from
    /// `notice_ids`).
    ///
    /// # Errors
    /// [`MembershipError::NameTaken`] when another channel of the tenant
    /// has the name ignoring case; [`MembershipError::Unexpected`].
    async fn create_channel(
        &self,
        new: &NewChannel,
        notice_ids: &[MessageId],
    ) -> Result<(Conversation, Vec<Message>), MembershipError>;

    /// Applies `patch` to channel `id`, posting a `channel_updated` notice
    /// by `by` with id `notice_id`.
    ///
    /// # Errors
    /// [`MembershipError::ConversationNotFound`] for no such channel,
    /// [`MembershipError::NameTaken`], [`MembershipError::Unexpected`].
    async fn update_channel(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ChannelPatch,
        by: StaffUserId,
        notice_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<(Conversation, Message), MembershipError>;

    /// Applies a membership change to a channel, keeping at least one owner
    /// while others stay (checked with [`chat_domain::check_owner_departure`]
    /// under the change's own transaction, so two owners leaving at once
    /// cannot both go).
    ///
    /// # Errors
    /// [`MembershipError::ConversationNotFound`] for no such channel;
    /// [`MembershipError::MemberNotFound`] removing or changing a
    /// non-member; [`MembershipError::LastOwner`];
    /// [`MembershipError::Unexpected`].
    async fn change_members(
        &self,
        change: &MemberChange,
    ) -> Result<MemberChangeOutcome, MembershipError>;

    /// A page of members of conversation `id`, earliest joined first,
    /// after `cursor` ([`ListCursor::after_member`], which the next page's
    /// cursor is too; one whose [`ListCursor::joined_at`] is `None` gives
    /// an empty page, so callers check it first).
    ///
    /// # Errors
    /// [`RepoError::Unexpected`] on storage failure.
    async fn list_members(
        &self,
        tenant: TenantId,
        id: ConversationId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<MemberPage, RepoError>;

    /// A page of channels, by name ignoring case.
    ///
    /// # Errors
    /// [`RepoError::Unexpected`] on storage failure.
    async fn list_channels(&self, query: &ChannelListQuery) -> Result<ChannelPage, RepoError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursors_round_trip_and_refuse_junk() {
        let cursor = ListCursor {
            key: "night shift\nä".to_owned(),
            id: uuid::Uuid::now_v7(),
        };
        assert_eq!(cursor.to_string().parse(), Ok(cursor.clone()));
        assert_eq!(cursor.joined_at(), None, "a channel cursor");
        let member = Member {
            user: StaffUserId::new_v4(),
            role: MemberRole::Member,
            joined_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        };
        let after = ListCursor::after_member(&member);
        assert_eq!(after.joined_at(), Some(member.joined_at));
        assert_eq!(after.id, *member.user.as_uuid());
        let id = uuid::Uuid::now_v7().simple().to_string();
        for raw in [
            String::new(),
            "abc".to_owned(),
            format!("{id}_6"),
            format!("{id}_zz"),
            format!("{id}_ff"),
            "nope_61".to_owned(),
        ] {
            assert_eq!(raw.parse::<ListCursor>(), Err(CursorError), "{raw:?}");
        }
    }
}
