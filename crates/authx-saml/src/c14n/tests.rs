//! The W3C vectors (tests/vectors/c14n/, see README there) and the cases SAML depends on.

use super::*;
use crate::Limits;
use crate::xml::parse;

macro_rules! vector {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/c14n/",
            $name
        ))
    };
}

fn exc(xml: &str, local: &str, options: &Options) -> String {
    let doc = parse(xml.as_bytes(), &Limits::default()).unwrap();
    let node = doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local)
        .unwrap();
    String::from_utf8(canonicalize(node, options).unwrap()).unwrap()
}

fn whole(xml: &str, with_comments: bool) -> String {
    let doc = parse(xml.as_bytes(), &Limits::default()).unwrap();
    let options = Options {
        with_comments,
        ..Options::default()
    };
    String::from_utf8(canonicalize_document(&doc, &options).unwrap()).unwrap()
}

/// Exclusive C14N §2.2: the same element in two different contexts canonicalizes to the same
/// octets, with only the visibly utilized namespaces, `xml:lang` not inherited.
#[test]
fn exc_c14n_2_2_same_octets_in_both_contexts() {
    let expected = vector!("exc-2.2.out.xml");
    assert_eq!(
        exc(vector!("exc-2.2-a.in.xml"), "elem2", &Options::default()),
        expected
    );
    assert_eq!(
        exc(vector!("exc-2.2-b.in.xml"), "elem2", &Options::default()),
        expected
    );
}

#[test]
fn c14n_3_1_pis_and_comments_outside_the_document_element() {
    assert_eq!(
        whole(vector!("c14n-3.1.in.xml"), false),
        vector!("c14n-3.1.out.xml")
    );
    assert_eq!(
        whole(vector!("c14n-3.1.in.xml"), true),
        vector!("c14n-3.1.comments.out.xml")
    );
}

#[test]
fn c14n_3_2_whitespace_in_content_is_kept() {
    assert_eq!(
        whole(vector!("c14n-3.2.in.xml"), false),
        vector!("c14n-3.2.out.xml")
    );
}

#[test]
fn c14n_3_3_start_and_end_tags_with_exclusive_namespaces() {
    assert_eq!(
        whole(vector!("c14n-3.3.in.xml"), false),
        vector!("c14n-3.3.exc.out.xml")
    );
}

#[test]
fn c14n_3_4_character_references_cdata_and_attribute_escaping() {
    assert_eq!(
        whole(vector!("c14n-3.4.in.xml"), false),
        vector!("c14n-3.4.out.xml")
    );
}

/// A namespace declared on an ancestor outside the subset is rendered where it is first used.
#[test]
fn unrendered_ancestor_namespace_is_declared_where_used() {
    let xml = r#"<r xmlns:n3="urn:n3" xmlns:p="urn:p"><p:a><n3:b/></p:a></r>"#;
    assert_eq!(
        exc(xml, "a", &Options::default()),
        r#"<p:a xmlns:p="urn:p"><n3:b xmlns:n3="urn:n3"></n3:b></p:a>"#
    );
}

/// `InclusiveNamespaces PrefixList="n3"` renders n3 at the apex although the apex does not use it,
/// and not again below; `#default` works the same way for the default namespace.
#[test]
fn inclusive_namespaces_prefix_list() {
    let xml = r#"<r xmlns="urn:d" xmlns:n3="urn:n3" xmlns:p="urn:p"><p:a><n3:b/></p:a></r>"#;
    let options = Options {
        inclusive_prefixes: vec!["n3".into()],
        ..Options::default()
    };
    assert_eq!(
        exc(xml, "a", &options),
        r#"<p:a xmlns:n3="urn:n3" xmlns:p="urn:p"><n3:b></n3:b></p:a>"#
    );
    let options = Options {
        inclusive_prefixes: vec!["".into()],
        ..Options::default()
    };
    assert_eq!(
        exc(xml, "a", &options),
        r#"<p:a xmlns="urn:d" xmlns:p="urn:p"><n3:b xmlns:n3="urn:n3"></n3:b></p:a>"#
    );
}

/// The same URI under two prefixes stays two prefixes: names are emitted as written.
#[test]
fn original_prefixes_are_kept() {
    let xml = r#"<x:r xmlns:x="urn:s" xmlns:y="urn:s"><y:a x:at="1" y:bt="2"/></x:r>"#;
    assert_eq!(
        exc(xml, "a", &Options::default()),
        r#"<y:a xmlns:x="urn:s" xmlns:y="urn:s" x:at="1" y:bt="2"></y:a>"#
    );
}

/// Comments are dropped without `#WithComments` and kept with it; text around them joins.
#[test]
fn comments_with_and_without() {
    let xml = "<a>user@evil.com<!---->.example.com</a>";
    assert_eq!(
        exc(xml, "a", &Options::default()),
        "<a>user@evil.com.example.com</a>"
    );
    let with = Options {
        with_comments: true,
        ..Options::default()
    };
    assert_eq!(
        exc(xml, "a", &with),
        "<a>user@evil.com<!---->.example.com</a>"
    );
}

/// The excluded node (the enveloped signature) and its subtree are left out, nothing else.
#[test]
fn excluded_subtree_is_left_out() {
    let xml = r#"<a ID="x"><b/><ds:S xmlns:ds="urn:ds"><c/></ds:S><d/></a>"#;
    let doc = parse(xml.as_bytes(), &Limits::default()).unwrap();
    let a = doc.root_element();
    let s = a.children().find(|n| n.tag_name().name() == "S").unwrap();
    let options = Options {
        exclude: Some(s.id()),
        ..Options::default()
    };
    assert_eq!(
        String::from_utf8(canonicalize(a, &options).unwrap()).unwrap(),
        r#"<a ID="x"><b></b><d></d></a>"#
    );
}

/// Line ends in the input are normalized by the parser (XML 1.0 §2.11) before C14N.
#[test]
fn crlf_is_normalized() {
    assert_eq!(
        exc("<a>x\r\ny\rz</a>", "a", &Options::default()),
        "<a>x\ny\nz</a>"
    );
}

/// Differential check against libxml2 (`xmllint --exc-c14n`, exclusive C14N with comments over
/// the whole document) on the W3C inputs, the fuzz seeds and, when `AUTHX_C14N_DIFF_DIR` names
/// a directory (e.g. a fuzz corpus), every file in it that both accept. Skipped, loudly, where
/// xmllint (Debian package libxml2-utils) is missing.
#[test]
fn agrees_with_libxml2_exclusive_c14n() {
    let xmllint = std::env::var_os("AUTHX_XMLLINT").unwrap_or_else(|| "xmllint".into());
    if std::process::Command::new(&xmllint)
        .arg("--version")
        .output()
        .is_err()
    {
        println!(
            "SKIPPED: xmllint is not installed (Debian package libxml2-utils); the libxml2 C14N comparison did not run"
        );
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let mut dirs = vec![
        format!("{root}/tests/vectors/c14n"),
        format!("{root}/../../fuzz/seeds/saml_response"),
    ];
    dirs.extend(std::env::var("AUTHX_C14N_DIFF_DIR").ok());
    let (mut compared, mut differ) = (0, Vec::new());
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md")
                || path.to_string_lossy().ends_with(".out.xml")
            {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let Ok(doc) = parse(&bytes, &Limits::default()) else {
                continue;
            };
            let options = Options {
                with_comments: true,
                ..Options::default()
            };
            let ours = canonicalize_document(&doc, &options).unwrap();
            let out = std::process::Command::new(&xmllint)
                .arg("--exc-c14n")
                .arg(&path)
                .output()
                .unwrap();
            if !out.status.success() {
                continue;
            }
            compared += 1;
            if out.stdout != ours {
                differ.push(path.display().to_string());
            }
        }
    }
    println!("compared {compared} documents with libxml2");
    assert!(compared >= 20, "only {compared} documents compared");
    assert!(
        differ.is_empty(),
        "{} of {compared} differ from libxml2: {differ:?}",
        differ.len()
    );
}
