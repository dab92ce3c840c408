//! Mocks of every port, bundled so each test states only the expectations it cares about.

use crate::{AuthService, Ports, SessionPolicy};
use chrono::{DateTime, TimeZone, Utc};
use latchkey_domain::{
    ports::{
        MockAccessTokenCodec, MockClock, MockPasswordHasher, MockRandomSource,
        MockRefreshTokenRepository, MockSessionRepository, MockSuccessorDerivation,
        MockUserRepository,
    },
    EmailAddress, FamilyId, PasswordHash, RefreshTokenRecord, RefreshTokenSecret, Role,
    SessionRecord, User, UserId,
};
use std::sync::Arc;
use uuid::Uuid;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

pub fn fixed_uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

pub fn user(n: u8) -> User {
    User {
        id: UserId::from_uuid(fixed_uuid(n)),
        email: EmailAddress::parse(&format!("user{n}@example.com")).unwrap(),
        password_hash: PasswordHash::new(format!("$argon2id$user{n}")),
        roles: vec![Role::User],
        created_at: t0(),
    }
}

pub fn active_record(secret: &RefreshTokenSecret, owner: &User, family: u8) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: secret.hash(),
        user_id: owner.id,
        family_id: FamilyId::from_uuid(fixed_uuid(family)),
        issued_at: t0() - chrono::Duration::minutes(5),
        expires_at: t0() + chrono::Duration::days(1),
        rotated_at: None,
    }
}

pub fn family(n: u8) -> FamilyId {
    FamilyId::from_uuid(fixed_uuid(n))
}

/// A session of `owner` started a day before `t0`, ending 29 days after it.
pub fn active_session(owner: &User, family_n: u8) -> SessionRecord {
    SessionRecord {
        id: family(family_n),
        user_id: owner.id,
        created_at: t0() - chrono::Duration::days(1),
        expires_at: t0() + chrono::Duration::days(29),
        revoked_at: None,
    }
}

pub struct Mocks {
    pub users: MockUserRepository,
    pub refresh_tokens: MockRefreshTokenRepository,
    pub sessions: MockSessionRepository,
    pub hasher: MockPasswordHasher,
    pub access_tokens: MockAccessTokenCodec,
    pub clock: MockClock,
    pub random: MockRandomSource,
    pub successors: MockSuccessorDerivation,
}

/// The production defaults (see the bootstrap configuration), which the tests' numbers assume.
pub fn policy() -> SessionPolicy {
    SessionPolicy {
        access_token_ttl: chrono::Duration::hours(1),
        refresh_token_ttl: chrono::Duration::days(14),
        reuse_grace: chrono::Duration::seconds(10),
        session_max_age: chrono::Duration::days(30),
    }
}

impl Mocks {
    /// All mocks strict (an unexpected call fails the test), except the clock, frozen at `t0`.
    pub fn new() -> Self {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(t0());
        Self {
            users: MockUserRepository::new(),
            refresh_tokens: MockRefreshTokenRepository::new(),
            sessions: MockSessionRepository::new(),
            hasher: MockPasswordHasher::new(),
            access_tokens: MockAccessTokenCodec::new(),
            clock,
            random: MockRandomSource::new(),
            successors: MockSuccessorDerivation::new(),
        }
    }

    pub fn service(self) -> AuthService {
        self.service_with(policy())
    }

    pub fn service_with(self, policy: SessionPolicy) -> AuthService {
        AuthService::new(
            Ports {
                users: Arc::new(self.users),
                refresh_tokens: Arc::new(self.refresh_tokens),
                sessions: Arc::new(self.sessions),
                hasher: Arc::new(self.hasher),
                access_tokens: Arc::new(self.access_tokens),
                clock: Arc::new(self.clock),
                random: Arc::new(self.random),
                successors: Arc::new(self.successors),
            },
            policy,
        )
    }
}
