//! A DPoP client's key (RFC 9449): makes the proofs that tests send, well-formed or hostile.

use authx_core::oauth::dpop::{Jkt, access_token_hash, thumbprint};
use authx_core::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
use std::sync::Arc;

use authx_core::ManualClock;
use authx_core::clock::{Clock, SystemClock};
use serde_json::{Value, json};

/// A key pair a test client proves possession of, and the clock its proofs are dated by.
pub struct DpopKey {
    signer: Arc<Signer>,
    clock: Arc<dyn Clock>,
}

impl DpopKey {
    /// A new key for `alg`.
    ///
    /// # Panics
    /// If the key cannot be made (a test cannot go on then).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new(alg: SigningAlg) -> Self {
        // The signing-key generator of authx seals keys; this one is unsealed at once.
        let enc = KeyEncryptor::new(&[9u8; 32]).expect("encryptor");
        let k = generate(alg, &enc, authx_core::Timestamp(0)).expect("key");
        let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).expect("open");
        Self {
            signer: Arc::new(Signer::from_pkcs8(alg, &k.kid, &pkcs8).expect("signer")),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same key, dating its proofs by `clock` (a test server's, whose time stands still
    /// unless the test moves it).
    #[must_use]
    pub fn on(&self, clock: &ManualClock) -> Self {
        Self {
            signer: Arc::clone(&self.signer),
            clock: Arc::new(clock.clone()),
        }
    }

    /// An ES256 key.
    #[must_use]
    pub fn es256() -> Self {
        Self::new(SigningAlg::Es256)
    }

    /// The public JWK, as a proof's header carries it.
    #[must_use]
    pub fn public_jwk(&self) -> Value {
        self.signer.public_jwk()
    }

    /// The key's thumbprint (`jkt`).
    ///
    /// # Panics
    /// Never for a key made here.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn jkt(&self) -> Jkt {
        thumbprint(&self.public_jwk()).expect("thumbprint")
    }

    /// The proof header of this key: `typ`, `alg` and the public `jwk`.
    #[must_use]
    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.signer.alg().as_str(), "jwk": self.public_jwk()})
    }

    /// The claims of a fresh proof for `method` and `url` (a new `jti`, `iat` now), with `ath`
    /// when an access token goes with it and `nonce` when given.
    #[must_use]
    pub fn claims(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Value {
        let now = self.clock.now().secs();
        let mut c = json!({
            "jti": authx_core::secret::random_id(),
            "htm": method,
            "htu": url,
            "iat": now,
        });
        if let Some(t) = access_token {
            c["ath"] = json!(access_token_hash(t));
        }
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        c
    }

    /// A fresh proof for `method` and `url`, for `access_token` if given.
    #[must_use]
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        self.sign(
            &self.header(),
            &self.claims(method, url, access_token, None),
        )
    }

    /// As [`DpopKey::proof`], with a server nonce.
    #[must_use]
    pub fn proof_with_nonce(&self, method: &str, url: &str, nonce: &str) -> String {
        self.sign(&self.header(), &self.claims(method, url, None, Some(nonce)))
    }

    /// `header` and `claims` as a compact JWS signed by this key, whatever they say.
    ///
    /// # Panics
    /// If signing fails.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let b64 = |v: &Value| authx_core::secret::b64url(v.to_string().as_bytes());
        let input = format!("{}.{}", b64(header), b64(claims));
        let sig = self.signer.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", authx_core::secret::b64url(&sig))
    }
}
