//! The gateway's agent API (docs/design.md §3.13) as the relay calls it: mTLS with the clinic's
//! certificate, the agent's id in `X-Ninsho-Agent`, JSON both ways.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The gateway could not be reached or the connection broke: retry with backoff.
    #[error("the gateway cannot be reached: {0}")]
    Unreachable(String),
    /// The gateway answered with an error code.
    #[error("the gateway refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` code.
        code: String,
        /// The message.
        message: String,
    },
}

impl CallError {
    /// The refusal's code, if the gateway answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            Self::Unreachable(_) => None,
        }
    }
}

/// A request the gateway leased to this agent.
#[derive(Debug, Deserialize)]
pub struct Leased {
    /// The request id.
    pub request_id: String,
    /// Its file name.
    pub file_name: String,
    /// The file, base64.
    pub content: String,
}

/// The heartbeat's answer.
#[derive(Debug, Deserialize)]
pub struct Heartbeat {
    /// The clinic of the certificate.
    pub clinic_id: String,
    /// Its name.
    pub clinic_name: String,
    /// Pending requests that have ended.
    pub over: Vec<Over>,
}

/// A pending request that has ended.
#[derive(Debug, Deserialize)]
pub struct Over {
    /// The request id.
    pub request_id: String,
    /// Its status (`unknown` for an id the gateway does not know).
    pub status: String,
}

/// A release the gateway offers (docs/design.md §3.14); nothing of it is trusted before the
/// agent verifies the manifest's signature itself.
#[derive(Debug, Clone, Deserialize)]
pub struct Offer {
    /// The release's version, as the gateway says.
    pub version: String,
    /// Its target, as the gateway says.
    pub target: String,
    /// The manifest's exact signed bytes, base64.
    pub manifest: String,
    /// The minisign signature of those bytes.
    pub signature: String,
    /// The binary's size, as the gateway says.
    pub size: u64,
}

/// The agent API of one gateway.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    agent_id: String,
    version: String,
}

impl Gateway {
    /// A client presenting `identity_pem` (certificate and key, PEM), trusting `ca_pem` for the
    /// gateway's server certificate.
    pub fn new(base: &str, identity_pem: &[u8], ca_pem: Option<&[u8]>, agent_id: &str, version: &str) -> Result<Self, String> {
        let identity = reqwest::Identity::from_pem(identity_pem).map_err(|e| format!("the clinic certificate: {e}"))?;
        let mut builder = reqwest::Client::builder().identity(identity).connect_timeout(Duration::from_secs(10));
        if let Some(ca_pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(ca_pem).map_err(|e| format!("the gateway CA: {e}"))?;
            builder = builder.tls_certs_only([ca]);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), agent_id: agent_id.to_owned(), version: version.to_owned() })
    }

    /// Reads the PEM files and builds the client.
    pub fn from_files(base: &str, identity: &Path, ca: Option<&Path>, agent_id: &str, version: &str) -> Result<Self, String> {
        let identity = std::fs::read(identity).map_err(|e| format!("{}: {e}", identity.display()))?;
        let ca = ca.map(|ca| std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))).transpose()?;
        Self::new(base, &identity, ca.as_deref(), agent_id, version)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>, timeout: Duration) -> Result<Option<Value>, CallError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-ninsho-agent", &self.agent_id)
            .header("x-ninsho-agent-version", &self.version)
            .timeout(timeout);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|e| CallError::Unreachable(without_url(&e)))?;
        let status = res.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        let body: Value = res.json().await.map_err(|e| CallError::Unreachable(without_url(&e)))?;
        if (200..300).contains(&status) {
            return Ok(Some(body));
        }
        Err(CallError::Refused {
            status,
            code: body["error"].as_str().unwrap_or("unknown").to_owned(),
            message: body["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Keeps the relay and names the clinic; says which of `pending` have ended.
    pub async fn heartbeat(&self, pending: &[String]) -> Result<Heartbeat, CallError> {
        let body = self.call(reqwest::Method::POST, "/agent/v1/heartbeat", Some(json!({ "pending": pending })), Duration::from_secs(15)).await?;
        serde_json::from_value(body.unwrap_or_default()).map_err(|e| CallError::Unreachable(format!("unexpected heartbeat answer: {e}")))
    }

    /// Leases the next request, waiting up to `wait`.
    pub async fn next(&self, wait: Duration) -> Result<Option<Leased>, CallError> {
        let path = format!("/agent/v1/oqs/next?wait={}", wait.as_secs());
        let body = self.call(reqwest::Method::GET, &path, None, wait + Duration::from_secs(15)).await?;
        body.map(|b| serde_json::from_value(b).map_err(|e| CallError::Unreachable(format!("unexpected request: {e}")))).transpose()
    }

    /// Reports a request written into `req`.
    pub async fn delivered(&self, id: &str) -> Result<(), CallError> {
        self.call(reqwest::Method::POST, &format!("/agent/v1/oqs/{id}/delivered"), None, Duration::from_secs(15)).await.map(drop)
    }

    /// Uploads the terminal's answer.
    pub async fn response(&self, id: &str, file_name: &str, content: &[u8]) -> Result<(), CallError> {
        let body = json!({ "file_name": file_name, "content": STANDARD.encode(content) });
        self.call(reqwest::Method::POST, &format!("/agent/v1/oqs/{id}/response"), Some(body), Duration::from_secs(60)).await.map(drop)
    }

    /// Ends a request the agent cannot go on with.
    pub async fn failed(&self, id: &str, reason: &str) -> Result<(), CallError> {
        self.call(reqwest::Method::POST, &format!("/agent/v1/oqs/{id}/failed"), Some(json!({ "reason": reason })), Duration::from_secs(15))
            .await
            .map(drop)
    }
}

impl Gateway {
    /// The newest release for `target` if it is newer than `current` (`None`: nothing newer).
    pub async fn latest_release(&self, target: &str, current: &str) -> Result<Option<Offer>, CallError> {
        let path = format!("/agent/v1/releases/latest?target={target}&current={current}");
        let body = self.call(reqwest::Method::GET, &path, None, Duration::from_secs(30)).await?;
        body.map(|b| serde_json::from_value(b).map_err(|e| CallError::Unreachable(format!("unexpected release offer: {e}")))).transpose()
    }

    /// Starts the download of a release's binary: the response, its status checked, to be read
    /// in chunks (`timeout` bounds the whole download).
    pub async fn download_release(&self, version: &str, target: &str, timeout: Duration) -> Result<reqwest::Response, CallError> {
        let url = format!("{}/agent/v1/releases/{version}/{target}/binary", self.base);
        let res = self
            .http
            .get(url)
            .header("x-ninsho-agent", &self.agent_id)
            .header("x-ninsho-agent-version", &self.version)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(without_url(&e)))?;
        let status = res.status().as_u16();
        if status == 200 {
            return Ok(res);
        }
        let body: Value = res.json().await.unwrap_or_default();
        Err(CallError::Refused {
            status,
            code: body["error"].as_str().unwrap_or("unknown").to_owned(),
            message: body["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Reports a step of an update: `step` (`prompt`, `download`, `verify`, `self_test`, `swap`,
    /// `restart`, `rollback`), the release's `version`, `outcome` (`success`, `failure`,
    /// `declined`) and a short detail (no control characters, at most 500 characters).
    pub async fn update_report(&self, step: &str, version: &str, outcome: &str, detail: &str) -> Result<(), CallError> {
        let detail: String = detail.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect();
        let body = json!({ "step": step, "version": version, "outcome": outcome, "detail": detail });
        self.call(reqwest::Method::POST, "/agent/v1/update-report", Some(body), Duration::from_secs(15)).await.map(drop)
    }
}

/// A transport error's text without the URL (it names only the gateway, but keeps lines short).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
