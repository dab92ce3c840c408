//! Links sent by mail: what they carry, how they are stored, and the mails themselves.

use crate::{EmailAddress, MailTokenHash, MailTokenSecret, UserId};
use chrono::{DateTime, Utc};

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
