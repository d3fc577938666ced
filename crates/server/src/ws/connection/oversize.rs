//! Frames above the size limit, as tungstenite reports them.
//!
//! The configured limit is enforced by the connection on every text frame
//! it reads whole. tungstenite only cuts off frames far above it (the hard
//! limit set at the upgrade).

/// Whether a read failed because the client sent more than the socket
/// takes.
pub(super) fn is_too_large(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Message too big")
        || text.contains("frame too big")
}
