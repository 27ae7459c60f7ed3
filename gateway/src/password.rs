//! Password hashing with argon2id (RFC 9106), run on the blocking pool so a login never stalls
//! the async workers. At most `login.password_hash_concurrency` hashes run at a time (by default
//! one per CPU the process may use): each one holds its memory cost (19 MiB by default), so a
//! burst of logins must queue rather than multiply the process's memory (decision 0014).
//!
//! Verification (every login) reuses argon2's working memory: one buffer per slot, allocated on
//! first use and kept. Allocating it per login let each allocator arena keep its own freed copy
//! (glibc raises its mmap threshold after the first large free), which grew the process by tens of
//! MiB during a burst of logins and never gave it back.
//!
//! Also the strength rule for passwords a person chooses ([`weakness`]): a length range, a list of
//! common passwords shipped with the product, the user's own login ID and name, and the `zxcvbn`
//! estimator (the Dropbox model of how attackers guess).

use std::sync::{Mutex, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use prometheus_client::metrics::counter::Counter;
use zeroize::Zeroizing;

/// Hashes and verifies passwords with fixed argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// Bounds concurrent hashes (and so argon2's memory) to the configured concurrency.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// A hash of a random password, verified against when the login ID does not exist so that
    /// unknown and known IDs cost the same time.
    dummy: String,
    /// argon2 working memory, at most one buffer per permit, reused by every verification.
    memory: std::sync::Arc<Mutex<Vec<Vec<Block>>>>,
    /// Number of permits, and so of buffers kept.
    slots: usize,
    /// Counts verifications actually run (the `password_verifications` metric): a login that
    /// is refused before its check does not move it, and an unknown login ID moves it exactly
    /// as a known one does.
    verifications: Counter,
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
    /// argon2id with `memory_kib` and `iterations`, one lane, one hash per CPU at a time
    /// ([`auto_concurrency`]).
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, HashError> {
        Self::with_concurrency(memory_kib, iterations, auto_concurrency())
    }

    /// argon2id with `memory_kib` and `iterations`, one lane, at most `concurrency` hashes at a
    /// time (and so at most `concurrency` working buffers of `memory_kib` kept). 0 is refused.
    pub fn with_concurrency(memory_kib: u32, iterations: u32, concurrency: usize) -> Result<Self, HashError> {
        if concurrency == 0 {
            return Err(HashError("the password hash concurrency must be at least 1".into()));
        }
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| HashError(e.to_string()))?;
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
        let memory = std::sync::Arc::new(Mutex::new(Vec::with_capacity(concurrency)));
        let mut hasher =
            Self { params, permits, dummy: String::new(), memory, slots: concurrency, verifications: Counter::default() };
        let random: [u8; 24] = rand::random();
        hasher.dummy = hasher.hash_blocking(&hex::encode(random))?;
        Ok(hasher)
    }

    /// How many hashes may run at once.
    pub fn concurrency(&self) -> usize {
        self.slots
    }

    /// Counts verifications on `counter` (shared with the metrics registry).
    #[must_use]
    pub fn counting(mut self, counter: Counter) -> Self {
        self.verifications = counter;
        self
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
            this.verifications.inc();
            let ok = this.verify_blocking(password.as_bytes(), &hash)?;
            Ok(ok && known)
        })
        .await
        .map_err(|e| HashError(e.to_string()))?
    }

    /// What the library's `PasswordVerifier` does (algorithm, version, parameters and salt from
    /// the stored PHC string; constant-time comparison of the output through [`Output`]'s
    /// `PartialEq`), but hashing into a reused buffer instead of a fresh allocation.
    fn verify_blocking(&self, password: &[u8], stored: &str) -> Result<bool, HashError> {
        let err = |e: &dyn std::fmt::Display| HashError(e.to_string());
        let parsed = PasswordHash::new(stored).map_err(|e| err(&e))?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(HashError("stored hash without salt or output".into()));
        };
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| err(&e))?;
        let version = parsed.version.map(Version::try_from).transpose().map_err(|e| err(&e))?.unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(|e| err(&e))?;
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).map_err(|e| err(&e))?;
        let mut out = Zeroizing::new(vec![0u8; expected.len()]);
        let blocks = params.block_count();
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password,
            salt,
            &mut out,
            &mut memory[..blocks],
        );
        {
            let mut pool = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < self.slots {
                pool.push(memory);
            }
        }
        result.map_err(|e| err(&e))?;
        let computed = Output::new(&out).map_err(|e| err(&e))?;
        Ok(computed == expected)
    }
}

/// One password hash per CPU this process may use: `std::thread::available_parallelism`, which
/// on Linux counts the affinity mask and the cgroup v1 and v2 CPU quota (rounded down, at least
/// 1), so it follows a container's CPU limit, not the node's CPUs (decision 0014). 2 when it
/// cannot tell.
pub fn auto_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// Passwords shipped with the product that are refused outright (gateway/data/README.md says
/// where the list comes from): lowercase, one per line.
const COMMON: &str = include_str!("../data/common-passwords.txt");

/// The common list as a set, built on first use.
static COMMON_SET: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| COMMON.lines().map(str::trim).filter(|l| !l.is_empty()).collect());

/// Words tied to this service that make a password guessable to anyone who knows where it is
/// used (ASVS 5.0 V6.1.2, V6.2.11): the product, what it does, and who uses it, in romaji, English
/// and Japanese. A password containing one (ignoring case and spaces) is refused; the callers add
/// the account's own login ID, name, 医籍番号 and clinic name.
pub const CONTEXT_WORDS: &[&str] = &[
    "ninsho", "ninshou", "gateway", "shohousen", "shohosen", "denshi", "prescription", "hpki", "mynumber", "clinic",
    "kurinikku", "hospital", "byouin", "iryou", "karte", "karute", "認証", "処方箋", "処方せん", "電子処方", "病院", "医院",
    "診療所", "クリニック", "カルテ", "マイナンバー",
];

/// Shortest and longest password accepted, in characters (NIST SP 800-63B §5.1.1.2: at least 8,
/// long passphrases allowed).
pub const LENGTH: std::ops::RangeInclusive<usize> = 8..=256;

/// The lowest `zxcvbn` score accepted: 3 means more than 10^8 guesses (the estimator's own advice:
/// anything below is too weak).
const MIN_SCORE: u8 = 3;

/// Why a chosen password is refused; each has a message in Japanese and English (`http::i18n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    /// Outside [`LENGTH`].
    Length,
    /// On the shipped list of common passwords (also with digits or symbols appended).
    Common,
    /// Contains the login ID, the name, the 医籍番号 or the clinic name.
    Personal,
    /// Contains a word of [`CONTEXT_WORDS`].
    Context,
    /// Too easy to guess for the estimator.
    Guessable,
}

impl Weakness {
    /// The reason in English, for the admin CLI (`http::i18n` has both languages for pages).
    pub fn reason(self) -> &'static str {
        match self {
            Weakness::Length => "password must be 8–256 characters",
            Weakness::Common => "password is on the list of common passwords",
            Weakness::Personal => "password must not contain the login ID or the name",
            Weakness::Context => "password must not contain the name of this service or what it is for (e.g. ninsho, clinic, 処方箋)",
            Weakness::Guessable => "password is too easy to guess: use a longer passphrase of unrelated words",
        }
    }
}

/// Checks a password a doctor or an operator chose; `personal` are the login ID, name and the
/// like, which it must not contain. `None`: strong enough.
pub fn weakness(password: &str, personal: &[&str]) -> Option<Weakness> {
    if !LENGTH.contains(&password.chars().count()) {
        return Some(Weakness::Length);
    }
    let lower = password.to_lowercase();
    // "Password123!" is as common as "password": strip what people append before looking it up.
    let stem = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    if COMMON_SET.contains(lower.as_str()) || COMMON_SET.contains(stem) {
        return Some(Weakness::Common);
    }
    let compact = |s: &str| s.to_lowercase().chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let lower_compact = compact(password);
    if personal.iter().map(|p| compact(p)).any(|p| p.chars().count() >= 3 && lower_compact.contains(&p)) {
        return Some(Weakness::Personal);
    }
    if CONTEXT_WORDS.iter().any(|w| lower_compact.contains(w)) {
        return Some(Weakness::Context);
    }
    if u8::from(zxcvbn::zxcvbn(password, personal).score()) < MIN_SCORE {
        return Some(Weakness::Guessable);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_owned())
    }

    #[tokio::test]
    async fn verifies_its_own_hashes_and_refuses_wrong_passwords() -> Result<(), HashError> {
        let h = PasswordHasher::new(1024, 1)?;
        let stored = h.hash(pw("正しいパスワード")).await?;
        assert!(stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{stored}");
        assert!(h.verify(pw("正しいパスワード"), Some(stored.clone())).await?);
        assert!(!h.verify(pw("正しいパスワーど"), Some(stored.clone())).await?);
        assert!(!h.verify(pw(""), Some(stored)).await?);
        // An unknown login ID never verifies, even with the dummy's own password unknown to us.
        assert!(!h.verify(pw("正しいパスワード"), None).await?);
        Ok(())
    }

    #[tokio::test]
    async fn verifies_hashes_made_by_the_library_with_other_parameters() -> Result<(), HashError> {
        let h = PasswordHasher::new(1024, 1)?;
        // Larger memory, more passes, two lanes and a 16-byte output: the buffer grows, and
        // everything is read from the stored string, as the library's own verifier would.
        for (m, t, p, len) in [(4096, 2, 2, Some(16)), (512, 3, 1, None), (8, 1, 1, Some(64))] {
            let params = Params::new(m, t, p, len).map_err(|e| HashError(e.to_string()))?;
            let salt = SaltString::generate(&mut OsRng);
            let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"secret", &salt)
                .map_err(|e| HashError(e.to_string()))?
                .to_string();
            assert!(h.verify(pw("secret"), Some(stored.clone())).await?, "{stored}");
            assert!(!h.verify(pw("Secret"), Some(stored)).await?);
        }
        // argon2i and argon2d hashes are checked with their own algorithm.
        for alg in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(256, 2, 1, None).map_err(|e| HashError(e.to_string()))?;
            let salt = SaltString::generate(&mut OsRng);
            let stored = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"secret", &salt)
                .map_err(|e| HashError(e.to_string()))?
                .to_string();
            assert!(h.verify(pw("secret"), Some(stored.clone())).await?);
            assert!(!h.verify(pw("secret!"), Some(stored)).await?);
        }
        Ok(())
    }

    #[tokio::test]
    async fn known_and_unknown_logins_each_run_one_verification() -> Result<(), HashError> {
        let counter = Counter::default();
        let h = PasswordHasher::new(1024, 1)?.counting(counter.clone());
        let stored = h.hash(pw("x")).await?;
        assert_eq!(counter.get(), 0, "hashing is not a verification");
        assert!(!h.verify(pw("y"), Some(stored)).await?);
        assert_eq!(counter.get(), 1);
        assert!(!h.verify(pw("y"), None).await?);
        assert_eq!(counter.get(), 2, "the dummy hash is verified like a stored one");
        Ok(())
    }

    #[tokio::test]
    async fn corrupt_stored_hashes_are_errors() -> Result<(), HashError> {
        let h = PasswordHasher::new(1024, 1)?;
        let stored = h.hash(pw("x")).await?;
        let no_output = stored.rsplit_once('$').map_or(String::new(), |(head, _)| head.to_owned());
        for bad in ["", "plain text", "$argon2id$v=19$m=1024,t=1,p=1", no_output.as_str(), "$scrypt$ln=16,r=8,p=1$c2FsdA$aGFzaA"] {
            assert!(h.verify(pw("x"), Some(bad.to_owned())).await.is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn working_memory_is_kept_once_per_permit() -> Result<(), HashError> {
        let h = PasswordHasher::new(1024, 1)?;
        let stored = h.hash(pw("x")).await?;
        let mut logins = Vec::new();
        for _ in 0..(4 * h.slots) {
            let h = h.clone();
            let stored = stored.clone();
            logins.push(tokio::spawn(async move { h.verify(pw("x"), Some(stored)).await }));
        }
        for l in logins {
            assert!(l.await.map_err(|e| HashError(e.to_string()))??);
        }
        let pool = h.memory.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(!pool.is_empty() && pool.len() <= h.slots, "{} buffers for {} permits", pool.len(), h.slots);
        assert!(pool.iter().all(|b| b.len() == 1024), "1 KiB blocks");
        Ok(())
    }

    #[tokio::test]
    async fn the_configured_concurrency_bounds_running_hashes_and_kept_buffers() -> Result<(), HashError> {
        assert!(PasswordHasher::with_concurrency(1024, 1, 0).is_err(), "0 slots would block every login");
        let h = PasswordHasher::with_concurrency(1024, 1, 3)?;
        assert_eq!(h.concurrency(), 3);
        let stored = h.hash(pw("x")).await?;
        // Hold two of the three permits: a third login still runs, a fourth would wait.
        let held = h.permits.clone().acquire_many_owned(2).await.map_err(|e| HashError(e.to_string()))?;
        assert!(h.verify(pw("x"), Some(stored.clone())).await?);
        assert_eq!(h.permits.available_permits(), 1);
        drop(held);
        let mut logins = Vec::new();
        for _ in 0..24 {
            let h = h.clone();
            let stored = stored.clone();
            logins.push(tokio::spawn(async move { h.verify(pw("x"), Some(stored)).await }));
        }
        for l in logins {
            assert!(l.await.map_err(|e| HashError(e.to_string()))??);
        }
        let pool = h.memory.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(!pool.is_empty() && pool.len() <= 3, "{} buffers for 3 slots", pool.len());
        assert_eq!(h.permits.available_permits(), 3);
        // The automatic default is the std count this process may use, never 0.
        assert_eq!(auto_concurrency(), std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get));
        assert!(PasswordHasher::new(1024, 1)?.concurrency() >= 1);
        Ok(())
    }

    #[test]
    fn weak_common_and_personal_passwords_are_refused_with_their_reason() {
        let me = ["doctor1", "山田 太郎"];
        assert_eq!(weakness("short", &me), Some(Weakness::Length));
        assert_eq!(weakness(&"x".repeat(257), &me), Some(Weakness::Length));
        assert_eq!(weakness("password", &me), Some(Weakness::Common));
        assert_eq!(weakness("Password123!", &me), Some(Weakness::Common));
        assert_eq!(weakness("baseball", &me), Some(Weakness::Common));
        assert_eq!(weakness("doctor1-Vaporous-Tundra", &me), Some(Weakness::Personal));
        assert_eq!(weakness("山田太郎の秘密のかぎ", &me), Some(Weakness::Personal));
        assert_eq!(weakness("abcdefgh1", &me), Some(Weakness::Guessable));
        assert_eq!(weakness("aaaaaaaaaaaa", &me), Some(Weakness::Guessable));
        assert_eq!(weakness("violet tundra of spoons", &me), None);
        assert_eq!(weakness("Tx7#qv9!Lm2@", &me), None);
        // No composition rule: lower case words alone, or any script, are fine when long enough.
        assert_eq!(weakness("月曜の朝は静かな図書館で紅茶", &me), None);
    }

    #[test]
    fn context_words_of_the_service_are_refused() {
        let me = ["doctor1", "山田 太郎", "123456", "ベンチマーク内科"];
        for p in ["Ninsho violet tundra", "my clinic tundra 47", "処方箋をもらう季節の午後", "violet SHOHOUSEN spoons", "hpki-lantern-fog-77"] {
            assert_eq!(weakness(p, &me), Some(Weakness::Context), "{p}");
        }
        assert_eq!(weakness("violet 123456 tundra", &me), Some(Weakness::Personal));
        assert_eq!(weakness("ベンチマーク内科の秘密のかぎ", &me), Some(Weakness::Personal));
        assert!(CONTEXT_WORDS.iter().all(|w| *w == w.to_lowercase() && !w.contains(' ')));
    }

    #[tokio::test]
    async fn long_passwords_are_accepted_and_checked_exactly_as_typed() -> Result<(), HashError> {
        // 64 and more characters are allowed (ASVS V6.2.9), up to LENGTH's end.
        let long = "Violet tundra of spoons, ".repeat(8);
        let long = long.trim_end();
        assert!(long.chars().count() > 190);
        assert_eq!(weakness(long, &[]), None);
        assert_eq!(weakness(&"静かな図書館".repeat(40), &[]), None, "240 characters of Japanese");
        // Verified as typed (ASVS V6.2.8): no truncation (bcrypt's 72 bytes), case folding,
        // trimming or normalisation.
        let h = PasswordHasher::new(1024, 1)?;
        let stored = h.hash(pw(long)).await?;
        assert!(h.verify(pw(long), Some(stored.clone())).await?);
        for other in [&long[..72], &long[..long.len() - 1], &long.to_lowercase(), &format!("{long} "), &format!(" {long}")] {
            assert!(!h.verify(pw(other), Some(stored.clone())).await?, "{other:?}");
        }
        // Full-width and half-width are different passwords.
        let stored = h.hash(pw("ＡＢＣ lantern tundra")).await?;
        assert!(!h.verify(pw("ABC lantern tundra"), Some(stored)).await?);
        Ok(())
    }

    #[test]
    fn the_common_list_is_shipped_and_lowercase() {
        assert!(COMMON_SET.len() >= 4000, "{}", COMMON_SET.len());
        assert!(COMMON_SET.iter().all(|p| *p == p.to_lowercase() && p.chars().count() >= 8));
    }
}
