//! The relying party authx is to authenticators ([`RelyingParty`]): its RP id, name and the
//! one origin it accepts, checked when it is configured. Below the passkey operations of
//! [`super::Factors`], which hold one.

use std::time::Duration;

use url::Url;
use webauthn_rs_core::WebauthnCore;

/// How long the browser may take over a ceremony (the server-side state lives as long).
pub const CEREMONY_SECS: i64 = 5 * 60;

/// Why a relying party cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum RelyingPartyError {
    /// The origin is not an `http(s)` URL with a host.
    #[error("the WebAuthn origin {0:?} is not an http(s) URL with a host")]
    Origin(String),
    /// The RP id is an IP address or empty (WebAuthn needs a domain name).
    #[error("the WebAuthn RP id {0:?} is not a domain name (an IP address is refused)")]
    RpId(String),
    /// The origin's host is neither the RP id nor under it.
    #[error("the WebAuthn origin's host {host:?} is not {rp_id:?} or a subdomain of it")]
    Mismatch {
        /// The origin's host.
        host: String,
        /// The RP id.
        rp_id: String,
    },
}

/// The relying party authx is to authenticators: its RP id, name and accepted origin.
pub struct RelyingParty {
    pub(super) core: WebauthnCore,
    rp_id: String,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("rp_id", &self.rp_id)
            .finish_non_exhaustive()
    }
}

impl RelyingParty {
    /// The relying party for `origin` (the issuer, as a rule) with RP id `rp_id` (the
    /// origin's host when `None`), named `name` to users.
    ///
    /// # Errors
    /// [`RelyingPartyError`] for an origin without host, an IP address as RP id, or an origin
    /// outside the RP id.
    pub fn new(origin: &str, rp_id: Option<&str>, name: &str) -> Result<Self, RelyingPartyError> {
        let url = Url::parse(origin).map_err(|_| RelyingPartyError::Origin(origin.to_owned()))?;
        let host = match (url.scheme(), url.host()) {
            ("http" | "https", Some(url::Host::Domain(h))) => h.to_owned(),
            ("http" | "https", Some(_)) => return Err(RelyingPartyError::RpId(origin.to_owned())),
            _ => return Err(RelyingPartyError::Origin(origin.to_owned())),
        };
        let rp_id = rp_id.map_or_else(|| host.clone(), str::to_owned);
        if rp_id.is_empty() || rp_id.parse::<std::net::IpAddr>().is_ok() {
            return Err(RelyingPartyError::RpId(rp_id));
        }
        if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
            return Err(RelyingPartyError::Mismatch { host, rp_id });
        }
        // Only the origin itself: no other port, and subdomains only when the RP id is a
        // parent domain the operator chose.
        let mut origin_url = url.clone();
        origin_url.set_path("");
        origin_url.set_query(None);
        origin_url.set_fragment(None);
        let core = WebauthnCore::new_unsafe_experts_only(
            name,
            &rp_id,
            vec![origin_url],
            Duration::from_secs(CEREMONY_SECS.unsigned_abs()),
            Some(false),
            Some(false),
        );
        Ok(Self { core, rp_id })
    }

    /// The RP id.
    #[must_use]
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }
}
