//! Metrics (docs/metrics.md): a real gateway is driven through logins, a lockout, signing tokens
//! and a failed audit commit, and its `/metrics` scrape must show each series with the value
//! that happened, label values from fixed sets and nothing about a person. The monitoring files
//! in `deploy/monitoring/` are checked against a scrape (every series they name is exported) and
//! by `promtool` (rules, the rules' unit tests, and every dashboard query).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::fido_login::{Browser, authenticator, issue_code};
use crate::helpers::*;

/// A sample's labels, as (name, value) pairs.
type Labels = BTreeSet<(String, String)>;

/// One parsed scrape: its samples and the type of each metric family.
pub(crate) struct Scrape {
    text: String,
    samples: Vec<(String, Labels, f64)>,
    /// `# TYPE` lines: family name → `counter`, `gauge`, `histogram`.
    types: Vec<(String, String)>,
}

impl Scrape {
    pub(crate) async fn of(app: &TestApp) -> Scrape {
        Scrape::parse(app.metrics().await)
    }

    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        let mut types = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.push((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Scrape { text, samples, types }
    }

    /// The value of the sample `name` with exactly `labels`.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.samples.iter().find(|(n, l, _)| n == name && *l == want).map(|s| s.2)
    }

    /// The label sets of every sample named `name`.
    pub(crate) fn samples_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Labels> + 'a {
        self.samples.iter().filter(move |(n, _, _)| n == name).map(|(_, labels, _)| labels)
    }

    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("{name}{labels:?} is not in the scrape:\n{}", self.text))
    }

    /// Whether `series` is a series a query can select: a gauge's family name, a counter's with
    /// `_total`, a histogram's with `_bucket`, `_sum` or `_count`; or, with `prose`, any family's
    /// name.
    fn exports(&self, series: &str, prose: bool) -> bool {
        self.types.iter().any(|(family, kind)| {
            (prose && series == family)
                || match kind.as_str() {
                    "counter" => series.strip_suffix("_total") == Some(family),
                    "histogram" => ["_bucket", "_sum", "_count"].iter().any(|s| series.strip_suffix(s) == Some(family)),
                    _ => series == family,
                }
        })
    }
}

/// `name{k="v",…} value` (label values may hold braces and escaped quotes).
fn parse_sample(line: &str) -> (String, Labels, f64) {
    let name_end = line.find(['{', ' ']).unwrap();
    let name = line[..name_end].to_owned();
    let mut labels = BTreeSet::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = i + 1;
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    while let Some((_, c)) = chars.next() {
                        match c {
                            '\\' => value.push(chars.next().unwrap().1),
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert((std::mem::take(&mut key), value));
                }
                c => key.push(c),
            }
        }
        rest = &inner[end..];
    }
    let value = rest.trim().split(' ').next().unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
    };
    (name, labels, value)
}

fn doctor_body() -> Value {
    json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN })
}

async fn post(app: &TestApp, client: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
    let res = client.post(app.url(path)).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn readyz(app: &TestApp) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{}/readyz", app.ops_port)).await.unwrap().status().as_u16()
}

async fn an_operator_sees_logins_tokens_audit_database_and_crls(db: Db) {
    let app = TestApp::spawn(db).await;
    assert_eq!(readyz(&app).await, 200);

    // The password step: one wrong password, then a login.
    let page = app.login(&app.clinic_client(), DOCTOR_LOGIN, "not the password").await;
    assert_eq!(page.status(), 403);
    let doctor = Browser::doctor(&app).await;
    // The presence step: link a FIDO key with a registration code (no login), a finish without a
    // ceremony (a refused login), then a FIDO login.
    let code = issue_code(&app, CLINIC, DOCTOR_LOGIN).await;
    let mut key = authenticator(&app);
    assert_eq!(doctor.link_with_code(&mut key, &code).await.0, 200);
    let (status, refused) = doctor.post("/fido/auth/finish", json!({ "credential": {} })).await;
    assert_eq!((status.as_u16(), refused["error"].as_str()), (400, Some("ceremony_missing")), "{refused}");
    assert_eq!(doctor.authenticate(&mut key).await.0, 200);

    // Signing tokens: one issued and consumed, a second consumption and a bad ttl refused.
    let emr = app.client(Some(&app.pki.emr_a));
    let (status, issued) = post(&app, &emr, "/api/v1/signing-tokens", doctor_body()).await;
    assert_eq!(status, 200, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(post(&app, &emr, "/api/v1/signing-tokens/consume", json!({ "token": token })).await.0, 200);
    let (status, again) = post(&app, &emr, "/api/v1/signing-tokens/consume", json!({ "token": token })).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("token_already_used")));
    let (status, bad) = post(&app, &emr, "/api/v1/signing-tokens", json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "ttl": 0 })).await;
    assert_eq!((status, bad["error"].as_str()), (400, Some("bad_ttl")));
    app.state.group_commit.flush().await;

    let m = Scrape::of(&app).await;
    let logins = |method, outcome, reason| m.value("ninsho_logins_total", &[("method", method), ("outcome", outcome), ("reason", reason)]);
    assert_eq!(logins("password", "failure", "bad_password"), 1.0);
    assert_eq!(logins("password", "success", "none"), 1.0);
    assert_eq!(logins("fido", "failure", "ceremony_missing"), 1.0);
    assert_eq!(logins("fido", "success", "none"), 1.0);
    assert_eq!(m.value("ninsho_login_lockouts_total", &[]), 0.0);
    assert_eq!(m.value("ninsho_password_verifications_total", &[]), 2.0);

    assert_eq!(m.value("ninsho_signing_tokens_issued_total", &[]), 1.0);
    assert_eq!(m.value("ninsho_signing_tokens_consumed_total", &[]), 1.0);
    let refusals = |operation, code| m.value("ninsho_signing_token_refusals_total", &[("operation", operation), ("code", code)]);
    assert_eq!(refusals("consume", "token_already_used"), 1.0);
    assert_eq!(refusals("issue", "bad_ttl"), 1.0);

    // Requests: by route template and status, latency by method, route and status class.
    let tokens_route = [("route", "/api/v1/signing-tokens"), ("status", "200")];
    assert_eq!(m.value("ninsho_http_requests_total", &tokens_route), 1.0);
    let latency = |route, class| {
        m.value("ninsho_http_request_duration_seconds_count", &[("method", "POST"), ("route", route), ("status_class", class)])
    };
    assert_eq!(latency("/api/v1/signing-tokens", "2xx"), 1.0);
    assert_eq!(latency("/api/v1/signing-tokens", "4xx"), 1.0);
    assert_eq!(latency("/api/v1/signing-tokens/consume", "2xx"), 1.0);
    assert_eq!(latency("/api/v1/signing-tokens/consume", "4xx"), 1.0);
    assert_eq!(latency("/fido/auth/finish", "2xx"), 1.0);

    // Group commit: the issued token, the consumption, the second consumption (which finds the
    // token used) and its refusal's audit event, each alone in its transaction (the requests
    // came one after another).
    assert_eq!(m.value("ninsho_group_commit_batch_size_count", &[]), 4.0);
    assert_eq!(m.value("ninsho_group_commit_batch_size_sum", &[]), 4.0);
    assert_eq!(m.value("ninsho_group_commit_duration_seconds_count", &[]), 4.0);
    assert_eq!(m.value("ninsho_group_commit_wait_seconds_count", &[]), 4.0);
    // Audit rows, as committed: exactly those of the actions above.
    let rows = |event, outcome| m.value("ninsho_audit_rows_written_total", &[("event", event), ("outcome", outcome)]);
    assert_eq!(rows("token_issued", "success"), 1.0);
    assert_eq!(rows("token_consumed", "success"), 1.0);
    assert_eq!(rows("token_consumed", "failure"), 1.0);
    assert_eq!(rows("login", "failure"), 1.0);
    assert_eq!(rows("login", "success"), 1.0);
    assert_eq!(rows("signing_session_opened", "success"), 1.0);
    assert_eq!(m.value("ninsho_audit_commit_failures_total", &[]), 0.0);

    // The database: the pool and the waits of the write path.
    let (pool, write_path) = match db {
        Db::Sqlite => ("sqlite_read", "sqlite_write"),
        Db::Postgres => ("postgres", "postgres"),
    };
    assert_eq!(m.value("ninsho_db_pool_max_connections", &[("pool", pool)]), 8.0);
    let open = m.value("ninsho_db_pool_connections", &[("pool", pool), ("state", "idle")])
        + m.value("ninsho_db_pool_connections", &[("pool", pool), ("state", "in_use")]);
    assert!((1.0..=8.0).contains(&open), "{open} connections open");
    assert!(m.value("ninsho_db_pool_acquire_wait_seconds_count", &[("pool", write_path)]) >= 10.0);
    assert_eq!(m.get("ninsho_db_pool_acquire_timeouts_total", &[("pool", write_path)]), Some(0.0));

    // Readiness.
    assert_eq!(m.value("ninsho_ready", &[]), 1.0);
    assert_eq!(m.value("ninsho_readiness_checks_total", &[("result", "ready")]), 1.0);

    // CRLs: seconds to nextUpdate by the gateway's clock, counted down at each scrape. The CA is
    // named by the hash of its subject name, as the CRL's issuer field gives it.
    let anchor = app.store().list_anchors(Some(gateway::store::AnchorKind::Clinic)).await.unwrap().remove(0);
    let crl = trust::inspect_crl(&app.pki.crl_der).unwrap();
    let labels = [("kind", "clinic"), ("anchor", &anchor.fingerprint[..16]), ("issuer", &trust::sha256_hex(&crl.issuer_der)[..16])];
    let next_update = crl.next_update.unwrap();
    assert_eq!(m.value("ninsho_crl_seconds_until_next_update", &labels), (next_update - app.clock_now()) as f64);
    app.clock.advance(time::Duration::days(8));
    let later = Scrape::of(&app).await;
    assert_eq!(later.value("ninsho_crl_seconds_until_next_update", &labels), (next_update - app.clock_now()) as f64);
    assert!(later.value("ninsho_crl_seconds_until_next_update", &labels) < 0.0, "stale after 8 days");
    assert_eq!(m.value("ninsho_trust_anchor_crl_missing", &[("kind", "clinic"), ("anchor", &anchor.fingerprint[..16])]), 0.0);

    // Nothing about a person in a label, no secret anywhere.
    let user = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    let reg_no = user.medical_reg_no.clone().unwrap();
    let values: Vec<&String> = m.samples.iter().flat_map(|(_, labels, _)| labels.iter().map(|(_, v)| v)).collect();
    for personal in [DOCTOR_LOGIN, user.id.as_str(), user.name.as_str(), reg_no.as_str(), CLINIC, "Test Clinic CA", "clinic-21234"] {
        assert!(!values.iter().any(|v| v.contains(personal)), "{personal:?} in a label");
    }
    for secret in [&token, &code, &user.id] {
        assert!(!m.text.contains(secret.as_str()), "{secret:?} in the scrape");
    }
    app.stop().await;
}

async fn lockouts_are_counted_without_login_ids(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = app.clinic_client();
    let max = app.config.login.max_failures;
    for _ in 0..max {
        // The last of them locks the login ID (and says so).
        assert_eq!(app.login(&client, DOCTOR_LOGIN, "wrong password").await.status(), 403);
    }
    // Locked now: the next attempt is refused before any password check.
    assert_eq!(app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 403);
    // An unknown login ID is a failure of its own reason.
    assert_eq!(app.login(&client, "nobody", "wrong password").await.status(), 403);
    let m = Scrape::of(&app).await;
    assert_eq!(m.value("ninsho_login_lockouts_total", &[]), 1.0);
    let logins = |reason| m.value("ninsho_logins_total", &[("method", "password"), ("outcome", "failure"), ("reason", reason)]);
    assert_eq!(logins("bad_password"), f64::from(max));
    assert_eq!(logins("locked"), 1.0);
    assert_eq!(logins("unknown_login"), 1.0);
    assert!(m.get("ninsho_logins_total", &[("method", "password"), ("outcome", "success"), ("reason", "none")]).is_none());
    assert!(!m.text.contains(DOCTOR_LOGIN) && !m.text.contains("nobody"));
    app.stop().await;
}

/// An audit row that cannot be committed (the chain's head row is gone) fails the token request
/// with 503 and is counted, both attempts of the group commit.
async fn failed_audit_commits_are_counted(db: Db) {
    let app = TestApp::spawn(db).await;
    crate::tokens::open_session(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    app.store().execute_unchecked("DELETE FROM audit_head").await.unwrap();
    let (status, body) = post(&app, &emr, "/api/v1/signing-tokens", doctor_body()).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")), "{body}");
    let m = Scrape::of(&app).await;
    assert_eq!(m.value("ninsho_audit_commit_failures_total", &[]), 2.0, "the attempt and its retry");
    assert_eq!(m.value("ninsho_signing_token_refusals_total", &[("operation", "issue"), ("code", "unavailable")]), 1.0);
    assert_eq!(m.value("ninsho_signing_tokens_issued_total", &[]), 0.0);
    assert!(m.get("ninsho_audit_rows_written_total", &[("event", "token_issued"), ("outcome", "success")]).is_none());
    // /readyz rewrites the head row, so it reports the lost head too.
    assert_eq!(readyz(&app).await, 503);
    let m = Scrape::of(&app).await;
    assert_eq!(m.value("ninsho_ready", &[]), 0.0);
    assert_eq!(m.value("ninsho_readiness_checks_total", &[("result", "unready")]), 1.0);
    app.stop().await;
}

db_tests!(an_operator_sees_logins_tokens_audit_database_and_crls, lockouts_are_counted_without_login_ids, failed_audit_commits_are_counted);

/// Shutdown sets `ninsho_ready` to 0 at once, before any probe asks.
#[tokio::test]
async fn shutdown_publishes_unready_at_once() {
    let mut app = TestApp::builder(Db::Sqlite).with_config(|c| c.server.shutdown_drain_secs = 3).spawn().await;
    assert_eq!(readyz(&app).await, 200);
    assert_eq!(Scrape::of(&app).await.value("ninsho_ready", &[]), 1.0);
    app.begin_stop();
    // The signal reaches the server task on its next poll.
    let mut unready = false;
    for _ in 0..50 {
        if Scrape::of(&app).await.value("ninsho_ready", &[]) == 0.0 {
            unready = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(unready, "ninsho_ready is 0 as soon as shutdown begins");
    app.stop().await;
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

/// The `ninsho_…` series a file names.
fn series_named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ninsho_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every series the dashboard and the alert rules name is exported by a gateway that did a little
/// of everything (a family shows in a scrape once it has a sample): they cannot drift from the
/// code unnoticed.
#[tokio::test]
async fn the_dashboard_and_alerts_name_only_exported_series() {
    let app = TestApp::spawn(Db::Sqlite).await;
    Browser::doctor(&app).await;
    let emr = app.client(Some(&app.pki.emr_a));
    let (status, _) = post(&app, &emr, "/api/v1/signing-tokens", json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "ttl": 0 })).await;
    assert_eq!(status, 400);
    assert!(app.client(None).get(app.url("/login")).send().await.is_err(), "no client certificate, no handshake");
    assert_eq!(readyz(&app).await, 200);
    let scrape = Scrape::of(&app).await;
    app.stop().await;
    // The rules' expressions are exercised by their unit tests, whose input series are checked
    // here as strictly as the dashboard's queries; descriptions may name a histogram as such.
    let read = |file| std::fs::read_to_string(monitoring().join(file)).unwrap();
    let test_series: String = read("alerts.test.yaml").lines().filter(|l| l.trim_start().starts_with("- series:")).collect();
    for (file, text, prose) in [
        ("dashboard.json", read("dashboard.json"), false),
        ("alerts.test.yaml (input series)", test_series, false),
        ("alerts.test.yaml", read("alerts.test.yaml"), true),
        ("alerts.yaml", read("alerts.yaml"), true),
    ] {
        let named = series_named(&text);
        assert!(named.len() >= 5, "{file} names {named:?}");
        let unknown: Vec<_> = named.iter().filter(|n| !scrape.exports(n, prose)).collect();
        assert!(unknown.is_empty(), "{file} names series the gateway does not export: {unknown:?}");
    }
    // And the documentation lists every family the gateway exports.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md")).unwrap();
    for (family, kind) in &scrape.types {
        let name = if kind == "counter" { format!("{family}_total") } else { family.clone() };
        assert!(doc.contains(&format!("`{name}`")), "docs/metrics.md does not describe {name}");
    }
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("promtool ({e}) checks the alert rules: apt-get install prometheus (tests/run.sh installs it)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The alert rules are valid and their unit tests pass; every dashboard query parses.
#[test]
fn promtool_accepts_the_rules_and_the_dashboard_queries() {
    let dir = monitoring();
    let checked = promtool(&["check", "rules", "alerts.yaml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yaml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The dashboard's queries, with Grafana's variables filled in, as recording rules.
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("dashboard.json")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*");
        rules.push_str(&format!("      - record: dashboard_query_{i}\n        expr: {}\n", serde_json::to_string(&e).unwrap()));
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("dashboard-rules.yaml"), rules).unwrap();
    let checked = promtool(&["check", "rules", "dashboard-rules.yaml"], tmp.path());
    assert!(checked.contains(&format!("SUCCESS: {} rules found", exprs.len())), "{checked}");
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}
