//! Interoperability with xmlsec1 (libxmlsec1 with OpenSSL, the signer behind pysaml2 and many
//! IdPs): xmlsec1 signs a pretty-printed, non-canonical response template with the committed
//! test keys, and the library verifies it. Skipped, loudly, where `xmlsec1` is not installed
//! (Debian package `xmlsec1`).

use std::path::PathBuf;
use std::process::Command;

use authx_saml::{PinnedKey, verify_response};

use crate::idp::*;

fn xmlsec1() -> Option<PathBuf> {
    let path =
        std::env::var_os("AUTHX_XMLSEC1").map_or_else(|| PathBuf::from("xmlsec1"), PathBuf::from);
    Command::new(&path)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| path)
}

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// The template, written the way a person or a DOM serializer would: declarations on the
/// document element, single quotes, indentation, a comment, empty-element tags.
fn template(sig_alg: &str, name_id: &str) -> String {
    format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
                xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"
                xmlns:xs="http://www.w3.org/2001/XMLSchema"
                xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                ID="_resp-1" Version='2.0' IssueInstant="{now}"
                Destination="{ACS}" InResponseTo="{REQUEST_ID}">
  <saml:Issuer>{IDP}</saml:Issuer>
  <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
  <!-- the assertion -->
  <saml:Assertion Version="2.0" ID="_assert-1" IssueInstant="{now}">
    <saml:Issuer>{IDP}</saml:Issuer>
    <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
      <ds:SignedInfo>
        <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
        <ds:SignatureMethod Algorithm="{sig_alg}"/>
        <ds:Reference URI="#_assert-1">
          <ds:Transforms>
            <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
            <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">
              <ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="xs"/>
            </ds:Transform>
          </ds:Transforms>
          <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
          <ds:DigestValue/>
        </ds:Reference>
      </ds:SignedInfo>
      <ds:SignatureValue/>
      <ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
    </ds:Signature>
    <saml:Subject>
      <saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{name_id}</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData InResponseTo="{REQUEST_ID}" NotOnOrAfter="{later}" Recipient="{ACS}"/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="{now}" NotOnOrAfter="{later}">
      <saml:AudienceRestriction><saml:Audience>{SP}</saml:Audience></saml:AudienceRestriction>
    </saml:Conditions>
    <saml:AuthnStatement AuthnInstant="{now}" SessionIndex="_s1">
      <saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>
      <saml:Attribute Name="mail"><saml:AttributeValue xsi:type="xs:string">ann@example.org</saml:AttributeValue></saml:Attribute>
    </saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>
"##,
        now = time(NOW - 5),
        later = time(NOW + 300),
    )
}

/// Runs `xmlsec1 --sign` on `xml` with the named key pair from tests/data.
fn xmlsec_sign(xmlsec1: &PathBuf, xml: &str, key: &str) -> String {
    let dir = std::env::temp_dir().join(format!("authx-saml-xmlsec-{}-{key}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.xml");
    let output = dir.join("out.xml");
    std::fs::write(&input, xml).unwrap();
    let result = Command::new(xmlsec1)
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(format!("{DATA}/{key}.key.pem,{DATA}/{key}.cert.pem"))
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "xmlsec1 --sign failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let signed = std::fs::read_to_string(&output).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    signed
}

#[test]
fn responses_signed_by_xmlsec1_verify() {
    let Some(xmlsec1) = xmlsec1() else {
        println!(
            "SKIPPED: xmlsec1 is not installed (Debian package xmlsec1); the xmlsec1 interoperability test did not run"
        );
        return;
    };
    for (key, alg) in [("idp-rsa", RSA_SHA256), ("idp-ec", ECDSA_SHA256)] {
        let pinned = PinnedKey::from_certificate_pem(
            &std::fs::read_to_string(format!("{DATA}/{key}.cert.pem")).unwrap(),
        )
        .unwrap();
        let signed = xmlsec_sign(&xmlsec1, &template(alg, "user@evil.com.example.com"), key);
        assert!(signed.contains("<ds:DigestValue>") && !signed.contains("<ds:DigestValue/>"));
        let keys = [pinned];
        let v = verify_response(signed.as_bytes(), &expect(&keys))
            .unwrap_or_else(|e| panic!("{key}: {e}\n{signed}"));
        assert_eq!(v.name_id, "user@evil.com.example.com");
        assert_eq!(
            v.attribute("mail"),
            Some(&["ann@example.org".to_owned()][..])
        );
        // Comment injection after xmlsec1 signed: still the whole value.
        let injected = signed.replace(
            "user@evil.com.example.com",
            "user@evil.com<!---->.example.com",
        );
        assert_eq!(
            verify_response(injected.as_bytes(), &expect(&keys))
                .unwrap()
                .name_id,
            "user@evil.com.example.com"
        );
        // And a change xmlsec1 did not sign is caught.
        let changed = signed.replace("ann@example.org", "admin@example.org");
        assert_eq!(
            verify_response(changed.as_bytes(), &expect(&keys)),
            Err(authx_saml::SamlError::DigestMismatch)
        );
    }
}
