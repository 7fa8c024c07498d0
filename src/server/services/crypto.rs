//! Password hashing and one-time tokens.
//!
//! argon2id runs on the blocking thread pool, never on the async workers, and a semaphore caps how many
//! hashes run at once: each takes ~19 MiB and tens of milliseconds of CPU, so a sign-in flood queues
//! instead of exhausting memory (as Rauthy does). Unknown emails are verified against a dummy hash so a
//! sign-in takes the same time whether or not the account exists.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::server::config::SecretKey;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed")]
    Hash,
    #[error("the hashing pool is shut down")]
    Closed,
}

/// argon2id cost. OWASP's minimum (m=19456 KiB, t=2, p=1) is the floor for any configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Correct; `rehash` says the stored hash uses other parameters and should be replaced.
    Yes {
        rehash: bool,
    },
    No,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
    /// Hashes computed (or verified) so far: a flood of oversized passwords must not move it.
    computed: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// `max_concurrent` hashes run at once; further callers wait their turn.
    pub fn new(cost: HashCost, max_concurrent: usize) -> Result<Self, CryptoError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| CryptoError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // A hash of a random value nobody knows, with the same cost as real ones.
        let dummy_password = generate_token();
        let salt = SaltString::generate(&mut OsRng);
        let dummy_hash = argon
            .hash_password(dummy_password.as_bytes(), &salt)
            .map_err(|_| CryptoError::Hash)?
            .to_string();
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash: dummy_hash.into(),
            computed: Arc::default(),
        })
    }

    /// How many argon2 computations this hasher has started.
    pub fn computed(&self) -> u64 {
        self.computed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self) {
        self.computed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("password_hashes_total").increment(1);
    }

    fn argon(params: &Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
    }

    /// CPU time of one hash at `cost`, over `count` hashes on this thread (for capacity planning: one
    /// core verifies about 1 s ÷ this many sign-ins a second). CPU time comes from the kernel's count
    /// for this thread where there is one (Linux), otherwise wall time.
    pub fn measure(cost: HashCost, count: u32) -> Result<Duration, CryptoError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| CryptoError::Params(e.to_string()))?;
        let argon = Self::argon(&params);
        let salt = SaltString::generate(&mut OsRng);
        let count = count.max(1);
        let (cpu_before, wall) = (thread_cpu_time(), std::time::Instant::now());
        for _ in 0..count {
            argon
                .hash_password(b"measure this password", &salt)
                .map_err(|_| CryptoError::Hash)?;
        }
        let spent = match (cpu_before, thread_cpu_time()) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => wall.elapsed(),
        };
        Ok(spent / count)
    }

    pub async fn hash(&self, password: &str) -> Result<String, CryptoError> {
        // The permit moves into the blocking task: if the request is cancelled, the hash still runs to
        // the end and keeps its slot until then, so the cap really caps.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CryptoError::Closed)?;
        self.count();
        let params = self.params.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let salt = SaltString::generate(&mut OsRng);
            Self::argon(&params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| CryptoError::Hash)
        })
        .await
        .map_err(|_| CryptoError::Hash)?
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no account, so both
    /// paths cost the same.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verified, CryptoError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CryptoError::Closed)?;
        self.count();
        let known = stored.is_some();
        let stored = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verified::No;
            };
            // Verify with the parameters recorded in the hash itself (old hashes keep working).
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            if !ok || !known {
                return Verified::No;
            }
            let current = Params::try_from(&parsed).ok();
            let rehash = parsed.algorithm.as_str() != "argon2id"
                || current.is_none_or(|p| {
                    p.m_cost() != params.m_cost()
                        || p.t_cost() != params.t_cost()
                        || p.p_cost() != params.p_cost()
                });
            Verified::Yes { rehash }
        })
        .await
        .map_err(|_| CryptoError::Hash)
    }
}

/// 256 random bits, URL-safe: for links in emails.
/// This thread's CPU time so far (`/proc/thread-self/schedstat`, nanoseconds on the CPU).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

pub fn generate_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The keyed hash stored in place of a token (HMAC-SHA256 under `SECRET_KEY`, hex). Keyed, so a leaked
/// table cannot be brute-forced offline without the key either.
pub fn hash_token(key: &SecretKey, purpose: &str, token: &str) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key.expose()).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch cannot be reached.
        <Hmac<Sha256>>::new_from_slice(b"nestegg").unwrap_or_else(|_| unreachable!())
    });
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        // Tests only: the production floor is enforced by configuration.
        PasswordHasher::new(
            HashCost {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let hasher = cheap();
        let a = hasher.hash("correct horse").await.unwrap();
        let b = hasher.hash("correct horse").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert_ne!(a, b, "salted");
        assert_eq!(
            hasher.verify("correct horse", Some(&a)).await.unwrap(),
            Verified::Yes { rehash: false }
        );
        assert_eq!(
            hasher.verify("wrong horse", Some(&a)).await.unwrap(),
            Verified::No
        );
        assert_eq!(
            hasher.verify("correct horse", None).await.unwrap(),
            Verified::No
        );
        assert_eq!(
            hasher.verify("x", Some("not a hash")).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn changed_parameters_ask_for_a_rehash() {
        let old = cheap().hash("pw").await.unwrap();
        let stronger = PasswordHasher::new(
            HashCost {
                memory_kib: 2048,
                iterations: 2,
                parallelism: 1,
            },
            1,
        )
        .unwrap();
        assert_eq!(
            stronger.verify("pw", Some(&old)).await.unwrap(),
            Verified::Yes { rehash: true }
        );
    }

    #[test]
    fn default_cost_meets_the_owasp_floor() {
        let cost = HashCost::default();
        assert!(cost.memory_kib >= 19_456 && cost.iterations >= 2 && cost.parallelism >= 1);
    }

    #[test]
    fn tokens_have_256_bits_and_hash_with_key_and_purpose() {
        let t = generate_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, generate_token());
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let h = hash_token(&key, "verify_email", &t);
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash_token(&key, "verify_email", &t));
        assert_ne!(h, hash_token(&key, "reset_password", &t));
        assert_ne!(h, hash_token(&other, "verify_email", &t));
    }
}
