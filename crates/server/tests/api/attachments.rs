//! Attachments end to end: a photo from customer to staff, hostile uploads
//! and Word files with macros, who may download and attach what (an upload
//! not yet sent only its uploader), scanning, the orphan sweep, deleted
//! messages' files and S3.

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chat_domain::{CustomerId, StaffUserId, TenantId};
use chat_server::config::StorageSettings;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_databases;
use crate::helpers::{Chat, Db, Reply, TestApp};

both_databases!(
    a_customer_photo_reaches_staff_byte_for_byte,
    hostile_uploads_get_their_4xx_and_leave_nothing_behind,
    word_files_with_macros_get_415_and_leave_nothing_behind,
    an_upload_not_yet_sent_is_downloadable_only_by_its_uploader,
    other_tenants_and_other_customers_get_404_on_download_and_on_attaching,
    sends_refuse_attachments_of_another_conversation_reused_or_too_many,
    uploads_need_a_multipart_file_field,
    infected_uploads_are_refused_with_422_and_nothing_is_kept,
    uploads_never_sent_are_swept_after_their_ttl,
    deleting_a_message_takes_its_files_from_everyone_and_from_storage,
    s3_storage_serves_downloads_through_short_lived_signed_urls,
);

/// (what, file name, declared type, bytes, status, error code)
type HostileUpload<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);

const BOUNDARY: &str = "chat-test-boundary-7d3f0c";

/// The EICAR anti-virus test string.
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A multipart body with one `file` field.
fn multipart(file_name: &str, declared_type: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: {declared_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A small but real-looking PNG: signature, then pseudo-random bytes.
fn png(len: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let mut state: u32 = 0x1234_5678;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // Keep clear of '<' so no random markup can appear.
        out.push(state.to_le_bytes()[0] & 0x3b);
    }
    out
}

fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% {text}\n%%EOF\n").into_bytes()
}

async fn upload(
    app: &TestApp,
    token: &str,
    conversation: &str,
    file_name: &str,
    declared_type: &str,
    data: &[u8],
) -> Reply {
    app.post_raw(
        &format!("/api/v1/chat/conversations/{conversation}/attachments"),
        token,
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        multipart(file_name, declared_type, data),
    )
    .await
}

async fn send_files(app: &TestApp, token: &str, conversation: &str, body: Value) -> Reply {
    app.post(
        &format!("/api/v1/chat/conversations/{conversation}/messages"),
        token,
        body,
    )
    .await
}

fn storage_dir(app: &TestApp) -> PathBuf {
    match &app.settings.attachments.storage {
        StorageSettings::Local { dir } => dir.clone(),
        other => panic!("not local storage: {other:?}"),
    }
}

/// Every stored file under the storage folder (partial uploads included).
fn stored_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

async fn fetch(app: &TestApp, token: &str, url: &str) -> reqwest::Response {
    app.client
        .get(app.url(url))
        .bearer_auth(token)
        .send()
        .await
        .expect("download completes")
}

async fn a_customer_photo_reaches_staff_byte_for_byte(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        id: conversation,
        customer_token,
        ..
    } = app.chat().await;
    let photo = png(300_000);

    let uploaded = upload(
        &app,
        &customer_token,
        &conversation,
        "IMG 0042.png",
        "image/png",
        &photo,
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{uploaded:?}");
    let id = uploaded.body["id"].as_str().unwrap().to_owned();
    let url = uploaded.body["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("/api/v1/chat/attachments/{id}"));
    assert_eq!(uploaded.body["name"], "IMG 0042.png");
    assert_eq!(uploaded.body["content_type"], "image/png");
    assert_eq!(uploaded.body["size"], photo.len());

    // A photo alone is a message.
    let sent = send_files(
        &app,
        &customer_token,
        &conversation,
        json!({"attachment_ids": [id], "client_msg_id": "photo-1"}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{sent:?}");
    assert_eq!(sent.body["body"], Value::Null);
    assert_eq!(sent.body["attachments"], json!([uploaded.body.clone()]));
    let replayed = send_files(
        &app,
        &customer_token,
        &conversation,
        json!({"attachment_ids": [id], "client_msg_id": "photo-1"}),
    )
    .await;
    assert_eq!(replayed.status, StatusCode::OK, "{replayed:?}");
    assert_eq!(replayed.body, sent.body);

    let history = app
        .get(
            &format!("/api/v1/chat/conversations/{conversation}/messages"),
            &staff,
        )
        .await;
    assert_eq!(
        history.body["messages"][0]["attachments"][0]["id"],
        id.as_str()
    );
    let list = app.get("/api/v1/chat/conversations", &staff).await;
    assert_eq!(
        list.body["conversations"][0]["last_message"]["attachments"][0]["id"],
        id.as_str()
    );

    let response = fetch(&app, &staff, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["content-length"], photo.len().to_string().as_str());
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"IMG 0042.png\""));
    assert_eq!(headers["cache-control"], "private, no-store");
    let bytes = response.bytes().await.expect("body");
    assert!(bytes.as_ref() == photo.as_slice(), "staff got other bytes");

    // The bytes live under the key convention, never under the file name.
    let files = stored_files(&storage_dir(&app));
    assert_eq!(files.len(), 1, "{files:?}");
    let key = files[0]
        .strip_prefix(storage_dir(&app))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        key.starts_with(&format!("chat/{}/{conversation}/", app.tenant)),
        "{key}"
    );
    assert!(key.ends_with(&format!("{id}.png")), "{key}");
}

async fn hostile_uploads_get_their_4xx_and_leave_nothing_behind(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        id: conversation,
        customer_token: token,
        ..
    } = app.chat().await;
    let max = usize::try_from(app.settings.attachments.max_bytes).unwrap();

    let mut exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0\xb8\0".to_vec();
    exe.extend_from_slice(b"This program cannot be run in DOS mode.");
    let svg = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"><script>alert(document.cookie)</script></svg>".to_vec();
    let html = b"<!DOCTYPE html><html><body><script>fetch('/api/v1/chat/conversations')</script></body></html>".to_vec();
    let polyglot = b"%PDF-1.4\n%<html><body><script>alert(document.domain)</script></body></html>\n1 0 obj << >> endobj\n%%EOF".to_vec();
    let text_as_png = b"just some text pretending to be a picture".to_vec();
    let mut too_big = png(max + 1);
    too_big.truncate(max + 1);

    #[rustfmt::skip]
    let cases: Vec<HostileUpload<'_>> = vec![
        ("an executable renamed .pdf", "invoice.pdf",   "application/pdf", exe,        415, "unsupported_media_type"),
        ("an SVG with script",         "logo.svg",      "image/svg+xml",   svg,        415, "unsupported_media_type"),
        ("an HTML file",               "page.html",     "text/html",       html,       415, "unsupported_media_type"),
        ("a PDF/HTML polyglot",        "rx.pdf",        "application/pdf", polyglot,   415, "unsupported_media_type"),
        ("text declared image/png",    "photo.png",     "image/png",       text_as_png, 415, "unsupported_media_type"),
        ("10 MiB + 1 byte",            "huge.png",      "image/png",       too_big,    413, "payload_too_large"),
        ("an empty file",              "empty.pdf",     "application/pdf", Vec::new(), 400, "invalid_request"),
    ];
    for (what, name, declared, data, status, code) in cases {
        let reply = upload(&app, &token, &conversation, name, declared, &data).await;
        assert_eq!(reply.status.as_u16(), status, "{what}: {reply:?}");
        assert_eq!(reply.error_code(), code, "{what}");
    }
    assert!(
        stored_files(&storage_dir(&app)).is_empty(),
        "refused uploads left files behind"
    );

    // A path in the name is display metadata only, cut to its last part.
    let reply = upload(
        &app,
        &token,
        &conversation,
        "../../etc/passwd",
        "application/pdf",
        &pdf("ok"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["name"], "passwd.pdf");
    let files = stored_files(&storage_dir(&app));
    assert_eq!(files.len(), 1);
    assert!(
        files[0].starts_with(storage_dir(&app).join("chat")),
        "{files:?}"
    );
    assert!(!Path::new("/etc/passwd.pdf").exists());
}

const DOCX_TYPE: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Default Extension="bin" ContentType="application/octet-stream"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
const PACKAGE_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
const DOCUMENT: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Dosage plan</w:t></w:r></w:p></w:body></w:document>"#;

/// A DOCX package: `content_types`, the package relationships, the main
/// part, and `extra` parts.
fn docx(content_types: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let parts = [
        ("[Content_Types].xml", content_types),
        ("_rels/.rels", PACKAGE_RELS),
        ("word/document.xml", DOCUMENT),
    ];
    for (name, content) in parts.iter().chain(extra) {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        writer.write_all(content.as_bytes()).expect("zip write");
    }
    writer.finish().expect("zip").into_inner()
}

/// A Word 97-2003 file: a compound file with a stream at each of `streams`.
fn doc(streams: &[&str]) -> Vec<u8> {
    let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).expect("cfb");
    for path in streams {
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            file.create_storage_all(parent).expect("cfb storage");
        }
        let mut stream = file.create_stream(path).expect("cfb stream");
        stream.write_all(&[0x5a; 700]).expect("cfb write");
    }
    file.flush().expect("cfb flush");
    file.into_inner().into_inner()
}

async fn word_files_with_macros_get_415_and_leave_nothing_behind(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        id: conversation,
        customer_token: token,
        ..
    } = app.chat().await;
    let docm_types = CONTENT_TYPES
        .replace(
            "wordprocessingml.document.main+xml",
            "wordprocessingml.document.macroEnabled.main+xml",
        )
        .replace(
            "</Types>",
            r#"<Override PartName="/word/macros.bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>"#,
        );
    let vba_relationship = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId7" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="macros.bin"/></Relationships>"#;

    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        ("a macro-enabled package with a vbaProject relationship to word/macros.bin", "rx.docx", DOCX_TYPE,
            docx(&docm_types, &[("word/_rels/document.xml.rels", vba_relationship), ("word/macros.bin", "VBA")])),
        ("a vbaProject relationship in a plain package", "rx.docx", DOCX_TYPE,
            docx(CONTENT_TYPES, &[("word/_rels/document.xml.rels", vba_relationship), ("word/macros.bin", "VBA")])),
        ("a part named word/VBAPROJECT.BIN", "rx.docx", DOCX_TYPE,
            docx(CONTENT_TYPES, &[("word/VBAPROJECT.BIN", "VBA")])),
        ("a DOC with Macros/VBA/_VBA_PROJECT", "rx.doc", "application/msword",
            doc(&["WordDocument", "Macros/VBA/_VBA_PROJECT", "Macros/PROJECT"])),
        ("a DOC with lower-case VBA names", "rx.doc", "application/msword",
            doc(&["WordDocument", "macros/vba/_vba_project"])),
    ];
    for (what, name, declared, data) in cases {
        let reply = upload(&app, &token, &conversation, name, declared, &data).await;
        reply.expect_error(415, "unsupported_media_type");
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("macros"), "{what}: {message}");
    }
    assert!(
        stored_files(&storage_dir(&app)).is_empty(),
        "refused Word files left files behind"
    );

    // The same files without macros are accepted.
    for (name, declared, data, content_type) in [
        ("plan.docx", DOCX_TYPE, docx(CONTENT_TYPES, &[]), DOCX_TYPE),
        (
            "plan.doc",
            "application/msword",
            doc(&["WordDocument", "1Table"]),
            "application/msword",
        ),
    ] {
        let reply = upload(&app, &token, &conversation, name, declared, &data).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{name}: {reply:?}");
        assert_eq!(reply.body["content_type"], content_type, "{name}");
    }
    assert_eq!(stored_files(&storage_dir(&app)).len(), 2);
}

async fn an_upload_not_yet_sent_is_downloadable_only_by_its_uploader(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        id: conversation,
        customer_token,
        ..
    } = app.chat().await;
    let uploaded = upload(
        &app,
        &customer_token,
        &conversation,
        "rx.pdf",
        "application/pdf",
        &pdf("draft"),
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{uploaded:?}");
    let id = uploaded.body["id"].as_str().unwrap().to_owned();
    let url = uploaded.body["url"].as_str().unwrap().to_owned();

    // Staff of the conversation get what a missing attachment gets.
    let missing = format!("/api/v1/chat/attachments/{}", uuid::Uuid::now_v7());
    let expected = TestApp::reply(fetch(&app, &staff, &missing).await).await;
    expected.expect_error(404, "not_found");
    let refused = TestApp::reply(fetch(&app, &staff, &url).await).await;
    assert_eq!(refused.status, expected.status, "{refused:?}");
    assert_eq!(refused.body, expected.body);
    // Its uploader may look at it before sending.
    let own = fetch(&app, &customer_token, &url).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(own.bytes().await.unwrap().as_ref(), pdf("draft").as_slice());

    let sent = send_files(
        &app,
        &customer_token,
        &conversation,
        json!({"body": "my prescription", "attachment_ids": [id]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{sent:?}");
    let response = fetch(&app, &staff, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        pdf("draft").as_slice()
    );
}

async fn other_tenants_and_other_customers_get_404_on_download_and_on_attaching(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        customer,
        id: conversation,
        customer_token: token,
    } = app.chat().await;
    let uploaded = upload(
        &app,
        &token,
        &conversation,
        "rx.pdf",
        "application/pdf",
        &pdf("mine"),
    )
    .await;
    let id = uploaded.body["id"].as_str().unwrap().to_owned();
    let url = uploaded.body["url"].as_str().unwrap().to_owned();

    let other_customer = CustomerId::new_v4();
    let other_conversation = app.open_conversation(&staff, other_customer).await;
    let other_token = app.customer_token(&staff, other_customer).await;
    let foreign_staff = app.token(TenantId::new_v4(), StaffUserId::new_v4(), "admin");
    let foreign_conversation = app.open_conversation(&foreign_staff, customer).await;

    for (who, caller) in [
        ("another customer", &other_token),
        ("another tenant's admin", &foreign_staff),
    ] {
        let response = fetch(&app, caller, &url).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{who}");
    }
    send_files(
        &app,
        &other_token,
        &other_conversation,
        json!({"attachment_ids": [id]}),
    )
    .await
    .expect_error(404, "not_found");
    let refused = send_files(
        &app,
        &foreign_staff,
        &foreign_conversation,
        json!({"attachment_ids": [id]}),
    )
    .await;
    refused.expect_error(404, "not_found");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("attachment_ids") && message.contains(id.as_str()),
        "names the attachment refused: {message}"
    );
    // Nor can they upload into a conversation that is not theirs.
    upload(
        &app,
        &other_token,
        &conversation,
        "x.pdf",
        "application/pdf",
        &pdf("x"),
    )
    .await
    .expect_error(404, "not_found");
    let missing = format!("/api/v1/chat/attachments/{}", uuid::Uuid::now_v7());
    assert_eq!(
        fetch(&app, &staff, &missing).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fetch(&app, &staff, "/api/v1/chat/attachments/not-a-uuid")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // The owner's message still goes through afterwards.
    let sent = send_files(
        &app,
        &token,
        &conversation,
        json!({"body": "my prescription", "attachment_ids": [id]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{sent:?}");
}

async fn sends_refuse_attachments_of_another_conversation_reused_or_too_many(db: Db) {
    let app = TestApp::spawn(db).await;
    let clinician = StaffUserId::new_v4();
    let staff = app.staff(clinician);
    let customer = CustomerId::new_v4();
    let inbox = app.open_conversation(&staff, customer).await;
    let private = app
        .post(
            "/api/v1/chat/conversations",
            &staff,
            json!({"customer_id": customer.to_string(), "staff_user_id": clinician.to_string()}),
        )
        .await;
    let private = private.body["id"].as_str().unwrap().to_owned();
    let token = app.customer_token(&staff, customer).await;
    let in_inbox = upload(&app, &token, &inbox, "a.pdf", "application/pdf", &pdf("a")).await;
    let in_inbox = in_inbox.body["id"].as_str().unwrap().to_owned();

    // An upload of one conversation cannot be sent into another one.
    send_files(
        &app,
        &token,
        &private,
        json!({"attachment_ids": [in_inbox]}),
    )
    .await
    .expect_error(404, "not_found");
    // Nor by someone else than its uploader.
    send_files(&app, &staff, &inbox, json!({"attachment_ids": [in_inbox]}))
        .await
        .expect_error(404, "not_found");
    send_files(
        &app,
        &token,
        &inbox,
        json!({"attachment_ids": [in_inbox, in_inbox]}),
    )
    .await
    .expect_error(400, "invalid_request");
    let eleven: Vec<String> = (0..11).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    send_files(
        &app,
        &token,
        &inbox,
        json!({"body": "many", "attachment_ids": eleven}),
    )
    .await
    .expect_error(400, "invalid_request");
    send_files(&app, &token, &inbox, json!({"attachment_ids": []}))
        .await
        .expect_error(400, "invalid_request");

    let first = send_files(&app, &token, &inbox, json!({"attachment_ids": [in_inbox]})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    send_files(
        &app,
        &token,
        &inbox,
        json!({"body": "again", "attachment_ids": [in_inbox]}),
    )
    .await
    .expect_error(400, "invalid_request");
    let history = app
        .get(
            &format!("/api/v1/chat/conversations/{inbox}/messages"),
            &staff,
        )
        .await;
    assert_eq!(
        history.body["messages"].as_array().unwrap().len(),
        1,
        "refused sends stored nothing"
    );
}

async fn uploads_need_a_multipart_file_field(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let conversation = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let path = format!("/api/v1/chat/conversations/{conversation}/attachments");
    app.post_raw(&path, &staff, Some("application/pdf"), pdf("raw"))
        .await
        .expect_error(415, "unsupported_media_type");
    let no_file = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n");
    app.post_raw(
        &path,
        &staff,
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        no_file.into_bytes(),
    )
    .await
    .expect_error(400, "invalid_request");
    let truncated = multipart("a.pdf", "application/pdf", &pdf("cut"));
    app.post_raw(
        &path,
        &staff,
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        truncated[..truncated.len() - 30].to_vec(),
    )
    .await
    .expect_error(400, "invalid_request");
    // The upload route has its own limit: a 1 MiB file passes although the
    // JSON routes stop at 64 KiB.
    let reply = upload(
        &app,
        &staff,
        &conversation,
        "big.png",
        "image/png",
        &png(1024 * 1024),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert!(stored_files(&storage_dir(&app).join(".partial")).is_empty());
}

async fn infected_uploads_are_refused_with_422_and_nothing_is_kept(db: Db) {
    let Ok(clamd) = std::env::var("CHAT_TEST_CLAMD_ADDR") else {
        eprintln!(
            "SKIPPED: CHAT_TEST_CLAMD_ADDR is not set, so uploads are not scanned here. \
             scripts/test.sh starts a clamd when ClamAV can be installed."
        );
        return;
    };
    let app = TestApp::spawn_with(db, &[("CHAT_CLAMD_ADDR", &clamd)]).await;
    let Chat {
        id: conversation,
        customer_token: token,
        ..
    } = app.chat().await;
    let mut infected = pdf("carrier");
    infected.extend_from_slice(EICAR);
    let reply = upload(
        &app,
        &token,
        &conversation,
        "rx.pdf",
        "application/pdf",
        &infected,
    )
    .await;
    reply.expect_error(422, "infected");
    assert!(
        stored_files(&storage_dir(&app)).is_empty(),
        "an infected upload was kept"
    );
    let clean = upload(
        &app,
        &token,
        &conversation,
        "rx.pdf",
        "application/pdf",
        &pdf("clean"),
    )
    .await;
    assert_eq!(clean.status, StatusCode::CREATED, "{clean:?}");
}

async fn uploads_never_sent_are_swept_after_their_ttl(db: Db) {
    let app = TestApp::spawn_with(db, &[("CHAT_ORPHAN_ATTACHMENT_TTL_SECONDS", "1")]).await;
    let staff = app.staff(StaffUserId::new_v4());
    let conversation = app.open_conversation(&staff, CustomerId::new_v4()).await;
    let orphan = upload(
        &app,
        &staff,
        &conversation,
        "left.pdf",
        "application/pdf",
        &pdf("left"),
    )
    .await;
    let kept = upload(
        &app,
        &staff,
        &conversation,
        "sent.pdf",
        "application/pdf",
        &pdf("sent"),
    )
    .await;
    let kept_id = kept.body["id"].as_str().unwrap();
    let sent = send_files(
        &app,
        &staff,
        &conversation,
        json!({"attachment_ids": [kept_id]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED);
    let orphan_url = orphan.body["url"].as_str().unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if fetch(&app, &staff, orphan_url).await.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the orphan was never swept"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        stored_files(&storage_dir(&app)).len(),
        1,
        "only the sent file is left"
    );
    let kept = fetch(&app, &staff, kept.body["url"].as_str().unwrap()).await;
    assert_eq!(kept.status(), StatusCode::OK);
}

/// Waits until exactly `count` files are left in the storage folder.
async fn wait_for_stored_files(app: &TestApp, count: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let files = stored_files(&storage_dir(app));
        if files.len() == count {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {files:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deleting_a_message_takes_its_files_from_everyone_and_from_storage(db: Db) {
    // The default TTL: the periodic sweep is 15 minutes away, so only the
    // purge the deletion asks for can remove the file in time.
    let app = TestApp::spawn(db).await;
    let Chat {
        staff,
        id: conversation,
        customer_token,
        ..
    } = app.chat().await;
    let mut urls = Vec::new();
    let mut messages = Vec::new();
    for name in ["wrong-patient.pdf", "right.pdf"] {
        let uploaded = upload(
            &app,
            &customer_token,
            &conversation,
            name,
            "application/pdf",
            &pdf(name),
        )
        .await;
        assert_eq!(uploaded.status, StatusCode::CREATED, "{uploaded:?}");
        let id = uploaded.body["id"].as_str().unwrap().to_owned();
        let sent = send_files(
            &app,
            &customer_token,
            &conversation,
            json!({"attachment_ids": [id], "body": name}),
        )
        .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{sent:?}");
        urls.push(uploaded.body["url"].as_str().unwrap().to_owned());
        messages.push((id, sent.body["id"].as_str().unwrap().to_owned()));
    }
    wait_for_stored_files(&app, 2, "both files stored").await;

    let (doomed_file, doomed) = &messages[0];
    let deleted = app
        .delete(
            &format!("/api/v1/chat/conversations/{conversation}/messages/{doomed}"),
            &customer_token,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert_eq!(deleted.body["body"], Value::Null);
    assert_eq!(deleted.body["attachments"], json!([]));

    // Gone for everyone at once, whatever the storage does next.
    for token in [&staff, &customer_token] {
        let response = fetch(&app, token, &urls[0]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let history = app
            .get(
                &format!("/api/v1/chat/conversations/{conversation}/messages"),
                token,
            )
            .await;
        assert_eq!(history.body["messages"][1]["id"], doomed.as_str());
        assert_eq!(history.body["messages"][1]["attachments"], json!([]));
        assert_eq!(
            history.body["messages"][0]["attachments"][0]["id"],
            messages[1].0.as_str()
        );
    }
    // It cannot come back in another message: refused as already sent
    // (400) while its record waits for the purge, as unknown (404) after.
    let again = send_files(
        &app,
        &customer_token,
        &conversation,
        json!({"attachment_ids": [doomed_file]}),
    )
    .await;
    assert!(
        [StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND].contains(&again.status),
        "{again:?}"
    );

    // And its bytes leave the storage; the other message keeps its file.
    wait_for_stored_files(&app, 1, "the deleted message's file is removed").await;
    let kept = fetch(&app, &staff, &urls[1]).await;
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(
        kept.bytes().await.unwrap().as_ref(),
        pdf("right.pdf").as_slice()
    );
}

async fn s3_storage_serves_downloads_through_short_lived_signed_urls(db: Db) {
    let Ok(endpoint) = std::env::var("CHAT_TEST_S3_ENDPOINT") else {
        eprintln!(
            "SKIPPED: CHAT_TEST_S3_ENDPOINT is not set, so the server is not tested on S3 here. \
             scripts/test.sh starts an S3-compatible server and sets it."
        );
        return;
    };
    let settings = adapters_storage::S3Settings {
        endpoint: Some(endpoint.clone()),
        region: "eu-west-1".into(),
        bucket: "chat-e2e".into(),
        access_key_id: "chat-test".into(),
        secret_access_key: "chat-test-secret".into(),
        path_style: true,
    };
    adapters_storage::S3Storage::new(settings)
        .expect("S3 client")
        .create_bucket_if_missing()
        .await
        .expect("bucket");
    let app = TestApp::spawn_with(
        db,
        &[
            ("CHAT_STORAGE", "s3"),
            ("CHAT_S3_ENDPOINT", &endpoint),
            ("CHAT_S3_REGION", "eu-west-1"),
            ("CHAT_S3_BUCKET", "chat-e2e"),
            ("CHAT_S3_ACCESS_KEY_ID", "chat-test"),
            ("CHAT_S3_SECRET_ACCESS_KEY", "chat-test-secret"),
            ("CHAT_S3_PATH_STYLE", "true"),
            ("CHAT_S3_SIGNED_URL_TTL_SECONDS", "120"),
        ],
    )
    .await;
    let Chat {
        staff,
        id: conversation,
        customer_token: token,
        ..
    } = app.chat().await;
    let photo = png(200_000);
    let uploaded = upload(&app, &token, &conversation, "scan.png", "image/png", &photo).await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{uploaded:?}");
    let url = uploaded.body["url"].as_str().unwrap();
    let sent = send_files(
        &app,
        &token,
        &conversation,
        json!({"attachment_ids": [uploaded.body["id"]]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{sent:?}");

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let redirect = no_redirects
        .get(app.url(url))
        .bearer_auth(&staff)
        .send()
        .await
        .expect("download");
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Expires=120"), "{location}");
    let bytes = reqwest::get(&location)
        .await
        .expect("signed URL")
        .bytes()
        .await
        .expect("body");
    assert!(bytes.as_ref() == photo.as_slice(), "S3 served other bytes");

    let other = app.customer_token(&staff, CustomerId::new_v4()).await;
    assert_eq!(
        fetch(&app, &other, url).await.status(),
        StatusCode::NOT_FOUND
    );
}
