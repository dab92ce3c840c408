//! What the readiness probe answers. A background check keeps it current, so a probe is
//! answered at once whatever the store's state (a probe that waited on a store call would time
//! out exactly when the answer matters).

use std::sync::{
    atomic::{AtomicU8, Ordering},
    Arc,
};

const STARTING: u8 = 0;
const READY: u8 = 1;
const STORE_DOWN: u8 = 2;
const DRAINING: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadinessState {
    /// The store has not been checked yet.
    Starting,
    Ready,
    /// The last check of the store failed or timed out.
    StoreDown,
    /// Shutting down: finishing in-flight requests, taking no new traffic.
    Draining,
}

/// Shared by the probe handler and whoever checks the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<AtomicU8>);

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self(Arc::new(AtomicU8::new(STARTING)))
    }

    pub fn state(&self) -> ReadinessState {
        match self.0.load(Ordering::SeqCst) {
            READY => ReadinessState::Ready,
            STORE_DOWN => ReadinessState::StoreDown,
            DRAINING => ReadinessState::Draining,
            _ => ReadinessState::Starting,
        }
    }

    /// The outcome of a store check. Ignored once draining: a shutdown is never undone.
    pub fn store_checked(&self, answered: bool) {
        let next = if answered { READY } else { STORE_DOWN };
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                (current != DRAINING).then_some(next)
            });
    }

    pub fn drain(&self) {
        self.0.store(DRAINING, Ordering::SeqCst);
    }

    /// Whether anything but the checker still holds this (the server is still running).
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_check_finishing_after_the_shutdown_began_does_not_make_it_ready_again() {
        let readiness = Readiness::new();
        assert_eq!(readiness.state(), ReadinessState::Starting);
        readiness.store_checked(true);
        assert_eq!(readiness.state(), ReadinessState::Ready);
        readiness.store_checked(false);
        assert_eq!(readiness.state(), ReadinessState::StoreDown);
        readiness.drain();
        readiness.store_checked(true);
        assert_eq!(readiness.state(), ReadinessState::Draining);
    }
}
