//! Frames above the size limit: told apart from other read errors by the
//! type of the error, never by its wording.
//!
//! The configured limit is enforced by the connection on every text frame
//! it reads whole. tungstenite only cuts off frames far above it (the hard
//! limit set at the upgrade), with a capacity error.

use std::error::Error as _;

use tungstenite::error::ProtocolError;

/// Whether a read failed because the client sent more than the socket
/// takes: a message or frame above the hard limit, or a control frame
/// above the 125 bytes the protocol allows.
pub(super) fn is_too_large(err: &axum::Error) -> bool {
    let mut cause = err.source();
    while let Some(err) = cause {
        if let Some(err) = err.downcast_ref::<tungstenite::Error>() {
            return matches!(
                err,
                tungstenite::Error::Capacity(_)
                    | tungstenite::Error::Protocol(ProtocolError::ControlFrameTooBig)
            );
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use tungstenite::error::CapacityError;

    use super::*;

    #[test]
    fn capacity_errors_are_too_large_and_other_errors_are_not() {
        let too_long = tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 300_000,
            max_size: 262_144,
        });
        let cases = [
            (axum::Error::new(too_long), true),
            (
                axum::Error::new(tungstenite::Error::Protocol(
                    ProtocolError::ControlFrameTooBig,
                )),
                true,
            ),
            (
                axum::Error::new(tungstenite::Error::Protocol(
                    ProtocolError::ResetWithoutClosingHandshake,
                )),
                false,
            ),
            (
                axum::Error::new(tungstenite::Error::ConnectionClosed),
                false,
            ),
            (
                axum::Error::new(std::io::Error::other("message too long")),
                false,
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(is_too_large(&err), expected, "{err}");
        }
    }
}
