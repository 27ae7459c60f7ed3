//! Parsing and canonicalisation (decision 0016): the Uppsala parser, Bergshamra's C14N over a
//! document subset, and the lookups both signing and verification need. Documents with a DTD or
//! entity declarations are refused before parsing: nothing is expanded or fetched.

use std::collections::HashMap;

use bergshamra_c14n::C14nMode;
use bergshamra_xml::NodeSet;
use uppsala::{Document, NodeId, NodeKind};

/// XMLDSig's namespace.
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// XAdES 1.3.2.
pub const XADES_NS: &str = "http://uri.etsi.org/01903/v1.3.2#";
/// XAdES 1.4.1 (TimeStampValidationData).
pub const XADES141_NS: &str = "http://uri.etsi.org/01903/v1.4.1#";
/// Exclusive C14N 1.0.
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// RSA with SHA-256.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// SHA-256.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// The XAdES SignedProperties reference type.
pub const SIGNED_PROPERTIES_TYPE: &str = "http://uri.etsi.org/01903#SignedProperties";

/// Largest document accepted (a prescription is a few kilobytes; the CSV of a long one tens).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why a text is not a document this crate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotXml(pub String);

/// Checks the bytes (size, UTF-8, no DTD) and parses them.
pub fn parse(bytes: &[u8]) -> Result<Document<'_>, NotXml> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(NotXml(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| NotXml("not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // A DTD could declare entities (expansion, external fetches) or default attributes that
    // change what is signed: refused outright, as the profile has none.
    if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
        return Err(NotXml("a DTD or entity declaration is not accepted".into()));
    }
    uppsala::parse(text).map_err(|e| NotXml(e.to_string()))
}

/// The element `id` is, if it is one.
pub fn element<'d, 'a>(doc: &'d Document<'a>, id: NodeId) -> Option<&'d uppsala::Element<'a>> {
    match doc.node_kind(id) {
        Some(NodeKind::Element(e)) => Some(e),
        _ => None,
    }
}

/// Whether `id` is the element `local` in namespace `ns` (`None`: no namespace).
pub fn is(doc: &Document<'_>, id: NodeId, ns: Option<&str>, local: &str) -> bool {
    element(doc, id).is_some_and(|e| e.name.local_name == local && e.name.namespace_uri.as_deref() == ns)
}

/// The element children of `id`.
pub fn child_elements(doc: &Document<'_>, id: NodeId) -> Vec<NodeId> {
    doc.children(id).into_iter().filter(|c| element(doc, *c).is_some()).collect()
}

/// The element children of `id` named `local` in `ns`.
pub fn children_named(doc: &Document<'_>, id: NodeId, ns: Option<&str>, local: &str) -> Vec<NodeId> {
    child_elements(doc, id).into_iter().filter(|c| is(doc, *c, ns, local)).collect()
}

/// The only child element named `local` in `ns`.
pub fn only_child(doc: &Document<'_>, id: NodeId, ns: Option<&str>, local: &str) -> Option<NodeId> {
    match children_named(doc, id, ns, local).as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Every element named `local` in `ns`, in document order.
pub fn all_named(doc: &Document<'_>, ns: Option<&str>, local: &str) -> Vec<NodeId> {
    doc.descendants(doc.root()).into_iter().filter(|d| is(doc, *d, ns, local)).collect()
}

/// An attribute without a namespace.
pub fn attr<'d>(doc: &'d Document<'_>, id: NodeId, name: &str) -> Option<&'d str> {
    element(doc, id)?.attributes.iter().find(|a| a.name.local_name == name && a.name.namespace_uri.is_none() && a.name.prefix.is_none()).map(|a| a.value.as_ref())
}

/// The text of an element (its text children concatenated).
pub fn text(doc: &Document<'_>, id: NodeId) -> String {
    doc.text_content_deep(id)
}

/// The ID map of the attributes `id` and `Id` (no namespace): the profile's own `id` and
/// XMLDSig's `Id`. `Err` names an ID used twice: a signed element must be found by its ID
/// unambiguously (a wrapped duplicate is how signature-wrapping attacks work).
pub fn ids(doc: &Document<'_>) -> Result<HashMap<String, NodeId>, String> {
    let mut map = HashMap::new();
    for node in doc.descendants(doc.root()) {
        for name in ["id", "Id"] {
            if let Some(value) = attr(doc, node, name)
                && map.insert(value.to_owned(), node).is_some()
            {
                return Err(value.to_owned());
            }
        }
    }
    Ok(map)
}

/// The canonical form of the element `id` and its descendants (comments left out, as for a
/// same-document reference) in `mode`; `prefixes` is exclusive C14N's InclusiveNamespaces list.
pub fn canonical(doc: &Document<'_>, id: NodeId, mode: C14nMode, prefixes: &[String]) -> Result<Vec<u8>, String> {
    let set = NodeSet::tree_without_comments(id, doc);
    bergshamra_c14n::canonicalize_doc(doc, mode, Some(&set), prefixes).map_err(|e| e.to_string())
}

/// The C14N mode of an algorithm URI this crate accepts (the profile's exclusive C14N, and
/// inclusive C14N 1.0 and 1.1), without comments.
pub fn mode(uri: &str) -> Option<C14nMode> {
    match C14nMode::from_uri(uri)? {
        m @ (C14nMode::Exclusive | C14nMode::Inclusive | C14nMode::Inclusive11) => Some(m),
        _ => None,
    }
}

/// The canonical form of a whole document in the C14N algorithm `uri` (any of the six W3C
/// variants): what the conformance tests compare with an independent implementation.
pub fn canonicalize_document(bytes: &[u8], uri: &str) -> Result<Vec<u8>, String> {
    let doc = parse(bytes).map_err(|e| e.0)?;
    let mode = C14nMode::from_uri(uri).ok_or_else(|| format!("unknown canonicalisation {uri}"))?;
    bergshamra_c14n::canonicalize_doc(&doc, mode, None, &[] as &[String]).map_err(|e| e.to_string())
}
