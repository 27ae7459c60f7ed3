//! Ceilings measured in the same run: in-process crypto rates of the primitives each scenario
//! needs (aws-lc-rs, as the gateway uses), and a trivial mTLS server returning a constant body
//! (what TLS + HTTP + this load generator allow at most).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair,
    KeyPair as _, UnparsedPublicKey,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

/// Operations per second of each primitive, on one thread and on every core at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CryptoRates {
    pub threads: usize,
    pub es256_sign_1: f64,
    pub es256_sign_all: f64,
    pub p256_verify_1: f64,
    pub p256_verify_all: f64,
    pub rsa2048_verify_1: f64,
    pub rsa2048_verify_all: f64,
    /// RSA-2048 PKCS#1 v1.5 sign: what the load generator spends per card login (the card's
    /// signature, made in-process).
    #[serde(default)]
    pub rsa2048_sign_1: f64,
    #[serde(default)]
    pub rsa2048_sign_all: f64,
    /// `card::verify::verify` of an HPKI-like login (see [`card_verify_rates`]).
    pub card_verify_1: f64,
    pub card_verify_all: f64,
}

/// Runs `op` in a loop for `time` on each of `threads` threads; total operations per second.
fn rate(
    threads: usize,
    time: Duration,
    op: Arc<dyn Fn() -> bool + Send + Sync>,
) -> anyhow::Result<f64> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let op = op.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < time {
                    for _ in 0..16 {
                        if !op() {
                            return None;
                        }
                    }
                    n += 16;
                }
                Some(n as f64 / start.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut total = 0.0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow!("crypto thread panicked"))?
            .ok_or_else(|| anyhow!("crypto operation failed"))?;
    }
    Ok(total)
}

/// Measures ES256 signing (token issuance), P-256 ECDSA verification of a DER signature (a
/// WebAuthn assertion) and RSA-2048 PKCS#1 v1.5 SHA-256 verification (a card signature and each
/// RSA certificate on its path), `time` per measurement.
pub fn crypto_rates(time: Duration) -> anyhow::Result<CryptoRates> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rng = SystemRandom::new();
    // A token-sized signing input (header.payload of a real token is ~600 bytes).
    let msg: Arc<Vec<u8>> = Arc::new((0..600u32).map(|i| (i % 251) as u8).collect());

    let es = Arc::new(
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow!("P-256 keygen"))?,
    );
    let sign: Arc<dyn Fn() -> bool + Send + Sync> = {
        let (es, msg, rng) = (es.clone(), msg.clone(), rng.clone());
        Arc::new(move || es.sign(&rng, &msg).is_ok())
    };

    let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|_| anyhow!("P-256 keygen"))?;
    let p256_sig = p256
        .sign(&rng, &msg)
        .map_err(|_| anyhow!("P-256 sign"))?
        .as_ref()
        .to_vec();
    let p256_pub = UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        p256.public_key().as_ref().to_vec(),
    );
    let p256_verify: Arc<dyn Fn() -> bool + Send + Sync> = {
        let msg = msg.clone();
        Arc::new(move || p256_pub.verify(&msg, &p256_sig).is_ok())
    };

    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow!("RSA keygen"))?;
    let mut rsa_sig = vec![0; rsa.public_modulus_len()];
    rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, &msg, &mut rsa_sig)
        .map_err(|_| anyhow!("RSA sign"))?;
    let rsa_pub = UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        rsa.public_key().as_ref().to_vec(),
    );
    let rsa_verify: Arc<dyn Fn() -> bool + Send + Sync> = {
        let msg = msg.clone();
        Arc::new(move || rsa_pub.verify(&msg, &rsa_sig).is_ok())
    };
    let rsa = Arc::new(rsa);
    let rsa_sign: Arc<dyn Fn() -> bool + Send + Sync> = {
        let (rsa, msg, rng) = (rsa.clone(), msg.clone(), rng.clone());
        Arc::new(move || {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, &msg, &mut sig)
                .is_ok()
        })
    };

    Ok(CryptoRates {
        threads,
        es256_sign_1: rate(1, time, sign.clone())?,
        es256_sign_all: rate(threads, time, sign)?,
        p256_verify_1: rate(1, time, p256_verify.clone())?,
        p256_verify_all: rate(threads, time, p256_verify)?,
        rsa2048_verify_1: rate(1, time, rsa_verify.clone())?,
        rsa2048_verify_all: rate(threads, time, rsa_verify)?,
        rsa2048_sign_1: rate(1, time, rsa_sign.clone())?,
        rsa2048_sign_all: rate(threads, time, rsa_sign)?,
        card_verify_1: 0.0,
        card_verify_all: 0.0,
    })
}

/// In-process rate of the whole card-login verification (`card::verify::verify`: canonical client
/// data, RSA-2048 signature, the `trust` crate's path from the anchor CA to the card with the CA's
/// CRL and policy check, key usage, HPKI hcRole) for the run's card PKI, the same anchor and card
/// shape the gateway
/// verifies in the card scenario; one thread and every core.
pub fn card_verify_rates(
    time: Duration,
    pki: &crate::setup::CardPki,
) -> anyhow::Result<(f64, f64)> {
    use card::CardKind;
    use card::verify::{Anchor, CardResponse, Expected, Policy, Revocation, TrustStore};

    let now = gateway::clock::Clock::now(&gateway::clock::SystemClock);
    let leaf = pki.cards.first().ok_or_else(|| anyhow!("no card"))?;
    let store = Arc::new(TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: pki.hpki.auth_ca().cert_der().to_vec(),
            revocation: Revocation::Crl(vec![pki.crl.clone()]),
            policies: card::verify::default_policies(CardKind::Hpki),
        }],
    ));
    let challenge = "q1Yk5d2M9Z8mB3nU7fW0aA";
    let origin = "https://localhost:8443";
    let client_data = card::ClientData::new(CardKind::Hpki, challenge, origin)?.to_bytes();
    let key = RsaKeyPair::from_pkcs8(&leaf.key_der).map_err(|_| anyhow!("card key"))?;
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        &client_data,
        &mut sig,
    )
    .map_err(|_| anyhow!("card sign"))?;
    let response = Arc::new(CardResponse {
        client_data,
        signature: sig,
        certificate: leaf.cert_der.clone(),
        chain: Vec::new(),
    });
    let challenge_bytes = Arc::new(base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        challenge,
    )?);
    let policy = Arc::new(Policy::default());
    let op: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || {
        let expected = Expected {
            kind: CardKind::Hpki,
            challenge: &challenge_bytes,
            origin,
        };
        card::verify::verify(&response, &expected, &store, &policy, now).is_ok()
    });
    // Fail loudly if the fixture itself does not verify.
    if !op() {
        return Err(anyhow!("the bench card login does not verify"));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok((rate(1, time, op.clone())?, rate(threads, time, op)?))
}

/// Serves `GET *` → `200 ok` over mTLS (HTTP/1.1, keep-alive) until the process ends.
pub async fn trivial_server(
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let acceptor = TlsAcceptor::from(tls);
    println!("trivial server listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The card ceiling's fixture (real-shaped HPKI card under its authentication CA with a CRL)
    /// verifies; the full run measures it, the smoke run does not.
    #[test]
    fn the_card_ceiling_fixture_verifies() {
        let now = gateway::clock::Clock::now(&gateway::clock::SystemClock);
        let pki = crate::setup::CardPki::new(1, now).unwrap();
        let (one, all) = card_verify_rates(Duration::from_millis(50), &pki).unwrap();
        assert!(one > 0.0 && all > 0.0, "{one} {all}");
    }
}
