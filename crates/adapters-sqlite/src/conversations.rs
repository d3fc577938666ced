//! [`ConversationRepository`] for [`SqliteStore`]: conversations, their lists
//! with last message and unread count, and workflow updates.

use anyhow::Context;
use async_trait::async_trait;
use chat_app::{
    ConversationCursor, ConversationListQuery, ConversationPage, ConversationRepository,
    ConversationSummary, RepoError,
};
use chat_domain::{
    Conversation, ConversationId, ConversationPatch, ConversationScope, KindName,
    NewCustomerConversation, Sender, TenantId,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::attachments;
use crate::codec::{self, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use crate::SqliteStore;

/// Joins, onto conversations aliased `c`, the message with `seq = last_seq`
/// (a lookup in the `(conversation_id, seq)` index) and the reader's read
/// state (its primary key), so the unread count comes from the two markers
/// without touching message history. The reader's type and id are bound to
/// `?{reader}` and the parameter after it.
fn summary_joins(reader: usize) -> String {
    format!(
        "left join messages m \
             on m.conversation_id = c.id and m.seq = c.last_seq and m.tenant_id = c.tenant_id \
         left join read_states r \
             on r.conversation_id = c.id and r.reader_type = ?{reader} \
             and r.reader_id = ?{reader_id} and r.tenant_id = c.tenant_id",
        reader_id = reader + 1,
    )
}

/// The unread count of the joined reader.
const UNREAD: &str = "max(0, c.last_seq - coalesce(r.last_read_seq, 0))";

/// The customer conversations of a scope, one filter per index range to
/// scan, on conversations aliased `c`; `?1` is the tenant and `?2` the
/// clinician or customer. The `kind = 'customer'` term selects the partial
/// list indexes.
///
/// The inbox-and-clinician scope is two ranges of the
/// `(tenant_id, staff_user_id, ...)` indexes, queried apart and combined:
/// SQLite would otherwise read the whole tenant for the `or`.
fn scope_ranges(scope: &ConversationScope) -> &'static [&'static str] {
    match scope {
        ConversationScope::All { .. } => &["c.tenant_id = ?1 and c.kind = 'customer'"],
        ConversationScope::InboxAndClinician { .. } => &[
            "c.tenant_id = ?1 and c.kind = 'customer' and c.staff_user_id is null",
            "c.tenant_id = ?1 and c.kind = 'customer' and c.staff_user_id = ?2",
        ],
        ConversationScope::Customer { .. } => {
            &["c.tenant_id = ?1 and c.kind = 'customer' and c.customer_id = ?2"]
        }
    }
}

/// The value bound to `?2` for a scope.
fn scope_value(scope: &ConversationScope) -> Option<Uuid> {
    match scope {
        ConversationScope::All { .. } => None,
        ConversationScope::InboxAndClinician { clinician, .. } => Some(*clinician.as_uuid()),
        ConversationScope::Customer { customer_id, .. } => Some(*customer_id.as_uuid()),
    }
}

/// Which conversations a list or an unread total reads: the customer
/// conversations of the scope, and the staff conversations (direct and
/// channels) its staff reader is a member of, never those they are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reach {
    /// The scope's customer conversations.
    customers: bool,
    /// The reader's memberships, with the kind term that filters them
    /// (empty for every kind).
    members: Option<&'static str>,
}

impl Reach {
    /// What `reader` reads of `scope`, of `kind` only when given.
    pub(crate) fn of(scope: &ConversationScope, reader: Sender, kind: Option<KindName>) -> Self {
        let staff = matches!(reader, Sender::Staff(_))
            && !matches!(scope, ConversationScope::Customer { .. });
        let members = match kind {
            _ if !staff => None,
            None => Some(""),
            Some(KindName::Customer) => None,
            Some(KindName::Direct) => Some(" and c.kind = 'direct'"),
            Some(KindName::Channel) => Some(" and c.kind = 'channel'"),
        };
        Self {
            customers: matches!(kind, None | Some(KindName::Customer)),
            members,
        }
    }

    /// Every reach, for checking query plans.
    #[cfg(test)]
    pub(crate) fn all() -> [Self; 4] {
        [
            Self {
                customers: true,
                members: None,
            },
            Self {
                customers: true,
                members: Some(""),
            },
            Self {
                customers: false,
                members: Some(" and c.kind = 'direct'"),
            },
            Self {
                customers: false,
                members: None,
            },
        ]
    }

    /// Whether it reads the reader's memberships.
    #[cfg(test)]
    pub(crate) const fn has_members(&self) -> bool {
        self.members.is_some()
    }

    /// Whether it reads the scope's customer conversations.
    #[cfg(test)]
    pub(crate) const fn has_customers(&self) -> bool {
        self.customers
    }

    /// Whether it reads nothing at all (a customer asking for staff kinds).
    pub(crate) const fn is_empty(&self) -> bool {
        !self.customers && self.members.is_none()
    }

    /// The `from` and `where` of each index range to read, on conversations
    /// aliased `c`: the scope's ranges, then the reader's memberships (the
    /// staff reader's id bound to `?{reader}`), found in
    /// `conversation_members` by user and then each conversation by id.
    fn ranges(&self, scope: &ConversationScope, reader: usize) -> Vec<(&'static str, String)> {
        let mut ranges = Vec::new();
        if self.customers {
            ranges.extend(
                scope_ranges(scope)
                    .iter()
                    .map(|range| ("conversations c", (*range).to_owned())),
            );
        }
        if let Some(kind) = self.members {
            ranges.push((
                "conversation_members cm join conversations c \
                     on c.id = cm.conversation_id and c.tenant_id = cm.tenant_id",
                format!("cm.tenant_id = ?1 and cm.user_id = ?{reader}{kind}"),
            ));
        }
        ranges
    }
}

/// The list query (for a reach that is not empty): every range of the
/// reach read in list order from the
/// keyset position, at most `?6` rows each, merged, then joined to the last
/// message and read state. A range of memberships sorts the reader's
/// conversations (a staff member belongs to a bounded number of them);
/// the others come in index order.
///
/// Binds: `?1` tenant, `?2` scope value, `?3` status, `?4`/`?5` cursor time
/// and id, `?6` rows to fetch, `?7`/`?8` reader.
pub(crate) fn list_sql(
    scope: &ConversationScope,
    reach: Reach,
    status: bool,
    cursor: bool,
) -> String {
    let mut filters = String::new();
    if status {
        filters.push_str(" and c.status = ?3");
    }
    if cursor {
        filters.push_str(" and (c.last_activity_at, c.id) < (?4, ?5)");
    }
    let ranges: Vec<String> = reach
        .ranges(scope, 8)
        .iter()
        .map(|(from, range)| {
            format!(
                "select * from (select c.* from {from} where {range}{filters} \
                 order by c.last_activity_at desc, c.id desc limit ?6)"
            )
        })
        .collect();
    format!(
        "with page as ({ranges}) \
         select {CONVERSATION_COLUMNS}, {MESSAGE_COLUMNS}, {UNREAD} as unread_count \
         from page c {joins} \
         order by c.last_activity_at desc, c.id desc limit ?6",
        ranges = ranges.join(" union all "),
        joins = summary_joins(7),
    )
}

/// One conversation with its summary. Binds: `?1` tenant, `?2` id, `?3`/`?4`
/// reader.
pub(crate) fn summary_sql() -> String {
    format!(
        "select {CONVERSATION_COLUMNS}, {MESSAGE_COLUMNS}, {UNREAD} as unread_count \
         from conversations c {joins} \
         where c.tenant_id = ?1 and c.id = ?2",
        joins = summary_joins(3),
    )
}

/// The sum of unread counts over what a reader reads of a scope (a reach
/// that is not empty), one index range at a time. Binds: `?1` tenant, `?2` scope value, `?3`/`?4` reader.
pub(crate) fn unread_sql(scope: &ConversationScope, reach: Reach) -> String {
    let ranges: Vec<String> = reach
        .ranges(scope, 4)
        .iter()
        .map(|(from, range)| {
            format!(
                "select {UNREAD} as unread from {from} \
                 left join read_states r \
                     on r.conversation_id = c.id and r.reader_type = ?3 \
                     and r.reader_id = ?4 and r.tenant_id = c.tenant_id \
                 where {range}"
            )
        })
        .collect();
    format!(
        "select coalesce(sum(unread), 0) from ({})",
        ranges.join(" union all ")
    )
}

/// The customer conversation of a key. Binds: `?1` tenant, `?2` customer,
/// `?3` clinician.
pub(crate) fn customer_key_sql() -> String {
    format!(
        "select {CONVERSATION_COLUMNS} from conversations c \
         where c.tenant_id = ?1 and c.kind = 'customer' and c.customer_id = ?2 \
         and coalesce(c.staff_user_id, x'') = coalesce(?3, x'')"
    )
}

fn summary(row: &SqliteRow) -> anyhow::Result<ConversationSummary> {
    Ok(ConversationSummary {
        membership: None,
        conversation: codec::conversation(row)?,
        last_message: codec::optional_message(row)?,
        unread_count: codec::unread_count(row)?,
    })
}

/// One conversation of a tenant. Binds: `?1` tenant, `?2` id.
pub(crate) fn find_sql() -> String {
    format!(
        "select {CONVERSATION_COLUMNS} from conversations c where c.tenant_id = ?1 and c.id = ?2"
    )
}

#[async_trait]
impl ConversationRepository for SqliteStore {
    #[tracing::instrument(skip_all, fields(tenant_id = %new.tenant), err(level = "debug"))]
    async fn get_or_create_customer(
        &self,
        new: &NewCustomerConversation,
    ) -> Result<(Conversation, bool), RepoError> {
        let mut tx = self.begin_write().await?;
        // Conflicts on the (tenant, customer, clinician) key leave the
        // existing row alone; the select below then returns it.
        let created = sqlx::query(
            "insert into conversations (id, tenant_id, kind, customer_id, staff_user_id, \
                 status, tags, last_seq, created_at, updated_at, last_activity_at) \
             values (?1, ?2, 'customer', ?3, ?4, 'open', '[]', 0, ?5, ?5, ?5) \
             on conflict do nothing",
        )
        .bind(*new.id.as_uuid())
        .bind(*new.tenant.as_uuid())
        .bind(*new.customer_id.as_uuid())
        .bind(new.clinician.map(Uuid::from))
        .bind(codec::micros(new.now))
        .execute(&mut *tx)
        .await
        .context("inserting customer conversation")?
        .rows_affected()
            == 1;
        let row = sqlx::query(&customer_key_sql())
            .bind(*new.tenant.as_uuid())
            .bind(*new.customer_id.as_uuid())
            .bind(new.clinician.map(Uuid::from))
            .fetch_optional(&mut *tx)
            .await
            .context("selecting customer conversation")?
            // Only an id collision with a conversation of another key gets here.
            .with_context(|| format!("conversation id {} is already taken", new.id))?;
        let conversation = codec::conversation(&row)?;
        tx.commit()
            .await
            .context("committing customer conversation")?;
        if created {
            tracing::info!(conversation_id = %conversation.id, "conversation created");
        }
        Ok((conversation, created))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn find(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Option<Conversation>, RepoError> {
        let row = sqlx::query(&find_sql())
            .bind(*tenant.as_uuid())
            .bind(*id.as_uuid())
            .fetch_optional(&self.read)
            .await
            .context("selecting conversation")?;
        Ok(row.as_ref().map(codec::conversation).transpose()?)
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn find_summary(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
    ) -> Result<Option<ConversationSummary>, RepoError> {
        let row = sqlx::query(&summary_sql())
            .bind(*tenant.as_uuid())
            .bind(*id.as_uuid())
            .bind(reader.kind())
            .bind(codec::reader_id(reader))
            .fetch_optional(&self.read)
            .await
            .context("selecting conversation summary")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = [summary(&row)?];
        attachments::load_into_summaries(&self.read, tenant, &mut found).await?;
        let [found] = found;
        Ok(Some(found))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %query.scope.tenant()), err(level = "debug"))]
    async fn list_conversations(
        &self,
        query: &ConversationListQuery,
    ) -> Result<ConversationPage, RepoError> {
        let limit = usize::try_from(query.limit).context("page size overflows usize")?;
        let reach = Reach::of(&query.scope, query.reader, query.kind);
        if reach.is_empty() {
            return Ok(ConversationPage::default());
        }
        let rows = sqlx::query(&list_sql(
            &query.scope,
            reach,
            query.status.is_some(),
            query.cursor.is_some(),
        ))
        .bind(*query.scope.tenant().as_uuid())
        .bind(scope_value(&query.scope))
        .bind(query.status.map(|s| s.as_str()))
        .bind(query.cursor.map(|c| codec::micros(c.last_activity_at)))
        .bind(query.cursor.map(|c| *c.id.as_uuid()))
        .bind(i64::from(query.limit) + 1)
        .bind(query.reader.kind())
        .bind(codec::reader_id(query.reader))
        .fetch_all(&self.read)
        .await
        .context("listing conversations")?;
        let mut items = rows
            .iter()
            .map(summary)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|item| ConversationCursor {
                last_activity_at: item.conversation.last_activity_at,
                id: item.conversation.id,
            })
        } else {
            None
        };
        attachments::load_into_summaries(&self.read, query.scope.tenant(), &mut items).await?;
        Ok(ConversationPage { items, next_cursor })
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, conversation_id = %id), err(level = "debug"))]
    async fn update(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ConversationPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Conversation>, RepoError> {
        let tags = patch.tags.as_ref().map(codec::tags_json).transpose()?;
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "update conversations set \
                 status = coalesce(?3, status), \
                 assignee_id = case when ?4 then ?5 else assignee_id end, \
                 tags = coalesce(?6, tags), \
                 updated_at = ?7 \
             where tenant_id = ?1 and id = ?2",
        )
        .bind(*tenant.as_uuid())
        .bind(*id.as_uuid())
        .bind(patch.status.map(|s| s.as_str()))
        .bind(patch.assignee.is_some())
        .bind(patch.assignee.flatten().map(Uuid::from))
        .bind(tags)
        .bind(codec::micros(now))
        .execute(&mut *tx)
        .await
        .context("updating conversation")?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let row = sqlx::query(&find_sql())
            .bind(*tenant.as_uuid())
            .bind(*id.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .context("selecting updated conversation")?;
        let conversation = codec::conversation(&row)?;
        tx.commit()
            .await
            .context("committing conversation update")?;
        Ok(Some(conversation))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %scope.tenant()), err(level = "debug"))]
    async fn unread_total(
        &self,
        scope: ConversationScope,
        reader: Sender,
    ) -> Result<u64, RepoError> {
        let total: i64 = sqlx::query_scalar(&unread_sql(&scope, Reach::of(&scope, reader, None)))
            .bind(*scope.tenant().as_uuid())
            .bind(scope_value(&scope))
            .bind(reader.kind())
            .bind(codec::reader_id(reader))
            .fetch_one(&self.read)
            .await
            .context("summing unread counts")?;
        Ok(u64::try_from(total).with_context(|| format!("unread total {total} is negative"))?)
    }
}
