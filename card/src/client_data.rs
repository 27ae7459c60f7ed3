//! Card client data (docs/design.md §3.3): the exact bytes a card signs to log in.
//!
//! `{"type":"ninsho.card.auth","card":"jpki","challenge":"<b64url>","origin":"https://host:port"}` — these
//! four keys, in this order, no whitespace. The agent builds it with [`ClientData::to_bytes`]; the
//! gateway (`card::verify`, feature `verify`) re-serialises what it received with the same function and
//! compares bytes, so there is exactly one accepted encoding of every login.
//!
//! The challenge and origin are restricted to characters that JSON never escapes (base64url; an
//! RFC 6454 §6.2 serialised origin), so the serialisation is a plain concatenation and cannot be
//! ambiguous.

use crate::CardKind;

/// The `type` member of card client data.
pub const CLIENT_DATA_TYPE: &str = "ninsho.card.auth";
/// Longest accepted challenge (characters of base64url); the gateway issues 43 (32 bytes).
pub const MAX_CHALLENGE_LEN: usize = 172;
/// Longest accepted origin.
pub const MAX_ORIGIN_LEN: usize = 255;

/// Why client data cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientDataError {
    /// The challenge is empty, too long, or not unpadded base64url (RFC 4648 §5).
    #[error("challenge is not unpadded base64url")]
    Challenge,
    /// The origin is not `http(s)://host[:port]` in the form browsers serialise it (RFC 6454 §6.2).
    #[error("origin is not a serialised web origin (scheme://host[:port], lowercase, no path)")]
    Origin,
}

/// Validated card client data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    kind: CardKind,
    challenge: String,
    origin: String,
}

impl ClientData {
    /// Checks `challenge` (unpadded base64url, as received) and `origin`.
    pub fn new(
        kind: CardKind,
        challenge: &str,
        origin: &str,
    ) -> Result<ClientData, ClientDataError> {
        if !is_base64url(challenge) {
            return Err(ClientDataError::Challenge);
        }
        if !is_serialised_origin(origin) {
            return Err(ClientDataError::Origin);
        }
        Ok(ClientData {
            kind,
            challenge: challenge.to_owned(),
            origin: origin.to_owned(),
        })
    }

    /// The card kind named in the data.
    pub fn kind(&self) -> CardKind {
        self.kind
    }

    /// The challenge, base64url as given.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The canonical UTF-8 JSON bytes (the only encoding the gateway accepts).
    pub fn to_bytes(&self) -> Vec<u8> {
        // No escaping is needed: `new` admits only characters JSON leaves as they are (RFC 8259 §7).
        format!(
            r#"{{"type":"{CLIENT_DATA_TYPE}","card":"{}","challenge":"{}","origin":"{}"}}"#,
            self.kind.as_str(),
            self.challenge,
            self.origin
        )
        .into_bytes()
    }
}

/// Unpadded base64url alphabet (RFC 4648 §5), a length that can occur (not 1 mod 4).
fn is_base64url(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CHALLENGE_LEN
        && s.len() % 4 != 1
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `http` or `https`, `://`, a lowercase host name or bracketed IPv6 literal, an optional port; nothing
/// else (no user info, path, query or trailing slash), which is how browsers send the Origin header.
fn is_serialised_origin(s: &str) -> bool {
    if s.len() > MAX_ORIGIN_LEN {
        return false;
    }
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host_ok, after_host) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, after)) => (
                !addr.is_empty()
                    && addr.bytes().all(|b| {
                        b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b':' || b == b'.'
                    }),
                after,
            ),
            None => return false,
        }
    } else {
        let end = rest.find(':').unwrap_or(rest.len());
        let host = &rest[..end];
        (
            !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                }),
            &rest[end..],
        )
    };
    if !host_ok {
        return false;
    }
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(port) => {
            (1..=5).contains(&port.len())
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| p <= 65535)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes() {
        let cd = ClientData::new(
            CardKind::Jpki,
            "AAAA_-9z",
            "https://gateway.clinic.example:8443",
        )
        .unwrap();
        assert_eq!(
            cd.to_bytes(),
            br#"{"type":"ninsho.card.auth","card":"jpki","challenge":"AAAA_-9z","origin":"https://gateway.clinic.example:8443"}"#
        );
        let cd = ClientData::new(CardKind::Hpki, "AA", "http://[::1]:8080").unwrap();
        assert!(
            cd.to_bytes()
                .starts_with(br#"{"type":"ninsho.card.auth","card":"hpki""#)
        );
    }

    #[test]
    fn rejects_what_would_need_escaping_or_is_not_an_origin() {
        for bad in ["", "A", "AA==", "AA+/", "AA\"", "AA AA"] {
            assert_eq!(
                ClientData::new(CardKind::Jpki, bad, "https://a").unwrap_err(),
                ClientDataError::Challenge,
                "{bad:?}"
            );
        }
        for bad in [
            "",
            "https://",
            "ftp://a",
            "https://A.example",
            "https://a/",
            "https://a:",
            "https://a:99999",
            "https://a:8443/x",
            "https://u@a",
            "https://a\"",
            "https://[::1",
            "https://a.example\\",
            "null",
        ] {
            assert_eq!(
                ClientData::new(CardKind::Jpki, "AAAA", bad).unwrap_err(),
                ClientDataError::Origin,
                "{bad:?}"
            );
        }
    }
}
