//! Trust anchors (decision 0003, 0012): the CA certificates every instance trusts, each with its
//! revocation policy, its own CRL (set by an operator or fetched from a URL), the CRLs of CAs below
//! it, and its end-entity policy allow-list; plus which registered certificates and cards depend on
//! an anchor.


use super::cache::AnchorVersions;
use super::{Backend, Error, Result, Store, corrupt, gate_transaction, read_all, row, tx_execute, with_pool, with_reader};

/// What was registered under an anchor (rows from before migration 0007 whose anchor is unknown
/// are counted as possibly depending on every anchor of their kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dependents {
    /// Clinic device certificates (not revoked).
    pub clinic_certs: i64,
    /// Service clients (enabled).
    pub service_clients: i64,
    /// Linked cards.
    pub cards: i64,
}

impl Dependents {
    /// Nothing depends on the anchor.
    pub fn is_empty(&self) -> bool {
        self.clinic_certs == 0 && self.service_clients == 0 && self.cards == 0
    }
}

/// The version summary of one anchor: `(fingerprint, updated_at, CRL length, sub-CRL stamp)`. Every
/// write to an anchor or its sub-CRLs moves `updated_at` forward by at least one, even within the
/// same second, so a change is never mistaken for the version already built.
pub type AnchorVersion = (String, i64, Option<i64>, i64);

row! {
    /// A `trust_anchors` row as [`Store::list_anchors`] selects it.
    struct AnchorRow {
        kind: String,
        fingerprint: String,
        subject: String,
        cert_der: Vec<u8>,
        revocation: String,
        crl_der: Option<Vec<u8>>,
        updated_at: i64,
        crl_url: Option<String>,
        crl_next_update: Option<i64>,
        policies: Option<String>,
    }
}

row! {
    /// An `anchor_crls` row.
    struct SubRow {
        kind: String,
        anchor_fingerprint: String,
        issuer_sha256: String,
        issuer_subject: String,
        issuer_cert_der: Vec<u8>,
        crl_der: Vec<u8>,
        this_update: i64,
        next_update: i64,
    }
}

row! {
    /// An anchor whose CRL is due for a fetch.
    struct DueRow {
        kind: String,
        fingerprint: String,
        crl_url: String,
    }
}

impl Store {
    /// Adds a trust anchor.
    pub async fn add_anchor(&self, anchor: &TrustAnchor, now: i64) -> Result<()> {
        gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "INSERT INTO trust_anchors (kind, fingerprint, subject, cert_der, revocation, crl_der, crl_next_update, policies,
                                            created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                anchor.kind.as_str(),
                &anchor.fingerprint,
                &anchor.subject,
                &anchor.cert_der,
                anchor.revocation.as_str(),
                &anchor.crl_der,
                anchor.crl_next_update,
                &anchor.policies,
                now,
            )
        })?;
        Ok(())
    }

    /// Replaces the anchor's own CRL (checked by the caller) and sets policy `crl`.
    pub async fn set_anchor_crl(&self, kind: AnchorKind, fingerprint: &str, crl_der: &[u8], next_update: i64, now: i64) -> Result<()> {
        let done = self.put_anchor_crl(kind, fingerprint, crl_der, next_update, now, false).await?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Sets the anchor's own CRL and policy `crl`; with `only_newer`, only over a CRL with an
    /// earlier nextUpdate (or none). The rows changed.
    async fn put_anchor_crl(&self, kind: AnchorKind, fingerprint: &str, crl_der: &[u8], next_update: i64, now: i64, only_newer: bool) -> Result<u64> {
        gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "UPDATE trust_anchors SET crl_der = $3, crl_next_update = $4, revocation = 'crl',
                     updated_at = CASE WHEN $5 > updated_at THEN $5 ELSE updated_at + 1 END
                 WHERE kind = $1 AND fingerprint = $2 AND (NOT $6 OR crl_next_update IS NULL OR crl_next_update < $4)",
                kind.as_str(),
                fingerprint,
                crl_der,
                next_update,
                now,
                only_newer,
            )
        })
    }

    /// Stores or replaces the CRL of a CA below an anchor. A CRL older than the stored one (by
    /// thisUpdate) changes nothing and returns `false`: no rollback, even from a racing instance.
    pub async fn put_sub_crl(&self, kind: AnchorKind, anchor: &str, crl: &SubCrl, now: i64) -> Result<bool> {
        let done = gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "INSERT INTO anchor_crls (kind, anchor_fingerprint, issuer_sha256, issuer_subject, issuer_cert_der, crl_der,
                                          this_update, next_update, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                 ON CONFLICT (kind, anchor_fingerprint, issuer_sha256) DO UPDATE SET
                     issuer_subject = excluded.issuer_subject, issuer_cert_der = excluded.issuer_cert_der,
                     crl_der = excluded.crl_der, this_update = excluded.this_update, next_update = excluded.next_update,
                     updated_at = CASE WHEN excluded.updated_at > anchor_crls.updated_at THEN excluded.updated_at
                                       ELSE anchor_crls.updated_at + 1 END
                 WHERE anchor_crls.this_update <= excluded.this_update",
                kind.as_str(),
                anchor,
                &crl.issuer_sha256,
                &crl.issuer_subject,
                &crl.issuer_cert_der,
                &crl.crl_der,
                crl.this_update,
                crl.next_update,
                now,
            )
        })?;
        Ok(done == 1)
    }

    /// Sets an anchor's end-entity policies (`None`: the kind's default).
    pub async fn set_anchor_policies(&self, kind: AnchorKind, fingerprint: &str, policies: Option<&str>, now: i64) -> Result<()> {
        let done = gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "UPDATE trust_anchors SET policies = $3, updated_at = CASE WHEN $4 > updated_at THEN $4 ELSE updated_at + 1 END WHERE kind = $1 AND fingerprint = $2",
                kind.as_str(),
                fingerprint,
                policies,
                now,
            )
        })?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Removes an anchor and its sub-CRLs.
    pub async fn remove_anchor(&self, kind: AnchorKind, fingerprint: &str) -> Result<()> {
        let done = gate_transaction!(self, |tx| {
            tx_execute!(tx, "DELETE FROM anchor_crls WHERE kind = $1 AND anchor_fingerprint = $2", kind.as_str(), fingerprint)?;
            let done = tx_execute!(tx, "DELETE FROM trust_anchors WHERE kind = $1 AND fingerprint = $2", kind.as_str(), fingerprint)?;
            Ok(done)
        })?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// What depends on an anchor (see [`Dependents`]).
    pub async fn anchor_dependents(&self, kind: AnchorKind, fingerprint: &str) -> Result<Dependents> {
        let count = |sql: &'static str| async move {
            let (n,): (i64,) = with_reader!(self, |pool| sqlx::query_as(sql).bind(fingerprint).fetch_one(pool).await)?;
            Ok::<i64, Error>(n)
        };
        Ok(match kind {
            AnchorKind::Clinic => Dependents {
                clinic_certs: count(
                    "SELECT COUNT(*) FROM clinic_certs WHERE revoked_at IS NULL AND (anchor_fingerprint = $1 OR anchor_fingerprint IS NULL)",
                )
                .await?,
                ..Dependents::default()
            },
            AnchorKind::Service => Dependents {
                service_clients: count(
                    "SELECT COUNT(*) FROM service_clients WHERE enabled AND (anchor_fingerprint = $1 OR anchor_fingerprint IS NULL)",
                )
                .await?,
                ..Dependents::default()
            },
            AnchorKind::Hpki | AnchorKind::Jpki => {
                let (n,): (i64,) = with_reader!(self, |pool| {
                    sqlx::query_as(
                        "SELECT COUNT(*) FROM card_credentials WHERE kind = $2 AND (anchor_fingerprint = $1 OR anchor_fingerprint IS NULL)",
                    )
                    .bind(fingerprint)
                    .bind(kind.as_str())
                    .fetch_one(pool)
                    .await
                })?;
                Dependents { cards: n, ..Dependents::default() }
            }
        })
    }

    /// Records the anchor a clinic certificate, service client or linked card was accepted under.
    pub async fn record_anchor_of(&self, kind: AnchorKind, key: &str, anchor: &str) -> Result<()> {
        let sql = match kind {
            AnchorKind::Clinic => "UPDATE clinic_certs SET anchor_fingerprint = $2 WHERE fingerprint = $1",
            AnchorKind::Service => "UPDATE service_clients SET anchor_fingerprint = $2 WHERE fingerprint = $1",
            AnchorKind::Hpki | AnchorKind::Jpki => "UPDATE card_credentials SET anchor_fingerprint = $2 WHERE id = $1",
        };
        // A clinic certificate's or service client's row: the gate cache does not hold the
        // anchor, but every write of those tables invalidates it (docs/decisions/0020-cached-gate-lookups.md).
        if matches!(kind, AnchorKind::Clinic | AnchorKind::Service) {
            gate_transaction!(self, |tx| tx_execute!(tx, sql, key, anchor))?;
        } else {
            with_pool!(self, |pool| sqlx::query(sql).bind(key).bind(anchor).execute(pool).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Trust anchors, optionally of one kind, with their sub-CRLs.
    pub async fn list_anchors(&self, kind: Option<AnchorKind>) -> Result<Vec<TrustAnchor>> {
        let rows: Vec<AnchorRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, fingerprint, subject, cert_der, revocation, crl_der, updated_at, crl_url, crl_next_update, policies
                 FROM trust_anchors WHERE ($1 IS NULL OR kind = $1) ORDER BY kind, created_at",
            )
            .bind(kind.map(AnchorKind::as_str))
            .fetch_all(pool)
            .await
        })?;
        let subs: Vec<SubRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, anchor_fingerprint, issuer_sha256, issuer_subject, issuer_cert_der, crl_der, this_update, next_update
                 FROM anchor_crls WHERE ($1 IS NULL OR kind = $1) ORDER BY issuer_sha256",
            )
            .bind(kind.map(AnchorKind::as_str))
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(|r| {
                let sub_crls = subs
                    .iter()
                    .filter(|s| s.kind == r.kind && s.anchor_fingerprint == r.fingerprint)
                    .map(|s| SubCrl {
                        issuer_sha256: s.issuer_sha256.clone(),
                        issuer_subject: s.issuer_subject.clone(),
                        issuer_cert_der: s.issuer_cert_der.clone(),
                        crl_der: s.crl_der.clone(),
                        this_update: s.this_update,
                        next_update: s.next_update,
                    })
                    .collect();
                Ok(TrustAnchor {
                    kind: r.kind.parse().map_err(|_| corrupt("trust_anchors.kind"))?,
                    revocation: r.revocation.parse().map_err(|_| corrupt("trust_anchors.revocation"))?,
                    fingerprint: r.fingerprint,
                    subject: r.subject,
                    cert_der: r.cert_der,
                    crl_der: r.crl_der,
                    updated_at: r.updated_at,
                    crl_url: r.crl_url,
                    crl_next_update: r.crl_next_update,
                    policies: r.policies,
                    sub_crls,
                })
            })
            .collect()
    }

    /// A cheap summary of the anchors of `kinds` that changes whenever an anchor is added, changed
    /// or removed, or one of its CRLs replaced; the trust caches compare it instead of re-reading and
    /// re-parsing certificates and CRLs. It is itself held in the gate cache (every anchor write
    /// invalidates it like a clinic's, `cache`), so a card login does not read it each time.
    pub async fn anchor_versions(&self, kinds: &[AnchorKind]) -> Result<Vec<AnchorVersion>> {
        let key = kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",");
        let read = async {
            let mut out = Vec::new();
            for kind in kinds {
                out.extend(read_all!(
                    self,
                    AnchorVersion,
                    "SELECT t.fingerprint, t.updated_at, CAST(LENGTH(t.crl_der) AS BIGINT),
                            (SELECT CAST(COALESCE(SUM(c.updated_at), 0) + COUNT(*) AS BIGINT) FROM anchor_crls c
                              WHERE c.kind = t.kind AND c.anchor_fingerprint = t.fingerprint)
                     FROM trust_anchors t WHERE t.kind = $1 ORDER BY t.fingerprint",
                    kind.as_str(),
                )?);
            }
            Ok(AnchorVersions(out))
        };
        Ok(self.cached(&key, read).await?.0)
    }

    /// Sets (or clears) the URL an anchor's CRL is fetched from.
    pub async fn set_anchor_crl_url(&self, kind: AnchorKind, fingerprint: &str, url: Option<&str>, now: i64) -> Result<()> {
        let done = gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "UPDATE trust_anchors SET crl_url = $3, updated_at = CASE WHEN $4 > updated_at THEN $4 ELSE updated_at + 1 END WHERE kind = $1 AND fingerprint = $2",
                kind.as_str(),
                fingerprint,
                url,
                now,
            )
        })?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Sets an anchor's revocation policy.
    pub async fn set_anchor_revocation(&self, kind: AnchorKind, fingerprint: &str, policy: super::RevocationPolicy, now: i64) -> Result<()> {
        let done = gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "UPDATE trust_anchors SET revocation = $3, updated_at = CASE WHEN $4 > updated_at THEN $4 ELSE updated_at + 1 END WHERE kind = $1 AND fingerprint = $2",
                kind.as_str(),
                fingerprint,
                policy.as_str(),
                now,
            )
        })?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Anchors with a CRL URL whose CRL is missing or reaches its nextUpdate before `due_by`:
    /// `(kind, fingerprint, url)`.
    pub async fn anchors_due_for_crl_fetch(&self, due_by: i64) -> Result<Vec<(AnchorKind, String, String)>> {
        let rows: Vec<DueRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, fingerprint, crl_url FROM trust_anchors
                 WHERE crl_url IS NOT NULL AND (crl_der IS NULL OR crl_next_update IS NULL OR crl_next_update <= $1)
                 ORDER BY kind, fingerprint",
            )
            .bind(due_by)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(|r| Ok((r.kind.parse().map_err(|_| corrupt("trust_anchors.kind"))?, r.fingerprint, r.crl_url)))
            .collect()
    }

    /// Stores a fetched CRL with its nextUpdate. Only replaces an older CRL (by nextUpdate), so two
    /// instances fetching at once, or a fetch racing `anchor set-crl`, never go backwards.
    pub async fn store_fetched_crl(&self, kind: AnchorKind, fingerprint: &str, crl_der: &[u8], next_update: i64, now: i64) -> Result<bool> {
        Ok(self.put_anchor_crl(kind, fingerprint, crl_der, next_update, now, true).await? == 1)
    }
}

/// What a trust anchor vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum AnchorKind {
    /// Issuer of clinic TLS client certificates.
    Clinic,
    /// Issuer of EMR service-client TLS certificates.
    Service,
    /// HPKI authentication certificate issuer.
    Hpki,
    /// JPKI (My Number card) user-authentication certificate issuer.
    Jpki,
}

impl AnchorKind {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}


/// How revocation is checked for certificates under an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum RevocationPolicy {
    /// A CRL must be present (and current); certificates are checked against it.
    Crl,
    /// No revocation data exists for this issuer; every use is logged.
    None,
}

impl RevocationPolicy {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}


/// A trusted CA certificate.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// What it vouches for.
    pub kind: AnchorKind,
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint: String,
    /// Subject DN.
    pub subject: String,
    /// The certificate.
    pub cert_der: Vec<u8>,
    /// Revocation policy.
    pub revocation: RevocationPolicy,
    /// The current CRL, if any.
    pub crl_der: Option<Vec<u8>>,
    /// Unix seconds.
    pub updated_at: i64,
    /// Where the CRL is fetched from, if configured (`anchor add --crl-url`).
    pub crl_url: Option<String>,
    /// nextUpdate of `crl_der`, Unix seconds, where known.
    pub crl_next_update: Option<i64>,
    /// End-entity policies (`any`, or OIDs and arcs); `None`: the kind's default.
    pub policies: Option<String>,
    /// CRLs of CAs below the anchor.
    pub sub_crls: Vec<SubCrl>,
}

/// The CRL of an intermediate CA under an anchor.
#[derive(Debug, Clone)]
pub struct SubCrl {
    /// Lowercase hex SHA-256 of the CA's DER subject Name.
    pub issuer_sha256: String,
    /// The CA's subject.
    pub issuer_subject: String,
    /// The CA certificate the CRL was checked against.
    pub issuer_cert_der: Vec<u8>,
    /// The CRL.
    pub crl_der: Vec<u8>,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
}
