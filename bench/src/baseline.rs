//! What this machine can do with argon2id alone: the ceiling for logins/s.

use anyhow::{anyhow, ensure, Context};
use argon2::{
    password_hash::SaltString, Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher,
    Version,
};
use std::time::{Duration, Instant};

/// The server's default `ARGON2_*` (OWASP's recommendation).
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

fn params() -> anyhow::Result<Params> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).context("argon2 parameters")
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params()?))
}

/// A PHC string like the ones the server stores.
pub fn phc_hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).context("salt")?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .context("hashing the baseline password")?;
    Ok(hash.to_string())
}

/// Verifies per second over `duration` with `threads` threads, each checking `password`
/// against `phc` in a loop.
///
/// Each thread keeps one argon2 memory buffer for all its verifications, so the baseline is
/// the hash cost alone, without allocator effects: the ceiling the server is held to, not a
/// figure it could beat by allocating better.
pub fn verifies_per_second(
    phc: &str,
    password: &str,
    threads: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| verify_loop(phc, password, start + duration)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a verify thread panicked")))
            })
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(counts.iter().sum::<u64>() as f64 / elapsed)
}

fn verify_loop(phc: &str, password: &str, deadline: Instant) -> anyhow::Result<u64> {
    let argon2 = argon2()?;
    let mut memory = vec![Block::default(); params()?.block_count()];
    let mut count = 0u64;
    // Checked after each verification, so every thread finishes the one it started.
    while Instant::now() < deadline {
        // Parse the PHC string every time, as a server verifying a stored hash does.
        let parsed = PasswordHash::new(phc).context("PHC string")?;
        let salt = parsed.salt.context("PHC string has no salt")?;
        let expected = parsed.hash.context("PHC string has no hash")?;
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).context("PHC salt")?;
        let mut out = vec![0u8; expected.len()];
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory)
            .context("argon2id")?;
        ensure!(
            out == expected.as_bytes(),
            "the baseline password does not verify against its own hash"
        );
        count += 1;
    }
    Ok(count)
}
