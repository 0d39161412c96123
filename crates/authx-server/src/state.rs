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
    /// Upstream identity providers and their cached metadata and keys.
    pub upstreams: crate::federation::Upstreams,
    /// Upstream sign-in transactions and federation links.
    pub federation: Arc<dyn authx_core::federation::FederationStore>,
    /// Revoked grants waiting for back-channel logout (taken by the server loop).
    pub backchannel: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
}

impl AppState {
    /// Wraps the parts.
    #[must_use]
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
