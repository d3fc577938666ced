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

    /// Sequential scans of the tables staff chat reads, as PostgreSQL's
    /// statistics count them (flushed once the store's sessions ended).
    async fn seq_scans(admin: &sqlx::PgPool) -> Vec<(String, i64)> {
        sqlx::query_as(
            "select relname::text, coalesce(seq_scan, 0) from pg_stat_user_tables \
             where relname in ('conversations', 'conversation_members', 'messages', \
                 'read_states') order by relname",
        )
        .fetch_all(admin)
        .await
        .expect("table statistics")
    }

    /// Every membership, channel, list and unread path has an index to take:
    /// with sequential scans priced out of the planner (`enable_seqscan =
    /// off`, so a tiny table is not scanned only because it is tiny), the
    /// statistics count no sequential scan of any of their tables. (A
    /// whole index read end to end is not counted: the plans themselves
    /// were read for that, on about 270,000 conversations.)
    #[tokio::test]
    async fn membership_and_list_paths_never_scan_a_table() {
        use chat_app::{
            ChannelListQuery, ConversationListQuery, MemberChange, MemberOp, MembershipRepository,
        };
        use chat_domain::{
            ChannelName, ChannelProfile, ConversationScope, DirectMembers, KindName, MemberRole,
            NewChannel, NewDirect, StaffUserId, Visibility,
        };
        use sqlx::Connection as _;

        let url = fresh_database(&admin_url()).await.expect("a test database");
        // Migrated first: building indexes reads the tables.
        PostgresStore::connect(&url, 2)
            .await
            .expect("migrated")
            .pool()
            .close()
            .await;
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connects");
        let name: String = sqlx::query_scalar("select current_database()")
            .fetch_one(&mut admin)
            .await
            .expect("its name");
        sqlx::raw_sql(&format!(
            "alter database \"{name}\" set enable_seqscan = off"
        ))
        .execute(&mut admin)
        .await
        .expect("no sequential scans unless unavoidable");
        admin.close().await.expect("closed");
        let stats = sqlx::PgPool::connect(&url).await.expect("a pool");
        let before = seq_scans(&stats).await;

        let store = PostgresStore::connect(&url, 2).await.expect("connects");
        let tenant = TenantId::new_v4();
        let (owner, member, other) = (
            StaffUserId::new_v4(),
            StaffUserId::new_v4(),
            StaffUserId::new_v4(),
        );
        let channel = NewChannel {
            id: ConversationId::new_v7(),
            tenant,
            profile: ChannelProfile {
                name: ChannelName::parse("Night shift").unwrap(),
                topic: None,
            },
            visibility: Visibility::Public,
            owner,
            members: vec![member],
            now: at_nanos(),
        };
        let (room, _) = store
            .create_channel(&channel, &[MessageId::new_v7()])
            .await
            .expect("a channel");
        let direct = NewDirect {
            id: ConversationId::new_v7(),
            tenant,
            members: DirectMembers::new(owner, &[other]).unwrap(),
            now: at_nanos(),
        };
        let (dm, _) = store
            .get_or_create_direct(&direct)
            .await
            .expect("a direct conversation");
        store
            .get_or_create_direct(&direct)
            .await
            .expect("found again");
        for op in [
            MemberOp::Add {
                users: vec![other],
                role: MemberRole::Member,
            },
            MemberOp::SetRole {
                user: other,
                role: MemberRole::Owner,
            },
            MemberOp::Remove { user: other },
        ] {
            store
                .change_members(&MemberChange {
                    tenant,
                    conversation_id: room.id,
                    by: owner,
                    op,
                    at: at_nanos(),
                    notice_ids: vec![MessageId::new_v7()],
                })
                .await
                .expect("a membership change");
        }
        store.member_role(tenant, room.id, member).await.unwrap();
        store.member_ids(tenant, room.id).await.unwrap();
        store
            .membership_facts(tenant, &[room.id, dm.id], owner)
            .await
            .unwrap();
        let page = store.list_members(tenant, room.id, 1, None).await.unwrap();
        store
            .list_members(tenant, room.id, 1, page.next_cursor)
            .await
            .unwrap();
        for prefix in [None, Some("night".to_owned())] {
            store
                .list_channels(&ChannelListQuery {
                    tenant,
                    viewer: member,
                    joined: None,
                    prefix,
                    limit: 10,
                    cursor: None,
                })
                .await
                .unwrap();
        }
        let scopes = [
            ConversationScope::All { tenant },
            ConversationScope::InboxAndClinician {
                tenant,
                clinician: owner,
            },
        ];
        for scope in scopes {
            for kind in [None, Some(KindName::Channel), Some(KindName::Customer)] {
                store
                    .list_conversations(&ConversationListQuery {
                        scope,
                        kind,
                        reader: Sender::Staff(owner),
                        status: None,
                        limit: 10,
                        cursor: None,
                    })
                    .await
                    .unwrap();
            }
            store
                .unread_total(scope, Sender::Staff(owner))
                .await
                .unwrap();
        }
        store
            .find_summary(tenant, room.id, Sender::Staff(owner))
            .await
            .unwrap();
        // Its sessions end, which flushes their statistics; then one
        // deliberate scan (tags have no index) in a session of its own shows
        // that the count moves, once that session has flushed too.
        store.pool().close().await;
        let mut control = sqlx::PgConnection::connect(&url).await.expect("connects");
        sqlx::raw_sql("select count(*) from conversations where tags = '{}'")
            .execute(&mut control)
            .await
            .expect("a scan");
        control.close().await.expect("closed");
        let expected: Vec<(String, i64)> = before
            .iter()
            .map(|(table, scans)| (table.clone(), scans + i64::from(table == "conversations")))
            .collect();
        let mut after = seq_scans(&stats).await;
        for _ in 0..100 {
            if after != before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            after = seq_scans(&stats).await;
        }
        assert_eq!(
            after, expected,
            "sequential scans, the control's one included (before: {before:?})"
        );
    }
}
