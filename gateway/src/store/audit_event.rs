//! What is audited: [`AuditEvent`], and how each event becomes a row of the chain (name, outcome,
//! clinic, user, detail JSON). The chain itself is `audit.rs`.

use serde::Serialize;

use super::audit::CHAIN_KEYED_EVENT;

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused.
    Failure,
}

impl Outcome {
    pub(super) fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Everything that is audited. Personal data is limited to ids; reasons are fixed codes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A doctor logged in.
    LoginSucceeded { clinic_id: String, user_id: String },
    /// A login was refused; `user_id` is known when the login ID exists.
    /// `device` is the fingerprint of the clinic certificate it came through, so an operator can
    /// find the device that locks accounts out.
    LoginFailed { clinic_id: String, user_id: Option<String>, reason: &'static str, device: String },
    /// A doctor signed in through the clinic's OpenID Connect provider (docs/design.md §3.17):
    /// the provider's `iss` and `sub`, and its `acr`/`amr` as it stated them (recorded, never
    /// trusted in place of the presence step).
    UpstreamLoginSucceeded {
        clinic_id: String,
        user_id: String,
        issuer: String,
        sub: String,
        acr: Option<String>,
        amr: Vec<String>,
    },
    /// An upstream sign-in was refused: `reason` is the refusal's code; `sub` once a verified ID
    /// token named one; `provider_error` the provider's `error` code of an error callback.
    UpstreamLoginFailed {
        clinic_id: String,
        user_id: Option<String>,
        reason: &'static str,
        device: String,
        issuer: Option<String>,
        sub: Option<String>,
        provider_error: Option<String>,
    },
    /// A login ID got locked by this failure, or a login was tried while locked (`device` as above).
    LoginLocked { clinic_id: String, user_id: Option<String>, locked_until: i64, device: String },
    /// A doctor logged out.
    Logout { clinic_id: String, user_id: String },
    /// A browser-session cookie was presented where it is not valid (`device_mismatch`: under
    /// another client certificate than the one it was signed in under).
    BrowserSessionRefused { clinic_id: String, user_id: Option<String>, reason: &'static str },
    /// Adding (`link`), renaming or removing an authenticator was refused (`reauth_required`:
    /// no recent card or FIDO proof in this browser session).
    AuthenticatorChangeRefused {
        clinic_id: String,
        user_id: String,
        action: &'static str,
        authenticator_id: Option<String>,
        reason: &'static str,
    },
    /// A password was changed, `by` the user (after a temporary one) or an `operator`
    /// (`temporary` says whether the user must choose a new one); `browser_sessions_ended` of the
    /// user's browser sessions were ended with it.
    PasswordChanged { clinic_id: String, user_id: String, by: &'static str, temporary: bool, browser_sessions_ended: u64 },
    /// A user's choice of a new password was refused (`weak`, `common`, `personal`, `length`,
    /// `same_as_old`, `mismatch`, `changed_meanwhile`).
    PasswordChangeFailed { clinic_id: String, user_id: String, reason: &'static str },
    /// The clinic gate refused a verified TLS client certificate.
    GateRefused { fingerprint: String, reason: &'static str },
    /// TLS handshakes failed `count` times for `reason` from `source` (an IP address, or `other`
    /// past the per-window bound) between `since` and `until`: one row per window, not per
    /// failure (`handshake_audit`).
    HandshakesFailed { reason: &'static str, source: String, count: u64, since: i64, until: i64 },
    /// The service API refused a caller with a verified certificate (`client_not_registered`,
    /// `client_disabled`, `wrong_role`, `clinic_not_allowed`, `doctor_not_in_clinic`,
    /// `not_a_doctor`, `doctor_disabled`). `user_id` is set when the doctor exists;
    /// `doctor_id` is the id the caller asked for.
    ApiRefused {
        fingerprint: String,
        client_id: Option<String>,
        route: String,
        clinic_id: Option<String>,
        user_id: Option<String>,
        doctor_id: Option<String>,
        reason: &'static str,
    },
    /// An operator changed something with `gateway admin`.
    Admin { action: &'static str, target: String },
    /// A presence check (`method`: `fido`, `hpki`, `jpki`) succeeded or failed. `purpose` is
    /// `signing_session` or `link` (authorising a new authenticator); `reason` is a fixed code.
    Authentication {
        clinic_id: String,
        user_id: String,
        method: &'static str,
        purpose: &'static str,
        authenticator_id: Option<String>,
        outcome: Outcome,
        reason: Option<&'static str>,
    },
    /// A card presence check (`method`: `hpki` or `jpki`), like [`AuditEvent::Authentication`]
    /// plus the certificate fingerprint (SHA-256 of the DER, when a certificate was presented) and
    /// whether revocation was checked (`false` under an anchor policy `none`, audited on every
    /// use, docs/design.md §3.3).
    CardAuthentication {
        clinic_id: String,
        user_id: String,
        method: &'static str,
        purpose: &'static str,
        authenticator_id: Option<String>,
        outcome: Outcome,
        reason: Option<&'static str>,
        cert_sha256: Option<String>,
        revocation_checked: Option<bool>,
    },
    /// An authenticator was linked to a doctor (`via`: `code` or `<kind>:<id>`).
    AuthenticatorLinked { clinic_id: String, user_id: String, kind: &'static str, authenticator_id: String, via: String },
    /// Linking an authenticator was refused (wrong code, policy, ...).
    AuthenticatorLinkFailed { clinic_id: String, user_id: String, kind: &'static str, reason: &'static str, code_id: Option<String> },
    /// A doctor (or operator: `by`) renamed an authenticator.
    AuthenticatorRenamed { clinic_id: String, user_id: String, kind: &'static str, authenticator_id: String },
    /// An authenticator was removed; `by` is `doctor` or `operator`.
    AuthenticatorRemoved { clinic_id: String, user_id: String, kind: &'static str, authenticator_id: String, by: &'static str },
    /// A signing session was opened.
    SigningSessionOpened { clinic_id: String, user_id: String, session_id: String, method: &'static str, acr: String },
    /// A signing session was ended (reason as in `signing_sessions.ended_reason`).
    SigningSessionEnded { clinic_id: String, user_id: String, session_id: String, reason: &'static str },
    /// An EMR service client ended a signing session through the API.
    SigningSessionEndedByClient { clinic_id: String, user_id: String, session_id: String, client_id: String },
    /// A signing token was issued.
    TokenIssued { clinic_id: String, user_id: String, session_id: String, client_id: String, jti: String },
    /// A signing token was refused (`no_session`, `session_expired`, ...).
    TokenRefused { clinic_id: String, user_id: String, client_id: String, reason: &'static str },
    /// A signing token was consumed.
    TokenConsumed { clinic_id: String, user_id: String, client_id: String, jti: String },
    /// A token consumption was refused (`invalid_token`, `token_expired`, `token_not_yet_valid`,
    /// `cnf_mismatch`, `already_consumed`, `session_ended`). Clinic, user and jti are known
    /// when the token's signature verified.
    TokenConsumeRefused {
        clinic_id: Option<String>,
        user_id: Option<String>,
        client_id: String,
        jti: Option<String>,
        reason: &'static str,
    },
    /// An EMR queued a file for the clinic's OQS terminal (docs/design.md §3.13): its name and
    /// size, never its content.
    OqsEnqueued { clinic_id: String, client_id: String, request_id: String, file_name: String, size: i64 },
    /// An EMR's file for the OQS terminal was refused at the door (`bad_file_name`, `too_large`,
    /// `not_xml`, `name_in_use`, `queue_full`, `clinic_unknown`).
    OqsRefused { clinic_id: String, client_id: String, file_name: Option<String>, reason: &'static str },
    /// A clinic agent took over (or first took) its clinic's relay.
    OqsRelayClaimed { clinic_id: String, agent_id: String, fingerprint: String, version: String, previous_agent: Option<String> },
    /// The clinic agent leased a request (`lease` counts the leases of this request).
    OqsLeased { clinic_id: String, request_id: String, agent_id: String, file_name: String, lease: i64 },
    /// The clinic agent wrote the request into the terminal's `req` folder.
    OqsDelivered { clinic_id: String, request_id: String, agent_id: String },
    /// The clinic agent uploaded the terminal's answer.
    OqsAnswered { clinic_id: String, request_id: String, agent_id: String, file_name: String, size: i64 },
    /// A request failed: reported by the agent (`name_taken`, `answer_unreadable`,
    /// `answer_too_large`) or, without `agent_id`, by the queue (`delivery_unknown`).
    OqsFailed { clinic_id: String, request_id: String, agent_id: Option<String>, reason: &'static str },
    /// A request expired unanswered (`not_taken`, `not_delivered`, `no_answer`).
    OqsExpired { clinic_id: String, client_id: String, request_id: String, file_name: String, reason: &'static str },
    /// An EMR read the answer of a request.
    OqsAnswerRead { clinic_id: String, client_id: String, request_id: String },
    /// An operator published a clinic-agent release (docs/design.md §3.14), its signature checked
    /// under the release key `key_id`.
    AgentReleasePublished { version: String, target: String, sha256: String, size: i64, key_id: String },
    /// An operator withdrew a clinic-agent release: agents are no longer offered it.
    AgentReleaseWithdrawn { version: String, target: String },
    /// A clinic agent downloaded a release's binary.
    AgentReleaseDownloaded { clinic_id: String, agent_id: String, version: String, target: String },
    /// A clinic agent reported a step of updating itself (`running`: the version it runs;
    /// `version`: the one it updates to; `detail`: its own bounded words on a failure).
    AgentUpdateReported {
        clinic_id: String,
        agent_id: String,
        running: String,
        step: &'static str,
        version: String,
        outcome: &'static str,
        detail: Option<String>,
    },
    /// A provisioner (SCIM, docs/design.md §3.16) created a user. `fingerprint` is the
    /// provisioner's certificate; never the password.
    ScimUserCreated { clinic_id: String, user_id: String, client_id: String, fingerprint: String, password_set: bool },
    /// A provisioner changed a user (PUT or PATCH): the SCIM attributes that changed, whether a
    /// password was set (never which), and the sessions the change ended.
    ScimUserChanged {
        clinic_id: String,
        user_id: String,
        client_id: String,
        fingerprint: String,
        changed: Vec<&'static str>,
        browser_sessions_ended: u64,
        signing_sessions_ended: usize,
    },
    /// A provisioner deleted a user: disabled and marked deprovisioned, its sessions ended; the
    /// row stays so the log keeps naming it.
    ScimUserDeprovisioned {
        clinic_id: String,
        user_id: String,
        client_id: String,
        fingerprint: String,
        browser_sessions_ended: u64,
        signing_sessions_ended: usize,
    },
    /// An operator started the keyed segment of a log written before keyed chaining
    /// (`gateway admin audit rekey`); the row links to the old head under the audit key.
    ChainKeyed { previous_rows: i64, previous_head: String },
}

impl AuditEvent {
    pub(super) fn parts(&self) -> (&'static str, Outcome, Option<&str>, Option<&str>, serde_json::Value) {
        use serde_json::json;
        match self {
            AuditEvent::LoginSucceeded { clinic_id, user_id } => {
                ("login", Outcome::Success, Some(clinic_id), Some(user_id), json!({}))
            }
            AuditEvent::UpstreamLoginSucceeded { clinic_id, user_id, issuer, sub, acr, amr } => (
                "login",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "method": "oidc", "issuer": issuer, "sub": sub, "acr": acr, "amr": amr }),
            ),
            AuditEvent::UpstreamLoginFailed { clinic_id, user_id, reason, device, issuer, sub, provider_error } => (
                "login",
                Outcome::Failure,
                Some(clinic_id),
                user_id.as_deref(),
                json!({ "method": "oidc", "reason": reason, "device": device, "issuer": issuer, "sub": sub, "provider_error": provider_error }),
            ),
            AuditEvent::LoginFailed { clinic_id, user_id, reason, device } => (
                "login",
                Outcome::Failure,
                Some(clinic_id),
                user_id.as_deref(),
                json!({ "reason": reason, "device": device }),
            ),
            AuditEvent::BrowserSessionRefused { clinic_id, user_id, reason } => (
                "browser_session_refused",
                Outcome::Failure,
                Some(clinic_id),
                user_id.as_deref(),
                json!({ "reason": reason }),
            ),
            AuditEvent::AuthenticatorChangeRefused { clinic_id, user_id, action, authenticator_id, reason } => (
                "authenticator_change_refused",
                Outcome::Failure,
                Some(clinic_id),
                Some(user_id),
                json!({ "action": action, "authenticator_id": authenticator_id, "reason": reason }),
            ),
            AuditEvent::PasswordChanged { clinic_id, user_id, by, temporary, browser_sessions_ended } => (
                "password_changed",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "by": by, "temporary": temporary, "browser_sessions_ended": browser_sessions_ended }),
            ),
            AuditEvent::PasswordChangeFailed { clinic_id, user_id, reason } => {
                ("password_changed", Outcome::Failure, Some(clinic_id), Some(user_id), json!({ "reason": reason }))
            }
            AuditEvent::LoginLocked { clinic_id, user_id, locked_until, device } => (
                "login_locked",
                Outcome::Failure,
                Some(clinic_id),
                user_id.as_deref(),
                json!({ "locked_until": locked_until, "device": device }),
            ),
            AuditEvent::Logout { clinic_id, user_id } => {
                ("logout", Outcome::Success, Some(clinic_id), Some(user_id), json!({}))
            }
            AuditEvent::GateRefused { fingerprint, reason } => (
                "clinic_gate",
                Outcome::Failure,
                None,
                None,
                json!({ "fingerprint": fingerprint, "reason": reason }),
            ),
            AuditEvent::HandshakesFailed { reason, source, count, since, until } => (
                "tls_handshake_failed",
                Outcome::Failure,
                None,
                None,
                json!({ "reason": reason, "source": source, "count": count, "since": since, "until": until }),
            ),
            AuditEvent::ApiRefused { fingerprint, client_id, route, clinic_id, user_id, doctor_id, reason } => (
                "api_refused",
                Outcome::Failure,
                clinic_id.as_deref(),
                user_id.as_deref(),
                json!({
                    "fingerprint": fingerprint,
                    "client_id": client_id,
                    "route": route,
                    "doctor_id": doctor_id,
                    "reason": reason,
                }),
            ),
            AuditEvent::Admin { action, target } => {
                ("admin", Outcome::Success, None, None, json!({ "action": action, "target": target }))
            }
            AuditEvent::Authentication { clinic_id, user_id, method, purpose, authenticator_id, outcome, reason } => (
                "authentication",
                *outcome,
                Some(clinic_id),
                Some(user_id),
                json!({ "method": method, "purpose": purpose, "authenticator_id": authenticator_id, "reason": reason }),
            ),
            AuditEvent::CardAuthentication {
                clinic_id,
                user_id,
                method,
                purpose,
                authenticator_id,
                outcome,
                reason,
                cert_sha256,
                revocation_checked,
            } => (
                "authentication",
                *outcome,
                Some(clinic_id),
                Some(user_id),
                json!({
                    "method": method,
                    "purpose": purpose,
                    "authenticator_id": authenticator_id,
                    "reason": reason,
                    "cert_sha256": cert_sha256,
                    "revocation_checked": revocation_checked,
                }),
            ),
            AuditEvent::AuthenticatorLinked { clinic_id, user_id, kind, authenticator_id, via } => (
                "authenticator_linked",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "kind": kind, "authenticator_id": authenticator_id, "via": via }),
            ),
            AuditEvent::AuthenticatorLinkFailed { clinic_id, user_id, kind, reason, code_id } => (
                "authenticator_linked",
                Outcome::Failure,
                Some(clinic_id),
                Some(user_id),
                json!({ "kind": kind, "reason": reason, "code_id": code_id }),
            ),
            AuditEvent::AuthenticatorRenamed { clinic_id, user_id, kind, authenticator_id } => (
                "authenticator_renamed",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "kind": kind, "authenticator_id": authenticator_id }),
            ),
            AuditEvent::AuthenticatorRemoved { clinic_id, user_id, kind, authenticator_id, by } => (
                "authenticator_removed",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "kind": kind, "authenticator_id": authenticator_id, "by": by }),
            ),
            AuditEvent::SigningSessionOpened { clinic_id, user_id, session_id, method, acr } => (
                "signing_session_opened",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "session_id": session_id, "method": method, "acr": acr }),
            ),
            AuditEvent::SigningSessionEnded { clinic_id, user_id, session_id, reason } => (
                "signing_session_ended",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "session_id": session_id, "reason": reason }),
            ),
            AuditEvent::SigningSessionEndedByClient { clinic_id, user_id, session_id, client_id } => (
                "signing_session_ended",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "session_id": session_id, "reason": "service_client", "client_id": client_id }),
            ),
            AuditEvent::TokenIssued { clinic_id, user_id, session_id, client_id, jti } => (
                "token_issued",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "session_id": session_id, "client_id": client_id, "jti": jti }),
            ),
            AuditEvent::TokenRefused { clinic_id, user_id, client_id, reason } => (
                "token_issued",
                Outcome::Failure,
                Some(clinic_id),
                Some(user_id),
                json!({ "client_id": client_id, "reason": reason }),
            ),
            AuditEvent::TokenConsumed { clinic_id, user_id, client_id, jti } => (
                "token_consumed",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "client_id": client_id, "jti": jti }),
            ),
            AuditEvent::TokenConsumeRefused { clinic_id, user_id, client_id, jti, reason } => (
                "token_consumed",
                Outcome::Failure,
                clinic_id.as_deref(),
                user_id.as_deref(),
                json!({ "client_id": client_id, "jti": jti, "reason": reason }),
            ),
            AuditEvent::ScimUserCreated { clinic_id, user_id, client_id, fingerprint, password_set } => (
                "scim_user_created",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({ "client_id": client_id, "fingerprint": fingerprint, "password_set": password_set }),
            ),
            AuditEvent::ScimUserChanged {
                clinic_id,
                user_id,
                client_id,
                fingerprint,
                changed,
                browser_sessions_ended,
                signing_sessions_ended,
            } => (
                "scim_user_changed",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({
                    "client_id": client_id,
                    "fingerprint": fingerprint,
                    "changed": changed,
                    "browser_sessions_ended": browser_sessions_ended,
                    "signing_sessions_ended": signing_sessions_ended,
                }),
            ),
            AuditEvent::ScimUserDeprovisioned {
                clinic_id,
                user_id,
                client_id,
                fingerprint,
                browser_sessions_ended,
                signing_sessions_ended,
            } => (
                "scim_user_deprovisioned",
                Outcome::Success,
                Some(clinic_id),
                Some(user_id),
                json!({
                    "client_id": client_id,
                    "fingerprint": fingerprint,
                    "browser_sessions_ended": browser_sessions_ended,
                    "signing_sessions_ended": signing_sessions_ended,
                }),
            ),
            AuditEvent::OqsEnqueued { clinic_id, client_id, request_id, file_name, size } => (
                "oqs_enqueued",
                Outcome::Success,
                Some(clinic_id),
                None,
                json!({ "client_id": client_id, "request_id": request_id, "file_name": file_name, "size": size }),
            ),
            AuditEvent::OqsRefused { clinic_id, client_id, file_name, reason } => (
                "oqs_enqueued",
                Outcome::Failure,
                Some(clinic_id),
                None,
                json!({ "client_id": client_id, "file_name": file_name, "reason": reason }),
            ),
            AuditEvent::OqsRelayClaimed { clinic_id, agent_id, fingerprint, version, previous_agent } => (
                "oqs_relay_claimed",
                Outcome::Success,
                Some(clinic_id),
                None,
                json!({ "agent_id": agent_id, "fingerprint": fingerprint, "version": version, "previous_agent": previous_agent }),
            ),
            AuditEvent::OqsLeased { clinic_id, request_id, agent_id, file_name, lease } => (
                "oqs_leased",
                Outcome::Success,
                Some(clinic_id),
                None,
                json!({ "request_id": request_id, "agent_id": agent_id, "file_name": file_name, "lease": lease }),
            ),
            AuditEvent::OqsDelivered { clinic_id, request_id, agent_id } => (
                "oqs_delivered",
                Outcome::Success,
                Some(clinic_id),
                None,
                json!({ "request_id": request_id, "agent_id": agent_id }),
            ),
            AuditEvent::OqsAnswered { clinic_id, request_id, agent_id, file_name, size } => (
                "oqs_answered",
                Outcome::Success,
                Some(clinic_id),
                None,
                json!({ "request_id": request_id, "agent_id": agent_id, "file_name": file_name, "size": size }),
            ),
            AuditEvent::OqsFailed { clinic_id, request_id, agent_id, reason } => (
                "oqs_failed",
                Outcome::Failure,
                Some(clinic_id),
                None,
                json!({ "request_id": request_id, "agent_id": agent_id, "reason": reason }),
            ),
            AuditEvent::OqsExpired { clinic_id, client_id, request_id, file_name, reason } => (
                "oqs_expired",
                Outcome::Failure,
                Some(clinic_id),
                None,
                json!({ "client_id": client_id, "request_id": request_id, "file_name": file_name, "reason": reason }),
            ),
            AuditEvent::OqsAnswerRead { clinic_id, client_id, request_id } => (
                "oqs_answer_read",
                Outcome::Success,
                Some(clinic_id),
                None,
                json!({ "client_id": client_id, "request_id": request_id }),
            ),
            AuditEvent::AgentReleasePublished { version, target, sha256, size, key_id } => (
                "agent_release_published",
                Outcome::Success,
                None,
                None,
                json!({ "version": version, "target": target, "sha256": sha256, "size": size, "key_id": key_id }),
            ),
            AuditEvent::AgentReleaseWithdrawn { version, target } => {
                ("agent_release_withdrawn", Outcome::Success, None, None, json!({ "version": version, "target": target }))
            }
            AuditEvent::AgentReleaseDownloaded { clinic_id, agent_id, version, target } => (
                "agent_release_downloaded",
                Outcome::Success,
                Some(clinic_id),
                None,
                json!({ "agent_id": agent_id, "version": version, "target": target }),
            ),
            AuditEvent::AgentUpdateReported { clinic_id, agent_id, running, step, version, outcome, detail } => (
                "agent_update_reported",
                if *outcome == "failure" { Outcome::Failure } else { Outcome::Success },
                Some(clinic_id),
                None,
                json!({ "agent_id": agent_id, "running": running, "step": step, "version": version, "outcome": outcome, "detail": detail }),
            ),
            AuditEvent::ChainKeyed { previous_rows, previous_head } => (
                CHAIN_KEYED_EVENT,
                Outcome::Success,
                None,
                None,
                json!({ "previous_rows": previous_rows, "previous_head": previous_head }),
            ),
        }
    }
}
