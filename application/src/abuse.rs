//! Budgets per network and backoff after failed logins, kept in the shared throttle store.

use crate::AuthService;
use chrono::{DateTime, Utc};
use governor::{
    clock::{Clock as _, FakeRelativeClock},
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{NotKeyed, StateStore},
    Quota, RateLimiter,
};
use latchkey_domain::{
    ports::StoreError, Backoff, BucketState, BudgetAction, ClientNetwork, EmailKey, FailureRecord,
    ThrottleKey, UserId,
};
use std::{cell::Cell, num::NonZeroU32, time::Duration};

/// A token bucket: `burst` requests at once, then one more every `replenish_every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub burst: NonZeroU32,
    pub replenish_every: Duration,
}

/// How hard guessing and flooding are made. `None` budgets are not enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbusePolicy {
    /// Failed logins to one account from one network.
    pub login_from_network: Backoff,
    /// Failed logins to one account from anywhere. Not applied on networks the account
    /// logged in from lately, so that guessing cannot lock the owner out of them.
    pub login_account: Backoff,
    /// A failure count is forgotten this long after its last failure.
    pub forget_failures_after: chrono::Duration,
    pub register: Option<Budget>,
    pub login: Option<Budget>,
    pub refresh: Option<Budget>,
    /// Requests for mailed links from one network.
    pub mail: Option<Budget>,
    /// Mails to one address, however many networks ask.
    pub mail_per_recipient: Option<Budget>,
}

impl AbusePolicy {
    fn budget(&self, action: BudgetAction) -> Option<Budget> {
        match action {
            BudgetAction::Register => self.register,
            BudgetAction::Login => self.login,
            BudgetAction::Refresh => self.refresh,
            BudgetAction::Mail => self.mail,
        }
    }
}

/// A request refused for now; `retry_after` says when trying again can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    #[error("too many requests from your network; retry in {} s", whole_seconds(*retry_after))]
    Budget { retry_after: Duration },
    #[error("too many failed logins; retry in {} s", whole_seconds(*retry_after))]
    LoginFailures { retry_after: Duration },
}

impl Throttled {
    /// For `Retry-After`: whole seconds, rounded up, at least one.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::Budget { retry_after } | Self::LoginFailures { retry_after } => {
                whole_seconds(*retry_after)
            }
        }
    }
}

fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Compare-and-swap rounds before a budget under contention counts as spent: losing this
/// often means many requests from one network at the same moment, which is what it limits.
const CONTENDED_ROUNDS: usize = 16;
/// What a request refused for contention (not for a spent budget) is told to wait.
const CONTENDED_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Buckets are kept this long past the moment they are full again, so a store whose clock
/// runs ahead of this instance's does not drop a live bucket.
const BUCKET_KEEP_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

impl AuthService {
    /// Takes one request from `client`'s budget for `action`, or says how long to wait.
    pub(crate) async fn spend<E>(
        &self,
        action: BudgetAction,
        client: ClientNetwork,
    ) -> Result<(), E>
    where
        E: From<Throttled> + From<StoreError>,
    {
        let Some(budget) = self.abuse.budget(action) else {
            return Ok(());
        };
        self.spend_from(
            &ThrottleKey::budget(action, client),
            budget,
            action.as_str(),
        )
        .await
    }

    /// Takes one request from the budget kept under `key`, or says how long to wait. `what`
    /// names the budget in the log.
    pub(crate) async fn spend_from<E>(
        &self,
        key: &ThrottleKey,
        budget: Budget,
        what: &'static str,
    ) -> Result<(), E>
    where
        E: From<Throttled> + From<StoreError>,
    {
        let quota = Quota::with_period(budget.replenish_every)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(budget.burst);
        for _ in 0..CONTENDED_ROUNDS {
            let now = self.ports.clock.now();
            let current = self.ports.throttle.bucket(key, now).await?;
            match gcra(quota, current, now) {
                Ok(next) => {
                    let forget_at = at_nanos(next.0) + BUCKET_KEEP_MARGIN;
                    if self
                        .ports
                        .throttle
                        .replace_bucket(key, current, next, now, forget_at)
                        .await?
                    {
                        return Ok(());
                    }
                }
                Err(retry_after) => {
                    tracing::info!(
                        budget = what,
                        key = key.as_str(),
                        retry_after_ms = retry_after.as_millis() as u64,
                        "budget spent; request refused with 429"
                    );
                    return Err(Throttled::Budget { retry_after }.into());
                }
            }
        }
        tracing::info!(
            budget = what,
            key = key.as_str(),
            "budget contended; request refused with 429"
        );
        Err(Throttled::Budget {
            retry_after: CONTENDED_RETRY_AFTER,
        }
        .into())
    }

    /// Counts this login attempt as a failure *before* its password is checked, or says how
    /// long it must wait. Counting first makes every attempt count, whatever happens next
    /// (a wrong password, a full hashing queue, a store error, a client hanging up), and lets
    /// one of any number of concurrent attempts through where one is due.
    ///
    /// Every failure counts for the account too (NIST's bound on consecutive failures holds
    /// however many networks guess), but a network the account logged in from lately is not
    /// held by the account's block: guessing from elsewhere cannot lock the owner out of the
    /// networks they use. Their own network's backoff still applies to everyone on it.
    pub(crate) async fn claim_login_attempt(
        &self,
        email: &EmailKey,
        client: ClientNetwork,
        now: DateTime<Utc>,
    ) -> Result<Result<LoginClaim, Duration>, StoreError> {
        let throttle = &self.ports.throttle;
        let (from_network, account) = (self.abuse.login_from_network, self.abuse.login_account);
        let pepper = &self.key_pepper;
        let network_key = ThrottleKey::login_from(email, client, pepper);
        let account_key = ThrottleKey::login_account(email, pepper);
        let known_key = ThrottleKey::login_succeeded_from(email, client, pepper);
        let network_seen = throttle.failures(&network_key, now).await?;
        let account_seen = throttle.failures(&account_key, now).await?;
        // Asked only when the account's count matters: one read saved on most logins.
        let mut known = None;
        let account_past_free = account_seen.is_some_and(|r| r.count >= account.free_failures);
        if account_past_free {
            known = Some(throttle.remembers(&known_key, now).await?);
        }
        let held_by_account = known == Some(false);
        let blocked_until = [
            network_seen.and_then(|r| from_network.blocked_until(&r, now)),
            account_seen
                .filter(|_| held_by_account)
                .and_then(|r| account.blocked_until(&r, now)),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(until) = blocked_until {
            return Ok(Err(wait_until(until, now)));
        }
        let forget_at = now + self.abuse.forget_failures_after;
        let counted = throttle
            .record_failure(&network_key, now, forget_at)
            .await?;
        if let Some(wait) = lost_race(from_network, network_seen, counted.count) {
            return Ok(Err(wait));
        }
        let counted = throttle
            .record_failure(&account_key, now, forget_at)
            .await?;
        if counted.count > account.free_failures && known.is_none() {
            known = Some(throttle.remembers(&known_key, now).await?);
        }
        if known != Some(true) {
            if let Some(wait) = lost_race(account, account_seen, counted.count) {
                return Ok(Err(wait));
            }
        }
        Ok(Ok(LoginClaim {
            counted_under: [network_key, account_key],
            known: known_key,
        }))
    }

    /// How long a network an account logged in from stays exempt from the account's block:
    /// longer than a session can last, so that an owner who logs in only when their session
    /// ends still finds the networks they use remembered.
    fn known_network_memory(&self) -> chrono::Duration {
        self.policy.session_max_age + chrono::Duration::days(30)
    }

    /// After the right password: the attempt was no failure, and earlier ones are forgiven.
    /// Best effort: a store error here must not turn a right password into an error.
    pub(crate) async fn forgive_login_failures(&self, claim: &LoginClaim) {
        let throttle = &self.ports.throttle;
        for key in &claim.counted_under {
            if let Err(error) = throttle.clear_failures(key).await {
                tracing::warn!(%error, "failed logins not cleared after the right password");
            }
        }
    }

    /// After a login that handed out tokens, and only then: the network is remembered as one
    /// the account uses. A right password refused after all (a disabled account, an address
    /// not verified) earns no such mark. Best effort, like forgiving.
    pub(crate) async fn remember_login_network(&self, claim: LoginClaim, now: DateTime<Utc>) {
        if let Err(error) = self
            .ports
            .throttle
            .remember(&claim.known, now, now + self.known_network_memory())
            .await
        {
            tracing::warn!(%error, "network of a successful login not remembered");
        }
    }

    /// Forgets what the account's password earned or cost: its failed logins (from anywhere
    /// and from each network) and the networks it logged in from. Called once its password
    /// changed (a change by the owner, a reset) or the account is gone, so that neither a
    /// block nor a "known network" outlives the password it was about. Best effort: the
    /// password has changed whatever happens here, so a store error is logged, not answered.
    pub(crate) async fn forget_account_throttling(&self, user: UserId, email: &EmailKey) {
        for prefix in ThrottleKey::account_prefixes(email, &self.key_pepper) {
            if let Err(error) = self.ports.throttle.forget_with_prefix(&prefix).await {
                tracing::warn!(user_id = %user, %error, "failed logins and known networks of an account not forgotten");
            }
        }
    }
}

/// The failure counters a login attempt was counted under, and where a success is noted.
#[derive(Debug)]
pub(crate) struct LoginClaim {
    counted_under: [ThrottleKey; 2],
    known: ThrottleKey,
}

/// Past the free failures, only the attempt that counted the failure right after the state
/// it was let through on may go on. The others are told to try again in a moment: by then the
/// winner has either succeeded (and cleared the count) or set the next wait, which a retry
/// meets without being counted.
fn lost_race(rule: Backoff, seen: Option<FailureRecord>, counted: u32) -> Option<Duration> {
    let expected = seen.map_or(0, |r| r.count).saturating_add(1);
    (counted > rule.free_failures && counted != expected).then_some(RACE_RETRY_AFTER)
}

const RACE_RETRY_AFTER: Duration = Duration::from_secs(1);

fn wait_until(until: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (until - now).to_std().unwrap_or_default()
}

fn at_nanos(nanos: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// One GCRA decision by governor, on state read from the store instead of governor's own
/// atomics: the next state when the request conforms, else how long until it would.
fn gcra(
    quota: Quota,
    current: Option<BucketState>,
    now: DateTime<Utc>,
) -> Result<BucketState, Duration> {
    let since_epoch = u64::try_from(now.timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
    let snapshot = Snapshot {
        current: current.map(|state| Nanos::from(state.0)),
        next: Cell::new(None),
    };
    // The limiter starts at the clock's zero, which is made the Unix epoch: governor's state is
    // then nanoseconds since the epoch, the same on every instance.
    let limiter: RateLimiter<NotKeyed, Snapshot, FakeRelativeClock, NoOpMiddleware<Nanos>> =
        RateLimiter::new(quota, snapshot, FakeRelativeClock::default());
    limiter.clock().advance(Duration::from_nanos(since_epoch));
    let decision = limiter.check();
    let at = limiter.clock().now();
    match decision {
        Ok(()) => {
            let next = limiter.into_state_store().next.get();
            Ok(BucketState(next.map_or(since_epoch, Nanos::as_u64)))
        }
        Err(not_until) => Err(not_until.wait_time_from(at)),
    }
}

/// The one state a decision reads, and the state it leaves.
struct Snapshot {
    current: Option<Nanos>,
    next: Cell<Option<Nanos>>,
}

impl StateStore for Snapshot {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let (outcome, next) = f(self.current)?;
        self.next.set(Some(next));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn quota() -> Quota {
        Quota::with_period(Duration::from_secs(10))
            .unwrap()
            .allow_burst(NonZeroU32::new(3).unwrap())
    }

    fn at(millis: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + millis)
            .unwrap()
    }

    #[test]
    fn a_bucket_allows_its_burst_then_one_request_per_period() {
        let mut state = None;
        for _ in 0..3 {
            state = Some(gcra(quota(), state, at(0)).expect("within the burst"));
        }
        let wait = gcra(quota(), state, at(0)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert_eq!(
            gcra(quota(), state, at(4_000)).unwrap_err(),
            Duration::from_secs(6)
        );
        state = Some(gcra(quota(), state, at(10_000)).expect("one more after a period"));
        assert!(gcra(quota(), state, at(10_000)).is_err());
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let mut state = None;
        for _ in 0..3 {
            state = Some(gcra(quota(), state, at(0)).unwrap());
        }
        let much_later = at(3_600_000);
        for _ in 0..3 {
            state = Some(gcra(quota(), state, much_later).expect("refilled"));
        }
        assert!(gcra(quota(), state, much_later).is_err());
    }

    #[test]
    fn the_state_is_time_since_the_epoch_so_every_instance_reads_it_alike() {
        let state = gcra(quota(), None, at(0)).unwrap();
        // One request on a full bucket is "paid for" until one period from now.
        assert_eq!(state.0, at(10_000).timestamp_nanos_opt().unwrap() as u64);
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let throttled = Throttled::Budget {
            retry_after: Duration::from_millis(1_200),
        };
        assert_eq!(throttled.retry_after_secs(), 2);
        assert!(throttled.to_string().contains("retry in 2 s"));
    }
}
