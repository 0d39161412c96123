//! Verifying a SAML 2.0 `Response` received through the HTTP-POST binding (Web Browser SSO
//! profile, SAML profiles §4.1).

use base64::Engine as _;
use roxmltree::{Document, Node};

use crate::encrypted::{self, DecryptionKey};
use crate::keys::PinnedKey;
use crate::xml::{
    self, Limits, NS_ASSERTION, NS_DSIG, NS_PROTOCOL, attr, children, elements, is, one_child,
    optional_child, text_content, trimmed_text,
};
use crate::{SamlError, dsig, time};

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const ENTITY: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";

/// What a response must match: who may have sent it, to whom, for which request, and when.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The IdP's entity id: the assertion's `Issuer` (and the response's, when present).
    pub idp_entity_id: &'a str,
    /// The IdP's pinned signing keys; a signature must verify with one of them.
    pub idp_keys: &'a [PinnedKey],
    /// Our SP entity id: must be an `Audience` in every `AudienceRestriction`.
    pub sp_entity_id: &'a str,
    /// Our assertion consumer service URL: the response's `Destination` and the bearer
    /// confirmation's `Recipient`.
    pub acs_url: &'a str,
    /// The ID of the AuthnRequest this browser is waiting for. `None` accepts only an
    /// unsolicited (IdP-initiated) response, which then must not carry `InResponseTo`.
    pub in_response_to: Option<&'a str>,
    /// The current time, Unix seconds.
    pub now: i64,
    /// Allowed clock difference to the IdP, seconds (a minute or two).
    pub skew_seconds: i64,
    /// Accept an unsigned assertion inside a signed response. Off unless the IdP can sign only
    /// the response.
    pub allow_signed_response_only: bool,
    /// Our decryption keys for encrypted assertions; empty refuses them.
    pub sp_decryption_keys: &'a [DecryptionKey],
    /// Size limits for the document (and for a decrypted assertion).
    pub limits: Limits,
}

/// A NameID format (SAML core §8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameIdFormat {
    /// `...:2.0:nameid-format:persistent`: a stable, pairwise identifier.
    Persistent,
    /// `...:1.1:nameid-format:emailAddress`.
    EmailAddress,
    /// `...:2.0:nameid-format:transient`: changes every login; never use it to link accounts.
    Transient,
    /// `...:1.1:nameid-format:unspecified`, or no `Format` attribute.
    Unspecified,
    /// Any other format URI.
    Other(String),
}

impl NameIdFormat {
    fn from_uri(uri: Option<&str>) -> Self {
        match uri {
            None | Some("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified") => {
                Self::Unspecified
            }
            Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent") => Self::Persistent,
            Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress") => Self::EmailAddress,
            Some("urn:oasis:names:tc:SAML:2.0:nameid-format:transient") => Self::Transient,
            Some(other) => Self::Other(other.to_owned()),
        }
    }

    /// False for transient NameIDs, which must never identify an account across logins.
    pub fn is_stable(&self) -> bool {
        !matches!(self, Self::Transient)
    }
}

/// A SAML attribute from an `AttributeStatement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// `Name` (often a URI or an OID URN).
    pub name: String,
    /// `NameFormat`, if given.
    pub name_format: Option<String>,
    /// `FriendlyName`, if given (informational only; map on `name`).
    pub friendly_name: Option<String>,
    /// The text of each `AttributeValue`, in document order.
    pub values: Vec<String>,
}

/// Which signature vouched for the assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedBy {
    /// The assertion's own signature (the response's, if any, verified too).
    Assertion,
    /// Only the enclosing response's signature (allowed by
    /// [`Expectations::allow_signed_response_only`]).
    ResponseOnly,
}

/// The data of a verified assertion, read from the same parsed node the signature covered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedAssertion {
    /// The IdP entity id (the assertion's `Issuer`).
    pub issuer: String,
    /// The assertion's `ID`: the key for the replay cache.
    pub assertion_id: String,
    /// The response's `ID`.
    pub response_id: String,
    /// `InResponseTo` (equal to the expected request ID, or `None` for unsolicited responses).
    pub in_response_to: Option<String>,
    /// The `NameID` value: the whole text content, comments never cut it short.
    pub name_id: String,
    /// The NameID format; refuse [`NameIdFormat::Transient`] for linking.
    pub name_id_format: NameIdFormat,
    /// `NameQualifier`, if given.
    pub name_qualifier: Option<String>,
    /// `SPNameQualifier`, if given.
    pub sp_name_qualifier: Option<String>,
    /// `SessionIndex` of the first `AuthnStatement`, if given.
    pub session_index: Option<String>,
    /// `AuthnInstant` of the first `AuthnStatement`, Unix seconds.
    pub authn_instant: i64,
    /// `AuthnContextClassRef`, if given.
    pub authn_context_class: Option<String>,
    /// Every attribute of every `AttributeStatement`, in document order.
    pub attributes: Vec<Attribute>,
    /// Unix seconds after which the assertion can no longer be accepted (the earliest
    /// `NotOnOrAfter` of the bearer confirmation and the conditions): keep the assertion ID in
    /// the replay cache until then (plus the skew).
    pub not_on_or_after: i64,
    /// Which signature vouched for the data.
    pub signed_by: SignedBy,
    /// Whether the assertion arrived as an `EncryptedAssertion` (decrypted with one of
    /// [`Expectations::sp_decryption_keys`]), for callers that require encryption.
    pub encrypted: bool,
}

impl VerifiedAssertion {
    /// The values of the attribute named `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&[String]> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.values.as_slice())
    }
}

/// Decodes the `SAMLResponse` form field of the HTTP-POST binding (SAML bindings §3.5.4:
/// base64, line breaks allowed) and checks the decoded size against `limits`.
///
/// # Errors
/// [`SamlError::TooLarge`] before decoding when the text cannot fit, [`SamlError::Base64`].
pub fn decode_post_binding(form_value: &str, limits: &Limits) -> Result<Vec<u8>, SamlError> {
    // Base64 is 4/3 of the bytes plus line breaks; twice the limit is a generous bound that
    // stops a huge field before any decoding work.
    if form_value.len() > limits.max_bytes.saturating_mul(2) {
        return Err(SamlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let compact: String = form_value
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SamlError::Base64("SAMLResponse"))?;
    if bytes.len() > limits.max_bytes {
        return Err(SamlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    Ok(bytes)
}

/// Verifies a SAML `Response` (the XML, already base64-decoded) and returns its assertion.
///
/// The document is parsed once; signatures are verified over nodes of that tree and the data
/// is read from the node that was signed. See the crate documentation for the list of checks.
///
/// # Errors
/// A [`SamlError`] naming the first rule the response breaks.
///
/// # Security
/// The caller still owns two checks: the returned `assertion_id` must be recorded in a replay
/// cache until `not_on_or_after` (and refused if already there), and the expected
/// `in_response_to` must be taken from the browser's own pending request, one time only.
pub fn verify_response(
    xml_bytes: &[u8],
    exp: &Expectations<'_>,
) -> Result<VerifiedAssertion, SamlError> {
    let doc = xml::parse(xml_bytes, &exp.limits)?;
    verify_document(&doc, exp)
}

fn verify_document(
    doc: &Document<'_>,
    exp: &Expectations<'_>,
) -> Result<VerifiedAssertion, SamlError> {
    let response = doc.root_element();
    if !is(response, NS_PROTOCOL, "Response") {
        return Err(SamlError::UnexpectedRoot {
            expected: "samlp:Response",
        });
    }
    if attr(response, "Version") != Some("2.0") {
        return Err(SamlError::Version);
    }
    unique_ids(doc)?;
    check_status(response)?;

    // Exactly one assertion, plain or encrypted, in the whole document, as a direct child of
    // the response: wrapped copies (in Extensions, in a ds:Object, inside another assertion)
    // are all counted.
    let assertions: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| is(*n, NS_ASSERTION, "Assertion") || is(*n, NS_ASSERTION, "EncryptedAssertion"))
        .collect();
    let [assertion] = assertions.as_slice() else {
        return Err(SamlError::AssertionCount {
            found: assertions.len(),
        });
    };
    let assertion = *assertion;
    if assertion.parent_element() != Some(response) {
        return Err(SamlError::Unexpected(
            "assertion outside the response's children",
        ));
    }

    // Signatures only as direct children of the response or the (plain) assertion, one each.
    let mut response_sig = None;
    let mut assertion_sig = None;
    for sig in doc.descendants().filter(|n| is(*n, NS_DSIG, "Signature")) {
        let slot = match sig.parent_element() {
            Some(p) if p == response => &mut response_sig,
            Some(p) if p == assertion && is(p, NS_ASSERTION, "Assertion") => &mut assertion_sig,
            _ => return Err(SamlError::MisplacedSignature),
        };
        if slot.replace(sig).is_some() {
            return Err(SamlError::MisplacedSignature);
        }
    }
    // Every signature present must verify, even one that is not needed.
    if let Some(sig) = response_sig {
        if dsig::verify(sig, exp.idp_keys)? != response {
            return Err(SamlError::ReferenceMismatch);
        }
    }

    if is(assertion, NS_ASSERTION, "EncryptedAssertion") {
        return verify_encrypted(response, assertion, response_sig.is_some(), exp);
    }
    let signed_by = assertion_signature(assertion, assertion_sig, response_sig.is_some(), exp)?;
    check_response(response, exp)?;
    read_assertion(response, assertion, exp, signed_by)
}

/// Verifies the assertion's own signature, or decides whether the response's may stand in.
fn assertion_signature(
    assertion: Node<'_, '_>,
    signature: Option<Node<'_, '_>>,
    response_signed: bool,
    exp: &Expectations<'_>,
) -> Result<SignedBy, SamlError> {
    match signature {
        Some(sig) => {
            // `verify` returns the node it digested; it is the node read afterwards.
            if dsig::verify(sig, exp.idp_keys)? != assertion {
                return Err(SamlError::ReferenceMismatch);
            }
            Ok(SignedBy::Assertion)
        }
        None if response_signed && exp.allow_signed_response_only => Ok(SignedBy::ResponseOnly),
        None if !response_signed && exp.allow_signed_response_only => Err(SamlError::NotSigned),
        None => Err(SamlError::AssertionNotSigned),
    }
}

/// Decrypts the assertion and verifies and reads it from the tree of the decrypted bytes.
///
/// The plaintext is a serialized element whose prefixes may be declared on the ancestors of
/// `EncryptedAssertion`; it is parsed inside an element carrying those declarations. This is a
/// parse of new bytes (the plaintext), not a second parse of the response: the assertion is
/// verified and read from this one tree.
fn verify_encrypted(
    response: Node<'_, '_>,
    encrypted: Node<'_, '_>,
    response_signed: bool,
    exp: &Expectations<'_>,
) -> Result<VerifiedAssertion, SamlError> {
    if exp.sp_decryption_keys.is_empty() {
        return Err(SamlError::EncryptedAssertionUnsupported);
    }
    let plaintext = encrypted::decrypt(encrypted, exp.sp_decryption_keys, exp.limits.max_bytes)?;
    let plaintext = strip_xml_declaration(&plaintext);
    let mut wrapped = String::from("<authx-decrypted");
    for ns in encrypted.namespaces() {
        if ns.name() == Some("xml") {
            continue;
        }
        match ns.name() {
            Some(prefix) => {
                wrapped.push_str(&format!(" xmlns:{prefix}=\"{}\"", xml::escape(ns.uri())))
            }
            None => wrapped.push_str(&format!(" xmlns=\"{}\"", xml::escape(ns.uri()))),
        }
    }
    wrapped.push('>');
    wrapped.push_str(plaintext);
    wrapped.push_str("</authx-decrypted>");
    let inner = xml::parse(wrapped.as_bytes(), &exp.limits)?;
    unique_ids(&inner)?;
    let top: Vec<Node<'_, '_>> = elements(inner.root_element()).collect();
    let all = inner
        .descendants()
        .filter(|n| is(*n, NS_ASSERTION, "Assertion") || is(*n, NS_ASSERTION, "EncryptedAssertion"))
        .count();
    let [assertion] = top.as_slice() else {
        return Err(SamlError::AssertionCount { found: all });
    };
    let assertion = *assertion;
    if !is(assertion, NS_ASSERTION, "Assertion") || all != 1 {
        return Err(SamlError::AssertionCount { found: all });
    }
    if inner.root_element().children().any(|c| {
        c.is_text()
            && !c
                .text()
                .unwrap_or("")
                .trim_matches(xml::is_xml_space)
                .is_empty()
    }) {
        return Err(SamlError::Unexpected("text around the decrypted assertion"));
    }
    let mut signature = None;
    for sig in inner.descendants().filter(|n| is(*n, NS_DSIG, "Signature")) {
        if sig.parent_element() != Some(assertion) || signature.replace(sig).is_some() {
            return Err(SamlError::MisplacedSignature);
        }
    }
    let signed_by = assertion_signature(assertion, signature, response_signed, exp)?;
    check_response(response, exp)?;
    let mut verified = read_assertion(response, assertion, exp, signed_by)?;
    verified.encrypted = true;
    Ok(verified)
}

/// Drops a leading `<?xml ...?>` declaration some encrypters serialize with the element.
fn strip_xml_declaration(text: &str) -> &str {
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    match trimmed
        .strip_prefix("<?xml ")
        .and_then(|rest| rest.split_once("?>"))
    {
        Some((_, rest)) => rest,
        None => text,
    }
}

/// Refuses a document in which two elements carry the same ID (`ID`, `Id` or `id`, in any
/// namespace), so that no reference can be resolved to two different elements.
fn unique_ids(doc: &Document<'_>) -> Result<(), SamlError> {
    let mut seen = std::collections::HashSet::new();
    for node in doc.descendants().filter(Node::is_element) {
        for a in node.attributes() {
            if matches!(a.name(), "ID" | "Id" | "id") && !seen.insert(a.value()) {
                return Err(SamlError::DuplicateId);
            }
        }
    }
    Ok(())
}

/// The response's own fields: Destination, Issuer, Status, InResponseTo.
fn check_response(response: Node<'_, '_>, exp: &Expectations<'_>) -> Result<(), SamlError> {
    if attr(response, "ID").is_none_or(str::is_empty) {
        return Err(SamlError::Missing("Response ID"));
    }
    if attr(response, "Destination") != Some(exp.acs_url) {
        return Err(SamlError::WrongDestination);
    }
    if let Some(issuer) = optional_child(response, NS_ASSERTION, "Issuer", "Response Issuer")? {
        check_issuer(issuer, exp)?;
    }
    check_in_response_to(attr(response, "InResponseTo"), exp)?;
    time::parse(
        attr(response, "IssueInstant").ok_or(SamlError::Missing("IssueInstant"))?,
        "IssueInstant",
    )?;

    Ok(())
}

/// The top-level status (SAML core §3.2.2.2). Checked before anything else is required, so an
/// IdP's refusal (e.g. `Responder / AuthnFailed`, which carries no assertion) is reported as
/// such; it is unauthenticated and only ever turns a response into a refusal.
fn check_status(response: Node<'_, '_>) -> Result<(), SamlError> {
    let status = one_child(response, NS_PROTOCOL, "Status", "samlp:Status")?;
    let code = one_child(status, NS_PROTOCOL, "StatusCode", "samlp:StatusCode")?;
    let value = attr(code, "Value").ok_or(SamlError::Missing("StatusCode Value"))?;
    if value != SUCCESS {
        let sub = children(code, NS_PROTOCOL, "StatusCode").find_map(|c| attr(c, "Value"));
        return Err(SamlError::Status(match sub {
            Some(sub) => format!("{value} / {sub}"),
            None => value.to_owned(),
        }));
    }
    Ok(())
}

fn check_issuer(issuer: Node<'_, '_>, exp: &Expectations<'_>) -> Result<(), SamlError> {
    if attr(issuer, "Format").is_some_and(|f| f != ENTITY) {
        return Err(SamlError::WrongIssuer);
    }
    if trimmed_text(issuer, "Issuer")? != exp.idp_entity_id {
        return Err(SamlError::WrongIssuer);
    }
    Ok(())
}

fn check_in_response_to(value: Option<&str>, exp: &Expectations<'_>) -> Result<(), SamlError> {
    match (value, exp.in_response_to) {
        (None, None) => Ok(()),
        // A solicited response may omit it on the Response element; the bearer confirmation
        // must carry it (`check_confirmation`).
        (None, Some(_)) => Ok(()),
        (Some(got), Some(want)) if got == want => Ok(()),
        _ => Err(SamlError::WrongInResponseTo),
    }
}

fn check_window(
    not_before: Option<i64>,
    not_on_or_after: Option<i64>,
    exp: &Expectations<'_>,
) -> Result<(), SamlError> {
    if not_before.is_some_and(|nb| exp.now.saturating_add(exp.skew_seconds) < nb) {
        return Err(SamlError::NotYetValid);
    }
    if not_on_or_after.is_some_and(|na| exp.now.saturating_sub(exp.skew_seconds) >= na) {
        return Err(SamlError::Expired);
    }
    Ok(())
}

fn time_attr(node: Node<'_, '_>, name: &'static str) -> Result<Option<i64>, SamlError> {
    attr(node, name).map(|v| time::parse(v, name)).transpose()
}

fn read_assertion(
    response: Node<'_, '_>,
    assertion: Node<'_, '_>,
    exp: &Expectations<'_>,
    signed_by: SignedBy,
) -> Result<VerifiedAssertion, SamlError> {
    if attr(assertion, "Version") != Some("2.0") {
        return Err(SamlError::Version);
    }
    let assertion_id = attr(assertion, "ID")
        .filter(|v| !v.is_empty())
        .ok_or(SamlError::Missing("Assertion ID"))?;
    time::parse(
        attr(assertion, "IssueInstant").ok_or(SamlError::Missing("IssueInstant"))?,
        "IssueInstant",
    )?;
    // Schema order: Issuer comes first.
    if elements(assertion)
        .next()
        .is_none_or(|n| !is(n, NS_ASSERTION, "Issuer"))
    {
        return Err(SamlError::Missing(
            "saml:Issuer as the assertion's first child",
        ));
    }
    check_issuer(
        one_child(assertion, NS_ASSERTION, "Issuer", "saml:Issuer")?,
        exp,
    )?;

    // Subject: one NameID, at least one usable bearer confirmation.
    let subject = one_child(assertion, NS_ASSERTION, "Subject", "saml:Subject")?;
    if elements(subject)
        .any(|n| is(n, NS_ASSERTION, "EncryptedID") || is(n, NS_ASSERTION, "BaseID"))
    {
        return Err(SamlError::Unexpected(
            "EncryptedID or BaseID (only NameID is supported)",
        ));
    }
    let name_id = one_child(subject, NS_ASSERTION, "NameID", "saml:NameID")?;
    let name_id_value = text_content(name_id, "NameID")?;
    if name_id_value.trim_matches(xml::is_xml_space).is_empty() {
        return Err(SamlError::Missing("NameID value"));
    }
    let confirmation_expiry = check_bearer(subject, exp)?;

    // Conditions: time window and audience.
    let conditions = one_child(assertion, NS_ASSERTION, "Conditions", "saml:Conditions")?;
    let cond_nb = time_attr(conditions, "NotBefore")?;
    let cond_na = time_attr(conditions, "NotOnOrAfter")?;
    check_window(cond_nb, cond_na, exp)?;
    let mut restrictions = 0;
    for c in elements(conditions) {
        if is(c, NS_ASSERTION, "AudienceRestriction") {
            restrictions += 1;
            let mut audiences = children(c, NS_ASSERTION, "Audience");
            if !audiences.any(|a| trimmed_text(a, "Audience").is_ok_and(|v| v == exp.sp_entity_id))
            {
                return Err(SamlError::WrongAudience);
            }
        } else if is(c, NS_ASSERTION, "OneTimeUse") || is(c, NS_ASSERTION, "ProxyRestriction") {
            // OneTimeUse is what the replay cache enforces; ProxyRestriction limits IdPs, not us.
        } else {
            // SAML core §2.5.1: an unknown condition makes the assertion invalid for us.
            return Err(SamlError::Unexpected("unknown condition"));
        }
    }
    if restrictions == 0 {
        // Web SSO profile §4.1.4.2: the assertion MUST contain an AudienceRestriction.
        return Err(SamlError::WrongAudience);
    }

    // Authentication statement.
    let authn = children(assertion, NS_ASSERTION, "AuthnStatement")
        .next()
        .ok_or(SamlError::Missing("saml:AuthnStatement"))?;
    let authn_instant = time::parse(
        attr(authn, "AuthnInstant").ok_or(SamlError::Missing("AuthnInstant"))?,
        "AuthnInstant",
    )?;
    check_window(None, time_attr(authn, "SessionNotOnOrAfter")?, exp)?;
    let authn_context_class =
        match optional_child(authn, NS_ASSERTION, "AuthnContext", "saml:AuthnContext")? {
            Some(ctx) => optional_child(
                ctx,
                NS_ASSERTION,
                "AuthnContextClassRef",
                "saml:AuthnContextClassRef",
            )?
            .map(|n| trimmed_text(n, "AuthnContextClassRef"))
            .transpose()?,
            None => None,
        };

    let mut attributes = Vec::new();
    for statement in children(assertion, NS_ASSERTION, "AttributeStatement") {
        for a in elements(statement) {
            if !is(a, NS_ASSERTION, "Attribute") {
                return Err(SamlError::Unexpected(
                    "EncryptedAttribute or unknown element in AttributeStatement",
                ));
            }
            let name = attr(a, "Name").ok_or(SamlError::Missing("Attribute Name"))?;
            let values = children(a, NS_ASSERTION, "AttributeValue")
                .map(|v| text_content(v, "AttributeValue"))
                .collect::<Result<Vec<_>, _>>()?;
            attributes.push(Attribute {
                name: name.to_owned(),
                name_format: attr(a, "NameFormat").map(str::to_owned),
                friendly_name: attr(a, "FriendlyName").map(str::to_owned),
                values,
            });
        }
    }

    let not_on_or_after = match cond_na {
        Some(c) => c.min(confirmation_expiry),
        None => confirmation_expiry,
    };
    Ok(VerifiedAssertion {
        issuer: exp.idp_entity_id.to_owned(),
        assertion_id: assertion_id.to_owned(),
        response_id: attr(response, "ID").unwrap_or_default().to_owned(),
        in_response_to: exp.in_response_to.map(str::to_owned),
        name_id: name_id_value,
        name_id_format: NameIdFormat::from_uri(attr(name_id, "Format")),
        name_qualifier: attr(name_id, "NameQualifier").map(str::to_owned),
        sp_name_qualifier: attr(name_id, "SPNameQualifier").map(str::to_owned),
        session_index: attr(authn, "SessionIndex").map(str::to_owned),
        authn_instant,
        authn_context_class,
        attributes,
        not_on_or_after,
        signed_by,
        encrypted: false,
    })
}

/// Web SSO profile §4.1.4.2: at least one bearer `SubjectConfirmation` whose data names our
/// ACS as `Recipient`, has not expired, and answers the pending request. Returns its
/// `NotOnOrAfter`. If none qualifies, the first bearer confirmation's failure is reported.
fn check_bearer(subject: Node<'_, '_>, exp: &Expectations<'_>) -> Result<i64, SamlError> {
    let mut first_error = None;
    for confirmation in children(subject, NS_ASSERTION, "SubjectConfirmation") {
        if attr(confirmation, "Method") != Some(BEARER) {
            continue;
        }
        match check_confirmation(confirmation, exp) {
            Ok(expiry) => return Ok(expiry),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(SamlError::SubjectConfirmation("no bearer confirmation")))
}

fn check_confirmation(
    confirmation: Node<'_, '_>,
    exp: &Expectations<'_>,
) -> Result<i64, SamlError> {
    let data = one_child(
        confirmation,
        NS_ASSERTION,
        "SubjectConfirmationData",
        "saml:SubjectConfirmationData",
    )?;
    if attr(data, "Recipient") != Some(exp.acs_url) {
        return Err(SamlError::WrongRecipient);
    }
    let not_on_or_after = time_attr(data, "NotOnOrAfter")?
        .ok_or(SamlError::SubjectConfirmation("no NotOnOrAfter"))?;
    check_window(time_attr(data, "NotBefore")?, Some(not_on_or_after), exp)?;
    match (attr(data, "InResponseTo"), exp.in_response_to) {
        (Some(got), Some(want)) if got == want => {}
        (None, None) => {}
        _ => return Err(SamlError::WrongInResponseTo),
    }
    Ok(not_on_or_after)
}
