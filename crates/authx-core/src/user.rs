//! Accounts and the canonical form of their identifiers.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

use crate::Timestamp;

/// A user's stable identifier (the `sub` of tokens issued for them): 22 base64url characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    /// A fresh random identifier.
    #[must_use]
    pub fn generate() -> Self {
        Self(crate::secret::random_id())
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `password_hash` of a user copied beside its sessions ([`crate::store::UserCopy::Kept`])
/// when the account has a password: the hash itself is not copied. It reads as a password
/// being set (it starts with `$`) and verifies no password.
pub const PASSWORD_NOT_KEPT: &str = "$not-kept";

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// The account may sign in.
    Active,
    /// An administrator disabled the account; every path that yields a session or token refuses it.
    Disabled,
}

impl UserStatus {
    /// The storage form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the storage form.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// An account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable identifier.
    pub id: UserId,
    /// Canonical email address (see [`canonical_email`]).
    pub email: String,
    /// Argon2id PHC string; never serialized to clients.
    #[serde(skip_serializing, default)]
    pub password_hash: String,
    /// Whether the account may sign in.
    pub status: UserStatus,
    /// Administrators may manage users and clients.
    pub is_admin: bool,
    /// When the account was created.
    pub created_at: Timestamp,
    /// When the password was last set.
    pub password_changed_at: Timestamp,
    /// Whether the owner proved control of `email` (a verification link, or an upstream
    /// provider that verified it). Accounts from before verification existed start `false`.
    #[serde(default)]
    pub email_verified: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("is_admin", &self.is_admin)
            .field("email_verified", &self.email_verified)
            .finish_non_exhaustive()
    }
}

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// Not a usable email address.
    #[error("enter a valid email address")]
    Invalid,
}

/// Longest accepted email address in bytes (RFC 5321 §4.5.3.1.3 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// Canonicalizes an email address for registration and sign-in alike, in the spirit of the
/// PRECIS UsernameCaseMapped profile (RFC 8265 §3.3): surrounding white space is removed, the
/// value is NFKC-normalized (fullwidth letters, the Kelvin sign and decomposed accents fold to one
/// form) and lower-cased; control, format (zero-width) and space characters are refused.
///
/// # Errors
/// [`IdentifierError::Invalid`] when the value is not a plausible address.
pub fn canonical_email(raw: &str) -> Result<String, IdentifierError> {
    if raw.len() > 4 * MAX_EMAIL_LEN {
        return Err(IdentifierError::Invalid);
    }
    let folded: String = raw
        .trim()
        .nfkc()
        .flat_map(char::to_lowercase)
        .nfc()
        .collect();
    if folded.is_empty() || folded.len() > MAX_EMAIL_LEN {
        return Err(IdentifierError::Invalid);
    }
    if folded
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || is_format_char(c))
    {
        return Err(IdentifierError::Invalid);
    }
    let (local, domain) = folded.rsplit_once('@').ok_or(IdentifierError::Invalid)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || domain.contains('@')
        || domain.contains(['<', '>', '"', '\'', '(', ')', ',', ';', '\\', '[', ']'])
        || local.contains(['<', '>', '"', '\'', '(', ')', ',', ';', '\\', '[', ']'])
    {
        return Err(IdentifierError::Invalid);
    }
    Ok(folded)
}

/// Unicode "format" characters (Cf) that render invisibly and so invite look-alike accounts.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_fold_to_one_account() {
        let plain = canonical_email("kate@example.com").unwrap();
        for variant in [
            "Kate@Example.COM",
            "  kate@example.com ",
            "\u{212A}ate@example.com",                      // Kelvin sign
            "\u{FF4B}\u{FF41}\u{FF54}\u{FF45}@example.com", // fullwidth
        ] {
            assert_eq!(canonical_email(variant).unwrap(), plain, "{variant}");
        }
        assert_eq!(
            canonical_email("re\u{0301}my@example.com").unwrap(),
            canonical_email("r\u{00E9}my@example.com").unwrap()
        );
    }

    #[test]
    fn hostile_identifiers_are_refused() {
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a\u{200B}@example.com",
            "a\r\nFAKE@example.com",
            "a\0@example.com",
            "a@example..com",
            &format!("{}@example.com", "a".repeat(300)),
        ] {
            assert_eq!(
                canonical_email(bad),
                Err(IdentifierError::Invalid),
                "{bad:?}"
            );
        }
    }
}
