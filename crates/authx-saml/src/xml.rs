//! The one XML parser: size limits, no DTD, and the helpers that read the parsed tree.

use roxmltree::{Document, Node, ParsingOptions};

use crate::SamlError;

/// SAML 2.0 protocol namespace (`samlp:`).
pub(crate) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML 2.0 assertion namespace (`saml:`).
pub(crate) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML 2.0 metadata namespace (`md:`).
pub(crate) const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML Signature namespace (`ds:`).
pub(crate) const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Exclusive C14N namespace, used by `ec:InclusiveNamespaces`.
pub(crate) const NS_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Size limits applied before and while parsing an untrusted document.
///
/// The defaults fit real IdP responses (a few KiB, depth below 15, a few hundred nodes) with a
/// wide margin and keep the work per request small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document accepted, in bytes of XML (after base64 decoding). Default 256 KiB.
    pub max_bytes: usize,
    /// Deepest element nesting accepted (the document element is depth 1). Default 32; values
    /// above 256 are treated as 256.
    pub max_depth: usize,
    /// Most nodes (elements, text, comments, processing instructions, attributes count too in
    /// the parser's tally) accepted. Default 10,000.
    pub max_nodes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024,
            max_depth: 32,
            max_nodes: 10_000,
        }
    }
}

/// Parses `bytes` as a standalone UTF-8 XML document within `limits`.
///
/// Refused before parsing: more than `max_bytes`, anything that is not UTF-8, and any document
/// type declaration (`<!DOCTYPE`), so no entity is ever declared, expanded or fetched. While
/// parsing, the parser stops at `max_nodes`; after it, the nesting depth is checked before any
/// other code walks the tree.
pub(crate) fn parse<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Document<'a>, SamlError> {
    if bytes.len() > limits.max_bytes {
        return Err(SamlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SamlError::Malformed("not UTF-8".into()))?;
    // roxmltree refuses DTDs with an internal subset by default but accepts an empty
    // `<!DOCTYPE x>`; refuse every declaration so that no DTD ever reaches the parser. The byte
    // search may also hit the string inside a comment or CDATA section, which is refused too.
    if contains(text.as_bytes(), b"<!DOCTYPE") || contains(text.as_bytes(), b"<!ENTITY") {
        return Err(SamlError::DtdRefused);
    }
    // roxmltree descends recursively into nested elements, so the depth is bounded before it
    // runs; the tree is checked again afterwards.
    let max_depth = limits.max_depth.min(MAX_DEPTH_CEILING);
    prescan_depth(text.as_bytes(), max_depth)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => SamlError::DtdRefused,
        roxmltree::Error::NodesLimitReached => SamlError::TooManyNodes {
            limit: limits.max_nodes,
        },
        roxmltree::Error::EntityReferenceLoop(_) => SamlError::DtdRefused,
        other => SamlError::Malformed(other.to_string()),
    })?;
    check_depth(&doc, max_depth)?;
    // Namespaces in XML 1.0 §3 forbids `xmlns:p=""`; roxmltree accepts it, and a prefixed
    // name in no namespace has no canonical form (found by the saml_response fuzz target).
    for node in doc.descendants().filter(Node::is_element) {
        if node
            .namespaces()
            .any(|ns| ns.name().is_some() && ns.uri().is_empty())
        {
            return Err(SamlError::Malformed(
                "a prefix bound to an empty namespace name".into(),
            ));
        }
        // roxmltree accepts names such as `:a` that are not QNames (Namespaces in XML 1.0 §4);
        // exclusive C14N would read `:` as a use of the default namespace while other
        // implementations do not (found by comparing with libxml2's canonicalizer).
        let element = crate::c14n::element_qname(text, node)?;
        let attributes = node
            .attributes()
            .map(|a| text.get(a.range_qname()).unwrap_or(":"));
        if std::iter::once(element)
            .chain(attributes)
            .any(|q| !is_qname(q))
        {
            return Err(SamlError::Malformed(
                "a name that is not a qualified name".into(),
            ));
        }
    }
    Ok(doc)
}

/// The highest nesting depth accepted whatever [`Limits::max_depth`] says: the parser and the
/// canonicalizer recurse once per level.
const MAX_DEPTH_CEILING: usize = 256;

/// Counts element nesting in the raw text without building anything: start tags that are not
/// empty-element tags open a level, end tags close one; comments, CDATA sections, processing
/// instructions and quoted attribute values are skipped. On well-formed input this is the
/// parser's own nesting; on malformed input the parser stops at the first error it meets, which
/// this scan passes as well.
fn prescan_depth(b: &[u8], max: usize) -> Result<(), SamlError> {
    let find = |from: usize, needle: &[u8]| -> usize {
        b.get(from..)
            .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
            .map_or(b.len(), |p| from + p + needle.len())
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = find(i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = find(i + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            i = find(i + 2, b"?>");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i = find(i + 2, b">");
        } else if rest.starts_with(b"<!") {
            i = find(i + 2, b">");
        } else {
            let mut j = i + 1;
            let mut quote = None;
            while j < b.len() {
                let c = b[j];
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if c == b'"' || c == b'\'' => quote = Some(c),
                    None if c == b'>' => break,
                    None => {}
                }
                j += 1;
            }
            if b.get(j.wrapping_sub(1)) != Some(&b'/') {
                depth += 1;
                if depth > max {
                    return Err(SamlError::TooDeep { limit: max });
                }
            }
            i = j + 1;
        }
    }
    Ok(())
}

/// A QName's shape: at most one colon, neither first nor last.
fn is_qname(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(':')
        && !name.ends_with(':')
        && name.bytes().filter(|b| *b == b':').count() <= 1
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Walks the tree without recursion and refuses it if elements nest deeper than `max`.
fn check_depth(doc: &Document<'_>, max: usize) -> Result<(), SamlError> {
    let mut stack: Vec<(Node<'_, '_>, usize)> = vec![(doc.root(), 0)];
    while let Some((node, depth)) = stack.pop() {
        if depth > max {
            return Err(SamlError::TooDeep { limit: max });
        }
        for child in node.children().filter(Node::is_element) {
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

/// True if `node` is an element with namespace `ns` and local name `name`.
pub(crate) fn is(node: Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == name
}

/// The element children of `node`.
pub(crate) fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

/// The element children of `node` named `ns`:`name`.
pub(crate) fn children<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'static str,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |n| is(*n, ns, name))
}

/// The single child `ns`:`name` of `node`, if there is one; more than one is refused.
pub(crate) fn optional_child<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'static str,
    name: &'static str,
    what: &'static str,
) -> Result<Option<Node<'a, 'i>>, SamlError> {
    let mut it = children(node, ns, name);
    let first = it.next();
    if it.next().is_some() {
        return Err(SamlError::Unexpected(what));
    }
    Ok(first)
}

/// The single child `ns`:`name` of `node`; none or more than one is refused.
pub(crate) fn one_child<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'static str,
    name: &'static str,
    what: &'static str,
) -> Result<Node<'a, 'i>, SamlError> {
    optional_child(node, ns, name, what)?.ok_or(SamlError::Missing(what))
}

/// The whole character content of an element whose content is text only.
///
/// Every text node is concatenated, so a comment inside the value
/// (`user@evil.com<!---->.example.com`) cannot cut the value short: the result is what was
/// signed, because exclusive C14N without comments drops the comment and joins the same text.
/// Child elements are refused.
pub(crate) fn text_content(node: Node<'_, '_>, what: &'static str) -> Result<String, SamlError> {
    let mut out = String::new();
    for child in node.children() {
        if child.is_element() {
            return Err(SamlError::Unexpected(what));
        }
        if child.is_text() {
            out.push_str(child.text().unwrap_or_default());
        }
    }
    Ok(out)
}

/// The text content with surrounding XML white space trimmed (for URIs, IDs and dates).
pub(crate) fn trimmed_text(node: Node<'_, '_>, what: &'static str) -> Result<String, SamlError> {
    Ok(text_content(node, what)?
        .trim_matches(is_xml_space)
        .to_owned())
}

/// XML white space (XML 1.0 §2.3 `S`).
pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A no-namespace attribute of `node`.
pub(crate) fn attr<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attribute(name)
}

/// Escapes a value for a double-quoted attribute in XML we write.
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzz target saml_response, seeds/saml_response/prefix_bound_to_empty_uri):
    /// `xmlns:x=""` made `x:r` a prefixed name in no namespace, whose canonical form lacked a
    /// declaration and did not parse again.
    #[test]
    fn prefix_bound_to_empty_namespace_is_refused() {
        let input = b"<x:r xmlns:x=\"\">&#9;&#xecD;\" yz:d</x:r>";
        assert!(matches!(
            parse(input, &Limits::default()),
            Err(SamlError::Malformed(_))
        ));
        let nested = b"<r xmlns:x=\"urn:x\"><a xmlns:x=\"\"/></r>";
        assert!(matches!(
            parse(nested, &Limits::default()),
            Err(SamlError::Malformed(_))
        ));
        // Undeclaring the default namespace is allowed.
        assert!(
            parse(
                b"<r xmlns=\"urn:d\"><a xmlns=\"\"/></r>",
                &Limits::default()
            )
            .is_ok()
        );
    }

    /// Regression (differential run against `xmllint --exc-c14n` over the fuzz corpus): an
    /// attribute named `:xat` was taken as using the default namespace.
    #[test]
    fn names_that_are_not_qnames_are_refused() {
        for input in [
            &b"<r xmlns=\"urn:d\"><a :xat=\"1\"/></r>"[..],
            b"<:r/>",
            b"<r a:=\"1\"/>",
        ] {
            assert!(
                matches!(
                    parse(input, &Limits::default()),
                    Err(SamlError::Malformed(_))
                ),
                "{input:?}"
            );
        }
        assert!(
            parse(
                b"<p:r xmlns:p=\"urn:p\" p:a=\"1\" b=\"2\"/>",
                &Limits::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn doctype_and_entities_are_refused_before_parsing() {
        for input in [
            &b"<!DOCTYPE r><r/>"[..],
            b"<!DOCTYPE r [<!ENTITY e \"x\">]><r>&e;</r>",
            b"<r><!-- <!ENTITY e \"x\"> --></r>",
        ] {
            assert_eq!(
                parse(input, &Limits::default()).unwrap_err(),
                SamlError::DtdRefused
            );
        }
    }

    /// C14N §3.6's input is ISO-8859-1: only UTF-8 is read.
    #[test]
    fn non_utf8_is_refused() {
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<doc>\xa9</doc>";
        assert_eq!(
            parse(latin1, &Limits::default()).unwrap_err(),
            SamlError::Malformed("not UTF-8".into())
        );
    }

    #[test]
    fn depth_prescan_skips_markup_that_is_not_an_element() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let ok = b"<a><b/><!-- <c><c><c> --><![CDATA[<c><c><c>]]><?pi <c><c>?><d x='>' y=\"/>\"></d></a>";
        assert!(parse(ok, &limits).is_ok());
        assert_eq!(
            parse(
                b"<a><b><c/></b></a>",
                &Limits {
                    max_depth: 2,
                    ..Limits::default()
                }
            )
            .unwrap_err(),
            SamlError::TooDeep { limit: 2 }
        );
    }
}
