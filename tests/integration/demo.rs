//! `gateway demo` on a fresh directory: the printed client.p12 and password work with an
//! independent HTTPS client (curl with OpenSSL), the remote signer runs as its own process (the
//! built `gateway` binary's `demo-signer`), the printed signing commands sign a file that openssl
//! verifies, the printed OQS relay commands are answered through the clinic agent and the OQS
//! simulator (their own processes), and a second run reuses everything.

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_sets_up_a_working_installation_and_reuses_it() {
    gateway::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ops_port = free_port();
    let (signer_port, signer_ops_port, tsa_port, agent_port, oidc_port) = (free_port(), free_port(), free_port(), free_port(), free_port());
    let demo_dir = dir.path().join("demo");
    // The demo runs in this process, whose executable is the test binary: its signer process is
    // the built gateway's.
    let signer_exe = crate::signer_process::gateway_bin();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = ["gateway", "demo", "--dir"].iter().map(|s| (*s).to_owned()).collect();
        a.push(demo_dir.display().to_string());
        a.extend(["--port".to_owned(), port.to_string(), "--ops-port".to_owned(), ops_port.to_string()]);
        a.extend(["--signer-port".to_owned(), signer_port.to_string(), "--signer-ops-port".to_owned(), signer_ops_port.to_string()]);
        a.extend(["--signer-exe".to_owned(), signer_exe.display().to_string(), "--tsa-port".to_owned(), tsa_port.to_string()]);
        // The clinic side: the workspace's agent and simulator binaries, as processes.
        a.extend(["--agent-port".to_owned(), agent_port.to_string(), "--agent-exe".to_owned()]);
        a.push(crate::oqs_relay::workspace_bin("card-agent", "NINSHO_TEST_AGENT_BIN").display().to_string());
        a.push("--oqs-sim-exe".to_owned());
        a.push(crate::oqs_relay::workspace_bin("oqs-sim", "NINSHO_TEST_OQS_SIM_BIN").display().to_string());
        // The second clinic's EMR provider: the repository's test provider (tests/run.sh installs
        // Node.js and its packages).
        a.extend(["--oidc-port".to_owned(), oidc_port.to_string(), "--oidc-provider".to_owned()]);
        a.push(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc/provider.mjs").display().to_string());
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };

    let mut out = Vec::new();
    let code = gateway::cli::run(args(&["--no-serve"]), &mut out, &mut std::io::stderr(), &mut std::io::empty()).await;
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{printed}");
    let p12_password = printed.lines().find_map(|l| l.trim().strip_prefix("PKCS#12 password: ")).unwrap().to_owned();
    let doctor = printed.lines().find(|l| l.contains("doctor: login ID doctor1")).unwrap();
    let doctor_password = doctor.rsplit("password ").next().unwrap().trim().to_owned();

    // The demo cards carry both certificates and keys in card-sim's layout; the registered anchors
    // accept the authentication certificates and refuse the signing ones, as a login would.
    let config = demo_dir.join("gateway.toml").display().to_string();
    for kind in ["hpki", "jpki"] {
        let cards = demo_dir.join("cards").join(kind);
        for file in ["auth-cert.pem", "auth-key.pem", "ca-cert.pem", "sign-cert.pem", "sign-key.pem", "sign-ca-cert.pem"] {
            assert!(cards.join(file).is_file(), "{kind}/{file}");
        }
        let check = |file: &str| {
            let path = cards.join(file).display().to_string();
            ["gateway", "--config", &config, "admin", "cert", "check", "--kind", kind, &path].map(str::to_owned).to_vec()
        };
        let (code, report) = run_cli(check("auth-cert.pem")).await;
        assert_eq!(code, 0, "{kind}: {report}");
        let (code, report) = run_cli(check("sign-cert.pem")).await;
        assert_ne!(code, 0, "{kind}: {report}");
    }

    // Serve the demo in this process.
    let serve = tokio::spawn({
        let args = args(&[]);
        async move {
            let mut sink = Vec::new();
            gateway::cli::run(args, &mut sink, &mut std::io::stderr(), &mut std::io::empty()).await
        }
    });
    wait_for_port(port).await;

    let p12 = demo_dir.join("clinic/client.p12");
    let ca = demo_dir.join("tls/server-ca.pem");
    let curl = |path: &str, extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cert-type", "P12", "--cert"])
            .arg(format!("{}:{p12_password}", p12.display()))
            .arg("--cacert")
            .arg(&ca)
            .args(["-w", "\n%{http_code}"])
            .args(extra)
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .expect("curl is installed by tests/run.sh");
        assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let page = curl("/login", &[]);
    assert!(page.ends_with("\n200"), "{page}");
    assert!(page.contains("ニンショウ内科クリニック") && page.contains("ログイン"));

    // The printed doctor credentials log in.
    let cookie_jar = dir.path().join("jar");
    let jar = cookie_jar.display().to_string();
    let origin = format!("Origin: https://localhost:{port}");
    let login = curl(
        "/login",
        &["-c", &jar, "-H", &origin, "--data-urlencode", "login_id=doctor1", "--data-urlencode", &format!("password={doctor_password}")],
    );
    assert!(login.ends_with("\n303"), "{login}");
    let methods = curl("/methods", &["-b", &jar]);
    assert!(methods.contains("マイナンバーカード") && methods.ends_with("\n200"), "{methods}");

    // Without the client certificate the server refuses the handshake.
    let bare = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .arg(format!("https://localhost:{port}/login"))
        .output()
        .unwrap();
    assert!(!bare.status.success());

    // The signer process answers on its ops port.
    let readyz = format!("http://127.0.0.1:{signer_ops_port}/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(res) = reqwest::get(&readyz).await
            && res.status() == 200
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the demo signer was not ready within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // doctor1 links a software authenticator with the printed code and opens a signing session;
    // then the printed signing commands, as pasted into a shell, sign a file openssl verifies.
    let code = printed.lines().find_map(|l| l.split_once("registration code for doctor1")).unwrap().1.rsplit(' ').next().unwrap();
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let clinic_identity = std::fs::read_to_string(demo_dir.join("clinic/client.pem")).unwrap()
        + &std::fs::read_to_string(demo_dir.join("clinic/client.key")).unwrap();
    let browser = crate::signer_process::Browser::new(port, &ca_pem, &clinic_identity);
    browser.login("doctor1", &doctor_password).await;
    browser.link_and_authenticate(code).await;
    let commands: Vec<&str> = printed
        .lines()
        .skip_while(|l| !l.starts_with("(sh, with curl, openssl and jq):"))
        .skip(1)
        .take_while(|l| l.starts_with("   "))
        .map(str::trim)
        .filter(|l| !l.starts_with("FILE=") && !l.starts_with('#'))
        .collect();
    assert_eq!(commands.len(), 6, "{printed}");
    let work = dir.path().join("emr");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("prescription.xml"), "<Document>demo</Document>\n").unwrap();
    let script = format!("set -euo pipefail\nFILE=prescription.xml\n{}\nprintf %s \"$SAD\" > sad\n", commands.join("\n"));
    let shell = Command::new("bash").arg("-c").arg(&script).current_dir(&work).output().unwrap();
    let stdout = String::from_utf8_lossy(&shell.stdout);
    assert!(shell.status.success() && stdout.contains("Verified OK"), "{script}\n{stdout}{}", String::from_utf8_lossy(&shell.stderr));
    // The e-prescription commands, in the same shell (they use its `emr`): signDoc, then the
    // printed verification, run with the built gateway binary.
    let sign_doc: Vec<String> = printed
        .lines()
        .skip_while(|l| !l.starts_with("An e-prescription"))
        .skip(1)
        .take_while(|l| l.starts_with("   "))
        .map(|l| l.trim().replacen("gateway --config", &format!("{} --config", signer_exe.display()), 1))
        .collect();
    assert_eq!(sign_doc.len(), 5, "{printed}");
    let emr_fn = commands.iter().find(|l| l.starts_with("emr()")).unwrap();
    let script = format!("set -euo pipefail\n{emr_fn}\n{}\n", sign_doc.join("\n"));
    let shell = Command::new("bash").arg("-c").arg(&script).current_dir(&work).output().unwrap();
    let stdout = String::from_utf8_lossy(&shell.stdout);
    assert!(shell.status.success() && stdout.contains("有効"), "{script}\n{stdout}{}", String::from_utf8_lossy(&shell.stderr));
    let signed = std::fs::read(work.join("signed-prescription.xml")).unwrap();
    let cert_der = {
        let text = String::from_utf8(signed.clone()).unwrap();
        let start = text.find("X509Certificate>").unwrap() + "X509Certificate>".len();
        let end = start + text[start..].find('<').unwrap();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text[start..end].split_whitespace().collect::<String>()).unwrap()
    };
    crate::signdoc::xmlsec1_verifies(&signed, &cert_der).unwrap_or_else(|e| panic!("xmlsec1 refuses the demo's signature: {e}"));
    // The token, presented again, is refused.
    let sad = std::fs::read_to_string(work.join("sad")).unwrap();
    let emr_identity = std::fs::read_to_string(demo_dir.join("service/emr.pem")).unwrap()
        + &std::fs::read_to_string(demo_dir.join("service/emr.key")).unwrap();
    let emr = crate::signer_process::https_client(signer_port, &ca_pem, &emr_identity);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(b"<Document>demo</Document>\n");
    let (status, answer) = crate::signer_process::post(
        &emr,
        &format!("https://localhost:{signer_port}/csc/v2/signatures/signHash"),
        &crate::signer_process::sign_hash_request("cred-doctor1", &sad, &digest),
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_request")), "{answer}");

    // The printed OQS relay commands, as pasted into a shell: the request goes through the demo
    // clinic's agent and the simulator, and its answer is readable.
    let oqs: Vec<&str> = printed.lines().skip_while(|l| !l.starts_with("OQS relay:")).skip(1).take(2).map(str::trim).collect();
    assert!(oqs.len() == 2 && oqs[0].contains("/oqs/requests"), "{printed}");
    let enqueue = Command::new("bash").arg("-c").arg(oqs[0]).output().unwrap();
    let queued: serde_json::Value = serde_json::from_slice(&enqueue.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&enqueue.stdout)));
    let id = queued["request_id"].as_str().unwrap();
    let read = oqs[1].split_once(": ").unwrap().1.replace("REQUEST_ID", id);
    let mut answered = serde_json::Value::Null;
    for _ in 0..6 {
        let out = Command::new("bash").arg("-c").arg(&read).output().unwrap();
        answered = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
        if answered["status"] == "answered" {
            break;
        }
    }
    assert_eq!(answered["status"], "answered", "{answered}");
    assert_eq!(answered["response"]["file_name"], "EPSsiDMP01res_000000000001.xml");

    // The second clinic signs in through its EMR's provider, started by the demo: the login page
    // sends the browser there, the provider (consent-free, its user signed in) sends it back, and
    // doctor2 is signed in, on to linking an authenticator as after a password.
    assert!(printed.contains("Clinic 21235 signs in through its EMR's OpenID Connect provider"), "{printed}");
    let code2 = printed.lines().find_map(|l| l.split_once("registration code for doctor2")).unwrap().1.rsplit(' ').next().unwrap().to_owned();
    wait_for_port(oidc_port).await;
    let clinic2_identity = std::fs::read_to_string(demo_dir.join("clinic2/client.pem")).unwrap()
        + &std::fs::read_to_string(demo_dir.join("clinic2/client.key")).unwrap();
    let clinic2 = crate::signer_process::https_client(port, &ca_pem, &clinic2_identity);
    let base = format!("https://localhost:{port}");
    let page = clinic2.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("デモ電子カルテ連携クリニック") && page.contains("EMRのアカウントでログイン"), "{page}");
    let mut at = url::Url::parse(&format!("{base}/login/oidc")).unwrap();
    let mut hops = Vec::new();
    let landed = loop {
        let res = clinic2.get(at.clone()).send().await.unwrap();
        let status = res.status();
        let location = res.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        hops.push(format!("{at} → {status}"));
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            panic!("no redirect: {hops:?}: {}", res.text().await.unwrap_or_default());
        };
        if at.path() == "/login/oidc/callback" {
            break location;
        }
        assert!(hops.len() < 12, "{hops:?}");
        at = at.join(&location).unwrap();
    };
    assert!(hops.iter().any(|h| h.starts_with(&format!("http://127.0.0.1:{oidc_port}/"))), "through the provider: {hops:?}");
    assert_eq!(landed, "/manage", "{hops:?}");
    let manage = clinic2.get(format!("{base}/manage")).send().await.unwrap().text().await.unwrap();
    assert!(manage.contains("鈴木 花子") && manage.contains("登録コード"), "{manage}");
    assert!(!code2.is_empty());
    // Its password form is off.
    let refused = clinic2
        .post(format!("{base}/login"))
        .header("origin", &base)
        .form(&[("login_id", "doctor2"), ("password", "whatever-it-may-be")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Stopping the demo stops its signer, agent, simulator and provider processes.
    serve.abort();
    let _ = serve.await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for (what, port) in [("signer", signer_ops_port), ("clinic agent", agent_port), ("OpenID Connect provider", oidc_port)] {
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "the demo {what} outlived the demo");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    // A second run reuses the PKI and prints the same secrets.
    let mut out = Vec::new();
    assert_eq!(gateway::cli::run(args(&["--no-serve"]), &mut out, &mut std::io::stderr(), &mut std::io::empty()).await, 0);
    let again = String::from_utf8(out).unwrap();
    assert!(again.contains("reused") && again.contains(&p12_password) && again.contains(&doctor_password));
    // The printed code was spent on the passkey above: the second run prints a fresh one, and a
    // third run (with that one still open) prints it again.
    let printed_code = |text: &str| text.lines().find_map(|l| l.split_once("registration code for doctor1")).unwrap().1.rsplit(' ').next().unwrap().to_owned();
    let fresh = printed_code(&again);
    assert_ne!(fresh, code, "{again}");
    let mut out = Vec::new();
    assert_eq!(gateway::cli::run(args(&["--no-serve"]), &mut out, &mut std::io::stderr(), &mut std::io::empty()).await, 0);
    assert_eq!(printed_code(&String::from_utf8(out).unwrap()), fresh);
}

async fn run_cli(args: Vec<String>) -> (i32, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = gateway::cli::run(args, &mut out, &mut err, &mut std::io::empty()).await;
    (code, String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls until the port accepts connections (no fixed sleep).
async fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "demo did not start listening");
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
