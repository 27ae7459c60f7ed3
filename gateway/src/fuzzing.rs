//! Fuzz target bodies (feature `fuzzing`): the libFuzzer targets in fuzz/fuzz_targets/ and the corpus
//! replay test (gateway/tests/fuzz_corpus.rs) call these same functions. Each takes arbitrary bytes,
//! must not panic, and asserts what the API promises about what it accepts.

use std::sync::OnceLock;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::store::SigningKeyRow;
use crate::tokens::{Claims, Kek, TOKEN_TYPE, TokenError, TokenKeys, key_from_pkcs8};

/// The body of `POST /auth/card/finish` up to the database: the JSON value axum's extractor reads, then
/// the card crate's decoding and verification (`card::fuzzing::card_response`, against a fixed HPKI
/// hierarchy).
pub fn card_finish_json(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        card::fuzzing::card_response(body);
    }
}

/// The issuer and audience the fuzzed tokens are checked for.
pub const ISSUER: &str = "https://gateway.clinic.example:8443";
/// See [`ISSUER`].
pub const AUDIENCE: &str = "ninsho-remote-signer";
/// "Now" for token checks.
pub const NOW: i64 = 1_767_225_600;

/// The token keys of one instance with one fixed P-256 key (fuzz/fixtures/token-key.p8, written by
/// gateway/tests/fuzz_corpus.rs `make_seeds`), and that key's public point.
pub struct TokenSetup {
    /// The keys, as `/api/v1/signing-tokens/consume` holds them.
    pub keys: TokenKeys,
    /// The uncompressed public point of the only key.
    pub public: Vec<u8>,
}

/// The setup, made once.
pub fn token_setup() -> &'static TokenSetup {
    static SETUP: OnceLock<TokenSetup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let pkcs8 = card::fuzzing::fixture("token-key.p8");
        let pair = match aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
        ) {
            Ok(pair) => pair,
            Err(e) => panic!("token-key.p8: {e}"),
        };
        let setup = || -> anyhow::Result<TokenSetup> {
            let kek = Kek::from_bytes(&[0x4B; 32])?;
            let key = key_from_pkcs8(&kek, &pkcs8)?;
            let row = SigningKeyRow {
                kid: key.kid,
                public_jwk: key.public_jwk,
                private_key: key.sealed_private,
                retired_at: None,
                created_at: 0,
            };
            Ok(TokenSetup { keys: TokenKeys::from_rows(kek, &[row])?, public: pair.public_key().as_ref().to_vec() })
        };
        match setup() {
            Ok(s) => s,
            Err(e) => panic!("token setup: {e:#}"),
        }
    })
}

/// The `token` of a consume request. Anything accepted is a token signed by the configured key over
/// exactly the presented header and claims, with typ, issuer, audience and time window as required.
pub fn consume_jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let setup = token_setup();
    let claims = match setup.keys.verify(token, ISSUER, AUDIENCE, NOW) {
        Ok(claims) => claims,
        // An out-of-time refusal carries claims only once the signature verified; they must
        // really be out of time.
        Err(TokenError::Expired(c)) => {
            assert!(NOW >= c.exp, "refused as expired with exp {} at {NOW}", c.exp);
            return;
        }
        Err(TokenError::NotYetValid(c)) => {
            assert!(NOW < c.nbf, "refused as not yet valid with nbf {} at {NOW}", c.nbf);
            return;
        }
        Err(TokenError::Invalid(_)) => return,
    };
    // Decoding leniency is the JWT library's business; the claim here is about key and content.
    let lenient = GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        panic!("accepted a token that is not three parts: {token:?}");
    };
    let signature = match lenient.decode(signature) {
        Ok(s) => s,
        Err(e) => panic!("accepted a signature that is not base64url: {e}"),
    };
    let signed = &token[..header.len() + 1 + payload.len()];
    assert!(
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &setup.public).verify(signed.as_bytes(), &signature).is_ok(),
        "accepted a token the configured key did not sign"
    );
    let header: serde_json::Value = match lenient.decode(header).map(|h| serde_json::from_slice(&h)) {
        Ok(Ok(h)) => h,
        other => panic!("accepted a header that does not decode: {other:?}"),
    };
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], TOKEN_TYPE);
    let presented: Claims = match lenient.decode(payload).map(|p| serde_json::from_slice(&p)) {
        Ok(Ok(c)) => c,
        other => panic!("accepted claims that do not decode: {other:?}"),
    };
    assert_eq!(presented, claims);
    assert_eq!((claims.iss.as_str(), claims.aud.as_str()), (ISSUER, AUDIENCE));
    assert!(claims.nbf <= NOW && NOW < claims.exp);
}
