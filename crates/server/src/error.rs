//! The one HTTP error type: every failure becomes
//! `{"error": {"code": "...", "message": "..."}}` with the status of API.md.
//! Server-side failures are logged with their cause and answered with a
//! generic message.
//!
//! The wording clients read lives here: the app's errors carry typed causes
//! ([`chat_app::Resource`], [`chat_app::Field`] and [`chat_app::Reason`],
//! [`chat_app::Conflict`]) and [`From<ChatError>`] turns each into its code
//! and message, naming fields by their wire names.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chat_app::{ChatError, Conflict, Field, Reason, Resource};
use chat_domain::{AttachmentIdsError, MAX_ATTACHMENTS_PER_MESSAGE};
use serde_json::json;

use crate::auth::AuthError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    cause: Option<anyhow::Error>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cause: None,
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "not allowed to do this")
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405, with the API's error shape.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429 `rate_limited`, with `Retry-After` in whole seconds.
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many messages: slow down and retry later",
            )
        }
    }

    /// 429 `rate_limited` for a WebSocket beyond the caller's `limit` of
    /// open ones.
    pub fn too_many_connections(limit: usize) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many open connections: at most {limit} WebSockets per user; close one and retry"
                ),
            )
        }
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 422 `infected`: the malware scanner found something in an upload.
    pub fn infected() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "infected",
            "file: the malware scanner refused this file",
        )
    }

    /// 503 `unavailable`.
    pub fn unavailable(cause: anyhow::Error) -> Self {
        Self {
            cause: Some(cause),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "a dependency is unavailable",
            )
        }
    }

    /// 503 `unavailable` with `Retry-After`: the store cannot be reached,
    /// or cannot write, now (see [`crate::store_health`]).
    pub fn store_unavailable(fault: StoreFault) -> Self {
        let message = match fault {
            StoreFault::Unreachable => "the database is unavailable: retry shortly",
            StoreFault::Full => "the database is full: retry once an operator has freed space",
        };
        Self {
            retry_after: Some(crate::store_health::RETRY_AFTER_SECONDS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// The 503 of a store failure that `cause` names, if it is one
    /// ([`store_fault`]); the cause is logged.
    fn of_store_fault(cause: anyhow::Error) -> Result<Self, anyhow::Error> {
        let Some(fault) = store_fault(&cause) else {
            return Err(cause);
        };
        Ok(Self {
            cause: Some(cause),
            ..Self::store_unavailable(fault)
        })
    }

    /// 500 `internal`; the cause is logged, never sent.
    pub fn internal(cause: anyhow::Error) -> Self {
        Self {
            cause: Some(cause),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The API error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The code and message, for a WebSocket `error` frame; an internal
    /// cause is logged here, as a response logs it.
    pub fn into_parts(self) -> (&'static str, String) {
        self.log_cause();
        (self.code, self.message)
    }

    /// Logs the cause of a server failure: an error for a 500, a warning
    /// for a 503 (a dependency down is an outage to watch, not a bug).
    fn log_cause(&self) {
        let Some(cause) = &self.cause else {
            return;
        };
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(code = self.code, error = ?cause, "request failed: a dependency is unavailable");
        } else {
            tracing::error!(code = self.code, error = ?cause, "request failed");
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        match err {
            ChatError::NotFound(resource) => Self::not_found(not_found_message(resource)),
            ChatError::Forbidden => Self::forbidden(),
            ChatError::Invalid { field, reason } => Self::invalid(invalid_message(field, reason)),
            ChatError::Conflict(conflict) => {
                Self::new(StatusCode::CONFLICT, "conflict", conflict_message(conflict))
            }
            ChatError::Unexpected(cause) => {
                Self::of_store_fault(cause).unwrap_or_else(Self::internal)
            }
        }
    }
}

/// The message of a 404 about `resource`.
fn not_found_message(resource: Resource) -> String {
    match resource {
        Resource::Conversation => "conversation not found".to_owned(),
        Resource::Message => "message not found".to_owned(),
        Resource::Attachment(attachment) => format!(
            "{}: {attachment} is not an upload of yours in this conversation",
            wire_name(Field::AttachmentIds)
        ),
        Resource::Member => "not a member of this conversation".to_owned(),
    }
}

/// The name clients know a parameter by.
fn wire_name(field: Field) -> &'static str {
    match field {
        Field::Limit => "limit",
        Field::Patch => "request",
        Field::Body => "body",
        Field::AttachmentIds => "attachment_ids",
        Field::ReplyTo => "reply_to",
        Field::ClientMsgId => "client_msg_id",
        Field::UpTo => "up_to_seq",
        Field::Status => "status",
        Field::Users => "users",
        Field::UserIds => "user_ids",
        Field::Name => "name",
        Field::Topic => "topic",
        Field::Role => "role",
        Field::Kind => "kind",
    }
}

/// The message of a 400 about `field`.
fn invalid_message(field: Field, reason: Reason) -> String {
    let name = wire_name(field);
    match (field, reason) {
        (Field::Patch, Reason::Empty) => "nothing to update: give the fields to change".to_owned(),
        (_, Reason::Empty) => format!("{name} must not be empty"),
        (Field::Body, Reason::Required) => "a message needs a body or an attachment".to_owned(),
        (_, Reason::Required) => format!("{name} is required"),
        (_, Reason::OutOfRange { min, max }) => format!("{name} must be between {min} and {max}"),
        (Field::Users, Reason::TooMany { max }) => format!("at most {max} users per query"),
        (_, Reason::TooMany { max }) => format!("{name}: at most {max}"),
        (_, Reason::NotInConversation) => {
            format!("{name} must name a message of this conversation")
        }
        (_, Reason::AlreadyAttached(attachment)) => {
            format!("{name}: {attachment} is already attached to a message")
        }
        (_, Reason::AttachmentIds(AttachmentIdsError::TooMany(_))) => {
            format!("{name}: at most {MAX_ATTACHMENTS_PER_MESSAGE} attachments per message")
        }
        (_, Reason::AttachmentIds(AttachmentIdsError::Repeated(attachment))) => {
            format!("{name}: {attachment} is given twice")
        }
        (_, Reason::Body(err)) => format!("{name}: {err}"),
        (_, Reason::Seq(err)) => format!("{name}: {err}"),
        // These domain messages name the field themselves.
        (_, Reason::ClientMsgId(err)) => err.to_string(),
        (_, Reason::Status(err)) => err.to_string(),
        (_, Reason::ChannelText(err)) => format!("{name} {err}"),
        (_, Reason::DirectMembers(err)) => format!("{name}: {err}"),
    }
}

/// The message of a 409.
fn conflict_message(conflict: Conflict) -> &'static str {
    match conflict {
        Conflict::MessageDeleted => "the message was deleted",
        Conflict::Archived => "the channel is archived: bring it back to change it",
        Conflict::NameTaken => "a channel of this name exists already",
        Conflict::LastOwner => {
            "the last owner cannot leave while other members stay: make someone else an owner first"
        }
    }
}

/// A failure of the store that is not a bug: answered 503, to be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// Connection refused, reset or timed out; the pool could not hand out
    /// a connection; the server is shutting down or refuses connections.
    Unreachable,
    /// The disk of the database is full.
    Full,
}

/// What kind of store fault, if any, `cause` (or one of its sources) is.
pub(crate) fn store_fault(cause: &anyhow::Error) -> Option<StoreFault> {
    use std::io::ErrorKind;
    cause.chain().find_map(|err| {
        if let Some(err) = err.downcast_ref::<sqlx::Error>() {
            return match err {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => Some(StoreFault::Unreachable),
                sqlx::Error::Database(db) => match db.code().as_deref() {
                    // PostgreSQL: connection exceptions, shutdown, too many
                    // connections, disk full.
                    Some(code)
                        if code.starts_with("08")
                            || matches!(code, "57P01" | "57P02" | "57P03" | "53300") =>
                    {
                        Some(StoreFault::Unreachable)
                    }
                    // PostgreSQL disk_full; SQLite SQLITE_FULL.
                    Some("53100" | "13") => Some(StoreFault::Full),
                    _ => None,
                },
                _ => None,
            };
        }
        let io = err.downcast_ref::<std::io::Error>()?;
        if io.kind() == ErrorKind::StorageFull {
            return Some(StoreFault::Full);
        }
        matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::TimedOut
                | ErrorKind::NotConnected
        )
        .then_some(StoreFault::Unreachable)
    })
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        Self::unauthenticated(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_cause();
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{
        AttachmentId, ChannelTextError, ClientMsgIdError, DirectMembersError, MessageBodyError,
        PresenceStatusError, SeqError, MAX_BODY_CHARS,
    };
    use uuid::Uuid;

    use super::*;

    /// Store failures that are outages are 503 `unavailable` with
    /// `Retry-After`, however deep in the cause; anything else stays 500.
    #[test]
    fn store_outages_are_503_and_other_failures_500() {
        use std::io::{Error as IoError, ErrorKind};
        let cases: Vec<(anyhow::Error, StatusCode, Option<&str>)> = vec![
            (
                sqlx::Error::PoolTimedOut.into(),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("unavailable"),
            ),
            (
                anyhow::Error::new(sqlx::Error::Io(IoError::from(ErrorKind::ConnectionRefused)))
                    .context("appending")
                    .context("sending"),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("unavailable"),
            ),
            (
                anyhow::Error::new(IoError::from(ErrorKind::ConnectionReset)).context("reading"),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("unavailable"),
            ),
            (
                anyhow::Error::new(IoError::from(ErrorKind::StorageFull)),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("full"),
            ),
            (
                anyhow::Error::new(IoError::from(ErrorKind::NotFound)),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
            (
                sqlx::Error::RowNotFound.into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
            (
                anyhow::anyhow!("a bug"),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
        ];
        for (cause, status, word) in cases {
            let shown = format!("{cause:#}");
            let api = ApiError::from(ChatError::Unexpected(cause));
            assert_eq!(api.status(), status, "{shown}");
            assert_eq!(api.retry_after.is_some(), word.is_some(), "{shown}");
            if let Some(word) = word {
                assert!(api.message.contains(word), "{shown}: {}", api.message);
            }
        }
    }

    /// Every typed cause the app raises today, with the exact code and
    /// message clients have always been given.
    #[test]
    fn each_typed_cause_keeps_its_wire_code_and_message() {
        let id =
            AttachmentId::from_uuid(Uuid::from_u128(0x0190_a0a0_a0a0_7a0a_8a0a_a0a0_a0a0_a0a0));
        let invalid = |field, reason: Reason| ChatError::Invalid { field, reason };
        #[rustfmt::skip]
        let cases: Vec<(ChatError, StatusCode, &str, String)> = vec![
            (ChatError::NotFound(Resource::Conversation), StatusCode::NOT_FOUND, "not_found", "conversation not found".into()),
            (ChatError::NotFound(Resource::Message), StatusCode::NOT_FOUND, "not_found", "message not found".into()),
            (ChatError::NotFound(Resource::Attachment(id)), StatusCode::NOT_FOUND, "not_found",
                format!("attachment_ids: {id} is not an upload of yours in this conversation")),
            (ChatError::Forbidden, StatusCode::FORBIDDEN, "forbidden", "not allowed to do this".into()),
            (invalid(Field::Limit, Reason::OutOfRange { min: 1, max: 200 }), StatusCode::BAD_REQUEST, "invalid_request",
                "limit must be between 1 and 200".into()),
            (invalid(Field::Patch, Reason::Empty), StatusCode::BAD_REQUEST, "invalid_request",
                "nothing to update: give the fields to change".into()),
            (invalid(Field::Body, Reason::Required), StatusCode::BAD_REQUEST, "invalid_request",
                "a message needs a body or an attachment".into()),
            (invalid(Field::AttachmentIds, Reason::AttachmentIds(AttachmentIdsError::TooMany(11))), StatusCode::BAD_REQUEST, "invalid_request",
                "attachment_ids: at most 10 attachments per message".into()),
            (invalid(Field::AttachmentIds, Reason::AttachmentIds(AttachmentIdsError::Repeated(id))), StatusCode::BAD_REQUEST, "invalid_request",
                format!("attachment_ids: {id} is given twice")),
            (invalid(Field::AttachmentIds, Reason::AlreadyAttached(id)), StatusCode::BAD_REQUEST, "invalid_request",
                format!("attachment_ids: {id} is already attached to a message")),
            (invalid(Field::ReplyTo, Reason::NotInConversation), StatusCode::BAD_REQUEST, "invalid_request",
                "reply_to must name a message of this conversation".into()),
            (invalid(Field::Users, Reason::TooMany { max: 200 }), StatusCode::BAD_REQUEST, "invalid_request",
                "at most 200 users per query".into()),
            (invalid(Field::Body, Reason::Body(MessageBodyError::Empty)), StatusCode::BAD_REQUEST, "invalid_request",
                "body: body must not be empty".into()),
            (invalid(Field::Body, Reason::Body(MessageBodyError::TooLong(4001))), StatusCode::BAD_REQUEST, "invalid_request",
                format!("body: body must be at most {MAX_BODY_CHARS} characters, got 4001")),
            (invalid(Field::ClientMsgId, Reason::ClientMsgId(ClientMsgIdError::Empty)), StatusCode::BAD_REQUEST, "invalid_request",
                "client_msg_id must not be empty".into()),
            (invalid(Field::UpTo, Reason::Seq(SeqError)), StatusCode::BAD_REQUEST, "invalid_request",
                format!("up_to_seq: a seq must be between 0 and {}", i64::MAX)),
            (invalid(Field::Status, Reason::Status(PresenceStatusError)), StatusCode::BAD_REQUEST, "invalid_request",
                "status must be one of online, away, busy".into()),
            (ChatError::Conflict(Conflict::MessageDeleted), StatusCode::CONFLICT, "conflict", "the message was deleted".into()),
            (ChatError::Conflict(Conflict::Archived), StatusCode::CONFLICT, "conflict", "the channel is archived: bring it back to change it".into()),
            (ChatError::Conflict(Conflict::NameTaken), StatusCode::CONFLICT, "conflict", "a channel of this name exists already".into()),
            (ChatError::Conflict(Conflict::LastOwner), StatusCode::CONFLICT, "conflict",
                "the last owner cannot leave while other members stay: make someone else an owner first".into()),
            (ChatError::NotFound(Resource::Member), StatusCode::NOT_FOUND, "not_found", "not a member of this conversation".into()),
            (invalid(Field::Name, Reason::ChannelText(ChannelTextError::TooLong { max: 80 })), StatusCode::BAD_REQUEST, "invalid_request",
                "name must be at most 80 characters".into()),
            (invalid(Field::UserIds, Reason::DirectMembers(DirectMembersError::Alone)), StatusCode::BAD_REQUEST, "invalid_request",
                "user_ids: name at least one other staff member".into()),
            (ChatError::Unexpected(anyhow::anyhow!("disk on fire")), StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into()),
        ];
        for (err, status, code, message) in cases {
            let label = format!("{err:?}");
            let api = ApiError::from(err);
            assert_eq!(api.status(), status, "{label}");
            assert_eq!(api.into_parts(), (code, message), "{label}");
        }
    }
}
