//! Fuzz target body (feature `fuzzing`): the libFuzzer target fuzz/fuzz_targets/fido_finish_json.rs
//! and the corpus replay test (fido/tests/fuzz_corpus.rs) call the same function. It takes arbitrary
//! bytes, must not panic, and asserts what the API promises about what it accepts.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{AuthenticationState, Config, RegistrationState, Service, StoredCredential, credential_id_from_response};

/// A relying party with one registration and one authentication ceremony under way and one linked
/// credential, from fuzz/fixtures/ (written by fido/tests/fuzz_corpus.rs `make_seeds`), so the
/// seeds are answers these ceremonies accept.
pub struct Setup {
    /// The relying party (default configuration: `https://localhost:8443`, attestation none).
    pub service: Service,
    /// The registration ceremony.
    pub registration: RegistrationState,
    /// The authentication ceremony.
    pub authentication: AuthenticationState,
    /// The credential the authentication ceremony allows.
    pub credential: StoredCredential,
}

/// The fixture file `name` in fuzz/fixtures/.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/../fuzz/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => panic!("{path}: {e} (fido/tests/fuzz_corpus.rs make_seeds writes it)"),
    }
}

/// The setup, read once.
pub fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let setup = || -> Result<Setup, crate::Error> {
            Ok(Setup {
                service: Service::new(&Config::default())?,
                registration: RegistrationState::from_json(&fixture("fido-registration-state.json"))?,
                authentication: AuthenticationState::from_json(&fixture("fido-authentication-state.json"))?,
                credential: StoredCredential::from_json(&fixture("fido-credential.json"))?,
            })
        };
        match setup() {
            Ok(s) => s,
            Err(e) => panic!("fido setup: {e}"),
        }
    })
}

/// The `credential` of `/fido/register/finish`, `/fido/auth/finish` and `/fido/link/finish`, as the
/// gateway passes it on: the credential-ID lookup it does before the database, then both ceremonies.
/// An accepted answer is for the credential its `rawId` names, with the user verified.
pub fn fido_finish_json(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let id = credential_id_from_response(json);
    if let Ok(id) = &id {
        assert!(!id.as_bytes().is_empty());
        assert_eq!(URL_SAFE_NO_PAD.decode(id.to_base64url()).ok().as_deref(), Some(id.as_bytes()));
    }
    let s = setup();
    if let Ok(new) = s.service.finish_registration(&s.registration, json) {
        assert_eq!(id.as_ref().ok(), Some(&new.credential_id));
        assert_eq!(new.user_handle, s.registration.user_handle());
        assert!(new.user_verified);
        assert_eq!(new.stored.credential_id(), new.credential_id);
    }
    if let Ok(result) = s.service.finish_authentication(s.authentication.clone(), json, &s.credential) {
        assert_eq!(id.as_ref().ok(), Some(&result.credential_id));
        assert_eq!(result.credential_id, s.credential.credential_id());
        assert!(result.user_verified);
        assert_eq!(result.backup_eligible, s.credential.backup_eligible());
        if let Some(updated) = &result.updated {
            assert!(updated.counter() >= s.credential.counter());
        }
    }
}
