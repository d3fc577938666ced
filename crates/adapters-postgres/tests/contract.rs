//! The adapter contract suite against PostgreSQL, plus what only this
//! adapter has: migrations, pooling, test databases, query plans. Each test
//! gets its own database on the server named by `CHAT_TEST_DATABASE_URL`.

use std::sync::Arc;

use adapters_postgres::testing::{admin_url, fresh_database};
use adapters_postgres::PostgresStore;

async fn fresh_store() -> Arc<PostgresStore> {
    let url = fresh_database(&admin_url())
        .await
        .expect("create a test database");
    let store = PostgresStore::connect(&url, 10)
        .await
        .expect("connect to the test database");
    Arc::new(store)
}

chat_app::contract_tests!(fresh_store);

mod postgres_specific {
    use chat_app::{
        AppendOutcome, ConversationRepository, MessageCursor, MessageQuery, MessageRepository,
        ReadStateRepository, Receipt, RepoError,
    };
    use chat_domain::{
        ClientMsgId, Conversation, ConversationId, CustomerId, MessageBody, MessageId,
        NewCustomerConversation, NewMessage, Sender, Seq, TenantId,
    };
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    fn at_nanos() -> DateTime<Utc> {
        Utc.timestamp_opt(1_772_355_600, 123_456_789)
            .single()
            .expect("valid time")
    }

    async fn inbox(store: &PostgresStore) -> Conversation {
        let new = NewCustomerConversation {
            id: ConversationId::new_v7(),
            tenant: TenantId::new_v4(),
            customer_id: CustomerId::new_v4(),
            clinician: None,
            now: at_nanos(),
        };
        store.get_or_create_customer(&new).await.unwrap().0
    }

    fn new_message(conversation: &Conversation, sender: Sender, key: Option<&str>) -> NewMessage {
        NewMessage {
            id: MessageId::new_v7(),
            tenant: conversation.tenant,
            conversation_id: conversation.id,
            sender,
            body: Some(MessageBody::parse("take two a day").unwrap()),
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: key.map(|k| ClientMsgId::parse(k).unwrap()),
            created_at: at_nanos(),
        }
    }

    fn chain(err: &RepoError) -> String {
        let RepoError::Unexpected(err) = err;
        format!("{err:#}")
    }

    #[tokio::test]
    async fn migrations_apply_on_a_fresh_database_and_twice_is_harmless() {
        let store = fresh_store().await;
        store.migrate().await.expect("second migration run");
        store.ping().await.expect("ping");
        let tables: Vec<String> = sqlx::query_scalar(
            "select table_name::text from information_schema.tables \
             where table_schema = 'public' and table_name not like '\\_sqlx%' order by 1",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            tables,
            [
                "attachments",
                "conversation_members",
                "conversations",
                "messages",
                "read_states"
            ]
        );
    }

    /// `sslmode` in the URL is honoured: the pool's connections are
    /// encrypted (managed databases require it). Needs a server with SSL
    /// on, as Debian's PostgreSQL is by default.
    #[tokio::test]
    async fn the_url_can_ask_for_tls() {
        let url = fresh_database(&admin_url()).await.unwrap();
        let plain = PostgresStore::connect(&url, 1).await.unwrap();
        let ssl_on: String = sqlx::query_scalar("show ssl")
            .fetch_one(plain.pool())
            .await
            .unwrap();
        if ssl_on != "on" {
            eprintln!("SKIPPED: this PostgreSQL server has ssl = {ssl_on}, so TLS cannot be tried");
            return;
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        let encrypted = |store: PostgresStore| async move {
            sqlx::query_scalar::<_, bool>(
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            )
            .fetch_one(store.pool())
            .await
            .unwrap()
        };
        let tls = PostgresStore::connect(&format!("{url}{separator}sslmode=require"), 1)
            .await
            .expect("a TLS connection");
        assert!(encrypted(tls).await, "sslmode=require gives TLS");
        let cleartext = PostgresStore::connect(&format!("{url}{separator}sslmode=disable"), 1)
            .await
            .unwrap();
        assert!(!encrypted(cleartext).await, "sslmode=disable does not");
    }

    #[tokio::test]
    async fn fresh_database_gives_distinct_databases() {
        let admin = admin_url();
        let (a, b) = tokio::join!(fresh_database(&admin), fresh_database(&admin));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a, b);
        assert!(a.rsplit('/').next().unwrap().starts_with("chat_test_"));
    }

    #[tokio::test]
    async fn timestamps_are_stored_to_the_microsecond_and_replays_match_the_original() {
        let store = fresh_store().await;
        let conversation = inbox(&store).await;
        assert_eq!(
            conversation.created_at.timestamp_subsec_nanos(),
            123_456_000
        );
        let new = new_message(&conversation, Sender::System, Some("k"));
        let AppendOutcome::Created {
            message: created, ..
        } = store.append(&new, false).await.unwrap()
        else {
            panic!("first send must create");
        };
        assert_eq!(created.created_at.timestamp_subsec_nanos(), 123_456_000);
        match store.append(&new, false).await.unwrap() {
            AppendOutcome::Replayed(replayed) => assert_eq!(replayed, created),
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_system_sender_has_read_state_too() {
        let store = fresh_store().await;
        let conversation = inbox(&store).await;
        store
            .append(&new_message(&conversation, Sender::System, None), false)
            .await
            .unwrap();
        let update = store
            .advance(
                conversation.tenant,
                conversation.id,
                Sender::System,
                Receipt::Read,
                Seq::from_u64(1).unwrap(),
                at_nanos(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(!update.moved, "the sender's own message is read already");
        assert_eq!(update.state.reader, Sender::System);
        assert_eq!(update.state.last_read_seq, Seq::from_u64(1).unwrap());
    }

    #[tokio::test]
    async fn a_duplicate_client_msg_id_violates_the_index_the_adapter_maps() {
        let store = fresh_store().await;
        let conversation = inbox(&store).await;
        store
            .append(
                &new_message(&conversation, Sender::System, Some("k")),
                false,
            )
            .await
            .unwrap();
        // A writer that skips the row lock hits the unique index, whose name
        // the adapter maps to a replay.
        let err = sqlx::query(
            "insert into messages (id, tenant_id, conversation_id, seq, sender_type, \
                 client_msg_id, created_at) \
             values ($1, $2, $3, 2, 'system', 'k', now())",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(*conversation.tenant.as_uuid())
        .bind(*conversation.id.as_uuid())
        .execute(store.pool())
        .await
        .unwrap_err();
        let constraint = err.as_database_error().and_then(|e| e.constraint());
        assert_eq!(constraint, Some("messages_client_msg_id_key"));
    }

    #[tokio::test]
    async fn a_taken_channel_name_violates_the_index_the_adapter_maps() {
        use chat_app::{MembershipError, MembershipRepository};
        use chat_domain::{ChannelName, ChannelProfile, NewChannel, StaffUserId, Visibility};

        let store = fresh_store().await;
        let new = NewChannel {
            id: ConversationId::new_v7(),
            tenant: TenantId::new_v4(),
            profile: ChannelProfile {
                name: ChannelName::parse("Ärzte").unwrap(),
                topic: None,
            },
            visibility: Visibility::Public,
            owner: StaffUserId::new_v4(),
            members: Vec::new(),
            now: at_nanos(),
        };
        store.create_channel(&new, &[]).await.unwrap();
        let folded: String =
            sqlx::query_scalar("select name_folded from conversations where id = $1")
                .bind(*new.id.as_uuid())
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(folded, "ärzte", "folded in Rust, as every adapter folds");
        // A writer that bypasses the adapter hits the unique index whose
        // name the adapter maps to a taken name; another id is no excuse.
        let err = sqlx::query(
            "insert into conversations (id, tenant_id, kind, status, tags, last_seq, \
                 created_at, updated_at, last_activity_at, visibility, name, name_folded) \
             values ($1, $2, 'channel', 'open', '{}', 0, now(), now(), now(), 'private', \
                 'ÄRZTE', 'ärzte')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(*new.tenant.as_uuid())
        .execute(store.pool())
        .await
        .unwrap_err();
        let constraint = err.as_database_error().and_then(|e| e.constraint());
        assert_eq!(constraint, Some("conversations_channel_name_key"));
        let again = NewChannel {
            id: ConversationId::new_v7(),
            profile: ChannelProfile {
                name: ChannelName::parse("ÄRZTE").unwrap(),
                topic: None,
            },
            ..new
        };
        let taken = store.create_channel(&again, &[]).await;
        assert!(
            matches!(taken, Err(MembershipError::NameTaken)),
            "{taken:?}"
        );
    }

    #[tokio::test]
    async fn only_the_system_posts_notices_and_each_names_its_author() {
        let store = fresh_store().await;
        let conversation = inbox(&store).await;
        let staff = uuid::Uuid::new_v4();
        for (sender_type, sender_id, by, constraint) in [
            (
                "staff",
                Some(staff),
                Some(staff),
                "messages_system_sender_check",
            ),
            ("system", None, None, "messages_system_parts_check"),
        ] {
            let err = sqlx::query(
                "insert into messages (id, tenant_id, conversation_id, seq, sender_type, \
                     sender_id, created_at, system_event, system_by_id) \
                 values ($1, $2, $3, 1, $4, $5, now(), 'member_added', $6)",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(*conversation.tenant.as_uuid())
            .bind(*conversation.id.as_uuid())
            .bind(sender_type)
            .bind(sender_id)
            .bind(by)
            .execute(store.pool())
            .await
            .unwrap_err();
            let violated = err.as_database_error().and_then(|e| e.constraint());
            assert_eq!(violated, Some(constraint), "{sender_type}");
        }
    }

    #[tokio::test]
    async fn corrupt_rows_are_errors_with_context_not_panics() {
        let store = fresh_store().await;
        let conversation = inbox(&store).await;
        let customer = Sender::Customer(conversation.kind.customer_id().unwrap());
        store
            .append(&new_message(&conversation, customer, None), false)
            .await
            .unwrap();
        for statement in [
            "alter table conversations drop constraint conversations_status_check",
            "alter table messages drop constraint messages_sender_type_check",
            "alter table messages drop constraint messages_sender_id_check",
            "update conversations set status = 'closed'",
            "update messages set sender_type = 'robot'",
        ] {
            sqlx::query(statement).execute(store.pool()).await.unwrap();
        }
        let err = store
            .find(conversation.tenant, conversation.id)
            .await
            .unwrap_err();
        assert!(chain(&err).contains("unknown status `closed`"), "{err:?}");
        let err = store
            .list_messages(
                conversation.tenant,
                conversation.id,
                MessageQuery {
                    cursor: MessageCursor::Latest,
                    limit: 10,
                },
            )
            .await
            .unwrap_err();
        assert!(chain(&err).contains("invalid sender `robot`"), "{err:?}");
        assert!(
            !chain(&err).contains("take two"),
            "bodies never reach errors"
        );
    }
}
