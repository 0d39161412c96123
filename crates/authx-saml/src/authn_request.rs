//! The AuthnRequest and its HTTP-Redirect binding (SAML bindings §3.4).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use base64::Engine as _;

use crate::SamlError;
use crate::xml::escape;

const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";

/// Our SP signing key for AuthnRequests (RSA with RSA-SHA256, or P-256 with ECDSA-SHA256).
pub enum SpSigningKey {
    /// An RSA key (2048 bits or more).
    Rsa(RsaKeyPair),
    /// An EC P-256 key.
    EcdsaP256(EcdsaKeyPair),
}

impl std::fmt::Debug for SpSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rsa(_) => "SpSigningKey::Rsa([redacted])",
            Self::EcdsaP256(_) => "SpSigningKey::EcdsaP256([redacted])",
        })
    }
}

impl SpSigningKey {
    /// Reads a PKCS#8 private key: RSA first, then P-256.
    ///
    /// # Errors
    /// [`SamlError::Key`] if it is neither.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SamlError> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(Self::Rsa(k));
        }
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map(Self::EcdsaP256)
            .map_err(|_| SamlError::Key("neither an RSA nor a P-256 PKCS#8 key"))
    }

    fn algorithm_uri(&self) -> &'static str {
        match self {
            Self::Rsa(_) => RSA_SHA256,
            Self::EcdsaP256(_) => ECDSA_SHA256,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SamlError> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| SamlError::Build("RSA signing failed"))?;
                Ok(sig)
            }
            Self::EcdsaP256(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SamlError::Build("ECDSA signing failed")),
        }
    }
}

/// An `samlp:AuthnRequest` for SP-initiated Web Browser SSO (SAML core §3.4.1), answered by
/// the IdP through the HTTP-POST binding to our ACS.
#[derive(Debug, Clone)]
pub struct AuthnRequest<'a> {
    /// The request ID; [`AuthnRequest::new_id`] makes one. Keep it as the expected
    /// `InResponseTo`, bound to this browser.
    pub id: &'a str,
    /// Unix seconds.
    pub issue_instant: i64,
    /// Our SP entity id (the `Issuer`).
    pub sp_entity_id: &'a str,
    /// Our ACS URL (`AssertionConsumerServiceURL`).
    pub acs_url: &'a str,
    /// The IdP's SingleSignOnService URL for the HTTP-Redirect binding (`Destination`).
    pub idp_sso_url: &'a str,
    /// The NameID format asked for in `NameIDPolicy`, if any.
    pub name_id_format: Option<&'a str>,
    /// Ask the IdP to authenticate the user again (`ForceAuthn`).
    pub force_authn: bool,
}

impl AuthnRequest<'_> {
    /// A fresh request ID: `_` and 32 hex digits from the system CSPRNG (an `xs:ID` must not
    /// start with a digit).
    ///
    /// # Errors
    /// [`SamlError::Build`] if the random generator fails.
    pub fn new_id() -> Result<String, SamlError> {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SamlError::Build("no randomness"))?;
        Ok(std::iter::once("_".to_owned())
            .chain(bytes.iter().map(|b| format!("{b:02x}")))
            .collect())
    }

    /// The request as XML.
    pub fn to_xml(&self) -> String {
        let mut xml = format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
                r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
                r#"IssueInstant="{instant}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" "#,
                r#"ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"{force}>"#,
                r#"<saml:Issuer>{issuer}</saml:Issuer>"#
            ),
            id = escape(self.id),
            instant = crate::time::format(self.issue_instant),
            dest = escape(self.idp_sso_url),
            acs = escape(self.acs_url),
            force = if self.force_authn {
                r#" ForceAuthn="true""#
            } else {
                ""
            },
            issuer = escape(self.sp_entity_id),
        );
        if let Some(format) = self.name_id_format {
            xml.push_str(&format!(
                r#"<samlp:NameIDPolicy Format="{}" AllowCreate="true"/>"#,
                escape(format)
            ));
        }
        xml.push_str("</samlp:AuthnRequest>");
        xml
    }

    /// The URL to redirect the browser to (HTTP-Redirect binding, SAML bindings §3.4.4.1):
    /// the request DEFLATE-compressed and base64-encoded in `SAMLRequest`, then `RelayState`,
    /// then, when `key` is given, `SigAlg` and a `Signature` over exactly those URL-encoded
    /// query parameters in that order.
    ///
    /// # Errors
    /// [`SamlError::Build`] if signing fails.
    pub fn redirect_url(
        &self,
        relay_state: Option<&str>,
        key: Option<&SpSigningKey>,
    ) -> Result<String, SamlError> {
        let deflated = miniz_oxide::deflate::compress_to_vec(self.to_xml().as_bytes(), 8);
        let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
        let mut query = format!("SAMLRequest={}", url_encode(&encoded));
        if let Some(relay_state) = relay_state {
            query.push_str("&RelayState=");
            query.push_str(&url_encode(relay_state));
        }
        if let Some(key) = key {
            query.push_str("&SigAlg=");
            query.push_str(&url_encode(key.algorithm_uri()));
            let signature = key.sign(query.as_bytes())?;
            query.push_str("&Signature=");
            query.push_str(&url_encode(
                &base64::engine::general_purpose::STANDARD.encode(signature),
            ));
        }
        let separator = if self.idp_sso_url.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{separator}{query}", self.idp_sso_url))
    }
}

fn url_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey};

    fn request() -> AuthnRequest<'static> {
        AuthnRequest {
            id: "_0123456789abcdef",
            issue_instant: 1_700_000_000,
            sp_entity_id: "https://sp.example/metadata",
            acs_url: "https://sp.example/acs?a=1&b=2",
            idp_sso_url: "https://idp.example/sso?tenant=x",
            name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
            force_authn: false,
        }
    }

    fn query_param(url: &str, name: &str) -> Option<String> {
        let query = url.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    #[test]
    fn new_ids_are_ncnames_and_differ() {
        let a = AuthnRequest::new_id().unwrap();
        let b = AuthnRequest::new_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('_'));
    }

    #[test]
    fn xml_escapes_values_and_parses() {
        let xml = request().to_xml();
        assert!(
            xml.contains(r#"AssertionConsumerServiceURL="https://sp.example/acs?a=1&amp;b=2""#)
        );
        let doc = crate::xml::parse(xml.as_bytes(), &crate::Limits::default()).unwrap();
        assert_eq!(
            doc.root_element().attribute("IssueInstant"),
            Some("2023-11-14T22:13:20Z")
        );
    }

    #[test]
    fn unsigned_redirect_inflates_back_to_the_request() {
        let url = request().redirect_url(Some("state/1+2"), None).unwrap();
        assert!(url.starts_with("https://idp.example/sso?tenant=x&SAMLRequest="));
        assert_eq!(
            query_param(&url, "RelayState").as_deref(),
            Some("state/1+2")
        );
        assert!(query_param(&url, "Signature").is_none());
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(query_param(&url, "SAMLRequest").unwrap())
            .unwrap();
        let xml = miniz_oxide::inflate::decompress_to_vec(&deflated).unwrap();
        assert_eq!(xml, request().to_xml().as_bytes());
    }

    /// The signature covers `SAMLRequest=..&RelayState=..&SigAlg=..` exactly as sent, and
    /// verifies with the SP's public key; changing the relay state breaks it.
    #[test]
    fn signed_redirect_verifies_over_the_raw_query() {
        for key in [
            SpSigningKey::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()),
            SpSigningKey::EcdsaP256(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            ),
        ] {
            let url = request().redirect_url(Some("rs"), Some(&key)).unwrap();
            let query = url.split_once("tenant=x&").unwrap().1;
            let (signed, sig) = query.split_once("&Signature=").unwrap();
            let sig = base64::engine::general_purpose::STANDARD
                .decode(
                    form_urlencoded::parse(format!("s={sig}").as_bytes())
                        .next()
                        .unwrap()
                        .1
                        .as_bytes(),
                )
                .unwrap();
            let (alg, public): (&dyn signature::VerificationAlgorithm, Vec<u8>) = match &key {
                SpSigningKey::Rsa(k) => (
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    k.public_key().as_ref().to_vec(),
                ),
                SpSigningKey::EcdsaP256(k) => {
                    let _ = k.public_key().as_der().unwrap();
                    (
                        &signature::ECDSA_P256_SHA256_FIXED,
                        k.public_key().as_ref().to_vec(),
                    )
                }
            };
            assert!(signed.contains(&format!("&SigAlg={}", url_encode(key.algorithm_uri()))));
            let public = UnparsedPublicKey::new(alg, public);
            public.verify(signed.as_bytes(), &sig).unwrap();
            let tampered = signed.replace("RelayState=rs", "RelayState=rt");
            assert!(public.verify(tampered.as_bytes(), &sig).is_err());
        }
    }
}
