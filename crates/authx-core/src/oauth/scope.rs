//! Scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens of printable ASCII.

use std::collections::BTreeSet;

/// Longest scope parameter accepted (SECURITY.md #68).
pub const MAX_SCOPE_LEN: usize = 1024;

/// A set of scope tokens, kept sorted for a stable string form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a scope parameter. `None` for characters outside RFC 6749's NQCHAR or an
    /// oversized value; an empty or absent value is an empty set.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > MAX_SCOPE_LEN {
            return None;
        }
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return None;
            }
            set.insert(token.to_owned());
        }
        Some(Self(set))
    }

    /// A set from a list.
    pub fn from_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        Self(items.into_iter().map(str::to_owned).collect())
    }

    /// Whether `scope` is in the set.
    #[must_use]
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether every scope of `self` is in `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The scopes in both sets.
    #[must_use]
    pub fn intersect(&self, other: &Self) -> Self {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// The scopes of `self` that are not in `other`.
    #[must_use]
    pub fn minus(&self, other: &Self) -> Self {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The space-delimited form.
    #[must_use]
    pub fn to_param(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_set_algebra() {
        let s = Scopes::parse("openid  profile openid email").unwrap();
        assert_eq!(s.to_param(), "email openid profile");
        assert!(Scopes::parse("a\"b").is_none());
        assert!(Scopes::parse("a\\b").is_none());
        assert!(Scopes::parse("é").is_none());
        assert!(Scopes::parse("a\r\nb").is_none());
        assert!(Scopes::parse(&"a".repeat(2000)).is_none());
        assert!(Scopes::parse("").unwrap().is_empty());
        let allowed = Scopes::parse("openid email").unwrap();
        assert_eq!(s.intersect(&allowed).to_param(), "email openid");
        assert_eq!(s.minus(&allowed).to_param(), "profile");
        assert!(allowed.is_subset(&s));
    }
}
