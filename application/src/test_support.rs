//! Mocks of every port, bundled so each test states only the expectations it cares about.

use crate::{AbusePolicy, AuthService, MailPolicy, Policies, Ports, SessionPolicy};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use latchkey_domain::{
    ports::{
        AuthEvents, CommonPasswords, MailTokenRepository, MockAccessTokenCodec, MockClock,
        MockMailTokenRepository, MockOutbox, MockPasswordHasher, MockRandomSource,
        MockRefreshTokenRepository, MockSessionRepository, MockSuccessorDerivation,
        MockThrottleStore, MockUserRepository, Outbox, StoreError, ThrottleStore,
    },
    AuthEvent, Backoff, BucketState, EmailAddress, FailureRecord, FamilyId, Mail, MailTokenHash,
    MailTokenPurpose, MailTokenRecord, PasswordHash, PasswordPolicy, RefreshTokenRecord,
    RefreshTokenSecret, Role, SessionRecord, ThrottleKey, ThrottlePrefix, User, UserId,
};
use std::sync::{Arc, Mutex};
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
        roles: vec![Role::user()],
        created_at: t0(),
        email_verified_at: None,
        disabled_at: None,
        last_login_at: None,
        password_set_by_mailbox_owner_at: None,
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
        rotated_by: None,
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
        last_used_at: t0() - chrono::Duration::days(1),
        origin: Default::default(),
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
    /// `None`: a store that never throttles, for tests about something else.
    pub throttle: Option<MockThrottleStore>,
    pub abuse: AbusePolicy,
    /// `None`: links are stored and mails queued nowhere, for tests about something else.
    pub mail_tokens: Option<MockMailTokenRepository>,
    pub outbox: Option<MockOutbox>,
    pub mail: MailPolicy,
    /// Every event the use cases record, for tests to read after the call.
    pub events: RecordedEvents,
    pub admin_emails: Vec<latchkey_domain::EmailKey>,
}

/// The events a service recorded; clones share one list.
#[derive(Clone, Default)]
pub struct RecordedEvents(Arc<Mutex<Vec<AuthEvent>>>);

impl RecordedEvents {
    pub fn taken(&self) -> Vec<AuthEvent> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl AuthEvents for RecordedEvents {
    fn record(&self, event: AuthEvent) {
        self.0.lock().unwrap().push(event);
    }
}

/// The production defaults: links for 24 hours and 30 minutes, unverified logins allowed.
pub fn mail_policy() -> MailPolicy {
    MailPolicy {
        verify_link_ttl: chrono::Duration::hours(24),
        reset_link_ttl: chrono::Duration::minutes(30),
        require_verified_email: false,
    }
}

/// Keeps no link and sends no mail.
struct NoMail;

#[async_trait]
impl MailTokenRepository for NoMail {
    async fn issue(&self, _: &MailTokenRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn find(
        &self,
        _: &MailTokenHash,
        _: MailTokenPurpose,
        _: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError> {
        Ok(None)
    }
    async fn consume(
        &self,
        _: &MailTokenHash,
        _: MailTokenPurpose,
        _: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError> {
        Ok(None)
    }
    async fn restore(&self, _: &MailTokenRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn discard(&self, _: UserId, _: MailTokenPurpose) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Outbox for NoMail {
    fn enqueue(&self, _: Mail) {}
}

/// Login backoff as configured by default; no budgets (the tests that want one set it).
pub fn abuse_policy() -> AbusePolicy {
    AbusePolicy {
        login_from_network: Backoff {
            free_failures: 5,
            base_delay: chrono::Duration::seconds(1),
            max_delay: chrono::Duration::minutes(15),
        },
        login_account: Backoff {
            free_failures: 50,
            base_delay: chrono::Duration::seconds(1),
            max_delay: chrono::Duration::minutes(15),
        },
        forget_failures_after: chrono::Duration::hours(24),
        register: None,
        login: None,
        refresh: None,
        mail: None,
        mail_per_recipient: None,
    }
}

struct OnlyPassword123IsCommon;

impl CommonPasswords for OnlyPassword123IsCommon {
    fn contains(&self, lowercase: &str) -> bool {
        lowercase == "password123"
    }
}

pub fn password_policy() -> PasswordPolicy {
    PasswordPolicy {
        min_chars: 8,
        service_name: "latchkey".into(),
        common: Arc::new(OnlyPassword123IsCommon),
    }
}

/// Remembers nothing: every login is a first attempt, every budget full.
struct NeverThrottled;

#[async_trait]
impl ThrottleStore for NeverThrottled {
    async fn failures(
        &self,
        _: &ThrottleKey,
        _: DateTime<Utc>,
    ) -> Result<Option<FailureRecord>, StoreError> {
        Ok(None)
    }
    async fn record_failure(
        &self,
        _: &ThrottleKey,
        at: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<FailureRecord, StoreError> {
        Ok(FailureRecord {
            count: 1,
            last_failure_at: at,
        })
    }
    async fn clear_failures(&self, _: &ThrottleKey) -> Result<(), StoreError> {
        Ok(())
    }
    async fn forget_with_prefix(&self, _: &ThrottlePrefix) -> Result<(), StoreError> {
        Ok(())
    }
    async fn remember(
        &self,
        _: &ThrottleKey,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn remembers(&self, _: &ThrottleKey, _: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn bucket(
        &self,
        _: &ThrottleKey,
        _: DateTime<Utc>,
    ) -> Result<Option<BucketState>, StoreError> {
        Ok(None)
    }
    async fn replace_bucket(
        &self,
        _: &ThrottleKey,
        _: Option<BucketState>,
        _: BucketState,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// The production defaults (see the bootstrap configuration), which the tests' numbers assume.
pub fn policy() -> SessionPolicy {
    SessionPolicy {
        access_token_ttl: chrono::Duration::hours(1),
        refresh_token_ttl: chrono::Duration::days(14),
        reuse_grace: chrono::Duration::seconds(10),
        session_max_age: chrono::Duration::days(30),
        max_sessions_per_user: 100,
    }
}

impl Mocks {
    /// All mocks strict (an unexpected call fails the test), except the clock, frozen at `t0`,
    /// and the sessions' bookkeeping of logins and refreshes, for tests about something else:
    /// noting a refresh's use succeeds, and no account is past its session cap. Tests of those
    /// start from [`Mocks::sessions_strict`].
    pub fn new() -> Self {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(t0());
        let mut sessions = MockSessionRepository::new();
        sessions.expect_note_use().returning(|_, _| Ok(()));
        sessions
            .expect_least_recently_used_beyond()
            .returning(|_, _, _, _| Ok(Vec::new()));
        Self {
            users: MockUserRepository::new(),
            refresh_tokens: MockRefreshTokenRepository::new(),
            sessions,
            hasher: MockPasswordHasher::new(),
            access_tokens: MockAccessTokenCodec::new(),
            clock,
            random: MockRandomSource::new(),
            successors: MockSuccessorDerivation::new(),
            throttle: None,
            abuse: abuse_policy(),
            mail_tokens: None,
            outbox: None,
            mail: mail_policy(),
            events: RecordedEvents::default(),
            admin_emails: Vec::new(),
        }
    }

    /// Like [`Mocks::new`], with no session call expected at all.
    pub fn sessions_strict() -> Self {
        Self {
            sessions: MockSessionRepository::new(),
            ..Self::new()
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
                throttle: match self.throttle {
                    Some(mock) => Arc::new(mock),
                    None => Arc::new(NeverThrottled),
                },
                mail_tokens: match self.mail_tokens {
                    Some(mock) => Arc::new(mock),
                    None => Arc::new(NoMail),
                },
                outbox: match self.outbox {
                    Some(mock) => Arc::new(mock),
                    None => Arc::new(NoMail),
                },
                events: Arc::new(self.events),
            },
            Policies {
                session: policy,
                abuse: self.abuse,
                passwords: password_policy(),
                key_pepper: latchkey_domain::KeyPepper::new([3; 32]),
                mail: self.mail,
                admin_emails: self.admin_emails,
            },
        )
    }
}
