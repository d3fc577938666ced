//! Checks that every query path is served by an index, as `explain query
//! plan` reports it: no table scan anywhere, and no sort except the final
//! one of a list page over its already limited rows.

use chat_app::MessageCursor;
use chat_domain::{ConversationScope, CustomerId, Seq, StaffUserId, TenantId};

use crate::append::{
    advance_senders_sql, bump_conversations_sql, find_originals_sql, find_reply_targets_sql,
    insert_messages_sql, load_conversations_sql,
};
use crate::attachments;
use crate::conversations::{customer_key_sql, find_sql, list_sql, summary_sql, unread_sql, Reach};
use crate::membership::{channels_sql, direct_members_sql, facts_sql, members_sql};
use crate::messages::page_sql;
use crate::SqliteStore;

/// One `explain query plan` row: its id, its parent's id and its text.
type PlanRow = (i64, i64, String);

async fn plan(store: &SqliteStore, sql: &str) -> Vec<PlanRow> {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("explain query plan {sql}"))
        .fetch_all(&store.read)
        .await
        .unwrap_or_else(|err| panic!("explaining {sql}: {err}"));
    rows.into_iter()
        .map(|(id, parent, _, detail)| (id, parent, detail))
        .collect()
}

/// Which sorts a query may do besides reading by index.
#[derive(Clone, Copy, PartialEq)]
enum Sorts {
    /// None: the index delivers rows in order.
    None,
    /// A list page's: what its ranges returned (at most `limit + 1` rows
    /// each), but not inside a range.
    OfPage,
    /// Any: a list that reads a staff member's memberships sorts their
    /// conversations (a bounded number) inside that range.
    Any,
}

/// The plan rows that read a whole table, or sort rows an index should have
/// delivered in order.
fn costly(rows: &[PlanRow], sorts: Sorts) -> Vec<&PlanRow> {
    let in_range = |parent: i64| {
        rows.iter()
            .any(|(id, _, detail)| *id == parent && detail.starts_with("CO-ROUTINE"))
    };
    rows.iter()
        .filter(|(_, parent, detail)| {
            let scan = detail.starts_with("SCAN ") && !detail.starts_with("SCAN (subquery");
            let sort = detail.starts_with("USE TEMP B-TREE")
                && match sorts {
                    Sorts::None => true,
                    Sorts::OfPage => in_range(*parent),
                    Sorts::Any => false,
                };
            scan || sort
        })
        .collect()
}

fn scopes() -> [ConversationScope; 3] {
    let tenant = TenantId::new_v4();
    [
        ConversationScope::All { tenant },
        ConversationScope::InboxAndClinician {
            tenant,
            clinician: StaffUserId::new_v4(),
        },
        ConversationScope::Customer {
            tenant,
            customer_id: CustomerId::new_v4(),
        },
    ]
}

#[tokio::test]
async fn every_query_path_uses_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&dir.path().join("chat.db"))
        .await
        .unwrap();

    for (scope, reach) in scopes()
        .into_iter()
        .flat_map(|scope| Reach::all().map(move |reach| (scope, reach)))
        .filter(|(_, reach)| !reach.is_empty())
    {
        for status in [false, true] {
            for cursor in [false, true] {
                let sql = list_sql(&scope, reach, status, cursor);
                let rows = plan(&store, &sql).await;
                let sorts = if reach.has_members() {
                    Sorts::Any
                } else {
                    Sorts::OfPage
                };
                assert!(costly(&rows, sorts).is_empty(), "{sql}\n{rows:#?}");
                if reach.has_members() {
                    assert!(
                        rows.iter().any(|(_, _, detail)| detail.starts_with(
                            "SEARCH cm USING COVERING INDEX conversation_members_user_idx"
                        )),
                        "{sql}\n{rows:#?}"
                    );
                }
                // Each range is one index range: the scope's equality terms,
                // the status (a customer's few rows are filtered) and the
                // keyset position all bound the search.
                let mut terms = vec!["tenant_id=?"];
                match scope {
                    ConversationScope::All { .. } => {}
                    ConversationScope::InboxAndClinician { .. } => terms.push("staff_user_id=?"),
                    ConversationScope::Customer { .. } => terms.push("customer_id=?"),
                }
                if status && !matches!(scope, ConversationScope::Customer { .. }) {
                    terms.push("status=?");
                }
                if cursor {
                    terms.push("(last_activity_at,id)<(?,?)");
                }
                let searches: Vec<_> = rows
                    .iter()
                    .filter(|(_, _, detail)| {
                        detail.starts_with("SEARCH c ") && !detail.ends_with("(id=?)")
                    })
                    .collect();
                assert_eq!(
                    searches.is_empty(),
                    !reach.has_customers(),
                    "{sql}\n{rows:#?}"
                );
                for (_, _, detail) in searches {
                    for term in &terms {
                        assert!(detail.contains(term), "{term} in {detail}\n{sql}");
                    }
                }
            }
        }
    }

    let mut lookups = vec![find_sql(), summary_sql(), customer_key_sql()];
    lookups.extend([
        attachments::find_sql(),
        attachments::orphans_sql(),
        attachments::deleted_sql(),
        attachments::own_upload_sql(),
        attachments::of_messages_sql(1),
        attachments::of_messages_sql(50),
    ]);
    lookups.extend(scopes().iter().flat_map(|scope| {
        Reach::all()
            .into_iter()
            .filter(|reach| !reach.is_empty())
            .map(|reach| unread_sql(scope, reach))
    }));
    lookups.extend([facts_sql(3), direct_members_sql(3)]);
    lookups.extend([false, true].map(members_sql));
    for joined in [None, Some(true), Some(false)] {
        for prefix in [false, true] {
            for cursor in [false, true] {
                lookups.push(channels_sql(joined, prefix, cursor));
            }
        }
    }
    for cursor in [
        MessageCursor::Latest,
        MessageCursor::Before(Seq::ZERO),
        MessageCursor::After(Seq::ZERO),
    ] {
        lookups.push(page_sql(cursor));
    }
    for sql in lookups {
        let rows = plan(&store, &sql).await;
        assert!(costly(&rows, Sorts::None).is_empty(), "{sql}\n{rows:#?}");
        assert!(
            rows.iter()
                .any(|(_, _, detail)| detail.starts_with("SEARCH")),
            "{sql}\n{rows:#?}"
        );
    }
    store.close().await;
}

/// The plan rows of an append step that read something other than the
/// step's own rows (its `values` list) whole.
fn scans_beyond_own_rows(rows: &[PlanRow]) -> Vec<&PlanRow> {
    rows.iter()
        .filter(|(_, _, detail)| {
            let own = ["SCAN k", "SCAN r", "SCAN v"].contains(&detail.as_str())
                || detail.ends_with("VALUES CLAUSE")
                || detail.ends_with("CONSTANT ROW")
                || detail.ends_with("CONSTANT ROWS");
            (detail.starts_with("SCAN ") && !own) || detail.starts_with("USE TEMP B-TREE")
        })
        .collect()
}

#[tokio::test]
async fn the_append_steps_find_their_rows_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&dir.path().join("chat.db"))
        .await
        .unwrap();
    for rows in [1, 64] {
        // (statement, the index each of its rows is found by)
        let steps = [
            (
                load_conversations_sql(rows),
                Some("SEARCH c USING INDEX sqlite_autoindex_conversations_1"),
            ),
            (
                find_originals_sql(rows),
                Some("SEARCH m USING INDEX messages_client_msg_id_key"),
            ),
            (
                find_reply_targets_sql(rows),
                Some("SEARCH m USING INDEX sqlite_autoindex_messages_1"),
            ),
            (insert_messages_sql(rows), None),
            (
                bump_conversations_sql(rows),
                Some("SEARCH conversations USING INDEX sqlite_autoindex_conversations_1"),
            ),
            (advance_senders_sql(rows), None),
        ];
        for (sql, search) in steps {
            let plan = plan(&store, &sql).await;
            assert!(scans_beyond_own_rows(&plan).is_empty(), "{sql}\n{plan:#?}");
            if let Some(search) = search {
                assert!(
                    plan.iter().any(|(_, _, detail)| detail.starts_with(search)),
                    "{search}: {sql}\n{plan:#?}"
                );
            }
        }
    }
    store.close().await;
}
