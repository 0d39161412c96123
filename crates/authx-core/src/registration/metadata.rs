//! Client metadata (RFC 7591 §2) and how it maps onto a [`ClientSpec`], so that a client
//! registered through the protocol passes exactly the rules an administrator's registration
//! passes ([`ClientSpec::into_client`], then `Clients::register`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::RegistrationError;
use crate::admin::ClientSpec;
use crate::oauth::client::{Client, GrantType, validate_redirect_uri};
use crate::oauth::scope::Scopes;

/// Most redirect URIs (and, separately, post-logout redirect URIs) one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest `client_name`, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 200;

/// `token_endpoint_auth_method` values a registered client may use (RFC 7591 §2).
pub const AUTH_METHODS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];

/// The metadata a client sends (RFC 7591 §2, RFC 7592 §2.2). Fields authx does not know are
/// ignored (RFC 7591 §2); values it cannot honour are refused by [`ClientMetadata::to_spec`].
#[derive(Debug, Default, Deserialize)]
pub struct ClientMetadata {
    /// `redirect_uris`.
    pub redirect_uris: Option<Vec<String>>,
    /// `token_endpoint_auth_method` (default `client_secret_basic`).
    pub token_endpoint_auth_method: Option<String>,
    /// `grant_types` (default `authorization_code`).
    pub grant_types: Option<Vec<String>>,
    /// `response_types` (only `code`).
    pub response_types: Option<Vec<String>>,
    /// `client_name`.
    pub client_name: Option<String>,
    /// `scope`: space-separated (default: every scope the initial access token allows).
    pub scope: Option<String>,
    /// `post_logout_redirect_uris` (OpenID Connect RP-Initiated Logout).
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `backchannel_logout_uri` (OpenID Connect Back-Channel Logout).
    pub backchannel_logout_uri: Option<String>,
    /// `require_pushed_authorization_requests` (RFC 9126 §6).
    pub require_pushed_authorization_requests: Option<bool>,
    /// `dpop_bound_access_tokens` (RFC 9449 §5.2).
    pub dpop_bound_access_tokens: Option<bool>,
    /// `id_token_signed_response_alg` (RS256 default, ES256, EdDSA).
    pub id_token_signed_response_alg: Option<String>,
    /// `jwks`: the client's public keys for `private_key_jwt` (a JWK Set).
    pub jwks: Option<Value>,
    /// `jwks_uri`: where the client publishes its keys for `private_key_jwt` (HTTPS).
    pub jwks_uri: Option<String>,
    /// `client_id`, in an update (RFC 7592 §2.2): must be the client's.
    pub client_id: Option<String>,
    /// `client_secret`, in an update (RFC 7592 §2.2): must be the current one.
    pub client_secret: Option<String>,
}

fn metadata(message: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(message.into())
}

impl ClientMetadata {
    /// Reads a JSON metadata document.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidClientMetadata`] for anything but a JSON object whose known
    /// fields have the types RFC 7591 gives them.
    pub fn from_json(body: &[u8]) -> Result<Self, RegistrationError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| metadata("the body must be a JSON object of client metadata"))?;
        if !value.is_object() {
            return Err(metadata(
                "the body must be a JSON object of client metadata",
            ));
        }
        serde_json::from_value(value).map_err(|e| metadata(format!("malformed metadata: {e}")))
    }

    /// The registration of a client with id `id` that these metadata describe, within what
    /// the initial access token allows: `allowed_scopes` (the default when no `scope` is
    /// sent) and `resources` (given to the client as they are). The client is never
    /// first-party and requires no particular `acr`.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidRedirectUri`] for a redirect URI the admin API would refuse
    /// (or none for the code flow); [`RegistrationError::InvalidClientMetadata`] for any
    /// other value authx cannot honour.
    pub fn to_spec(
        self,
        id: &str,
        allowed_scopes: &[String],
        resources: &[String],
    ) -> Result<ClientSpec, RegistrationError> {
        if let Some(types) = &self.response_types {
            if types.iter().any(|t| t != "code") {
                return Err(metadata("only the response type \"code\" is supported"));
            }
        }
        let grant_types = self
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
        if grant_types.is_empty() {
            return Err(metadata("grant_types must name at least one grant"));
        }
        for g in &grant_types {
            if GrantType::parse(g).is_none() {
                return Err(metadata(format!("unsupported grant type {g:?}")));
            }
        }
        let auth_method = match self.token_endpoint_auth_method.as_deref() {
            None => "client_secret_basic",
            Some(m) if AUTH_METHODS.contains(&m) => m,
            Some(other) => {
                return Err(metadata(format!(
                    "token_endpoint_auth_method {other:?} is not supported (use one of {})",
                    AUTH_METHODS.join(", ")
                )));
            }
        };
        let redirect_uris = self.redirect_uris.unwrap_or_default();
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(RegistrationError::InvalidRedirectUri(format!(
                "at most {MAX_REDIRECT_URIS} redirect URIs"
            )));
        }
        for uri in &redirect_uris {
            validate_redirect_uri(uri)
                .map_err(|e| RegistrationError::InvalidRedirectUri(e.to_string()))?;
        }
        if redirect_uris.is_empty() && grant_types.iter().any(|g| g == "authorization_code") {
            return Err(RegistrationError::InvalidRedirectUri(
                "the authorization_code grant needs at least one redirect URI".into(),
            ));
        }
        let post_logout_redirect_uris = self.post_logout_redirect_uris.unwrap_or_default();
        if post_logout_redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(metadata(format!(
                "at most {MAX_REDIRECT_URIS} post-logout redirect URIs"
            )));
        }
        for uri in post_logout_redirect_uris
            .iter()
            .chain(&self.backchannel_logout_uri)
        {
            validate_redirect_uri(uri).map_err(|e| metadata(e.to_string()))?;
        }
        let name = match self.client_name {
            Some(n) => {
                if n.trim().is_empty()
                    || n.chars().count() > MAX_CLIENT_NAME_CHARS
                    || n.chars().any(char::is_control)
                {
                    return Err(metadata(format!(
                        "client_name must be 1 to {MAX_CLIENT_NAME_CHARS} characters without control characters"
                    )));
                }
                n
            }
            None => id.to_owned(),
        };
        let allowed = Scopes::from_list(allowed_scopes.iter().map(String::as_str));
        let scopes = match self.scope.as_deref() {
            None => allowed.clone(),
            Some(s) => Scopes::parse(s).ok_or_else(|| metadata("malformed scope"))?,
        };
        let beyond = scopes.minus(&allowed);
        if !beyond.is_empty() {
            return Err(metadata(format!(
                "scope not allowed by the initial access token: {}",
                beyond.to_param()
            )));
        }
        Ok(ClientSpec {
            id: id.to_owned(),
            name,
            redirect_uris,
            grant_types,
            scopes: scopes.iter().map(str::to_owned).collect(),
            resources: resources.to_vec(),
            public: auth_method == "none",
            token_endpoint_auth_method: Some(auth_method.to_owned()),
            // Checked as an administrator's would be: only for private_key_jwt, a JWK Set of
            // public signature keys or an https URI (Clients::check_registration).
            jwks: self.jwks,
            jwks_uri: self.jwks_uri,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens.unwrap_or(false),
            first_party: false,
            require_pushed_authorization_requests: self
                .require_pushed_authorization_requests
                .unwrap_or(false),
            require_acr: None,
            post_logout_redirect_uris,
            backchannel_logout_uri: self.backchannel_logout_uri,
            id_token_alg: self.id_token_signed_response_alg,
            access_token_ttl_secs: None,
            refresh_token_ttl_secs: None,
            refresh_idle_secs: None,
        })
    }
}

/// The client information response (RFC 7591 §3.2.1, RFC 7592 §3): the registered metadata,
/// `client_id` and `client_id_issued_at`, and the registration's URI.
#[must_use]
pub fn client_information(client: &Client, registration_client_uri: &str) -> Value {
    let response_types: Vec<&str> = if client.allows(GrantType::AuthorizationCode) {
        vec!["code"]
    } else {
        Vec::new()
    };
    let mut v = json!({
        "client_id": client.id,
        "client_id_issued_at": client.created_at.secs(),
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "response_types": response_types,
        "token_endpoint_auth_method": client.token_endpoint_auth_method.as_str(),
        "scope": client.scopes.join(" "),
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
        "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
        "id_token_signed_response_alg": client.id_token_alg.as_str(),
        "registration_client_uri": registration_client_uri,
    });
    if let Some(uri) = &client.backchannel_logout_uri {
        v["backchannel_logout_uri"] = Value::String(uri.clone());
    }
    if let Some(jwks) = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
    {
        v["jwks"] = jwks;
    }
    if let Some(uri) = &client.jwks_uri {
        v["jwks_uri"] = Value::String(uri.clone());
    }
    v
}
