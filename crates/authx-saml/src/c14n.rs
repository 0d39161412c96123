//! Exclusive XML Canonicalization 1.0 (<http://www.w3.org/2001/10/xml-exc-c14n#>), over a node
//! of the parsed tree.
//!
//! Only what XML Signature needs for SAML: the subtree of one element (optionally minus one
//! descendant, the enveloped signature), with or without comments, and an `InclusiveNamespaces`
//! `PrefixList`. The whole-document form exists for the W3C test vectors. Inputs never have a
//! DTD (the parser refuses them), so there are no default attributes or entity references to
//! expand.
//!
//! roxmltree resolves names to (namespace URI, local name) and does not keep prefixes, but it
//! keeps each node's byte range in the original text; exclusive C14N must emit the original
//! qualified names, so they are read back from those ranges.

use roxmltree::{Node, NodeId, NodeType};

use crate::SamlError;

/// The `xml` prefix's namespace; its declaration is never rendered (C14N §2.3).
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// How to canonicalize.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Keep comments (`#WithComments`).
    pub(crate) with_comments: bool,
    /// `InclusiveNamespaces PrefixList`: prefixes treated as in inclusive C14N; `""` stands
    /// for `#default`.
    pub(crate) inclusive_prefixes: Vec<String>,
    /// A descendant left out with its subtree (the enveloped-signature transform).
    pub(crate) exclude: Option<NodeId>,
}

/// Canonicalizes the subtree rooted at the element `apex`.
pub(crate) fn canonicalize(apex: Node<'_, '_>, options: &Options) -> Result<Vec<u8>, SamlError> {
    if !apex.is_element() {
        return Err(SamlError::Malformed(
            "canonicalization of a non-element".into(),
        ));
    }
    let mut out = Vec::with_capacity(apex.range().len());
    let mut c = Canonicalizer {
        options,
        out: &mut out,
        text: apex.document().input_text(),
    };
    c.element(apex, &[])?;
    Ok(out)
}

/// Canonicalizes a whole document (C14N §2.1: comments and processing instructions outside the
/// document element, separated by line feeds).
#[cfg(test)]
pub(crate) fn canonicalize_document(
    doc: &roxmltree::Document<'_>,
    options: &Options,
) -> Result<Vec<u8>, SamlError> {
    let mut out = Vec::new();
    let mut c = Canonicalizer {
        options,
        out: &mut out,
        text: doc.input_text(),
    };
    let mut after_root = false;
    for node in doc.root().children() {
        match node.node_type() {
            NodeType::Element => {
                c.element(node, &[])?;
                after_root = true;
            }
            NodeType::Comment | NodeType::PI => {
                if node.is_comment() && !options.with_comments {
                    continue;
                }
                if after_root {
                    c.out.push(b'\n');
                }
                c.leaf(node);
                if !after_root {
                    c.out.push(b'\n');
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

struct Canonicalizer<'o, 'w, 't> {
    options: &'o Options,
    out: &'w mut Vec<u8>,
    text: &'t str,
}

/// A namespace declaration rendered on an output ancestor: (prefix, URI), `""` for the default.
type Rendered = (String, String);

impl Canonicalizer<'_, '_, '_> {
    /// Emits `node` (an element) and its subtree. `rendered` is the namespace context the
    /// nearest output ancestor established (exclusive C14N §3, "output ancestor").
    fn element(&mut self, node: Node<'_, '_>, rendered: &[Rendered]) -> Result<(), SamlError> {
        let qname = element_qname(self.text, node)?;
        let own_prefix = prefix_of(qname);

        // Attributes with their original qualified names; namespace declarations are not
        // attributes in roxmltree.
        let mut attrs: Vec<(&str, &str, &str, &str)> = Vec::new(); // (ns, local, qname, value)
        let mut utilized: Vec<&str> = vec![own_prefix];
        for a in node.attributes() {
            let q = self
                .text
                .get(a.range_qname())
                .ok_or_else(|| bad("attribute name"))?;
            let ns = a.namespace().unwrap_or("");
            if ns != NS_XML {
                if let Some(p) = q.split_once(':').map(|(p, _)| p) {
                    utilized.push(p);
                }
            }
            attrs.push((ns, a.name(), q, a.value()));
        }

        // Namespace declarations to render: visibly utilized prefixes and the inclusive ones,
        // each only if the output ancestors did not already render the same binding.
        let mut decls: Vec<Rendered> = Vec::new();
        let mut context: Vec<Rendered> = rendered.to_vec();
        let mut wanted: Vec<&str> = utilized.clone();
        wanted.extend(self.options.inclusive_prefixes.iter().map(String::as_str));
        wanted.sort_unstable();
        wanted.dedup();
        for prefix in wanted {
            if prefix == "xml" {
                continue;
            }
            let in_scope = lookup(node, prefix);
            let value = match in_scope {
                Some(uri) => uri.to_owned(),
                // An absent default namespace is the empty URI.
                None if prefix.is_empty() => String::new(),
                // A used prefix without a binding cannot occur in a document the parser
                // accepted; an unbound inclusive prefix is simply not rendered.
                None if !utilized.contains(&prefix) => continue,
                None => return Err(SamlError::Malformed(format!("unbound prefix {prefix}"))),
            };
            let current = context
                .iter()
                .find(|(p, _)| p == prefix)
                .map(|(_, v)| v.as_str());
            let needed = match current {
                Some(v) => v != value,
                // Nothing rendered above: xmlns="" is implied, any real binding is needed.
                None => !value.is_empty(),
            };
            if needed {
                decls.push((prefix.to_owned(), value.clone()));
                context.retain(|(p, _)| p != prefix);
                context.push((prefix.to_owned(), value));
            }
        }
        decls.sort();
        // C14N §2.2: attributes sorted by namespace URI (none first), then local name.
        attrs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

        self.out.push(b'<');
        self.out.extend_from_slice(qname.as_bytes());
        for (prefix, uri) in &decls {
            if prefix.is_empty() {
                self.out.extend_from_slice(b" xmlns=\"");
            } else {
                self.out.extend_from_slice(b" xmlns:");
                self.out.extend_from_slice(prefix.as_bytes());
                self.out.extend_from_slice(b"=\"");
            }
            escape_attr(self.out, uri);
            self.out.push(b'"');
        }
        for (_, _, q, value) in &attrs {
            self.out.push(b' ');
            self.out.extend_from_slice(q.as_bytes());
            self.out.extend_from_slice(b"=\"");
            escape_attr(self.out, value);
            self.out.push(b'"');
        }
        self.out.push(b'>');

        for child in node.children() {
            if Some(child.id()) == self.options.exclude {
                continue;
            }
            match child.node_type() {
                NodeType::Element => self.element(child, &context)?,
                NodeType::Text => escape_text(self.out, child.text().unwrap_or_default()),
                NodeType::Comment if !self.options.with_comments => {}
                NodeType::Comment | NodeType::PI => self.leaf(child),
                NodeType::Root => {}
            }
        }

        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(qname.as_bytes());
        self.out.push(b'>');
        Ok(())
    }

    /// A comment or processing instruction (C14N §2.3).
    fn leaf(&mut self, node: Node<'_, '_>) {
        if let Some(comment) = node.is_comment().then(|| node.text()).flatten() {
            self.out.extend_from_slice(b"<!--");
            self.out.extend_from_slice(comment.as_bytes());
            self.out.extend_from_slice(b"-->");
        } else if let Some(pi) = node.pi() {
            self.out.extend_from_slice(b"<?");
            self.out.extend_from_slice(pi.target.as_bytes());
            if let Some(value) = pi.value.filter(|v| !v.is_empty()) {
                self.out.push(b' ');
                self.out.extend_from_slice(value.as_bytes());
            }
            self.out.extend_from_slice(b"?>");
        }
    }
}

fn bad(what: &str) -> SamlError {
    SamlError::Malformed(format!("cannot read the {what} back from the input"))
}

/// The qualified name of an element as written: the bytes after `<` up to white space, `/` or
/// `>`.
pub(crate) fn element_qname<'t>(text: &'t str, node: Node<'_, '_>) -> Result<&'t str, SamlError> {
    let start = node.range().start + 1;
    let rest = text.get(start..).ok_or_else(|| bad("element name"))?;
    let end = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .ok_or_else(|| bad("element name"))?;
    let qname = &rest[..end];
    // The name read back must be the name the parser resolved, or the ranges are off.
    let local = qname.rsplit(':').next().unwrap_or(qname);
    if local != node.tag_name().name() {
        return Err(bad("element name"));
    }
    Ok(qname)
}

/// The prefix of a qualified name, `""` when there is none.
fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(p, _)| p)
}

/// The namespace URI bound to `prefix` (`""`: the default namespace) in scope at `node`.
fn lookup<'a>(node: Node<'a, '_>, prefix: &str) -> Option<&'a str> {
    node.namespaces()
        .find(|ns| ns.name().unwrap_or("") == prefix)
        .map(|ns| ns.uri())
        .filter(|uri| !uri.is_empty())
}

/// Attribute value escaping (C14N §2.3: `&`, `<`, `"`, TAB, LF, CR).
fn escape_attr(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#x9;"),
            b'\n' => out.extend_from_slice(b"&#xA;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

/// Text node escaping (C14N §2.3: `&`, `<`, `>`, CR).
fn escape_text(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests;
