//! The anchors of one card kind, each with its revocation policy and its allow-list of end-entity
//! certificate policies. Path validation is the `trust` crate's (OpenSSL, decision 0012): one anchor's
//! rules and problems stay with the paths that end at it.

pub use trust::{AnchorProblem, Policies, PolicyPattern, Revocation};

use crate::CardKind;

/// HPKI authentication certificates: every policy under the HPKI authentication arc (docs/cards.md).
pub const HPKI_AUTH_ARC: &str = "1.2.392.100495.1.5.1.2.*";
/// HPKI signing (nonRepudiation) certificates.
pub const HPKI_SIGN_ARC: &str = "1.2.392.100495.1.5.1.1.*";
/// JPKI user-authentication certificates (`…1.3.30` on real cards).
pub const JPKI_AUTH_ARC: &str = "1.2.392.200149.8.5.1.3.*";
/// JPKI signing certificates (production `…1.1.20`; the JPKI test environment uses `…1.0.20`).
pub const JPKI_SIGN_ARCS: [&str; 2] = ["1.2.392.200149.8.5.1.1.*", "1.2.392.200149.8.5.1.0.*"];

/// The end-entity policies a new anchor of `kind` accepts unless the operator says otherwise.
pub fn default_policies(kind: CardKind) -> Policies {
    let arc = match kind {
        CardKind::Hpki => HPKI_AUTH_ARC,
        CardKind::Jpki => JPKI_AUTH_ARC,
    };
    Policies::parse(arc).unwrap_or(Policies::Allow(Vec::new()))
}

/// Whether a policy OID marks a *signing* certificate of either card kind.
pub fn is_signing_policy(oid: &str) -> bool {
    std::iter::once(HPKI_SIGN_ARC)
        .chain(JPKI_SIGN_ARCS)
        .filter_map(|arc| arc.parse::<PolicyPattern>().ok())
        .any(|p| p.matches(oid))
}

/// One configured anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The CA certificate (DER). It need not be self-signed: an issuing CA may be the anchor.
    pub certificate: Vec<u8>,
    /// How revocation is checked under it.
    pub revocation: Revocation,
    /// End-entity policies accepted under it ([`default_policies`] unless configured).
    pub policies: Policies,
}

/// The anchors of one card kind, parsed once (build a new store when an anchor or CRL changes).
#[derive(Debug)]
pub struct TrustStore {
    kind: CardKind,
    inner: trust::TrustStore,
}

impl TrustStore {
    /// Parses the anchors for `kind`. An anchor that cannot be used is listed in
    /// [`TrustStore::problems`] and refuses only the cards under it.
    pub fn new(kind: CardKind, anchors: impl IntoIterator<Item = Anchor>) -> TrustStore {
        let specs = anchors
            .into_iter()
            .map(|a| trust::AnchorSpec { certificate: a.certificate, revocation: a.revocation, policies: a.policies })
            .collect();
        TrustStore { kind, inner: trust::TrustStore::new(specs) }
    }

    /// The card kind these anchors vouch for.
    pub fn kind(&self) -> CardKind {
        self.kind
    }

    /// Number of anchors.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// No anchors: every certificate is untrusted.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Anchors that cannot be used, and why.
    pub fn problems(&self) -> &[AnchorProblem] {
        self.inner.problems()
    }

    pub(crate) fn paths(&self) -> &trust::TrustStore {
        &self.inner
    }
}
