//! In-memory repositories: the zero-setup default. Nothing survives a restart.
//!
//! Each operation takes one short lock, which gives the same atomicity the MongoDB adapter gets
//! from a unique index and a compare-and-swap update.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::{
    ports::{
        InsertUserError, MailTokenRepository, RefreshTokenRepository, SessionRepository,
        StoreError, ThrottleStore, UserRepository,
    },
    BucketState, EmailKey, FailureRecord, FamilyId, MailTokenHash, MailTokenPurpose,
    MailTokenRecord, PasswordHash, RefreshTokenHash, RefreshTokenRecord, Role, SessionLiveness,
    SessionPosition, SessionRecord, ThrottleKey, ThrottlePrefix, User, UserFilter, UserId,
};
use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// Expired records are dropped as new ones arrive (a stand-in for MongoDB's TTL index), but at
/// most once a minute: a scan on every insert would make each login cost O(stored records).
struct Purge {
    last: Mutex<Option<Instant>>,
}

impl Default for Purge {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }
}

impl Purge {
    const EVERY: Duration = Duration::from_secs(60);

    fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= Self::EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

#[derive(Default)]
pub struct InMemoryUsers {
    users: Mutex<HashMap<UserId, User>>,
}

impl InMemoryUsers {
    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, User>> {
        // A panic while holding the lock cannot leave a half-written map entry, so the data
        // is still consistent and serving it beats failing every later request.
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl UserRepository for InMemoryUsers {
    async fn insert(&self, user: &User) -> Result<(), InsertUserError> {
        let mut users = self.lock();
        let taken = users
            .values()
            .any(|u| u.email.normalized() == user.email.normalized());
        if taken || users.contains_key(&user.id) {
            return Err(InsertUserError::EmailTaken);
        }
        users.insert(user.id, user.clone());
        Ok(())
    }

    async fn find_by_email(&self, email: &EmailKey) -> Result<Option<User>, StoreError> {
        Ok(self
            .lock()
            .values()
            .find(|u| u.email.normalized() == email.as_str())
            .cloned())
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.lock().get(&id).cloned())
    }

    async fn replace_password_hash(
        &self,
        id: UserId,
        current: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        match self.lock().get_mut(&id) {
            Some(user) if user.password_hash == *current => {
                user.password_hash = new.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_email_verified(
        &self,
        id: UserId,
        email: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match self.lock().get_mut(&id) {
            Some(user) if user.email.normalized() == email => {
                user.email_verified_at.get_or_insert(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_password_set_by_mailbox_owner(
        &self,
        id: UserId,
        hash: &PasswordHash,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match self.lock().get_mut(&id) {
            Some(user) if user.password_hash == *hash => {
                user.password_set_by_mailbox_owner_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, id: UserId) -> Result<bool, StoreError> {
        Ok(self.lock().remove(&id).is_some())
    }

    async fn note_login(&self, id: UserId, at: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        Ok(self.lock().get_mut(&id).map(|user| {
            user.last_login_at = user.last_login_at.max(Some(at));
            user.clone()
        }))
    }

    async fn set_roles(&self, id: UserId, roles: &[Role]) -> Result<Option<User>, StoreError> {
        Ok(self.lock().get_mut(&id).map(|user| {
            user.roles = roles.to_vec();
            user.clone()
        }))
    }

    async fn set_disabled(
        &self,
        id: UserId,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<User>, StoreError> {
        Ok(self.lock().get_mut(&id).map(|user| {
            match at {
                Some(at) => {
                    user.disabled_at.get_or_insert(at);
                }
                None => user.disabled_at = None,
            }
            user.clone()
        }))
    }

    async fn list(
        &self,
        filter: &UserFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError> {
        let mut found: Vec<User> = self
            .lock()
            .values()
            .filter(|user| {
                after
                    .as_deref()
                    .is_none_or(|after| user.email.normalized() > after)
            })
            .filter(|user| filter.matches(user))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.email.normalized().cmp(b.email.normalized()));
        found.truncate(limit);
        Ok(found)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct InMemoryRefreshTokens {
    tokens: Mutex<HashMap<RefreshTokenHash, RefreshTokenRecord>>,
    purge: Purge,
}

impl InMemoryRefreshTokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<RefreshTokenHash, RefreshTokenRecord>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl RefreshTokenRepository for InMemoryRefreshTokens {
    async fn insert(
        &self,
        record: &RefreshTokenRecord,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let mut tokens = self.lock();
        // Stand-in for MongoDB's TTL index: expired tokens are dropped as new ones arrive, so
        // a long-running demo server does not grow without bound.
        if self.purge.due() {
            let now = Utc::now();
            tokens.retain(|_, t| !t.is_expired_at(now));
        }
        if let Some(existing) = tokens.get(&record.token_hash) {
            return Ok(Some(existing.clone()));
        }
        tokens.insert(record.token_hash, record.clone());
        Ok(None)
    }

    async fn find_by_hash(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        Ok(self.lock().get(hash).cloned())
    }

    async fn mark_rotated(
        &self,
        hash: &RefreshTokenHash,
        at: DateTime<Utc>,
        by: latchkey_domain::ClientNetwork,
    ) -> Result<bool, StoreError> {
        let mut tokens = self.lock();
        match tokens.get_mut(hash) {
            Some(t) if t.rotated_at.is_none() => {
                t.rotated_at = Some(at);
                t.rotated_by = Some(by);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn unexchanged_of_user(
        &self,
        user: UserId,
    ) -> Result<Vec<RefreshTokenRecord>, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter(|t| t.user_id == user && t.rotated_at.is_none())
            .cloned()
            .collect())
    }

    async fn delete_all_of_user(&self, user: UserId) -> Result<(), StoreError> {
        self.lock().retain(|_, t| t.user_id != user);
        Ok(())
    }
}

#[derive(Default)]
pub struct InMemorySessions {
    sessions: Mutex<HashMap<FamilyId, SessionRecord>>,
    purge: Purge,
}

impl InMemorySessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<FamilyId, SessionRecord>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SessionRepository for InMemorySessions {
    async fn insert(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let mut sessions = self.lock();
        if self.purge.due() {
            let now = Utc::now();
            sessions.retain(|_, s| now < s.expires_at);
        }
        sessions.insert(session.id, session.clone());
        Ok(())
    }

    async fn find(&self, id: FamilyId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.lock().get(&id).cloned())
    }

    async fn revoke(&self, id: FamilyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        match self.lock().get_mut(&id) {
            Some(s) if s.revoked_at.is_none() => {
                s.revoked_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn note_use(&self, id: FamilyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(session) = self.lock().get_mut(&id) {
            session.last_used_at = session.last_used_at.max(at);
        }
        Ok(())
    }

    async fn count_active(&self, user: UserId, live: SessionLiveness) -> Result<u64, StoreError> {
        let count = self
            .lock()
            .values()
            .filter(|s| s.user_id == user && s.is_live(live))
            .count();
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }

    async fn list_active(
        &self,
        user: UserId,
        live: SessionLiveness,
        after: Option<SessionPosition>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut active: Vec<_> = self
            .lock()
            .values()
            .filter(|s| s.user_id == user && s.is_live(live))
            .filter(|s| after.is_none_or(|position| position.is_before(s)))
            .cloned()
            .collect();
        active.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
        active.truncate(limit);
        Ok(active)
    }

    async fn least_recently_used_beyond(
        &self,
        user: UserId,
        live: SessionLiveness,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<FamilyId>, StoreError> {
        let mut active: Vec<_> = self
            .lock()
            .values()
            .filter(|s| s.user_id == user && s.is_live(live))
            .map(|s| (s.last_used_at, s.created_at, s.id))
            .collect();
        active.sort_by(|a, b| b.cmp(a));
        Ok(active
            .into_iter()
            .skip(keep)
            .take(limit)
            .map(|(_, _, id)| id)
            .collect())
    }

    async fn revoke_all_of_user(
        &self,
        user: UserId,
        at: DateTime<Utc>,
        keep: Option<FamilyId>,
    ) -> Result<u64, StoreError> {
        let mut revoked = 0;
        for session in self.lock().values_mut() {
            if session.user_id == user && session.revoked_at.is_none() && Some(session.id) != keep {
                session.revoked_at = Some(at);
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn delete_all_of_user(&self, user: UserId) -> Result<(), StoreError> {
        self.lock().retain(|_, s| s.user_id != user);
        Ok(())
    }
}

/// Mailed links' tokens: at most one per user and purpose.
#[derive(Default)]
pub struct InMemoryMailTokens {
    tokens: Mutex<HashMap<(UserId, MailTokenPurpose), MailTokenRecord>>,
    purge: Purge,
}

impl InMemoryMailTokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<(UserId, MailTokenPurpose), MailTokenRecord>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The key of the live token with this hash and purpose, if any.
fn live_token(
    tokens: &HashMap<(UserId, MailTokenPurpose), MailTokenRecord>,
    hash: &MailTokenHash,
    purpose: MailTokenPurpose,
    now: DateTime<Utc>,
) -> Option<(UserId, MailTokenPurpose)> {
    tokens
        .iter()
        .find(|(_, t)| t.token_hash == *hash && t.purpose == purpose && !t.is_expired_at(now))
        .map(|(key, _)| *key)
}

#[async_trait]
impl MailTokenRepository for InMemoryMailTokens {
    async fn issue(&self, record: &MailTokenRecord) -> Result<(), StoreError> {
        let mut tokens = self.lock();
        if self.purge.due() {
            let now = Utc::now();
            tokens.retain(|_, t| !t.is_expired_at(now));
        }
        tokens.insert((record.user_id, record.purpose), record.clone());
        Ok(())
    }

    async fn find(
        &self,
        hash: &MailTokenHash,
        purpose: MailTokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError> {
        let tokens = self.lock();
        Ok(live_token(&tokens, hash, purpose, now).and_then(|key| tokens.get(&key).cloned()))
    }

    async fn consume(
        &self,
        hash: &MailTokenHash,
        purpose: MailTokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError> {
        let mut tokens = self.lock();
        Ok(live_token(&tokens, hash, purpose, now).and_then(|key| tokens.remove(&key)))
    }

    async fn restore(&self, record: &MailTokenRecord) -> Result<(), StoreError> {
        self.lock()
            .entry((record.user_id, record.purpose))
            .or_insert_with(|| record.clone());
        Ok(())
    }

    async fn discard(&self, user: UserId, purpose: MailTokenPurpose) -> Result<(), StoreError> {
        self.lock().remove(&(user, purpose));
        Ok(())
    }
}

/// What the throttle keeps under one key; each key is used for one kind of record.
#[derive(Clone, Copy)]
enum Counter {
    Failures(FailureRecord),
    Bucket(BucketState),
    Noted,
}

type Counters = HashMap<ThrottleKey, (Counter, DateTime<Utc>)>;

/// At most this many entries (about 200 MB at worst); a flood of distinct networks and emails
/// then evicts, first what has expired, then counters (which only forgives), and notes of
/// known networks last. (MongoDB, the store for production, has no such cap.)
const MAX_COUNTERS: usize = 1_000_000;

pub struct InMemoryThrottle {
    counters: Mutex<Counters>,
    purge: Purge,
    capacity: usize,
}

impl Default for InMemoryThrottle {
    fn default() -> Self {
        Self::with_capacity(MAX_COUNTERS)
    }
}

impl InMemoryThrottle {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            counters: Mutex::default(),
            purge: Purge::default(),
            capacity: capacity.max(1),
        }
    }
}

/// Makes room for `key` in a full map: drops what has expired, and if that is not enough, a
/// tenth of the rest, so that a full map costs one scan per many inserts, not one per insert.
/// Counters go before notes of networks an account logged in from: dropping a counter only
/// forgives, dropping a note could hold an owner by the account's block.
fn make_room(counters: &mut Counters, capacity: usize, key: &ThrottleKey, now: DateTime<Utc>) {
    if counters.len() < capacity || counters.contains_key(key) {
        return;
    }
    counters.retain(|_, (_, forget_at)| now < *forget_at);
    if counters.len() < capacity {
        return;
    }
    let excess = counters.len() - (capacity - capacity.div_ceil(10));
    let mut victims: Vec<_> = counters
        .iter()
        .filter(|(_, (counter, _))| !matches!(counter, Counter::Noted))
        .map(|(key, _)| key.clone())
        .take(excess)
        .collect();
    if victims.len() < excess {
        let notes = counters
            .iter()
            .filter(|(_, (counter, _))| matches!(counter, Counter::Noted))
            .map(|(key, _)| key.clone())
            .take(excess - victims.len());
        victims.extend(notes.collect::<Vec<_>>());
    }
    for victim in victims {
        counters.remove(&victim);
    }
}

impl InMemoryThrottle {
    /// The live counters, forgotten ones dropped from time to time (the TTL index's job in
    /// MongoDB), so a flood of distinct addresses cannot grow the map for ever.
    fn lock(&self, now: DateTime<Utc>) -> MutexGuard<'_, Counters> {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.purge.due() {
            counters.retain(|_, (_, forget_at)| now < *forget_at);
        }
        counters
    }

    fn live(&self, key: &ThrottleKey, now: DateTime<Utc>) -> Option<Counter> {
        match self.lock(now).get(key) {
            Some((counter, forget_at)) if now < *forget_at => Some(*counter),
            _ => None,
        }
    }
}

#[async_trait]
impl ThrottleStore for InMemoryThrottle {
    async fn failures(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
    ) -> Result<Option<FailureRecord>, StoreError> {
        Ok(match self.live(key, now) {
            Some(Counter::Failures(record)) => Some(record),
            _ => None,
        })
    }

    async fn record_failure(
        &self,
        key: &ThrottleKey,
        at: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<FailureRecord, StoreError> {
        let mut counters = self.lock(at);
        let count = match counters.get(key) {
            Some((Counter::Failures(record), until)) if at < *until => {
                record.count.saturating_add(1)
            }
            _ => 1,
        };
        let record = FailureRecord {
            count,
            last_failure_at: at,
        };
        make_room(&mut counters, self.capacity, key, at);
        counters.insert(key.clone(), (Counter::Failures(record), forget_at));
        Ok(record)
    }

    async fn clear_failures(&self, key: &ThrottleKey) -> Result<(), StoreError> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
        Ok(())
    }

    /// One scan of the map: called once per password change or deletion, which spend a
    /// network's budget first.
    async fn forget_with_prefix(&self, prefix: &ThrottlePrefix) -> Result<(), StoreError> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|key, _| !prefix.covers(key));
        Ok(())
    }

    async fn remember(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut counters = self.lock(now);
        make_room(&mut counters, self.capacity, key, now);
        counters.insert(key.clone(), (Counter::Noted, forget_at));
        Ok(())
    }

    async fn remembers(&self, key: &ThrottleKey, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(matches!(self.live(key, now), Some(Counter::Noted)))
    }

    async fn bucket(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
    ) -> Result<Option<BucketState>, StoreError> {
        Ok(match self.live(key, now) {
            Some(Counter::Bucket(state)) => Some(state),
            _ => None,
        })
    }

    async fn replace_bucket(
        &self,
        key: &ThrottleKey,
        expected: Option<BucketState>,
        next: BucketState,
        now: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut counters = self.lock(now);
        let current = match counters.get(key) {
            Some((Counter::Bucket(state), until)) if now < *until => Some(*state),
            _ => None,
        };
        if current != expected {
            return Ok(false);
        }
        make_room(&mut counters, self.capacity, key, now);
        counters.insert(key.clone(), (Counter::Bucket(next), forget_at));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> ThrottleKey {
        ThrottleKey::budget(
            latchkey_domain::BudgetAction::Login,
            latchkey_domain::ClientNetwork::of(std::net::IpAddr::from(n.to_be_bytes())),
        )
    }

    #[test]
    fn a_full_throttle_map_drops_expired_counters_first_then_a_tenth_of_the_rest() {
        let now = Utc::now();
        let bucket = |forget_at| (Counter::Bucket(BucketState(1)), forget_at);
        let (expired, live) = (
            now - chrono::Duration::seconds(1),
            now + chrono::Duration::hours(1),
        );
        let mut counters = Counters::new();
        for n in 0..100 {
            counters.insert(key(n), bucket(if n % 2 == 0 { expired } else { live }));
        }
        make_room(&mut counters, 100, &key(1000), now);
        assert_eq!(counters.len(), 50, "only the expired half went");
        assert!(counters.values().all(|(_, forget_at)| *forget_at == live));
        for n in 100..150 {
            counters.insert(key(n), bucket(live));
        }
        make_room(&mut counters, 100, &key(1000), now);
        assert_eq!(counters.len(), 90);
        // A key already present needs no room.
        for n in 1000..1010 {
            counters.insert(key(n), bucket(live));
        }
        let present = counters.keys().next().cloned().unwrap();
        make_room(&mut counters, 100, &present, now);
        assert_eq!(counters.len(), 100);
    }

    #[test]
    fn notes_of_known_networks_go_last() {
        let now = Utc::now();
        let live = now + chrono::Duration::hours(1);
        let mut counters = Counters::new();
        for n in 0..10 {
            counters.insert(key(n), (Counter::Noted, live));
        }
        for n in 10..20 {
            counters.insert(key(n), (Counter::Bucket(BucketState(1)), live));
        }
        make_room(&mut counters, 20, &key(99), now);
        assert_eq!(counters.len(), 18);
        let notes = counters
            .values()
            .filter(|(counter, _)| matches!(counter, Counter::Noted))
            .count();
        assert_eq!(notes, 10);
    }

    #[tokio::test]
    async fn the_cap_holds_through_the_store_operations() {
        let throttle = InMemoryThrottle::with_capacity(10);
        let now = Utc::now();
        for n in 0..100 {
            throttle
                .record_failure(&key(n), now, now + chrono::Duration::hours(1))
                .await
                .unwrap();
        }
        let kept = throttle.counters.lock().unwrap().len();
        assert!(kept <= 10, "{kept}");
        // The newest is always kept.
        assert!(throttle.failures(&key(99), now).await.unwrap().is_some());
    }
}
