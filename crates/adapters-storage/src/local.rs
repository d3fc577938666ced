//! [`LocalStorage`]: attachments as files under one root folder.
//!
//! An upload is written to a temporary file under `<root>/.partial/` and
//! renamed into place only once complete and flushed, so a reader never sees
//! half a file and a refused upload leaves nothing behind.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::{ByteStream, DownloadHeaders, FileStorage, StorageError};
use chat_domain::{MediaType, StorageKey};
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::io::ReaderStream;

/// Where partial uploads are written, under the root.
const PARTIAL_DIR: &str = ".partial";

/// Read buffer of downloads.
const READ_CHUNK: usize = 64 * 1024;

/// Attachments stored as files under a root folder, at their key's path.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Uses `root` (created when missing) as the storage folder.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub async fn open(root: impl AsRef<Path>) -> anyhow::Result<Self> {
        let root = root.as_ref().to_path_buf();
        tokio::fs::create_dir_all(root.join(PARTIAL_DIR))
            .await
            .with_context(|| format!("creating attachment folder {}", root.display()))?;
        Ok(Self { root })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`. A [`StorageKey`] has only `[a-z0-9./-]` and no
    /// empty or dot-only segment, so the path stays under the root.
    fn path(&self, key: &StorageKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    async fn write(
        &self,
        partial: &Path,
        mut body: ByteStream,
        max_bytes: u64,
    ) -> Result<u64, StorageError> {
        let mut file = tokio::fs::File::create(partial)
            .await
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            written += chunk.len() as u64;
            if written > max_bytes {
                return Err(StorageError::TooLarge);
            }
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", partial.display()))?;
        }
        file.sync_all()
            .await
            .with_context(|| format!("flushing {}", partial.display()))?;
        Ok(written)
    }
}

#[async_trait]
impl FileStorage for LocalStorage {
    #[tracing::instrument(skip_all, fields(key = %key), err(level = "debug"))]
    async fn put(
        &self,
        key: &StorageKey,
        _media_type: MediaType,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<u64, StorageError> {
        let target = self.path(key);
        let partial = self
            .root
            .join(PARTIAL_DIR)
            .join(format!("{}.part", uuid::Uuid::now_v7().simple()));
        match self.write(&partial, body, max_bytes).await {
            Ok(written) => {
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                tokio::fs::rename(&partial, &target)
                    .await
                    .with_context(|| format!("moving an upload to {}", target.display()))?;
                Ok(written)
            }
            Err(err) => {
                if let Err(remove) = tokio::fs::remove_file(&partial).await {
                    if remove.kind() != ErrorKind::NotFound {
                        tracing::error!(error = %remove, path = %partial.display(), "cannot remove a partial upload");
                    }
                }
                Err(err)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(key = %key), err(level = "debug"))]
    async fn get(&self, key: &StorageKey) -> Result<ByteStream, StorageError> {
        let path = self.path(key);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(err) if err.kind() == ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(err) => {
                return Err(anyhow::Error::new(err)
                    .context(format!("opening {}", path.display()))
                    .into())
            }
        };
        Ok(Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)))
    }

    #[tracing::instrument(skip_all, fields(key = %key), err(level = "debug"))]
    async fn delete(&self, key: &StorageKey) -> Result<(), StorageError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(err) => Err(anyhow::Error::new(err)
                .context(format!("removing {}", path.display()))
                .into()),
        }
    }

    async fn signed_url(
        &self,
        _key: &StorageKey,
        _ttl: Duration,
        _headers: &DownloadHeaders,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
}
