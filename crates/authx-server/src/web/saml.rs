//! Sign-in through an upstream SAML 2.0 identity provider (Web Browser SSO, SP-initiated),
//! served only with `[federation] enable_saml = true`:
//!
//! - `GET /federation/saml/{name}/metadata`: our SP metadata (entity id, ACS URL, our
//!   certificate for encryption and, when requests are signed, for signing);
//! - `GET /federation/saml/{name}/start`: the AuthnRequest (HTTP-Redirect binding, signed with
//!   RSA-SHA256 when the provider's `sign_authn_requests` is on); its ID is kept in a one-time,
//!   expiring transaction bound to this browser, exactly like an OIDC `state`, whose own
//!   one-time value travels as `RelayState`;
//! - `POST /federation/saml/{name}/acs`: the IdP's page posts the response here (HTTP-POST
//!   binding) cross-site, so the browser's `SameSite=Lax` cookies are not sent and this one
//!   route is not behind the origin check. It only parks the response under a new one-time id
//!   and answers `303` to `finish`;
//! - `GET /federation/saml/{name}/finish?id=...`: a top-level GET, where the binding cookie is
//!   sent. The response is verified here (with `InResponseTo` = the browser's own request),
//!   its assertion id marked in the replay cache every instance shares, and the identity
//!   (IdP entity id, NameID) ends like an OIDC one ([`RelyingParty::conclude`]).
//!
//! # Security
//! - Verification is `authx_saml`'s ([`verify_response`]); this module checks nothing in the
//!   XML itself.
//! - A transient NameID can neither find, link nor create an account (with `subject_attribute`
//!   the NameID is not the subject at all). The email an IdP sends counts as verified only with
//!   the provider's `emails_verified = true`.
//! - Encrypted assertions are decrypted with our SP key (AES-GCM with RSA-OAEP only; CBC is
//!   refused by the library); with `require_encrypted_assertions`, a plain one is refused.
//! - Every failure ends on a readable page with a 4xx, 502 or 503 status and a
//!   `federation_refused` audit event, and no session or account is created.

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use authx_core::Timestamp;
use authx_core::auth::AuthError;
use authx_core::federation::{
    self, AccountRules, Completed, FederationError, MAX_SUBJECT_LEN, UpstreamIdentity,
    record_refusal,
};
use authx_core::replay::MarkKind;
use authx_core::user::canonical_email;
use authx_saml::{
    AuthnRequest, Expectations, Limits, NameIdFormat, SpMetadata, VerifiedAssertion,
    decode_post_binding, verify_response,
};

use super::error::federation::{failed, unknown_provider};
use super::extract::CurrentSession;
use super::federation::{browser, relying_party, start_return_to};
use super::signin::{safe_return_to, signed_in_redirect};
use crate::config::SamlProvider;
use crate::cookies::append_cookie;
use crate::state::AppState;

/// Clock skew allowed on the assertion's times.
const SKEW_SECS: i64 = 120;

/// NameID formats this SP accepts, most preferred first (published in its metadata).
const NAME_ID_FORMATS: &[&str] = &[
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
];

/// Attributes read for the email when none is configured and the NameID is not an address.
const EMAIL_ATTRIBUTES: &[&str] = &["urn:oid:0.9.2342.19200300.100.1.3", "email", "mail"];

/// The SAML routes. The ACS must not sit behind the origin check (the IdP's page posts to it
/// from another site); every other route here is a GET.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/federation/saml/{provider}/metadata", get(metadata_get))
        .route("/federation/saml/{provider}/start", get(start_get))
        .route(
            "/federation/saml/{provider}/acs",
            axum::routing::post(acs_post),
        )
        .route("/federation/saml/{provider}/finish", get(finish_get))
}

/// One configured SAML provider with this server's URLs for it.
struct Sp {
    provider: SamlProvider,
    entity_id: String,
    acs_url: String,
}

fn sp(state: &AppState, name: &str) -> Option<Sp> {
    let provider = state.config.saml.iter().find(|p| p.name == name)?.clone();
    let base = format!("{}/federation/saml/{}", state.config.issuer, provider.name);
    Some(Sp {
        provider,
        entity_id: format!("{base}/metadata"),
        acs_url: format!("{base}/acs"),
    })
}

async fn metadata_get(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(sp) = sp(&state, &name) else {
        return unknown_provider();
    };
    let certificate = state.saml_keys.as_ref().map(|k| k.certificate_der());
    let xml = SpMetadata {
        entity_id: &sp.entity_id,
        acs_url: &sp.acs_url,
        signing_certificate: certificate.filter(|_| sp.provider.sign_authn_requests),
        encryption_certificate: certificate,
        name_id_formats: NAME_ID_FORMATS,
    }
    .to_xml();
    let mut res = (StatusCode::OK, xml).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    res
}

async fn start_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    current: CurrentSession,
    uri: axum::http::Uri,
) -> Response {
    let Some(sp) = sp(&state, &name) else {
        return unknown_provider();
    };
    let p = &sp.provider;
    let return_to = safe_return_to(uri.query().and_then(start_return_to).as_deref());
    let started = async {
        let signing_key = match (&state.saml_keys, p.sign_authn_requests) {
            (Some(keys), true) => Some(keys.signing_key()),
            (None, true) => {
                return Err(FederationError::Assertion(
                    "the SAML SP key is not loaded, so the request cannot be signed".into(),
                ));
            }
            (_, false) => None,
        };
        let id = AuthnRequest::new_id()
            .map_err(|e| FederationError::Assertion(format!("no request id: {e}")))?;
        let (relay_state, binding) = relying_party(&state)
            .open(
                &p.name,
                &p.idp_entity_id,
                current.federation_binding,
                &id,
                return_to,
            )
            .await?;
        let location = AuthnRequest {
            id: &id,
            issue_instant: state.auth.clock().now().secs(),
            sp_entity_id: &sp.entity_id,
            acs_url: &sp.acs_url,
            idp_sso_url: &p.sso_url,
            name_id_format: None,
            force_authn: false,
        }
        .redirect_url(Some(relay_state.expose()), signing_key)
        .map_err(|e| FederationError::Assertion(e.to_string()))?;
        Ok::<_, FederationError>((location, binding))
    }
    .await;
    match started {
        Ok((location, binding)) => {
            let mut res = Redirect::to(&location).into_response();
            let cookie = state
                .cookies
                .set_federation_binding(binding.expose(), federation::TRANSACTION_TTL_SECS);
            append_cookie(res.headers_mut(), &cookie);
            res
        }
        Err(e) => failed(&p.display_name, &e),
    }
}

/// The HTTP-POST binding's form (SAML bindings §3.5.4).
#[derive(Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn acs_post(
    State(state): State<AppState>,
    Path(name): Path<String>,
    form: Result<Form<AcsForm>, FormRejection>,
) -> Response {
    let Some(sp) = sp(&state, &name) else {
        return unknown_provider();
    };
    let p = &sp.provider;
    let parked = async {
        let Form(form) = form.map_err(|_| FederationError::Malformed)?;
        // Only what fits the limits and decodes is kept; it is verified in `finish`.
        decode_post_binding(&form.saml_response, &Limits::default())
            .map_err(|e| FederationError::Assertion(e.to_string()))?;
        relying_party(&state)
            .park_answer(
                &p.name,
                &p.idp_entity_id,
                form.relay_state.as_deref(),
                form.saml_response,
            )
            .await
    }
    .await;
    match parked {
        Ok(id) => Redirect::to(&format!(
            "/federation/saml/{}/finish?id={}",
            p.name,
            id.expose()
        ))
        .into_response(),
        Err(e) => {
            if matches!(
                e,
                FederationError::Malformed | FederationError::Assertion(_)
            ) {
                record_refusal(&p.name, &e);
            }
            failed(&p.display_name, &e)
        }
    }
}

async fn finish_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    current: CurrentSession,
    uri: axum::http::Uri,
) -> Response {
    let Some(sp) = sp(&state, &name) else {
        return unknown_provider();
    };
    let p = &sp.provider;
    let id = uri.query().and_then(single_id);
    let rp = relying_party(&state);
    let t = match rp
        .take_answer(&p.name, &p.idp_entity_id, id.as_deref(), browser(&current))
        .await
    {
        Ok(t) => t,
        Err(e) => return failed(&p.display_name, &e),
    };
    let done = async {
        let identity = verified_identity(&state, &sp, &t.pkce_verifier, &t.nonce).await?;
        let rules = AccountRules {
            allow_sign_up: p.allow_sign_up,
            trust_mfa: false,
        };
        rp.conclude(&identity, rules, browser(&current), t.return_to)
            .await
    }
    .await;
    if let Err(e) = &done {
        record_refusal(&p.name, e);
    }
    match done {
        Ok(Completed::SignedIn { signed, return_to }) => {
            signed_in_redirect(&state, &signed, &return_to)
        }
        Err(FederationError::SignIn(AuthError::SecondFactorRequired(c))) => {
            super::pages::mfa::challenge_page(&state, &current, &c)
        }
        Ok(Completed::ProveControl { token }) => {
            let mut res = Redirect::to("/federation/link").into_response();
            let cookie = state
                .cookies
                .set_federation_link(token.expose(), federation::PENDING_LINK_TTL_SECS);
            append_cookie(res.headers_mut(), &cookie);
            res
        }
        Err(e) => failed(&p.display_name, &e),
    }
}

/// Verifies the parked response against this browser's own request and maps the assertion to
/// an upstream identity; its id is marked as used in the shared replay cache.
async fn verified_identity(
    state: &AppState,
    sp: &Sp,
    form_value: &str,
    request_id: &str,
) -> Result<UpstreamIdentity, FederationError> {
    let p = &sp.provider;
    let now = state.auth.clock().now();
    let limits = Limits::default();
    let invalid = |e: authx_saml::SamlError| FederationError::Assertion(e.to_string());
    let xml = decode_post_binding(form_value, &limits).map_err(invalid)?;
    let v = verify_response(
        &xml,
        &Expectations {
            idp_entity_id: &p.idp_entity_id,
            idp_keys: &p.keys,
            sp_entity_id: &sp.entity_id,
            acs_url: &sp.acs_url,
            in_response_to: Some(request_id),
            now: now.secs(),
            skew_seconds: SKEW_SECS,
            allow_signed_response_only: p.allow_signed_response_only,
            sp_decryption_keys: state
                .saml_keys
                .as_ref()
                .map_or(&[], |k| k.decryption_keys()),
            limits,
        },
    )
    .map_err(invalid)?;
    if p.require_encrypted_assertions && !v.encrypted {
        return Err(FederationError::Assertion(
            "the assertion is not encrypted, and this provider requires encrypted assertions"
                .into(),
        ));
    }
    let first = state
        .saml_marks
        .first_use(
            MarkKind::SamlAssertion,
            &p.idp_entity_id,
            &v.assertion_id,
            now,
            Timestamp(v.not_on_or_after.saturating_add(SKEW_SECS)),
        )
        .await?;
    if !first {
        return Err(FederationError::Replayed);
    }
    let subject = subject_of(p, &v)?;
    Ok(UpstreamIdentity {
        provider: p.name.clone(),
        email: email_of(p, &v),
        email_verified: p.emails_verified,
        issuer: v.issuer,
        subject,
        upstream_mfa: false,
    })
}

/// The stable subject: the one value of the configured `subject_attribute`, else the NameID,
/// which must then not be transient (a transient NameID changes at every sign-in).
fn subject_of(p: &SamlProvider, v: &VerifiedAssertion) -> Result<String, FederationError> {
    let Some(name) = &p.subject_attribute else {
        if v.name_id_format == NameIdFormat::Transient {
            return Err(FederationError::Refused(federation::Refusal::NotPersistent));
        }
        return Ok(v.name_id.clone());
    };
    match v.attribute(name) {
        Some([value])
            if !value.is_empty()
                && value.len() <= MAX_SUBJECT_LEN
                && !value.chars().any(char::is_control) =>
        {
            Ok(value.clone())
        }
        Some([_]) => Err(FederationError::Assertion(format!(
            "the subject attribute {name:?} is empty, longer than {MAX_SUBJECT_LEN} bytes or \
             holds control characters"
        ))),
        Some([_, _, ..]) => Err(FederationError::Assertion(format!(
            "the subject attribute {name:?} has several values"
        ))),
        Some([]) | None => Err(FederationError::Assertion(format!(
            "the assertion has no subject attribute {name:?}"
        ))),
    }
}

/// The assertion's email address, canonicalized: the configured attribute, else an
/// `emailAddress` NameID, else the usual attributes.
fn email_of(p: &SamlProvider, v: &VerifiedAssertion) -> Option<String> {
    let first = |name: &str| v.attribute(name).and_then(|vals| vals.first()).cloned();
    let raw = match &p.email_attribute {
        Some(a) => first(a),
        None if v.name_id_format == NameIdFormat::EmailAddress => Some(v.name_id.clone()),
        None => EMAIL_ATTRIBUTES.iter().find_map(|a| first(a)),
    }?;
    canonical_email(&raw).ok()
}

/// The `id` of the finish step's query; a repeated one counts as none.
fn single_id(raw: &str) -> Option<String> {
    let mut values = form_urlencoded::parse(raw.as_bytes()).filter(|(k, _)| k == "id");
    match (values.next(), values.next()) {
        (Some((_, v)), None) => Some(v.into_owned()),
        _ => None,
    }
}
