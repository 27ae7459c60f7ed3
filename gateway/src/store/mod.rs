//! Persistence: one [`Store`] over SQLite or PostgreSQL.
//!
//! Each query is written once and runs on both backends: the SQL sticks to what both dialects
//! share (`$N` parameters, `ON CONFLICT`, `RETURNING`, integer Unix times), and [`with_pool!`]
//! expands a body once per concrete pool type so each copy is type-checked against its driver.
//! See `docs/decisions/0001-one-store-two-backends.md`.
//!
//! `db` holds the plumbing (backends, errors, query macros, migrations); every other file is one
//! domain.

mod anchors;
mod audit;
mod audit_event;
mod authenticators;
mod cards;
mod ceremonies;
mod clinics;
mod db;
mod enrollment;
mod fido;
mod inline;
mod lockout;
mod service_clients;
mod sessions;
mod signing;
mod tokens;
mod tx;
mod users;

pub use anchors::{AnchorKind, AnchorVersion, Dependents, RevocationPolicy, SubCrl, TrustAnchor};
pub use audit::{AuditEvent, AuditHead, AuditKey, AuditRecord, AuditVerification, CHAIN_KEYED_EVENT, Outcome, RowFields, audit_link};
pub use cards::{CardChallenge, CardCredential, CardPurpose, NewCardChallenge, NewCardCredential};
pub use ceremonies::{CeremonyPurpose, NewCeremony, TakenCeremony};
pub use clinics::{Clinic, ClinicCert, ClinicCertBinding, NewClinicCert};
pub use db::{Error, Precondition, Result, Store, sqlx_unavailable};
pub use enrollment::{CodeCheck, EnrollmentCode, IssuedCode};
pub use authenticators::LinkAuthorisation;
pub use fido::{FidoCredential, NewFidoCredential};
pub use lockout::{LockoutRules, LoginReservation};
pub use sessions::{LoadedSession, SessionMove, SessionSignIn};
pub use signing::{
    AuthMethod, AuthenticatorUse, EndReason, NewSigningSession, OpenedSession, Opening, SessionFilter, SigningSession,
    SigningSessionState, TouchOutcome,
};
pub use service_clients::{ClientAccess, EmrContext, IssueContext, OpenSession, ServiceClient, ServiceRole};
pub use tokens::{ConsumedToken, Consumption, NewConsume, NewIssuedToken, SigningKeyRow};
pub use users::{NewUser, User, UserKind};

pub(crate) use db::batch_chunks;
use db::{Backend, corrupt, read_all, read_one, read_optional, row, with_pool, with_reader, write_execute, write_optional};
use tx::{transaction, tx_execute, tx_fetch, tx_rows};
