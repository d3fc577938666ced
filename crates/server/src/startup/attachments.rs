//! The attachment use cases over the configured file store and scanner,
//! and the background task that sweeps orphan uploads and the files of
//! deleted messages.

use std::sync::Arc;
use std::time::Duration;

use adapters_storage::{ClamdScanner, LocalStorage, S3Settings, S3Storage};
use chat_app::{
    AttachmentError, AttachmentPorts, AttachmentRepository, AttachmentService, AttachmentSettings,
    ChatService, FileStorage, Scanner, SystemClock,
};
use tokio_util::sync::CancellationToken;

use crate::config::{AttachmentConfig, StorageSettings};

/// How long a scan may take before the upload is refused.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);

/// The attachment use cases over the configured store and scanner.
///
/// # Errors
/// When the storage folder cannot be created or the S3 client configured.
pub async fn service(
    config: &AttachmentConfig,
    repository: Arc<dyn AttachmentRepository>,
    chat: ChatService,
) -> anyhow::Result<AttachmentService> {
    let (storage, signed_url_ttl): (Arc<dyn FileStorage>, _) = match &config.storage {
        StorageSettings::Local { dir } => {
            let storage = LocalStorage::open(dir).await?;
            tracing::info!(dir = %dir.display(), "attachments in a local folder");
            (Arc::new(storage), None)
        }
        StorageSettings::S3 {
            endpoint,
            region,
            bucket,
            access_key_id,
            secret_access_key,
            path_style,
            signed_url_ttl,
        } => {
            let storage = S3Storage::new(S3Settings {
                endpoint: endpoint.clone(),
                region: region.clone(),
                bucket: bucket.clone(),
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.expose().to_owned(),
                path_style: *path_style,
            })?;
            tracing::info!(%bucket, "attachments in S3");
            (Arc::new(storage), *signed_url_ttl)
        }
    };
    let scanner: Option<Arc<dyn Scanner>> = config.clamd_addr.as_ref().map(|addr| {
        tracing::info!(%addr, "uploads are scanned by clamd");
        Arc::new(ClamdScanner::new(addr.clone(), SCAN_TIMEOUT)) as Arc<dyn Scanner>
    });
    Ok(AttachmentService::new(
        chat,
        AttachmentPorts {
            repository,
            storage,
            scanner,
            clock: Arc::new(SystemClock),
        },
        AttachmentSettings {
            max_bytes: config.max_bytes,
            signed_url_ttl,
        },
    ))
}

/// Runs the sweeps until `shutdown` is cancelled: every
/// [`AttachmentConfig::sweep_interval`], uploads never attached (orphans)
/// and the files of deleted messages; and the files of deleted messages
/// as soon as a purge is requested ([`AttachmentService::request_purge`],
/// which deleting a message does). A failed round is logged and retried
/// next time.
pub fn spawn_orphan_sweeper(
    service: AttachmentService,
    config: &AttachmentConfig,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let ttl = config.orphan_ttl;
    let period = config.sweep_interval();
    tokio::spawn(async move {
        // An interval, not a sleep per round: purges on request must not
        // keep pushing the orphan sweep back.
        let mut rounds = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let orphans_too = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = rounds.tick() => true,
                () = service.purge_requested() => false,
            };
            if orphans_too {
                log_sweep("orphan uploads", service.sweep_orphans(ttl).await);
            }
            log_sweep("files of deleted messages", service.purge_deleted().await);
        }
    })
}

/// Logs one sweep's outcome: what it removed, or why it failed.
fn log_sweep(what: &str, outcome: Result<usize, AttachmentError>) {
    match outcome {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "{what} removed"),
        Err(err) => tracing::error!(error = ?err, "sweep of {what} failed"),
    }
}
