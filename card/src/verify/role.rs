//! HPKI hcRole (ISO TS 17090, docs/cards.md §2.5): decoded from subjectDirectoryAttributes (2.5.29.9,
//! RFC 5280 §4.2.1.8) with asn1-rs — DER tag, length and type parsing is the library's.
//!
//! ```text
//! SubjectDirectoryAttributes ::= SEQUENCE SIZE (1..MAX) OF Attribute
//! Attribute  ::= SEQUENCE { type OID (1.0.17090.0.1 = hcRole), values SET OF HCActorData }
//! HCActorData ::= SET OF HCActor
//! HCActor    ::= SEQUENCE { codedData [0] EXPLICIT CodedData, regionalHCActorData [1] … OPTIONAL }
//! CodedData  ::= SET { codingSchemeReference [0] EXPLICIT OID,        -- 1.2.392.100495.1.6.1.1
//!                      codeDataValue         [1] EXPLICIT NumericString OPTIONAL,
//!                      codeDataFreeText      [2] EXPLICIT DirectoryString OPTIONAL }
//! ```
//! Real certificates wrap each HCActor in an HCActorData SET; an attribute value that is a bare HCActor
//! SEQUENCE is accepted too. Actors under other coding schemes are ignored.

use x509_parser::asn1_rs::{Any, BmpString, Class, FromDer, Oid, PrintableString, Tag, Utf8String};
use x509_parser::prelude::X509Certificate;

use super::VerifyError;

/// id-hcpki-at-healthcareactor (hcRole), 1.0.17090.0.1.
pub const HC_ROLE_OID: &str = "1.0.17090.0.1";
/// id-jhpki-cdata, the Japanese HPKI coding scheme, 1.2.392.100495.1.6.1.1.
pub const JHPKI_CODING_SCHEME_OID: &str = "1.2.392.100495.1.6.1.1";
/// subjectDirectoryAttributes, 2.5.29.9.
const SUBJECT_DIRECTORY_ATTRIBUTES_OID: &str = "2.5.29.9";

/// The hcRole strings (codeDataFreeText under the Japanese HPKI scheme) of a certificate, in order.
/// Empty when the extension or the attribute is absent; an error when present but not valid DER.
pub fn hc_roles(cert: &X509Certificate<'_>) -> Result<Vec<String>, VerifyError> {
    let mut roles = Vec::new();
    for ext in cert.extensions() {
        if ext.oid.to_id_string() != SUBJECT_DIRECTORY_ATTRIBUTES_OID {
            continue;
        }
        roles.extend(parse_hc_role_value(ext.value)?);
    }
    Ok(roles)
}

/// The hcRole strings of one subjectDirectoryAttributes extension value (the extnValue contents),
/// in order: the byte-level part of [`hc_roles`].
pub fn parse_hc_role_value(value: &[u8]) -> Result<Vec<String>, VerifyError> {
    let mut roles = Vec::new();
    parse_subject_directory_attributes(value, &mut roles).map_err(|reason| {
        VerifyError::CertMalformed {
            reason: format!("subjectDirectoryAttributes: {reason}"),
        }
    })?;
    Ok(roles)
}

type Parse<T> = Result<T, &'static str>;

/// Parses one complete DER value (no trailing bytes).
fn one(bytes: &[u8]) -> Parse<Any<'_>> {
    match Any::from_der(bytes) {
        Ok(([], any)) => Ok(any),
        Ok(_) => Err("trailing bytes"),
        Err(_) => Err("not valid DER"),
    }
}

/// The elements of a constructed value's content.
fn elements<'a>(any: &Any<'a>) -> Parse<Vec<Any<'a>>> {
    if !any.header.is_constructed() {
        return Err("expected a constructed value");
    }
    let mut rest = any.data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (next, item) = Any::from_der(rest).map_err(|_| "not valid DER")?;
        out.push(item);
        rest = next;
    }
    Ok(out)
}

fn expect(any: &Any<'_>, class: Class, tag: Tag) -> Parse<()> {
    if any.class() == class && any.tag() == tag {
        Ok(())
    } else {
        Err("unexpected tag")
    }
}

fn parse_subject_directory_attributes(value: &[u8], roles: &mut Vec<String>) -> Parse<()> {
    let attributes = one(value)?;
    expect(&attributes, Class::Universal, Tag::Sequence)?;
    for attribute in elements(&attributes)? {
        expect(&attribute, Class::Universal, Tag::Sequence)?;
        let [ty, values] = <[Any<'_>; 2]>::try_from(elements(&attribute)?)
            .map_err(|_| "Attribute must have a type and values")?;
        let ty: Oid<'_> = ty.as_oid().map_err(|_| "attribute type is not an OID")?;
        if ty.to_id_string() != HC_ROLE_OID {
            continue;
        }
        expect(&values, Class::Universal, Tag::Set)?;
        for value in elements(&values)? {
            match value.tag() {
                Tag::Set if value.class() == Class::Universal => {
                    for actor in elements(&value)? {
                        parse_actor(&actor, roles)?;
                    }
                }
                _ => parse_actor(&value, roles)?,
            }
        }
    }
    Ok(())
}

fn parse_actor(actor: &Any<'_>, roles: &mut Vec<String>) -> Parse<()> {
    expect(actor, Class::Universal, Tag::Sequence)?;
    let parts = elements(actor)?;
    let coded = parts.first().ok_or("HCActor without codedData")?;
    expect(coded, Class::ContextSpecific, Tag(0))?;
    let coded_data = one(coded.data)?;
    expect(&coded_data, Class::Universal, Tag::Set)?;
    let mut scheme = None;
    let mut free_text = None;
    for field in elements(&coded_data)? {
        if field.class() != Class::ContextSpecific {
            return Err("CodedData field is not context-tagged");
        }
        match field.tag() {
            Tag(0) => {
                let value = one(field.data)?;
                let oid = value
                    .as_oid()
                    .map_err(|_| "codingSchemeReference is not an OID")?;
                scheme = Some(oid.to_id_string());
            }
            // codeDataValue: a NumericString the Japanese scheme does not use; checked for form only.
            Tag(1) => {
                one(field.data)?;
            }
            Tag(2) => free_text = Some(directory_string(&one(field.data)?)?),
            _ => return Err("unknown CodedData field"),
        }
    }
    if scheme.as_deref() == Some(JHPKI_CODING_SCHEME_OID)
        && let Some(text) = free_text
    {
        roles.push(text);
    }
    Ok(())
}

/// DirectoryString (RFC 5280 §4.1.2.4): UTF8String, PrintableString or BMPString.
fn directory_string(any: &Any<'_>) -> Parse<String> {
    match any.tag() {
        Tag::Utf8String => Utf8String::try_from(any.clone())
            .map(|s| s.string())
            .map_err(|_| "bad UTF8String"),
        Tag::PrintableString => PrintableString::try_from(any.clone())
            .map(|s| s.string())
            .map_err(|_| "bad PrintableString"),
        Tag::BmpString => BmpString::try_from(any.clone())
            .map(|s| s.string())
            .map_err(|_| "bad BMPString"),
        _ => Err("codeDataFreeText is not a DirectoryString"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extnValue of the real MEDIS certificate (docs/cards.md §2.5), 54 bytes.
    pub(crate) const MEDICAL_DOCTOR_EXT: &str = "30 34 30 32 06 06 28 81 85 42 00 01 31 28 31 26 30 24 A0 22 31 20 \
        A0 0C 06 0A 2A 83 08 86 91 0F 01 06 01 01 A2 10 0C 0E 4D 65 64 69 63 61 6C 20 44 6F 63 74 6F 72";

    fn bytes(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn roles(ext: &[u8]) -> Parse<Vec<String>> {
        let mut out = Vec::new();
        parse_subject_directory_attributes(ext, &mut out).map(|()| out)
    }

    #[test]
    fn real_card_bytes() {
        let ext = bytes(MEDICAL_DOCTOR_EXT);
        assert_eq!(ext.len(), 54);
        assert_eq!(roles(&ext).unwrap(), ["Medical Doctor"]);
    }

    #[test]
    fn bare_actor_with_code_value() {
        use base64::Engine;
        // MSV's second encoding: one HCActor with codeDataValue "123" and "Pharmacist".
        let actor = base64::engine::general_purpose::STANDARD
            .decode("MCegJTEjoAwGCiqDCIaRDwEGAQGhBRIDMTIzogwMClBoYXJtYWNpc3Q=")
            .unwrap();
        // Wrapped the way certificates carry it: Attribute values SET { HCActorData SET { actor } } …
        let wrap = |inner: Vec<u8>, tag: u8| {
            let mut v = vec![tag, inner.len() as u8];
            v.extend(inner);
            v
        };
        let oid = bytes("06 06 28 81 85 42 00 01");
        let attr = |value: Vec<u8>| {
            let mut a = oid.clone();
            a.extend(wrap(value, 0x31));
            wrap(wrap(a, 0x30), 0x30)
        };
        assert_eq!(
            roles(&attr(wrap(actor.clone(), 0x31))).unwrap(),
            ["Pharmacist"]
        );
        // … and as a bare HCActor value.
        assert_eq!(roles(&attr(actor)).unwrap(), ["Pharmacist"]);
    }

    #[test]
    fn other_scheme_is_ignored_and_garbage_is_an_error() {
        let mut ext = bytes(MEDICAL_DOCTOR_EXT);
        // Change the last arc of the scheme OID (…1.6.1.1 → …1.6.1.2).
        ext[35] = 0x02;
        assert!(roles(&ext).unwrap().is_empty());
        let ext = bytes(MEDICAL_DOCTOR_EXT);
        assert!(roles(&ext[..40]).is_err());
        let mut long = ext.clone();
        long.push(0);
        assert!(roles(&long).is_err());
        assert!(roles(&bytes("04 02 30 00")).is_err());
    }
}
