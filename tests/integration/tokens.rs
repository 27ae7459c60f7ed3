//! EMR signing tokens (docs/design.md §3.8): issue, verify with only the JWKS, consume once, every
//! refusal, certificate binding, key rotation, and the signing-session rules they depend on.

use base64::Engine as _;
use gateway::store::{AuditVerification, AuthMethod, Consumption, EndReason, NewConsume, NewIssuedToken, NewSigningSession, SessionFilter};
use serde_json::{Value, json};

use crate::helpers::*;

/// A consumption of `jti` by `consumer` at `at`, audited under doctor `user_id` of CLINIC.
fn consuming(jti: &str, consumer: &str, user_id: &str, at: i64) -> NewConsume {
    NewConsume { jti: jti.to_owned(), consumer: consumer.to_owned(), clinic_id: CLINIC.to_owned(), user_id: user_id.to_owned(), at }
}

/// Opens a FIDO signing session for the demo doctor as a successful FIDO login would.
/// (The FIDO ceremony itself is exercised in the fido tests; here it is the precondition.)
pub(crate) async fn open_session(app: &TestApp) -> String {
    try_open_session(app).await.unwrap().session.id
}

async fn try_open_session(app: &TestApp) -> gateway::store::Result<gateway::store::OpenedSession> {
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    let now = app.clock_now();
    let cfg = &app.config.signing_session;
    let new = NewSigningSession {
        user_id: &user.id,
        clinic_id: CLINIC,
        method: AuthMethod::Fido,
        authenticator_kind: "fido",
        authenticator_id: "test-credential",
        amr: &["hwk", "user", "mfa"],
        acr: "aal3",
        auth_time: now,
        absolute_secs: cfg.absolute_secs,
        idle_secs: cfg.idle_secs,
    };
    app.store().open_signing_session(&new, now, &Default::default()).await
}

async fn issue(app: &TestApp, client: &reqwest::Client, body: Value) -> (u16, Value) {
    let res = client.post(app.url("/api/v1/signing-tokens")).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn consume(app: &TestApp, client: &reqwest::Client, body: Value) -> (u16, Value) {
    let res = client.post(app.url("/api/v1/signing-tokens/consume")).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn doctor() -> Value {
    json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN })
}

/// Verifies `token` with an independent JWT implementation (jsonwebtoken) using only the JWKS
/// fetched from the gateway.
async fn verify_with_jwks(app: &TestApp, token: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet =
        app.client(Some(&app.pki.signer)).get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).expect("token key is published");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[&app.config.tokens.audience]);
    v.set_issuer(&[&app.origin()]);
    v.validate_exp = false; // the test clock may run ahead of the wall clock
    jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap().claims
}

async fn token_carries_the_claims_and_verifies_with_the_jwks_alone(db: Db) {
    let app = TestApp::spawn(db).await;
    let sid = open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let (status, body) = issue(&app, &emr, json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": [hash] })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 120);
    let token = body["token"].as_str().unwrap();
    let claims = verify_with_jwks(&app, token).await;
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["clinic"], CLINIC);
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["amr"], json!(["hwk", "user", "mfa"]));
    assert_eq!(claims["acr"], "aal3");
    assert_eq!(claims["medical_reg_no"], "123456");
    assert_eq!(claims["hashes"], json!([hash]));
    assert_eq!(claims["hash_alg"], "2.16.840.1.101.3.4.2.1");
    assert_eq!(claims["num_signatures"], 1);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 120);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().unwrap().len() >= 22);
    assert_eq!(claims["cnf"]["x5t#S256"], gateway::tokens::x5t_s256(&app.pki.emr_a.cert_der).as_str());
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    app.state.group_commit.flush().await;
    let events: Vec<String> = app.store().audit_tail(3).await.unwrap().into_iter().map(|r| r.event).collect();
    assert!(events.contains(&"token_issued".to_owned()), "{events:?}");
    app.stop().await;
}

async fn a_token_is_consumed_once(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let (_, body) = issue(&app, &emr, doctor()).await;
    let token = body["token"].as_str().unwrap();
    let (status, first) = consume(&app, &emr, json!({ "token": token })).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["clinic_id"], CLINIC);
    assert_eq!(first["medical_reg_no"], "123456");
    let (status, second) = consume(&app, &emr, json!({ "token": token })).await;
    assert_eq!((status, second["error"].as_str().unwrap()), (409, "token_already_used"));
    // A signer presenting the same token (with the right binding) is refused too.
    let x5t = gateway::tokens::x5t_s256(&app.pki.emr_a.cert_der);
    let (status, _) = consume(&app, &app.client(Some(&app.pki.signer)), json!({ "token": token, "x5t#S256": x5t })).await;
    assert_eq!(status, 409);
    app.stop().await;
}

async fn consumption_is_single_use_across_instances(db: Db) {
    // Two gateways on one database: the second instance sees the first one's consumption.
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let (_, body) = issue(&app, &emr, doctor()).await;
    let jti = jsonwebtoken::dangerous::insecure_decode::<Value>(body["token"].as_str().unwrap()).unwrap().claims["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = app.other_store(2).await;
    let now = app.clock_now();
    let uid = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().id;
    let consume = consuming(&jti, "emr-a", &uid, now);
    let (a, b) = tokio::join!(app.store().consume_token(&consume), other.consume_token(&consume));
    let won = |c: &Consumption| matches!(c, Consumption::Consumed(_)) as u8;
    assert_eq!(won(&a.unwrap()) + won(&b.unwrap()), 1, "exactly one consumption wins");
    other.close().await;
    app.stop().await;
}

async fn a_token_bound_to_one_client_is_refused_to_another(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let (_, body) = issue(&app, &app.client(Some(&app.pki.emr_a)), doctor()).await;
    let token = body["token"].as_str().unwrap();
    let (status, err) = consume(&app, &app.client(Some(&app.pki.emr_b)), json!({ "token": token })).await;
    assert_eq!((status, err["error"].as_str().unwrap()), (403, "cnf_mismatch"));
    // A signer that saw emr-b's certificate is refused as well; with emr-a's it succeeds.
    let signer = app.client(Some(&app.pki.signer));
    let b = gateway::tokens::x5t_s256(&app.pki.emr_b.cert_der);
    assert_eq!(consume(&app, &signer, json!({ "token": token, "x5t#S256": b })).await.0, 403);
    let a = gateway::tokens::x5t_s256(&app.pki.emr_a.cert_der);
    let (status, ok) = consume(&app, &signer, json!({ "token": token, "x5t#S256": a })).await;
    assert_eq!(status, 200, "{ok}");
    app.stop().await;
}

async fn every_refusal_has_its_code(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let code = |v: &Value| v["error"].as_str().unwrap().to_owned();

    let (s, b) = issue(&app, &emr, doctor()).await;
    assert_eq!((s, code(&b)), (409, "no_session".into()));
    open_session(&app).await;

    let cases = [
        (json!({ "clinic_id": CLINIC, "doctor_id": "nobody" }), 404, "doctor_not_in_clinic"),
        (json!({ "clinic_id": CLINIC, "doctor_id": STAFF_LOGIN }), 403, "not_a_doctor"),
        (json!({ "clinic_id": OTHER_CLINIC, "doctor_id": OTHER_DOCTOR_LOGIN }), 403, "clinic_not_allowed"),
        (json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "ttl": 301 }), 400, "ttl_too_long"),
        (json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "ttl": 0 }), 400, "bad_ttl"),
        (json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": ["not base64!"] }), 400, "bad_hashes"),
        (json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": ["AAAA"] }), 400, "bad_hashes"),
        (json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": [] }), 400, "bad_hashes"),
        (json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hash_alg": "2.16.840.1.101.3.4.2.1" }), 400, "bad_hashes"),
        (
            json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": [base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 32])], "hash_alg": "1.2.3" }),
            400,
            "bad_hash_alg",
        ),
        (
            json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": [base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 32])], "num_signatures": 2 }),
            400,
            "bad_num_signatures",
        ),
        (json!({ "clinic_id": CLINIC }), 400, "bad_request"),
        (json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "extra": 1 }), 400, "bad_request"),
    ];
    for (body, status, expected) in cases {
        let (s, b) = issue(&app, &emr, body.clone()).await;
        assert_eq!((s, code(&b)), (status, expected.to_owned()), "{body}");
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Refusals issue nothing.
    let issued = app.store().execute_unchecked("UPDATE issued_tokens SET client_id = client_id").await.unwrap();
    assert_eq!(issued, 0);

    // Callers that are not EMR service clients.
    let (s, b) = issue(&app, &app.clinic_client(), doctor()).await;
    assert_eq!((s, code(&b)), (403, "client_not_registered".into()));
    let (s, b) = issue(&app, &app.client(Some(&app.pki.signer)), doctor()).await;
    assert_eq!((s, code(&b)), (403, "wrong_role".into()));

    // A disabled doctor, a disabled client.
    let admin = gateway::admin::Admin { store: app.store(), now: app.clock_now() };
    admin.user_set_enabled(CLINIC, DOCTOR_LOGIN, false).await.unwrap();
    assert_eq!(code(&issue(&app, &emr, doctor()).await.1), "doctor_disabled");
    app.store().set_service_client_enabled("emr-a", false, app.clock_now()).await.unwrap();
    assert_eq!(code(&issue(&app, &emr, doctor()).await.1), "client_disabled");

    // Tokens that are not ours.
    let (s, b) = consume(&app, &app.client(Some(&app.pki.emr_b)), json!({ "token": "a.b.c" })).await;
    assert_eq!((s, code(&b)), (401, "invalid_token".into()));

    // Every refusal of access is audited with its code and what the caller asked for; a
    // malformed request is not a refusal of access and leaves no row.
    let refused: Vec<(Value, Value, Value, Value)> = crate::fido_login::events(&app)
        .await
        .into_iter()
        .filter(|(event, outcome, _)| event == "api_refused" && outcome == "failure")
        .map(|(_, _, d)| (d["reason"].clone(), d["client_id"].clone(), d["doctor_id"].clone(), d["route"].clone()))
        .collect();
    let row = |reason: &str, client: Value, doctor: &str| (json!(reason), client, json!(doctor), json!("POST /api/v1/signing-tokens"));
    assert_eq!(
        refused,
        [
            row("doctor_not_in_clinic", json!("emr-a"), "nobody"),
            row("not_a_doctor", json!("emr-a"), STAFF_LOGIN),
            row("clinic_not_allowed", json!("emr-a"), OTHER_DOCTOR_LOGIN),
            row("client_not_registered", Value::Null, DOCTOR_LOGIN),
            row("wrong_role", json!("signer"), DOCTOR_LOGIN),
            row("doctor_disabled", json!("emr-a"), DOCTOR_LOGIN),
            row("client_disabled", json!("emr-a"), DOCTOR_LOGIN),
        ]
    );
    let tail = app.store().audit_tail(1).await.unwrap();
    assert_eq!((tail[0].event.as_str(), tail[0].outcome.as_str()), ("token_consumed", "failure"));
    assert_eq!(tail[0].detail["reason"], "invalid_token");
    assert_eq!((&tail[0].detail["jti"], &tail[0].clinic_id), (&Value::Null, &None), "an unverified token names nothing");
    assert!(matches!(app.store().audit_verify().await.unwrap(), AuditVerification::Intact { .. }));
    app.stop().await;
}

async fn sessions_expire_absolutely_and_when_idle_and_tokens_count_as_activity(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let code = |v: &Value| v["error"].as_str().unwrap_or("").to_owned();

    // Idle: 16 minutes without a token.
    open_session(&app).await;
    app.clock.advance(time::Duration::minutes(16));
    assert_eq!(code(&issue(&app, &emr, doctor()).await.1), "session_idle_expired");

    // Activity: a token every 10 minutes keeps the session alive past 15 minutes of age.
    open_session(&app).await;
    for _ in 0..3 {
        app.clock.advance(time::Duration::minutes(10));
        let (s, b) = issue(&app, &emr, doctor()).await;
        assert_eq!(s, 200, "{b}");
    }
    // Absolute: 8 hours after authentication nothing extends it.
    for _ in 0..47 {
        app.clock.advance(time::Duration::minutes(10));
        issue(&app, &emr, doctor()).await;
    }
    let (s, b) = issue(&app, &emr, doctor()).await;
    assert_eq!((s, code(&b)), (409, "session_expired".into()));

    // A token never outlives its session.
    let now = app.clock_now();
    open_session(&app).await;
    app.clock.set(time::OffsetDateTime::from_unix_timestamp(now + 8 * 3600 - 60).unwrap());
    // (keep it from idling: record activity right before)
    let sid = app.store().current_signing_session(&app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().id, CLINIC).await.unwrap().unwrap().id;
    app.store().execute_unchecked(&format!("UPDATE signing_sessions SET last_activity_at = {} WHERE id = '{sid}'", app.clock_now())).await.unwrap();
    let (s, b) = issue(&app, &emr, doctor()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["expires_in"], 60);

    // Dozens of token events went through the batched writer: the chain still verifies.
    app.state.group_commit.flush().await;
    let verdict = app.store().audit_verify().await.unwrap();
    assert!(matches!(verdict, gateway::store::AuditVerification::Intact { rows, .. } if rows > 50), "{verdict:?}");
    app.stop().await;
}

async fn emr_reads_and_ends_signing_sessions(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let url = app.url(&format!("/api/v1/signing-sessions?clinic_id={CLINIC}&doctor_id={DOCTOR_LOGIN}"));
    let state: Value = emr.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(state, json!({ "active": false, "reason": "no_session" }));

    let sid = open_session(&app).await;
    let state: Value = emr.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["active"], true);
    assert_eq!(state["session_id"], sid.as_str());
    assert_eq!(state["method"], "fido");
    assert_eq!(state["expires_at"].as_i64().unwrap() - state["auth_time"].as_i64().unwrap(), 8 * 3600);

    // Another clinic's client can neither see nor end it.
    let other = app.client(Some(&app.pki.emr_other));
    let res = other.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = other.delete(app.url(&format!("/api/v1/signing-sessions/{sid}"))).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let res = emr.delete(app.url(&format!("/api/v1/signing-sessions/{sid}"))).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = emr.delete(app.url(&format!("/api/v1/signing-sessions/{sid}"))).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let (s, b) = issue(&app, &emr, doctor()).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (409, "no_session"));
    app.stop().await;
}

async fn rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let old = issue(&app, &emr, doctor()).await.1["token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();

    // Rotate through the real CLI, then let this instance pick it up as its refresh loop would.
    let config_path = app.dir.path().join("rotate.toml");
    std::fs::write(
        &config_path,
        format!("data_dir = {:?}\n[database]\nurl = {:?}\n", app.config.data_dir.display().to_string(), app.config.database.url),
    )
    .unwrap();
    let mut out = Vec::new();
    let code = gateway::cli::run(
        vec!["gateway".into(), "--config".into(), config_path.display().to_string(), "admin".into(), "keys".into(), "rotate".into()],
        &mut out,
        &mut std::io::stderr(),
        &mut std::io::empty(),
    )
    .await;
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    app.state.token_keys.refresh(app.store(), app.clock_now()).await.unwrap();

    let new = issue(&app, &emr, doctor()).await.1["token"].as_str().unwrap().to_owned();
    let new_kid = jsonwebtoken::decode_header(&new).unwrap().kid.unwrap();
    assert_ne!(old_kid, new_kid);
    let jwks: Value = emr.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()), "no private parts");
    verify_with_jwks(&app, &old).await;
    verify_with_jwks(&app, &new).await;
    assert_eq!(consume(&app, &emr, json!({ "token": old })).await.0, 200);

    // Once the old key's last token has expired, it leaves the JWKS.
    app.clock.advance(time::Duration::minutes(10));
    app.state.token_keys.refresh(app.store(), app.clock_now()).await.unwrap();
    let jwks: Value = emr.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [new_kid.as_str()]);
    app.stop().await;
}

async fn signing_keys_are_encrypted_at_rest(db: Db) {
    let app = TestApp::spawn(db).await;
    let keys = app.store().list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    // The stored blob is nonce ‖ AES-GCM ciphertext: no PKCS#8 structure is visible.
    let blob = &keys[0].private_key;
    assert!(!blob.windows(3).any(|w| w == [0x30, 0x81, 0x87]) && blob[..2] != [0x30, 0x81]);
    let kek = std::fs::metadata(app.config.data_dir.join("token-kek")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(kek.permissions().mode() & 0o777, 0o600);
    app.stop().await;
}

async fn openapi_document_is_served_and_lists_every_route(db: Db) {
    let app = TestApp::spawn(db).await;
    let doc: Value =
        app.client(Some(&app.pki.emr_a)).get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/api/v1/signing-sessions", "/api/v1/signing-sessions/{id}", "/api/v1/signing-tokens", "/api/v1/signing-tokens/consume", "/.well-known/jwks.json"] {
        assert!(doc["paths"].get(path).is_some(), "{path} undocumented");
    }
    let res = app.client(Some(&app.pki.emr_a)).get(app.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "not_found");
    app.stop().await;
}

/// Many EMR requests at once: the group commit writes them together, and each is still its own
/// token: recorded (consumable once), audited once, chain intact.
async fn concurrent_tokens_are_each_recorded_and_audited(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (emr, url) = (emr.clone(), app.url("/api/v1/signing-tokens"));
        requests.spawn(async move {
            let res = emr.post(url).json(&doctor()).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        });
    }
    let mut tokens = Vec::new();
    while let Some(done) = requests.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    for token in &tokens {
        let (status, body) = consume(&app, &emr, json!({ "token": token })).await;
        assert_eq!(status, 200, "{body}");
    }
    app.state.group_commit.flush().await;
    let tail = app.store().audit_tail(200).await.unwrap();
    let issued: Vec<_> = tail.iter().filter(|r| r.event == "token_issued").collect();
    assert_eq!(issued.len(), 40);
    assert!(issued.iter().all(|r| r.outcome == "success"));
    let mut jtis: Vec<_> = issued.iter().map(|r| r.detail["jti"].as_str().unwrap().to_owned()).collect();
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 40);
    assert!(matches!(app.store().audit_verify().await.unwrap(), AuditVerification::Intact { .. }));
    app.stop().await;
}

/// Many EMR requests at once about different doctors and from different callers: on PostgreSQL
/// their reads go out together (`store::batched`), and each still gets the answer its own read
/// would have given, in the same order of checks.
async fn concurrent_requests_each_get_their_own_answer(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let cases: Vec<(reqwest::Client, Value, u16, Option<&str>)> = vec![
        (emr.clone(), doctor(), 200, None),
        (emr.clone(), json!({ "clinic_id": CLINIC, "doctor_id": "nobody" }), 404, Some("doctor_not_in_clinic")),
        (emr.clone(), json!({ "clinic_id": CLINIC, "doctor_id": STAFF_LOGIN }), 403, Some("not_a_doctor")),
        (emr.clone(), json!({ "clinic_id": OTHER_CLINIC, "doctor_id": OTHER_DOCTOR_LOGIN }), 403, Some("clinic_not_allowed")),
        (app.clinic_client(), doctor(), 403, Some("client_not_registered")),
        (app.client(Some(&app.pki.signer)), doctor(), 403, Some("wrong_role")),
        // The doctor's login ID is compared folded, as at login.
        (emr.clone(), json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN.to_uppercase() }), 200, None),
    ];
    for round in 0..3 {
        let mut requests = tokio::task::JoinSet::new();
        for (i, (client, body, status, code)) in cases.iter().cloned().enumerate() {
            for _ in 0..6 {
                let (client, body, url) = (client.clone(), body.clone(), app.url("/api/v1/signing-tokens"));
                requests.spawn(async move {
                    let res = client.post(url).json(&body).send().await.unwrap();
                    (i, status, code, res.status().as_u16(), res.json::<Value>().await.unwrap())
                });
            }
        }
        while let Some(done) = requests.join_next().await {
            let (i, status, code, got, body) = done.unwrap();
            assert_eq!(got, status, "round {round}, case {i}: {body}");
            match code {
                Some(code) => assert_eq!(body["error"], code, "round {round}, case {i}: {body}"),
                None => assert!(body["token"].as_str().is_some_and(|t| t.split('.').count() == 3), "{body}"),
            }
        }
    }
    app.state.group_commit.flush().await;
    assert!(matches!(app.store().audit_verify().await.unwrap(), AuditVerification::Intact { .. }));
    app.stop().await;
}

/// Issues and consumptions racing each other, with replays and a session whose activity is due,
/// so the group commit's batches mix new tokens, consumptions of the same token and activity
/// updates. Every request is answered (no 503), each token is consumed exactly once, and the
/// chain is intact.
async fn racing_issues_and_replayed_consumptions_are_each_answered_once(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let mut tokens = Vec::new();
    for _ in 0..24 {
        let (status, body) = issue(&app, &emr, doctor()).await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    for round in 0..2 {
        // The session's activity is due again: each batch of this round touches it.
        app.clock.advance(time::Duration::seconds(6));
        let mut requests = tokio::task::JoinSet::new();
        for (i, token) in tokens.iter().enumerate() {
            for _ in 0..2 {
                let (emr, url, token) = (emr.clone(), app.url("/api/v1/signing-tokens/consume"), token.clone());
                requests.spawn(async move {
                    let res = emr.post(url).json(&json!({ "token": token })).send().await.unwrap();
                    ("consume", i, res.status().as_u16(), res.json::<Value>().await.unwrap())
                });
            }
            let (emr, url) = (emr.clone(), app.url("/api/v1/signing-tokens"));
            requests.spawn(async move {
                let res = emr.post(url).json(&doctor()).send().await.unwrap();
                ("issue", i, res.status().as_u16(), res.json::<Value>().await.unwrap())
            });
        }
        let mut consumed = vec![0; tokens.len()];
        let mut fresh = Vec::new();
        while let Some(done) = requests.join_next().await {
            let (kind, i, status, body) = done.unwrap();
            assert_ne!(status, 503, "round {round}: {kind} {i}: {body}");
            match (kind, status) {
                ("consume", 200) => consumed[i] += 1,
                ("consume", 409) => assert_eq!(body["error"], "token_already_used", "{body}"),
                ("issue", 200) => fresh.push(body["token"].as_str().unwrap().to_owned()),
                _ => panic!("round {round}: {kind} {i}: {status} {body}"),
            }
        }
        assert!(consumed.iter().all(|&n| n == 1), "round {round}: each token consumed exactly once: {consumed:?}");
        tokens = fresh;
    }
    app.state.group_commit.flush().await;
    assert!(matches!(app.store().audit_verify().await.unwrap(), AuditVerification::Intact { .. }));
    app.stop().await;
}

/// One batch in the store: tokens whose session closed after the caller's read are refused (and
/// audited as such) while the others in the same batch are recorded; a batch of any size is
/// recorded whole (SQLite splits it into multi-row statements, PostgreSQL sends it as arrays); the
/// session's activity moves to its latest token, and never for a refused one.
async fn a_batch_records_live_sessions_and_refuses_closed_ones(db: Db) {
    let app = TestApp::spawn(db).await;
    let sid = open_session(&app).await;
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    let now = app.clock_now();
    let token = |i: usize, session_id: &str| NewIssuedToken {
        jti: format!("batch-jti-{i}"),
        session_id: session_id.to_owned(),
        client_id: "emr-a".to_owned(),
        clinic_id: CLINIC.to_owned(),
        user_id: user.id.clone(),
        expires_at: now + 60,
        issued_at: now,
        touch: i == 0,
        audit_refusal: true,
    };
    let mut live: Vec<_> = (0..200).map(|i| token(i, &sid)).collect();
    // Activity: several tokens of one session in a batch touch it once, at the latest time.
    for (t, at) in live.iter_mut().zip([now + 3, now + 7, now + 5]) {
        t.touch = true;
        t.issued_at = at;
    }
    let recorded = app.store().record_issued_tokens(&live, &[]).await.unwrap();
    assert_eq!(recorded, vec![true; 200]);
    assert_eq!(app.store().signing_session(&sid).await.unwrap().last_activity_at, now + 7);

    for jti in ["batch-jti-0", "batch-jti-199"] {
        let consumed = app.store().consume_token(&consuming(jti, "emr-a", &user.id, now)).await.unwrap();
        assert!(matches!(consumed, Consumption::Consumed(_)), "{jti}: {consumed:?}");
    }

    app.store().end_signing_sessions(SessionFilter::Id(&sid), EndReason::Doctor, now).await.unwrap();
    // Refused tokens move no activity, even when flagged to.
    let mut later = [token(200, &sid), token(201, "no-such-session")];
    later[0].touch = true;
    later[0].issued_at = now + 30;
    assert_eq!(app.store().record_issued_tokens(&later, &[]).await.unwrap(), vec![false, false]);
    assert_eq!(app.store().signing_session(&sid).await.unwrap().last_activity_at, now + 7);
    // Recorded before the session ended, and still unused: refused now that it has ended.
    assert!(matches!(app.store().consume_token(&consuming("batch-jti-1", "emr-a", &user.id, now)).await.unwrap(), Consumption::SessionEnded));
    assert!(matches!(app.store().consume_token(&consuming("batch-jti-200", "emr-a", &user.id, now)).await.unwrap(), Consumption::NotConsumable));
    let tail = app.store().audit_tail(300).await.unwrap();
    let outcomes = |outcome: &str| tail.iter().filter(|r| r.event == "token_issued" && r.outcome == outcome).count();
    assert_eq!((outcomes("success"), outcomes("failure")), (200, 2));
    assert!(tail.iter().filter(|r| r.outcome == "failure").all(|r| r.detail["reason"] == "no_session"));
    assert!(matches!(app.store().audit_verify().await.unwrap(), AuditVerification::Intact { .. }));
    app.stop().await;
}

/// Token commits of two instances racing each other and appends that are queued and chained
/// (decision 0022): each token is recorded once and audited once, in one intact chain, and none
/// waits on another for ever (on PostgreSQL the tokens' statement locks the audit head before it
/// touches a session; decision 0030).
async fn token_commits_of_two_instances_and_queued_appends_chain_once(db: Db) {
    let app = TestApp::spawn(db).await;
    let sid = open_session(&app).await;
    let other = match db {
        Db::Postgres => app.other_store(4).await,
        // One SQLite file has one writer: the second "instance" is a clone.
        Db::Sqlite => app.store().clone(),
    };
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    let before = app.store().audit_head().await.unwrap().rows;
    let now = app.clock_now();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..40_i64 {
        let store = if i % 2 == 0 { app.store().clone() } else { other.clone() };
        let (sid, user_id) = (sid.clone(), user.id.clone());
        writes.spawn(async move {
            if i % 4 == 3 {
                let event = gateway::store::AuditEvent::Admin { action: "test.race", target: format!("race-{i}") };
                return store.audit_batch(&[(event, now)]).await.map(|()| Vec::new());
            }
            let tokens: Vec<_> = (0..3)
                .map(|k| NewIssuedToken {
                    jti: format!("race-jti-{i}-{k}"),
                    session_id: sid.clone(),
                    client_id: "emr-a".to_owned(),
                    clinic_id: CLINIC.to_owned(),
                    user_id: user_id.clone(),
                    expires_at: now + 60,
                    issued_at: now + i,
                    touch: true,
                    audit_refusal: true,
                })
                .collect();
            store.record_issued_tokens(&tokens, &[]).await
        });
    }
    let mut recorded = 0;
    while let Some(done) = writes.join_next().await {
        let flags = done.unwrap().unwrap();
        assert!(flags.iter().all(|r| *r), "{flags:?}");
        recorded += flags.len();
    }
    assert_eq!(recorded, 90);
    // The session's activity is the latest token's.
    assert_eq!(app.store().signing_session(&sid).await.unwrap().last_activity_at, now + 38);
    let AuditVerification::Intact { rows, .. } = app.store().audit_verify().await.unwrap() else { panic!("tampered") };
    // (Other rows, such as the instance's aggregated handshake failures, may be appended meanwhile.)
    assert!(rows >= before + 90 + 10);
    let tail = app.store().audit_tail(300).await.unwrap();
    let mut jtis: Vec<_> = tail.iter().filter(|r| r.event == "token_issued").map(|r| r.detail["jti"].as_str().unwrap().to_owned()).collect();
    assert_eq!(jtis.len(), 90);
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 90, "each token audited once");
    assert_eq!(tail.iter().filter(|r| r.detail["target"].as_str().is_some_and(|t| t.starts_with("race-"))).count(), 10);
    app.stop().await;
}

/// Fail closed: a token whose id and audit row cannot be committed is not handed out, a
/// consumption whose audit row cannot be committed is not answered as done (and not made), and
/// refusals wait for their audit rows too. Each is a fast 503 the client may retry, and the
/// instance reports unready until a commit succeeds again.
async fn no_token_leaves_when_its_commit_fails(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let (status, body) = issue(&app, &emr, doctor()).await;
    assert_eq!(status, 200, "{body}");
    let issued = body["token"].as_str().unwrap().to_owned();
    let ready = || async { reqwest::get(format!("http://127.0.0.1:{}/readyz", app.ops_port)).await.unwrap().status().as_u16() };
    assert_eq!(ready().await, 200);
    // Without the audit chain's head row every group commit fails (and rolls back).
    app.store().execute_unchecked("DELETE FROM audit_head").await.unwrap();
    let (status, body) = issue(&app, &emr, doctor()).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(body.get("token").is_none(), "{body}");
    assert_eq!(ready().await, 503, "unready while commits fail");
    let (status, body) = consume(&app, &emr, json!({ "token": issued })).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")), "{body}");
    // A refusal is not answered unaudited either.
    let (status, body) = consume(&app, &emr, json!({ "token": issued, "x5t#S256": "AAAA" })).await;
    assert_eq!(status, 400, "{body}");
    let other = app.client(Some(&app.pki.emr_b));
    let (status, body) = consume(&app, &other, json!({ "token": issued })).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")), "{body}");
    // Nothing was written: one token recorded (the first), still unused.
    let count = |sql: &'static str| app.store().execute_unchecked(sql);
    assert_eq!(count("UPDATE issued_tokens SET client_id = client_id").await.unwrap(), 1);
    assert_eq!(count("UPDATE issued_tokens SET client_id = client_id WHERE consumed_at IS NULL").await.unwrap(), 1, "still unused");
    app.stop().await;
}

/// A token request that races the doctor's re-authentication (a new signing session superseding
/// the one the request read) is served from the new session, never refused while the doctor has
/// a live one: each round re-authenticates while token requests are in flight.
async fn token_requests_racing_a_reauthentication_are_served(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let mut sids = std::collections::HashSet::new();
    for _ in 0..25 {
        let (a, b, c, d, reauth) = tokio::join!(
            issue(&app, &emr, doctor()),
            issue(&app, &emr, doctor()),
            issue(&app, &emr, doctor()),
            issue(&app, &emr, doctor()),
            open_session(&app)
        );
        sids.insert(reauth);
        for (status, body) in [a, b, c, d] {
            assert_eq!(status, 200, "{body}");
            let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(body["token"].as_str().unwrap()).unwrap().claims;
            sids.insert(claims["sid"].as_str().unwrap().to_owned());
        }
    }
    assert!(sids.len() >= 25, "sessions were superseded during the requests");
    let tail = app.store().audit_tail(1000).await.unwrap();
    assert!(!tail.iter().any(|r| r.event == "token_issued" && r.outcome == "failure"), "no refusal was audited");
    app.stop().await;
}

/// Fail closed: a signing session whose audit rows cannot be written does not open.
async fn no_signing_session_opens_unaudited(db: Db) {
    let app = TestApp::spawn(db).await;
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    app.store().execute_unchecked("DELETE FROM audit_head").await.unwrap();
    assert!(try_open_session(&app).await.is_err());
    assert!(app.store().current_signing_session(&user.id, CLINIC).await.unwrap().is_none());
    app.stop().await;
}

/// Opens a signing session with `authenticator_id` as its FIDO authenticator.
async fn open_session_with(app: &TestApp, authenticator_id: &str) -> String {
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    let now = app.clock_now();
    let cfg = &app.config.signing_session;
    let new = NewSigningSession {
        user_id: &user.id,
        clinic_id: CLINIC,
        method: AuthMethod::Fido,
        authenticator_kind: "fido",
        authenticator_id,
        amr: &["hwk", "user", "mfa"],
        acr: "aal3",
        auth_time: now,
        absolute_secs: cfg.absolute_secs,
        idle_secs: cfg.idle_secs,
    };
    app.store().open_signing_session(&new, now, &Default::default()).await.unwrap().session.id
}

fn jti_of(token: &str) -> String {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token).unwrap().claims["jti"].as_str().unwrap().to_owned()
}

/// Whether the token id is stored and still unused.
async fn unused(app: &TestApp, jti: &str) -> bool {
    let sql = format!("UPDATE issued_tokens SET consumed_at = consumed_at WHERE jti = '{jti}' AND consumed_at IS NULL");
    app.store().execute_unchecked(&sql).await.unwrap() == 1
}

/// Issue 15, item 2: a token issued before its session ended is refused at consume with
/// `session_ended` and stays unused, for each of the five ways a session ends. In each round a
/// second token of the same session consumes before the end, so the refusal is the end's doing.
async fn tokens_of_an_ended_session_are_refused_at_consume(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let browser = app.clinic_client();
    let admin = || gateway::admin::Admin { store: app.store(), now: app.clock_now() };
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    let credential = "removal-test-credential";
    let link = gateway::store::NewFidoCredential {
        id: credential,
        credential_id: b"removal-test-credential-id",
        user_id: &user.id,
        name: "test key",
        aaguid: "00000000-0000-0000-0000-000000000000",
        aaguid_attested: false,
        backup_eligible: false,
        stored: "{}",
        counter: 0,
    };
    let via = gateway::store::LinkAuthorisation::Authenticator { via: "fido:test" };
    app.store().link_fido_credential(&link, via, app.clock_now()).await.unwrap();

    for way in ["logout", "end-session", "operator revoke", "account disable", "authenticator removal"] {
        assert_eq!(app.login(&browser, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 303, "{way}");
        let sid = open_session_with(&app, credential).await;
        let (s, control) = issue(&app, &emr, doctor()).await;
        assert_eq!(s, 200, "{way}: {control}");
        let (s, ok) = consume(&app, &emr, json!({ "token": control["token"] })).await;
        assert_eq!(s, 200, "{way}: the session's tokens consume while it is open: {ok}");
        let (s, body) = issue(&app, &emr, doctor()).await;
        assert_eq!(s, 200, "{way}: {body}");
        let token = body["token"].as_str().unwrap().to_owned();

        match way {
            "logout" => {
                let res = browser.post(app.url("/logout")).header("origin", app.origin()).send().await.unwrap();
                assert_eq!(res.status(), 303);
            }
            "end-session" => {
                let res = browser.post(app.url("/signing-session/end")).header("origin", app.origin()).send().await.unwrap();
                assert_eq!(res.status(), 303);
            }
            "operator revoke" => {
                admin().session_revoke(Some(&sid), None, None).await.unwrap();
            }
            "account disable" => admin().user_set_enabled(CLINIC, DOCTOR_LOGIN, false).await.unwrap(),
            "authenticator removal" => {
                assert_eq!(admin().fido_remove(CLINIC, DOCTOR_LOGIN, credential).await.unwrap(), vec![sid.clone()]);
            }
            _ => unreachable!(),
        }
        assert!(app.store().signing_session(&sid).await.unwrap().ended_at.is_some(), "{way} ends the session");
        let (s, err) = consume(&app, &emr, json!({ "token": token })).await;
        assert_eq!((s, err["error"].as_str()), (409, Some("session_ended")), "{way}: {err}");
        assert!(unused(&app, &jti_of(&token)).await, "{way}: nothing is marked used");
        if way == "account disable" {
            admin().user_set_enabled(CLINIC, DOCTOR_LOGIN, true).await.unwrap();
        }
    }

    // A doctor disabled but whose session row is not (yet) ended: refused as well.
    open_session_with(&app, credential).await;
    let (_, body) = issue(&app, &emr, doctor()).await;
    let token = body["token"].as_str().unwrap().to_owned();
    app.store().set_user_enabled(CLINIC, DOCTOR_LOGIN, false, app.clock_now()).await.unwrap();
    let (s, err) = consume(&app, &emr, json!({ "token": token })).await;
    assert_eq!((s, err["error"].as_str()), (409, Some("session_ended")), "{err}");
    assert!(unused(&app, &jti_of(&token)).await);
    app.state.group_commit.flush().await;
    let tail = app.store().audit_tail(300).await.unwrap();
    let refusals = tail.iter().filter(|r| r.event == "token_consumed" && r.detail["reason"] == "session_ended").count();
    assert_eq!(refusals, 6);
    app.stop().await;
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of `header` and `claims` signed ES256 with `key`, however odd the header.
fn es256(key: &aws_lc_rs::signature::EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = key.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

/// Issue 15, items 8 and the JWT checks: a token signed with the gateway's real key (a key the
/// test installed through rotation, so it holds the private half) but with a header the gateway
/// never makes, or out of its time, is refused at consume, each with its code; the same claims
/// with the real header still consume afterwards, so nothing was marked used and the checks can
/// fail.
async fn forged_headers_and_out_of_time_tokens_are_refused_at_consume(db: Db) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    let app = TestApp::spawn(db).await;
    let now = app.clock_now();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let new = gateway::tokens::key_from_pkcs8(&app.config.token_kek().unwrap(), pkcs8.as_ref()).unwrap();
    app.store().rotate_signing_key(&new.kid, "ES256", &new.public_jwk, &new.sealed_private, now).await.unwrap();
    app.state.token_keys.refresh(app.store(), now).await.unwrap();

    open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let (_, body) = issue(&app, &emr, doctor()).await;
    let real = body["token"].as_str().unwrap().to_owned();
    let real_header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(real.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(real_header, json!({ "alg": "ES256", "typ": "ninsho-signing+jwt", "kid": new.kid }));
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&real).unwrap().claims;
    let with = |changes: Value| {
        let mut h = real_header.clone();
        h.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        h
    };
    let attacker = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let attacker_jwk: Value =
        serde_json::from_str(&gateway::tokens::key_from_pkcs8(&app.config.token_kek().unwrap(), attacker.as_ref()).unwrap().public_jwk)
            .unwrap();

    let header_b64 = |h: &Value| b64(h.to_string().as_bytes());
    let claims_b64 = b64(claims.to_string().as_bytes());
    let alg_none = format!("{}.{claims_b64}.", header_b64(&with(json!({ "alg": "none" }))));
    let hs256 = {
        let input = format!("{}.{claims_b64}", header_b64(&with(json!({ "alg": "HS256" }))));
        let secret = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.public_key().as_ref());
        format!("{input}.{}", b64(aws_lc_rs::hmac::sign(&secret, input.as_bytes()).as_ref()))
    };
    let mut expired = claims.clone();
    expired["nbf"] = json!(now - 200);
    expired["iat"] = json!(now - 200);
    expired["exp"] = json!(now);
    let mut early = claims.clone();
    early["nbf"] = json!(now + 60);
    early["exp"] = json!(now + 120);

    let cases = [
        ("alg none", alg_none, 401, "invalid_token"),
        ("HS256 keyed with the public key", hs256, 401, "invalid_token"),
        ("embedded jwk", es256(&key, &with(json!({ "jwk": attacker_jwk })), &claims), 401, "invalid_token"),
        ("jku", es256(&key, &with(json!({ "jku": "https://evil.example/jwks.json" })), &claims), 401, "invalid_token"),
        ("unknown kid", es256(&key, &with(json!({ "kid": "no-such-key" })), &claims), 401, "invalid_token"),
        ("wrong typ", es256(&key, &with(json!({ "typ": "JWT" })), &claims), 401, "invalid_token"),
        ("no typ", es256(&key, &json!({ "alg": "ES256", "kid": new.kid }), &claims), 401, "invalid_token"),
        ("expired", es256(&key, &real_header, &expired), 401, "token_expired"),
        ("not yet valid", es256(&key, &real_header, &early), 401, "token_not_yet_valid"),
    ];
    for (what, token, status, code) in cases {
        let (s, err) = consume(&app, &emr, json!({ "token": token })).await;
        assert_eq!((s, err["error"].as_str().unwrap_or("")), (status, code), "{what}: {err}");
        // Audited with its code; the jti only where our signature vouches for it.
        let row = app.store().audit_tail(1).await.unwrap().remove(0);
        assert_eq!((row.event.as_str(), row.outcome.as_str(), &row.detail["reason"]), ("token_consumed", "failure", &json!(code)), "{what}");
        let vouched = code != "invalid_token";
        assert_eq!(row.detail["jti"] == claims["jti"], vouched, "{what}: {}", row.detail);
        assert_eq!(row.user_id.is_some(), vouched, "{what}");
    }
    assert!(unused(&app, claims["jti"].as_str().unwrap()).await, "no refusal marked the token used");
    // The same claims with the gateway's own header, signed by the same key: consumed.
    let (s, ok) = consume(&app, &emr, json!({ "token": es256(&key, &real_header, &claims) })).await;
    assert_eq!(s, 200, "{ok}");
    let (s, _) = consume(&app, &emr, json!({ "token": real })).await;
    assert_eq!(s, 409, "and then used");
    app.stop().await;
}

db_tests!(
    concurrent_requests_each_get_their_own_answer,
    token_commits_of_two_instances_and_queued_appends_chain_once,
    racing_issues_and_replayed_consumptions_are_each_answered_once,
    tokens_of_an_ended_session_are_refused_at_consume,
    forged_headers_and_out_of_time_tokens_are_refused_at_consume,
    no_signing_session_opens_unaudited,
    no_token_leaves_when_its_commit_fails,
    concurrent_tokens_are_each_recorded_and_audited,
    a_batch_records_live_sessions_and_refuses_closed_ones,
    token_carries_the_claims_and_verifies_with_the_jwks_alone,
    a_token_is_consumed_once,
    consumption_is_single_use_across_instances,
    a_token_bound_to_one_client_is_refused_to_another,
    every_refusal_has_its_code,
    sessions_expire_absolutely_and_when_idle_and_tokens_count_as_activity,
    emr_reads_and_ends_signing_sessions,
    rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key,
    signing_keys_are_encrypted_at_rest,
    openapi_document_is_served_and_lists_every_route,
    token_requests_racing_a_reauthentication_are_served,
);
