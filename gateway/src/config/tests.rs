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

/// A file with `text` and permission bits `mode` in `dir`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn the_deployment_configurations_parse() {
    // What deploy/compose.yaml and deploy/k8s/gateway.yaml mount (deploy/check.py checks that the
    // Kubernetes ConfigMap carries deploy/k8s/gateway.toml verbatim).
    for (name, text) in
        [("compose", include_str!("../../../deploy/compose/gateway.toml")), ("k8s", include_str!("../../../deploy/k8s/gateway.toml"))]
    {
        let c = Config::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.database.require, DatabaseRequirement::Postgres, "{name}: replicas share PostgreSQL");
        assert!(!c.database.url_file.as_os_str().is_empty() && c.database.url.is_empty(), "{name}: the URL comes from a file");
        assert!(!c.tokens.key_encryption_key_file.as_os_str().is_empty(), "{name}: one KEK for every replica");
        assert!(!c.audit.key_file.as_os_str().is_empty(), "{name}: one audit key for every replica");
        assert!(c.ops.allow_external && c.ops.listen.ip().is_unspecified(), "{name}: probes and scrapers come from outside");
    }
    let k8s = Config::from_toml(include_str!("../../../deploy/k8s/gateway.toml")).unwrap();
    assert_ne!(k8s.login.password_hash_concurrency, 0, "no CPU limit in the pod: the node's CPUs would count");
}

#[test]
fn a_secret_given_as_value_and_file_is_refused() {
    for (toml, name) in [
        ("[database]\nurl = \"postgres://db/x\"\nurl_file = \"/run/secrets/database_url\"\n", "database.url"),
        ("[tokens]\nkey_encryption_key = \"x\"\nkey_encryption_key_file = \"/run/secrets/kek\"\n", "tokens.key_encryption_key"),
        ("[audit]\nkey = \"x\"\nkey_file = \"/run/secrets/audit\"\n", "audit.key"),
    ] {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(&format!("{name} and {name}_file are both set")), "{err}");
    }
}

#[test]
fn the_database_url_is_read_from_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://ninsho:s3cret@db/ninsho";
    let file = secret_file(dir.path(), "database_url", &format!("{url}\n"), 0o600);
    let c = Config::from_toml(&format!("[database]\nurl_file = {:?}\n", file.display().to_string())).unwrap();
    assert_eq!(c.database_url().unwrap(), url, "the trailing newline is not part of the URL");
    assert!(!format!("{c:?}").contains("s3cret"), "the file's contents are not in the configuration");

    let refused = |text: &str, mode: u32| {
        let file = secret_file(dir.path(), "bad", text, mode);
        let c = Config::from_toml(&format!("[database]\nurl_file = {:?}\n", file.display().to_string())).unwrap();
        c.database_url().unwrap_err().to_string()
    };
    let err = refused(&format!("{url}\n"), 0o644);
    assert!(err.contains("chmod 600") && err.contains("database URL"), "{err}");
    assert!(refused("\n", 0o600).contains("one URL on one line"));
    assert!(refused(&format!("{url}\nsecond line\n"), 0o600).contains("one URL on one line"));
    assert!(refused("mysql://db/x\n", 0o600).contains("must start with sqlite: or postgres:"));

    let missing = dir.path().join("missing");
    let c = Config::from_toml(&format!("[database]\nurl_file = {:?}\n", missing.display().to_string())).unwrap();
    let err = c.database_url().unwrap_err().to_string();
    assert!(err.contains("does not exist") && err.contains("missing"), "{err}");
    let c = Config::from_toml(&format!("[database]\nurl_file = {:?}\n", dir.path().display().to_string())).unwrap();
    assert!(c.database_url().unwrap_err().to_string().contains("not a regular file"));
}

#[test]
fn database_require_postgres_refuses_sqlite_and_a_missing_url() {
    let require = "[database]\nrequire = \"postgres\"\n";
    let err = Config::from_toml(require).unwrap_err().to_string();
    assert!(err.contains("database.require") && err.contains("SQLite") && err.contains("gateway.db"), "{err}");
    let err = Config::from_toml(&format!("{require}url = \"sqlite:///var/lib/ninsho/gateway.db\"\n")).unwrap_err().to_string();
    assert!(err.contains("is a SQLite one"), "{err}");
    for url in ["postgres://db/ninsho", "postgresql://db/ninsho"] {
        let c = Config::from_toml(&format!("{require}url = \"{url}\"\n")).unwrap();
        assert_eq!(c.database_url().unwrap(), url);
    }
    // From a file, the URL is only known when it is read: every command reads it before it opens
    // the database.
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "database_url", "sqlite:///tmp/x.db\n", 0o600);
    let c = Config::from_toml(&format!("{require}url_file = {:?}\n", file.display().to_string())).unwrap();
    let err = c.database_url().unwrap_err().to_string();
    assert!(err.contains("is a SQLite one") && err.contains(&file.display().to_string()), "{err}");
    // Without the requirement, the default stays the SQLite file in the data directory.
    let c = Config::from_toml("data_dir = \"/srv/x\"\n").unwrap();
    assert_eq!(c.database_url().unwrap(), "sqlite:///srv/x/gateway.db");
    assert!(Config::from_toml("[database]\nrequire = \"mysql\"\n").is_err());
}

#[test]
fn configured_key_files_must_exist_and_are_never_generated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("not-mounted");
    let mut c = Config { data_dir: data.clone(), ..Config::default() };
    c.tokens.key_encryption_key_file = missing.clone();
    c.audit.key_file = missing.clone();
    c.audit.checkpoint_key_file = missing.clone();
    for err in [
        c.token_kek().unwrap_err().to_string(),
        c.audit_key().unwrap_err().to_string(),
        c.audit_checkpoint_key().unwrap_err().to_string(),
    ] {
        assert!(err.contains("does not exist") && err.contains("not-mounted"), "{err}");
    }
    assert!(!missing.exists() && !data.exists(), "nothing was created");
    // The same keys as values or in private files work.
    let key = "c2VjcmV0LWF1ZGl0LWtleS1mb3ItdGhlLXRlc3RzISE=";
    c.tokens.key_encryption_key_file = secret_file(dir.path(), "kek", &format!("{key}\n"), 0o600);
    c.audit.key_file = secret_file(dir.path(), "audit", &format!("{key}\n"), 0o400);
    c.token_kek().unwrap();
    c.audit_key().unwrap();
    // Left empty, the keys are made in the data directory (one instance).
    let c = Config { data_dir: data.clone(), ..Config::default() };
    c.token_kek().unwrap();
    assert!(data.join("token-kek").exists());
}

#[test]
fn private_files_allow_owner_only_or_root_with_group_read_for_our_group() {
    use crate::audit_checkpoint::{ProcessIds, private_mode_allowed};
    // The gateway in a pod: uid 65532, gid 65532, fsGroup 65532 among its groups.
    let pod = ProcessIds { uid: 65532, gid: 65532, groups: vec![65532] };
    let supplementary = ProcessIds { uid: 65532, gid: 65532, groups: vec![2000] };
    let root = ProcessIds { uid: 0, gid: 0, groups: vec![0, 100] };
    for (mode, owner, group, me, allowed) in [
        (0o600, 65532, 65532, Some(&pod), true),
        (0o400, 65532, 65532, Some(&pod), true),
        (0o600, 0, 0, Some(&root), true),
        (0o600, 1000, 1000, None, true),
        // Kubernetes: a secret volume with fsGroup is root's, group-readable for the pod's group.
        (0o440, 0, 65532, Some(&pod), true),
        (0o640, 0, 65532, Some(&pod), true),
        (0o440, 0, 2000, Some(&supplementary), true),
        // ...but not for a group the process is not in, nor for a process running as root (the
        // group then only widens who else reads it), nor when the ids are unknown.
        (0o440, 0, 100, Some(&pod), false),
        (0o640, 0, 100, Some(&root), false),
        (0o440, 0, 65532, None, false),
        (0o440, 65532, 65532, Some(&pod), false),
        (0o640, 1000, 65532, Some(&pod), false),
        (0o660, 0, 65532, Some(&pod), false),
        (0o650, 0, 65532, Some(&pod), false),
        (0o444, 0, 65532, Some(&pod), false),
        (0o604, 0, 65532, Some(&pod), false),
        (0o644, 65532, 65532, Some(&pod), false),
        (0o777, 0, 65532, Some(&pod), false),
    ] {
        assert_eq!(private_mode_allowed(mode, owner, group, me), allowed, "mode {mode:o} owner {owner} group {group} {me:?}");
    }
}

#[test]
fn process_ids_are_parsed_from_proc_status() {
    use crate::audit_checkpoint::ProcessIds;
    let status = "Name:\tgateway\nUmask:\t0022\nUid:\t1000\t65532\t65532\t65532\nGid:\t1001\t65533\t65533\t65533\nFDSize:\t64\nGroups:\t65533 2000 \nNStgid:\t1\n";
    assert_eq!(ProcessIds::parse_status(status), Some(ProcessIds { uid: 65532, gid: 65533, groups: vec![65533, 2000] }));
    let no_groups = status.replace("Groups:\t65533 2000 ", "Groups:\t");
    assert_eq!(ProcessIds::parse_status(&no_groups).map(|p| p.groups), Some(vec![]));
    for broken in [
        status.replace("Uid:\t1000\t65532\t65532\t65532\n", ""),
        status.replace("\t65533\t65533\t65533", "\t65533"),
        status.replace("2000", "x"),
        status.replace("Groups:", "Grps:"),
    ] {
        assert_eq!(ProcessIds::parse_status(&broken), None, "{broken:?}");
    }
    // This process: its own ids, as the kernel reports them.
    let me = ProcessIds::current().expect("/proc/self/status on Linux");
    let meta = std::fs::metadata("/proc/self").unwrap();
    assert_eq!(me.uid, std::os::unix::fs::MetadataExt::uid(&meta));
}

#[test]
fn password_hash_concurrency_is_configured_or_follows_the_cpus() {
    let c = Config::default();
    assert_eq!(c.login.password_hash_concurrency, 0);
    assert_eq!(c.password_hash_concurrency(), crate::password::auto_concurrency());
    let c = Config::from_toml("[login]\npassword_hash_concurrency = 3\n").unwrap();
    assert_eq!(c.password_hash_concurrency(), 3);
    let err = Config::from_toml("[login]\npassword_hash_concurrency = 257\n").unwrap_err().to_string();
    assert!(err.contains("password_hash_concurrency") && err.contains("256"), "{err}");
    assert!(Config::from_toml("[login]\npassword_hash_concurrency = -1\n").is_err());
}

/// Two real minisign public keys (made with `ninsho-release keygen`).
const RELEASE_KEY_A: &str = "RWTxOueCbXZ0WWnrTKrsUXmpePiamc7bD5fn0TKavIeO+a61SUqQDko4";

#[test]
#[allow(clippy::result_large_err, reason = "figment::Jail's closure returns figment's own error type")]
fn agent_release_keys_are_checked_and_come_from_the_environment() {
    let c = Config::default();
    assert!(c.agent_releases.public_keys.is_empty());
    assert_eq!(c.agent_releases.max_binary_bytes, 64 * 1024 * 1024);
    assert!(c.agent_releases.keys().is_err(), "no key, no publication");
    let c = Config::from_toml(&format!("[agent_releases]\npublic_keys = [\"{RELEASE_KEY_A}\"]\n")).unwrap();
    assert_eq!(c.agent_releases.keys().unwrap()[0].to_base64(), RELEASE_KEY_A);
    for (toml, expect) in [
        ("public_keys = [\"RWSnot-a-key\"]", "public_keys"),
        (&*format!("public_keys = [\"{RELEASE_KEY_A}\", \"{RELEASE_KEY_A}\"]"), "same key id"),
        (&*format!("public_keys = [\"{RELEASE_KEY_A}\"]\nmax_binary_bytes = 1000"), "max_binary_bytes"),
        ("max_binary_bytes = 1073741824", "max_binary_bytes"),
    ] {
        let err = Config::from_toml(&format!("[agent_releases]\n{toml}\n")).unwrap_err();
        assert!(err.to_string().contains(expect), "{toml}: {err}");
    }
    figment::Jail::expect_with(|jail| {
        jail.set_env("GATEWAY_DATA_DIR", jail.directory().display().to_string());
        jail.set_env("GATEWAY_AGENT_RELEASES__PUBLIC_KEYS", format!("[\"{RELEASE_KEY_A}\"]"));
        jail.set_env("GATEWAY_AGENT_RELEASES__MAX_BINARY_BYTES", "2097152");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(c.agent_releases.public_keys, [RELEASE_KEY_A]);
        assert_eq!(c.agent_releases.max_binary_bytes, 2 * 1024 * 1024);
        Ok(())
    });
}
