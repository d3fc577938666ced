//! The `history` load: seeds many messages straight into the server's
//! tables (its own schema, applied by the server at start-up), then measures
//! a page of history (limit 50, random `before`) and the conversation list
//! with unread counts over REST.
//!
//! Two tenants are seeded: one with `messages` messages spread over
//! `conversations` conversations (history pages), and one with
//! `list_conversations` conversations, a few messages each and a read
//! marker of the listing staff member somewhere in them (unread counts).

use std::time::Duration;

use anyhow::{bail, Context};
use chat_domain::{StaffUserId, TenantId};
use rand::Rng;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use tokio::time::Instant;
use uuid::Uuid;

use crate::stats::{Latencies, Summary};
use crate::target::{Database, Target};

/// The sizes to seed and measure.
#[derive(Debug, Clone, Copy)]
pub struct HistoryOptions {
    /// Messages of the history tenant.
    pub messages: u64,
    /// Conversations they are spread over.
    pub conversations: u64,
    /// Conversations of the listing tenant.
    pub list_conversations: u64,
    /// Requests per measurement.
    pub samples: usize,
}

/// What the history load measured.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryResult {
    /// Messages seeded in the history tenant.
    pub messages: u64,
    /// Its conversations.
    pub conversations: u64,
    /// Conversations of the listing tenant.
    pub list_conversations: u64,
    /// Seconds the seeding took.
    pub seed_s: f64,
    /// `GET .../messages?limit=50&before=S`, random conversation and `S`.
    pub page: Summary,
    /// `GET /conversations?limit=50` (first page and following pages by
    /// cursor) for a staff member of the listing tenant.
    pub list: Summary,
    /// Failed requests.
    pub errors: u64,
}

const SEED_BODY: &str = "seeded message: your prescription is ready for pick-up";
/// Messages per seeding statement.
const CHUNK: u64 = 100_000;

struct Seeded {
    history_tenant: TenantId,
    list_tenant: TenantId,
    /// Conversations of the history tenant with their `last_seq`.
    conversations: Vec<(Uuid, u64)>,
}

/// Seeds and measures.
///
/// # Errors
/// When the database is unknown (a running server without
/// `--database-url`) or seeding fails.
pub async fn run(target: &Target, options: HistoryOptions) -> anyhow::Result<HistoryResult> {
    let url = target
        .database_url
        .clone()
        .context("history seeds the database: give --database-url for a running server")?;
    let started = Instant::now();
    let seeded = match target.database {
        Database::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await
                .context("connecting to the server's PostgreSQL database")?;
            let seeded = seed_postgres(&pool, options).await?;
            pool.close().await;
            seeded
        }
        Database::Sqlite => {
            let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(
                    SqliteConnectOptions::new()
                        .filename(path)
                        .busy_timeout(Duration::from_secs(30)),
                )
                .await
                .context("opening the server's SQLite file")?;
            let seeded = seed_sqlite(&pool, options).await?;
            pool.close().await;
            seeded
        }
    };
    let seed_s = started.elapsed().as_secs_f64();
    if seeded.conversations.is_empty() {
        bail!("nothing was seeded");
    }

    let mut errors = 0;
    let reader = target.staff_token(seeded.history_tenant, StaffUserId::new_v4(), "pharmacist")?;
    let mut page = Latencies::new();
    // Warm the connection pool, as a live server's would be.
    for (conversation, _) in seeded.conversations.iter().take(10) {
        let _ = target
            .get(
                &format!("/conversations/{conversation}/messages?limit=50"),
                &reader,
            )
            .await;
    }
    for _ in 0..options.samples {
        let (conversation, last_seq) = {
            let mut rng = rand::thread_rng();
            let (conversation, last_seq) =
                seeded.conversations[rng.gen_range(0..seeded.conversations.len())];
            (conversation, rng.gen_range(1..=last_seq.max(1)) + 1)
        };
        let began = Instant::now();
        let ok = target
            .get(
                &format!("/conversations/{conversation}/messages?limit=50&before={last_seq}"),
                &reader,
            )
            .await
            .is_ok();
        if ok {
            page.record(began.elapsed());
        } else {
            errors += 1;
        }
    }

    // The listing staff member is the one whose read markers were seeded.
    let lister = target.staff_token(seeded.list_tenant, list_reader(), "pharmacist")?;
    let mut list = Latencies::new();
    let mut cursor: Option<String> = None;
    let _ = target.get("/conversations?limit=50", &lister).await;
    for _ in 0..options.samples {
        let path = match &cursor {
            Some(cursor) => format!("/conversations?limit=50&cursor={cursor}"),
            None => "/conversations?limit=50".to_owned(),
        };
        let began = Instant::now();
        match target.get(&path, &lister).await {
            Ok(body) => {
                list.record(began.elapsed());
                // Walk down the list page by page, back to the top at the
                // end: first pages and deep pages alike.
                cursor = body["next_cursor"].as_str().map(str::to_owned);
            }
            Err(_) => {
                errors += 1;
                cursor = None;
            }
        }
    }
    Ok(HistoryResult {
        messages: options.messages,
        conversations: options.conversations,
        list_conversations: options.list_conversations,
        seed_s,
        page: page.summary(),
        list: list.summary(),
        errors,
    })
}

/// The staff member whose read markers the listing tenant carries.
fn list_reader() -> StaffUserId {
    StaffUserId::from_uuid(Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001))
}

async fn seed_postgres(pool: &PgPool, options: HistoryOptions) -> anyhow::Result<Seeded> {
    let history_tenant = TenantId::new_v4();
    let list_tenant = TenantId::new_v4();
    let per = (options.messages / options.conversations.max(1)).max(1);
    // Conversations, then their messages in chunks, each a single
    // statement generated on the server side.
    sqlx::query(
        "insert into conversations (id, tenant_id, kind, customer_id, status, last_seq, \
             created_at, updated_at, last_activity_at) \
         select gen_random_uuid(), $1, 'customer', gen_random_uuid(), 'open', $2, \
             now() - interval '30 days', now(), now() - g * interval '1 second' \
         from generate_series(1, $3) as g",
    )
    .bind(*history_tenant.as_uuid())
    .bind(i64::try_from(per)?)
    .bind(i64::try_from(options.conversations)?)
    .execute(pool)
    .await
    .context("seeding the history conversations")?;
    let ids: Vec<Uuid> =
        sqlx::query_scalar("select id from conversations where tenant_id = $1 order by id")
            .bind(*history_tenant.as_uuid())
            .fetch_all(pool)
            .await
            .context("reading the seeded conversations")?;
    let per_chunk = (CHUNK / per).max(1) as usize;
    for chunk in ids.chunks(per_chunk) {
        sqlx::query(
            "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
                 body, client_msg_id, created_at) \
             select gen_random_uuid(), $1, c.id, s, \
                 case when s % 2 = 0 then 'staff' else 'customer' end, gen_random_uuid(), \
                 $2 || ' ' || s, 's' || s, now() - interval '30 days' + s * interval '1 second' \
             from unnest($3::uuid[]) as c(id), generate_series(1, $4) as s",
        )
        .bind(*history_tenant.as_uuid())
        .bind(SEED_BODY)
        .bind(chunk)
        .bind(i64::try_from(per)?)
        .execute(pool)
        .await
        .context("seeding history messages")?;
    }

    // The listing tenant: a few messages per conversation, and the lister's
    // read marker somewhere among them.
    let list_per = 4i64;
    sqlx::query(
        "insert into conversations (id, tenant_id, kind, customer_id, status, last_seq, \
             created_at, updated_at, last_activity_at) \
         select gen_random_uuid(), $1, 'customer', gen_random_uuid(), 'open', $2, \
             now() - interval '30 days', now(), now() - g * interval '1 second' \
         from generate_series(1, $3) as g",
    )
    .bind(*list_tenant.as_uuid())
    .bind(list_per)
    .bind(i64::try_from(options.list_conversations)?)
    .execute(pool)
    .await
    .context("seeding the listing conversations")?;
    sqlx::query(
        "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
             body, created_at) \
         select gen_random_uuid(), c.tenant_id, c.id, s, 'customer', c.customer_id, $2, \
             c.last_activity_at - (4 - s) * interval '1 ms' \
         from conversations c, generate_series(1, $3) as s where c.tenant_id = $1",
    )
    .bind(*list_tenant.as_uuid())
    .bind(SEED_BODY)
    .bind(list_per)
    .execute(pool)
    .await
    .context("seeding listing messages")?;
    sqlx::query(
        "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
             last_read_seq, last_delivered_seq, updated_at) \
         select c.tenant_id, c.id, 'staff', $2, (abs(hashtext(c.id::text)) % 5), \
             (abs(hashtext(c.id::text)) % 5), now() \
         from conversations c where c.tenant_id = $1",
    )
    .bind(*list_tenant.as_uuid())
    .bind(*list_reader().as_uuid())
    .execute(pool)
    .await
    .context("seeding read markers")?;
    // What autovacuum would do to a bulk-loaded table soon after (and else
    // does during the measurement): statistics and the visibility map.
    sqlx::query("vacuum (analyze) conversations, messages, read_states")
        .execute(pool)
        .await
        .context("vacuuming the seeded tables")?;
    Ok(Seeded {
        history_tenant,
        list_tenant,
        conversations: ids.into_iter().map(|id| (id, per)).collect(),
    })
}

async fn seed_sqlite(pool: &SqlitePool, options: HistoryOptions) -> anyhow::Result<Seeded> {
    let history_tenant = TenantId::new_v4();
    let list_tenant = TenantId::new_v4();
    let per = (options.messages / options.conversations.max(1)).max(1);
    let now = chrono::Utc::now().timestamp_micros();
    let month = 30 * 24 * 3600 * 1_000_000i64;
    let mut tx = pool.begin().await.context("begin seeding")?;
    let mut ids = Vec::with_capacity(usize::try_from(options.conversations)?);
    for g in 0..options.conversations {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into conversations (id, tenant_id, kind, customer_id, status, last_seq, \
                 created_at, updated_at, last_activity_at) \
             values (?1, ?2, 'customer', ?3, 'open', ?4, ?5, ?6, ?7)",
        )
        .bind(id)
        .bind(*history_tenant.as_uuid())
        .bind(Uuid::new_v4())
        .bind(i64::try_from(per)?)
        .bind(now - month)
        .bind(now)
        .bind(now - i64::try_from(g)? * 1_000_000)
        .execute(&mut *tx)
        .await
        .context("seeding a history conversation")?;
        // One statement per conversation: a recursive series of `per`
        // messages with random 16-byte ids.
        sqlx::query(
            "with recursive s(n) as (select 1 union all select n + 1 from s where n < ?4) \
             insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
                 body, client_msg_id, created_at) \
             select randomblob(16), ?1, ?2, n, case when n % 2 = 0 then 'staff' else 'customer' end, \
                 randomblob(16), ?3 || ' ' || n, 's' || n, ?5 + n * 1000000 from s",
        )
        .bind(*history_tenant.as_uuid())
        .bind(id)
        .bind(SEED_BODY)
        .bind(i64::try_from(per)?)
        .bind(now - month)
        .execute(&mut *tx)
        .await
        .context("seeding history messages")?;
        ids.push((id, per));
    }
    let reader = *list_reader().as_uuid();
    for g in 0..options.list_conversations {
        let id = Uuid::now_v7();
        let customer = Uuid::new_v4();
        let activity = now - i64::try_from(g)? * 1_000_000;
        sqlx::query(
            "insert into conversations (id, tenant_id, kind, customer_id, status, last_seq, \
                 created_at, updated_at, last_activity_at) \
             values (?1, ?2, 'customer', ?3, 'open', 4, ?4, ?5, ?6)",
        )
        .bind(id)
        .bind(*list_tenant.as_uuid())
        .bind(customer)
        .bind(now - month)
        .bind(now)
        .bind(activity)
        .execute(&mut *tx)
        .await
        .context("seeding a listing conversation")?;
        sqlx::query(
            "with recursive s(n) as (select 1 union all select n + 1 from s where n < 4) \
             insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
                 body, created_at) \
             select randomblob(16), ?1, ?2, n, 'customer', ?3, ?4, ?5 - (4 - n) * 1000 from s",
        )
        .bind(*list_tenant.as_uuid())
        .bind(id)
        .bind(customer)
        .bind(SEED_BODY)
        .bind(activity)
        .execute(&mut *tx)
        .await
        .context("seeding listing messages")?;
        let read = i64::try_from(g % 5)?;
        sqlx::query(
            "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
                 last_read_seq, last_delivered_seq, updated_at) values (?1, ?2, 'staff', ?3, ?4, ?4, ?5)",
        )
        .bind(*list_tenant.as_uuid())
        .bind(id)
        .bind(reader)
        .bind(read)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("seeding a read marker")?;
    }
    tx.commit().await.context("committing the seed")?;
    Ok(Seeded {
        history_tenant,
        list_tenant,
        conversations: ids,
    })
}
