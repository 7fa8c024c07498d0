//! Password hashing and one-time tokens.
//!
//! argon2id runs on the blocking thread pool, never on the async workers, and a semaphore caps how many
//! hashes run at once: each takes ~19 MiB and tens of milliseconds of CPU, so a sign-in flood queues
//! instead of exhausting memory (as Rauthy does). Unknown emails are verified against a dummy hash so a
//! sign-in takes the same time whether or not the account exists.
//!
//! argon2's working memory is handed from hash to hash while they queue ([`BlockPool`]): under a sign-in
//! flood each hashing slot keeps one buffer, and a hash with nothing else waiting gives its buffer back
//! to the system at once. Allocating it for every hash meant the kernel mapping and zeroing 19 MiB each
//! time (freed memory goes straight back to the system, see `server::memory`): 27 ms of CPU per hash
//! instead of 18, measured with `nestegg measure-hash`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

impl HashCost {
    fn params(self) -> Result<Params, CryptoError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| CryptoError::Params(e.to_string()))
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

/// How long a spare working buffer is kept when no hash comes for it.
const POOL_IDLE: Duration = Duration::from_secs(2);

/// When a finished hash keeps its working buffer for the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// Only while another hash is running or waiting for a slot (the server): memory is held during a
    /// burst, when reusing it saves the most CPU, and not after it.
    WhileBusy,
    /// Always (`measure`, which hashes in a loop).
    Always,
}

/// argon2's working memory between hashes: at most one spare buffer per hashing slot (the semaphore
/// bounds how many are out at once), each the size the configured cost needs. Buffers of any other
/// size (verifying an old hash made at another cost) are allocated for that hash and dropped after.
///
/// A spare buffer is zeroed before it is kept: the blocks of a finished hash are derived from that
/// person's password, and would make checking guesses against it cheaper for anyone who could read the
/// process's memory. (Zeroing 19 MiB costs a fraction of a millisecond; a buffer not kept goes straight
/// back to the system, see `server::memory::return_freed_memory`.)
#[derive(Debug)]
struct BlockPool {
    blocks: usize,
    keep: Keep,
    /// Hashes asked for and not finished yet: running, or waiting for a slot.
    demand: AtomicUsize,
    spare: Mutex<Vec<(Instant, Vec<Block>)>>,
}

/// One hash's share of [`BlockPool::demand`], from asking for a slot until the hash is done (or the
/// request gave up waiting).
struct Demand(Arc<BlockPool>);

impl Demand {
    fn new(pool: &Arc<BlockPool>) -> Self {
        pool.demand.fetch_add(1, Ordering::SeqCst);
        Demand(pool.clone())
    }
}

impl Drop for Demand {
    fn drop(&mut self) {
        self.0.demand.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BlockPool {
    fn new(params: &Params, keep: Keep) -> Self {
        BlockPool {
            blocks: params.block_count(),
            keep,
            demand: AtomicUsize::new(0),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// A zeroed buffer of at least `blocks` (argon2 uses the first `blocks` of it). A smaller need
    /// (a hash stored at a lower cost, the padding of a failed check) gets a buffer of the current
    /// size too, as every other check does: a buffer of its own would cost other page faults and
    /// another give-back, a timing difference between the two kinds of failure.
    fn take(&self, blocks: usize) -> Vec<Block> {
        if blocks <= self.blocks
            && let Some((_, buffer)) = self.lock().pop()
        {
            return buffer;
        }
        vec![Block::default(); blocks.max(self.blocks)]
    }

    /// Called by a hash that still counts in `demand`: another one is waiting or running when more
    /// than this one counts.
    fn give_back(&self, buffer: Vec<Block>) {
        let wanted = match self.keep {
            Keep::Always => true,
            Keep::WhileBusy => self.demand.load(Ordering::SeqCst) > 1,
        };
        if wanted && buffer.len() == self.blocks {
            let mut buffer = buffer;
            buffer.fill(Block::default());
            // Last in, first out: the buffer used most recently is taken first, so under a light
            // load one buffer serves every hash and the others age out.
            self.lock().push((Instant::now(), buffer));
        } else {
            drop(buffer);
            crate::server::memory::return_freed_memory();
        }
    }

    /// Drops the buffers no hash has used for `idle`; returns how many are still kept.
    fn trim(&self, now: Instant, idle: Duration) -> usize {
        let (expired, kept) = {
            let mut spare = self.lock();
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *spare)
                .into_iter()
                .partition(|(returned, _)| now.saturating_duration_since(*returned) >= idle);
            *spare = kept;
            (expired, spare.len())
        };
        // Freed after the lock is released: giving 19 MiB back to the system is not instant.
        if !expired.is_empty() {
            drop(expired);
            crate::server::memory::return_freed_memory();
        }
        kept
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, Vec<Block>)>> {
        // A panic while holding this lock leaves nothing half-done (a push or a pop): carry on.
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One argon2 computation of `password` with `salt` (raw bytes) into `out`, in a pooled buffer.
fn compute(
    argon: &Argon2<'_>,
    pool: &BlockPool,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let mut buffer = pool.take(argon.params().block_count());
    let result = argon.hash_password_into_with_memory(password, salt, out, &mut buffer);
    pool.give_back(buffer);
    result.map_err(|_| CryptoError::Hash)
}

/// A new PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) for `password` at `params`.
fn hash_new(params: &Params, pool: &BlockPool, password: &[u8]) -> Result<String, CryptoError> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|_| CryptoError::Hash)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon, pool, password, raw_salt, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|_| CryptoError::Hash)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|_| CryptoError::Hash)?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against the PHC string `stored`, computed with the parameters recorded in it (so
/// hashes made at an older cost keep working); a correct one made with other parameters than `current`
/// asks for a rehash. Anything unreadable is a mismatch.
fn verify_stored(current: &Params, pool: &BlockPool, password: &[u8], stored: &str) -> Verified {
    let matches = || -> Option<Verified> {
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from)
            .ok()?;
        let params = Params::try_from(&parsed).ok()?;
        let expected = parsed.hash?;
        let mut salt_bytes = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt_bytes).ok()?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut computed = vec![0u8; expected.len()];
        compute(&argon, pool, password, salt, &mut computed).ok()?;
        // `Output`'s equality is constant-time.
        if Output::new(&computed).ok()? != expected {
            return None;
        }
        let rehash = algorithm != Algorithm::Argon2id
            || version != Version::V0x13
            || params.m_cost() != current.m_cost()
            || params.t_cost() != current.t_cost()
            || params.p_cost() != current.p_cost();
        Some(Verified::Yes { rehash })
    };
    matches().unwrap_or(Verified::No)
}

/// The extra argon2 work that brings a failed check against `stored` (a hash made at an older, cheaper
/// cost) up to the cost of one at `current`, as Django's `harden_runtime` does for PBKDF2. Without it,
/// once the cost is raised, a wrong password for an account not signed in to since answers faster than
/// one for an unknown address (checked against a dummy hash at the current cost): a hint that the
/// account exists. argon2's time is about proportional to memory × passes, lanes being computed one
/// after another here. `None` when `stored` costs as much or more (or cannot be read).
fn padding_for(current: &Params, stored: &str) -> Option<Params> {
    let parsed = PasswordHash::new(stored).ok()?;
    let old = Params::try_from(&parsed).ok()?;
    let work = |p: &Params| u64::from(p.m_cost()) * u64::from(p.t_cost());
    let deficit = work(current).checked_sub(work(&old))?;
    let memory = u64::from(current.m_cost());
    // A pass over less memory than the current cost's, if less than one pass is missing.
    let passes = deficit.div_ceil(memory);
    let min_memory = 8 * u64::from(current.p_cost());
    if deficit < min_memory {
        return None;
    }
    let memory = (deficit / passes).max(min_memory);
    Params::new(
        u32::try_from(memory).ok()?,
        u32::try_from(passes).ok()?,
        current.p_cost(),
        None,
    )
    .ok()
}

/// Spends the work of [`padding_for`] on a throwaway computation.
fn pad(params: Params, pool: &BlockPool) {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let _ = compute(&argon, pool, b"padding", b"padding salt", &mut out);
}

/// What one hash costs (`nestegg measure-hash`, bench/run.sh).
#[derive(Clone, Copy, Debug)]
pub struct HashTiming {
    /// CPU time per hash with nothing else running.
    pub alone: Duration,
    /// CPU time per hash while `threads` hashes run at once, as they do under a sign-in flood: they
    /// share the processor's caches and memory bandwidth, so each takes longer than alone.
    pub concurrent: Duration,
    pub threads: usize,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    pool: Arc<BlockPool>,
    dummy_hash: Arc<str>,
    /// Hashes computed (or verified) so far: a flood of oversized passwords must not move it.
    computed: Arc<AtomicU64>,
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
    /// `max_concurrent` hashes run at once; further callers wait their turn. Inside a Tokio runtime,
    /// also starts the task that gives idle working memory back (it ends with the last clone).
    pub fn new(cost: HashCost, max_concurrent: usize) -> Result<Self, CryptoError> {
        let params = cost.params()?;
        let pool = Arc::new(BlockPool::new(&params, Keep::WhileBusy));
        // A hash of a random value nobody knows, with the same cost as real ones.
        let dummy_hash = hash_new(&params, &pool, generate_token().as_bytes())?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(trim_idle(Arc::downgrade(&pool)));
        }
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            pool,
            dummy_hash: dummy_hash.into(),
            computed: Arc::default(),
        })
    }

    /// How many argon2 computations this hasher has started.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Waits for a hashing slot, counting as demand from the start (see [`BlockPool`]), and counts the
    /// hash about to be computed.
    async fn slot(&self) -> Result<(tokio::sync::OwnedSemaphorePermit, Demand), CryptoError> {
        let demand = Demand::new(&self.pool);
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CryptoError::Closed)?;
        self.computed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("password_hashes_total").increment(1);
        Ok((permit, demand))
    }

    /// CPU time of one hash at `cost`, computed the way the server computes it (a reused working
    /// buffer): `count` hashes on one thread, then `count` on each of `threads` threads at once. CPU
    /// time comes from the kernel's count for each thread where there is one (Linux), otherwise wall
    /// time. For capacity planning: the cores verify at most `threads` ÷ `concurrent` sign-ins a second.
    pub fn measure(cost: HashCost, count: u32, threads: usize) -> Result<HashTiming, CryptoError> {
        let params = cost.params()?;
        let count = count.max(1);
        let threads = threads.max(1);
        let run = |params: Params| -> Result<Duration, CryptoError> {
            let pool = BlockPool::new(&params, Keep::Always);
            // One untimed hash first: the first touch of the buffer is page faults, not hashing.
            hash_new(&params, &pool, b"warm up")?;
            let (cpu_before, wall) = (thread_cpu_time(), Instant::now());
            for _ in 0..count {
                hash_new(&params, &pool, b"measure this password")?;
            }
            Ok(match (cpu_before, thread_cpu_time()) {
                (Some(before), Some(after)) => after.saturating_sub(before),
                _ => wall.elapsed(),
            })
        };
        let alone = run(params.clone())? / count;
        let spent: Vec<Result<Duration, CryptoError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let params = params.clone();
                    scope.spawn(move || run(params))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(CryptoError::Hash)))
                .collect()
        });
        let mut total = Duration::ZERO;
        for spent in spent {
            total += spent?;
        }
        let hashes = f64::from(count) * threads as f64;
        Ok(HashTiming {
            alone,
            concurrent: total.div_f64(hashes),
            threads,
        })
    }

    pub async fn hash(&self, password: &str) -> Result<String, CryptoError> {
        // The permit moves into the blocking task: if the request is cancelled, the hash still runs to
        // the end and keeps its slot until then, so the cap really caps.
        let (permit, demand) = self.slot().await?;
        let params = self.params.clone();
        let pool = self.pool.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let (_permit, _demand) = (permit, demand);
            hash_new(&params, &pool, password.as_bytes())
        })
        .await
        .map_err(|_| CryptoError::Hash)?
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no account, so both
    /// paths cost the same: a failed check against a hash made at a cheaper cost is padded up to the
    /// current one ([`padding_for`]).
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verified, CryptoError> {
        let (permit, demand) = self.slot().await?;
        let known = stored.is_some();
        let stored = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let params = self.params.clone();
        let pool = self.pool.clone();
        let computed = self.computed.clone();
        tokio::task::spawn_blocking(move || {
            let (_permit, _demand) = (permit, demand);
            match verify_stored(&params, &pool, password.as_bytes(), &stored) {
                verified @ Verified::Yes { .. } if known => verified,
                _ => {
                    if let Some(padding) = padding_for(&params, &stored) {
                        computed.fetch_add(1, Ordering::Relaxed);
                        pad(padding, &pool);
                    }
                    Verified::No
                }
            }
        })
        .await
        .map_err(|_| CryptoError::Hash)
    }
}

/// Gives working buffers that no hash has used for [`POOL_IDLE`] back to the system, until the hasher
/// is dropped.
async fn trim_idle(pool: Weak<BlockPool>) {
    loop {
        tokio::time::sleep(POOL_IDLE / 2).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.trim(Instant::now(), POOL_IDLE);
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

    /// Twice the memory and passes of [`cheap`]: the cost raised.
    fn stronger() -> PasswordHasher {
        PasswordHasher::new(
            HashCost {
                memory_kib: 2048,
                iterations: 2,
                parallelism: 1,
            },
            1,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn changed_parameters_ask_for_a_rehash() {
        let old = cheap().hash("pw").await.unwrap();
        let stronger = stronger();
        assert_eq!(
            stronger.verify("pw", Some(&old)).await.unwrap(),
            Verified::Yes { rehash: true }
        );
    }

    #[test]
    fn a_cheaper_hash_is_padded_to_the_current_cost() {
        let params = |m, t| Params::new(m, t, 1, None).unwrap();
        let stored = |m, t| {
            hash_new(
                &params(m, t),
                &BlockPool::new(&params(m, t), Keep::Always),
                b"pw",
            )
            .unwrap()
        };
        let padding = |current: &Params, stored: &str| {
            padding_for(current, stored).map(|p| (p.m_cost(), p.t_cost(), p.p_cost()))
        };
        let current = params(4096, 2);
        // One pass short: one pass over the current memory.
        assert_eq!(padding(&current, &stored(4096, 1)), Some((4096, 1, 1)));
        // Less memory and fewer passes: the missing work, in as few passes as fit the memory.
        assert_eq!(padding(&current, &stored(1024, 1)), Some((3584, 2, 1)));
        assert_eq!(padding(&current, &stored(1024, 3)), Some((2560, 2, 1)));
        // As costly or costlier: nothing to make up.
        assert_eq!(padding(&current, &stored(4096, 2)), None);
        assert_eq!(padding(&current, &stored(8192, 2)), None);
        assert_eq!(padding(&current, &stored(2048, 4)), None);
        assert_eq!(padding(&current, "not a hash"), None);
    }

    #[tokio::test]
    async fn a_wrong_password_for_a_cheaper_hash_costs_a_current_one() {
        let old = cheap().hash("pw").await.unwrap();
        let stronger = stronger();
        let current = stronger.hash("pw").await.unwrap();
        let computed = |before| stronger.computed() - before;
        for (password, stored, work) in [
            ("wrong", Some(old.as_str()), 2),
            ("pw", Some(old.as_str()), 1),
            ("wrong", Some(current.as_str()), 1),
            ("wrong", None, 1),
        ] {
            let before = stronger.computed();
            stronger.verify(password, stored).await.unwrap();
            assert_eq!(computed(before), work, "{password} against {stored:?}");
        }
    }

    /// The pooled computation must agree with the argon2 crate's own PHC hashing and verifying, both
    /// ways: hashes stored before the pool existed keep working, and ours verify anywhere.
    #[tokio::test]
    async fn pooled_hashes_agree_with_the_standard_argon2_api() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = cheap();
        let standard = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let theirs = standard
            .hash_password(b"kept from before", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            hasher
                .verify("kept from before", Some(&theirs))
                .await
                .unwrap(),
            Verified::Yes { rehash: false }
        );
        assert_eq!(
            hasher
                .verify("kept from befor", Some(&theirs))
                .await
                .unwrap(),
            Verified::No
        );
        let ours = hasher.hash("made by the pool").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"made by the pool", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"made by the pool!", &parsed)
                .is_err()
        );
        // Other algorithms and versions are verified as recorded, and asked to move to argon2id v19.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"old style", &salt)
        .unwrap()
        .to_string();
        assert_eq!(
            hasher.verify("old style", Some(&argon2i)).await.unwrap(),
            Verified::Yes { rehash: true }
        );
        // A truncated or tampered string is a mismatch, never an error or a panic.
        for broken in [
            &ours[..ours.len() - 4],
            "$argon2id$v=19$m=1024,t=1,p=1$$",
            "",
        ] {
            assert_eq!(
                hasher
                    .verify("made by the pool", Some(broken))
                    .await
                    .unwrap(),
                Verified::No
            );
        }
    }

    /// Hashes computed one after another in the same (reused, zeroed) buffer are the argon2 crate's,
    /// for other output lengths and lane counts too.
    #[test]
    fn a_reused_buffer_gives_the_same_hashes() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let current = Params::new(1024, 1, 1, None).unwrap();
        let pool = BlockPool::new(&current, Keep::Always);
        for round in 0..3 {
            let password = format!("password number {round}");
            let ours = hash_new(&current, &pool, password.as_bytes()).unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                "round {round}"
            );
            assert_eq!(
                verify_stored(&current, &pool, password.as_bytes(), &ours),
                Verified::Yes { rehash: false }
            );
        }
        assert_eq!(
            pool.trim(Instant::now(), POOL_IDLE),
            1,
            "one buffer served them all"
        );
        for (lanes, output) in [(2, 32), (1, 64), (4, 16)] {
            let params = Params::new(1024, 2, lanes, Some(output)).unwrap();
            let salt = SaltString::generate(&mut OsRng);
            let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"other shapes", &salt)
                .unwrap()
                .to_string();
            assert_eq!(
                verify_stored(&current, &pool, b"other shapes", &theirs),
                Verified::Yes { rehash: true },
                "p={lanes}, {output}-byte output"
            );
            assert_eq!(
                verify_stored(&current, &pool, b"other shape", &theirs),
                Verified::No
            );
        }
    }

    #[tokio::test]
    async fn a_buffer_is_kept_only_while_another_hash_waits() {
        let hasher = cheap();
        let stored = hasher.hash("pw").await.unwrap();
        assert_eq!(
            hasher.pool.trim(Instant::now(), POOL_IDLE),
            0,
            "a lone hash keeps nothing"
        );
        let other = Demand::new(&hasher.pool);
        hasher.verify("pw", Some(&stored)).await.unwrap();
        assert_eq!(
            hasher.pool.trim(Instant::now(), POOL_IDLE),
            1,
            "kept for the hash that waits"
        );
        drop(other);
        hasher.verify("pw", Some(&stored)).await.unwrap();
        assert_eq!(
            hasher.pool.trim(Instant::now(), POOL_IDLE),
            0,
            "the last hash of a burst takes the spare and frees it"
        );
    }

    #[tokio::test]
    async fn a_request_that_gives_up_waiting_for_a_slot_stops_counting() {
        let hasher = PasswordHasher::new(
            HashCost {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            1,
        )
        .unwrap();
        let slot = hasher.permits.clone().acquire_owned().await.unwrap();
        let waiting = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.verify("pw", None).await })
        };
        let mut yields = 0;
        while hasher.pool.demand.load(Ordering::SeqCst) == 0 {
            yields += 1;
            assert!(yields < 10_000, "the verification never asked for a slot");
            tokio::task::yield_now().await;
        }
        waiting.abort();
        assert!(waiting.await.is_err(), "cancelled while waiting");
        assert_eq!(hasher.pool.demand.load(Ordering::SeqCst), 0);
        drop(slot);
        assert_eq!(
            hasher.verify("pw", None).await.unwrap(),
            Verified::No,
            "the slot is free again"
        );
        assert_eq!(hasher.pool.demand.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn working_memory_is_reused_and_given_back_when_idle() {
        let params = Params::new(1024, 1, 1, None).unwrap();
        let pool = Arc::new(BlockPool::new(&params, Keep::WhileBusy));
        // A hash with nothing else waiting gives its buffer back to the system.
        let alone = Demand::new(&pool);
        pool.give_back(pool.take(pool.blocks));
        assert_eq!(pool.trim(Instant::now(), POOL_IDLE), 0);
        drop(alone);
        // While another hash waits, the buffer is handed on.
        let (_this, _waiting) = (Demand::new(&pool), Demand::new(&pool));
        let first = pool.take(pool.blocks);
        let address = first.as_ptr();
        pool.give_back(first);
        let again = pool.take(pool.blocks);
        assert_eq!(again.as_ptr(), address, "the spare buffer is handed on");
        pool.give_back(again);
        // A buffer of another size (an old hash's cost) is not kept.
        pool.give_back(vec![Block::default(); 8]);
        let now = Instant::now();
        assert_eq!(pool.trim(now, POOL_IDLE), 1);
        assert_eq!(
            pool.trim(now + POOL_IDLE, POOL_IDLE),
            0,
            "idle buffers are dropped"
        );
    }

    #[test]
    fn measuring_reports_both_timings() {
        let cost = HashCost {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        // Enough hashes to span several scheduler ticks: a thread's CPU clock only moves at ticks.
        let timing = PasswordHasher::measure(cost, 60, 2).unwrap();
        assert_eq!(timing.threads, 2);
        assert!(timing.alone > Duration::ZERO && timing.concurrent > Duration::ZERO);
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
