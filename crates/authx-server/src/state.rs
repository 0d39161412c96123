//! Application state shared by every handler.

use std::ops::Deref;
use std::sync::Arc;

use authx_core::auth::AuthService;
use authx_core::events::EventBus;
use authx_core::store::Health;

use crate::config::Config;
use crate::cookies::CookieNames;
use crate::metrics::Metrics;

/// Cheap to clone; everything inside is shared.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What the handlers reach.
pub struct Inner {
    /// Accounts and sessions.
    pub auth: AuthService,
    /// The OpenID provider.
    pub oauth: authx_core::oauth::service::OAuthService,
    /// Validated configuration.
    pub config: Config,
    /// Cookie names and attributes.
    pub cookies: CookieNames,
    /// Metrics.
    pub metrics: Metrics,
    /// Store reachability.
    pub health: Arc<dyn Health>,
    /// The revocation event bus.
    pub bus: Arc<dyn EventBus>,
    /// The stored audit trail (recording goes through `auth.audit()`).
    pub audit_store: Arc<dyn authx_core::audit::AuditStore>,
    /// Request rate limits (shared through the store when several instances run).
    pub limiter: Arc<authx_core::ratelimit::RateLimiter>,
    /// Upstream identity providers and their cached metadata and keys.
    pub upstreams: crate::upstream::Upstreams,
    /// Upstream sign-in transactions and federation links.
    pub federation: Arc<dyn authx_core::federation::FederationStore>,
    /// The SAML assertion ids already accepted, in the store every instance shares.
    pub saml_marks: authx_core::replay::SingleUse,
    /// The table of single-use marks, to purge on its own where the failure and rate
    /// counters live elsewhere (Redis); `None` where it is purged with them.
    pub marks_table: Option<std::sync::Arc<dyn authx_core::store::ThrottleStore>>,
    /// Our SAML SP key pair (signing AuthnRequests, decrypting assertions), when SAML
    /// providers are configured.
    pub saml_keys: Option<std::sync::Arc<crate::saml_sp::SpKeys>>,
    /// Second factors and recovery codes (the purge pass removes lapsed enrolments).
    pub factors: Arc<dyn authx_core::mfa::FactorStore>,
    /// Revoked grants waiting for back-channel logout (taken by the server loop).
    pub backchannel: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
    /// The bus above, seen as the durable log behind the revocation feed.
    pub revocations: Arc<authx_core::events::DurableBus>,
    /// Outgoing mail: the outbox and the sender's transport.
    pub mail: Arc<crate::mail::MailService>,
    /// Initial access tokens and client registrations (RFC 7591, RFC 7592).
    pub registrations: Arc<dyn authx_core::registration::RegistrationStore>,
    /// Becomes `true` when the server stops, so long-lived responses (the revocation feed) end.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// Wraps the parts.
    #[must_use]
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Dynamic client registration over the provider and the registration store.
    #[must_use]
    pub fn registration(&self) -> authx_core::registration::Registration<'_> {
        authx_core::registration::Registration::new(&self.oauth, self.registrations.as_ref())
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
