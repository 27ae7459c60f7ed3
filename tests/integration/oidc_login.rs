//! Sign-in through the clinic's EMR OpenID Connect provider (docs/design.md §3.17), against a real
//! provider: panva's oidc-provider on Node (`tests/oidc/provider.mjs`), with its own keys, PKCE
//! required and no consent. The client carries the clinic certificate and follows the redirects
//! across the gateway and the provider by hand, so a test can stop before the callback (to move
//! the gateway's clock, or to replay it). Every refused case checks the page, the audit reason,
//! and that no session came of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::admin::{Admin, MatchArg, SetLogin, TokenAuthArg};
use gateway::store::UserKind;
use tokio::io::AsyncBufReadExt as _;

use crate::helpers::*;

const CLIENT_ID: &str = "ninsho-gateway";
const CLIENT_SECRET: &str = "emr-client-secret-0123456789";
/// The EMR's ids of the seeded users (their `external_id`), and one it knows that we do not.
const DOCTOR_SUB: &str = "emr-4711";
const STAFF_SUB: &str = "emr-0815";
const DISABLED_SUB: &str = "emr-0042";
const UNKNOWN_SUB: &str = "emr-9999";
const DISABLED_LOGIN: &str = "doctor-gone";

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// The provider process; dropping it stops it.
pub struct Provider {
    _child: tokio::process::Child,
    pub issuer: String,
}

impl Provider {
    /// Starts `tests/oidc/provider.mjs` for `app`'s callback, knowing the test subjects.
    pub async fn start(app: &TestApp, id_token_ttl: u32) -> Provider {
        assert!(
            oidc_dir().join("node_modules/oidc-provider/package.json").exists(),
            "the OpenID Connect tests need tests/oidc/node_modules (cd tests/oidc && npm ci); tests/run.sh installs it"
        );
        let mut child = tokio::process::Command::new("node")
            .arg("provider.mjs")
            .current_dir(oidc_dir())
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URIS", app.url("/login/oidc/callback"))
            .env("OIDC_ACCOUNTS", [DOCTOR_SUB, STAFF_SUB, DISABLED_SUB, UNKNOWN_SUB].join(","))
            .env("OIDC_ID_TOKEN_TTL", id_token_ttl.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (is Node.js installed?)");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the provider started within 30 s")
            .unwrap()
            .expect("the provider printed its address");
        let issuer = line.strip_prefix("listening ").expect("listening …").to_owned();
        // Whatever else it prints is read and dropped, so it never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Provider { _child: child, issuer }
    }

    /// Sets what the provider does next (`POST /__test/next`).
    pub async fn next(&self, body: serde_json::Value) {
        let res = reqwest::Client::new().post(format!("{}/__test/next", self.issuer)).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
}

/// A gateway whose clinic signs in through a fresh provider; the seeded doctor and staff have
/// external ids, and a disabled doctor is added.
pub async fn upstream_app(db: Db, id_token_ttl: u32) -> (TestApp, Provider) {
    let app = TestApp::spawn(db).await;
    let provider = Provider::start(&app, id_token_ttl).await;
    let now = app.clock_now();
    let store = app.store();
    for (login, sub) in [(DOCTOR_LOGIN, DOCTOR_SUB), (STAFF_LOGIN, STAFF_SUB)] {
        let user = store.user_by_login(CLINIC, login).await.unwrap();
        store.set_user_external_id(&user.id, Some(sub), now).await.unwrap();
    }
    let admin = Admin { store, now };
    let hasher = gateway::password::PasswordHasher::new(8 * 1024, 1).unwrap();
    let pw = gateway::admin::PasswordChoice::Chosen(zeroize::Zeroizing::new("a long unused password".to_owned()));
    admin.user_add(&hasher, CLINIC, DISABLED_LOGIN, UserKind::Doctor, "無効 医師", Some("777777"), pw, true).await.unwrap();
    let gone = store.user_by_login(CLINIC, DISABLED_LOGIN).await.unwrap();
    store.set_user_external_id(&gone.id, Some(DISABLED_SUB), now).await.unwrap();
    store.set_user_enabled(CLINIC, DISABLED_LOGIN, false, now).await.unwrap();
    set_login(&app, &provider.issuer, MatchArg::ExternalId).await;
    (app, provider)
}

/// `clinic set-login CLINIC --oidc … --client-secret-file …` through the admin action.
pub async fn set_login(app: &TestApp, issuer: &str, match_on: MatchArg) {
    let secret = app.dir.path().join("oidc-client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let args = SetLogin {
        clinic: CLINIC.into(),
        embedded: false,
        oidc: Some(issuer.into()),
        client_id: Some(CLIENT_ID.into()),
        client_secret_file: Some(secret),
        claim: "sub".into(),
        match_on,
        scopes: "openid profile".into(),
        token_auth: TokenAuthArg::ClientSecretBasic,
    };
    Admin { store: app.store(), now: app.clock_now() }.clinic_set_login(&app.config, args).await.unwrap();
}

/// Follows redirects from `url` across the gateway and the provider until the provider sends
/// the browser back to the gateway's callback; returns that callback URL (not yet visited).
pub async fn to_callback(app: &TestApp, client: &reqwest::Client, url: &str) -> String {
    let callback = app.url("/login/oidc/callback");
    let mut at = url::Url::parse(url).unwrap();
    for _ in 0..10 {
        if at.as_str().starts_with(&callback) {
            return at.into();
        }
        let res = client.get(at.clone()).send().await.unwrap();
        assert!(res.status().is_redirection(), "{at}: {} {}", res.status(), res.text().await.unwrap_or_default());
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        at = at.join(&location).unwrap();
    }
    panic!("no callback after 10 redirects");
}

/// Starts a sign-in at the login page's link and returns the provider's callback URL.
pub async fn begin(app: &TestApp, client: &reqwest::Client) -> String {
    to_callback(app, client, &app.url("/login/oidc")).await
}

/// Replaces one query parameter of `url`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> =
        u.query_pairs().map(|(k, v)| { let v = if k == name { value.to_owned() } else { v.into_owned() }; (k.into_owned(), v) }).collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.into()
}

fn param(url: &str, name: &str) -> String {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
}

/// The client has no signed-in session: the doctor's page sends it to the login page.
async fn not_signed_in(app: &TestApp, client: &reqwest::Client) {
    let res = client.get(app.url("/methods")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");
}

/// The callback was refused with `code` (status, ja page with the way back, audit reason), and
/// nothing was changed: no session, no flow left.
async fn refused(app: &TestApp, client: &reqwest::Client, res: reqwest::Response, status: u16, code: &str, text: &str) {
    assert_eq!(res.status(), status, "{code}");
    let clears = res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("__Host-ninsho-oidc=;"));
    // A callback that named no flow leaves the browser's own flow alone.
    assert_eq!(clears, code != "oidc_flow_unknown", "{code}: the flow cookie is cleared once its flow is taken");
    assert!(
        !res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("__Host-ninsho=")),
        "{code}: no session cookie"
    );
    let body = res.text().await.unwrap();
    assert!(body.contains(text), "{code}: {body}");
    assert!(body.contains(r#"id="back""#), "{code}: a way back");
    let row = &app.store().audit_tail(1).await.unwrap()[0];
    assert_eq!((row.event.as_str(), row.outcome.as_str()), ("login", "failure"), "{code}");
    assert_eq!(row.detail["method"], "oidc", "{code}");
    assert_eq!(row.detail["reason"], code);
    assert_eq!(row.detail["device"], gateway::tls::PeerCert::from_der(&app.pki.clinic_client.cert_der).unwrap().fingerprint);
    assert_eq!(app.store().count_oidc_flows().await.unwrap(), 0, "{code}: the flow is used up");
    not_signed_in(app, client).await;
}

async fn doctor_signs_in_through_the_emr_and_continues_to_presence(db: Db) {
    let (app, provider) = upstream_app(db, 3600).await;
    let client = app.clinic_client();

    // The login page offers the EMR's sign-in instead of the password form, ja first, en on choice.
    let page = client.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("EMRのアカウントでログイン") && page.contains(r#"href="/login/oidc?lang=ja""#), "{page}");
    assert!(!page.contains(r#"name="password""#), "no password form: {page}");
    let en = client.get(app.url("/login?lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(en.contains("Sign in with your EMR account"), "{en}");
    let _ = client.get(app.url("/login?lang=ja")).send().await.unwrap();

    // The password form is off for this clinic, even posted by hand.
    let res = app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("パスワードではなく電子カルテのアカウント"));
    assert_eq!(app.store().audit_tail(1).await.unwrap()[0].detail["reason"], "password_login_off");
    not_signed_in(&app, &client).await;

    // Start: a flow row, the cookie, then the provider's authorization endpoint with PKCE.
    let res = client.get(app.url("/login/oidc")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).find(|c| c.starts_with("__Host-ninsho-oidc="));
    let cookie = cookie.expect("the flow cookie");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let authorize = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(authorize.starts_with(&format!("{}/auth?", provider.issuer)), "{authorize}");
    for p in ["code_challenge_method=S256", "response_type=code", "scope=openid+profile", "client_id=ninsho-gateway", "ui_locales=ja"] {
        assert!(authorize.contains(p), "{p} in {authorize}");
    }
    assert_eq!(app.store().count_oidc_flows().await.unwrap(), 1);
    let callback = to_callback(&app, &client, &authorize).await;

    // The callback: signed in, on to the set-up page (nothing linked yet), like after a password.
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(res.headers()["location"], "/manage");
    assert_eq!(app.store().count_oidc_flows().await.unwrap(), 0);
    let manage = client.get(app.url("/manage")).send().await.unwrap();
    assert_eq!(manage.status(), 200);
    let body = manage.text().await.unwrap();
    assert!(body.contains("山田 太郎") && body.contains("登録コード"), "{body}");
    assert!(!body.contains("change-password-link"), "no password to change here: {body}");
    // The password is the EMR's: the gateway's password page neither shows nor changes one.
    let before = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().password_hash;
    let res = client.get(app.url("/password")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("パスワードではなく電子カルテのアカウント"));
    let form = [("current_password", DOCTOR_PASSWORD), ("new_password", "an-entirely-new-passphrase-2026"), ("confirm", "an-entirely-new-passphrase-2026")];
    let res = client.post(app.url("/password")).header("origin", app.origin()).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("パスワードではなく電子カルテのアカウント"));
    assert_eq!(app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().password_hash, before, "nothing changed");
    // The presence step is still required: no signing session came of the sign-in.
    let uid = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().id;
    assert!(app.store().current_signing_session(&uid, CLINIC).await.unwrap().is_none());

    // The audit row records the provider's word, which replaced nothing.
    let row = &app.store().audit_tail(1).await.unwrap()[0];
    assert_eq!((row.event.as_str(), row.outcome.as_str()), ("login", "success"));
    assert_eq!(row.user_id.as_deref(), Some(uid.as_str()));
    assert_eq!(row.detail["method"], "oidc");
    assert_eq!(row.detail["issuer"], provider.issuer);
    assert_eq!(row.detail["sub"], DOCTOR_SUB);
    assert_eq!(row.detail["acr"], "urn:ninsho:test:pwd");
    assert_eq!(row.detail["amr"], serde_json::json!(["pwd"]));
    let audited = serde_json::to_string(&app.store().audit_tail(20).await.unwrap().iter().map(|r| r.detail.clone()).collect::<Vec<_>>()).unwrap();
    assert!(!audited.contains(CLIENT_SECRET) && !audited.contains(&param(&callback, "code")), "no secret or code audited");
    assert!(app.metrics().await.contains(r#"ninsho_logins_total{method="oidc",outcome="success",reason="none"} 1"#));

    // The callback again (a replay of its URL): the flow is gone.
    let fresh = app.clinic_client();
    let res = fresh.get(&callback).send().await.unwrap();
    refused(&app, &fresh, res, 400, "oidc_flow_unknown", "ログインの手続きが見つかりません").await;
    app.stop().await;
}

async fn refused_upstream_sign_ins_change_nothing(db: Db) {
    let (app, provider) = upstream_app(db, 60).await;

    // Wrong state: no such flow (and the real one is left for its own callback).
    let client = app.clinic_client();
    let callback = begin(&app, &client).await;
    let res = client.get(with_param(&callback, "state", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(app.store().audit_tail(1).await.unwrap()[0].detail["reason"], "oidc_flow_unknown");
    assert_eq!(app.store().count_oidc_flows().await.unwrap(), 1, "a wrong state takes nothing");
    not_signed_in(&app, &client).await;
    // Its right callback works; a replay of the same callback URL finds nothing.
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let used_code = param(&callback, "code");
    let client = app.clinic_client();
    let res = client.get(&callback).send().await.unwrap();
    refused(&app, &client, res, 400, "oidc_flow_unknown", "ログインの手続きが見つかりません").await;

    // Replayed code: a new flow's callback carrying the used code; the provider refuses it.
    let client = app.clinic_client();
    let callback = begin(&app, &client).await;
    let res = client.get(with_param(&callback, "code", &used_code)).send().await.unwrap();
    refused(&app, &client, res, 403, "oidc_token_refused", "使用済みまたは無効な認可コード").await;
    assert_eq!(app.store().audit_tail(1).await.unwrap()[0].detail["provider_error"], "invalid_grant");

    // Another browser (no flow cookie) on the same device: the flow is used up, nothing signed in.
    let client = app.clinic_client();
    let callback = begin(&app, &client).await;
    let other = app.clinic_client();
    let res = other.get(&callback).send().await.unwrap();
    refused(&app, &other, res, 400, "oidc_flow_mismatch", "別のブラウザまたは端末").await;
    not_signed_in(&app, &client).await;

    // The provider's own refusal (error=access_denied).
    let client = app.clinic_client();
    provider.next(serde_json::json!({ "deny": true })).await;
    let callback = begin(&app, &client).await;
    assert_eq!(param(&callback, "error"), "access_denied");
    let res = client.get(&callback).send().await.unwrap();
    refused(&app, &client, res, 403, "oidc_provider_error", "電子カルテ側でログインが完了しませんでした").await;
    assert_eq!(app.store().audit_tail(1).await.unwrap()[0].detail["provider_error"], "access_denied");

    // ID tokens altered in front of the token endpoint.
    for (tamper, code, text) in [
        ("wrong-nonce", "oidc_nonce_mismatch", "このログインの手続きのものではありません"),
        ("rogue-key", "oidc_id_token_invalid", "検証できませんでした"),
        ("hs256", "oidc_id_token_invalid", "検証できませんでした"),
        ("alg-none", "oidc_id_token_invalid", "検証できませんでした"),
    ] {
        provider.next(serde_json::json!({ "tamper": tamper })).await;
        let client = app.clinic_client();
        let callback = begin(&app, &client).await;
        let res = client.get(&callback).send().await.unwrap();
        refused(&app, &client, res, 403, code, text).await;
    }
    provider.next(serde_json::json!({ "tamper": "none" })).await;

    // Accounts the provider knows that cannot sign in here: unknown, staff, disabled.
    for (sub, status, code, text, user) in [
        (UNKNOWN_SUB, 403, "oidc_unknown_user", "このゲートウェイに登録されていません", None),
        (STAFF_SUB, 403, "not_doctor", "ユーザ区分が医師のユーザのみ", Some(STAFF_LOGIN)),
        (DISABLED_SUB, 403, "oidc_user_disabled", "このアカウントは無効", Some(DISABLED_LOGIN)),
    ] {
        provider.next(serde_json::json!({ "login_as": sub })).await;
        let client = app.clinic_client();
        let callback = begin(&app, &client).await;
        let res = client.get(&callback).send().await.unwrap();
        refused(&app, &client, res, status, code, text).await;
        let row = &app.store().audit_tail(1).await.unwrap()[0];
        assert_eq!(row.detail["sub"], sub);
        let expected = match user {
            Some(login) => Some(app.store().user_by_login(CLINIC, login).await.unwrap().id),
            None => None,
        };
        assert_eq!(row.user_id, expected, "{code}");
    }
    provider.next(serde_json::json!({ "login_as": DOCTOR_SUB })).await;

    // The gateway's lockout holds for the provider's users too.
    let uid = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().id;
    let key = gateway::login_id::lockout_key(CLINIC, DOCTOR_LOGIN);
    let rules = gateway::store::LockoutRules { max_failures: 1, window_secs: 600, lockout_secs: 900 };
    app.store().reserve_login_attempt(&key, app.clock_now(), &rules).await.unwrap();
    let client = app.clinic_client();
    let callback = begin(&app, &client).await;
    let res = client.get(&callback).send().await.unwrap();
    refused(&app, &client, res, 403, "locked", "ロックされています").await;
    assert_eq!(app.store().audit_tail(1).await.unwrap()[0].user_id.as_deref(), Some(uid.as_str()));
    app.store().clear_login_failures(&key).await.unwrap();

    // A flow older than its lifetime.
    let client = app.clinic_client();
    let callback = begin(&app, &client).await;
    app.clock.advance(time::Duration::seconds(601));
    let res = client.get(&callback).send().await.unwrap();
    refused(&app, &client, res, 400, "oidc_flow_expired", "有効期限が切れました").await;

    // An expired ID token: the provider issues 60-second ones; the gateway's clock passes exp
    // (and the skew) while the flow itself is still young.
    let client = app.clinic_client();
    let callback = begin(&app, &client).await;
    app.clock.advance(time::Duration::seconds(200));
    let res = client.get(&callback).send().await.unwrap();
    refused(&app, &client, res, 403, "oidc_id_token_expired", "有効期限が切れています").await;
    app.stop().await;
}

async fn set_login_is_validated_shown_and_undone(db: Db) {
    let app = TestApp::spawn(db).await;
    let secret = app.dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let secret = secret.display().to_string();
    let run = |args: Vec<String>| {
        let app = &app;
        async move { crate::admin_cli::cli(app, &args.iter().map(String::as_str).collect::<Vec<_>>(), "").await }
    };
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["admin", "clinic", "set-login", CLINIC].map(str::to_owned).to_vec();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    for (bad, why) in [
        (args(&["--oidc", "http://emr.example.jp", "--client-id", "gw", "--client-secret-file", &secret]), "https"),
        (args(&["--oidc", "https://emr.example.jp?x=1", "--client-id", "gw", "--client-secret-file", &secret]), "https"),
        (args(&["--oidc", "https://emr.example.jp", "--client-id", "gw"]), "--client-secret-file"),
        (args(&["--oidc", "https://emr.example.jp", "--client-id", "gw", "--client-secret-file", &secret, "--claim", "a b"]), "--claim"),
        (args(&["--oidc", "https://emr.example.jp", "--client-id", "gw", "--client-secret-file", "/nonexistent"]), "/nonexistent"),
        (args(&["--embedded", "--oidc", "https://emr.example.jp"]), "cannot be used"),
        (args(&[]), "required"),
    ] {
        let (code, out) = run(bad).await;
        assert_ne!(code, 0, "{out}");
        assert!(out.contains(why), "{why}: {out}");
        assert!(app.store().clinic_login(CLINIC).await.unwrap().is_none(), "nothing stored");
    }
    let (code, out) = run(args(&[
        "--oidc",
        "https://emr.example.jp/idp",
        "--client-id",
        "gw",
        "--client-secret-file",
        &secret,
        "--match",
        "login-id",
        "--token-auth",
        "client-secret-post",
    ]))
    .await;
    assert_eq!(code, 0, "{out}");
    let stored = app.store().clinic_login(CLINIC).await.unwrap().unwrap();
    assert_eq!(stored.scopes, "openid");
    assert!(!stored.sealed_secret.windows(6).any(|w| w == b"s3cret"), "the secret is sealed");
    let (_, out) = run(["admin", "clinic", "show", CLINIC].map(str::to_owned).to_vec()).await;
    assert!(out.contains("oidc https://emr.example.jp/idp client gw (client_secret_post) claim sub matched to login_id"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    let (_, out) = run(["admin", "clinic", "list"].map(str::to_owned).to_vec()).await;
    assert!(out.contains(&format!("{CLINIC}\tenabled\toidc https://emr.example.jp/idp\t")), "{out}");
    assert!(out.contains(&format!("{OTHER_CLINIC}\tenabled\tembedded\t")), "{out}");
    let row = &app.store().audit_tail(1).await.unwrap()[0];
    assert_eq!(row.detail["action"], "clinic.set_login", "{row:?}");
    assert!(!row.detail.to_string().contains("s3cret"));

    let (code, out) = run(args(&["--embedded"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(app.store().clinic_login(CLINIC).await.unwrap().is_none());
    let (_, out) = run(["admin", "clinic", "show", CLINIC].map(str::to_owned).to_vec()).await;
    assert!(out.contains("login: embedded"), "{out}");
    // The password form is back.
    let client = app.clinic_client();
    assert_eq!(app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 303);
    app.stop().await;
}

/// `--match login-id`: the claim is compared with login IDs (folded, as the password form
/// compares them) instead of external ids, so the same `sub` that named a user by external id
/// names nobody, and one equal to a login ID names that user.
async fn the_claim_can_name_the_login_id_instead(db: Db) {
    let (app, provider) = upstream_app(db, 3600).await;
    set_login(&app, &provider.issuer, MatchArg::LoginId).await;
    // A doctor whose login ID is what the EMR sends as `sub` (in another case: folded).
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let hasher = gateway::password::PasswordHasher::new(8 * 1024, 1).unwrap();
    let pw = gateway::admin::PasswordChoice::Chosen(zeroize::Zeroizing::new("a long unused password".to_owned()));
    admin.user_add(&hasher, CLINIC, &UNKNOWN_SUB.to_uppercase(), UserKind::Doctor, "木村 次郎", Some("888888"), pw, true).await.unwrap();

    let client = app.clinic_client();
    provider.next(serde_json::json!({ "login_as": DOCTOR_SUB })).await;
    let callback = begin(&app, &client).await;
    let res = client.get(&callback).send().await.unwrap();
    refused(&app, &client, res, 403, "oidc_unknown_user", "このゲートウェイに登録されていません").await;

    let client = app.clinic_client();
    provider.next(serde_json::json!({ "login_as": UNKNOWN_SUB })).await;
    let callback = begin(&app, &client).await;
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let body = client.get(app.url("/manage")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("木村 次郎"), "{body}");
    let row = &app.store().audit_tail(1).await.unwrap()[0];
    assert_eq!((row.event.as_str(), row.outcome.as_str(), row.detail["sub"].as_str()), ("login", "success", Some(UNKNOWN_SUB)));
    app.stop().await;
}

db_tests!(
    the_claim_can_name_the_login_id_instead,
    doctor_signs_in_through_the_emr_and_continues_to_presence,
    refused_upstream_sign_ins_change_nothing,
    set_login_is_validated_shown_and_undone,
);
