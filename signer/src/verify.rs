//! `ninsho-signer verify`: with a FILE, checks a signed e-prescription document (docs/design.md
//! §3.12) and prints the verification report ([`run_document`]); without one, checks a signature
//! the signer made over a hash (signHash), as a relying party would — the signature value with the certificate's public key (OpenSSL), the
//! certificate's shape as an HPKI signing certificate (nonRepudiation, the HPKI signing policy,
//! hcRole) and, given the CA certificates, its path at the signing time. It prints one line per
//! check and succeeds only when every check passes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keys::SignAlgorithm;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The HPKI signing end-entity policy arc (docs/cards.md).
const HPKI_SIGNING_ARC: &str = "1.2.392.100495.1.5.1.1.";

/// `ninsho-signer verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A signed e-prescription document (XML) to verify. Without it, the --cert/--signature form
    /// checks a signHash signature.
    #[arg(conflicts_with_all = ["cert", "signature", "data", "hash", "ca"])]
    pub file: Option<PathBuf>,
    /// With FILE: HPKI signing CA roots (PEM), repeatable; default `verify.anchor_files`.
    #[arg(long = "anchors")]
    pub anchors: Vec<PathBuf>,
    /// With FILE: TSA roots (PEM), repeatable; default `verify.tsa_anchor_files`.
    #[arg(long = "tsa-anchors")]
    pub tsa_anchors: Vec<PathBuf>,
    /// With FILE: the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The signer's certificate (PEM, or DER).
    #[arg(long, required_unless_present = "file")]
    pub cert: Option<PathBuf>,
    /// The signature: a file holding its base64 (as signHash answers it) or raw bytes.
    #[arg(long, required_unless_present = "file")]
    pub signature: Option<PathBuf>,
    /// The signed data; its SHA-256 is what was signed.
    #[arg(long, conflicts_with = "hash", required_unless_present_any = ["hash", "file"])]
    pub data: Option<PathBuf>,
    /// Or the SHA-256 that was sent to signHash, base64.
    #[arg(long)]
    pub hash: Option<String>,
    /// The signAlgo used (default RSA PKCS#1 v1.5 with SHA-256).
    #[arg(long, default_value = "1.2.840.113549.1.1.11")]
    pub sign_algo: String,
    /// CA certificates (PEM) to validate the certificate's path against (no revocation check).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The time the certificate is judged at: Unix seconds or RFC 3339 (default: now; with FILE,
    /// the time-stamp's time).
    #[arg(long, value_parser = parse_time)]
    pub at: Option<i64>,
}

fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(unix) = text.parse::<i64>() {
        return Ok(unix);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("{text:?} is neither Unix seconds nor an RFC 3339 time"))
}

/// Verifies the signed document `file`; returns the report (text or JSON) and the verdict.
pub fn run_document(args: &VerifyArgs, file: &Path, config: &crate::config::Config) -> anyhow::Result<(String, bool)> {
    let document = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let read = |given: &[PathBuf], configured: &[PathBuf]| -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for path in if given.is_empty() { configured } else { given } {
            out.extend(crate::validation::read_certificates(path)?);
        }
        Ok(out)
    };
    let signer_anchors = read(&args.anchors, &config.verify.anchor_files)?;
    let tsa_anchors = read(&args.tsa_anchors, &config.verify.tsa_anchor_files)?;
    let policy = xades::VerifyPolicy { signer_anchors: &signer_anchors, tsa_anchors: &tsa_anchors, at: args.at };
    let report = xades::verify(&document, &policy);
    let valid = report.verdict == xades::Verdict::Valid;
    let text = if args.json { format!("{:#}\n", report.to_json()) } else { report.to_string() };
    Ok((text, valid))
}

/// Runs the checks; returns the report and whether every check passed.
pub fn run(args: &VerifyArgs, now: i64) -> anyhow::Result<(String, bool)> {
    let (Some(cert_path), Some(signature_path)) = (&args.cert, &args.signature) else {
        anyhow::bail!("give FILE, or --cert and --signature");
    };
    let cert_bytes = std::fs::read(cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
    let cert_der = match infra::tls::read_pem_certs(cert_path) {
        Ok(certs) => certs.first().map(|c| c.to_vec()).unwrap_or_default(),
        Err(_) => cert_bytes,
    };
    let (_, cert) = X509Certificate::from_der(&cert_der).map_err(|e| anyhow::anyhow!("{}: not a certificate: {e}", cert_path.display()))?;
    let digest: Vec<u8> = match (&args.data, &args.hash) {
        (Some(path), _) => {
            use sha2::Digest as _;
            sha2::Sha256::digest(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?).to_vec()
        }
        (None, Some(b64)) => STANDARD.decode(b64.trim()).context("--hash is not base64")?,
        (None, None) => anyhow::bail!("give --data or --hash"),
    };
    if digest.len() != 32 {
        anyhow::bail!("the hash must be a SHA-256 (32 bytes), got {}", digest.len());
    }
    let raw = std::fs::read(signature_path).with_context(|| format!("cannot read {}", signature_path.display()))?;
    let signature = match std::str::from_utf8(&raw).ok().and_then(|t| STANDARD.decode(t.trim()).ok()) {
        Some(decoded) => decoded,
        None => raw,
    };
    let alg = SignAlgorithm::from_oid(&args.sign_algo).with_context(|| format!("unknown signAlgo {}", args.sign_algo))?;

    let mut report = String::new();
    let mut ok = true;
    let mut line = |passed: bool, text: String| {
        ok &= passed;
        let _ = writeln!(report, "{} {text}", if passed { "OK  " } else { "FAIL" });
    };
    let valid = keys::verify_digest(cert.public_key().raw, alg, &digest, &signature)?;
    line(valid, format!("signature ({}) over SHA-256 {}", alg.oid(), hex::encode(&digest)));
    line(true, format!("signer: {}", cert.subject()));
    line(true, format!("issuer: {} (serial {})", cert.issuer(), cert.raw_serial_as_string().replace(':', "")));
    let non_repudiation = matches!(cert.key_usage(), Ok(Some(ku)) if ku.critical && ku.value.non_repudiation());
    line(non_repudiation, "keyUsage critical, nonRepudiation".to_owned());
    let policies: Vec<(String, bool)> = cert
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::CertificatePolicies(p) => {
                Some(p.iter().map(|p| (p.policy_id.to_id_string(), e.critical)).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    let hpki = policies.iter().find(|(oid, _)| oid.starts_with(HPKI_SIGNING_ARC));
    line(hpki.is_some_and(|(_, critical)| *critical), match hpki {
        Some((oid, critical)) => format!("certificatePolicies {oid} (HPKI signing){}", if *critical { ", critical" } else { ", NOT critical" }),
        None => "certificatePolicies: no HPKI signing policy".to_owned(),
    });
    match card::verify::hc_roles(&cert) {
        Ok(roles) if !roles.is_empty() => line(true, format!("hcRole: {}", roles.join(", "))),
        Ok(_) => line(false, "hcRole: none".to_owned()),
        Err(e) => line(false, format!("hcRole: unreadable ({e})")),
    }
    let at = args.at.unwrap_or(now);
    let (from, to) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
    line(
        (from..=to).contains(&at),
        format!("valid {} to {} (checked at {})", crate::clock::jst(from), crate::clock::jst(to), crate::clock::jst(at)),
    );
    if let Some(ca) = &args.ca {
        let anchors = infra::tls::read_pem_certs(ca)?
            .iter()
            .map(|c| trust::AnchorSpec { certificate: c.to_vec(), revocation: trust::Revocation::None, policies: trust::Policies::Any })
            .collect();
        let store = trust::TrustStore::new(anchors);
        match store.validate(&cert_der, &[], at, trust::Purpose::DocumentSigning) {
            Ok(v) => line(true, format!("path to {} (revocation not checked)", v.anchor_subject)),
            Err(e) => line(false, format!("path: {e}")),
        }
    }
    Ok((report, ok))
}
