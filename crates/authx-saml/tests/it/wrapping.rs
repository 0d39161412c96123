//! Signature wrapping (XSW1-XSW8 after Somorovsky et al., "On Breaking SAML", 2012, as SAML
//! Raider names them), comment injection and the parser-differential cases of the public
//! advisories. Every variant starts from a response the pinned IdP really signed.

use authx_saml::{SamlError, verify_response};

use crate::idp::*;

pub(crate) struct Case {
    pub(crate) key: Key,
    pub(crate) spec: Spec,
}

impl Case {
    fn new() -> Self {
        Case {
            key: Key::rsa(),
            spec: Spec::default(),
        }
    }
    /// The original assertion, signed by the IdP.
    pub(crate) fn signed(&self) -> String {
        sign(
            &assertion(&self.spec),
            &self.spec.assertion_id,
            &self.key,
            &SigSpec::for_key(&self.key),
        )
    }
    /// The original assertion without a signature.
    pub(crate) fn unsigned(&self) -> String {
        assertion(&self.spec)
    }
    /// The attacker's assertion: another subject, its own ID.
    pub(crate) fn evil(&self, id: &str) -> String {
        assertion(&Spec {
            assertion_id: id.into(),
            name_id: "admin".into(),
            ..self.spec.clone()
        })
    }
    /// The IdP's signature element of the original assertion.
    pub(crate) fn signature(&self) -> String {
        let signed = self.signed();
        let start = signed.find("<ds:Signature").unwrap();
        let end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        signed[start..end].to_owned()
    }
    /// A response around `inner` (the assertion slot), not signed.
    pub(crate) fn response(&self, inner: &str) -> String {
        response_around(
            &Spec {
                sign_response: false,
                ..self.spec.clone()
            },
            inner,
            &self.key,
        )
    }
    fn verify(&self, xml: &str) -> Result<authx_saml::VerifiedAssertion, SamlError> {
        let keys = [self.key.pinned()];
        verify_response(xml.as_bytes(), &expect(&keys))
    }
    fn verify_response_only(&self, xml: &str) -> Result<authx_saml::VerifiedAssertion, SamlError> {
        let keys = [self.key.pinned()];
        let mut exp = expect(&keys);
        exp.allow_signed_response_only = true;
        verify_response(xml.as_bytes(), &exp)
    }
}

/// Inserts `what` right after the first `</saml:Issuer>` of `into`.
pub(crate) fn after_issuer(into: &str, what: &str) -> String {
    let at = into.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    format!("{}{what}{}", &into[..at], &into[at..])
}

/// Inserts `what` right before the last `</ds:Signature>` of `into`.
fn inside_signature(into: &str, what: &str) -> String {
    let at = into.rfind("</ds:Signature>").unwrap();
    format!("{}{what}{}", &into[..at], &into[at..])
}

/// Inserts `what` before the closing tag `close` of `into`.
fn before_close(into: &str, close: &str, what: &str) -> String {
    let at = into.rfind(close).unwrap();
    format!("{}{what}{}", &into[..at], &into[at..])
}

#[test]
fn the_unmodified_originals_verify() {
    let c = Case::new();
    assert_eq!(
        c.verify(&c.response(&c.signed())).unwrap().name_id,
        "u-4711"
    );
    let signed_response = response(
        &Spec {
            sign_assertion: false,
            sign_response: true,
            ..Spec::default()
        },
        &c.key,
    );
    assert_eq!(
        c.verify_response_only(&signed_response).unwrap().name_id,
        "u-4711"
    );
}

/// XSW1 and XSW2 wrap a signed *response*: the attacker's response is the document element and
/// the original signed response hides inside the copied signature (XSW1) or before it (XSW2).
#[test]
fn xsw1_and_xsw2_response_wrapping_are_refused() {
    let c = Case::new();
    let original = response(
        &Spec {
            sign_assertion: false,
            sign_response: true,
            ..Spec::default()
        },
        &c.key,
    );
    let start = original.find("<ds:Signature").unwrap();
    let end = original.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let response_signature = &original[start..end];
    let evil_spec = Spec {
        response_id: "_evil-resp".into(),
        sign_response: false,
        ..Spec::default()
    };
    let evil_response = response_around(&evil_spec, &c.evil("_evil"), &c.key);

    let xsw1 = after_issuer(
        &evil_response,
        &inside_signature(response_signature, &original),
    );
    let xsw2 = after_issuer(&evil_response, &format!("{original}{response_signature}"));
    for xml in [&xsw1, &xsw2] {
        assert_eq!(
            c.verify_response_only(xml),
            Err(SamlError::AssertionCount { found: 2 })
        );
        assert_eq!(c.verify(xml), Err(SamlError::AssertionCount { found: 2 }));
    }
}

/// XSW3-XSW8 wrap a signed *assertion*; each puts the attacker's assertion where a careless
/// reader looks and the signed original where a careless verifier looks.
#[test]
fn xsw3_to_xsw8_assertion_wrapping_are_refused() {
    let c = Case::new();
    for (evil_id, expected) in [
        ("_evil", SamlError::AssertionCount { found: 2 }),
        // The attacker's copy keeping the original's ID.
        ("_assert-1", SamlError::DuplicateId),
    ] {
        for (name, xml) in xsw3_to_xsw8(&c, &c.evil(evil_id)) {
            assert_eq!(
                c.verify(&xml),
                Err(expected.clone()),
                "{name} with {evil_id}"
            );
        }
    }
}

pub(crate) fn xsw3_to_xsw8(c: &Case, evil: &str) -> [(&'static str, String); 6] {
    [
        // XSW3: the attacker's assertion before the signed original, as siblings.
        ("XSW3", c.response(&format!("{evil}{}", c.signed()))),
        // XSW4: the signed original inside the attacker's assertion.
        (
            "XSW4",
            c.response(&before_close(evil, "</saml:Assertion>", &c.signed())),
        ),
        // XSW5: the copied signature in the attacker's assertion, the unsigned original after it.
        (
            "XSW5",
            c.response(&format!(
                "{}{}",
                after_issuer(evil, &c.signature()),
                c.unsigned()
            )),
        ),
        // XSW6: the copied signature in the attacker's assertion, holding the unsigned original.
        (
            "XSW6",
            c.response(&after_issuer(
                evil,
                &inside_signature(&c.signature(), &c.unsigned()),
            )),
        ),
        // XSW7: the signed original in samlp:Extensions, the attacker's assertion in place.
        (
            "XSW7",
            c.response(evil).replacen(
                "<samlp:Status>",
                &format!(
                    "<samlp:Extensions>{}</samlp:Extensions><samlp:Status>",
                    c.signed()
                ),
                1,
            ),
        ),
        // XSW8: the copied signature with a ds:Object holding the unsigned original.
        (
            "XSW8",
            c.response(&after_issuer(
                evil,
                &inside_signature(
                    &c.signature(),
                    &format!("<ds:Object>{}</ds:Object>", c.unsigned()),
                ),
            )),
        ),
    ]
}

/// What is left if the attacker keeps a single assertion: every remaining layer holds.
#[test]
fn single_assertion_wrapping_variants_are_refused() {
    let c = Case::new();
    // The copied signature moved onto the attacker's assertion: its reference names another ID.
    let moved = c.response(&after_issuer(&c.evil("_evil"), &c.signature()));
    assert_eq!(c.verify(&moved), Err(SamlError::ReferenceMismatch));
    // ... and with the attacker's assertion taking the signed ID: the digest differs.
    let same_id = c.response(&after_issuer(&c.evil(&c.spec.assertion_id), &c.signature()));
    assert_eq!(c.verify(&same_id), Err(SamlError::DigestMismatch));
    // The signed original renamed to hide it inside a ds:Object: signatures may hold no Object.
    let hidden = c.unsigned().replace("saml:Assertion", "saml:Statement");
    let object = c.response(&after_issuer(
        &c.evil("_evil"),
        &inside_signature(&c.signature(), &format!("<ds:Object>{hidden}</ds:Object>")),
    ));
    assert_eq!(
        c.verify(&object),
        Err(SamlError::Unexpected("element in ds:Signature"))
    );
    // The original's signature parked in samlp:Extensions, the attacker's assertion unsigned.
    let parked = c.response(&c.evil("_evil")).replacen(
        "<samlp:Status>",
        &format!(
            "<samlp:Extensions>{}</samlp:Extensions><samlp:Status>",
            c.signature()
        ),
        1,
    );
    assert_eq!(c.verify(&parked), Err(SamlError::MisplacedSignature));
    // The response's signature moved into the assertion still names the response.
    let original = response(
        &Spec {
            sign_assertion: false,
            sign_response: true,
            ..Spec::default()
        },
        &c.key,
    );
    let start = original.find("<ds:Signature").unwrap();
    let end = original.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let response_signature = &original[start..end];
    let moved_up = c.response(&after_issuer(&c.unsigned(), response_signature));
    assert_eq!(c.verify(&moved_up), Err(SamlError::ReferenceMismatch));
    // An empty reference (the whole document) is not the signature's parent.
    let sig = SigSpec {
        uri: Some(String::new()),
        ..SigSpec::for_key(&c.key)
    };
    let whole = c.response(&sign(&c.unsigned(), &c.spec.assertion_id, &c.key, &sig));
    assert_eq!(c.verify(&whole), Err(SamlError::ReferenceMismatch));
    // Two signatures on the assertion.
    let twice = c.response(&after_issuer(&c.signed(), &c.signature()));
    assert_eq!(c.verify(&twice), Err(SamlError::MisplacedSignature));
}

/// ruby-saml CVE-2024-45409 style: extra DigestValue or Reference elements are not looked up
/// somewhere else, they are refused.
#[test]
fn extra_reference_or_digest_elements_are_refused() {
    let c = Case::new();
    let signed = c.signed();
    let extra_digest = signed.replacen(
        "</ds:DigestValue>",
        "</ds:DigestValue><ds:DigestValue>AAAA</ds:DigestValue>",
        1,
    );
    assert_eq!(
        c.verify(&c.response(&extra_digest)),
        Err(SamlError::Unexpected("element in ds:Reference"))
    );
    let reference_start = signed.find("<ds:Reference").unwrap();
    let reference_end = signed.find("</ds:Reference>").unwrap() + "</ds:Reference>".len();
    let reference = &signed[reference_start..reference_end];
    let two = signed.replacen(reference, &format!("{reference}{reference}"), 1);
    assert_eq!(
        c.verify(&c.response(&two)),
        Err(SamlError::Unexpected(
            "second ds:Reference or other element in ds:SignedInfo"
        ))
    );
}

/// Comment injection (Duo Labs, 2018; ruby-saml, python-saml and others): the IdP signed the
/// NameID `user@evil.com.example.com`; a comment inserted after signing leaves the exclusive
/// C14N output, and so the signature, unchanged. The whole text must be read, not the first
/// text node (`user@evil.com`).
#[test]
fn comment_injection_in_name_id_reads_the_whole_value() {
    let c = Case {
        key: Key::rsa(),
        spec: Spec {
            name_id: "user@evil.com.example.com".into(),
            ..Spec::default()
        },
    };
    let signed = c.response(&c.signed());
    for injected in [
        "user@evil.com<!---->.example.com",
        "user@evil.com<!-- x -->.example.com",
        "user@evil.com<![CDATA[]]>.example.com",
    ] {
        let xml = signed.replace("user@evil.com.example.com", injected);
        let v = c.verify(&xml).unwrap();
        assert_eq!(v.name_id, "user@evil.com.example.com", "{injected}");
    }
    // Same in an attribute value.
    let xml = signed.replace("ann@example.org", "ann@example.org<!---->.evil");
    assert_eq!(c.verify(&xml), Err(SamlError::DigestMismatch));
    let xml = signed.replace("ann@example.org", "ann@exam<!---->ple.org");
    let v = c.verify(&xml).unwrap();
    assert_eq!(
        v.attribute("urn:oid:0.9.2342.19200300.100.1.3"),
        Some(&["ann@example.org".to_owned()][..])
    );
}

/// ruby-saml CVE-2025-25291: REXML and Nokogiri disagreed about a document with a DOCTYPE, so
/// one saw a signature the other did not. Here no DOCTYPE reaches a parser.
#[test]
fn doctype_tricks_are_refused() {
    let c = Case::new();
    let signed = c.response(&c.signed());
    for doctype in [
        r#"<!DOCTYPE x [<!ENTITY n "admin">]>"#,
        r#"<!DOCTYPE x [<!ATTLIST saml:Assertion ID ID #IMPLIED>]>"#,
        "<!DOCTYPE samlp:Response>",
        r#"<!DOCTYPE x SYSTEM "http://evil.example/x.dtd">"#,
    ] {
        assert_eq!(
            c.verify(&format!("{doctype}{signed}")),
            Err(SamlError::DtdRefused),
            "{doctype}"
        );
    }
}

/// ruby-saml CVE-2025-25292 and samlify CVE-2025-47949: one component found the signature or
/// the assertion by one rule (prefix, position, XPath) and another component read data by
/// another. Here names are matched by namespace URI and local name, never by prefix, and the
/// data comes from the signed node.
#[test]
fn namespace_and_prefix_confusion_is_refused_or_harmless() {
    let c = Case::new();
    // An extra assertion under an unusual prefix is still an assertion.
    let odd_prefix = c
        .evil("_evil")
        .replace("saml:", "a:")
        .replace("xmlns:saml=", "xmlns:a=");
    let xml = c.response(&format!("{}{odd_prefix}", c.signed()));
    assert_eq!(c.verify(&xml), Err(SamlError::AssertionCount { found: 2 }));
    // A signature written with a default namespace is still a signature (and misplaced here).
    let default_ns_sig = c
        .signature()
        .replace("ds:", "")
        .replace("xmlns:ds=", "xmlns=");
    let xml = c.response(&c.signed()).replacen(
        "<samlp:Status>",
        &format!("<samlp:Extensions>{default_ns_sig}</samlp:Extensions><samlp:Status>"),
        1,
    );
    assert_eq!(c.verify(&xml), Err(SamlError::MisplacedSignature));
    // A "Signature" whose ds prefix is bound to another namespace is no signature.
    let fake = c.signed().replacen(
        r#"xmlns:ds="http://www.w3.org/2000/09/xmldsig#""#,
        r#"xmlns:ds="urn:not-dsig""#,
        1,
    );
    assert_eq!(
        c.verify(&c.response(&fake)),
        Err(SamlError::AssertionNotSigned)
    );
    // Look-alike assertion in a foreign namespace: not counted, never read.
    let foreign = c
        .evil("_evil")
        .replace("urn:oasis:names:tc:SAML:2.0:assertion", "urn:evil");
    let xml = c.response(&format!("{foreign}{}", c.signed()));
    assert_eq!(c.verify(&xml).unwrap().name_id, "u-4711");
    // The signed ID carried by a namespaced attribute is not the ID.
    let namespaced_id = c.signed().replacen(
        r#" ID="_assert-1""#,
        r#" xmlns:x="urn:x" x:ID="_assert-1" ID="_assert-2""#,
        1,
    );
    assert_eq!(
        c.verify(&c.response(&namespaced_id)),
        Err(SamlError::ReferenceMismatch)
    );
    let namespaced_only = c.signed().replacen(
        r#" ID="_assert-1""#,
        r#" xmlns:x="urn:x" x:ID="_assert-1""#,
        1,
    );
    assert_eq!(
        c.verify(&c.response(&namespaced_only)),
        Err(SamlError::Missing("ID on the signed element"))
    );
}

/// Duplicate attributes and other malformed markup are parse errors, not "first wins" or
/// "last wins".
#[test]
fn duplicate_attributes_are_refused() {
    let c = Case::new();
    let xml = c.response(&c.signed()).replacen(
        r#"Recipient="#,
        r#"Recipient="https://evil.example/" Recipient="#,
        1,
    );
    assert!(matches!(c.verify(&xml), Err(SamlError::Malformed(_))));
}
