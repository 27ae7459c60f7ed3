//! Card verification support outside the request cycle: the per-kind trust-store cache used by
//! `/auth/card/finish` and `gateway admin cert check`, and the background task that fetches CRLs
//! from the URLs configured on anchors (`gateway admin anchor add --crl-url`).
//!
//! The cache keeps one parsed [`TrustStore`] per card kind together with a cheap summary of the
//! anchor rows it was built from (fingerprint, `updated_at`, CRL length). Each login reads that
//! summary — one small query, no certificate parsing — and rebuilds only when it changed, so an
//! anchor added or a CRL replaced on any instance takes effect on the next login everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use card::CardKind;
use card::verify::{Anchor, Revocation, TrustStore};

use crate::store::{self, AnchorKind, RevocationPolicy, Store};

/// Why no trust store could be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// Reading the anchors failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// An anchor or its CRL does not parse, or policy `crl` has no CRL yet (e.g. a URL-fetched
    /// CRL that has not arrived): no card of this kind is accepted until it is fixed (fail closed).
    #[error("card trust anchors unusable: {0}")]
    Anchor(#[from] card::verify::AnchorError),
}

type Version = Vec<(String, i64, Option<i64>)>;

/// Parsed trust stores per card kind, rebuilt when the anchor rows change.
#[derive(Default)]
pub struct TrustCache {
    entries: Mutex<HashMap<AnchorKind, (Version, Arc<TrustStore>)>>,
}

impl std::fmt::Debug for TrustCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrustCache")
    }
}

/// The card crate's kind for an anchor kind of cards; `None` for clinic and service anchors.
pub fn card_kind(kind: AnchorKind) -> Option<CardKind> {
    match kind {
        AnchorKind::Hpki => Some(CardKind::Hpki),
        AnchorKind::Jpki => Some(CardKind::Jpki),
        AnchorKind::Clinic | AnchorKind::Service => None,
    }
}

/// Builds the trust store of `kind` from the database (no cache).
pub async fn load_trust_store(store: &Store, kind: CardKind) -> Result<TrustStore, TrustError> {
    let anchor_kind = match kind {
        CardKind::Hpki => AnchorKind::Hpki,
        CardKind::Jpki => AnchorKind::Jpki,
    };
    let anchors = store.list_anchors(Some(anchor_kind)).await?;
    Ok(TrustStore::new(
        kind,
        anchors.into_iter().map(|a| Anchor {
            certificate: a.cert_der,
            revocation: match (a.revocation, a.crl_der) {
                (RevocationPolicy::Crl, Some(crl)) => Revocation::Crl(vec![crl]),
                // Policy crl without a CRL: TrustStore refuses it (NoCrl), failing closed.
                (RevocationPolicy::Crl, None) => Revocation::Crl(Vec::new()),
                (RevocationPolicy::None, _) => Revocation::None,
            },
        }),
    )?)
}

impl TrustCache {
    /// The current trust store of `kind`.
    pub async fn get(&self, store: &Store, kind: CardKind) -> Result<Arc<TrustStore>, TrustError> {
        let anchor_kind = match kind {
            CardKind::Hpki => AnchorKind::Hpki,
            CardKind::Jpki => AnchorKind::Jpki,
        };
        let version = store.anchor_versions(anchor_kind).await?;
        if let Some((v, ts)) = self.lock().get(&anchor_kind)
            && *v == version
        {
            return Ok(ts.clone());
        }
        // Two requests may rebuild at once after a change; both results are equal, last one wins.
        let built = Arc::new(load_trust_store(store, kind).await?);
        self.lock().insert(anchor_kind, (version, built.clone()));
        Ok(built)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AnchorKind, (Version, Arc<TrustStore>)>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts).
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Fetches the CRLs that are missing or due (`nextUpdate` within `margin_secs` of `now`) from the
/// URLs configured on anchors, checks that each parses and is issued by its anchor, and stores it
/// in the database until its nextUpdate. Returns how many were stored. A failed fetch leaves the
/// old CRL in place: once it is past nextUpdate, verification refuses every card under that
/// anchor (fail closed), and the failure is logged each round.
pub async fn refresh_crls(store: &Store, http: &reqwest::Client, now: i64, margin_secs: i64) -> Result<usize, store::Error> {
    let mut stored = 0;
    let anchors = store.list_anchors(None).await?;
    for (kind, fingerprint, url) in store.anchors_due_for_crl_fetch(now.saturating_add(margin_secs)).await? {
        let Some(anchor) = anchors.iter().find(|a| a.kind == kind && a.fingerprint == fingerprint) else { continue };
        match fetch_crl(http, &url, &anchor.cert_der).await {
            Ok((der, next_update)) => {
                if store.store_fetched_crl(kind, &fingerprint, &der, next_update, now).await? {
                    stored += 1;
                    tracing::info!(anchor.kind = kind.as_str(), anchor.fingerprint = %fingerprint, next_update, "CRL fetched");
                }
            }
            Err(e) => tracing::warn!(anchor.kind = kind.as_str(), anchor.fingerprint = %fingerprint, crl.url = %url,
                error = %e, "fetching CRL failed; keeping the stored one"),
        }
    }
    Ok(stored)
}

/// Most bytes accepted for one CRL (large national CRLs are a few MB).
const MAX_CRL_BYTES: usize = 32 * 1024 * 1024;

async fn fetch_crl(http: &reqwest::Client, url: &str, anchor_der: &[u8]) -> anyhow::Result<(Vec<u8>, i64)> {
    let res = http.get(url).send().await?.error_for_status()?;
    if res.content_length().is_some_and(|n| n > MAX_CRL_BYTES as u64) {
        anyhow::bail!("CRL larger than {MAX_CRL_BYTES} bytes");
    }
    let body = res.bytes().await?;
    if body.len() > MAX_CRL_BYTES {
        anyhow::bail!("CRL larger than {MAX_CRL_BYTES} bytes");
    }
    let der = crate::admin::parse_crl(&body)?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, anchor) = x509_parser::parse_x509_certificate(anchor_der).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Only the anchor's own CRL may replace it; its signature is checked by webpki when used.
    if crl.issuer() != anchor.subject() {
        anyhow::bail!("the CRL was issued by {}, not by {}", crl.issuer(), anchor.subject());
    }
    let next_update = crl.next_update().ok_or_else(|| anyhow::anyhow!("the CRL has no nextUpdate"))?.timestamp();
    Ok((der, next_update))
}
