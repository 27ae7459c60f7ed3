#![allow(clippy::result_large_err, reason = "figment::Jail's closures return figment::Error")]

use super::*;

#[test]
fn example_file_is_the_defaults() {
    let example = Config::from_toml(EXAMPLE).expect("example parses");
    assert_eq!(example, Config::default());
}

#[test]
fn every_key_of_the_defaults_is_in_the_example() {
    // Serialise the defaults and check each dotted key appears in the example under its section.
    let defaults = toml_keys(&serde_json::to_value(Config::default()).unwrap(), "");
    assert!(defaults.len() > 40, "{defaults:?}");
    for key in &defaults {
        let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
        let header = format!("[{section}]");
        let text = if section.is_empty() { EXAMPLE.split("\n[").next().unwrap() } else {
            let start = EXAMPLE.find(&format!("\n{header}\n")).unwrap_or_else(|| panic!("no section {header}"));
            EXAMPLE[start + header.len() + 2..].split("\n[").next().unwrap()
        };
        assert!(text.lines().any(|l| l.starts_with(&format!("{leaf} = "))), "{key} is not documented in the example");
    }
}

fn toml_keys(v: &serde_json::Value, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                serde_json::Value::Object(_) => out.extend(toml_keys(v, &key)),
                _ => out.push(key),
            }
        }
    }
    out.sort();
    out
}

#[test]
fn environment_overrides_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("signer.toml", "[gateway]\nurl = \"https://file.example/\"\n[csc]\nmax_hashes = 8\n")?;
        jail.set_env("NINSHO_SIGNER_GATEWAY__URL", "https://env.example:9443/");
        jail.set_env("NINSHO_SIGNER_KEYS__RSA_BITS", "3072");
        let c = Config::load(Some(Path::new("signer.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(c.gateway.url.as_str(), "https://env.example:9443/");
        assert_eq!(c.issuer(), "https://env.example:9443");
        assert_eq!(c.jwks_url().unwrap().as_str(), "https://env.example:9443/.well-known/jwks.json");
        assert_eq!(c.consume_url().unwrap().as_str(), "https://env.example:9443/api/v1/signing-tokens/consume");
        assert_eq!((c.csc.max_hashes, c.keys.rsa_bits), (8, 3072));
        Ok(())
    });
}

#[test]
fn a_missing_file_and_unknown_keys_are_errors() {
    assert!(Config::load(Some(Path::new("/nonexistent/signer.toml"))).unwrap_err().to_string().contains("not found"));
    let err = Config::from_toml("[csc]\naudiences = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("audiences"), "{err}");
    figment::Jail::expect_with(|jail| {
        jail.set_env("NINSHO_SIGNER_CSC__MAX_HASHES", "many");
        assert!(Config::load(None).is_err());
        Ok(())
    });
}

#[test]
fn bad_values_are_refused_with_their_key() {
    let cases = [
        ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
        ("[server]\nmax_connections = 1\nmax_connections_per_ip = 2\n", "max_connections"),
        ("[server]\nidle_timeout_secs = 0\n", "timeouts"),
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        ("[database]\nurl = \"sqlite://a.db\"\nurl_file = \"/run/url\"\n", "exclusive"),
        ("[database]\nmax_connections = 0\n", "database.max_connections"),
        ("[gateway]\nurl = \"http://gw.example/\"\n", "https"),
        ("[tsa]\nurl = \"ftp://tsa.example/\"\nanchor_files = [\"/a.pem\"]\n", "tsa.url"),
        ("[tsa]\nurl = \"http://tsa.example/\"\n", "tsa.anchor_files"),
        ("[tsa]\ntimeout_ms = 0\n", "tsa.timeout_ms"),
        ("[gateway]\njwks_url = \"http://gw.example/jwks\"\n", "jwks_url"),
        ("[gateway]\ntimeout_ms = 0\n", "timeout_ms"),
        ("[csc]\naudience = \"\"\n", "csc.audience"),
        ("[csc]\nmax_hashes = 0\n", "csc.max_hashes"),
        ("[keys]\nrsa_bits = 1024\n", "keys.rsa_bits"),
        ("[keys]\nkey_encryption_key = \"x\"\nkey_encryption_key_file = \"/k\"\n", "exclusive"),
        ("[keys]\nbackend = \"pkcs11\"\n", "keys.pkcs11"),
        ("[keys]\nbackend = \"tpm\"\n", "backend"),
        ("[ca]\ncert_file = \"ca.pem\"\n", "ca.cert_file"),
        ("[ca]\nvalidity_years = 0\n", "ca.validity_years"),
        ("[audit]\nkey = \"x\"\nkey_file = \"/k\"\n", "exclusive"),
    ];
    for (toml, needle) in cases {
        let err = Config::from_toml(toml).expect_err(toml).to_string();
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn database_url_defaults_to_sqlite_in_the_data_dir() {
    let c = Config::from_toml("data_dir = \"/var/lib/signer\"\n").unwrap();
    assert_eq!(c.database_url().unwrap(), "sqlite:///var/lib/signer/signer.db");
}

#[test]
fn a_database_url_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url");
    std::fs::write(&file, "postgres://signer:secret@db/signer\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = Config::from_toml(&format!("[database]\nurl_file = \"{}\"\n", file.display())).unwrap();
    assert!(c.database_url().unwrap_err().to_string().contains("readable by other users"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(c.database_url().unwrap(), "postgres://signer:secret@db/signer");
}
