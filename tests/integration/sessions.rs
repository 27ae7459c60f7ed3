//! Issue 15: browser sessions bound to their device certificate with an absolute lifetime,
//! re-authentication before changing authenticators, temporary passwords and the strength rule.

use devpki::{Leaf, LeafSpec, LeafUsage};
use gateway::admin::{Admin, PasswordChoice};
use gateway::store::SigningSessionState;
use serde_json::json;
use zeroize::Zeroizing;

use crate::admin_cli::cli;
use crate::fido_login::{Browser, assert_error, authenticator, events, issue_code, user_id};
use crate::helpers::*;

/// A strong password none of the seeded users has.
const NEW_PASSWORD: &str = "violet tundra of spoons";

fn chosen(p: &str) -> PasswordChoice {
    PasswordChoice::Chosen(Zeroizing::new(p.to_owned()))
}

/// A second device certificate registered to [`CLINIC`].
async fn second_device(app: &TestApp) -> Leaf {
    let now = app.clock.now();
    let leaf = app.pki.clinic_ca.issue(&LeafSpec::new("clinic-21234-pc2", LeafUsage::TlsClient, now, 30)).unwrap();
    let path = app.dir.path().join("pc2.pem");
    std::fs::write(&path, &leaf.cert_pem).unwrap();
    Admin { store: app.store(), now: app.clock_now() }.clinic_cert_add(CLINIC, &path, None).await.unwrap();
    leaf
}

fn location(res: &reqwest::Response) -> String {
    res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

async fn status_of(client: &reqwest::Client, app: &TestApp, path: &str) -> u16 {
    client.get(app.url(path)).send().await.unwrap().status().as_u16()
}

async fn changing_authenticators_needs_a_fresh_proof(db: Db) {
    let app = TestApp::spawn(db).await;
    let window = app.config.login.reauth_secs;
    let doctor = Browser::doctor(&app).await;
    let mut first = authenticator(&app);
    // The first authenticator is linked with the registration code alone.
    assert_eq!(doctor.link_with_code(&mut first, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let first_id = app.store().fido_credentials_of(&uid).await.unwrap()[0].id.clone();
    let rename = |name: &'static str| {
        let path = format!("/fido/credentials/{first_id}/rename");
        let doctor = &doctor;
        async move { doctor.form(&path, &[("name", name)]).await }
    };

    // Password only: renaming, removing and adding a second one are refused, and change nothing.
    let res = rename("診察室").await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("直前に登録済みのカードまたはFIDO認証器での本人確認が必要"));
    assert_eq!(doctor.form(&format!("/fido/credentials/{first_id}/remove"), &[]).await.status(), 403);
    let mut second = authenticator(&app);
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    assert_error(&doctor.link_with_code(&mut second, &code).await, 403, "reauth_required", "直前に");
    let (status, body) = doctor.post("/auth/card/challenge", json!({ "card": "hpki", "purpose": "link", "code": code })).await;
    assert_error(&(status, body), 403, "reauth_required", "直前に");
    let creds = app.store().fido_credentials_of(&uid).await.unwrap();
    assert_eq!((creds.len(), creds[0].name.as_str()), (1, "Key"));
    assert!(app.store().enrollment_code_of(&uid).await.unwrap().is_some_and(|c| c.used_at.is_none() && c.failures == 0));

    // Right after a FIDO proof (the signing-session opening) all three are allowed.
    assert_eq!(doctor.authenticate(&mut first).await.0, 200);
    assert_eq!(rename("診察室").await.status(), 303);
    assert_eq!(doctor.link_with_code(&mut second, &code).await.0, 200);
    let creds = app.store().fido_credentials_of(&uid).await.unwrap();
    assert_eq!(creds.len(), 2);
    let second_id = creds.iter().find(|c| c.credential_id == second.credential_id).unwrap().id.clone();
    assert_eq!(doctor.form(&format!("/fido/credentials/{second_id}/remove"), &[]).await.status(), 303);

    // Once the window has passed, refused again.
    app.clock.advance(time::Duration::seconds(window + 1));
    assert_eq!(rename("待合室").await.status(), 403);
    assert_eq!(doctor.form(&format!("/fido/credentials/{first_id}/remove"), &[]).await.status(), 403);
    let mut third = authenticator(&app);
    assert_error(&doctor.link_with_code(&mut third, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await, 403, "reauth_required", "");
    // A presence check for linking is a proof too.
    let (status, request) = doctor.post("/fido/link/start", json!({})).await;
    assert_eq!(status, 200, "{request}");
    let assertion: serde_json::Value = serde_json::from_str(&first.get(&request)).unwrap();
    assert_eq!(doctor.post("/fido/link/finish", json!({ "credential": assertion })).await.0, 200);
    assert_eq!(rename("待合室").await.status(), 303);
    let creds = app.store().fido_credentials_of(&uid).await.unwrap();
    assert_eq!((creds.len(), creds[0].name.as_str()), (1, "待合室"));

    let audit = events(&app).await;
    let refused: Vec<_> = audit.iter().filter(|(e, _, d)| e == "authenticator_change_refused" && d["reason"] == "reauth_required").collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    let link_refusals = audit.iter().filter(|(e, o, d)| e == "authenticator_linked" && o == "failure" && d["reason"] == "reauth_required");
    assert_eq!(link_refusals.count(), 3, "FIDO and card before the proof, FIDO after the window");
    app.stop().await;
}

async fn browser_session_ends_at_its_absolute_lifetime(db: Db) {
    let app = TestApp::spawn(db).await;
    let (idle, absolute) = (app.config.login.session_idle_secs, app.config.login.session_absolute_secs);
    let client = app.clinic_client();
    assert_eq!(app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 303);
    // Used every half idle time: the idle timeout is never reached.
    let step = idle / 2;
    let mut elapsed = 0;
    while elapsed + step < absolute {
        app.clock.advance(time::Duration::seconds(step));
        elapsed += step;
        assert_eq!(status_of(&client, &app, "/methods").await, 200, "{elapsed} s after the login");
    }
    app.clock.advance(time::Duration::seconds(absolute - elapsed));
    assert_eq!(status_of(&client, &app, "/methods").await, 303, "the absolute lifetime ends an active session");
    // A new login starts a new lifetime.
    assert_eq!(app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 303);
    assert_eq!(status_of(&client, &app, "/methods").await, 200);
    app.stop().await;
}

async fn cookie_is_bound_to_the_device_certificate(db: Db) {
    let app = TestApp::spawn(db).await;
    let pc2 = second_device(&app).await;
    let client = app.clinic_client();
    let res = app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next().filter(|kv| kv.starts_with(gateway::http::SESSION_COOKIE)))
        .unwrap()
        .to_owned();
    // The same cookie from the clinic's other device: no session there.
    let other = app.client(Some(&pc2));
    let res = other.get(app.url("/methods")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/login".to_owned()));
    let page = other.get(app.url("/login")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200, "the login form, not the signed-in redirect");
    // Still valid on its own device.
    let res = app.clinic_client().get(app.url("/methods")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(status_of(&client, &app, "/methods").await, 200);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let audit = events(&app).await;
    let refused: Vec<_> = audit.iter().filter(|(e, o, _)| e == "browser_session_refused" && o == "failure").collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|(_, _, d)| d["reason"] == "device_mismatch"));
    let row = app.store().audit_tail(50).await.unwrap().into_iter().find(|r| r.event == "browser_session_refused").unwrap();
    assert_eq!(row.user_id.as_deref(), Some(uid.as_str()));
    app.stop().await;
}

async fn operator_password_change_ends_browser_and_signing_sessions(db: Db) {
    let app = TestApp::spawn(db).await;
    let doctor = Browser::doctor(&app).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &issue_code(&app, CLINIC, DOCTOR_LOGIN).await).await.0, 200);
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);
    let uid = user_id(&app, CLINIC, DOCTOR_LOGIN).await;
    let signing = app.store().live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().unwrap();
    // Another doctor's sessions are not touched.
    let other = Browser::login(&app, app.client(Some(&app.pki.other_clinic_client)), OTHER_DOCTOR_LOGIN, OTHER_DOCTOR_PASSWORD).await;

    let admin = Admin { store: app.store(), now: app.clock_now() };
    let hasher = app.state.passwords.clone();
    admin.user_set_password(&hasher, CLINIC, DOCTOR_LOGIN, PasswordChoice::Generate).await.unwrap();

    assert_eq!(status_of(&doctor.client, &app, "/methods").await, 303, "the browser session ended");
    let ended = app.store().signing_session(&signing.id).await.unwrap();
    assert_eq!(ended.state(app.clock_now()), SigningSessionState::Ended("password_changed".into()));
    assert_eq!(status_of(&other.client, &app, "/methods").await, 200);
    // The old password no longer signs in.
    let res = app.login(&app.clinic_client(), DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
    assert_eq!(res.status(), 403);
    let audit = events(&app).await;
    assert!(audit.iter().any(|(e, _, d)| e == "signing_session_ended" && d["reason"] == "password_changed"));
    assert!(audit.iter().any(|(e, _, d)| e == "password_changed"
        && d["by"] == "operator"
        && d["temporary"] == true
        && d["browser_sessions_ended"] == 1));
    app.stop().await;
}

async fn temporary_password_forces_the_change_page(db: Db) {
    let app = TestApp::spawn(db).await;
    let temporary = "amber lantern in the fog";
    let (code, out) = cli(&app, &["admin", "user", "set-password", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN, "--password-stdin"], &format!("{temporary}\n")).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("temporary"), "{out}");
    // A second browser that signs in with the temporary password too.
    let elsewhere = app.clinic_client();
    assert_eq!(location(&app.login(&elsewhere, DOCTOR_LOGIN, temporary).await), "/password");

    let client = app.clinic_client();
    let res = app.login(&client, DOCTOR_LOGIN, temporary).await;
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/password".to_owned()));
    // Nothing but the change page until then.
    let res = client.get(app.url("/methods")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/password".to_owned()));
    let res = client.post(app.url("/fido/auth/start")).header("origin", app.origin()).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "password_change_required");
    let ja = client.get(app.url("/password")).send().await.unwrap().text().await.unwrap();
    assert!(ja.contains("パスワードの変更") && ja.contains("一時パスワード"), "{ja}");
    let en = client.get(app.url("/password?lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(en.contains("Choose a new password") && en.contains("temporary password"), "{en}");

    let change = |new: &str, confirm: &str, lang: &str| {
        let form = [("current_password", temporary.to_owned()), ("new_password", new.to_owned()), ("confirm", confirm.to_owned())];
        let url = app.url(&format!("/password?lang={lang}"));
        let req = client.post(url).header("origin", app.origin()).form(&form);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), location(&res), res.text().await.unwrap())
        }
    };
    for (new, confirm, lang, text) in [
        ("password123!", "password123!", "ja", "よく使われるパスワード"),
        ("password123!", "password123!", "en", "list of common passwords"),
        ("abcdefgh1", "abcdefgh1", "en", "too easy to guess"),
        ("doctor1 blue harbour", "doctor1 blue harbour", "ja", "ログインIDや氏名を含む"),
        ("clinic violet tundra", "clinic violet tundra", "ja", "このサービスや医療機関に関係する語"),
        ("violet 処方箋 tundra", "violet 処方箋 tundra", "en", "words tied to this service"),
        ("short", "short", "en", "8–256 characters"),
        (NEW_PASSWORD, "violet tundra of spoon", "en", "do not match"),
        (temporary, temporary, "ja", "現在のパスワードと異なる"),
        (temporary, temporary, "en", "must differ from the current one"),
    ] {
        let (status, _, body) = change(new, confirm, lang).await;
        assert_eq!(status, 400, "{new:?}");
        assert!(body.contains(text), "{new:?}: {text:?} not in {body}");
    }
    let audit = events(&app).await;
    let reasons: Vec<_> = audit.iter().filter(|(e, o, _)| e == "password_changed" && o == "failure").map(|(_, _, d)| d["reason"].clone()).collect();
    assert_eq!(reasons, ["common", "common", "weak", "personal", "context", "context", "length", "mismatch", "same_as_old", "same_as_old"]);
    // Refusals changed nothing: the temporary password still signs in to the change page.
    assert_eq!(location(&app.login(&app.clinic_client(), DOCTOR_LOGIN, temporary).await), "/password");

    let (status, to, _) = change(NEW_PASSWORD, NEW_PASSWORD, "en").await;
    assert_eq!((status, to.as_str()), (303, "/methods?done=password&lang=en"));
    let page = client.get(app.url("/methods?done=password&lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Your password has been changed"));
    // The other browsers signed in with the temporary password are signed out.
    assert_eq!(location(&elsewhere.get(app.url("/methods")).send().await.unwrap()), "/login");
    // The new password signs in straight to the methods; the temporary one no longer works.
    assert_eq!(location(&app.login(&app.clinic_client(), DOCTOR_LOGIN, NEW_PASSWORD).await), "/manage");
    assert_eq!(app.login(&app.clinic_client(), DOCTOR_LOGIN, temporary).await.status(), 403);
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    assert!(!user.password_temporary);
    assert!(events(&app).await.iter().any(|(e, o, d)| e == "password_changed" && o == "success" && d["by"] == "user"));

    // A reset never gives a password the doctor keeps (ASVS V6.4.6): set-password has no
    // --permanent, and what it sets is temporary.
    let (code, out) = cli(&app, &["admin", "user", "set-password", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN, "--password-stdin", "--permanent"], "amber lantern in the fog\n").await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(location(&app.login(&app.clinic_client(), DOCTOR_LOGIN, NEW_PASSWORD).await), "/manage", "nothing changed");
    // A generated password is temporary too unless --permanent.
    let (code, out) = cli(&app, &["admin", "user", "add", "--clinic", CLINIC, "--login-id", "doctor3", "--name", "新井 三郎", "--medical-reg-no", "333333"], "").await;
    assert_eq!(code, 0, "{out}");
    let generated_temporary = out.lines().find_map(|l| l.strip_prefix("password: ")).unwrap().to_owned();
    assert_eq!(location(&app.login(&app.clinic_client(), "doctor3", &generated_temporary).await), "/password");
    let (code, out) = cli(&app, &["admin", "user", "add", "--clinic", CLINIC, "--login-id", "doctor4", "--name", "新井 四郎", "--medical-reg-no", "444444", "--permanent"], "").await;
    assert_eq!(code, 0, "{out}");
    let generated = out.lines().find_map(|l| l.strip_prefix("password: ")).unwrap().to_owned();
    assert_eq!(location(&app.login(&app.clinic_client(), "doctor4", &generated).await), "/manage");

    // A temporary password works only login.temporary_password_secs after it was set (ASVS
    // V6.4.1); the refusal says so, and a new one from the operator works again.
    // (The CLI runs on the system clock; the gateway on the test's: start from the stored time.)
    let ttl = app.state.config.login.temporary_password_secs;
    let set_at = app.store().user_by_login(CLINIC, "doctor3").await.unwrap().password_set_at;
    app.clock.set(time::OffsetDateTime::from_unix_timestamp(set_at + ttl - 1).unwrap());
    assert_eq!(location(&app.login(&app.clinic_client(), "doctor3", &generated_temporary).await), "/password");
    app.clock.advance(time::Duration::seconds(1));
    let res = app.login(&app.clinic_client(), "doctor3", &generated_temporary).await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("一時パスワードの有効期限が切れています"));
    let res = app.clinic_client().post(app.url("/login?lang=en")).header("origin", app.origin())
        .form(&[("login_id", "doctor3"), ("password", generated_temporary.as_str())]).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("This temporary password has expired"));
    assert!(events(&app).await.iter().any(|(e, o, d)| e == "login" && o == "failure" && d["reason"] == "temporary_password_expired"));
    // A permanent password does not expire.
    assert_eq!(location(&app.login(&app.clinic_client(), "doctor4", &generated).await), "/manage");
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let renewed = admin.user_set_password(&app.state.passwords, CLINIC, "doctor3", PasswordChoice::Generate).await.unwrap();
    assert_eq!(location(&app.login(&app.clinic_client(), "doctor3", &renewed).await), "/password");
    app.stop().await;
}

/// ASVS V6.2.2 and V6.2.3: a doctor changes their own password from the methods page, giving the
/// current one; wrong current passwords count towards the login lockout.
async fn voluntary_password_change_needs_the_current_password(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = app.clinic_client();
    assert_eq!(location(&app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await), "/manage");
    let elsewhere = app.clinic_client();
    assert_eq!(location(&app.login(&elsewhere, DOCTOR_LOGIN, DOCTOR_PASSWORD).await), "/manage");
    let methods = client.get(app.url("/methods")).send().await.unwrap().text().await.unwrap();
    assert!(methods.contains(r#"href="/password?lang=ja""#) && methods.contains("パスワードの変更"), "{methods}");
    let page = client.get(app.url("/password?lang=en")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"name="current_password""#) && page.contains(r#"autocomplete="current-password""#), "{page}");
    assert!(page.contains("Enter your current password") && !page.contains("temporary password"), "{page}");
    // Without a sign-in there is no page.
    assert_eq!(status_of(&app.clinic_client(), &app, "/password").await, 303);

    let change = |current: &str, new: &str, lang: &str| {
        let mut form = vec![("new_password", new.to_owned()), ("confirm", new.to_owned())];
        if !current.is_empty() {
            form.push(("current_password", current.to_owned()));
        }
        let req = client.post(app.url(&format!("/password?lang={lang}"))).header("origin", app.origin()).form(&form);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), location(&res), res.text().await.unwrap())
        }
    };
    let (status, _, body) = change("", NEW_PASSWORD, "en").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = change("correct horse batterY", NEW_PASSWORD, "ja").await;
    assert_eq!(status, 403);
    assert!(body.contains("現在のパスワードが正しくありません"), "{body}");
    let (status, _, body) = change("not it at all", NEW_PASSWORD, "en").await;
    assert_eq!(status, 403);
    assert!(body.contains("The current password is not correct"), "{body}");
    // Nothing changed: the old password still signs in (which also clears the failure count).
    assert_eq!(location(&app.login(&app.clinic_client(), DOCTOR_LOGIN, DOCTOR_PASSWORD).await), "/manage");
    // With the right current password the strength rule still applies.
    let (status, _, body) = change(DOCTOR_PASSWORD, "password123!", "en").await;
    assert_eq!(status, 400);
    assert!(body.contains("list of common passwords"), "{body}");

    let (status, to, _) = change(DOCTOR_PASSWORD, NEW_PASSWORD, "en").await;
    assert_eq!((status, to.as_str()), (303, "/methods?done=password&lang=en"));
    assert_eq!(status_of(&client, &app, "/methods").await, 200, "this browser stays signed in");
    assert_eq!(status_of(&elsewhere, &app, "/methods").await, 303, "the other browser is signed out");
    assert_eq!(app.login(&app.clinic_client(), DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 403);
    assert_eq!(location(&app.login(&app.clinic_client(), DOCTOR_LOGIN, NEW_PASSWORD).await), "/manage");
    let audit = events(&app).await;
    let reasons: Vec<_> =
        audit.iter().filter(|(e, o, _)| e == "password_changed" && o == "failure").map(|(_, _, d)| d["reason"].clone()).collect();
    assert_eq!(reasons, ["missing", "bad_current_password", "bad_current_password", "common"]);
    assert!(audit.iter().any(|(e, o, d)| e == "password_changed" && o == "success" && d["by"] == "user"));

    // Wrong current passwords share the login form's count: max_failures of them lock the
    // account, and then neither form checks a password.
    let max = app.state.config.login.max_failures;
    for _ in 0..max {
        let (status, _, _) = change("still not it", "lantern meadow tundra 9", "en").await;
        assert_eq!(status, 403);
    }
    let (status, _, body) = change(NEW_PASSWORD, "lantern meadow tundra 9", "ja").await;
    assert_eq!(status, 403);
    assert!(body.contains("ロック"), "{body}");
    assert_eq!(app.login(&app.clinic_client(), DOCTOR_LOGIN, NEW_PASSWORD).await.status(), 403, "locked");
    app.stop().await;
}

async fn weak_and_common_passwords_are_refused_by_the_admin_cli(db: Db) {
    let app = TestApp::spawn(db).await;
    let add = ["admin", "user", "add", "--clinic", CLINIC, "--login-id", "doctor9", "--name", "新井 九郎", "--medical-reg-no", "999999", "--password-stdin"];
    let set = ["admin", "user", "set-password", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN, "--password-stdin"];
    for (password, reason) in [
        ("password123", "list of common passwords"),
        ("Baseball2024!", "list of common passwords"),
        ("abcdefgh1", "too easy to guess"),
        ("qwertyuiopasdf", "too easy to guess"),
        ("doctor9 violet tundra", "must not contain the login ID or the name"),
        ("short", "8–256 characters"),
    ] {
        let (code, out) = cli(&app, &add, &format!("{password}\n")).await;
        assert_eq!(code, 1, "{password}: {out}");
        assert!(out.contains(reason), "{password}: {reason:?} not in {out}");
        if password.starts_with("doctor9") {
            continue;
        }
        let (code, out) = cli(&app, &set, &format!("{password}\n")).await;
        assert_eq!(code, 1, "{password}: {out}");
        assert!(out.contains(reason), "{password}: {reason:?} not in {out}");
    }
    let (code, out) = cli(&app, &set, "doctor1 violet tundra\n").await;
    assert_eq!(code, 1);
    assert!(out.contains("must not contain the login ID"), "{out}");
    // Nothing was written: no doctor9, and the old password still works.
    assert!(app.store().user_by_login(CLINIC, "doctor9").await.is_err());
    assert_eq!(location(&app.login(&app.clinic_client(), DOCTOR_LOGIN, DOCTOR_PASSWORD).await), "/manage");
    // Through the library as well.
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let refused = admin.user_set_password(&app.state.passwords, CLINIC, DOCTOR_LOGIN, chosen("iloveyou2")).await;
    assert!(refused.unwrap_err().to_string().contains("common"));
    app.stop().await;
}

db_tests!(
    changing_authenticators_needs_a_fresh_proof,
    browser_session_ends_at_its_absolute_lifetime,
    cookie_is_bound_to_the_device_certificate,
    operator_password_change_ends_browser_and_signing_sessions,
    temporary_password_forces_the_change_page,
    weak_and_common_passwords_are_refused_by_the_admin_cli,
    voluntary_password_change_needs_the_current_password,
);
