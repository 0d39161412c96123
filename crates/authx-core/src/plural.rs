//! Counted nouns in messages people read ("1 minute", "2 minutes"), so no message says
//! "1 minutes".

use std::fmt::Display;

/// `n` followed by `one` when `n` is exactly 1, else by `many` (English: 0 and every other
/// number take the plural).
///
/// ```
/// use authx_core::plural::count;
///
/// assert_eq!(count(1, "minute", "minutes"), "1 minute");
/// assert_eq!(count(10_u64, "minute", "minutes"), "10 minutes");
/// ```
#[must_use]
pub fn count<N>(n: N, one: &str, many: &str) -> String
where
    N: Copy + Display + Into<i128>,
{
    let noun = if n.into() == 1 { one } else { many };
    format!("{n} {noun}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_everything_else_plural() {
        assert_eq!(count(1_u64, "minute", "minutes"), "1 minute");
        assert_eq!(count(1_i64, "second", "seconds"), "1 second");
        assert_eq!(count(0_u32, "second", "seconds"), "0 seconds");
        assert_eq!(
            count(2_usize as u64, "character", "characters"),
            "2 characters"
        );
        assert_eq!(count(-1_i64, "second", "seconds"), "-1 seconds");
        assert_eq!(
            count(u64::MAX, "code", "codes"),
            format!("{} codes", u64::MAX)
        );
        assert_eq!(count(11_u8, "migration", "migrations"), "11 migrations");
    }
}
