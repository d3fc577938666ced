//! Uploading and downloading attachments.
//!
//! Uploads are `multipart/form-data` with one `file` field, read as they
//! arrive and handed to the use case as a stream: the request body is never
//! collected in memory, a declared `Content-Length` past the limit is
//! refused before reading, and the running count refuses the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_app::{AttachmentError, ChatError, Download};
use chat_domain::{AttachmentId, ConversationId};
use futures::StreamExt as _;

use crate::dto::AttachmentDto;
use crate::error::ApiError;
use crate::extract::{Caller, PathId};
use crate::state::AppState;

/// Room for the multipart framing, headers and any small extra field around
/// the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Downloads may not run, embed or be framed anything.
const DOWNLOAD_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations/{id}/attachments", post(upload))
        .route("/attachments/{id}", get(download))
}

impl From<AttachmentError> for ApiError {
    fn from(err: AttachmentError) -> Self {
        match err {
            AttachmentError::NotFound => Self::not_found("not found"),
            AttachmentError::Forbidden => Self::forbidden(),
            AttachmentError::Empty => Self::invalid("file: the file is empty"),
            AttachmentError::TooLarge { max_bytes } => {
                Self::payload_too_large(format!("file: larger than {max_bytes} bytes"))
            }
            AttachmentError::UnsupportedType(reason) => {
                Self::unsupported_media_type(format!("file: {reason}"))
            }
            AttachmentError::Infected(_) => Self::infected(),
            AttachmentError::Interrupted(_) => Self::invalid("file: the upload was interrupted"),
            AttachmentError::Invalid { field, reason } => {
                ChatError::Invalid { field, reason }.into()
            }
            AttachmentError::Conflict(conflict) => ChatError::Conflict(conflict).into(),
            AttachmentError::ScannerUnavailable(cause) => Self::unavailable(cause),
            AttachmentError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

async fn upload(
    State(state): State<AppState>,
    Caller(principal): Caller,
    PathId(id): PathId<ConversationId>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AttachmentDto>), ApiError> {
    let max_bytes = state.attachments.settings().max_bytes;
    let cap = max_bytes.saturating_add(MULTIPART_OVERHEAD);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap) {
        return Err(ApiError::payload_too_large(format!(
            "file: larger than {max_bytes} bytes"
        )));
    }
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| {
            ApiError::unsupported_media_type(
                "expected `Content-Type: multipart/form-data` with a `file` field",
            )
        })?;

    // The whole request is counted too, so a huge preamble or extra fields
    // cannot get round the limit.
    let received = Arc::new(AtomicU64::new(0));
    let over_cap = Arc::new(AtomicBool::new(false));
    let (count, flag) = (received.clone(), over_cap.clone());
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let total = count.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if total > cap {
            flag.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(
                "request body passed the upload limit",
            ));
        }
        Ok(chunk)
    });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let too_large = || ApiError::payload_too_large(format!("file: larger than {max_bytes} bytes"));
    let field = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => break field,
            // Other fields are not ours; multer skips their content.
            Ok(Some(_)) => {}
            Ok(None) => return Err(ApiError::invalid("multipart field `file` is missing")),
            Err(_) if over_cap.load(Ordering::Relaxed) => return Err(too_large()),
            Err(err) => {
                return Err(ApiError::invalid(format!(
                    "malformed multipart body: {err}"
                )))
            }
        }
    };
    let file_name = field.file_name().map(str::to_owned);
    let content = field
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed();
    let result = state
        .attachments
        .upload(&principal, id, file_name.as_deref(), content)
        .await;
    match result {
        Ok(attachment) => Ok((StatusCode::CREATED, Json(attachment.into()))),
        Err(AttachmentError::Interrupted(_)) if over_cap.load(Ordering::Relaxed) => {
            Err(too_large())
        }
        Err(err) => Err(err.into()),
    }
}

async fn download(
    State(state): State<AppState>,
    Caller(principal): Caller,
    PathId(id): PathId<AttachmentId>,
) -> Result<Response, ApiError> {
    let download = state.attachments.download(&principal, id).await?;
    let mut response = match download {
        Download::Redirect { url, .. } => {
            let location = HeaderValue::from_str(&url).map_err(|err| {
                ApiError::internal(anyhow::Error::new(err).context("signed URL is not a header"))
            })?;
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Download::Stream { attachment, body } => {
            let disposition = HeaderValue::from_str(&attachment.name.content_disposition())
                .map_err(|err| {
                    ApiError::internal(
                        anyhow::Error::new(err).context("content disposition is not a header"),
                    )
                })?;
            let mut response = Body::from_stream(body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(attachment.media_type.mime()),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(attachment.size));
            headers.insert(header::CONTENT_DISPOSITION, disposition);
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOWNLOAD_CSP),
            );
            response
        }
    };
    // Health data: never in a shared cache, and a redirect is single-use.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}
