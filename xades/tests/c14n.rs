//! Canonicalisation against the W3C examples and libxml2 (`xmllint`), an independent
//! implementation: for each input of tests/c14n (see its README), inclusive C14N 1.0, 1.1 and
//! exclusive C14N (the variants with comments, which `xmllint` writes) must be byte-identical;
//! two outputs are also checked against the text of the W3C recommendation itself.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Command;

const INPUTS: [&str; 6] = ["w3c-3.1.xml", "w3c-3.2.xml", "w3c-3.3.xml", "w3c-3.4.xml", "w3c-3.6.xml", "exc-c14n-namespaces.xml"];

const VARIANTS: [(&str, &str); 3] = [
    ("--c14n", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"),
    ("--c14n11", "http://www.w3.org/2006/12/xml-c14n11#WithComments"),
    ("--exc-c14n", "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"),
];

fn input(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c14n").join(name)).unwrap()
}

fn xmllint(flag: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c14n").join(name);
    let out = Command::new("xmllint").arg(flag).arg(&path).output().expect("xmllint is installed (tests/run.sh installs libxml2-utils)");
    assert!(out.status.success(), "xmllint {flag} {name}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn canonical_forms_equal_libxml2s() {
    for name in INPUTS {
        for (flag, uri) in VARIANTS {
            let ours = xades::canonicalize_document(&input(name), uri).unwrap_or_else(|e| panic!("{name} {uri}: {e}"));
            let theirs = xmllint(flag, name);
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{name}, {uri}");
        }
    }
}

#[test]
fn the_recommendations_own_examples() {
    // W3C Canonical XML 1.0 §3.1, without comments.
    let out = xades::canonicalize_document(&input("w3c-3.1.xml"), "http://www.w3.org/TR/2001/REC-xml-c14n-20010315").unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "<?xml-stylesheet href=\"doc.xsl\"\n   type=\"text/xsl\"   ?>\n<doc>Hello, world!</doc>\n<?pi-without-data?>"
    );
    // §3.2: whitespace in content is kept as it is.
    let out = xades::canonicalize_document(&input("w3c-3.2.xml"), "http://www.w3.org/TR/2001/REC-xml-c14n-20010315").unwrap();
    assert_eq!(out, input("w3c-3.2.xml").strip_suffix(b"\n").unwrap());
    // §3.3 (its DTD left out, so e9 has no defaulted attribute): empty elements, attribute and
    // namespace order, superfluous namespace declarations.
    let out = xades::canonicalize_document(&input("w3c-3.3.xml"), "http://www.w3.org/TR/2001/REC-xml-c14n-20010315").unwrap();
    let text = String::from_utf8(out).unwrap();
    for line in [
        "<e1></e1>",
        "<e3 id=\"elem3\" name=\"elem3\"></e3>",
        "<e5 xmlns=\"http://example.org\" xmlns:a=\"http://www.w3.org\" xmlns:b=\"http://www.ietf.org\" attr=\"I'm\" attr2=\"all\" b:attr=\"sorted\" a:attr=\"out\"></e5>",
        "<e6 xmlns:a=\"http://www.w3.org\">",
        "<e8 xmlns=\"\">",
        "<e9 xmlns:a=\"http://www.ietf.org\"></e9>",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[test]
fn documents_with_a_dtd_are_refused() {
    let doc = b"<!DOCTYPE doc [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><doc>&e;</doc>";
    let err = xades::canonicalize_document(doc, "http://www.w3.org/2001/10/xml-exc-c14n#").unwrap_err();
    assert!(err.contains("DTD"), "{err}");
}
