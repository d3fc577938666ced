//! Staff conversations with members: getting or creating a direct
//! conversation, creating, changing, archiving and listing channels,
//! joining, leaving, adding and removing members, changing roles, listing
//! members.
//!
//! Every membership change posts its system notices in the conversation's
//! own `seq` stream (stored with the change, in its transaction) and
//! publishes them as new messages. The notices are what moves the live
//! audience on every node: each node's dispatcher adds or removes the
//! member when the notice passes its ordered feed, at its `seq`, so nothing
//! sent after a removal reaches the removed member and a member added hears
//! everything after their notice.
//!
//! Its share of [`ChatError`]: `NotFound` of [`Resource::Conversation`] or
//! [`Resource::Member`], `Forbidden`, `Invalid` about [`Field::UserIds`],
//! [`Field::Patch`] or [`Field::Name`], `Conflict` ([`Conflict::Archived`],
//! [`Conflict::NameTaken`], [`Conflict::LastOwner`]) and `Unexpected`.

use std::collections::HashSet;

use chat_domain::{
    Action, ChannelName, ChannelPatch, ChannelProfile, ChannelTopic, Conversation, ConversationId,
    DirectMembers, MemberRole, Message, NewChannel, NewDirect, Principal, StaffUserId, Visibility,
};

use crate::error::{ChatError, Field, Reason, Resource};
use crate::page::PageLimit;
use crate::ports::{
    ChannelListQuery, ChannelPage, ChatEvent, ConversationSummary, ListCursor, MemberChange,
    MemberChangeOutcome, MemberOp, MemberPage, Route,
};
use crate::service::ChatService;

#[cfg(test)]
mod tests;

/// The most members one request may add (a channel may have any number).
pub const MAX_MEMBERS_PER_REQUEST: usize = 100;

/// A channel to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannelRequest {
    /// Its name, unique per tenant ignoring case.
    pub name: ChannelName,
    /// Public or private.
    pub visibility: Visibility,
    /// Its topic.
    pub topic: Option<ChannelTopic>,
    /// Further members besides the creator (who becomes its owner).
    pub member_ids: Vec<StaffUserId>,
}

/// Which channels to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelListRequest {
    /// `Some(true)`: only joined ones; `Some(false)`: only the others.
    pub joined: Option<bool>,
    /// A name prefix, compared ignoring case.
    pub prefix: Option<String>,
    /// Page size.
    pub limit: PageLimit,
    /// Where to start.
    pub cursor: Option<ListCursor>,
}

/// The staff member acting, or [`ChatError::Forbidden`] for a customer
/// (who never reaches these conversations).
fn staff_user(principal: &Principal) -> Result<StaffUserId, ChatError> {
    match principal {
        Principal::Staff { user_id, .. } => Ok(*user_id),
        Principal::Customer { .. } => Err(ChatError::Forbidden),
    }
}

/// `users` without repeats (first kept) and without `except`, checked for
/// size.
fn distinct_users(
    users: &[StaffUserId],
    except: Option<StaffUserId>,
    min: usize,
) -> Result<Vec<StaffUserId>, ChatError> {
    let mut seen = HashSet::with_capacity(users.len());
    let distinct: Vec<StaffUserId> = users
        .iter()
        .copied()
        .filter(|u| Some(*u) != except && seen.insert(*u))
        .collect();
    if distinct.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(ChatError::invalid(
            Field::UserIds,
            Reason::TooMany {
                max: MAX_MEMBERS_PER_REQUEST,
            },
        ));
    }
    if distinct.len() < min {
        return Err(ChatError::invalid(Field::UserIds, Reason::Empty));
    }
    Ok(distinct)
}

impl ChatService {
    /// Gets the direct conversation of exactly the caller and `others` (1
    /// to 7 other staff of the tenant), creating it if needed; `true` when
    /// created. Staff only.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] about [`Field::UserIds`] for nobody else or
    /// too many; [`ChatError::Forbidden`] for customers or by the host
    /// policy; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn open_direct(
        &self,
        principal: &Principal,
        others: &[StaffUserId],
    ) -> Result<(Conversation, bool), ChatError> {
        let me = staff_user(principal)?;
        let members = DirectMembers::new(me, others)
            .map_err(|err| ChatError::invalid(Field::UserIds, err))?;
        let new = NewDirect {
            id: self.ports.ids.conversation_id(),
            tenant: principal.tenant(),
            members,
            now: self.ports.clock.now(),
        };
        self.may_create(principal, &new.prospective()).await?;
        Ok(self.ports.members.get_or_create_direct(&new).await?)
    }

    /// Creates a channel owned by the caller, with `member_ids` as members
    /// (each gets a `member_added` notice). Staff only.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] about [`Field::UserIds`] for too many members;
    /// [`ChatError::Conflict`] ([`Conflict::NameTaken`]);
    /// [`ChatError::Forbidden`] for customers or by the host policy;
    /// [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn create_channel(
        &self,
        principal: &Principal,
        request: NewChannelRequest,
    ) -> Result<Conversation, ChatError> {
        let owner = staff_user(principal)?;
        let members = distinct_users(&request.member_ids, Some(owner), 0)?;
        let new = NewChannel {
            id: self.ports.ids.conversation_id(),
            tenant: principal.tenant(),
            profile: ChannelProfile {
                name: request.name,
                topic: request.topic,
            },
            visibility: request.visibility,
            owner,
            members,
            now: self.ports.clock.now(),
        };
        self.may_create(principal, &new.prospective()).await?;
        let notice_ids: Vec<_> = new
            .members
            .iter()
            .map(|_| self.ports.ids.message_id())
            .collect();
        let (channel, notices) = self.ports.members.create_channel(&new, &notice_ids).await?;
        self.announce(&channel, notices).await;
        Ok(channel)
    }

    /// Changes a channel's name, topic or visibility, or archives it or
    /// brings it back (owners and admins), posting a `channel_updated`
    /// notice.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] ([`Field::Patch`], [`Reason::Empty`]) for an
    /// empty patch; [`ChatError::NotFound`]; [`ChatError::Forbidden`];
    /// [`ChatError::Conflict`] ([`Conflict::Archived`] for anything but
    /// bringing back an archived channel, [`Conflict::NameTaken`]);
    /// [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn update_channel(
        &self,
        principal: &Principal,
        id: ConversationId,
        patch: ChannelPatch,
    ) -> Result<Conversation, ChatError> {
        let by = staff_user(principal)?;
        let action = if patch.only_archiving() {
            Action::Archive
        } else {
            Action::Rename
        };
        self.authorized(principal, id, action).await?;
        if patch.is_empty() {
            return Err(ChatError::invalid(Field::Patch, Reason::Empty));
        }
        let (channel, notice) = self
            .ports
            .members
            .update_channel(
                principal.tenant(),
                id,
                &patch,
                by,
                self.ports.ids.message_id(),
                self.ports.clock.now(),
            )
            .await?;
        self.publish(ChatEvent::ConversationUpdated {
            conversation: channel.clone(),
        })
        .await;
        self.announce(&channel, vec![notice]).await;
        Ok(channel)
    }

    /// Joins a public channel (a no-op for a member).
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Forbidden`] for a private
    /// channel or a direct conversation; [`ChatError::Conflict`]
    /// ([`Conflict::Archived`]); [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn join_channel(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        let me = staff_user(principal)?;
        let (channel, role) = self.authorized_as(principal, id, Action::Join).await?;
        if role.is_some() {
            return Ok(channel);
        }
        let outcome = self
            .change(
                principal,
                id,
                MemberOp::Add {
                    users: vec![me],
                    role: MemberRole::Member,
                },
            )
            .await?;
        Ok(outcome.conversation)
    }

    /// Leaves a channel. The last owner cannot while others stay.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Forbidden`] for a non-member
    /// or a direct conversation; [`ChatError::Conflict`]
    /// ([`Conflict::LastOwner`], [`Conflict::Archived`]);
    /// [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn leave_channel(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<(), ChatError> {
        let me = staff_user(principal)?;
        self.authorized(principal, id, Action::Leave).await?;
        self.change(principal, id, MemberOp::Remove { user: me })
            .await?;
        Ok(())
    }

    /// Adds `users` to a channel with `role` (owners and admins; any member
    /// of a public channel may add plain members); those already members
    /// stay as they are. Returns the conversation and the members added.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] about [`Field::UserIds`] for none or too
    /// many; [`ChatError::NotFound`]; [`ChatError::Forbidden`];
    /// [`ChatError::Conflict`] ([`Conflict::Archived`]);
    /// [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn add_members(
        &self,
        principal: &Principal,
        id: ConversationId,
        users: &[StaffUserId],
        role: MemberRole,
    ) -> Result<MemberChangeOutcome, ChatError> {
        staff_user(principal)?;
        let users = distinct_users(users, None, 1)?;
        let action = match role {
            MemberRole::Owner => Action::ManageMembers,
            MemberRole::Member => Action::AddMembers,
        };
        self.authorized(principal, id, action).await?;
        self.change(principal, id, MemberOp::Add { users, role })
            .await
    }

    /// Removes `user` from a channel (owners and admins); removing oneself
    /// is leaving.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] ([`Resource::Member`] for a non-member);
    /// [`ChatError::Forbidden`]; [`ChatError::Conflict`]
    /// ([`Conflict::LastOwner`], [`Conflict::Archived`]);
    /// [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn remove_member(
        &self,
        principal: &Principal,
        id: ConversationId,
        user: StaffUserId,
    ) -> Result<(), ChatError> {
        staff_user(principal)?;
        self.authorized(principal, id, Action::ManageMembers)
            .await?;
        self.change(principal, id, MemberOp::Remove { user })
            .await?;
        Ok(())
    }

    /// Gives member `user` the role `role` (owners and admins). The last
    /// owner cannot become a plain member while others stay.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] ([`Resource::Member`] for a non-member);
    /// [`ChatError::Forbidden`]; [`ChatError::Conflict`]
    /// ([`Conflict::LastOwner`], [`Conflict::Archived`]);
    /// [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn set_member_role(
        &self,
        principal: &Principal,
        id: ConversationId,
        user: StaffUserId,
        role: MemberRole,
    ) -> Result<chat_domain::Member, ChatError> {
        staff_user(principal)?;
        self.authorized(principal, id, Action::ManageMembers)
            .await?;
        let outcome = self
            .change(principal, id, MemberOp::SetRole { user, role })
            .await?;
        outcome
            .changed
            .first()
            .copied()
            .ok_or(ChatError::NotFound(Resource::Member))
    }

    /// A page of the members of a direct conversation or channel the
    /// caller may read, earliest joined first.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] for a conversation the caller may not read
    /// or one without members; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn list_members(
        &self,
        principal: &Principal,
        id: ConversationId,
        limit: PageLimit,
        cursor: Option<ListCursor>,
    ) -> Result<MemberPage, ChatError> {
        let conversation = self.authorized(principal, id, Action::Read).await?;
        if !conversation.kind.has_members() {
            return Err(ChatError::NotFound(Resource::Conversation));
        }
        Ok(self
            .ports
            .members
            .list_members(principal.tenant(), id, limit.get(), cursor)
            .await?)
    }

    /// The tenant's public channels and the private ones the caller belongs
    /// to, by name. Channels the host policy hides are left out of the page.
    ///
    /// # Errors
    /// [`ChatError::Forbidden`] for customers; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn list_channels(
        &self,
        principal: &Principal,
        request: ChannelListRequest,
    ) -> Result<ChannelPage, ChatError> {
        let viewer = staff_user(principal)?;
        let query = ChannelListQuery {
            tenant: principal.tenant(),
            viewer,
            joined: request.joined,
            prefix: request
                .prefix
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty()),
            limit: request.limit.get(),
            cursor: request.cursor,
        };
        let mut page = self.ports.members.list_channels(&query).await?;
        page.channels = self
            .readable(principal, page.channels, |listing| &listing.conversation)
            .await;
        Ok(page)
    }

    /// Fills in the membership facts of the summaries of kinds with
    /// members, as `principal` sees them, in one store round.
    pub(crate) async fn with_membership(
        &self,
        principal: &Principal,
        summaries: &mut [ConversationSummary],
    ) -> Result<(), ChatError> {
        let Principal::Staff { user_id, .. } = principal else {
            return Ok(());
        };
        let ids: Vec<ConversationId> = summaries
            .iter()
            .filter(|s| s.conversation.kind.has_members())
            .map(|s| s.conversation.id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut facts = self
            .ports
            .members
            .membership_facts(principal.tenant(), &ids, *user_id)
            .await?;
        for summary in summaries {
            if let Some(found) = facts.remove(&summary.conversation.id) {
                summary.membership = Some(found);
            }
        }
        Ok(())
    }

    /// Applies `op` to channel `id` for `principal` and announces it.
    async fn change(
        &self,
        principal: &Principal,
        id: ConversationId,
        op: MemberOp,
    ) -> Result<MemberChangeOutcome, ChatError> {
        let by = staff_user(principal)?;
        let notices = match &op {
            MemberOp::Add { users, .. } => users.len(),
            MemberOp::Remove { .. } => 1,
            MemberOp::SetRole { .. } => 0,
        };
        let change = MemberChange {
            tenant: principal.tenant(),
            conversation_id: id,
            by,
            op,
            at: self.ports.clock.now(),
            notice_ids: (0..notices).map(|_| self.ports.ids.message_id()).collect(),
        };
        let outcome = self.ports.members.change_members(&change).await?;
        self.announce(&outcome.conversation, outcome.notices.clone())
            .await;
        Ok(outcome)
    }

    /// Publishes the notices of a change, in `seq` order.
    async fn announce(&self, conversation: &Conversation, notices: Vec<Message>) {
        let route = Route::of(conversation);
        for message in notices {
            self.publish(ChatEvent::MessageCreated { route, message })
                .await;
        }
    }
}
