//! FIDO login (docs/design.md §3.4, §3.6, §3.7) through the real pages' JSON endpoints, with a software
//! authenticator standing in for the browser: linking with a code or an existing credential,
//! authentication opening a signing session, every refusal, and signing-session expiry with the
//! injected clock.

use gateway::admin::Admin;
use gateway::store::{
    AuditEvent, AuthMethod, AuthenticatorUse, NewSigningSession, Opening, SessionMove, SigningSessionState, TouchOutcome,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use fido::soft::SoftAuthenticator;

/// A signed-in doctor's browser.
pub(crate) struct Browser<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) client: reqwest::Client,
}

impl<'a> Browser<'a> {
    pub(crate) async fn doctor(app: &'a TestApp) -> Browser<'a> {
        Self::login(app, app.clinic_client(), DOCTOR_LOGIN, DOCTOR_PASSWORD).await
    }

    async fn other_clinic_doctor(app: &'a TestApp) -> Browser<'a> {
        Self::login(app, app.client(Some(&app.pki.other_clinic_client)), OTHER_DOCTOR_LOGIN, OTHER_DOCTOR_PASSWORD).await
    }

    pub(crate) async fn login(app: &'a TestApp, client: reqwest::Client, login: &str, password: &str) -> Browser<'a> {
        assert_eq!(app.login(&client, login, password).await.status(), 303);
        Browser { app, client }
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self.client.post(self.app.url(path)).header("origin", self.app.origin()).json(&body).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.app.url(path)).header("origin", self.app.origin()).form(form).send().await.unwrap()
    }

    pub(crate) async fn methods(&self) -> String {
        let res = self.client.get(self.app.url("/methods")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    /// Enters `code` and registers `auth`; returns the finish answer.
    pub(crate) async fn link_with_code(&self, auth: &mut SoftAuthenticator, code: &str) -> (StatusCode, Value) {
        let (status, options) = self.post("/fido/register/start", json!({ "code": code })).await;
        if status != 200 {
            return (status, options);
        }
        let credential: Value = serde_json::from_str(&auth.create(&options)).unwrap();
        self.post("/fido/register/finish", json!({ "credential": credential, "name": "Key" })).await
    }

    /// Runs an authentication ceremony answered by `auth`; returns the finish answer.
    pub(crate) async fn authenticate(&self, auth: &mut SoftAuthenticator) -> (StatusCode, Value) {
        let (status, options) = self.post("/fido/auth/start", json!({})).await;
        if status != 200 {
            return (status, options);
        }
        let assertion: Value = serde_json::from_str(&auth.get(&options)).unwrap();
        self.post("/fido/auth/finish", json!({ "credential": assertion })).await
    }
}

pub(crate) fn authenticator(app: &TestApp) -> SoftAuthenticator {
    let mut a = SoftAuthenticator::new();
    a.origin = app.origin();
    a.rp_id = "localhost".to_owned();
    a
}

pub(crate) async fn issue_code(app: &TestApp, clinic: &str, login: &str) -> String {
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let (code, _) = admin.enroll_code_issue(clinic, login, 24 * 3600, 5).await.unwrap();
    code.to_string()
}

pub(crate) async fn user_id(app: &TestApp, clinic: &str, login: &str) -> String {
    app.store().user_by_login(clinic, login).await.unwrap().id
}

pub(crate) fn assert_error(got: &(StatusCode, Value), status: u16, code: &str, text: &str) {
    assert_eq!(got.0.as_u16(), status, "{got:?}");
    assert_eq!(got.1["error"], code, "{got:?}");
    assert!(got.1["message"].as_str().unwrap_or_default().contains(text), "{text:?} not in {got:?}");
}

pub(crate) async fn events(app: &TestApp) -> Vec<(String, String, Value)> {
    let mut rows = app.store().audit_tail(500).await.unwrap();
    rows.reverse();
    rows.into_iter().map(|r| (r.event, r.outcome, r.detail)).collect()
}

async fn link_with_code_then_authenticate_opens_a_signing_session(db: Db) {
    let app = TestApp::spawn(db).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let doctor = Browser::doctor(&app).await;
    assert!(doctor.client.get(app.url("/manage")).send().await.unwrap().text().await.unwrap().contains("まだ登録されていません"));
    let mut key = authenticator(&app);

    let (status, done) = doctor.link_with_code(&mut key, &code).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["redirect"], "/manage?done=linked_fido&lang=ja");
    let page = doctor.client.get(app.url("/manage?done=linked_fido")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("FIDO認証器を登録しました") && page.contains(">Key<"), "{page}");
    assert!(!page.contains("認証済み"));
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let creds = app.store().fido_credentials_of(&uid).await.unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].credential_id, key.credential_id);
    assert_eq!(creds[0].linked_via, "code");

    // A second one needs a fresh proof with the linked one first (issue 15), before the code is
    // even looked at.
    let mut other_key = authenticator(&app);
    assert_error(&doctor.link_with_code(&mut other_key, &code).await, 403, "reauth_required", "直前に");

    let before = doctor.client.get(app.url("/methods")).send().await.unwrap();
    assert_eq!(before.status(), 200);
    let (status, done) = doctor.authenticate(&mut key).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["redirect"], "/methods?done=authenticated_fido&lang=ja");
    let page = doctor.methods().await;
    assert!(page.contains("認証済み") && page.contains("署名セッションを終了"), "{page}");
    let session = app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().expect("live session");
    assert_eq!(session.method, AuthMethod::Fido);
    assert_eq!(session.acr, "aal3");
    assert_eq!(session.amr, ["pwd", "hwk", "mfa"]);
    assert_eq!(session.authenticator_id, creds[0].id);
    assert_eq!(session.expires_at, app.clock_now() + 8 * 3600);
    assert!(page.contains(&gateway::http::Lang::Ja.format_time(session.expires_at)), "expiry shown in JST");
    let counter = app.store().fido_credentials_of(&uid).await.unwrap()[0].counter;
    assert_eq!(counter, 1, "the counter went up");
    // With that proof, the used-up code is refused as such.
    assert_error(&doctor.link_with_code(&mut other_key, &code).await, 403, "code_used", "使用済み");

    let audit = events(&app).await;
    let names: Vec<&str> = audit.iter().map(|(e, _, _)| e.as_str()).collect();
    for want in ["authenticator_linked", "authentication", "signing_session_opened"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let all = serde_json::to_string(&app.store().audit_tail(500).await.unwrap()).unwrap();
    assert!(!all.contains(&code) && !all.contains(&code.replace('-', "")), "codes never reach the audit log");
    assert_eq!(app.store().count_ceremonies().await.unwrap(), 0, "every ceremony was consumed");

    // The English page.
    let en = doctor.client.get(app.url("/methods?lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(en.contains("Authenticated") && en.contains("End the signing session"));
    // The choice is kept (cookie) until switched back.
    doctor.client.get(app.url("/methods?lang=ja")).send().await.unwrap();

    // Ending it from the page.
    let res = doctor.form("/signing-session/end", &[]).await;
    assert_eq!(res.status(), 303);
    let next = res.headers()["location"].to_str().unwrap().to_owned();
    let page = doctor.client.get(app.url(&next)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("認証済み") && page.contains("署名セッションを終了しました"), "{page}");
    assert!(app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().is_none());
    app.stop().await;
}

async fn session_id_rotates_when_the_signing_session_opens(db: Db) {
    let app = TestApp::spawn(db).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &code).await.0, 200);
    let (_, options) = doctor.post("/fido/auth/start", json!({})).await;
    let assertion: Value = serde_json::from_str(&key.get(&options)).unwrap();
    let res = doctor
        .client
        .post(app.url("/fido/auth/finish"))
        .header("origin", app.origin())
        .json(&json!({ "credential": assertion }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rotated = res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("__Host-ninsho="));
    assert!(rotated, "a new session cookie is set at method success");
    app.stop().await;
}

async fn link_another_authenticator_after_confirming_with_a_linked_one(db: Db) {
    let app = TestApp::spawn(db).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let doctor = Browser::doctor(&app).await;
    let mut first = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut first, &code).await.0, 200);

    let (status, request) = doctor.post("/fido/link/start", json!({})).await;
    assert_eq!(status, 200, "{request}");
    let assertion: Value = serde_json::from_str(&first.get(&request)).unwrap();
    let (status, creation) = doctor.post("/fido/link/finish", json!({ "credential": assertion })).await;
    assert_eq!(status, 200, "{creation}");
    // The new registration excludes the linked credential.
    assert_eq!(creation["publicKey"]["excludeCredentials"].as_array().unwrap().len(), 1);
    let mut second = authenticator(&app);
    let credential: Value = serde_json::from_str(&second.create(&creation)).unwrap();
    let (status, done) = doctor.post("/fido/register/finish", json!({ "credential": credential, "name": "" })).await;
    assert_eq!(status, 200, "{done}");

    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let creds = app.store().fido_credentials_of(&uid).await.unwrap();
    assert_eq!(creds.len(), 2);
    let by_key = |k: &SoftAuthenticator| creds.iter().find(|c| c.credential_id == k.credential_id).unwrap().clone();
    assert_eq!(by_key(&second).linked_via, format!("fido:{}", by_key(&first).id));
    assert_eq!(by_key(&second).name, "FIDO認証器 2", "default name");
    assert_eq!(doctor.authenticate(&mut second).await.0, 200);

    // Re-linking an already linked authenticator is refused.
    let (_, request) = doctor.post("/fido/link/start", json!({})).await;
    let assertion: Value = serde_json::from_str(&first.get(&request)).unwrap();
    let (_, creation) = doctor.post("/fido/link/finish", json!({ "credential": assertion })).await;
    let again: Value = serde_json::from_str(&second.create(&creation)).unwrap();
    assert_error(&doctor.post("/fido/register/finish", json!({ "credential": again })).await, 409, "already_linked", "すでに登録");
    assert_eq!(app.store().fido_credentials_of(&uid).await.unwrap().len(), 2);
    // Without a linked credential there is nothing to confirm with.
    let other = Browser::other_clinic_doctor(&app).await;
    assert_error(&other.post("/fido/link/start", json!({})).await, 409, "no_credentials", "登録されていません");
    app.stop().await;
}

async fn wrong_expired_and_exhausted_codes_are_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    // No code issued yet.
    assert_error(&doctor.link_with_code(&mut key, "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF").await, 403, "code_wrong", "正しくありません");

    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    // Malformed input is explained and not counted.
    for bad in ["", "1234", "AAAA-BBBB-CCCC-DDDD-EEEE-FFF0", "AAAA-BBBB-CCCC-DDDD"] {
        assert_error(&doctor.link_with_code(&mut key, bad).await, 400, "code_malformed", "24文字");
    }
    assert_eq!(app.store().enrollment_code_of(&uid).await.unwrap().unwrap().failures, 0);
    // Wrong entries count down; full-width and lower-case typing of the right code still works later.
    let wrong = if code.starts_with('A') { "BBBB-BBBB-BBBB-BBBB-BBBB-BBBB" } else { "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA" };
    for left in (1..=4).rev() {
        let got = doctor.link_with_code(&mut key, wrong).await;
        assert_error(&got, 403, "code_wrong", &format!("残り入力可能回数： {left}"));
    }
    let typed: String = code.to_lowercase().replace('-', " ");
    let (status, options) = doctor.post("/fido/register/start", json!({ "code": typed })).await;
    assert_eq!(status, 200, "{options}");
    // The fifth wrong entry voids it, and then even the right code is refused.
    assert_error(&doctor.link_with_code(&mut key, wrong).await, 403, "code_exhausted", "誤入力が多すぎた");
    assert_error(&doctor.link_with_code(&mut key, &code).await, 403, "code_exhausted", "無効");
    assert!(app.store().fido_credentials_of(&uid).await.unwrap().is_empty());

    // Issuing a new code voids the previous one.
    let first = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let second = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_ne!(first, second);
    let got = doctor.link_with_code(&mut key, &first).await;
    assert_eq!(got.0, 403, "{got:?}");
    // An expired code is refused as expired (a fresh login: the browser session idled out too).
    app.clock.advance(time::Duration::hours(24));
    let doctor = Browser::doctor(&app).await;
    assert_error(&doctor.link_with_code(&mut key, &second).await, 403, "code_expired", "有効期限");
    // A code that expires while the doctor is at the authenticator is refused at finish.
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let (third, _) = admin.enroll_code_issue(CLINIC, DOCTOR_LOGIN, 60, 5).await.unwrap();
    let (_, options) = doctor.post("/fido/register/start", json!({ "code": third.as_str() })).await;
    let credential: Value = serde_json::from_str(&key.create(&options)).unwrap();
    app.clock.advance(time::Duration::seconds(61));
    let got = doctor.post("/fido/register/finish", json!({ "credential": credential })).await;
    assert_error(&got, 403, "code_expired", "有効期限");
    // And a ceremony that outlives 120 s is refused as timed out.
    let fourth = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let (_, options) = doctor.post("/fido/register/start", json!({ "code": fourth })).await;
    let credential: Value = serde_json::from_str(&key.create(&options)).unwrap();
    app.clock.advance(time::Duration::seconds(120));
    assert_error(&doctor.post("/fido/register/finish", json!({ "credential": credential })).await, 400, "timed_out", "時間切れ");
    assert!(app.store().fido_credentials_of(&uid).await.unwrap().is_empty());
    let audit = events(&app).await;
    let reasons: Vec<String> = audit
        .iter()
        .filter(|(e, o, _)| e == "authenticator_linked" && o == "failure")
        .map(|(_, _, d)| d["reason"].as_str().unwrap().to_owned())
        .collect();
    for want in ["code_wrong", "code_malformed", "code_exhausted", "code_expired", "timed_out"] {
        assert!(reasons.iter().any(|r| r == want), "{want} in {reasons:?}");
    }
    app.stop().await;
}

async fn replayed_finish_is_refused_even_when_concurrent(db: Db) {
    let app = TestApp::spawn(db).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &code).await.0, 200);

    let (_, options) = doctor.post("/fido/auth/start", json!({})).await;
    let assertion: Value = serde_json::from_str(&key.get(&options)).unwrap();
    let body = json!({ "credential": assertion });
    assert_eq!(doctor.post("/fido/auth/finish", body.clone()).await.0, 200);
    assert_error(&doctor.post("/fido/auth/finish", body).await, 400, "ceremony_missing", "期限切れか、すでに完了");

    // Two finishes of one ceremony at the same moment: the database hands the state to one.
    let (_, options) = doctor.post("/fido/auth/start", json!({})).await;
    let assertion: Value = serde_json::from_str(&key.get(&options)).unwrap();
    let body = json!({ "credential": assertion });
    let (a, b) = tokio::join!(doctor.post("/fido/auth/finish", body.clone()), doctor.post("/fido/auth/finish", body));
    let ok = [a.0, b.0].iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 1, "{a:?} {b:?}");

    // A finish of another kind uses the ceremony up as well.
    let (_, options) = doctor.post("/fido/auth/start", json!({})).await;
    let assertion: Value = serde_json::from_str(&key.get(&options)).unwrap();
    let wrong_kind = doctor.post("/fido/register/finish", json!({ "credential": assertion })).await;
    assert_error(&wrong_kind, 400, "ceremony_missing", "期限切れか、すでに完了");
    let late = doctor.post("/fido/auth/finish", json!({ "credential": assertion })).await;
    assert_error(&late, 400, "ceremony_missing", "期限切れか、すでに完了");

    // A new start replaces the browser session's earlier ceremony: its assertion no longer fits.
    let (_, first) = doctor.post("/fido/auth/start", json!({})).await;
    let stale: Value = serde_json::from_str(&key.get(&first)).unwrap();
    let (_, second) = doctor.post("/fido/auth/start", json!({})).await;
    assert_ne!(first["publicKey"]["challenge"], second["publicKey"]["challenge"]);
    assert_error(&doctor.post("/fido/auth/finish", json!({ "credential": stale })).await, 400, "invalid_response", "");

    // And at the store level: a second take finds nothing, nor does another clinic's.
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let c = gateway::store::NewCeremony {
        session_hash: &[7; 32],
        user_id: &uid,
        clinic_id: CLINIC,
        purpose: gateway::store::CeremonyPurpose::Authenticate,
        state: "{}",
        enrollment_code_id: None,
        linked_via: None,
        expires_at: app.clock_now() + 120,
    };
    app.store().put_ceremony(&c, app.clock_now()).await.unwrap();
    let take = || app.store().take_ceremony(&[7; 32], &uid, CLINIC);
    assert!(app.store().take_ceremony(&[7; 32], &uid, OTHER_CLINIC).await.unwrap().is_none());
    assert_eq!(take().await.unwrap().map(|t| t.purpose), Some(gateway::store::CeremonyPurpose::Authenticate));
    assert!(take().await.unwrap().is_none());
    app.stop().await;
}

/// The take that a FIDO finish makes (one statement on PostgreSQL): the ceremony is taken whatever
/// the credential, the credential is the stored row or `None`, and a mismatched browser session,
/// doctor or clinic takes nothing.
async fn a_finish_takes_its_ceremony_and_reads_the_credential_together(db: Db) {
    let app = TestApp::spawn(db).await;
    let (_, _, uid) = signed_in_with_a_key(&app).await;
    let stored = app.store().fido_credentials_of(&uid).await.unwrap().remove(0);
    let store = app.store();
    let put = || async {
        let c = gateway::store::NewCeremony {
            session_hash: &[9; 32],
            user_id: &uid,
            clinic_id: CLINIC,
            purpose: gateway::store::CeremonyPurpose::Authenticate,
            state: "{\"s\":1}",
            enrollment_code_id: None,
            linked_via: Some("code:x"),
            expires_at: app.clock_now() + 120,
        };
        store.put_ceremony(&c, app.clock_now()).await.unwrap();
    };
    let take = |hash: [u8; 32], user: String, clinic: &'static str, cred: Vec<u8>| async move {
        store.take_ceremony_and_credential(&hash, &user, clinic, &cred).await.unwrap()
    };
    let before = store.count_ceremonies().await.unwrap();

    put().await;
    // Another clinic, doctor or browser session takes nothing and leaves the ceremony.
    assert!(take([9; 32], uid.clone(), OTHER_CLINIC, stored.credential_id.clone()).await.is_none());
    assert!(take([9; 32], "someone-else".into(), CLINIC, stored.credential_id.clone()).await.is_none());
    assert!(take([8; 32], uid.clone(), CLINIC, stored.credential_id.clone()).await.is_none());
    assert_eq!(store.count_ceremonies().await.unwrap(), before + 1);

    // A credential ID nobody has: the ceremony is taken, with no credential.
    let (taken, cred) = take([9; 32], uid.clone(), CLINIC, vec![1, 2, 3]).await.unwrap();
    assert_eq!((taken.purpose, taken.state.as_str(), taken.linked_via.as_deref()), (gateway::store::CeremonyPurpose::Authenticate, "{\"s\":1}", Some("code:x")));
    assert_eq!(taken.expires_at, app.clock_now() + 120);
    assert!(cred.is_none());
    assert_eq!(store.count_ceremonies().await.unwrap(), before);

    // The doctor's credential: the row as stored, and the ceremony taken once.
    put().await;
    let (_, cred) = take([9; 32], uid.clone(), CLINIC, stored.credential_id.clone()).await.unwrap();
    assert_eq!(cred.as_ref(), Some(&stored));
    assert!(take([9; 32], uid.clone(), CLINIC, stored.credential_id.clone()).await.is_none());
    assert_eq!(store.count_ceremonies().await.unwrap(), before);
    app.stop().await;
}

async fn finish_after_120_seconds_is_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &code).await.0, 200);
    let (_, options) = doctor.post("/fido/auth/start", json!({})).await;
    assert_eq!(options["publicKey"]["timeout"], 120_000);
    let assertion: Value = serde_json::from_str(&key.get(&options)).unwrap();
    app.clock.advance(time::Duration::seconds(120));
    assert_error(
        &doctor.post("/fido/auth/finish", json!({ "credential": assertion })).await,
        400,
        "timed_out",
        "時間切れ",
    );
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    assert!(app.store().current_signing_session(&uid, CLINIC).await.unwrap().is_none());
    // 119 s is still in time.
    let (_, options) = doctor.post("/fido/auth/start", json!({})).await;
    let assertion: Value = serde_json::from_str(&key.get(&options)).unwrap();
    app.clock.advance(time::Duration::seconds(119));
    assert_eq!(doctor.post("/fido/auth/finish", json!({ "credential": assertion })).await.0, 200);
    app.stop().await;
}

async fn credential_of_another_doctor_is_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    let doctor = Browser::doctor(&app).await;
    let other = Browser::other_clinic_doctor(&app).await;
    let mut mine = authenticator(&app);
    let mut theirs = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut mine, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(other.link_with_code(&mut theirs, &issue_code(&app, OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(doctor.authenticate(&mut mine).await.0, 200);

    // The other doctor answers their ceremony with this doctor's authenticator.
    assert_error(&other.authenticate(&mut mine).await, 403, "credential_of_another_doctor", "別の医師");
    let other_id = user_id(&app, OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await;
    assert!(app.store().current_signing_session(&other_id, OTHER_CLINIC).await.unwrap().is_none());
    // An unknown authenticator.
    let mut stranger = authenticator(&app);
    assert_error(&doctor.authenticate(&mut stranger).await, 403, "unknown_credential", "登録されていません");
    // This doctor's session is untouched by all of it, and the other doctor's own works.
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    assert!(app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().is_some());
    assert_eq!(other.authenticate(&mut theirs).await.0, 200);
    // Ending one doctor's session leaves the other's.
    assert_eq!(doctor.form("/signing-session/end", &[]).await.status(), 303);
    assert!(app.store().live_signing_session(&other_id, OTHER_CLINIC, app.clock_now()).await.unwrap().is_some());
    app.stop().await;
}

async fn removed_credential_is_refused_and_its_sessions_end(db: Db) {
    let app = TestApp::spawn(db).await;
    let doctor = Browser::doctor(&app).await;
    let mut a = authenticator(&app);
    let mut b = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut a, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    // The second one needs a fresh proof with the first (issue 15).
    assert_eq!(doctor.authenticate(&mut a).await.0, 200);
    assert_eq!(doctor.link_with_code(&mut b, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(doctor.authenticate(&mut a).await.0, 200);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let mut creds = app.store().fido_credentials_of(&uid).await.unwrap();
    creds.sort_by_key(|c| c.credential_id != a.credential_id); // a's first
    let session = app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().unwrap();
    assert_eq!(session.authenticator_id, creds[0].id);

    // Another doctor cannot remove or rename it.
    let other = Browser::other_clinic_doctor(&app).await;
    assert_eq!(other.form(&format!("/fido/credentials/{}/remove", creds[0].id), &[]).await.status(), 404);
    assert_eq!(other.form(&format!("/fido/credentials/{}/rename", creds[0].id), &[("name", "x")]).await.status(), 404);
    // Rename: a bad name is refused and changes nothing.
    let res = doctor.form(&format!("/fido/credentials/{}/rename", creds[0].id), &[("name", "  ")]).await;
    assert_eq!(res.status(), 400);
    let res = doctor.form(&format!("/fido/credentials/{}/rename", creds[0].id), &[("name", "診察室のキー")]).await;
    assert_eq!(res.status(), 303);
    let manage = doctor.client.get(app.url("/manage")).send().await.unwrap().text().await.unwrap();
    assert!(manage.contains("診察室のキー"), "{manage}");

    let res = doctor.form(&format!("/fido/credentials/{}/remove", creds[0].id), &[]).await;
    assert_eq!(res.status(), 303);
    let ended = app.store().signing_session(&session.id).await.unwrap();
    assert_eq!(ended.state(app.clock_now()), SigningSessionState::Ended("authenticator_removed".into()));
    assert!(!doctor.methods().await.contains("認証済み"));
    // The removed one is unknown now; the remaining one works.
    assert_error(&doctor.authenticate(&mut a).await, 403, "unknown_credential", "登録されていません");
    assert_eq!(doctor.authenticate(&mut b).await.0, 200);
    let audit = events(&app).await;
    assert!(audit.iter().any(|(e, _, d)| e == "signing_session_ended" && d["reason"] == "authenticator_removed"));
    assert!(audit.iter().any(|(e, _, d)| e == "authenticator_removed" && d["by"] == "doctor"));
    app.stop().await;
}

async fn counter_regression_is_refused_by_default(db: Db) {
    let app = TestApp::spawn(db).await;
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let before = app.store().current_signing_session(&uid, CLINIC).await.unwrap().unwrap();
    key.counter = 0; // a clone that lags behind: the next assertion says 1 < 2
    assert_error(&doctor.authenticate(&mut key).await, 403, "counter_regression", "複製された可能性");
    assert_eq!(app.store().fido_credentials_of(&uid).await.unwrap()[0].counter, 2, "never lowered");
    let after = app.store().current_signing_session(&uid, CLINIC).await.unwrap().unwrap();
    assert_eq!(after.id, before.id, "no new session was opened");
    app.stop().await;
}

async fn counter_regression_is_reported_when_the_policy_allows_it(db: Db) {
    let app = TestApp::builder(db).with_config(|c| c.fido.counter_policy = ::fido::CounterPolicy::Allow).spawn().await;
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    key.counter = 0;
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_eq!(app.store().fido_credentials_of(&uid).await.unwrap()[0].counter, 2, "never lowered");
    let audit = events(&app).await;
    assert!(audit.iter().any(|(e, o, d)| e == "authentication" && o == "success" && d["reason"] == "counter_regression_allowed"));
    app.stop().await;
}

async fn an_opening_refused_in_its_transaction_changes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let (doctor, _key, uid) = signed_in_with_a_key(&app).await;
    let cred = app.store().fido_credentials_of(&uid).await.unwrap().remove(0);
    let open = app.store().current_signing_session(&uid, CLINIC).await.unwrap().unwrap();
    let last_seq = app.store().audit_tail(1).await.unwrap()[0].seq;
    let now = app.clock_now();
    let cfg = &app.config.signing_session;
    let new = NewSigningSession {
        user_id: &uid,
        clinic_id: CLINIC,
        method: AuthMethod::Fido,
        authenticator_kind: "fido",
        authenticator_id: &cred.id,
        amr: &["pwd", "hwk", "mfa"],
        acr: "aal3",
        auth_time: now,
        absolute_secs: cfg.absolute_secs,
        idle_secs: cfg.idle_secs,
    };
    let checked = AuditEvent::Logout { clinic_id: CLINIC.into(), user_id: uid.clone() };
    // Another assertion with this counter was written first (a clone, another instance).
    let used = AuthenticatorUse::Fido { id: &cred.id, stored: None, counter: cred.counter, strict: true, required: true };
    let opening = Opening { checked: Some(&checked), used: Some(used), session_move: None };
    let refused = app.store().open_signing_session(&new, now, &opening).await;
    assert!(matches!(refused, Err(gateway::store::Error::Precondition(p)) if p.code() == "fido counter"), "{refused:?}");
    // The browser session was signed out meanwhile: its move finds nothing.
    let used = AuthenticatorUse::Fido { id: &cred.id, stored: None, counter: cred.counter + 1, strict: true, required: true };
    let gone = SessionMove { from: [9; 32], to: [8; 32], expires_at: now + 60 };
    let opening = Opening { checked: Some(&checked), used: Some(used), session_move: Some(&gone) };
    let refused = app.store().open_signing_session(&new, now, &opening).await;
    assert!(matches!(refused, Err(gateway::store::Error::Precondition(p)) if p.code() == "browser session"), "{refused:?}");
    // Both at once (on PostgreSQL one statement writes both): the counter is the refusal named.
    let used = AuthenticatorUse::Fido { id: &cred.id, stored: None, counter: cred.counter, strict: true, required: true };
    let opening = Opening { checked: Some(&checked), used: Some(used), session_move: Some(&gone) };
    let refused = app.store().open_signing_session(&new, now, &opening).await;
    assert!(matches!(refused, Err(gateway::store::Error::Precondition(p)) if p.code() == "fido counter"), "{refused:?}");

    let still = app.store().current_signing_session(&uid, CLINIC).await.unwrap().unwrap();
    assert_eq!((still.state(now), still.id), (SigningSessionState::Live, open.id), "the open session was not superseded");
    assert_eq!(app.store().fido_credentials_of(&uid).await.unwrap()[0].counter, cred.counter, "counter rolled back");
    assert_eq!(app.store().audit_tail(1).await.unwrap()[0].seq, last_seq, "nothing audited");
    assert_eq!(doctor.client.get(app.url("/methods")).send().await.unwrap().status(), 200, "still signed in");
    app.stop().await;
}

/// Links and authenticates; returns the signing session id.
/// The doctor signed in, a software authenticator linked with a registration code and used
/// once (a signing session open): the browser, the authenticator and the doctor's user id.
async fn signed_in_with_a_key(app: &TestApp) -> (Browser<'_>, SoftAuthenticator, String) {
    let doctor = Browser::doctor(app).await;
    let mut key = authenticator(app);
    assert_eq!(doctor.link_with_code(&mut key, &issue_code(app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    let uid = user_id(app, CLINIC, DOCTOR_LOGIN).await;
    (doctor, key, uid)
}

async fn open_session(app: &TestApp) -> (String, String) {
    let (_, _, uid) = signed_in_with_a_key(app).await;
    (app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().unwrap().id, uid)
}

async fn signing_session_idle_timeout_is_extended_by_activity(db: Db) {
    let app = TestApp::spawn(db).await;
    let (sid, uid) = open_session(&app).await;
    let minutes = |m| time::Duration::minutes(m);
    app.clock.advance(minutes(14));
    assert!(matches!(app.store().touch_signing_session(&sid, app.clock_now()).await.unwrap(), TouchOutcome::Live(_)));
    app.clock.advance(minutes(14));
    assert!(matches!(app.store().touch_signing_session(&sid, app.clock_now()).await.unwrap(), TouchOutcome::Live(_)));
    app.clock.advance(minutes(15));
    match app.store().touch_signing_session(&sid, app.clock_now()).await.unwrap() {
        TouchOutcome::NotLive(s) => assert_eq!(s.state(app.clock_now()), SigningSessionState::ExpiredIdle),
        other => panic!("{other:?}"),
    }
    // Expiry does not come back by touching again, and the page no longer says 認証済み.
    assert!(matches!(app.store().touch_signing_session(&sid, app.clock_now()).await.unwrap(), TouchOutcome::NotLive(_)));
    assert!(app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().is_none());
    assert_eq!(app.store().touch_signing_session("nope", app.clock_now()).await.unwrap(), TouchOutcome::NotFound);
    app.stop().await;
}

async fn signing_session_absolute_lifetime_holds_despite_activity(db: Db) {
    let app = TestApp::builder(db)
        .with_config(|c| {
            c.signing_session.absolute_secs = 1800;
            c.signing_session.idle_secs = 900;
        })
        .spawn()
        .await;
    let (sid, _) = open_session(&app).await;
    for _ in 0..2 {
        app.clock.advance(time::Duration::minutes(14));
        assert!(matches!(app.store().touch_signing_session(&sid, app.clock_now()).await.unwrap(), TouchOutcome::Live(_)));
    }
    app.clock.advance(time::Duration::minutes(2)); // 30 min after auth_time, 2 min after activity
    match app.store().touch_signing_session(&sid, app.clock_now()).await.unwrap() {
        TouchOutcome::NotLive(s) => assert_eq!(s.state(app.clock_now()), SigningSessionState::ExpiredAbsolute),
        other => panic!("{other:?}"),
    }
    app.stop().await;
}

async fn sessions_beyond_aal3_are_issued_as_aal2(db: Db) {
    let app = TestApp::builder(db)
        .with_config(|c| {
            c.signing_session.absolute_secs = 13 * 3600;
            c.signing_session.beyond_aal3 = true;
        })
        .spawn()
        .await;
    let (sid, _) = open_session(&app).await;
    let s = app.store().signing_session(&sid).await.unwrap();
    assert_eq!(s.acr, "aal2");
    assert_eq!(s.expires_at - s.auth_time, 13 * 3600);
    app.stop().await;
}

async fn logout_and_account_disable_end_the_signing_session(db: Db) {
    let app = TestApp::spawn(db).await;
    let (_first, mut key, uid) = signed_in_with_a_key(&app).await;
    let sid = app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().unwrap().id;
    app.clock.advance(time::Duration::seconds(1)); // sessions of one second would tie in "most recent"
    let doctor = Browser::doctor(&app).await; // a second browser of the same doctor
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    let superseded = app.store().signing_session(&sid).await.unwrap();
    assert_eq!(superseded.state(app.clock_now()), SigningSessionState::Ended("superseded".into()));
    app.clock.advance(time::Duration::seconds(1)); // sessions of one second would tie in "most recent"
    assert_eq!(doctor.form("/logout", &[]).await.status(), 303);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let last = app.store().current_signing_session(&uid, CLINIC).await.unwrap().unwrap();
    assert_eq!(last.state(app.clock_now()), SigningSessionState::Ended("logout".into()));

    app.clock.advance(time::Duration::seconds(1));
    let doctor = Browser::doctor(&app).await;
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    let admin = Admin { store: app.store(), now: app.clock_now() };
    admin.user_set_enabled(CLINIC, DOCTOR_LOGIN, false).await.unwrap();
    let last = app.store().current_signing_session(&uid, CLINIC).await.unwrap().unwrap();
    assert_eq!(last.state(app.clock_now()), SigningSessionState::Ended("account_disabled".into()));
    app.stop().await;
}

async fn json_endpoints_refuse_bad_requests_clearly(db: Db) {
    let app = TestApp::spawn(db).await;
    // Not signed in: a JSON 401, not a redirect.
    let anonymous = Browser { app: &app, client: app.clinic_client() };
    assert_error(&anonymous.post("/fido/auth/start", json!({})).await, 401, "login_required", "もう一度ログイン");
    let doctor = Browser::doctor(&app).await;
    let res = doctor
        .client
        .post(app.url("/fido/register/start"))
        .header("origin", app.origin())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "bad_request");
    assert_error(&doctor.post("/fido/auth/start", json!({})).await, 409, "no_credentials", "登録されていません");
    assert_error(&doctor.post("/fido/auth/finish", json!({ "credential": {} })).await, 400, "ceremony_missing", "最初から");
    // English.
    let (status, body) = {
        let res = doctor.client.post(app.url("/fido/register/start?lang=en")).header("origin", app.origin()).json(&json!({"code": "x"})).send().await.unwrap();
        (res.status(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("24 characters"), "{body}");
    // Without this gateway's Origin, nothing happens.
    let res = doctor.client.post(app.url("/fido/register/start")).header("origin", "https://evil.example").json(&json!({"code": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // Cancelling drops the ceremony.
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(doctor.post("/fido/auth/start", json!({})).await.0, 200);
    assert_eq!(app.store().count_ceremonies().await.unwrap(), 1);
    assert_eq!(doctor.post("/fido/cancel", json!({})).await.0, 200);
    assert_eq!(app.store().count_ceremonies().await.unwrap(), 0);
    assert!(events(&app).await.iter().any(|(e, o, d)| e == "authentication" && o == "failure" && d["reason"] == "cancelled"));
    app.stop().await;
}

/// Runs `gateway --config <app config> <args>` in-process; returns (exit code, output).
async fn cli(app: &TestApp, args: &[&str]) -> (i32, String) {
    let path = app.dir.path().join("fido-cli.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[database]\nurl = {:?}\n[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
            app.config.data_dir.display().to_string(),
            app.config.database.url
        ),
    )
    .unwrap();
    let mut argv = vec!["gateway".to_owned(), "--config".to_owned(), path.display().to_string()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = gateway::cli::run(argv, &mut out, &mut err, &mut std::io::empty()).await;
    (code, String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap())
}

async fn operators_manage_codes_credentials_and_sessions(db: Db) {
    let app = TestApp::spawn(db).await;
    let rows = || async { app.store().audit_tail(10_000).await.unwrap().len() };
    // Bad input: a clear error and no write, not even an audit row.
    let before = rows().await;
    for (args, want) in [
        (&["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", STAFF_LOGIN][..], "not a doctor"),
        (&["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", "nobody"][..], "no user nobody"),
        (&["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN, "--expires-hours", "0"][..], "between 1 and 720"),
        (&["admin", "enroll-code", "revoke", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN][..], "no open registration code"),
        (&["admin", "fido", "remove", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN, "--id", "x"][..], "has no FIDO credential"),
        (&["admin", "session", "revoke", "--id", "x"][..], "no open signing session"),
        (&["admin", "session", "revoke"][..], "either --id"),
        (&["admin", "session", "list", "--login-id", DOCTOR_LOGIN][..], "needs --clinic"),
    ] {
        let (code, out) = cli(&app, args).await;
        assert_ne!(code, 0, "{args:?}: {out}");
        assert!(out.contains(want), "{args:?}: {want:?} not in {out}");
    }
    assert_eq!(rows().await, before, "refused commands write nothing");

    // Issue prints the code once; a second issue voids the first; revoke voids the second.
    let (code, out) = cli(&app, &["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN]).await;
    assert_eq!(code, 0, "{out}");
    let first = out.lines().map(str::trim).find(|l| l.len() == 29 && l.matches('-').count() == 5).unwrap().to_owned();
    let (_, out) = cli(&app, &["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN]).await;
    assert!(out.contains("previous open code"), "{out}");
    let second = out.lines().map(str::trim).find(|l| l.len() == 29 && l.matches('-').count() == 5).unwrap().to_owned();
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &first).await.0, 403);
    assert_eq!(cli(&app, &["admin", "enroll-code", "revoke", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN]).await.0, 0);
    assert_error(&doctor.link_with_code(&mut key, &second).await, 403, "code_voided", "無効");
    let all = serde_json::to_string(&app.store().audit_tail(10_000).await.unwrap()).unwrap();
    assert!(!all.contains(&first) && !all.contains(&second), "codes never reach the audit log");

    // List and remove a credential; its signing session ends.
    let (_, out) = cli(&app, &["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN]).await;
    let third = out.lines().map(str::trim).find(|l| l.len() == 29 && l.matches('-').count() == 5).unwrap().to_owned();
    assert_eq!(doctor.link_with_code(&mut key, &third).await.0, 200);
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    let (code, out) = cli(&app, &["admin", "fido", "list", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN]).await;
    assert_eq!(code, 0);
    let id = out.split('\t').next().unwrap().to_owned();
    assert!(out.contains("Key") && out.contains("device-bound"), "{out}");
    let (code, out) = cli(&app, &["admin", "session", "list", "--clinic", CLINIC]).await;
    assert!(code == 0 && out.contains("\tlive\t") && out.contains("aal3"), "{out}");
    // Sessions name the doctor by login ID as well as by id.
    assert!(out.contains(&format!("\t{CLINIC}\t{DOCTOR_LOGIN}\t")), "{out}");
    let (code, out) = cli(&app, &["admin", "fido", "remove", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN, "--id", &id]).await;
    assert!(code == 0 && out.contains("1 signing session(s) ended"), "{out}");
    assert!(!doctor.methods().await.contains("認証済み"));

    // Session revoke by doctor.
    let mut other = authenticator(&app);
    let (_, out) = cli(&app, &["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN]).await;
    let fourth = out.lines().map(str::trim).find(|l| l.len() == 29 && l.matches('-').count() == 5).unwrap().to_owned();
    // Listed while open, by id, clinic and login ID, never the code itself.
    let (code, listed) = cli(&app, &["admin", "enroll-code", "list", "--clinic", CLINIC]).await;
    assert_eq!(code, 0, "{listed}");
    let open: Vec<&str> = listed.lines().filter(|l| l.contains("\topen until ")).collect();
    assert_eq!(open.len(), 1, "{listed}");
    assert!(open[0].contains(&format!("\t{CLINIC}\t{DOCTOR_LOGIN}\t")) && !listed.contains(&fourth), "{listed}");
    assert_eq!(doctor.link_with_code(&mut other, &fourth).await.0, 200);
    assert_eq!(doctor.authenticate(&mut other).await.0, 200);
    let (code, out) = cli(&app, &["admin", "session", "revoke", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN]).await;
    assert!(code == 0 && out.contains("1 signing session(s) ended"), "{out}");
    // Once used, a code leaves the default list and shows under --all.
    let (_, listed) = cli(&app, &["admin", "enroll-code", "list", "--clinic", CLINIC]).await;
    assert!(!listed.contains("\topen until "), "{listed}");
    let (_, all) = cli(&app, &["admin", "enroll-code", "list", "--all"]).await;
    assert!(all.lines().filter(|l| l.contains("\tused ")).count() >= 2, "{all}");
    let audit = events(&app).await;
    assert!(audit.iter().any(|(e, _, d)| e == "signing_session_ended" && d["reason"] == "operator"));
    assert!(audit.iter().any(|(e, _, d)| e == "authenticator_removed" && d["by"] == "operator"));
    app.stop().await;
}

/// The last three audit rows as (event, outcome, session id, reason).
async fn last_three(app: &TestApp) -> Vec<(String, String, Option<String>, Option<String>)> {
    let events = events(app).await;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    events[events.len() - 3..].iter().map(|(e, o, d)| (e.clone(), o.clone(), text(&d["session_id"]), text(&d["reason"]))).collect()
}

/// What an opening that ended `old` for `reason` and opened `new` audits, in order, in its commit.
fn opening_rows(old: &str, reason: &str, new: &str) -> Vec<(String, String, Option<String>, Option<String>)> {
    let row = |e: &str, session: &str, reason: Option<&str>| (e.to_owned(), "success".to_owned(), Some(session.to_owned()), reason.map(str::to_owned));
    vec![
        ("authentication".to_owned(), "success".to_owned(), None, None),
        row("signing_session_ended", old, Some(reason)),
        row("signing_session_opened", new, None),
    ]
}

/// An opening ends the doctor's open session at the clinic in its own commit: as `superseded`
/// while it is live, as `expired` once it is past its idle timeout, audited in order between the
/// check and the opening (on PostgreSQL the end and the opening are separate statements of one
/// transaction, decision 0026).
async fn an_opening_ends_the_open_session_superseded_or_expired(db: Db) {
    let app = TestApp::spawn(db).await;
    let (_first, mut key, uid) = signed_in_with_a_key(&app).await;
    let live = async |app: &TestApp| app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().unwrap().id;
    let one = live(&app).await;
    app.clock.advance(time::Duration::seconds(1));
    let second = Browser::doctor(&app).await;
    assert_eq!(second.authenticate(&mut key).await.0, 200);
    let two = live(&app).await;
    assert_eq!(last_three(&app).await, opening_rows(&one, "superseded", &two));

    app.clock.advance(time::Duration::seconds(app.config.signing_session.idle_secs + 1));
    let third = Browser::doctor(&app).await;
    assert_eq!(third.authenticate(&mut key).await.0, 200);
    let three = live(&app).await;
    assert_eq!(last_three(&app).await, opening_rows(&two, "expired", &three));
    for (id, state) in [(&one, "superseded"), (&two, "expired")] {
        assert_eq!(app.store().signing_session(id).await.unwrap().state(app.clock_now()), SigningSessionState::Ended(state.into()));
    }
    let current = app.store().current_signing_session(&uid, CLINIC).await.unwrap().unwrap();
    assert_eq!((current.id, current.ended_at), (three, None));
    app.stop().await;
}

db_tests!(
    operators_manage_codes_credentials_and_sessions,
    link_with_code_then_authenticate_opens_a_signing_session,
    session_id_rotates_when_the_signing_session_opens,
    link_another_authenticator_after_confirming_with_a_linked_one,
    wrong_expired_and_exhausted_codes_are_refused,
    replayed_finish_is_refused_even_when_concurrent,
    a_finish_takes_its_ceremony_and_reads_the_credential_together,
    finish_after_120_seconds_is_refused,
    credential_of_another_doctor_is_refused,
    removed_credential_is_refused_and_its_sessions_end,
    counter_regression_is_refused_by_default,
    an_opening_refused_in_its_transaction_changes_nothing,
    counter_regression_is_reported_when_the_policy_allows_it,
    signing_session_idle_timeout_is_extended_by_activity,
    signing_session_absolute_lifetime_holds_despite_activity,
    sessions_beyond_aal3_are_issued_as_aal2,
    logout_and_account_disable_end_the_signing_session,
    an_opening_ends_the_open_session_superseded_or_expired,
    json_endpoints_refuse_bad_requests_clearly,
);
