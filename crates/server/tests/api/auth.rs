//! Authentication: every token that must not pass gets 401, and customer
//! tokens never open staff routes.

use std::time::Duration;

use chat_domain::{CustomerId, StaffUserId};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_databases;
use crate::helpers::{Chat, Db, TestApp, AUDIENCE, ISSUER, JWT_SECRET};

both_databases!(
    missing_and_garbage_tokens_are_401,
    tokens_that_fail_verification_are_401,
    customer_tokens_never_open_staff_routes,
    expired_customer_tokens_are_401,
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(app: &TestApp) -> Value {
    json!({
        "sub": StaffUserId::new_v4().to_string(),
        "tenant_id": app.tenant.to_string(),
        "role": "pharmacist",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
    })
}

fn sign(claims: &Value, algorithm: Algorithm, secret: &str) -> String {
    encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// An unsigned token: `{"alg": "none"}` header, no signature.
fn alg_none(claims: &Value) -> String {
    use base64_url as b64;
    format!(
        "{}.{}.",
        b64::encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64::encode(claims.to_string().as_bytes())
    )
}

/// Minimal base64url without padding, so the test needs no extra crate.
mod base64_url {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

async fn missing_and_garbage_tokens_are_401(db: Db) {
    let app = TestApp::spawn(db).await;
    let reply = app
        .call(Method::GET, "/api/v1/chat/conversations", None, None)
        .await;
    reply.expect_error(401, "unauthenticated");
    for token in ["garbage", "a.b.c", "", "Bearer"] {
        app.get("/api/v1/chat/conversations", token)
            .await
            .expect_error(401, "unauthenticated");
    }
    let basic = app
        .client
        .get(app.url("/api/v1/chat/conversations"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");
}

async fn tokens_that_fail_verification_are_401(db: Db) {
    let app = TestApp::spawn(db).await;
    let base = claims(&app);
    let good = sign(&base, Algorithm::HS256, JWT_SECRET);
    assert_eq!(
        app.get("/api/v1/chat/conversations", &good).await.status,
        StatusCode::OK
    );

    let bad_tokens = [
        (
            "expired",
            sign(
                &with(base.clone(), "exp", json!(now() - 3600)),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "wrong signature",
            sign(
                &base,
                Algorithm::HS256,
                "another-secret-that-is-long-enough-0123456789",
            ),
        ),
        ("alg none", alg_none(&base)),
        (
            "other HMAC algorithm",
            sign(&base, Algorithm::HS384, JWT_SECRET),
        ),
        (
            "wrong audience",
            sign(
                &with(base.clone(), "aud", json!("another-api")),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "no audience",
            sign(&without(base.clone(), "aud"), Algorithm::HS256, JWT_SECRET),
        ),
        (
            "wrong issuer",
            sign(
                &with(base.clone(), "iss", json!("https://evil.example")),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "no exp",
            sign(&without(base.clone(), "exp"), Algorithm::HS256, JWT_SECRET),
        ),
        (
            "no tenant",
            sign(
                &without(base.clone(), "tenant_id"),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "tenant not a uuid",
            sign(
                &with(base.clone(), "tenant_id", json!("pharmacy-1")),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "no role",
            sign(&without(base.clone(), "role"), Algorithm::HS256, JWT_SECRET),
        ),
        (
            "sub not a uuid",
            sign(
                &with(base.clone(), "sub", json!("alice")),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "customer audience",
            sign(
                &with(base.clone(), "aud", json!("chat_customer")),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
    ];
    for (what, token) in bad_tokens {
        let reply = app.get("/api/v1/chat/conversations", &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {reply:?}");
        assert_eq!(reply.error_code(), "unauthenticated", "{what}");
    }
}

async fn customer_tokens_never_open_staff_routes(db: Db) {
    let app = TestApp::spawn(db).await;
    let Chat {
        customer,
        id,
        customer_token: token,
        ..
    } = app.chat().await;
    app.post(
        "/api/v1/chat/conversations",
        &token,
        json!({"customer_id": customer.to_string()}),
    )
    .await
    .expect_error(401, "unauthenticated");
    app.patch(
        &format!("/api/v1/chat/conversations/{id}"),
        &token,
        json!({"status": "resolved"}),
    )
    .await
    .expect_error(401, "unauthenticated");
    app.post(
        "/api/v1/chat/customer-token",
        &token,
        json!({"customer_id": CustomerId::new_v4().to_string()}),
    )
    .await
    .expect_error(401, "unauthenticated");
    // A customer token signed with the staff secret is no staff token either.
    let forged = sign(
        &json!({"sub": customer.to_string(), "tenant_id": app.tenant.to_string(), "aud": "chat_customer", "iss": "chat-server", "exp": now() + 600, "role": "admin"}),
        Algorithm::HS256,
        JWT_SECRET,
    );
    app.post(
        "/api/v1/chat/conversations",
        &forged,
        json!({"customer_id": customer.to_string()}),
    )
    .await
    .expect_error(401, "unauthenticated");
}

async fn expired_customer_tokens_are_401(db: Db) {
    let app = TestApp::spawn(db).await;
    let staff = app.staff(StaffUserId::new_v4());
    let customer = CustomerId::new_v4();
    app.open_conversation(&staff, customer).await;
    let tokens = chat_server::auth::CustomerTokens::new(&app.settings.customer_token_secret);
    let past = chrono::Utc::now() - chrono::Duration::hours(2);
    let expired = tokens
        .issue(
            app.tenant,
            customer,
            past,
            past + chrono::Duration::from_std(Duration::from_secs(60)).unwrap(),
        )
        .unwrap();
    app.get("/api/v1/chat/conversations", &expired)
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_configurable_tenant_claim_is_read() {
    let app = TestApp::spawn_with(Db::Sqlite, &[("CHAT_JWT_TENANT_CLAIM", "pharmacy_id")]).await;
    let mut claims = without(claims(&app), "tenant_id");
    claims["pharmacy_id"] = json!(app.tenant.to_string());
    let token = sign(&claims, Algorithm::HS256, JWT_SECRET);
    let reply = app
        .post(
            "/api/v1/chat/conversations",
            &token,
            json!({"customer_id": CustomerId::new_v4().to_string()}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["tenant_id"], app.tenant.to_string());
    // The default claim name means nothing now.
    let old_style = sign(
        &with(
            without(claims, "pharmacy_id"),
            "tenant_id",
            json!(app.tenant.to_string()),
        ),
        Algorithm::HS256,
        JWT_SECRET,
    );
    app.get("/api/v1/chat/conversations", &old_style)
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn rs256_is_pinned_when_configured() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let public = format!("{dir}/tests/fixtures/rs256-public.pem");
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[
            ("CHAT_JWT_ALGORITHM", "RS256"),
            ("CHAT_JWT_PUBLIC_KEY_FILE", &public),
        ],
    )
    .await;
    let private = std::fs::read(format!("{dir}/tests/fixtures/rs256-private.pem")).unwrap();
    let claims = claims(&app);
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    assert_eq!(
        app.get("/api/v1/chat/conversations", &rs).await.status,
        StatusCode::OK
    );
    // An HS256 token, even one signed with the public key as secret (the
    // classic algorithm-confusion attack), is refused.
    let public_pem = std::fs::read_to_string(&public).unwrap();
    for token in [
        sign(&claims, Algorithm::HS256, JWT_SECRET),
        sign(&claims, Algorithm::HS256, &public_pem),
    ] {
        app.get("/api/v1/chat/conversations", &token)
            .await
            .expect_error(401, "unauthenticated");
    }
}

#[tokio::test]
async fn a_token_without_issuer_is_refused_when_one_is_configured() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let token = sign(&without(claims(&app), "iss"), Algorithm::HS256, JWT_SECRET);
    app.get("/api/v1/chat/conversations", &token)
        .await
        .expect_error(401, "unauthenticated");
}
