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
