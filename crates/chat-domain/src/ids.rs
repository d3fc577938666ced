//! Identifier newtypes: one type per kind of id, so a customer id can never be
//! passed where a conversation id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The text given for an identifier is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} (expected a UUID)")]
pub struct IdParseError {
    /// Which identifier was being parsed, e.g. `conversation id`.
    pub kind: &'static str,
    /// The rejected input, truncated to 64 characters.
    pub value: String,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $gen:ident, $ctor:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// A fresh identifier (random, or time-ordered UUIDv7 where noted).
            pub fn $gen() -> Self {
                Self(Uuid::$ctor())
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Parses the hyphenated (or simple) UUID text form.
            ///
            /// # Errors
            /// [`IdParseError`] when `raw` is not a UUID.
            pub fn parse(raw: &str) -> Result<Self, IdParseError> {
                Uuid::parse_str(raw.trim()).map(Self).map_err(|_| IdParseError {
                    kind: $kind,
                    value: raw.chars().take(64).collect(),
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

id_type!(
    /// The tenant (pharmacy, clinic or hospital location) that scopes all data.
    TenantId, "tenant id", new_v4, new_v4
);
id_type!(
    /// A staff member's user id, as issued by the host backend.
    StaffUserId, "staff user id", new_v4, new_v4
);
id_type!(
    /// A customer or patient id, as known to the host backend.
    CustomerId, "customer id", new_v4, new_v4
);
id_type!(
    /// A conversation.
    ConversationId, "conversation id", new_v7, now_v7
);
id_type!(
    /// A message (UUIDv7, so ids sort by creation time).
    MessageId, "message id", new_v7, now_v7
);
id_type!(
    /// An uploaded attachment.
    AttachmentId, "attachment id", new_v7, now_v7
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = ConversationId::new_v7();
        assert_eq!(id.to_string().parse::<ConversationId>(), Ok(id));
    }

    #[test]
    fn a_non_uuid_is_rejected_with_its_kind() {
        let err = CustomerId::parse("../etc/passwd").unwrap_err();
        assert_eq!(err.kind, "customer id");
        assert!(err.to_string().contains("not a valid customer id"));
    }

    #[test]
    fn a_long_rejected_value_is_truncated() {
        let err = TenantId::parse(&"x".repeat(10_000)).unwrap_err();
        assert_eq!(err.value.len(), 64);
    }
}
