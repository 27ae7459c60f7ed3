//! The folded form of a login ID, under which login IDs are unique in a clinic and looked up at
//! login (issue 15, item 5): `doctor1`, `DOCTOR1` and `Ｄｏｃｔｏｒ１` are one account.
//!
//! Folding is NFKC, then full Unicode case folding, then NFKC again (case folding can undo
//! normalisation, e.g. `ǰ` folds to `j` + combining caron). The Unicode work is left to ICU4X
//! (`icu_normalizer`, `icu_casemap`), the Unicode Consortium's own Rust libraries, so the tables
//! follow the Unicode version they ship rather than anything written here.

use icu_casemap::CaseMapper;
use icu_normalizer::ComposingNormalizerBorrowed;

/// The folded form of `login_id`, stored beside it (`users.login_folded`).
pub fn fold(login_id: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let first = nfkc.normalize(login_id);
    let folded = CaseMapper::new().fold_string(&first);
    nfkc.normalize(&folded).into_owned()
}

/// The key failed logins are counted under (`login_attempts.login_key`): per clinic and folded
/// login ID, whether or not the account exists, so `DOCTOR1` and `doctor1` share one count.
pub fn lockout_key(clinic_id: &str, login_id: &str) -> String {
    format!("{clinic_id}/{}", fold(login_id))
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn width_and_case_variants_fold_to_one_form() {
        for spelling in ["doctor1", "DOCTOR1", "Doctor1", "Ｄｏｃｔｏｒ１", "ＤＯＣＴＯＲ１", "ｄｏｃｔｏｒ1"] {
            assert_eq!(fold(spelling), "doctor1", "{spelling}");
        }
    }

    #[test]
    fn full_case_folding_and_compatibility_forms() {
        // Full (not simple) folding: ß and ẞ become "ss"; the ligature ﬁ is "fi" under NFKC.
        assert_eq!(fold("STRAßE"), "strasse");
        assert_eq!(fold("ẞ"), "ss");
        assert_eq!(fold("ﬁle"), "file");
        // Half-width katakana become full-width, and a decomposed kana composes.
        assert_eq!(fold("ﾔﾏﾀﾞ"), "ヤマダ");
        assert_eq!(fold("ヤマタ\u{3099}"), "ヤマダ");
        // Folding can produce a sequence that NFKC composes again: the second pass.
        assert_eq!(fold("ǰ"), fold("J\u{30C}"));
    }

    #[test]
    fn different_ids_stay_different() {
        assert_ne!(fold("doctor1"), fold("doctor2"));
        assert_ne!(fold("yamada"), fold("yamada."));
        assert_ne!(fold("やまだ"), fold("ヤマダ"), "hiragana and katakana are not folded together");
    }
}
