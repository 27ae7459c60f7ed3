//! Card login (docs/design.md §3.3, §3.6, §3.7) through the real JSON endpoints, with the test acting as
//! the card agent: it builds the card client data with `card::ClientData`, signs it with the
//! card's key (RSASSA-PKCS1-v1_5 SHA-256, aws-lc-rs) and posts the agent's answer to the finish
//! endpoint. HPKI-like (root → intermediate → card, hcRole as on real cards) and JPKI-like
//! (CA → card, CRL) PKIs are generated once per test process with `devpki`.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::admin::Admin;
use gateway::clock::ManualClock;
use devpki::Leaf;
use devpki::cards::{CaOptions, CardSpec, CrlSpec, Hpki, Jpki, PHARMACIST, UNKNOWN_POLICY};
use gateway::store::{AnchorKind, AuthMethod, RevocationPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

/// The card PKIs and cards of this test process, shaped like real ones (`devpki::cards`: critical
/// certificatePolicies, hcRole, the MHLW/MEDIS and J-LIS name and extension layout).
struct Cards {
    now: OffsetDateTime,
    /// MHLW-like root (the anchor, revocation none) over the MEDIS-like authentication CA.
    hpki_pki: Hpki,
    /// J-LIS-like user-authentication CA (the anchor, with its CRL).
    jpki_pki: Jpki,
    jpki_crl: Vec<u8>,
    jpki_stale_crl: Vec<u8>,
    /// Medical Doctor, issued by the HPKI authentication CA.
    doctor: Leaf,
    /// Another Medical Doctor card (another doctor's, or an unlinked one).
    doctor2: Leaf,
    pharmacist: Leaf,
    no_role: Leaf,
    expired: Leaf,
    /// Medical Doctor, but issued by an HPKI hierarchy nobody registered.
    rogue: Leaf,
    /// The doctor's HPKI signing certificate (nonRepudiation, signing policy).
    hpki_signing: Leaf,
    /// A doctor's authentication certificate with a policy OID no anchor allows.
    hpki_unknown_policy: Leaf,
    jpki: Leaf,
    jpki2: Leaf,
    jpki_revoked: Leaf,
    /// A My Number card's signing certificate.
    jpki_signing: Leaf,
}

fn cards() -> &'static Cards {
    static CARDS: OnceLock<Cards> = OnceLock::new();
    CARDS.get_or_init(|| {
        let now = ManualClock::starting_now().now();
        let hpki_pki = Hpki::new(now).unwrap();
        let jpki_pki = Jpki::new(now).unwrap();
        let rogue_pki = Hpki::with(&CaOptions::new(now).label("Rogue")).unwrap();
        let doctor = CardSpec::new(now);
        let hpki = |spec: &CardSpec| hpki_pki.auth_cert(spec).unwrap();
        let jpki = || jpki_pki.auth_cert(&doctor).unwrap();
        let jpki_revoked = jpki();
        let jpki_ca = jpki_pki.auth_ca();
        Cards {
            doctor: hpki(&doctor),
            doctor2: hpki(&doctor.clone().holder("SATO HANAKO", "佐藤　花子")),
            pharmacist: hpki(&doctor.clone().role(Some(PHARMACIST))),
            no_role: hpki(&doctor.clone().role(None)),
            expired: hpki(&doctor.clone().validity(now - Duration::days(30), now - Duration::days(1))),
            rogue: rogue_pki.auth_cert(&doctor).unwrap(),
            hpki_signing: hpki_pki.sign_cert(&doctor).unwrap(),
            hpki_unknown_policy: hpki(&doctor.clone().policy(UNKNOWN_POLICY)),
            jpki: jpki(),
            jpki2: jpki(),
            jpki_signing: jpki_pki.sign_cert(&doctor).unwrap(),
            jpki_crl: jpki_ca.crl(&CrlSpec::new(now).revoke(&jpki_revoked.serial).window(now - Duration::hours(1), now + Duration::days(7))).unwrap(),
            jpki_stale_crl: jpki_ca.crl(&CrlSpec::new(now).window(now - Duration::days(10), now - Duration::days(1))).unwrap(),
            jpki_revoked,
            now,
            hpki_pki,
            jpki_pki,
        }
    })
}

/// A gateway with the HPKI root (revocation none) and the JPKI CA (with its CRL) as anchors.
async fn app(db: Db) -> TestApp {
    with_anchors(TestApp::spawn(db).await).await
}

async fn with_anchors(app: TestApp) -> TestApp {
    let c = cards();
    let admin = Admin { store: app.store(), now: app.clock_now() };
    admin.anchor_add(AnchorKind::Hpki, c.hpki_pki.root().cert_pem().as_bytes(), None, RevocationPolicy::None, None).await.unwrap();
    let jpki_ca = c.jpki_pki.auth_ca().cert_pem().as_bytes();
    admin.anchor_add(AnchorKind::Jpki, jpki_ca, Some(&c.jpki_crl), RevocationPolicy::Crl, None).await.unwrap();
    app
}

/// A signed-in doctor's browser.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> Browser<'a> {
    async fn doctor(app: &'a TestApp) -> Browser<'a> {
        let client = app.clinic_client();
        assert_eq!(app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 303);
        Browser { app, client }
    }

    async fn other_doctor(app: &'a TestApp) -> Browser<'a> {
        let client = app.client(Some(&app.pki.other_clinic_client));
        assert_eq!(app.login(&client, OTHER_DOCTOR_LOGIN, OTHER_DOCTOR_PASSWORD).await.status(), 303);
        Browser { app, client }
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self.client.post(self.app.url(path)).header("origin", self.app.origin()).json(body).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn challenge(&self, body: Value) -> Value {
        let (status, ch) = self.post("/auth/card/challenge", &body).await;
        assert_eq!(status, 200, "{ch}");
        ch
    }

    /// Challenge, agent, finish.
    async fn present(&self, challenge: Value, card: &Leaf, chain: &[&[u8]]) -> (StatusCode, Value) {
        let ch = self.challenge(challenge).await;
        self.post("/auth/card/finish", &agent(&ch, card, chain)).await
    }

    async fn link_with_code(&self, kind: &str, code: &str, card: &Leaf, chain: &[&[u8]]) -> (StatusCode, Value) {
        self.present(json!({ "card": kind, "purpose": "link", "code": code }), card, chain).await
    }

    async fn login(&self, kind: &str, card: &Leaf, chain: &[&[u8]]) -> (StatusCode, Value) {
        self.present(json!({ "card": kind }), card, chain).await
    }
}

/// What the card agent answers for `challenge`: the canonical client data signed by the card.
fn agent(challenge: &Value, card: &Leaf, chain: &[&[u8]]) -> Value {
    let kind = if challenge["card"] == "hpki" { card::CardKind::Hpki } else { card::CardKind::Jpki };
    let data = card::ClientData::new(kind, challenge["challenge"].as_str().unwrap(), challenge["origin"].as_str().unwrap())
        .unwrap()
        .to_bytes();
    signed(&data, card, chain)
}

/// The agent's answer for arbitrary client data bytes.
fn signed(data: &[u8], card: &Leaf, chain: &[&[u8]]) -> Value {
    let key = RsaKeyPair::from_pkcs8(&card.key_der).unwrap();
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut sig).unwrap();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    json!({
        "client_data": b64(data),
        "signature": b64(&sig),
        "certificate": b64(&card.cert_der),
        "chain": chain.iter().map(|c| b64(c)).collect::<Vec<_>>(),
    })
}

async fn issue_code(app: &TestApp, clinic: &str, login: &str) -> String {
    let admin = Admin { store: app.store(), now: app.clock_now() };
    admin.enroll_code_issue(clinic, login, 24 * 3600, 5).await.unwrap().0.to_string()
}

async fn user_id(app: &TestApp, clinic: &str, login: &str) -> String {
    app.store().user_by_login(clinic, login).await.unwrap().id
}

fn assert_error(got: &(StatusCode, Value), status: u16, code: &str, text: &str) {
    assert_eq!(got.0.as_u16(), status, "{got:?}");
    assert_eq!(got.1["error"], code, "{got:?}");
    assert!(got.1["message"].as_str().unwrap_or_default().contains(text), "{text:?} not in {got:?}");
}

/// Nothing was linked, no session opened, and the doctor's code is still usable.
async fn assert_nothing_changed(app: &TestApp, user: &str) {
    assert!(app.store().card_credentials_of(user).await.unwrap().is_empty());
    assert!(app.store().current_signing_session(user, CLINIC).await.unwrap().is_none());
    let code = app.store().enrollment_code_of(user).await.unwrap().unwrap();
    assert!(code.is_usable(app.clock_now()), "{code:?}");
}

async fn card_events(app: &TestApp) -> Vec<(String, Value)> {
    let mut rows = app.store().audit_tail(500).await.unwrap();
    rows.reverse();
    rows.into_iter()
        .filter(|r| r.event == "authentication" && r.detail["method"] != "fido")
        .map(|r| (r.outcome, r.detail))
        .collect()
}

async fn issue_token(app: &TestApp) -> (u16, Value) {
    let res = app
        .client(Some(&app.pki.emr_a))
        .post(app.url("/api/v1/signing-tokens"))
        .json(&json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN }))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn hpki_link_with_code_then_login_opens_a_session_for_tokens(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;

    // The method page offers both cards, calls the agent only at its configured origin.
    let res = b.client.get(app.url("/methods")).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("connect-src 'self' http://127.0.0.1:18443;"), "{csp}");
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"id="card-hpki""#) && page.contains(r#"id="card-jpki""#) && page.contains("/assets/card.js"));

    // Without a linked card, a login is refused before the PIN is typed.
    let (status, body) = b.post("/auth/card/challenge", &json!({ "card": "hpki" })).await;
    assert_error(&(status, body), 409, "no_card_linked", "まだ登録されていません");

    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let ch = b.challenge(json!({ "card": "hpki", "purpose": "link", "code": code })).await;
    assert_eq!(ch["origin"], app.origin());
    assert_eq!(ch["agent_url"], "http://127.0.0.1:18443");
    assert_eq!(URL_SAFE_NO_PAD.decode(ch["challenge"].as_str().unwrap()).unwrap().len(), 32);
    let answer = agent(&ch, &c.doctor, &[c.hpki_pki.auth_ca().cert_der()]);
    // The finish request is the agent's answer and nothing else: no PIN reaches the gateway.
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["certificate", "chain", "client_data", "signature"]);
    let (status, done) = b.post("/auth/card/finish", &answer).await;
    assert_eq!(status, 200, "{done}");
    // Back to the management page, with the card's own notice (issue 24: not FIDO's).
    assert_eq!(done["redirect"], "/manage?done=linked_hpki&lang=ja");
    let page = b.client.get(app.url("/manage?done=linked_hpki&lang=ja")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("HPKIカードを登録しました。") && !page.contains("FIDO認証器を登録しました"), "{page}");
    let linked = app.store().card_credentials_of(&user).await.unwrap();
    assert_eq!(linked.len(), 1);
    assert_eq!((linked[0].kind.as_str(), linked[0].linked_via.as_str()), ("hpki", "code"));
    assert!(app.store().enrollment_code_of(&user).await.unwrap().unwrap().used_at.is_some());
    assert_eq!(app.store().count_card_challenges().await.unwrap(), 0);
    // A PIN sent along by a broken page is refused as a malformed answer.
    let ch = b.challenge(json!({ "card": "hpki" })).await;
    let mut with_pin = agent(&ch, &c.doctor, &[c.hpki_pki.auth_ca().cert_der()]);
    with_pin["pin"] = json!("1234");
    assert_error(&b.post("/auth/card/finish", &with_pin).await, 400, "response_malformed", "正しくありません");

    // The card's name is shown in the page's language, whichever it was linked in.
    let page = b.client.get(app.url("/manage?lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("HPKI card 1") && page.contains(&format!("/auth/card/credentials/{}/remove", linked[0].id)), "{page}");
    assert!(!page.contains("HPKIカード"), "no Japanese card names on the English page");
    // The choice is kept (cookie) until the doctor switches back.
    b.client.get(app.url("/manage?lang=ja")).send().await.unwrap();

    // Log in with the card: a signing session like FIDO's, with the card's amr.
    let cookie_before = b.client.get(app.url("/methods")).send().await.unwrap().status();
    assert_eq!(cookie_before, 200);
    let (status, done) = b.login("hpki", &c.doctor, &[c.hpki_pki.auth_ca().cert_der()]).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["redirect"], "/methods?done=authenticated_hpki&lang=ja");
    let page = b.client.get(app.url("/methods?done=authenticated_hpki&lang=ja")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("HPKIカードで本人確認しました。") && !page.contains("FIDO認証に成功"), "{page}");
    let session = app.store().live_signing_session(&user, CLINIC, app.clock_now()).await.unwrap().unwrap();
    assert_eq!(session.method, AuthMethod::Hpki);
    assert_eq!((session.authenticator_kind.as_str(), session.authenticator_id.as_str()), ("hpki", linked[0].id.as_str()));
    assert_eq!(session.amr, ["pwd", "sc", "pin", "mfa"]);
    assert_eq!(session.acr, "aal3");
    assert!(app.store().card_credentials_of(&user).await.unwrap()[0].last_used_at.is_some());
    // The browser session id rotated at method success, and the browser still works.
    let page = b.client.get(app.url("/methods")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"id="signing-session""#), "{page}");

    // The EMR gets signing tokens for it.
    let (status, token) = issue_token(&app).await;
    assert_eq!(status, 200, "{token}");

    // The metrics count the card logins by kind and reason; linking is no login (docs/metrics.md).
    let m = crate::metrics::Scrape::of(&app).await;
    let logins = |outcome, reason| m.get("ninsho_logins_total", &[("method", "hpki"), ("outcome", outcome), ("reason", reason)]);
    assert_eq!(logins("success", "none"), Some(1.0));
    assert_eq!(logins("failure", "no_card_linked"), Some(1.0));
    assert_eq!(logins("failure", "response_malformed"), Some(1.0));
    assert_eq!(m.samples_of("ninsho_logins_total").filter(|l| l.iter().any(|(k, v)| k == "method" && v == "hpki")).count(), 3);

    let events = card_events(&app).await;
    let ok: Vec<_> = events.iter().filter(|(o, _)| o == "success").collect();
    assert_eq!(ok.len(), 2, "{events:?}");
    let fp = gateway::tls::fingerprint(&c.doctor.cert_der);
    assert!(ok.iter().all(|(_, d)| d["cert_sha256"] == fp.as_str() && d["revocation_checked"] == false), "{ok:?}");
    app.stop().await;
}

async fn jpki_link_with_code_then_login_checks_the_crl(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let (status, done) = b.link_with_code("jpki", &code, &c.jpki, &[]).await;
    assert_eq!(status, 200, "{done}");
    let (status, done) = b.login("jpki", &c.jpki, &[c.jpki_pki.auth_ca().cert_der()]).await;
    assert_eq!(status, 200, "{done}");
    let session = app.store().live_signing_session(&user, CLINIC, app.clock_now()).await.unwrap().unwrap();
    assert_eq!(session.method, AuthMethod::Jpki);
    assert_eq!(issue_token(&app).await.0, 200);
    let events = card_events(&app).await;
    assert!(events.iter().all(|(o, d)| o == "success" && d["method"] == "jpki" && d["revocation_checked"] == true), "{events:?}");
    app.stop().await;
}

async fn only_doctor_role_hpki_cards_can_be_linked(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let chain = [c.hpki_pki.auth_ca().cert_der()];
    let got = b.link_with_code("hpki", &code, &c.pharmacist, &chain).await;
    assert_error(&got, 403, "role_not_accepted", "医師の資格");
    let got = b.link_with_code("hpki", &code, &c.no_role, &chain).await;
    assert_error(&got, 403, "role_missing", "Medical Doctor");
    assert_nothing_changed(&app, &user).await;
    let (status, _) = b.link_with_code("hpki", &code, &c.doctor, &chain).await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn certificate_problems_are_refused_with_their_reason(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let chain = [c.hpki_pki.auth_ca().cert_der()];
    assert_error(&b.link_with_code("hpki", &code, &c.expired, &chain).await, 403, "expired", "有効期限が切れています");
    assert_error(&b.link_with_code("hpki", &code, &c.rogue, &[]).await, 403, "untrusted_issuer", "信頼されていません");
    // Real-shaped certificates the anchors refuse: a card's signing certificate (nonRepudiation,
    // signing policy) offered for login, and an authentication certificate whose policy OID is not
    // on the anchor's allow-list.
    let got = b.link_with_code("hpki", &code, &c.hpki_signing, &[c.hpki_pki.sign_ca().cert_der()]).await;
    assert_error(&got, 403, "signing_certificate", "署名用の証明書");
    assert_error(&b.link_with_code("jpki", &code, &c.jpki_signing, &[]).await, 403, "signing_certificate", "認証用");
    assert_error(&b.link_with_code("hpki", &code, &c.hpki_unknown_policy, &chain).await, 403, "policy_not_allowed", "証明書ポリシー");
    // The intermediate is not an anchor: without it in the chain there is no path.
    assert_error(&b.link_with_code("hpki", &code, &c.doctor, &[]).await, 403, "untrusted_issuer", "中間証明書");
    // A JPKI card is not trusted for HPKI (the HPKI anchors do not cover it).
    let ch = b.challenge(json!({ "card": "hpki", "purpose": "link", "code": code })).await;
    let jpki_as_hpki = agent(&ch, &c.jpki, &[]);
    assert_error(&b.post("/auth/card/finish", &jpki_as_hpki).await, 403, "untrusted_issuer", "信頼されていません");
    assert_error(&b.link_with_code("jpki", &code, &c.jpki_revoked, &[]).await, 403, "revoked", "失効しています");

    // Not yet valid at the gateway's clock.
    let ch = b.challenge(json!({ "card": "hpki", "purpose": "link", "code": code })).await;
    app.clock.set(c.now - Duration::days(2));
    let got = b.post("/auth/card/finish", &agent(&ch, &c.doctor, &chain)).await;
    assert_error(&got, 403, "not_yet_valid", "まだ有効になっていません");
    app.clock.set(c.now.max(OffsetDateTime::from_unix_timestamp(app.clock_now()).unwrap()));

    // A CRL past its nextUpdate refuses every card under that anchor (fail closed).
    let fp = gateway::tls::fingerprint(c.jpki_pki.auth_ca().cert_der());
    let stale_next_update = (c.now - Duration::days(1)).unix_timestamp();
    app.store().set_anchor_crl(AnchorKind::Jpki, &fp, &c.jpki_stale_crl, stale_next_update, app.clock_now()).await.unwrap();
    let got = b.link_with_code("jpki", &code, &c.jpki, &[]).await;
    assert_error(&got, 503, "crl_stale", "失効情報を確認できない");
    // English too.
    let ch = b.challenge(json!({ "card": "jpki", "purpose": "link", "code": code })).await;
    let res = b
        .client
        .post(app.url("/auth/card/finish?lang=en"))
        .header("origin", app.origin())
        .json(&agent(&ch, &c.jpki, &[]))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("revocation status cannot be checked"), "{body}");

    assert_nothing_changed(&app, &user).await;
    let refused = card_events(&app).await;
    assert!(refused.iter().all(|(o, d)| o == "failure" && d["cert_sha256"].is_string()), "{refused:?}");
    app.stop().await;
}

async fn tampered_answers_are_refused(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let chain = [c.hpki_pki.auth_ca().cert_der()];
    let link = json!({ "card": "hpki", "purpose": "link", "code": code });

    // A signature over other client data than the answer carries.
    let ch = b.challenge(link.clone()).await;
    let mut answer = agent(&ch, &c.doctor, &chain);
    let other = agent(&b.challenge(link.clone()).await, &c.doctor, &chain);
    answer["signature"] = other["signature"].clone();
    let ch2 = b.challenge(link.clone()).await;
    answer["client_data"] = agent(&ch2, &c.doctor, &chain)["client_data"].clone();
    assert_error(&b.post("/auth/card/finish", &answer).await, 400, "bad_signature", "署名を検証できません");

    // Client data made for another origin (a phishing page relaying the challenge).
    let ch = b.challenge(link.clone()).await;
    let data = card::ClientData::new(card::CardKind::Hpki, ch["challenge"].as_str().unwrap(), "https://evil.example")
        .unwrap()
        .to_bytes();
    assert_error(&b.post("/auth/card/finish", &signed(&data, &c.doctor, &chain)).await, 400, "origin_mismatch", "別の画面");

    // The agent signed for the other card kind than the challenge was issued for.
    let ch = b.challenge(link.clone()).await;
    let data = card::ClientData::new(card::CardKind::Jpki, ch["challenge"].as_str().unwrap(), ch["origin"].as_str().unwrap())
        .unwrap()
        .to_bytes();
    let got = b.post("/auth/card/finish", &signed(&data, &c.jpki, &[])).await;
    assert_error(&got, 400, "card_kind_mismatch", "選択した種類と異なるカード");

    // Non-canonical client data, and garbage.
    let ch = b.challenge(link.clone()).await;
    let data = format!(
        r#"{{"type": "ninsho.card.auth","card":"hpki","challenge":"{}","origin":"{}"}}"#,
        ch["challenge"].as_str().unwrap(),
        ch["origin"].as_str().unwrap()
    );
    assert_error(&b.post("/auth/card/finish", &signed(data.as_bytes(), &c.doctor, &chain)).await, 400, "client_data_malformed", "");
    b.challenge(link.clone()).await;
    assert_error(&b.post("/auth/card/finish", &json!({ "x": 1 })).await, 400, "response_malformed", "");
    let got = b.post("/auth/card/challenge", &json!({ "card": "felica" })).await;
    assert_error(&got, 400, "bad_request", "カードの種類");
    assert_nothing_changed(&app, &user).await;
    app.stop().await;
}

async fn challenges_are_single_use_bound_to_the_browser_session_and_expire(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let chain = [c.hpki_pki.auth_ca().cert_der()];
    let link = json!({ "card": "hpki", "purpose": "link", "code": code });

    // Another browser of the same doctor cannot use this session's challenge.
    let ch = b.challenge(link.clone()).await;
    let answer = agent(&ch, &c.doctor, &chain);
    let other = Browser::doctor(&app).await;
    assert_error(&other.post("/auth/card/finish", &answer).await, 400, "challenge_missing", "見つからない");
    // …and that attempt did not use it up.
    let (status, _) = b.post("/auth/card/finish", &answer).await;
    assert_eq!(status, 200);
    // Replay: concurrent and later finishes find nothing.
    let ch = b.challenge(json!({ "card": "hpki" })).await;
    let answer = agent(&ch, &c.doctor, &chain);
    let (r1, r2) = tokio::join!(b.post("/auth/card/finish", &answer), b.post("/auth/card/finish", &answer));
    // The loser finds no challenge (400), or — if it arrives after the winner rotated the
    // browser-session id — no session at all (401). Either way exactly one session opened.
    let mut statuses = [r1.0.as_u16(), r2.0.as_u16()];
    statuses.sort_unstable();
    assert!(statuses == [200, 400] || statuses == [200, 401], "{r1:?} {r2:?}");
    let opened = app.store().list_signing_sessions(Some(CLINIC), Some(&user), false).await.unwrap();
    assert_eq!(opened.len(), 1, "{opened:?}");
    let replay = b.post("/auth/card/finish", &answer).await;
    assert!(matches!(replay.0.as_u16(), 400 | 401), "{replay:?}");
    let b = Browser::doctor(&app).await;
    let ch = b.challenge(json!({ "card": "hpki" })).await;
    let answer = agent(&ch, &c.doctor, &chain);
    assert_eq!(b.post("/auth/card/finish", &answer).await.0, 200);
    assert_error(&b.post("/auth/card/finish", &answer).await, 400, "challenge_missing", "すでに使用");

    // After 120 s the challenge is refused (and consumed).
    let filter = gateway::store::SessionFilter::User { user_id: &user, clinic_id: None };
    app.store().end_signing_sessions(filter, gateway::store::EndReason::Operator, app.clock_now()).await.unwrap();
    let ch = b.challenge(json!({ "card": "hpki" })).await;
    app.clock.advance(Duration::seconds(121));
    let got = b.post("/auth/card/finish", &agent(&ch, &c.doctor, &chain)).await;
    assert_error(&got, 400, "challenge_expired", "時間切れ");
    assert_eq!(app.store().count_card_challenges().await.unwrap(), 0);
    assert!(app.store().live_signing_session(&user, CLINIC, app.clock_now()).await.unwrap().is_none());
    app.stop().await;
}

async fn a_finish_takes_its_challenge_and_reads_the_card_together(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let chain = [c.hpki_pki.auth_ca().cert_der()];
    assert_eq!(b.link_with_code("hpki", &issue_code(&app, CLINIC, DOCTOR_LOGIN).await, &c.doctor, &chain).await.0, 200);
    let stored = app.store().card_credentials_of(&uid).await.unwrap().remove(0);
    let (store, now, issuer) = (app.store(), app.clock_now(), &stored.issuer_sha256);
    let put = |kind: AnchorKind| {
        let uid = uid.clone();
        async move {
            let ch = gateway::store::NewCardChallenge {
                session_hash: &[9; 32],
                user_id: &uid,
                clinic_id: CLINIC,
                kind,
                purpose: gateway::store::CardPurpose::Confirm,
                challenge: &[5; 32],
                enrollment_code_id: None,
                linked_via: Some("fido:x"),
                then_link: Some("jpki"),
                expires_at: now + 120,
            };
            assert!(store.put_card_challenge(&ch, false, now).await.unwrap());
        }
    };
    let take = |hash: [u8; 32], user: String, clinic: &'static str, serial: String| async move {
        store.take_card_challenge_and_credential(&hash, &user, clinic, issuer, &serial).await.unwrap()
    };
    let serial = stored.serial_hex.clone();

    put(AnchorKind::Hpki).await;
    // Another clinic, doctor or browser session takes nothing and leaves the challenge.
    assert!(take([9; 32], uid.clone(), OTHER_CLINIC, serial.clone()).await.is_none());
    assert!(take([9; 32], "someone-else".into(), CLINIC, serial.clone()).await.is_none());
    assert!(take([8; 32], uid.clone(), CLINIC, serial.clone()).await.is_none());
    assert_eq!(store.count_card_challenges().await.unwrap(), 1);

    // A card nobody linked: the challenge is taken, as stored, with no card.
    let (taken, cred) = take([9; 32], uid.clone(), CLINIC, "7f".into()).await.unwrap();
    assert_eq!((taken.kind, taken.purpose, taken.challenge.as_slice()), (AnchorKind::Hpki, gateway::store::CardPurpose::Confirm, &[5; 32][..]));
    assert_eq!((taken.linked_via.as_deref(), taken.then_link.as_deref(), taken.enrollment_code_id), (Some("fido:x"), Some("jpki"), None));
    assert_eq!(taken.expires_at, now + 120);
    assert!(cred.is_none());
    assert_eq!(store.count_card_challenges().await.unwrap(), 0);

    // The linked card's issuer and serial under a challenge of the other kind: no card.
    put(AnchorKind::Jpki).await;
    let (taken, cred) = take([9; 32], uid.clone(), CLINIC, serial.clone()).await.unwrap();
    assert_eq!((taken.kind, cred), (AnchorKind::Jpki, None));

    // Its own kind: the row as stored, and the challenge taken once.
    put(AnchorKind::Hpki).await;
    let (_, cred) = take([9; 32], uid.clone(), CLINIC, serial.clone()).await.unwrap();
    assert_eq!(cred.as_ref(), Some(&stored));
    assert!(take([9; 32], uid.clone(), CLINIC, serial.clone()).await.is_none());

    // Through the finish: an answer whose certificate does not parse (so nothing is read with
    // the take) still uses the challenge up.
    let ch = b.challenge(json!({ "card": "hpki" })).await;
    let answer = agent(&ch, &c.doctor, &chain);
    let mut broken = answer.clone();
    broken["certificate"] = json!(URL_SAFE_NO_PAD.encode(b"no certificate"));
    assert_error(&b.post("/auth/card/finish", &broken).await, 403, "cert_malformed", "");
    assert_error(&b.post("/auth/card/finish", &answer).await, 400, "challenge_missing", "");
    // And a good answer opens the session with the card read together with its challenge.
    assert_eq!(b.login("hpki", &c.doctor, &chain).await.0, 200);
    let session = store.live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().unwrap();
    assert_eq!(session.authenticator_id, stored.id);
    app.stop().await;
}

async fn cards_of_other_doctors_and_unlinked_cards_are_refused(db: Db) {
    let app = app(db).await;
    let c = cards();
    let chain = [c.hpki_pki.auth_ca().cert_der()];
    let me = Browser::doctor(&app).await;
    let other = Browser::other_doctor(&app).await;
    let my_id = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let other_id = user_id(&app, OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await;
    let my_code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let other_code = issue_code(&app, OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await;
    assert_eq!(other.link_with_code("hpki", &other_code, &c.doctor2, &chain).await.0, 200);
    // A second card needs a fresh card proof first (issue 15).
    assert_eq!(other.login("hpki", &c.doctor2, &chain).await.0, 200);
    let other_code = issue_code(&app, OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await;
    assert_eq!(other.link_with_code("jpki", &other_code, &c.jpki2, &[]).await.0, 200);

    // A My Number card linked to another doctor cannot be linked again; the code survives.
    let got = me.link_with_code("jpki", &my_code, &c.jpki2, &[]).await;
    assert_error(&got, 409, "card_linked_to_another_doctor", "別のアカウントに登録済み");
    assert_nothing_changed(&app, &my_id).await;
    assert_eq!(me.link_with_code("hpki", &my_code, &c.doctor, &chain).await.0, 200);

    // Logging in with another doctor's card, or with a card never linked.
    assert_error(&me.login("hpki", &c.doctor2, &chain).await, 403, "card_of_another_doctor", "別の医師");
    let (status, body) = {
        let ch = me.challenge(json!({ "card": "hpki" })).await;
        me.post("/auth/card/finish?lang=en", &agent(&ch, &c.doctor2, &chain)).await
    };
    assert_eq!((status.as_u16(), body["message"].as_str().unwrap()), (403, "This card is linked to another doctor's account."));
    let unlinked = c.hpki_pki.auth_cert(&CardSpec::new(c.now)).unwrap();
    assert_error(&me.login("hpki", &unlinked, &chain).await, 403, "card_not_linked", "登録されていません");
    assert!(app.store().current_signing_session(&my_id, CLINIC).await.unwrap().is_none());
    assert_eq!(app.store().card_credentials_of(&other_id).await.unwrap().len(), 2);
    app.stop().await;
}

async fn removing_a_card_ends_the_sessions_opened_with_it(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_eq!(b.link_with_code("jpki", &code, &c.jpki, &[]).await.0, 200);
    assert_eq!(b.login("jpki", &c.jpki, &[]).await.0, 200);
    let session = app.store().live_signing_session(&user, CLINIC, app.clock_now()).await.unwrap().unwrap();
    let id = app.store().card_credentials_of(&user).await.unwrap()[0].id.clone();
    let res = b
        .client
        .post(app.url(&format!("/auth/card/credentials/{id}/remove")))
        .header("origin", app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let ended = app.store().signing_session(&session.id).await.unwrap();
    assert_eq!(ended.ended_reason.as_deref(), Some("authenticator_removed"));
    assert!(app.store().card_credentials_of(&user).await.unwrap().is_empty());
    assert_ne!(issue_token(&app).await.0, 200);
    // And the card no longer logs in.
    assert_error(&b.post("/auth/card/challenge", &json!({ "card": "jpki" })).await, 409, "no_card_linked", "");
    app.stop().await;
}

async fn removing_a_card_needs_a_fresh_card_proof(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_eq!(b.link_with_code("jpki", &issue_code(&app, CLINIC, DOCTOR_LOGIN).await, &c.jpki, &[]).await.0, 200);
    let id = app.store().card_credentials_of(&user).await.unwrap()[0].id.clone();
    let remove = || b.client.post(app.url(&format!("/auth/card/credentials/{id}/remove"))).header("origin", app.origin()).send();
    // Linked with the code, but no card proof in this browser session yet.
    let res = remove().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("直前に登録済みのカードまたはFIDO認証器での本人確認が必要"));
    // Nor adding a second one with a code.
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let refused = b.post("/auth/card/challenge", &json!({ "card": "hpki", "purpose": "link", "code": code })).await;
    assert_error(&refused, 403, "reauth_required", "直前に");
    // A card login is the proof; it lasts login.reauth_secs.
    assert_eq!(b.login("jpki", &c.jpki, &[]).await.0, 200);
    app.clock.advance(time::Duration::seconds(app.config.login.reauth_secs + 1));
    assert_eq!(remove().await.unwrap().status(), 403, "the proof is too old");
    assert_eq!(b.login("jpki", &c.jpki, &[]).await.0, 200);
    assert_eq!(remove().await.unwrap().status(), 303);
    assert!(app.store().card_credentials_of(&user).await.unwrap().is_empty());
    let audit = app.store().audit_tail(100).await.unwrap();
    assert_eq!(audit.iter().filter(|r| r.event == "authenticator_change_refused" && r.detail["reason"] == "reauth_required").count(), 2);
    app.stop().await;
}

async fn cards_are_renamed_like_fido_authenticators(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_eq!(b.link_with_code("jpki", &issue_code(&app, CLINIC, DOCTOR_LOGIN).await, &c.jpki, &[]).await.0, 200);
    let id = app.store().card_credentials_of(&user).await.unwrap()[0].id.clone();
    let path = format!("/auth/card/credentials/{id}/rename");
    let rename = |client: &reqwest::Client, name: &str| {
        client.post(app.url(&format!("{path}?lang=ja"))).header("origin", app.origin()).form(&[("name", name)]).send()
    };
    // The management page offers it, in both languages.
    let page = b.client.get(app.url("/manage?lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!(r#"action="{path}?lang=en""#)) && page.contains("My Number card 1"), "{page}");
    let page = b.client.get(app.url("/manage?lang=ja")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!(r#"action="{path}?lang=ja""#)) && page.contains("マイナンバーカード 1"), "{page}");
    // Linked with the code alone: no proof in this browser session yet.
    let res = rename(&b.client, "受付の端末").await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("直前に登録済みのカードまたはFIDO認証器での本人確認が必要"));
    assert_eq!(b.login("jpki", &c.jpki, &[]).await.0, 200);
    // A bad name is refused and changes nothing; another doctor's card is not found (before
    // anything else is said about it), and so is a card id on the FIDO route.
    assert_eq!(rename(&b.client, " \t ").await.unwrap().status(), 400);
    let long = "あ".repeat(65);
    assert_eq!(rename(&b.client, &long).await.unwrap().status(), 400);
    let other = Browser::other_doctor(&app).await;
    assert_eq!(rename(&other.client, "x").await.unwrap().status(), 404);
    let fido_route = b.client.post(app.url(&format!("/fido/credentials/{id}/rename"))).header("origin", app.origin()).form(&[("name", "x")]);
    assert_eq!(fido_route.send().await.unwrap().status(), 404);
    assert_eq!(app.store().card_credentials_of(&user).await.unwrap()[0].name, "マイナンバーカード 1");
    // Renamed: the card's own notice, the new name shown as typed in both languages.
    let res = rename(&b.client, "  受付の端末 ").await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/manage?done=renamed_jpki&lang=ja");
    let page = b.client.get(app.url("/manage?done=renamed_jpki&lang=ja")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("マイナンバーカードの名前を変更しました。") && page.contains("受付の端末"), "{page}");
    let page = b.client.get(app.url("/manage?done=renamed_jpki&lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("The My Number card was renamed.") && page.contains("受付の端末"), "{page}");
    assert_eq!(app.store().card_credentials_of(&user).await.unwrap()[0].name, "受付の端末");
    // It still logs in (the name is only a label).
    assert_eq!(b.login("jpki", &c.jpki, &[]).await.0, 200);
    let audit = app.store().audit_tail(100).await.unwrap();
    let renamed: Vec<_> = audit.iter().filter(|r| r.event == "authenticator_renamed").collect();
    assert_eq!(renamed.len(), 1, "{audit:?}");
    assert_eq!((renamed[0].detail["kind"].as_str(), renamed[0].detail["authenticator_id"].as_str()), (Some("jpki"), Some(id.as_str())));
    let refused = audit.iter().filter(|r| r.event == "authenticator_change_refused" && r.detail["action"] == "rename").count();
    assert_eq!(refused, 1, "{audit:?}");
    app.stop().await;
}

/// Issue 24: a doctor whose only linked authenticator is a card confirms with it (PIN through the
/// agent) to add another — a card (the card to add answers the challenge the confirmation gave)
/// or a FIDO authenticator (the confirmation answers the creation options).
async fn a_linked_card_confirms_adding_another_authenticator(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let hpki_chain: &[&[u8]] = &[c.hpki_pki.auth_ca().cert_der()];
    assert_eq!(b.link_with_code("jpki", &issue_code(&app, CLINIC, DOCTOR_LOGIN).await, &c.jpki, &[]).await.0, 200);
    let jpki_id = app.store().card_credentials_of(&user).await.unwrap()[0].id.clone();
    let confirm = |card: &str, then: &str| json!({ "card": card, "purpose": "confirm", "then": then });

    // The page offers it with the linked card to confirm with (no FIDO authenticator linked).
    let page = b.client.get(app.url("/manage")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<option value="jpki">マイナンバーカード</option>"#) && !page.contains(r#"<option value="fido">"#), "{page}");
    assert!(page.contains(r#"id="link-existing-hpki""#) && page.contains(r#"id="confirm-continue""#), "{page}");

    // Malformed requests: `then` only with a confirmation, and one of the three kinds.
    for body in [
        json!({ "card": "jpki", "purpose": "confirm" }),
        json!({ "card": "jpki", "then": "hpki" }),
        json!({ "card": "jpki", "purpose": "link", "code": "x", "then": "hpki" }),
        confirm("jpki", "password"),
    ] {
        assert_error(&b.post("/auth/card/challenge", &body).await, 400, "bad_request", "");
    }
    // Only with a linked card of that kind.
    assert_error(&b.post("/auth/card/challenge", &confirm("hpki", "jpki")).await, 409, "no_card_linked", "まだ登録されていません");
    // Another card of that kind than the linked one, or another doctor's, confirms nothing.
    assert_error(&b.present(confirm("jpki", "hpki"), &c.jpki2, &[]).await, 403, "card_not_linked", "登録されていません");
    let other = Browser::other_doctor(&app).await;
    let other_id = user_id(&app, OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await;
    assert_eq!(other.link_with_code("hpki", &issue_code(&app, OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await, &c.doctor2, hpki_chain).await.0, 200);
    // A refused confirmation is no proof: a code still cannot add a second one.
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_error(&b.post("/auth/card/challenge", &json!({ "card": "hpki", "purpose": "link", "code": code })).await, 403, "reauth_required", "");
    assert_eq!(app.store().card_credentials_of(&user).await.unwrap().len(), 1);

    // Confirm with the My Number card, then add an HPKI card: the answer is the HPKI card's link
    // challenge, which the HPKI card (now on the reader) answers.
    let (status, next) = b.present(confirm("jpki", "hpki"), &c.jpki, &[]).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!((next["card"].as_str(), next["purpose"].as_str()), (Some("hpki"), Some("link")), "{next}");
    assert_eq!(next["origin"], app.origin());
    // The confirmation is a presence check, no login: no signing session, no login metric.
    assert!(app.store().current_signing_session(&user, CLINIC).await.unwrap().is_none());
    assert!(app.store().card_credentials_of(&user).await.unwrap()[0].last_used_at.is_some(), "the card's use is recorded");
    let (status, done) = b.post("/auth/card/finish", &agent(&next, &c.doctor, hpki_chain)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["redirect"], "/manage?done=linked_hpki&lang=ja");
    let linked = app.store().card_credentials_of(&user).await.unwrap();
    let hpki = linked.iter().find(|c| c.kind == "hpki").unwrap();
    assert_eq!(hpki.linked_via, format!("jpki:{jpki_id}"));
    assert_eq!(app.store().count_card_challenges().await.unwrap(), 0);
    // The permission was single use: the same answer again finds no challenge.
    assert_error(&b.post("/auth/card/finish", &agent(&next, &c.doctor, hpki_chain)).await, 400, "challenge_missing", "");

    // A confirmation whose next challenge is answered by the wrong card links nothing.
    let (status, next) = b.present(confirm("hpki", "jpki"), &c.doctor, hpki_chain).await;
    assert_eq!(status, 200, "{next}");
    let finished = b.post("/auth/card/finish", &agent(&next, &c.jpki, &[])).await;
    assert_error(&finished, 409, "card_already_linked", "");
    assert_eq!(app.store().card_credentials_of(&user).await.unwrap().len(), 2);

    // Confirm with the HPKI card, then add a FIDO authenticator: the answer is the creation options.
    let (status, options) = b.present(confirm("hpki", "fido"), &c.doctor, hpki_chain).await;
    assert_eq!(status, 200, "{options}");
    let mut key = crate::fido_login::authenticator(&app);
    let credential: Value = serde_json::from_str(&key.create(&options)).unwrap();
    let (status, done) = b.post("/fido/register/finish", &json!({ "credential": credential, "name": "診察室のキー" })).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["redirect"], "/manage?done=linked_fido&lang=ja");
    let fido = app.store().fido_credentials_of(&user).await.unwrap();
    assert_eq!((fido.len(), fido[0].linked_via.clone()), (1, format!("hpki:{}", hpki.id)));

    // Audited: the confirmations as card authentications of purpose confirm (one refused), the links with
    // what authorised them; and the metrics count no login.
    let events = card_events(&app).await;
    let confirms: Vec<(&str, Option<&str>)> =
        events.iter().filter(|(_, d)| d["purpose"] == "confirm").map(|(o, d)| (o.as_str(), d["reason"].as_str())).collect();
    assert_eq!(
        confirms,
        [("failure", Some("no_card_linked")), ("failure", Some("card_not_linked")), ("success", None), ("success", None), ("success", None)],
        "{events:?}"
    );
    let audit = app.store().audit_tail(200).await.unwrap();
    let mut via: Vec<String> = audit
        .iter()
        .filter(|r| r.event == "authenticator_linked" && r.outcome == "success" && r.user_id.as_deref() == Some(user.as_str()))
        .map(|r| format!("{} {}", r.detail["kind"].as_str().unwrap(), r.detail["via"].as_str().unwrap().split(':').next().unwrap()))
        .collect();
    via.sort();
    assert_eq!(via, ["fido hpki", "hpki jpki", "jpki code"]);
    let m = crate::metrics::Scrape::of(&app).await;
    assert_eq!(m.samples_of("ninsho_logins_total").filter(|l| l.iter().any(|(k, v)| k == "method" && (v == "hpki" || v == "jpki"))).count(), 0);
    assert!(app.store().current_signing_session(&other_id, OTHER_CLINIC).await.unwrap().is_none());
    app.stop().await;
}

async fn admin_cert_check_explains_and_names_the_linked_account(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_eq!(b.link_with_code("hpki", &code, &c.doctor, &[c.hpki_pki.auth_ca().cert_der()]).await.0, 200);
    let dir = app.dir.path();
    std::fs::write(dir.join("doctor.pem"), &c.doctor.cert_pem).unwrap();
    std::fs::write(dir.join("pharmacist.pem"), &c.pharmacist.cert_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), c.hpki_pki.auth_ca().cert_pem()).unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    let (status, out) = crate::admin_cli::cli(
        &app,
        &["admin", "cert", "check", "--kind", "hpki", &path("doctor.pem"), "--chain", &path("ca.pem")],
        "",
    )
    .await;
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("verdict: accepted as hpki card, role Medical Doctor"), "{out}");
    assert!(out.contains(&format!("linked account: {CLINIC} {DOCTOR_LOGIN}")), "{out}");
    let (status, out) = crate::admin_cli::cli(
        &app,
        &["admin", "cert", "check", "--kind", "hpki", &path("pharmacist.pem"), "--chain", &path("ca.pem")],
        "",
    )
    .await;
    // A refusal exits non-zero, so scripts can use the verdict.
    assert_ne!(status, 0, "{out}");
    assert!(out.contains("verdict: refused: role_not_accepted") && out.contains("linked account: none"), "{out}");
    // Without the intermediate the chain step fails, and says so.
    let (_, out) = crate::admin_cli::cli(&app, &["admin", "cert", "check", "--kind", "hpki", &path("doctor.pem")], "").await;
    assert!(out.contains("verdict: refused: untrusted_issuer"), "{out}");
    let (status, out) = crate::admin_cli::cli(&app, &["admin", "cert", "check", "--kind", "clinic", &path("doctor.pem")], "").await;
    assert_ne!(status, 0, "{out}");
    app.stop().await;
}

/// `gateway admin cert check` runs the login's certificate check: over a table of real-shaped
/// certificates, it accepts exactly what a login accepts, and refuses the rest with the same reason
/// wherever the login reached the certificate (a card key the login cannot use is refused earlier,
/// with bad_signature, and by cert check for the key itself).
async fn admin_cert_check_and_login_agree(db: Db) {
    let app = app(db).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let hpki_ca = c.hpki_pki.auth_ca().cert_der();
    let weak = c.hpki_pki.auth_cert(&CardSpec::new(c.now).key(devpki::KeyAlg::Rsa1024)).unwrap();
    let ec = c.hpki_pki.auth_cert(&CardSpec::new(c.now).key(devpki::KeyAlg::EcP256)).unwrap();
    let table: Vec<(&str, &str, &Leaf, Vec<&[u8]>)> = vec![
        ("hpki", "expired", &c.expired, vec![hpki_ca]),
        ("hpki", "rogue", &c.rogue, vec![]),
        ("hpki", "pharmacist", &c.pharmacist, vec![hpki_ca]),
        ("hpki", "no role", &c.no_role, vec![hpki_ca]),
        ("hpki", "signing", &c.hpki_signing, vec![c.hpki_pki.sign_ca().cert_der()]),
        ("hpki", "unknown policy", &c.hpki_unknown_policy, vec![hpki_ca]),
        ("hpki", "no intermediate", &c.doctor, vec![]),
        ("hpki", "RSA-1024", &weak, vec![hpki_ca]),
        ("jpki", "revoked", &c.jpki_revoked, vec![]),
        ("jpki", "signing", &c.jpki_signing, vec![]),
        ("jpki", "hpki card as jpki", &c.doctor, vec![hpki_ca]),
        ("hpki", "doctor", &c.doctor, vec![hpki_ca]),
        ("jpki", "my number", &c.jpki, vec![]),
    ];
    let dir = app.dir.path();
    let me = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    for (i, (kind, what, card, chain)) in table.iter().enumerate() {
        // Once a card is linked (the HPKI doctor card), another needs a fresh card proof (issue 15).
        if !app.store().card_credentials_of(&me).await.unwrap().is_empty() {
            assert_eq!(b.login("hpki", &c.doctor, &[hpki_ca]).await.0, 200);
        }
        let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
        let ch = b.challenge(json!({ "card": kind, "purpose": "link", "code": code })).await;
        let data = card::ClientData::new(
            kind.parse().unwrap(),
            ch["challenge"].as_str().unwrap(),
            ch["origin"].as_str().unwrap(),
        )
        .unwrap()
        .to_bytes();
        let b64 = |x: &[u8]| URL_SAFE_NO_PAD.encode(x);
        let answer = json!({
            "client_data": b64(&data),
            "signature": b64(&card.sign_rsa_sha256(&data).unwrap()),
            "certificate": b64(&card.cert_der),
            "chain": chain.iter().map(|c| b64(c)).collect::<Vec<_>>(),
        });
        let (status, body) = b.post("/auth/card/finish", &answer).await;

        let mut args = vec!["admin".to_owned(), "cert".into(), "check".into(), "--kind".into(), (*kind).to_owned()];
        let file = dir.join(format!("card{i}.pem"));
        std::fs::write(&file, &card.cert_pem).unwrap();
        args.push(file.display().to_string());
        for (j, ca) in chain.iter().enumerate() {
            let f = dir.join(format!("chain{i}-{j}.der"));
            std::fs::write(&f, ca).unwrap();
            args.extend(["--chain".to_owned(), f.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (exit, out) = crate::admin_cli::cli(&app, &args, "").await;

        assert_eq!(status == 200, exit == 0, "{what}: login {status} {body}, cert check exit {exit}:\n{out}");
        if status != 200 {
            let code = body["error"].as_str().unwrap();
            if code == "bad_signature" {
                assert!(out.contains("verdict: refused: weak_key"), "{what}: {out}");
            } else {
                assert!(out.contains(&format!("verdict: refused: {code}")), "{what}: login {code}, cert check:\n{out}");
            }
        }
    }
    // A card key no card has (EC): cert check refuses it too (a login cannot even be signed).
    let f = dir.join("ec.pem");
    std::fs::write(&f, &ec.cert_pem).unwrap();
    let ca = dir.join("ec-ca.der");
    std::fs::write(&ca, hpki_ca).unwrap();
    let (exit, out) = crate::admin_cli::cli(
        &app,
        &["admin", "cert", "check", "--kind", "hpki", &f.display().to_string(), "--chain", &ca.display().to_string()],
        "",
    )
    .await;
    assert_ne!(exit, 0, "{out}");
    assert!(out.contains("verdict: refused: unsupported_key"), "{out}");
    app.stop().await;
}

/// Serves `body` to every HTTP request on a loopback port; returns the URL.
async fn serve_bytes(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jpki.crl", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/pkix-crl\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&body).await;
            });
        }
    });
    url
}

async fn crl_fetched_from_a_url_is_used_until_its_next_update(db: Db) {
    let app = TestApp::spawn(db).await;
    let c = cards();
    let url = serve_bytes(c.jpki_crl.clone()).await;
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let (anchor, _) = admin
        .anchor_add_with_crl_url(AnchorKind::Jpki, c.jpki_pki.auth_ca().cert_pem().as_bytes(), None, &url.parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(anchor.revocation, RevocationPolicy::Crl);
    let b = Browser::doctor(&app).await;
    let user = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    // Until the CRL has been fetched, nothing under the anchor is accepted.
    assert_error(&b.link_with_code("jpki", &code, &c.jpki, &[]).await, 503, "no_crl", "失効情報");
    assert_nothing_changed(&app, &user).await;

    let http = reqwest::Client::new();
    let now = app.clock_now();
    assert_eq!(gateway::card_trust::refresh_crls(app.store(), &http, now, 600).await.unwrap(), 1);
    // Not due again before its nextUpdate.
    assert_eq!(gateway::card_trust::refresh_crls(app.store(), &http, now, 600).await.unwrap(), 0);
    assert_error(&b.link_with_code("jpki", &code, &c.jpki_revoked, &[]).await, 403, "revoked", "失効しています");
    assert_eq!(b.link_with_code("jpki", &code, &c.jpki, &[]).await.0, 200);
    app.stop().await;
}

async fn without_required_role_an_hpki_card_lacking_hc_role_links_by_code_only(db: Db) {
    // docs/design.md §3.3: should real authentication certificates carry no hcRole, an operator may set
    // hpki_require_role = false; such a card is then linked by registration code (the account
    // vouches for the doctor role), and another profession's role is still refused.
    let app = with_anchors(TestApp::builder(db).with_config(|c| c.card.hpki_require_role = false).spawn().await).await;
    let c = cards();
    let b = Browser::doctor(&app).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let chain = [c.hpki_pki.auth_ca().cert_der()];
    let got = b.link_with_code("hpki", &code, &c.pharmacist, &chain).await;
    assert_error(&got, 403, "role_not_accepted", "医師の資格");
    let (status, body) = b.link_with_code("hpki", &code, &c.no_role, &chain).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = b.login("hpki", &c.no_role, &chain).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issue_token(&app).await.0, 200, "the session is a real signing session");
    let events = card_events(&app).await;
    assert!(events.iter().any(|(outcome, d)| outcome == "success" && d["purpose"] == "link"), "{events:?}");
    app.stop().await;
}

/// An internal error in a ceremony route (here: the table it writes is gone, while the gate,
/// browser session and doctor lookups still work) is answered in JSON like the route's other
/// refusals, in the request's language and without details.
async fn internal_errors_of_ceremony_routes_are_json(db: Db) {
    let app = app(db).await;
    let browser = Browser::doctor(&app).await;
    app.store().execute_unchecked("DROP TABLE card_challenges").await.unwrap();
    let (status, body) = browser.post("/auth/card/finish", &json!({})).await;
    assert_eq!(status, 500);
    assert_eq!(body, json!({ "error": "internal", "message": "内部エラーが発生しました。時間をおいて再度お試しください。" }));
    app.store().execute_unchecked("DROP TABLE webauthn_ceremonies").await.unwrap();
    let res = browser
        .client
        .post(app.url("/fido/register/start"))
        .header("origin", app.origin())
        .header("accept-language", "en")
        .json(&json!({ "code": issue_code(&app, CLINIC, DOCTOR_LOGIN).await }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "error": "internal", "message": "Something went wrong on our side. Please try again later." }));
}

db_tests!(
    internal_errors_of_ceremony_routes_are_json,
    without_required_role_an_hpki_card_lacking_hc_role_links_by_code_only,
    crl_fetched_from_a_url_is_used_until_its_next_update,
    admin_cert_check_explains_and_names_the_linked_account,
    admin_cert_check_and_login_agree,
    hpki_link_with_code_then_login_opens_a_session_for_tokens,
    jpki_link_with_code_then_login_checks_the_crl,
    only_doctor_role_hpki_cards_can_be_linked,
    certificate_problems_are_refused_with_their_reason,
    tampered_answers_are_refused,
    challenges_are_single_use_bound_to_the_browser_session_and_expire,
    a_finish_takes_its_challenge_and_reads_the_card_together,
    cards_of_other_doctors_and_unlinked_cards_are_refused,
    removing_a_card_ends_the_sessions_opened_with_it,
    removing_a_card_needs_a_fresh_card_proof,
    cards_are_renamed_like_fido_authenticators,
    a_linked_card_confirms_adding_another_authenticator,
);
