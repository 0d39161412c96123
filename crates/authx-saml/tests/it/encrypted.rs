//! Encrypted assertions: RSA-OAEP key transport and AES-GCM content, as IdPs send them.

use authx_saml::{DecryptionKey, SamlError, SignedBy, verify_response};
use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};

use crate::idp::*;

const AES256_GCM_URI: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
const AES128_GCM_URI: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
const MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const OAEP11: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";

pub(crate) struct Enc {
    content_uri: &'static str,
    key_method: String,
    oaep: &'static OaepAlgorithm,
    /// Put the EncryptedKey beside EncryptedData (with a RetrievalMethod) instead of inside.
    key_outside: bool,
}

pub(crate) fn aes256_oaep_sha1() -> Enc {
    Enc {
        content_uri: AES256_GCM_URI,
        key_method: format!(
            r#"<xenc:EncryptionMethod Algorithm="{MGF1P}"><ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"></ds:DigestMethod></xenc:EncryptionMethod>"#
        ),
        oaep: &OAEP_SHA1_MGF1SHA1,
        key_outside: false,
    }
}

pub(crate) fn aes128_oaep_sha256() -> Enc {
    Enc {
        content_uri: AES128_GCM_URI,
        key_method: format!(
            r#"<xenc:EncryptionMethod Algorithm="{OAEP11}"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><xenc11:MGF xmlns:xenc11="http://www.w3.org/2009/xmlenc11#" Algorithm="http://www.w3.org/2009/xmlenc11#mgf1sha256"/></xenc:EncryptionMethod>"#
        ),
        oaep: &OAEP_SHA256_MGF1SHA256,
        key_outside: true,
    }
}

/// `saml:EncryptedAssertion` holding `plaintext`, encrypted to `sp`; written in canonical form
/// (with the key inside `ds:KeyInfo`) so that a response signature can cover it.
pub(crate) fn encrypt(plaintext: &str, sp: &PrivateDecryptingKey, enc: &Enc) -> String {
    let rng = SystemRandom::new();
    let (alg, len) = if enc.content_uri == AES256_GCM_URI {
        (&AES_256_GCM, 32)
    } else {
        (&AES_128_GCM, 16)
    };
    let mut cek = vec![0u8; len];
    rng.fill(&mut cek).unwrap();
    let mut iv = [0u8; 12];
    rng.fill(&mut iv).unwrap();
    let mut body = plaintext.as_bytes().to_vec();
    LessSafeKey::new(UnboundKey::new(alg, &cek).unwrap())
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut body)
        .unwrap();
    let cipher_value = b64(&[&iv[..], &body].concat());
    let public = OaepPublicEncryptingKey::new(sp.public_key()).unwrap();
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let wrapped = public
        .encrypt(enc.oaep, &cek, &mut wrapped, None)
        .unwrap()
        .to_vec();
    let encrypted_key = format!(
        r#"<xenc:EncryptedKey Id="_ek1">{}<xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>"#,
        enc.key_method,
        b64(&wrapped)
    );
    let (inside, outside) = if enc.key_outside {
        (r##"<ds:RetrievalMethod Type="http://www.w3.org/2001/04/xmlenc#EncryptedKey" URI="#_ek1"/>"##.to_owned(), encrypted_key)
    } else {
        (encrypted_key, String::new())
    };
    format!(
        concat!(
            r#"<saml:EncryptedAssertion xmlns:saml="{saml}">"#,
            r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
            r#"<xenc:EncryptionMethod Algorithm="{content}"></xenc:EncryptionMethod>"#,
            r#"<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">{inside}</ds:KeyInfo>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{value}</xenc:CipherValue></xenc:CipherData>"#,
            r#"</xenc:EncryptedData>{outside}</saml:EncryptedAssertion>"#
        ),
        saml = NS_SAML,
        content = enc.content_uri,
        inside = inside,
        value = cipher_value,
        outside = outside.replace("<xenc:EncryptedKey ", r#"<xenc:EncryptedKey xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" "#),
    )
}

struct Sp {
    key: DecryptionKey,
    raw: PrivateDecryptingKey,
}

fn sp() -> Sp {
    let raw = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    Sp {
        key: DecryptionKey::new(raw.clone()).unwrap(),
        raw,
    }
}

fn verify(
    xml: &str,
    idp: &Key,
    sp: &[DecryptionKey],
) -> Result<authx_saml::VerifiedAssertion, SamlError> {
    let keys = [idp.pinned()];
    let mut exp = expect(&keys);
    exp.sp_decryption_keys = sp;
    verify_response(xml.as_bytes(), &exp)
}

pub(crate) fn signed_assertion(idp: &Key) -> String {
    let spec = Spec::default();
    sign(
        &assertion(&spec),
        &spec.assertion_id,
        idp,
        &SigSpec::for_key(idp),
    )
}

#[test]
fn encrypted_signed_assertion_is_decrypted_verified_and_read() {
    let (idp, sp) = (Key::rsa(), sp());
    for enc in [aes256_oaep_sha1(), aes128_oaep_sha256()] {
        let xml = response_around(
            &Spec::default(),
            &encrypt(&signed_assertion(&idp), &sp.raw, &enc),
            &idp,
        );
        let v = verify(&xml, &idp, std::slice::from_ref(&sp.key)).unwrap();
        assert_eq!(v.name_id, "u-4711");
        assert_eq!(v.signed_by, SignedBy::Assertion);
        assert!(v.encrypted);
    }
}

/// The IdP's serializer may rely on `saml:` being declared on the response; the plaintext is
/// read in that context, and the signature still verifies (exclusive C14N renders it).
#[test]
fn plaintext_relying_on_outer_namespace_declarations_verifies() {
    let (idp, sp) = (Key::ec(), sp());
    let plain = signed_assertion(&idp).replacen(&format!(r#" xmlns:saml="{NS_SAML}""#), "", 1);
    let enc = encrypt(&plain, &sp.raw, &aes256_oaep_sha1());
    let xml = response_around(&Spec::default(), &enc, &idp);
    assert_eq!(
        verify(&xml, &idp, std::slice::from_ref(&sp.key))
            .unwrap()
            .name_id,
        "u-4711"
    );
}

#[test]
fn encrypted_but_unsigned_assertion_is_refused() {
    let (idp, sp) = (Key::rsa(), sp());
    let enc = encrypt(&assertion(&Spec::default()), &sp.raw, &aes256_oaep_sha1());
    let xml = response_around(&Spec::default(), &enc, &idp);
    // Anyone can encrypt to the SP's public key: encryption is no signature.
    assert_eq!(
        verify(&xml, &idp, std::slice::from_ref(&sp.key)),
        Err(SamlError::AssertionNotSigned)
    );
}

#[test]
fn encrypted_assertion_without_or_with_the_wrong_key_is_refused() {
    let (idp, sp, other) = (Key::rsa(), sp(), sp());
    let xml = response_around(
        &Spec::default(),
        &encrypt(&signed_assertion(&idp), &sp.raw, &aes256_oaep_sha1()),
        &idp,
    );
    assert_eq!(
        verify(&xml, &idp, &[]),
        Err(SamlError::EncryptedAssertionUnsupported)
    );
    assert_eq!(
        verify(&xml, &idp, std::slice::from_ref(&other.key)),
        Err(SamlError::Decryption(
            "no decryption key unwraps the content key"
        ))
    );
}

#[test]
fn tampered_ciphertext_is_refused() {
    let (idp, sp) = (Key::rsa(), sp());
    let enc = encrypt(&signed_assertion(&idp), &sp.raw, &aes256_oaep_sha1());
    // Flip one base64 character of the content cipher value (the last CipherValue).
    let at = enc.rfind("</xenc:CipherValue>").unwrap() - 10;
    let mut bytes = enc.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let xml = response_around(&Spec::default(), &String::from_utf8(bytes).unwrap(), &idp);
    assert_eq!(
        verify(&xml, &idp, std::slice::from_ref(&sp.key)),
        Err(SamlError::Decryption("content does not authenticate"))
    );
}

#[test]
fn cbc_and_pkcs1_key_transport_are_refused() {
    let (idp, sp) = (Key::rsa(), sp());
    let good = encrypt(&signed_assertion(&idp), &sp.raw, &aes256_oaep_sha1());
    for (from, to) in [
        (
            AES256_GCM_URI,
            "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        ),
        (
            AES256_GCM_URI,
            "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
        ),
        (MGF1P, "http://www.w3.org/2001/04/xmlenc#rsa-1_5"),
    ] {
        let xml = response_around(&Spec::default(), &good.replacen(from, to, 1), &idp);
        assert_eq!(
            verify(&xml, &idp, std::slice::from_ref(&sp.key)),
            Err(SamlError::AlgorithmRefused(to.into())),
            "{to}"
        );
    }
}

/// The decrypted bytes are held to the same rules: one assertion, no DTD.
#[test]
fn hostile_plaintexts_are_refused() {
    let (idp, sp) = (Key::rsa(), sp());
    let signed = signed_assertion(&idp);
    let evil = assertion(&Spec {
        assertion_id: "_evil".into(),
        name_id: "admin".into(),
        ..Spec::default()
    });
    for (plain, expected) in [
        (
            format!("{evil}{signed}"),
            SamlError::AssertionCount { found: 2 },
        ),
        (
            format!("<!DOCTYPE x [<!ENTITY e \"admin\">]>{signed}"),
            SamlError::DtdRefused,
        ),
        (
            format!("text{signed}"),
            SamlError::Unexpected("text around the decrypted assertion"),
        ),
    ] {
        let xml = response_around(
            &Spec::default(),
            &encrypt(&plain, &sp.raw, &aes256_oaep_sha1()),
            &idp,
        );
        assert_eq!(
            verify(&xml, &idp, std::slice::from_ref(&sp.key)),
            Err(expected)
        );
    }
    // A plain assertion next to an encrypted one.
    let both = format!(
        "{}{}",
        signed,
        encrypt(&signed, &sp.raw, &aes256_oaep_sha1())
    );
    let xml = response_around(&Spec::default(), &both, &idp);
    assert_eq!(
        verify(&xml, &idp, std::slice::from_ref(&sp.key)),
        Err(SamlError::AssertionCount { found: 2 })
    );
}

/// A signed response carrying an encrypted, unsigned assertion is accepted only where
/// response-only signatures are allowed; the response signature covers the ciphertext.
#[test]
fn signed_response_with_encrypted_unsigned_assertion() {
    let (idp, sp) = (Key::rsa(), sp());
    let spec = Spec {
        sign_response: true,
        ..Spec::default()
    };
    let xml = response_around(
        &spec,
        &encrypt(&assertion(&spec), &sp.raw, &aes256_oaep_sha1()),
        &idp,
    );
    assert_eq!(
        verify(&xml, &idp, std::slice::from_ref(&sp.key)),
        Err(SamlError::AssertionNotSigned)
    );
    let keys = [idp.pinned()];
    let mut exp = expect(&keys);
    exp.sp_decryption_keys = std::slice::from_ref(&sp.key);
    exp.allow_signed_response_only = true;
    assert_eq!(
        verify_response(xml.as_bytes(), &exp).unwrap().signed_by,
        SignedBy::ResponseOnly
    );
}
