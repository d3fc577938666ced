//! [`MembershipRepository`] for [`SqliteStore`]: direct conversations,
//! channels, their members and the notices membership changes post.
//!
//! Every change is one `begin immediate` transaction on the single writer,
//! so nothing else writes while it checks and changes: a name is free when
//! no other channel has it, the last owner is counted, and notices take
//! the next seqs, all without races.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::store_support::{distinct_users, notice_messages, notices_with_ids};
use chat_app::{
    ChannelListQuery, ChannelListing, ChannelPage, ListCursor, MemberChange, MemberChangeOutcome,
    MemberOp, MemberPage, MembershipError, MembershipFacts, MembershipRepository, RepoError,
};
use chat_domain::{
    check_owner_departure, ChannelPatch, Conversation, ConversationId, ConversationKind, Member,
    MemberRole, Message, MessageId, NewChannel, NewDirect, NoticeKind, StaffUserId, SystemNotice,
    TenantId,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments as _, Row as _, SqliteConnection};
use uuid::Uuid;

use crate::codec::{self, CONVERSATION_COLUMNS};
use crate::conversations::find_sql;
use crate::SqliteStore;

/// A member row: user, role and join time.
const MEMBER_COLUMNS: &str = "user_id, role, joined_at";

fn member(row: &SqliteRow) -> anyhow::Result<Member> {
    let user: Uuid = row.try_get("user_id")?;
    let role: String = row.try_get("role")?;
    Ok(Member {
        user: StaffUserId::from_uuid(user),
        role: role
            .parse()
            .with_context(|| format!("member {user} has an unknown role {role:?}"))?,
        joined_at: codec::time(row.try_get("joined_at")?)?,
    })
}

fn role(raw: Option<String>) -> anyhow::Result<Option<MemberRole>> {
    raw.map(|raw| {
        raw.parse()
            .with_context(|| format!("unknown member role {raw:?}"))
    })
    .transpose()
}

/// `n` comma-separated placeholders numbered from `first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conversation `id` of `tenant` in `tx`, if it exists.
async fn find(
    tx: &mut SqliteConnection,
    tenant: TenantId,
    id: ConversationId,
) -> anyhow::Result<Option<Conversation>> {
    let row = sqlx::query(&find_sql())
        .bind(*tenant.as_uuid())
        .bind(*id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .context("selecting conversation")?;
    row.as_ref().map(codec::conversation).transpose()
}

/// The channel `id` of `tenant` in `tx`, or [`MembershipError::ConversationNotFound`].
async fn find_channel(
    tx: &mut SqliteConnection,
    tenant: TenantId,
    id: ConversationId,
) -> Result<Conversation, MembershipError> {
    match find(tx, tenant, id).await? {
        Some(found) if matches!(found.kind, ConversationKind::Channel { .. }) => Ok(found),
        _ => Err(MembershipError::ConversationNotFound),
    }
}

/// Whether another channel of `tenant` than `id` has the folded name.
async fn name_taken(
    tx: &mut SqliteConnection,
    tenant: TenantId,
    folded: &str,
    id: ConversationId,
) -> anyhow::Result<bool> {
    let taken: Option<i64> = sqlx::query_scalar(
        "select 1 from conversations \
         where tenant_id = ?1 and kind = 'channel' and name_folded = ?2 and id <> ?3",
    )
    .bind(*tenant.as_uuid())
    .bind(folded)
    .bind(*id.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .context("looking up a channel name")?;
    Ok(taken.is_some())
}

/// Inserts members of conversation `id`, all with `role` and `joined_at`.
async fn insert_members(
    tx: &mut SqliteConnection,
    tenant: TenantId,
    id: ConversationId,
    users: &[StaffUserId],
    role: MemberRole,
    joined_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    // 5 parameters a row, far below SQLite's limit for the at most few
    // thousand members one call adds.
    for chunk in users.chunks(1000) {
        let mut args = SqliteArguments::default();
        for user in chunk {
            for value in [*tenant.as_uuid(), *id.as_uuid(), *user.as_uuid()] {
                args.add(value).map_err(anyhow::Error::msg)?;
            }
            args.add(role.as_str()).map_err(anyhow::Error::msg)?;
            args.add(codec::micros(joined_at))
                .map_err(anyhow::Error::msg)?;
        }
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        sqlx::query_with(
            &format!(
                "insert into conversation_members \
                 (tenant_id, conversation_id, user_id, role, joined_at) values {rows}"
            ),
            args,
        )
        .execute(&mut *tx)
        .await
        .context("inserting members")?;
    }
    Ok(())
}

/// Appends `notices` to `conversation` with its next seqs, stamping
/// `at` as its activity, and returns them as reads will find them.
async fn post_notices(
    tx: &mut SqliteConnection,
    conversation: &Conversation,
    notices: &[(MessageId, SystemNotice)],
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<Message>> {
    let at = codec::truncate(at);
    let posted = notice_messages(conversation, notices, at);
    // 8 parameters a row, far below SQLite's limit.
    for chunk in posted.chunks(1000) {
        let mut args = SqliteArguments::default();
        for message in chunk {
            let notice = message.system.context("a notice without its content")?;
            args.add(*message.id.as_uuid())
                .map_err(anyhow::Error::msg)?;
            args.add(*message.tenant.as_uuid())
                .map_err(anyhow::Error::msg)?;
            args.add(*message.conversation_id.as_uuid())
                .map_err(anyhow::Error::msg)?;
            args.add(message.seq.as_i64()).map_err(anyhow::Error::msg)?;
            args.add(codec::micros(at)).map_err(anyhow::Error::msg)?;
            args.add(notice.kind.as_str()).map_err(anyhow::Error::msg)?;
            args.add(notice.user.map(Uuid::from))
                .map_err(anyhow::Error::msg)?;
            args.add(*notice.by.as_uuid()).map_err(anyhow::Error::msg)?;
        }
        let rows = vec!["(?, ?, ?, ?, 'system', ?, ?, ?, ?)"; chunk.len()].join(", ");
        sqlx::query_with(
            &format!(
                "insert into messages (id, tenant_id, conversation_id, seq, sender_type, \
                     created_at, system_event, system_user_id, system_by_id) values {rows}"
            ),
            args,
        )
        .execute(&mut *tx)
        .await
        .context("inserting system notices")?;
    }
    let seq = posted.last().map_or(conversation.last_seq, |m| m.seq);
    if !posted.is_empty() {
        sqlx::query(
            "update conversations set last_seq = ?3, updated_at = ?4, \
                 last_activity_at = max(last_activity_at, ?4) \
             where tenant_id = ?1 and id = ?2",
        )
        .bind(*conversation.tenant.as_uuid())
        .bind(*conversation.id.as_uuid())
        .bind(seq.as_i64())
        .bind(codec::micros(at))
        .execute(&mut *tx)
        .await
        .context("counting system notices")?;
    }
    if let Some(&(_, last)) = notices.last() {
        // One's own change is never unread news, as a sender has read what
        // they wrote: the author's marker moves past it while a member.
        sqlx::query(
            "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                 last_read_seq, last_delivered_seq, updated_at) \
             select ?1, ?2, 'staff', ?3, ?4, ?4, ?5 \
             where exists (select 1 from conversation_members \
                 where conversation_id = ?2 and user_id = ?3) \
             on conflict (conversation_id, reader_type, reader_id) do update set \
                 last_read_seq = max(last_read_seq, excluded.last_read_seq), \
                 last_delivered_seq = max(last_delivered_seq, excluded.last_delivered_seq), \
                 updated_at = excluded.updated_at",
        )
        .bind(*conversation.tenant.as_uuid())
        .bind(*conversation.id.as_uuid())
        .bind(*last.by.as_uuid())
        .bind(seq.as_i64())
        .bind(codec::micros(at))
        .execute(&mut *tx)
        .await
        .context("moving the author's read marker past their notices")?;
    }
    Ok(posted)
}

/// Those of `users` who are members of conversation `id`.
async fn present_members(
    tx: &mut SqliteConnection,
    id: ConversationId,
    users: &[StaffUserId],
) -> anyhow::Result<HashSet<Uuid>> {
    let mut present = HashSet::new();
    for chunk in users.chunks(1000) {
        let sql = format!(
            "select user_id from conversation_members \
             where conversation_id = ?1 and user_id in ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query_scalar::<_, Uuid>(&sql).bind(*id.as_uuid());
        for user in chunk {
            query = query.bind(*user.as_uuid());
        }
        present.extend(
            query
                .fetch_all(&mut *tx)
                .await
                .context("selecting present members")?,
        );
    }
    Ok(present)
}

/// The member `user` of conversation `id`, if they are one.
async fn find_member(
    tx: &mut SqliteConnection,
    id: ConversationId,
    user: StaffUserId,
) -> anyhow::Result<Option<Member>> {
    let row = sqlx::query(&format!(
        "select {MEMBER_COLUMNS} from conversation_members \
         where conversation_id = ?1 and user_id = ?2"
    ))
    .bind(*id.as_uuid())
    .bind(*user.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .context("selecting a member")?;
    row.as_ref().map(member).transpose()
}

/// Refuses `member`'s departure from their role when they are the last
/// owner and others stay.
async fn check_departure(
    tx: &mut SqliteConnection,
    id: ConversationId,
    member: &Member,
) -> Result<(), MembershipError> {
    let (members, owners): (i64, i64) = sqlx::query_as(
        "select count(*), coalesce(sum(role = 'owner'), 0) from conversation_members \
         where conversation_id = ?1",
    )
    .bind(*id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .context("counting owners")?;
    let count = |n: i64| u64::try_from(n).context("negative member count");
    check_owner_departure(member.role, count(owners)?, count(members)?)?;
    Ok(())
}

/// The member page query. Binds: `?1` tenant, `?2` conversation, `?3`/`?4`
/// cursor join time and user, `?5` rows to fetch.
pub(crate) fn members_sql(cursor: bool) -> String {
    let after = if cursor {
        " and (joined_at, user_id) > (?3, ?4)"
    } else {
        ""
    };
    format!(
        "select {MEMBER_COLUMNS} from conversation_members \
         where conversation_id = ?2 and tenant_id = ?1{after} \
         order by joined_at, user_id limit ?5"
    )
}

/// The channel list query: the tenant's public channels and the viewer's
/// private ones, by folded name (unique in the tenant, so the cursor's name
/// alone marks the place). Binds: `?1` tenant, `?2` viewer, `?3`/`?4` the
/// prefix's range, `?5` cursor name, `?7` rows to fetch.
pub(crate) fn channels_sql(joined: Option<bool>, prefix: bool, cursor: bool) -> String {
    let mut filters = String::new();
    match joined {
        Some(true) => filters.push_str(" and me.user_id is not null"),
        Some(false) => filters.push_str(" and me.user_id is null"),
        None => {}
    }
    if prefix {
        filters.push_str(" and c.name_folded >= ?3 and c.name_folded < ?4");
    }
    if cursor {
        filters.push_str(" and c.name_folded > ?5");
    }
    format!(
        "select {CONVERSATION_COLUMNS}, c.name_folded as name_folded, me.role as my_role, \
             (select count(*) from conversation_members n where n.conversation_id = c.id) \
                 as member_count \
         from conversations c \
         left join conversation_members me on me.conversation_id = c.id and me.user_id = ?2 \
         where c.tenant_id = ?1 and c.kind = 'channel' \
             and (c.visibility = 'public' or me.user_id is not null){filters} \
         order by c.name_folded limit ?7"
    )
}

/// Membership counts and the viewer's role in each of `n` conversations.
/// Binds: `?1` tenant, `?2` viewer, then the ids.
pub(crate) fn facts_sql(n: usize) -> String {
    format!(
        "select conversation_id, count(*) as member_count, \
             max(case when user_id = ?2 then role end) as my_role \
         from conversation_members \
         where conversation_id in ({}) and tenant_id = ?1 \
         group by conversation_id",
        placeholders(3, n)
    )
}

/// The members of the direct conversations among `n` conversations.
/// Binds: `?1` tenant, then the ids.
pub(crate) fn direct_members_sql(n: usize) -> String {
    format!(
        "select cm.conversation_id as conversation_id, cm.user_id as user_id \
         from conversations c join conversation_members cm on cm.conversation_id = c.id \
         where c.id in ({}) and c.tenant_id = ?1 and c.kind = 'direct'",
        placeholders(2, n)
    )
}

/// The smallest text greater than every text starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

#[async_trait]
impl MembershipRepository for SqliteStore {
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn member_role(
        &self,
        tenant: TenantId,
        id: ConversationId,
        user: StaffUserId,
    ) -> Result<Option<MemberRole>, RepoError> {
        let raw: Option<String> = sqlx::query_scalar(
            "select role from conversation_members \
             where conversation_id = ?2 and user_id = ?3 and tenant_id = ?1",
        )
        .bind(*tenant.as_uuid())
        .bind(*id.as_uuid())
        .bind(*user.as_uuid())
        .fetch_optional(&self.read)
        .await
        .context("selecting a member's role")?;
        Ok(role(raw)?)
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn member_ids(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<StaffUserId>, RepoError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "select user_id from conversation_members \
             where conversation_id = ?2 and tenant_id = ?1",
        )
        .bind(*tenant.as_uuid())
        .bind(*id.as_uuid())
        .fetch_all(&self.read)
        .await
        .context("selecting member ids")?;
        Ok(ids.into_iter().map(StaffUserId::from_uuid).collect())
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversations = ids.len()), err(level = "debug"))]
    async fn membership_facts(
        &self,
        tenant: TenantId,
        ids: &[ConversationId],
        viewer: StaffUserId,
    ) -> Result<HashMap<ConversationId, MembershipFacts>, RepoError> {
        let mut facts = HashMap::new();
        // A page of conversations is at most a few hundred ids.
        for chunk in ids.chunks(500) {
            let sql = facts_sql(chunk.len());
            let mut query = sqlx::query(&sql)
                .bind(*tenant.as_uuid())
                .bind(*viewer.as_uuid());
            for id in chunk {
                query = query.bind(*id.as_uuid());
            }
            let rows = query
                .fetch_all(&self.read)
                .await
                .context("selecting membership facts")?;
            for row in &rows {
                let id: Uuid = row.try_get("conversation_id").context("conversation id")?;
                let count: i64 = row.try_get("member_count").context("member count")?;
                facts.insert(
                    ConversationId::from_uuid(id),
                    MembershipFacts {
                        member_count: u64::try_from(count).context("negative member count")?,
                        role: role(row.try_get("my_role").context("role")?)?,
                        member_ids: Vec::new(),
                    },
                );
            }
            let sql = direct_members_sql(chunk.len());
            let mut query = sqlx::query(&sql).bind(*tenant.as_uuid());
            for id in chunk {
                query = query.bind(*id.as_uuid());
            }
            let rows = query
                .fetch_all(&self.read)
                .await
                .context("selecting the members of direct conversations")?;
            for row in &rows {
                let id: Uuid = row.try_get("conversation_id").context("conversation id")?;
                let user: Uuid = row.try_get("user_id").context("user id")?;
                if let Some(facts) = facts.get_mut(&ConversationId::from_uuid(id)) {
                    facts.member_ids.push(StaffUserId::from_uuid(user));
                }
            }
        }
        for facts in facts.values_mut() {
            facts.member_ids.sort();
        }
        Ok(facts)
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %new.tenant), err(level = "debug"))]
    async fn get_or_create_direct(
        &self,
        new: &NewDirect,
    ) -> Result<(Conversation, bool), RepoError> {
        let key = new.members.key();
        let mut tx = self.begin_write().await?;
        // A set that has its conversation already leaves it alone; the
        // select below then returns it.
        let created = sqlx::query(
            "insert into conversations (id, tenant_id, kind, status, tags, last_seq, \
                 created_at, updated_at, last_activity_at, direct_key) \
             values (?1, ?2, 'direct', 'open', '[]', 0, ?3, ?3, ?3, ?4) \
             on conflict do nothing",
        )
        .bind(*new.id.as_uuid())
        .bind(*new.tenant.as_uuid())
        .bind(codec::micros(new.now))
        .bind(&key)
        .execute(&mut *tx)
        .await
        .context("inserting a direct conversation")?
        .rows_affected()
            == 1;
        if created {
            insert_members(
                &mut tx,
                new.tenant,
                new.id,
                new.members.ids(),
                MemberRole::Member,
                new.now,
            )
            .await?;
        }
        let row = sqlx::query(&format!(
            "select {CONVERSATION_COLUMNS} from conversations c \
             where c.tenant_id = ?1 and c.kind = 'direct' and c.direct_key = ?2"
        ))
        .bind(*new.tenant.as_uuid())
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await
        .context("selecting a direct conversation")?
        // Only an id collision with another conversation gets here.
        .with_context(|| format!("conversation id {} is already taken", new.id))?;
        let conversation = codec::conversation(&row)?;
        tx.commit()
            .await
            .context("committing a direct conversation")?;
        if created {
            tracing::info!(conversation_id = %conversation.id, "direct conversation created");
        }
        Ok((conversation, created))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %new.tenant), err(level = "debug"))]
    async fn create_channel(
        &self,
        new: &NewChannel,
        notice_ids: &[MessageId],
    ) -> Result<(Conversation, Vec<Message>), MembershipError> {
        let members = distinct_users(&new.members, Some(new.owner));
        let notices = notices_with_ids(
            notice_ids,
            members.iter().map(|&user| SystemNotice {
                kind: NoticeKind::MemberAdded,
                user: Some(user),
                by: new.owner,
            }),
        )?;
        let folded = new.profile.name.folded();
        let mut tx = self.begin_write().await.map_err(RepoError::from)?;
        if name_taken(&mut tx, new.tenant, &folded, new.id).await? {
            return Err(MembershipError::NameTaken);
        }
        let ConversationKind::Channel { visibility, .. } = new.prospective().kind else {
            return Err(anyhow::anyhow!("a new channel of another kind").into());
        };
        sqlx::query(
            "insert into conversations (id, tenant_id, kind, status, tags, last_seq, \
                 created_at, updated_at, last_activity_at, visibility, name, name_folded, topic) \
             values (?1, ?2, 'channel', 'open', '[]', 0, ?3, ?3, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(*new.id.as_uuid())
        .bind(*new.tenant.as_uuid())
        .bind(codec::micros(new.now))
        .bind(visibility.as_str())
        .bind(new.profile.name.as_str())
        .bind(&folded)
        .bind(new.profile.topic.as_ref().map(|t| t.as_str()))
        .execute(&mut *tx)
        .await
        .context("inserting a channel")?;
        insert_members(
            &mut tx,
            new.tenant,
            new.id,
            &[new.owner],
            MemberRole::Owner,
            new.now,
        )
        .await?;
        insert_members(
            &mut tx,
            new.tenant,
            new.id,
            &members,
            MemberRole::Member,
            new.now,
        )
        .await?;
        let posted = post_notices(&mut tx, &new.prospective(), &notices, new.now).await?;
        let created = find_channel(&mut tx, new.tenant, new.id).await?;
        tx.commit().await.context("committing a channel")?;
        tracing::info!(conversation_id = %created.id, "channel created");
        Ok((created, posted))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn update_channel(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ChannelPatch,
        by: StaffUserId,
        notice_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<(Conversation, Message), MembershipError> {
        let at = codec::truncate(at);
        let mut tx = self.begin_write().await.map_err(RepoError::from)?;
        let mut channel = find_channel(&mut tx, tenant, id).await?;
        patch.apply(&mut channel, at);
        let (
            ConversationKind::Channel {
                visibility,
                archived_at,
            },
            Some(profile),
        ) = (&channel.kind, &channel.channel)
        else {
            return Err(anyhow::anyhow!("channel {id} has no settings").into());
        };
        let folded = profile.name.folded();
        if patch.name.is_some() && name_taken(&mut tx, tenant, &folded, id).await? {
            return Err(MembershipError::NameTaken);
        }
        sqlx::query(
            "update conversations set visibility = ?3, archived_at = ?4, name = ?5, \
                 name_folded = ?6, topic = ?7, updated_at = ?8 \
             where tenant_id = ?1 and id = ?2",
        )
        .bind(*tenant.as_uuid())
        .bind(*id.as_uuid())
        .bind(visibility.as_str())
        .bind(archived_at.map(codec::micros))
        .bind(profile.name.as_str())
        .bind(&folded)
        .bind(profile.topic.as_ref().map(|t| t.as_str()))
        .bind(codec::micros(at))
        .execute(&mut *tx)
        .await
        .context("updating a channel")?;
        let notice = SystemNotice {
            kind: NoticeKind::ChannelUpdated,
            user: None,
            by,
        };
        let mut posted = post_notices(&mut tx, &channel, &[(notice_id, notice)], at).await?;
        let updated = find_channel(&mut tx, tenant, id).await?;
        tx.commit().await.context("committing a channel update")?;
        let posted = posted
            .pop()
            .context("a channel update without its notice")?;
        Ok((updated, posted))
    }

    #[tracing::instrument(
        skip_all,
        fields(tenant_id = %change.tenant, conversation_id = %change.conversation_id),
        err(level = "debug")
    )]
    async fn change_members(
        &self,
        change: &MemberChange,
    ) -> Result<MemberChangeOutcome, MembershipError> {
        let (tenant, id) = (change.tenant, change.conversation_id);
        let at = codec::truncate(change.at);
        let mut tx = self.begin_write().await.map_err(RepoError::from)?;
        let channel = find_channel(&mut tx, tenant, id).await?;
        let (changed, notices) = match &change.op {
            MemberOp::Add { users, role } => {
                let users = distinct_users(users, None);
                let present = present_members(&mut tx, id, &users).await?;
                let fresh: Vec<StaffUserId> = users
                    .into_iter()
                    .filter(|u| !present.contains(u.as_uuid()))
                    .collect();
                insert_members(&mut tx, tenant, id, &fresh, *role, at).await?;
                let notices = fresh.iter().map(|&user| SystemNotice {
                    kind: NoticeKind::MemberAdded,
                    user: Some(user),
                    by: change.by,
                });
                let notices = notices_with_ids(&change.notice_ids, notices)?;
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
                let gone = find_member(&mut tx, id, *user)
                    .await?
                    .ok_or(MembershipError::MemberNotFound)?;
                check_departure(&mut tx, id, &gone).await?;
                sqlx::query(
                    "delete from conversation_members where conversation_id = ?1 and user_id = ?2",
                )
                .bind(*id.as_uuid())
                .bind(*user.as_uuid())
                .execute(&mut *tx)
                .await
                .context("removing a member")?;
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
                (
                    vec![gone],
                    notices_with_ids(&change.notice_ids, std::iter::once(notice))?,
                )
            }
            MemberOp::SetRole { user, role } => {
                let mut member = find_member(&mut tx, id, *user)
                    .await?
                    .ok_or(MembershipError::MemberNotFound)?;
                if member.role == MemberRole::Owner && *role != MemberRole::Owner {
                    check_departure(&mut tx, id, &member).await?;
                }
                sqlx::query(
                    "update conversation_members set role = ?3 \
                     where conversation_id = ?1 and user_id = ?2",
                )
                .bind(*id.as_uuid())
                .bind(*user.as_uuid())
                .bind(role.as_str())
                .execute(&mut *tx)
                .await
                .context("changing a member's role")?;
                member.role = *role;
                (vec![member], Vec::new())
            }
        };
        let notices = post_notices(&mut tx, &channel, &notices, at).await?;
        let conversation = find_channel(&mut tx, tenant, id).await?;
        tx.commit()
            .await
            .context("committing a membership change")?;
        Ok(MemberChangeOutcome {
            conversation,
            changed,
            notices,
        })
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn list_members(
        &self,
        tenant: TenantId,
        id: ConversationId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<MemberPage, RepoError> {
        let after = match &cursor {
            None => None,
            Some(cursor) => {
                // A key that no page of ours ends with is a position after
                // nothing: an empty page.
                let Some(at) = cursor.joined_at() else {
                    return Ok(MemberPage::default());
                };
                Some((codec::micros(at), cursor.id))
            }
        };
        let rows = sqlx::query(&members_sql(after.is_some()))
            .bind(*tenant.as_uuid())
            .bind(*id.as_uuid())
            .bind(after.map(|(micros, _)| micros))
            .bind(after.map(|(_, user)| user))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.read)
            .await
            .context("listing members")?;
        let mut members = rows
            .iter()
            .map(member)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let limit = usize::try_from(limit).context("page size overflows usize")?;
        let next_cursor = if members.len() > limit {
            members.truncate(limit);
            members.last().map(ListCursor::after_member)
        } else {
            None
        };
        Ok(MemberPage {
            members,
            next_cursor,
        })
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %query.tenant), err(level = "debug"))]
    async fn list_channels(&self, query: &ChannelListQuery) -> Result<ChannelPage, RepoError> {
        let prefix = query.prefix.as_ref().map(|p| p.to_lowercase());
        let rows = sqlx::query(&channels_sql(
            query.joined,
            prefix.is_some(),
            query.cursor.is_some(),
        ))
        .bind(*query.tenant.as_uuid())
        .bind(*query.viewer.as_uuid())
        .bind(prefix.as_deref())
        .bind(prefix.as_deref().map(prefix_end))
        .bind(query.cursor.as_ref().map(|c| c.key.as_str()))
        .bind(None::<Uuid>)
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&self.read)
        .await
        .context("listing channels")?;
        let mut channels = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let count: i64 = row.try_get("member_count").context("member count")?;
            channels.push(ChannelListing {
                conversation: codec::conversation(row)?,
                member_count: u64::try_from(count).context("negative member count")?,
                role: role(row.try_get("my_role").context("role")?)?,
            });
            keys.push(row.try_get::<String, _>("name_folded").context("name")?);
        }
        let limit = usize::try_from(query.limit).context("page size overflows usize")?;
        let next_cursor = if channels.len() > limit {
            channels.truncate(limit);
            channels.last().map(|c| ListCursor {
                key: keys[limit - 1].clone(),
                id: *c.conversation.id.as_uuid(),
            })
        } else {
            None
        };
        Ok(ChannelPage {
            channels,
            next_cursor,
        })
    }
}
