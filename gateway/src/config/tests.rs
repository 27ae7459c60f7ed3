use super::*;

#[test]
fn example_file_parses_and_matches_defaults_where_it_says_so() {
    let config = Config::from_toml(EXAMPLE).expect("example parses");
    assert_eq!(config.login.max_failures, 5);
    assert_eq!(config.server.listen, SocketAddr::from(([0, 0, 0, 0], 8443)));
}

#[test]
fn unknown_keys_are_rejected() {
    let err = Config::from_toml("[server]\nlisten_on = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.to_string().contains("listen_on"), "{err}");
}

#[test]
fn external_ops_listener_needs_explicit_consent() {
    let err = Config::from_toml("[ops]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
    assert!(err.to_string().contains("allow_external"), "{err}");
    Config::from_toml("[ops]\nlisten = \"0.0.0.0:9090\"\nallow_external = true\n").unwrap();
}

#[test]
fn plain_http_public_url_is_refused() {
    let err = Config::from_toml("[server]\npublic_url = \"http://clinic.example\"\n").unwrap_err();
    assert!(err.to_string().contains("https"), "{err}");
}

#[test]
fn fido_defaults_derive_from_the_public_url() {
    let c = Config::from_toml("[server]\npublic_url = \"https://gw.clinic.example:9443/base\"\n").unwrap();
    let f = c.fido_config();
    assert_eq!(f.rp_id, "gw.clinic.example");
    assert_eq!(f.origin.as_str(), "https://gw.clinic.example:9443/");
    let c = Config::from_toml(
        "[server]\npublic_url = \"https://gw.clinic.example\"\n[fido]\nrp_id = \"clinic.example\"\n",
    )
    .unwrap();
    assert_eq!(c.fido_config().rp_id, "clinic.example");
    let err = Config::from_toml("[server]\npublic_url = \"https://gw.clinic.example\"\n[fido]\nrp_id = \"evil.example\"\n")
        .unwrap_err();
    assert!(err.to_string().contains("rp_id"), "{err}");
    let err = Config::from_toml("[fido]\norigin = \"https://x\"\n").unwrap_err();
    assert!(err.to_string().contains("origin"), "{err}");
}

#[test]
fn signing_sessions_beyond_aal3_need_the_explicit_flag() {
    let c = Config::default();
    assert_eq!((c.signing_session.absolute_secs, c.signing_session.idle_secs), (8 * 3600, 900));
    assert!(!c.signing_session.exceeds_aal3());
    for toml in ["[signing_session]\nabsolute_secs = 43201\n", "[signing_session]\nidle_secs = 901\n"] {
        let err = Config::from_toml(toml).unwrap_err();
        assert!(err.to_string().contains("beyond_aal3"), "{err}");
        let ok = Config::from_toml(&format!("{toml}beyond_aal3 = true\n")).unwrap();
        assert!(ok.signing_session.exceeds_aal3());
    }
    // Exactly at the bounds is still AAL3.
    let c = Config::from_toml("[signing_session]\nabsolute_secs = 43200\nidle_secs = 900\n").unwrap();
    assert!(!c.signing_session.exceeds_aal3());
    for bad in [
        "[signing_session]\nidle_secs = 0\n",
        "[signing_session]\nabsolute_secs = 600\nidle_secs = 900\n",
        "[enrollment]\ncode_max_failures = 0\n",
        "[enrollment]\ncode_ttl_secs = 1\n",
    ] {
        assert!(Config::from_toml(bad).is_err(), "{bad}");
    }
}

#[test]
fn card_agent_must_be_on_loopback() {
    let c = Config::default();
    assert_eq!(c.card.agent_origin(), "http://127.0.0.1:18443");
    assert_eq!(c.card.policy(), card::verify::Policy::default());
    for bad in [
        "[card]\nagent_url = \"http://192.0.2.1:18443\"\n",
        "[card]\nagent_url = \"https://127.0.0.1:18443\"\n",
        "[card]\nagent_url = \"http://127.0.0.1:18443/x\"\n",
        "[card]\nhpki_roles = []\n",
    ] {
        assert!(Config::from_toml(bad).is_err(), "{bad}");
    }
    Config::from_toml("[card]\nagent_url = \"http://localhost:20000\"\n").unwrap();
}

#[test]
#[allow(clippy::result_large_err, reason = "figment::Jail's closure returns figment's own error type")]
fn audit_key_comes_from_the_environment() {
    const KEY: &str = "c2VjcmV0LWF1ZGl0LWtleS1mb3ItdGhlLXRlc3RzISE=";
    figment::Jail::expect_with(|jail| {
        jail.set_env("GATEWAY_AUDIT__KEY", KEY);
        jail.set_env("GATEWAY_DATA_DIR", jail.directory().display().to_string());
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(c.audit.key, KEY);
        let from_env = c.audit_key().map_err(|e| e.to_string())?;
        let direct = crate::store::AuditKey::from_base64(KEY).map_err(|e| e.to_string())?;
        let row = (1, 2, "e", "success", None, None, "{}");
        assert_eq!(crate::store::audit_link(Some(&from_env), &[0; 32], row), crate::store::audit_link(Some(&direct), &[0; 32], row));
        assert!(!jail.directory().join("audit-key").exists(), "a configured key writes no file");
        jail.set_env("GATEWAY_AUDIT__KEY", "c2hvcnQ=");
        let err = Config::load(None).map_err(|e| e.to_string())?.audit_key().unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        Ok(())
    });
}

#[test]
fn audit_key_is_redacted_in_debug() {
    let mut c = Config::default();
    c.audit.key = "c2VjcmV0LWF1ZGl0LWtleS1mb3ItdGhlLXRlc3RzISE=".into();
    let shown = format!("{c:?} {:?}", c.audit_key().unwrap());
    assert!(!shown.contains("c2VjcmV0") && shown.contains("***"), "{shown}");
}

#[test]
fn database_password_is_redacted_in_debug() {
    let mut c = Config::default();
    c.database.url = "postgres://ninsho:hunter2@db/ninsho".into();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
}
