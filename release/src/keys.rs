//! Release public keys: minisign Ed25519 keys, their key ids, and the agent's two trusted slots.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A minisign public key is "Ed", an 8-byte key id and the 32-byte Ed25519 key, in base64.
const PUBLIC_KEY_BYTES: usize = 2 + 8 + 32;

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a minisign Ed25519 public key.
    #[error("not a minisign public key: {0}")]
    Malformed(String),
    /// No key was given where at least one is needed.
    #[error("no release public key given")]
    None,
    /// Two keys share a key id (the same key given twice, or a collision).
    #[error("two release public keys have the same key id {0}")]
    Duplicate(KeyId),
    /// More keys than slots.
    #[error("at most {max} release public keys, got {got}")]
    TooMany { max: usize, got: usize },
}

/// A minisign key id: 8 bytes that a signature names its key by. Shown as minisign shows it
/// (16 upper-case hex digits of the little-endian number).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A release public key (minisign, Ed25519).
#[derive(Clone)]
pub struct PublicKey {
    pub(crate) inner: minisign_verify::PublicKey,
    key_id: KeyId,
    base64: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("key_id", &self.key_id).field("base64", &self.base64).finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.base64 == other.base64
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// A key from its one-line base64 form (the second line of a `minisign.pub` file, `RWS…`).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = STANDARD.decode(text).map_err(|_| KeyError::Malformed("the key is not base64".to_owned()))?;
        if bytes.len() != PUBLIC_KEY_BYTES {
            return Err(KeyError::Malformed(format!("a key is {PUBLIC_KEY_BYTES} bytes, this one {}", bytes.len())));
        }
        if bytes[..2] != *b"Ed" {
            return Err(KeyError::Malformed("not an Ed25519 key".to_owned()));
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&bytes[2..10]);
        let inner = minisign_verify::PublicKey::from_base64(text)
            .map_err(|e| KeyError::Malformed(format!("the key does not decode: {e}")))?;
        Ok(Self { inner, key_id: KeyId(key_id), base64: text.to_owned() })
    }

    /// A key from the text of a `minisign.pub` file (an `untrusted comment:` line, then the key)
    /// or from the one-line base64 form.
    pub fn decode(text: &str) -> Result<Self, KeyError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        match (lines.next(), lines.next(), lines.next()) {
            (Some(key), None, None) => Self::from_base64(key),
            (Some(comment), Some(key), None) if comment.starts_with("untrusted comment:") => Self::from_base64(key),
            _ => Err(KeyError::Malformed("expected a minisign.pub file (a comment line, then the key) or the key alone".to_owned())),
        }
    }

    /// The key id signatures name this key by.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The one-line base64 form (what configuration and the agent's slots hold).
    pub fn to_base64(&self) -> &str {
        &self.base64
    }
}

/// Which of the agent's two slots a key sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The key releases are signed with now.
    Primary,
    /// The other key: the next one during a rotation (or the previous one right after it).
    Secondary,
}

/// The release keys an agent build trusts: two slots, compiled into the agent.
///
/// Rotation without a flag day: to move from key A to key B, ship an agent whose slots are
/// (A, B), signed with A, which every agent accepts; once the fleet runs it, sign with B. The next
/// build may drop A: slots (B, none), or (B, C) to prepare the rotation after that. A release
/// never brings its own key: trust comes only from the binary already running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    // One or two keys; the primary first. Kept as a vector so it reads as the `&[PublicKey]`
    // that `verify_manifest` takes.
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// The slots as compiled into the agent: each one line of base64 (`RWS…`), the secondary
    /// empty when unused. Refuses a malformed key, an empty primary and two equal key ids.
    pub fn from_slots(primary: &str, secondary: &str) -> Result<Self, KeyError> {
        let primary = primary.trim();
        if primary.is_empty() {
            return Err(KeyError::None);
        }
        let primary = PublicKey::from_base64(primary)?;
        let secondary = match secondary.trim() {
            "" => None,
            s => Some(PublicKey::from_base64(s)?),
        };
        Self::new(primary, secondary)
    }

    /// The slots from parsed keys.
    pub fn new(primary: PublicKey, secondary: Option<PublicKey>) -> Result<Self, KeyError> {
        if let Some(s) = &secondary
            && s.key_id() == primary.key_id()
        {
            return Err(KeyError::Duplicate(s.key_id()));
        }
        Ok(Self { keys: std::iter::once(primary).chain(secondary).collect() })
    }

    /// The trusted keys, primary first (for [`crate::verify_manifest`]).
    pub fn as_slice(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The slot of the key with this id, if it is trusted.
    pub fn slot_of(&self, key_id: KeyId) -> Option<Slot> {
        let i = self.keys.iter().position(|k| k.key_id() == key_id)?;
        Some(if i == 0 { Slot::Primary } else { Slot::Secondary })
    }
}

/// Parses a list of keys (the gateway's configuration), refusing duplicates.
pub(crate) fn check_distinct(keys: &[PublicKey]) -> Result<(), KeyError> {
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().any(|o| o.key_id() == k.key_id()) {
            return Err(KeyError::Duplicate(k.key_id()));
        }
    }
    Ok(())
}

impl PublicKey {
    /// Parses each of `texts` (one-line base64 or `minisign.pub` text), refusing an empty list,
    /// more than `max`, and two keys with one key id.
    pub fn parse_list<S: AsRef<str>>(texts: &[S], max: usize) -> Result<Vec<PublicKey>, KeyError> {
        if texts.is_empty() {
            return Err(KeyError::None);
        }
        if texts.len() > max {
            return Err(KeyError::TooMany { max, got: texts.len() });
        }
        let keys = texts.iter().map(|t| PublicKey::decode(t.as_ref())).collect::<Result<Vec<_>, _>>()?;
        check_distinct(&keys)?;
        Ok(keys)
    }
}
