//! Upstream sign-in (docs/design.md §3.17): which clinics sign in through the EMR's OpenID Connect
//! provider, and the authorization requests in flight. A flow is taken with one
//! `DELETE … RETURNING`, so a replayed callback, on this or any other instance, finds nothing.

use super::cache::UpstreamLogin;
use super::{Backend, Error, Result, Store, User, gate_transaction, tx_execute, with_pool, with_reader, write_optional};

/// How the provider's claim finds the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum UpstreamMatch {
    /// `users.external_id` of the clinic (what SCIM sets from the EMR's `externalId`).
    ExternalId,
    /// The login ID, compared folded like the password form's.
    LoginId,
}

impl UpstreamMatch {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How the gateway authenticates to the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// In the form body.
    ClientSecretPost,
}

impl ClientAuthMethod {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A clinic's upstream login: its provider and client. The secret stays sealed here.
#[derive(Clone)]
pub struct ClinicLogin {
    /// The clinic.
    pub clinic_id: String,
    /// The provider's issuer identifier (exactly as its ID tokens say it).
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// The client secret sealed under the token KEK (see `crate::oidc::secret_kid`).
    pub sealed_secret: Vec<u8>,
    /// The ID token claim that names the user.
    pub claim: String,
    /// What the claim is compared with.
    pub match_on: UpstreamMatch,
    /// Space-separated scopes (with `openid`).
    pub scopes: String,
    /// Token endpoint authentication.
    pub auth_method: ClientAuthMethod,
}

impl std::fmt::Debug for ClinicLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClinicLogin")
            .field("clinic_id", &self.clinic_id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("claim", &self.claim)
            .field("match_on", &self.match_on)
            .finish_non_exhaustive()
    }
}

/// An authorization request to store.
#[derive(Debug)]
pub struct NewFlow<'a> {
    /// SHA-256 of `state`.
    pub state_hash: &'a [u8],
    /// SHA-256 of the flow cookie's value.
    pub browser_hash: &'a [u8],
    /// The clinic of the device.
    pub clinic_id: &'a str,
    /// Fingerprint of the clinic certificate.
    pub device: &'a str,
    /// The `nonce` sent.
    pub nonce: &'a str,
    /// The PKCE code verifier.
    pub pkce_verifier: &'a str,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A flow taken out of storage.
#[derive(Debug, Clone)]
pub struct TakenFlow {
    /// SHA-256 of the flow cookie's value.
    pub browser_hash: Vec<u8>,
    /// The clinic.
    pub clinic_id: String,
    /// The certificate fingerprint.
    pub device: String,
    /// The nonce.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
    /// Unix seconds; the caller refuses a flow with `expires_at <= now`.
    pub expires_at: i64,
}

type LoginRow = (String, String, String, Vec<u8>, String, String, String, String);

impl Store {
    /// Sets a clinic's upstream login (replacing an earlier one); `NotFound` without the clinic.
    /// Like every write of `clinic_logins`, it clears the gate cache, which holds each clinic's
    /// login (docs/decisions/0020-cached-gate-lookups.md).
    pub async fn set_clinic_login(&self, l: &ClinicLogin, now: i64) -> Result<()> {
        // The clinic first, for a clear answer (the foreign key would refuse it too).
        self.clinic(&l.clinic_id).await?;
        gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "INSERT INTO clinic_logins (clinic_id, issuer, client_id, client_secret, claim, match_on, scopes, auth_method, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (clinic_id) DO UPDATE SET issuer = excluded.issuer, client_id = excluded.client_id,
                    client_secret = excluded.client_secret, claim = excluded.claim, match_on = excluded.match_on,
                    scopes = excluded.scopes, auth_method = excluded.auth_method, updated_at = excluded.updated_at",
                &l.clinic_id,
                &l.issuer,
                &l.client_id,
                &l.sealed_secret,
                &l.claim,
                l.match_on.as_str(),
                &l.scopes,
                l.auth_method.as_str(),
                now,
            )
        })?;
        Ok(())
    }

    /// Back to embedded passwords; whether the clinic had an upstream login. `NotFound` without
    /// the clinic.
    pub async fn clear_clinic_login(&self, clinic_id: &str) -> Result<bool> {
        self.clinic(clinic_id).await?;
        let n = gate_transaction!(self, |tx| tx_execute!(tx, "DELETE FROM clinic_logins WHERE clinic_id = $1", clinic_id))?;
        Ok(n > 0)
    }

    /// The clinic's upstream login, `None` for embedded passwords. Every login page and password
    /// sign-in asks, so it is held in the gate cache, `None` included (the key is a registered
    /// clinic's, and every write of `clinic_logins` clears the cache).
    pub async fn clinic_login(&self, clinic_id: &str) -> Result<Option<ClinicLogin>> {
        let read = async {
            let row: Option<LoginRow> = with_reader!(self, |pool| {
                sqlx::query_as(
                    "SELECT clinic_id, issuer, client_id, client_secret, claim, match_on, scopes, auth_method
                     FROM clinic_logins WHERE clinic_id = $1",
                )
                .bind(clinic_id)
                .fetch_optional(pool)
                .await
            })?;
            Ok(UpstreamLogin(row.map(login_from_row).transpose()?))
        };
        Ok(self.cached(clinic_id, read).await?.0)
    }

    /// Every clinic's upstream login.
    pub async fn clinic_logins(&self) -> Result<Vec<ClinicLogin>> {
        let rows: Vec<LoginRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT clinic_id, issuer, client_id, client_secret, claim, match_on, scopes, auth_method
                 FROM clinic_logins ORDER BY clinic_id",
            )
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(login_from_row).collect()
    }

    /// Stores an authorization request.
    pub async fn put_oidc_flow(&self, f: &NewFlow<'_>, now: i64) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO oidc_flows (state_hash, browser_hash, clinic_id, device, nonce, pkce_verifier, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(f.state_hash)
            .bind(f.browser_hash)
            .bind(f.clinic_id)
            .bind(f.device)
            .bind(f.nonce)
            .bind(f.pkce_verifier)
            .bind(f.expires_at)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Takes (deletes and returns) the flow of `state_hash` in one statement; `None` if there
    /// is none, e.g. because it was taken before. Expiry and binding are checked by the caller
    /// *after* taking, so a callback that fails them uses the flow up too.
    pub async fn take_oidc_flow(&self, state_hash: &[u8]) -> Result<Option<TakenFlow>> {
        let row = write_optional!(
            self,
            (Vec<u8>, String, String, String, String, i64),
            "DELETE FROM oidc_flows WHERE state_hash = $1
             RETURNING browser_hash, clinic_id, device, nonce, pkce_verifier, expires_at",
            state_hash,
        )?;
        Ok(row.map(|(browser_hash, clinic_id, device, nonce, pkce_verifier, expires_at)| TakenFlow {
            browser_hash,
            clinic_id,
            device,
            nonce,
            pkce_verifier,
            expires_at,
        }))
    }

    /// Deletes flows that expired before `now`; returns how many.
    pub async fn purge_expired_oidc_flows(&self, now: i64) -> Result<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM oidc_flows WHERE expires_at <= $1").bind(now).execute(pool).await.map(|r| r.rows_affected())
        })?)
    }

    /// Number of stored flows (tests check that callbacks consume them).
    pub async fn count_oidc_flows(&self) -> Result<i64> {
        let (n,): (i64,) = with_reader!(self, |pool| sqlx::query_as("SELECT COUNT(*) FROM oidc_flows").fetch_one(pool).await)?;
        Ok(n)
    }

    /// The user of a clinic with this external id (the EMR's id; set by SCIM, or here).
    pub async fn user_by_external_id(&self, clinic_id: &str, external_id: &str) -> Result<User> {
        let (id,): (String,) = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id FROM users WHERE clinic_id = $1 AND external_id = $2")
                .bind(clinic_id)
                .bind(external_id)
                .fetch_one(pool)
                .await
        })?;
        self.user(&id).await
    }

    /// Sets (or clears) a user's external id; `NotFound` without the user, `Conflict` when another
    /// user of the clinic has it.
    pub async fn set_user_external_id(&self, user_id: &str, external_id: Option<&str>, now: i64) -> Result<()> {
        let n = with_pool!(self, |pool| {
            sqlx::query("UPDATE users SET external_id = $2, updated_at = $3 WHERE id = $1")
                .bind(user_id)
                .bind(external_id)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        if n == 0 { Err(Error::NotFound) } else { Ok(()) }
    }
}

fn login_from_row(r: LoginRow) -> Result<ClinicLogin> {
    let (clinic_id, issuer, client_id, sealed_secret, claim, match_on, scopes, auth_method) = r;
    Ok(ClinicLogin {
        clinic_id,
        issuer,
        client_id,
        sealed_secret,
        claim,
        match_on: match_on.parse().map_err(|_| super::corrupt("clinic_logins.match_on"))?,
        scopes,
        auth_method: auth_method.parse().map_err(|_| super::corrupt("clinic_logins.auth_method"))?,
    })
}
