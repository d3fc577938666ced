//! [`ConversationRepository`] for [`PostgresStore`]: get-or-create, lookups,
//! keyset-paginated lists with last message and unread count, patches.

use anyhow::Context as _;
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
use sqlx::{Postgres, QueryBuilder};

use crate::attachments;
use crate::rows::{
    self, CONVERSATION_COLUMNS, C_CONVERSATION_COLUMNS, LAST_MESSAGE_SELECT, MESSAGE_COLUMNS,
};
use crate::PostgresStore;

/// How often get-or-create retries when the row it conflicted with is gone
/// by the time it reads it (only a concurrent delete can cause that).
const GET_OR_CREATE_ATTEMPTS: usize = 3;

/// Builds a summary query: the conversation rows come from the subquery that
/// `page` pushes (selecting [`CONVERSATION_COLUMNS`]); each gets its last
/// message and `reader`'s unread count through index lookups, never a scan of
/// the history.
///
/// The `limit 1` of the lateral lookups (both are unique anyway) keeps the
/// planner from flattening them into joins: with a generic plan of the
/// prepared statement it would otherwise hash-join all of the reader's read
/// states instead of probing one row per listed conversation.
fn summaries<'a>(
    reader: Sender,
    page: impl FnOnce(&mut QueryBuilder<'a, Postgres>),
) -> QueryBuilder<'a, Postgres> {
    let mut qb = QueryBuilder::new(format!(
        "select c.*, {LAST_MESSAGE_SELECT}, \
         greatest(0, c.last_seq - coalesce(r.last_read_seq, 0)) as unread_count from ("
    ));
    page(&mut qb);
    qb.push(format!(
        ") as c \
         left join lateral (select {MESSAGE_COLUMNS} from messages \
             where messages.conversation_id = c.id and messages.seq = c.last_seq \
             and messages.tenant_id = c.tenant_id limit 1) as m on true \
         left join lateral (select read_states.last_read_seq from read_states \
             where read_states.conversation_id = c.id and read_states.tenant_id = c.tenant_id \
             and read_states.reader_type = "
    ));
    qb.push_bind(reader.kind());
    qb.push(" and read_states.reader_id = ");
    qb.push_bind(rows::reader_id(reader));
    qb.push(" limit 1) as r on true order by c.last_activity_at desc, c.id desc");
    qb
}

/// Which rows of the tenant one branch of a list reads.
#[derive(Clone, Copy)]
enum Branch {
    /// Every customer conversation of the tenant.
    Tenant,
    /// The shared inbox: customer conversations without a clinician.
    Inbox,
    /// One clinician's private threads.
    Clinician(uuid::Uuid),
    /// One customer's conversations.
    Customer(uuid::Uuid),
    /// The direct conversations and channels (or only those of one kind)
    /// one staff member belongs to.
    Member(uuid::Uuid, Option<KindName>),
}

/// The branches of a list: the customer conversations of `scope` and, for
/// a staff reader outside a customer's scope, the staff conversations they
/// are a member of; `kind` keeps only the branches that can hold it.
fn branches(scope: ConversationScope, reader: Sender, kind: Option<KindName>) -> Vec<Branch> {
    let mut branches = Vec::with_capacity(3);
    if matches!(kind, None | Some(KindName::Customer)) {
        match scope {
            ConversationScope::All { .. } => branches.push(Branch::Tenant),
            ConversationScope::InboxAndClinician { clinician, .. } => {
                branches.push(Branch::Inbox);
                branches.push(Branch::Clinician(*clinician.as_uuid()));
            }
            ConversationScope::Customer { customer_id, .. } => {
                branches.push(Branch::Customer(*customer_id.as_uuid()));
            }
        }
    }
    let member = match (scope, reader) {
        (ConversationScope::Customer { .. }, _) => None,
        (_, Sender::Staff(user)) => Some(*user.as_uuid()),
        (_, Sender::Customer(_) | Sender::System) => None,
    };
    if let (Some(user), None | Some(KindName::Direct | KindName::Channel)) = (member, kind) {
        branches.push(Branch::Member(user, kind));
    }
    branches
}

/// Pushes the `from` and `where` of one branch over `conversations as c`
/// (selecting nothing: the caller pushes the select list first).
fn push_branch_rows(qb: &mut QueryBuilder<'_, Postgres>, tenant: TenantId, branch: Branch) {
    match branch {
        Branch::Member(user, kind) => {
            // The member's rows of one index range, each conversation by its
            // primary key.
            qb.push(
                " from conversation_members as cm \
                 join conversations as c on c.id = cm.conversation_id \
                 where cm.tenant_id = ",
            );
            qb.push_bind(*tenant.as_uuid());
            qb.push(" and cm.user_id = ");
            qb.push_bind(user);
            qb.push(" and c.tenant_id = ");
            qb.push_bind(*tenant.as_uuid());
            match kind {
                Some(kind) => {
                    qb.push(" and c.kind = ");
                    qb.push_bind(kind.as_str());
                }
                None => {
                    qb.push(" and c.kind in ('direct', 'channel')");
                }
            }
        }
        Branch::Tenant | Branch::Inbox | Branch::Clinician(_) | Branch::Customer(_) => {
            qb.push(" from conversations as c where c.tenant_id = ");
            qb.push_bind(*tenant.as_uuid());
            qb.push(" and c.kind = 'customer'");
            match branch {
                Branch::Inbox => {
                    qb.push(" and c.staff_user_id is null");
                }
                Branch::Clinician(clinician) => {
                    qb.push(" and c.staff_user_id = ");
                    qb.push_bind(clinician);
                }
                Branch::Customer(customer) => {
                    qb.push(" and c.customer_id = ");
                    qb.push_bind(customer);
                }
                Branch::Tenant | Branch::Member(..) => {}
            }
        }
    }
}

/// Pushes one ordered, limited select of a list page. Each customer branch
/// is one range of an index in list order, so it stops after `limit` rows;
/// the member branch reads the member's conversations through their
/// memberships.
fn push_branch(
    qb: &mut QueryBuilder<'_, Postgres>,
    tenant: TenantId,
    branch: Branch,
    query: &ConversationListQuery,
) {
    qb.push(format!("select {C_CONVERSATION_COLUMNS}"));
    push_branch_rows(qb, tenant, branch);
    if let Some(status) = query.status {
        qb.push(" and c.status = ");
        qb.push_bind(status.as_str());
    }
    if let Some(cursor) = query.cursor {
        push_after_cursor(qb, cursor);
    }
    qb.push(" order by c.last_activity_at desc, c.id desc limit ");
    qb.push_bind(page_fetch(query.limit));
}

/// Rows strictly after `cursor` in list order (activity desc, id desc).
fn push_after_cursor(qb: &mut QueryBuilder<'_, Postgres>, cursor: ConversationCursor) {
    qb.push(" and (c.last_activity_at, c.id) < (");
    qb.push_bind(cursor.last_activity_at);
    qb.push(", ");
    qb.push_bind(*cursor.id.as_uuid());
    qb.push(")");
}

/// One row more than the page, to know whether another page follows.
fn page_fetch(limit: u32) -> i64 {
    i64::from(limit) + 1
}

/// Pushes the `where` conditions of the customer conversations of `scope`
/// on `conversations as c` (after the tenant condition).
fn push_scope_filter(qb: &mut QueryBuilder<'_, Postgres>, scope: ConversationScope) {
    qb.push(" and c.kind = 'customer'");
    match scope {
        ConversationScope::All { .. } => {}
        ConversationScope::InboxAndClinician { clinician, .. } => {
            qb.push(" and (c.staff_user_id is null or c.staff_user_id = ");
            qb.push_bind(*clinician.as_uuid());
            qb.push(")");
        }
        ConversationScope::Customer { customer_id, .. } => {
            qb.push(" and c.customer_id = ");
            qb.push_bind(*customer_id.as_uuid());
        }
    }
}

#[async_trait]
impl ConversationRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(conversation_id = %new.id, created), err(level = "debug"))]
    async fn get_or_create_customer(
        &self,
        new: &NewCustomerConversation,
    ) -> Result<(Conversation, bool), RepoError> {
        let tenant = *new.tenant.as_uuid();
        let customer = *new.customer_id.as_uuid();
        let clinician = new.clinician.map(|c| *c.as_uuid());
        for _ in 0..GET_OR_CREATE_ATTEMPTS {
            // `do nothing` waits for a concurrent insert of the same key to
            // commit, so the select below sees the winner's row.
            let inserted = sqlx::query(&format!(
                "insert into conversations (id, tenant_id, kind, customer_id, staff_user_id, \
                     status, tags, last_seq, created_at, updated_at, last_activity_at) \
                 values ($1, $2, 'customer', $3, $4, 'open', '{{}}', 0, $5, $5, $5) \
                 on conflict (tenant_id, customer_id, staff_user_id) where kind = 'customer' \
                 do nothing returning {CONVERSATION_COLUMNS}"
            ))
            .bind(*new.id.as_uuid())
            .bind(tenant)
            .bind(customer)
            .bind(clinician)
            .bind(new.now)
            .fetch_optional(&self.pool)
            .await
            .context("inserting a customer conversation")?;
            if let Some(row) = inserted {
                tracing::Span::current().record("created", true);
                return Ok((rows::conversation(&row)?, true));
            }
            let existing = sqlx::query(&format!(
                "select {CONVERSATION_COLUMNS} from conversations \
                 where tenant_id = $1 and kind = 'customer' and customer_id = $2 \
                 and staff_user_id is not distinct from $3"
            ))
            .bind(tenant)
            .bind(customer)
            .bind(clinician)
            .fetch_optional(&self.pool)
            .await
            .context("loading the existing customer conversation")?;
            if let Some(row) = existing {
                tracing::Span::current().record("created", false);
                return Ok((rows::conversation(&row)?, false));
            }
        }
        Err(anyhow::anyhow!("customer conversation kept conflicting without being readable").into())
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    async fn find(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Option<Conversation>, RepoError> {
        let row = sqlx::query(&format!(
            "select {CONVERSATION_COLUMNS} from conversations where id = $1 and tenant_id = $2"
        ))
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .context("loading a conversation")?;
        Ok(row.as_ref().map(rows::conversation).transpose()?)
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    async fn find_summary(
        &self,
        tenant: TenantId,
        id: ConversationId,
        reader: Sender,
    ) -> Result<Option<ConversationSummary>, RepoError> {
        let mut qb = summaries(reader, |qb| {
            qb.push(format!(
                "select {CONVERSATION_COLUMNS} from conversations where id = "
            ));
            qb.push_bind(*id.as_uuid());
            qb.push(" and tenant_id = ");
            qb.push_bind(*tenant.as_uuid());
        });
        let row = qb
            .build()
            .fetch_optional(&self.pool)
            .await
            .context("loading a conversation summary")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut summary = [rows::summary(&row)?];
        attachments::load_into_summaries(&self.pool, tenant, &mut summary).await?;
        let [summary] = summary;
        Ok(Some(summary))
    }

    #[tracing::instrument(
        skip_all,
        fields(tenant_id = %query.scope.tenant(), limit = query.limit, items),
        err(level = "debug")
    )]
    async fn list_conversations(
        &self,
        query: &ConversationListQuery,
    ) -> Result<ConversationPage, RepoError> {
        let tenant = query.scope.tenant();
        let branches = branches(query.scope, query.reader, query.kind);
        if branches.is_empty() {
            tracing::Span::current().record("items", 0);
            return Ok(ConversationPage::default());
        }
        let mut qb = summaries(query.reader, |qb| {
            if let [branch] = branches[..] {
                push_branch(qb, tenant, branch, query);
                return;
            }
            // Index ranges merged in list order, instead of one `or` that
            // would have to sort the whole scope.
            for (i, branch) in branches.iter().enumerate() {
                qb.push(if i == 0 { "(" } else { ") union all (" });
                push_branch(qb, tenant, *branch, query);
            }
            qb.push(") order by last_activity_at desc, id desc limit ");
            qb.push_bind(page_fetch(query.limit));
        });
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .context("listing conversations")?;
        let limit = usize::try_from(query.limit).context("page size does not fit in memory")?;
        let has_more = rows.len() > limit;
        let mut items = rows
            .iter()
            .take(limit)
            .map(rows::summary)
            .collect::<anyhow::Result<Vec<_>>>()?;
        attachments::load_into_summaries(&self.pool, tenant, &mut items).await?;
        let next_cursor = if has_more {
            items.last().map(|item| ConversationCursor {
                last_activity_at: item.conversation.last_activity_at,
                id: item.conversation.id,
            })
        } else {
            None
        };
        tracing::Span::current().record("items", items.len());
        Ok(ConversationPage { items, next_cursor })
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    async fn update(
        &self,
        tenant: TenantId,
        id: ConversationId,
        patch: &ConversationPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Conversation>, RepoError> {
        let mut qb = QueryBuilder::<Postgres>::new("update conversations set updated_at = ");
        qb.push_bind(now);
        if let Some(status) = patch.status {
            qb.push(", status = ");
            qb.push_bind(status.as_str());
        }
        if let Some(assignee) = patch.assignee {
            qb.push(", assignee_id = ");
            qb.push_bind(assignee.map(|a| *a.as_uuid()));
        }
        if let Some(tags) = &patch.tags {
            qb.push(", tags = ");
            qb.push_bind(tags.to_strings());
        }
        qb.push(" where id = ");
        qb.push_bind(*id.as_uuid());
        qb.push(" and tenant_id = ");
        qb.push_bind(*tenant.as_uuid());
        qb.push(format!(" returning {CONVERSATION_COLUMNS}"));
        let row = qb
            .build()
            .fetch_optional(&self.pool)
            .await
            .context("updating a conversation")?;
        Ok(row.as_ref().map(rows::conversation).transpose()?)
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %scope.tenant()), err(level = "debug"))]
    async fn unread_total(
        &self,
        scope: ConversationScope,
        reader: Sender,
    ) -> Result<u64, RepoError> {
        let tenant = scope.tenant();
        // The customer conversations of the scope in one pass over the
        // tenant's rows in scope, and the reader's staff conversations.
        let mut qb = QueryBuilder::<Postgres>::new(
            "select coalesce(sum(greatest(0, c.last_seq - coalesce(r.last_read_seq, 0))), 0)::bigint \
                 as total from (select c.id, c.tenant_id, c.last_seq \
                 from conversations as c where c.tenant_id = ",
        );
        qb.push_bind(*tenant.as_uuid());
        push_scope_filter(&mut qb, scope);
        // Conversations without messages cannot add to the total.
        qb.push(" and c.last_seq > 0");
        let member = branches(scope, reader, None)
            .into_iter()
            .find(|b| matches!(b, Branch::Member(..)));
        if let Some(member) = member {
            qb.push(" union all select c.id, c.tenant_id, c.last_seq");
            push_branch_rows(&mut qb, tenant, member);
            qb.push(" and c.last_seq > 0");
        }
        // The tenant is given again for the read states: the planner does
        // not carry it through the union to reach the reader's index.
        qb.push(
            ") as c \
             left join read_states as r on r.conversation_id = c.id and r.tenant_id = ",
        );
        qb.push_bind(*tenant.as_uuid());
        qb.push(" and r.reader_type = ");
        qb.push_bind(reader.kind());
        qb.push(" and r.reader_id = ");
        qb.push_bind(rows::reader_id(reader));
        let total: i64 = qb
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .context("summing unread counts")?;
        Ok(u64::try_from(total).context("negative unread total")?)
    }
}
