//! The assurance a presence check gives the signing session it opens (docs/design.md §3.7):
//! `acr` as the NIST SP 800-63B-4 level and `amr` as RFC 8176 methods, by the authenticator
//! used and the configured session lifetimes. Every signing token carries both.

use crate::config::SigningSessionConfig;

/// The presence check that opens a signing session, after the password login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A FIDO authenticator with user verification; `synced` when its key may leave the device
    /// (backup eligible, a synced passkey).
    Fido {
        /// Backup eligible.
        synced: bool,
    },
    /// An HPKI or My Number card with its PIN.
    Card,
}

/// `acr` and `amr` of a signing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assurance {
    /// `aal3` or `aal2`.
    pub acr: &'static str,
    /// RFC 8176 methods.
    pub amr: &'static [&'static str],
}

impl Assurance {
    /// The assurance of a session opened by `proof` under the configured lifetimes.
    pub fn of(proof: Proof, lifetimes: &SigningSessionConfig) -> Self {
        // AAL3 needs a device-bound key (SP 800-63B-4 does not count synced passkeys) and
        // re-authentication within 12 h / 15 min idle; anything else is AAL2.
        let device_bound = proof != Proof::Fido { synced: true };
        let acr = if device_bound && !lifetimes.exceeds_aal3() { "aal3" } else { "aal2" };
        let amr: &'static [&'static str] = match proof {
            // A hardware (or, when synced, software) key with user verification, after the password.
            Proof::Fido { synced: false } => &["pwd", "hwk", "mfa"],
            Proof::Fido { synced: true } => &["pwd", "swk", "mfa"],
            // Password, smart card, PIN. (`hwk` would be true too; `sc` is the more specific.)
            Proof::Card => &["pwd", "sc", "pin", "mfa"],
        };
        Self { acr, amr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AAL3_MAX_ABSOLUTE_SECS, AAL3_MAX_IDLE_SECS};

    fn lifetimes(absolute_secs: i64, idle_secs: i64) -> SigningSessionConfig {
        SigningSessionConfig { absolute_secs, idle_secs, beyond_aal3: true }
    }

    #[test]
    fn device_bound_keys_within_the_aal3_bounds_are_aal3() {
        let within = lifetimes(AAL3_MAX_ABSOLUTE_SECS, AAL3_MAX_IDLE_SECS);
        assert_eq!(Assurance::of(Proof::Card, &within), Assurance { acr: "aal3", amr: &["pwd", "sc", "pin", "mfa"] });
        assert_eq!(Assurance::of(Proof::Fido { synced: false }, &within), Assurance { acr: "aal3", amr: &["pwd", "hwk", "mfa"] });
        assert_eq!(Assurance::of(Proof::Card, &SigningSessionConfig::default()).acr, "aal3");
    }

    #[test]
    fn a_synced_passkey_is_aal2_whatever_the_lifetimes() {
        let within = lifetimes(3600, 60);
        assert_eq!(Assurance::of(Proof::Fido { synced: true }, &within), Assurance { acr: "aal2", amr: &["pwd", "swk", "mfa"] });
    }

    #[test]
    fn lifetimes_beyond_either_aal3_bound_make_every_session_aal2() {
        for beyond in [lifetimes(AAL3_MAX_ABSOLUTE_SECS + 1, 60), lifetimes(3600, AAL3_MAX_IDLE_SECS + 1)] {
            for proof in [Proof::Card, Proof::Fido { synced: false }, Proof::Fido { synced: true }] {
                assert_eq!(Assurance::of(proof, &beyond).acr, "aal2", "{proof:?}");
            }
        }
        // The methods do not depend on the lifetimes.
        assert_eq!(Assurance::of(Proof::Card, &lifetimes(AAL3_MAX_ABSOLUTE_SECS + 1, 60)).amr, &["pwd", "sc", "pin", "mfa"]);
    }
}
