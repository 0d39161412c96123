//! Building the OpenID provider: the service and its signing keys.

use std::sync::Arc;

use anyhow::bail;
use authx_core::Clock;
use authx_core::events::EventBus;
use authx_core::oauth::keys::RotationPolicy;
use authx_core::oauth::service::OAuthService;
use authx_core::oauth::types::{OAuthConfig, OAuthStores};

use crate::config::Config;
use crate::kek::key_encryption_key;

/// Builds the provider and makes sure its signing keys exist.
///
/// # Errors
/// A missing key-encryption key with PostgreSQL, an unreadable key file, or keys that the
/// configured key-encryption key cannot open.
pub async fn build(
    config: &Config,
    stores: OAuthStores,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    audit: authx_core::audit::Audit,
    token_cache: Option<authx_core::generation::Generations>,
) -> anyhow::Result<OAuthService> {
    let kek = key_encryption_key(config)?;
    let mut oc = OAuthConfig::new(&config.issuer);
    oc.access_token_alg = config.oauth.access_token_alg;
    oc.refresh_grace_secs = config.oauth.refresh_grace_secs;
    oc.code_ttl_secs = config.oauth.code_ttl_secs;
    oc.require_pushed_authorization_requests = config.oauth.require_pushed_authorization_requests;
    oc.dpop = config.oauth.dpop;
    oc.dpop_require_nonce = config.oauth.dpop_require_nonce;
    oc.dpop_proof.leeway_secs = config.oauth.dpop_leeway_secs;
    oc.registration_enabled = config.registration_enabled;
    oc.rotation = RotationPolicy {
        publish_ahead_secs: config.oauth.publish_ahead_secs,
        rotate_every_secs: config.oauth.rotate_every_secs,
    };
    let mut service = OAuthService::new(stores, bus, clock, oc, &kek)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_audit(audit)
        .with_client_key_fetcher(Arc::new(crate::client_keys::ClientJwksFetcher::new(
            config.oauth.client_jwks_insecure_http_loopback,
        )?));
    if let Some(generation) = token_cache {
        service = service.with_token_cache(generation);
    }
    service
        .ensure_keys()
        .await
        .map_err(|e| anyhow::anyhow!("signing keys: {e}"))?;
    Ok(service)
}

/// The key that names the per-address mail counters (`AddressLimit::key`): derived from the
/// key-encryption key, so every instance of a deployment derives the same one.
///
/// # Errors
/// As for the key-encryption key.
pub fn address_counter_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    let kek = key_encryption_key(config)?;
    Ok(authx_core::secret::derive_key(
        &kek,
        b"authx per-address mail counters v1",
    ))
}

/// The service of the users' second factors: TOTP secrets sealed and recovery codes keyed
/// under the key-encryption key; the issuer's host names the account in authenticator apps.
///
/// # Errors
/// As for the key-encryption key.
pub fn factors(
    config: &Config,
    store: Arc<dyn authx_core::mfa::FactorStore>,
    clock: Arc<dyn Clock>,
    audit: authx_core::audit::Audit,
) -> anyhow::Result<authx_core::mfa::Factors> {
    let kek = key_encryption_key(config)?;
    let host = config
        .issuer
        .split_once("://")
        .map_or(config.issuer.as_str(), |(_, rest)| rest);
    let label = host.split('/').next().unwrap_or(host).to_owned();
    let factors = authx_core::mfa::Factors::new(store, &kek, label.clone(), clock, audit)
        .map_err(|e| anyhow::anyhow!("second factors: {e}"))?;
    let Some(w) = &config.webauthn else {
        return Ok(factors);
    };
    match authx_core::mfa::passkey::RelyingParty::new(&w.origin, w.rp_id.as_deref(), &label) {
        Ok(rp) => Ok(factors.with_relying_party(rp)),
        Err(e) if w.explicit => bail!("[webauthn]: {e}"),
        Err(e) => {
            tracing::info!("passkeys are off: {e}; set [webauthn] rp_id to a domain name");
            Ok(factors)
        }
    }
}

/// Every minute: promote published keys whose lead time has passed, retire and remove old
/// ones, pick up keys another instance created; every ten minutes, purge every expired row
/// (see [`crate::purge_expired`]).
pub async fn maintenance_loop(state: crate::state::AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    let mut rounds: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = state.oauth.ensure_keys().await {
            tracing::warn!(error = %e, "key maintenance failed");
        }
        if rounds % 10 == 0 {
            match crate::purge_expired(&state).await {
                Ok(p) if p.total() > 0 => tracing::info!(
                    sessions_and_counters = p.sessions_and_counters,
                    grants = p.grants,
                    audit_events = p.audit_events,
                    revocation_events = p.revocation_events,
                    "purged expired rows"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purge failed"),
            }
        }
        // A client registered since with longer-lived tokens keeps events longer.
        if let Ok(secs) = state.oauth.max_token_lifetime().await {
            let keep = secs.max(state.revocations.retention_secs());
            state.revocations.set_retention_secs(keep);
        }
        rounds += 1;
    }
}

/// Queues revoked grants for OIDC back-channel logout.
pub struct Backchannel {
    tx: tokio::sync::mpsc::Sender<String>,
}

impl authx_core::oauth::GrantObserver for Backchannel {
    fn grant_revoked(&self, family_id: &str) {
        if self.tx.try_send(family_id.to_owned()).is_err() {
            tracing::warn!("back-channel logout queue full; a logout notification was dropped");
        }
    }
}

/// The observer to give the services, and the queue [`backchannel_loop`] drains.
#[must_use]
pub fn backchannel() -> (Arc<Backchannel>, tokio::sync::mpsc::Receiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    (Arc::new(Backchannel { tx }), rx)
}

/// Sends a logout token (OIDC Back-Channel Logout 1.0) to every client that registered a
/// back-channel URI, for each of its grants that ends. Delivery is best effort: a failure is
/// logged, never retried forever, and never delays the revocation itself.
pub async fn backchannel_loop(
    state: crate::state::AppState,
    mut rx: tokio::sync::mpsc::Receiver<String>,
) {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout disabled: no HTTP client");
            return;
        }
    };
    while let Some(family_id) = rx.recv().await {
        let Some(logout) = logout_for(&state, &family_id).await else {
            continue;
        };
        tokio::spawn(logout.send(http.clone(), state.oauth.audit().clone()));
    }
}

/// A logout token on its way to a client's back-channel URI.
struct BackchannelLogout {
    uri: String,
    token: String,
    client_id: String,
    family_id: String,
}

/// The logout of the grant `family_id` ended, if its client registered a back-channel URI.
async fn logout_for(state: &crate::state::AppState, family_id: &str) -> Option<BackchannelLogout> {
    let stores = state.oauth.stores();
    let family = stores.grants.family(family_id).await.ok()??;
    let client = stores.clients.client(&family.client_id).await.ok()??;
    let uri = client.backchannel_logout_uri.clone()?;
    let token = match state.oauth.logout_token(&client, &family) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign a logout token");
            return None;
        }
    };
    Some(BackchannelLogout {
        uri,
        token,
        client_id: client.id,
        family_id: family.id,
    })
}

impl BackchannelLogout {
    /// Posts the token once; the outcome is audited or logged, never retried.
    async fn send(self, http: reqwest::Client, audit: authx_core::audit::Audit) {
        let sent = http
            .post(&self.uri)
            .form(&[("logout_token", self.token)])
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                audit.record(
                    authx_core::audit::AuditEvent::success("backchannel_logout_sent")
                        .client(&self.client_id)
                        .with("family_id", &self.family_id),
                );
            }
            Ok(r) => {
                tracing::warn!(client_id = %self.client_id, status = r.status().as_u16(), "back-channel logout refused")
            }
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, "back-channel logout failed")
            }
        }
    }
}
