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
    ports::StoreError, Backoff, BucketState, BudgetAction, ClientNetwork, EmailKey, ThrottleKey,
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
    /// Failed logins to one account from anywhere; set high, so that guessing from one
    /// network (which its own backoff slows first) cannot lock the owner out elsewhere.
    pub login_account: Backoff,
    /// A failure count is forgotten this long after its last failure.
    pub forget_failures_after: chrono::Duration,
    pub register: Option<Budget>,
    pub login: Option<Budget>,
    pub refresh: Option<Budget>,
}

impl AbusePolicy {
    fn budget(&self, action: BudgetAction) -> Option<Budget> {
        match action {
            BudgetAction::Register => self.register,
            BudgetAction::Login => self.login,
            BudgetAction::Refresh => self.refresh,
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
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Compare-and-swap rounds before a budget under contention counts as spent: losing this
/// often means many requests from one network at the same moment, which is what it limits.
const CONTENDED_ROUNDS: usize = 8;

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
        let quota = Quota::with_period(budget.replenish_every)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(budget.burst);
        let key = ThrottleKey::budget(action, client);
        for _ in 0..CONTENDED_ROUNDS {
            let now = self.ports.clock.now();
            let current = self.ports.throttle.bucket(&key, now).await?;
            match gcra(quota, current, now) {
                Ok(next) => {
                    let forget_at = at_nanos(next.0) + chrono::Duration::seconds(1);
                    if self
                        .ports
                        .throttle
                        .replace_bucket(&key, current, next, now, forget_at)
                        .await?
                    {
                        return Ok(());
                    }
                }
                Err(retry_after) => {
                    tracing::info!(
                        action = action.as_str(),
                        client = %client,
                        retry_after_ms = retry_after.as_millis() as u64,
                        "budget spent; request refused with 429"
                    );
                    return Err(Throttled::Budget { retry_after }.into());
                }
            }
        }
        tracing::info!(action = action.as_str(), client = %client, "budget contended; request refused with 429");
        Err(Throttled::Budget {
            retry_after: budget.replenish_every,
        }
        .into())
    }

    /// The keys a login for `email` from `client` counts its failures under, with their rules.
    pub(crate) fn login_keys(
        &self,
        email: &EmailKey,
        client: ClientNetwork,
    ) -> [(ThrottleKey, Backoff); 2] {
        [
            (
                ThrottleKey::login_from(email, client),
                self.abuse.login_from_network,
            ),
            (ThrottleKey::login_account(email), self.abuse.login_account),
        ]
    }

    /// How long a login must wait because of earlier failures, if at all.
    pub(crate) async fn login_wait(
        &self,
        keys: &[(ThrottleKey, Backoff)],
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let mut until = None;
        for (key, backoff) in keys {
            if let Some(record) = self.ports.throttle.failures(key, now).await? {
                until = until.max(backoff.blocked_until(&record, now));
            }
        }
        Ok(until.map(|until| (until - now).to_std().unwrap_or_default()))
    }

    pub(crate) async fn record_login_failure(
        &self,
        keys: &[(ThrottleKey, Backoff)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let forget_at = now + self.abuse.forget_failures_after;
        for (key, _) in keys {
            self.ports
                .throttle
                .record_failure(key, now, forget_at)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn clear_login_failures(
        &self,
        keys: &[(ThrottleKey, Backoff)],
    ) -> Result<(), StoreError> {
        for (key, _) in keys {
            self.ports.throttle.clear_failures(key).await?;
        }
        Ok(())
    }
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
