//! `signatures/signDoc` (docs/design.md §3.12): the EMR sends the unsigned prescription document
//! and a SAD whose `hashes` hold the SHA-256 of the document as sent; the signer answers the
//! document signed as the national profile requires (XAdES, AdES-B-LT, internally detached).
//!
//! Order: the request's shape; each document's bytes and their digests; the credential and the
//! SAD exactly as signHash checks them ([`super::authorize`]); a time-stamping authority is
//! configured; the signing certificate's validation data is current and does not list it; each
//! document's structure (`xades::Prepared`). Everything that can refuse does so before the token
//! is consumed, so a bad document never burns a token. Then the consume, the key signs each
//! SignedInfo digest, the TSA stamps each SignatureValue (its token checked against the configured
//! TSA anchors), the validation data are embedded, the signatures are audited, and only then
//! answered. A TSA that fails after the consume leaves the token used and nothing answered: it is
//! audited as such and answered 503.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keys::SignAlgorithm;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use trust::{AnchorSpec, Policies, Purpose, Revocation, TrustStore};

use super::{
    AppState, Authorized, Caller, CscError, Refusal, SHA256_OID, audit_created, audit_refused, authorize, body, consume, refuse, sign_digests,
};
use crate::config::Config;
use crate::validation::{self, Unusable};

/// What signDoc needs besides the signHash state: the TSA and the validation data's sources.
pub struct DocSigning {
    tsa: Option<tsp::Client>,
    tsa_anchors: Vec<Vec<u8>>,
    tsa_store: TrustStore,
    sources: validation::Sources,
}

impl std::fmt::Debug for DocSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocSigning").field("tsa", &self.tsa.is_some()).finish_non_exhaustive()
    }
}

impl DocSigning {
    /// From `[tsa]` and `[signdoc]`; the TSA anchors are read now (a start with unreadable anchors
    /// fails).
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let sources = validation::Sources::new(config);
        let tsa_anchors = sources.tsa_anchors()?;
        let specs = tsa_anchors
            .iter()
            .map(|der| AnchorSpec { certificate: der.clone(), revocation: Revocation::None, policies: Policies::Any })
            .collect();
        let tsa_store = TrustStore::new(specs);
        if let Some(p) = tsa_store.problems().first() {
            anyhow::bail!("tsa.anchor_files: {}", p.reason);
        }
        let tsa = if config.tsa.url.is_empty() {
            None
        } else {
            Some(tsp::Client::new(&config.tsa.url, std::time::Duration::from_millis(config.tsa.timeout_ms))?)
        };
        Ok(Self { tsa, tsa_anchors, tsa_store, sources })
    }

    /// Whether signDoc can sign (a TSA is configured).
    pub fn enabled(&self) -> bool {
        self.tsa.is_some()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignDocRequest {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(rename = "SAD")]
    sad: String,
    #[serde(default)]
    documents: Option<Vec<DocumentEntry>>,
    #[serde(default)]
    document_digests: Option<serde_json::Value>,
    #[serde(default)]
    operation_mode: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored, as CSC allows")]
    client_data: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "the documents carry their validation data; nothing more is returned")]
    return_validation_information: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct DocumentEntry {
    document: String,
    signature_format: String,
    #[serde(default)]
    conformance_level: Option<String>,
    #[serde(rename = "signAlgo")]
    sign_algo: String,
    #[serde(rename = "signAlgoParams", default)]
    sign_algo_params: Option<String>,
    #[serde(default)]
    signed_envelope_property: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "the profile's signed properties are fixed (SigningTime, SigningCertificateV2)")]
    signed_props: Option<serde_json::Value>,
}

#[derive(Serialize)]
pub(crate) struct SignDocResponse {
    #[serde(rename = "DocumentWithSignature")]
    document_with_signature: Vec<String>,
}

/// `POST /csc/v2/signatures/signDoc`.
pub(crate) async fn sign_doc(State(state): State<AppState>, caller: Caller, req: Result<Json<SignDocRequest>, JsonRejection>) -> Response {
    let answer = sign_doc_checked(&state, &caller, req).await;
    let answer = audit_refused(&state, &caller, answer).await;
    state.metrics.request("signatures/signDoc", answer.as_ref().err().map(CscError::code));
    answer.into_response()
}

async fn sign_doc_checked(state: &AppState, caller: &Caller, req: Result<Json<SignDocRequest>, JsonRejection>) -> Result<Json<SignDocResponse>, Refusal> {
    let req = body(req).map_err(|e| refuse("malformed_request", e))?;
    if req.operation_mode.as_deref().is_some_and(|m| m != "S") {
        return Err(refuse("operation_mode", CscError::invalid("Invalid parameter operationMode")));
    }
    if req.document_digests.is_some() {
        return Err(refuse(
            "document_digests",
            CscError::invalid("Invalid parameter documentDigests: the e-prescription signature is internally detached; send documents"),
        ));
    }
    let entries = req.documents.unwrap_or_default();
    if entries.is_empty() {
        return Err(refuse("no_documents", CscError::invalid("Missing (or invalid type) array parameter documents")));
    }
    if entries.len() > state.config.csc.max_hashes {
        return Err(refuse("too_many_documents", CscError::invalid("Numbers of signatures is too high")));
    }
    let mut documents = Vec::with_capacity(entries.len());
    for entry in &entries {
        documents.push(check_entry(entry).map_err(|(reason, e)| refuse(reason, e))?);
    }
    let digests: Vec<Vec<u8>> = documents.iter().map(|d| Sha256::digest(d).to_vec()).collect();
    let Authorized { credential, claims } = authorize(state, caller, &req.credential_id, &req.sad, SHA256_OID, &digests).await?;
    let with_claims = |reason: &'static str, error: CscError| Refusal { error, reason, claims: Some(claims.clone()) };
    let signing = &state.doc_signing;
    let Some(tsa) = signing.tsa.as_ref() else {
        return Err(with_claims(
            "no_tsa",
            CscError::invalid("Invalid parameter conformance_level: this signer has no time-stamping authority (tsa.url) for AdES-B-LT"),
        ));
    };
    let now = state.clock.unix();
    let signer_data = signing.sources.for_signer(&credential, now).map_err(|e| match e {
        Unusable::Path(trust::PathError::Revoked { .. }) => {
            with_claims("certificate_revoked", CscError::invalid("Signing certificate is revoked"))
        }
        other => {
            tracing::warn!(credential = %credential.id, error = %other, "no current validation data for the signing certificate");
            with_claims(
                "validation_data",
                CscError::unavailable("The signing certificate's revocation data (signdoc.crl_files) is not current; nothing was signed"),
            )
        }
    })?;
    let Some(certificate) = credential.certificate.as_deref() else {
        return Err(with_claims("certificate_not_valid", CscError::invalid("Signing certificate is not valid yet or not issued")));
    };
    let mut prepared = Vec::with_capacity(documents.len());
    for (i, document) in documents.iter().enumerate() {
        let p = xades::Prepared::new(document, certificate, now)
            .map_err(|e| with_claims("document_structure", CscError::invalid(format!("Invalid parameter documents[{i}]: {e}"))))?;
        prepared.push(p);
    }
    consume(state, caller, &req.sad, &claims).await?;

    let to_sign: Vec<Vec<u8>> = prepared.iter().map(|p| p.signed_info_digest().to_vec()).collect();
    let values = sign_digests(state, &credential, SignAlgorithm::RsaPkcs1Sha256, to_sign).await.map_err(|e| with_claims("key_failure", e))?;
    let mut out = Vec::with_capacity(prepared.len());
    for (p, value) in prepared.into_iter().zip(values) {
        let signed = p.with_signature(&value).map_err(|e| {
            tracing::error!(credential = %credential.id, error = %e, "the key's signature does not verify under the credential's certificate");
            with_claims("key_failure", CscError::internal())
        })?;
        let (token, info) = tsa.stamp(&signed.timestamp_imprint()).await.map_err(|e| {
            tracing::warn!(error = %e, "time-stamp failed after the token was consumed; nothing answered");
            with_claims("tsa_unavailable", CscError::unavailable("The time-stamping authority failed; the SAD is used, nothing was answered"))
        })?;
        if let Err(e) = signing.tsa_store.validate(&info.tsa_certificate, &info.certificates, info.gen_time, Purpose::TimeStamping) {
            tracing::error!(error = %e, "the time-stamping authority's certificate does not chain to tsa.anchor_files");
            return Err(with_claims("tsa_untrusted", CscError::unavailable("The time-stamping authority is not trusted; nothing was answered")));
        }
        let tsa_data = signing.sources.for_tsa(&info.certificates, &info.tsa_certificate, &signing.tsa_anchors).map_err(|e| {
            tracing::warn!(error = %e, "the TSA's validation data cannot be read");
            with_claims("validation_data", CscError::unavailable("The time-stamp's revocation data (tsa.crl_files) cannot be read"))
        })?;
        let document = signed.complete(&token, &signer_data, &tsa_data).map_err(|e| {
            tracing::error!(error = %e, "cannot complete the signed document");
            with_claims("tsa_failure", CscError::internal())
        })?;
        out.push(STANDARD.encode(document));
    }
    let detail = json!({ "documents": out.len(), "signature_format": "X", "conformance_level": "AdES-B-LT" });
    audit_created(state, caller, &claims, &credential, now, detail).await?;
    state.metrics.signed(out.len());
    Ok(Json(SignDocResponse { document_with_signature: out }))
}

/// One `documents[]` entry: the profile's parameters and the decoded document.
fn check_entry(entry: &DocumentEntry) -> Result<Vec<u8>, (&'static str, CscError)> {
    if entry.signature_format != "X" {
        return Err(("signature_format", CscError::invalid("Invalid parameter signature_format: the e-prescription signature is XAdES (X)")));
    }
    if entry.conformance_level.as_deref() != Some("AdES-B-LT") {
        return Err(("conformance_level", CscError::invalid("Invalid parameter conformance_level: the e-prescription signature is AdES-B-LT")));
    }
    if entry.signed_envelope_property.as_deref() != Some("Internally detached") {
        return Err((
            "signed_envelope_property",
            CscError::invalid("Invalid parameter signed_envelope_property: the e-prescription signature is Internally detached"),
        ));
    }
    // RSASSA-PKCS1-v1_5 with SHA-256, the profile's SignatureMethod (plain rsaEncryption allowed, as CSC does).
    if !matches!(entry.sign_algo.as_str(), "1.2.840.113549.1.1.11" | "1.2.840.113549.1.1.1") || entry.sign_algo_params.is_some() {
        return Err(("sign_algorithm", CscError::invalid("Invalid parameter signAlgo: the e-prescription signature is RSA with SHA-256")));
    }
    let document = STANDARD
        .decode(entry.document.as_bytes())
        .map_err(|_| ("bad_base64", CscError::invalid("Invalid Base64 document string parameter")))?;
    if document.is_empty() {
        return Err(("empty_document", CscError::invalid("Invalid parameter documents: empty document")));
    }
    Ok(document)
}
