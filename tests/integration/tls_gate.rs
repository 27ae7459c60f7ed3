//! The clinic gate (docs/design.md §3.1): who gets a TLS connection, and who gets a page.

use devpki::{CrlSpec, KeyAlg, LeafSpec, LeafUsage};
use gateway::admin::Admin;
use gateway::store::AnchorKind;

use crate::helpers::{CLINIC, Db, TestApp, db_tests};

/// A request whose TLS handshake the server refuses. With TLS 1.3 the client learns of the
/// refusal on its first read, so the request itself fails.
async fn refused(app: &TestApp, identity: Option<&devpki::Leaf>) -> reqwest::Error {
    app.client(identity).get(app.url("/login")).send().await.expect_err("the handshake must fail")
}

async fn no_certificate_fails_the_handshake(db: Db) {
    let app = TestApp::spawn(db).await;
    refused(&app, None).await;
    assert!(app.metrics().await.contains(r#"ninsho_tls_handshake_failures_total{reason="no_certificate"} 1"#));
    app.stop().await;
}

async fn unknown_ca_fails_the_handshake(db: Db) {
    let app = TestApp::spawn(db).await;
    let rogue = app.pki.rogue_client.clone();
    refused(&app, Some(&rogue)).await;
    assert!(app.metrics().await.contains(r#"reason="unknown_ca"} 1"#), "{}", app.metrics().await);
    app.stop().await;
}

/// Failed handshakes come before any authentication, so they are audited in aggregate: per
/// window one row per reason and source with its count, never a row per handshake.
async fn failed_handshakes_are_audited_in_aggregate(db: Db) {
    let app = TestApp::spawn(db).await;
    let rogue = app.pki.rogue_client.clone();
    refused(&app, None).await;
    refused(&app, None).await;
    refused(&app, Some(&rogue)).await;
    // The client can see the refusal a moment before the server has counted it.
    for _ in 0..200 {
        let m = app.metrics().await;
        if m.contains(r#"reason="no_certificate"} 2"#) && m.contains(r#"reason="unknown_ca"} 1"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rows = |app: &TestApp| {
        let store = app.store().clone();
        async move {
            let mut tail = store.audit_tail(100).await.unwrap();
            tail.reverse();
            tail.into_iter().filter(|r| r.event == "tls_handshake_failed").map(|r| r.detail).collect::<Vec<_>>()
        }
    };
    assert!(rows(&app).await.is_empty(), "nothing is written per handshake");
    let started = app.clock_now();
    app.clock.advance(time::Duration::minutes(1));
    app.state.audit_handshake_failures().await.unwrap();
    let written: Vec<_> = rows(&app)
        .await
        .into_iter()
        .map(|d| {
            assert_eq!((d["since"].as_i64(), d["until"].as_i64()), (Some(started), Some(started + 60)), "{d}");
            (d["reason"].as_str().unwrap().to_owned(), d["source"].as_str().unwrap().to_owned(), d["count"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(written, [("no_certificate".into(), "127.0.0.1".into(), 2), ("unknown_ca".into(), "127.0.0.1".into(), 1)]);
    // A quiet window writes nothing.
    app.state.audit_handshake_failures().await.unwrap();
    assert_eq!(rows(&app).await.len(), 2);
    assert!(matches!(app.store().audit_verify().await.unwrap(), gateway::store::AuditVerification::Intact { .. }));
    app.stop().await;
}

async fn expired_certificate_fails_the_handshake(db: Db) {
    let app = TestApp::spawn(db).await;
    let expired = app.pki.expired_client.clone();
    refused(&app, Some(&expired)).await;
    assert!(app.metrics().await.contains(r#"reason="expired"} 1"#), "{}", app.metrics().await);
    app.stop().await;
}

async fn certificate_on_the_crl_fails_the_handshake(db: Db) {
    // The service anchor has revocation policy none: it must not relax the clinic anchor's CRL.
    let app = TestApp::spawn(db).await;
    let revoked = app.pki.revoked_client.clone();
    refused(&app, Some(&revoked)).await;
    assert!(app.metrics().await.contains(r#"reason="revoked"} 1"#), "{}", app.metrics().await);
    app.stop().await;
}

async fn expiry_follows_the_gateway_clock(db: Db) {
    // The clinic certificate is valid for 30 days: 31 days later the same client is refused.
    let app = TestApp::spawn(db).await;
    let client = app.clinic_client();
    assert_eq!(client.get(app.url("/login")).send().await.unwrap().status(), 200);
    app.clock.advance(time::Duration::days(31));
    refused(&app, Some(&app.pki.clinic_client.clone())).await;
    app.stop().await;
}

async fn unregistered_certificate_gets_a_refusal_page(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = app.client(Some(&app.pki.unregistered_client));
    let res = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let body = res.text().await.unwrap();
    assert!(body.contains("クライアント証明書は登録されていません"), "{body}");
    assert!(!body.contains("name=\"password\""), "no login form for an unregistered device");

    let res = client.get(app.url("/login?lang=en")).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("client certificate is not registered"));

    // The refusal page keeps the product's layout: its stylesheet (fixed, the same for everyone)
    // is served before the gate, and nothing else is.
    let audit_before = app.store().audit_tail(1).await.unwrap()[0].seq;
    let css = client.get(app.url("/assets/app.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.text().await.unwrap().contains("--accent"));
    assert_eq!(client.get(app.url("/assets/other.css")).send().await.unwrap().status(), 403);
    assert_eq!(client.get(app.url("/methods")).send().await.unwrap().status(), 403);
    assert_eq!(app.store().audit_tail(1).await.unwrap()[0].seq, audit_before + 2, "the asset was no gate refusal");

    let audit = app.store().audit_tail(1).await.unwrap();
    assert_eq!(audit[0].event, "clinic_gate");
    assert_eq!(audit[0].detail["reason"], "not_registered");
    app.stop().await;
}

async fn disabled_clinic_gets_a_refusal_page(db: Db) {
    let app = TestApp::spawn(db).await;
    let res = app.client(Some(&app.pki.disabled_clinic_client)).get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("この医療機関は現在ゲートウェイを利用できません"));
    app.stop().await;
}

async fn operator_revoked_certificate_gets_a_refusal_page(db: Db) {
    let app = TestApp::spawn(db).await;
    let fp = gateway::tls::fingerprint(&app.pki.clinic_client.cert_der);
    let admin = gateway::admin::Admin { store: app.store(), now: app.clock_now() };
    admin.clinic_cert_revoke(&fp).await.unwrap();
    let res = app.clinic_client().get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("無効化されています"));
    app.stop().await;
}

async fn registered_certificate_reaches_the_login_page(db: Db) {
    let app = TestApp::spawn(db).await;
    let res = app.clinic_client().get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    assert!(res.headers().contains_key("x-request-id"));
    let body = res.text().await.unwrap();
    assert!(body.contains("テスト内科クリニック"), "the page names the certificate's clinic");
    assert!(body.contains("ログインID") && body.contains("パスワード"));
    app.stop().await;
}

/// A raw TLS connection as the clinic device, with a client that would resume a session if the
/// server let it; answers how the handshake went.
async fn raw_handshake(app: &TestApp, config: &std::sync::Arc<rustls::ClientConfig>) -> rustls::HandshakeKind {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.unwrap();
    // A whole request and answer, so any session ticket the server sends has arrived.
    tls.write_all(b"GET /login HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    tls.get_ref().1.handshake_kind().unwrap()
}

async fn every_connection_is_verified_in_full(db: Db) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let app = TestApp::spawn(db).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(app.pki.server_ca.cert_der().to_vec())).unwrap();
    let leaf = &app.pki.clinic_client;
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(leaf.cert_der.clone())], key)
        .unwrap();
    let config = std::sync::Arc::new(config);
    assert_eq!(raw_handshake(&app, &config).await, rustls::HandshakeKind::Full);
    let second = raw_handshake(&app, &config).await;
    assert_eq!(second, rustls::HandshakeKind::Full, "no session is resumed past the certificate check");
    app.stop().await;
}

async fn ops_listener_answers_health_and_readiness(db: Db) {
    let app = TestApp::spawn(db).await;
    let base = format!("http://127.0.0.1:{}", app.ops_port);
    assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), 200);
    app.clinic_client().get(app.url("/login")).send().await.unwrap();
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"ninsho_http_requests_total{route="/login",status="200"} 1"#), "{metrics}");
    app.stop().await;
}

/// The clinic CA's certificate as the anchor row stands in the store.
async fn clinic_anchor(app: &TestApp) -> gateway::store::TrustAnchor {
    app.store().list_anchors(Some(AnchorKind::Clinic)).await.unwrap().remove(0)
}

/// Polls (bounded) until a client's first request gives `want` (a status, or `None` for a refused
/// handshake): the running instance re-reads its anchors every second in this test.
async fn eventually(app: &TestApp, identity: &devpki::Leaf, want: Option<u16>) {
    for _ in 0..100 {
        let got = app.client(Some(identity)).get(app.url("/login")).send().await.ok().map(|r| r.status().as_u16());
        if got == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the running gateway never answered {want:?}");
}

async fn anchor_and_crl_changes_reach_a_running_instance_and_bad_crls_change_nothing(db: Db) {
    let app = TestApp::builder(db).with_config(|c| c.tls.trust_refresh_secs = 1).spawn().await;
    let now = time::OffsetDateTime::from_unix_timestamp(app.clock_now()).unwrap();
    let pki = app.pki.clone();
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let fp = clinic_anchor(&app).await.fingerprint;
    let dir = tempfile::tempdir().unwrap();

    // A device under a sub-CA of the clinic CA that has no CRL: the anchor's policy is crl, so it
    // cannot be registered and cannot connect.
    let sub = pki.clinic_ca.intermediate("Test Clinic Sub CA", "", KeyAlg::EcP256, now).unwrap();
    let device = sub.issue(&LeafSpec::new("clinic-21234-b", LeafUsage::TlsClient, now, 30)).unwrap();
    let with_chain = devpki::Leaf { cert_pem: format!("{}{}", device.cert_pem, sub.cert_pem()), ..device.clone() };
    let file = dir.path().join("device.pem");
    std::fs::write(&file, &with_chain.cert_pem).unwrap();
    let err = admin.clinic_cert_add(CLINIC, &file, None).await.unwrap_err();
    assert!(format!("{err:#}").contains("revocation_unknown"), "{err:#}");
    refused(&app, Some(&with_chain)).await;
    assert!(app.metrics().await.contains(r#"reason="revocation_unknown"} 1"#), "{}", app.metrics().await);

    // Bad CRLs for the sub-CA: each refused, nothing stored.
    let sub_pem = sub.cert_pem().as_bytes().to_vec();
    let before = clinic_anchor(&app).await;
    let foreign = pki.service_ca.crl_with(&CrlSpec::new(now)).unwrap();
    let stale = sub.crl_with(&CrlSpec::new(now).window(now - time::Duration::days(8), now - time::Duration::days(1))).unwrap();
    for (crl, says) in [(&foreign, "issued by"), (&stale, "nextUpdate")] {
        let err = admin.anchor_set_crl(AnchorKind::Clinic, &fp, crl, Some(&sub_pem)).await.unwrap_err();
        assert!(format!("{err:#}").contains(says), "{err:#}");
    }
    // The clinic CA's own CRL slot refuses a foreign or stale CRL too.
    let own_stale = pki.clinic_ca.crl_with(&CrlSpec::new(now).window(now - time::Duration::days(8), now - time::Duration::days(1))).unwrap();
    for crl in [&foreign, &own_stale] {
        assert!(admin.anchor_set_crl(AnchorKind::Clinic, &fp, crl, None).await.is_err());
    }
    let after = clinic_anchor(&app).await;
    assert_eq!(after.crl_der, before.crl_der);
    assert!(after.sub_crls.is_empty());

    // A current CRL of the sub-CA: registration and connection now work, without a restart.
    let crl5 = sub.crl_with(&CrlSpec::new(now).number(5)).unwrap();
    admin.anchor_set_crl(AnchorKind::Clinic, &fp, &crl5, Some(&sub_pem)).await.unwrap();
    admin.clinic_cert_add(CLINIC, &file, None).await.unwrap();
    eventually(&app, &with_chain, Some(200)).await;
    // An older CRL (lower cRLNumber) is a rollback: refused, the newer one stays.
    let crl3 = sub.crl_with(&CrlSpec::new(now).number(3)).unwrap();
    let err = admin.anchor_set_crl(AnchorKind::Clinic, &fp, &crl3, Some(&sub_pem)).await.unwrap_err();
    assert!(format!("{err:#}").contains("older"), "{err:#}");
    assert_eq!(clinic_anchor(&app).await.sub_crls[0].crl_der, crl5);

    // The sub-CA revokes the device: the running instance refuses it within the refresh interval.
    let crl6 = sub.crl_with(&CrlSpec::new(now).number(6).revoke(&device.serial)).unwrap();
    admin.anchor_set_crl(AnchorKind::Clinic, &fp, &crl6, Some(&sub_pem)).await.unwrap();
    eventually(&app, &with_chain, None).await;
    // And the clinic's main device keeps working throughout.
    assert_eq!(app.clinic_client().get(app.url("/login")).send().await.unwrap().status(), 200);
    app.stop().await;
}

db_tests!(
    anchor_and_crl_changes_reach_a_running_instance_and_bad_crls_change_nothing,
    no_certificate_fails_the_handshake,
    unknown_ca_fails_the_handshake,
    failed_handshakes_are_audited_in_aggregate,
    expired_certificate_fails_the_handshake,
    certificate_on_the_crl_fails_the_handshake,
    expiry_follows_the_gateway_clock,
    unregistered_certificate_gets_a_refusal_page,
    disabled_clinic_gets_a_refusal_page,
    operator_revoked_certificate_gets_a_refusal_page,
    registered_certificate_reaches_the_login_page,
    ops_listener_answers_health_and_readiness,
    every_connection_is_verified_in_full,
);
