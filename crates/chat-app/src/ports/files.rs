//! Attachment ports: where file bytes are kept
//! ([`FileStorage`]), who checks them for malware ([`Scanner`]) and where
//! their metadata is stored ([`AttachmentRepository`]).

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chat_domain::{Attachment, AttachmentId, MediaType, NewAttachment, StorageKey, TenantId};
use chrono::{DateTime, Utc};
use futures::Stream;

use super::RepoError;

/// A stream of file bytes. Errors are I/O errors: a client that went away,
/// a disk that failed, or a limit the producer enforces.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Why a [`FileStorage`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object under that key.
    #[error("no stored object under this key")]
    NotFound,
    /// The body passed the size limit given to [`FileStorage::put`]; nothing
    /// was kept.
    #[error("the content is larger than the limit")]
    TooLarge,
    /// The body stream failed while being stored; nothing was kept.
    #[error("the content stream failed")]
    Body(#[source] std::io::Error),
    /// The store itself failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What a download link may tell the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadHeaders {
    /// The sniffed type.
    pub media_type: MediaType,
    /// The full `Content-Disposition` value (always `attachment`).
    pub content_disposition: String,
}

/// Where attachment bytes live: a local folder, S3, or the host's own store.
///
/// Keys come from [`StorageKey`] only, so an adapter never sees user text in
/// a path.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FileStorage: Send + Sync {
    /// Stores `body` under `key`, reading it as it arrives (never the whole
    /// of it in memory), and returns the number of bytes stored. When the
    /// body passes `max_bytes` or fails, nothing is kept under `key`.
    ///
    /// # Errors
    /// [`StorageError::TooLarge`], [`StorageError::Body`] or a storage
    /// failure.
    async fn put(
        &self,
        key: &StorageKey,
        media_type: MediaType,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<u64, StorageError>;

    /// The bytes stored under `key`, as a stream.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] or a storage failure.
    async fn get(&self, key: &StorageKey) -> Result<ByteStream, StorageError>;

    /// Removes the object under `key`; removing a missing object succeeds.
    ///
    /// # Errors
    /// A storage failure.
    async fn delete(&self, key: &StorageKey) -> Result<(), StorageError>;

    /// A URL that serves the object directly for `ttl`, with `headers`, or
    /// `None` when the store cannot sign URLs (or is configured not to).
    ///
    /// # Errors
    /// A storage failure.
    async fn signed_url(
        &self,
        key: &StorageKey,
        ttl: Duration,
        headers: &DownloadHeaders,
    ) -> Result<Option<String>, StorageError>;
}

/// The verdict of a malware scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanVerdict {
    /// Nothing found.
    Clean,
    /// Malware found; the scanner's name for it.
    Infected(String),
}

/// A malware scanner (ClamAV's clamd, or the host's own).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Scanner: Send + Sync {
    /// Scans `content` to its end.
    ///
    /// # Errors
    /// When the scanner cannot be reached or cannot finish (uploads are then
    /// refused: a scan that did not happen is not a clean scan).
    async fn scan(&self, content: ByteStream) -> anyhow::Result<ScanVerdict>;
}

/// Storage of attachment metadata. Linking an attachment to a message is
/// part of [`crate::MessageRepository::append`].
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AttachmentRepository: Send + Sync {
    /// Records an upload (not attached to any message).
    ///
    /// # Errors
    /// [`RepoError`] on storage failure, including an unknown conversation.
    async fn insert_attachment(&self, new: &NewAttachment) -> Result<Attachment, RepoError>;

    /// The attachment `id` of `tenant`, if any and its message is not
    /// deleted.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn find_attachment(
        &self,
        tenant: TenantId,
        id: AttachmentId,
    ) -> Result<Option<Attachment>, RepoError>;

    /// Up to `limit` uploads of any tenant created before `before` and never
    /// attached to a message, oldest first.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn list_orphans(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Attachment>, RepoError>;

    /// Deletes the record of attachment `id` of `tenant` if it is still not
    /// attached to a message; `true` when it was deleted. A send that links
    /// it concurrently either wins (and this returns `false`) or finds it
    /// gone.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn delete_unattached(
        &self,
        tenant: TenantId,
        id: AttachmentId,
    ) -> Result<bool, RepoError>;

    /// Up to `limit` attachments of any tenant whose message was deleted
    /// (see [`crate::MessageRepository::delete_message`]) and whose record
    /// is still there, earliest deletion first: their bytes are to be
    /// removed.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn list_deleted(&self, limit: u32) -> Result<Vec<Attachment>, RepoError>;

    /// Removes the record of attachment `id` of `tenant` if its message was
    /// deleted; `true` when it was removed.
    ///
    /// # Errors
    /// [`RepoError`] on storage failure.
    async fn purge_deleted(&self, tenant: TenantId, id: AttachmentId) -> Result<bool, RepoError>;
}
