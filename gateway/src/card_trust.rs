//! Card verification support outside the request cycle: the per-kind trust-store cache used by
//! `/auth/card/finish` and `gateway admin cert check`, and the background task that fetches CRLs
//! from the URLs configured on anchors (`gateway admin anchor add --crl-url`).
//!
//! It also turns anchor rows into what the `trust` crate validates against ([`anchor_spec`]), for
//! cards and for the TLS gate alike.
//!
//! The cache keeps one parsed [`TrustStore`] per card kind together with a cheap summary of the
//! anchor rows it was built from (fingerprint, `updated_at`, CRL lengths). Each login reads that
//! summary — one small query, no certificate parsing — and rebuilds only when it changed, so an
//! anchor added or a CRL replaced on any instance takes effect on the next login everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use card::CardKind;
use card::verify::{Anchor, TrustStore};
use trust::{AnchorSpec, Policies, Revocation};

use crate::store::{self, AnchorKind, RevocationPolicy, Store, TrustAnchor};

/// Why no trust store could be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// Reading the anchors failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

type Version = Vec<store::AnchorVersion>;

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

/// The anchor kind of a card kind.
pub fn anchor_kind(kind: CardKind) -> AnchorKind {
    match kind {
        CardKind::Hpki => AnchorKind::Hpki,
        CardKind::Jpki => AnchorKind::Jpki,
    }
}

/// The end-entity policies an anchor row stands for: its own list, or the kind's default (the
/// authentication arc for card anchors, any for TLS client anchors). A stored list that does not
/// parse accepts nothing (fail closed) and is logged.
pub fn anchor_policies(a: &TrustAnchor) -> Policies {
    match (&a.policies, card_kind(a.kind)) {
        (Some(text), _) => Policies::parse(text).unwrap_or_else(|e| {
            tracing::error!(anchor.kind = a.kind.as_str(), anchor.fingerprint = %a.fingerprint, error = %e,
                "stored anchor policies unusable; refusing every certificate under the anchor");
            Policies::Allow(Vec::new())
        }),
        (None, Some(kind)) => card::verify::default_policies(kind),
        (None, None) => Policies::Any,
    }
}

/// What path validation needs of an anchor row: its certificate, its revocation policy with its own
/// CRL and the CRLs of CAs below it, and its policies. Policy `crl` without any CRL yet (e.g. a URL
/// not fetched yet) refuses the certificates under this anchor only.
pub fn anchor_spec(a: &TrustAnchor) -> AnchorSpec {
    let revocation = match a.revocation {
        RevocationPolicy::None => Revocation::None,
        RevocationPolicy::Crl => {
            Revocation::Crl(a.crl_der.iter().cloned().chain(a.sub_crls.iter().map(|c| c.crl_der.clone())).collect())
        }
    };
    AnchorSpec { certificate: a.cert_der.clone(), revocation, policies: anchor_policies(a) }
}

/// Builds the trust store of `kind` from the database (no cache).
pub async fn load_trust_store(store: &Store, kind: CardKind) -> Result<TrustStore, TrustError> {
    let anchors = store.list_anchors(Some(anchor_kind(kind))).await?;
    let built = TrustStore::new(
        kind,
        anchors.iter().map(anchor_spec).map(|s| Anchor { certificate: s.certificate, revocation: s.revocation, policies: s.policies }),
    );
    for p in built.problems() {
        tracing::error!(anchor.kind = kind.as_str(), anchor.fingerprint = %p.anchor_sha256, reason = %p.reason,
            "card trust anchor unusable; refusing the cards under it");
    }
    Ok(built)
}

impl TrustCache {
    /// The current trust store of `kind`.
    pub async fn get(&self, store: &Store, kind: CardKind) -> Result<Arc<TrustStore>, TrustError> {
        let anchor_kind = anchor_kind(kind);
        let version = store.anchor_versions(&[anchor_kind]).await?;
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
        match fetch_crl(http, &url, anchor, now).await {
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

async fn fetch_crl(http: &reqwest::Client, url: &str, anchor: &TrustAnchor, now: i64) -> anyhow::Result<(Vec<u8>, i64)> {
    let res = http.get(url).send().await?.error_for_status()?;
    if res.content_length().is_some_and(|n| n > MAX_CRL_BYTES as u64) {
        anyhow::bail!("CRL larger than {MAX_CRL_BYTES} bytes");
    }
    let body = res.bytes().await?;
    if body.len() > MAX_CRL_BYTES {
        anyhow::bail!("CRL larger than {MAX_CRL_BYTES} bytes");
    }
    let der = crate::pki::parse_crl(&body)?;
    // Only the anchor's own, current, correctly signed CRL may replace the one in force, and never
    // an older one.
    let info = trust::check_crl(&der, &anchor.cert_der, now)?;
    if let Some(current) = anchor.crl_der.as_deref().and_then(|c| trust::inspect_crl(c).ok()) {
        trust::is_newer(&info, &current)?;
    }
    let next_update = info.next_update.ok_or(trust::CrlError::NoNextUpdate)?;
    Ok((der, next_update))
}
