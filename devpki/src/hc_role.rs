//! The HPKI role (hcRole) extension.

use rcgen::CustomExtension;

use crate::der::tlv;

/// The hcRole extension (ISO TS 17090 `subjectDirectoryAttributes`, OID 2.5.29.9, non-critical) as real
/// HPKI certificates encode it (byte layout in `docs/cards.md` §2.5).
///
/// Written by hand because it only *builds* test certificates: a handful of fixed tags around one
/// role string. Parsing on the verification side uses an ASN.1 library.
pub fn hc_role_extension(role: &str) -> CustomExtension {
    // 1.0.17090.0.1 (hcRole attribute) and 1.2.392.100495.1.6.1.1 (JHPKI coding scheme), DER content bytes.
    const HC_ROLE_OID: &[u8] = &[0x28, 0x81, 0x85, 0x42, 0x00, 0x01];
    const SCHEME_OID: &[u8] = &[0x2A, 0x83, 0x08, 0x86, 0x91, 0x0F, 0x01, 0x06, 0x01, 0x01];
    let free_text = tlv(0xA2, &tlv(0x0C, role.as_bytes()));
    let scheme = tlv(0xA0, &tlv(0x06, SCHEME_OID));
    let coded_data = tlv(0x31, &[scheme, free_text].concat());
    let actor = tlv(0x30, &tlv(0xA0, &coded_data));
    let actor_data = tlv(0x31, &actor);
    let values = tlv(0x31, &actor_data);
    let attribute = tlv(0x30, &[tlv(0x06, HC_ROLE_OID), values].concat());
    CustomExtension::from_oid_content(&[2, 5, 29, 9], tlv(0x30, &attribute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hc_role_extension_matches_real_card_bytes() {
        // extnValue of a real MEDIS-issued certificate (docs/cards.md §2.5), 54 bytes.
        let expected = hex::decode(
            "3034 3032 0606288185420001 3128 3126 3024 a022 3120 a00c060a2a830886910f01060101 a2100c0e"
                .replace(' ', "")
                + &hex::encode("Medical Doctor"),
        )
        .unwrap();
        let ext = hc_role_extension("Medical Doctor");
        assert_eq!(ext.content(), expected.as_slice());
        assert_eq!(expected.len(), 54);
    }
}
