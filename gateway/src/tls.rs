//! The gateway's TLS gate: the shared `infra::tls` gate over the clinic and service-client
//! anchors kept in the database.

use rustls::ServerConfig;

pub use infra::tls::{CertParseError, GateVerifier, Identity, PeerCert, fingerprint, handshake_failure_reason, read_pem_certs};

use crate::clock::SharedClock;
use crate::store::{AnchorKind, TrustAnchor};

/// The TLS trust store of the clinic and service-client anchors.
pub fn gate_trust(anchors: &[TrustAnchor]) -> trust::TrustStore {
    let specs = anchors
        .iter()
        .filter(|a| matches!(a.kind, AnchorKind::Clinic | AnchorKind::Service))
        .map(crate::card_trust::anchor_spec)
        .collect();
    let store = trust::TrustStore::new(specs);
    for p in store.problems() {
        tracing::error!(anchor.fingerprint = %p.anchor_sha256, reason = %p.reason,
            "TLS trust anchor unusable; refusing the client certificates under it");
    }
    store
}

/// Builds the main listener's configuration: the server identity, client certificates required
/// and verified against the clinic and service-client anchors, each with its own revocation policy.
pub fn server_config(identity: &Identity, anchors: &[TrustAnchor], clock: SharedClock) -> anyhow::Result<ServerConfig> {
    let trust = gate_trust(anchors);
    if trust.is_empty() {
        anyhow::bail!("no clinic trust anchor is configured: gateway admin anchor add --kind clinic CA.pem");
    }
    infra::tls::server_config(identity, trust, clock)
}
