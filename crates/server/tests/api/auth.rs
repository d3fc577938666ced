//! Authentication: every token that must not pass gets 401, and customer
//! tokens never open staff routes.

use std::time::Duration;

use chat_domain::{CustomerId, StaffUserId, TenantId};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_databases;
use crate::helpers::{Chat, Db, Reply, TestApp, AUDIENCE, ISSUER, JWT_SECRET};

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

/// A token of exactly these header and claims texts, so that members may
/// repeat, signed with HS256 and `secret`.
fn raw_token(header: &str, claims: &str, secret: &str) -> String {
    use base64_url as b64;
    let message = format!(
        "{}.{}",
        b64::encode(header.as_bytes()),
        b64::encode(claims.as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

#[track_caller]
fn expect_refusal(reply: &Reply, reason: &str) {
    reply.expect_error(401, "unauthenticated");
    assert_eq!(
        reply.body["error"]["message"],
        format!("invalid token: {reason}"),
        "{reply:?}"
    );
}

/// Base64url without padding, as JWT segments are written.
mod base64_url {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    pub fn encode(input: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(input)
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
    let reply = app.get("/api/v1/chat/conversations", &expired).await;
    expect_refusal(&reply, "token has expired");
    // Signed with the server's key too, but dated an hour ahead.
    let ahead = chrono::Utc::now() + chrono::Duration::hours(1);
    let from_the_future = tokens
        .issue(
            app.tenant,
            customer,
            ahead,
            ahead + chrono::Duration::hours(1),
        )
        .unwrap();
    let reply = app
        .get("/api/v1/chat/conversations", &from_the_future)
        .await;
    expect_refusal(&reply, "token issued in the future");
}

#[tokio::test]
async fn tokens_not_valid_yet_or_open_to_two_readings_are_401_with_the_reason() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let base = claims(&app);
    let later = now() + 3600;
    // Within the leeway (30 s by default), a clock slightly ahead is fine.
    for claim in ["nbf", "iat"] {
        let token = sign(
            &with(base.clone(), claim, json!(now() + 10)),
            Algorithm::HS256,
            JWT_SECRET,
        );
        let reply = app.get("/api/v1/chat/conversations", &token).await;
        assert_eq!(reply.status, StatusCode::OK, "{claim}: {reply:?}");
    }
    let claims_text = base.to_string();
    let repeated = |member: &str| {
        format!(
            "{},{member}}}",
            claims_text.strip_suffix('}').expect("an object")
        )
    };
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let cases = [
        (
            "nbf in the future",
            sign(
                &with(base.clone(), "nbf", json!(later)),
                Algorithm::HS256,
                JWT_SECRET,
            ),
            "token is not valid yet",
        ),
        (
            "iat in the future",
            sign(
                &with(base.clone(), "iat", json!(later)),
                Algorithm::HS256,
                JWT_SECRET,
            ),
            "token issued in the future",
        ),
        (
            "crit header",
            raw_token(
                r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
                &claims_text,
                JWT_SECRET,
            ),
            "token header has a crit parameter, and no extension is supported",
        ),
        (
            "repeated header parameter",
            raw_token(
                r#"{"alg":"HS256","typ":"JWT","typ":"JWT"}"#,
                &claims_text,
                JWT_SECRET,
            ),
            "token header repeats a parameter",
        ),
        (
            "repeated tenant_id",
            raw_token(
                header,
                &repeated(&format!(r#""tenant_id":"{}""#, TenantId::new_v4())),
                JWT_SECRET,
            ),
            "token repeats a claim",
        ),
        (
            "repeated role",
            raw_token(header, &repeated(r#""role":"admin""#), JWT_SECRET),
            "token repeats a claim",
        ),
    ];
    for (what, token, reason) in cases {
        let reply = app.get("/api/v1/chat/conversations", &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {reply:?}");
        expect_refusal(&reply, reason);
    }
    // The same token without its repeated member is accepted: the refusal
    // is for the repetition, not for what it says.
    let single = raw_token(header, &claims_text, JWT_SECRET);
    assert_eq!(
        app.get("/api/v1/chat/conversations", &single).await.status,
        StatusCode::OK
    );
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
