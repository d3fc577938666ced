//! [`PageLimit`]: the validated page size every list takes.

use crate::error::ChatError;

/// A validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// The largest page.
    pub const MAX: u32 = 200;
    /// The page size when none is given.
    pub const DEFAULT: Self = Self(50);

    /// Validates a page size (1..=[`PageLimit::MAX`]).
    ///
    /// # Errors
    /// [`ChatError::Invalid`] outside that range.
    pub fn parse(raw: u32) -> Result<Self, ChatError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ChatError::Invalid(format!(
                "limit must be between 1 and {}",
                Self::MAX
            )))
        }
    }

    /// The size.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_invalid;

    #[test]
    fn page_limit_accepts_one_and_the_maximum() {
        assert_eq!(PageLimit::parse(1).unwrap().get(), 1);
        assert_eq!(PageLimit::parse(200).unwrap().get(), 200);
        assert_eq!(PageLimit::MAX, 200);
    }

    #[test]
    fn page_limit_of_zero_is_invalid() {
        assert_invalid(&PageLimit::parse(0).unwrap_err(), "between 1 and 200");
    }

    #[test]
    fn page_limit_above_the_maximum_is_invalid() {
        assert_invalid(&PageLimit::parse(201).unwrap_err(), "between 1 and 200");
        assert_invalid(
            &PageLimit::parse(u32::MAX).unwrap_err(),
            "between 1 and 200",
        );
    }

    #[test]
    fn page_limit_defaults_to_fifty() {
        assert_eq!(PageLimit::default(), PageLimit::DEFAULT);
        assert_eq!(PageLimit::default().get(), 50);
    }
}
