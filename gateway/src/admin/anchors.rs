//! `gateway admin anchor …` and `gateway admin cert check`: trust anchors for clinic and service
//! TLS and for HPKI and JPKI cards, their CRLs and policies, and what the gateway concludes about
//! one card certificate.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::{Admin, conflict_or, jst, normalise_fingerprint, spelled};
use crate::config::Config;
use crate::pki::{parse_certificate, parse_crl, read_certificate};
use crate::store::{self, AnchorKind, RevocationPolicy, TrustAnchor};
use crate::tls::fingerprint;

/// `admin anchor …`.
#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// Add a CA certificate as a trust anchor.
    Add {
        /// What the anchor vouches for.
        #[arg(long, value_parser = spelled::<AnchorKind>("anchor kind"))]
        kind: AnchorKind,
        /// CA certificate (PEM or DER).
        file: PathBuf,
        /// Its CRL (PEM or DER).
        #[arg(long)]
        crl: Option<PathBuf>,
        /// Revocation checking: crl (needs --crl or --crl-url) or none (logged on every use).
        #[arg(long, value_parser = spelled::<RevocationPolicy>("revocation policy"), default_value = "crl")]
        revocation: RevocationPolicy,
        /// HPKI/JPKI anchors: fetch the CRL from this URL (every instance, cached in the database
        /// until its nextUpdate; until the first fetch, cards under this anchor are refused).
        #[arg(long)]
        crl_url: Option<url::Url>,
        /// End-entity certificate policies accepted: OIDs or arcs (`1.2.3.*`), comma-separated, or
        /// `any` (audited). Default: the HPKI / JPKI authentication arc for card anchors, any for
        /// clinic and service anchors.
        #[arg(long)]
        policy: Option<String>,
    },
    /// List trust anchors.
    List {
        /// Only this kind.
        #[arg(long, value_parser = spelled::<AnchorKind>("anchor kind"))]
        kind: Option<AnchorKind>,
    },
    /// Replace an anchor's CRL, or the CRL of a CA below it (--issuer). The CRL must be signed by
    /// that CA, current, and not older than the one in force.
    SetCrl {
        /// Anchor kind.
        #[arg(long, value_parser = spelled::<AnchorKind>("anchor kind"))]
        kind: AnchorKind,
        /// Anchor fingerprint.
        #[arg(long)]
        fingerprint: String,
        /// CRL file (PEM or DER).
        file: PathBuf,
        /// The intermediate CA certificate the CRL is for (PEM or DER); it must chain to the anchor.
        #[arg(long)]
        issuer: Option<PathBuf>,
    },
    /// Set the end-entity certificate policies accepted under an anchor.
    SetPolicy {
        /// Anchor kind.
        #[arg(long, value_parser = spelled::<AnchorKind>("anchor kind"))]
        kind: AnchorKind,
        /// Anchor fingerprint.
        #[arg(long)]
        fingerprint: String,
        /// OIDs or arcs (`1.2.3.*`), comma-separated; `any` (audited); or `default`.
        policy: String,
    },
    /// Remove an anchor (refused while certificates or cards registered under it remain).
    Remove {
        /// Anchor kind.
        #[arg(long, value_parser = spelled::<AnchorKind>("anchor kind"))]
        kind: AnchorKind,
        /// Anchor fingerprint.
        #[arg(long)]
        fingerprint: String,
        /// Remove it although certificates or cards depend on it (they stop working).
        #[arg(long)]
        force: bool,
    },
}

/// `admin cert …`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Explain a card certificate: chain to the anchors of its kind, validity, key usage, HPKI
    /// role, revocation, and the account it is linked to.
    Check {
        /// Card kind.
        #[arg(long, value_parser = spelled::<AnchorKind>("anchor kind"))]
        kind: AnchorKind,
        /// The card's authentication certificate (PEM or DER).
        file: PathBuf,
        /// An intermediate CA certificate the card offers (repeatable; JPKI cards carry their CA).
        #[arg(long)]
        chain: Vec<PathBuf>,
    },
}

/// Runs an `anchor` command.
pub(super) async fn run_anchor(
    admin: &Admin<'_>,
    cmd: AnchorCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let store = admin.store;
    match cmd {
        AnchorCommand::Add { kind, file, crl, revocation, crl_url, policy } => {
            let cert = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let crl = crl.map(|p| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))).transpose()?;
            let (anchor, warnings) = match &crl_url {
                None => admin.anchor_add(kind, &cert, crl.as_deref(), revocation, policy.as_deref()).await,
                Some(url) => admin.anchor_add_with_crl_url(kind, &cert, crl.as_deref(), url, policy.as_deref()).await,
            }
            .with_context(|| file.display().to_string())?;
            writeln!(out, "added {} anchor {}: {}", kind.as_str(), anchor.fingerprint, anchor.subject)?;
            for w in warnings {
                writeln!(err, "warning: {w}")?;
            }
            if matches!(kind, AnchorKind::Clinic | AnchorKind::Service) {
                writeln!(out, "running instances apply it within tls.trust_refresh_secs")?;
            }
        }
        AnchorCommand::List { kind } => {
            let now = admin.now;
            for a in store.list_anchors(kind).await? {
                let policies = crate::card_trust::anchor_policies(&a);
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\tpolicies {policies}\t{}",
                    a.kind.as_str(),
                    a.fingerprint,
                    a.revocation.as_str(),
                    crl_state(a.crl_der.is_some(), a.crl_next_update, now, a.revocation == RevocationPolicy::Crl),
                    a.subject
                )?;
                for sub in &a.sub_crls {
                    writeln!(out, "\t  CRL of {}: {}", sub.issuer_subject, crl_state(true, Some(sub.next_update), now, true))?;
                }
            }
        }
        AnchorCommand::SetCrl { kind, fingerprint, file, issuer } => {
            let crl = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let issuer = issuer.map(|p| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))).transpose()?;
            admin.anchor_set_crl(kind, &fingerprint, &crl, issuer.as_deref()).await.with_context(|| file.display().to_string())?;
            writeln!(out, "CRL of {} anchor {fingerprint} replaced", kind.as_str())?;
        }
        AnchorCommand::SetPolicy { kind, fingerprint, policy } => {
            let set = admin.anchor_set_policy(kind, &fingerprint, &policy).await?;
            writeln!(out, "policies of {} anchor {fingerprint}: {}", kind.as_str(), set.as_deref().unwrap_or("default"))?;
        }
        AnchorCommand::Remove { kind, fingerprint, force } => {
            let dependents = admin.anchor_remove(kind, &fingerprint, force).await?;
            writeln!(out, "removed {} anchor {fingerprint}", kind.as_str())?;
            if !dependents.is_empty() {
                writeln!(err, "warning: removed with --force; certificates and cards under it are refused from now on")?;
            }
        }
    }
    Ok(())
}

/// Runs `cert check`.
pub(super) async fn run_cert(admin: &Admin<'_>, config: &Config, cmd: CertCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let CertCommand::Check { kind, file, chain } = cmd;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let cert = read(&file)?;
    let chain = chain.iter().map(read).collect::<anyhow::Result<Vec<_>>>()?;
    let (report, accepted) = admin.cert_check(kind, &cert, &chain, &config.card.policy()).await?;
    out.write_all(report.as_bytes())?;
    if !accepted {
        bail!("{} is refused", file.display());
    }
    Ok(())
}

impl Admin<'_> {
    /// The anchor of `kind` (clinic or service) that a client certificate validates under now, as
    /// the TLS handshake would; refuses a certificate that could never connect, saying why.
    pub async fn client_cert_anchor(&self, der: &[u8], intermediates: &[Vec<u8>], kind: AnchorKind) -> anyhow::Result<String> {
        let facts = trust::cert_facts(der)?;
        if facts.is_ca {
            bail!("{} is a CA certificate, not a device or client certificate", facts.subject);
        }
        if facts.not_after < self.now {
            bail!("the certificate expired at {}", jst(facts.not_after));
        }
        if facts.not_before > self.now {
            bail!("the certificate is not valid before {}", jst(facts.not_before));
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
            bail!("the CA certificate {} expired at {}", facts.subject, jst(facts.not_after));
        }
        let mut warnings = Vec::new();
        if facts.not_before > self.now {
            warnings.push(format!("the CA certificate is not valid before {}; nothing validates under it until then", jst(facts.not_before)));
        }
        if crate::card_trust::card_kind(kind).is_some() && looks_signing_only(&facts) {
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
                            "the CRL's nextUpdate {} has passed: certificates under this anchor are refused until a \
                             current CRL is set (anchor set-crl)",
                            jst(next_update)
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
        if crate::card_trust::card_kind(kind).is_none() {
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
        let Some(card_kind) = crate::card_trust::card_kind(kind) else {
            bail!("cert check is for card certificates: --kind hpki or --kind jpki");
        };
        let der = read_certificate(cert_bytes)?;
        let chain = chain_bytes.iter().map(|c| read_certificate(c)).collect::<anyhow::Result<Vec<_>>>()?;
        let trust = crate::card_trust::load_trust_store(self.store, card_kind).await?;
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

/// How an anchor's CRL stands at `now`, for `anchor list`.
fn crl_state(present: bool, next_update: Option<i64>, now: i64, required: bool) -> String {
    match (present, next_update) {
        (false, _) if required => "NO CRL (certificates under it are refused)".to_owned(),
        (false, _) => "no crl".to_owned(),
        (true, None) => "crl present".to_owned(),
        (true, Some(next)) if next <= now => format!("CRL STALE since {} (certificates under it are refused)", jst(next)),
        (true, Some(next)) => format!("crl until {} ({} h left)", jst(next), (next - now) / 3600),
    }
}
