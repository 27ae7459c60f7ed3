//! Distinguished names as both rcgen's `DistinguishedName` (for subjects and issuers rcgen writes) and
//! DER (for the directoryName forms rcgen cannot write), from one attribute list, so the two encode
//! the same bytes.

use rcgen::{DistinguishedName, DnType, DnValue};

use crate::PkiError;
use crate::der::{oid, seq, tlv};

/// A name attribute type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    /// countryName (2.5.4.6), PrintableString.
    C,
    /// organizationName (2.5.4.10), UTF8String.
    O,
    /// organizationalUnitName (2.5.4.11), UTF8String.
    Ou,
    /// commonName (2.5.4.3), UTF8String.
    Cn,
    /// serialNumber (2.5.4.5), PrintableString.
    SerialNumber,
}

impl Attr {
    fn oid(self) -> &'static str {
        match self {
            Attr::C => "2.5.4.6",
            Attr::O => "2.5.4.10",
            Attr::Ou => "2.5.4.11",
            Attr::Cn => "2.5.4.3",
            Attr::SerialNumber => "2.5.4.5",
        }
    }

    fn arcs(self) -> Vec<u64> {
        self.oid().split('.').filter_map(|a| a.parse().ok()).collect()
    }

    /// Real HPKI and JPKI certificates use PrintableString for these two and UTF8String for the rest.
    fn printable(self) -> bool {
        matches!(self, Attr::C | Attr::SerialNumber)
    }
}

/// An ordered name, one attribute per RDN (as in every real HPKI and JPKI certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name(Vec<(Attr, String)>);

impl Name {
    pub(crate) fn new(attrs: &[(Attr, &str)]) -> Name {
        Name(attrs.iter().map(|(a, v)| (*a, (*v).to_owned())).collect())
    }

    /// This name with one more RDN at the end.
    pub(crate) fn with(&self, attr: Attr, value: &str) -> Name {
        let mut attrs = self.0.clone();
        attrs.push((attr, value.to_owned()));
        Name(attrs)
    }

    /// The DER `Name` (SEQUENCE OF RelativeDistinguishedName).
    pub(crate) fn der(&self) -> Result<Vec<u8>, PkiError> {
        let mut rdns = Vec::new();
        for (attr, value) in &self.0 {
            if attr.printable() && !is_printable(value) {
                return Err(PkiError::Name(format!("{value:?} is not a PrintableString")));
            }
            let string = tlv(if attr.printable() { 0x13 } else { 0x0C }, value.as_bytes());
            rdns.push(tlv(0x31, &seq(&[oid(attr.oid())?, string])));
        }
        Ok(seq(&rdns))
    }

    /// The same name for rcgen. rcgen keeps one value per attribute type, so a repeated type (the two
    /// OUs of the MHLW and J-LIS names) goes in as a custom type with the same OID: rcgen writes each
    /// entry as its own RDN in insertion order, so the bytes are those of [`Name::der`] (tested).
    pub(crate) fn rcgen(&self) -> Result<DistinguishedName, PkiError> {
        let mut dn = DistinguishedName::new();
        let mut seen: Vec<Attr> = Vec::new();
        for (attr, value) in &self.0 {
            let ty = match seen.iter().filter(|a| *a == attr).count() {
                0 => match attr {
                    Attr::C => DnType::CountryName,
                    Attr::O => DnType::OrganizationName,
                    Attr::Ou => DnType::OrganizationalUnitName,
                    Attr::Cn => DnType::CommonName,
                    Attr::SerialNumber => DnType::CustomDnType(attr.arcs()),
                },
                1 if *attr != Attr::SerialNumber => DnType::CustomDnType(attr.arcs()),
                _ => return Err(PkiError::Name(format!("{attr:?} repeated more than rcgen can hold"))),
            };
            seen.push(*attr);
            let value = if attr.printable() {
                DnValue::PrintableString(
                    value.as_str().try_into().map_err(|_| PkiError::Name(format!("{value:?} is not a PrintableString")))?,
                )
            } else {
                DnValue::Utf8String(value.clone())
            };
            dn.push(ty, value);
        }
        Ok(dn)
    }
}

/// X.680 §41.4 PrintableString characters.
fn is_printable(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}
