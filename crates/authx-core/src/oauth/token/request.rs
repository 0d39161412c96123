//! The token endpoint's request (RFC 6749 §4.1.3, §4.4.2, §6; RFC 8628 §3.4) as one typed value,
//! and the one entry point that runs it.

use super::super::OAuthError;
use super::super::client::Client;
use super::super::device::GRANT_TYPE as DEVICE_CODE;
use super::super::dpop::Jkt;
use super::super::types::TokenResponse;
use super::Tokens;
use crate::throttle::ThrottlePolicy;

/// A token request, by grant type, with the parameters that grant reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// `authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5).
    AuthorizationCode {
        /// `code`.
        code: String,
        /// `redirect_uri`.
        redirect_uri: Option<String>,
        /// `code_verifier`.
        code_verifier: Option<String>,
    },
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken {
        /// `refresh_token` (from the form, or the first-party refresh cookie).
        refresh_token: String,
        /// `scope`: a narrower scope for this access token.
        scope: Option<String>,
    },
    /// `client_credentials` (RFC 6749 §4.4.2).
    ClientCredentials {
        /// `scope`.
        scope: Option<String>,
        /// `resource` (RFC 8707).
        resource: Option<String>,
    },
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4).
    DeviceCode {
        /// `device_code`.
        device_code: String,
    },
}

impl TokenRequest {
    /// Reads a token request from its parameters: `param` looks a non-empty parameter up,
    /// `stored_refresh` is a refresh token the client keeps outside the form (the first-party
    /// cookie), used when the form carries none.
    ///
    /// # Errors
    /// `invalid_request` for a missing `grant_type` or a parameter its grant requires;
    /// `unsupported_grant_type` for any other grant type.
    pub fn from_params<'a>(
        param: impl Fn(&str) -> Option<&'a str>,
        stored_refresh: Option<&str>,
    ) -> Result<Self, OAuthError> {
        let owned = |k: &str| param(k).map(str::to_owned);
        let required = |k: &str, v: Option<&str>| {
            v.map(str::to_owned)
                .ok_or_else(|| OAuthError::InvalidRequest(format!("{k} is required")))
        };
        match param("grant_type") {
            Some("authorization_code") => Ok(Self::AuthorizationCode {
                code: required("code", param("code"))?,
                redirect_uri: owned("redirect_uri"),
                code_verifier: owned("code_verifier"),
            }),
            Some("refresh_token") => Ok(Self::RefreshToken {
                refresh_token: required(
                    "refresh_token",
                    param("refresh_token").or(stored_refresh),
                )?,
                scope: owned("scope"),
            }),
            Some("client_credentials") => Ok(Self::ClientCredentials {
                scope: owned("scope"),
                resource: owned("resource"),
            }),
            Some(DEVICE_CODE) => Ok(Self::DeviceCode {
                device_code: required("device_code", param("device_code"))?,
            }),
            Some(_) => Err(OAuthError::UnsupportedGrantType),
            None => Err(OAuthError::InvalidRequest("grant_type is required".into())),
        }
    }
}

impl Tokens<'_> {
    /// The token endpoint: runs `request` for an authenticated `client`. `sign_in` is the
    /// sign-in throttle policy, whose account lock a device-code redemption respects. `dpop`
    /// is the key of the request's verified DPoP proof ([`crate::oauth::dpop`]), to which
    /// the access token (and a public client's refresh tokens) are then bound.
    ///
    /// # Errors
    /// The grant's RFC 6749 §5.2 (or RFC 8628 §3.5) error.
    pub async fn grant(
        &self,
        client: &Client,
        request: &TokenRequest,
        sign_in: &ThrottlePolicy,
        dpop: Option<&Jkt>,
    ) -> Result<TokenResponse, OAuthError> {
        match request {
            TokenRequest::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                self.exchange_code_with(
                    client,
                    code,
                    redirect_uri.as_deref(),
                    code_verifier.as_deref(),
                    dpop,
                )
                .await
            }
            TokenRequest::RefreshToken {
                refresh_token,
                scope,
            } => {
                self.refresh_with(client, refresh_token, scope.as_deref(), dpop)
                    .await
            }
            TokenRequest::ClientCredentials { scope, resource } => {
                self.client_credentials_with(client, scope.as_deref(), resource.as_deref(), dpop)
                    .await
            }
            TokenRequest::DeviceCode { device_code } => {
                self.device_token_with(client, device_code, sign_in, dpop)
                    .await
            }
        }
    }
}
