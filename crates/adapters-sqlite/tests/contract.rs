//! The adapter contract suite run against [`SqliteStore`], plus what only
//! the SQLite store has to show: migrations, reopening a file, WAL mode and
//! how it reports corrupt rows.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use adapters_sqlite::testing::SmallDisk;
use adapters_sqlite::SqliteStore;

/// A fresh directory under the target directory's scratch space. It is kept
/// after its test, because the store's connections outlive any guard the
/// factory could hold; directories left by earlier runs are removed instead.
fn scratch_dir() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adapters-sqlite");
        std::fs::create_dir_all(&root).expect("create scratch root");
        remove_stale(&root);
        root
    });
    tempfile::TempDir::new_in(root)
        .expect("create scratch directory")
        .keep()
}

/// Removes scratch directories more than an hour old: no test runs that
/// long, so they belong to finished runs.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let cutoff = SystemTime::now() - Duration::from_secs(3600);
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified < cutoff);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A new, empty store on its own database file.
async fn fresh_store() -> Arc<SqliteStore> {
    let path = scratch_dir().join("chat.db");
    Arc::new(SqliteStore::connect(&path).await.expect("connect"))
}

chat_app::contract_tests!(fresh_store);

mod sqlite_specific {
    use chat_app::{
        AppendOutcome, ConversationListQuery, ConversationRepository, MessageCursor, MessageQuery,
        MessageRepository, RepoError,
    };
    use chat_domain::{
        ClientMsgId, Conversation, ConversationId, ConversationScope, CustomerId, MessageBody,
        MessageId, NewCustomerConversation, NewMessage, Sender, StaffUserId, TenantId,
    };
    use chrono::{TimeZone, Utc};
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection, SqliteConnection};

    use super::*;

    /// The readiness check writes, but does not wait for a write lock that
    /// another process holds: that database is busy, not down.
    #[tokio::test]
    async fn the_readiness_check_passes_while_another_process_writes() {
        let path = scratch_dir().join("chat.db");
        let store = SqliteStore::connect(&path).await.unwrap();
        let mut other = raw_connection(&path).await;
        sqlx::raw_sql("begin immediate")
            .execute(&mut other)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        store.ping().await.expect("busy is not down");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        sqlx::raw_sql("rollback").execute(&mut other).await.unwrap();
        store.ping().await.expect("and it writes once free");
    }

    /// The levels of the events of the subscriber it is installed in.
    struct Levels(Arc<std::sync::Mutex<Vec<tracing::Level>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.lock().unwrap().push(*event.metadata().level());
        }
    }

    /// A failing call is its caller's to log (the service answers, the
    /// server logs the request once): the store records the failure in its
    /// span at debug, never as an ERROR line of its own.
    #[tokio::test]
    async fn a_failing_call_leaves_the_logging_to_its_caller() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let store = SqliteStore::connect(&scratch_dir().join("chat.db"))
            .await
            .unwrap();
        store.close().await;
        let levels = Arc::new(std::sync::Mutex::new(Vec::new()));
        // tracing caches, process-wide, whether a callsite is of interest,
        // from the first thread that reaches it: a sibling test's thread
        // without a subscriber would make the store's events invisible here
        // too. A global subscriber that keeps nothing keeps every callsite
        // of interest; the rebuild applies that to callsites seen already.
        static GLOBAL: OnceLock<()> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        });
        let subscriber = tracing_subscriber::registry().with(Levels(levels.clone()));
        let _capturing = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        let found = store
            .find(TenantId::new_v4(), ConversationId::new_v7())
            .await;
        assert!(found.is_err(), "a closed store fails");
        let levels = levels.lock().unwrap();
        assert!(!levels.is_empty(), "the failure is recorded");
        assert!(
            levels.iter().all(|level| *level == tracing::Level::DEBUG),
            "{levels:?}"
        );
    }

    async fn raw_connection(path: &Path) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(path)
            .connect()
            .await
            .expect("raw connection")
    }

    fn new_conversation(tenant: TenantId) -> NewCustomerConversation {
        NewCustomerConversation {
            id: ConversationId::new_v7(),
            tenant,
            customer_id: CustomerId::new_v4(),
            clinician: None,
            now: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
        }
    }

    /// A text message of `sender` in `conversation`, sent now.
    fn text(conversation: &Conversation, sender: Sender, body: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new_v7(),
            tenant: conversation.tenant,
            conversation_id: conversation.id,
            sender,
            body: Some(MessageBody::parse(body).unwrap()),
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: None,
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn connect_creates_the_file_and_its_directories_and_migrates_it() {
        let path = scratch_dir().join("nested/deeper/chat.db");
        let store = SqliteStore::connect(&path).await.unwrap();
        store.ping().await.unwrap();
        assert!(path.exists());

        let mut conn = raw_connection(&path).await;
        let tables: Vec<String> = sqlx::query_scalar(
            "select name from sqlite_master where type = 'table' \
             and name not like 'sqlite_%' order by name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            tables,
            [
                "_sqlx_migrations",
                "attachments",
                "conversation_members",
                "conversations",
                "messages",
                "read_states",
                "store_probe"
            ]
        );
        let applied: Vec<i64> =
            sqlx::query_scalar("select version from _sqlx_migrations where success order by 1")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(applied, [1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn the_database_is_in_wal_mode() {
        let path = scratch_dir().join("chat.db");
        let _store = SqliteStore::connect(&path).await.unwrap();
        let mut conn = raw_connection(&path).await;
        let mode: String = sqlx::query_scalar("pragma journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// Two stores on one file are two writers, as two processes would be:
    /// the write lock still serialises their appends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_sharing_a_file_keep_seq_gap_free_and_sends_idempotent() {
        let path = scratch_dir().join("chat.db");
        let first = Arc::new(SqliteStore::connect(&path).await.unwrap());
        let second = Arc::new(SqliteStore::connect(&path).await.unwrap());
        let tenant = TenantId::new_v4();
        let (conversation, _) = first
            .get_or_create_customer(&new_conversation(tenant))
            .await
            .unwrap();
        let sender = Sender::Staff(StaffUserId::new_v4());
        let key = ClientMsgId::parse("shared-key").unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = if i % 2 == 0 {
                    first.clone()
                } else {
                    second.clone()
                };
                // Every fourth send reuses one key.
                let new = NewMessage {
                    client_msg_id: (i % 4 == 0).then(|| key.clone()),
                    ..text(&conversation, sender, &format!("m{i}"))
                };
                tokio::spawn(async move { store.append(&new, false).await.unwrap() })
            })
            .collect();
        let mut created = Vec::new();
        let mut keyed = std::collections::HashSet::new();
        for task in tasks {
            let outcome = task.await.unwrap();
            if outcome.message().client_msg_id.is_some() {
                keyed.insert(outcome.message().id);
            }
            if let AppendOutcome::Created { message, .. } = outcome {
                created.push(message.seq.get());
            }
        }
        created.sort_unstable();
        // 30 unkeyed sends plus one for the shared key.
        assert_eq!(created, (1..=31).collect::<Vec<u64>>());
        assert_eq!(keyed.len(), 1, "every keyed send returns one message");
    }

    /// A commit that fails for want of disk space leaves the single writer
    /// usable: once space is freed the next sends commit, with the seq the
    /// failed ones never took, and only acked messages are stored.
    #[tokio::test]
    async fn the_writer_recovers_from_a_full_disk_once_space_is_freed() {
        let Some(disk) = SmallDisk::mount(&scratch_dir(), "4m") else {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
            return;
        };
        let store = SqliteStore::connect(&disk.path().join("chat.db"))
            .await
            .unwrap();
        let tenant = TenantId::new_v4();
        let (conversation, _) = store
            .get_or_create_customer(&new_conversation(tenant))
            .await
            .unwrap();
        let sender = Sender::Staff(StaffUserId::new_v4());
        let send = |body: String| text(&conversation, sender, &body);
        let first = store.append(&send("before".into()), false).await.unwrap();
        assert_eq!(first.message().seq.get(), 1);

        let ballast = disk.fill("ballast");
        // Sends that still fit in pages SQLite had already allocated commit
        // (they are durable, so acking them is right); the rest fail.
        let mut acked = vec!["before".to_owned()];
        let mut refused = 0;
        for i in 0..200 {
            let text = format!("full {i} {}", "x".repeat(3900));
            match store.append(&send(text.clone()), false).await {
                Ok(_) => acked.push(text),
                Err(_) => refused += 1,
            }
            if refused >= 20 {
                break;
            }
        }
        assert_eq!(refused, 20, "a full disk refuses sends");

        std::fs::remove_file(&ballast).unwrap();
        for n in 1..=3 {
            let text = format!("after {n}");
            let outcome = store
                .append(&send(text.clone()), false)
                .await
                .expect("the writer recovered");
            assert_eq!(outcome.message().seq.get(), acked.len() as u64 + 1);
            acked.push(text);
        }
        let page = store
            .list_messages(
                tenant,
                conversation.id,
                MessageQuery {
                    cursor: MessageCursor::After(chat_domain::Seq::ZERO),
                    limit: 500,
                },
            )
            .await
            .unwrap();
        let stored: Vec<String> = page
            .messages
            .iter()
            .filter_map(|m| m.body.as_ref().map(|b| b.as_str().to_owned()))
            .collect();
        assert_eq!(stored, acked, "exactly the acked messages, in order");
        store.close().await;
    }

    #[tokio::test]
    async fn reopening_an_existing_file_keeps_its_data() {
        let path = scratch_dir().join("chat.db");
        let tenant = TenantId::new_v4();
        let created = {
            let store = SqliteStore::connect(&path).await.unwrap();
            let (conversation, _) = store
                .get_or_create_customer(&new_conversation(tenant))
                .await
                .unwrap();
            store.close().await;
            conversation
        };
        let store = SqliteStore::connect(&path).await.unwrap();
        assert_eq!(store.find(tenant, created.id).await.unwrap(), Some(created));
    }

    #[tokio::test]
    async fn a_corrupt_row_is_an_unexpected_error_not_a_panic() {
        let path = scratch_dir().join("chat.db");
        let store = SqliteStore::connect(&path).await.unwrap();
        let tenant = TenantId::new_v4();
        let (conversation, _) = store
            .get_or_create_customer(&new_conversation(tenant))
            .await
            .unwrap();
        let new = NewMessage {
            id: MessageId::new_v7(),
            tenant,
            conversation_id: conversation.id,
            sender: Sender::Staff(StaffUserId::new_v4()),
            body: Some(MessageBody::parse("hi").unwrap()),
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: None,
            created_at: Utc::now(),
        };
        store.append(&new, false).await.unwrap();

        // Check constraints keep such values out; a damaged or hand-edited
        // file can still hold them.
        let mut conn = raw_connection(&path).await;
        sqlx::query("pragma ignore_check_constraints = on")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("update messages set sender_type = 'robot'")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("update conversations set status = 'closed'")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        let messages = store
            .list_messages(
                tenant,
                conversation.id,
                MessageQuery {
                    cursor: MessageCursor::Latest,
                    limit: 10,
                },
            )
            .await;
        let Err(RepoError::Unexpected(err)) = messages else {
            panic!("expected an error, got {messages:?}");
        };
        assert!(format!("{err:#}").contains("unknown sender"), "{err:#}");

        let found = store.find(tenant, conversation.id).await;
        let Err(RepoError::Unexpected(err)) = found else {
            panic!("expected an error, got {found:?}");
        };
        assert!(format!("{err:#}").contains("unknown status"), "{err:#}");

        let listed = store
            .list_conversations(&ConversationListQuery {
                kind: None,
                scope: ConversationScope::All { tenant },
                reader: Sender::System,
                status: None,
                limit: 10,
                cursor: None,
            })
            .await;
        assert!(listed.is_err());
    }
}
