//! Links sent by mail: what they carry, how they are stored, and the mails themselves.

use crate::{EmailAddress, UserId};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// What a mailed link lets its holder do. A token of one purpose never works for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailTokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl MailTokenPurpose {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "verify_email" => Some(Self::VerifyEmail),
            "reset_password" => Some(Self::ResetPassword),
            _ => None,
        }
    }
}

/// The token in a mailed link, as the recipient gets it: 256 random bits. Never stored.
pub struct MailTokenSecret(String);

impl MailTokenSecret {
    pub fn from_random_bytes(bytes: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Whatever a client sent back; an unknown value matches no stored hash.
    pub fn from_presented(raw: String) -> Self {
        Self(raw)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> MailTokenHash {
        MailTokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for MailTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailTokenSecret([REDACTED])")
    }
}

/// SHA-256 of a mail token: what stores keep and look up by (as for refresh tokens, the
/// token's own entropy makes a fast hash enough).
#[derive(Clone, Copy, Debug, Eq)]
pub struct MailTokenHash([u8; 32]);

impl PartialEq for MailTokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for MailTokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl MailTokenHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(raw: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(raw, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

/// A mailed token as stored: bound to one user, one purpose and the address it was sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailTokenRecord {
    pub token_hash: MailTokenHash,
    pub user_id: UserId,
    pub purpose: MailTokenPurpose,
    /// The address the link went to: a verification proves this address, no other.
    pub email: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl MailTokenRecord {
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// A mail the core wants sent. How it reads (subject, text, HTML, links) is the mail
/// adapter's business; the core decides only who gets which link.
#[derive(Debug)]
pub enum Mail {
    /// Confirms that the address belongs to whoever registered it.
    VerifyEmail {
        to: EmailAddress,
        token: MailTokenSecret,
    },
    /// Lets the owner of the address choose a new password.
    ResetPassword {
        to: EmailAddress,
        token: MailTokenSecret,
    },
}

impl Mail {
    pub fn to(&self) -> &EmailAddress {
        match self {
            Self::VerifyEmail { to, .. } | Self::ResetPassword { to, .. } => to,
        }
    }

    pub fn purpose(&self) -> MailTokenPurpose {
        match self {
            Self::VerifyEmail { .. } => MailTokenPurpose::VerifyEmail,
            Self::ResetPassword { .. } => MailTokenPurpose::ResetPassword,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_token_carries_256_bits_and_is_stored_only_as_its_hash() {
        let token = MailTokenSecret::from_random_bytes([5; 32]);
        assert_eq!(token.expose().len(), 43);
        let hash = token.hash();
        assert_eq!(MailTokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert_ne!(hash.to_hex(), token.expose());
        assert_eq!(
            MailTokenSecret::from_presented(token.expose().into()).hash(),
            hash
        );
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn purposes_round_trip_through_their_names() {
        for purpose in [
            MailTokenPurpose::VerifyEmail,
            MailTokenPurpose::ResetPassword,
        ] {
            assert_eq!(MailTokenPurpose::parse(purpose.as_str()), Some(purpose));
        }
        assert_eq!(MailTokenPurpose::parse("login"), None);
    }
}
