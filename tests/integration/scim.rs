//! SCIM 2.0 provisioning by the EMR (docs/design.md §3.16): a provisioner creates, changes and
//! deprovisions the users of its clinics under `/scim/v2`, and nothing of any other clinic; bad
//! requests get RFC 7644 errors and change nothing; ETags stop lost updates; and an independent
//! tester from PyPI (scim2-tester, tests/scim) checks the protocol.

use std::path::PathBuf;

use devpki::{LeafSpec, LeafUsage};
use gateway::store::{AuthMethod, ClientAuthMethod, ClinicLogin, NewSigningSession, ServiceClient, ServiceRole, UpstreamMatch};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{CLINIC, DOCTOR_LOGIN, Db, OTHER_CLINIC, OTHER_DOCTOR_LOGIN, TestApp, db_tests};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const EXT: &str = "urn:ninsho:params:scim:schemas:extension:2.0:User";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const PASSWORD: &str = "tranquil meadow lantern 42";

/// A provisioner's connection.
struct Prov {
    client: reqwest::Client,
    base: String,
    leaf: devpki::Leaf,
}

/// Registers a provisioner `id` serving `clinics`, with a certificate of the service CA.
async fn provisioner(app: &TestApp, id: &str, role: ServiceRole, clinics: &[&str]) -> Prov {
    let now = time::OffsetDateTime::from_unix_timestamp(app.clock_now()).unwrap();
    let leaf = app.pki.service_ca.issue(&LeafSpec::new(id, LeafUsage::TlsClient, now, 30)).unwrap();
    let peer = gateway::tls::PeerCert::from_der(&leaf.cert_der).unwrap();
    let client = ServiceClient {
        id: id.into(),
        name: id.into(),
        role,
        fingerprint: peer.fingerprint,
        subject: peer.subject,
        enabled: true,
        clinics: clinics.iter().map(|c| (*c).to_owned()).collect(),
    };
    app.store().add_service_client(&client, app.clock_now()).await.unwrap();
    Prov { client: app.client(Some(&leaf)), base: app.url("/scim/v2"), leaf }
}

struct Answer {
    status: u16,
    etag: Option<String>,
    content_type: String,
    body: Value,
}

impl Prov {
    async fn call(&self, method: Method, path: &str, body: Option<&str>, if_match: Option<&str>) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_owned());
        }
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let etag = res.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, etag, content_type, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.call(Method::POST, path, Some(&body.to_string()), None).await
    }
}

fn doctor(login: &str, external: &str, number: &str) -> Value {
    json!({
        "schemas": [USER, EXT],
        "userName": login,
        "externalId": external,
        "displayName": "高橋 一郎",
        "active": true,
        "password": PASSWORD,
        EXT: { "clinic": CLINIC, "userKind": "doctor", "medicalRegistrationNumber": number },
    })
}

/// Asserts a SCIM error of `status` (and `scim_type`, if given).
fn assert_error(a: &Answer, status: u16, scim_type: Option<&str>) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["schemas"], json!([ERROR]), "{}", a.body);
    assert_eq!(a.body["status"], json!(status.to_string()), "{}", a.body);
    assert_eq!(a.body["scimType"].as_str(), scim_type, "{}", a.body);
    assert!(a.content_type.starts_with("application/scim+json"), "{}", a.content_type);
}

/// Everything a refused request must leave as it was: the users and the audit log's length.
async fn snapshot(app: &TestApp) -> (String, i64) {
    let users = serde_json::to_string(&app.store().list_users(None).await.unwrap()).unwrap();
    (users, app.store().audit_head().await.unwrap().rows)
}

async fn open_signing_session(app: &TestApp, user_id: &str) -> String {
    let now = app.clock_now();
    let cfg = &app.config.signing_session;
    let new = NewSigningSession {
        user_id,
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
    app.store().open_signing_session(&new, now, &Default::default()).await.unwrap().session.id
}

async fn provisioned_doctor_signs_in_until_deprovisioned(db: Db) {
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    let created = prov.post("/Users", &doctor("takahashi", "emr-0001", "778899")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.content_type.starts_with("application/scim+json"));
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.etag.as_deref(), Some("W/\"1\""));
    assert_eq!(created.body["meta"]["version"], "W/\"1\"");
    assert_eq!(created.body["meta"]["location"], format!("{}/Users/{id}", prov.base));
    assert_eq!(created.body[EXT], json!({ "clinic": CLINIC, "userKind": "doctor", "medicalRegistrationNumber": "778899" }));
    assert!(created.body.get("password").is_none(), "a password is never returned");
    let read = prov.get(&format!("/Users/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);

    // The doctor signs in with the password the EMR set (permanent: straight to the set-up page).
    let browser = app.clinic_client();
    let login = app.login(&browser, "takahashi", PASSWORD).await;
    assert_eq!(login.status(), 303);
    assert_eq!(browser.get(app.url("/manage")).send().await.unwrap().status(), 200);
    let session = open_signing_session(&app, &id).await;

    let deleted = prov.call(Method::DELETE, &format!("/Users/{id}"), None, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    // The browser session and the signing session ended at once.
    assert_eq!(browser.get(app.url("/manage")).send().await.unwrap().status(), 303);
    let ended = app.store().signing_session(&session).await.unwrap();
    assert!(ended.ended_at.is_some());
    assert_eq!(ended.ended_reason.as_deref(), Some("account_disabled"));
    // Signing in is refused; SCIM no longer shows the user; the row stays for the audit log.
    assert_eq!(app.login(&app.clinic_client(), "takahashi", PASSWORD).await.status(), 403);
    assert_error(&prov.get(&format!("/Users/{id}")).await, 404, None);
    assert_error(&prov.call(Method::DELETE, &format!("/Users/{id}"), None, None).await, 404, None);
    let kept = app.store().user(&id).await.unwrap();
    assert!(!kept.enabled);
    let list = prov.get("/Users?filter=userName%20eq%20%22takahashi%22").await;
    assert_eq!(list.body["totalResults"], 0);

    let audit = app.store().audit_tail(50).await.unwrap();
    let fingerprint = gateway::tls::PeerCert::from_der(&prov.leaf.cert_der).unwrap().fingerprint;
    let created_row = audit.iter().find(|r| r.event == "scim_user_created").unwrap();
    assert_eq!(created_row.user_id.as_deref(), Some(id.as_str()));
    assert_eq!(created_row.detail["fingerprint"], fingerprint);
    assert_eq!(created_row.detail["password_set"], true);
    let gone = audit.iter().find(|r| r.event == "scim_user_deprovisioned").unwrap();
    assert_eq!(gone.user_id.as_deref(), Some(id.as_str()));
    assert_eq!(gone.detail["client_id"], "prov-a");
    assert_eq!(gone.detail["browser_sessions_ended"], 1);
    assert_eq!(gone.detail["signing_sessions_ended"], 1);
    assert!(audit.iter().any(|r| r.event == "signing_session_ended" && r.detail["session_id"] == session.as_str()));
    for r in &audit {
        assert!(!r.detail.to_string().contains(PASSWORD), "the password is never audited: {r:?}");
    }
    app.stop().await;
}

async fn provisioners_touch_only_their_clinics(db: Db) {
    let app = TestApp::spawn(db).await;
    let a = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    let b = provisioner(&app, "prov-b", ServiceRole::Provisioner, &[OTHER_CLINIC]).await;
    let other = app.store().user_by_login(OTHER_CLINIC, OTHER_DOCTOR_LOGIN).await.unwrap();
    let own = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    // B sees its clinic's doctor; A does not, by id or in a list.
    assert_eq!(b.get(&format!("/Users/{}", other.id)).await.status, 200);
    let before = snapshot(&app).await.0;
    let path = format!("/Users/{}", other.id);
    assert_error(&a.get(&path).await, 404, None);
    let list = a.get("/Users").await;
    assert_eq!(list.status, 200);
    let ids: Vec<&str> = list.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&own.id.as_str()) && !ids.contains(&other.id.as_str()), "{ids:?}");
    let filtered = a.get(&format!("/Users?filter=userName%20eq%20%22{OTHER_DOCTOR_LOGIN}%22")).await;
    assert_eq!(filtered.body["totalResults"], 0);
    // Nor change or delete it.
    let mut body = b.get(&path).await.body;
    body["displayName"] = json!("changed by A");
    assert_error(&a.call(Method::PUT, &path, Some(&body.to_string()), None).await, 404, None);
    let patch = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "active", "value": false }] });
    assert_error(&a.call(Method::PATCH, &path, Some(&patch.to_string()), None).await, 404, None);
    assert_error(&a.call(Method::DELETE, &path, None, None).await, 404, None);
    // Nor create a user in B's clinic.
    let mut elsewhere = doctor("intruder", "emr-x", "111222");
    elsewhere[EXT]["clinic"] = json!(OTHER_CLINIC);
    assert_error(&a.post("/Users", &elsewhere).await, 403, None);
    assert_eq!(snapshot(&app).await.0, before, "nothing changed");
    // Each refusal is audited as one.
    let refusals = app.store().audit_tail(20).await.unwrap();
    let refused: Vec<_> = refusals.iter().filter(|r| r.event == "api_refused" && r.detail["reason"] == "clinic_not_allowed").collect();
    assert_eq!(refused.len(), 5, "{refusals:?}");
    assert!(refused.iter().all(|r| r.detail["client_id"] == "prov-a" && r.clinic_id.as_deref() == Some(OTHER_CLINIC)));
    app.stop().await;
}

async fn bad_requests_get_scim_errors_and_change_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    let first = prov.post("/Users", &doctor("first", "emr-1", "100001")).await;
    assert_eq!(first.status, 201);
    let id = first.body["id"].as_str().unwrap().to_owned();
    let before = snapshot(&app).await;

    for raw in ["{not json", "[1, 2]"] {
        assert_error(&prov.call(Method::POST, "/Users", Some(raw), None).await, 400, Some("invalidSyntax"));
    }
    let mut wrong_schema = doctor("x1", "emr-x1", "200001");
    wrong_schema["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:Group"]);
    assert_error(&prov.post("/Users", &wrong_schema).await, 400, Some("invalidSyntax"));
    let mut no_schemas = doctor("x2", "emr-x2", "200002");
    no_schemas.as_object_mut().unwrap().remove("schemas");
    assert_error(&prov.post("/Users", &no_schemas).await, 400, Some("invalidSyntax"));
    let mut unknown = doctor("x3", "emr-x3", "200003");
    unknown["emails"] = json!([{ "value": "a@example.jp" }]);
    assert_error(&prov.post("/Users", &unknown).await, 400, Some("invalidSyntax"));
    let mut unknown_ext = doctor("x4", "emr-x4", "200004");
    unknown_ext[EXT]["ward"] = json!("3F");
    assert_error(&prov.post("/Users", &unknown_ext).await, 400, Some("invalidSyntax"));
    let mut no_number = doctor("x5", "emr-x5", "200005");
    no_number[EXT].as_object_mut().unwrap().remove("medicalRegistrationNumber");
    assert_error(&prov.post("/Users", &no_number).await, 400, Some("invalidValue"));
    let mut bad_number = doctor("x6", "emr-x6", "20A");
    bad_number[EXT]["medicalRegistrationNumber"] = json!("20A");
    assert_error(&prov.post("/Users", &bad_number).await, 400, Some("invalidValue"));
    let mut staff_number = doctor("x7", "emr-x7", "200007");
    staff_number[EXT]["userKind"] = json!("staff");
    assert_error(&prov.post("/Users", &staff_number).await, 400, Some("invalidValue"));
    let mut weak = doctor("x8", "emr-x8", "200008");
    weak["password"] = json!("password");
    assert_error(&prov.post("/Users", &weak).await, 400, Some("invalidValue"));
    let mut not_bool = doctor("x9", "emr-x9", "200009");
    not_bool["active"] = json!(3);
    assert_error(&prov.post("/Users", &not_bool).await, 400, Some("invalidValue"));
    // Duplicates: userName (compared folded, as at login), externalId, 医籍番号.
    assert_error(&prov.post("/Users", &doctor("ＦＩＲＳＴ", "emr-2", "100002")).await, 409, Some("uniqueness"));
    assert_error(&prov.post("/Users", &doctor("second", "emr-1", "100002")).await, 409, Some("uniqueness"));
    assert_error(&prov.post("/Users", &doctor("second", "emr-2", "100001")).await, 409, Some("uniqueness"));
    assert_error(&prov.post("/Users", &doctor(DOCTOR_LOGIN, "emr-2", "100002")).await, 409, Some("uniqueness"));
    // Bad filters.
    for filter in ["displayName%20eq%20%22a%22", "userName%20co%20%22a%22", "userName%20eq%20%22a%22%20or%20active%20eq%20true", "%28", "userName"] {
        assert_error(&prov.get(&format!("/Users?filter={filter}")).await, 400, Some("invalidFilter"));
    }
    assert_error(&prov.get("/Users?count=many").await, 400, Some("invalidValue"));
    // Bad patches and replaces of the existing user.
    let path = format!("/Users/{id}");
    let patch = |ops: Value| json!({ "schemas": [PATCH], "Operations": ops }).to_string();
    for (body, scim_type) in [
        (patch(json!([{ "op": "remove" }])), "noTarget"),
        (patch(json!([{ "op": "replace", "path": "nickName", "value": "x" }])), "noTarget"),
        (patch(json!([{ "op": "replace", "path": "emails[type eq \"work\"].value", "value": "x" }])), "invalidPath"),
        (patch(json!([{ "op": "move", "path": "active", "value": false }])), "invalidSyntax"),
        (patch(json!([{ "op": "remove", "path": format!("{EXT}:medicalRegistrationNumber") }])), "invalidValue"),
        (patch(json!([{ "op": "replace", "path": format!("{EXT}:clinic"), "value": OTHER_CLINIC }])), "mutability"),
        (patch(json!([{ "op": "replace", "path": "userName", "value": DOCTOR_LOGIN }, { "op": "replace", "path": "active", "value": false }])), "uniqueness"),
        (json!({ "schemas": [USER], "Operations": [] }).to_string(), "invalidSyntax"),
        ("{".to_owned(), "invalidSyntax"),
    ] {
        let a = prov.call(Method::PATCH, &path, Some(&body), None).await;
        assert_error(&a, if scim_type == "uniqueness" { 409 } else { 400 }, Some(scim_type));
    }
    let mut moved = first.body.clone();
    moved[EXT]["clinic"] = json!(OTHER_CLINIC);
    assert_error(&prov.call(Method::PUT, &path, Some(&moved.to_string()), None).await, 400, Some("mutability"));
    assert_eq!(snapshot(&app).await, before, "nothing changed, nothing audited");
    app.stop().await;
}

async fn patch_and_replace_change_what_they_say(db: Db) {
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    let created = prov.post("/Users", &doctor("kato", "emr-7", "300001")).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let ops = json!({ "schemas": [PATCH], "Operations": [
        { "op": "replace", "path": "displayName", "value": "加藤 二郎" },
        { "op": "Replace", "path": "externalId", "value": "emr-8" },
        { "op": "add", "value": { "userName": "kato2", EXT: { "medicalRegistrationNumber": "300002" } } },
        { "op": "replace", "path": "password", "value": "another quiet harbour 7" },
    ] });
    let patched = prov.call(Method::PATCH, &path, Some(&ops.to_string()), None).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.etag.as_deref(), Some("W/\"2\""));
    assert_eq!(patched.body["displayName"], "加藤 二郎");
    assert_eq!(patched.body["externalId"], "emr-8");
    assert_eq!(patched.body["userName"], "kato2");
    assert_eq!(patched.body[EXT]["medicalRegistrationNumber"], "300002");
    assert_eq!(app.login(&app.clinic_client(), "kato2", "another quiet harbour 7").await.status(), 303);
    assert_eq!(app.login(&app.clinic_client(), "kato2", PASSWORD).await.status(), 403);
    // Removing externalId, then switching the account off with a PATCH of active.
    let off = json!({ "schemas": [PATCH], "Operations": [
        { "op": "remove", "path": "externalId" },
        { "op": "replace", "path": "active", "value": false },
    ] });
    let patched = prov.call(Method::PATCH, &path, Some(&off.to_string()), None).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert!(patched.body.get("externalId").is_none());
    assert_eq!(patched.body["active"], false);
    assert_eq!(app.login(&app.clinic_client(), "kato2", "another quiet harbour 7").await.status(), 403);
    // A replace puts it back on, as staff (no 医籍番号).
    let staff = json!({ "schemas": [USER, EXT], "userName": "kato2", "displayName": "加藤 二郎", "active": true,
        EXT: { "clinic": CLINIC, "userKind": "staff" } });
    let replaced = prov.call(Method::PUT, &path, Some(&staff.to_string()), None).await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.body[EXT], json!({ "clinic": CLINIC, "userKind": "staff" }));
    assert_eq!(replaced.etag.as_deref(), Some("W/\"4\""));
    // Newest first.
    let changes: Vec<Value> = app
        .store()
        .audit_tail(20)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "scim_user_changed")
        .map(|r| r.detail["changed"].clone())
        .collect();
    assert_eq!(changes, [
        json!(["active", "userKind", "medicalRegistrationNumber"]),
        json!(["externalId", "active"]),
        json!(["userName", "displayName", "externalId", "medicalRegistrationNumber", "password"]),
    ]);
    app.stop().await;
}

async fn a_stale_if_match_gets_412_and_changes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    let created = prov.post("/Users", &doctor("ito", "emr-9", "400001")).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let etag = created.etag.unwrap();
    let mut first = created.body.clone();
    first["displayName"] = json!("first writer");
    let mut second = created.body.clone();
    second["displayName"] = json!("second writer");
    let a = prov.call(Method::PUT, &path, Some(&first.to_string()), Some(&etag)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.etag.as_deref(), Some("W/\"2\""));
    let before = snapshot(&app).await;
    assert_error(&prov.call(Method::PUT, &path, Some(&second.to_string()), Some(&etag)).await, 412, None);
    let patch = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "active", "value": false }] });
    assert_error(&prov.call(Method::PATCH, &path, Some(&patch.to_string()), Some(&etag)).await, 412, None);
    assert_error(&prov.call(Method::DELETE, &path, None, Some(&etag)).await, 412, None);
    assert_eq!(snapshot(&app).await, before);
    let now = prov.get(&path).await;
    assert_eq!(now.body["displayName"], "first writer");
    assert_eq!(now.etag.as_deref(), Some("W/\"2\""));
    // The current version (and `*`) is accepted.
    let ok = prov.call(Method::PATCH, &path, Some(&patch.to_string()), Some("W/\"2\"")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(prov.call(Method::DELETE, &path, None, Some("*")).await.status, 204);

    // Two writers racing from the same version through the store: exactly one wins.
    let created = prov.post("/Users", &doctor("race", "emr-10", "400002")).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let etag = created.etag.unwrap();
    let mut bodies = Vec::new();
    for n in 0..4 {
        let mut b = created.body.clone();
        b["displayName"] = json!(format!("writer {n}"));
        bodies.push(b.to_string());
    }
    let put = |n: usize| prov.call(Method::PUT, &path, Some(&bodies[n]), Some(&etag));
    let (a0, a1, a2, a3) = tokio::join!(put(0), put(1), put(2), put(3));
    let answers = [a0, a1, a2, a3];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 3, "{statuses:?}");
    let winner = answers.iter().find(|a| a.status == 200).unwrap();
    assert_eq!(prov.get(&path).await.body["displayName"], winner.body["displayName"]);
    app.stop().await;
}

async fn lists_filter_and_page(db: Db) {
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    // The seed's doctor1 and staff1, and five more, two of them inactive.
    for n in 0..5 {
        let mut body = doctor(&format!("page{n}"), &format!("emr-p{n}"), &format!("50000{n}"));
        body["active"] = json!(n % 2 == 0 || n == 1);
        body.as_object_mut().unwrap().remove("password");
        assert_eq!(prov.post("/Users", &body).await.status, 201);
        app.clock.advance(time::Duration::seconds(1));
    }
    // A test account (docs/design.md §3.10) is the operator's: never listed or shown.
    let test_account = gateway::store::NewUser {
        id: "test-account",
        clinic_id: CLINIC,
        login_id: "check",
        kind: gateway::store::UserKind::Doctor,
        name: "gateway check",
        medical_reg_no: None,
        password_hash: "x",
        password_temporary: false,
        test_account: true,
    };
    app.store().add_user(&test_account, app.clock_now()).await.unwrap();
    assert_error(&prov.get("/Users/test-account").await, 404, None);
    let all = prov.get("/Users").await;
    assert_eq!(all.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));
    assert_eq!(all.body["totalResults"], 7);
    assert_eq!(all.body["itemsPerPage"], 7);
    assert_eq!(all.body["startIndex"], 1);
    let names = |a: &Answer| a.body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let everyone = names(&all);
    // Pages: startIndex is 1-based, count the page size; totalResults stays the whole.
    let page = prov.get("/Users?startIndex=3&count=2").await;
    assert_eq!((page.body["totalResults"].as_i64(), page.body["itemsPerPage"].as_i64(), page.body["startIndex"].as_i64()), (Some(7), Some(2), Some(3)));
    assert_eq!(names(&page), everyone[2..4]);
    let last = prov.get("/Users?startIndex=7&count=5").await;
    assert_eq!(names(&last), everyone[6..]);
    assert_eq!(prov.get("/Users?startIndex=0&count=0").await.body["itemsPerPage"], 0);
    let big = prov.get("/Users?count=100000").await;
    assert_eq!(big.body["itemsPerPage"], 7, "clamped to maxResults, which ServiceProviderConfig advertises");
    assert_eq!(prov.get("/ServiceProviderConfig").await.body["filter"], json!({ "supported": true, "maxResults": 200 }));
    // Each filter, and their conjunction.
    let by_name = prov.get("/Users?filter=userName%20eq%20%22PAGE3%22").await;
    assert_eq!(names(&by_name), ["page3"]);
    let by_external = prov.get("/Users?filter=externalId%20eq%20%22emr-p4%22").await;
    assert_eq!(names(&by_external), ["page4"]);
    assert_eq!(prov.get("/Users?filter=externalId%20eq%20%22EMR-P4%22").await.body["totalResults"], 0, "externalId is case-exact");
    let inactive = prov.get("/Users?filter=active%20eq%20false").await;
    assert_eq!(names(&inactive), ["page3"]);
    let active = prov.get("/Users?filter=active%20eq%20true").await;
    assert_eq!(active.body["totalResults"], 6);
    let both = prov.get("/Users?filter=userName%20eq%20%22page3%22%20and%20active%20eq%20true").await;
    assert_eq!(both.body["totalResults"], 0);
    let both = prov.get("/Users?filter=userName%20eq%20%22page2%22%20and%20active%20eq%20true").await;
    assert_eq!(names(&both), ["page2"]);
    // The same through POST /Users/.search, with attributes.
    let search = prov
        .post("/Users/.search", &json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "externalId eq \"emr-p1\"", "attributes": ["userName"] }))
        .await;
    assert_eq!(search.status, 200, "{}", search.body);
    let found = &search.body["Resources"][0];
    assert_eq!(found["userName"], "page1");
    assert!(found.get("displayName").is_none() && found.get("id").is_some(), "{found}");
    app.stop().await;
}

async fn roles_are_kept_apart(db: Db) {
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    // An EMR client is refused on /scim/v2, with a SCIM error, and audited.
    let emr = Prov { client: app.client(Some(&app.pki.emr_a)), base: app.url("/scim/v2"), leaf: prov.leaf.clone() };
    assert_error(&emr.get("/Users").await, 403, None);
    assert_error(&emr.post("/Users", &doctor("via-emr", "emr-e", "600001")).await, 403, None);
    assert_error(&emr.get("/ServiceProviderConfig").await, 403, None);
    let refused = app.store().audit_tail(1).await.unwrap().remove(0);
    assert_eq!((refused.event.as_str(), refused.detail["reason"].as_str()), ("api_refused", Some("wrong_role")));
    // So is a clinic device and an unregistered client.
    let clinic = Prov { client: app.clinic_client(), base: app.url("/scim/v2"), leaf: prov.leaf.clone() };
    assert_error(&clinic.get("/Users").await, 403, None);
    // A provisioner is refused on the EMR API.
    let res = prov
        .client
        .post(app.url("/api/v1/signing-tokens"))
        .json(&json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "wrong_role");
    let res = prov.client.get(app.url(&format!("/api/v1/signing-sessions?clinic_id={CLINIC}&doctor_id={DOCTOR_LOGIN}"))).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // Unknown SCIM endpoints and methods answer SCIM errors too.
    assert_error(&prov.get("/Groups").await, 404, None);
    assert_error(&prov.call(Method::DELETE, "/Users", None, None).await, 405, None);
    assert_error(&prov.post("/.search", &json!({})).await, 501, None);
    assert_error(&prov.call(Method::POST, "/Users", Some("{}"), None).await, 400, Some("invalidSyntax"));
    let form = prov.client.post(app.url("/scim/v2/Users")).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(form.status(), 415);
    // application/json is accepted as well as application/scim+json.
    let plain = prov.client.post(app.url("/scim/v2/Users")).json(&doctor("json", "emr-j", "600002")).send().await.unwrap();
    assert_eq!(plain.status(), 201);
    // A disabled provisioner is refused at once.
    app.store().set_service_client_enabled("prov-a", false, app.clock_now()).await.unwrap();
    assert_error(&prov.get("/Users").await, 403, None);
    app.stop().await;
}

async fn the_cli_registers_a_provisioner(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = time::OffsetDateTime::from_unix_timestamp(app.clock_now()).unwrap();
    let leaf = app.pki.service_ca.issue(&LeafSpec::new("prov-cli", LeafUsage::TlsClient, now, 30)).unwrap();
    let pem = app.dir.path().join("prov.pem");
    std::fs::write(&pem, &leaf.cert_pem).unwrap();
    let pem = pem.display().to_string();
    let add = ["admin", "service-client", "add", "--id", "prov-cli", "--name", "ACME provisioning", "--role", "provisioner", "--cert", &pem];
    let (code, out) = crate::admin_cli::cli(&app, &add, "").await;
    assert_ne!(code, 0);
    assert!(out.contains("a provisioner client needs at least one --clinic"), "{out}");
    let with_clinic: Vec<&str> = add.iter().copied().chain(["--clinic", CLINIC]).collect();
    let (code, out) = crate::admin_cli::cli(&app, &with_clinic, "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("added provisioner client prov-cli"), "{out}");
    let (_, list) = crate::admin_cli::cli(&app, &["admin", "service-client", "list"], "").await;
    assert!(list.lines().any(|l| l.starts_with("prov-cli\tprovisioner\t")), "{list}");
    let prov = Prov { client: app.client(Some(&leaf)), base: app.url("/scim/v2"), leaf };
    assert_eq!(prov.get("/Users").await.body["totalResults"], 2, "the clinic's doctor1 and staff1");
    app.stop().await;
}

/// The virtualenv tests/run.sh made with scim2-tester (tests/scim/requirements.txt).
fn tester_venv() -> PathBuf {
    let dir = std::env::var("NINSHO_TEST_SCIM_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(std::path::Path::parent).and_then(std::path::Path::parent).unwrap().join("scim-tester/venv")
    });
    assert!(
        dir.join("bin/python").exists(),
        "{} has no scim2-tester virtualenv: run tests/run.sh (or set NINSHO_TEST_SCIM_VENV)",
        dir.display()
    );
    dir
}

/// Checks the tester may report without it being a fault, each with its reason. Everything else
/// must be SUCCESS, COMPLIANT, ACCEPTABLE or SKIPPED. (With scim2-tester 0.5.2 all 42 checks run;
/// one is SKIPPED by the tester itself: `search_with_attributes`, POST `/.search` across resource
/// types, which the gateway answers 501 as RFC 7644 §3.4.3 allows: User is its only type, and
/// `POST /Users/.search` is supported.)
const EXPLAINED: &[(&str, &str)] = &[];

async fn independent_conformance_tester_passes(db: Db) {
    let venv = tester_venv();
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-conformance", ServiceRole::Provisioner, &[CLINIC]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cert = file("prov.pem", &prov.leaf.cert_pem);
    let key = file("prov.key", &prov.leaf.key_pem);
    let ca = file("ca.pem", app.pki.server_ca.cert_pem());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scim/conformance.py");
    let out = tokio::process::Command::new(venv.join("bin/python"))
        .arg(&script)
        .arg(&prov.base)
        .arg(&cert)
        .arg(&key)
        .arg(&ca)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "conformance.py failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ok = ["SUCCESS", "COMPLIANT", "ACCEPTABLE", "SKIPPED"];
    let faults: Vec<&Value> = results
        .iter()
        .filter(|r| !ok.contains(&r["status"].as_str().unwrap()))
        .filter(|r| !EXPLAINED.iter().any(|(title, _)| r["title"] == *title))
        .collect();
    assert!(faults.is_empty(), "scim2-tester found faults: {faults:#?}");
    for r in results.iter().filter(|r| r["status"] != "SUCCESS") {
        eprintln!("scim2-tester: {} {} ({})", r["status"], r["title"], r["reason"]);
    }
    let passed = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    eprintln!("scim2-tester: {passed} of {} checks succeeded", results.len());
    assert!(passed >= 40, "too few checks succeeded: {results:#?}");
    // What the tester did shows in the audit log as provisioning.
    let audit = app.store().audit_tail(500).await.unwrap();
    assert!(audit.iter().any(|r| r.event == "scim_user_created" && r.detail["client_id"] == "prov-conformance"));
    app.stop().await;
}

/// A clinic that signs in through its EMR's provider keeps no passwords: SCIM refuses one on
/// create, replace and patch, and provisions the user without one.
async fn no_password_where_the_clinic_signs_in_upstream(db: Db) {
    let app = TestApp::spawn(db).await;
    let prov = provisioner(&app, "prov-a", ServiceRole::Provisioner, &[CLINIC]).await;
    let upstream = ClinicLogin {
        clinic_id: CLINIC.into(),
        issuer: "https://emr-idp.example.jp".into(),
        client_id: "ninsho".into(),
        sealed_secret: vec![1; 48],
        claim: "sub".into(),
        match_on: UpstreamMatch::ExternalId,
        scopes: "openid".into(),
        auth_method: ClientAuthMethod::ClientSecretBasic,
    };
    app.store().set_clinic_login(&upstream, app.clock_now()).await.unwrap();
    let before = snapshot(&app).await;
    assert_error(&prov.post("/Users", &doctor("up1", "emr-up1", "300001")).await, 400, Some("mutability"));
    assert_eq!(snapshot(&app).await, before, "nothing created");

    let mut without = doctor("up1", "emr-up1", "300001");
    without.as_object_mut().unwrap().remove("password");
    let created = prov.post("/Users", &without).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let etag = created.etag.clone().unwrap();
    let before = snapshot(&app).await;
    let patch = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "password", "value": PASSWORD }] });
    let patched = prov.call(Method::PATCH, &format!("/Users/{id}"), Some(&patch.to_string()), Some(&etag)).await;
    assert_error(&patched, 400, Some("mutability"));
    let replaced = prov.call(Method::PUT, &format!("/Users/{id}"), Some(&doctor("up1", "emr-up1", "300001").to_string()), Some(&etag)).await;
    assert_error(&replaced, 400, Some("mutability"));
    assert_eq!(snapshot(&app).await, before, "nothing changed");
    // The password form is off for this clinic, so no password of this user can be used here.
    let res = app.login(&app.clinic_client(), "up1", PASSWORD).await;
    assert_eq!(res.status(), 403);
    app.stop().await;
}

db_tests!(
    no_password_where_the_clinic_signs_in_upstream,
    provisioned_doctor_signs_in_until_deprovisioned,
    provisioners_touch_only_their_clinics,
    bad_requests_get_scim_errors_and_change_nothing,
    patch_and_replace_change_what_they_say,
    a_stale_if_match_gets_412_and_changes_nothing,
    lists_filter_and_page,
    roles_are_kept_apart,
    the_cli_registers_a_provisioner,
    independent_conformance_tester_passes,
);
