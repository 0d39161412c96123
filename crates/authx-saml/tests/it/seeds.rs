//! Writes the fuzz seeds for `fuzz/fuzz_targets/saml_response.rs`: responses signed with the
//! committed test IdP key, the wrapping corpus and the hostile documents. Run with
//! `cargo test -p authx-saml --test it write_fuzz_seeds -- --ignored`.

use crate::idp::*;
use crate::wrapping::{Case, after_issuer, xsw3_to_xsw8};

#[test]
#[ignore = "writes fuzz/seeds/saml_response; run by hand when the corpus changes"]
fn write_fuzz_seeds() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/saml_response"
    );
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, xml: &str| std::fs::write(format!("{dir}/{name}"), xml).unwrap();
    let key = || Key::from_pem(include_str!("../data/idp-rsa.key.pem"));
    let c = Case {
        key: key(),
        spec: Spec::default(),
    };

    write("valid_signed_assertion", &c.response(&c.signed()));
    write(
        "valid_both_signed",
        &response(
            &Spec {
                sign_response: true,
                ..Spec::default()
            },
            &c.key,
        ),
    );
    write(
        "valid_response_signed_only",
        &response(
            &Spec {
                sign_assertion: false,
                sign_response: true,
                ..Spec::default()
            },
            &c.key,
        ),
    );
    write("unsigned", &c.response(&c.unsigned()));
    let injected = Case {
        key: key(),
        spec: Spec {
            name_id: "user@evil.com.example.com".into(),
            ..Spec::default()
        },
    };
    write(
        "comment_injection",
        &injected
            .response(&injected.signed())
            .replace("evil.com.example", "evil.com<!---->.example"),
    );
    for (name, xml) in xsw3_to_xsw8(&c, &c.evil("_evil")) {
        write(&name.to_lowercase(), &xml);
    }
    write(
        "signature_moved",
        &c.response(&after_issuer(&c.evil("_evil"), &c.signature())),
    );
    write(
        "doctype_entity",
        &format!(
            "<!DOCTYPE x [<!ENTITY n \"admin\">]>{}",
            c.response(&c.signed())
        ),
    );
    write(
        "deep",
        &format!("{}{}", "<a>".repeat(300), "</a>".repeat(300)),
    );
    let sp = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(&pem_body(include_str!(
        "../data/sp-rsa.key.pem"
    )))
    .unwrap();
    let signed = crate::encrypted::signed_assertion(&c.key);
    for (name, enc) in [
        (
            "encrypted_aes256_oaep_sha1",
            crate::encrypted::aes256_oaep_sha1(),
        ),
        (
            "encrypted_aes128_oaep_sha256",
            crate::encrypted::aes128_oaep_sha256(),
        ),
    ] {
        let encrypted = crate::encrypted::encrypt(&signed, &sp, &enc);
        write(name, &response_around(&Spec::default(), &encrypted, &c.key));
    }
    write(
        "c14n_namespaces",
        r#"<x:r xmlns:x="urn:s" xmlns:y="urn:s" xmlns="urn:d"><y:a x:at="1&#9;&#xD;" y:bt="&lt;&quot;"><b xmlns=""> t&#13;&gt;<!--c--><?pi d?></b></y:a></x:r>"#,
    );
}

/// The committed seeds still mean what their names say under the fuzz target's expectations:
/// the `valid_*` and `encrypted_*` ones verify, every other one is refused.
#[test]
fn committed_fuzz_seeds_verify_as_named() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/saml_response"
    );
    let idp =
        [
            authx_saml::PinnedKey::from_certificate_pem(include_str!("../data/idp-rsa.cert.pem"))
                .unwrap(),
        ];
    let sp = [
        authx_saml::DecryptionKey::from_pkcs8(&pem_body(include_str!("../data/sp-rsa.key.pem")))
            .unwrap(),
    ];
    let mut exp = expect(&idp);
    exp.sp_decryption_keys = &sp;
    exp.allow_signed_response_only = true;
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = authx_saml::verify_response(&std::fs::read(&path).unwrap(), &exp);
        let should_verify = name.starts_with("valid_")
            || name.starts_with("encrypted_")
            || name == "comment_injection";
        assert_eq!(result.is_ok(), should_verify, "{name}: {result:?}");
        seen += 1;
    }
    assert!(seen >= 17, "only {seen} seeds");
}
