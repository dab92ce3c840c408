//! How the web site keeps a user signed in, independent of the browser so it can be unit-tested.
//!
//! Every API call goes through [`Session::call`]: it sends the stored access token; on a 401 it
//! refreshes once and retries once; if the refresh fails it clears the tokens and reports
//! [`CallError::SignedOut`] so the page can send the user to the log-in screen. Calls that fail
//! together share one refresh request ("single flight").
//!
//! Every tab of the site shares the stored tokens, so a tab only ever clears the tokens the
//! server refused: when another tab has stored different ones meanwhile (it refreshed), those
//! are good, and the call is retried with them instead.
//!
//! A page is bound to the account and session ([`Identity`]) it was shown for: once another tab
//! has stored tokens of another account, or of a new log-in, nothing more is sent from this page
//! ([`CallError::SessionChanged`]): it must follow before it acts, or an action meant for the
//! account on screen would run as someone else.

use futures::future::{FutureExt, LocalBoxFuture, Shared};
use std::{cell::RefCell, future::Future, rc::Rc};

mod follow;
mod identity;
pub use follow::{follow, Follow, Stored};
pub use identity::Identity;

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
    /// The stored tokens are no longer those of the account and session this page shows
    /// (another tab signed in): nothing was sent with them, and the page must follow.
    SessionChanged,
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
    /// Whose tokens this page used first, and so whose data it shows.
    shown_for: RefCell<Option<Identity>>,
}

impl<S: TokenStore + 'static, R: Refresher + 'static> Session<S, R> {
    pub fn new(store: S, refresher: R) -> Self {
        Self {
            inner: Rc::new(Inner {
                store,
                refresher,
                in_flight: RefCell::new(None),
                shown_for: RefCell::new(None),
            }),
        }
    }

    pub fn store(&self) -> &S {
        &self.inner.store
    }

    pub fn is_signed_in(&self) -> bool {
        self.inner.store.load().is_some()
    }

    /// The account and session this page shows, once a call or a sign-in bound it.
    pub fn shown_for(&self) -> Option<Identity> {
        self.inner.shown_for.borrow().clone()
    }

    /// Stores a new log-in's tokens and binds this page to them. Answers the tokens of another
    /// session they replaced: nothing on this browser can reach that session any more, so the
    /// caller should end it on the server.
    pub fn sign_in(&self, tokens: &Tokens) -> Option<Tokens> {
        let replaced = self.inner.store.load().filter(|old| {
            old.refresh_token != tokens.refresh_token
                && (old.identity().is_none() || old.identity() != tokens.identity())
        });
        self.inner.store.save(tokens);
        *self.inner.shown_for.borrow_mut() = tokens.identity();
        replaced
    }

    /// Forgets this page's tokens after every session of its account ended (signed out
    /// everywhere, or deleted). Tokens of another session stored meanwhile stay: a log-in that
    /// reached the server after the call is alive, and one before it finds out at its next call.
    pub fn sign_out_everywhere(&self) {
        let shown_for = self.inner.shown_for.borrow_mut().take();
        match shown_for {
            Some(shown) => self.clear_if(|stored| stored.identity().as_ref() == Some(&shown)),
            None => self.inner.store.clear(),
        }
    }

    /// Lets the next call bind this page to whatever is stored then: for a page that shows no
    /// account and only needs to know who is signed in now (a mailed link's page, the log-in
    /// page's "continue as").
    pub fn unbind(&self) {
        self.inner.shown_for.borrow_mut().take();
    }

    /// Ends this page's session on the server with `revoke` (given its refresh token), then
    /// forgets the tokens if they are still that session's. A refresh in another tab may have
    /// rotated them meanwhile; they are cleared all the same, since the server ended the
    /// session, not one token. Tokens of another session stored meanwhile stay. When `revoke`
    /// fails the tokens are kept for another try: forgetting them would leave a session running
    /// that nobody could end.
    pub async fn log_out<E, Fut>(
        &self,
        revoke: impl FnOnce(String) -> Fut,
    ) -> Result<(), CallError<E>>
    where
        Fut: Future<Output = Result<(), E>>,
    {
        let Some(tokens) = self.inner.store.load() else {
            return Ok(());
        };
        self.check_shown(&tokens)?;
        revoke(tokens.refresh_token.clone())
            .await
            .map_err(CallError::Failed)?;
        match tokens.identity() {
            Some(ended) => self.clear_if(|stored| stored.identity().as_ref() == Some(&ended)),
            None => self.clear_if(|stored| stored.refresh_token == tokens.refresh_token),
        }
        self.inner.shown_for.borrow_mut().take();
        Ok(())
    }

    /// Binds this page to `tokens` if nothing did yet; refuses tokens of another account or
    /// session than the one it is bound to.
    fn check_shown<E>(&self, tokens: &Tokens) -> Result<(), CallError<E>> {
        let mut shown_for = self.inner.shown_for.borrow_mut();
        match shown_for.as_ref() {
            None => {
                *shown_for = tokens.identity();
                Ok(())
            }
            Some(shown) if tokens.identity().as_ref() == Some(shown) => Ok(()),
            Some(_) => Err(CallError::SessionChanged),
        }
    }

    /// Runs `attempt` with the current access token; on a 401, refreshes (once, shared with
    /// any concurrent caller) and retries once with the newest stored token.
    pub async fn call<T, E, F, Fut>(&self, attempt: F) -> Result<T, CallError<E>>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let outcome = self.call_bound(attempt).await;
        if matches!(outcome, Err(CallError::SignedOut)) && !self.is_signed_in() {
            // Nothing is shown any more: whoever signs in next, here or elsewhere, is new.
            self.unbind();
        }
        outcome
    }

    async fn call_bound<T, E, F, Fut>(&self, attempt: F) -> Result<T, CallError<E>>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let Some(before) = self.inner.store.load() else {
            return Err(CallError::SignedOut);
        };
        self.check_shown(&before)?;
        match attempt(before.access_token.clone()).await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Failed(e) => return Err(CallError::Failed(e)),
            Attempt::Unauthorized => {}
        }
        let retry = self.tokens_after_rejection(&before).await?;
        self.check_shown(&retry)?;
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
