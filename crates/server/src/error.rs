//! The one HTTP error type: every failure becomes
//! `{"error": {"code": "...", "message": "..."}}` with the status of API.md.
//! Server-side failures are logged with their cause and answered with a
//! generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chat_app::ChatError;
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
        if let Some(cause) = &self.cause {
            tracing::error!(code = self.code, error = ?cause, "request failed");
        }
        (self.code, self.message)
    }
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        match err {
            ChatError::NotFound => Self::not_found("conversation not found"),
            ChatError::MessageNotFound => Self::not_found("message not found"),
            ChatError::AttachmentNotFound(attachment) => Self::not_found(format!(
                "attachment_ids: {attachment} is not an upload of yours in this conversation"
            )),
            ChatError::Forbidden => Self::forbidden(),
            ChatError::Invalid(message) => Self::invalid(message),
            ChatError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ChatError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        Self::unauthenticated(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(code = self.code, error = ?cause, "request failed");
        }
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
