//! Authentication: staff JWTs issued by the host backend, and the customer
//! chat tokens this server issues and verifies itself.

use std::collections::HashSet;

use anyhow::Context;
use chat_domain::{CustomerId, Principal, StaffRole, StaffUserId, TenantId};
use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{JwtAlgorithm, Secret, StaffJwtSettings};

/// The `aud` of customer chat tokens. Never accepted as a staff token.
pub const CUSTOMER_AUDIENCE: &str = "chat_customer";
/// The `iss` of customer chat tokens.
pub const CUSTOMER_ISSUER: &str = "chat-server";

/// Why a token was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (or `?token=`).
    #[error("missing bearer token")]
    Missing,
    /// Bad signature, wrong algorithm, expired, wrong issuer or audience,
    /// missing claims.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// A valid customer token where a staff token is required.
    #[error("a staff token is required")]
    StaffRequired,
}

/// Verifies staff tokens according to the configuration.
pub struct StaffVerifier {
    key: DecodingKey,
    validation: Validation,
    tenant_claim: String,
    admin_roles: HashSet<String>,
}

impl std::fmt::Debug for StaffVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("tenant_claim", &self.tenant_claim)
            .finish_non_exhaustive()
    }
}

fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "token has expired",
        ErrorKind::InvalidSignature => "signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm is not the one configured"
        }
        ErrorKind::InvalidAudience => "token audience is not accepted",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        ErrorKind::ImmatureSignature => "token is not valid yet",
        _ => "token is malformed",
    }
}

impl StaffVerifier {
    /// A verifier for `settings`.
    ///
    /// # Errors
    /// When the configured key cannot be read.
    pub fn new(settings: &StaffJwtSettings) -> anyhow::Result<Self> {
        let (algorithm, key) = match settings.algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = settings
                    .secret
                    .as_ref()
                    .context("HS256 needs CHAT_JWT_SECRET")?;
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                )
            }
            JwtAlgorithm::Rs256 => {
                let pem = settings
                    .public_key_pem
                    .as_ref()
                    .context("RS256 needs a public key")?;
                (
                    Algorithm::RS256,
                    DecodingKey::from_rsa_pem(pem.as_bytes())
                        .context("reading the RS256 public key")?,
                )
            }
            JwtAlgorithm::EdDsa => {
                let pem = settings
                    .public_key_pem
                    .as_ref()
                    .context("EdDSA needs a public key")?;
                (
                    Algorithm::EdDSA,
                    DecodingKey::from_ed_pem(pem.as_bytes())
                        .context("reading the EdDSA public key")?,
                )
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = settings.leeway_seconds;
        // A configured issuer or audience must also be present: a token
        // that leaves the claim out is not one of the host's.
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if settings.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&settings.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            tenant_claim: settings.tenant_claim.clone(),
            admin_roles: settings.admin_roles.iter().cloned().collect(),
        })
    }

    /// The staff principal a token stands for.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for any token that does not verify or lacks
    /// `sub`, the tenant claim or `role`; [`AuthError::StaffRequired`] for a
    /// customer chat token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(describe(&e)))?;
        let claims = data.claims;
        let is_customer_token = match claims.get("aud") {
            Some(Value::String(aud)) => aud == CUSTOMER_AUDIENCE,
            Some(Value::Array(auds)) => auds.iter().any(|a| a == CUSTOMER_AUDIENCE),
            _ => false,
        };
        if is_customer_token {
            return Err(AuthError::StaffRequired);
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|s| StaffUserId::parse(s).ok())
            .ok_or(AuthError::Invalid("sub must be a staff user id (UUID)"))?;
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .and_then(|s| TenantId::parse(s).ok())
            .ok_or(AuthError::Invalid("tenant claim missing or not a UUID"))?;
        let role = claims
            .get("role")
            .and_then(Value::as_str)
            .ok_or(AuthError::Invalid("role claim missing"))?;
        let role = if self.admin_roles.contains(role) {
            StaffRole::Admin
        } else {
            StaffRole::Staff
        };
        Ok(Principal::staff(tenant, sub, role))
    }
}

/// The claims of a customer chat token.
#[derive(Debug, Serialize, Deserialize)]
struct CustomerClaims {
    sub: String,
    tenant_id: String,
    aud: String,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Issues and verifies customer chat tokens (HS256 with the server's own
/// secret, `aud` = [`CUSTOMER_AUDIENCE`]).
pub struct CustomerTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for CustomerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerTokens")
    }
}

impl CustomerTokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[CUSTOMER_AUDIENCE]);
        validation.set_issuer(&[CUSTOMER_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// A token for `customer` of `tenant`, valid until `expires_at`.
    ///
    /// # Errors
    /// When signing fails (it does not with an HMAC key).
    pub fn issue(
        &self,
        tenant: TenantId,
        customer: CustomerId,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let claims = CustomerClaims {
            sub: customer.to_string(),
            tenant_id: tenant.to_string(),
            aud: CUSTOMER_AUDIENCE.into(),
            iss: CUSTOMER_ISSUER.into(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("signing a customer token")
    }

    /// The customer principal of a token, or `None` when it is not a valid
    /// customer token.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        let data = decode::<CustomerClaims>(token, &self.decoding, &self.validation).ok()?;
        let tenant = TenantId::parse(&data.claims.tenant_id).ok()?;
        let customer = CustomerId::parse(&data.claims.sub).ok()?;
        Some(Principal::customer(tenant, customer))
    }

    /// Why a token failed customer verification, for the error message.
    fn failure(&self, token: &str) -> &'static str {
        match decode::<CustomerClaims>(token, &self.decoding, &self.validation) {
            Ok(_) => "token claims are invalid",
            Err(e) => describe(&e),
        }
    }
}

/// Both verifiers: the entry point of authentication.
#[derive(Debug)]
pub struct Authenticator {
    /// Staff tokens.
    pub staff: StaffVerifier,
    /// Customer tokens.
    pub customers: CustomerTokens,
}

impl Authenticator {
    /// The principal of any accepted token, staff or customer.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] when neither verifier accepts it.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(customer) = self.customers.verify(token) {
            return Ok(customer);
        }
        match self.staff.verify(token) {
            Ok(principal) => Ok(principal),
            // A customer-audience token that failed customer verification
            // (expired, tampered) is reported as such.
            Err(AuthError::StaffRequired) => Err(AuthError::Invalid(self.customers.failure(token))),
            Err(err) => Err(err),
        }
    }

    /// The principal of a staff token; customer tokens are refused.
    ///
    /// # Errors
    /// [`AuthError::StaffRequired`] for a customer token,
    /// [`AuthError::Invalid`] for anything else that does not verify.
    pub fn authenticate_staff(&self, token: &str) -> Result<Principal, AuthError> {
        if self.customers.verify(token).is_some() {
            return Err(AuthError::StaffRequired);
        }
        self.staff.verify(token)
    }
}

/// Mints a staff token with the configured HS256 secret: for trying the API
/// locally and for tests. Hosts issue their own tokens in production.
///
/// # Errors
/// When the server is not configured for HS256.
pub fn mint_staff_token(
    settings: &StaffJwtSettings,
    tenant: TenantId,
    user: StaffUserId,
    role: &str,
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    let secret = match (settings.algorithm, &settings.secret) {
        (JwtAlgorithm::Hs256, Some(secret)) => secret,
        _ => anyhow::bail!(
            "minting needs CHAT_JWT_ALGORITHM=HS256 with a secret: the server only holds a public key otherwise"
        ),
    };
    let now = Utc::now().timestamp();
    let ttl = i64::try_from(ttl.as_secs()).context("ttl too large")?;
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(user.to_string()));
    claims.insert(
        settings.tenant_claim.clone(),
        Value::String(tenant.to_string()),
    );
    claims.insert("role".into(), Value::String(role.to_owned()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl));
    if let Some(issuer) = &settings.issuer {
        claims.insert("iss".into(), Value::String(issuer.clone()));
    }
    if let Some(audience) = settings.audience.first() {
        claims.insert("aud".into(), Value::String(audience.clone()));
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .context("signing the staff token")
}
