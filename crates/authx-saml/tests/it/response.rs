//! The happy paths and each rule of `verify_response`, one refusal per rule.

use authx_saml::{NameIdFormat, SamlError, SignedBy, verify_response};

use crate::idp::*;

fn verify(
    xml: &str,
    keys: &[authx_saml::PinnedKey],
) -> Result<authx_saml::VerifiedAssertion, SamlError> {
    verify_response(xml.as_bytes(), &expect(keys))
}

fn refused(spec: &Spec) -> SamlError {
    let key = Key::rsa();
    verify(&response(spec, &key), &[key.pinned()]).unwrap_err()
}

#[test]
fn rsa_signed_assertion_is_accepted_and_read() {
    let key = Key::rsa();
    let v = verify(&response(&Spec::default(), &key), &[key.pinned()]).unwrap();
    assert_eq!(v.issuer, IDP);
    assert_eq!(v.assertion_id, "_assert-1");
    assert_eq!(v.response_id, "_resp-1");
    assert_eq!(v.in_response_to.as_deref(), Some(REQUEST_ID));
    assert_eq!(v.name_id, "u-4711");
    assert_eq!(v.name_id_format, NameIdFormat::Persistent);
    assert!(v.name_id_format.is_stable());
    assert_eq!(v.session_index.as_deref(), Some("_session-9"));
    assert_eq!(v.authn_instant, NOW - 5);
    assert_eq!(
        v.authn_context_class.as_deref(),
        Some("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
    );
    assert_eq!(v.not_on_or_after, NOW + 300);
    assert_eq!(v.signed_by, SignedBy::Assertion);
    assert!(!v.encrypted);
    assert_eq!(
        v.attribute("urn:oid:0.9.2342.19200300.100.1.3"),
        Some(&["ann@example.org".to_owned()][..])
    );
    assert_eq!(
        v.attribute("groups"),
        Some(&["staff".to_owned(), "r&d <lab>".to_owned()][..])
    );
    assert_eq!(v.attributes[0].friendly_name.as_deref(), Some("mail"));
}

#[test]
fn ecdsa_p256_signed_assertion_is_accepted() {
    let key = Key::ec();
    let v = verify(&response(&Spec::default(), &key), &[key.pinned()]).unwrap();
    assert_eq!(v.name_id, "u-4711");
}

#[test]
fn rsa_sha512_with_sha512_digest_is_accepted() {
    let key = Key::rsa();
    let spec = Spec::default();
    let sig = SigSpec {
        sig_alg: RSA_SHA512.into(),
        digest_alg: SHA512.into(),
        ..SigSpec::for_key(&key)
    };
    let a = sign(&assertion(&spec), &spec.assertion_id, &key, &sig);
    verify(&response_around(&spec, &a, &key), &[key.pinned()]).unwrap();
}

/// Keys pinned from real X.509 certificates (made with openssl, tests/data/).
#[test]
fn keys_pinned_from_certificates_verify() {
    for (cert, key) in [
        (
            include_str!("../data/idp-rsa.cert.pem"),
            include_str!("../data/idp-rsa.key.pem"),
        ),
        (
            include_str!("../data/idp-ec.cert.pem"),
            include_str!("../data/idp-ec.key.pem"),
        ),
    ] {
        let pinned = authx_saml::PinnedKey::from_certificate_pem(cert).unwrap();
        let key = Key::from_pem(key);
        assert_eq!(pinned, key.pinned());
        verify(&response(&Spec::default(), &key), &[pinned]).unwrap();
    }
    // Neither RSA nor P-256: refused when pinning, not when verifying.
    assert!(matches!(
        authx_saml::PinnedKey::from_certificate_pem(include_str!("../data/p384.cert.pem")),
        Err(SamlError::Key(_))
    ));
}

/// Any pinned key will do: rotation pins old and new together.
#[test]
fn second_pinned_key_verifies() {
    let (old, new) = (Key::rsa(), Key::ec());
    verify(
        &response(&Spec::default(), &new),
        &[old.pinned(), new.pinned()],
    )
    .unwrap();
}

#[test]
fn signature_by_an_unpinned_key_is_refused() {
    let (pinned, attacker) = (Key::rsa(), Key::rsa());
    let xml = response(&Spec::default(), &attacker);
    assert_eq!(
        verify(&xml, &[pinned.pinned()]),
        Err(SamlError::BadSignature)
    );
    assert_eq!(verify(&xml, &[]), Err(SamlError::BadSignature));
}

#[test]
fn content_changed_after_signing_is_refused() {
    let key = Key::rsa();
    let xml = response(&Spec::default(), &key).replace(">u-4711<", ">admin<");
    assert_eq!(
        verify(&xml, &[key.pinned()]),
        Err(SamlError::DigestMismatch)
    );
}

#[test]
fn signature_value_changed_is_refused() {
    let key = Key::rsa();
    let xml = response(&Spec::default(), &key);
    let start = xml.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
    let mut bytes = xml.into_bytes();
    bytes[start + 10] = if bytes[start + 10] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let xml = String::from_utf8(bytes).unwrap();
    assert_eq!(verify(&xml, &[key.pinned()]), Err(SamlError::BadSignature));
}

/// The same document written differently (namespace declarations moved up, attributes
/// reordered and single-quoted, empty-element tags, white space inside tags, a comment outside
/// the signed element): its canonical form is unchanged, so it still verifies. The signer never
/// ran the library's canonicalizer, so this checks it against an independent rendering.
#[test]
fn differently_serialized_equivalent_document_still_verifies() {
    let key = Key::rsa();
    let xml = response(&Spec::default(), &key)
        .replacen(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol""#,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- from the IdP --><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:unused="urn:x""#,
            1,
        )
        .replace(r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_assert-1" IssueInstant"#, "<saml:Assertion\n  Version='2.0' ID='_assert-1' IssueInstant")
        .replace(r#"" Version="2.0"><saml:Issuer>https://idp"#, r#""><saml:Issuer>https://idp"#)
        .replace("></saml:SubjectConfirmationData>", "/>")
        .replace(r#"<saml:Audience>"#, "<saml:Audience >");
    assert!(xml.contains("Version='2.0' ID='_assert-1'"), "{xml}");
    verify(&xml, &[key.pinned()]).unwrap();
}

/// Without the `xs` inclusive prefix the IdP would have signed other bytes: the PrefixList is
/// honoured, not ignored.
#[test]
fn inclusive_namespaces_prefix_list_is_honoured() {
    let key = Key::rsa();
    let spec = Spec::default();
    let sig = SigSpec {
        prefix_list: None,
        ..SigSpec::for_key(&key)
    };
    let a = sign(&assertion(&spec), &spec.assertion_id, &key, &sig);
    assert_eq!(
        verify(&response_around(&spec, &a, &key), &[key.pinned()]),
        Err(SamlError::DigestMismatch)
    );
}

#[test]
fn unsigned_assertion_is_refused() {
    assert_eq!(
        refused(&Spec {
            sign_assertion: false,
            ..Spec::default()
        }),
        SamlError::AssertionNotSigned
    );
}

#[test]
fn signed_response_alone_is_refused_unless_allowed() {
    let key = Key::rsa();
    let spec = Spec {
        sign_assertion: false,
        sign_response: true,
        ..Spec::default()
    };
    let xml = response(&spec, &key);
    let keys = [key.pinned()];
    assert_eq!(verify(&xml, &keys), Err(SamlError::AssertionNotSigned));
    let mut exp = expect(&keys);
    exp.allow_signed_response_only = true;
    let v = verify_response(xml.as_bytes(), &exp).unwrap();
    assert_eq!(v.signed_by, SignedBy::ResponseOnly);
    // Allowed, but nothing signed at all: still refused.
    let unsigned = response(
        &Spec {
            sign_assertion: false,
            ..Spec::default()
        },
        &key,
    );
    assert_eq!(
        verify_response(unsigned.as_bytes(), &exp),
        Err(SamlError::NotSigned)
    );
}

#[test]
fn both_signed_is_accepted_and_a_bad_response_signature_is_refused() {
    let key = Key::rsa();
    let spec = Spec {
        sign_response: true,
        ..Spec::default()
    };
    let xml = response(&spec, &key);
    verify(&xml, &[key.pinned()]).unwrap();
    // The response signature covers the Destination: change it and that signature fails,
    // although the assertion's own signature is intact.
    let tampered = xml.replacen(
        &format!(r#"Destination="{ACS}""#),
        r#"Destination="https://authx.example.com/federation/saml/corp/acs ""#,
        1,
    );
    assert_eq!(
        verify(&tampered, &[key.pinned()]),
        Err(SamlError::DigestMismatch)
    );
}

#[test]
fn wrong_audience_is_refused() {
    assert_eq!(
        refused(&Spec {
            audience: "https://other-sp.example/".into(),
            ..Spec::default()
        }),
        SamlError::WrongAudience
    );
}

#[test]
fn expired_assertion_is_refused_and_skew_is_honoured() {
    assert_eq!(
        refused(&Spec {
            not_on_or_after: NOW - 61,
            ..Spec::default()
        }),
        SamlError::Expired
    );
    assert_eq!(
        refused(&Spec {
            confirmation_not_on_or_after: NOW - 61,
            ..Spec::default()
        }),
        SamlError::Expired
    );
    // Within the 60-second skew: accepted.
    let key = Key::rsa();
    let spec = Spec {
        not_on_or_after: NOW - 59,
        confirmation_not_on_or_after: NOW - 59,
        ..Spec::default()
    };
    let v = verify(&response(&spec, &key), &[key.pinned()]).unwrap();
    assert_eq!(v.not_on_or_after, NOW - 59);
}

#[test]
fn not_yet_valid_is_refused() {
    assert_eq!(
        refused(&Spec {
            not_before: NOW + 61,
            ..Spec::default()
        }),
        SamlError::NotYetValid
    );
    let key = Key::rsa();
    verify(
        &response(
            &Spec {
                not_before: NOW + 59,
                ..Spec::default()
            },
            &key,
        ),
        &[key.pinned()],
    )
    .unwrap();
}

#[test]
fn wrong_destination_is_refused() {
    assert_eq!(
        refused(&Spec {
            destination: "https://evil.example/acs".into(),
            ..Spec::default()
        }),
        SamlError::WrongDestination
    );
}

#[test]
fn wrong_recipient_is_refused() {
    assert_eq!(
        refused(&Spec {
            recipient: "https://evil.example/acs".into(),
            ..Spec::default()
        }),
        SamlError::WrongRecipient
    );
}

#[test]
fn wrong_in_response_to_is_refused() {
    assert_eq!(
        refused(&Spec {
            in_response_to: Some("_another-browser".into()),
            ..Spec::default()
        }),
        SamlError::WrongInResponseTo
    );
    // Unsolicited response where a request is pending.
    assert_eq!(
        refused(&Spec {
            in_response_to: None,
            ..Spec::default()
        }),
        SamlError::WrongInResponseTo
    );
    // A solicited response when only unsolicited ones are expected.
    let key = Key::rsa();
    let keys = [key.pinned()];
    let mut exp = expect(&keys);
    exp.in_response_to = None;
    let xml = response(&Spec::default(), &key);
    assert_eq!(
        verify_response(xml.as_bytes(), &exp),
        Err(SamlError::WrongInResponseTo)
    );
    let unsolicited = response(
        &Spec {
            in_response_to: None,
            ..Spec::default()
        },
        &key,
    );
    assert_eq!(
        verify_response(unsolicited.as_bytes(), &exp)
            .unwrap()
            .in_response_to,
        None
    );
}

#[test]
fn wrong_issuer_is_refused() {
    assert_eq!(
        refused(&Spec {
            issuer: "https://evil.example/idp".into(),
            ..Spec::default()
        }),
        SamlError::WrongIssuer
    );
}

#[test]
fn failed_status_is_refused() {
    assert_eq!(
        refused(&Spec {
            status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
            ..Spec::default()
        }),
        SamlError::Status("urn:oasis:names:tc:SAML:2.0:status:Responder".into())
    );
}

/// An IdP's refusal has no assertion; its status is what is reported.
#[test]
fn failed_status_without_assertion_reports_the_status() {
    let key = Key::rsa();
    let spec = Spec {
        status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
        ..Spec::default()
    };
    let xml = response_around(&spec, "", &key).replace(
        r#"<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"></samlp:StatusCode>"#,
        r#"<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode>"#,
    );
    assert_eq!(
        verify(&xml, &[key.pinned()]),
        Err(SamlError::Status(
            "urn:oasis:names:tc:SAML:2.0:status:Responder / urn:oasis:names:tc:SAML:2.0:status:AuthnFailed".into()
        ))
    );
}

#[test]
fn non_bearer_confirmation_is_refused() {
    assert_eq!(
        refused(&Spec {
            method: "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key".into(),
            ..Spec::default()
        }),
        SamlError::SubjectConfirmation("no bearer confirmation")
    );
}

#[test]
fn transient_and_email_formats_are_reported() {
    let key = Key::rsa();
    for (uri, format) in [
        (
            "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
            NameIdFormat::Transient,
        ),
        (
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            NameIdFormat::EmailAddress,
        ),
        (
            "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
            NameIdFormat::Unspecified,
        ),
    ] {
        let spec = Spec {
            name_id_format: uri.into(),
            ..Spec::default()
        };
        let v = verify(&response(&spec, &key), &[key.pinned()]).unwrap();
        assert_eq!(v.name_id_format, format);
        assert_eq!(
            v.name_id_format.is_stable(),
            format != NameIdFormat::Transient
        );
    }
}

#[test]
fn sha1_signature_and_digest_are_refused() {
    let key = Key::rsa();
    let spec = Spec::default();
    for sig in [
        SigSpec {
            sig_alg: "http://www.w3.org/2000/09/xmldsig#rsa-sha1".into(),
            ..SigSpec::for_key(&key)
        },
        SigSpec {
            digest_alg: "http://www.w3.org/2000/09/xmldsig#sha1".into(),
            ..SigSpec::for_key(&key)
        },
    ] {
        let a = sign(&assertion(&spec), &spec.assertion_id, &key, &sig);
        assert!(matches!(
            verify(&response_around(&spec, &a, &key), &[key.pinned()]),
            Err(SamlError::Sha1Refused(_))
        ));
    }
}

#[test]
fn other_algorithms_and_key_mismatch_are_refused() {
    let key = Key::rsa();
    let spec = Spec::default();
    let hmac = SigSpec {
        sig_alg: "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256".into(),
        ..SigSpec::for_key(&key)
    };
    let a = sign(&assertion(&spec), &spec.assertion_id, &key, &hmac);
    assert!(matches!(
        verify(&response_around(&spec, &a, &key), &[key.pinned()]),
        Err(SamlError::AlgorithmRefused(_))
    ));
    // An RSA signature labelled ECDSA: no pinned key of that type, so nothing verifies.
    let mislabelled = SigSpec {
        sig_alg: ECDSA_SHA256.into(),
        ..SigSpec::for_key(&key)
    };
    let a = sign(&assertion(&spec), &spec.assertion_id, &key, &mislabelled);
    assert_eq!(
        verify(&response_around(&spec, &a, &key), &[key.pinned()]),
        Err(SamlError::BadSignature)
    );
}

#[test]
fn other_canonicalizations_and_transforms_are_refused() {
    let key = Key::rsa();
    let spec = Spec::default();
    let inclusive = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
    let cases = [
        SigSpec {
            c14n: inclusive.into(),
            ..SigSpec::for_key(&key)
        },
        SigSpec {
            transforms: Some(format!(
                r#"<ds:Transform Algorithm="{ENVELOPED}"></ds:Transform><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>not(ancestor-or-self::ds:Signature)</ds:XPath></ds:Transform>"#
            )),
            ..SigSpec::for_key(&key)
        },
        SigSpec {
            transforms: Some(format!(
                r#"<ds:Transform Algorithm="{ENVELOPED}"></ds:Transform><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"></ds:Transform>"#
            )),
            ..SigSpec::for_key(&key)
        },
        // The exclusive C14N transform alone (no enveloped-signature) or in the wrong order.
        SigSpec {
            transforms: Some(format!(
                r#"<ds:Transform Algorithm="{EXC_C14N}"></ds:Transform>"#
            )),
            ..SigSpec::for_key(&key)
        },
        SigSpec {
            transforms: Some(format!(
                r#"<ds:Transform Algorithm="{EXC_C14N}"></ds:Transform><ds:Transform Algorithm="{ENVELOPED}"></ds:Transform>"#
            )),
            ..SigSpec::for_key(&key)
        },
    ];
    for sig in cases {
        let a = sign(&assertion(&spec), &spec.assertion_id, &key, &sig);
        let result = verify(&response_around(&spec, &a, &key), &[key.pinned()]);
        assert!(
            matches!(result, Err(SamlError::TransformRefused(_))),
            "{result:?}"
        );
    }
}

/// `#WithComments` on SignedInfo keeps comments there; the bare-name reference still digests
/// the assertion without comments (XML Signature §4.4.3.3).
#[test]
fn with_comments_canonicalization_is_accepted() {
    let key = Key::rsa();
    let spec = Spec::default();
    let sig = SigSpec {
        c14n: format!("{EXC_C14N}WithComments"),
        ..SigSpec::for_key(&key)
    };
    let a = sign(&assertion(&spec), &spec.assertion_id, &key, &sig);
    let a = a.replace("<saml:Subject>", "<saml:Subject><!-- c -->");
    verify(&response_around(&spec, &a, &key), &[key.pinned()]).unwrap();
}

#[test]
fn encrypted_assertion_beside_a_plain_one_is_refused() {
    let key = Key::rsa();
    let xml = response(&Spec::default(), &key).replace(
        "<samlp:Status>",
        r#"<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"></saml:EncryptedAssertion><samlp:Status>"#,
    );
    assert_eq!(
        verify(&xml, &[key.pinned()]),
        Err(SamlError::AssertionCount { found: 2 })
    );
}

#[test]
fn post_binding_decodes_and_limits() {
    let key = Key::rsa();
    let xml = response(&Spec::default(), &key);
    let encoded = b64(xml.as_bytes());
    // Line-wrapped as some IdPs send it.
    let wrapped: String = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let limits = authx_saml::Limits::default();
    let decoded = authx_saml::decode_post_binding(&wrapped, &limits).unwrap();
    assert_eq!(decoded, xml.as_bytes());
    assert_eq!(
        authx_saml::decode_post_binding("not base64!", &limits),
        Err(SamlError::Base64("SAMLResponse"))
    );
    let small = authx_saml::Limits {
        max_bytes: 100,
        ..limits
    };
    assert_eq!(
        authx_saml::decode_post_binding(&encoded, &small),
        Err(SamlError::TooLarge { limit: 100 })
    );
}
