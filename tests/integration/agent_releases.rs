//! The clinic agent's self-update, gateway side (docs/design.md §3.14), on both databases: an
//! operator publishes a signed release with the real `gateway admin` CLI, an agent asks for the
//! newest release and downloads it over real mTLS with the clinic's certificate and checks it with
//! the `release` crate as the agent will; refused publications store nothing; withdrawn releases
//! disappear; only registered clinic certificates reach the routes; the agent list shows which
//! agent runs which version.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use release::sign::{self, NewKeyPair, Password};
use release::{Target, TrustedKeys, Version};
use serde_json::{Value, json};

use crate::admin_cli::audit_rows;
use crate::helpers::*;

const LINUX: &str = "x86_64-unknown-linux-gnu";
const WINDOWS: &str = "x86_64-pc-windows-msvc";
const AGENT_A: &str = "agent-aaaa-0001";
const AGENT_B: &str = "agent-bbbb-0002";

fn key() -> NewKeyPair {
    sign::generate(Password::None).unwrap()
}

/// A release of `binary`, signed with `pair`: (manifest bytes, signature text).
fn signed(pair: &NewKeyPair, version: &str, target: &str, binary: &[u8]) -> (Vec<u8>, String) {
    let m = sign::manifest_for(binary, version, target, "不具合を修正しました。", "Fixes bugs.").unwrap();
    sign::sign_manifest(&pair.secret_text, Password::None, &m).unwrap()
}

fn binary_of(version: &str) -> Vec<u8> {
    format!("\x7fELF the agent {version} ").repeat(100).into_bytes()
}

/// A gateway whose release keys are `keys`.
async fn app_with_keys(db: Db, keys: &[&NewKeyPair]) -> TestApp {
    let keys: Vec<String> = keys.iter().map(|k| k.public.to_base64().to_owned()).collect();
    TestApp::builder(db).with_config(move |c| c.agent_releases.public_keys = keys).spawn().await
}

/// Runs `gateway admin <args>` with the app's configuration (its release keys included).
pub(crate) async fn admin(app: &TestApp, args: &[&str]) -> (i32, String) {
    let config_path = app.dir.path().join("release-cli.toml");
    let c = &app.config;
    let keys: Vec<String> = c.agent_releases.public_keys.iter().map(|k| format!("{k:?}")).collect();
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\n[database]\nurl = {:?}\n[agent_releases]\npublic_keys = [{}]\nmax_binary_bytes = {}\n",
            c.data_dir.display().to_string(),
            c.database.url,
            keys.join(", "),
            c.agent_releases.max_binary_bytes
        ),
    )
    .unwrap();
    let mut argv = vec!["gateway".to_owned(), "--config".to_owned(), config_path.display().to_string(), "admin".to_owned()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = gateway::cli::run(argv, &mut out, &mut err, &mut std::io::Cursor::new(Vec::new())).await;
    (code, String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap())
}

/// Writes the three files and runs `admin agent-release publish`.
pub(crate) async fn publish(app: &TestApp, name: &str, manifest: &[u8], signature: &str, binary: &[u8]) -> (i32, String) {
    let dir = app.dir.path();
    let (m, s, b) = (dir.join(format!("{name}.json")), dir.join(format!("{name}.json.minisig")), dir.join(format!("{name}.bin")));
    std::fs::write(&m, manifest).unwrap();
    std::fs::write(&s, signature).unwrap();
    std::fs::write(&b, binary).unwrap();
    let paths = [m.display().to_string(), s.display().to_string(), b.display().to_string()];
    admin(app, &["agent-release", "publish", &paths[0], &paths[1], &paths[2]]).await
}

/// An agent's GET: status, headers, body bytes.
async fn agent_get(app: &TestApp, client: &reqwest::Client, id: &str, version: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let res = client
        .get(app.url(path))
        .header("x-ninsho-agent", id)
        .header("x-ninsho-agent-version", version)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

async fn latest(app: &TestApp, client: &reqwest::Client, target: &str, current: &str) -> (u16, Value) {
    let (s, _, body) = agent_get(app, client, AGENT_A, current, &format!("/agent/v1/releases/latest?target={target}&current={current}")).await;
    (s, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn events(app: &TestApp) -> Vec<(String, String, Value)> {
    app.store().audit_tail(500).await.unwrap().into_iter().map(|r| (r.event, r.outcome, r.detail)).collect()
}

async fn a_release_is_published_offered_downloaded_and_checked(db: Db) {
    let (old_key, new_key) = (key(), key());
    let app = app_with_keys(db, &[&old_key, &new_key]).await;
    let binary = binary_of("1.2.0");
    let (manifest, signature) = signed(&new_key, "1.2.0", LINUX, &binary);
    let (code, out) = publish(&app, "r120", &manifest, &signature, &binary).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("published 1.2.0 for x86_64-unknown-linux-gnu"), "{out}");
    assert!(out.contains(&new_key.public.key_id().to_string()), "{out}");
    let (code, out) = admin(&app, &["agent-release", "list"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("1.2.0\tx86_64-unknown-linux-gnu\tlive\t"), "{out}");

    // The agent (1.1.0, trusting the old key in its first slot and the new one in its second)
    // asks, verifies as the updater will, downloads and checks the binary.
    let clinic = app.clinic_client();
    let (s, offer) = latest(&app, &clinic, LINUX, "1.1.0").await;
    assert_eq!(s, 200, "{offer}");
    assert_eq!(offer["version"], "1.2.0");
    assert_eq!(offer["binary"], "/agent/v1/releases/1.2.0/x86_64-unknown-linux-gnu/binary");
    let manifest_bytes = STANDARD.decode(offer["manifest"].as_str().unwrap()).unwrap();
    assert_eq!(manifest_bytes, manifest, "the exact signed bytes");
    let slots = TrustedKeys::from_slots(old_key.public.to_base64(), new_key.public.to_base64()).unwrap();
    let target: Target = LINUX.parse().unwrap();
    let m = release::verify_update(&manifest_bytes, offer["signature"].as_str().unwrap(), &slots, &target, &Version::new(1, 1, 0))
        .unwrap();
    let (s, headers, bytes) = agent_get(&app, &clinic, AGENT_A, "1.1.0", offer["binary"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(headers["content-length"].to_str().unwrap(), binary.len().to_string());
    assert_eq!(headers["content-type"], "application/octet-stream");
    release::check_binary(&m, &bytes).unwrap();

    // Nothing newer: the same version, a newer one, another target.
    for (target, current) in [(LINUX, "1.2.0"), (LINUX, "1.10.0"), (WINDOWS, "0.1.0")] {
        let (s, body) = latest(&app, &clinic, target, current).await;
        assert_eq!(s, 204, "{target} {current}: {body}");
    }
    // A development build of the same version is offered the release.
    assert_eq!(latest(&app, &clinic, LINUX, "1.2.0-dev").await.0, 200);
    // Bad queries.
    for (target, current) in [("../etc", "1.0.0"), (LINUX, "one"), (LINUX, "")] {
        let (s, e) = latest(&app, &clinic, target, current).await;
        assert_eq!((s, e["error"].as_str()), (400, Some("bad_request")), "{target} {current}: {e}");
    }
    let (s, _, body) = agent_get(&app, &clinic, AGENT_A, "1.1.0", &format!("/agent/v1/releases/latest?target={LINUX}")).await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    // Unknown releases and names that cannot be one.
    for path in ["/agent/v1/releases/1.3.0/x86_64-unknown-linux-gnu/binary", "/agent/v1/releases/1.2.0/x86_64-pc-windows-msvc/binary", "/agent/v1/releases/..%2F/x/binary"] {
        let (s, _, body) = agent_get(&app, &clinic, AGENT_A, "1.1.0", path).await;
        let e: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!((s, e["error"].as_str()), (404, Some("release_not_found")), "{path}: {e}");
    }

    // Published and downloaded are audited (ids, versions, hashes; never the bytes).
    let events = events(&app).await;
    let published = events.iter().find(|(e, _, _)| e == "agent_release_published").expect("published is audited");
    assert_eq!(published.2["version"], "1.2.0");
    assert_eq!(published.2["key_id"], new_key.public.key_id().to_string());
    let downloaded = events.iter().find(|(e, _, _)| e == "agent_release_downloaded").expect("download is audited");
    assert_eq!((downloaded.2["agent_id"].as_str(), downloaded.2["version"].as_str()), (Some(AGENT_A), Some("1.2.0")));
    assert_eq!(events.iter().filter(|(e, _, _)| e == "agent_release_downloaded").count(), 1, "a refused download is no download");
    assert!(matches!(app.store().audit_verify().await.unwrap(), gateway::store::AuditVerification::Intact { .. }));
    app.stop().await;
}

async fn refused_publications_store_nothing(db: Db) {
    let (trusted, stranger) = (key(), key());
    let app = TestApp::builder(db)
        .with_config({
            let k = trusted.public.to_base64().to_owned();
            move |c| {
                c.agent_releases.public_keys = vec![k];
                c.agent_releases.max_binary_bytes = 1024 * 1024;
            }
        })
        .spawn()
        .await;
    let binary = binary_of("2.0.0");
    let (manifest, signature) = signed(&trusted, "2.0.0", LINUX, &binary);
    let tampered = String::from_utf8(manifest.clone()).unwrap().replace("Fixes bugs.", "Fixes bugs!!").into_bytes();
    let (foreign_manifest, foreign_signature) = signed(&stranger, "2.0.0", LINUX, &binary);
    let mut other_bytes = binary.clone();
    other_bytes[10] ^= 1;
    let big = vec![7u8; 1024 * 1024 + 1];
    let (big_manifest, big_signature) = signed(&trusted, "2.0.0", LINUX, &big);
    let audit_before = audit_rows(&app).await;

    // (name, manifest, signature, binary, what the refusal says)
    type Case<'a> = (&'a str, Vec<u8>, String, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        ("tampered", tampered, signature.clone(), binary.clone(), "does not match the manifest"),
        ("stranger", foreign_manifest, foreign_signature, binary.clone(), "not a trusted release key"),
        ("hash", manifest.clone(), signature.clone(), other_bytes, "SHA-256"),
        ("size", manifest.clone(), signature.clone(), binary[1..].to_vec(), "manifest says"),
        ("big", big_manifest, big_signature, big, "max_binary_bytes"),
        ("garbled", manifest.clone(), "untrusted comment: x\nnot a signature\n".to_owned(), binary.clone(), "signature is malformed"),
        ("swapped", signature.clone().into_bytes(), String::from_utf8(manifest.clone()).unwrap(), binary.clone(), "malformed"),
    ];
    for (name, m, s, b, expect) in &cases {
        let (code, out) = publish(&app, name, m, s, b).await;
        assert_ne!(code, 0, "{name} should be refused: {out}");
        assert!(out.contains(expect) && out.contains("nothing was published"), "{name}: expected {expect:?} in {out}");
    }
    assert!(app.store().list_agent_releases().await.unwrap().is_empty(), "nothing stored");
    assert_eq!(audit_rows(&app).await, audit_before, "nothing audited");
    let (s, _) = latest(&app, &app.clinic_client(), LINUX, "0.1.0").await;
    assert_eq!(s, 204);

    // The good one goes in once; the same version again, even with the same bytes, does not.
    let (code, out) = publish(&app, "good", &manifest, &signature, &binary).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = publish(&app, "again", &manifest, &signature, &binary).await;
    assert_ne!(code, 0);
    assert!(out.contains("published before"), "{out}");
    assert_eq!(app.store().list_agent_releases().await.unwrap().len(), 1);
    app.stop().await;

    // A gateway without release keys publishes nothing.
    let app = TestApp::spawn(db).await;
    let (code, out) = publish(&app, "nokeys", &manifest, &signature, &binary).await;
    assert_ne!(code, 0);
    assert!(out.contains("agent_releases.public_keys") && out.contains("nothing was published"), "{out}");
    assert!(app.store().list_agent_releases().await.unwrap().is_empty());
    app.stop().await;
}

async fn a_withdrawn_release_is_no_longer_offered(db: Db) {
    let k = key();
    let app = app_with_keys(db, &[&k]).await;
    for v in ["1.0.0", "1.1.0"] {
        let b = binary_of(v);
        let (m, s) = signed(&k, v, LINUX, &b);
        let (code, out) = publish(&app, v, &m, &s, &b).await;
        assert_eq!(code, 0, "{out}");
    }
    let b = binary_of("1.1.0");
    let (m, s) = signed(&k, "1.1.0", WINDOWS, &b);
    assert_eq!(publish(&app, "1.1.0-win", &m, &s, &b).await.0, 0);
    let clinic = app.clinic_client();
    assert_eq!(latest(&app, &clinic, LINUX, "0.9.0").await.1["version"], "1.1.0");

    let (code, out) = admin(&app, &["agent-release", "withdraw", "1.1.0", "--target", LINUX]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("withdrew 1.1.0 for x86_64-unknown-linux-gnu"), "{out}");
    assert_eq!(latest(&app, &clinic, LINUX, "0.9.0").await.1["version"], "1.0.0", "the next newest is offered");
    assert_eq!(latest(&app, &clinic, LINUX, "1.0.0").await.0, 204);
    assert_eq!(latest(&app, &clinic, WINDOWS, "0.9.0").await.1["version"], "1.1.0", "the other target keeps it");
    let (s, _, _) = agent_get(&app, &clinic, AGENT_A, "1.0.0", "/agent/v1/releases/1.1.0/x86_64-unknown-linux-gnu/binary").await;
    assert_eq!(s, 404);
    let (code, out) = admin(&app, &["agent-release", "list"]).await;
    assert!(out.contains("1.1.0\tx86_64-unknown-linux-gnu\twithdrawn"), "{code}: {out}");

    // Refused withdrawals say why; the version stays taken.
    for (args, expect) in [
        (vec!["agent-release", "withdraw", "1.1.0", "--target", LINUX], "no live release 1.1.0"),
        (vec!["agent-release", "withdraw", "9.9.9"], "no live release 9.9.9"),
        (vec!["agent-release", "withdraw", "v1"], "MAJOR.MINOR.PATCH"),
        (vec!["agent-release", "withdraw", "1.0.0", "--target", "x"], "target"),
    ] {
        let (code, out) = admin(&app, &args).await;
        assert_ne!(code, 0, "{args:?}");
        assert!(out.contains(expect) && out.contains("nothing was withdrawn"), "{args:?}: {out}");
    }
    let b = binary_of("1.1.0");
    let (m, s) = signed(&k, "1.1.0", LINUX, &b);
    let (code, out) = publish(&app, "1.1.0-again", &m, &s, &b).await;
    assert_ne!(code, 0);
    assert!(out.contains("published before"), "{out}");
    // Without --target every target of the version goes.
    assert_eq!(admin(&app, &["agent-release", "withdraw", "1.1.0"]).await.0, 0);
    assert_eq!(latest(&app, &clinic, WINDOWS, "0.9.0").await.0, 204);
    let withdrawn = events(&app).await.into_iter().filter(|(e, _, _)| e == "agent_release_withdrawn").count();
    assert_eq!(withdrawn, 2);
    app.stop().await;
}

async fn only_registered_clinic_certificates_reach_releases(db: Db) {
    let k = key();
    let app = app_with_keys(db, &[&k]).await;
    let b = binary_of("1.0.0");
    let (m, s) = signed(&k, "1.0.0", LINUX, &b);
    assert_eq!(publish(&app, "r", &m, &s, &b).await.0, 0);
    let binary_path = "/agent/v1/releases/1.0.0/x86_64-unknown-linux-gnu/binary";
    // A valid certificate of the clinic CA that no clinic registered, and an EMR's service
    // certificate: refused by the clinic gate.
    for (leaf, code) in [(&app.pki.unregistered_client, "cert_not_registered"), (&app.pki.emr_a, "cert_not_registered")] {
        let client = app.client(Some(leaf));
        for path in [binary_path, "/agent/v1/releases/latest?target=x86_64-unknown-linux-gnu&current=0.1.0"] {
            let (s, _, body) = agent_get(&app, &client, AGENT_A, "0.1.0", path).await;
            let e: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!((s, e["error"].as_str()), (403, Some(code)), "{path}: {e}");
        }
    }
    // A certificate of a foreign CA, a revoked one (the CRL), or none: no handshake.
    for client in [app.client(Some(&app.pki.rogue_client)), app.client(Some(&app.pki.revoked_client)), app.client(None)] {
        assert!(client.get(app.url(binary_path)).header("x-ninsho-agent", AGENT_A).send().await.is_err());
    }
    // The clinic's certificate without an agent id is refused too.
    let res = app.clinic_client().get(app.url(binary_path)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let downloads = events(&app).await.into_iter().filter(|(e, _, _)| e == "agent_release_downloaded").count();
    assert_eq!(downloads, 0, "nobody downloaded");
    assert!(app.store().list_agents().await.unwrap().is_empty(), "no agent recorded");
    app.stop().await;
}

async fn the_agent_list_shows_versions_and_update_reports(db: Db) {
    let k = key();
    let app = app_with_keys(db, &[&k]).await;
    let clinic = app.clinic_client();
    // Agent A heartbeats (it relays OQS files); agent B only asks for releases and reports.
    let res = clinic
        .post(app.url("/agent/v1/heartbeat"))
        .header("x-ninsho-agent", AGENT_A)
        .header("x-ninsho-agent-version", "1.0.0")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let (s, _, _) = agent_get(&app, &clinic, AGENT_B, "0.9.0", "/agent/v1/releases/latest?target=x86_64-unknown-linux-gnu&current=0.9.0").await;
    assert_eq!(s, 204);
    let report = |body: Value| {
        let (clinic, url) = (clinic.clone(), app.url("/agent/v1/update-report"));
        async move {
            let res = clinic
                .post(url)
                .header("x-ninsho-agent", AGENT_B)
                .header("x-ninsho-agent-version", "0.9.0")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, e) = report(json!({ "step": "swap", "version": "1.2.0", "outcome": "failure", "detail": "the disk is full" })).await;
    assert_eq!(s, 204, "{e}");
    for bad in [
        json!({ "step": "explode", "version": "1.2.0", "outcome": "failure" }),
        json!({ "step": "swap", "version": "1.2", "outcome": "failure" }),
        json!({ "step": "swap", "version": "1.2.0", "outcome": "meh" }),
        json!({ "step": "swap", "version": "1.2.0", "outcome": "failure", "detail": "line\nbreak" }),
        json!({ "step": "swap", "version": "1.2.0", "outcome": "failure", "detail": "x".repeat(501) }),
        json!({ "step": "swap", "version": "1.2.0", "outcome": "failure", "extra": 1 }),
    ] {
        let (s, e) = report(bad.clone()).await;
        assert_eq!((s, e["error"].as_str()), (400, Some("bad_request")), "{bad}: {e}");
    }

    let (code, out) = admin(&app, &["agent", "list"]).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with(&format!("{CLINIC}\t{AGENT_A}\t1.0.0\tlast seen ")), "{out}");
    assert!(lines[0].ends_with("no update reported"), "{out}");
    assert!(lines[1].starts_with(&format!("{CLINIC}\t{AGENT_B}\t0.9.0\tlast seen ")), "{out}");
    assert!(lines[1].contains("update 1.2.0 swap failure: the disk is full"), "{out}");

    // A new version reported on the next call shows at once.
    let res = clinic
        .post(app.url("/agent/v1/heartbeat"))
        .header("x-ninsho-agent", AGENT_A)
        .header("x-ninsho-agent-version", "1.2.0")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let agents = app.store().list_agents().await.unwrap();
    assert_eq!(agents.iter().find(|a| a.agent_id == AGENT_A).unwrap().version, "1.2.0");
    let reported: Vec<_> = events(&app).await.into_iter().filter(|(e, _, _)| e == "agent_update_reported").collect();
    assert_eq!(reported.len(), 1, "refused reports are not recorded");
    assert_eq!(reported[0].1, "failure");
    assert_eq!(reported[0].2["detail"], "the disk is full");
    assert_eq!(reported[0].2["running"], "0.9.0");
    app.stop().await;
}

db_tests!(
    a_release_is_published_offered_downloaded_and_checked,
    refused_publications_store_nothing,
    a_withdrawn_release_is_no_longer_offered,
    only_registered_clinic_certificates_reach_releases,
    the_agent_list_shows_versions_and_update_reports,
);
