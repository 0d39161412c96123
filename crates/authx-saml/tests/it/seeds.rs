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
    write(
        "c14n_namespaces",
        r#"<x:r xmlns:x="urn:s" xmlns:y="urn:s" xmlns="urn:d"><y:a x:at="1&#9;&#xD;" y:bt="&lt;&quot;"><b xmlns=""> t&#13;&gt;<!--c--><?pi d?></b></y:a></x:r>"#,
    );
}
