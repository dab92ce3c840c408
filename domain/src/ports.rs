//! What the core needs from the outside world. Adapters implement these traits.

use crate::{
    AccessClaims, AuthEvent, BucketState, ClientNetwork, EmailKey, FailureRecord, FamilyId, Mail,
    MailTokenHash, MailTokenPurpose, MailTokenRecord, Password, PasswordHash, RefreshTokenHash,
    RefreshTokenRecord, RefreshTokenSecret, Role, SessionLiveness, SessionPosition, SessionRecord,
    ThrottleKey, ThrottlePrefix, TokenRejection, User, UserFilter, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The backing store could not answer. Callers cannot fix this by changing their request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertUserError {
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Fails with `EmailTaken` when the normalized email is already registered; stores must
    /// enforce this atomically (a unique index), not by reading first.
    async fn insert(&self, user: &User) -> Result<(), InsertUserError>;
    async fn find_by_email(&self, email: &EmailKey) -> Result<Option<User>, StoreError>;
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// Replaces the password hash only while it is still `current` (a compare-and-swap), so an
    /// upgrade computed from an old hash never overwrites a password changed meanwhile.
    /// Returns whether it was replaced.
    async fn replace_password_hash(
        &self,
        id: UserId,
        current: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError>;
    /// Marks the account's address verified at `at`, if the account still has the address
    /// `email` (normalised). Returns whether it has (verified before or now).
    async fn mark_email_verified(
        &self,
        id: UserId,
        email: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Notes that a mailed link set the password in force at `at`, if the account's hash is
    /// still `hash` (a change after the reset wins). Returns whether it noted it.
    async fn mark_password_set_by_mailbox_owner(
        &self,
        id: UserId,
        hash: &PasswordHash,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Removes the account for good; its email may register again. Returns whether it existed.
    async fn delete(&self, id: UserId) -> Result<bool, StoreError>;
    /// Notes a login at `at` (`last_login_at`) and returns the account as it is now, in one
    /// round trip; `None` when it is gone.
    async fn note_login(&self, id: UserId, at: DateTime<Utc>) -> Result<Option<User>, StoreError>;
    /// Replaces the account's roles; returns the account as it is now, `None` when it is gone.
    async fn set_roles(&self, id: UserId, roles: &[Role]) -> Result<Option<User>, StoreError>;
    /// Disables the account at `at` (keeping the first time if it already was), or enables it
    /// (`None`); returns the account as it is now, `None` when it is gone.
    async fn set_disabled(
        &self,
        id: UserId,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<User>, StoreError>;
    /// Up to `limit` accounts matching `filter`, ordered by their lower-cased email, starting
    /// after the account whose lower-cased email is `after`. Paging by that key is stable
    /// while accounts come and go: no account present throughout is skipped or repeated.
    async fn list(
        &self,
        filter: &UserFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError>;
    /// Cheap round trip used by the readiness probe.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RefreshTokenRepository: Send + Sync {
    /// Idempotent: when a record with the same hash exists, it is kept as it is and returned
    /// (a successor is derived, not random, so a retry stores it again); `None` means `record`
    /// was stored.
    async fn insert(
        &self,
        record: &RefreshTokenRecord,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;
    async fn find_by_hash(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Compare-and-swap: marks the token rotated at `at` by the client network `by` (both kept
    /// together, as `rotated_at` and `rotated_by`), only if it was not rotated yet.
    /// Returns `true` for exactly one of any number of concurrent callers.
    async fn mark_rotated(
        &self,
        hash: &RefreshTokenHash,
        at: DateTime<Utc>,
        by: ClientNetwork,
    ) -> Result<bool, StoreError>;
    /// The user's tokens not exchanged yet: the newest link of each of their sessions' chains
    /// (a few more while a rotation is in flight). Their `issued_at` is when each session was
    /// last refreshed.
    async fn unexchanged_of_user(
        &self,
        user: UserId,
    ) -> Result<Vec<RefreshTokenRecord>, StoreError>;
    /// Forgets every token of the user (the account is being deleted).
    async fn delete_all_of_user(&self, user: UserId) -> Result<(), StoreError>;
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    async fn insert(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// The session, revoked or not; `None` once it is unknown or purged after expiry.
    async fn find(&self, id: FamilyId) -> Result<Option<SessionRecord>, StoreError>;
    /// Sets `revoked_at` if it is not set yet (revocation is permanent and keeps its first
    /// time). Returns `true` for the call that revoked it.
    async fn revoke(&self, id: FamilyId, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Moves the session's `last_used_at` to `at`, unless it is later already (a concurrent
    /// refresh wrote first). Unknown sessions are left alone.
    async fn note_use(&self, id: FamilyId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// How many of the user's sessions are live, counted by the store (nothing is read out).
    async fn count_active(&self, user: UserId, live: SessionLiveness) -> Result<u64, StoreError>;
    /// Up to `limit` of the user's live sessions, newest first (by `created_at`, then `id`,
    /// both descending), starting after `after`. Paging by that key is stable while sessions
    /// start and end: no session live throughout is skipped or listed twice.
    async fn list_active(
        &self,
        user: UserId,
        live: SessionLiveness,
        after: Option<SessionPosition>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// The ids of the user's live sessions past the `keep` most recently used ones (ranked by
    /// `last_used_at`, then `created_at`, then `id`, all descending), in that order: the first
    /// `limit` of them. Only ids are read.
    async fn least_recently_used_beyond(
        &self,
        user: UserId,
        live: SessionLiveness,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<FamilyId>, StoreError>;
    /// Revokes every session of the user not revoked yet, except `keep`, in one write.
    /// Returns how many it revoked.
    async fn revoke_all_of_user(
        &self,
        user: UserId,
        at: DateTime<Utc>,
        keep: Option<FamilyId>,
    ) -> Result<u64, StoreError>;
    /// Forgets every session of the user (the account is being deleted): their tokens stop
    /// working as if revoked.
    async fn delete_all_of_user(&self, user: UserId) -> Result<(), StoreError>;
}

/// Tokens of mailed links. At most one per user and purpose exists: issuing one discards the
/// one before, so only the newest link works.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait MailTokenRepository: Send + Sync {
    async fn issue(&self, record: &MailTokenRecord) -> Result<(), StoreError>;
    /// The token of `purpose` with this hash, unless expired at `now`; left in place.
    async fn find(
        &self,
        hash: &MailTokenHash,
        purpose: MailTokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError>;
    /// Removes and returns the token, unless it is unknown, of another purpose or expired at
    /// `now`. Atomic: of concurrent callers with one token, exactly one gets it.
    async fn consume(
        &self,
        hash: &MailTokenHash,
        purpose: MailTokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError>;
    /// Stores `record` again after its use failed, unless the user has a token of its purpose
    /// by now (a newer mail's must keep working).
    async fn restore(&self, record: &MailTokenRecord) -> Result<(), StoreError>;
    /// Discards the user's token of `purpose`, if any (their password changed, or the account
    /// is going).
    async fn discard(&self, user: UserId, purpose: MailTokenPurpose) -> Result<(), StoreError>;
}

/// Where mails go. Delivery happens later, elsewhere: a slow or failing mail server is the
/// outbox's to log and retry, never a request's error.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Outbox: Send + Sync {
    fn enqueue(&self, mail: Mail);
}

/// Where the use cases report their authentication decisions (the audit log and the metrics).
/// Recording never fails a request and never waits on I/O.
pub trait AuthEvents: Send + Sync {
    fn record(&self, event: AuthEvent);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashingError {
    /// Every hashing worker is busy and the queue is full: shed load instead of queueing
    /// without bound. Retrying shortly may succeed.
    #[error("password hashing is overloaded")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError>;
    /// `Ok(false)` for a wrong password; `Err` only when the hash itself is unusable.
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, HashingError>;
    /// A valid hash of a random password with production parameters, verified against when
    /// no user matches so that response time does not reveal which emails are registered.
    fn dummy_hash(&self) -> PasswordHash;
    /// Whether `hash` was made with other parameters than new hashes get (a lower cost, say),
    /// so that it should be replaced when its password is next known.
    fn needs_rehash(&self, hash: &PasswordHash) -> bool;
}

/// Passwords known from breaches and "most common" lists.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait CommonPasswords: Send + Sync {
    /// `lowercase` is an NFKC-normalised password in lower case.
    fn contains(&self, lowercase: &str) -> bool;
}

/// Counters behind abuse defence. Shared by every instance on one store, so a budget is one
/// budget however many servers answer; records expire on their own (`forget_at`).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Failures under `key`, unless forgotten by `now`.
    async fn failures(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
    ) -> Result<Option<FailureRecord>, StoreError>;
    /// Adds one failure atomically (concurrent calls all count) and returns the new record;
    /// a record forgotten by `at` starts again from one.
    async fn record_failure(
        &self,
        key: &ThrottleKey,
        at: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<FailureRecord, StoreError>;
    async fn clear_failures(&self, key: &ThrottleKey) -> Result<(), StoreError>;
    /// Forgets every record whose key starts with `prefix`, whatever it holds (failures,
    /// notes, buckets). Records under other keys are untouched.
    async fn forget_with_prefix(&self, prefix: &ThrottlePrefix) -> Result<(), StoreError>;
    /// Notes `key` at `now` until `forget_at` (a later call moves it).
    async fn remember(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Whether `key` is noted and not forgotten by `now`.
    async fn remembers(&self, key: &ThrottleKey, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// A token bucket's state, unless forgotten by `now`.
    async fn bucket(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
    ) -> Result<Option<BucketState>, StoreError>;
    /// Compare-and-swap: stores `next` only if the state is still `expected` (`None`: absent
    /// or forgotten by `now`). Returns `true` for exactly one of concurrent callers that
    /// expected the same state.
    async fn replace_bucket(
        &self,
        key: &ThrottleKey,
        expected: Option<BucketState>,
        next: BucketState,
        now: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access token could not be signed: {0}")]
pub struct TokenSigningError(pub String);

#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait AccessTokenCodec: Send + Sync {
    fn encode(&self, claims: &AccessClaims) -> Result<String, TokenSigningError>;
    /// Time comes from the caller (a `Clock`), so expiry is testable.
    fn decode(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenRejection>;
}

/// Derives the refresh token that succeeds a presented one.
///
/// Deterministic (a keyed MAC of the presented secret), so every exchange of one token yields
/// the same successor: racing tabs, a client retrying after a lost response and a thief all
/// land on one chain, where reuse detection sees them, and retries store nothing new.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait SuccessorDerivation: Send + Sync {
    fn successor(&self, presented: &RefreshTokenSecret) -> RefreshTokenSecret;
}

#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait RandomSource: Send + Sync {
    /// 256 bits from a cryptographically secure generator.
    fn secret_bytes(&self) -> [u8; 32];
    /// A random (version 4) UUID for ids.
    fn uuid(&self) -> Uuid;
}
