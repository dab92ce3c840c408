//! How the web site keeps a user signed in, independent of the browser so it can be unit-tested.
//!
//! Every API call goes through [`Session::call`]: it sends the stored access token; on a 401 it
//! refreshes once and retries once; if the refresh fails it clears the tokens and reports
//! [`CallError::SignedOut`] so the page can send the user to the log-in screen. Calls that fail
//! together share one refresh request ("single flight").
//!
//! Every tab of the site shares the stored tokens, so a tab only ever clears the tokens the
//! server refused: when another tab has stored different ones meanwhile (it refreshed, or signed
//! in again), those are good, and the call is retried with them instead.

use futures::future::{FutureExt, LocalBoxFuture, Shared};
use std::{cell::RefCell, future::Future, rc::Rc};

/// An access token and the refresh token that goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// Where tokens live between page loads (the browser's local storage, shared by all tabs).
pub trait TokenStore {
    fn load(&self) -> Option<Tokens>;
    fn save(&self, tokens: &Tokens);
    fn clear(&self);
}

/// Why a refresh did not produce new tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The server refused the refresh token: the session is over.
    Rejected,
    /// The server could not be reached or answered with an error; the tokens may still be good.
    Unavailable(String),
}

/// Exchanges a refresh token for new tokens (`POST /api/auth/refresh`).
pub trait Refresher {
    fn refresh(
        &self,
        refresh_token: String,
    ) -> LocalBoxFuture<'static, Result<Tokens, RefreshFailure>>;
}

/// What one attempt of an API call returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt<T, E> {
    Done(T),
    /// The server answered 401: the access token is missing, expired or revoked.
    Unauthorized,
    Failed(E),
}

#[derive(Debug, PartialEq, Eq)]
pub enum CallError<E> {
    /// The session this call used is over and its tokens were cleared. If another tab stored
    /// other tokens meanwhile, those were kept: [`Session::is_signed_in`] tells which it is.
    SignedOut,
    /// The refresh could not be attempted or completed for a reason other than rejection.
    RefreshUnavailable(String),
    /// The call itself failed with an error the page should show.
    Failed(E),
}

/// How a shared refresh ended, for every call waiting on it.
#[derive(Clone, Debug)]
enum Flight {
    /// The server gave new tokens (stored unless another tab changed the store meanwhile).
    Refreshed,
    /// Nothing was stored to refresh with: another tab signed out.
    NoTokens,
    /// The server refused this refresh token.
    Rejected {
        refresh_token: String,
    },
    Unavailable(String),
}

type RefreshFlight = Shared<LocalBoxFuture<'static, Flight>>;

/// Cheap to clone; clones share the in-flight refresh.
pub struct Session<S, R> {
    inner: Rc<Inner<S, R>>,
}

impl<S, R> Clone for Session<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S, R> {
    store: S,
    refresher: R,
    in_flight: RefCell<Option<RefreshFlight>>,
}

impl<S: TokenStore + 'static, R: Refresher + 'static> Session<S, R> {
    pub fn new(store: S, refresher: R) -> Self {
        Self {
            inner: Rc::new(Inner {
                store,
                refresher,
                in_flight: RefCell::new(None),
            }),
        }
    }

    pub fn store(&self) -> &S {
        &self.inner.store
    }

    pub fn is_signed_in(&self) -> bool {
        self.inner.store.load().is_some()
    }

    pub fn sign_in(&self, tokens: &Tokens) {
        self.inner.store.save(tokens);
    }

    pub fn sign_out(&self) {
        self.inner.store.clear();
    }

    /// Runs `attempt` with the current access token; on a 401, refreshes (once, shared with
    /// any concurrent caller) and retries once with the newest stored token.
    pub async fn call<T, E, F, Fut>(&self, attempt: F) -> Result<T, CallError<E>>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let Some(before) = self.inner.store.load() else {
            return Err(CallError::SignedOut);
        };
        match attempt(before.access_token.clone()).await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Failed(e) => return Err(CallError::Failed(e)),
            Attempt::Unauthorized => {}
        }
        let retry = self.tokens_after_rejection(&before).await?;
        match attempt(retry.access_token.clone()).await {
            Attempt::Done(value) => Ok(value),
            Attempt::Failed(e) => Err(CallError::Failed(e)),
            Attempt::Unauthorized => {
                self.clear_if(|stored| stored.access_token == retry.access_token);
                Err(CallError::SignedOut)
            }
        }
    }

    /// The tokens to retry with after `rejected` got a 401: newer ones if another call or tab
    /// stored them while ours was in the air, otherwise the outcome of a refresh.
    async fn tokens_after_rejection<E>(&self, rejected: &Tokens) -> Result<Tokens, CallError<E>> {
        match self.inner.store.load() {
            None => return Err(CallError::SignedOut),
            Some(current) if current.access_token != rejected.access_token => return Ok(current),
            Some(_) => {}
        }
        match self.join_or_start_refresh().await {
            Flight::Refreshed | Flight::NoTokens => {}
            Flight::Rejected { refresh_token } => {
                // Another tab may have refreshed or signed in again while ours was in the air:
                // what it stored is good, and clearing it would sign every tab out.
                self.clear_if(|stored| stored.refresh_token == refresh_token);
            }
            Flight::Unavailable(why) => return Err(CallError::RefreshUnavailable(why)),
        }
        // Ours, or newer ones from another tab, or none if the session is over.
        self.inner.store.load().ok_or(CallError::SignedOut)
    }

    /// Clears the stored tokens only if they are still the ones the server refused, never
    /// tokens another tab stored since.
    fn clear_if(&self, refused: impl Fn(&Tokens) -> bool) {
        if self
            .inner
            .store
            .load()
            .is_some_and(|stored| refused(&stored))
        {
            self.inner.store.clear();
        }
    }

    fn join_or_start_refresh(&self) -> RefreshFlight {
        if let Some(flight) = self.inner.in_flight.borrow().as_ref() {
            return flight.clone();
        }
        let inner = self.inner.clone();
        let flight = async move {
            let outcome = match inner.store.load() {
                None => Flight::NoTokens,
                Some(tokens) => match inner.refresher.refresh(tokens.refresh_token.clone()).await {
                    Ok(new_tokens) => {
                        // Unless another tab changed them meanwhile: its sign-out must not be
                        // undone, and tokens it stored are as fresh as ours.
                        if inner.store.load().as_ref() == Some(&tokens) {
                            inner.store.save(&new_tokens);
                        }
                        Flight::Refreshed
                    }
                    Err(RefreshFailure::Rejected) => Flight::Rejected {
                        refresh_token: tokens.refresh_token,
                    },
                    Err(RefreshFailure::Unavailable(why)) => Flight::Unavailable(why),
                },
            };
            // The next 401 after this one is a new problem and deserves a new refresh.
            inner.in_flight.borrow_mut().take();
            outcome
        }
        .boxed_local()
        .shared();
        *self.inner.in_flight.borrow_mut() = Some(flight.clone());
        flight
    }
}

#[cfg(test)]
mod tests;
