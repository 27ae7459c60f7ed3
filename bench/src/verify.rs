//! Checks one token from each token server before measuring it, so both are known to do the
//! real work: an ES256 signature valid under the server's published JWKS, and a `cnf.x5t#S256`
//! equal to the SHA-256 of our client certificate (RFC 8705 §3.1).

use anyhow::{Context as _, anyhow, bail};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::conn::{Target, empty, with_body};

/// What was checked, for the report.
pub struct Checked {
    pub typ: String,
    pub kid: String,
    pub bytes: usize,
}

/// Fetches `jwks_path`, requests a token with `body` at `token_path`, and checks it.
pub async fn token(
    target: &Target,
    jwks_path: &str,
    token_path: &str,
    content_type: &'static str,
    body: &str,
    token_field: &str,
    client_cert_der: &[u8],
) -> anyhow::Result<Checked> {
    let mut conn = target
        .connect()
        .await
        .map_err(|e| anyhow!("connect: {}", e.0))?;
    let jwks = conn
        .send(empty(target.request(Method::GET, jwks_path)).map_err(|e| anyhow!(e.0))?)
        .await
        .map_err(|e| anyhow!(e.0))?;
    if jwks.status != StatusCode::OK {
        bail!("{jwks_path} answered {}", jwks.status);
    }
    let jwks: Value = serde_json::from_slice(&jwks.body).context("JWKS JSON")?;
    let req = with_body(
        target.request(Method::POST, token_path),
        content_type,
        Bytes::from(body.to_owned()),
    )
    .map_err(|e| anyhow!(e.0))?;
    let reply = conn.send(req).await.map_err(|e| anyhow!(e.0))?;
    if reply.status != StatusCode::OK {
        bail!(
            "{token_path} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    let answer: Value = serde_json::from_slice(&reply.body).context("token response JSON")?;
    let jwt = answer[token_field]
        .as_str()
        .with_context(|| format!("no {token_field} in {answer}"))?;
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a compact JWS");
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h)?)?;
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p)?)?;
    if header["alg"] != "ES256" {
        bail!("alg is {}", header["alg"]);
    }
    let kid = header["kid"].as_str().context("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .with_context(|| format!("kid {kid} not in the JWKS"))?;
    let coord = |c: &str| -> anyhow::Result<Vec<u8>> {
        Ok(URL_SAFE_NO_PAD.decode(jwk[c].as_str().with_context(|| format!("no {c}"))?)?)
    };
    let mut point = vec![4u8];
    point.extend(coord("x")?);
    point.extend(coord("y")?);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(format!("{h}.{p}").as_bytes(), &URL_SAFE_NO_PAD.decode(s)?)
        .map_err(|_| anyhow!("ES256 signature does not verify under the JWKS"))?;
    let want = URL_SAFE_NO_PAD.encode(Sha256::digest(client_cert_der));
    if payload["cnf"]["x5t#S256"] != want.as_str() {
        bail!(
            "cnf.x5t#S256 is {}, the client certificate's is {want}",
            payload["cnf"]
        );
    }
    Ok(Checked {
        typ: header["typ"].as_str().unwrap_or("").to_owned(),
        kid: kid.to_owned(),
        bytes: jwt.len(),
    })
}
