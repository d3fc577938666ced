//! The attachments section: `CHAT_STORAGE`, `CHAT_S3_*`,
//! `CHAT_ATTACHMENT_MAX_BYTES`, `CHAT_CLAMD_ADDR`,
//! `CHAT_ORPHAN_ATTACHMENT_TTL_SECONDS`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use chat_app::DEFAULT_MAX_ATTACHMENT_BYTES;

use super::{parse_var, Env, Secret};

/// The longest signed download URL lifetime: links expire within minutes.
const MAX_SIGNED_URL_SECONDS: u64 = 900;

/// Where attachment bytes are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSettings {
    /// A local folder (the embedded default).
    Local {
        /// The folder.
        dir: PathBuf,
    },
    /// An S3-compatible bucket.
    S3 {
        /// Service URL; `None` for AWS.
        endpoint: Option<String>,
        /// Region name.
        region: String,
        /// Bucket name.
        bucket: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
        /// Path-style addressing.
        path_style: bool,
        /// Downloads redirect to a signed URL valid this long, when set.
        signed_url_ttl: Option<Duration>,
    },
}

/// The attachment settings of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentConfig {
    /// The file store.
    pub storage: StorageSettings,
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// clamd's address (`host:port` or `unix:/path`); `None` scans nothing.
    pub clamd_addr: Option<String>,
    /// Uploads never sent within this time are deleted.
    pub orphan_ttl: Duration,
}

impl AttachmentConfig {
    /// Reads the attachment variables; files default to
    /// `<data_dir>/attachments`.
    ///
    /// # Errors
    /// A message naming the variable that is invalid or missing.
    pub fn from_source(env: &dyn Env, data_dir: &Path) -> anyhow::Result<Self> {
        let storage = match env.var("CHAT_STORAGE").as_deref().map(str::trim) {
            None | Some("local") => StorageSettings::Local {
                dir: env
                    .var("CHAT_STORAGE_DIR")
                    .map_or_else(|| data_dir.join("attachments"), PathBuf::from),
            },
            Some("s3") => {
                let required = |name: &str| {
                    env.var(name)
                        .with_context(|| format!("CHAT_STORAGE=s3 needs {name}"))
                };
                let ttl: u64 = parse_var(env, "CHAT_S3_SIGNED_URL_TTL_SECONDS", 0)?;
                if ttl > MAX_SIGNED_URL_SECONDS {
                    bail!("CHAT_S3_SIGNED_URL_TTL_SECONDS must be at most {MAX_SIGNED_URL_SECONDS} (signed links expire within minutes)");
                }
                StorageSettings::S3 {
                    endpoint: env.var("CHAT_S3_ENDPOINT"),
                    region: env
                        .var("CHAT_S3_REGION")
                        .unwrap_or_else(|| "us-east-1".into()),
                    bucket: required("CHAT_S3_BUCKET")?,
                    access_key_id: required("CHAT_S3_ACCESS_KEY_ID")?,
                    secret_access_key: Secret::new(required("CHAT_S3_SECRET_ACCESS_KEY")?),
                    path_style: parse_var(env, "CHAT_S3_PATH_STYLE", false)?,
                    signed_url_ttl: (ttl > 0).then(|| Duration::from_secs(ttl)),
                }
            }
            Some(other) => bail!("CHAT_STORAGE={other:?}: expected local or s3"),
        };
        let max_bytes: u64 = parse_var(
            env,
            "CHAT_ATTACHMENT_MAX_BYTES",
            DEFAULT_MAX_ATTACHMENT_BYTES,
        )?;
        if max_bytes == 0 {
            bail!("CHAT_ATTACHMENT_MAX_BYTES must be at least 1");
        }
        let ttl: u64 = parse_var(env, "CHAT_ORPHAN_ATTACHMENT_TTL_SECONDS", 86_400)?;
        if ttl == 0 {
            bail!("CHAT_ORPHAN_ATTACHMENT_TTL_SECONDS must be at least 1");
        }
        Ok(Self {
            storage,
            max_bytes,
            clamd_addr: env.var("CHAT_CLAMD_ADDR"),
            orphan_ttl: Duration::from_secs(ttl),
        })
    }

    /// How often the orphan sweep runs: often enough that an orphan lives
    /// at most about 1.5 times its TTL, never more than every 15 minutes.
    pub fn sweep_interval(&self) -> Duration {
        (self.orphan_ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(900))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_keep_ten_mib_files_in_the_data_folder_without_scanning() {
        let config = AttachmentConfig::from_source(&env(&[]), Path::new("/data")).unwrap();
        assert_eq!(
            config.storage,
            StorageSettings::Local {
                dir: PathBuf::from("/data/attachments")
            }
        );
        assert_eq!(config.max_bytes, 10 * 1024 * 1024);
        assert_eq!(config.clamd_addr, None);
        assert_eq!(config.orphan_ttl, Duration::from_secs(86_400));
        assert_eq!(config.sweep_interval(), Duration::from_secs(900));
    }

    #[test]
    fn s3_needs_its_bucket_and_credentials_and_keeps_the_secret_out_of_debug() {
        let err = AttachmentConfig::from_source(&env(&[("CHAT_STORAGE", "s3")]), Path::new("."))
            .unwrap_err();
        assert!(err.to_string().contains("CHAT_S3_BUCKET"), "{err}");
        let config = AttachmentConfig::from_source(
            &env(&[
                ("CHAT_STORAGE", "s3"),
                ("CHAT_S3_BUCKET", "chat"),
                ("CHAT_S3_ACCESS_KEY_ID", "AKIA"),
                ("CHAT_S3_SECRET_ACCESS_KEY", "very-secret"),
                ("CHAT_S3_PATH_STYLE", "true"),
                ("CHAT_S3_SIGNED_URL_TTL_SECONDS", "300"),
            ]),
            Path::new("."),
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("very-secret"));
        assert!(matches!(
            config.storage,
            StorageSettings::S3 {
                path_style: true,
                signed_url_ttl: Some(ttl),
                ..
            } if ttl == Duration::from_secs(300)
        ));
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (name, value) in [
            ("CHAT_STORAGE", "ftp"),
            ("CHAT_ATTACHMENT_MAX_BYTES", "0"),
            ("CHAT_ATTACHMENT_MAX_BYTES", "lots"),
            ("CHAT_ORPHAN_ATTACHMENT_TTL_SECONDS", "0"),
        ] {
            let err =
                AttachmentConfig::from_source(&env(&[(name, value)]), Path::new(".")).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let err = AttachmentConfig::from_source(
            &env(&[
                ("CHAT_STORAGE", "s3"),
                ("CHAT_S3_BUCKET", "b"),
                ("CHAT_S3_ACCESS_KEY_ID", "a"),
                ("CHAT_S3_SECRET_ACCESS_KEY", "s"),
                ("CHAT_S3_SIGNED_URL_TTL_SECONDS", "86400"),
            ]),
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.to_string().contains("CHAT_S3_SIGNED_URL_TTL_SECONDS"));
    }
}
