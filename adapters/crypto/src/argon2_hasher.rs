use argon2::{
    password_hash::{rand_core::OsRng, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Params, Version,
};
use async_trait::async_trait;
use latchkey_domain::{
    ports::{HashingError, PasswordHasher},
    Password, PasswordHash,
};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Argon2id cost. `Default` is OWASP's recommendation (m=19 MiB, t=2, p=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How many hashes may run at once; the rest wait, so a login burst cannot occupy every
    /// blocking thread and memory stays bounded (memory_kib x this).
    pub max_concurrent: usize,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HasherSetupError {
    #[error("invalid argon2 parameters: {0}")]
    InvalidParams(String),
    #[error("argon2 max_concurrent must be at least 1")]
    NoConcurrency,
}

/// argon2id on tokio's blocking pool, behind a semaphore.
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy: PasswordHash,
}

impl Argon2Hasher {
    /// Computes the dummy hash once, with the same cost as real hashes.
    pub fn new(settings: Argon2Settings) -> Result<Self, HasherSetupError> {
        if settings.max_concurrent == 0 {
            return Err(HasherSetupError::NoConcurrency);
        }
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HasherSetupError::InvalidParams(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_secret = SaltString::generate(&mut OsRng);
        let dummy = hash_blocking(&argon2, dummy_secret.as_str())
            .map_err(|e| HasherSetupError::InvalidParams(e.0))?;
        Ok(Self {
            argon2,
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            dummy,
        })
    }

    async fn run_blocking<T, F>(&self, work: F) -> Result<T, HashingError>
    where
        T: Send + 'static,
        F: FnOnce(Argon2<'static>) -> Result<T, HashingError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashingError("hasher shut down".into()))?;
        let argon2 = self.argon2.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| work(argon2)))
            .await
            .map_err(|e| HashingError(format!("hashing task failed: {e}")))?
    }
}

fn hash_blocking(argon2: &Argon2<'_>, password: &str) -> Result<PasswordHash, HashingError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| PasswordHash::new(hash.to_string()))
        .map_err(|e| HashingError(e.to_string()))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError> {
        let password = SecretString::from(password.expose());
        self.run_blocking(move |argon2| hash_blocking(&argon2, password.expose_secret()))
            .await
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, HashingError> {
        let password = SecretString::from(password.expose());
        let phc = hash.as_str().to_owned();
        self.run_blocking(move |argon2| {
            let parsed = argon2::PasswordHash::new(&phc)
                .map_err(|e| HashingError(format!("stored hash is unreadable: {e}")))?;
            // The stored hash carries its own parameters, so raising the cost later keeps old
            // hashes verifiable.
            match argon2.verify_password(password.expose_secret().as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(e) => Err(HashingError(e.to_string())),
            }
        })
        .await
    }

    fn dummy_hash(&self) -> PasswordHash {
        self.dummy.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(Argon2Settings {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
        })
        .unwrap()
    }

    fn password(raw: &str) -> Password {
        Password::for_login(raw.into()).unwrap()
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify_only_the_right_password() {
        let hasher = cheap();
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
    async fn default_settings_are_owasps_and_the_dummy_hash_uses_them() {
        let hasher = Argon2Hasher::new(Argon2Settings::default()).unwrap();
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
    async fn a_corrupt_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = cheap();
        let err = hasher
            .verify(
                &password("x"),
                &PasswordHash::new("not a phc string".into()),
            )
            .await
            .unwrap_err();
        assert!(err.0.contains("unreadable"));
    }

    #[test]
    fn zero_concurrency_is_refused() {
        let settings = Argon2Settings {
            max_concurrent: 0,
            ..Argon2Settings::default()
        };
        assert!(matches!(
            Argon2Hasher::new(settings),
            Err(HasherSetupError::NoConcurrency)
        ));
    }
}
