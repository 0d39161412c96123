//! A test IdP: builds SAML responses and signs them the way IdPs do (enveloped signature,
//! exclusive C14N, RSA or ECDSA with aws-lc-rs).
//!
//! The XML is written already in canonical form (attributes sorted, namespaces declared where
//! exclusive C14N renders them, no empty-element tags), so the digest and the signature are
//! computed over these literal bytes: the library's own canonicalizer is not used to sign, and a
//! disagreement between the two fails the tests.

use authx_saml::{Expectations, Limits, PinnedKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;

pub(crate) const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const NS_SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(crate) const IDP: &str = "https://idp.example.org/metadata";
pub(crate) const SP: &str = "https://authx.example.com/federation/saml/corp/metadata";
pub(crate) const ACS: &str = "https://authx.example.com/federation/saml/corp/acs";
pub(crate) const REQUEST_ID: &str = "_req-7c1e";
pub(crate) const NOW: i64 = 1_764_928_800; // 2025-12-05T10:00:00Z
pub(crate) const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub(crate) const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub(crate) const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub(crate) const RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
pub(crate) const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub(crate) const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub(crate) const SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";

pub(crate) fn time(unix: i64) -> String {
    // Good enough for the dates the tests use (2025/2026, UTC).
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (mut y, mut d) = (1970, days);
    loop {
        let len = if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
            366
        } else {
            365
        };
        if d < len {
            break;
        }
        d -= len;
        y += 1;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let months = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut m = 0;
    while d >= months[m] {
        d -= months[m];
        m += 1;
    }
    format!(
        "{y:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        m + 1,
        d + 1,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// An IdP signing key.
pub(crate) enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl Key {
    pub(crate) fn rsa() -> Self {
        Key::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }
    pub(crate) fn ec() -> Self {
        Key::Ec(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }
    pub(crate) fn from_pem(pem: &str) -> Self {
        let der = pem_body(pem);
        match RsaKeyPair::from_pkcs8(&der) {
            Ok(k) => Key::Rsa(k),
            Err(_) => Key::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .unwrap(),
            ),
        }
    }
    /// The public key, pinned the way an administrator would pin it.
    pub(crate) fn pinned(&self) -> PinnedKey {
        let der = match self {
            Key::Rsa(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            Key::Ec(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
        };
        PinnedKey::from_spki_der(&der).unwrap()
    }
    pub(crate) fn default_alg(&self) -> &'static str {
        match self {
            Key::Rsa(_) => RSA_SHA256,
            Key::Ec(_) => ECDSA_SHA256,
        }
    }
    pub(crate) fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::Rsa(k) => {
                let padding: &dyn signature::RsaEncoding = match alg {
                    RSA_SHA512 => &signature::RSA_PKCS1_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
            Key::Ec(k) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }
}

pub(crate) fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How to sign one element.
#[derive(Clone)]
pub(crate) struct SigSpec {
    pub(crate) sig_alg: String,
    pub(crate) digest_alg: String,
    /// The canonicalization URI in SignedInfo and in the second transform.
    pub c14n: String,
    /// Extra transforms text, replacing the standard two if set.
    pub(crate) transforms: Option<String>,
    /// Reference URI; default `#` + the element's ID.
    pub(crate) uri: Option<String>,
    /// An InclusiveNamespaces PrefixList on the C14N transform.
    pub(crate) prefix_list: Option<String>,
}

impl SigSpec {
    pub(crate) fn for_key(key: &Key) -> Self {
        SigSpec {
            sig_alg: key.default_alg().into(),
            digest_alg: SHA256.into(),
            c14n: EXC_C14N.into(),
            transforms: None,
            uri: None,
            // The assertion's `xsi:type="xs:string"` uses xs only inside an attribute value, so
            // IdPs list it as an inclusive namespace.
            prefix_list: Some("xs".into()),
        }
    }
}

fn digest(alg: &str, data: &[u8]) -> Vec<u8> {
    let alg = match alg {
        SHA512 => &aws_lc_rs::digest::SHA512,
        "http://www.w3.org/2000/09/xmldsig#sha1" => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        _ => &aws_lc_rs::digest::SHA256,
    };
    aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
}

/// Signs `element` (canonical text of an element with `ID="id"` whose first child is
/// `<saml:Issuer>`), inserting the enveloped `ds:Signature` after the Issuer, as IdPs do.
pub(crate) fn sign(element: &str, id: &str, key: &Key, spec: &SigSpec) -> String {
    let digest_value = b64(&digest(&spec.digest_alg, element.as_bytes()));
    let inclusive = match &spec.prefix_list {
        Some(list) => format!(
            r#"<ec:InclusiveNamespaces xmlns:ec="{EXC_C14N}" PrefixList="{list}"></ec:InclusiveNamespaces>"#
        ),
        None => String::new(),
    };
    let transforms = spec.transforms.clone().unwrap_or_else(|| {
        format!(
            r#"<ds:Transform Algorithm="{ENVELOPED}"></ds:Transform><ds:Transform Algorithm="{}">{inclusive}</ds:Transform>"#,
            spec.c14n
        )
    });
    let uri = spec.uri.clone().unwrap_or_else(|| format!("#{id}"));
    let signed_info_body = format!(
        concat!(
            r#"<ds:CanonicalizationMethod Algorithm="{c14n}"></ds:CanonicalizationMethod>"#,
            r#"<ds:SignatureMethod Algorithm="{alg}"></ds:SignatureMethod>"#,
            r#"<ds:Reference URI="{uri}"><ds:Transforms>{transforms}</ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="{dalg}"></ds:DigestMethod>"#,
            r#"<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>"#
        ),
        c14n = spec.c14n,
        alg = spec.sig_alg,
        uri = uri,
        transforms = transforms,
        dalg = spec.digest_alg,
        digest = digest_value,
    );
    // Exclusive C14N of SignedInfo alone renders the ds declaration on it.
    let canonical_signed_info =
        format!(r#"<ds:SignedInfo xmlns:ds="{NS_DS}">{signed_info_body}</ds:SignedInfo>"#);
    let value = b64(&key.sign(&spec.sig_alg, canonical_signed_info.as_bytes()));
    let signature = format!(
        concat!(
            r#"<ds:Signature xmlns:ds="{ds}"><ds:SignedInfo>{body}</ds:SignedInfo>"#,
            r#"<ds:SignatureValue>{value}</ds:SignatureValue>"#,
            r#"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIIBfake</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"#,
            r#"</ds:Signature>"#
        ),
        ds = NS_DS,
        body = signed_info_body,
        value = value,
    );
    let at = element.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    format!("{}{}{}", &element[..at], signature, &element[at..])
}

/// The parts of a response the tests vary.
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) response_id: String,
    pub(crate) assertion_id: String,
    pub(crate) issuer: String,
    pub(crate) destination: String,
    pub(crate) recipient: String,
    pub(crate) audience: String,
    pub(crate) in_response_to: Option<String>,
    pub(crate) name_id: String,
    pub(crate) name_id_format: String,
    pub(crate) not_before: i64,
    pub(crate) not_on_or_after: i64,
    pub(crate) confirmation_not_on_or_after: i64,
    pub(crate) method: String,
    pub(crate) status: String,
    pub(crate) sign_assertion: bool,
    pub(crate) sign_response: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            response_id: "_resp-1".into(),
            assertion_id: "_assert-1".into(),
            issuer: IDP.into(),
            destination: ACS.into(),
            recipient: ACS.into(),
            audience: SP.into(),
            in_response_to: Some(REQUEST_ID.into()),
            name_id: "u-4711".into(),
            name_id_format: "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into(),
            not_before: NOW - 60,
            not_on_or_after: NOW + 300,
            confirmation_not_on_or_after: NOW + 300,
            method: "urn:oasis:names:tc:SAML:2.0:cm:bearer".into(),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".into(),
            sign_assertion: true,
            sign_response: false,
        }
    }
}

/// The assertion, unsigned, in canonical form.
pub(crate) fn assertion(spec: &Spec) -> String {
    let irt = spec
        .in_response_to
        .as_ref()
        .map(|v| format!(r#" InResponseTo="{v}""#))
        .unwrap_or_default();
    format!(
        concat!(
            r#"<saml:Assertion xmlns:saml="{saml}" ID="{aid}" IssueInstant="{now}" Version="2.0">"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"<saml:Subject><saml:NameID Format="{fmt}">{name_id}</saml:NameID>"#,
            r#"<saml:SubjectConfirmation Method="{method}">"#,
            r#"<saml:SubjectConfirmationData{irt} NotOnOrAfter="{cna}" Recipient="{recipient}"></saml:SubjectConfirmationData>"#,
            r#"</saml:SubjectConfirmation></saml:Subject>"#,
            r#"<saml:Conditions NotBefore="{nb}" NotOnOrAfter="{na}">"#,
            r#"<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>"#,
            r#"</saml:Conditions>"#,
            r#"<saml:AuthnStatement AuthnInstant="{now}" SessionIndex="_session-9">"#,
            r#"<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>"#,
            r#"</saml:AuthnStatement>"#,
            r#"<saml:AttributeStatement>"#,
            r#"<saml:Attribute FriendlyName="mail" Name="urn:oid:0.9.2342.19200300.100.1.3" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">"#,
            r#"<saml:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">ann@example.org</saml:AttributeValue>"#,
            r#"</saml:Attribute>"#,
            r#"<saml:Attribute Name="groups"><saml:AttributeValue>staff</saml:AttributeValue><saml:AttributeValue>r&amp;d &lt;lab&gt;</saml:AttributeValue></saml:Attribute>"#,
            r#"</saml:AttributeStatement>"#,
            r#"</saml:Assertion>"#
        ),
        saml = NS_SAML,
        aid = spec.assertion_id,
        now = time(NOW - 5),
        issuer = spec.issuer,
        fmt = spec.name_id_format,
        name_id = spec.name_id,
        method = spec.method,
        irt = irt,
        cna = time(spec.confirmation_not_on_or_after),
        recipient = spec.recipient,
        nb = time(spec.not_before),
        na = time(spec.not_on_or_after),
        audience = spec.audience,
    )
}

/// The response around `assertion_xml` (already signed or not), in canonical form, optionally
/// signed itself.
pub(crate) fn response_around(spec: &Spec, assertion_xml: &str, key: &Key) -> String {
    let irt = spec
        .in_response_to
        .as_ref()
        .map(|v| format!(r#" InResponseTo="{v}""#))
        .unwrap_or_default();
    let response = format!(
        concat!(
            r#"<samlp:Response xmlns:samlp="{samlp}" Destination="{dest}" ID="{rid}"{irt} IssueInstant="{now}" Version="2.0">"#,
            r#"<saml:Issuer xmlns:saml="{saml}">{issuer}</saml:Issuer>"#,
            r#"<samlp:Status><samlp:StatusCode Value="{status}"></samlp:StatusCode></samlp:Status>"#,
            "{assertion}",
            r#"</samlp:Response>"#
        ),
        samlp = NS_SAMLP,
        saml = NS_SAML,
        dest = spec.destination,
        rid = spec.response_id,
        irt = irt,
        now = time(NOW - 5),
        issuer = spec.issuer,
        status = spec.status,
        assertion = assertion_xml,
    );
    if spec.sign_response {
        sign(&response, &spec.response_id, key, &SigSpec::for_key(key))
    } else {
        response
    }
}

/// A complete response as `spec` says, signed with `key` and the default algorithms.
pub(crate) fn response(spec: &Spec, key: &Key) -> String {
    let a = assertion(spec);
    let a = if spec.sign_assertion {
        sign(&a, &spec.assertion_id, key, &SigSpec::for_key(key))
    } else {
        a
    };
    response_around(spec, &a, key)
}

/// Expectations matching the default `Spec`.
pub(crate) fn expect(keys: &[PinnedKey]) -> Expectations<'_> {
    Expectations {
        idp_entity_id: IDP,
        idp_keys: keys,
        sp_entity_id: SP,
        acs_url: ACS,
        in_response_to: Some(REQUEST_ID),
        now: NOW,
        skew_seconds: 60,
        allow_signed_response_only: false,
        sp_decryption_keys: &[],
        limits: Limits::default(),
    }
}
