//! One-time secrets: 256 random bits handed to a client once (a refresh token, the token in a
//! mailed link), of which stores keep only the SHA-256.
//!
//! A fast hash is enough (unlike passwords) because the secret already carries 256 bits of
//! entropy; looking up by digest also means the secret is never compared byte by byte. Each
//! kind is its own type, so a mailed link's hash can never be looked up as a refresh token's.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sha2::{Digest, Sha256};
use std::{fmt, marker::PhantomData};
use subtle::ConstantTimeEq;

/// What a secret is for; names it in `Debug` output.
pub trait SecretKind {
    const NAME: &'static str;
}

/// Refresh tokens.
pub enum RefreshToken {}
/// Tokens in mailed links.
pub enum MailToken {}

impl SecretKind for RefreshToken {
    const NAME: &'static str = "RefreshToken";
}

impl SecretKind for MailToken {
    const NAME: &'static str = "MailToken";
}

/// The secret as the client gets it. Never stored, never logged.
pub struct OneTimeSecret<K>(String, PhantomData<fn() -> K>);

/// Its SHA-256: what stores keep and look up by. Compared in constant time.
pub struct SecretHash<K>([u8; 32], PhantomData<fn() -> K>);

pub type RefreshTokenSecret = OneTimeSecret<RefreshToken>;
pub type RefreshTokenHash = SecretHash<RefreshToken>;
pub type MailTokenSecret = OneTimeSecret<MailToken>;
pub type MailTokenHash = SecretHash<MailToken>;

impl<K: SecretKind> OneTimeSecret<K> {
    /// Encodes 256 random bits for transport.
    pub fn from_random_bytes(bytes: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes), PhantomData)
    }

    /// Whatever a client sent back; an unknown value simply matches no stored hash.
    pub fn from_presented(raw: String) -> Self {
        Self(raw, PhantomData)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash<K> {
        SecretHash(Sha256::digest(self.0.as_bytes()).into(), PhantomData)
    }
}

impl<K: SecretKind> fmt::Debug for OneTimeSecret<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Secret([REDACTED])", K::NAME)
    }
}

impl<K: SecretKind> SecretHash<K> {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(raw: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(raw, &mut bytes).ok()?;
        Some(Self(bytes, PhantomData))
    }
}

impl<K> Clone for SecretHash<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for SecretHash<K> {}

impl<K> PartialEq for SecretHash<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl<K> Eq for SecretHash<K> {}

impl<K> std::hash::Hash for SecretHash<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl<K: SecretKind> fmt::Debug for SecretHash<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Hash({})", K::NAME, self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_encodes_all_256_bits_and_hashes_deterministically() {
        let secret = RefreshTokenSecret::from_random_bytes([7u8; 32]);
        assert_eq!(secret.expose().len(), 43);
        assert_eq!(
            secret.hash(),
            RefreshTokenSecret::from_presented(secret.expose().into()).hash()
        );
        assert_ne!(
            secret.hash(),
            RefreshTokenSecret::from_random_bytes([8u8; 32]).hash()
        );
    }

    #[test]
    fn hash_round_trips_through_hex() {
        let hash = RefreshTokenSecret::from_random_bytes([1u8; 32]).hash();
        assert_eq!(RefreshTokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(RefreshTokenHash::from_hex("zz"), None);
    }

    #[test]
    fn debug_output_names_the_kind_and_never_shows_the_secret() {
        let secret = RefreshTokenSecret::from_presented("abc-very-secret".into());
        assert_eq!(format!("{secret:?}"), "RefreshTokenSecret([REDACTED])");
        let link = MailTokenSecret::from_presented("abc-very-secret".into());
        assert_eq!(format!("{link:?}"), "MailTokenSecret([REDACTED])");
        assert!(format!("{:?}", link.hash()).starts_with("MailTokenHash("));
    }
}
