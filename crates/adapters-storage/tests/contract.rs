//! The `FileStorage` contract, written once and run against both adapters:
//! [`LocalStorage`] on a temporary folder, and [`S3Storage`] against the
//! S3-compatible server named by `CHAT_TEST_S3_ENDPOINT` (scripts/test.sh
//! starts one). Then the ClamAV adapter, against a small in-test clamd that
//! speaks `INSTREAM`, and against a real clamd when `CHAT_TEST_CLAMD_ADDR`
//! names one.
//!
//! Tests whose server is not configured say so loudly on stderr and pass
//! without checking anything; scripts/test.sh configures both whenever it
//! could install them.

use std::sync::Arc;
use std::time::Duration;

use adapters_storage::{ClamdScanner, LocalStorage, S3Settings, S3Storage};
use bytes::Bytes;
use chat_app::{ByteStream, DownloadHeaders, FileStorage, ScanVerdict, Scanner, StorageError};
use chat_domain::{AttachmentId, AttachmentName, ConversationId, MediaType, StorageKey, TenantId};
use chrono::Utc;
use futures::StreamExt as _;

/// The EICAR anti-virus test file: harmless, detected by every scanner.
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn key(media: MediaType) -> StorageKey {
    StorageKey::for_attachment(
        TenantId::new_v4(),
        ConversationId::new_v7(),
        AttachmentId::new_v7(),
        media,
        Utc::now(),
    )
}

/// `len` bytes that do not repeat in short cycles.
fn data(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// `bytes` as a stream of `chunk`-sized pieces.
fn body(bytes: &[u8], chunk: usize) -> ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

async fn read_all(mut stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read chunk"));
    }
    out
}

fn headers(name: &str, media: MediaType) -> DownloadHeaders {
    DownloadHeaders {
        media_type: media,
        content_disposition: AttachmentName::sanitize(Some(name), media).content_disposition(),
    }
}

/// The contract every `FileStorage` must keep.
mod suite {
    use super::*;

    /// Small and multi-part sized files come back byte for byte.
    pub async fn stores_and_streams_back_identical_bytes(storage: &dyn FileStorage) {
        for (len, chunk) in [(1, 1), (70_000, 4096), (9 * 1024 * 1024 + 17, 64 * 1024)] {
            let key = key(MediaType::Pdf);
            let bytes = data(len);
            let stored = storage
                .put(&key, MediaType::Pdf, body(&bytes, chunk), 10 * 1024 * 1024)
                .await
                .expect("put");
            assert_eq!(stored, len as u64);
            let back = read_all(storage.get(&key).await.expect("get")).await;
            assert!(back == bytes, "{len} bytes came back different");
            storage.delete(&key).await.expect("delete");
        }
    }

    /// A body one byte over the limit is refused and leaves no object.
    pub async fn a_body_over_the_limit_is_refused_and_nothing_is_kept(storage: &dyn FileStorage) {
        for (limit, chunk) in [(1000_u64, 100), (1000, 1001)] {
            let key = key(MediaType::Png);
            let bytes = data(usize::try_from(limit).unwrap() + 1);
            let err = storage
                .put(&key, MediaType::Png, body(&bytes, chunk), limit)
                .await
                .unwrap_err();
            assert!(matches!(err, StorageError::TooLarge), "{err:?}");
            assert!(matches!(
                storage.get(&key).await,
                Err(StorageError::NotFound)
            ));
        }
        // Exactly at the limit is fine.
        let key = key(MediaType::Png);
        let stored = storage
            .put(&key, MediaType::Png, body(&data(1000), 300), 1000)
            .await
            .expect("put at the limit");
        assert_eq!(stored, 1000);
        storage.delete(&key).await.expect("delete");
    }

    /// A body that fails half-way (client gone) leaves no object.
    pub async fn a_failing_body_is_refused_and_nothing_is_kept(storage: &dyn FileStorage) {
        let key = key(MediaType::Jpeg);
        let failing: ByteStream = futures::stream::iter(vec![
            Ok(Bytes::from(data(5000))),
            Err(std::io::Error::other("client went away")),
        ])
        .boxed();
        let err = storage
            .put(&key, MediaType::Jpeg, failing, 1_000_000)
            .await
            .unwrap_err();
        match err {
            StorageError::Body(cause) => assert_eq!(cause.to_string(), "client went away"),
            other => panic!("expected a body error, got {other:?}"),
        }
        assert!(matches!(
            storage.get(&key).await,
            Err(StorageError::NotFound)
        ));
    }

    /// Missing keys are `NotFound`; deleting twice is fine.
    pub async fn missing_keys_are_not_found_and_deletes_are_idempotent(storage: &dyn FileStorage) {
        let key = key(MediaType::Gif);
        assert!(matches!(
            storage.get(&key).await,
            Err(StorageError::NotFound)
        ));
        storage.delete(&key).await.expect("delete missing");
        storage
            .put(&key, MediaType::Gif, body(b"GIF89a", 6), 100)
            .await
            .expect("put");
        storage.delete(&key).await.expect("delete");
        storage.delete(&key).await.expect("delete again");
        assert!(matches!(
            storage.get(&key).await,
            Err(StorageError::NotFound)
        ));
    }
}

macro_rules! storage_contract {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let storage = super::LocalStorage::open(dir.path()).await.expect("open");
                    super::suite::$case(&storage).await;
                    super::assert_no_partial_files(dir.path());
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(storage) = super::s3_storage("contract").await else { return };
                    super::suite::$case(&*storage).await;
                }
            )*
        }
    };
}

storage_contract!(
    stores_and_streams_back_identical_bytes,
    a_body_over_the_limit_is_refused_and_nothing_is_kept,
    a_failing_body_is_refused_and_nothing_is_kept,
    missing_keys_are_not_found_and_deletes_are_idempotent,
);

/// Refused uploads must not leave their temporary files either.
fn assert_no_partial_files(root: &std::path::Path) {
    let partial: Vec<_> = std::fs::read_dir(root.join(".partial"))
        .expect("partial dir")
        .collect();
    assert!(partial.is_empty(), "left behind: {partial:?}");
}

/// The S3 store of the test server, with `bucket` created, or `None` (said
/// loudly) when no server is configured.
async fn s3_storage(bucket: &str) -> Option<Arc<S3Storage>> {
    let Ok(endpoint) = std::env::var("CHAT_TEST_S3_ENDPOINT") else {
        eprintln!(
            "SKIPPED: CHAT_TEST_S3_ENDPOINT is not set, so the S3 adapter is not tested here. \
             scripts/test.sh starts an S3-compatible server and sets it."
        );
        return None;
    };
    let storage = S3Storage::new(S3Settings {
        endpoint: Some(endpoint),
        region: "eu-west-1".into(),
        bucket: bucket.into(),
        access_key_id: "chat-test".into(),
        secret_access_key: "chat-test-secret".into(),
        path_style: true,
    })
    .expect("S3 client");
    storage
        .create_bucket_if_missing()
        .await
        .expect("create the test bucket");
    Some(Arc::new(storage))
}

#[tokio::test]
async fn local_storage_never_signs_urls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalStorage::open(dir.path()).await.expect("open");
    let url = storage
        .signed_url(
            &key(MediaType::Pdf),
            Duration::from_secs(60),
            &headers("rx.pdf", MediaType::Pdf),
        )
        .await
        .expect("signed url");
    assert_eq!(url, None);
}

#[tokio::test]
async fn local_storage_keeps_files_at_their_key_under_the_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalStorage::open(dir.path()).await.expect("open");
    let key = key(MediaType::Webp);
    storage
        .put(&key, MediaType::Webp, body(b"RIFF", 4), 10)
        .await
        .expect("put");
    let path = dir.path().join(key.as_str());
    assert_eq!(std::fs::read(&path).expect("file at its key"), b"RIFF");
    assert!(path.starts_with(dir.path().join("chat")));
}

#[tokio::test]
async fn s3_signed_urls_serve_the_bytes_with_our_headers_and_expire_within_minutes() {
    let Some(storage) = s3_storage("signed").await else {
        return;
    };
    let key = key(MediaType::Pdf);
    let bytes = data(3000);
    storage
        .put(&key, MediaType::Pdf, body(&bytes, 1000), 10_000)
        .await
        .expect("put");
    let url = storage
        .signed_url(
            &key,
            Duration::from_secs(300),
            &headers("Rezept März.pdf", MediaType::Pdf),
        )
        .await
        .expect("sign")
        .expect("S3 signs URLs");
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    let response = reqwest::get(&url).await.expect("fetch signed URL");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/pdf"
    );
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(response.bytes().await.expect("body").as_ref(), bytes);

    // The test server does not check signatures (moto accepts any), so
    // only the signing side is checked here: a SigV4 query signature.
    assert!(url.contains("X-Amz-Signature="), "{url}");
    storage.delete(&key).await.expect("delete");
}

/// A clamd stand-in: answers PING, and INSTREAM with `Eicar-Test-Signature
/// FOUND` when the stream contains EICAR. Returns its address.
async fn fake_clamd() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut command = Vec::new();
                let mut byte = [0u8; 1];
                while socket.read_exact(&mut byte).await.is_ok() && byte[0] != 0 {
                    command.push(byte[0]);
                }
                let reply: &[u8] = match command.as_slice() {
                    b"zPING" => b"PONG\0",
                    b"zINSTREAM" => {
                        let mut content = Vec::new();
                        loop {
                            let mut len = [0u8; 4];
                            if socket.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let len = u32::from_be_bytes(len) as usize;
                            if len == 0 {
                                break;
                            }
                            let mut chunk = vec![0; len];
                            if socket.read_exact(&mut chunk).await.is_err() {
                                return;
                            }
                            content.extend_from_slice(&chunk);
                        }
                        if content.windows(EICAR.len()).any(|w| w == EICAR) {
                            b"stream: Eicar-Test-Signature FOUND\0"
                        } else {
                            b"stream: OK\0"
                        }
                    }
                    _ => b"UNKNOWN COMMAND\0",
                };
                let _ = socket.write_all(reply).await;
            });
        }
    });
    addr
}

async fn assert_scanner_verdicts(scanner: &ClamdScanner) {
    scanner.ping().await.expect("ping");
    let clean = scanner
        .scan(body(&data(200_000), 8192))
        .await
        .expect("scan");
    assert_eq!(clean, ScanVerdict::Clean);
    let infected = scanner.scan(body(EICAR, 7)).await.expect("scan");
    assert!(
        matches!(&infected, ScanVerdict::Infected(name) if name.contains("Eicar")),
        "{infected:?}"
    );
}

#[tokio::test]
async fn the_clamd_adapter_reports_clean_and_infected_streams_of_a_stand_in_clamd() {
    let scanner = ClamdScanner::new(fake_clamd().await, Duration::from_secs(10));
    assert_scanner_verdicts(&scanner).await;
}

#[tokio::test]
async fn an_unreachable_clamd_is_an_error_not_a_clean_verdict() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let scanner = ClamdScanner::new(addr, Duration::from_secs(5));
    assert!(scanner.scan(body(b"hello", 5)).await.is_err());
}

#[tokio::test]
async fn a_real_clamd_finds_eicar_and_passes_clean_files() {
    let Ok(addr) = std::env::var("CHAT_TEST_CLAMD_ADDR") else {
        eprintln!(
            "SKIPPED: CHAT_TEST_CLAMD_ADDR is not set, so no real clamd is tested here. \
             scripts/test.sh starts one when ClamAV can be installed."
        );
        return;
    };
    let scanner = ClamdScanner::new(addr, Duration::from_secs(60));
    assert_scanner_verdicts(&scanner).await;
}
