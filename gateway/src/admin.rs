//! Operator actions behind `gateway admin …`. Each validates its input completely before it
//! writes, so a refused command changes nothing, and each successful change is audited.

use std::io::Write;

use anyhow::{Context as _, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use zeroize::Zeroizing;

use crate::password::{self, PasswordHasher};
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

/// The password an operator gives an account.
pub enum PasswordChoice {
    /// Typed by the operator: it must pass the strength rule (`password::weakness`).
    Chosen(Zeroizing<String>),
    /// Generated here (and printed once by the CLI).
    Generate,
}

impl PasswordChoice {
    /// The password to store: a chosen one if strong enough (the reason otherwise), or a new
    /// generated one. `personal` are the account's login ID, name, 医籍番号 and clinic name.
    fn resolve(self, personal: &[&str]) -> anyhow::Result<Zeroizing<String>> {
        match self {
            PasswordChoice::Chosen(p) => match password::weakness(&p, personal) {
                Some(w) => bail!("{}", w.reason()),
                None => Ok(p),
            },
            PasswordChoice::Generate => loop {
                // A random password that happens to contain the login ID is drawn again.
                let p = generate_password();
                if password::weakness(&p, personal).is_none() {
                    return Ok(p);
                }
            },
        }
    }
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

/// Reads every certificate of a PEM file (leaf first), or one DER certificate; each must parse.
pub fn read_certificates(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let ders: Vec<Vec<u8>> = if bytes.starts_with(b"-----BEGIN") {
        CertificateDer::pem_slice_iter(bytes)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("not a PEM certificate file: {e}"))?
    } else {
        vec![bytes.to_vec()]
    };
    if ders.is_empty() {
        bail!("no certificate found");
    }
    for der in &ders {
        PeerCert::from_der(der)?;
    }
    Ok(ders)
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
        let (der, intermediates) = if is_pkcs12(file) {
            let password = p12_password.context("a .p12 file needs its password (--password-stdin)")?;
            (pki::pkcs12_leaf(&bytes, password)?, Vec::new())
        } else {
            let mut all = read_certificates(&bytes).with_context(|| format!("{}", file.display()))?;
            let leaf = all.remove(0);
            (leaf, all)
        };
        let cert = PeerCert::from_der(&der)?;
        match self.store.clinic(clinic_id).await {
            Err(store::Error::NotFound) => bail!("no clinic {clinic_id}: add it first with `gateway admin clinic add`"),
            r => r?,
        };
        let anchor = self.client_cert_anchor(&der, &intermediates, AnchorKind::Clinic).await.with_context(|| file.display().to_string())?;
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
        self.store.record_anchor_of(AnchorKind::Clinic, &cert.fingerprint, &anchor).await?;
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

    /// `user add`. Returns the new user's id and the password stored. Unless `permanent`, the
    /// password is temporary: the user chooses a new one at the first login.
    #[allow(clippy::too_many_arguments, reason = "one argument per CLI flag")]
    pub async fn user_add(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        kind: UserKind,
        name: &str,
        medical_reg_no: Option<&str>,
        password: PasswordChoice,
        permanent: bool,
    ) -> anyhow::Result<(String, Zeroizing<String>)> {
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
        let clinic = match self.store.clinic(clinic_id).await {
            Err(store::Error::NotFound) => bail!("no clinic {clinic_id}"),
            r => r?,
        };
        self.refuse_taken(clinic_id, login_id, medical_reg_no).await?;
        let personal = [Some(login_id), Some(name.trim()), medical_reg_no, Some(clinic.name.as_str())];
        let password = password.resolve(&personal.into_iter().flatten().collect::<Vec<_>>())?;
        let hash = hasher.hash(password.clone()).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let user = NewUser {
            id: &id,
            clinic_id,
            login_id,
            kind,
            name: name.trim(),
            medical_reg_no,
            password_hash: &hash,
            password_temporary: !permanent,
        };
        // The unique indexes decide if another command added the same account meanwhile.
        conflict_or(self.store.add_user(&user, self.now).await, || {
            format!("login ID {login_id} or its medical registration number already exists in clinic {clinic_id}")
        })?;
        self.audit("user.add", id.clone()).await?;
        Ok((id, password))
    }

    /// Refuses a login ID that folds like an existing one of the clinic (`doctor1`, `DOCTOR1`,
    /// `Ｄｏｃｔｏｒ１` are one account) and a 医籍番号 the clinic already has, naming the account.
    async fn refuse_taken(&self, clinic_id: &str, login_id: &str, medical_reg_no: Option<&str>) -> anyhow::Result<()> {
        match self.store.user_by_login(clinic_id, login_id).await {
            Ok(existing) => bail!(
                "login ID {login_id} already exists in clinic {clinic_id} as account {} (login IDs are compared \
                 ignoring width and upper/lower case)",
                existing.login_id
            ),
            Err(store::Error::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(number) = medical_reg_no {
            match self.store.user_by_medical_reg_no(clinic_id, number).await {
                Ok(existing) => bail!(
                    "medical registration number (医籍番号) {number} already belongs to account {} in clinic {clinic_id}",
                    existing.login_id
                ),
                Err(store::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `user disable` / `user enable`.
    pub async fn user_set_enabled(&self, clinic_id: &str, login_id: &str, enabled: bool) -> anyhow::Result<()> {
        let user = match self.store.set_user_enabled(clinic_id, login_id, enabled, self.now).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        if !enabled {
            // docs/design.md §3.7: disabling an account ends its signing sessions at once, everywhere.
            let filter = SessionFilter::User { user_id: &user.id, clinic_id: None };
            for s in self.store.end_signing_sessions(filter, EndReason::AccountDisabled, self.now).await? {
                self.audit_session_end(&user, &s.id, EndReason::AccountDisabled).await?;
            }
        }
        self.audit(if enabled { "user.enable" } else { "user.disable" }, user.id).await
    }

    /// `user set-password`: returns the password stored. It is always temporary (the user
    /// chooses a new one at the next login, within `login.temporary_password_secs`): an operator
    /// starts a reset but never chooses the password the user keeps (ASVS 5.0 V6.4.6). The user's browser sessions and signing
    /// sessions end: whoever knew the old password is signed out everywhere.
    pub async fn user_set_password(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        password: PasswordChoice,
    ) -> anyhow::Result<Zeroizing<String>> {
        let user = match self.store.user_by_login(clinic_id, login_id).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        let clinic = self.store.clinic(clinic_id).await?;
        let personal = [Some(login_id), Some(user.name.as_str()), user.medical_reg_no.as_deref(), Some(clinic.name.as_str())];
        let password = password.resolve(&personal.into_iter().flatten().collect::<Vec<_>>())?;
        let hash = hasher.hash(password.clone()).await?;
        let user = match self.store.set_user_password(clinic_id, login_id, &hash, true, self.now).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        let ended = self.store.end_browser_sessions(&user.id, None).await?;
        let filter = SessionFilter::User { user_id: &user.id, clinic_id: None };
        for s in self.store.end_signing_sessions(filter, EndReason::PasswordChanged, self.now).await? {
            self.audit_session_end(&user, &s.id, EndReason::PasswordChanged).await?;
        }
        let event = AuditEvent::PasswordChanged {
            clinic_id: user.clinic_id.clone(),
            user_id: user.id.clone(),
            by: "operator",
            temporary: true,
            browser_sessions_ended: ended,
        };
        self.store.audit(&event, self.now).await?;
        self.audit("user.set_password", user.id).await?;
        Ok(password)
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
        // Ids only: the code itself never reaches the audit log (docs/design.md §6).
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

    /// The anchor of `kind` (clinic or service) that a client certificate validates under now, as
    /// the TLS handshake would; refuses a certificate that could never connect, saying why.
    pub async fn client_cert_anchor(&self, der: &[u8], intermediates: &[Vec<u8>], kind: AnchorKind) -> anyhow::Result<String> {
        let facts = trust::cert_facts(der)?;
        if facts.is_ca {
            bail!("{} is a CA certificate, not a device or client certificate", facts.subject);
        }
        if facts.not_after < self.now {
            bail!("the certificate expired at {} (UTC)", utc(facts.not_after));
        }
        if facts.not_before > self.now {
            bail!("the certificate is not valid before {} (UTC)", utc(facts.not_before));
        }
        let anchors = self.store.list_anchors(Some(kind)).await?;
        let result = crate::tls::gate_trust(&anchors).validate(der, intermediates, self.now, trust::Purpose::ClientTls);
        match result {
            Ok(v) => Ok(v.anchor_sha256),
            Err(e) => {
                let other = if kind == AnchorKind::Clinic { AnchorKind::Service } else { AnchorKind::Clinic };
                let others = self.store.list_anchors(Some(other)).await?;
                if crate::tls::gate_trust(&others).validate(der, intermediates, self.now, trust::Purpose::ClientTls).is_ok() {
                    bail!(
                        "the certificate was issued under a {} anchor, not a {} anchor: register it as a {} instead",
                        other.as_str(),
                        kind.as_str(),
                        if other == AnchorKind::Clinic { "clinic certificate" } else { "service client" }
                    );
                }
                if anchors.is_empty() {
                    bail!("no {0} trust anchor is configured: gateway admin anchor add --kind {0} CA.pem", kind.as_str());
                }
                bail!("the TLS handshake would refuse this certificate: {} ({e})", e.code())
            }
        }
    }

    /// `anchor add`. Returns the anchor and warnings for the operator.
    pub async fn anchor_add(
        &self,
        kind: AnchorKind,
        cert_bytes: &[u8],
        crl_bytes: Option<&[u8]>,
        revocation: RevocationPolicy,
        policies: Option<&str>,
    ) -> anyhow::Result<(TrustAnchor, Vec<String>)> {
        let der = parse_certificate(cert_bytes)?;
        let facts = trust::cert_facts(&der)?;
        if !facts.is_ca {
            bail!("{} is not a CA certificate (basicConstraints CA:TRUE missing)", facts.subject);
        }
        if facts.not_after < self.now {
            bail!("the CA certificate {} expired at {} (UTC)", facts.subject, utc(facts.not_after));
        }
        let mut warnings = Vec::new();
        if facts.not_before > self.now {
            warnings.push(format!("the CA certificate is not valid before {} (UTC); nothing validates under it until then", utc(facts.not_before)));
        }
        if crate::cards::card_kind(kind).is_some() && looks_signing_only(&facts) {
            warnings.push(format!(
                "{} looks like a CA for *signing* (nonRepudiation) certificates; card login needs the CA of the \
                 authentication certificates",
                facts.subject
            ));
        }
        let policies = policies.map(parse_policies).transpose()?;
        let mut crl_next_update = None;
        let crl_der = match crl_bytes.map(parse_crl).transpose()? {
            None => None,
            Some(crl) => {
                match trust::check_crl(&crl, &der, self.now) {
                    Ok(info) => crl_next_update = info.next_update,
                    Err(trust::CrlError::Stale { next_update }) => {
                        crl_next_update = Some(next_update);
                        warnings.push(format!(
                            "the CRL's nextUpdate {} (UTC) has passed: certificates under this anchor are refused until a \
                             current CRL is set (anchor set-crl)",
                            utc(next_update)
                        ));
                    }
                    Err(e) => bail!("{e}"),
                }
                Some(crl)
            }
        };
        if revocation == RevocationPolicy::Crl && crl_der.is_none() {
            bail!("revocation policy crl needs --crl FILE (or choose --revocation none)");
        }
        let anchor = TrustAnchor {
            kind,
            fingerprint: fingerprint(&der),
            subject: facts.subject,
            cert_der: der.clone(),
            revocation,
            crl_der,
            updated_at: self.now,
            crl_url: None,
            crl_next_update,
            policies: policies.clone(),
            sub_crls: Vec::new(),
        };
        conflict_or(self.store.add_anchor(&anchor, self.now).await, || {
            format!("{} anchor {} already exists", kind.as_str(), anchor.fingerprint)
        })?;
        self.audit("anchor.add", format!("{}/{}", kind.as_str(), anchor.fingerprint)).await?;
        if policies.as_deref() == Some("any") {
            self.audit("anchor.policy_any", format!("{}/{}", kind.as_str(), anchor.fingerprint)).await?;
        }
        Ok((anchor, warnings))
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
        policies: Option<&str>,
    ) -> anyhow::Result<(TrustAnchor, Vec<String>)> {
        if crate::cards::card_kind(kind).is_none() {
            bail!("--crl-url is for hpki and jpki anchors (TLS anchors take their CRL with --crl / set-crl)");
        }
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--crl-url must be an http:// or https:// URL");
        }
        // Added with policy none first only to pass the "crl needs a CRL" rule; the URL and
        // policy crl follow at once — and an anchor with policy crl but no CRL refuses the cards
        // under it anyway.
        let policy = if crl_bytes.is_some() { RevocationPolicy::Crl } else { RevocationPolicy::None };
        let (mut anchor, warnings) = self.anchor_add(kind, cert_bytes, crl_bytes, policy, policies).await?;
        self.store.set_anchor_crl_url(kind, &anchor.fingerprint, Some(url.as_str()), self.now).await?;
        if crl_bytes.is_none() {
            self.store.set_anchor_revocation(kind, &anchor.fingerprint, RevocationPolicy::Crl, self.now).await?;
        }
        anchor.crl_url = Some(url.to_string());
        anchor.revocation = RevocationPolicy::Crl;
        self.audit("anchor.crl_url", format!("{}/{}", kind.as_str(), anchor.fingerprint)).await?;
        Ok((anchor, warnings))
    }

    async fn anchor(&self, kind: AnchorKind, fp: &str) -> anyhow::Result<TrustAnchor> {
        self.store
            .list_anchors(Some(kind))
            .await?
            .into_iter()
            .find(|a| a.fingerprint == fp)
            .with_context(|| format!("no {} anchor {fp}", kind.as_str()))
    }

    /// `anchor set-crl`: replaces the anchor's own CRL, or with `issuer` (a CA certificate under
    /// the anchor) that CA's CRL. The CRL must be issued and signed by that CA, current, and not
    /// older than the one in force; anything else changes nothing.
    pub async fn anchor_set_crl(&self, kind: AnchorKind, fp: &str, crl_bytes: &[u8], issuer: Option<&[u8]>) -> anyhow::Result<()> {
        let fp = normalise_fingerprint(fp)?;
        let crl = parse_crl(crl_bytes)?;
        let anchor = self.anchor(kind, &fp).await?;
        let issuer_der = issuer.map(parse_certificate).transpose()?.filter(|d| *d != anchor.cert_der);
        let Some(issuer_der) = issuer_der else {
            let info = trust::check_crl(&crl, &anchor.cert_der, self.now).map_err(|e| match e {
                trust::CrlError::WrongIssuer { found, .. } => anyhow::anyhow!(
                    "the CRL was issued by {found}, not by the anchor {}; for a CA below the anchor give its certificate \
                     with --issuer",
                    anchor.subject
                ),
                e => anyhow::anyhow!("{e}"),
            })?;
            if let Some(current) = anchor.crl_der.as_deref().and_then(|c| trust::inspect_crl(c).ok()) {
                trust::is_newer(&info, &current)?;
            }
            let next_update = info.next_update.context("the CRL has no nextUpdate")?;
            self.store.set_anchor_crl(kind, &fp, &crl, next_update, self.now).await?;
            return self.audit("anchor.set_crl", format!("{}/{fp}", kind.as_str())).await;
        };
        // A CA below the anchor: it must itself chain to this anchor.
        let ca = trust::cert_facts(&issuer_der)?;
        if !ca.is_ca {
            bail!("--issuer {} is not a CA certificate", ca.subject);
        }
        let only_this = trust::TrustStore::new(vec![trust::AnchorSpec {
            certificate: anchor.cert_der.clone(),
            revocation: trust::Revocation::None,
            policies: trust::Policies::Any,
        }]);
        let checks = trust::Checks { time: true, revocation: false, policies: false, end_entity: false };
        only_this
            .validate_with(&issuer_der, &[], self.now, trust::Purpose::CardAuth, checks)
            .map_err(|e| anyhow::anyhow!("--issuer {} does not chain to the anchor {}: {e}", ca.subject, anchor.subject))?;
        let info = trust::check_crl(&crl, &issuer_der, self.now)?;
        let issuer_sha256 = trust::sha256_hex(&info.issuer_der);
        if let Some(current) = anchor.sub_crls.iter().find(|c| c.issuer_sha256 == issuer_sha256) {
            trust::is_newer(&info, &trust::inspect_crl(&current.crl_der)?)?;
        }
        let sub = store::SubCrl {
            issuer_sha256,
            issuer_subject: info.issuer.clone(),
            issuer_cert_der: issuer_der,
            crl_der: crl,
            this_update: info.this_update,
            next_update: info.next_update.context("the CRL has no nextUpdate")?,
        };
        if !self.store.put_sub_crl(kind, &fp, &sub, self.now).await? {
            bail!("a newer CRL of {} was stored meanwhile; nothing changed", info.issuer);
        }
        self.audit("anchor.set_crl", format!("{}/{fp}/{}", kind.as_str(), sub.issuer_sha256)).await
    }

    /// `anchor set-policy`: the end-entity policies accepted under an anchor (`any`, OIDs and arcs,
    /// or `default`).
    pub async fn anchor_set_policy(&self, kind: AnchorKind, fp: &str, policies: &str) -> anyhow::Result<Option<String>> {
        let fp = normalise_fingerprint(fp)?;
        let policies = if policies == "default" { None } else { Some(parse_policies(policies)?) };
        match self.store.set_anchor_policies(kind, &fp, policies.as_deref(), self.now).await {
            Err(store::Error::NotFound) => bail!("no {} anchor {fp}", kind.as_str()),
            r => r?,
        }
        self.audit("anchor.set_policy", format!("{}/{fp}/{}", kind.as_str(), policies.as_deref().unwrap_or("default"))).await?;
        Ok(policies)
    }

    /// `anchor remove`: refused while certificates or cards registered under the anchor remain,
    /// unless `force`.
    pub async fn anchor_remove(&self, kind: AnchorKind, fp: &str, force: bool) -> anyhow::Result<store::Dependents> {
        let fp = normalise_fingerprint(fp)?;
        self.anchor(kind, &fp).await?;
        let dependents = self.store.anchor_dependents(kind, &fp).await?;
        if !dependents.is_empty() && !force {
            bail!(
                "{} clinic certificate(s), {} service client(s) and {} linked card(s) may depend on this anchor \
                 (rows registered before it was recorded count too); they would stop working. Use --force to remove it anyway",
                dependents.clinic_certs,
                dependents.service_clients,
                dependents.cards
            );
        }
        match self.store.remove_anchor(kind, &fp).await {
            Err(store::Error::NotFound) => bail!("no {} anchor {fp}", kind.as_str()),
            r => r?,
        }
        let action = if dependents.is_empty() { "anchor.remove" } else { "anchor.remove_forced" };
        self.audit(action, format!("{}/{fp}", kind.as_str())).await?;
        Ok(dependents)
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
    ) -> anyhow::Result<(String, bool)> {
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
        let cert_fp = fingerprint(&der);
        for a in self.store.list_anchors(None).await?.iter().filter(|a| a.fingerprint == cert_fp) {
            writeln!(out, "note: this certificate is itself a registered {} trust anchor ({})", a.kind.as_str(), a.subject)?;
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
        Ok((out, report.accepted()))
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

/// Normalises a typed policy list (`any`, or OIDs and arcs) to its stored form.
fn parse_policies(text: &str) -> anyhow::Result<String> {
    Ok(trust::Policies::parse(text).map_err(|e| anyhow::anyhow!("--policy: {e}"))?.to_string())
}

/// A CA for signing certificates: its own policy is under a signing arc, or its name says so.
fn looks_signing_only(facts: &trust::CertFacts) -> bool {
    let name = facts.subject.to_ascii_lowercase();
    facts.policies.iter().any(|p| card::verify::is_signing_policy(p))
        || name.contains("fornonrepudiation")
        || name.contains("for digital signature")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).ok())
        .unwrap_or_else(|| unix.to_string())
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

/// A random password for generated accounts and files: 20 characters from an unambiguous alphabet.
pub fn generate_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    use rand::seq::IndexedRandom as _;
    let mut rng = rand::rng();
    Zeroizing::new((0..20).map(|_| char::from(ALPHABET.choose(&mut rng).copied().unwrap_or(b'x'))).collect())
}
