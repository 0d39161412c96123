//! Password rules (NIST SP 800-63B §5.1.1.2, SECURITY.md #15–#19) and Argon2id hashing that runs
//! off the async threads behind a concurrency limit.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization as _;

/// Longest password accepted, in bytes, checked before any hashing so a huge value costs nothing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .collect()
});

/// What a new password must satisfy.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Minimum length in characters after NFKC normalization (default 15).
    pub min_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_chars: 15 }
    }
}

/// Why a new password was refused. Each message is shown to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    /// Shorter than the policy's minimum.
    #[error("use at least {}", crate::plural::count(*.0 as u64, "character", "characters"))]
    TooShort(usize),
    /// Longer than [`MAX_PASSWORD_BYTES`].
    #[error("use at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// Found in a list of breached or common passwords.
    #[error("this password appears in lists of breached passwords; choose another")]
    Common,
    /// Built from the account's own email address or the service's name.
    #[error("do not base the password on your email address or the service's name")]
    Contextual,
}

impl PasswordPolicy {
    /// Checks a new password. No composition rules: length, the breach list and context only.
    ///
    /// # Errors
    /// The first rule the password breaks.
    pub fn check(&self, password: &str, email: &str) -> Result<(), PasswordRejected> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordRejected::TooLong);
        }
        let normalized = normalize(password);
        if normalized.chars().count() < self.min_chars {
            return Err(PasswordRejected::TooShort(self.min_chars));
        }
        let lowered = normalized.to_lowercase();
        if COMMON.contains(lowered.as_str()) {
            return Err(PasswordRejected::Common);
        }
        let local = email.split('@').next().unwrap_or_default();
        let stripped: String = lowered.chars().filter(|c| c.is_alphanumeric()).collect();
        let context = [local, email, "authx"];
        if context.iter().any(|w| {
            let w: String = w.chars().filter(|c| c.is_alphanumeric()).collect();
            !w.is_empty() && (stripped == w || stripped.trim_end_matches(char::is_numeric) == w)
        }) {
            return Err(PasswordRejected::Contextual);
        }
        Ok(())
    }
}

/// NFKC, as SP 800-63B asks, so that the same password typed on two keyboards hashes the same.
#[must_use]
pub fn normalize(password: &str) -> String {
    password.nfkc().collect()
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB (at least 19,456).
    pub memory_kib: u32,
    /// Passes (at least 2).
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot stayed busy for the whole wait: the server is saturated.
    #[error("password hashing is saturated")]
    Busy,
    /// Parameters or the stored hash are unusable.
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password matches; `needs_rehash` when the stored hash used other parameters.
    Match {
        /// Whether the stored hash should be replaced with one using the current parameters.
        needs_rehash: bool,
    },
    /// The password does not match.
    Mismatch,
}

/// Argon2id hashing on the blocking pool, at most `slots` at once, waiting at most `wait`.
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    slots: Arc<Semaphore>,
    wait: Duration,
    dummy: Arc<String>,
    arena: Arc<Arena>,
}

/// Argon2 working memory kept between hashes, at most one buffer per hashing slot. Without it
/// every hash allocates its 19 MiB afresh, and the allocator of each blocking thread keeps what
/// it freed: a sign-in flood then holds hundreds of MiB (BENCHMARKS.md). The buffer is fully
/// overwritten by each hash before it is read.
#[derive(Default)]
struct Arena {
    buffers: std::sync::Mutex<Vec<Vec<Block>>>,
    keep: usize,
    /// Buffers larger than this (from verifying an old, costlier hash) are not kept.
    max_blocks: usize,
}

impl Arena {
    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut buf = self
            .buffers
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_default();
        if buf.len() < blocks {
            buf.resize(blocks, Block::new());
        }
        let r = f(&mut buf[..blocks]);
        if buf.len() <= self.max_blocks {
            if let Ok(mut b) = self.buffers.lock() {
                if b.len() < self.keep {
                    b.push(buf);
                }
            }
        }
        r
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with the given parameters and concurrency.
    ///
    /// # Errors
    /// When the parameters are below the floor or invalid.
    pub fn new(params: HashParams, slots: usize, wait: Duration) -> Result<Self, HashError> {
        if params.memory_kib < 19_456 || params.iterations < 2 || params.parallelism < 1 {
            return Err(HashError::Internal(
                "argon2id parameters below m=19456 KiB, t=2, p=1".to_owned(),
            ));
        }
        let slots = slots.max(1);
        let arena = Arc::new(Arena {
            buffers: std::sync::Mutex::new(Vec::new()),
            keep: slots,
            max_blocks: argon_params(params)?.block_count(),
        });
        // A hash to verify against for unknown users, so their timing matches: verifying
        // computes Argon2id with the stored parameters and salt whatever the stored output is,
        // so random output bytes cost exactly what a real hash costs, and match no password.
        // Nothing is computed (or allocated) at start-up: an idle server holds no Argon2 buffer.
        let dummy = dummy_phc(params)?;
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(slots)),
            wait,
            dummy: Arc::new(dummy),
            arena,
        })
    }

    /// The parameters new hashes use.
    #[must_use]
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Hashes a password (NFKC-normalized) into a PHC string.
    ///
    /// # Errors
    /// [`HashError::Busy`] when no slot frees up in time.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = normalize(password);
        let params = self.params;
        let arena = Arc::clone(&self.arena);
        self.run(move || hash_blocking(params, &password, &arena))
            .await
    }

    /// Verifies a password against a PHC string. A stored value that is no usable Argon2id
    /// hash (the `!federated` marker, a damaged row) is a mismatch after the same work as a
    /// real verification.
    ///
    /// # Errors
    /// [`HashError::Busy`] when no slot frees up in time.
    pub async fn verify(&self, phc: &str, password: &str) -> Result<Verified, HashError> {
        if password.len() > MAX_PASSWORD_BYTES {
            // Still spend one verification so the answer takes as long as a real one.
            let _ = self.verify_dummy().await;
            return Ok(Verified::Mismatch);
        }
        let password = normalize(password);
        let phc = phc.to_owned();
        let current = self.params;
        let dummy = Arc::clone(&self.dummy);
        let arena = Arc::clone(&self.arena);
        self.run(move || verify_blocking(&phc, &password, current, &dummy, &arena))
            .await
    }

    /// Spends one verification on a throwaway hash: used for unknown accounts so that their
    /// response time matches a wrong password for a real account.
    ///
    /// # Errors
    /// [`HashError::Busy`] when no slot frees up in time.
    pub async fn verify_dummy(&self) -> Result<(), HashError> {
        let dummy = Arc::clone(&self.dummy);
        let current = self.params;
        let arena = Arc::clone(&self.arena);
        self.run(move || {
            verify_blocking(&dummy, "not the password", current, &dummy, &arena).map(|_| ())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let r = f();
            drop(permit);
            r
        })
        .await
        .map_err(|e| HashError::Internal(e.to_string()))?
    }
}

fn argon_params(p: HashParams) -> Result<Params, HashError> {
    Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| HashError::Internal(e.to_string()))
}

/// Argon2id of `password` with `salt` (raw bytes) and `params` into an output of `len` bytes,
/// in memory from the arena.
fn argon2id(
    params: &Params,
    password: &str,
    salt: &[u8],
    len: usize,
    arena: &Arena,
) -> Result<Output, HashError> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    arena
        .with(params.block_count(), |memory| {
            Output::init_with(len, |out| {
                argon
                    .hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
                    .map_err(Into::into)
            })
        })
        .map_err(|e| HashError::Internal(e.to_string()))
}

/// A PHC string with `params`, a random salt and a random output: the cost of a real hash to
/// verify, and no password's hash.
fn dummy_phc(params: HashParams) -> Result<String, HashError> {
    phc_string(params, |_, _| {
        Output::new(&crate::secret::random_bytes::<{ Params::DEFAULT_OUTPUT_LEN }>())
            .map_err(|e| HashError::Internal(e.to_string()))
    })
}

fn hash_blocking(params: HashParams, password: &str, arena: &Arena) -> Result<String, HashError> {
    phc_string(params, |params, salt| {
        let mut raw = [0u8; 64];
        let salt_bytes = salt
            .as_salt()
            .decode_b64(&mut raw)
            .map_err(|e| HashError::Internal(e.to_string()))?;
        argon2id(
            params,
            password,
            salt_bytes,
            Params::DEFAULT_OUTPUT_LEN,
            arena,
        )
    })
}

/// An Argon2id v19 PHC string with `params`, a fresh random salt, and the output `output`
/// makes from them.
fn phc_string(
    params: HashParams,
    output: impl FnOnce(&Params, &SaltString) -> Result<Output, HashError>,
) -> Result<String, HashError> {
    let params = argon_params(params)?;
    let salt = SaltString::encode_b64(&crate::secret::random_bytes::<16>())
        .map_err(|e| HashError::Internal(e.to_string()))?;
    let output = output(&params, &salt)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| HashError::Internal(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// The parts of a stored Argon2id v19 PHC string that verification needs.
struct StoredHash {
    params: Params,
    salt: Vec<u8>,
    expected: Output,
}

impl StoredHash {
    /// `None` for anything that is not a usable Argon2id v19 hash: a value that does not
    /// parse, another algorithm or version, or the `!federated` marker of accounts without a
    /// password.
    fn parse(phc: &str) -> Option<Self> {
        let parsed = PasswordHash::new(phc).ok()?;
        let version_ok = parsed
            .version
            .is_none_or(|v| v == u32::from(Version::V0x13));
        if parsed.algorithm != Algorithm::Argon2id.ident() || !version_ok {
            return None;
        }
        let (salt, expected) = (parsed.salt?, parsed.hash?);
        let params = Params::try_from(&parsed).ok()?;
        let mut raw = [0u8; 64];
        let salt = salt.decode_b64(&mut raw).ok()?.to_vec();
        Some(Self {
            params,
            salt,
            expected,
        })
    }
}

fn verify_blocking(
    phc: &str,
    password: &str,
    current: HashParams,
    dummy: &str,
    arena: &Arena,
) -> Result<Verified, HashError> {
    // A stored value that is no usable hash never matches, but it costs one verification of
    // the dummy hash all the same: an account without a password (federated-only) or with a
    // damaged row must answer as slowly as a wrong password (SECURITY.md #19).
    let (stored, usable) = match StoredHash::parse(phc) {
        Some(s) => (s, true),
        None => (
            StoredHash::parse(dummy)
                .ok_or_else(|| HashError::Internal("the dummy hash does not parse".to_owned()))?,
            false,
        ),
    };
    let Ok(computed) = argon2id(
        &stored.params,
        password,
        &stored.salt,
        stored.expected.len(),
        arena,
    ) else {
        return Ok(Verified::Mismatch);
    };
    if usable && bool::from(computed.as_bytes().ct_eq(stored.expected.as_bytes())) {
        let needs_rehash = stored.params.m_cost() != current.memory_kib
            || stored.params.t_cost() != current.iterations
            || stored.params.p_cost() != current.parallelism;
        Ok(Verified::Match { needs_rehash })
    } else {
        Ok(Verified::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(params: HashParams) -> PasswordHasher {
        PasswordHasher::new(params, 2, Duration::from_secs(30)).unwrap()
    }

    #[test]
    fn policy_rules() {
        let p = PasswordPolicy::default();
        let email = "kate@example.com";
        assert_eq!(
            p.check(&"x".repeat(14), email),
            Err(PasswordRejected::TooShort(15))
        );
        assert_eq!(p.check("correct horse battery staple", email), Ok(()));
        assert_eq!(p.check(&"é".repeat(64), email), Ok(()));
        assert_eq!(
            p.check(&"a".repeat(2000), email),
            Err(PasswordRejected::TooLong)
        );
        assert_eq!(
            p.check("1qaz2wsx3edc4rfv", email),
            Err(PasswordRejected::Common)
        );
        assert_eq!(
            p.check("123456789987654321", email),
            Err(PasswordRejected::Common)
        );
        assert_eq!(
            p.check("KATE@EXAMPLE.COM", email),
            Err(PasswordRejected::Contextual)
        );
        assert_eq!(
            p.check("kate@example.com2024", email),
            Err(PasswordRejected::Contextual)
        );
    }

    #[tokio::test]
    async fn hash_is_argon2id_phc_and_verifies_without_truncation() {
        let h = hasher(HashParams::default());
        let pw = format!("{}A", "p".repeat(99));
        let phc = h.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            h.verify(&phc, &pw).await.unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        let other = format!("{}B", "p".repeat(99));
        assert_eq!(h.verify(&phc, &other).await.unwrap(), Verified::Mismatch);
        assert_eq!(h.verify("garbage", &pw).await.unwrap(), Verified::Mismatch);
        h.verify_dummy().await.unwrap();
    }

    /// Issue 14 item 7: a stored value that is no hash (`!federated`, garbage, another
    /// algorithm) still runs one Argon2id computation, which takes a buffer from the arena.
    #[tokio::test]
    async fn unusable_stored_values_cost_a_full_verification() {
        for stored in [
            "!federated",
            "garbage",
            "",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        ] {
            let h = hasher(HashParams::default());
            assert_eq!(
                h.verify(stored, "a long enough password").await.unwrap(),
                Verified::Mismatch
            );
            assert_eq!(
                h.arena.buffers.lock().unwrap().len(),
                1,
                "no Argon2id computation for {stored:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_shape_and_cost_of_a_real_one() {
        let params = HashParams::default();
        let h = hasher(params);
        let real = h.hash("a long enough password").await.unwrap();
        let (dummy, real) = (
            PasswordHash::new(&h.dummy).unwrap(),
            PasswordHash::new(&real).unwrap(),
        );
        // Same algorithm, version, parameters and lengths: verifying costs the same.
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(
            dummy.salt.unwrap().as_str().len(),
            real.salt.unwrap().as_str().len()
        );
        assert_eq!(dummy.hash.unwrap().len(), real.hash.unwrap().len());
        assert_ne!(dummy.hash, real.hash);
        // And it is no password's hash.
        for pw in ["", "not the password", "a long enough password"] {
            assert_eq!(h.verify(&h.dummy, pw).await.unwrap(), Verified::Mismatch);
        }
        assert_ne!(hasher(params).dummy, h.dummy, "a fresh salt each start");
    }

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let h = hasher(HashParams::default());
        let params = argon_params(HashParams::default()).unwrap();
        let lib = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = lib
            .hash_password(b"a long enough password", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            h.verify(&theirs, "a long enough password").await.unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            h.verify(&theirs, "a long enough passworD").await.unwrap(),
            Verified::Mismatch
        );
        let ours = h.hash("a long enough password").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            lib.verify_password(b"a long enough password", &parsed)
                .is_ok()
        );
        assert!(
            lib.verify_password(b"a long enough passworD", &parsed)
                .is_err()
        );
        // Other Argon2 variants and versions are never accepted.
        let argon2i = ours.replacen("$argon2id$", "$argon2i$", 1);
        assert_eq!(
            h.verify(&argon2i, "a long enough password").await.unwrap(),
            Verified::Mismatch
        );
        let v16 = ours.replacen("$v=19$", "$v=16$", 1);
        assert_eq!(
            h.verify(&v16, "a long enough password").await.unwrap(),
            Verified::Mismatch
        );
        // The arena holds at most one buffer per slot.
        assert!(h.arena.buffers.lock().unwrap().len() <= 2);
    }

    #[tokio::test]
    async fn nfkc_makes_keyboards_agree() {
        let h = hasher(HashParams::default());
        let phc = h.hash("ｐａｓｓｗｏｒｄ-fullwidth-form").await.unwrap();
        assert_eq!(
            h.verify(&phc, "password-fullwidth-form").await.unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
    }

    #[tokio::test]
    async fn changed_parameters_ask_for_rehash() {
        let old = hasher(HashParams::default());
        let phc = old.hash("a long enough password").await.unwrap();
        let new = hasher(HashParams {
            memory_kib: 19_456,
            iterations: 3,
            parallelism: 1,
        });
        assert_eq!(
            new.verify(&phc, "a long enough password").await.unwrap(),
            Verified::Match { needs_rehash: true }
        );
    }

    #[test]
    fn weak_parameters_are_refused() {
        let weak = HashParams {
            memory_kib: 4096,
            iterations: 1,
            parallelism: 1,
        };
        assert!(PasswordHasher::new(weak, 1, Duration::from_secs(1)).is_err());
    }
}
