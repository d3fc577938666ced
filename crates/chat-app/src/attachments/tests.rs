use std::time::Duration;

use bytes::Bytes;
use chat_domain::{Attachment, MediaType, Sha256Digest, StorageKey};
use futures::{FutureExt as _, StreamExt as _};
use sha2::{Digest as _, Sha256};

use anyhow::anyhow;
use chat_domain::{Action, Principal, Sender, TenantId};

use super::*;
use crate::test_support::*;
use crate::{
    AttachmentError, AttachmentPorts, AttachmentService, AttachmentSettings, ByteStream, Download,
    MockAttachmentRepository, MockClock, MockFileStorage, MockScanner, RepoError, ScanVerdict,
    StorageError,
};

fn body(bytes: &'static [u8]) -> ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> =
        bytes.chunks(7).map(|c| Ok(Bytes::from_static(c))).collect();
    futures::stream::iter(pieces).boxed()
}

/// Reads a body to its end the way a store does; in-memory bodies never
/// wait, so one poll finishes it.
fn drain(mut body: ByteStream) -> Result<u64, StorageError> {
    async move {
        let mut stored = 0;
        while let Some(chunk) = body.next().await {
            stored += chunk.map_err(StorageError::Body)?.len() as u64;
        }
        Ok(stored)
    }
    .now_or_never()
    .expect("an in-memory body never waits")
}

#[derive(Default)]
struct Files {
    repository: MockAttachmentRepository,
    storage: MockFileStorage,
    scanner: Option<MockScanner>,
    signed_url_ttl: Option<Duration>,
    max_bytes: Option<u64>,
}

impl Files {
    fn service(self, h: Harness) -> AttachmentService {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        AttachmentService::new(
            h.service(),
            AttachmentPorts {
                repository: Arc::new(self.repository),
                storage: Arc::new(self.storage),
                scanner: self.scanner.map(|s| Arc::new(s) as Arc<dyn crate::Scanner>),
                clock: Arc::new(clock),
            },
            AttachmentSettings {
                max_bytes: self.max_bytes.unwrap_or(1024),
                signed_url_ttl: self.signed_url_ttl,
            },
        )
    }

    /// The store reads the body to its end and keeps it.
    fn stores_once(&mut self) {
        self.storage
            .expect_put()
            .withf(|key, media, _, max| {
                key.as_str()
                    .starts_with(&format!("chat/{TENANT}/{CONVERSATION_ID}/2026/03/"))
                    && *media == MediaType::Pdf
                    && *max == 1024
            })
            .times(1)
            .returning(|_, _, body, _| drain(body));
    }

    fn nothing_stored(&mut self) {
        self.storage.expect_put().never();
        self.repository.expect_insert_attachment().never();
    }

    fn removed_once(&mut self) {
        self.storage.expect_delete().times(1).returning(|_| Ok(()));
    }
}

async fn upload(
    files: Files,
    h: Harness,
    principal: Principal,
    data: &'static [u8],
) -> Result<Attachment, AttachmentError> {
    files
        .service(h)
        .upload(
            &principal,
            CONVERSATION_ID,
            Some("../scans/rx.pdf"),
            body(data),
        )
        .await
}

#[tokio::test]
async fn a_participant_uploads_a_pdf_which_is_stored_hashed_and_recorded() {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Send);
    let mut files = Files::default();
    files.stores_once();
    let digest = Sha256Digest::from_bytes(Sha256::digest(PDF).into());
    files
        .repository
        .expect_insert_attachment()
        .withf(move |new| {
            new.tenant == TENANT
                && new.conversation_id == CONVERSATION_ID
                && new.uploader == Sender::Customer(CUSTOMER)
                && new.name.as_str() == "rx.pdf"
                && new.media_type == MediaType::Pdf
                && new.size == PDF.len() as u64
                && new.sha256 == digest
                && new.created_at == now()
                && new
                    .storage_key
                    .as_str()
                    .ends_with(&format!("{}.pdf", new.id))
        })
        .times(1)
        .returning(|new| Ok(new.clone().into_attachment()));

    let attachment = upload(files, h, customer(), PDF).await.unwrap();
    assert_eq!(attachment.sha256, digest);
    assert_eq!(attachment.message_id, None);
}

#[tokio::test]
async fn an_upload_into_a_conversation_the_caller_cannot_see_is_not_found() {
    let mut h = Harness::new();
    h.find_returns(TENANT, Some(inbox())).policy_not_asked();
    let mut files = Files::default();
    files.nothing_stored();
    let err = upload(files, h, other_customer(), PDF).await.unwrap_err();
    assert!(matches!(err, AttachmentError::NotFound), "{err:?}");
}

#[tokio::test]
async fn unsupported_and_empty_uploads_are_refused_before_anything_is_stored() {
    for (data, html) in [
        (&b"<html><script>x</script></html>"[..], true),
        (&b""[..], false),
    ] {
        let mut h = Harness::new();
        h.authorized(customer(), inbox(), Action::Send);
        let mut files = Files::default();
        files.nothing_stored();
        let err = upload(files, h, customer(), data).await.unwrap_err();
        if html {
            assert!(
                matches!(err, AttachmentError::UnsupportedType(_)),
                "{err:?}"
            );
        } else {
            assert!(matches!(err, AttachmentError::Empty), "{err:?}");
        }
    }
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_and_not_recorded() {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Send);
    let mut files = Files {
        max_bytes: Some(16),
        ..Files::default()
    };
    files
        .storage
        .expect_put()
        .times(1)
        .returning(|_, _, body, _| drain(body));
    files.repository.expect_insert_attachment().never();
    let err = upload(files, h, customer(), PDF).await.unwrap_err();
    assert!(
        matches!(err, AttachmentError::TooLarge { max_bytes: 16 }),
        "{err:?}"
    );
}

/// A participant's upload is stored, read back and handed to a scanner
/// that answers `verdict` once; the stored bytes are then removed, nothing
/// is recorded, and the upload's error is returned.
async fn upload_refused_by_the_scan(verdict: anyhow::Result<ScanVerdict>) -> AttachmentError {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Send);
    let mut files = Files::default();
    files.stores_once();
    files
        .storage
        .expect_get()
        .times(1)
        .returning(|_| Ok(body(PDF)));
    let mut scanner = MockScanner::new();
    scanner.expect_scan().times(1).return_once(|_| verdict);
    files.scanner = Some(scanner);
    files.removed_once();
    files.repository.expect_insert_attachment().never();
    upload(files, h, customer(), PDF).await.unwrap_err()
}

#[tokio::test]
async fn an_infected_upload_is_removed_and_refused() {
    let err =
        upload_refused_by_the_scan(Ok(ScanVerdict::Infected("Eicar-Test-Signature".into()))).await;
    assert!(matches!(err, AttachmentError::Infected(name) if name == "Eicar-Test-Signature"));
}

#[tokio::test]
async fn an_unreachable_scanner_refuses_the_upload_and_removes_it() {
    let err = upload_refused_by_the_scan(Err(anyhow!("connection refused"))).await;
    assert!(
        matches!(err, AttachmentError::ScannerUnavailable(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_failed_record_removes_the_stored_bytes() {
    let mut h = Harness::new();
    h.authorized(customer(), inbox(), Action::Send);
    let mut files = Files::default();
    files.stores_once();
    files
        .repository
        .expect_insert_attachment()
        .times(1)
        .return_once(|_| Err(RepoError::Unexpected(storage_failure())));
    files.removed_once();
    let err = upload(files, h, customer(), PDF).await.unwrap_err();
    assert!(matches!(err, AttachmentError::Unexpected(_)), "{err:?}");
}

fn finds(files: &mut Files, tenant: TenantId, found: Option<Attachment>) {
    files
        .repository
        .expect_find_attachment()
        .withf(move |t, id| *t == tenant && *id == UPLOAD_ID)
        .times(1)
        .return_once(move |_, _| Ok(found));
}

#[tokio::test]
async fn a_download_outside_the_callers_conversations_is_not_found() {
    let mut h = Harness::new();
    h.find_returns(TENANT, Some(inbox())).policy_not_asked();
    let mut files = Files::default();
    finds(&mut files, TENANT, Some(stored_attachment(None)));
    files.storage.expect_get().never();
    let err = files
        .service(h)
        .download(&other_customer(), UPLOAD_ID)
        .await
        .unwrap_err();
    assert!(matches!(err, AttachmentError::NotFound), "{err:?}");

    // Another tenant does not even find the record.
    let mut files = Files::default();
    finds(&mut files, OTHER_TENANT, None);
    let err = files
        .service(Harness::new())
        .download(&foreign_customer(), UPLOAD_ID)
        .await
        .unwrap_err();
    assert!(matches!(err, AttachmentError::NotFound), "{err:?}");
}

#[tokio::test]
async fn downloads_stream_the_bytes_or_redirect_to_a_signed_url() {
    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Read);
    let mut files = Files::default();
    finds(
        &mut files,
        TENANT,
        Some(stored_attachment(Some(STORED_MESSAGE_ID))),
    );
    files
        .storage
        .expect_get()
        .times(1)
        .returning(|_| Ok(body(PDF)));
    let download = files
        .service(h)
        .download(&staff(), UPLOAD_ID)
        .await
        .unwrap();
    assert!(matches!(download, Download::Stream { .. }), "{download:?}");

    let mut h = Harness::new();
    h.authorized(staff(), inbox(), Action::Read);
    let mut files = Files {
        signed_url_ttl: Some(Duration::from_secs(300)),
        ..Files::default()
    };
    finds(
        &mut files,
        TENANT,
        Some(stored_attachment(Some(STORED_MESSAGE_ID))),
    );
    files
        .storage
        .expect_signed_url()
        .withf(|_, ttl, headers| {
            *ttl == Duration::from_secs(300)
                && headers.media_type == MediaType::Pdf
                && headers.content_disposition.starts_with("attachment;")
        })
        .times(1)
        .return_once(|_, _, _| Ok(Some("https://s3.example/signed".into())));
    files.storage.expect_get().never();
    let download = files
        .service(h)
        .download(&staff(), UPLOAD_ID)
        .await
        .unwrap();
    assert!(
        matches!(&download, Download::Redirect { url, .. } if url == "https://s3.example/signed"),
        "{download:?}"
    );
}

#[tokio::test]
async fn the_sweep_deletes_records_before_bytes_and_spares_uploads_sent_meanwhile() {
    let mut files = Files::default();
    let orphan = stored_attachment(None);
    let sent_meanwhile = Attachment {
        id: OTHER_UPLOAD_ID,
        ..stored_attachment(None)
    };
    let listed = vec![orphan.clone(), sent_meanwhile];
    files
        .repository
        .expect_list_orphans()
        .withf(|before, _| *before == now() - chrono::Duration::hours(24))
        .times(1)
        .return_once(move |_, _| Ok(listed));
    files
        .repository
        .expect_delete_unattached()
        .times(2)
        .returning(|_, id| Ok(id == UPLOAD_ID));
    let key = orphan.storage_key.clone();
    files
        .storage
        .expect_delete()
        .withf(move |k| *k == key)
        .times(1)
        .returning(|_| Ok(()));
    let deleted = files
        .service(Harness::new())
        .sweep_orphans(Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
}

#[tokio::test]
async fn the_purge_removes_bytes_before_records_and_keeps_what_it_cannot_remove() {
    let mut files = Files::default();
    let removable = stored_attachment(Some(STORED_MESSAGE_ID));
    let stuck = Attachment {
        id: OTHER_UPLOAD_ID,
        storage_key: StorageKey::for_attachment(
            TENANT,
            CONVERSATION_ID,
            OTHER_UPLOAD_ID,
            MediaType::Pdf,
            earlier(),
        ),
        ..stored_attachment(Some(STORED_MESSAGE_ID))
    };
    let listed = vec![removable.clone(), stuck.clone()];
    files
        .repository
        .expect_list_deleted()
        .times(1)
        .return_once(move |_| Ok(listed));
    let mut order = mockall::Sequence::new();
    let key = removable.storage_key.clone();
    files
        .storage
        .expect_delete()
        .withf(move |k| *k == key)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    files
        .repository
        .expect_purge_deleted()
        .withf(|tenant, id| *tenant == TENANT && *id == UPLOAD_ID)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(true));
    let stuck_key = stuck.storage_key.clone();
    files
        .storage
        .expect_delete()
        .withf(move |k| *k == stuck_key)
        .times(1)
        .returning(|_| Err(StorageError::Unexpected(anyhow::anyhow!("disk gone"))));
    // The stuck file keeps its record, to be tried again.
    files
        .repository
        .expect_purge_deleted()
        .withf(|_, id| *id == OTHER_UPLOAD_ID)
        .never();
    let purged = files.service(Harness::new()).purge_deleted().await.unwrap();
    assert_eq!(purged, 1);
}

/// Who may download an upload before it is sent, and the container check of
/// Word uploads, against mocked stores of their own.
mod drafts_and_containers {
    use std::io::Write as _;

    use super::*;
    use crate::{
        AllowAll, MockAttachmentRepository, MockClock, MockConversationRepository,
        MockEventPublisher, MockFileStorage, MockMessageRepository, MockReadStateRepository, Ports,
        UuidV7Generator,
    };

    fn body(bytes: Vec<u8>) -> ByteStream {
        let pieces: Vec<std::io::Result<Bytes>> = bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(pieces).boxed()
    }

    /// Reads a body to its end the way a store does.
    async fn drain(mut body: ByteStream) -> Result<u64, StorageError> {
        let mut stored = 0;
        while let Some(chunk) = body.next().await {
            stored += chunk.map_err(StorageError::Body)?.len() as u64;
        }
        Ok(stored)
    }

    /// The service over `conversations`, `repository` and `storage`; every
    /// other port panics when used.
    fn service(
        conversations: MockConversationRepository,
        repository: MockAttachmentRepository,
        storage: MockFileStorage,
    ) -> AttachmentService {
        let clock = || {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(now());
            Arc::new(clock)
        };
        let chat = ChatService::new(Ports {
            conversations: Arc::new(conversations),
            messages: Arc::new(MockMessageRepository::new()),
            read_states: Arc::new(MockReadStateRepository::new()),
            members: Arc::new(crate::ports::MockMembershipRepository::new()),
            events: Arc::new(MockEventPublisher::new()),
            policy: Arc::new(AllowAll),
            clock: clock(),
            ids: Arc::new(UuidV7Generator),
        });
        AttachmentService::new(
            chat,
            AttachmentPorts {
                repository: Arc::new(repository),
                storage: Arc::new(storage),
                scanner: None,
                clock: clock(),
            },
            AttachmentSettings {
                max_bytes: 1024 * 1024,
                signed_url_ttl: None,
            },
        )
    }

    #[tokio::test]
    async fn an_upload_not_yet_sent_is_not_found_for_anyone_but_its_uploader() {
        #[rustfmt::skip]
        let cases = [
            ("its uploader, before it is sent",           customer(), None,             true),
            ("staff of the conversation, before it is sent", staff(), None,             false),
            ("staff of the conversation, once it is sent",   staff(), Some(STORED_MESSAGE_ID), true),
            ("its uploader, once it is sent",             customer(), Some(STORED_MESSAGE_ID), true),
        ];
        for (who, principal, message, downloads) in cases {
            let mut repository = MockAttachmentRepository::new();
            repository
                .expect_find_attachment()
                .withf(|tenant, id| *tenant == TENANT && *id == UPLOAD_ID)
                .times(1)
                .return_once(move |_, _| Ok(Some(stored_attachment(message))));
            // Everyone here may read the conversation.
            let mut conversations = MockConversationRepository::new();
            conversations
                .expect_find()
                .withf(|tenant, id| *tenant == TENANT && *id == CONVERSATION_ID)
                .times(1)
                .return_once(|_, _| Ok(Some(inbox())));
            let mut storage = MockFileStorage::new();
            if downloads {
                storage
                    .expect_get()
                    .times(1)
                    .returning(|_| Ok(body(PDF.to_vec())));
            } else {
                storage.expect_get().never();
                storage.expect_signed_url().never();
            }
            let result = service(conversations, repository, storage)
                .download(&principal, UPLOAD_ID)
                .await;
            match (downloads, result) {
                (true, Ok(Download::Stream { attachment, .. })) => {
                    assert_eq!(attachment.id, UPLOAD_ID, "{who}");
                }
                (false, Err(AttachmentError::NotFound)) => {}
                (_, other) => panic!("{who}: {other:?}"),
            }
        }
    }

    /// A DOCX package of `parts`.
    fn docx(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, content) in parts {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(content.as_bytes()).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    // Multi-threaded: the mocked store blocks its thread while the stream
    // waits for the container check on the blocking threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_word_upload_with_macros_fails_its_stream_and_nothing_is_kept() {
        let types = r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
        let document = "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"/>";
        let clean = docx(&[
            ("[Content_Types].xml", types),
            ("word/document.xml", document),
        ]);
        let with_macros = docx(&[
            ("[Content_Types].xml", types),
            ("word/document.xml", document),
            ("word/VBAPROJECT.BIN", "VBA"),
        ]);
        for (what, data, accepted) in [("clean", clean, true), ("with macros", with_macros, false)]
        {
            let mut conversations = MockConversationRepository::new();
            conversations
                .expect_find()
                .times(1)
                .return_once(|_, _| Ok(Some(inbox())));
            let mut storage = MockFileStorage::new();
            storage
                .expect_put()
                .withf(|_, media, _, _| *media == MediaType::Docx)
                .times(1)
                .returning(|_, _, body, _| {
                    tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(drain(body))
                    })
                });
            // The store saw the stream fail, so there is nothing to remove.
            storage.expect_delete().never();
            let mut repository = MockAttachmentRepository::new();
            if accepted {
                repository
                    .expect_insert_attachment()
                    .withf(|new| new.media_type == MediaType::Docx)
                    .times(1)
                    .returning(|new| Ok(new.clone().into_attachment()));
            } else {
                repository.expect_insert_attachment().never();
            }
            let result = service(conversations, repository, storage)
                .upload(&customer(), CONVERSATION_ID, Some("rx.docx"), body(data))
                .await;
            match (accepted, result) {
                (true, Ok(attachment)) => assert_eq!(attachment.media_type, MediaType::Docx),
                (false, Err(AttachmentError::UnsupportedType(reason))) => {
                    assert!(
                        matches!(reason, UnsupportedContent::Macros { .. }),
                        "{what}: {reason:?}"
                    );
                    let reason = reason.to_string();
                    assert!(reason.contains("macros"), "{what}: {reason}");
                }
                (_, other) => panic!("{what}: {other:?}"),
            }
        }
    }
}
