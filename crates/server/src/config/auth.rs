//! The authentication section: staff JWT verification (`CHAT_JWT_*`) and
//! the customer token secret (`CHAT_CUSTOMER_TOKEN_SECRET`).

use std::path::Path;

use anyhow::{bail, Context};

use super::{list_var, load_or_create_secret, parse_var, Env, Secret};

/// The signature algorithm staff tokens must use. Tokens with any other
/// `alg`, `none` included, are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with a public key.
    Rs256,
    /// Ed25519, verified with a public key.
    EdDsa,
}

/// How staff tokens issued by the host backend are verified.
#[derive(Debug, Clone)]
pub struct StaffJwtSettings {
    /// The pinned algorithm.
    pub algorithm: JwtAlgorithm,
    /// HS256 secret.
    pub secret: Option<Secret>,
    /// RS256 / EdDSA public key, PEM.
    pub public_key_pem: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values, when set.
    pub audience: Vec<String>,
    /// Name of the claim that carries the tenant id.
    pub tenant_claim: String,
    /// Role claim values that mean admin.
    pub admin_roles: Vec<String>,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_seconds: u64,
}

impl StaffJwtSettings {
    /// Reads the `CHAT_JWT_*` variables; without an HS256 secret, a
    /// development secret generated under `data_dir`.
    ///
    /// # Errors
    /// A message naming the variable that is invalid or missing.
    pub fn from_source(env: &dyn Env, data_dir: &Path) -> anyhow::Result<Self> {
        let algorithm = match env.var("CHAT_JWT_ALGORITHM").as_deref().map(str::trim) {
            None | Some("HS256") => JwtAlgorithm::Hs256,
            Some("RS256") => JwtAlgorithm::Rs256,
            Some("EdDSA") => JwtAlgorithm::EdDsa,
            Some(other) => bail!("CHAT_JWT_ALGORITHM={other:?}: expected HS256, RS256 or EdDSA"),
        };
        let public_key_pem = match (
            env.var("CHAT_JWT_PUBLIC_KEY"),
            env.var("CHAT_JWT_PUBLIC_KEY_FILE"),
        ) {
            (Some(pem), _) => Some(pem),
            (None, Some(file)) => Some(
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading CHAT_JWT_PUBLIC_KEY_FILE {file}"))?,
            ),
            (None, None) => None,
        };
        let secret = match (algorithm, env.var("CHAT_JWT_SECRET")) {
            (JwtAlgorithm::Hs256, Some(secret)) => {
                if secret.len() < 32 {
                    bail!("CHAT_JWT_SECRET must be at least 32 bytes long");
                }
                Some(Secret::new(secret))
            }
            (JwtAlgorithm::Hs256, None) => Some(load_or_create_secret(data_dir, "dev-jwt-secret")?),
            (_, _) => {
                if public_key_pem.is_none() {
                    bail!("CHAT_JWT_ALGORITHM RS256/EdDSA needs CHAT_JWT_PUBLIC_KEY or CHAT_JWT_PUBLIC_KEY_FILE");
                }
                None
            }
        };
        Ok(Self {
            algorithm,
            secret,
            public_key_pem,
            issuer: env.var("CHAT_JWT_ISSUER"),
            audience: list_var(env, "CHAT_JWT_AUDIENCE"),
            tenant_claim: env
                .var("CHAT_JWT_TENANT_CLAIM")
                .unwrap_or_else(|| "tenant_id".into()),
            admin_roles: {
                let roles = list_var(env, "CHAT_JWT_ADMIN_ROLES");
                if roles.is_empty() {
                    vec!["admin".into()]
                } else {
                    roles
                }
            },
            leeway_seconds: parse_var(env, "CHAT_JWT_LEEWAY_SECONDS", 30)?,
        })
    }
}

/// The key of customer chat tokens from `CHAT_CUSTOMER_TOKEN_SECRET`, or a
/// development secret generated under `data_dir`.
///
/// # Errors
/// When the secret is shorter than 32 bytes.
pub fn customer_token_secret(env: &dyn Env, data_dir: &Path) -> anyhow::Result<Secret> {
    match env.var("CHAT_CUSTOMER_TOKEN_SECRET") {
        Some(secret) if secret.len() < 32 => {
            bail!("CHAT_CUSTOMER_TOKEN_SECRET must be at least 32 bytes long")
        }
        Some(secret) => Ok(Secret::new(secret)),
        None => load_or_create_secret(data_dir, "dev-customer-token-secret"),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_env as env;
    use crate::config::Settings;

    #[test]
    fn public_key_algorithms_need_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::from_source(&env(&[("CHAT_JWT_ALGORITHM", "RS256")], dir.path()))
            .unwrap_err();
        assert!(err.to_string().contains("CHAT_JWT_PUBLIC_KEY"));
    }
}
