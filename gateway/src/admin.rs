//! Operator actions behind `gateway admin …`. Each validates its input completely before it
//! writes, so a refused command changes nothing, and each successful change is audited.

use std::io::Write;

use anyhow::{Context as _, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use zeroize::Zeroizing;

use crate::password::PasswordHasher;
use crate::pki;
use crate::store::{
    self, AnchorKind, AuditEvent, EndReason, NewClinicCert, NewUser, RevocationPolicy, SessionFilter, Store, TrustAnchor,
    UserKind,
};
use crate::tls::{PeerCert, fingerprint};

/// What admin actions need.
pub struct Admin<'a> {
    /// The database.
    pub store: &'a Store,
    /// Unix seconds to stamp changes with.
    pub now: i64,
}

fn conflict_or<T>(r: store::Result<T>, what: impl FnOnce() -> String) -> anyhow::Result<T> {
    match r {
        Err(store::Error::Conflict(_)) => bail!("{}", what()),
        other => Ok(other?),
    }
}

/// Reads one certificate from PEM or DER bytes without interpreting it (card certificates are
/// checked by `card::verify`, which reports unreadable ones itself).
fn read_certificate(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    if bytes.starts_with(b"-----BEGIN") {
        Ok(CertificateDer::from_pem_slice(bytes).map_err(|e| anyhow::anyhow!("no PEM certificate found: {e}"))?.to_vec())
    } else {
        Ok(bytes.to_vec())
    }
}

/// Reads one certificate from PEM or DER bytes.
pub fn parse_certificate(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        CertificateDer::from_pem_slice(bytes).map_err(|e| anyhow::anyhow!("no PEM certificate found: {e}"))?.to_vec()
    } else {
        bytes.to_vec()
    };
    PeerCert::from_der(&der)?;
    Ok(der)
}

/// Reads a CRL from PEM or DER bytes and checks that it parses.
pub fn parse_crl(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(bytes)
            .map_err(|e| anyhow::anyhow!("no PEM CRL found: {e}"))?
            .to_vec()
    } else {
        bytes.to_vec()
    };
    x509_parser::parse_x509_crl(&der).map_err(|e| anyhow::anyhow!("not a valid CRL: {e}"))?;
    Ok(der)
}

fn is_pkcs12(path: &std::path::Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("p12" | "pfx"))
}

impl Admin<'_> {
    async fn audit(&self, action: &'static str, target: impl Into<String>) -> anyhow::Result<()> {
        Ok(self.store.audit(&AuditEvent::Admin { action, target: target.into() }, self.now).await?)
    }

    /// `clinic add`.
    pub async fn clinic_add(&self, id: &str, name: &str) -> anyhow::Result<()> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || id.len() > 32 {
            bail!("clinic id must be 1–32 letters, digits or '-', got {id:?}");
        }
        if name.trim().is_empty() {
            bail!("clinic name must not be empty");
        }
        conflict_or(self.store.add_clinic(id, name.trim(), self.now).await, || format!("clinic {id} already exists"))?;
        self.audit("clinic.add", id).await
    }

    /// `clinic disable` / `clinic enable`.
    pub async fn clinic_set_enabled(&self, id: &str, enabled: bool) -> anyhow::Result<()> {
        match self.store.set_clinic_enabled(id, enabled, self.now).await {
            Err(store::Error::NotFound) => bail!("no clinic {id}"),
            r => r?,
        }
        self.audit(if enabled { "clinic.enable" } else { "clinic.disable" }, id).await
    }

    /// `clinic-cert add`: registers a certificate file (PEM, DER, or PKCS#12 with `p12_password`).
    pub async fn clinic_cert_add(
        &self,
        clinic_id: &str,
        file: &std::path::Path,
        p12_password: Option<&str>,
    ) -> anyhow::Result<PeerCert> {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let der = if is_pkcs12(file) {
            let password = p12_password.context("a .p12 file needs its password (--password-stdin)")?;
            pki::pkcs12_leaf(&bytes, password)?
        } else {
            parse_certificate(&bytes).with_context(|| format!("{}", file.display()))?
        };
        let cert = PeerCert::from_der(&der)?;
        match self.store.clinic(clinic_id).await {
            Err(store::Error::NotFound) => bail!("no clinic {clinic_id}: add it first with `gateway admin clinic add`"),
            r => r?,
        };
        let new = NewClinicCert {
            fingerprint: &cert.fingerprint,
            clinic_id,
            subject: &cert.subject,
            serial: &cert.serial,
            not_after: cert.not_after,
        };
        conflict_or(self.store.add_clinic_cert(&new, self.now).await, || {
            format!("certificate {} is already registered", cert.fingerprint)
        })?;
        self.audit("clinic_cert.add", format!("{clinic_id}/{}", cert.fingerprint)).await?;
        Ok(cert)
    }

    /// `clinic-cert revoke`.
    pub async fn clinic_cert_revoke(&self, fingerprint: &str) -> anyhow::Result<()> {
        let fp = normalise_fingerprint(fingerprint)?;
        match self.store.revoke_clinic_cert(&fp, self.now).await {
            Err(store::Error::NotFound) => bail!("no registered, unrevoked certificate {fp}"),
            r => r?,
        }
        self.audit("clinic_cert.revoke", fp).await
    }

    /// `user add`. Returns the new user's id.
    #[allow(clippy::too_many_arguments, reason = "one argument per CLI flag")]
    pub async fn user_add(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        kind: UserKind,
        name: &str,
        medical_reg_no: Option<&str>,
        password: &Zeroizing<String>,
    ) -> anyhow::Result<String> {
        validate_login_id(login_id)?;
        if name.trim().is_empty() {
            bail!("name must not be empty");
        }
        match (kind, medical_reg_no) {
            (UserKind::Doctor, None) => bail!("a doctor needs --medical-reg-no (医籍番号)"),
            (UserKind::Doctor, Some(n)) if n.is_empty() || n.len() > 16 || !n.chars().all(|c| c.is_ascii_digit()) => {
                bail!("--medical-reg-no must be 1–16 digits, got {n:?}")
            }
            (UserKind::Staff, Some(_)) => bail!("only doctors have a medical registration number"),
            _ => {}
        }
        validate_password(password)?;
        match self.store.clinic(clinic_id).await {
            Err(store::Error::NotFound) => bail!("no clinic {clinic_id}"),
            r => r?,
        };
        let hash = hasher.hash(password.clone()).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let user = NewUser { id: &id, clinic_id, login_id, kind, name: name.trim(), medical_reg_no, password_hash: &hash };
        conflict_or(self.store.add_user(&user, self.now).await, || {
            format!("login ID {login_id} already exists in clinic {clinic_id}")
        })?;
        self.audit("user.add", id.clone()).await?;
        Ok(id)
    }

    /// `user disable` / `user enable`.
    pub async fn user_set_enabled(&self, clinic_id: &str, login_id: &str, enabled: bool) -> anyhow::Result<()> {
        let user = match self.store.set_user_enabled(clinic_id, login_id, enabled, self.now).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        if !enabled {
            // DESIGN §3.7: disabling an account ends its signing sessions at once, everywhere.
            let filter = SessionFilter::User { user_id: &user.id, clinic_id: None };
            for s in self.store.end_signing_sessions(filter, EndReason::AccountDisabled, self.now).await? {
                self.audit_session_end(&user, &s.id, EndReason::AccountDisabled).await?;
            }
        }
        self.audit(if enabled { "user.enable" } else { "user.disable" }, user.id).await
    }

    /// `user set-password`.
    pub async fn user_set_password(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        password: &Zeroizing<String>,
    ) -> anyhow::Result<()> {
        validate_password(password)?;
        let hash = hasher.hash(password.clone()).await?;
        let user = match self.store.set_user_password(clinic_id, login_id, &hash, self.now).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        self.audit("user.set_password", user.id).await
    }

    /// A doctor account by clinic and login ID, with a clear error when there is none.
    async fn doctor(&self, clinic_id: &str, login_id: &str) -> anyhow::Result<store::User> {
        let user = match self.store.user_by_login(clinic_id, login_id).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        if user.kind != UserKind::Doctor {
            bail!("{login_id} is not a doctor: only doctors link authenticators");
        }
        Ok(user)
    }

    /// `enroll-code issue`: a new one-time registration code for a doctor, voiding any open one.
    /// Returns the code (shown once, stored only as SHA-256) and its expiry.
    pub async fn enroll_code_issue(
        &self,
        clinic_id: &str,
        login_id: &str,
        ttl_secs: i64,
        max_failures: u32,
    ) -> anyhow::Result<(Zeroizing<String>, store::IssuedCode)> {
        if !(60..=30 * 24 * 3600).contains(&ttl_secs) {
            bail!("the code lifetime must be between 1 minute and 30 days");
        }
        let user = self.doctor(clinic_id, login_id).await?;
        if !user.enabled {
            bail!("{login_id} is disabled: enable the account first");
        }
        let code = crate::enrollment::generate_code();
        let normalised = crate::enrollment::normalise(&code).context("generated code does not normalise")?;
        let issued = self
            .store
            .issue_enrollment_code(
                &user.id,
                &crate::enrollment::hash(&normalised),
                self.now + ttl_secs,
                i64::from(max_failures),
                self.now,
            )
            .await?;
        // Ids only: the code itself never reaches the audit log (DESIGN §6).
        for old in &issued.replaced {
            self.audit("enroll_code.replace", format!("{}/{old}", user.id)).await?;
        }
        self.audit("enroll_code.issue", format!("{}/{}", user.id, issued.id)).await?;
        Ok((code, issued))
    }

    /// `enroll-code revoke`: voids the doctor's open code.
    pub async fn enroll_code_revoke(&self, clinic_id: &str, login_id: &str) -> anyhow::Result<String> {
        let user = self.doctor(clinic_id, login_id).await?;
        let id = match self.store.revoke_enrollment_code(&user.id, self.now).await {
            Err(store::Error::NotFound) => bail!("{login_id} has no open registration code"),
            r => r?,
        };
        self.audit("enroll_code.revoke", format!("{}/{id}", user.id)).await?;
        Ok(id)
    }

    /// `fido list`: the doctor's linked FIDO credentials.
    pub async fn fido_list(&self, clinic_id: &str, login_id: &str) -> anyhow::Result<Vec<store::FidoCredential>> {
        let user = self.doctor(clinic_id, login_id).await?;
        Ok(self.store.fido_credentials_of(&user.id).await?)
    }

    /// `fido remove`: unlinks a credential and ends the signing sessions opened with it.
    /// Returns the ids of the sessions ended.
    pub async fn fido_remove(&self, clinic_id: &str, login_id: &str, id: &str) -> anyhow::Result<Vec<String>> {
        let user = self.doctor(clinic_id, login_id).await?;
        let ended = match self.store.remove_fido_credential(&user.id, id, self.now).await {
            Err(store::Error::NotFound) => bail!("{login_id} has no FIDO credential {id} (see `gateway admin fido list`)"),
            r => r?,
        };
        self.store
            .audit(
                &AuditEvent::AuthenticatorRemoved {
                    clinic_id: user.clinic_id.clone(),
                    user_id: user.id.clone(),
                    kind: "fido",
                    authenticator_id: id.to_owned(),
                    by: "operator",
                },
                self.now,
            )
            .await?;
        for session_id in &ended {
            self.audit_session_end(&user, session_id, EndReason::AuthenticatorRemoved).await?;
        }
        Ok(ended)
    }

    async fn audit_session_end(&self, user: &store::User, session_id: &str, reason: EndReason) -> anyhow::Result<()> {
        let event = AuditEvent::SigningSessionEnded {
            clinic_id: user.clinic_id.clone(),
            user_id: user.id.clone(),
            session_id: session_id.to_owned(),
            reason: reason.as_str(),
        };
        Ok(self.store.audit(&event, self.now).await?)
    }

    /// `session list`: signing sessions, optionally of one clinic or doctor.
    pub async fn session_list(
        &self,
        clinic_id: Option<&str>,
        login_id: Option<&str>,
        all: bool,
    ) -> anyhow::Result<Vec<store::SigningSession>> {
        let user = match (clinic_id, login_id) {
            (Some(c), Some(l)) => Some(self.doctor(c, l).await?),
            (None, Some(_)) => bail!("--login-id needs --clinic"),
            _ => None,
        };
        if let Some(c) = clinic_id {
            match self.store.clinic(c).await {
                Err(store::Error::NotFound) => bail!("no clinic {c}"),
                r => r?,
            };
        }
        Ok(self.store.list_signing_sessions(clinic_id, user.as_ref().map(|u| u.id.as_str()), !all).await?)
    }

    /// `session revoke`: ends one signing session by id, or every open one of a doctor.
    pub async fn session_revoke(
        &self,
        id: Option<&str>,
        clinic_id: Option<&str>,
        login_id: Option<&str>,
    ) -> anyhow::Result<Vec<store::SigningSession>> {
        let ended = match (id, clinic_id, login_id) {
            (Some(id), None, None) => {
                let ended = self.store.end_signing_sessions(SessionFilter::Id(id), EndReason::Operator, self.now).await?;
                if ended.is_empty() {
                    bail!("no open signing session {id}");
                }
                ended
            }
            (None, Some(c), Some(l)) => {
                let user = self.doctor(c, l).await?;
                let filter = SessionFilter::User { user_id: &user.id, clinic_id: None };
                let ended = self.store.end_signing_sessions(filter, EndReason::Operator, self.now).await?;
                if ended.is_empty() {
                    bail!("{l} has no open signing session");
                }
                ended
            }
            _ => bail!("give either --id, or --clinic and --login-id"),
        };
        for s in &ended {
            let event = AuditEvent::SigningSessionEnded {
                clinic_id: s.clinic_id.clone(),
                user_id: s.user_id.clone(),
                session_id: s.id.clone(),
                reason: EndReason::Operator.as_str(),
            };
            self.store.audit(&event, self.now).await?;
        }
        self.audit("session.revoke", ended.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(",")).await?;
        Ok(ended)
    }

    /// `anchor add`.
    pub async fn anchor_add(
        &self,
        kind: AnchorKind,
        cert_bytes: &[u8],
        crl_bytes: Option<&[u8]>,
        revocation: RevocationPolicy,
    ) -> anyhow::Result<TrustAnchor> {
        let der = parse_certificate(cert_bytes)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !parsed.is_ca() {
            bail!("{} is not a CA certificate (basicConstraints CA:TRUE missing)", parsed.subject());
        }
        let crl_der = crl_bytes.map(parse_crl).transpose()?;
        if let Some(crl) = &crl_der {
            let (_, crl_parsed) = x509_parser::parse_x509_crl(crl).map_err(|e| anyhow::anyhow!("{e}"))?;
            if crl_parsed.issuer() != parsed.subject() {
                bail!("the CRL was issued by {}, not by {}", crl_parsed.issuer(), parsed.subject());
            }
        }
        if revocation == RevocationPolicy::Crl && crl_der.is_none() {
            bail!("revocation policy crl needs --crl FILE (or choose --revocation none)");
        }
        let anchor = TrustAnchor {
            kind,
            fingerprint: fingerprint(&der),
            subject: parsed.subject().to_string(),
            cert_der: der.clone(),
            revocation,
            crl_der,
            updated_at: self.now,
            crl_url: None,
        };
        conflict_or(self.store.add_anchor(&anchor, self.now).await, || {
            format!("{} anchor {} already exists", kind.as_str(), anchor.fingerprint)
        })?;
        self.audit("anchor.add", format!("{}/{}", kind.as_str(), anchor.fingerprint)).await?;
        Ok(anchor)
    }

    /// `anchor add --crl-url`: an HPKI/JPKI anchor whose CRL the gateway fetches from `url`.
    /// Policy `crl`; without an initial `--crl`, cards under it are refused until the first fetch
    /// (fail closed).
    pub async fn anchor_add_with_crl_url(
        &self,
        kind: AnchorKind,
        cert_bytes: &[u8],
        crl_bytes: Option<&[u8]>,
        url: &url::Url,
    ) -> anyhow::Result<TrustAnchor> {
        if crate::cards::card_kind(kind).is_none() {
            bail!("--crl-url is for hpki and jpki anchors (TLS anchors take their CRL with --crl / set-crl)");
        }
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--crl-url must be an http:// or https:// URL");
        }
        // Added with policy none first only to pass the "crl needs a CRL" rule; the URL and
        // policy crl follow at once, so no login can see the anchor without its policy for long
        // — and an anchor with policy crl but no CRL refuses everything anyway.
        let policy = if crl_bytes.is_some() { RevocationPolicy::Crl } else { RevocationPolicy::None };
        let mut anchor = self.anchor_add(kind, cert_bytes, crl_bytes, policy).await?;
        self.store.set_anchor_crl_url(kind, &anchor.fingerprint, Some(url.as_str()), self.now).await?;
        if crl_bytes.is_none() {
            self.store.set_anchor_revocation(kind, &anchor.fingerprint, RevocationPolicy::Crl, self.now).await?;
        }
        anchor.crl_url = Some(url.to_string());
        anchor.revocation = RevocationPolicy::Crl;
        self.audit("anchor.crl_url", format!("{}/{}", kind.as_str(), anchor.fingerprint)).await?;
        Ok(anchor)
    }

    /// `anchor set-crl`.
    pub async fn anchor_set_crl(&self, kind: AnchorKind, fp: &str, crl_bytes: &[u8]) -> anyhow::Result<()> {
        let fp = normalise_fingerprint(fp)?;
        let crl = parse_crl(crl_bytes)?;
        match self.store.set_anchor_crl(kind, &fp, &crl, self.now).await {
            Err(store::Error::NotFound) => bail!("no {} anchor {fp}", kind.as_str()),
            r => r?,
        }
        self.audit("anchor.set_crl", format!("{}/{fp}", kind.as_str())).await
    }

    /// `cert check`: what the gateway concludes about a card certificate (`card::verify::explain`,
    /// one line per step) and which account, if any, it is linked to — for operators answering
    /// "why was this card refused". Reads only; audited as an admin action (ids only).
    pub async fn cert_check(
        &self,
        kind: AnchorKind,
        cert_bytes: &[u8],
        chain_bytes: &[Vec<u8>],
        policy: &card::verify::Policy,
    ) -> anyhow::Result<String> {
        use std::fmt::Write as _;
        let Some(card_kind) = crate::cards::card_kind(kind) else {
            bail!("cert check is for card certificates: --kind hpki or --kind jpki");
        };
        let der = read_certificate(cert_bytes)?;
        let chain = chain_bytes.iter().map(|c| read_certificate(c)).collect::<anyhow::Result<Vec<_>>>()?;
        let trust = crate::cards::load_trust_store(self.store, card_kind).await?;
        let now = time::OffsetDateTime::from_unix_timestamp(self.now)?;
        let report = card::verify::explain(&der, &chain, &trust, policy, now);
        let mut out = format!("{report}");
        if !out.ends_with('\n') {
            out.push('\n');
        }
        match &report.certificate {
            None => out.push_str("linked account: - (certificate unreadable)\n"),
            Some(summary) => {
                match self.store.card_credential_by_card(kind, &summary.issuer_sha256, &summary.serial_hex).await {
                    Ok(cred) => {
                        let user = self.store.user(&cred.user_id).await?;
                        let key = if cred.spki_sha256 == summary.spki_sha256 { "same key" } else { "DIFFERENT KEY: refused" };
                        writeln!(
                            out,
                            "linked account: {} {} (user {}, card {}, linked {}, {key})",
                            user.clinic_id, user.login_id, user.id, cred.id, cred.created_at
                        )?;
                    }
                    Err(store::Error::NotFound) => out.push_str("linked account: none (the card is not linked)\n"),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let fp = report.certificate.as_ref().map_or_else(|| fingerprint(&der), |c| c.cert_sha256.clone());
        self.audit("cert.check", format!("{}/{fp}", kind.as_str())).await?;
        Ok(out)
    }

    /// `audit export` as JSON Lines.
    pub async fn audit_export(&self, out: &mut (dyn Write + Send)) -> anyhow::Result<i64> {
        Ok(self
            .store
            .audit_export(|record| {
                serde_json::to_writer(&mut *out, &record)?;
                out.write_all(b"\n")
            })
            .await?)
    }
}

/// Accepts `AA:BB:…` or `aabb…`, returns lowercase hex.
pub fn normalise_fingerprint(fp: &str) -> anyhow::Result<String> {
    let hex: String = fp.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("a fingerprint is 64 hex digits (SHA-256), got {fp:?}");
    }
    Ok(hex)
}

fn validate_login_id(login_id: &str) -> anyhow::Result<()> {
    if login_id.is_empty() || login_id.len() > 128 || login_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("login ID must be 1–128 characters without spaces or control characters");
    }
    Ok(())
}

fn validate_password(password: &str) -> anyhow::Result<()> {
    // NIST SP 800-63B §5.1.1.2: at least 8 characters, long passphrases allowed.
    let n = password.chars().count();
    if !(8..=256).contains(&n) {
        bail!("password must be 8–256 characters");
    }
    Ok(())
}

/// A random password for generated accounts and files: 20 characters from an unambiguous alphabet.
pub fn generate_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    use rand::seq::IndexedRandom as _;
    let mut rng = rand::rng();
    Zeroizing::new((0..20).map(|_| char::from(ALPHABET.choose(&mut rng).copied().unwrap_or(b'x'))).collect())
}
