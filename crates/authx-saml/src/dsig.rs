//! XML Signature verification of one enveloped signature, over the parsed tree.
//!
//! Accepted shape (anything else is refused, not ignored):
//!
//! ```text
//! <ds:Signature>                       direct child of the signed element
//!   <ds:SignedInfo>
//!     <ds:CanonicalizationMethod Algorithm=exc-c14n[#WithComments]> [ec:InclusiveNamespaces]
//!     <ds:SignatureMethod Algorithm=rsa-sha256|rsa-sha512|ecdsa-sha256/>
//!     <ds:Reference URI="#<ID of the parent element>">     exactly one
//!       <ds:Transforms> enveloped-signature, then exc-c14n[#WithComments] [ec:InclusiveNamespaces]
//!       <ds:DigestMethod Algorithm=sha256|sha512/>
//!       <ds:DigestValue>
//!   <ds:SignatureValue>
//!   [<ds:KeyInfo>]                     ignored: keys are pinned
//! ```

use base64::Engine as _;
use roxmltree::Node;

use crate::SamlError;
use crate::c14n::{self, Options};
use crate::keys::{DigestAlgorithm, PinnedKey, SignatureAlgorithm};
use crate::xml::{NS_DSIG, NS_EXC_C14N, attr, elements, is, text_content};

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const EXC_C14N_WITH_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Verifies `signature` (a `ds:Signature` element) against `keys` and returns the element it
/// signs: its parent, which must carry the `ID` the single reference names.
///
/// The returned node is the very node that was digested, so the caller reads the signed data
/// from it and from nothing else.
///
/// # Errors
/// Every deviation from the accepted shape, a digest mismatch or a signature no pinned key
/// verifies.
pub(crate) fn verify<'a, 'i>(
    signature: Node<'a, 'i>,
    keys: &[PinnedKey],
) -> Result<Node<'a, 'i>, SamlError> {
    let signed = signature
        .parent_element()
        .ok_or(SamlError::MisplacedSignature)?;

    // ds:Signature: SignedInfo, SignatureValue, optional KeyInfo; no Object (where wrapping
    // attacks hide copies of signed content), nothing else.
    let mut kids = elements(signature);
    let signed_info = kids.next().filter(|n| is(*n, NS_DSIG, "SignedInfo"));
    let signed_info = signed_info.ok_or(SamlError::Missing("ds:SignedInfo"))?;
    let value = kids.next().filter(|n| is(*n, NS_DSIG, "SignatureValue"));
    let value = value.ok_or(SamlError::Missing("ds:SignatureValue"))?;
    match kids.next() {
        None => {}
        Some(k) if is(k, NS_DSIG, "KeyInfo") && kids.next().is_none() => {}
        Some(_) => return Err(SamlError::Unexpected("element in ds:Signature")),
    }
    no_text(signature, "text in ds:Signature")?;

    // SignedInfo: CanonicalizationMethod, SignatureMethod, exactly one Reference.
    let mut kids = elements(signed_info);
    let canon = kids
        .next()
        .filter(|n| is(*n, NS_DSIG, "CanonicalizationMethod"));
    let canon = canon.ok_or(SamlError::Missing("ds:CanonicalizationMethod"))?;
    let method = kids.next().filter(|n| is(*n, NS_DSIG, "SignatureMethod"));
    let method = method.ok_or(SamlError::Missing("ds:SignatureMethod"))?;
    let reference = kids.next().filter(|n| is(*n, NS_DSIG, "Reference"));
    let reference = reference.ok_or(SamlError::Missing("ds:Reference"))?;
    if kids.next().is_some() {
        return Err(SamlError::Unexpected(
            "second ds:Reference or other element in ds:SignedInfo",
        ));
    }
    no_text(signed_info, "text in ds:SignedInfo")?;

    let signed_info_options = c14n_method(canon)?;
    let algorithm = SignatureAlgorithm::from_uri(
        attr(method, "Algorithm").ok_or(SamlError::Missing("SignatureMethod Algorithm"))?,
    )?;
    if elements(method).next().is_some() {
        // e.g. HMACOutputLength: never meaningful for the accepted algorithms.
        return Err(SamlError::Unexpected("child of ds:SignatureMethod"));
    }

    // Reference: URI must name the parent by its ID; same-document bare-name references.
    let uri = attr(reference, "URI").ok_or(SamlError::Missing("Reference URI"))?;
    let id = attr(signed, "ID").ok_or(SamlError::Missing("ID on the signed element"))?;
    if uri.strip_prefix('#') != Some(id) || id.is_empty() {
        return Err(SamlError::ReferenceMismatch);
    }
    let mut kids = elements(reference);
    let transforms = kids.next().filter(|n| is(*n, NS_DSIG, "Transforms"));
    let transforms = transforms.ok_or(SamlError::Missing("ds:Transforms"))?;
    let digest_method = kids.next().filter(|n| is(*n, NS_DSIG, "DigestMethod"));
    let digest_method = digest_method.ok_or(SamlError::Missing("ds:DigestMethod"))?;
    let digest_value = kids.next().filter(|n| is(*n, NS_DSIG, "DigestValue"));
    let digest_value = digest_value.ok_or(SamlError::Missing("ds:DigestValue"))?;
    if kids.next().is_some() {
        return Err(SamlError::Unexpected("element in ds:Reference"));
    }
    let mut reference_options = transforms_options(transforms)?;
    // XML Signature §4.4.3.3: a bare-name `#id` reference selects the element *without*
    // comments, whatever the canonicalization transform says.
    reference_options.with_comments = false;
    reference_options.exclude = Some(signature.id());
    let digest = DigestAlgorithm::from_uri(
        attr(digest_method, "Algorithm").ok_or(SamlError::Missing("DigestMethod Algorithm"))?,
    )?;
    if elements(digest_method).next().is_some() {
        return Err(SamlError::Unexpected("child of ds:DigestMethod"));
    }

    // First the signature over SignedInfo with a pinned key, then the digest it vouches for.
    let signed_info_bytes = c14n::canonicalize(signed_info, &signed_info_options)?;
    let signature_bytes = base64_text(value, "ds:SignatureValue")?;
    if !keys
        .iter()
        .any(|k| k.verifies(algorithm, &signed_info_bytes, &signature_bytes))
    {
        return Err(SamlError::BadSignature);
    }
    let expected = base64_text(digest_value, "ds:DigestValue")?;
    let actual = digest.digest(&c14n::canonicalize(signed, &reference_options)?);
    if aws_lc_rs::constant_time::verify_slices_are_equal(&actual, &expected).is_err() {
        return Err(SamlError::DigestMismatch);
    }
    Ok(signed)
}

/// `CanonicalizationMethod`: exclusive C14N, with or without comments, optional prefix list.
fn c14n_method(node: Node<'_, '_>) -> Result<Options, SamlError> {
    let alg =
        attr(node, "Algorithm").ok_or(SamlError::Missing("CanonicalizationMethod Algorithm"))?;
    let with_comments = match alg {
        EXC_C14N => false,
        EXC_C14N_WITH_COMMENTS => true,
        other => return Err(SamlError::TransformRefused(other.into())),
    };
    Ok(Options {
        with_comments,
        inclusive_prefixes: inclusive_namespaces(node)?,
        exclude: None,
    })
}

/// `Transforms`: exactly enveloped-signature followed by exclusive C14N.
fn transforms_options(node: Node<'_, '_>) -> Result<Options, SamlError> {
    let list: Vec<Node<'_, '_>> = elements(node).collect();
    if list.iter().any(|t| !is(*t, NS_DSIG, "Transform")) {
        return Err(SamlError::Unexpected("element in ds:Transforms"));
    }
    let algs: Vec<&str> = list
        .iter()
        .map(|t| attr(*t, "Algorithm").unwrap_or(""))
        .collect();
    for alg in &algs {
        if !matches!(*alg, ENVELOPED | EXC_C14N | EXC_C14N_WITH_COMMENTS) {
            return Err(SamlError::TransformRefused((*alg).into()));
        }
    }
    match (list.as_slice(), algs.as_slice()) {
        ([enveloped, c14n], [ENVELOPED, EXC_C14N | EXC_C14N_WITH_COMMENTS]) => {
            if elements(*enveloped).next().is_some() {
                return Err(SamlError::Unexpected(
                    "child of the enveloped-signature transform",
                ));
            }
            c14n_method(*c14n)
        }
        _ => Err(SamlError::TransformRefused(format!(
            "transform sequence {algs:?}; expected enveloped-signature, exc-c14n"
        ))),
    }
}

/// The optional `ec:InclusiveNamespaces PrefixList` child of a C14N method or transform.
fn inclusive_namespaces(node: Node<'_, '_>) -> Result<Vec<String>, SamlError> {
    let mut kids = elements(node);
    let Some(inc) = kids.next() else {
        return Ok(Vec::new());
    };
    if !is(inc, NS_EXC_C14N, "InclusiveNamespaces") || kids.next().is_some() {
        return Err(SamlError::Unexpected("child of a canonicalization method"));
    }
    let list = attr(inc, "PrefixList").unwrap_or("");
    Ok(list
        .split(crate::xml::is_xml_space)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p == "#default" {
                String::new()
            } else {
                p.to_owned()
            }
        })
        .collect())
}

fn base64_text(node: Node<'_, '_>, what: &'static str) -> Result<Vec<u8>, SamlError> {
    let text: String = text_content(node, what)?
        .chars()
        .filter(|c| !crate::xml::is_xml_space(*c))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SamlError::Base64(what))
}

/// Refuses non-white-space text directly inside a structural element.
fn no_text(node: Node<'_, '_>, what: &'static str) -> Result<(), SamlError> {
    if node.children().any(|c| {
        c.is_text()
            && !c
                .text()
                .unwrap_or("")
                .trim_matches(crate::xml::is_xml_space)
                .is_empty()
    }) {
        return Err(SamlError::Unexpected(what));
    }
    Ok(())
}
