//! Presence: whether a user is connected and what status they show.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::principal::Sender;

/// What a user shows to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceStatus {
    /// Connected and available.
    Online,
    /// Connected, away from the keyboard.
    Away,
    /// Connected, not to be disturbed.
    Busy,
    /// No open connection.
    Offline,
}

impl PresenceStatus {
    /// The wire name: `online`, `away`, `busy` or `offline`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Busy => "busy",
            Self::Offline => "offline",
        }
    }

    /// The status a connected user may choose (`offline` is not a choice:
    /// it follows from closing the last connection).
    ///
    /// # Errors
    /// [`PresenceStatusError`] for anything but `online`, `away`, `busy`.
    pub fn parse_chosen(raw: &str) -> Result<Self, PresenceStatusError> {
        match raw {
            "online" => Ok(Self::Online),
            "away" => Ok(Self::Away),
            "busy" => Ok(Self::Busy),
            _ => Err(PresenceStatusError),
        }
    }
}

impl fmt::Display for PresenceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status other than the ones of [`PresenceStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("status must be one of online, away, busy")]
pub struct PresenceStatusError;

impl FromStr for PresenceStatus {
    type Err = PresenceStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "offline" => Ok(Self::Offline),
            other => Self::parse_chosen(other),
        }
    }
}

/// One user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// Who.
    pub user: Sender,
    /// Their status; [`PresenceStatus::Offline`] without a connection.
    pub status: PresenceStatus,
    /// When their last connection closed (`None` while connected, or if
    /// never seen).
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_statuses_exclude_offline() {
        let cases = [
            ("online", Ok(PresenceStatus::Online)),
            ("away", Ok(PresenceStatus::Away)),
            ("busy", Ok(PresenceStatus::Busy)),
            ("offline", Err(PresenceStatusError)),
            ("invisible", Err(PresenceStatusError)),
            ("", Err(PresenceStatusError)),
        ];
        for (raw, expected) in cases {
            assert_eq!(PresenceStatus::parse_chosen(raw), expected, "{raw:?}");
        }
        assert_eq!("offline".parse(), Ok(PresenceStatus::Offline));
    }
}
