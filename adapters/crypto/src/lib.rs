//! Adapters for the domain's cryptographic and system ports.

mod argon2_hasher;
mod jwt;
mod system;

pub use argon2_hasher::{Argon2Hasher, Argon2Settings, HasherSetupError};
pub use jwt::{JwtCodec, JwtSettings};
pub use system::{OsRandom, SystemClock};
