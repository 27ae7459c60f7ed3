//! The `[fido]` configuration section: relying party identity and the written policies.
//!
//! Every key has a default so the gateway starts with no file (`localhost`, the demo URL).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

/// Configuration of the WebAuthn relying party and its policies (`[fido]` in `gateway.toml`).
///
/// ```toml
/// [fido]
/// rp_id = "gateway.example.jp"                # the gateway's host name (or a parent domain)
/// origin = "https://gateway.example.jp"        # the public URL the browser sees
/// rp_name = "Ninsho Gateway"
/// counter_policy = "refuse"                   # or "allow" (accepted, reported for audit)
/// backup_eligible = "allow"                   # or "refuse" (no synced passkeys)
/// ceremony_timeout_secs = 120
///
/// [fido.attestation]
/// policy = "none"                             # "none" | "any" | "aaguid-allowlist"
/// # with "aaguid-allowlist" only:
/// # aaguids = ["cb69481e-8ff7-4039-93ec-0a2729a154a8"]
/// # roots = ["/etc/ninsho/fido/vendor-root.pem"]
/// ```
///
/// The policies are described in `docs/fido-policy.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// WebAuthn relying party ID: the gateway's host name, or a registrable parent of it.
    pub rp_id: String,
    /// The gateway's public origin (`https://host[:port]`). Responses from any other origin are
    /// refused; no subdomains, no other ports.
    pub origin: Url,
    /// Name shown by some authenticators when registering.
    pub rp_name: String,
    /// What attestation (evidence of the authenticator model) registration requires.
    pub attestation: AttestationPolicy,
    /// What to do when the signature counter does not increase.
    pub counter_policy: CounterPolicy,
    /// Whether backup-eligible (synced) passkeys may be registered.
    pub backup_eligible: BackupEligiblePolicy,
    /// Browser-side timeout put in the options, in seconds. The gateway should expire the stored
    /// ceremony state after the same time ([`Service::ceremony_timeout`](crate::Service::ceremony_timeout)).
    pub ceremony_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rp_id: "localhost".to_owned(),
            origin: default_origin(),
            rp_name: "Ninsho Gateway".to_owned(),
            attestation: AttestationPolicy::default(),
            counter_policy: CounterPolicy::default(),
            backup_eligible: BackupEligiblePolicy::default(),
            ceremony_timeout_secs: 120,
        }
    }
}

impl Config {
    /// The ceremony timeout as a [`Duration`].
    pub fn ceremony_timeout(&self) -> Duration {
        Duration::from_secs(self.ceremony_timeout_secs)
    }
}

fn default_origin() -> Url {
    #[allow(clippy::expect_used)]
    // a constant that parses (the `config_from_toml_shape` test builds it)
    Url::parse("https://localhost:8443").expect("constant URL")
}

/// Attestation requirement at registration (`[fido.attestation]`, key `policy`).
// `None {}` and `Any {}` are struct variants (not unit variants) because serde rejects unknown
// keys of an internally tagged enum only for struct variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AttestationPolicy {
    /// Ask for no attestation and accept any authenticator, including synced passkeys. The
    /// AAGUID reported is the authenticator's unverified claim (often all zeros).
    None {},
    /// Ask for direct attestation and require a certificate-based attestation statement whose
    /// signature verifies. No trust anchor is checked, so this proves the authenticator holds an
    /// attestation key, not who made it; "none" and self attestation are refused.
    Any {},
    /// Ask for direct attestation; the attestation certificate must chain to one of `roots` and
    /// its AAGUID must be one of `aaguids`. Synced (backup-eligible) passkeys cannot attest and
    /// are refused.
    AaguidAllowlist {
        /// Allowed authenticator models.
        aaguids: Vec<Uuid>,
        /// PEM files, one vendor attestation root certificate each (e.g. from the FIDO
        /// Metadata Service). Read once by [`Service::new`](crate::Service::new).
        roots: Vec<PathBuf>,
    },
}

impl Default for AttestationPolicy {
    fn default() -> Self {
        Self::None {}
    }
}

/// What to do when an assertion's signature counter is not greater than the stored one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterPolicy {
    /// Refuse the authentication with [`Error::CounterRegression`](crate::Error::CounterRegression).
    #[default]
    Refuse,
    /// Accept it, report it in [`AuthenticationResult::counter_regression`](crate::AuthenticationResult::counter_regression)
    /// for the audit log, and keep the higher stored value.
    Allow,
}

/// Whether backup-eligible (synced, multi-device) credentials may be registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupEligiblePolicy {
    /// Accept them; the BE flag is reported so the gateway can record it.
    #[default]
    Allow,
    /// Refuse registration with [`Error::BackupEligibleRefused`](crate::Error::BackupEligibleRefused).
    Refuse,
}
