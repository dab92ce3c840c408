use crate::{ClientNetwork, RefreshTokenHash, Role, UserId};
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
    /// The client network that exchanged it, set with `rotated_at`. `None` while it is not
    /// rotated, and in tokens rotated by a release that did not record it.
    pub rotated_by: Option<ClientNetwork>,
}

impl RefreshTokenRecord {
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whether `client` may get the grace answer for this rotated token: it is the network that
    /// rotated it (tabs and retries of one client share it). A rotation recorded without its
    /// network (by an earlier release) admits any network, as every rotation did then.
    pub fn rotated_from(&self, client: ClientNetwork) -> bool {
        self.rotated_by.is_none_or(|by| by == client)
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
    /// When the session last got tokens: its login, then each refresh (never moved back).
    /// Its newest refresh token was issued then, so the session cannot go on once that token's
    /// lifetime has passed unused; and the sessions an account has too many of end by it,
    /// least recently used first.
    pub last_used_at: DateTime<Utc>,
    /// Where the login came from, so that its owner can tell sessions apart.
    pub origin: SessionOrigin,
}

impl SessionRecord {
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }

    /// Whether the session counts as live (see [`SessionLiveness`]).
    pub fn is_live(&self, live: SessionLiveness) -> bool {
        self.is_active_at(live.now) && self.last_used_at > live.used_after
    }
}

/// Which sessions count as live at `now`: neither revoked nor past their absolute end, and used
/// after `used_after` (`now` less the refresh-token lifetime). A session unused since then holds
/// nothing but a refresh token that expired unused: it cannot go on, whatever its end says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLiveness {
    pub now: DateTime<Utc>,
    pub used_after: DateTime<Utc>,
}

/// Where a page of an account's sessions ended. Sessions are listed newest first: by
/// `created_at`, then by `id`, both descending. Neither ever changes, so paging by this key is
/// stable while sessions start and end: none present throughout is skipped or listed twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPosition {
    pub created_at: DateTime<Utc>,
    pub id: FamilyId,
}

impl SessionPosition {
    pub fn of(session: &SessionRecord) -> Self {
        Self {
            created_at: session.created_at,
            id: session.id,
        }
    }

    /// Whether `session` is listed after this position.
    pub fn is_before(&self, session: &SessionRecord) -> bool {
        (session.created_at, session.id) < (self.created_at, self.id)
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

    #[test]
    fn a_session_is_live_until_revoked_ended_or_left_unused_for_a_refresh_token_lifetime() {
        let at = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(100);
        let session = SessionRecord {
            id: FamilyId::from_uuid(Uuid::nil()),
            user_id: UserId::from_uuid(Uuid::nil()),
            created_at: at - chrono::Duration::days(20),
            expires_at: at + chrono::Duration::days(10),
            revoked_at: None,
            last_used_at: at - chrono::Duration::days(13),
            origin: SessionOrigin::default(),
        };
        let live = |used_after| SessionLiveness {
            now: at,
            used_after,
        };
        assert!(session.is_live(live(at - chrono::Duration::days(14))));
        // Its newest refresh token was issued 13 days ago: with a 13-day lifetime, it expired.
        assert!(!session.is_live(live(at - chrono::Duration::days(13))));
        let revoked = SessionRecord {
            revoked_at: Some(at),
            ..session.clone()
        };
        assert!(!revoked.is_live(live(at - chrono::Duration::days(14))));
        let ended = SessionRecord {
            expires_at: at,
            ..session
        };
        assert!(!ended.is_live(live(at - chrono::Duration::days(14))));
    }

    #[test]
    fn sessions_are_listed_by_start_then_id_both_descending() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let session = |created_at, id: u8| SessionRecord {
            id: FamilyId::from_uuid(Uuid::from_bytes([id; 16])),
            user_id: UserId::from_uuid(Uuid::nil()),
            created_at,
            expires_at: created_at,
            revoked_at: None,
            last_used_at: created_at,
            origin: SessionOrigin::default(),
        };
        let position = SessionPosition::of(&session(at, 5));
        assert!(position.is_before(&session(at - chrono::Duration::milliseconds(1), 9)));
        assert!(position.is_before(&session(at, 4)));
        assert!(
            !position.is_before(&session(at, 5)),
            "not the page's own last"
        );
        assert!(!position.is_before(&session(at, 6)));
        assert!(!position.is_before(&session(at + chrono::Duration::milliseconds(1), 1)));
    }

    #[test]
    fn only_the_rotating_network_gets_grace_unless_the_rotation_did_not_record_one() {
        let here = ClientNetwork::of("192.0.2.1".parse().unwrap());
        let there = ClientNetwork::of("192.0.2.2".parse().unwrap());
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let mut record = RefreshTokenRecord {
            token_hash: crate::RefreshTokenSecret::from_random_bytes([1; 32]).hash(),
            user_id: UserId::from_uuid(Uuid::nil()),
            family_id: FamilyId::from_uuid(Uuid::nil()),
            issued_at: at,
            expires_at: at,
            rotated_at: Some(at),
            rotated_by: Some(here),
        };
        assert!(record.rotated_from(here));
        assert!(!record.rotated_from(there));
        assert!(!record.rotated_from(ClientNetwork::Unknown));
        record.rotated_by = None;
        assert!(record.rotated_from(there));
    }
}
