//! Extractors whose rejections speak the API's error shape: authenticated
//! principals, JSON bodies, query strings and path ids.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use chat_domain::Principal;
use serde::de::DeserializeOwned;

use crate::auth::AuthError;
use crate::error::ApiError;
use crate::state::AppState;

fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("authorization header is not text"))?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid(
        "authorization header must be `Bearer <token>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid(
            "authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

/// Any authenticated caller: staff or customer.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        Ok(Self(state.auth.authenticate(token)?))
    }
}

/// A staff caller; customer tokens are refused with 401.
#[derive(Debug, Clone, Copy)]
pub struct StaffCaller(pub Principal);

impl FromRequestParts<AppState> for StaffCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        Ok(Self(state.auth.authenticate_staff(token)?))
    }
}

/// A JSON body; malformed JSON, wrong types and missing fields are 400.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::unsupported_media_type("expected `Content-Type: application/json`")
        }
        JsonRejection::BytesRejection(inner) if inner.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large("request body is too large")
        }
        JsonRejection::JsonDataError(err) => ApiError::invalid(client_wording(&err.body_text())),
        JsonRejection::JsonSyntaxError(err) => ApiError::invalid(client_wording(&err.body_text())),
        other => ApiError::invalid(client_wording(&other.body_text())),
    }
}

/// Rewrites a serde error message (JSON body, query string, WebSocket frame)
/// in the client's terms: the field path and the line and column stay, the
/// Rust types serde names in what it expected go (`struct
/// SendMessageRequest` becomes "an object", `u64` "a non-negative integer",
/// a failed UUID parse "expected a UUID"), and an unknown variant is an
/// unknown value, with the list of accepted ones serde gives.
pub(crate) fn client_wording(message: &str) -> String {
    let (text, position) = split_position(message);
    let text = if let Some(at) = text.find("UUID parsing failed") {
        format!("{}expected a UUID", &text[..at])
    } else if let Some(at) = text.find("data did not match any variant of untagged enum") {
        format!("{}matches none of the accepted forms", &text[..at])
    } else if let Some(at) = text.rfind(EXPECTED) {
        let (head, expected) = text.split_at(at);
        format!(
            "{}{EXPECTED}{}",
            head.replace("unknown variant", "unknown value"),
            expectation(&expected[EXPECTED.len()..])
        )
    } else {
        text.to_owned()
    };
    // What no rewrite above foresaw must still not reach the client.
    if TYPE_NAME_MARKS.iter().any(|mark| text.contains(mark)) {
        return format!("a value does not have the expected type{position}");
    }
    format!("{text}{position}")
}

const EXPECTED: &str = ", expected ";

/// Fragments that only appear in messages naming Rust types.
const TYPE_NAME_MARKS: [&str; 6] = ["struct ", "enum ", "::", "Uuid", "Option<", "Vec<"];

/// `(message, " at line L column C")`, the second empty when serde_json
/// gave no position.
fn split_position(message: &str) -> (&str, &str) {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(at) = message.rfind(" at line ") {
        let tail = &message[at + " at line ".len()..];
        if let Some((line, column)) = tail.split_once(" column ") {
            if digits(line) && digits(column) {
                return message.split_at(at);
            }
        }
    }
    (message, "")
}

/// What serde says it expected, in JSON terms.
fn expectation(expected: &str) -> String {
    let words = match expected {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" => "an integer from -128 to 127",
        "i16" => "an integer from -32768 to 32767",
        "i32" => "an integer from -2147483648 to 2147483647",
        "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a borrowed string" => "a string",
        "a map" => "an object",
        "option" => "a value or null",
        "unit" => "null",
        "field identifier" => "a field name",
        "variant identifier" => "one of the accepted values",
        other if other.starts_with("struct ") => "an object",
        other if other.starts_with("tuple struct ") => "an array",
        other if other.starts_with("unit struct ") => "null",
        other if other.contains("enum ") => "one of the accepted values",
        other if other.contains("UUID") => "a UUID",
        other => match other.strip_prefix("a tuple of size ") {
            Some(size) => return format!("an array of {size} items"),
            None => other,
        },
    };
    words.to_owned()
}

/// A query string; unknown values and wrong types are 400.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(err)) => {
                Err(ApiError::invalid(client_wording(&err.body_text())))
            }
            Err(other) => Err(ApiError::invalid(client_wording(&other.body_text()))),
        }
    }
}

/// The `{id}` segment of a path, parsed as a domain id. A malformed id names
/// nothing that exists: 404.
#[derive(Debug, Clone, Copy)]
pub struct PathId<T>(pub T);

impl<S, T> FromRequestParts<S> for PathId<T>
where
    T: std::str::FromStr,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("not found"))?;
        raw.parse()
            .map(Self)
            .map_err(|_| ApiError::not_found("not found"))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Uri;
    use serde::Deserialize;

    use super::*;
    use crate::dto::{
        CreateConversationRequest, CustomerTokenRequest, ListConversationsQuery, ListMessagesQuery,
        ReadRequest, SendMessageRequest, UpdateConversationRequest,
    };

    /// Request shapes the API does not have yet, for what serde says of
    /// enums and small integers.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shapes {
        #[serde(default)]
        status: Option<Status>,
        #[serde(default)]
        shape: Option<Shape>,
        #[serde(default)]
        priority: Option<u8>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Status {
        Open,
        Resolved,
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum Shape {
        Name(String),
        Ids(Vec<uuid::Uuid>),
    }

    fn body<T: DeserializeOwned>(json: &str) -> String {
        match axum::Json::<T>::from_bytes(json.as_bytes()) {
            Ok(_) => panic!("{json} was accepted"),
            Err(rejection) => json_rejection(&rejection).into_parts().1,
        }
    }

    fn query<T: DeserializeOwned>(query: &str) -> String {
        let uri: Uri = format!("/x?{query}").parse().expect("a URI");
        match Query::<T>::try_from_uri(&uri) {
            Ok(_) => panic!("{query} was accepted"),
            Err(rejection) => client_wording(&rejection.body_text()),
        }
    }

    #[test]
    fn serde_messages_name_no_rust_types() {
        let data = "Failed to deserialize the JSON body into the target type: ";
        let customer = uuid::Uuid::now_v7();
        let cases = [
            (
                body::<SendMessageRequest>(r#""x""#),
                format!(r#"{data}invalid type: string "x", expected an object at line 1 column 3"#),
            ),
            (
                body::<ReadRequest>("[]"),
                format!("{data}invalid length 0, expected an object at line 1 column 2"),
            ),
            (
                body::<SendMessageRequest>(r#"{"body": 123}"#),
                format!("{data}body: invalid type: integer `123`, expected a string at line 1 column 12"),
            ),
            (
                body::<SendMessageRequest>(r#"{"attachment_ids": "a"}"#),
                format!(r#"{data}attachment_ids: invalid type: string "a", expected a sequence at line 1 column 22"#),
            ),
            (
                body::<SendMessageRequest>(r#"{"attachment_ids": ["nope"]}"#),
                format!("{data}attachment_ids[0]: expected a UUID at line 1 column 26"),
            ),
            (
                body::<SendMessageRequest>(r#"{"reply_to": 5}"#),
                format!("{data}reply_to: invalid type: integer `5`, expected a UUID at line 1 column 14"),
            ),
            (
                body::<ReadRequest>(r#"{"up_to_seq": -1}"#),
                format!("{data}up_to_seq: invalid value: integer `-1`, expected a non-negative integer at line 1 column 16"),
            ),
            (
                body::<ReadRequest>(r#"{"up_to_seq": 1.5}"#),
                format!("{data}up_to_seq: invalid type: floating point `1.5`, expected a non-negative integer at line 1 column 17"),
            ),
            (
                body::<ReadRequest>("{}"),
                format!("{data}missing field `up_to_seq` at line 1 column 2"),
            ),
            (
                body::<CreateConversationRequest>(r#"{"customer_id": "not-a-uuid"}"#),
                format!("{data}customer_id: expected a UUID at line 1 column 28"),
            ),
            (
                body::<CreateConversationRequest>(r#"{"extra": 1}"#),
                format!("{data}extra: unknown field `extra`, expected `customer_id` or `staff_user_id` at line 1 column 8"),
            ),
            (
                body::<UpdateConversationRequest>(r#"{"tags": "refill"}"#),
                format!(r#"{data}tags: invalid type: string "refill", expected a sequence at line 1 column 17"#),
            ),
            (
                body::<UpdateConversationRequest>(r#"{"assignee_id": 5}"#),
                format!("{data}assignee_id: invalid type: integer `5`, expected a UUID at line 1 column 17"),
            ),
            (
                body::<CustomerTokenRequest>(&format!(r#"{{"customer_id": "{customer}", "ttl_seconds": -5}}"#)),
                format!("{data}ttl_seconds: invalid value: integer `-5`, expected a non-negative integer at line 1 column 73"),
            ),
            (
                body::<SendMessageRequest>("{"),
                "Failed to parse the request body as JSON: EOF while parsing an object at line 1 column 1".into(),
            ),
            (
                body::<Shapes>(r#"{"status": "closed"}"#),
                format!("{data}status: unknown value `closed`, expected `open` or `resolved` at line 1 column 19"),
            ),
            (
                body::<Shapes>(r#"{"status": 5}"#),
                // serde_json reads an enum only from a string or an object.
                "Failed to parse the request body as JSON: status: expected value at line 1 column 12".into(),
            ),
            (
                body::<Shapes>(r#"{"shape": 5}"#),
                format!("{data}shape: matches none of the accepted forms at line 1 column 12"),
            ),
            (
                body::<Shapes>(r#"{"priority": 300}"#),
                format!("{data}priority: invalid value: integer `300`, expected an integer from 0 to 255 at line 1 column 16"),
            ),
            (
                query::<ListMessagesQuery>("limit=abc"),
                "Failed to deserialize query string: limit: invalid digit found in string".into(),
            ),
            (
                query::<ListConversationsQuery>("foo=bar"),
                "Failed to deserialize query string: foo: unknown field `foo`, expected one of `status`, `kind`, `limit`, `cursor`".into(),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(message, expected);
            for mark in TYPE_NAME_MARKS {
                assert!(!message.contains(mark), "{message}");
            }
        }
    }

    #[test]
    fn type_names_no_rewrite_foresaw_are_withheld() {
        for (raw, expected) in [
            (
                "items: invalid type: map, expected Vec<chat::Item> at line 3 column 9",
                "a value does not have the expected type at line 3 column 9",
            ),
            (
                "invalid type: null, expected a string",
                "invalid type: null, expected a string",
            ),
            (
                "EOF while parsing a value at line 1 column 0",
                "EOF while parsing a value at line 1 column 0",
            ),
        ] {
            assert_eq!(client_wording(raw), expected);
        }
    }
}
