//! One-time registration codes as people handle them: generation, the printed form, and the
//! normalisation of what a doctor types. Storage and the attempt rules are in `store::enrollment`.
//!
//! A code is 24 characters from a 32-letter alphabet without look-alikes (no 0/O, no 1/I), shown
//! as six groups of four (`K7QM-3XRD-…`): 120 bits. At 112 bits or more a plain SHA-256 at rest is
//! enough (ASVS 5.0 V6.5.2; a slow salted hash is needed only below that), and each code allows a
//! handful of guesses only.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The code alphabet: digits 2–9 and capitals without I and O (0 and 1 are not digits of it).
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Characters in a code (without separators).
pub const CODE_LEN: usize = 24;

/// A fresh random code in its printed form (`XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`).
pub fn generate_code() -> Zeroizing<String> {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let mut out = Zeroizing::new(String::with_capacity(CODE_LEN + 3));
    for i in 0..CODE_LEN {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 32 letters: an unbiased index from 5 random bits.
        out.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    out
}

/// What a doctor typed, reduced to the 24 code characters: full-width letters and digits (as a
/// Japanese IME may produce) become ASCII, lower case becomes upper case, spaces and hyphens
/// (including full-width and long-vowel marks) are dropped. `None` if what remains is not
/// 24 characters of the alphabet.
pub fn normalise(input: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(CODE_LEN));
    for c in input.chars() {
        let c = match c {
            // Full-width ASCII block (U+FF01–U+FF5E) → ASCII.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0)?,
            _ => c,
        };
        match c {
            ' ' | '\u{3000}' | '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30FC}' | '\t' => continue,
            _ => {}
        }
        let c = c.to_ascii_uppercase();
        if !ALPHABET.contains(&u8::try_from(c).ok()?) {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_LEN).then_some(out)
}

/// SHA-256 of a normalised code: what the database keeps.
pub fn hash(normalised: &str) -> [u8; 32] {
    Sha256::digest(normalised.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_six_groups_of_four_and_normalise_to_themselves() {
        // 24 characters of a 32-letter alphabet: 120 bits, above ASVS V6.5.2's 112.
        assert!(CODE_LEN as f64 * (ALPHABET.len() as f64).log2() >= 112.0);
        for _ in 0..50 {
            let code = generate_code();
            assert_eq!(code.len(), 29, "{}", code.as_str());
            assert!(code.split('-').all(|g| g.len() == 4) && code.split('-').count() == 6, "{}", code.as_str());
            let n = normalise(&code).unwrap();
            assert_eq!(n.as_str(), code.replace('-', ""));
        }
        assert_ne!(generate_code().as_str(), generate_code().as_str());
    }

    #[test]
    fn typing_variants_are_accepted_and_garbage_is_not() {
        let want = "ABCD2345EFGH6789JKLMNPQR";
        for typed in [
            "ABCD-2345-EFGH-6789-JKLM-NPQR",
            "abcd 2345 efgh 6789 jklm npqr",
            "ＡＢＣＤ－２３４５－ＥＦＧＨ－６７８９－ＪＫＬＭ－ＮＰＱＲ",
            " abcd2345efgh6789jklmnpqr ",
        ] {
            assert_eq!(normalise(typed).unwrap().as_str(), want, "{typed}");
        }
        for bad in [
            "",
            "ABCD-2345-EFGH-6789",
            "ABCD-2345-EFGH-6789-JKLM-NPQ",
            "ABCD-2345-EFGH-6789-JKLM-NPQR2",
            "ABCD-2345-EFGH-6789-JKLM-NPQO",
            "ABCD-2345-EFGH-6789-JKLM-NPQ1",
            "ÄBCD2345EFGH6789JKLMNPQR",
        ] {
            assert!(normalise(bad).is_none(), "{bad}");
        }
        assert_eq!(hash(want), hash(&normalise("abcd-2345-efgh-6789-jklm-npqr").unwrap()));
    }
}
