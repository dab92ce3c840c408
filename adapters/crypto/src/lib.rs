//! Adapters for the domain's cryptographic and system ports.

mod argon2_hasher;
mod common_passwords;
mod jwt;
mod keys;
mod successor;
mod system;

pub use argon2_hasher::{Argon2Hasher, Argon2Settings, HashPoolStats, HasherSetupError};
pub use common_passwords::SecListsCommonPasswords;
pub use jwt::{JwtCodec, JwtKeys, JwtSettings};
pub use keys::{jwk_set, JwtAlgorithm, KeyError, SigningKey, VerifyingKey};
pub use successor::HmacSuccessors;
pub use system::{OsRandom, SystemClock};
