//! The SAML service provider at start: our SP key pair (from the store, sealed under the
//! key-encryption key, created on the first start with SAML on) and the IdP metadata of
//! providers configured by `metadata_url`, fetched once and pinned for the life of the process.
//!
//! # Security
//! - One key pair per deployment, shared by every instance through the store; the private key
//!   is never stored in the clear nor logged ([`authx_core::federation::sp_key`]).
//! - Metadata is fetched only from `https://` (or loopback http with the provider's
//!   `insecure_allow_http_loopback`), without following redirects, with timeouts and a size
//!   cap (SECURITY.md #65). Its certificates are pinned from that first fetch: a later change at
//!   the IdP is seen only after a restart.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use authx_core::Clock;
use authx_core::federation::{DEPLOYMENT_SP_KEY, GeneratedSpKey, SpKeyStore, ensure_sp_key};
use authx_core::oauth::keys::KeyEncryptor;
use authx_saml::{DecryptionKey, Limits, SpKeyPair, SpSigningKey};

use crate::config::{Config, SamlProvider, outbound_url_allowed};

/// Time to establish a connection to a metadata URL.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the whole metadata fetch.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Our SP key pair, ready to sign and decrypt.
pub struct SpKeys {
    pair: SpKeyPair,
    signing: SpSigningKey,
    decryption: [DecryptionKey; 1],
}

impl std::fmt::Debug for SpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpKeys([redacted])")
    }
}

impl SpKeys {
    /// The self-signed certificate (DER) our metadata publishes.
    #[must_use]
    pub fn certificate_der(&self) -> &[u8] {
        self.pair.certificate_der()
    }

    /// The AuthnRequest signing key.
    #[must_use]
    pub fn signing_key(&self) -> &SpSigningKey {
        &self.signing
    }

    /// The keys encrypted assertions are decrypted with.
    #[must_use]
    pub fn decryption_keys(&self) -> &[DecryptionKey] {
        &self.decryption
    }
}

/// The deployment's SP key pair, when SAML providers are configured: the stored one, or a new
/// one stored if still absent (the first instance to start creates it, recorded as a
/// `saml_sp_key_created` audit event with the certificate's SHA-256 fingerprint; every instance
/// uses the stored row).
///
/// # Errors
/// The store fails, the key-encryption key does not open the stored key, or generation fails.
pub async fn sp_keys(
    config: &Config,
    store: &dyn SpKeyStore,
    clock: &dyn Clock,
    audit: &authx_core::audit::Audit,
) -> anyhow::Result<Option<Arc<SpKeys>>> {
    if config.saml.is_empty() {
        return Ok(None);
    }
    let kek = crate::kek::key_encryption_key(config)?;
    let encryptor = KeyEncryptor::new(&kek).map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = clock.now();
    let opened = ensure_sp_key(store, &encryptor, DEPLOYMENT_SP_KEY, now, || async move {
        // RSA key generation takes a moment: off the async threads.
        let pair = tokio::task::spawn_blocking(move || SpKeyPair::generate(now.secs()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(GeneratedSpKey {
            pkcs8: pair.pkcs8_der().to_vec(),
            certificate: pair.certificate_der().to_vec(),
        })
    })
    .await
    .context("SAML SP key")?;
    if opened.created {
        // SHA-256 of the certificate, in hex: what an IdP's administrator compares.
        let fingerprint = authx_core::secret::TokenHash::of(&opened.certificate).to_hex();
        tracing::info!(
            certificate_sha256 = %fingerprint,
            "created the SAML SP key pair (RSA-3072, self-signed certificate)"
        );
        audit.record(
            authx_core::audit::AuditEvent::success("saml_sp_key_created")
                .with("certificate_sha256", &fingerprint),
        );
    }
    let pair = SpKeyPair::from_parts(opened.pkcs8, opened.certificate)
        .map_err(|e| anyhow::anyhow!("the stored SAML SP key is unusable: {e}"))?;
    let keys = SpKeys {
        signing: pair
            .signing_key()
            .map_err(|e| anyhow::anyhow!("SAML SP key: {e}"))?,
        decryption: [pair
            .decryption_key()
            .map_err(|e| anyhow::anyhow!("SAML SP key: {e}"))?],
        pair,
    };
    Ok(Some(Arc::new(keys)))
}

/// Fetches the metadata of every provider configured by `metadata_url` and fills in its
/// entity id, SSO URL and pinned keys.
///
/// # Errors
/// A clear message naming the provider when a fetch fails or the metadata is not usable: the
/// server does not start with a provider it cannot verify.
pub async fn fetch_metadata(providers: &mut [SamlProvider]) -> anyhow::Result<()> {
    if providers.iter().all(|p| p.metadata_url.is_none()) {
        return Ok(());
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .user_agent("authx")
        .build()
        .context("no HTTP client for SAML metadata")?;
    for p in providers.iter_mut() {
        let Some(url) = p.metadata_url.clone() else {
            continue;
        };
        let what = format!("federation.saml[{}].metadata_url = {url:?}", p.name);
        // Checked with the configuration already; checked again right before the call.
        if !outbound_url_allowed(&url, p.insecure_allow_http_loopback) {
            bail!("{what}: not an allowed URL");
        }
        let res = http
            .get(&url)
            .header("accept", "application/samlmetadata+xml, application/xml")
            .send()
            .await
            .with_context(|| format!("{what}: cannot fetch the IdP metadata"))?;
        if !res.status().is_success() {
            bail!("{what}: the IdP answered {}", res.status());
        }
        let body = crate::upstream::read_capped(res, Limits::default().max_bytes, "IdP metadata")
            .await
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        crate::config::apply_fetched_metadata(p, &body)
            .map_err(|e| anyhow::anyhow!("{what}: the metadata is not usable: {e}"))?;
        tracing::info!(
            provider = %p.name,
            idp = %p.idp_entity_id,
            keys = p.keys.len(),
            "fetched the IdP's SAML metadata; its signing keys are pinned until restart"
        );
    }
    Ok(())
}
