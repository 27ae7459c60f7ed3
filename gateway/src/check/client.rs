//! The HTTP side of `gateway check`: one reqwest client (rustls) per TLS identity, trusting only
//! the CA given with `--ca`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use zeroize::Zeroizing;

use super::Target;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of the gateway with one TLS identity.
pub(super) struct Gateway {
    http: reqwest::Client,
    base: url::Url,
    origin: String,
}

/// An answer: status and, when the body is JSON, the body.
pub(super) struct Reply {
    pub status: u16,
    pub json: Option<Value>,
}

/// The first certificate of a PEM file, DER.
pub(super) fn certificate_der(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::pki::read_certificate(&bytes).with_context(|| path.display().to_string())
}


/// A PEM certificate (chain) and its PEM key (a 0600 file) as one identity.
fn pem_identity(cert: &Path, key: &Path) -> anyhow::Result<reqwest::Identity> {
    let cert_pem = std::fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    crate::pki::read_certificate(cert_pem.as_bytes()).with_context(|| cert.display().to_string())?;
    let key_pem = crate::audit_checkpoint::read_private_file(key, "private key", || bail!("no private key file at {}", key.display()))?;
    let both = Zeroizing::new(format!("{cert_pem}\n{}", key_pem.as_str()));
    reqwest::Identity::from_pem(both.as_bytes())
        .with_context(|| format!("{} and {} are not a certificate and its private key", cert.display(), key.display()))
}

/// The identity in a PKCS#12 file whose password is the first line of a 0600 file.
fn pkcs12_identity(p12: &Path, password_file: &Path) -> anyhow::Result<reqwest::Identity> {
    use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
    let password = super::secret_line(password_file, "PKCS#12 password")?;
    let data = std::fs::read(p12).with_context(|| format!("cannot read {}", p12.display()))?;
    let store = KeyStore::from_pkcs12(&data, &password, Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| anyhow::anyhow!("{}: cannot open (wrong password or not a PKCS#12 file): {e}", p12.display()))?;
    let (_, chain) = store.private_key_chain().with_context(|| format!("{} holds no private key", p12.display()))?;
    let mut text = Zeroizing::new(infra::cli::pem("PRIVATE KEY", chain.key().as_der()));
    for cert in chain.certs() {
        text.push_str(&infra::cli::pem("CERTIFICATE", cert.as_der()));
    }
    reqwest::Identity::from_pem(text.as_bytes()).with_context(|| format!("{}: unusable key or certificate", p12.display()))
}

impl Gateway {
    fn new(t: &Target, identity: reqwest::Identity) -> anyhow::Result<Self> {
        let ca_pem = std::fs::read(&t.ca).with_context(|| format!("cannot read {}", t.ca.display()))?;
        let cas = reqwest::Certificate::from_pem_bundle(&ca_pem)
            .ok()
            .filter(|c| !c.is_empty())
            .with_context(|| format!("{} holds no PEM CA certificate", t.ca.display()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only(cas)
            .identity(identity)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTPS client")?;
        Ok(Self { http, base: t.url.clone(), origin: super::origin(&t.url)? })
    }

    /// The browser at the clinic: its device certificate, PEM or PKCS#12.
    pub fn clinic(t: &Target) -> anyhow::Result<Self> {
        let is_p12 = t.clinic_cert.extension().is_some_and(|e| e.eq_ignore_ascii_case("p12") || e.eq_ignore_ascii_case("pfx"));
        let identity = match (is_p12, &t.clinic_key, &t.clinic_password_file) {
            (true, None, Some(password)) => pkcs12_identity(&t.clinic_cert, password)?,
            (true, _, None) => bail!("a PKCS#12 --clinic-cert needs --clinic-password-file"),
            (false, Some(key), None) => pem_identity(&t.clinic_cert, key)?,
            (false, None, _) => bail!("a PEM --clinic-cert needs --clinic-key"),
            _ => bail!("--clinic-key goes with a PEM certificate, --clinic-password-file with a PKCS#12 one"),
        };
        Self::new(t, identity)
    }

    /// A service client (EMR or signer).
    pub fn service(t: &Target, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Self::new(t, pem_identity(cert, key)?)
    }

    fn url(&self, path: &str) -> anyhow::Result<url::Url> {
        self.base.join(path).with_context(|| format!("{} + {path}", self.base))
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<reqwest::Response> {
        // reqwest's error chain names the cause (refused, certificate unknown, timed out).
        req.header("origin", &self.origin).send().await.with_context(|| format!("{what}: no answer"))
    }

    async fn reply(res: reqwest::Response) -> Reply {
        let status = res.status().as_u16();
        let json = res.json::<Value>().await.ok();
        Reply { status, json }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        let res = self.send(self.http.get(self.url(path)?), &format!("GET {path}")).await?;
        Ok(Self::reply(res).await)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> anyhow::Result<Reply> {
        let res = self.send(self.http.post(self.url(path)?).json(&body), &format!("POST {path}")).await?;
        Ok(Self::reply(res).await)
    }

    /// The password form. Success is a redirect to the method page; a temporary password's
    /// redirect to the change page is a failure (the check signs in unattended).
    pub async fn login(&self, login_id: &str, password: &str) -> anyhow::Result<()> {
        let form = [("login_id", login_id), ("password", password)];
        let res = self.send(self.http.post(self.url("/login")?).form(&form), "POST /login").await?;
        let location = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        match res.status().as_u16() {
            303 if location.starts_with("/password") => {
                bail!("the password is temporary: sign in once in a browser and choose a new one, then update --password-file")
            }
            303 => Ok(()),
            status => bail!(
                "POST /login answered {status} (wrong password, locked, disabled or not a doctor of this clinic: the \
                 gateway's audit log says which)"
            ),
        }
    }

    /// Signs out (which ends the signing session, docs/design.md §3.7).
    pub async fn logout(&self) -> anyhow::Result<()> {
        let res = self.send(self.http.post(self.url("/logout")?), "POST /logout").await?;
        match res.status().as_u16() {
            303 => Ok(()),
            status => bail!("POST /logout answered {status}"),
        }
    }

    /// `GET /api/v1/signing-sessions` for the doctor.
    pub async fn session_state(&self, clinic: &str, login_id: &str) -> anyhow::Result<Value> {
        let mut url = self.url("/api/v1/signing-sessions")?;
        url.query_pairs_mut().append_pair("clinic_id", clinic).append_pair("doctor_id", login_id);
        let req = self.http.get(url);
        Self::reply(self.send(req, "GET /api/v1/signing-sessions").await?).await.ok("GET /api/v1/signing-sessions")
    }
}
