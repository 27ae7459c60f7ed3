//! The set-up's checks and what it stores (docs/design.md §3.13): every field is checked and
//! every problem named; only when all pass are the key and the configuration written, each
//! atomically (temporary file, then rename), the configuration last, so a failure or a crash
//! leaves the previous set-up as it was.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::relay::client::{CallError, Gateway};
use crate::relay::folders::check_access;
use crate::relay::run::{RelayFile, claim_agent_id, stored_agent_id};

/// Largest accepted client.p12 (a certificate chain and one key are a few KiB).
pub const MAX_P12_BYTES: usize = 64 * 1024;

/// The set-up form as submitted.
#[derive(Default)]
pub struct Form {
    /// クリニックID.
    pub clinic_id: String,
    /// The OQS request folder.
    pub req: String,
    /// The OQS answer folder.
    pub res: String,
    /// The uploaded client.p12.
    pub p12: Vec<u8>,
    /// Its password.
    pub password: Zeroizing<String>,
}

/// Which form field a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// クリニックID.
    ClinicId,
    /// req.
    Req,
    /// res.
    Res,
    /// The certificate and its password.
    Certificate,
    /// The gateway's answer.
    Gateway,
}

/// A problem with one field, in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field.
    pub field: Field,
    /// Japanese.
    pub ja: String,
    /// English.
    pub en: String,
}

fn problem(field: Field, ja: impl Into<String>, en: impl Into<String>) -> Problem {
    Problem { field, ja: ja.into(), en: en.into() }
}

/// Where the set-up stores its results, and whom it asks.
#[derive(Debug, Clone)]
pub struct Target {
    /// The agent's data directory: the key, the relay's state and archive.
    pub data_dir: PathBuf,
    /// The relay configuration file written.
    pub relay_file: PathBuf,
    /// The gateway's origin.
    pub gateway: Option<String>,
    /// The gateway's CA (PEM); absent: the system's roots.
    pub gateway_ca: Option<PathBuf>,
}

impl Target {
    /// The stored key and certificate.
    pub fn identity_path(&self) -> PathBuf {
        self.data_dir.join("client.pem")
    }
}

/// The clinic's certificate and key out of the p12, as PEM (zeroized when dropped).
struct Identity {
    pem: Zeroizing<String>,
}

/// Checks the form; on success stores it and returns the relay's new configuration.
///
/// `candidate_id` is the agent's id when none is stored yet (one per process, so a failed try
/// does not leave the gateway holding the relay for an id nobody uses).
pub async fn check_and_store(form: &Form, target: &Target, candidate_id: &str, version: &str) -> Result<RelayFile, Vec<Problem>> {
    let mut problems = Vec::new();
    let clinic_id = form.clinic_id.trim();
    if clinic_id.is_empty() {
        problems.push(problem(Field::ClinicId, "クリニックIDを入力してください。", "Enter the clinic ID."));
    } else if !valid_clinic_id(clinic_id) {
        problems.push(problem(
            Field::ClinicId,
            "クリニックIDは半角の英数字とハイフン（-）で32文字以内です。",
            "The clinic ID is up to 32 letters, digits or hyphens (-).",
        ));
    }
    let folders = check_folders(form.req.trim(), form.res.trim(), &mut problems);
    let identity = open_p12(&form.p12, &form.password).map_err(|p| problems.push(p)).ok();
    let Some(gateway_url) = target.gateway.as_deref() else {
        problems.push(problem(
            Field::Gateway,
            "接続先のゲートウェイが設定されていません。エージェントを --gateway https://… を付けて起動してください。",
            "No gateway is configured. Start the agent with --gateway https://….",
        ));
        return Err(problems);
    };
    // The relay's own id, so a running relay of this agent is not taken for a second agent; a
    // new one is stored only with the rest.
    let state_dir = target.data_dir.join("state");
    let (id, new_id) = match stored_agent_id(&state_dir) {
        Ok(Some(id)) => (id, false),
        Ok(None) => (candidate_id.to_owned(), true),
        Err(e) => {
            problems.push(unusable(format!("{}: {e}", state_dir.display())));
            return Err(problems);
        }
    };
    // The gateway is asked only with a certificate that opened and a clinic ID to compare.
    if let (Some(identity), true) = (&identity, problems.iter().all(|p| p.field != Field::ClinicId))
        && let Err(p) = ask_gateway(gateway_url, target, identity, clinic_id, &id, version).await
    {
        problems.push(p);
    }
    let (Some(identity), Some((req, res)), true) = (identity, folders, problems.is_empty()) else {
        return Err(problems);
    };
    let stored = (if new_id { claim_agent_id(&state_dir, &id).map(drop) } else { Ok(()) }).and_then(|()| store(target, &identity, clinic_id, &req, &res));
    stored.map_err(|e| {
        vec![problem(
            Field::Gateway,
            format!("設定を保存できません（{}）: {e}", target.data_dir.display()),
            format!("The set-up cannot be saved ({}): {e}", target.data_dir.display()),
        )]
    })
}

/// The gateway's rule for clinic ids.
fn valid_clinic_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn check_folders(req: &str, res: &str, problems: &mut Vec<Problem>) -> Option<(PathBuf, PathBuf)> {
    let mut ok = true;
    for (value, field, name) in [(req, Field::Req, "req"), (res, Field::Res, "res")] {
        if value.is_empty() {
            problems.push(problem(field, format!("{name} フォルダのパスを入力してください。"), format!("Enter the {name} folder's path.")));
            ok = false;
        } else if !Path::new(value).is_absolute() {
            problems.push(problem(
                field,
                format!("{name} フォルダは絶対パスで入力してください（例: \\\\OQS-PC\\share\\{name} または /mnt/oqs/{name}）。"),
                format!("Enter the {name} folder as an absolute path (e.g. \\\\OQS-PC\\share\\{name} or /mnt/oqs/{name})."),
            ));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let (req, res) = (PathBuf::from(req), PathBuf::from(res));
    match check_access(&req, &res) {
        Ok(()) => Some((req, res)),
        Err(access) => {
            let field = if access.concerns_res() { Field::Res } else { Field::Req };
            problems.push(problem(field, access.message_ja(), access.message_en()));
            None
        }
    }
}

fn open_p12(data: &[u8], password: &str) -> Result<Identity, Problem> {
    use p12_keystore::error::Error;
    use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
    if data.is_empty() {
        return Err(problem(Field::Certificate, "証明書ファイル（client.p12）を選んでください。", "Choose the certificate file (client.p12)."));
    }
    if data.len() > MAX_P12_BYTES {
        return Err(problem(
            Field::Certificate,
            format!("証明書ファイルが大きすぎます（上限 {} KiB）。client.p12 を選んでください。", MAX_P12_BYTES / 1024),
            format!("The certificate file is too large (at most {} KiB). Choose client.p12.", MAX_P12_BYTES / 1024),
        ));
    }
    let store = KeyStore::from_pkcs12(data, password, Pkcs12ImportPolicy::Relaxed).map_err(|e| match e {
        Error::MacError(_) => problem(
            Field::Certificate,
            "証明書のパスワードが違います。client.p12 と一緒に届いたパスワードを入力してください。",
            "Wrong certificate password. Enter the password that came with client.p12.",
        ),
        _ => problem(
            Field::Certificate,
            "証明書ファイルを開けません。PKCS#12 形式（client.p12）のファイルを選んでください。",
            "The certificate file cannot be opened. Choose a PKCS#12 file (client.p12).",
        ),
    })?;
    let Some((_, chain)) = store.private_key_chain().filter(|(_, c)| !c.certs().is_empty()) else {
        return Err(problem(
            Field::Certificate,
            "証明書ファイルに秘密鍵と証明書の組がありません。クリニック用の client.p12 を選んでください。",
            "The certificate file holds no private key with its certificate. Choose the clinic's client.p12.",
        ));
    };
    let mut pem = Zeroizing::new(String::new());
    for cert in chain.certs() {
        pem.push_str(&pem_block("CERTIFICATE", cert.as_der()));
    }
    pem.push_str(&Zeroizing::new(pem_block("PRIVATE KEY", chain.key().as_der())));
    // reqwest must accept the pair, or the relay could not use it.
    reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
        problem(
            Field::Certificate,
            "証明書ファイルの鍵の形式に対応していません（RSA または ECDSA の鍵が必要です）。",
            "The certificate file's key type is not supported (an RSA or ECDSA key is needed).",
        )
    })?;
    Ok(Identity { pem })
}

/// PEM armour (RFC 7468): base64 in 64-character lines.
fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unusable(e: String) -> Problem {
    problem(Field::Gateway, format!("ゲートウェイの接続設定を読めません: {e}"), format!("The gateway connection settings cannot be read: {e}"))
}

async fn ask_gateway(url: &str, target: &Target, identity: &Identity, clinic_id: &str, id: &str, version: &str) -> Result<(), Problem> {
    let ca = match &target.gateway_ca {
        Some(path) => Some(std::fs::read(path).map_err(|e| unusable(format!("{}: {e}", path.display())))?),
        None => None,
    };
    let gateway = Gateway::new(url, identity.pem.as_bytes(), ca.as_deref(), id, version).map_err(unusable)?;
    match gateway.heartbeat(&[]).await {
        Ok(hb) if hb.clinic_id == clinic_id => Ok(()),
        Ok(hb) => Err(problem(
            Field::Gateway,
            format!("この証明書はクリニックID「{}」（{}）のものです。入力したクリニックID「{clinic_id}」と一致しません。", hb.clinic_id, hb.clinic_name),
            format!("This certificate belongs to clinic ID \"{}\" ({}), not to the clinic ID entered, \"{clinic_id}\".", hb.clinic_id, hb.clinic_name),
        )),
        Err(CallError::Refused { code, message, .. }) => Err(match code.as_str() {
            "cert_not_registered" => problem(
                Field::Gateway,
                "ゲートウェイにこの証明書が登録されていません。証明書を発行した販売元に登録を依頼してください。",
                "This certificate is not registered at the gateway. Ask the vendor who issued it to register it.",
            ),
            "cert_revoked" => problem(
                Field::Gateway,
                "この証明書は失効しています。販売元に新しい証明書を依頼してください。",
                "This certificate has been revoked. Ask the vendor for a new one.",
            ),
            "clinic_disabled" => problem(
                Field::Gateway,
                "このクリニックはゲートウェイで無効になっています。販売元にお問い合わせください。",
                "This clinic is disabled at the gateway. Contact the vendor.",
            ),
            "relay_held" => problem(
                Field::Gateway,
                "このクリニックの中継は、別のパソコンのエージェントが実行中です。そちらを停止してから初期化してください。",
                "Another PC's agent is relaying for this clinic. Stop it, then set up this one.",
            ),
            _ => problem(
                Field::Gateway,
                format!("ゲートウェイがこの証明書を受け付けませんでした（{code}）: {message}"),
                format!("The gateway refused this certificate ({code}): {message}"),
            ),
        }),
        // The TLS layer refuses a revoked or unknown certificate; its alert names why when it
        // reaches the client before the connection closes.
        Err(CallError::Unreachable(detail)) if detail.contains("CertificateRevoked") => Err(problem(
            Field::Gateway,
            "この証明書は失効しています（ゲートウェイが接続を拒否しました）。販売元に新しい証明書を依頼してください。",
            "This certificate has been revoked (the gateway refused the connection). Ask the vendor for a new one.",
        )),
        Err(CallError::Unreachable(detail))
            if ["UnknownCA", "BadCertificate", "CertificateExpired", "CertificateUnknown", "AccessDenied"].iter().any(|a| detail.contains(a)) =>
        {
            Err(problem(
                Field::Gateway,
                format!("ゲートウェイがこの証明書での接続を拒否しました（期限切れ、または別の発行元の証明書です）: {detail}"),
                format!("The gateway refused a connection with this certificate (expired, or from another issuer): {detail}"),
            ))
        }
        Err(CallError::Unreachable(detail)) => Err(problem(
            Field::Gateway,
            format!("ゲートウェイ（{url}）に接続できないか、この証明書での接続が拒否されました: {detail}"),
            format!("The gateway ({url}) cannot be reached, or it refused a connection with this certificate: {detail}"),
        )),
    }
}

fn store(target: &Target, identity: &Identity, clinic_id: &str, req: &Path, res: &Path) -> std::io::Result<RelayFile> {
    std::fs::create_dir_all(&target.data_dir)?;
    let file = RelayFile {
        gateway: target.gateway.clone().unwrap_or_default(),
        gateway_ca: target.gateway_ca.clone(),
        identity: target.identity_path(),
        clinic_id: clinic_id.to_owned(),
        req: req.to_owned(),
        res: res.to_owned(),
        archive: Some(target.data_dir.join("archive")),
        state_dir: target.data_dir.join("state"),
        rescan_secs: 2,
        settle_ms: 500,
    };
    write_private(&target.identity_path(), identity.pem.as_bytes())?;
    write_private(&target.relay_file, file.to_toml().as_bytes())?;
    Ok(file)
}

/// Writes `bytes` to `path` through a temporary file in the same folder, readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("setup")));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    // On Windows the file inherits the data directory's ACL (docs/deploy: the service's own folder).
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinic_ids_follow_the_gateway_rule() {
        assert!(valid_clinic_id("demo-clinic"));
        assert!(valid_clinic_id("1311234567"));
        for bad in ["", "a b", "クリニック", "a/b", &"x".repeat(33)] {
            assert!(!valid_clinic_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn pem_blocks_wrap_at_64() {
        let text = pem_block("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(*lines.last().unwrap(), "-----END CERTIFICATE-----");
    }
}
