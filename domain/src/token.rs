use crate::{RefreshTokenHash, Role, UserId};
use chrono::{DateTime, Utc};
use std::fmt;
use uuid::Uuid;

/// One login's chain of refresh tokens. Every rotation stays in the family; reuse of a rotated
/// token revokes the whole family, which is the session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct FamilyId(Uuid);

impl FamilyId {
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a store knows about one refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: RefreshTokenHash,
    pub user_id: UserId,
    pub family_id: FamilyId,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Set once, by the first exchange of this token for a successor. Whether the token still
    /// works is decided by its session (see [`SessionRecord`]), never by this record alone.
    pub rotated_at: Option<DateTime<Utc>>,
}

impl RefreshTokenRecord {
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// One login: the single source of truth for whether its tokens still work.
///
/// Revocation is one write to this record, and every use of a refresh *or* access token reads
/// it, so a successor minted by a refresh that raced a logout is dead on arrival: there is no
/// window in which a revoked session comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: FamilyId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    /// Absolute end (`SESSION_MAX_AGE` after login), however often the session rotated.
    pub expires_at: DateTime<Utc>,
    /// Set once, when the session ended before its time (logout, reuse detected, ...).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Where the login came from, so that its owner can tell sessions apart.
    pub origin: SessionOrigin,
}

impl SessionRecord {
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// What a login said about itself: shown to the account's owner in their list of sessions.
/// Neither part is trusted for anything else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    /// The `User-Agent` header, cut to [`SessionOrigin::MAX_USER_AGENT_CHARS`], without
    /// control characters.
    pub user_agent: Option<String>,
    /// The client's address as the abuse defence sees it (an IPv6 client's /64).
    pub address: Option<String>,
}

impl SessionOrigin {
    pub const MAX_USER_AGENT_CHARS: usize = 256;

    /// Keeps what a person needs to recognise a device, and nothing that could break a page or
    /// a log line, nor fill the store.
    pub fn new(user_agent: Option<&str>, address: Option<String>) -> Self {
        let user_agent = user_agent
            .map(|raw| {
                raw.chars()
                    .filter(|c| !c.is_control())
                    .take(Self::MAX_USER_AGENT_CHARS)
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|ua| !ua.is_empty());
        Self {
            user_agent,
            address,
        }
    }
}

/// The claims latchkey puts in an access token. Issuer and audience belong to the codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    pub subject: UserId,
    pub roles: Vec<Role>,
    pub session: FamilyId,
    pub token_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why an access token was not accepted. All of them mean 401 to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("access token has expired")]
    Expired,
    #[error("access token is not valid yet")]
    NotYetValid,
    #[error("access token is invalid")]
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_user_agent_is_cut_and_cleaned() {
        let long = format!("Mozilla\u{0}\n{}", "x".repeat(1000));
        let origin = SessionOrigin::new(Some(&long), Some("203.0.113.7".into()));
        let ua = origin.user_agent.unwrap();
        assert_eq!(ua.chars().count(), SessionOrigin::MAX_USER_AGENT_CHARS);
        assert!(ua.starts_with("Mozillaxxx"));
        assert_eq!(SessionOrigin::new(Some(" \t "), None).user_agent, None);
        assert_eq!(SessionOrigin::new(None, None), SessionOrigin::default());
    }
}
