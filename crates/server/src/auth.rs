//! Authentication: staff JWTs issued by the host backend, and the customer
//! chat tokens this server issues and verifies itself.

use std::collections::HashSet;
use std::fmt;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chat_domain::{CustomerId, Principal, StaffRole, StaffUserId, TenantId};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{
    decode, encode, get_current_timestamp, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
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

/// What a token must be before its signature and claims are trusted, on
/// top of what `jsonwebtoken` checks: three base64url segments whose header
/// is a JSON object without repeated members and without `crit` (RFC 7515
/// §4.1.11: this server understands no extension, so it must refuse any
/// marked critical), and whose payload is a JSON object without repeated
/// claims (serde_json would silently keep the last of two `role`s or
/// `tenant_id`s, while another verifier could keep the first).
///
/// # Errors
/// [`AuthError::Invalid`] saying which rule the token breaks.
fn inspect(token: &str) -> Result<(), AuthError> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(AuthError::Invalid(MALFORMED));
    };
    let header = base64url_decode(header).ok_or(AuthError::Invalid(MALFORMED))?;
    let parameters = member_names(&header).map_err(|e| {
        AuthError::Invalid(match e {
            ObjectError::NotAnObject => "token header is not a JSON object",
            ObjectError::Repeated => "token header repeats a parameter",
            ObjectError::Malformed => MALFORMED,
        })
    })?;
    if parameters.contains("crit") {
        return Err(AuthError::Invalid(
            "token header has a crit parameter, and no extension is supported",
        ));
    }
    let payload = base64url_decode(payload).ok_or(AuthError::Invalid(MALFORMED))?;
    member_names(&payload).map_err(|e| {
        AuthError::Invalid(match e {
            ObjectError::NotAnObject => "token claims are not a JSON object",
            ObjectError::Repeated => "token repeats a claim",
            ObjectError::Malformed => MALFORMED,
        })
    })?;
    Ok(())
}

const MALFORMED: &str = "token is malformed";

/// Decodes base64url without padding (RFC 7515 §2) as strictly as
/// `jsonwebtoken` does: no padding, no other alphabet, no stray bits.
fn base64url_decode(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// Why a JSON text is not an object with unique member names.
#[derive(Debug, PartialEq, Eq)]
enum ObjectError {
    /// Valid JSON, but not an object.
    NotAnObject,
    /// An object naming one member twice.
    Repeated,
    /// Not JSON.
    Malformed,
}

/// The top-level member names of the JSON object `json`.
fn member_names(json: &[u8]) -> Result<HashSet<String>, ObjectError> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let names = deserializer
        .deserialize_any(MemberNames)
        .and_then(|names| deserializer.end().map(|()| names))
        .map_err(|e| {
            if e.is_data() {
                ObjectError::NotAnObject
            } else {
                ObjectError::Malformed
            }
        })?;
    names.ok_or(ObjectError::Repeated)
}

/// Collects the names of an object's members, `None` when one repeats.
/// Names are compared after unescaping, as serde_json compares them when it
/// builds a map. Every value is still read through, so the whole text is
/// checked to be JSON.
struct MemberNames;

impl<'de> Visitor<'de> for MemberNames {
    type Value = Option<HashSet<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names = HashSet::new();
        let mut repeated = false;
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            repeated |= !names.insert(name);
        }
        Ok((!repeated).then_some(names))
    }
}

/// Checks the times `jsonwebtoken` leaves alone: `iat` (it never looks at
/// it) must not be later than `now` plus the leeway, and `iat` and `nbf`,
/// when present, must be numbers (`jsonwebtoken` skips a `nbf` it cannot
/// read instead of refusing it).
fn check_times(claims: &Map<String, Value>, now: u64, leeway: u64) -> Result<(), &'static str> {
    match claims.get("nbf") {
        None | Some(Value::Number(_)) => {}
        Some(_) => return Err("token nbf claim is not a number"),
    }
    let latest = now.saturating_add(leeway);
    let in_future = match claims.get("iat") {
        None => false,
        // Integers compared as integers: f64 rounds the large ones.
        Some(Value::Number(iat)) => match iat.as_u64() {
            Some(iat) => iat > latest,
            None => iat.as_f64().is_some_and(|iat| iat > latest as f64),
        },
        Some(_) => return Err("token iat claim is not a number"),
    };
    if in_future {
        return Err("token issued in the future");
    }
    Ok(())
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
        _ => MALFORMED,
    }
}

/// Whether `jsonwebtoken` only returns this error once the signature has
/// verified: `decode` checks the algorithm and signature first and the
/// claims (expiry, `nbf`, issuer, audience, required claims) after.
fn signature_verified(err: &jsonwebtoken::errors::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ExpiredSignature
            | ErrorKind::ImmatureSignature
            | ErrorKind::InvalidAudience
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidSubject
            | ErrorKind::MissingRequiredClaim(_)
    )
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
        // A token that says it is not valid yet is refused; one without
        // `nbf` is valid from the start.
        validation.validate_nbf = true;
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
    /// [`AuthError::Invalid`] for any token that does not verify, is not
    /// valid yet or was issued in the future, has a `crit` header or a
    /// repeated claim, or lacks `sub`, the tenant claim or `role`;
    /// [`AuthError::StaffRequired`] for a customer chat token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        inspect(token)?;
        self.verify_inspected(token)
    }

    /// [`StaffVerifier::verify`] of a token [`inspect`] accepted.
    fn verify_inspected(&self, token: &str) -> Result<Principal, AuthError> {
        let data = decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(describe(&e)))?;
        let claims = data.claims;
        check_times(&claims, get_current_timestamp(), self.validation.leeway)
            .map_err(AuthError::Invalid)?;
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

/// What the customer verifier makes of a token.
#[derive(Debug, PartialEq, Eq)]
enum CustomerCheck {
    /// A valid customer token.
    Accepted(Principal),
    /// Signed with this server's key, and refused for this reason (expired,
    /// issued in the future...): a customer token, but not a valid one.
    Refused(&'static str),
    /// Not signed with this server's key: not a customer token.
    NotOurs,
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
        validation.validate_nbf = true;
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
        inspect(token).ok()?;
        match self.check(token) {
            CustomerCheck::Accepted(principal) => Some(principal),
            CustomerCheck::Refused(_) | CustomerCheck::NotOurs => None,
        }
    }

    /// Whether a token [`inspect`] accepted is a valid customer token, a
    /// customer token refused for a reason, or none of ours.
    fn check(&self, token: &str) -> CustomerCheck {
        // Claims as a map: once the signature verified, reading them cannot
        // fail, so every error left is a claim check of `jsonwebtoken`.
        let claims = match decode::<Map<String, Value>>(token, &self.decoding, &self.validation) {
            Ok(data) => data.claims,
            Err(e) if signature_verified(&e) => return CustomerCheck::Refused(describe(&e)),
            Err(_) => return CustomerCheck::NotOurs,
        };
        if let Err(reason) = check_times(&claims, get_current_timestamp(), self.validation.leeway) {
            return CustomerCheck::Refused(reason);
        }
        let principal = serde_json::from_value::<CustomerClaims>(Value::Object(claims))
            .ok()
            .and_then(|claims| {
                let tenant = TenantId::parse(&claims.tenant_id).ok()?;
                let customer = CustomerId::parse(&claims.sub).ok()?;
                Some(Principal::customer(tenant, customer))
            });
        match principal {
            Some(principal) => CustomerCheck::Accepted(principal),
            None => CustomerCheck::Refused("token claims are invalid"),
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
    /// [`AuthError::Invalid`] when neither verifier accepts it, with the
    /// reason of the customer verifier for a token signed with its key.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        inspect(token)?;
        match self.customers.check(token) {
            CustomerCheck::Accepted(customer) => return Ok(customer),
            CustomerCheck::Refused(reason) => return Err(AuthError::Invalid(reason)),
            CustomerCheck::NotOurs => {}
        }
        match self.staff.verify_inspected(token) {
            // A customer-audience token that is not signed with the
            // customer key is a forgery or a leftover of another key.
            Err(AuthError::StaffRequired) => Err(AuthError::Invalid("signature does not verify")),
            other => other,
        }
    }

    /// The principal of a staff token; customer tokens are refused.
    ///
    /// # Errors
    /// [`AuthError::StaffRequired`] for a customer token, valid or not,
    /// [`AuthError::Invalid`] for anything else that does not verify.
    pub fn authenticate_staff(&self, token: &str) -> Result<Principal, AuthError> {
        inspect(token)?;
        match self.customers.check(token) {
            CustomerCheck::Accepted(_) | CustomerCheck::Refused(_) => Err(AuthError::StaffRequired),
            CustomerCheck::NotOurs => self.staff.verify_inspected(token),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const STAFF_SECRET: &str = "staff-secret-that-is-long-enough-for-hs256-0123";
    const CUSTOMER_SECRET: &str = "customer-secret-that-is-long-enough-for-hs256";
    const ISSUER: &str = "https://host.example";
    const AUDIENCE: &str = "chat-api";
    const LEEWAY: u64 = 30;
    const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    fn authenticator() -> Authenticator {
        let settings = StaffJwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            secret: Some(Secret::new(STAFF_SECRET)),
            public_key_pem: None,
            issuer: Some(ISSUER.into()),
            audience: vec![AUDIENCE.into()],
            tenant_claim: "tenant_id".into(),
            admin_roles: vec!["admin".into()],
            leeway_seconds: LEEWAY,
        };
        Authenticator {
            staff: StaffVerifier::new(&settings).expect("HS256 settings with a secret"),
            customers: CustomerTokens::new(&Secret::new(CUSTOMER_SECRET)),
        }
    }

    fn base64url(input: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(input)
    }

    /// A token of exactly these header and claims texts (so that they may
    /// repeat members), signed with HS256.
    fn token(header: &str, claims: &str, secret: &str) -> String {
        let message = format!(
            "{}.{}",
            base64url(header.as_bytes()),
            base64url(claims.as_bytes())
        );
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        )
        .expect("HMAC signs anything");
        format!("{message}.{signature}")
    }

    fn now() -> i64 {
        i64::try_from(get_current_timestamp()).expect("the clock is before 2262")
    }

    struct Ids {
        tenant: TenantId,
        user: StaffUserId,
        customer: CustomerId,
    }

    impl Ids {
        /// Staff claims, then `extra` members.
        fn staff(&self, extra: &str) -> String {
            format!(
                r#"{{"sub":"{}","tenant_id":"{}","role":"pharmacist","iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}{extra}}}"#,
                self.user,
                self.tenant,
                now() + 600
            )
        }

        /// Customer claims issued at `iat`, expiring at `exp`, then `extra`.
        fn customer(&self, iat: i64, exp: i64, extra: &str) -> String {
            format!(
                r#"{{"sub":"{}","tenant_id":"{}","aud":"{CUSTOMER_AUDIENCE}","iss":"{CUSTOMER_ISSUER}","iat":{iat},"exp":{exp}{extra}}}"#,
                self.customer, self.tenant
            )
        }
    }

    #[test]
    fn tokens_are_accepted_or_refused_with_a_reason() {
        let auth = authenticator();
        let ids = Ids {
            tenant: TenantId::new_v4(),
            user: StaffUserId::new_v4(),
            customer: CustomerId::new_v4(),
        };
        let staff = Ok(Principal::staff(ids.tenant, ids.user, StaffRole::Staff));
        let customer = Ok(Principal::customer(ids.tenant, ids.customer));
        let now = now();
        let soon = now + i64::try_from(LEEWAY / 2).expect("small leeway");
        let later = now + 3600;
        let crit = "token header has a crit parameter, and no extension is supported";
        let cases: Vec<(&str, String, Result<Principal, &str>)> = vec![
            (
                "valid, without iat or nbf",
                token(HS256, &ids.staff(""), STAFF_SECRET),
                staff,
            ),
            (
                "nbf in the future",
                token(
                    HS256,
                    &ids.staff(&format!(r#","nbf":{later}"#)),
                    STAFF_SECRET,
                ),
                Err("token is not valid yet"),
            ),
            (
                "nbf within the leeway",
                token(
                    HS256,
                    &ids.staff(&format!(r#","nbf":{soon}"#)),
                    STAFF_SECRET,
                ),
                staff,
            ),
            (
                "nbf not a number",
                token(HS256, &ids.staff(r#","nbf":"tomorrow""#), STAFF_SECRET),
                Err("token nbf claim is not a number"),
            ),
            (
                "iat in the future",
                token(
                    HS256,
                    &ids.staff(&format!(r#","iat":{later}"#)),
                    STAFF_SECRET,
                ),
                Err("token issued in the future"),
            ),
            (
                "iat within the leeway",
                token(
                    HS256,
                    &ids.staff(&format!(r#","iat":{soon}"#)),
                    STAFF_SECRET,
                ),
                staff,
            ),
            (
                "iat in the past, as a fraction",
                token(
                    HS256,
                    &ids.staff(&format!(r#","iat":{}.5"#, now - 60)),
                    STAFF_SECRET,
                ),
                staff,
            ),
            (
                "iat in the future, as a fraction",
                token(
                    HS256,
                    &ids.staff(&format!(r#","iat":{later}.5"#)),
                    STAFF_SECRET,
                ),
                Err("token issued in the future"),
            ),
            (
                "iat not a number",
                token(HS256, &ids.staff(r#","iat":"yesterday""#), STAFF_SECRET),
                Err("token iat claim is not a number"),
            ),
            (
                "crit header",
                token(
                    r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
                    &ids.staff(""),
                    STAFF_SECRET,
                ),
                Err(crit),
            ),
            (
                "empty crit header",
                token(r#"{"alg":"HS256","crit":[]}"#, &ids.staff(""), STAFF_SECRET),
                Err(crit),
            ),
            (
                "header not an object",
                token(r#"["HS256"]"#, &ids.staff(""), STAFF_SECRET),
                Err("token header is not a JSON object"),
            ),
            (
                "header not JSON",
                token(r#"{"alg":"HS256""#, &ids.staff(""), STAFF_SECRET),
                Err("token is malformed"),
            ),
            (
                "repeated header parameter",
                token(
                    r#"{"alg":"HS256","typ":"JWT","alg":"HS256"}"#,
                    &ids.staff(""),
                    STAFF_SECRET,
                ),
                Err("token header repeats a parameter"),
            ),
            (
                "repeated tenant_id",
                token(
                    HS256,
                    &ids.staff(&format!(r#","tenant_id":"{}""#, TenantId::new_v4())),
                    STAFF_SECRET,
                ),
                Err("token repeats a claim"),
            ),
            (
                "repeated role",
                token(HS256, &ids.staff(r#","role":"admin""#), STAFF_SECRET),
                Err("token repeats a claim"),
            ),
            (
                "repeated role, spelt with an escape",
                token(HS256, &ids.staff(r#","r\u006fle":"admin""#), STAFF_SECRET),
                Err("token repeats a claim"),
            ),
            (
                "claims not an object",
                token(HS256, "[1]", STAFF_SECRET),
                Err("token claims are not a JSON object"),
            ),
            (
                "four segments",
                format!("{}.x", token(HS256, &ids.staff(""), STAFF_SECRET)),
                Err("token is malformed"),
            ),
            (
                "valid customer",
                token(
                    HS256,
                    &ids.customer(now - 60, now + 600, ""),
                    CUSTOMER_SECRET,
                ),
                customer,
            ),
            (
                "expired customer",
                token(
                    HS256,
                    &ids.customer(now - 7200, now - 3600, ""),
                    CUSTOMER_SECRET,
                ),
                Err("token has expired"),
            ),
            (
                "customer issued in the future",
                token(
                    HS256,
                    &ids.customer(later, later + 600, ""),
                    CUSTOMER_SECRET,
                ),
                Err("token issued in the future"),
            ),
            (
                "customer nbf in the future",
                token(
                    HS256,
                    &ids.customer(now, now + 600, &format!(r#","nbf":{later}"#)),
                    CUSTOMER_SECRET,
                ),
                Err("token is not valid yet"),
            ),
            (
                "customer with a repeated tenant_id",
                token(
                    HS256,
                    &ids.customer(
                        now,
                        now + 600,
                        &format!(r#","tenant_id":"{}""#, TenantId::new_v4()),
                    ),
                    CUSTOMER_SECRET,
                ),
                Err("token repeats a claim"),
            ),
            (
                "customer claims signed with the staff key",
                token(HS256, &ids.customer(now, now + 600, ""), STAFF_SECRET),
                Err("token issuer is not accepted"),
            ),
        ];
        for (case, token, expected) in cases {
            assert_eq!(
                auth.authenticate(&token),
                expected.map_err(AuthError::Invalid),
                "{case}"
            );
        }
    }

    #[test]
    fn customer_tokens_valid_or_not_are_refused_on_staff_routes() {
        let auth = authenticator();
        let ids = Ids {
            tenant: TenantId::new_v4(),
            user: StaffUserId::new_v4(),
            customer: CustomerId::new_v4(),
        };
        let now = now();
        for (iat, exp) in [(now, now + 600), (now - 7200, now - 3600)] {
            let token = token(HS256, &ids.customer(iat, exp, ""), CUSTOMER_SECRET);
            assert_eq!(
                auth.authenticate_staff(&token),
                Err(AuthError::StaffRequired)
            );
        }
        let repeated = token(HS256, &ids.staff(r#","role":"admin""#), STAFF_SECRET);
        assert_eq!(
            auth.staff.verify(&repeated),
            Err(AuthError::Invalid("token repeats a claim"))
        );
    }

    #[test]
    fn base64url_is_decoded_strictly() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\xfe\x00"] {
            assert_eq!(
                base64url_decode(&base64url(input)).as_deref(),
                Some(input),
                "{input:?}"
            );
        }
        // Padding, the standard alphabet, a lone sextet, stray low bits.
        for bad in ["Zm8=", "a+b/", "Zm9vY", "Zm9=", "Zn"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }
}
