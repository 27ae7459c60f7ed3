//! Password hashing with argon2id (RFC 9106), run on the blocking pool so a login never stalls
//! the async workers. At most one hash per CPU runs at a time: each one holds its memory cost
//! (19 MiB by default), so a burst of logins must queue rather than multiply the process's memory.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

/// Hashes and verifies passwords with fixed argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// Bounds concurrent hashes (and so argon2's memory) to the number of CPUs.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// A hash of a random password, verified against when the login ID does not exist so that
    /// unknown and known IDs cost the same time.
    dummy: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish_non_exhaustive()
    }
}

/// Hashing failed (bad parameters or a corrupt stored hash).
#[derive(Debug, thiserror::Error)]
#[error("password hashing: {0}")]
pub struct HashError(String);

impl PasswordHasher {
    /// argon2id with `memory_kib` and `iterations`, one lane.
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| HashError(e.to_string()))?;
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(cpus));
        let mut hasher = Self { params, permits, dummy: String::new() };
        let random: [u8; 24] = rand::random();
        hasher.dummy = hasher.hash_blocking(&hex::encode(random))?;
        Ok(hasher)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes on the current thread (CLI use).
    pub fn hash_blocking(&self, password: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }

    /// Hashes on the blocking pool.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.hash_blocking(&password))
            .await
            .map_err(|e| HashError(e.to_string()))?
    }

    /// Verifies `password` against `stored`, or against a dummy hash when `stored` is `None`
    /// (and then always answers `false`). Runs on the blocking pool.
    pub async fn verify(&self, password: Zeroizing<String>, stored: Option<String>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let hash = stored.unwrap_or_else(|| this.dummy.clone());
            let parsed = PasswordHash::new(&hash).map_err(|e| HashError(e.to_string()))?;
            let ok = this.argon2().verify_password(password.as_bytes(), &parsed).is_ok();
            Ok(ok && known)
        })
        .await
        .map_err(|e| HashError(e.to_string()))?
    }
}
