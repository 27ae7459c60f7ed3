//! The few DER encodings written by hand: fixed structures rcgen has no builder for (the HPKI role,
//! certificatePolicies, directoryName alternative names and distribution points, the issuer-and-serial
//! form of authorityKeyIdentifier). They only *make* test certificates; everything that reads
//! certificates parses with ASN.1 libraries, and this crate's tests decode every output with
//! x509-parser and OpenSSL.

use crate::PkiError;

/// DER tag-length-value with definite length (short or long form).
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of the concatenated elements.
pub(crate) fn seq(elements: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &elements.concat())
}

/// The content octets of an OBJECT IDENTIFIER given in dotted form (X.690 §8.19).
pub(crate) fn oid_content(dotted: &str) -> Result<Vec<u8>, PkiError> {
    let bad = || PkiError::Oid(dotted.to_owned());
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse::<u64>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [first, second, rest @ ..] = arcs.as_slice() else {
        return Err(bad());
    };
    if *first > 2 || (*first < 2 && *second > 39) {
        return Err(bad());
    }
    let mut out = Vec::new();
    for arc in std::iter::once(first * 40 + second).chain(rest.iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut value = arc >> 7;
        while value > 0 {
            groups.push(0x80 | (value & 0x7f) as u8);
            value >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    Ok(out)
}

/// An OBJECT IDENTIFIER element.
pub(crate) fn oid(dotted: &str) -> Result<Vec<u8>, PkiError> {
    Ok(tlv(0x06, &oid_content(dotted)?))
}

/// A positive INTEGER's content octets from big-endian magnitude bytes (minimal, with a leading 00
/// where the top bit is set).
pub(crate) fn integer_content(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude.iter().copied().skip_while(|&b| b == 0).collect();
    match trimmed.first() {
        None => vec![0],
        Some(b) if b & 0x80 != 0 => [&[0u8][..], &trimmed].concat(),
        Some(_) => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_like_real_certificates() {
        // Bytes from the real MEDIS signer certificate and hcRole extension (docs/cards.md §2.5).
        assert_eq!(oid_content("1.0.17090.0.1").unwrap(), [0x28, 0x81, 0x85, 0x42, 0x00, 0x01]);
        assert_eq!(
            oid_content("1.2.392.100495.1.6.1.1").unwrap(),
            [0x2A, 0x83, 0x08, 0x86, 0x91, 0x0F, 0x01, 0x06, 0x01, 0x01]
        );
        assert_eq!(
            oid("1.2.392.100495.1.5.1.1.0.1").unwrap(),
            [0x06, 0x0C, 0x2A, 0x83, 0x08, 0x86, 0x91, 0x0F, 0x01, 0x05, 0x01, 0x01, 0x00, 0x01]
        );
        assert_eq!(oid_content("2.5.29.32").unwrap(), [0x55, 0x1D, 0x20]);
        for bad in ["", "1", "1.", "3.1", "1.40", "1.2.x", "1..2"] {
            assert!(oid_content(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lengths_and_integers() {
        assert_eq!(tlv(0x04, &[0; 3]), [0x04, 3, 0, 0, 0]);
        assert_eq!(&tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2C]);
        assert_eq!(integer_content(&[0x00, 0x01]), [0x01]);
        assert_eq!(integer_content(&[0x80]), [0x00, 0x80]);
        assert_eq!(integer_content(&[]), [0x00]);
    }
}
