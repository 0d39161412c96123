//! IdP metadata in, SP metadata out.

use authx_saml::{IdpMetadata, Limits, PinnedKey, SamlError, SpMetadata};

use crate::idp::*;

fn cert_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn idp_metadata(rsa: &str, ec: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>
{rsa}
    </ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{ec}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>not-even-base64</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.org/sso/post"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.org/sso/redirect"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
    )
}

#[test]
fn idp_metadata_gives_entity_id_redirect_url_and_signing_keys() {
    let rsa_pem = include_str!("../data/idp-rsa.cert.pem");
    let ec_pem = include_str!("../data/idp-ec.cert.pem");
    let xml = idp_metadata(&cert_body(rsa_pem), &cert_body(ec_pem).replace('\n', ""));
    let md = IdpMetadata::parse(xml.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(md.entity_id, IDP);
    assert_eq!(md.sso_redirect_url, "https://idp.example.org/sso/redirect");
    assert!(md.want_authn_requests_signed);
    assert_eq!(
        md.signing_certificates.len(),
        2,
        "the encryption key is not a signing key"
    );
    assert_eq!(
        md.signing_keys[0],
        PinnedKey::from_certificate_pem(rsa_pem).unwrap()
    );
    assert_eq!(
        md.signing_keys[1],
        PinnedKey::from_certificate_pem(ec_pem).unwrap()
    );
    // The keys from metadata verify what that IdP signs.
    let key = Key::from_pem(include_str!("../data/idp-rsa.key.pem"));
    let xml = response(&Spec::default(), &key);
    authx_saml::verify_response(xml.as_bytes(), &expect(&md.signing_keys)).unwrap();
}

#[test]
fn idp_metadata_without_what_we_need_is_refused() {
    let ec = cert_body(include_str!("../data/idp-ec.cert.pem"));
    let good = idp_metadata(&ec, &ec);
    let no_redirect = good.replace("bindings:HTTP-Redirect", "bindings:SOAP");
    assert_eq!(
        IdpMetadata::parse(no_redirect.as_bytes(), &Limits::default()).unwrap_err(),
        SamlError::Missing("SingleSignOnService for HTTP-Redirect")
    );
    let saml1 = good.replace(
        "urn:oasis:names:tc:SAML:2.0:protocol",
        "urn:oasis:names:tc:SAML:1.1:protocol",
    );
    assert_eq!(
        IdpMetadata::parse(saml1.as_bytes(), &Limits::default()).unwrap_err(),
        SamlError::Missing("SAML 2.0 md:IDPSSODescriptor")
    );
    let bad_cert = good.replacen(&ec[..40], "AAAA", 1);
    assert!(matches!(
        IdpMetadata::parse(bad_cert.as_bytes(), &Limits::default()),
        Err(SamlError::Key(_) | SamlError::Base64(_))
    ));
    let dtd = format!(
        "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
        good.replacen(r#"<?xml version="1.0"?>"#, "", 1)
    );
    assert_eq!(
        IdpMetadata::parse(dtd.as_bytes(), &Limits::default()).unwrap_err(),
        SamlError::DtdRefused
    );
}

#[test]
fn sp_metadata_is_well_formed_and_escaped() {
    let cert = pem_body(include_str!("../data/idp-ec.cert.pem"));
    let acs = "https://authx.example.com/federation/saml/a&b/acs";
    let md = SpMetadata {
        entity_id: SP,
        acs_url: acs,
        signing_certificate: Some(&cert),
        encryption_certificate: None,
        name_id_formats: &["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"],
    };
    let xml = md.to_xml();
    let doc = roxmltree_free_check(&xml);
    assert!(doc.contains(&format!(r#"entityID="{SP}""#)));
    assert!(xml.contains(r#"Location="https://authx.example.com/federation/saml/a&amp;b/acs""#));
    assert!(xml.contains(r#"AuthnRequestsSigned="true" WantAssertionsSigned="true""#));
    assert!(xml.contains(&b64(&cert)));
    let unsigned = SpMetadata {
        signing_certificate: None,
        ..md
    }
    .to_xml();
    assert!(unsigned.contains(r#"AuthnRequestsSigned="false""#));
    assert!(!unsigned.contains("KeyDescriptor"));
    // The encryption key is published with the algorithms the library decrypts: GCM first, no
    // CBC.
    let encrypting = SpMetadata {
        signing_certificate: None,
        encryption_certificate: Some(&cert),
        ..md
    }
    .to_xml();
    roxmltree_free_check(&encrypting);
    assert!(encrypting.contains(r#"AuthnRequestsSigned="false""#));
    assert!(encrypting.contains(r#"<md:KeyDescriptor use="encryption">"#));
    assert!(!encrypting.contains(r#"use="signing""#));
    assert!(encrypting.contains(
        r#"</ds:KeyInfo><md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>"#
    ));
    assert!(!encrypting.contains("cbc"));
}

/// Parses our own output with the library's parser entry point for IdP metadata shape checks:
/// an SP descriptor is not an IdP descriptor, so the refusal proves it parsed as XML.
fn roxmltree_free_check(xml: &str) -> String {
    assert_eq!(
        IdpMetadata::parse(xml.as_bytes(), &Limits::default()).unwrap_err(),
        SamlError::Missing("SAML 2.0 md:IDPSSODescriptor")
    );
    xml.to_owned()
}
