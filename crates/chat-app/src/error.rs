//! The error every use case of [`crate::ChatService`] returns.

use chat_domain::Denied;

use crate::ports::RepoError;

/// Why a use case failed. Each variant maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The conversation does not exist for this caller (missing, another
    /// tenant's, or not readable by them: existence is not leaked).
    #[error("not found")]
    NotFound,
    /// The conversation is readable but the message named is not one of
    /// its messages.
    #[error("message not found")]
    MessageNotFound,
    /// An attachment named is not an upload of the caller in this
    /// conversation (another conversation's, tenant's or uploader's,
    /// swept, or deleted with its message).
    #[error("attachment {0} not found")]
    AttachmentNotFound(chat_domain::AttachmentId),
    /// The caller may see the object but not do this.
    #[error("forbidden")]
    Forbidden,
    /// The request is malformed; the message says which field and why.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request conflicts with the object's state (e.g. editing a
    /// deleted message).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A store or other port failed; the cause is for logs, not for callers.
    #[error("unexpected failure")]
    Unexpected(#[source] anyhow::Error),
}

impl From<Denied> for ChatError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::NotFound => Self::NotFound,
            Denied::Forbidden => Self::Forbidden,
        }
    }
}

impl From<RepoError> for ChatError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unexpected(err) => Self::Unexpected(err),
        }
    }
}
