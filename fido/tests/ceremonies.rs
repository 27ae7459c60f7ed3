//! Both WebAuthn ceremonies end to end against a software authenticator, and every policy
//! refusal (docs/fido-policy.md).

// Test code, helpers included: a failed expectation should panic with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]


use fido::{
    AttestationPolicy, BackupEligiblePolicy, Config, CounterPolicy, Error, NewCredential, Service,
    StoredCredential, UserInfo,
};
use serde_json::Value as Json;
use fido::soft::{Attestation, FIXTURE_AAGUID, SoftAuthenticator};
use uuid::Uuid;

fn doctor() -> UserInfo {
    UserInfo {
        user_handle: Uuid::new_v4(),
        name: "123456".to_owned(),
        display_name: "医師 太郎".to_owned(),
    }
}

fn service(config: Config) -> Service {
    Service::new(&config).expect("service")
}

fn json(options: &impl serde::Serialize) -> Json {
    serde_json::to_value(options).expect("options json")
}

/// Registers `auth` for `user`, passing the state through its storage form as the gateway does.
fn register(
    svc: &Service,
    user: &UserInfo,
    auth: &mut SoftAuthenticator,
) -> Result<NewCredential, Error> {
    let (options, state) = svc.start_registration(user, &[])?;
    let state = fido::RegistrationState::from_json(&state.to_json()?)?;
    let response = auth.create(&options.to_json()?);
    svc.finish_registration(&state, &response)
}

/// One authentication of `auth` against `stored`.
fn authenticate(
    svc: &Service,
    user: &UserInfo,
    stored: &StoredCredential,
    auth: &mut SoftAuthenticator,
) -> Result<fido::AuthenticationResult, Error> {
    let (options, state) =
        svc.start_authentication(user.user_handle, std::slice::from_ref(stored))?;
    let state = fido::AuthenticationState::from_json(&state.to_json()?)?;
    let response = auth.get(&options.to_json()?);
    let id = fido::credential_id_from_response(&response)?;
    assert_eq!(id, stored.credential_id());
    svc.finish_authentication(state, &response, stored)
}

#[test]
fn register_then_authenticate_with_user_verification() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).expect("registration");
    assert_eq!(new.credential_id.as_bytes(), auth.credential_id.as_slice());
    assert_eq!(new.user_handle, user.user_handle);
    assert!(new.user_verified);
    assert_eq!(new.attestation_format, "none");
    assert!(!new.aaguid_attested);
    // Unsigned transports are kept only with a verified attestation statement.
    assert!(new.transports.is_empty());

    // The stored blob survives its storage form.
    let stored = StoredCredential::from_json(&new.stored.to_json().unwrap()).unwrap();
    assert_eq!(stored.credential_id(), new.credential_id);

    let res = authenticate(&svc, &user, &stored, &mut auth).expect("authentication");
    assert!(res.user_verified);
    assert_eq!(res.counter, 1);
    assert!(res.counter_regression.is_none());
    let updated = res.updated.expect("counter moved, record must be updated");
    assert_eq!(updated.counter(), 1);

    // And again with the updated record.
    let res = authenticate(&svc, &user, &updated, &mut auth).expect("second authentication");
    assert_eq!(res.counter, 2);
}

#[test]
fn counterless_authenticator_needs_no_update() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.counter_step = 0; // synced passkeys report 0 forever
    let new = register(&svc, &user, &mut auth).unwrap();
    let res = authenticate(&svc, &user, &new.stored, &mut auth).expect("counter 0/0 is fine");
    assert_eq!(res.counter, 0);
    assert!(res.counter_regression.is_none());
    assert!(res.updated.is_none());
}

#[test]
fn wrong_origin_is_refused() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.origin = "https://evil.example".to_owned();
    assert!(matches!(
        register(&svc, &user, &mut auth),
        Err(Error::OriginMismatch)
    ));

    // Same host, other port: also another origin.
    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).unwrap();
    auth.origin = "https://localhost:9443".to_owned();
    assert!(matches!(
        authenticate(&svc, &user, &new.stored, &mut auth),
        Err(Error::OriginMismatch)
    ));
}

#[test]
fn wrong_rp_id_is_refused() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.rp_id = "example.com".to_owned();
    assert!(matches!(
        register(&svc, &user, &mut auth),
        Err(Error::RpIdMismatch)
    ));

    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).unwrap();
    auth.rp_id = "example.com".to_owned();
    assert!(matches!(
        authenticate(&svc, &user, &new.stored, &mut auth),
        Err(Error::RpIdMismatch)
    ));
}

#[test]
fn response_to_another_challenge_is_refused() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();

    // Registration: the response answers ceremony A but is presented with state B.
    let (options_a, _state_a) = svc.start_registration(&user, &[]).unwrap();
    let (_options_b, state_b) = svc.start_registration(&user, &[]).unwrap();
    let response = auth.create(&options_a.to_json().unwrap());
    assert!(matches!(
        svc.finish_registration(&state_b, &response),
        Err(Error::ChallengeMismatch)
    ));

    // Authentication: same with two concurrent ceremonies.
    let new = register(&svc, &user, &mut auth).unwrap();
    let allowed = std::slice::from_ref(&new.stored);
    let (options_a, _) = svc.start_authentication(user.user_handle, allowed).unwrap();
    let (_, state_b) = svc.start_authentication(user.user_handle, allowed).unwrap();
    let response = auth.get(&options_a.to_json().unwrap());
    assert!(matches!(
        svc.finish_authentication(state_b, &response, &new.stored),
        Err(Error::ChallengeMismatch)
    ));
}

#[test]
fn unknown_credential_is_refused() {
    let svc = service(Config::default());
    let user = doctor();
    let mut mine = SoftAuthenticator::new();
    let mut other = SoftAuthenticator::new();
    let my_cred = register(&svc, &user, &mut mine).unwrap();
    let other_cred = register(&svc, &doctor(), &mut other).unwrap();

    // The ceremony offered only my credential; another doctor's authenticator answers.
    let (options, state) = svc
        .start_authentication(user.user_handle, std::slice::from_ref(&my_cred.stored))
        .unwrap();
    let response = other.get(&options.to_json().unwrap());
    let id = fido::credential_id_from_response(&response).unwrap();
    assert_eq!(id, other_cred.credential_id);
    // Even when the gateway (wrongly) hands over the record that matches the response.
    assert!(matches!(
        svc.finish_authentication(state.clone(), &response, &other_cred.stored),
        Err(Error::UnknownCredential)
    ));
    // Or the record of the credential that was offered.
    assert!(matches!(
        svc.finish_authentication(state, &response, &my_cred.stored),
        Err(Error::UnknownCredential)
    ));
}

#[test]
fn user_handle_of_another_user_is_refused() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).unwrap();
    auth.user_handle = Some(Uuid::new_v4().as_bytes().to_vec());
    assert!(matches!(
        authenticate(&svc, &user, &new.stored, &mut auth),
        Err(Error::UnknownCredential)
    ));
    auth.user_handle = Some(user.user_handle.as_bytes().to_vec());
    authenticate(&svc, &user, &new.stored, &mut auth).expect("own user handle is fine");
}

#[test]
fn counter_regression_is_refused_by_default() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.counter = 10;
    let new = register(&svc, &user, &mut auth).unwrap();
    let stored = authenticate(&svc, &user, &new.stored, &mut auth)
        .unwrap()
        .updated
        .unwrap();
    assert_eq!(stored.counter(), 11);

    // A clone that lags behind: 5 after 11.
    auth.counter = 4;
    match authenticate(&svc, &user, &stored, &mut auth) {
        Err(Error::CounterRegression {
            stored: 11,
            received: 5,
        }) => {}
        other => panic!("expected CounterRegression, got {other:?}"),
    }
    // Equal is not an increase either.
    auth.counter = 10;
    assert!(matches!(
        authenticate(&svc, &user, &stored, &mut auth),
        Err(Error::CounterRegression {
            stored: 11,
            received: 11
        })
    ));
    // A counter that drops to 0 after being used.
    auth.counter = 0;
    auth.counter_step = 0;
    assert!(matches!(
        authenticate(&svc, &user, &stored, &mut auth),
        Err(Error::CounterRegression {
            stored: 11,
            received: 0
        })
    ));
}

#[test]
fn counter_regression_is_reported_when_allowed() {
    let svc = service(Config {
        counter_policy: CounterPolicy::Allow,
        ..Config::default()
    });
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.counter = 10;
    let new = register(&svc, &user, &mut auth).unwrap();
    let stored = authenticate(&svc, &user, &new.stored, &mut auth)
        .unwrap()
        .updated
        .unwrap();

    auth.counter = 4;
    let res = authenticate(&svc, &user, &stored, &mut auth).expect("allowed");
    let r = res.counter_regression.expect("reported");
    assert_eq!((r.stored, r.received), (11, 5));
    // The stored counter is never lowered.
    assert!(res.updated.is_none());
}

#[test]
fn forged_counter_without_valid_signature_is_a_signature_error() {
    // A response whose counter regressed but whose signature is wrong must not raise the
    // cloned-authenticator alarm: the signature is checked first.
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.counter = 10;
    let new = register(&svc, &user, &mut auth).unwrap();
    let stored = authenticate(&svc, &user, &new.stored, &mut auth)
        .unwrap()
        .updated
        .unwrap();
    let (options, state) = svc
        .start_authentication(user.user_handle, std::slice::from_ref(&stored))
        .unwrap();
    let mut impostor = SoftAuthenticator::new();
    impostor.credential_id = auth.credential_id.clone();
    let response = impostor.get(&options.to_json().unwrap());
    assert!(matches!(
        svc.finish_authentication(state, &response, &stored),
        Err(Error::InvalidSignature)
    ));
}

#[test]
fn backup_eligibility_change_is_refused_both_ways() {
    let svc = service(Config::default());
    let user = doctor();

    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).unwrap();
    assert!(!new.backup_eligible);
    auth.backup_eligible = true;
    assert!(matches!(
        authenticate(&svc, &user, &new.stored, &mut auth),
        Err(Error::BackupEligibilityChanged {
            stored: false,
            received: true
        })
    ));

    let mut auth = SoftAuthenticator::new();
    auth.backup_eligible = true;
    let new = register(&svc, &user, &mut auth).unwrap();
    assert!(new.backup_eligible);
    auth.backup_eligible = false;
    assert!(matches!(
        authenticate(&svc, &user, &new.stored, &mut auth),
        Err(Error::BackupEligibilityChanged {
            stored: true,
            received: false
        })
    ));
}

#[test]
fn backup_state_change_is_allowed_and_reported() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.backup_eligible = true;
    auth.counter_step = 0;
    let new = register(&svc, &user, &mut auth).unwrap();
    assert!(!new.backup_state);
    auth.backup_state = true;
    let res = authenticate(&svc, &user, &new.stored, &mut auth).expect("BS may change");
    assert!(res.backup_state && res.backup_state_changed);
    assert!(res.updated.expect("updated").backup_state());
}

#[test]
fn backup_state_without_eligibility_is_malformed() {
    let svc = service(Config::default());
    let mut auth = SoftAuthenticator::new();
    auth.backup_state = true;
    assert!(matches!(
        register(&svc, &doctor(), &mut auth),
        Err(Error::InvalidResponse(_))
    ));
}

#[test]
fn synced_passkeys_can_be_refused() {
    let svc = service(Config {
        backup_eligible: BackupEligiblePolicy::Refuse,
        ..Config::default()
    });
    let mut auth = SoftAuthenticator::new();
    auth.backup_eligible = true;
    assert!(matches!(
        register(&svc, &doctor(), &mut auth),
        Err(Error::BackupEligibleRefused)
    ));
    let mut auth = SoftAuthenticator::new();
    register(&svc, &doctor(), &mut auth).expect("device-bound is fine");
}

#[test]
fn missing_user_verification_is_refused() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.user_verified = false;
    assert!(matches!(
        register(&svc, &user, &mut auth),
        Err(Error::UserNotVerified)
    ));

    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).unwrap();
    auth.user_verified = false;
    assert!(matches!(
        authenticate(&svc, &user, &new.stored, &mut auth),
        Err(Error::UserNotVerified)
    ));
    auth.user_verified = true;
    auth.user_present = false;
    assert!(matches!(
        authenticate(&svc, &user, &new.stored, &mut auth),
        Err(Error::UserNotPresent)
    ));
}

#[test]
fn already_linked_authenticator_is_refused() {
    let svc = service(Config::default());
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).unwrap();
    let (options, state) = svc
        .start_registration(&user, std::slice::from_ref(&new.stored))
        .unwrap();
    let options = options.to_json().unwrap();
    assert_eq!(
        options["publicKey"]["excludeCredentials"][0]["id"],
        new.credential_id.to_base64url()
    );
    let response = auth.create(&options);
    assert!(matches!(
        svc.finish_registration(&state, &response),
        Err(Error::CredentialAlreadyRegistered)
    ));
}

#[test]
fn inconsistent_or_garbage_responses_are_invalid() {
    let svc = service(Config::default());
    let user = doctor();
    let (options, state) = svc.start_registration(&user, &[]).unwrap();
    let mut auth = SoftAuthenticator::new();
    let good = auth.create(&options.to_json().unwrap());

    for bad in [
        "",
        "{}",
        "null",
        "{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"public-key\"}",
    ] {
        assert!(
            matches!(
                svc.finish_registration(&state, bad),
                Err(Error::InvalidResponse(_))
            ),
            "{bad}"
        );
    }
    // rawId that is not the credential ID in the signed authenticator data.
    let mut v: Json = serde_json::from_str(&good).unwrap();
    v["id"] = "AAAA".into();
    v["rawId"] = "AAAA".into();
    assert!(matches!(
        svc.finish_registration(&state, &v.to_string()),
        Err(Error::InvalidResponse(_))
    ));
    // id ≠ rawId.
    let mut v: Json = serde_json::from_str(&good).unwrap();
    v["id"] = "AAAA".into();
    assert!(matches!(
        fido::credential_id_from_response(&v.to_string()),
        Err(Error::InvalidResponse(_))
    ));
    // An assertion presented as a registration, and vice versa.
    let new = register(&svc, &user, &mut auth).unwrap();
    let (a_options, a_state) = svc
        .start_authentication(user.user_handle, std::slice::from_ref(&new.stored))
        .unwrap();
    let assertion = auth.get(&a_options.to_json().unwrap());
    assert!(matches!(
        svc.finish_registration(&state, &assertion),
        Err(Error::InvalidResponse(_))
    ));
    assert!(matches!(
        svc.finish_authentication(a_state, &good, &new.stored),
        Err(Error::InvalidResponse(_))
    ));
}

#[test]
fn no_credentials_no_ceremony() {
    let svc = service(Config::default());
    assert!(matches!(
        svc.start_authentication(Uuid::new_v4(), &[]),
        Err(Error::NoCredentials)
    ));
}

// ---- attestation policies ----------------------------------------------------------------

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_aaguid() -> [u8; 16] {
    *Uuid::parse_str(FIXTURE_AAGUID).unwrap().as_bytes()
}

fn allowlist(aaguids: Vec<Uuid>, root: &str) -> Service {
    service(Config {
        attestation: AttestationPolicy::AaguidAllowlist {
            aaguids,
            roots: vec![fixtures().join(root)],
        },
        ..Config::default()
    })
}

#[test]
fn allowlisted_model_with_trusted_attestation_registers() {
    let svc = allowlist(vec![Uuid::parse_str(FIXTURE_AAGUID).unwrap()], "root.pem");
    let user = doctor();
    let mut auth = SoftAuthenticator::new();
    auth.aaguid = fixture_aaguid();
    auth.attestation = Attestation::Fixture;
    let (options, _) = svc.start_registration(&user, &[]).unwrap();
    assert_eq!(
        options.to_json().unwrap()["publicKey"]["attestation"],
        "direct"
    );

    let new = register(&svc, &user, &mut auth).expect("allowlisted model");
    assert!(new.aaguid_attested);
    assert_eq!(new.aaguid.to_string(), FIXTURE_AAGUID);
    assert_eq!(new.attestation_format, "packed");
    assert_eq!(new.stored.attested_aaguid(), Some(new.aaguid));
    assert_eq!(new.transports, vec!["usb".to_owned()]);
    // Authentication does not depend on the attestation policy.
    authenticate(&svc, &user, &new.stored, &mut auth).expect("authentication");
}

#[test]
fn allowlist_refuses_other_models_untrusted_roots_and_no_attestation() {
    let user = doctor();
    let expect_refused =
        |svc: &Service, auth: &mut SoftAuthenticator| match register(svc, &user, auth) {
            Err(Error::AttestationRefused { .. }) => {}
            other => panic!("expected AttestationRefused, got {other:?}"),
        };

    // Trusted chain, but the model is not on the list.
    let svc = allowlist(vec![Uuid::new_v4()], "root.pem");
    let mut auth = SoftAuthenticator::new();
    auth.aaguid = fixture_aaguid();
    auth.attestation = Attestation::Fixture;
    match register(&svc, &user, &mut auth) {
        Err(Error::AttestationRefused { aaguid, .. }) => {
            assert_eq!(
                aaguid.map(|a| a.to_string()).as_deref(),
                Some(FIXTURE_AAGUID)
            );
        }
        other => panic!("expected AttestationRefused, got {other:?}"),
    }

    // Listed model, but the certificate chains to a root we do not trust.
    let svc = allowlist(
        vec![Uuid::parse_str(FIXTURE_AAGUID).unwrap()],
        "other-root.pem",
    );
    expect_refused(&svc, &mut auth);

    // Listed model claimed without any attestation, or with self attestation.
    let svc = allowlist(vec![Uuid::parse_str(FIXTURE_AAGUID).unwrap()], "root.pem");
    auth.attestation = Attestation::None;
    expect_refused(&svc, &mut auth);
    auth.attestation = Attestation::SelfPacked;
    expect_refused(&svc, &mut auth);

    // A synced passkey cannot be an allowlisted hardware model.
    auth.attestation = Attestation::Fixture;
    auth.backup_eligible = true;
    expect_refused(&svc, &mut auth);
}

#[test]
fn any_attestation_policy_needs_a_certificate_statement() {
    let svc = service(Config {
        attestation: AttestationPolicy::Any {},
        ..Config::default()
    });
    let user = doctor();
    let (options, _) = svc.start_registration(&user, &[]).unwrap();
    assert_eq!(
        options.to_json().unwrap()["publicKey"]["attestation"],
        "direct"
    );

    let mut auth = SoftAuthenticator::new();
    assert!(matches!(
        register(&svc, &user, &mut auth),
        Err(Error::AttestationRefused { .. })
    ));
    auth.attestation = Attestation::SelfPacked;
    assert!(matches!(
        register(&svc, &user, &mut auth),
        Err(Error::AttestationRefused { .. })
    ));
    auth.attestation = Attestation::Fixture;
    auth.aaguid = fixture_aaguid();
    let new = register(&svc, &user, &mut auth).expect("certificate attestation");
    assert!(new.aaguid_attested);
}

#[test]
fn none_policy_accepts_self_attestation_and_reports_the_claimed_aaguid() {
    let svc = service(Config::default());
    let mut auth = SoftAuthenticator::new();
    auth.attestation = Attestation::SelfPacked;
    auth.aaguid = fixture_aaguid();
    let new = register(&svc, &doctor(), &mut auth).expect("none policy");
    assert_eq!(new.aaguid.to_string(), FIXTURE_AAGUID);
    assert!(!new.aaguid_attested);
}

// ---- configuration and options shape -----------------------------------------------------

#[test]
fn config_from_toml_shape() {
    // The gateway deserialises `[fido]` with figment; the serde shape is what matters.
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "rp_id": "gateway.example.jp",
        "origin": "https://gateway.example.jp",
        "counter_policy": "allow",
        "backup_eligible": "refuse",
        "attestation": {
            "policy": "aaguid-allowlist",
            "aaguids": [FIXTURE_AAGUID],
            "roots": ["/etc/ninsho/root.pem"],
        },
    }))
    .unwrap();
    assert_eq!(cfg.counter_policy, CounterPolicy::Allow);
    assert_eq!(cfg.ceremony_timeout_secs, 120);
    assert!(matches!(
        cfg.attestation,
        AttestationPolicy::AaguidAllowlist { .. }
    ));

    let none: Config =
        serde_json::from_value(serde_json::json!({"attestation": {"policy": "none"}})).unwrap();
    assert_eq!(none, Config::default());

    for bad in [
        serde_json::json!({"rp_idd": "x"}),
        serde_json::json!({"counter_policy": "ignore"}),
        serde_json::json!({"attestation": {"policy": "none", "aaguids": []}}),
        serde_json::json!({"attestation": {"policy": "aaguid-allowlist"}}),
    ] {
        assert!(
            serde_json::from_value::<Config>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn bad_configurations_are_refused() {
    let cases = [
        Config {
            rp_id: "example.com".to_owned(),
            ..Config::default()
        },
        Config {
            origin: "http://gateway.example.jp".parse().unwrap(),
            rp_id: "gateway.example.jp".to_owned(),
            ..Config::default()
        },
        Config {
            origin: "https://localhost:8443/app".parse().unwrap(),
            ..Config::default()
        },
        Config {
            ceremony_timeout_secs: 0,
            ..Config::default()
        },
        Config {
            attestation: AttestationPolicy::AaguidAllowlist {
                aaguids: vec![],
                roots: vec![fixtures().join("root.pem")],
            },
            ..Config::default()
        },
        Config {
            attestation: AttestationPolicy::AaguidAllowlist {
                aaguids: vec![Uuid::new_v4()],
                roots: vec![fixtures().join("missing.pem")],
            },
            ..Config::default()
        },
        Config {
            attestation: AttestationPolicy::AaguidAllowlist {
                aaguids: vec![Uuid::new_v4()],
                roots: vec![fixtures().join("gen.sh")],
            },
            ..Config::default()
        },
    ];
    for cfg in cases {
        assert!(
            matches!(Service::new(&cfg), Err(Error::Config(_))),
            "{cfg:?}"
        );
    }
    // A parent domain as RP ID is fine.
    Service::new(&Config {
        rp_id: "example.jp".to_owned(),
        origin: "https://gateway.example.jp".parse().unwrap(),
        ..Config::default()
    })
    .unwrap();
}

#[test]
fn stored_blobs_from_the_future_are_refused() {
    let svc = service(Config::default());
    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &doctor(), &mut auth).unwrap();
    let mut v: Json = serde_json::from_str(&new.stored.to_json().unwrap()).unwrap();
    v["v"] = 2.into();
    assert!(matches!(
        StoredCredential::from_json(&v.to_string()),
        Err(Error::Storage(_))
    ));
    assert!(matches!(
        fido::AuthenticationState::from_json("{}"),
        Err(Error::Storage(_))
    ));
}

/// Replaces the random parts of options so the snapshot shows only the shape.
fn redact(mut v: Json) -> Json {
    let pk = &mut v["publicKey"];
    pk["challenge"] = "[challenge]".into();
    if pk.get("user").is_some() {
        pk["user"]["id"] = "[user handle]".into();
    }
    if let Some(list) = pk.get_mut("allowCredentials").and_then(Json::as_array_mut) {
        for c in list {
            c["id"] = "[credential id]".into();
        }
    }
    v
}

#[test]
fn options_json_shape() {
    let svc = service(Config::default());
    let user = doctor();
    let (creation, _) = svc.start_registration(&user, &[]).unwrap();
    insta::assert_json_snapshot!("creation_options", redact(json(&creation)));

    let mut auth = SoftAuthenticator::new();
    let new = register(&svc, &user, &mut auth).unwrap();
    let (request, _) = svc
        .start_authentication(user.user_handle, std::slice::from_ref(&new.stored))
        .unwrap();
    insta::assert_json_snapshot!("request_options", redact(json(&request)));
}
