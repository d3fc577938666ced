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
    /// it follows from closing the last connection). Same as
    /// [`ChosenStatus::parse`].
    ///
    /// # Errors
    /// [`PresenceStatusError`] for anything but `online`, `away`, `busy`.
    pub fn parse_chosen(raw: &str) -> Result<ChosenStatus, PresenceStatusError> {
        ChosenStatus::parse(raw)
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
            other => ChosenStatus::parse(other).map(Self::from),
        }
    }
}

/// A status a connected user chooses to show: any [`PresenceStatus`] but
/// [`PresenceStatus::Offline`], which follows from closing the last
/// connection and is never chosen.
///
/// ```
/// use chat_domain::{ChosenStatus, PresenceStatus};
///
/// assert_eq!(ChosenStatus::parse("away"), Ok(ChosenStatus::Away));
/// assert_eq!(PresenceStatus::from(ChosenStatus::Busy), PresenceStatus::Busy);
/// assert!(ChosenStatus::try_from(PresenceStatus::Offline).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChosenStatus {
    /// Available.
    Online,
    /// Away from the keyboard.
    Away,
    /// Not to be disturbed.
    Busy,
}

impl ChosenStatus {
    /// Parses a chosen status from its wire name.
    ///
    /// # Errors
    /// [`PresenceStatusError`] for anything but `online`, `away`, `busy`.
    pub fn parse(raw: &str) -> Result<Self, PresenceStatusError> {
        match raw {
            "online" => Ok(Self::Online),
            "away" => Ok(Self::Away),
            "busy" => Ok(Self::Busy),
            _ => Err(PresenceStatusError),
        }
    }

    /// The wire name: `online`, `away` or `busy`.
    pub const fn as_str(&self) -> &'static str {
        PresenceStatus::from_chosen(*self).as_str()
    }
}

impl PresenceStatus {
    /// The status a connected user shows when they chose `chosen`.
    pub const fn from_chosen(chosen: ChosenStatus) -> Self {
        match chosen {
            ChosenStatus::Online => Self::Online,
            ChosenStatus::Away => Self::Away,
            ChosenStatus::Busy => Self::Busy,
        }
    }
}

impl From<ChosenStatus> for PresenceStatus {
    fn from(chosen: ChosenStatus) -> Self {
        Self::from_chosen(chosen)
    }
}

impl TryFrom<PresenceStatus> for ChosenStatus {
    type Error = PresenceStatusError;

    fn try_from(status: PresenceStatus) -> Result<Self, Self::Error> {
        match status {
            PresenceStatus::Online => Ok(Self::Online),
            PresenceStatus::Away => Ok(Self::Away),
            PresenceStatus::Busy => Ok(Self::Busy),
            PresenceStatus::Offline => Err(PresenceStatusError),
        }
    }
}

impl fmt::Display for ChosenStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
            ("online", Ok(ChosenStatus::Online)),
            ("away", Ok(ChosenStatus::Away)),
            ("busy", Ok(ChosenStatus::Busy)),
            ("offline", Err(PresenceStatusError)),
            ("invisible", Err(PresenceStatusError)),
            ("", Err(PresenceStatusError)),
        ];
        for (raw, expected) in cases {
            assert_eq!(PresenceStatus::parse_chosen(raw), expected, "{raw:?}");
            assert_eq!(ChosenStatus::parse(raw), expected, "{raw:?}");
        }
        assert_eq!("offline".parse(), Ok(PresenceStatus::Offline));
    }

    #[test]
    fn a_chosen_status_is_any_status_but_offline() {
        let cases = [
            (PresenceStatus::Online, Ok(ChosenStatus::Online)),
            (PresenceStatus::Away, Ok(ChosenStatus::Away)),
            (PresenceStatus::Busy, Ok(ChosenStatus::Busy)),
            (PresenceStatus::Offline, Err(PresenceStatusError)),
        ];
        for (status, expected) in cases {
            assert_eq!(ChosenStatus::try_from(status), expected, "{status}");
            if let Ok(chosen) = expected {
                assert_eq!(PresenceStatus::from(chosen), status, "{status}");
                assert_eq!(chosen.as_str(), status.as_str(), "{status}");
                assert_eq!(chosen.to_string().parse(), Ok(status), "{status}");
            }
        }
    }
}
