//! File storage and malware scanning adapters of the chat core.
//!
//! - [`LocalStorage`]: a folder on local disk (the embedded default).
//! - [`S3Storage`]: any S3-compatible object store (AWS, MinIO, Ceph...),
//!   through the `rust-s3` crate, with signed download URLs.
//! - [`ClamdScanner`]: ClamAV's daemon over its `INSTREAM` protocol.
//!
//! Both stores implement [`chat_app::FileStorage`] and pass one contract
//! suite (`tests/contract.rs`). Keys are [`chat_domain::StorageKey`]s, built
//! from ids only, so no user text ever reaches a path.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//!
//! use adapters_storage::LocalStorage;
//! use chat_app::FileStorage;
//!
//! let storage: Arc<dyn FileStorage> = Arc::new(LocalStorage::open("data/attachments").await?);
//! # Ok(()) }
//! ```

mod clamd;
mod local;
mod s3;

pub use clamd::ClamdScanner;
pub use local::LocalStorage;
pub use s3::{S3Settings, S3Storage};
