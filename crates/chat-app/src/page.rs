//! [`PageLimit`]: the validated page size every list takes.

use crate::error::{ChatError, Field, Reason};

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
    /// [`ChatError::Invalid`] about [`Field::Limit`] outside that range.
    ///
    /// ```
    /// use chat_app::{ChatError, Field, PageLimit, Reason};
    ///
    /// assert_eq!(PageLimit::parse(20).unwrap().get(), 20);
    /// assert!(matches!(
    ///     PageLimit::parse(0),
    ///     Err(ChatError::Invalid { field: Field::Limit, reason: Reason::OutOfRange { min: 1, max: 200 } })
    /// ));
    /// ```
    pub fn parse(raw: u32) -> Result<Self, ChatError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ChatError::invalid(
                Field::Limit,
                Reason::OutOfRange {
                    min: 1,
                    max: u64::from(Self::MAX),
                },
            ))
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

    fn between_1_and_200() -> Reason {
        Reason::OutOfRange { min: 1, max: 200 }
    }

    #[test]
    fn page_limit_accepts_one_and_the_maximum() {
        assert_eq!(PageLimit::parse(1).unwrap().get(), 1);
        assert_eq!(PageLimit::parse(200).unwrap().get(), 200);
        assert_eq!(PageLimit::MAX, 200);
    }

    #[test]
    fn page_limit_of_zero_is_invalid() {
        assert_invalid(
            &PageLimit::parse(0).unwrap_err(),
            Field::Limit,
            between_1_and_200(),
        );
    }

    #[test]
    fn page_limit_above_the_maximum_is_invalid() {
        assert_invalid(
            &PageLimit::parse(201).unwrap_err(),
            Field::Limit,
            between_1_and_200(),
        );
        assert_invalid(
            &PageLimit::parse(u32::MAX).unwrap_err(),
            Field::Limit,
            between_1_and_200(),
        );
    }

    #[test]
    fn page_limit_defaults_to_fifty() {
        assert_eq!(PageLimit::default(), PageLimit::DEFAULT);
        assert_eq!(PageLimit::default().get(), 50);
    }
}
