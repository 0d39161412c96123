//! The SAML service provider's own key (issue #21, remaining server slice): one RSA key pair per
//! deployment in the store, sealed under the key-encryption key, published in our metadata;
//! AuthnRequests signed with it (checked with the `openssl` command line, an independent
//! verifier); encrypted assertions decrypted with it; a configured attribute as the stable
//! subject; and the ACS and finish step behind a rate limit.

use authx_server::config::{FederationFile, FileConfig, RateLimitFile, SamlProviderFile};
use authx_testkit::{TestServer, session_cookie};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine as _;

use crate::saml::{
    Browser, PROVIDER, assert_refused, idp_key, location, me, param, parked, provider, spec, start,
    user_count,
};
use crate::saml_idp::{self as idp, Key, SigSpec, Spec};

const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A server with the usual test provider as `edit` changes it.
async fn server_with(edit: impl Fn(&mut SamlProviderFile) + Send + Sync + 'static) -> TestServer {
    TestServer::start_with(move |f: &mut FileConfig| {
        let mut p = provider(true, true);
        edit(&mut p);
        f.federation = Some(FederationFile {
            enable_saml: Some(true),
            saml: Some(vec![p]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap()
}

async fn metadata(local: &TestServer) -> String {
    let res = local
        .get(&format!("/federation/saml/{PROVIDER}/metadata"), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The certificate (DER) of our metadata's `KeyDescriptor use="{usage}"`, if there is one.
fn certificate_of(md: &str, usage: &str) -> Option<Vec<u8>> {
    let at = md.find(&format!(r#"<md:KeyDescriptor use="{usage}">"#))?;
    let rest = &md[at..];
    let start = rest.find("<ds:X509Certificate>")? + "<ds:X509Certificate>".len();
    let end = rest.find("</ds:X509Certificate>")?;
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(&rest[start..end])
            .unwrap(),
    )
}

/// The `SubjectPublicKeyInfo` (DER) of a certificate.
fn spki_of(cert: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).unwrap();
    cert.public_key().raw.to_vec()
}

/// `saml:EncryptedAssertion` holding `plaintext`, for the RSA public key `spki`: RSA-OAEP
/// (SHA-1, as most IdPs send it) key transport and `content` (AES-256-GCM or AES-256-CBC).
fn encrypt_to(spki: &[u8], plaintext: &str, content: &str) -> String {
    let rng = SystemRandom::new();
    let mut cek = [0u8; 32];
    rng.fill(&mut cek).unwrap();
    let cipher_value = if content == AES256_CBC {
        use aws_lc_rs::cipher::{AES_256, DecryptionContext, PaddedBlockEncryptingKey};
        let key = aws_lc_rs::cipher::UnboundCipherKey::new(&AES_256, &cek).unwrap();
        let mut body = plaintext.as_bytes().to_vec();
        let context = PaddedBlockEncryptingKey::cbc_pkcs7(key)
            .unwrap()
            .encrypt(&mut body)
            .unwrap();
        let DecryptionContext::Iv128(iv) = context else {
            panic!("CBC has a 128-bit IV");
        };
        let iv: &[u8] = iv.as_ref();
        [iv, &body].concat()
    } else {
        let mut iv = [0u8; 12];
        rng.fill(&mut iv).unwrap();
        let mut body = plaintext.as_bytes().to_vec();
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).unwrap())
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut body)
            .unwrap();
        [&iv[..], &body].concat()
    };
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let wrapped = public
        .encrypt(&OAEP_SHA1_MGF1SHA1, &cek, &mut wrapped, None)
        .unwrap()
        .to_vec();
    format!(
        concat!(
            r#"<saml:EncryptedAssertion xmlns:saml="{saml}">"#,
            r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
            r#"<xenc:EncryptionMethod Algorithm="{content}"></xenc:EncryptionMethod>"#,
            r#"<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>"#,
            r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"></xenc:EncryptionMethod>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{wrapped}</xenc:CipherValue></xenc:CipherData>"#,
            r#"</xenc:EncryptedKey></ds:KeyInfo>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{value}</xenc:CipherValue></xenc:CipherData>"#,
            r#"</xenc:EncryptedData></saml:EncryptedAssertion>"#
        ),
        saml = idp::NS_SAML,
        content = content,
        wrapped = b64(&wrapped),
        value = b64(&cipher_value),
    )
}

/// The assertion of `spec`, signed by `key`.
fn signed_assertion(spec: &Spec, key: &Key) -> String {
    idp::sign(
        &idp::assertion(spec),
        &spec.assertion_id,
        key,
        &SigSpec::for_key(key),
    )
}

/// A whole sign-in in `browser` whose response `respond` makes from the default spec (as
/// `edit` changes it).
async fn sign_in_responding(
    local: &TestServer,
    browser: &mut Browser,
    edit: impl FnOnce(&mut Spec),
    respond: impl FnOnce(&Spec) -> String,
) -> reqwest::Response {
    let s = start(local, browser).await;
    let mut spec = spec(local, &s.request_id);
    edit(&mut spec);
    let to = parked(local, &respond(&spec), &s.relay_state).await;
    browser.get(local, &to).await
}

/// Whether the `openssl` command line is here; without it the independent checks are skipped.
fn openssl() -> bool {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED: openssl not found; the redirect signature is not checked independently"
        );
    }
    found
}

/// `openssl dgst -sha256 -verify` of `signature` over `data` with the public key of the DER
/// certificate `cert`: whether it says `Verified OK`.
fn openssl_verifies(cert: &[u8], data: &[u8], signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        b64(cert)
    );
    std::fs::write(path("cert.pem"), pem).unwrap();
    let pubkey = std::process::Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(path("cert.pem"))
        .output()
        .unwrap();
    assert!(pubkey.status.success(), "{pubkey:?}");
    std::fs::write(path("pubkey.pem"), &pubkey.stdout).unwrap();
    std::fs::write(path("data.txt"), data).unwrap();
    std::fs::write(path("sig.bin"), signature).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(path("pubkey.pem"))
        .arg("-signature")
        .arg(path("sig.bin"))
        .arg(path("data.txt"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("Verified OK") && out.status.success()
}

#[tokio::test]
async fn signed_requests_verify_with_openssl_against_the_certificate_of_our_metadata() {
    let local = server_with(|p| p.sign_authn_requests = Some(true)).await;
    let md = metadata(&local).await;
    assert!(md.contains(r#"AuthnRequestsSigned="true" WantAssertionsSigned="true""#));
    let signing = certificate_of(&md, "signing").expect("a signing key descriptor");
    let encryption = certificate_of(&md, "encryption").expect("an encryption key descriptor");
    assert_eq!(signing, encryption, "one SP key for both uses");
    let state = &local.running().unwrap().state;
    assert_eq!(
        state.saml_keys.as_ref().unwrap().certificate_der(),
        &signing[..]
    );

    let mut browser = Browser::default();
    let res = browser
        .get(&local, &format!("/federation/saml/{PROVIDER}/start"))
        .await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert_eq!(param(&to, "SigAlg").as_deref(), Some(RSA_SHA256));
    // SAML bindings §3.4.4.1: the signature is over `SAMLRequest=..&RelayState=..&SigAlg=..`
    // exactly as they appear, URL-encoded, in the query.
    let query = to.split_once('?').unwrap().1;
    let (signed, signature) = query.split_once("&Signature=").unwrap();
    assert!(signed.starts_with("SAMLRequest=") && signed.contains("&RelayState="));
    assert!(!signature.contains('&'), "Signature is the last parameter");
    let signature = base64::engine::general_purpose::STANDARD
        .decode(param(&to, "Signature").unwrap())
        .unwrap();
    assert_eq!(signature.len(), 384, "RSA-3072");
    if openssl() {
        assert!(openssl_verifies(&signing, signed.as_bytes(), &signature));
        let relay = param(&to, "RelayState").unwrap();
        let tampered = signed.replace(&format!("RelayState={relay}"), "RelayState=other");
        assert_ne!(tampered, signed);
        assert!(!openssl_verifies(&signing, tampered.as_bytes(), &signature));
    }
    // The library's own check agrees.
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        {
            let (_, cert) = x509_parser::parse_x509_certificate(&signing).unwrap();
            cert.public_key().subject_public_key.data.to_vec()
        },
    );
    public.verify(signed.as_bytes(), &signature).unwrap();
}

#[tokio::test]
async fn unsigned_requests_publish_only_the_encryption_key_and_the_key_outlives_a_restart() {
    let local = server_with(|_| {}).await;
    let md = metadata(&local).await;
    assert!(md.contains(r#"AuthnRequestsSigned="false" WantAssertionsSigned="true""#));
    assert!(certificate_of(&md, "signing").is_none());
    let cert = certificate_of(&md, "encryption").unwrap();
    assert!(md.contains(&format!(
        r#"<md:EncryptionMethod Algorithm="{AES256_GCM}"/>"#
    )));
    let mut browser = Browser::default();
    let res = browser
        .get(&local, &format!("/federation/saml/{PROVIDER}/start"))
        .await;
    let to = location(&res);
    assert!(param(&to, "Signature").is_none() && param(&to, "SigAlg").is_none());
    // Its creation is audited once, with the certificate's fingerprint.
    let created = |trail: Vec<authx_core::audit::AuditRecord>| -> Vec<String> {
        trail
            .into_iter()
            .filter(|r| r.kind == "saml_sp_key_created")
            .map(|r| r.detail)
            .collect()
    };
    let events = created(crate::email_change::audit_trail(&local).await);
    let fingerprint = authx_core::secret::TokenHash::of(&cert).to_hex();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains(&fingerprint), "{events:?}");
    // The key is the stored one: a restart publishes the same certificate and makes none.
    let local = local.restart().await.unwrap();
    assert_eq!(
        certificate_of(&metadata(&local).await, "encryption").unwrap(),
        cert
    );
    assert_eq!(
        created(crate::email_change::audit_trail(&local).await).len(),
        1
    );
}

#[tokio::test]
async fn an_assertion_encrypted_to_our_metadata_key_signs_in() {
    let local = server_with(|p| p.require_encrypted_assertions = Some(true)).await;
    let spki = spki_of(&certificate_of(&metadata(&local).await, "encryption").unwrap());
    let key = idp_key();
    let mut browser = Browser::default();
    let res = sign_in_responding(
        &local,
        &mut browser,
        |_| {},
        |s| {
            idp::response_around(
                s,
                &encrypt_to(&spki, &signed_assertion(s, &key), AES256_GCM),
                &key,
            )
        },
    )
    .await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).unwrap();
    assert_eq!(
        me(&local, &cookie).await["user"]["email"],
        "ann@example.org"
    );
}

#[tokio::test]
async fn cbc_plain_when_required_and_another_key_are_refused() {
    let local = server_with(|p| p.require_encrypted_assertions = Some(true)).await;
    let spki = spki_of(&certificate_of(&metadata(&local).await, "encryption").unwrap());
    let key = idp_key();
    let mut browser = Browser::default();

    // AES-CBC content encryption, to our key: refused by algorithm, never decrypted.
    let res = sign_in_responding(
        &local,
        &mut browser,
        |s| s.assertion_id = "_assert-cbc".into(),
        |s| {
            idp::response_around(
                s,
                &encrypt_to(&spki, &signed_assertion(s, &key), AES256_CBC),
                &key,
            )
        },
    )
    .await;
    assert_refused(&local, res, 0, "algorithm not allowed", "invalid assertion").await;
    assert!(refusals_end_with(&local, AES256_CBC).await);

    // A plain (signed, valid) assertion where encryption is required.
    let res = sign_in_responding(
        &local,
        &mut browser,
        |s| s.assertion_id = "_assert-plain".into(),
        |s| idp::response(s, &key),
    )
    .await;
    assert_refused(
        &local,
        res,
        0,
        "requires encrypted assertions",
        "invalid assertion",
    )
    .await;

    // Encrypted to another RSA key (not the one of our metadata).
    let other =
        aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let other_spki = aws_lc_rs::encoding::AsDer::as_der(&other.public_key())
        .unwrap()
        .as_ref()
        .to_vec();
    let res = sign_in_responding(
        &local,
        &mut browser,
        |s| s.assertion_id = "_assert-other-key".into(),
        |s| {
            idp::response_around(
                s,
                &encrypt_to(&other_spki, &signed_assertion(s, &key), AES256_GCM),
                &key,
            )
        },
    )
    .await;
    assert_refused(
        &local,
        res,
        0,
        "no decryption key unwraps the content key",
        "invalid assertion",
    )
    .await;
}

/// Whether the last `federation_refused` event names `text`.
async fn refusals_end_with(local: &TestServer, text: &str) -> bool {
    crate::saml::refusals(local)
        .await
        .last()
        .is_some_and(|r| r.contains(text))
}

/// The default assertion with one more attribute, signed.
fn with_attribute(s: &Spec, key: &Key, name: &str, values: &[&str]) -> String {
    let values: String = values
        .iter()
        .map(|v| format!("<saml:AttributeValue>{v}</saml:AttributeValue>"))
        .collect();
    let assertion = idp::assertion(s).replace(
        "</saml:AttributeStatement>",
        &format!(
            r#"<saml:Attribute Name="{name}">{values}</saml:Attribute></saml:AttributeStatement>"#
        ),
    );
    let signed = idp::sign(&assertion, &s.assertion_id, key, &SigSpec::for_key(key));
    idp::response_around(s, &signed, key)
}

#[tokio::test]
async fn a_configured_attribute_is_the_subject_and_transient_name_ids_do_not_matter() {
    let local = server_with(|p| p.subject_attribute = Some("employeeNumber".into())).await;
    let key = idp_key();
    let transient = |id: &'static str| {
        move |s: &mut Spec| {
            s.assertion_id = format!("_assert-{id}");
            s.name_id_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient".into();
            s.name_id = format!("_transient-{id}");
        }
    };

    // Two sign-ins with different transient NameIDs and the same attribute: one account.
    let mut first = Browser::default();
    let res = sign_in_responding(&local, &mut first, transient("a"), |s| {
        with_attribute(s, &key, "employeeNumber", &["E-1001"])
    })
    .await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let one = me(&local, &session_cookie(&res).unwrap()).await;
    let mut second = Browser::default();
    let res = sign_in_responding(&local, &mut second, transient("b"), |s| {
        with_attribute(s, &key, "employeeNumber", &["E-1001"])
    })
    .await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let two = me(&local, &session_cookie(&res).unwrap()).await;
    assert_eq!(one["user"]["id"], two["user"]["id"]);
    let state = &local.running().unwrap().state;
    assert!(
        state
            .federation
            .link(idp::IDP, "E-1001")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        state
            .federation
            .link(idp::IDP, "_transient-a")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(user_count(&local).await, 1);

    // Without the attribute, or with two values of it: refused.
    let mut browser = Browser::default();
    let res = sign_in_responding(&local, &mut browser, transient("c"), |s| {
        idp::response(s, &key)
    })
    .await;
    assert_refused(&local, res, 1, "no subject attribute", "invalid assertion").await;
    let res = sign_in_responding(&local, &mut browser, transient("d"), |s| {
        with_attribute(s, &key, "employeeNumber", &["E-1001", "E-2002"])
    })
    .await;
    assert_refused(&local, res, 1, "several values", "invalid assertion").await;
}

#[tokio::test]
async fn the_acs_and_the_finish_step_are_rate_limited() {
    let local = TestServer::start_with(|f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            enable_saml: Some(true),
            saml: Some(vec![provider(true, true)]),
            ..FederationFile::default()
        });
        f.rate_limit = Some(RateLimitFile {
            sign_in: Some(2),
            ..RateLimitFile::default()
        });
    })
    .await
    .unwrap();
    let acs = format!("{}/federation/saml/{PROVIDER}/acs", local.url);
    let post = || {
        local
            .client
            .post(&acs)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://idp.example.org")
            .body("SAMLResponse=PHg%2BPC94Pg%3D%3D&RelayState=nothing")
            .send()
    };
    for _ in 0..2 {
        assert_ne!(post().await.unwrap().status(), 429);
    }
    let res = post().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // The finish step counts in the same class; a start is still a sign-in of its own.
    let res = local
        .get(&format!("/federation/saml/{PROVIDER}/finish?id=x"), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let res = local
        .get(&format!("/federation/saml/{PROVIDER}/start"), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}
