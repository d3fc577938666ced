//! [`S3Storage`]: attachments in an S3-compatible bucket, through the
//! `rust-s3` crate (request signing included).
//!
//! Uploads stream through `rust-s3`'s multipart writer: it holds one part
//! (8 MiB) at a time in memory, never a whole file larger than that, and
//! aborts the multipart upload when the body fails, so a refused upload
//! leaves no object.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chat_app::{ByteStream, DownloadHeaders, FileStorage, StorageError};
use chat_domain::{MediaType, StorageKey};
use futures::StreamExt as _;
use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};
use tokio_util::io::StreamReader;

/// How to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The service URL (e.g. `https://s3.eu-west-1.amazonaws.com`, or a
    /// MinIO address); `None` for AWS with `region`.
    pub endpoint: Option<String>,
    /// The region name.
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Address the bucket as `<endpoint>/<bucket>` instead of
    /// `<bucket>.<endpoint>` (MinIO and most self-hosted stores need it).
    pub path_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// Attachments as objects of one bucket, under their key.
#[derive(Debug, Clone)]
pub struct S3Storage {
    bucket: Box<Bucket>,
    settings: S3Settings,
}

impl S3Storage {
    /// A client of the bucket of `settings` (no request is made).
    ///
    /// # Errors
    /// When the region is unknown or the client cannot be built.
    pub fn new(settings: S3Settings) -> anyhow::Result<Self> {
        let bucket = Bucket::new(
            &settings.bucket,
            region(&settings)?,
            credentials(&settings)?,
        )
        .context("configuring the S3 bucket")?;
        let bucket = if settings.path_style {
            bucket.with_path_style()
        } else {
            bucket
        };
        Ok(Self { bucket, settings })
    }

    /// Creates the bucket when it does not exist (for development and
    /// tests; production buckets are provisioned with their policies).
    ///
    /// # Errors
    /// When the store refuses.
    pub async fn create_bucket_if_missing(&self) -> anyhow::Result<()> {
        if self.bucket.exists().await.context("checking the bucket")? {
            return Ok(());
        }
        let region = region(&self.settings)?;
        let credentials = credentials(&self.settings)?;
        let config = BucketConfiguration::default();
        let response = if self.settings.path_style {
            Bucket::create_with_path_style(&self.settings.bucket, region, credentials, config).await
        } else {
            Bucket::create(&self.settings.bucket, region, credentials, config).await
        }
        .context("creating the bucket")?;
        // Another node (or test) may have created it meanwhile.
        if response.success() || self.bucket.exists().await.unwrap_or(false) {
            return Ok(());
        }
        anyhow::bail!(
            "creating the bucket: status {}: {}",
            response.response_code,
            response.response_text
        )
    }
}

fn region(settings: &S3Settings) -> anyhow::Result<Region> {
    match &settings.endpoint {
        Some(endpoint) => Ok(Region::Custom {
            region: settings.region.clone(),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        }),
        None => settings
            .region
            .parse()
            .with_context(|| format!("unknown S3 region {:?}", settings.region)),
    }
}

fn credentials(settings: &S3Settings) -> anyhow::Result<Credentials> {
    Credentials::new(
        Some(&settings.access_key_id),
        Some(&settings.secret_access_key),
        None,
        None,
        None,
    )
    .context("S3 credentials")
}

/// What the body stream did while `rust-s3` read it.
#[derive(Default)]
struct BodyOutcome {
    seen: u64,
    too_large: bool,
    failure: Option<std::io::Error>,
}

#[async_trait]
impl FileStorage for S3Storage {
    #[tracing::instrument(skip_all, fields(key = %key), err(level = "debug"))]
    async fn put(
        &self,
        key: &StorageKey,
        media_type: MediaType,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<u64, StorageError> {
        let outcome = Arc::new(Mutex::new(BodyOutcome::default()));
        let watch = outcome.clone();
        let watched = body.map(move |item| {
            let mut outcome = watch
                .lock()
                .map_err(|_| std::io::Error::other("upload outcome poisoned"))?;
            match item {
                Ok(chunk) => {
                    outcome.seen += chunk.len() as u64;
                    if outcome.seen > max_bytes {
                        outcome.too_large = true;
                        return Err(std::io::Error::other("upload passed the size limit"));
                    }
                    Ok(chunk)
                }
                Err(err) => {
                    let echo = std::io::Error::new(err.kind(), err.to_string());
                    outcome.failure = Some(err);
                    Err(echo)
                }
            }
        });
        let mut reader = StreamReader::new(watched);
        let result = self
            .bucket
            .put_object_stream_with_content_type(&mut reader, key.as_str(), media_type.mime())
            .await;
        let mut outcome = outcome
            .lock()
            .map_err(|_| anyhow::anyhow!("upload outcome poisoned"))?;
        if outcome.too_large {
            return Err(StorageError::TooLarge);
        }
        if let Some(err) = outcome.failure.take() {
            return Err(StorageError::Body(err));
        }
        let response = result.context("uploading to S3")?;
        let status = response.status_code();
        if !(200..300).contains(&status) {
            return Err(anyhow::anyhow!("S3 answered {status} to an upload").into());
        }
        Ok(outcome.seen)
    }

    #[tracing::instrument(skip_all, fields(key = %key), err(level = "debug"))]
    async fn get(&self, key: &StorageKey) -> Result<ByteStream, StorageError> {
        let response = self
            .bucket
            .get_object_stream(key.as_str())
            .await
            .context("downloading from S3")?;
        match response.status_code {
            200..=299 => {}
            404 => return Err(StorageError::NotFound),
            status => return Err(anyhow::anyhow!("S3 answered {status} to a download").into()),
        }
        Ok(Box::pin(
            response
                .bytes
                .map(|item| item.map_err(std::io::Error::other)),
        ))
    }

    #[tracing::instrument(skip_all, fields(key = %key), err(level = "debug"))]
    async fn delete(&self, key: &StorageKey) -> Result<(), StorageError> {
        let response = self
            .bucket
            .delete_object(key.as_str())
            .await
            .context("deleting from S3")?;
        match response.status_code() {
            200..=299 | 404 => Ok(()),
            status => Err(anyhow::anyhow!("S3 answered {status} to a delete").into()),
        }
    }

    async fn signed_url(
        &self,
        key: &StorageKey,
        ttl: Duration,
        headers: &DownloadHeaders,
    ) -> Result<Option<String>, StorageError> {
        let seconds = u32::try_from(ttl.as_secs().max(1)).context("signed URL lifetime")?;
        // The object is served with our type and disposition, whatever it
        // was stored with.
        let queries = HashMap::from([
            (
                "response-content-type".to_owned(),
                headers.media_type.mime().to_owned(),
            ),
            (
                "response-content-disposition".to_owned(),
                headers.content_disposition.clone(),
            ),
        ]);
        let url = self
            .bucket
            .presign_get(key.as_str(), seconds, Some(queries))
            .await
            .context("signing a download URL")?;
        Ok(Some(url))
    }
}
