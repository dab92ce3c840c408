//! A refresh-token store wrapper that forces interleavings: it can stop callers at a chosen step
//! until the test lets them go, and fail a step after (or instead of) doing it, as a lost
//! response or an outage would. Wrapped around either real store, it makes races that the
//! in-memory store (which never yields) would otherwise never show.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::{
    ports::{RefreshTokenRepository, StoreError},
    RefreshTokenHash, RefreshTokenRecord, UserId,
};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};
use tokio::sync::{Barrier, Notify};

/// Where a refresh can be held or broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// After the presented token was read, before anything is written.
    AfterFind,
    /// Before the compare-and-swap that marks the presented token rotated.
    BeforeMarkRotated,
    /// After the compare-and-swap, before its answer reaches the use case.
    AfterMarkRotated,
    /// Storing the successor token.
    Insert,
}

/// Once armed, stops the first caller reaching `step` until `release`.
pub struct Hold {
    step: Step,
    armed: Mutex<bool>,
    reached: Notify,
    released: Notify,
}

impl Hold {
    pub fn at(step: Step) -> Arc<Self> {
        Arc::new(Self {
            step,
            armed: Mutex::new(false),
            reached: Notify::new(),
            released: Notify::new(),
        })
    }

    /// From now on, the next caller reaching the step is held (set-up calls before this pass).
    pub fn arm(&self) {
        *self.armed.lock().unwrap() = true;
    }

    /// Waits until a caller is held.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    pub fn release(&self) {
        self.released.notify_one();
    }

    async fn pass(&self, step: Step) {
        if step != self.step {
            return;
        }
        let hold = std::mem::replace(&mut *self.armed.lock().unwrap(), false);
        if hold {
            self.reached.notify_one();
            self.released.notified().await;
        }
    }
}

/// Failures to inject, set by the test once its set-up (login) is done.
#[derive(Default)]
pub struct Faults {
    /// Fail the next call at this step, after performing it (a lost response).
    after: Mutex<Option<Step>>,
    /// Fail the next call at this step without performing it (an outage).
    instead: Mutex<Option<Step>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The next call at `step` is performed, then reported as failed.
    pub fn lose_response_once(&self, step: Step) {
        *self.after.lock().unwrap() = Some(step);
    }

    /// The next call at `step` fails without being performed.
    pub fn fail_once(&self, step: Step) {
        *self.instead.lock().unwrap() = Some(step);
    }
}

pub struct Interleaved {
    inner: Arc<dyn RefreshTokenRepository>,
    hold: Option<Arc<Hold>>,
    /// Makes the first `n` readers of a token wait for each other after reading, so all of them
    /// see it unrotated before any of them tries the compare-and-swap.
    read_barrier: Option<(Arc<Barrier>, AtomicUsize, usize)>,
    failures: Arc<Faults>,
}

impl Interleaved {
    pub fn new(inner: Arc<dyn RefreshTokenRepository>) -> Self {
        Self {
            inner,
            hold: None,
            read_barrier: None,
            failures: Faults::new(),
        }
    }

    pub fn holding(mut self, hold: Arc<Hold>) -> Self {
        self.hold = Some(hold);
        self
    }

    pub fn readers_meet(mut self, readers: usize) -> Self {
        self.read_barrier = Some((
            Arc::new(Barrier::new(readers)),
            AtomicUsize::new(0),
            readers,
        ));
        self
    }

    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.failures = faults;
        self
    }

    async fn pass(&self, step: Step) {
        if let Some(hold) = &self.hold {
            hold.pass(step).await;
        }
    }

    fn take(slot: &Mutex<Option<Step>>, step: Step) -> bool {
        let mut slot = slot.lock().unwrap();
        if *slot == Some(step) {
            *slot = None;
            true
        } else {
            false
        }
    }

    fn failure(what: &str) -> StoreError {
        StoreError(format!("injected failure: {what}"))
    }
}

#[async_trait]
impl RefreshTokenRepository for Interleaved {
    async fn insert(
        &self,
        record: &RefreshTokenRecord,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        self.pass(Step::Insert).await;
        if Self::take(&self.failures.instead, Step::Insert) {
            return Err(Self::failure("insert refused"));
        }
        let existing = self.inner.insert(record).await?;
        if Self::take(&self.failures.after, Step::Insert) {
            return Err(Self::failure("insert response lost"));
        }
        Ok(existing)
    }

    async fn find_by_hash(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let found = self.inner.find_by_hash(hash).await?;
        if let Some((barrier, arrived, readers)) = &self.read_barrier {
            if arrived.fetch_add(1, Ordering::SeqCst) < *readers {
                barrier.wait().await;
            }
        }
        self.pass(Step::AfterFind).await;
        Ok(found)
    }

    async fn mark_rotated(
        &self,
        hash: &RefreshTokenHash,
        at: DateTime<Utc>,
        by: latchkey_domain::ClientNetwork,
    ) -> Result<bool, StoreError> {
        self.pass(Step::BeforeMarkRotated).await;
        if Self::take(&self.failures.instead, Step::BeforeMarkRotated) {
            return Err(Self::failure("rotation refused"));
        }
        let won = self.inner.mark_rotated(hash, at, by).await?;
        self.pass(Step::AfterMarkRotated).await;
        if Self::take(&self.failures.after, Step::AfterMarkRotated) {
            return Err(Self::failure("rotation response lost"));
        }
        Ok(won)
    }

    async fn unexchanged_of_user(
        &self,
        user: UserId,
    ) -> Result<Vec<RefreshTokenRecord>, StoreError> {
        self.inner.unexchanged_of_user(user).await
    }

    async fn delete_all_of_user(&self, user: UserId) -> Result<(), StoreError> {
        self.inner.delete_all_of_user(user).await
    }
}
