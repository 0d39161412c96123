//! `[[federation.saml]]`: upstream SAML 2.0 identity providers, served only with
//! `[federation] enable_saml = true`.

use std::path::Path;

use authx_saml::{IdpMetadata, Limits, PinnedKey};
use serde::Deserialize;

use super::rules::{outbound_url_allowed, valid_name};
use super::{ConfigError, bad};

/// `[[federation.saml]]`: one upstream SAML identity provider.
///
/// The IdP is named by its metadata, from a file (`metadata_file`) or fetched once at start
/// from a URL (`metadata_url`), or by its entity id, its HTTP-Redirect single sign-on URL and a
/// pinned signing certificate (`idp_entity_id`, `sso_url`, `certificate_file`).
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
    /// The URL of the IdP's metadata (https), fetched once when the server starts: its signing
    /// certificates are pinned from that fetch for the life of the process.
    pub metadata_url: Option<String>,
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
    /// Whether AuthnRequests are signed with our SP key (default: what the IdP's metadata
    /// says in `WantAuthnRequestsSigned`, else false).
    pub sign_authn_requests: Option<bool>,
    /// Whether plain (unencrypted) assertions are refused (default false; encrypted ones are
    /// always accepted).
    pub require_encrypted_assertions: Option<bool>,
    /// The attribute whose value identifies the user at this IdP instead of the NameID (for
    /// IdPs that send transient NameIDs and a stable identifier as an attribute).
    pub subject_attribute: Option<String>,
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
    /// Whether AuthnRequests are signed with our SP key.
    pub sign_authn_requests: bool,
    /// Whether plain (unencrypted) assertions are refused.
    pub require_encrypted_assertions: bool,
    /// The attribute holding the stable subject, instead of the NameID.
    pub subject_attribute: Option<String>,
    /// Where the IdP's metadata is fetched at start; until then the IdP's entity id, SSO URL
    /// and keys are empty ([`crate::saml_sp::fetch_metadata`] fills them).
    pub metadata_url: Option<String>,
    /// Whether plain http to loopback is allowed (SSO and metadata URLs).
    pub insecure_allow_http_loopback: bool,
    /// `sign_authn_requests` as configured, for the decision once fetched metadata is read.
    sign_setting: Option<bool>,
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
        let explicit_signing = p.sign_authn_requests;
        let mut idp = match (
            p.metadata_file,
            p.metadata_url,
            p.idp_entity_id,
            p.sso_url,
            p.certificate_file,
        ) {
            (Some(file), None, None, None, None) => {
                let bytes = read(&file, &key("metadata_file"))?;
                let md = IdpMetadata::parse(&bytes, &Limits::default()).map_err(|e| {
                    bad(format!(
                        "{} = {file:?} is not usable: {e}",
                        key("metadata_file")
                    ))
                })?;
                Idp::from_metadata(md)
            }
            (None, Some(url), None, None, None) => {
                if !outbound_url_allowed(&url, insecure) || url.contains('#') {
                    return Err(bad(format!(
                        "{} = {url:?} must be an https URL without fragment (http only to \
                         loopback with insecure_allow_http_loopback)",
                        key("metadata_url")
                    )));
                }
                Idp {
                    metadata_url: Some(url),
                    ..Idp::default()
                }
            }
            (None, None, Some(entity), Some(sso), Some(cert)) => {
                let pem = read(&cert, &key("certificate_file"))?;
                let keys = pinned_keys(&String::from_utf8_lossy(&pem)).map_err(|e| {
                    bad(format!(
                        "{} = {cert:?} is not usable: {e}",
                        key("certificate_file")
                    ))
                })?;
                Idp {
                    entity_id: entity,
                    sso_url: sso,
                    keys,
                    ..Idp::default()
                }
            }
            _ => {
                return Err(bad(format!(
                    "{block}: give either metadata_file, or metadata_url, or idp_entity_id, \
                     sso_url and certificate_file"
                )));
            }
        };
        idp.sign = explicit_signing;
        if idp.metadata_url.is_none() {
            check_idp(&name, insecure, &mut idp).map_err(bad)?;
        }
        let display_name = p.display_name.unwrap_or_else(|| name.clone());
        if display_name.is_empty() || display_name.chars().count() > 64 {
            return Err(bad(format!(
                "{} must be 1 to 64 characters",
                key("display_name")
            )));
        }
        let subject_attribute = match p.subject_attribute {
            Some(a) if a.is_empty() || a.len() > 1024 => {
                return Err(bad(format!(
                    "{} must be 1 to 1024 characters",
                    key("subject_attribute")
                )));
            }
            other => other,
        };
        out.push(SamlProvider {
            display_name,
            idp_entity_id: idp.entity_id,
            sso_url: idp.sso_url,
            keys: idp.keys,
            emails_verified: p.emails_verified.unwrap_or(false),
            allow_sign_up: p.allow_sign_up.unwrap_or(false),
            email_attribute: p.email_attribute.filter(|a| !a.is_empty()),
            allow_signed_response_only: p.allow_signed_response_only.unwrap_or(false),
            sign_authn_requests: idp.sign.unwrap_or(false),
            require_encrypted_assertions: p.require_encrypted_assertions.unwrap_or(false),
            subject_attribute,
            metadata_url: idp.metadata_url,
            insecure_allow_http_loopback: insecure,
            sign_setting: explicit_signing,
            name,
        });
    }
    Ok(out)
}

/// What names the IdP, before checks.
#[derive(Default)]
struct Idp {
    entity_id: String,
    sso_url: String,
    keys: Vec<PinnedKey>,
    want_signed: bool,
    /// `sign_authn_requests` as configured; after [`check_idp`], the decision.
    sign: Option<bool>,
    metadata_url: Option<String>,
}

impl Idp {
    fn from_metadata(md: IdpMetadata) -> Self {
        Self {
            entity_id: md.entity_id,
            sso_url: md.sso_redirect_url,
            keys: md.signing_keys,
            want_signed: md.want_authn_requests_signed,
            ..Self::default()
        }
    }
}

/// The checks on an IdP however it was given: entity id, SSO URL, keys; and whether requests
/// are signed (the metadata's `WantAuthnRequestsSigned` turns signing on unless it was
/// explicitly turned off, which is refused: the IdP would refuse every request).
fn check_idp(name: &str, insecure: bool, idp: &mut Idp) -> Result<(), String> {
    let key = |k: &str| format!("federation.saml[{name}].{k}");
    if idp.entity_id.is_empty() || idp.entity_id.len() > 1024 {
        return Err(format!(
            "{} must be 1 to 1024 characters",
            key("idp_entity_id")
        ));
    }
    if !outbound_url_allowed(&idp.sso_url, insecure) || idp.sso_url.contains('#') {
        return Err(format!(
            "{} = {:?} must be an https URL without fragment (http only to loopback with \
             insecure_allow_http_loopback)",
            key("sso_url"),
            idp.sso_url
        ));
    }
    if idp.keys.is_empty() {
        return Err(format!(
            "federation.saml[{name}]: no signing certificate to pin"
        ));
    }
    idp.sign = match (idp.sign, idp.want_signed) {
        (Some(false), true) => {
            return Err(format!(
                "{} = false, but the IdP's metadata asks for signed AuthnRequests \
                 (WantAuthnRequestsSigned=\"true\")",
                key("sign_authn_requests")
            ));
        }
        (Some(explicit), _) => Some(explicit),
        (None, want) => Some(want),
    };
    Ok(())
}

/// Fills `provider` from the IdP metadata fetched from its `metadata_url` and runs the checks
/// a configured IdP passes.
///
/// # Errors
/// The metadata does not parse, or what it names fails the checks.
pub(crate) fn apply_fetched_metadata(
    provider: &mut SamlProvider,
    xml: &[u8],
) -> Result<(), String> {
    let md = IdpMetadata::parse(xml, &Limits::default()).map_err(|e| e.to_string())?;
    let mut idp = Idp::from_metadata(md);
    idp.sign = provider.sign_setting;
    check_idp(
        &provider.name,
        provider.insecure_allow_http_loopback,
        &mut idp,
    )?;
    provider.idp_entity_id = idp.entity_id;
    provider.sso_url = idp.sso_url;
    provider.keys = idp.keys;
    provider.sign_authn_requests = idp.sign.unwrap_or(false);
    Ok(())
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
