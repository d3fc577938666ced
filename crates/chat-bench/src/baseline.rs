//! The database's own limit: the server's send transaction (lock the
//! conversation and read the next `seq`, look up the idempotency key,
//! insert the message, bump the conversation, move the sender's read
//! marker, commit) issued straight through sqlx, with no server in between,
//! by as many concurrent workers as the load has conversations, over a pool
//! of the server's size. Every throughput figure is also given as a ratio
//! to this one, measured in the same run, because absolute figures drift on
//! shared machines.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::MESSAGE_BODY;
use crate::stats::{Latencies, Summary};
use crate::target::{create_database, drop_database, with_database, Database};

/// What the baseline measured.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineResult {
    /// The database.
    pub database: Database,
    /// Concurrent workers (one conversation each).
    pub workers: usize,
    /// Connections in the pool.
    pub pool: u32,
    /// Seconds measured.
    pub duration_s: f64,
    /// Committed transactions.
    pub transactions: u64,
    /// Committed transactions per second.
    pub tx_per_s: f64,
    /// Time per transaction, including the wait for a pooled connection.
    pub latency: Summary,
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Pool {
    /// One send transaction.
    async fn send(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        sender: Uuid,
        key: &str,
    ) -> anyhow::Result<()> {
        match self {
            Self::Postgres(pool) => send_postgres(pool, tenant, conversation, sender, key).await,
            Self::Sqlite(pool) => send_sqlite(pool, tenant, conversation, sender, key).await,
        }
    }

    async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Runs the baseline on a fresh database (a new PostgreSQL database on
/// `postgres_admin_url`, or a new SQLite file in `dir`) with the server's
/// schema.
///
/// # Errors
/// When the database cannot be created or a transaction fails.
pub async fn run(
    database: Database,
    postgres_admin_url: &str,
    dir: &Path,
    workers: usize,
    pool_size: u32,
    duration: Duration,
) -> anyhow::Result<BaselineResult> {
    let workers = workers.max(1);
    let (pool, created, pool_size) = match database {
        Database::Postgres => {
            let name = create_database(postgres_admin_url).await?;
            let url = with_database(postgres_admin_url, &name);
            let pool = PgPoolOptions::new()
                .max_connections(pool_size)
                .acquire_timeout(Duration::from_secs(30))
                .connect(&url)
                .await
                .context("connecting the baseline pool")?;
            // The adapter applies the server's migrations.
            adapters_postgres::PostgresStore::from_pool(pool.clone())
                .migrate()
                .await
                .context("applying the schema to the baseline database")?;
            (Pool::Postgres(pool), Some(name), pool_size)
        }
        Database::Sqlite => {
            let path = dir.join(format!("baseline-{}.db", Uuid::now_v7().simple()));
            let store = adapters_sqlite::SqliteStore::connect(&path)
                .await
                .context("applying the schema to the baseline database")?;
            store.close().await;
            // The adapter's writer: one connection, WAL, synchronous=NORMAL.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(
                    SqliteConnectOptions::new()
                        .filename(&path)
                        .foreign_keys(true)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(5)),
                )
                .await
                .context("opening the baseline SQLite file")?;
            (Pool::Sqlite(pool), None, 1)
        }
    };
    let result = measure(&pool, database, workers, pool_size, duration).await;
    pool.close().await;
    if let Some(name) = created {
        drop_database(postgres_admin_url, &name).await;
    }
    result
}

async fn measure(
    pool: &Pool,
    database: Database,
    workers: usize,
    pool_size: u32,
    duration: Duration,
) -> anyhow::Result<BaselineResult> {
    let tenant = Uuid::new_v4();
    let mut conversations = Vec::with_capacity(workers);
    for _ in 0..workers {
        let id = Uuid::now_v7();
        let now = chrono::Utc::now();
        match pool {
            Pool::Postgres(pool) => sqlx::query(
                "insert into conversations (id, tenant_id, kind, customer_id, status, \
                     last_seq, created_at, updated_at, last_activity_at) \
                     values ($1, $2, 'customer', $3, 'open', 0, $4, $4, $4)",
            )
            .bind(id)
            .bind(tenant)
            .bind(Uuid::new_v4())
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()),
            Pool::Sqlite(pool) => sqlx::query(
                "insert into conversations (id, tenant_id, kind, customer_id, status, \
                     last_seq, created_at, updated_at, last_activity_at) \
                     values (?1, ?2, 'customer', ?3, 'open', 0, ?4, ?4, ?4)",
            )
            .bind(id)
            .bind(tenant)
            .bind(Uuid::new_v4())
            .bind(now.timestamp_micros())
            .execute(pool)
            .await
            .map(|_| ()),
        }
        .context("creating a baseline conversation")?;
        conversations.push(id);
    }
    // A short warm-up so connections are open and caches warm.
    let start = Instant::now() + Duration::from_millis(500);
    let end = start + duration;
    let tasks: Vec<_> = conversations
        .into_iter()
        .enumerate()
        .map(|(i, conversation)| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut latencies = Latencies::new();
                let mut committed = 0u64;
                let sender = Uuid::new_v4();
                let mut n = 0u64;
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    n += 1;
                    let key = format!("b{i}.{n}");
                    pool.send(tenant, conversation, sender, &key).await?;
                    if began >= start {
                        committed += 1;
                        latencies.record(began.elapsed());
                    }
                }
                anyhow::Ok((committed, latencies))
            })
        })
        .collect();
    let mut transactions = 0;
    let mut latencies = Latencies::new();
    for task in tasks {
        let (committed, worker) = task.await.context("a baseline worker panicked")??;
        transactions += committed;
        latencies.merge(&worker);
    }
    let elapsed = Instant::now().saturating_duration_since(start);
    Ok(BaselineResult {
        database,
        workers,
        pool: pool_size,
        duration_s: elapsed.as_secs_f64(),
        transactions,
        tx_per_s: transactions as f64 / elapsed.as_secs_f64(),
        latency: latencies.summary(),
    })
}

/// The PostgreSQL adapter's append, statement for statement.
async fn send_postgres(
    pool: &PgPool,
    tenant: Uuid,
    conversation: Uuid,
    sender: Uuid,
    key: &str,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("begin")?;
    let last_seq: i64 = sqlx::query_scalar(
        "select last_seq from conversations where id = $1 and tenant_id = $2 for no key update",
    )
    .bind(conversation)
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await
    .context("locking the conversation")?;
    let replayed: Option<Uuid> = sqlx::query_scalar(
        "select id from messages where conversation_id = $1 and client_msg_id = $2 \
         and sender_type = 'customer' and sender_id is not distinct from $3 and tenant_id = $4",
    )
    .bind(conversation)
    .bind(key)
    .bind(sender)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await
    .context("looking up the key")?;
    anyhow::ensure!(replayed.is_none(), "baseline keys are unique");
    let seq = last_seq + 1;
    let now = chrono::Utc::now();
    sqlx::query(
        "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
         body, reply_to, client_msg_id, created_at) \
         values ($1, $2, $3, $4, 'customer', $5, $6, null, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(conversation)
    .bind(seq)
    .bind(sender)
    .bind(MESSAGE_BODY)
    .bind(key)
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("inserting")?;
    sqlx::query(
        "update conversations set last_seq = $1, updated_at = $2, last_activity_at = $2 \
         where id = $3 and tenant_id = $4",
    )
    .bind(seq)
    .bind(now)
    .bind(conversation)
    .bind(tenant)
    .execute(&mut *tx)
    .await
    .context("bumping the conversation")?;
    sqlx::query(
        "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
         last_read_seq, last_delivered_seq, updated_at) values ($1, $2, 'customer', $3, $4, $4, $5) \
         on conflict (conversation_id, reader_type, reader_id) do update set \
         last_read_seq = greatest(read_states.last_read_seq, excluded.last_read_seq), \
         last_delivered_seq = greatest(read_states.last_delivered_seq, excluded.last_delivered_seq), \
         updated_at = excluded.updated_at",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(sender)
    .bind(seq)
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("moving the read marker")?;
    tx.commit().await.context("commit")?;
    Ok(())
}

/// The SQLite adapter's append, statement for statement.
async fn send_sqlite(
    pool: &SqlitePool,
    tenant: Uuid,
    conversation: Uuid,
    sender: Uuid,
    key: &str,
) -> anyhow::Result<()> {
    let mut tx = pool.begin_with("begin immediate").await.context("begin")?;
    let last_seq: i64 =
        sqlx::query_scalar("select last_seq from conversations where tenant_id = ?1 and id = ?2")
            .bind(tenant)
            .bind(conversation)
            .fetch_one(&mut *tx)
            .await
            .context("reading last_seq")?;
    let replayed: Option<Vec<u8>> = sqlx::query_scalar(
        "select id from messages where conversation_id = ?2 and sender_type = 'customer' \
         and coalesce(sender_id, x'') = coalesce(?3, x'') and client_msg_id = ?4 and tenant_id = ?1",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(sender)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await
    .context("looking up the key")?;
    anyhow::ensure!(replayed.is_none(), "baseline keys are unique");
    let seq = last_seq + 1;
    let now = chrono::Utc::now().timestamp_micros();
    sqlx::query(
        "insert into messages (id, tenant_id, conversation_id, seq, sender_type, sender_id, \
         body, reply_to, client_msg_id, created_at) \
         values (?1, ?2, ?3, ?4, 'customer', ?5, ?6, null, ?7, ?8)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(conversation)
    .bind(seq)
    .bind(sender)
    .bind(MESSAGE_BODY)
    .bind(key)
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("inserting")?;
    sqlx::query(
        "update conversations set last_seq = ?3, updated_at = ?4, last_activity_at = ?4 \
         where tenant_id = ?1 and id = ?2",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(seq)
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("bumping the conversation")?;
    sqlx::query(
        "insert into read_states (tenant_id, conversation_id, reader_type, reader_id, \
         last_read_seq, last_delivered_seq, updated_at) values (?1, ?2, 'customer', ?3, ?4, ?4, ?5) \
         on conflict (conversation_id, reader_type, reader_id) do update set \
         last_read_seq = max(last_read_seq, excluded.last_read_seq), \
         last_delivered_seq = max(last_delivered_seq, excluded.last_delivered_seq), \
         updated_at = excluded.updated_at",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(sender)
    .bind(seq)
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("moving the read marker")?;
    tx.commit().await.context("commit")?;
    Ok(())
}
