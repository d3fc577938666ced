//! [`MembershipRepository`] for [`MemoryStore`]: direct conversations,
//! channels, their members and the notices membership changes post.
//!
//! Every change checks everything it needs (the channel, the name, the
//! members, the last owner, enough notice ids) before it writes anything,
//! under the store's one lock: a change and its notices are stored
//! together or not at all.

use std::collections::HashMap;

use async_trait::async_trait;
use chat_app::store_support::{distinct_users, notice_messages, notices_with_ids};
use chat_app::{
    ChannelListQuery, ChannelListing, ChannelPage, ListCursor, MemberChange, MemberChangeOutcome,
    MemberOp, MemberPage, MembershipError, MembershipFacts, MembershipRepository, RepoError,
};
use chat_domain::{
    check_owner_departure, ChannelPatch, Conversation, ConversationId, ConversationKind, Member,
    MemberRole, Message, MessageId, NewChannel, NewDirect, NoticeKind, Sender, StaffUserId,
    SystemNotice, TenantId, Visibility,
};
use chrono::{DateTime, Utc};

use crate::conversations::taken;
use crate::{truncate, Inner, MemoryStore};

/// `count` members as a number of the port's type.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Inner {
    /// The channel `id` of `tenant`.
    fn channel(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<&Conversation, MembershipError> {
        self.conversation(tenant, id)
            .filter(|c| matches!(c.kind, ConversationKind::Channel { .. }))
            .ok_or(MembershipError::ConversationNotFound)
    }

    /// The members of conversation `id` of `tenant` (none for a missing
    /// one or one of another tenant).
    fn members_of(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Option<&HashMap<StaffUserId, Member>> {
        self.conversation(tenant, id)?;
        self.members.get(&id)
    }

    /// Whether another channel of `tenant` than `id` has the name `folded`
    /// (folded too).
    fn name_taken(&self, tenant: TenantId, folded: &str, id: ConversationId) -> bool {
        self.conversations.values().any(|c| {
            c.tenant == tenant
                && c.id != id
                && matches!(c.kind, ConversationKind::Channel { .. })
                && c.channel
                    .as_ref()
                    .is_some_and(|p| p.name.folded() == folded)
        })
    }

    /// Fails unless no message has one of `ids` yet.
    fn check_notice_ids(&self, notices: &[(MessageId, SystemNotice)]) -> anyhow::Result<()> {
        for (id, _) in notices {
            anyhow::ensure!(
                !self.message_at.contains_key(id),
                "message id {id} is already taken"
            );
        }
        Ok(())
    }

    /// Appends `notices` to conversation `id` with its next seqs, stamping
    /// `at` as its activity, and returns them as reads will find them. Like
    /// a sender's own message, the notices are read by their author while
    /// they are a member.
    fn post_notices(
        &mut self,
        id: ConversationId,
        notices: &[(MessageId, SystemNotice)],
        at: DateTime<Utc>,
    ) -> Vec<Message> {
        let Some(conversation) = self.conversations.get_mut(&id) else {
            return Vec::new();
        };
        let posted = notice_messages(conversation, notices, at);
        if let Some(last) = posted.last() {
            conversation.last_seq = last.seq;
            conversation.updated_at = at;
            conversation.last_activity_at = conversation.last_activity_at.max(at);
        }
        for message in &posted {
            self.push_message(message.clone());
        }
        if let Some((seq, by)) = posted.last().and_then(|m| Some((m.seq, m.system?.by))) {
            let member = self
                .members
                .get(&id)
                .is_some_and(|members| members.contains_key(&by));
            if member {
                self.mark_read(id, Sender::Staff(by), seq, at);
            }
        }
        posted
    }

    /// Adds `users` to conversation `id` with `role`, joined at `at`.
    fn insert_members(
        &mut self,
        id: ConversationId,
        users: &[StaffUserId],
        role: MemberRole,
        at: DateTime<Utc>,
    ) {
        let members = self.members.entry(id).or_default();
        for &user in users {
            members.insert(
                user,
                Member {
                    user,
                    role,
                    joined_at: at,
                },
            );
        }
    }

    /// Refuses `member`'s departure from their role in conversation `id`
    /// when they are its last owner and others stay.
    fn check_departure(&self, id: ConversationId, member: &Member) -> Result<(), MembershipError> {
        let members = self.members.get(&id);
        let all = members.map_or(0, HashMap::len);
        let owners = members.map_or(0, |m| {
            m.values().filter(|m| m.role == MemberRole::Owner).count()
        });
        check_owner_departure(member.role, count(owners), count(all))?;
        Ok(())
    }

    fn membership_facts(
        &self,
        tenant: TenantId,
        ids: &[ConversationId],
        viewer: StaffUserId,
    ) -> HashMap<ConversationId, MembershipFacts> {
        let mut facts = HashMap::new();
        for &id in ids {
            let Some(members) = self.members_of(tenant, id).filter(|m| !m.is_empty()) else {
                continue;
            };
            let direct = self
                .conversations
                .get(&id)
                .is_some_and(|c| c.kind == ConversationKind::Direct);
            let mut member_ids: Vec<StaffUserId> = if direct {
                members.keys().copied().collect()
            } else {
                Vec::new()
            };
            member_ids.sort_unstable();
            facts.insert(
                id,
                MembershipFacts {
                    member_count: count(members.len()),
                    role: members.get(&viewer).map(|m| m.role),
                    member_ids,
                },
            );
        }
        facts
    }

    fn get_or_create_direct(&mut self, new: &NewDirect) -> Result<(Conversation, bool), RepoError> {
        let key = (new.tenant, new.members.key());
        if let Some(id) = self.direct_keys.get(&key) {
            let found = self.conversations.get(id).cloned().ok_or_else(|| {
                RepoError::Unexpected(anyhow::anyhow!(
                    "direct conversation {id} is indexed but not stored"
                ))
            })?;
            return Ok((found, false));
        }
        if self.conversations.contains_key(&new.id) {
            return Err(taken(new.id));
        }
        let mut new = new.clone();
        new.now = truncate(new.now);
        let created = new.prospective();
        self.direct_keys.insert(key, created.id);
        self.conversations.insert(created.id, created.clone());
        self.insert_members(created.id, new.members.ids(), MemberRole::Member, new.now);
        Ok((created, true))
    }

    fn create_channel(
        &mut self,
        new: &NewChannel,
        notice_ids: &[MessageId],
    ) -> Result<(Conversation, Vec<Message>), MembershipError> {
        let mut new = new.clone();
        new.now = truncate(new.now);
        let members = distinct_users(&new.members, Some(new.owner));
        let notices = notices_with_ids(
            notice_ids,
            members.iter().map(|&user| SystemNotice {
                kind: NoticeKind::MemberAdded,
                user: Some(user),
                by: new.owner,
            }),
        )?;
        if self.name_taken(new.tenant, &new.profile.name.folded(), new.id) {
            return Err(MembershipError::NameTaken);
        }
        if self.conversations.contains_key(&new.id) {
            return Err(taken(new.id).into());
        }
        self.check_notice_ids(&notices)?;
        let created = new.prospective();
        self.conversations.insert(created.id, created);
        self.insert_members(new.id, &[new.owner], MemberRole::Owner, new.now);
        self.insert_members(new.id, &members, MemberRole::Member, new.now);
        let posted = self.post_notices(new.id, &notices, new.now);
        let created = self.channel(new.tenant, new.id)?.clone();
        Ok((created, posted))
    }

    fn update_channel(
        &mut self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ChannelPatch,
        by: StaffUserId,
        notice_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<(Conversation, Message), MembershipError> {
        let at = truncate(at);
        let mut channel = self.channel(tenant, id)?.clone();
        if !patch.apply(&mut channel, at) {
            return Err(anyhow::anyhow!("channel {id} has no settings").into());
        }
        if let Some(name) = &patch.name {
            if self.name_taken(tenant, &name.folded(), id) {
                return Err(MembershipError::NameTaken);
            }
        }
        let notice = SystemNotice {
            kind: NoticeKind::ChannelUpdated,
            user: None,
            by,
        };
        let notices = [(notice_id, notice)];
        self.check_notice_ids(&notices)?;
        self.conversations.insert(id, channel);
        let posted = self
            .post_notices(id, &notices, at)
            .pop()
            .ok_or_else(|| anyhow::anyhow!("a channel update without its notice"))?;
        let updated = self.channel(tenant, id)?.clone();
        Ok((updated, posted))
    }

    fn change_members(
        &mut self,
        change: &MemberChange,
    ) -> Result<MemberChangeOutcome, MembershipError> {
        let (tenant, id) = (change.tenant, change.conversation_id);
        let at = truncate(change.at);
        self.channel(tenant, id)?;
        let members = self.members.get(&id);
        let member = |user: &StaffUserId| members.and_then(|m| m.get(user)).copied();
        let (changed, notices) = match &change.op {
            MemberOp::Add { users, role } => {
                let fresh: Vec<StaffUserId> = distinct_users(users, None)
                    .into_iter()
                    .filter(|user| member(user).is_none())
                    .collect();
                let notices = notices_with_ids(
                    &change.notice_ids,
                    fresh.iter().map(|&user| SystemNotice {
                        kind: NoticeKind::MemberAdded,
                        user: Some(user),
                        by: change.by,
                    }),
                )?;
                self.check_notice_ids(&notices)?;
                self.insert_members(id, &fresh, *role, at);
                let changed = fresh
                    .into_iter()
                    .map(|user| Member {
                        user,
                        role: *role,
                        joined_at: at,
                    })
                    .collect();
                (changed, notices)
            }
            MemberOp::Remove { user } => {
                let gone = member(user).ok_or(MembershipError::MemberNotFound)?;
                self.check_departure(id, &gone)?;
                let kind = if *user == change.by {
                    NoticeKind::MemberLeft
                } else {
                    NoticeKind::MemberRemoved
                };
                let notice = SystemNotice {
                    kind,
                    user: Some(*user),
                    by: change.by,
                };
                let notices = notices_with_ids(&change.notice_ids, std::iter::once(notice))?;
                self.check_notice_ids(&notices)?;
                if let Some(members) = self.members.get_mut(&id) {
                    members.remove(user);
                }
                (vec![gone], notices)
            }
            MemberOp::SetRole { user, role } => {
                let mut member = member(user).ok_or(MembershipError::MemberNotFound)?;
                if member.role == MemberRole::Owner && *role != MemberRole::Owner {
                    self.check_departure(id, &member)?;
                }
                member.role = *role;
                if let Some(stored) = self.members.get_mut(&id).and_then(|m| m.get_mut(user)) {
                    stored.role = *role;
                }
                (vec![member], Vec::new())
            }
        };
        let notices = self.post_notices(id, &notices, at);
        let conversation = self.channel(tenant, id)?.clone();
        Ok(MemberChangeOutcome {
            conversation,
            changed,
            notices,
        })
    }

    fn list_members(
        &self,
        tenant: TenantId,
        id: ConversationId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> MemberPage {
        let after = match &cursor {
            None => None,
            Some(cursor) => {
                // A key that no page of ours ends with is a position after
                // nothing: an empty page.
                let Some(at) = cursor.joined_at() else {
                    return MemberPage::default();
                };
                Some((at, StaffUserId::from_uuid(cursor.id)))
            }
        };
        let Some(members) = self.members_of(tenant, id) else {
            return MemberPage::default();
        };
        let mut found: Vec<Member> = members
            .values()
            .filter(|m| after.is_none_or(|after| (m.joined_at, m.user) > after))
            .copied()
            .collect();
        found.sort_unstable_by_key(|m| (m.joined_at, m.user));
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = found.len() > limit;
        found.truncate(limit);
        MemberPage {
            next_cursor: found.last().filter(|_| more).map(ListCursor::after_member),
            members: found,
        }
    }

    fn list_channels(&self, query: &ChannelListQuery) -> ChannelPage {
        let prefix = query.prefix.as_ref().map(|p| p.to_lowercase());
        let mut found: Vec<(String, ChannelListing)> = self
            .conversations
            .values()
            .filter(|c| c.tenant == query.tenant)
            .filter_map(|c| {
                let visibility = match c.kind {
                    ConversationKind::Channel { visibility, .. } => visibility,
                    _ => return None,
                };
                let folded = c.channel.as_ref()?.name.folded();
                let members = self.members.get(&c.id);
                let role = members.and_then(|m| m.get(&query.viewer)).map(|m| m.role);
                let visible = visibility == Visibility::Public || role.is_some();
                let wanted = query.joined.is_none_or(|joined| joined == role.is_some())
                    && prefix
                        .as_ref()
                        .is_none_or(|p| folded.starts_with(p.as_str()))
                    && query.cursor.as_ref().is_none_or(|after| folded > after.key);
                (visible && wanted).then(|| {
                    let listing = ChannelListing {
                        conversation: c.clone(),
                        member_count: count(members.map_or(0, HashMap::len)),
                        role,
                    };
                    (folded, listing)
                })
            })
            .collect();
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = found
            .last()
            .filter(|_| more)
            .map(|(key, listing)| ListCursor {
                key: key.clone(),
                id: *listing.conversation.id.as_uuid(),
            });
        ChannelPage {
            channels: found.into_iter().map(|(_, listing)| listing).collect(),
            next_cursor,
        }
    }
}

#[async_trait]
impl MembershipRepository for MemoryStore {
    async fn member_role(
        &self,
        tenant: TenantId,
        id: ConversationId,
        user: StaffUserId,
    ) -> Result<Option<MemberRole>, RepoError> {
        Ok(self
            .lock()
            .members_of(tenant, id)
            .and_then(|members| members.get(&user))
            .map(|member| member.role))
    }

    async fn member_ids(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<StaffUserId>, RepoError> {
        Ok(self
            .lock()
            .members_of(tenant, id)
            .map(|members| members.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn membership_facts(
        &self,
        tenant: TenantId,
        ids: &[ConversationId],
        viewer: StaffUserId,
    ) -> Result<HashMap<ConversationId, MembershipFacts>, RepoError> {
        Ok(self.lock().membership_facts(tenant, ids, viewer))
    }

    async fn get_or_create_direct(
        &self,
        new: &NewDirect,
    ) -> Result<(Conversation, bool), RepoError> {
        self.lock().get_or_create_direct(new)
    }

    async fn create_channel(
        &self,
        new: &NewChannel,
        notice_ids: &[MessageId],
    ) -> Result<(Conversation, Vec<Message>), MembershipError> {
        self.lock().create_channel(new, notice_ids)
    }

    async fn update_channel(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ChannelPatch,
        by: StaffUserId,
        notice_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<(Conversation, Message), MembershipError> {
        self.lock()
            .update_channel(tenant, id, patch, by, notice_id, at)
    }

    async fn change_members(
        &self,
        change: &MemberChange,
    ) -> Result<MemberChangeOutcome, MembershipError> {
        self.lock().change_members(change)
    }

    async fn list_members(
        &self,
        tenant: TenantId,
        id: ConversationId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<MemberPage, RepoError> {
        Ok(self.lock().list_members(tenant, id, limit, cursor))
    }

    async fn list_channels(&self, query: &ChannelListQuery) -> Result<ChannelPage, RepoError> {
        Ok(self.lock().list_channels(query))
    }
}
