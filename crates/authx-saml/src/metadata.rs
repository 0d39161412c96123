//! SAML metadata (SAML metadata §2): reading an IdP's, writing ours.

use base64::Engine as _;
use roxmltree::Node;

use crate::SamlError;
use crate::keys::PinnedKey;
use crate::xml::{
    self, Limits, NS_DSIG, NS_METADATA, attr, children, escape, is, one_child, trimmed_text,
};

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// What authx needs from an IdP's metadata.
///
/// # Security
/// Metadata comes from a file or URL the administrator configured; its own signature is not
/// checked here. The certificates read from it are meant to be pinned once (stored with the
/// provider) and not silently replaced by a later fetch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdpMetadata {
    /// `entityID`.
    pub entity_id: String,
    /// `SingleSignOnService` location for the HTTP-Redirect binding.
    pub sso_redirect_url: String,
    /// `WantAuthnRequestsSigned`.
    pub want_authn_requests_signed: bool,
    /// The signing certificates (`KeyDescriptor` with `use="signing"` or no `use`), DER.
    pub signing_certificates: Vec<Vec<u8>>,
    /// Their public keys, ready to pin.
    pub signing_keys: Vec<PinnedKey>,
}

impl IdpMetadata {
    /// Parses an `md:EntityDescriptor` with one SAML 2.0 `md:IDPSSODescriptor`.
    ///
    /// # Errors
    /// Parser refusals (size, DTD, malformed), a missing entity id, redirect endpoint or
    /// signing certificate, or a certificate that does not parse.
    pub fn parse(xml_bytes: &[u8], limits: &Limits) -> Result<Self, SamlError> {
        let doc = xml::parse(xml_bytes, limits)?;
        let entity = doc.root_element();
        if !is(entity, NS_METADATA, "EntityDescriptor") {
            return Err(SamlError::UnexpectedRoot {
                expected: "md:EntityDescriptor",
            });
        }
        let entity_id = attr(entity, "entityID")
            .filter(|v| !v.is_empty())
            .ok_or(SamlError::Missing("entityID"))?;
        let mut idps = children(entity, NS_METADATA, "IDPSSODescriptor").filter(|d| {
            attr(*d, "protocolSupportEnumeration")
                .is_some_and(|p| p.split_ascii_whitespace().any(|v| v == PROTOCOL))
        });
        let idp = idps
            .next()
            .ok_or(SamlError::Missing("SAML 2.0 md:IDPSSODescriptor"))?;
        if idps.next().is_some() {
            return Err(SamlError::Unexpected("second md:IDPSSODescriptor"));
        }
        let sso_redirect_url = children(idp, NS_METADATA, "SingleSignOnService")
            .find(|s| attr(*s, "Binding") == Some(REDIRECT))
            .and_then(|s| attr(s, "Location"))
            .ok_or(SamlError::Missing("SingleSignOnService for HTTP-Redirect"))?;
        let mut signing_certificates = Vec::new();
        for kd in children(idp, NS_METADATA, "KeyDescriptor") {
            if attr(kd, "use").is_some_and(|u| u != "signing") {
                continue;
            }
            let key_info = one_child(kd, NS_DSIG, "KeyInfo", "ds:KeyInfo")?;
            for data in children(key_info, NS_DSIG, "X509Data") {
                for cert in children(data, NS_DSIG, "X509Certificate") {
                    signing_certificates.push(certificate_der(cert)?);
                }
            }
        }
        if signing_certificates.is_empty() {
            return Err(SamlError::Missing("signing certificate"));
        }
        let signing_keys = signing_certificates
            .iter()
            .map(|der| PinnedKey::from_certificate_der(der))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            entity_id: entity_id.to_owned(),
            sso_redirect_url: sso_redirect_url.to_owned(),
            want_authn_requests_signed: attr(idp, "WantAuthnRequestsSigned") == Some("true"),
            signing_certificates,
            signing_keys,
        })
    }
}

fn certificate_der(node: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let text: String = trimmed_text(node, "ds:X509Certificate")?
        .chars()
        .filter(|c| !xml::is_xml_space(*c))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SamlError::Base64("ds:X509Certificate"))
}

/// Our SP metadata, served at `/federation/saml/{name}/metadata`.
#[derive(Debug, Clone)]
pub struct SpMetadata<'a> {
    /// Our SP entity id.
    pub entity_id: &'a str,
    /// Our ACS URL (HTTP-POST binding).
    pub acs_url: &'a str,
    /// Our AuthnRequest signing certificate (DER), when requests are signed.
    pub signing_certificate: Option<&'a [u8]>,
    /// The certificate (DER) IdPs encrypt assertions to, when we can decrypt them. Published
    /// with the content and key transport algorithms we accept (AES-GCM, RSA-OAEP), so an IdP
    /// that reads them does not pick CBC.
    pub encryption_certificate: Option<&'a [u8]>,
    /// NameID formats we accept, most preferred first.
    pub name_id_formats: &'a [&'a str],
}

/// The `EncryptionMethod`s of our encryption key, most preferred first: what
/// `encrypted.rs` accepts.
const ENCRYPTION_METHODS: &[&str] = &[
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
];

impl SpMetadata<'_> {
    /// The `md:EntityDescriptor` document.
    pub fn to_xml(&self) -> String {
        let mut xml = format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                "\n",
                r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">"#,
                r#"<md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="true" "#,
                r#"protocolSupportEnumeration="{protocol}">"#
            ),
            entity = escape(self.entity_id),
            signed = self.signing_certificate.is_some(),
            protocol = PROTOCOL,
        );
        if let Some(cert) = self.signing_certificate {
            xml.push_str(&key_descriptor("signing", cert, &[]));
        }
        if let Some(cert) = self.encryption_certificate {
            xml.push_str(&key_descriptor("encryption", cert, ENCRYPTION_METHODS));
        }
        for format in self.name_id_formats {
            xml.push_str(&format!(
                "<md:NameIDFormat>{}</md:NameIDFormat>",
                escape(format)
            ));
        }
        xml.push_str(&format!(
            r#"<md:AssertionConsumerService Binding="{POST}" Location="{}" index="0" isDefault="true"/>"#,
            escape(self.acs_url)
        ));
        xml.push_str("</md:SPSSODescriptor></md:EntityDescriptor>\n");
        xml
    }
}

/// A `KeyDescriptor` with `use` (`signing` or `encryption`), the certificate and the given
/// `EncryptionMethod`s.
fn key_descriptor(usage: &str, cert: &[u8], methods: &[&str]) -> String {
    let mut xml = format!(
        concat!(
            r#"<md:KeyDescriptor use="{usage}"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">"#,
            r#"<ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"#
        ),
        usage = usage,
        cert = base64::engine::general_purpose::STANDARD.encode(cert)
    );
    for method in methods {
        xml.push_str(&format!(r#"<md:EncryptionMethod Algorithm="{method}"/>"#));
    }
    xml.push_str("</md:KeyDescriptor>");
    xml
}
