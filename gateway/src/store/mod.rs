//! Persistence: one [`Store`] over SQLite or PostgreSQL.
//!
//! Each query is written once and runs on both backends: the SQL sticks to what both dialects
//! share (`$N` parameters, `ON CONFLICT`, `RETURNING`, integer Unix times), and [`with_pool!`]
//! expands a body once per concrete pool type so each copy is type-checked against its driver.
//! See `docs/decisions/0001-one-store-two-backends.md`.
//!
//! `db` holds the plumbing (backends, errors, query macros, migrations); every other file is one
//! domain.

mod agent_releases;
mod anchors;
mod audit;
mod audit_event;
mod audit_pending;
mod authenticators;
mod batched;
mod cache;
mod cards;
mod ceremonies;
mod clinics;
mod db;
mod enrollment;
mod fido;
mod inline;
mod lockout;
mod oqs;
mod scim;
mod service_clients;
mod sessions;
mod signing;
mod tokens;
mod tx;
mod upstream;
mod users;
mod warm;

pub use agent_releases::{AgentRelease, AgentSeen, NewAgentRelease, Published, ReleaseBinary, ReleaseOffer, UpdateReport};
pub use anchors::{AnchorKind, AnchorVersion, Dependents, RevocationPolicy, SubCrl, TrustAnchor};
pub use audit::{AuditEvent, AuditHead, AuditKey, AuditRecord, AuditVerification, CHAIN_KEYED_EVENT, Outcome, RowFields, audit_link};
pub use cache::GateCacheState;
pub use cards::{CardChallenge, CardCredential, CardPurpose, NewCardChallenge, NewCardCredential};
pub use ceremonies::{CeremonyPurpose, NewCeremony, TakenCeremony};
pub use clinics::{Clinic, ClinicCert, ClinicCertBinding, NewClinicCert};
pub use db::{Error, PoolUsage, Precondition, Result, SchemaStatus, Store, sqlx_unavailable};
pub use enrollment::{CodeCheck, EnrollmentCode, IssuedCode, ListedCode};
pub use authenticators::LinkAuthorisation;
pub use fido::{FidoCredential, NewFidoCredential};
pub use lockout::{LockState, LockoutRules, LoginReservation};
pub use oqs::{AgentCall, AgentStep, Claim, Enqueued, LeasedRequest, NewOqsRequest, OqsAnswer, OqsRequest, OqsStatus, QueueDepth, RelayHolder};
pub use sessions::{LoadedSession, SessionMove, SessionSignIn};
pub use scim::{ScimFields, ScimQuery, ScimUser, ScimWrite};
pub use signing::{
    AuthMethod, AuthenticatorUse, EndReason, NewSigningSession, OpenedSession, Opening, SessionFilter, SigningSession,
    SigningSessionState, TouchOutcome,
};
pub use service_clients::{ClientAccess, EmrContext, IssueContext, OpenSession, ServiceClient, ServiceRole};
pub use tokens::{ConsumedToken, Consumption, NewConsume, NewIssuedToken, SigningKeyRow};
pub use upstream::{ClientAuthMethod, ClinicLogin, NewFlow, TakenFlow, UpstreamMatch};
pub use users::{NewUser, User, UserKind};

pub(crate) use db::batch_chunks;
use db::{Backend, corrupt, read_all, read_one, read_optional, row, with_pool, with_reader, write_execute, write_optional};
use tx::{gate_transaction, transaction, tx_execute, tx_fetch, tx_rows};

/// The database spellings of the enums stored as text. Rows written by every earlier version hold
/// these strings, so a renamed variant must not change them (strum derives them from the names).
#[cfg(test)]
mod spellings {
    use strum::VariantNames;

    use super::*;

    #[test]
    fn stored_spellings_are_fixed() {
        assert_eq!(AnchorKind::VARIANTS, ["clinic", "service", "hpki", "jpki"]);
        assert_eq!(RevocationPolicy::VARIANTS, ["crl", "none"]);
        assert_eq!(Outcome::VARIANTS, ["success", "failure"]);
        assert_eq!(CardPurpose::VARIANTS, ["signing_session", "link", "confirm"]);
        assert_eq!(CeremonyPurpose::VARIANTS, ["register", "authenticate", "link"]);
        assert_eq!(ServiceRole::VARIANTS, ["emr", "signer", "provisioner"]);
        assert_eq!(AuthMethod::VARIANTS, ["fido", "hpki", "jpki"]);
        assert_eq!(
            EndReason::VARIANTS,
            [
                "ended_by_doctor",
                "logout",
                "superseded",
                "expired",
                "authenticator_removed",
                "account_disabled",
                "operator",
                "password_changed"
            ]
        );
        assert_eq!(UserKind::VARIANTS, ["doctor", "staff"]);
        assert_eq!(OqsStatus::VARIANTS, ["queued", "delivered", "answered", "failed", "expired"]);
        assert_eq!(UpstreamMatch::VARIANTS, ["external_id", "login_id"]);
        assert_eq!(ClientAuthMethod::VARIANTS, ["client_secret_basic", "client_secret_post"]);
    }

    #[test]
    fn spellings_round_trip_and_nothing_else_parses() {
        fn check<E: Copy + PartialEq + std::fmt::Debug + Into<&'static str> + std::str::FromStr>(all: &[E]) {
            for &v in all {
                let s: &'static str = v.into();
                assert_eq!(s.parse::<E>().ok(), Some(v), "{s}");
                assert!(s.to_uppercase().parse::<E>().is_err(), "{s} parses in upper case");
                assert!(format!(" {s}").parse::<E>().is_err());
            }
        }
        check(&[AnchorKind::Clinic, AnchorKind::Service, AnchorKind::Hpki, AnchorKind::Jpki]);
        check(&[RevocationPolicy::Crl, RevocationPolicy::None]);
        check(&[CardPurpose::SigningSession, CardPurpose::Link, CardPurpose::Confirm]);
        check(&[CeremonyPurpose::Register, CeremonyPurpose::Authenticate, CeremonyPurpose::Link]);
        check(&[ServiceRole::Emr, ServiceRole::Signer, ServiceRole::Provisioner]);
        check(&[AuthMethod::Fido, AuthMethod::Hpki, AuthMethod::Jpki]);
        check(&[EndReason::Doctor, EndReason::Superseded, EndReason::PasswordChanged]);
        check(&[UserKind::Doctor, UserKind::Staff]);
        check(&[OqsStatus::Queued, OqsStatus::Delivered, OqsStatus::Answered, OqsStatus::Failed, OqsStatus::Expired]);
        assert!("".parse::<AnchorKind>().is_err());
    }
}
