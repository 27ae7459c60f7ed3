//! The clinic agent's set-up page (docs/design.md §3.13) through the real agent process and the
//! real gateway on each database: every kind of wrong input is named and stores nothing; the
//! page refuses a foreign Origin or a form without its token; a good set-up stores the key (0600)
//! and the configuration, starts the relay, and the status page shows the relayed request.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;
use crate::oqs_relay::{Proc, answer_text, ended, enqueue, sim_cmd, start, start_with_line, workspace_bin};

const P12_PASSWORD: &str = "clinic-p12-pass";

struct Agent {
    _proc: Proc,
    base: String,
    data: PathBuf,
    http: reqwest::Client,
}

fn start_agent(app: &TestApp, dir: &Path, log: &Path) -> Agent {
    let ca = dir.join("gateway-ca.pem");
    std::fs::write(&ca, app.pki.server_ca.cert_pem()).unwrap();
    let data = dir.join("data");
    let mut cmd = Command::new(workspace_bin("card-agent", "NINSHO_TEST_AGENT_BIN"));
    cmd.args(["--allow-origin", "https://localhost", "--port", "0", "--gateway", &app.origin(), "--gateway-ca"])
        .arg(&ca)
        .arg("--data-dir")
        .arg(&data)
        .env("CARD_AGENT_LOG", "info");
    let (proc, line) = start_with_line(cmd, "card-agent listening", log);
    let base = line.trim().strip_prefix("card-agent listening on ").unwrap().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Agent { _proc: proc, base, data, http }
}

impl Agent {
    async fn get(&self, path: &str) -> (u16, String) {
        let res = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// The form's token, from the page.
    async fn token(&self) -> String {
        let (status, page) = self.get("/setup").await;
        assert_eq!(status, 200, "{page}");
        let at = page.find("name=\"token\" value=\"").unwrap() + "name=\"token\" value=\"".len();
        page[at..].split('"').next().unwrap().to_owned()
    }

    async fn post(&self, form: &SetupForm, token: &str, origin: Option<&str>) -> (u16, String) {
        let mut multipart = reqwest::multipart::Form::new()
            .text("token", token.to_owned())
            .text("lang", form.lang.to_owned())
            .text("clinic_id", form.clinic_id.clone())
            .text("req", form.req.display().to_string())
            .text("res", form.res.display().to_string())
            .text("password", form.password.clone());
        multipart = multipart.part("p12", reqwest::multipart::Part::bytes(form.p12.clone()).file_name("client.p12"));
        let mut req = self.http.post(format!("{}/setup", self.base)).multipart(multipart);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// Nothing of a set-up is in the data directory.
    fn assert_nothing_stored(&self, case: &str) {
        for name in ["relay.toml", "client.pem", "state/agent-id"] {
            assert!(!self.data.join(name).exists(), "{case}: {name} was stored");
        }
    }
}

#[derive(Clone)]
struct SetupForm {
    lang: &'static str,
    clinic_id: String,
    req: PathBuf,
    res: PathBuf,
    p12: Vec<u8>,
    password: String,
}

/// The rogue client's certificate (issued by a CA the gateway does not trust) with its key.
fn rogue_p12(app: &TestApp) -> Vec<u8> {
    devpki::pkcs12(&app.pki.rogue_client, &[], "rogue", P12_PASSWORD).unwrap()
}

fn p12_of(app: &TestApp, leaf: &devpki::Leaf) -> Vec<u8> {
    devpki::pkcs12(leaf, &[app.pki.clinic_ca.cert_der()], "clinic", P12_PASSWORD).unwrap()
}

async fn each_wrong_input_is_named_and_stores_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let dir = tempfile::tempdir().unwrap();
    let (req, res) = (dir.path().join("req"), dir.path().join("res"));
    std::fs::create_dir_all(&req).unwrap();
    std::fs::create_dir_all(&res).unwrap();
    let log = dir.path().join("agent.log");
    let agent = start_agent(&app, dir.path(), &log);
    let token = agent.token().await;
    let origin = agent.base.clone();
    let good = SetupForm {
        lang: "ja",
        clinic_id: CLINIC.to_owned(),
        req: req.clone(),
        res: res.clone(),
        p12: p12_of(&app, &app.pki.clinic_client),
        password: P12_PASSWORD.to_owned(),
    };
    let a_file = dir.path().join("a-file.txt");
    std::fs::write(&a_file, "not a folder").unwrap();

    type Change = Box<dyn Fn(&mut SetupForm)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        ("no clinic id", Box::new(|f| f.clinic_id.clear()), "クリニックIDを入力してください。"),
        ("a malformed clinic id", Box::new(|f| f.clinic_id = "クリニック 1".into()), "クリニックIDは半角の英数字とハイフン"),
        ("another clinic's id", Box::new(|f| f.clinic_id = OTHER_CLINIC.into()), "一致しません"),
        ("no req", Box::new(|f| f.req = PathBuf::new()), "req フォルダのパスを入力してください。"),
        ("a relative req", Box::new(|f| f.req = "req".into()), "req フォルダは絶対パスで入力してください"),
        ("a missing req", Box::new(|f| f.req = f.req.join("missing")), "req フォルダ（処方箋の依頼ファイルを置くフォルダ）が見つかりません。"),
        ("a missing res", Box::new(|f| f.res = f.res.join("missing")), "res フォルダ（オンライン資格確認端末が応答ファイルを置くフォルダ）が見つかりません。"),
        ("a file as res", { let a = a_file.clone(); Box::new(move |f| f.res = a.clone()) }, "res に指定したパスはフォルダではなくファイルです。"),
        ("one folder for both", Box::new(|f| f.res = f.req.clone()), "req と res に同じフォルダが指定されています。"),
        ("no certificate", Box::new(|f| f.p12.clear()), "証明書ファイル（client.p12）を選んでください。"),
        ("a wrong password", Box::new(|f| f.password = "wrong".into()), "証明書のパスワードが違います。"),
        ("not a PKCS#12 file", Box::new(|f| f.p12 = b"-----BEGIN CERTIFICATE-----\nAAAA\n".to_vec()), "証明書ファイルを開けません。"),
        ("an oversized file", Box::new(|f| f.p12 = vec![0x30; 70 * 1024]), "証明書ファイルが大きすぎます"),
    ];
    for (case, change, expected) in &cases {
        let mut form = good.clone();
        change(&mut form);
        let (status, page) = agent.post(&form, &token, Some(&origin)).await;
        assert_eq!(status, 400, "{case}: {page}");
        assert!(page.contains(expected), "{case}: the page should say {expected:?}:\n{page}");
        assert!(page.contains("何も保存していません"), "{case}");
        agent.assert_nothing_stored(case);
    }

    // Certificates the gateway does not accept for a relay.
    let app_ref = &app;
    let gateway_cases = [
        ("an unregistered certificate", p12_of(app_ref, &app.pki.unregistered_client), "ゲートウェイにこの証明書が登録されていません。"),
        // Refused in the TLS handshake: the page names the revocation when the alert arrives
        // before the connection closes, and a refused connection otherwise (a race of TLS 1.3).
        ("a revoked certificate", p12_of(app_ref, &app.pki.revoked_client), "失効|この証明書での接続が拒否されました"),
        ("a certificate of another CA", rogue_p12(app_ref), "この証明書での接続"),
        ("a disabled clinic", p12_of(app_ref, &app.pki.disabled_clinic_client), "無効"),
    ];
    for (case, p12, expected) in gateway_cases {
        let mut form = good.clone();
        form.p12 = p12;
        if case == "a disabled clinic" {
            form.clinic_id = DISABLED_CLINIC.to_owned();
        }
        let (status, page) = agent.post(&form, &token, Some(&origin)).await;
        assert_eq!(status, 400, "{case}: {page}");
        assert!(expected.split('|').any(|e| page.contains(e)), "{case}: the page should say {expected:?}:\n{page}");
        agent.assert_nothing_stored(case);
    }

    // English, when chosen.
    let mut form = good.clone();
    form.lang = "en";
    form.password = "wrong".into();
    let (status, page) = agent.post(&form, &token, Some(&origin)).await;
    assert_eq!(status, 400);
    assert!(page.contains("Wrong certificate password.") && page.contains("nothing was stored"), "{page}");

    // Only the page itself may post: a foreign Origin, none, or no token are refused.
    for (case, origin, token) in [
        ("a foreign origin", Some("https://evil.example"), token.as_str()),
        ("no origin", None, token.as_str()),
        ("a wrong token", Some(origin.as_str()), "0123"),
    ] {
        let (status, _) = agent.post(&good, token, origin).await;
        assert_eq!(status, 403, "{case}");
        agent.assert_nothing_stored(case);
    }
    // A foreign Host (DNS rebinding) is refused before anything.
    let res = agent.http.get(format!("{}/setup", agent.base)).header("host", "evil.example").send().await.unwrap();
    assert_eq!(res.status(), 421);

    // Nothing was relayed meanwhile, and the gateway's audit has no relay of this clinic.
    let (_, status_page) = agent.get("/status").await;
    assert!(status_page.contains("停止中"), "{status_page}");
    app.stop().await;
}

async fn a_good_set_up_stores_the_key_and_starts_the_relay(db: Db) {
    let app = TestApp::spawn(db).await;
    let dir = tempfile::tempdir().unwrap();
    let (req, res) = (dir.path().join("req"), dir.path().join("res"));
    std::fs::create_dir_all(&req).unwrap();
    std::fs::create_dir_all(&res).unwrap();
    let log = dir.path().join("processes.log");
    let _sim = start(sim_cmd(&req, &res, &[]), "oqs-sim watching", &log);
    let agent = start_agent(&app, dir.path(), &log);
    let (status, _) = agent.get("/").await;
    assert_eq!(status, 303, "not set up: / leads to the set-up");

    let token = agent.token().await;
    let form = SetupForm {
        lang: "ja",
        clinic_id: CLINIC.to_owned(),
        req: req.clone(),
        res: res.clone(),
        p12: p12_of(&app, &app.pki.clinic_client),
        password: P12_PASSWORD.to_owned(),
    };
    let (status, page) = agent.post(&form, &token, Some(&agent.base)).await;
    assert_eq!(status, 200, "{page}\nlog: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(page.contains("初期化を完了しました。ブラウザを閉じてください。"), "{page}");
    assert!(page.contains("client.p12 ファイルは削除してかまいません"), "{page}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for name in ["client.pem", "relay.toml"] {
            let mode = std::fs::metadata(agent.data.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
    let key = std::fs::read_to_string(agent.data.join("client.pem")).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY") && key.contains("BEGIN CERTIFICATE"));
    // The stored pair is the clinic's: the gateway answers its heartbeat for this clinic.
    let identity = reqwest::Identity::from_pem(key.as_bytes()).unwrap();
    let probe = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(app.pki.server_ca.cert_pem().as_bytes()).unwrap()])
        .identity(identity)
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], app.origin().rsplit(':').next().unwrap().parse::<u16>().unwrap())))
        .build()
        .unwrap();
    let own_id = std::fs::read_to_string(agent.data.join("state/agent-id")).unwrap();
    let hb: serde_json::Value = probe
        .post(app.url("/agent/v1/heartbeat"))
        .header("x-ninsho-agent", own_id.trim())
        .json(&serde_json::json!({ "pending": [] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hb["clinic_id"], CLINIC, "{hb}");

    // The relay runs at once: a request is answered, and the status page shows it.
    let emr = app.client(Some(&app.pki.emr_a));
    let id = enqueue(&app, &emr, "EPSsiDMP01req_00000000000s.xml", "S1").await;
    let st = ended(&app, &emr, &id).await;
    assert_eq!(st["status"], "answered", "{st}\nlog: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(answer_text(&st).contains("<ArbitraryFileIdentifier>S1</ArbitraryFileIdentifier>"));
    let (status, page) = agent.get("/status").await;
    assert_eq!(status, 200);
    assert!(page.contains("接続しています") && page.contains("EPSsiDMP01req_00000000000s.xml"), "{page}");
    let (_, page) = agent.get("/status?lang=en").await;
    assert!(page.contains("Connected") && page.contains("Version v"), "{page}");
    let (status, _) = agent.get("/").await;
    assert_eq!(status, 303);
    app.stop().await;
}

db_tests!(each_wrong_input_is_named_and_stores_nothing, a_good_set_up_stores_the_key_and_starts_the_relay);
