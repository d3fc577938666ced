//! [`AttachmentService`]: upload, download and the orphan sweep.
//!
//! An upload is read once, as it arrives: its head decides the type (and an
//! unwanted type is refused before the rest is read), then every byte goes
//! through a [`Metered`] stream on its way to the [`FileStorage`], which
//! counts, hashes and checks it and fails the stream as soon as the limit
//! is passed. A Word file is also kept (within the limit) until its last
//! byte, when its structure is read off the async threads before the stream
//! ends: one with macros fails the stream, so the store keeps nothing. Only
//! a file that passed every check (and the scanner, when one is configured)
//! gets a metadata record; anything refused is removed from storage before
//! the error is returned.
//!
//! An upload not yet sent in a message is its uploader's draft: nobody else
//! may download it, even in its conversation.
//!
//! Errors: its own [`AttachmentError`], since uploads fail in ways no other
//! area does (size, type, malware, an unreachable scanner); the typed causes
//! of [`ChatError`] from the shared access check carry over into it. Why a
//! file's content is refused is typed too ([`UnsupportedContent`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_domain::{
    Action, Attachment, AttachmentId, AttachmentName, ConversationId, MediaType, NewAttachment,
    Principal, Sha256Digest, StorageKey,
};
use futures::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};

use self::sniff::{sniff, ContentCheck, ContentRejection, SNIFF_BYTES};
pub use self::sniff::{MacroSign, UnreadableContainer, UnsupportedContent};
use crate::error::{ChatError, Conflict, Field, Reason};
use crate::ports::Clock;
use crate::ports::{
    AttachmentRepository, ByteStream, DownloadHeaders, FileStorage, ScanVerdict, Scanner,
    StorageError,
};
use crate::ChatService;

mod sniff;
#[cfg(test)]
mod tests;

/// The default largest attachment: 10 MiB.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 10 * 1024 * 1024;

/// How many orphans one sweep round loads at a time.
const SWEEP_BATCH: u32 = 100;

/// Everything [`AttachmentService`] talks to besides [`ChatService`].
#[derive(Clone)]
pub struct AttachmentPorts {
    /// Attachment metadata.
    pub repository: Arc<dyn AttachmentRepository>,
    /// The bytes.
    pub storage: Arc<dyn FileStorage>,
    /// The malware scanner; `None` scans nothing.
    pub scanner: Option<Arc<dyn Scanner>>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// Limits and download behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentSettings {
    /// Largest accepted file, in bytes.
    pub max_bytes: u64,
    /// When set and the store can sign URLs, downloads answer with a
    /// redirect to a URL valid this long instead of streaming the bytes.
    pub signed_url_ttl: Option<Duration>,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            signed_url_ttl: None,
        }
    }
}

/// Why an attachment use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// The conversation or attachment does not exist for this caller.
    #[error("not found")]
    NotFound,
    /// The caller may see the conversation but not do this.
    #[error("forbidden")]
    Forbidden,
    /// The file has no bytes.
    #[error("the file is empty")]
    Empty,
    /// The file is larger than the limit.
    #[error("the file is larger than {max_bytes} bytes")]
    TooLarge {
        /// The limit.
        max_bytes: u64,
    },
    /// The content is not an accepted type, or is active content.
    #[error(transparent)]
    UnsupportedType(UnsupportedContent),
    /// The scanner found malware.
    #[error("the file is infected ({0})")]
    Infected(String),
    /// The upload stream failed before its end (the client went away, or a
    /// transport limit cut it).
    #[error("the upload was interrupted")]
    Interrupted(#[source] std::io::Error),
    /// A parameter of the request is not acceptable (as
    /// [`ChatError::Invalid`]).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which parameter.
        field: Field,
        /// What is wrong with it.
        reason: Reason,
    },
    /// The request conflicts with the state of what it names (as
    /// [`ChatError::Conflict`]).
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// The scanner could not be reached or did not finish: the upload is
    /// refused rather than kept unscanned.
    #[error("the malware scanner is unavailable")]
    ScannerUnavailable(#[source] anyhow::Error),
    /// A store failed.
    #[error("unexpected failure")]
    Unexpected(#[source] anyhow::Error),
}

impl From<ChatError> for AttachmentError {
    fn from(err: ChatError) -> Self {
        match err {
            ChatError::NotFound(_) => Self::NotFound,
            ChatError::Forbidden => Self::Forbidden,
            ChatError::Invalid { field, reason } => Self::Invalid { field, reason },
            ChatError::Conflict(conflict) => Self::Conflict(conflict),
            ChatError::Unexpected(err) => Self::Unexpected(err),
        }
    }
}

impl From<crate::RepoError> for AttachmentError {
    fn from(err: crate::RepoError) -> Self {
        ChatError::from(err).into()
    }
}

/// What a download answers.
pub enum Download {
    /// Redirect the client to a short-lived signed URL.
    Redirect {
        /// The attachment.
        attachment: Attachment,
        /// Where its bytes are served.
        url: String,
    },
    /// Stream the bytes through.
    Stream {
        /// The attachment.
        attachment: Attachment,
        /// Its bytes.
        body: ByteStream,
    },
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redirect { attachment, .. } => f
                .debug_struct("Redirect")
                .field("attachment", &attachment.id)
                .finish(),
            Self::Stream { attachment, .. } => f
                .debug_struct("Stream")
                .field("attachment", &attachment.id)
                .finish(),
        }
    }
}

/// The headers a download must carry.
pub fn download_headers(attachment: &Attachment) -> DownloadHeaders {
    DownloadHeaders {
        media_type: attachment.media_type,
        content_disposition: attachment.name.content_disposition(),
    }
}

/// Upload, download and the sweeps of attachments (orphans, deleted
/// messages' files). Cheap to clone.
#[derive(Clone)]
pub struct AttachmentService {
    chat: ChatService,
    ports: AttachmentPorts,
    settings: AttachmentSettings,
    /// Set when a message was deleted: its files wait for
    /// [`AttachmentService::purge_deleted`].
    purge_wanted: Arc<tokio::sync::Notify>,
}

impl AttachmentService {
    /// A service that checks permissions through `chat`.
    pub fn new(chat: ChatService, ports: AttachmentPorts, settings: AttachmentSettings) -> Self {
        Self {
            chat,
            ports,
            settings,
            purge_wanted: Arc::default(),
        }
    }

    /// Asks whoever runs [`AttachmentService::purge_deleted`] (waiting in
    /// [`AttachmentService::purge_requested`]) to run it soon, for example
    /// after a message was deleted. Requests made while nobody waits are
    /// kept, and coalesce into one.
    pub fn request_purge(&self) {
        self.purge_wanted.notify_one();
    }

    /// Waits until [`AttachmentService::request_purge`] is called (returns
    /// at once for a request made earlier and not yet waited for).
    pub async fn purge_requested(&self) {
        self.purge_wanted.notified().await;
    }

    /// The limits in force.
    pub fn settings(&self) -> AttachmentSettings {
        self.settings
    }

    /// Stores an upload into conversation `id` for a participant who may
    /// send there. `file_name` is display metadata only, sanitised; the type
    /// is sniffed from the bytes.
    ///
    /// # Errors
    /// [`AttachmentError::NotFound`] when the conversation is not readable;
    /// [`AttachmentError::Empty`], [`AttachmentError::TooLarge`],
    /// [`AttachmentError::UnsupportedType`], [`AttachmentError::Infected`]
    /// for refused content (nothing is kept);
    /// [`AttachmentError::Interrupted`], [`AttachmentError::ScannerUnavailable`]
    /// or [`AttachmentError::Unexpected`] otherwise.
    #[tracing::instrument(skip_all, fields(conversation_id = %id, attachment_id, size), err(level = "debug"))]
    pub async fn upload(
        &self,
        principal: &Principal,
        id: ConversationId,
        file_name: Option<&str>,
        mut body: ByteStream,
    ) -> Result<Attachment, AttachmentError> {
        self.chat.authorized(principal, id, Action::Send).await?;
        let max_bytes = self.settings.max_bytes;
        let head = read_head(&mut body).await?;
        let sniffed = sniff(&head).map_err(rejection)?;
        let media_type = sniffed.media_type;
        let attachment_id = AttachmentId::new_v7();
        tracing::Span::current().record("attachment_id", tracing::field::display(attachment_id));
        let now = self.ports.clock.now();
        let key =
            StorageKey::for_attachment(principal.tenant(), id, attachment_id, media_type, now);

        let report = Arc::new(Mutex::new(MeterReport::default()));
        let metered = Metered {
            inner: futures::stream::once(async move { Ok(head) })
                .chain(body)
                .boxed(),
            max_bytes,
            seen: 0,
            hasher: Some(Sha256::new()),
            check: Some(sniffed.content_check()),
            verdict: None,
            report: report.clone(),
            done: false,
        };
        let stored = self
            .ports
            .storage
            .put(&key, media_type, Box::pin(metered), max_bytes)
            .await;
        let outcome = report
            .lock()
            .map_err(|_| AttachmentError::Unexpected(anyhow::anyhow!("upload meter poisoned")))?
            .clone();
        if let Some(refused) = outcome.refused {
            // The store was told the stream failed, so it kept nothing; one
            // that says it kept the file anyway gets it removed.
            if stored.is_ok() {
                self.discard(&key).await;
            }
            return Err(match refused {
                Refusal::TooLarge => AttachmentError::TooLarge { max_bytes },
                Refusal::Content(rejection_) => rejection(rejection_),
            });
        }
        let size = match stored {
            Ok(size) => size,
            Err(StorageError::TooLarge) => return Err(AttachmentError::TooLarge { max_bytes }),
            Err(StorageError::Body(err)) => return Err(AttachmentError::Interrupted(err)),
            Err(err) => {
                return Err(AttachmentError::Unexpected(
                    anyhow::Error::new(err).context("storing an upload"),
                ))
            }
        };
        let Some(sha256) = outcome.sha256.filter(|_| outcome.size == size) else {
            self.discard(&key).await;
            return Err(AttachmentError::Unexpected(anyhow::anyhow!(
                "the store reported {size} bytes, the meter saw {}",
                outcome.size
            )));
        };
        tracing::Span::current().record("size", size);

        if let Err(err) = self.scan(&key).await {
            self.discard(&key).await;
            return Err(err);
        }

        let new = NewAttachment {
            id: attachment_id,
            tenant: principal.tenant(),
            conversation_id: id,
            uploader: principal.as_sender(),
            name: AttachmentName::sanitize(file_name, media_type),
            media_type,
            size,
            sha256,
            storage_key: key.clone(),
            created_at: now,
        };
        match self.ports.repository.insert_attachment(&new).await {
            Ok(attachment) => Ok(attachment),
            Err(err) => {
                self.discard(&key).await;
                Err(err.into())
            }
        }
    }

    /// Runs the configured scanner over the stored bytes of `key`.
    async fn scan(&self, key: &StorageKey) -> Result<(), AttachmentError> {
        let Some(scanner) = &self.ports.scanner else {
            return Ok(());
        };
        let content = self.ports.storage.get(key).await.map_err(|err| {
            AttachmentError::Unexpected(
                anyhow::Error::new(err).context("reading an upload back to scan it"),
            )
        })?;
        match scanner.scan(content).await {
            Ok(ScanVerdict::Clean) => Ok(()),
            Ok(ScanVerdict::Infected(signature)) => {
                tracing::warn!(%signature, "infected upload refused");
                Err(AttachmentError::Infected(signature))
            }
            Err(err) => Err(AttachmentError::ScannerUnavailable(err)),
        }
    }

    /// Removes a refused upload's bytes; a failure is logged (the orphan
    /// has no record, so nothing can serve it).
    async fn discard(&self, key: &StorageKey) {
        if let Err(err) = self.ports.storage.delete(key).await {
            tracing::error!(error = ?err, %key, "cannot remove a refused upload");
        }
    }

    /// The attachment `id` for someone who may read its conversation (and,
    /// while it is not sent in a message yet, only for its uploader): a
    /// redirect to a signed URL when configured and possible, else its
    /// bytes.
    ///
    /// # Errors
    /// [`AttachmentError::NotFound`] when missing or not readable by
    /// `principal` (another tenant, another customer, another clinician's
    /// thread, or anyone but the uploader before it is sent);
    /// [`AttachmentError::Unexpected`] when the store fails.
    #[tracing::instrument(skip_all, fields(attachment_id = %id), err(level = "debug"))]
    pub async fn download(
        &self,
        principal: &Principal,
        id: AttachmentId,
    ) -> Result<Download, AttachmentError> {
        let attachment = self
            .ports
            .repository
            .find_attachment(principal.tenant(), id)
            .await?
            .ok_or(AttachmentError::NotFound)?;
        self.chat
            .authorized(principal, attachment.conversation_id, Action::Read)
            .await?;
        // A draft is the uploader's alone until it is sent; to anyone else
        // it does not exist yet.
        if attachment.message_id.is_none() && attachment.uploader != principal.as_sender() {
            return Err(AttachmentError::NotFound);
        }
        let unexpected = |err: StorageError| {
            AttachmentError::Unexpected(
                anyhow::Error::new(err).context(format!("reading attachment {id}")),
            )
        };
        if let Some(ttl) = self.settings.signed_url_ttl {
            let headers = download_headers(&attachment);
            let url = self
                .ports
                .storage
                .signed_url(&attachment.storage_key, ttl, &headers)
                .await
                .map_err(unexpected)?;
            if let Some(url) = url {
                return Ok(Download::Redirect { attachment, url });
            }
        }
        let body = self
            .ports
            .storage
            .get(&attachment.storage_key)
            .await
            .map_err(unexpected)?;
        Ok(Download::Stream { attachment, body })
    }

    /// Deletes uploads never attached to a message and older than
    /// `max_age`, record first (so a send racing the sweep either keeps the
    /// file or is refused), then bytes. Returns how many were deleted.
    ///
    /// # Errors
    /// [`AttachmentError::Unexpected`] when the metadata store fails; a
    /// file that cannot be removed is logged and skipped.
    #[tracing::instrument(skip_all, fields(deleted), err(level = "debug"))]
    pub async fn sweep_orphans(&self, max_age: Duration) -> Result<usize, AttachmentError> {
        let age = chrono::Duration::from_std(max_age)
            .map_err(|err| AttachmentError::Unexpected(anyhow::Error::new(err)))?;
        let before = self.ports.clock.now() - age;
        let repository = &self.ports.repository;
        let deleted = in_pages(
            || repository.list_orphans(before, SWEEP_BATCH),
            |orphan: Attachment| async move {
                if !repository
                    .delete_unattached(orphan.tenant, orphan.id)
                    .await?
                {
                    return Ok(false);
                }
                if let Err(err) = self.ports.storage.delete(&orphan.storage_key).await {
                    tracing::error!(error = ?err, key = %orphan.storage_key, "cannot remove an orphan upload's bytes");
                }
                Ok(true)
            },
        )
        .await?;
        tracing::Span::current().record("deleted", deleted);
        Ok(deleted)
    }

    /// Removes the files of deleted messages: bytes first, then the record,
    /// so that a file that cannot be removed stays listed and is tried
    /// again on the next call. (The attachments are unreachable from the
    /// moment their message is deleted; this frees the storage.) Returns how
    /// many were removed.
    ///
    /// # Errors
    /// [`AttachmentError::Unexpected`] when the metadata store fails; a
    /// file that cannot be removed is logged and skipped.
    #[tracing::instrument(skip_all, fields(purged), err(level = "debug"))]
    pub async fn purge_deleted(&self) -> Result<usize, AttachmentError> {
        let repository = &self.ports.repository;
        let purged = in_pages(
            || repository.list_deleted(SWEEP_BATCH),
            |attachment: Attachment| async move {
                if let Err(err) = self.ports.storage.delete(&attachment.storage_key).await {
                    tracing::error!(error = ?err, key = %attachment.storage_key, "cannot remove a deleted attachment's bytes; tried again next sweep");
                    return Ok(false);
                }
                Ok(repository
                    .purge_deleted(attachment.tenant, attachment.id)
                    .await?)
            },
        )
        .await?;
        tracing::Span::current().record("purged", purged);
        Ok(purged)
    }
}

/// Runs `each` on pages of [`SWEEP_BATCH`] attachments from `list` until a
/// page is short, or a full page saw nothing done (it would come back the
/// same: left to the next sweep). Returns how many `each` did.
async fn in_pages<List, Each>(
    list: impl Fn() -> List,
    each: impl Fn(Attachment) -> Each,
) -> Result<usize, AttachmentError>
where
    List: Future<Output = Result<Vec<Attachment>, crate::RepoError>>,
    Each: Future<Output = Result<bool, AttachmentError>>,
{
    let mut done = 0;
    loop {
        let page = list().await?;
        let full = page.len() >= SWEEP_BATCH as usize;
        let mut progressed = false;
        for attachment in page {
            if each(attachment).await? {
                progressed = true;
                done += 1;
            }
        }
        if !full || !progressed {
            return Ok(done);
        }
    }
}

fn rejection(rejection: ContentRejection) -> AttachmentError {
    match rejection {
        ContentRejection::Empty => AttachmentError::Empty,
        ContentRejection::Unsupported(reason) => AttachmentError::UnsupportedType(reason),
    }
}

/// Reads up to [`SNIFF_BYTES`] from the start of `body` (fewer only when the
/// file is shorter).
async fn read_head(body: &mut ByteStream) -> Result<Bytes, AttachmentError> {
    let mut head = BytesMut::new();
    while head.len() < SNIFF_BYTES {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(err)) => return Err(AttachmentError::Interrupted(err)),
            None => break,
        }
    }
    Ok(head.freeze())
}

/// Why a [`Metered`] stream failed itself.
#[derive(Debug, Clone)]
enum Refusal {
    TooLarge,
    Content(ContentRejection),
}

/// What a [`Metered`] stream saw, read once the store is done with it.
#[derive(Debug, Clone, Default)]
struct MeterReport {
    size: u64,
    sha256: Option<Sha256Digest>,
    refused: Option<Refusal>,
}

/// The whole-file verdict of a [`ContentCheck`] that reads a container,
/// worked out on tokio's blocking threads.
type Verdict = tokio::task::JoinHandle<Result<MediaType, ContentRejection>>;

/// Passes the upload through to the store while counting, hashing and
/// checking it. Passing the limit, or failing the whole-file content check
/// at the end, turns into an error item, so the store never keeps such a
/// file; the reason is left in the report.
struct Metered {
    inner: ByteStream,
    max_bytes: u64,
    seen: u64,
    hasher: Option<Sha256>,
    /// Taken when the last byte has passed.
    check: Option<ContentCheck>,
    /// The container check under way, after the last byte and before the
    /// stream ends.
    verdict: Option<Verdict>,
    report: Arc<Mutex<MeterReport>>,
    done: bool,
}

impl Metered {
    fn refuse(&mut self, refusal: Refusal) -> Poll<Option<std::io::Result<Bytes>>> {
        self.done = true;
        let message = match &refusal {
            Refusal::TooLarge => "upload passed the size limit".to_owned(),
            Refusal::Content(rejection) => rejection.to_string(),
        };
        if let Ok(mut report) = self.report.lock() {
            report.refused = Some(refusal);
        }
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message,
        ))))
    }

    /// Ends the stream with the content check's verdict: an error item, or
    /// the end (with the size and digest reported).
    fn conclude(
        &mut self,
        verdict: Result<MediaType, ContentRejection>,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        if let Err(rejection) = verdict {
            return self.refuse(Refusal::Content(rejection));
        }
        self.done = true;
        let digest = self
            .hasher
            .take()
            .map(|h| Sha256Digest::from_bytes(h.finalize().into()));
        if let Ok(mut report) = self.report.lock() {
            report.size = self.seen;
            report.sha256 = digest;
        }
        Poll::Ready(None)
    }
}

impl Stream for Metered {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(verdict) = self.verdict.as_mut() {
                let joined = std::task::ready!(Pin::new(verdict).poll(cx));
                self.verdict = None;
                let verdict = joined.unwrap_or_else(|err| {
                    tracing::error!(error = %err, "the content check of an upload did not finish");
                    Err(ContentRejection::Unsupported(UnsupportedContent::Unchecked))
                });
                return self.conclude(verdict);
            }
            return match self.inner.as_mut().poll_next(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    self.seen += chunk.len() as u64;
                    if self.seen > self.max_bytes {
                        return self.refuse(Refusal::TooLarge);
                    }
                    if let Some(hasher) = self.hasher.as_mut() {
                        hasher.update(&chunk);
                    }
                    if let Some(check) = self.check.as_mut() {
                        check.feed(&chunk);
                    }
                    Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(Some(Err(err))) => {
                    self.done = true;
                    Poll::Ready(Some(Err(err)))
                }
                Poll::Ready(None) => {
                    let check = self
                        .check
                        .take()
                        .expect("the input ends once: the stream is done or awaits the verdict");
                    // Reading a container costs milliseconds of CPU: not on
                    // the threads that serve every other request.
                    match tokio::runtime::Handle::try_current() {
                        Ok(runtime) if check.reads_a_container() => {
                            self.verdict = Some(runtime.spawn_blocking(move || check.finish()));
                            continue;
                        }
                        _ => self.conclude(check.finish()),
                    }
                }
            };
        }
    }
}
