//! Who calls the service API: the service client of the verified TLS certificate
//! ([`ServiceAuth`]), and for EMR calls about one doctor, that doctor ([`EmrCall`]). Every access
//! refusal is audited before it is answered (docs/design.md §3.9).

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;

use super::super::AppState;
use super::super::error::ApiError;
use super::super::refusal::ApiRefusal;
use super::ApiResult;
use crate::store::{self, AuditEvent, ServiceClient, ServiceRole};
use crate::tls::PeerCert;
use crate::tokens;

/// The calling service client, resolved from the verified TLS certificate. Clinic devices and
/// unregistered or disabled clients are refused here, before any handler runs.
#[derive(Debug, Clone)]
pub struct ServiceAuth {
    /// The client.
    pub client: ServiceClient,
    /// `x5t#S256` of the certificate it connected with.
    pub x5t_s256: String,
    /// The route called, for the audit of a refusal.
    route: String,
    /// SHA-256 fingerprint of the certificate, for the audit of a refusal.
    fingerprint: String,
}

/// An access refusal on the service API. It is audited before it is answered (docs/design.md
/// §3.9); when its row cannot be committed the caller gets 503 instead.
pub(super) struct RefusalAudit<'a> {
    route: &'a str,
    fingerprint: &'a str,
    client_id: Option<&'a str>,
    clinic_id: Option<&'a str>,
    user_id: Option<&'a str>,
    doctor_id: Option<&'a str>,
}

impl<'a> RefusalAudit<'a> {
    fn new(route: &'a str, fingerprint: &'a str) -> Self {
        Self { route, fingerprint, client_id: None, clinic_id: None, user_id: None, doctor_id: None }
    }

    /// Audits the refusal and returns it to answer with.
    async fn audit(self, state: &AppState, refusal: ApiRefusal) -> ApiError {
        match self.record(state, refusal.code()).await {
            Ok(()) => refusal.into(),
            Err(unavailable) => unavailable,
        }
    }

    pub(super) async fn record(self, state: &AppState, reason: &'static str) -> ApiResult<()> {
        let event = AuditEvent::ApiRefused {
            fingerprint: self.fingerprint.to_owned(),
            client_id: self.client_id.map(str::to_owned),
            route: self.route.to_owned(),
            clinic_id: self.clinic_id.map(str::to_owned),
            user_id: self.user_id.map(str::to_owned),
            doctor_id: self.doctor_id.map(str::to_owned),
            reason,
        };
        tracing::info!(route = self.route, reason, "service API refused the caller");
        Ok(state.audit(event).await?)
    }
}

impl ServiceAuth {
    pub(super) fn refusal(&self) -> RefusalAudit<'_> {
        RefusalAudit { client_id: Some(&self.client.id), ..RefusalAudit::new(&self.route, &self.fingerprint) }
    }

    /// The refusal of a call about `clinic_id`.
    pub(super) fn clinic_refusal<'a>(&'a self, clinic_id: &'a str) -> RefusalAudit<'a> {
        RefusalAudit { clinic_id: Some(clinic_id), ..self.refusal() }
    }

    /// Audits `refusal` of a call about `clinic_id` and returns it to answer with.
    pub(super) async fn refuse_for_clinic(&self, state: &AppState, clinic_id: &str, refusal: ApiRefusal) -> ApiError {
        self.clinic_refusal(clinic_id).audit(state, refusal).await
    }

    /// The refusal of a call about a session of `clinic_id`, for `user_id`.
    pub(super) fn session_refusal<'a>(&'a self, clinic_id: &'a str, user_id: &'a str) -> RefusalAudit<'a> {
        RefusalAudit { clinic_id: Some(clinic_id), user_id: Some(user_id), ..self.refusal() }
    }

    pub(super) async fn require(&self, state: &AppState, role: ServiceRole) -> ApiResult<()> {
        if self.client.role == role { Ok(()) } else { Err(self.refusal().audit(state, ApiRefusal::WrongRole(role)).await) }
    }

    /// SHA-256 fingerprint of the certificate it connected with.
    pub(super) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(super) fn serves(&self, clinic_id: &str) -> bool {
        self.client.clinics.iter().any(|c| c == clinic_id)
    }

    async fn resolve(state: &AppState, peer: &PeerCert, route: String) -> ApiResult<Self> {
        let refusal = RefusalAudit::new(&route, &peer.fingerprint);
        let client = match state.store.service_client_by_fingerprint(&peer.fingerprint).await {
            Ok(c) => c,
            Err(store::Error::NotFound) => return Err(refusal.audit(state, ApiRefusal::ClientNotRegistered).await),
            Err(e) => return Err(e.into()),
        };
        if !client.enabled {
            return Err(RefusalAudit { client_id: Some(&client.id), ..refusal }.audit(state, ApiRefusal::ClientDisabled).await);
        }
        tracing::Span::current().record("service_client.id", client.id.as_str());
        Ok(Self { x5t_s256: tokens::x5t_s256(&peer.der), fingerprint: peer.fingerprint.clone(), client, route })
    }
}

/// The verified client certificate of the request (the accept loop always attaches it).
pub(super) struct Peer(pub(super) PeerCert);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        parts
            .extensions
            .get::<PeerCert>()
            .cloned()
            .map(Peer)
            .ok_or_else(|| ApiError::from(anyhow::anyhow!("request without a verified client certificate")))
    }
}

impl FromRequestParts<AppState> for ServiceAuth {
    type Rejection = ApiError;

    #[tracing::instrument(name = "auth.service_client", skip_all, fields(service_client.id))]
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Peer(peer) = Peer::from_request_parts(parts, state).await?;
        let path = parts.extensions.get::<MatchedPath>().map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        let route = format!("{} {path}", parts.method);
        Self::resolve(state, &peer, route).await
    }
}

/// An EMR call about one doctor: the calling client (checked: registered, enabled, role EMR,
/// serves the clinic) and the doctor with their open signing session, found in one read.
pub(super) struct EmrCall<T> {
    pub(super) request: T,
    route: &'static str,
    fingerprint: String,
    pub(super) client_id: String,
    pub(super) x5t_s256: String,
    doctor: Option<store::IssueContext>,
}

impl<T> EmrCall<T> {
    /// Resolves the call to `route`. Errors come in the order every API route reports them:
    /// the client first, then the request's syntax, then the client's access to the clinic.
    pub(super) async fn resolve(
        state: &AppState,
        route: &'static str,
        peer: &PeerCert,
        request: ApiResult<T>,
        target: impl Fn(&T) -> (&str, &str),
    ) -> ApiResult<Self> {
        let request = match request {
            Ok(r) => r,
            Err(bad) => {
                ServiceAuth::resolve(state, peer, route.to_owned()).await?.require(state, ServiceRole::Emr).await?;
                return Err(bad);
            }
        };
        let (clinic_id, doctor_id) = target(&request);
        let refusal =
            RefusalAudit { clinic_id: Some(clinic_id), doctor_id: Some(doctor_id), ..RefusalAudit::new(route, &peer.fingerprint) };
        let Some(ctx) = state.store.emr_context(&peer.fingerprint, clinic_id, doctor_id).await? else {
            return Err(refusal.audit(state, ApiRefusal::ClientNotRegistered).await);
        };
        let client = ctx.client;
        let refusal = RefusalAudit { client_id: Some(&client.id), ..refusal };
        if !client.enabled {
            return Err(refusal.audit(state, ApiRefusal::ClientDisabled).await);
        }
        tracing::Span::current().record("service_client.id", client.id.as_str());
        if client.role != ServiceRole::Emr {
            return Err(refusal.audit(state, ApiRefusal::WrongRole(ServiceRole::Emr)).await);
        }
        if !client.serves_clinic {
            return Err(refusal.audit(state, ApiRefusal::ClinicNotAllowed(clinic_id.to_owned())).await);
        }
        Ok(Self {
            request,
            route,
            fingerprint: peer.fingerprint.clone(),
            client_id: client.id,
            x5t_s256: tokens::x5t_s256(&peer.der),
            doctor: ctx.doctor,
        })
    }

    /// The doctor: exists at the clinic, is a doctor, is enabled.
    pub(super) async fn doctor(&self, state: &AppState, clinic_id: &str, doctor_id: &str) -> ApiResult<&store::IssueContext> {
        let refusal = RefusalAudit {
            client_id: Some(&self.client_id),
            clinic_id: Some(clinic_id),
            doctor_id: Some(doctor_id),
            user_id: self.doctor.as_ref().map(|d| d.user_id.as_str()),
            ..RefusalAudit::new(self.route, &self.fingerprint)
        };
        let Some(ctx) = self.doctor.as_ref() else {
            let missing = ApiRefusal::DoctorNotInClinic { doctor_id: doctor_id.to_owned(), clinic_id: clinic_id.to_owned() };
            return Err(refusal.audit(state, missing).await);
        };
        if !ctx.is_doctor {
            return Err(refusal.audit(state, ApiRefusal::NotADoctor).await);
        }
        if !ctx.enabled {
            return Err(refusal.audit(state, ApiRefusal::DoctorDisabled).await);
        }
        Ok(ctx)
    }
}
