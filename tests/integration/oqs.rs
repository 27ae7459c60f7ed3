//! The OQS relay's gateway side (docs/design.md §3.13), over real mTLS on both databases: an EMR
//! queues a file, the clinic's agent leases it, reports it written and uploads the answer, the
//! EMR reads it; every refusal at the door changes nothing; unanswered requests expire with the
//! step they stopped at (injected clock); one agent per clinic; leases; long-polls.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gateway::store::AuditVerification;
use serde_json::{Value, json};

use crate::helpers::*;

const AGENT_A: &str = "agent-aaaa-0001";
const AGENT_B: &str = "agent-bbbb-0002";

fn request_xml(id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?><XmlMsg><MessageHeader><MedicalInstitutionCode>1311234567</MedicalInstitutionCode><ArbitraryFileIdentifier>{id}</ArbitraryFileIdentifier></MessageHeader><MessageBody><PrescriptionInfo>秘密の処方内容</PrescriptionInfo></MessageBody></XmlMsg>"#
    )
}

fn answer_xml(id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?><XmlMsg><MessageHeader><ArbitraryFileIdentifier>{id}</ArbitraryFileIdentifier><SegmentOfResult>1</SegmentOfResult><ErrorCode/><ErrorMessage/><CharacterCodeIdentifier>0</CharacterCodeIdentifier></MessageHeader><MessageBody><ProcessingResultStatus>1</ProcessingResultStatus></MessageBody></XmlMsg>"#
    )
}

async fn enqueue(app: &TestApp, client: &reqwest::Client, clinic: &str, body: Value) -> (u16, Value) {
    let res = client.post(app.url(&format!("/api/v1/clinics/{clinic}/oqs/requests"))).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn file(name: &str, xml: &str) -> Value {
    json!({ "file_name": name, "content": STANDARD.encode(xml) })
}

async fn state_of(app: &TestApp, client: &reqwest::Client, id: &str, wait: u64) -> (u16, Value) {
    let res = client.get(app.url(&format!("/api/v1/oqs/requests/{id}?wait={wait}"))).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// An agent's call: method, path, its id, an optional JSON body.
async fn agent(app: &TestApp, client: &reqwest::Client, id: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = match method {
        "GET" => client.get(app.url(path)),
        _ => client.post(app.url(path)),
    }
    .header("x-ninsho-agent", id)
    .header("x-ninsho-agent-version", "1.0.0-test");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn audit_events(app: &TestApp) -> Vec<(String, String, Value)> {
    app.store().audit_tail(500).await.unwrap().into_iter().map(|r| (r.event, r.outcome, r.detail)).collect()
}

async fn a_request_travels_from_the_emr_to_the_agent_and_back(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let clinic = app.clinic_client();
    let name = "EPSsiDMP01req_0123456789ab.xml";
    let (s, queued) = enqueue(&app, &emr, CLINIC, file(name, &request_xml("X1"))).await;
    assert_eq!(s, 202, "{queued}");
    assert_eq!(queued["status"], "queued");
    let id = queued["request_id"].as_str().unwrap().to_owned();
    let (s, st) = state_of(&app, &emr, &id, 0).await;
    assert_eq!((s, st["status"].as_str()), (200, Some("queued")), "{st}");

    // The agent names its clinic, takes the request, writes it, reports it.
    let (s, hb) = agent(&app, &clinic, AGENT_A, "POST", "/agent/v1/heartbeat", Some(json!({}))).await;
    assert_eq!(s, 200, "{hb}");
    assert_eq!(hb["clinic_id"], CLINIC);
    let (s, next) = agent(&app, &clinic, AGENT_A, "GET", "/agent/v1/oqs/next?wait=0", None).await;
    assert_eq!(s, 200, "{next}");
    assert_eq!(next["request_id"], id.as_str());
    assert_eq!(next["file_name"], name);
    assert_eq!(STANDARD.decode(next["content"].as_str().unwrap()).unwrap(), request_xml("X1").as_bytes());
    let (s, _) = agent(&app, &clinic, AGENT_A, "GET", "/agent/v1/oqs/next?wait=0", None).await;
    assert_eq!(s, 204, "nothing else waits");
    let (s, _) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/delivered"), None).await;
    assert_eq!(s, 204);
    let (s, _) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/delivered"), None).await;
    assert_eq!(s, 204, "a repeated report is accepted");
    let (_, st) = state_of(&app, &emr, &id, 0).await;
    assert_eq!(st["status"], "delivered");

    // The answer must carry the paired name and be XML.
    let wrong = json!({ "file_name": "EPSsiDMP01res_other.xml", "content": STANDARD.encode(answer_xml("X1")) });
    let (s, e) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/response"), Some(wrong)).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_file_name")), "{e}");
    let garbage = json!({ "file_name": "EPSsiDMP01res_0123456789ab.xml", "content": STANDARD.encode("<XmlMsg>") });
    let (s, e) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/response"), Some(garbage)).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("not_xml")), "{e}");
    let answer = json!({ "file_name": "EPSsiDMP01res_0123456789ab.xml", "content": STANDARD.encode(answer_xml("X1")) });
    let (s, e) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/response"), Some(answer.clone())).await;
    assert_eq!(s, 204, "{e}");
    let (s, _) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/response"), Some(answer)).await;
    assert_eq!(s, 204, "a retried upload is accepted once more, changing nothing");

    let (s, st) = state_of(&app, &emr, &id, 0).await;
    assert_eq!(s, 200);
    assert_eq!(st["status"], "answered", "{st}");
    assert_eq!(st["response"]["file_name"], "EPSsiDMP01res_0123456789ab.xml");
    assert_eq!(STANDARD.decode(st["response"]["content"].as_str().unwrap()).unwrap(), answer_xml("X1").as_bytes());
    // Another EMR client of the same clinic may read it; one of another clinic may not know of it.
    let (s, _) = state_of(&app, &app.client(Some(&app.pki.emr_b)), &id, 0).await;
    assert_eq!(s, 200);
    let (s, e) = state_of(&app, &app.client(Some(&app.pki.emr_other)), &id, 0).await;
    assert_eq!((s, e["error"].as_str()), (404, Some("request_not_found")));

    // Every step is audited with ids, names and sizes; never the content.
    let events = audit_events(&app).await;
    for step in ["oqs_enqueued", "oqs_relay_claimed", "oqs_leased", "oqs_delivered", "oqs_answered", "oqs_answer_read"] {
        assert!(events.iter().any(|(e, o, _)| e == step && o == "success"), "{step} audited: {events:?}");
    }
    let enq = events.iter().find(|(e, o, _)| e == "oqs_enqueued" && o == "success").unwrap();
    assert_eq!(enq.2["file_name"], name);
    assert_eq!(enq.2["size"], request_xml("X1").len());
    for (_, _, detail) in &events {
        let text = detail.to_string();
        assert!(!text.contains("秘密") && !text.contains("XmlMsg") && !text.contains("PHhtbC"), "content in the audit: {text}");
    }
    assert!(matches!(app.store().audit_verify().await.unwrap(), AuditVerification::Intact { .. }));
    app.stop().await;
}

async fn bad_files_are_refused_at_enqueue_and_change_nothing(db: Db) {
    let app = TestApp::builder(db).with_config(|c| c.oqs.max_file_bytes = 2048).spawn().await;
    let emr = app.client(Some(&app.pki.emr_a));
    let ok_xml = request_xml("R");
    let cases = [
        (file("../EPSsiDMP01req_1.xml", &ok_xml), 400, "bad_file_name"),
        (file("EPSsiDMP01req_1.txt", &ok_xml), 400, "bad_file_name"),
        (file("EPSsiDMP01res_1.xml", &ok_xml), 400, "bad_file_name"),
        (file("EPSsiDMP01req_1.xml", &format!("<XmlMsg>{}</XmlMsg>", "a".repeat(3000))), 413, "file_too_large"),
        (file("EPSsiDMP01req_1.xml", "not xml"), 400, "not_xml"),
        (file("EPSsiDMP01req_1.xml", "<XmlMsg><unclosed></XmlMsg>"), 400, "not_xml"),
        (file("EPSsiDMP01req_1.xml", "<Other/>"), 400, "not_xml"),
        (file("EPSsiDMP01req_1.xml", r#"<!DOCTYPE XmlMsg [<!ENTITY x "y">]><XmlMsg>&x;</XmlMsg>"#), 400, "not_xml"),
        (json!({ "file_name": "EPSsiDMP01req_1.xml", "content": "***not base64***" }), 400, "bad_request"),
        (json!({ "file_name": "EPSsiDMP01req_1.xml" }), 400, "bad_request"),
    ];
    for (body, status, code) in cases {
        let (s, e) = enqueue(&app, &emr, CLINIC, body.clone()).await;
        assert_eq!((s, e["error"].as_str()), (status, Some(code)), "{body}: {e}");
        assert!(!e["message"].as_str().unwrap_or_default().is_empty());
    }
    // Callers: a client of another clinic, a signer, an unknown clinic.
    let (s, e) = enqueue(&app, &app.client(Some(&app.pki.emr_other)), CLINIC, file("EPSsiDMP01req_1.xml", &ok_xml)).await;
    assert_eq!((s, e["error"].as_str()), (403, Some("clinic_not_allowed")));
    let (s, e) = enqueue(&app, &app.client(Some(&app.pki.signer)), CLINIC, file("EPSsiDMP01req_1.xml", &ok_xml)).await;
    assert_eq!((s, e["error"].as_str()), (403, Some("wrong_role")));
    let (s, _) = enqueue(&app, &app.clinic_client(), CLINIC, file("EPSsiDMP01req_1.xml", &ok_xml)).await;
    assert_eq!(s, 403, "a clinic device is no service client");
    // Nothing was queued.
    let (s, _) = agent(&app, &app.clinic_client(), AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!(s, 204);
    assert!(app.store().oqs_queue_depths().await.unwrap().is_empty());
    // A live name is taken; once answered or ended it is free again.
    let (s, first) = enqueue(&app, &emr, CLINIC, file("EPSsiDMP01req_1.xml", &ok_xml)).await;
    assert_eq!(s, 202);
    let (s, e) = enqueue(&app, &emr, CLINIC, file("EPSsiDMP01req_1.xml", &ok_xml)).await;
    assert_eq!((s, e["error"].as_str()), (409, Some("name_in_use")));
    let refusals = audit_events(&app).await.into_iter().filter(|(e, o, _)| e == "oqs_enqueued" && o == "failure").count();
    assert!(refusals >= 9, "refusals at the door are audited: {refusals}");
    let _ = first;
    app.stop().await;
}

async fn a_clinic_queue_is_bounded(db: Db) {
    let app = TestApp::builder(db).with_config(|c| c.oqs.max_queued_per_clinic = 2).spawn().await;
    let emr = app.client(Some(&app.pki.emr_a));
    for i in 0..2 {
        let (s, e) = enqueue(&app, &emr, CLINIC, file(&format!("EPSsiDMP01req_{i}.xml"), &request_xml("Q"))).await;
        assert_eq!(s, 202, "{e}");
    }
    let (s, e) = enqueue(&app, &emr, CLINIC, file("EPSsiDMP01req_9.xml", &request_xml("Q"))).await;
    assert_eq!((s, e["error"].as_str()), (429, Some("queue_full")), "{e}");
    app.stop().await;
}

async fn only_the_clinics_own_agent_takes_and_answers(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let (_, q) = enqueue(&app, &emr, CLINIC, file("EPSsiDMP01req_f1.xml", &request_xml("F"))).await;
    let id = q["request_id"].as_str().unwrap().to_owned();
    let foreign = app.client(Some(&app.pki.other_clinic_client));
    let (s, _) = agent(&app, &foreign, AGENT_B, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!(s, 204, "another clinic's agent sees nothing of this clinic");
    for step in ["delivered", "failed"] {
        let body = (step == "failed").then(|| json!({ "reason": "name_taken" }));
        let (s, e) = agent(&app, &foreign, AGENT_B, "POST", &format!("/agent/v1/oqs/{id}/{step}"), body).await;
        assert_eq!((s, e["error"].as_str()), (404, Some("request_not_found")), "{step}");
    }
    let answer = json!({ "file_name": "EPSsiDMP01res_f1.xml", "content": STANDARD.encode(answer_xml("F")) });
    let (s, _) = agent(&app, &foreign, AGENT_B, "POST", &format!("/agent/v1/oqs/{id}/response"), Some(answer)).await;
    assert_eq!(s, 404);
    // Without an agent id, or with an unregistered or revoked certificate: JSON refusals.
    let (s, e) = agent(&app, &app.clinic_client(), "bad id", "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_agent_id")));
    let (s, e) = agent(&app, &app.client(Some(&app.pki.unregistered_client)), AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!((s, e["error"].as_str()), (403, Some("cert_not_registered")), "{e}");
    let (s, e) = agent(&app, &app.client(Some(&app.pki.disabled_clinic_client)), AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!((s, e["error"].as_str()), (403, Some("clinic_disabled")), "{e}");
    // The request is still there for its own clinic's agent.
    let (s, next) = agent(&app, &app.clinic_client(), AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!((s, next["request_id"].as_str()), (200, Some(id.as_str())));
    app.stop().await;
}

async fn unanswered_requests_expire_with_the_step_they_stopped_at(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let clinic = app.clinic_client();
    let mut ids = Vec::new();
    for n in ["t1", "t2", "t3"] {
        let (_, q) = enqueue(&app, &emr, CLINIC, file(&format!("EPSsiDMP01req_{n}.xml"), &request_xml(n))).await;
        ids.push(q["request_id"].as_str().unwrap().to_owned());
    }
    // t1 is delivered, t2 leased only, t3 never taken.
    let (_, a) = agent(&app, &clinic, AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!(a["request_id"], ids[0].as_str());
    agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{}/delivered", ids[0]), None).await;
    let (_, b) = agent(&app, &clinic, AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!(b["request_id"], ids[1].as_str());
    // Not yet.
    app.clock.advance(time::Duration::seconds(app.config.oqs.answer_timeout_secs - 1));
    let (_, st) = state_of(&app, &emr, &ids[0], 0).await;
    assert_eq!(st["status"], "delivered");
    app.clock.advance(time::Duration::seconds(1));
    let expect = [(0, "no_answer"), (1, "not_delivered"), (2, "not_taken")];
    for (i, reason) in expect {
        let (s, st) = state_of(&app, &emr, &ids[i], 0).await;
        assert_eq!(s, 200);
        assert_eq!((st["status"].as_str(), st["reason"].as_str()), (Some("expired"), Some(reason)), "{st}");
        assert!(st.get("response").is_none());
    }
    // A late answer changes nothing; the heartbeat tells the agent to stop waiting.
    let late = json!({ "file_name": "EPSsiDMP01res_t1.xml", "content": STANDARD.encode(answer_xml("t1")) });
    let (s, e) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{}/response", ids[0]), Some(late)).await;
    assert_eq!((s, e["error"].as_str()), (409, Some("request_over")), "{e}");
    let (s, hb) = agent(&app, &clinic, AGENT_A, "POST", "/agent/v1/heartbeat", Some(json!({ "pending": [ids[0], "unknown-id"] }))).await;
    assert_eq!(s, 200);
    let over: Vec<(String, String)> = hb["over"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["request_id"].as_str().unwrap().to_owned(), o["status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(over, [(ids[0].clone(), "expired".to_owned()), ("unknown-id".to_owned(), "unknown".to_owned())]);
    let expired = audit_events(&app).await.into_iter().filter(|(e, _, _)| e == "oqs_expired").count();
    assert_eq!(expired, 3, "each expiry audited once");
    app.stop().await;
}

async fn one_agent_relays_for_a_clinic(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let clinic = app.clinic_client();
    let (_, q) = enqueue(&app, &emr, CLINIC, file("EPSsiDMP01req_h1.xml", &request_xml("h1"))).await;
    let id = q["request_id"].as_str().unwrap().to_owned();
    let (s, _) = agent(&app, &clinic, AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!(s, 200, "A leases the request");
    let (s, e) = agent(&app, &clinic, AGENT_B, "POST", "/agent/v1/heartbeat", Some(json!({}))).await;
    assert_eq!((s, e["error"].as_str()), (409, Some("relay_held")), "{e}");
    assert!(e["message"].as_str().unwrap().contains(AGENT_A));
    // A lease that lapses comes back to the agent that held it (its journal knows).
    app.clock.advance(time::Duration::seconds(app.config.oqs.lease_secs + 1));
    let (s, again) = agent(&app, &clinic, AGENT_A, "GET", "/agent/v1/oqs/next", None).await;
    assert_eq!((s, again["request_id"].as_str()), (200, Some(id.as_str())));
    // A goes silent; B takes over, and A's undelivered lease fails rather than being written twice.
    app.clock.advance(time::Duration::seconds(app.config.oqs.agent_hold_secs + 1));
    let (s, _) = agent(&app, &clinic, AGENT_B, "POST", "/agent/v1/heartbeat", Some(json!({}))).await;
    assert_eq!(s, 200);
    let (_, st) = state_of(&app, &emr, &id, 0).await;
    assert_eq!((st["status"].as_str(), st["reason"].as_str()), (Some("failed"), Some("delivery_unknown")), "{st}");
    let (s, e) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/delivered"), None).await;
    assert_eq!((s, e["error"].as_str()), (409, Some("relay_held")));
    let claims: Vec<_> = audit_events(&app).await.into_iter().filter(|(e, _, _)| e == "oqs_relay_claimed").collect();
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert!(claims.iter().any(|(_, _, d)| d["agent_id"] == AGENT_B && d["previous_agent"] == AGENT_A));
    app.stop().await;
}

async fn long_polls_return_when_the_other_side_acts(db: Db) {
    let app = TestApp::spawn(db).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let clinic = app.clinic_client();
    // The agent waits; the EMR's request wakes it.
    let waiting = {
        let (app_url, clinic) = (app.url("/agent/v1/oqs/next?wait=20"), clinic.clone());
        tokio::spawn(async move {
            let res = clinic.get(app_url).header("x-ninsho-agent", AGENT_A).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (_, q) = enqueue(&app, &emr, CLINIC, file("EPSsiDMP01req_w1.xml", &request_xml("w1"))).await;
    let id = q["request_id"].as_str().unwrap().to_owned();
    let (s, next) = waiting.await.unwrap();
    assert_eq!((s, next["request_id"].as_str()), (200, Some(id.as_str())));
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "woken, not timed out");
    agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/delivered"), None).await;
    // The EMR waits; the answer wakes it.
    let reading = {
        let (url, emr) = (app.url(&format!("/api/v1/oqs/requests/{id}?wait=20")), emr.clone());
        tokio::spawn(async move { emr.get(url).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answer = json!({ "file_name": "EPSsiDMP01res_w1.xml", "content": STANDARD.encode(answer_xml("w1")) });
    let (s, _) = agent(&app, &clinic, AGENT_A, "POST", &format!("/agent/v1/oqs/{id}/response"), Some(answer)).await;
    assert_eq!(s, 204);
    let st = reading.await.unwrap();
    assert_eq!(st["status"], "answered", "{st}");
    // Limits of the wait.
    let (s, e) = state_of(&app, &emr, &id, app.config.oqs.max_wait_secs + 1).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_wait")));
    let metrics = app.metrics().await;
    assert!(metrics.contains("ninsho_oqs_requests_enqueued_total 1"), "{metrics}");
    assert!(metrics.contains("ninsho_oqs_requests_answered_total 1"), "{metrics}");
    app.stop().await;
}

db_tests!(
    a_request_travels_from_the_emr_to_the_agent_and_back,
    bad_files_are_refused_at_enqueue_and_change_nothing,
    a_clinic_queue_is_bounded,
    only_the_clinics_own_agent_takes_and_answers,
    unanswered_requests_expire_with_the_step_they_stopped_at,
    one_agent_relays_for_a_clinic,
    long_polls_return_when_the_other_side_acts,
);
