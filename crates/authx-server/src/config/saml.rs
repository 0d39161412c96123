//! `[[federation.saml]]`: upstream SAML 2.0 identity providers, served only with
//! `[federation] enable_saml = true`.

use std::path::Path;

use authx_saml::{IdpMetadata, Limits, PinnedKey};
use serde::Deserialize;

use super::rules::{outbound_url_allowed, valid_name};
use super::{ConfigError, bad};

/// `[[federation.saml]]`: one upstream SAML identity provider.
///
/// The IdP is named either by its metadata file (`metadata_file`) or by its entity id, its
/// HTTP-Redirect single sign-on URL and a pinned signing certificate (`idp_entity_id`,
/// `sso_url`, `certificate_file`). Fetching metadata from a URL is not supported yet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlProviderFile {
    /// Short name used in URLs (`/federation/saml/{name}/...`): 1 to 32 of `a-z 0-9 - _`,
    /// unique across OpenID and SAML providers.
    pub name: String,
    /// The button label on the sign-in page (default: the name).
    pub display_name: Option<String>,
    /// The IdP's metadata (`md:EntityDescriptor`), read once at start: its entity id, its
    /// HTTP-Redirect single sign-on URL and its signing certificates, which are pinned.
    pub metadata_file: Option<String>,
    /// The IdP's entity id (without `metadata_file`).
    pub idp_entity_id: Option<String>,
    /// The IdP's single sign-on URL for the HTTP-Redirect binding (without `metadata_file`).
    pub sso_url: Option<String>,
    /// A PEM file with the IdP's signing certificate(s), pinned (without `metadata_file`).
    pub certificate_file: Option<String>,
    /// Whether the IdP's email addresses count as verified (default false). SAML has no
    /// `email_verified`: only an IdP that verifies every address it asserts may link an
    /// existing account by email or create one.
    pub emails_verified: Option<bool>,
    /// Whether a first sign-in with no matching account creates one (default false).
    pub allow_sign_up: Option<bool>,
    /// The attribute holding the email address (default: the NameID when its format is
    /// `emailAddress`, else `urn:oid:0.9.2342.19200300.100.1.3`, `email` or `mail`).
    pub email_attribute: Option<String>,
    /// Whether a signed response may stand in for an unsigned assertion (default false).
    pub allow_signed_response_only: Option<bool>,
    /// Allows plain `http://` single sign-on URLs on loopback. Tests and development only.
    pub insecure_allow_http_loopback: Option<bool>,
}

/// A validated SAML identity provider.
#[derive(Debug, Clone)]
pub struct SamlProvider {
    /// Short name, used in URLs.
    pub name: String,
    /// Button label.
    pub display_name: String,
    /// The IdP entity id: the assertion's `Issuer`, and the issuer of linked identities.
    pub idp_entity_id: String,
    /// Where AuthnRequests go (HTTP-Redirect binding).
    pub sso_url: String,
    /// The IdP's signing keys; no other key is believed.
    pub keys: Vec<PinnedKey>,
    /// Whether the IdP's email addresses count as verified.
    pub emails_verified: bool,
    /// Whether new accounts may be created.
    pub allow_sign_up: bool,
    /// The attribute holding the email, if configured.
    pub email_attribute: Option<String>,
    /// Whether a signed response may stand in for an unsigned assertion.
    pub allow_signed_response_only: bool,
}

/// The SAML providers of `[federation]`: none unless `enable_saml` is true. `oidc_names` are
/// the OpenID providers' names, which a SAML provider may not reuse.
pub(super) fn saml_providers(
    enabled: bool,
    files: Vec<SamlProviderFile>,
    oidc_names: &[&str],
) -> Result<Vec<SamlProvider>, ConfigError> {
    if !enabled {
        if !files.is_empty() {
            tracing::warn!(
                "[[federation.saml]] providers are configured but federation.enable_saml is not \
                 true: SAML sign-in is off"
            );
        }
        return Ok(Vec::new());
    }
    let mut out: Vec<SamlProvider> = Vec::new();
    for p in files {
        let name = p.name;
        if !valid_name(&name) {
            return Err(bad(format!(
                "federation.saml: name {name:?} must be 1 to 32 of a-z, 0-9, - and _"
            )));
        }
        if oidc_names.contains(&name.as_str()) || out.iter().any(|o| o.name == name) {
            return Err(bad(format!(
                "federation.saml: name {name:?} is already used by another provider (names are \
                 unique across federation.providers and federation.saml)"
            )));
        }
        let key = |k: &str| format!("federation.saml[{name}].{k}");
        let block = format!("federation.saml[{name}]");
        let insecure = p.insecure_allow_http_loopback.unwrap_or(false);
        let (idp_entity_id, sso_url, keys) = match (
            p.metadata_file,
            p.idp_entity_id,
            p.sso_url,
            p.certificate_file,
        ) {
            (Some(file), None, None, None) => {
                let bytes = read(&file, &key("metadata_file"))?;
                let md = IdpMetadata::parse(&bytes, &Limits::default()).map_err(|e| {
                    bad(format!(
                        "{} = {file:?} is not usable: {e}",
                        key("metadata_file")
                    ))
                })?;
                if md.want_authn_requests_signed {
                    tracing::warn!(
                        provider = %name,
                        "the IdP's metadata asks for signed AuthnRequests; this version sends \
                         them unsigned, which the IdP may refuse"
                    );
                }
                (md.entity_id, md.sso_redirect_url, md.signing_keys)
            }
            (None, Some(entity), Some(sso), Some(cert)) => {
                let pem = read(&cert, &key("certificate_file"))?;
                let keys = pinned_keys(&String::from_utf8_lossy(&pem)).map_err(|e| {
                    bad(format!(
                        "{} = {cert:?} is not usable: {e}",
                        key("certificate_file")
                    ))
                })?;
                (entity, sso, keys)
            }
            _ => {
                return Err(bad(format!(
                    "{block}: give either metadata_file, or idp_entity_id, sso_url and \
                     certificate_file"
                )));
            }
        };
        if idp_entity_id.is_empty() || idp_entity_id.len() > 1024 {
            return Err(bad(format!(
                "{} must be 1 to 1024 characters",
                key("idp_entity_id")
            )));
        }
        if !outbound_url_allowed(&sso_url, insecure) || sso_url.contains('#') {
            return Err(bad(format!(
                "{} = {sso_url:?} must be an https URL without fragment (http only to loopback \
                 with insecure_allow_http_loopback)",
                key("sso_url")
            )));
        }
        if keys.is_empty() {
            return Err(bad(format!("{block}: no signing certificate to pin")));
        }
        let display_name = p.display_name.unwrap_or_else(|| name.clone());
        if display_name.is_empty() || display_name.chars().count() > 64 {
            return Err(bad(format!(
                "{} must be 1 to 64 characters",
                key("display_name")
            )));
        }
        out.push(SamlProvider {
            display_name,
            idp_entity_id,
            sso_url,
            keys,
            emails_verified: p.emails_verified.unwrap_or(false),
            allow_sign_up: p.allow_sign_up.unwrap_or(false),
            email_attribute: p.email_attribute.filter(|a| !a.is_empty()),
            allow_signed_response_only: p.allow_signed_response_only.unwrap_or(false),
            name,
        });
    }
    Ok(out)
}

fn read(file: &str, what: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(Path::new(file)).map_err(|e| bad(format!("{what} = {file:?}: {e}")))
}

/// Every certificate of a PEM file, pinned.
fn pinned_keys(pem: &str) -> Result<Vec<PinnedKey>, authx_saml::SamlError> {
    let mut keys = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let Some(end) = rest[start..].find(end_marker) else {
            break;
        };
        let block = &rest[start..start + end + end_marker.len()];
        keys.push(PinnedKey::from_certificate_pem(block)?);
        rest = &rest[start + end + end_marker.len()..];
    }
    Ok(keys)
}
