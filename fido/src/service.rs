//! `fido::Service`: the two WebAuthn ceremonies over webauthn-rs, with our policies applied.
//!
//! How the work is split with webauthn-rs (0.6.2):
//! - webauthn-rs builds the options and verifies client data type, challenge, origin, RP ID
//!   hash, user presence, user verification, the attestation statement (and, for the allowlist,
//!   its chain and AAGUID) and the assertion signature.
//! - This module decides the counter and backup-eligibility questions itself, *after* the
//!   signature has verified (so a forged response can only ever produce "invalid signature",
//!   never a cloned-authenticator alarm), against the credential as the gateway stores it *now*
//!   (not a copy taken when the ceremony started). webauthn-rs would otherwise refuse any
//!   counter that does not increase (with no way to configure it) and, for passkeys, silently
//!   accept a BE flag that switches from false to true. To keep those decisions ours, the
//!   credential handed to webauthn-rs for verification carries counter 0 and the BE/BS flags of
//!   the response, which turns its own counter and BE checks into no-ops.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AttestationCaList, AttestationCaListBuilder, Credential, ParsedAttestationData, Webauthn,
    WebauthnBuilder,
};
use webauthn_rs_proto::{AllowCredentials, AttestationConveyancePreference};

use crate::config::{AttestationPolicy, BackupEligiblePolicy, Config, CounterPolicy};
use crate::response::{
    attestation_auth_data, attested_credential_id, auth_data_head, claimed_aaguid, parse_assertion,
    parse_registration,
};
use crate::types::{RegistrationCeremony, STATE_VERSION};
use crate::{
    AuthenticationResult, AuthenticationState, CounterRegression, CreationOptions, Error,
    NewCredential, RegistrationState, RequestOptions, StoredCredential, UserInfo,
};

/// Attestation policy, resolved at start-up (roots read and parsed).
#[derive(Debug, Clone)]
enum Attestation {
    None,
    Any,
    Allowlist {
        aaguids: Vec<Uuid>,
        ca_list: AttestationCaList,
    },
}

/// The WebAuthn relying party of the gateway. Cheap to share (`Arc<fido::Service>`); all
/// methods take `&self` and keep no state between calls: ceremony state goes to the caller.
#[derive(Debug, Clone)]
pub struct Service {
    webauthn: Webauthn,
    attestation: Attestation,
    counter_policy: CounterPolicy,
    backup_eligible: BackupEligiblePolicy,
    timeout: Duration,
}

impl Service {
    /// Checks the configuration and builds the service. Reads the attestation root files of an
    /// `aaguid-allowlist` policy; does nothing else outside memory.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let origin = &config.origin;
        let secure = origin.scheme() == "https"
            || (origin.scheme() == "http" && origin.host_str() == Some("localhost"));
        if !secure {
            // WebAuthn is only available in secure contexts (https, or http://localhost).
            return Err(Error::Config(format!(
                "origin {origin} is not https (or http://localhost)"
            )));
        }
        if origin.path() != "/" || origin.query().is_some() || origin.fragment().is_some() {
            return Err(Error::Config(format!(
                "origin {origin} must have no path, query or fragment"
            )));
        }
        if config.rp_id.is_empty() || config.rp_name.is_empty() {
            return Err(Error::Config(
                "rp_id and rp_name must not be empty".to_owned(),
            ));
        }
        if !(10..=600).contains(&config.ceremony_timeout_secs) {
            return Err(Error::Config(
                "ceremony_timeout_secs must be between 10 and 600".to_owned(),
            ));
        }
        let timeout = config.ceremony_timeout();
        // WebauthnBuilder checks that rp_id is the origin's host or a parent domain of it.
        let webauthn = WebauthnBuilder::new(&config.rp_id, origin)
            .map_err(|_| {
                Error::Config(format!(
                    "rp_id {:?} is not the host of origin {origin} or a parent domain of it",
                    config.rp_id
                ))
            })?
            .rp_name(&config.rp_name)
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;

        let attestation = match &config.attestation {
            AttestationPolicy::None {} => Attestation::None,
            AttestationPolicy::Any {} => Attestation::Any,
            AttestationPolicy::AaguidAllowlist { aaguids, roots } => {
                if aaguids.is_empty() || roots.is_empty() {
                    return Err(Error::Config(
                        "aaguid-allowlist needs at least one AAGUID and one root".to_owned(),
                    ));
                }
                let mut builder = AttestationCaListBuilder::new();
                for path in roots {
                    let pem = std::fs::read(path).map_err(|e| {
                        Error::Config(format!("attestation root {}: {e}", path.display()))
                    })?;
                    // Each root vouches for the listed models only (webauthn-rs checks the
                    // AAGUID against the set attached to the root the chain ends at).
                    for aaguid in aaguids {
                        builder
                            .insert_device_pem(&pem, *aaguid, aaguid.to_string(), BTreeMap::new())
                            .map_err(|e| {
                                Error::Config(format!("attestation root {}: {e:?}", path.display()))
                            })?;
                    }
                }
                Attestation::Allowlist {
                    aaguids: aaguids.clone(),
                    ca_list: builder.build(),
                }
            }
        };

        Ok(Self {
            webauthn,
            attestation,
            counter_policy: config.counter_policy,
            backup_eligible: config.backup_eligible,
            timeout,
        })
    }

    /// How long a ceremony may take; the gateway expires stored state after this.
    pub fn ceremony_timeout(&self) -> Duration {
        self.timeout
    }

    /// Starts linking a new authenticator to `user`. `exclude` are the user's credentials that
    /// are already linked: the browser refuses to create a second one on the same authenticator,
    /// and [`finish_registration`](Self::finish_registration) refuses them too.
    ///
    /// Returns the options for the browser and the state to store server-side.
    pub fn start_registration(
        &self,
        user: &UserInfo,
        exclude: &[StoredCredential],
    ) -> Result<(CreationOptions, RegistrationState), Error> {
        if user.name.is_empty() || user.display_name.is_empty() {
            return Err(Error::Internal(
                "user name and display name must not be empty".to_owned(),
            ));
        }
        let exclude_ids: Vec<_> = exclude
            .iter()
            .map(|c| c.credential().cred_id.clone())
            .collect();
        let (options, ceremony) = match &self.attestation {
            Attestation::None | Attestation::Any => {
                // Passkey registration: user verification required, credProtect
                // "userVerificationRequired" requested, attestation "none".
                let (mut ccr, st) = self
                    .webauthn
                    .start_passkey_registration(
                        user.user_handle,
                        &user.name,
                        &user.display_name,
                        Some(exclude_ids),
                    )
                    .map_err(|e| Error::Internal(e.to_string()))?;
                if matches!(self.attestation, Attestation::Any) {
                    // The registration state does not record the conveyance preference, so
                    // asking for "direct" here changes only what the browser is asked for;
                    // the requirement itself is enforced in `check_attestation`.
                    ccr.public_key.attestation = Some(AttestationConveyancePreference::Direct);
                }
                (ccr, RegistrationCeremony::Passkey(st))
            }
            Attestation::Allowlist { ca_list, .. } => {
                // Attested passkey registration: direct attestation, packed or tpm formats,
                // user verification required, synchronised (BE) credentials refused, and the
                // chain and AAGUID checked against `ca_list` at finish.
                let (ccr, st) = self
                    .webauthn
                    .start_attested_passkey_registration(
                        user.user_handle,
                        &user.name,
                        &user.display_name,
                        Some(exclude_ids),
                        ca_list.clone(),
                        None,
                    )
                    .map_err(|e| Error::Internal(e.to_string()))?;
                (ccr, RegistrationCeremony::Attested(Box::new(st)))
            }
        };
        let state = RegistrationState {
            v: STATE_VERSION,
            user_handle: user.user_handle,
            exclude: exclude
                .iter()
                .map(StoredCredential::credential_id)
                .collect(),
            ceremony,
        };
        Ok((CreationOptions(options), state))
    }

    /// Verifies the browser's registration response against the stored `state` and the
    /// attestation and backup-eligibility policies. The gateway must have taken `state` out of
    /// storage (single use) before calling this.
    pub fn finish_registration(
        &self,
        state: &RegistrationState,
        response_json: &str,
    ) -> Result<NewCredential, Error> {
        let (credential_id, reg) = parse_registration(response_json)?;
        let auth_data = attestation_auth_data(&reg.response.attestation_object)?;
        auth_data_head(&auth_data)?;
        let claimed = claimed_aaguid(&auth_data);
        // webauthn-rs registers the ID inside the signed authenticator data and ignores `rawId`;
        // the gateway looks credentials up by `rawId`, so the two must agree.
        if attested_credential_id(&auth_data).as_ref() != Some(&credential_id) {
            return Err(Error::InvalidResponse(
                "rawId differs from the attested credential ID".to_owned(),
            ));
        }

        if state.exclude.contains(&credential_id) {
            return Err(Error::CredentialAlreadyRegistered);
        }

        let credential: Credential = match &state.ceremony {
            RegistrationCeremony::Passkey(st) => self
                .webauthn
                .finish_passkey_registration(&reg, st)
                .map(Credential::from),
            RegistrationCeremony::Attested(st) => self
                .webauthn
                .finish_attested_passkey_registration(&reg, st)
                .map(Credential::from),
        }
        .map_err(|e| Error::from_webauthn(e, claimed))?;

        // webauthn-rs enforced UV (policy "required" in both flavours); check the outcome too.
        if !credential.user_verified {
            return Err(Error::UserNotVerified);
        }
        self.check_attestation(&credential, claimed)?;
        if credential.backup_eligible && self.backup_eligible == BackupEligiblePolicy::Refuse {
            return Err(Error::BackupEligibleRefused);
        }

        let stored = StoredCredential::new(credential);
        let cred = stored.credential();
        let attested = stored.attested_aaguid();
        Ok(NewCredential {
            credential_id,
            user_handle: state.user_handle,
            aaguid: attested.or(claimed).unwrap_or(Uuid::nil()),
            aaguid_attested: attested.is_some(),
            attestation_format: serde_name(&cred.attestation_format),
            backup_eligible: cred.backup_eligible,
            backup_state: cred.backup_state,
            counter: cred.counter,
            user_verified: cred.user_verified,
            transports: cred.transports.iter().flatten().map(serde_name).collect(),
            stored: stored.clone(),
        })
    }

    /// The attestation policy, applied to a credential whose attestation statement webauthn-rs
    /// has already verified.
    fn check_attestation(&self, cred: &Credential, claimed: Option<Uuid>) -> Result<(), Error> {
        match &self.attestation {
            Attestation::None => Ok(()),
            Attestation::Any => match cred.attestation.data {
                ParsedAttestationData::Basic(_)
                | ParsedAttestationData::AttCa(_)
                | ParsedAttestationData::AnonCa(_) => Ok(()),
                _ => Err(Error::AttestationRefused {
                    aaguid: claimed,
                    reason: "no certificate-based attestation statement".to_owned(),
                }),
            },
            Attestation::Allowlist { aaguids, .. } => {
                // webauthn-rs checked chain and AAGUID already; this repeats the AAGUID check
                // on the verified value so the allowlist does not rest on one code path.
                let attested = StoredCredential::new(cred.clone()).attested_aaguid();
                match attested {
                    Some(a) if aaguids.contains(&a) => Ok(()),
                    _ => Err(Error::AttestationRefused {
                        aaguid: attested.or(claimed),
                        reason: "authenticator model not in the allowlist".to_owned(),
                    }),
                }
            }
        }
    }

    /// Starts an authentication of the doctor with `user_handle`, offering their linked
    /// credentials `allowed` (all of them, or the one they picked).
    pub fn start_authentication(
        &self,
        user_handle: Uuid,
        allowed: &[StoredCredential],
    ) -> Result<(RequestOptions, AuthenticationState), Error> {
        if allowed.is_empty() {
            return Err(Error::NoCredentials);
        }
        // The discoverable-credential entry point of webauthn-rs is used because its finish
        // verifies against a single credential we pass in (see the module docs); the options are
        // then made non-discoverable by listing the doctor's credentials, and the immediate
        // (non-conditional) mediation is restored. User verification is "required".
        let (mut rcr, ceremony) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| Error::Internal(e.to_string()))?;
        rcr.public_key.allow_credentials = allowed
            .iter()
            .map(|c| AllowCredentials {
                type_: "public-key".to_owned(),
                id: c.credential().cred_id.clone(),
                transports: c.credential().transports.clone(),
            })
            .collect();
        rcr.mediation = None;
        let state = AuthenticationState {
            v: STATE_VERSION,
            user_handle,
            allowed: allowed
                .iter()
                .map(StoredCredential::credential_id)
                .collect(),
            ceremony,
        };
        Ok((RequestOptions(rcr), state))
    }

    /// Verifies the browser's authentication response.
    ///
    /// `stored` is the credential as stored now, found by the gateway with
    /// [`credential_id_from_response`](crate::credential_id_from_response) (after checking it
    /// belongs to the doctor). The gateway must have taken `state` out of storage (single use).
    ///
    /// Policy, in this order, after the signature verified:
    /// 1. backup eligibility must equal the registered value, else
    ///    [`Error::BackupEligibilityChanged`];
    /// 2. if the received or stored counter is nonzero, the received one must be greater,
    ///    else [`Error::CounterRegression`] (or, with `counter_policy = "allow"`, success with
    ///    [`AuthenticationResult::counter_regression`] set);
    /// 3. a changed backup state is accepted and reported.
    pub fn finish_authentication(
        &self,
        state: AuthenticationState,
        response_json: &str,
        stored: &StoredCredential,
    ) -> Result<AuthenticationResult, Error> {
        let (credential_id, pkc) = parse_assertion(response_json)?;
        // WebAuthn §7.2 step 5: the credential must be one this ceremony offered.
        if !state.allowed.contains(&credential_id) || stored.credential_id() != credential_id {
            return Err(Error::UnknownCredential);
        }
        // WebAuthn §7.2 step 6: a user handle, when present, must be the user's.
        if let Some(uh) = &pkc.response.user_handle
            && uh.as_slice() != state.user_handle.as_bytes()
        {
            return Err(Error::UnknownCredential);
        }
        let head = auth_data_head(&pkc.response.authenticator_data)?;

        let registered = stored.credential();
        let mut probe = registered.clone();
        probe.counter = 0;
        probe.backup_eligible = head.backup_eligible;
        probe.backup_state = head.backup_state;
        let res = self
            .webauthn
            .finish_discoverable_authentication_v2(&pkc, state.ceremony, &probe)
            .map_err(|e| Error::from_webauthn(e, None))?;

        // Everything below rests on a verified signature.
        if !res.user_verified() {
            return Err(Error::UserNotVerified);
        }
        if res.backup_eligible() != registered.backup_eligible {
            return Err(Error::BackupEligibilityChanged {
                stored: registered.backup_eligible,
                received: res.backup_eligible(),
            });
        }

        let received = res.counter();
        let stored_counter = registered.counter;
        // WebAuthn §7.2 step 22: with a counter in use on either side, it must increase.
        let counter_regression = ((received != 0 || stored_counter != 0)
            && received <= stored_counter)
            .then_some(CounterRegression {
                stored: stored_counter,
                received,
            });
        if let Some(r) = counter_regression
            && self.counter_policy == CounterPolicy::Refuse
        {
            return Err(Error::CounterRegression {
                stored: r.stored,
                received: r.received,
            });
        }

        let backup_state_changed = res.backup_state() != registered.backup_state;
        let mut next = stored.clone();
        {
            let c = next.credential_mut();
            // Never lower the stored counter: under "allow", a lagging copy keeps being reported.
            c.counter = stored_counter.max(received);
            c.backup_state = res.backup_state();
        }
        let changed = next.counter() != stored_counter || backup_state_changed;

        Ok(AuthenticationResult {
            credential_id,
            counter: received,
            counter_regression,
            user_verified: res.user_verified(),
            backup_eligible: res.backup_eligible(),
            backup_state: res.backup_state(),
            backup_state_changed,
            updated: changed.then_some(next),
        })
    }
}

/// The serde name of a webauthn-rs enum value (`"packed"`, `"usb"`, ...).
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}
