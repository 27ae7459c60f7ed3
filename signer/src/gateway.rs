//! The signer's client of the gateway, over mTLS with the signer's own certificate (registered
//! at the gateway with role `signer`): the JWKS, and consuming a token before any signature.

use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::Config;

/// The gateway, reached with the signer's client certificate.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    jwks_url: url::Url,
    consume_url: url::Url,
}

/// What consuming a token told the signer: the gateway's own view of the token, now used.
#[derive(Debug, Clone, Deserialize)]
pub struct Consumed {
    /// The doctor (gateway user id).
    pub sub: String,
    /// The doctor's 医籍番号.
    pub medical_reg_no: Option<String>,
    /// The clinic.
    pub clinic_id: String,
}

/// Why a consume did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The gateway refused the token (already used, session ended, binding mismatch …): its
    /// error code.
    #[error("the gateway refused the token: {0}")]
    Refused(String),
    /// The gateway could not be reached or failed: nothing may be signed.
    #[error("the gateway is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct ConsumeRequest<'a> {
    token: &'a str,
    #[serde(rename = "x5t#S256")]
    presenter: &'a str,
}

#[derive(Deserialize)]
struct GatewayError {
    error: String,
}

impl GatewayClient {
    /// From the `[gateway]` section: the CA bundle, the client certificate and key files.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let g = &config.gateway;
        if g.ca_file.as_os_str().is_empty() || g.client_cert_file.as_os_str().is_empty() || g.client_key_file.as_os_str().is_empty() {
            anyhow::bail!("gateway.ca_file, gateway.client_cert_file and gateway.client_key_file must be set: tokens are consumed over mTLS");
        }
        let ca_pem = std::fs::read(&g.ca_file).with_context(|| format!("cannot read {} (gateway.ca_file)", g.ca_file.display()))?;
        let cas = reqwest::Certificate::from_pem_bundle(&ca_pem)
            .ok()
            .filter(|c| !c.is_empty())
            .with_context(|| format!("{} holds no PEM CA certificate", g.ca_file.display()))?;
        let cert_pem = std::fs::read_to_string(&g.client_cert_file)
            .with_context(|| format!("cannot read {} (gateway.client_cert_file)", g.client_cert_file.display()))?;
        let key_pem = infra::secret_file::read_existing_private_file(&g.client_key_file, "gateway client key")?;
        let both = Zeroizing::new(format!("{cert_pem}\n{}", key_pem.as_str()));
        let identity = reqwest::Identity::from_pem(both.as_bytes()).with_context(|| {
            format!("{} and {} are not a certificate and its key", g.client_cert_file.display(), g.client_key_file.display())
        })?;
        let http = reqwest::Client::builder()
            .tls_certs_only(cas)
            .identity(identity)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(g.timeout_ms))
            .connect_timeout(Duration::from_millis(g.timeout_ms))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the gateway client")?;
        Ok(Self { http, jwks_url: config.jwks_url()?, consume_url: config.consume_url()? })
    }

    /// The gateway's current key set.
    pub async fn jwks(&self) -> anyhow::Result<jsonwebtoken::jwk::JwkSet> {
        let res = self.http.get(self.jwks_url.clone()).send().await.context("fetching the JWKS")?;
        if !res.status().is_success() {
            anyhow::bail!("the JWKS answered {}", res.status());
        }
        res.json().await.context("the JWKS is not a JWK set")
    }

    /// Consumes `token` at the gateway, presented by the client whose certificate thumbprint is
    /// `presenter` (RFC 8705: the gateway checks the token's binding against it). Succeeds once
    /// per token across every signer and gateway instance.
    pub async fn consume(&self, token: &str, presenter: &str) -> Result<Consumed, ConsumeError> {
        let res = self
            .http
            .post(self.consume_url.clone())
            .json(&ConsumeRequest { token, presenter })
            .send()
            .await
            .map_err(|e| ConsumeError::Unavailable(without_url(&e)))?;
        let status = res.status();
        if status.is_success() {
            return res.json().await.map_err(|e| ConsumeError::Unavailable(format!("unreadable answer: {}", without_url(&e))));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ConsumeError::Unavailable(format!("status {status}")));
        }
        let code = res.json::<GatewayError>().await.map(|e| e.error).unwrap_or_else(|_| format!("status {status}"));
        Err(ConsumeError::Refused(code))
    }
}

/// A reqwest error's message without the URL it carries (which is configuration, not news).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(c) = cause {
        detail = c.to_string();
        cause = c.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}
