//! argon2id on a fixed pool of hashing threads with a bounded queue.
//!
//! Why not tokio's blocking pool: a request whose client disconnects drops its future, but a
//! `spawn_blocking` job keeps running, so abandoned logins could run any number of hashes at
//! once; and every freshly spawned thread allocates its own 19 MiB in its own malloc arena,
//! which the process keeps. Here a fixed number of workers each own one memory buffer for their
//! whole life, so hashing memory is `workers x memory` however the load looks. A job whose
//! requester went away is skipped before it starts; when the queue is full the caller is told at
//! once (`Overloaded`, a 503 with `Retry-After`) instead of waiting without bound.

use argon2::{
    password_hash::{rand_core::OsRng, Output, ParamsString, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use async_trait::async_trait;
use latchkey_domain::{
    ports::{HashingError, PasswordHasher},
    Password, PasswordHash,
};
use secrecy::{ExposeSecret, SecretString};
use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
    Arc, Mutex,
};
use tokio::sync::oneshot;

/// Argon2id cost and the pool that runs it (defaults: the bootstrap configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashing threads; each keeps `memory_kib` for its lifetime.
    pub workers: usize,
    /// Hash requests that may wait for a worker; beyond that, `Overloaded`.
    pub queue_capacity: usize,
}

/// Stored hashes carry their own cost (so raising it later keeps old hashes verifiable), but a
/// corrupt or hostile stored hash must not take the process's memory or pin a worker: refuse
/// costs beyond these.
/// A stored hash may cost up to this many times the configured cost (in memory, and in memory
/// x iterations), which leaves room to lower the cost later without locking anyone out.
const MAX_STORED_COST_FACTOR: u64 = 4;
const MAX_VERIFY_PARALLELISM: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum HasherSetupError {
    #[error("invalid argon2 parameters: {0}")]
    InvalidParams(String),
    #[error("the hashing pool needs at least one worker")]
    NoWorkers,
    #[error("could not start a hashing thread: {0}")]
    Spawn(String),
}

/// What the pool has done so far; for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashPoolStats {
    /// Workers hashing right now.
    pub busy: usize,
    /// The most workers ever hashing at the same moment.
    pub max_busy: usize,
    pub completed: u64,
    /// Jobs dropped unstarted because whoever asked had gone away.
    pub skipped_cancelled: u64,
    /// Requests refused because the queue was full.
    pub rejected: u64,
    /// Requests waiting for a worker right now.
    pub queued: usize,
}

#[derive(Default)]
struct Counters {
    busy: AtomicUsize,
    max_busy: AtomicUsize,
    completed: AtomicU64,
    skipped_cancelled: AtomicU64,
    rejected: AtomicU64,
    queued: AtomicUsize,
}

enum Work {
    Hash(SecretString),
    Verify(SecretString, String),
}

enum Outcome {
    Hashed(PasswordHash),
    Verified(bool),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Outcome, HashingError>>,
    span: tracing::Span,
}

pub struct Argon2Hasher {
    jobs: SyncSender<Job>,
    counters: Arc<Counters>,
    dummy: PasswordHash,
    /// What new hashes are made with.
    params: Params,
}

impl Argon2Hasher {
    /// Starts the workers and computes the dummy hash once, with the same cost as real hashes.
    pub fn new(settings: Argon2Settings) -> Result<Self, HasherSetupError> {
        if settings.workers == 0 {
            return Err(HasherSetupError::NoWorkers);
        }
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HasherSetupError::InvalidParams(e.to_string()))?;
        let mut memory = Vec::new();
        let dummy_secret = SaltString::generate(&mut OsRng);
        let dummy = hash(&params, dummy_secret.as_str(), &mut memory)
            .map_err(|e| HasherSetupError::InvalidParams(e.to_string()))?;
        drop(memory);
        let (jobs, queue) = sync_channel(settings.queue_capacity);
        let queue = Arc::new(Mutex::new(queue));
        let counters = Arc::new(Counters::default());
        for index in 0..settings.workers {
            let worker = Worker {
                queue: queue.clone(),
                counters: counters.clone(),
                params: params.clone(),
                memory: Vec::new(),
            };
            std::thread::Builder::new()
                .name(format!("latchkey-hash-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| HasherSetupError::Spawn(e.to_string()))?;
        }
        Ok(Self {
            jobs,
            counters,
            dummy,
            params,
        })
    }

    pub fn stats(&self) -> HashPoolStats {
        let c = &self.counters;
        HashPoolStats {
            busy: c.busy.load(Ordering::SeqCst),
            max_busy: c.max_busy.load(Ordering::SeqCst),
            completed: c.completed.load(Ordering::SeqCst),
            skipped_cancelled: c.skipped_cancelled.load(Ordering::SeqCst),
            rejected: c.rejected.load(Ordering::SeqCst),
            queued: c.queued.load(Ordering::SeqCst),
        }
    }

    async fn submit(&self, work: Work) -> Result<Outcome, HashingError> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            work,
            reply,
            span: tracing::Span::current(),
        };
        // Counted before it is sent, so a worker taking it at once never counts below zero.
        self.counters.queued.fetch_add(1, Ordering::SeqCst);
        let sent = self.jobs.try_send(job);
        if sent.is_err() {
            self.counters.queued.fetch_sub(1, Ordering::SeqCst);
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.rejected.fetch_add(1, Ordering::SeqCst);
                return Err(HashingError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(HashingError::Failed("the hashing pool has stopped".into()))
            }
        }
        outcome
            .await
            .map_err(|_| HashingError::Failed("a hashing worker stopped".into()))?
    }
}

struct Worker {
    queue: Arc<Mutex<Receiver<Job>>>,
    counters: Arc<Counters>,
    params: Params,
    /// Reused for every hash this worker computes, so its memory is allocated once.
    memory: Vec<Block>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let next = {
                let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                queue.recv()
            };
            // The sender is gone: the hasher was dropped.
            let Ok(job) = next else { return };
            self.counters.queued.fetch_sub(1, Ordering::SeqCst);
            if job.reply.is_closed() {
                self.counters
                    .skipped_cancelled
                    .fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let busy = self.counters.busy.fetch_add(1, Ordering::SeqCst) + 1;
            self.counters.max_busy.fetch_max(busy, Ordering::SeqCst);
            let work = job.work;
            // A panic must neither kill this worker (the pool would shrink for good) nor leave
            // the caller waiting.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job.span.in_scope(|| self.perform(work))
            }))
            .unwrap_or_else(|_| Err(failed("a hashing worker panicked")));
            self.release_oversized_memory();
            self.counters.busy.fetch_sub(1, Ordering::SeqCst);
            self.counters.completed.fetch_add(1, Ordering::SeqCst);
            let _ = job.reply.send(outcome);
        }
    }

    /// A stored hash with a higher cost than configured grew the buffer; give that back, so
    /// the steady state stays at `workers x memory`.
    fn release_oversized_memory(&mut self) {
        let configured = self.params.block_count();
        if self.memory.len() > configured {
            self.memory.truncate(configured);
            self.memory.shrink_to_fit();
        }
    }

    fn perform(&mut self, work: Work) -> Result<Outcome, HashingError> {
        match work {
            Work::Hash(password) => {
                hash(&self.params, password.expose_secret(), &mut self.memory).map(Outcome::Hashed)
            }
            Work::Verify(password, phc) => verify(
                &self.params,
                password.expose_secret(),
                &phc,
                &mut self.memory,
            )
            .map(Outcome::Verified),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> HashingError {
    HashingError::Failed(e.to_string())
}

/// The first `blocks` blocks of `memory`, growing it (once) when a cost needs more.
fn blocks(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

/// Argon2 of `password` and `salt` into `output`, in the worker's reused `memory`.
fn derive(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &str,
    salt: &[u8],
    output: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), HashingError> {
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            output,
            blocks(memory, params.block_count()),
        )
        .map_err(failed)
}

fn hash(
    params: &Params,
    password: &str,
    memory: &mut Vec<Block>,
) -> Result<PasswordHash, HashingError> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buffer)
        .map_err(failed)?;
    let mut output = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    derive(
        Algorithm::Argon2id,
        Version::V0x13,
        params,
        password,
        salt_bytes,
        &mut output,
        memory,
    )?;
    let phc = argon2::PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(failed)?),
    };
    Ok(PasswordHash::new(phc.to_string()))
}

/// Recomputes the stored hash with its own parameters (so raising the cost later keeps old
/// hashes verifiable) and compares in constant time (`Output`'s equality).
fn verify(
    configured: &Params,
    password: &str,
    phc: &str,
    memory: &mut Vec<Block>,
) -> Result<bool, HashingError> {
    let unreadable =
        |e: &dyn std::fmt::Display| HashingError::Failed(format!("stored hash is unreadable: {e}"));
    let parsed = argon2::PasswordHash::new(phc).map_err(|e| unreadable(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| unreadable(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| unreadable(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| unreadable(&e))?;
    let cost = |p: &Params| u64::from(p.m_cost()) * u64::from(p.t_cost());
    if u64::from(params.m_cost()) > MAX_STORED_COST_FACTOR * u64::from(configured.m_cost())
        || cost(&params) > MAX_STORED_COST_FACTOR * cost(configured)
        || params.p_cost() > MAX_VERIFY_PARALLELISM
    {
        return Err(unreadable(&"its cost is beyond what this server allows"));
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(unreadable(&"salt or hash missing"));
    };
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_buffer)
        .map_err(|e| unreadable(&e))?;
    let mut output = vec![0u8; expected.len()];
    derive(
        algorithm,
        version,
        &params,
        password,
        salt_bytes,
        &mut output,
        memory,
    )?;
    Ok(Output::new(&output).map_err(failed)? == expected)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError> {
        match self
            .submit(Work::Hash(SecretString::from(password.expose())))
            .await?
        {
            Outcome::Hashed(hash) => Ok(hash),
            Outcome::Verified(_) => Err(failed("hashing worker answered the wrong job")),
        }
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, HashingError> {
        let work = Work::Verify(
            SecretString::from(password.expose()),
            hash.as_str().to_owned(),
        );
        match self.submit(work).await? {
            Outcome::Verified(ok) => Ok(ok),
            Outcome::Hashed(_) => Err(failed("hashing worker answered the wrong job")),
        }
    }

    fn dummy_hash(&self) -> PasswordHash {
        self.dummy.clone()
    }

    /// Anything but argon2id v1.3 with today's memory, iterations, parallelism and output
    /// length. An unreadable hash is left alone: verifying it fails anyway.
    fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        let Ok(parsed) = argon2::PasswordHash::new(hash.as_str()) else {
            return false;
        };
        let Ok(stored) = Params::try_from(&parsed) else {
            return false;
        };
        let output_len = self
            .params
            .output_len()
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        parsed.algorithm != Algorithm::Argon2id.ident()
            || parsed.version != Some(Version::V0x13.into())
            || stored.m_cost() != self.params.m_cost()
            || stored.t_cost() != self.params.t_cost()
            || stored.p_cost() != self.params.p_cost()
            || parsed.hash.map(|h| h.len()) != Some(output_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher as _, PasswordVerifier as _};
    use std::time::Duration;

    /// OWASP's recommended cost, as the service runs by default.
    fn owasp() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            workers: 2,
            queue_capacity: 128,
        }
    }

    fn cheap(workers: usize, queue_capacity: usize) -> Argon2Hasher {
        Argon2Hasher::new(Argon2Settings {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            workers,
            queue_capacity,
        })
        .unwrap()
    }

    fn password(raw: &str) -> Password {
        Password::for_login(raw.into()).unwrap()
    }

    /// Expensive enough that jobs pile up behind a worker.
    fn slow(workers: usize, queue_capacity: usize) -> Argon2Hasher {
        Argon2Hasher::new(Argon2Settings {
            memory_kib: 8 * 1024,
            iterations: 3,
            parallelism: 1,
            workers,
            queue_capacity,
        })
        .unwrap()
    }

    async fn until_idle(hasher: &Argon2Hasher, jobs: u64) -> HashPoolStats {
        for _ in 0..600 {
            let stats = hasher.stats();
            if stats.completed + stats.skipped_cancelled >= jobs && stats.busy == 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the pool never went idle: {:?}", hasher.stats());
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify_only_the_right_password() {
        let hasher = cheap(2, 8);
        let first = hasher.hash(&password("correct horse")).await.unwrap();
        let second = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(first.as_str().starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
        assert_ne!(first, second, "each hash needs its own salt");
        assert!(hasher
            .verify(&password("correct horse"), &first)
            .await
            .unwrap());
        assert!(!hasher
            .verify(&password("correct horsf"), &first)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_reference_implementation() {
        let hasher = cheap(1, 8);
        let ours = hasher.hash(&password("correct horse")).await.unwrap();
        let parsed = argon2::PasswordHash::new(ours.as_str()).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        // A hash made elsewhere, with another cost, verifies here (its own parameters win).
        let params = Params::new(512, 2, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let theirs = PasswordHash::new(theirs);
        assert!(hasher
            .verify(&password("correct horse"), &theirs)
            .await
            .unwrap());
        assert!(!hasher.verify(&password("wrong"), &theirs).await.unwrap());
    }

    #[tokio::test]
    async fn default_settings_are_owasps_and_the_dummy_hash_uses_them() {
        let hasher = Argon2Hasher::new(owasp()).unwrap();
        assert!(hasher
            .dummy_hash()
            .as_str()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!hasher
            .verify(&password("anything"), &hasher.dummy_hash())
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_corrupt_or_oversized_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = cheap(1, 8);
        for stored in [
            "not a phc string",
            "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=256,t=100000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=2048,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=256,t=1,p=255$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        ] {
            let err = hasher
                .verify(&password("x"), &PasswordHash::new(stored.into()))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, HashingError::Failed(m) if m.contains("unreadable")),
                "{stored}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_instead_of_waiting() {
        let hasher = Arc::new(slow(1, 1));
        let mut results = Vec::new();
        for request in spawn_verifies(&hasher, 4) {
            results.push(request.await.unwrap());
        }
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(HashingError::Overloaded)))
            .count();
        assert!(
            refused >= 2,
            "one runs, one waits, the rest are refused: {results:?}"
        );
        let stats = hasher.stats();
        assert_eq!(stats.rejected, refused as u64);
        assert_eq!(
            stats.queued, 0,
            "nothing waits once every request is answered"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn abandoned_requests_never_run_more_hashes_than_there_are_workers() {
        let hasher = Arc::new(slow(2, 64));
        let requests = spawn_verifies(&hasher, 40);
        // Every client hangs up while its login waits (a dropped connection drops the future).
        tokio::time::sleep(Duration::from_millis(50)).await;
        for request in &requests {
            request.abort();
        }
        let stats = until_idle(&hasher, 40).await;
        assert!(stats.max_busy <= 2, "{stats:?}");
        assert!(
            stats.skipped_cancelled > 0,
            "queued jobs of departed clients are dropped unstarted: {stats:?}"
        );
        assert!(stats.completed < 40, "{stats:?}");
    }

    /// `count` logins verifying a wrong password against the dummy hash, each its own task.
    fn spawn_verifies(
        hasher: &Arc<Argon2Hasher>,
        count: usize,
    ) -> Vec<tokio::task::JoinHandle<Result<bool, HashingError>>> {
        (0..count)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher
                        .verify(&password("guess"), &hasher.dummy_hash())
                        .await
                })
            })
            .collect()
    }

    #[test]
    fn a_pool_without_workers_is_refused() {
        let settings = Argon2Settings {
            workers: 0,
            ..owasp()
        };
        assert!(matches!(
            Argon2Hasher::new(settings),
            Err(HasherSetupError::NoWorkers)
        ));
    }

    #[tokio::test]
    async fn a_hash_needs_redoing_exactly_when_its_parameters_differ_from_todays() {
        let today = cheap(1, 4);
        let current = today.hash(&password("pw")).await.unwrap();
        assert!(!today.needs_rehash(&current));
        let costlier = Argon2Hasher::new(Argon2Settings {
            memory_kib: 512,
            ..Argon2Settings {
                memory_kib: 256,
                iterations: 1,
                parallelism: 1,
                workers: 1,
                queue_capacity: 4,
            }
        })
        .unwrap();
        assert!(costlier.needs_rehash(&current));
        // The old hash still verifies under the new settings; only then is it replaced.
        assert!(costlier.verify(&password("pw"), &current).await.unwrap());
        let argon2i = argon2::Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(256, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(today.needs_rehash(&PasswordHash::new(argon2i)));
        assert!(!today.needs_rehash(&PasswordHash::new("not a hash".into())));
    }
}
