//! The few DER encodings written by hand: fixed structures rcgen has no builder for. They only *make*
//! test certificates; everything that reads certificates parses with ASN.1 libraries.

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
