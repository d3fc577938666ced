//! [`MembershipRepository`] for [`PostgresStore`]: direct conversations,
//! channels, their members, and the system notices of membership changes.
//!
//! Every change takes the conversation's row lock (`for no key update`, as
//! appends do), so changes and sends of one conversation are serialised:
//! the notices take the next seqs without a gap, and the owner rule is
//! checked against members nobody else is changing.

use std::collections::HashMap;

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::store_support::{distinct_users, notices_with_ids};
use chat_app::{
    ChannelListQuery, ChannelListing, ChannelPage, ListCursor, MemberChange, MemberChangeOutcome,
    MemberOp, MemberPage, MembershipError, MembershipFacts, MembershipRepository, RepoError,
};
use chat_domain::{
    check_owner_departure, ChannelPatch, Conversation, ConversationId, ConversationKind, Member,
    MemberRole, Message, MessageId, NewChannel, NewDirect, NoticeKind, Seq, StaffUserId,
    SystemNotice, TenantId,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _};
use uuid::Uuid;

use crate::rows::{self, CONVERSATION_COLUMNS, C_CONVERSATION_COLUMNS, MESSAGE_COLUMNS, PLAIN};
use crate::PostgresStore;

/// The unique index of channel names (see the migration): its violation,
/// and only its, means the name is taken.
const CHANNEL_NAME_KEY: &str = "conversations_channel_name_key";

/// How often get-or-create of a direct conversation retries when the row
/// it conflicted with is gone by the time it reads it (only a concurrent
/// delete can cause that).
const GET_OR_CREATE_ATTEMPTS: usize = 3;

/// A notice to post: its id, seq and content.
struct Notice {
    id: MessageId,
    seq: Seq,
    notice: SystemNotice,
}

/// A failed statement: [`MembershipError::NameTaken`] for the channel name
/// index, anything else unexpected.
fn name_taken_or(err: sqlx::Error, what: &'static str) -> MembershipError {
    match &err {
        sqlx::Error::Database(db) if db.constraint() == Some(CHANNEL_NAME_KEY) => {
            MembershipError::NameTaken
        }
        _ => MembershipError::Unexpected(anyhow::Error::new(err).context(what)),
    }
}

/// Locks conversation `id` of `tenant` (`for no key update`: appends and
/// other changes of it wait, receipts do not) and reads it.
async fn lock_conversation(
    tx: &mut PgConnection,
    tenant: TenantId,
    id: ConversationId,
) -> anyhow::Result<Option<Conversation>> {
    let row = sqlx::query(&format!(
        "select {CONVERSATION_COLUMNS} from conversations where id = $1 and tenant_id = $2 \
         for no key update"
    ))
    .bind(*id.as_uuid())
    .bind(*tenant.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .context("locking a conversation")?;
    row.as_ref().map(rows::conversation).transpose()
}

/// Locks channel `id` of `tenant`; [`MembershipError::ConversationNotFound`]
/// for anything but a channel of the tenant.
async fn lock_channel(
    tx: &mut PgConnection,
    tenant: TenantId,
    id: ConversationId,
) -> Result<Conversation, MembershipError> {
    match lock_conversation(tx, tenant, id).await? {
        Some(
            found @ Conversation {
                kind: ConversationKind::Channel { .. },
                ..
            },
        ) => Ok(found),
        _ => Err(MembershipError::ConversationNotFound),
    }
}

/// Inserts `users` with their roles as members of `conversation`, joined
/// at `at`, skipping those already members; returns the rows inserted, in
/// the order of `users`.
async fn insert_members(
    tx: &mut PgConnection,
    conversation: &Conversation,
    users: &[(StaffUserId, MemberRole)],
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<Member>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = users.iter().map(|(u, _)| *u.as_uuid()).collect();
    let roles: Vec<&str> = users.iter().map(|(_, r)| r.as_str()).collect();
    let inserted = sqlx::query(
        "insert into conversation_members (tenant_id, conversation_id, user_id, role, joined_at) \
         select $1, $2, u.user_id, u.role, $3 \
         from unnest($4::uuid[], $5::text[]) as u(user_id, role) \
         on conflict (conversation_id, user_id) do nothing \
         returning user_id, role, joined_at",
    )
    .bind(*conversation.tenant.as_uuid())
    .bind(*conversation.id.as_uuid())
    .bind(at)
    .bind(&ids)
    .bind(&roles)
    .fetch_all(&mut *tx)
    .await
    .context("inserting members")?;
    let mut by_user: HashMap<StaffUserId, Member> = inserted
        .iter()
        .map(|row| rows::member(row).map(|m| (m.user, m)))
        .collect::<anyhow::Result<_>>()?;
    Ok(users
        .iter()
        .filter_map(|(user, _)| by_user.remove(user))
        .collect())
}

/// Stores `notices` in `conversation` as messages of the system sent at
/// `at`; returns them in seq order.
async fn insert_notices(
    tx: &mut PgConnection,
    conversation: &Conversation,
    notices: &[Notice],
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<Message>> {
    if notices.is_empty() {
        return Ok(Vec::new());
    }
    let inserted = sqlx::query(&format!(
        "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
             body, created_at, system_event, system_user_id, system_by_id) \
         select v.id, $1, $2, v.seq, 'system', null, null, $3, v.event, v.user_id, v.by_id \
         from unnest($4::uuid[], $5::int8[], $6::text[], $7::uuid[], $8::uuid[]) \
             as v(id, seq, event, user_id, by_id) \
         returning {MESSAGE_COLUMNS}"
    ))
    .bind(*conversation.tenant.as_uuid())
    .bind(*conversation.id.as_uuid())
    .bind(at)
    .bind(notices.iter().map(|n| *n.id.as_uuid()).collect::<Vec<_>>())
    .bind(notices.iter().map(|n| n.seq.as_i64()).collect::<Vec<_>>())
    .bind(
        notices
            .iter()
            .map(|n| n.notice.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        notices
            .iter()
            .map(|n| n.notice.user.map(|u| *u.as_uuid()))
            .collect::<Vec<_>>(),
    )
    .bind(
        notices
            .iter()
            .map(|n| *n.notice.by.as_uuid())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await
    .context("posting notices")?;
    advance_author(tx, conversation, notices).await?;
    let mut messages = inserted
        .iter()
        .map(|row| rows::message(row, &PLAIN))
        .collect::<anyhow::Result<Vec<_>>>()?;
    messages.sort_by_key(|m| m.seq);
    Ok(messages)
}

/// Moves the read marker of the notices' author, while a member, past
/// them: one's own change is never unread news (as a sender has read what
/// they wrote).
async fn advance_author(
    tx: &mut PgConnection,
    conversation: &Conversation,
    notices: &[Notice],
) -> anyhow::Result<()> {
    let Some(last) = notices.iter().max_by_key(|n| n.seq) else {
        return Ok(());
    };
    sqlx::query(
        "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
             last_read_seq, last_delivered_seq, updated_at) \
         select $1, $2, 'staff', $3, $4, $4, now() \
         where exists (select 1 from conversation_members \
             where conversation_id = $2 and user_id = $3) \
         on conflict (conversation_id, reader_type, reader_id) do update set \
             last_read_seq = greatest(read_states.last_read_seq, excluded.last_read_seq), \
             last_delivered_seq = \
                 greatest(read_states.last_delivered_seq, excluded.last_delivered_seq), \
             updated_at = excluded.updated_at",
    )
    .bind(*conversation.tenant.as_uuid())
    .bind(*conversation.id.as_uuid())
    .bind(*last.notice.by.as_uuid())
    .bind(last.seq.as_i64())
    .execute(&mut *tx)
    .await
    .context("moving the author's read marker past their notices")?;
    Ok(())
}

/// Records notices up to `last_seq`, the newest at `at`, on the locked
/// `conversation` (as [`Conversation::record_message`] does for a message:
/// `last_seq`, `updated_at` and `last_activity_at` move) and returns it as
/// stored.
async fn record_notices(
    tx: &mut PgConnection,
    conversation: &Conversation,
    last_seq: Seq,
    at: DateTime<Utc>,
) -> anyhow::Result<Conversation> {
    let row = sqlx::query(&format!(
        "update conversations set last_seq = $3, updated_at = $4, last_activity_at = $4 \
         where id = $1 and tenant_id = $2 returning {CONVERSATION_COLUMNS}"
    ))
    .bind(*conversation.id.as_uuid())
    .bind(*conversation.tenant.as_uuid())
    .bind(last_seq.as_i64())
    .bind(at)
    .fetch_one(&mut *tx)
    .await
    .context("recording notices")?;
    rows::conversation(&row)
}

/// The member `user` of `conversation`, read under its lock.
async fn find_member(
    tx: &mut PgConnection,
    conversation: &Conversation,
    user: StaffUserId,
) -> anyhow::Result<Option<Member>> {
    let row = sqlx::query(
        "select user_id, role, joined_at from conversation_members \
         where conversation_id = $1 and user_id = $2 and tenant_id = $3",
    )
    .bind(*conversation.id.as_uuid())
    .bind(*user.as_uuid())
    .bind(*conversation.tenant.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .context("loading a member")?;
    row.as_ref().map(rows::member).transpose()
}

/// Whether `member` may stop being an owner of `conversation` (read under
/// its lock): owners and members are counted up to two, all the rule needs.
async fn check_departure(
    tx: &mut PgConnection,
    conversation: &Conversation,
    member: &Member,
) -> Result<(), MembershipError> {
    if member.role != MemberRole::Owner {
        return Ok(());
    }
    let row = sqlx::query(
        "select \
             (select count(*) from (select 1 from conversation_members \
                 where conversation_id = $1 and role = 'owner' limit 2) as o) as owners, \
             (select count(*) from (select 1 from conversation_members \
                 where conversation_id = $1 limit 2) as m) as members",
    )
    .bind(*conversation.id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .context("counting owners and members")?;
    check_owner_departure(member.role, count(&row, "owners")?, count(&row, "members")?)?;
    Ok(())
}

/// `contents` as notices with the next seqs of `conversation` and the ids
/// of `notice_ids`, in order.
fn notices_after(
    conversation: &Conversation,
    notice_ids: &[MessageId],
    contents: Vec<SystemNotice>,
) -> Result<Vec<Notice>, MembershipError> {
    let mut seq = conversation.last_seq;
    Ok(notices_with_ids(notice_ids, contents.into_iter())?
        .into_iter()
        .map(|(id, notice)| {
            seq = seq.next();
            Notice { id, seq, notice }
        })
        .collect())
}

/// The least string above every string that starts with `prefix`, in code
/// point order; `None` when there is none.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{d7ff}' => Some('\u{e000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn count(row: &PgRow, column: &str) -> anyhow::Result<u64> {
    let n: i64 = row
        .try_get(column)
        .with_context(|| format!("reading {column}"))?;
    u64::try_from(n).with_context(|| format!("negative {column}"))
}

fn role(row: &PgRow) -> anyhow::Result<Option<MemberRole>> {
    let role: Option<String> = row.try_get("role").context("reading role")?;
    role.map(|r| {
        r.parse()
            .with_context(|| format!("unknown member role `{r}`"))
    })
    .transpose()
}

/// A change of the members of a channel, in `tx`.
async fn change_in(
    tx: &mut PgConnection,
    change: &MemberChange,
    at: DateTime<Utc>,
) -> Result<MemberChangeOutcome, MembershipError> {
    let conversation = lock_channel(tx, change.tenant, change.conversation_id).await?;
    let (changed, contents) = match &change.op {
        MemberOp::Add { users, role } => {
            let users: Vec<_> = distinct_users(users, None)
                .into_iter()
                .map(|u| (u, *role))
                .collect();
            let added = insert_members(tx, &conversation, &users, at).await?;
            let contents = added
                .iter()
                .map(|m| SystemNotice {
                    kind: NoticeKind::MemberAdded,
                    user: Some(m.user),
                    by: change.by,
                })
                .collect();
            (added, contents)
        }
        MemberOp::Remove { user } => {
            let member = find_member(tx, &conversation, *user)
                .await?
                .ok_or(MembershipError::MemberNotFound)?;
            check_departure(tx, &conversation, &member).await?;
            sqlx::query(
                "delete from conversation_members \
                     where conversation_id = $1 and user_id = $2 and tenant_id = $3",
            )
            .bind(*conversation.id.as_uuid())
            .bind(*user.as_uuid())
            .bind(*conversation.tenant.as_uuid())
            .execute(&mut *tx)
            .await
            .context("removing a member")?;
            let kind = if change.by == *user {
                NoticeKind::MemberLeft
            } else {
                NoticeKind::MemberRemoved
            };
            let notice = SystemNotice {
                kind,
                user: Some(*user),
                by: change.by,
            };
            (vec![member], vec![notice])
        }
        MemberOp::SetRole { user, role } => {
            let member = find_member(tx, &conversation, *user)
                .await?
                .ok_or(MembershipError::MemberNotFound)?;
            if *role != MemberRole::Owner {
                check_departure(tx, &conversation, &member).await?;
            }
            let row = sqlx::query(
                "update conversation_members set role = $4 \
                     where conversation_id = $1 and user_id = $2 and tenant_id = $3 \
                     returning user_id, role, joined_at",
            )
            .bind(*conversation.id.as_uuid())
            .bind(*user.as_uuid())
            .bind(*conversation.tenant.as_uuid())
            .bind(role.as_str())
            .fetch_one(&mut *tx)
            .await
            .context("changing a member's role")?;
            (vec![rows::member(&row)?], Vec::new())
        }
    };
    let notices = notices_after(&conversation, &change.notice_ids, contents)?;
    let Some(last) = notices.last().map(|n| n.seq) else {
        return Ok(MemberChangeOutcome {
            conversation,
            changed,
            notices: Vec::new(),
        });
    };
    let notices = insert_notices(tx, &conversation, &notices, at).await?;
    let conversation = record_notices(tx, &conversation, last, at).await?;
    Ok(MemberChangeOutcome {
        conversation,
        changed,
        notices,
    })
}

#[async_trait]
impl MembershipRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    async fn member_role(
        &self,
        tenant: TenantId,
        id: ConversationId,
        user: StaffUserId,
    ) -> Result<Option<MemberRole>, RepoError> {
        let row = sqlx::query(
            "select role from conversation_members \
             where conversation_id = $1 and user_id = $2 and tenant_id = $3",
        )
        .bind(*id.as_uuid())
        .bind(*user.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .context("loading a member's role")?;
        Ok(match row {
            Some(row) => role(&row)?,
            None => None,
        })
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    async fn member_ids(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Vec<StaffUserId>, RepoError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "select user_id from conversation_members \
             where conversation_id = $1 and tenant_id = $2",
        )
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_all(&self.pool)
        .await
        .context("listing member ids")?;
        Ok(ids.into_iter().map(StaffUserId::from_uuid).collect())
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversations = ids.len()), err(level = "debug"))]
    async fn membership_facts(
        &self,
        tenant: TenantId,
        ids: &[ConversationId],
        viewer: StaffUserId,
    ) -> Result<HashMap<ConversationId, MembershipFacts>, RepoError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        // One statement for the page; the conversation's tenant is checked
        // once, its members are read through their primary key.
        let found = sqlx::query(
            "select c.id, \
                 (select count(*) from conversation_members as m \
                     where m.conversation_id = c.id) as member_count, \
                 (select m.role from conversation_members as m \
                     where m.conversation_id = c.id and m.user_id = $3) as role, \
                 case when c.kind = 'direct' then array(select m.user_id \
                     from conversation_members as m where m.conversation_id = c.id \
                     order by m.user_id) else '{}'::uuid[] end as member_ids \
             from conversations as c \
             where c.id = any($1::uuid[]) and c.tenant_id = $2 \
             and c.kind in ('direct', 'channel')",
        )
        .bind(&ids)
        .bind(*tenant.as_uuid())
        .bind(*viewer.as_uuid())
        .fetch_all(&self.pool)
        .await
        .context("loading membership facts")?;
        found
            .iter()
            .map(|row| {
                let id: Uuid = row.try_get("id").context("reading id")?;
                let members: Vec<Uuid> = row.try_get("member_ids").context("reading member_ids")?;
                let mut member_ids: Vec<StaffUserId> =
                    members.into_iter().map(StaffUserId::from_uuid).collect();
                member_ids.sort();
                let facts = MembershipFacts {
                    member_count: count(row, "member_count")?,
                    role: role(row)?,
                    member_ids,
                };
                Ok((ConversationId::from_uuid(id), facts))
            })
            .collect::<anyhow::Result<_>>()
            .map_err(RepoError::from)
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %new.id, created), err(level = "debug"))]
    async fn get_or_create_direct(
        &self,
        new: &NewDirect,
    ) -> Result<(Conversation, bool), RepoError> {
        let tenant = *new.tenant.as_uuid();
        let key = new.members.key();
        for _ in 0..GET_OR_CREATE_ATTEMPTS {
            let mut tx = self
                .pool
                .begin()
                .await
                .context("starting a direct conversation")?;
            // `do nothing` waits for a concurrent insert of the same set to
            // commit (members and all), so the select below sees the
            // winner's row.
            let inserted = sqlx::query(&format!(
                "insert into conversations (id, tenant_id, kind, status, tags, last_seq, \
                     created_at, updated_at, last_activity_at, direct_key) \
                 values ($1, $2, 'direct', 'open', '{{}}', 0, $3, $3, $3, $4) \
                 on conflict (tenant_id, direct_key) where kind = 'direct' \
                 do nothing returning {CONVERSATION_COLUMNS}"
            ))
            .bind(*new.id.as_uuid())
            .bind(tenant)
            .bind(new.now)
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await
            .context("inserting a direct conversation")?;
            if let Some(row) = inserted {
                let conversation = rows::conversation(&row)?;
                let members: Vec<_> = new
                    .members
                    .ids()
                    .iter()
                    .map(|u| (*u, MemberRole::Member))
                    .collect();
                insert_members(&mut tx, &conversation, &members, conversation.created_at).await?;
                tx.commit()
                    .await
                    .context("committing a direct conversation")?;
                tracing::Span::current().record("created", true);
                return Ok((conversation, true));
            }
            tx.rollback()
                .await
                .context("ending a direct conversation that existed")?;
            let existing = sqlx::query(&format!(
                "select {CONVERSATION_COLUMNS} from conversations \
                 where tenant_id = $1 and kind = 'direct' and direct_key = $2"
            ))
            .bind(tenant)
            .bind(&key)
            .fetch_optional(&self.pool)
            .await
            .context("loading the existing direct conversation")?;
            if let Some(row) = existing {
                tracing::Span::current().record("created", false);
                return Ok((rows::conversation(&row)?, false));
            }
        }
        Err(anyhow::anyhow!("direct conversation kept conflicting without being readable").into())
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %new.id), err(level = "debug"))]
    async fn create_channel(
        &self,
        new: &NewChannel,
        notice_ids: &[MessageId],
    ) -> Result<(Conversation, Vec<Message>), MembershipError> {
        let now = rows::truncate(new.now);
        let members = distinct_users(&new.members, Some(new.owner));
        let mut prospective = new.prospective();
        let contents = members
            .iter()
            .map(|m| SystemNotice {
                kind: NoticeKind::MemberAdded,
                user: Some(*m),
                by: new.owner,
            })
            .collect();
        let notices = notices_after(&prospective, notice_ids, contents)?;
        prospective.last_seq = notices.last().map_or(Seq::ZERO, |n| n.seq);

        let mut tx = self.pool.begin().await.context("starting a channel")?;
        let row = sqlx::query(&format!(
            "insert into conversations (id, tenant_id, kind, status, tags, last_seq, \
                 created_at, updated_at, last_activity_at, visibility, name, name_folded, topic) \
             values ($1, $2, 'channel', 'open', '{{}}', $3, $4, $4, $4, $5, $6, $7, $8) \
             returning {CONVERSATION_COLUMNS}"
        ))
        .bind(*new.id.as_uuid())
        .bind(*new.tenant.as_uuid())
        .bind(prospective.last_seq.as_i64())
        .bind(now)
        .bind(new.visibility.as_str())
        .bind(new.profile.name.as_str())
        .bind(new.profile.name.folded())
        .bind(new.profile.topic.as_ref().map(|t| t.as_str()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| name_taken_or(err, "inserting a channel"))?;
        let channel = rows::conversation(&row)?;
        let everyone: Vec<_> = std::iter::once((new.owner, MemberRole::Owner))
            .chain(members.iter().map(|m| (*m, MemberRole::Member)))
            .collect();
        insert_members(&mut tx, &channel, &everyone, now).await?;
        let notices = insert_notices(&mut tx, &channel, &notices, now).await?;
        tx.commit().await.context("committing a channel")?;
        Ok((channel, notices))
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    async fn update_channel(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ChannelPatch,
        by: StaffUserId,
        notice_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<(Conversation, Message), MembershipError> {
        let at = rows::truncate(at);
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting a channel update")?;
        let mut channel = lock_channel(&mut tx, tenant, id).await?;
        let before = channel.clone();
        if !patch.apply(&mut channel, at) {
            return Err(MembershipError::ConversationNotFound);
        }
        let contents = vec![SystemNotice {
            kind: NoticeKind::ChannelUpdated,
            user: None,
            by,
        }];
        let notices = notices_after(&before, &[notice_id], contents)?;
        let profile = channel
            .channel
            .as_ref()
            .context("a channel without its profile")?;
        let visibility = channel
            .kind
            .visibility()
            .context("a channel without its visibility")?;
        let mut qb = QueryBuilder::<Postgres>::new("update conversations set name = ");
        qb.push_bind(profile.name.as_str());
        qb.push(", name_folded = ");
        qb.push_bind(profile.name.folded());
        qb.push(", topic = ");
        qb.push_bind(profile.topic.as_ref().map(|t| t.as_str()));
        qb.push(", visibility = ");
        qb.push_bind(visibility.as_str());
        qb.push(", archived_at = ");
        qb.push_bind(channel.kind.archived_at());
        qb.push(" where id = ");
        qb.push_bind(*id.as_uuid());
        qb.push(" and tenant_id = ");
        qb.push_bind(*tenant.as_uuid());
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(|err| name_taken_or(err, "updating a channel"))?;
        let mut posted = insert_notices(&mut tx, &before, &notices, at).await?;
        let last = notices.last().map_or(before.last_seq, |n| n.seq);
        let channel = record_notices(&mut tx, &before, last, at).await?;
        tx.commit().await.context("committing a channel update")?;
        let notice = posted.pop().context("the notice of a channel update")?;
        Ok((channel, notice))
    }

    #[tracing::instrument(
        skip_all,
        fields(conversation_id = %change.conversation_id, changed),
        err(level = "debug")
    )]
    async fn change_members(
        &self,
        change: &MemberChange,
    ) -> Result<MemberChangeOutcome, MembershipError> {
        let at = rows::truncate(change.at);
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting a membership change")?;
        // Dropping `tx` on a refusal rolls it back.
        let outcome = change_in(&mut tx, change, at).await?;
        tx.commit()
            .await
            .context("committing a membership change")?;
        tracing::Span::current().record("changed", outcome.changed.len());
        Ok(outcome)
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id, limit), err(level = "debug"))]
    async fn list_members(
        &self,
        tenant: TenantId,
        id: ConversationId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<MemberPage, RepoError> {
        let mut qb = QueryBuilder::<Postgres>::new(
            "select user_id, role, joined_at from conversation_members where conversation_id = ",
        );
        qb.push_bind(*id.as_uuid());
        qb.push(" and tenant_id = ");
        qb.push_bind(*tenant.as_uuid());
        if let Some(cursor) = &cursor {
            // A key that no page of ours ends with is a position after
            // nothing: an empty page.
            let Some(joined_at) = cursor.joined_at() else {
                return Ok(MemberPage::default());
            };
            qb.push(" and (joined_at, user_id) > (");
            qb.push_bind(joined_at);
            qb.push(", ");
            qb.push_bind(cursor.id);
            qb.push(")");
        }
        qb.push(" order by joined_at, user_id limit ");
        qb.push_bind(i64::from(limit) + 1);
        let found = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .context("listing members")?;
        let limit = usize::try_from(limit).context("page size does not fit in memory")?;
        let has_more = found.len() > limit;
        let members = found
            .iter()
            .take(limit)
            .map(rows::member)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next_cursor = if has_more {
            members.last().map(ListCursor::after_member)
        } else {
            None
        };
        Ok(MemberPage {
            members,
            next_cursor,
        })
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %query.tenant, limit = query.limit, items), err(level = "debug"))]
    async fn list_channels(&self, query: &ChannelListQuery) -> Result<ChannelPage, RepoError> {
        let prefix = query
            .prefix
            .as_deref()
            .map(str::to_lowercase)
            .filter(|p| !p.is_empty());
        if prefix.as_deref().is_some_and(|p| p.contains('\0')) {
            // No name holds a control character (and PostgreSQL text
            // cannot hold this one).
            return Ok(ChannelPage::default());
        }
        // One range of the name index, in list order; the member count is
        // computed for the rows of the page only.
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "select {C_CONVERSATION_COLUMNS}, c.name_folded, v.role, \
                 (select count(*) from conversation_members as n \
                     where n.conversation_id = c.id) as member_count \
             from conversations as c \
             left join lateral (select m.role from conversation_members as m \
                 where m.conversation_id = c.id and m.user_id = "
        ));
        qb.push_bind(*query.viewer.as_uuid());
        qb.push(" limit 1) as v on true where c.tenant_id = ");
        qb.push_bind(*query.tenant.as_uuid());
        qb.push(" and c.kind = 'channel' and (c.visibility = 'public' or v.role is not null)");
        match query.joined {
            Some(true) => {
                qb.push(" and v.role is not null");
            }
            Some(false) => {
                qb.push(" and v.role is null");
            }
            None => {}
        }
        if let Some(prefix) = &prefix {
            qb.push(" and c.name_folded >= ");
            qb.push_bind(prefix.clone());
            if let Some(end) = prefix_end(prefix) {
                qb.push(" and c.name_folded < ");
                qb.push_bind(end);
            }
        }
        if let Some(cursor) = &query.cursor {
            if cursor.key.contains('\0') {
                return Ok(ChannelPage::default());
            }
            // After (name, id); names are unique in the tenant, so the id
            // only matters for a cursor whose name was taken since.
            qb.push(" and c.name_folded >= ");
            qb.push_bind(cursor.key.clone());
            qb.push(" and (c.name_folded > ");
            qb.push_bind(cursor.key.clone());
            qb.push(" or c.id > ");
            qb.push_bind(cursor.id);
            qb.push(")");
        }
        // By name then id: the name alone, unique in the tenant, is the
        // order of the index, so the page stops after `limit` rows.
        qb.push(" order by c.name_folded limit ");
        qb.push_bind(i64::from(query.limit) + 1);
        let found = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .context("listing channels")?;
        let limit = usize::try_from(query.limit).context("page size does not fit in memory")?;
        let has_more = found.len() > limit;
        let mut channels = Vec::with_capacity(found.len().min(limit));
        let mut last_key = None;
        for row in found.iter().take(limit) {
            channels.push(ChannelListing {
                conversation: rows::conversation(row)?,
                member_count: count(row, "member_count")?,
                role: role(row)?,
            });
            let key: String = row.try_get("name_folded").context("reading name_folded")?;
            last_key = Some(key);
        }
        let next_cursor = match (has_more, last_key, channels.last()) {
            (true, Some(key), Some(last)) => Some(ListCursor {
                key,
                id: *last.conversation.id.as_uuid(),
            }),
            _ => None,
        };
        tracing::Span::current().record("items", channels.len());
        Ok(ChannelPage {
            channels,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_its_last_character_plus_one() {
        assert_eq!(prefix_end("al").as_deref(), Some("am"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10ffff}"), None);
        assert_eq!(prefix_end(""), None);
    }
}
