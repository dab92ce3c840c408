use super::*;
use futures::{channel::oneshot, executor::block_on, future::join_all};
use std::cell::Cell;

/// Local storage stand-in; clones share contents like two tabs share `localStorage`.
#[derive(Clone, Default)]
struct MemoryStore(Rc<RefCell<Option<Tokens>>>);

impl TokenStore for MemoryStore {
    fn load(&self) -> Option<Tokens> {
        self.0.borrow().clone()
    }
    fn save(&self, tokens: &Tokens) {
        *self.0.borrow_mut() = Some(tokens.clone());
    }
    fn clear(&self) {
        *self.0.borrow_mut() = None;
    }
}

/// The server side of the test: which access token is valid, and a scripted refresh.
#[derive(Clone)]
struct FakeServer {
    valid_access: Rc<RefCell<String>>,
    refreshes: Rc<Cell<u32>>,
    refresh_result: Rc<RefCell<Result<(), RefreshFailure>>>,
    /// When set, a refresh waits until the sender fires, so callers can pile up behind it.
    gate: Rc<RefCell<Option<oneshot::Receiver<()>>>>,
}

impl FakeServer {
    fn new(valid_access: &str) -> Self {
        Self {
            valid_access: Rc::new(RefCell::new(valid_access.into())),
            refreshes: Rc::new(Cell::new(0)),
            refresh_result: Rc::new(RefCell::new(Ok(()))),
            gate: Rc::new(RefCell::new(None)),
        }
    }

    fn expire_access_token(&self) {
        *self.valid_access.borrow_mut() = "nothing-is-valid".into();
    }

    /// A protected endpoint: returns the token it accepted.
    async fn protected(&self, access: String) -> Attempt<String, String> {
        if access == *self.valid_access.borrow() {
            Attempt::Done(access)
        } else {
            Attempt::Unauthorized
        }
    }
}

impl Refresher for FakeServer {
    fn refresh(
        &self,
        refresh_token: String,
    ) -> LocalBoxFuture<'static, Result<Tokens, RefreshFailure>> {
        let server = self.clone();
        async move {
            server.refreshes.set(server.refreshes.get() + 1);
            let gate = server.gate.borrow_mut().take();
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            server.refresh_result.borrow().clone()?;
            let n = server.refreshes.get();
            let tokens = Tokens {
                access_token: format!("access-{n}"),
                refresh_token: format!("{refresh_token}+{n}"),
            };
            *server.valid_access.borrow_mut() = tokens.access_token.clone();
            Ok(tokens)
        }
        .boxed_local()
    }
}

fn signed_in(server: &FakeServer) -> Session<MemoryStore, FakeServer> {
    let session = Session::new(MemoryStore::default(), server.clone());
    session.sign_in(&Tokens {
        access_token: "access-0".into(),
        refresh_token: "refresh-0".into(),
    });
    session
}

/// What another tab stores when it refreshes or signs in.
fn other_tabs_tokens() -> Tokens {
    Tokens {
        access_token: "from-other-tab".into(),
        refresh_token: "refresh-x".into(),
    }
}

/// Runs `calls`, holding their refresh in the air while `other_tab` does its thing, as another
/// tab sharing the store would, then lets the server answer.
fn while_refreshing<T>(
    server: &FakeServer,
    calls: impl Future<Output = T>,
    other_tab: impl FnOnce(),
) -> T {
    let (open_gate, gate) = oneshot::channel();
    *server.gate.borrow_mut() = Some(gate);
    let meanwhile = async move {
        assert_eq!(server.refreshes.get(), 1, "a refresh is in the air");
        other_tab();
        open_gate.send(()).unwrap();
    };
    block_on(futures::future::join(calls, meanwhile)).0
}

#[test]
fn a_call_with_a_valid_token_does_not_refresh() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    let result = block_on(session.call(|t| server.protected(t)));
    assert_eq!(result, Ok("access-0".to_owned()));
    assert_eq!(server.refreshes.get(), 0);
}

#[test]
fn a_401_refreshes_once_then_retries_with_the_new_token_and_stores_it() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();

    let result = block_on(session.call(|t| server.protected(t)));

    assert_eq!(result, Ok("access-1".to_owned()));
    assert_eq!(server.refreshes.get(), 1);
    assert_eq!(
        session.store().load(),
        Some(Tokens {
            access_token: "access-1".into(),
            refresh_token: "refresh-0+1".into()
        })
    );
}

#[test]
fn calls_failing_together_share_a_single_refresh() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();
    let (open_gate, gate) = oneshot::channel();
    *server.gate.borrow_mut() = Some(gate);

    let calls = join_all((0..3).map(|_| session.call(|t| server.protected(t))));
    let release = async {
        open_gate.send(()).unwrap();
    };
    let (results, ()) = block_on(futures::future::join(calls, release));

    assert_eq!(
        server.refreshes.get(),
        1,
        "one refresh request for three 401s"
    );
    assert!(
        results.iter().all(|r| r == &Ok("access-1".to_owned())),
        "{results:?}"
    );
}

#[test]
fn a_rejected_refresh_clears_the_tokens_and_signs_out() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();
    *server.refresh_result.borrow_mut() = Err(RefreshFailure::Rejected);

    let result = block_on(session.call(|t| server.protected(t)));

    assert_eq!(result, Err(CallError::SignedOut));
    assert_eq!(session.store().load(), None);
    assert!(!session.is_signed_in());
}

#[test]
fn a_call_is_retried_only_once() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    let attempts = Cell::new(0);

    let result = block_on(session.call(|_| {
        attempts.set(attempts.get() + 1);
        async { Attempt::<(), ()>::Unauthorized }
    }));

    assert_eq!(attempts.get(), 2);
    assert_eq!(server.refreshes.get(), 1);
    assert_eq!(result, Err(CallError::SignedOut));
    assert_eq!(session.store().load(), None);
}

#[test]
fn an_unreachable_refresh_endpoint_keeps_the_tokens() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();
    *server.refresh_result.borrow_mut() = Err(RefreshFailure::Unavailable("offline".into()));

    let result = block_on(session.call(|t| server.protected(t)));

    assert_eq!(result, Err(CallError::RefreshUnavailable("offline".into())));
    assert!(session.is_signed_in());
}

#[test]
fn without_tokens_nothing_is_called() {
    let server = FakeServer::new("access-0");
    let session = Session::new(MemoryStore::default(), server.clone());
    let called = Cell::new(false);
    let result = block_on(session.call(|t| {
        called.set(true);
        server.protected(t)
    }));
    assert_eq!(result, Err(CallError::SignedOut));
    assert!(!called.get());
}

#[test]
fn tokens_refreshed_by_another_tab_are_used_without_a_new_refresh() {
    let server = FakeServer::new("access-0");
    let store = MemoryStore::default();
    let this_tab = Session::new(store.clone(), server.clone());
    this_tab.sign_in(&Tokens {
        access_token: "access-0".into(),
        refresh_token: "refresh-0".into(),
    });
    let other_tab_store = store.clone();
    let other_tab_server = server.clone();

    let result = block_on(this_tab.call(|t| {
        let (store, server) = (other_tab_store.clone(), other_tab_server.clone());
        async move {
            if t == "access-0" {
                // While this request is in the air, the other tab refreshes.
                server.expire_access_token();
                *server.valid_access.borrow_mut() = "from-other-tab".into();
                store.save(&Tokens {
                    access_token: "from-other-tab".into(),
                    refresh_token: "refresh-x".into(),
                });
            }
            server.protected(t).await
        }
    }));

    assert_eq!(result, Ok("from-other-tab".to_owned()));
    assert_eq!(server.refreshes.get(), 0);
}

#[test]
fn a_later_expiry_gets_a_fresh_refresh() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();
    assert!(block_on(session.call(|t| server.protected(t))).is_ok());
    server.expire_access_token();
    assert_eq!(
        block_on(session.call(|t| server.protected(t))),
        Ok("access-2".to_owned())
    );
    assert_eq!(server.refreshes.get(), 2);
}

#[test]
fn other_failures_are_passed_through_without_refreshing() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    let result = block_on(session.call(|_| async { Attempt::<(), _>::Failed("409 email_taken") }));
    assert_eq!(result, Err(CallError::Failed("409 email_taken")));
    assert_eq!(server.refreshes.get(), 0);
}

#[test]
fn a_refresh_rejected_after_another_tab_stored_new_tokens_keeps_them_and_retries_with_them() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();
    *server.refresh_result.borrow_mut() = Err(RefreshFailure::Rejected);
    let other_tab = session.store().clone();

    let results = while_refreshing(
        &server,
        join_all((0..2).map(|_| session.call(|t| server.protected(t)))),
        || {
            *server.valid_access.borrow_mut() = "from-other-tab".into();
            other_tab.save(&other_tabs_tokens());
        },
    );

    assert_eq!(
        server.refreshes.get(),
        1,
        "still one refresh for both calls"
    );
    assert!(
        results
            .iter()
            .all(|r| r == &Ok("from-other-tab".to_owned())),
        "{results:?}"
    );
    assert_eq!(session.store().load(), Some(other_tabs_tokens()));
}

#[test]
fn a_refused_retry_keeps_the_tokens_another_tab_stored_meanwhile() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();
    let other_tab = session.store().clone();

    let result = block_on(session.call(|t| {
        if t == "access-1" {
            // While the retry is in the air, the other tab logs out (ending this session) and
            // signs in again.
            server.expire_access_token();
            other_tab.save(&other_tabs_tokens());
        }
        server.protected(t)
    }));

    assert_eq!(result, Err(CallError::SignedOut));
    assert_eq!(session.store().load(), Some(other_tabs_tokens()));
    assert!(session.is_signed_in());
}

#[test]
fn a_call_is_retried_only_once_even_with_another_tabs_tokens() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    *server.refresh_result.borrow_mut() = Err(RefreshFailure::Rejected);
    let other_tab = session.store().clone();
    let attempts = Cell::new(0);

    let result = while_refreshing(
        &server,
        session.call(|_| {
            attempts.set(attempts.get() + 1);
            async { Attempt::<(), ()>::Unauthorized }
        }),
        || other_tab.save(&other_tabs_tokens()),
    );

    assert_eq!(attempts.get(), 2);
    assert_eq!(result, Err(CallError::SignedOut));
    assert_eq!(
        session.store().load(),
        None,
        "the other tab's tokens were refused too, so they are cleared"
    );
}

#[test]
fn a_refresh_answered_after_another_tab_signed_out_does_not_sign_back_in() {
    let server = FakeServer::new("access-0");
    let session = signed_in(&server);
    server.expire_access_token();
    let other_tab = session.store().clone();

    let result = while_refreshing(&server, session.call(|t| server.protected(t)), || {
        other_tab.clear()
    });

    assert_eq!(result, Err(CallError::SignedOut));
    assert_eq!(session.store().load(), None);
}

/// Tokens as the server issues them for `account`'s `session` (the `n`th of that session).
fn jwt_tokens(account: &str, session: &str, n: u32) -> Tokens {
    Tokens {
        access_token: identity::tests::access_token(account, session, n),
        refresh_token: format!("refresh-{account}-{session}-{n}"),
    }
}

/// A page of this tab, shown for Ann's session `s1` after one call, and the store the other
/// tabs share with it.
fn page_shown_for_ann(server: &FakeServer) -> (Session<MemoryStore, FakeServer>, MemoryStore) {
    let ann = jwt_tokens("ann", "s1", 0);
    *server.valid_access.borrow_mut() = ann.access_token.clone();
    let page = Session::new(MemoryStore::default(), server.clone());
    page.store().save(&ann);
    assert!(block_on(page.call(|t| server.protected(t))).is_ok());
    assert_eq!(
        page.shown_for(),
        Some(Identity {
            account: "ann".into(),
            session: "s1".into()
        })
    );
    let other_tabs = page.store().clone();
    (page, other_tabs)
}

#[test]
fn a_page_sends_nothing_once_another_tab_signed_in_as_another_account() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    let bob = jwt_tokens("bob", "s2", 0);
    other_tab.save(&bob);
    *server.valid_access.borrow_mut() = bob.access_token.clone();
    let sent = Cell::new(0);

    let result = block_on(page.call(|t| {
        sent.set(sent.get() + 1);
        server.protected(t)
    }));

    assert_eq!(result, Err(CallError::SessionChanged));
    assert_eq!(
        sent.get(),
        0,
        "nothing is sent as Bob from a page showing Ann"
    );
    assert_eq!(page.store().load(), Some(bob), "Bob's tokens stay");
}

#[test]
fn a_new_log_in_of_the_same_account_in_another_tab_is_a_change_too() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    other_tab.save(&jwt_tokens("ann", "s3", 0));

    let result = block_on(page.call(|t| server.protected(t)));

    assert_eq!(result, Err(CallError::SessionChanged));
}

#[test]
fn tokens_another_tab_refreshed_are_still_the_session_the_page_shows() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    let rotated = jwt_tokens("ann", "s1", 1);
    other_tab.save(&rotated);
    *server.valid_access.borrow_mut() = rotated.access_token.clone();

    let result = block_on(page.call(|t| server.protected(t)));

    assert_eq!(result, Ok(rotated.access_token));
}

#[test]
fn a_refused_call_is_not_retried_with_another_accounts_tokens_stored_meanwhile() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    server.expire_access_token();
    let bob = jwt_tokens("bob", "s2", 0);
    let sent = Cell::new(0);

    let result = block_on(page.call(|t| {
        sent.set(sent.get() + 1);
        // While Ann's request is in the air, Bob signs in in another tab.
        other_tab.save(&bob);
        *server.valid_access.borrow_mut() = bob.access_token.clone();
        server.protected(t)
    }));

    assert_eq!(result, Err(CallError::SessionChanged));
    assert_eq!(sent.get(), 1, "only Ann's own attempt was sent");
    assert_eq!(server.refreshes.get(), 0);
    assert_eq!(page.store().load(), Some(bob));
}

#[test]
fn a_retry_after_a_refresh_is_not_sent_when_another_account_signed_in_meanwhile() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    server.expire_access_token();
    let bob = jwt_tokens("bob", "s2", 0);
    let sent = Cell::new(0);

    let result = while_refreshing(
        &server,
        page.call(|t| {
            sent.set(sent.get() + 1);
            server.protected(t)
        }),
        || other_tab.save(&bob),
    );

    assert_eq!(result, Err(CallError::SessionChanged));
    assert_eq!(sent.get(), 1);
    assert_eq!(
        page.store().load(),
        Some(bob),
        "the refresh did not overwrite Bob"
    );
}

/// Logs out from `page`, holding the server's answer while `other_tab` does its thing.
fn log_out_while(page: &Session<MemoryStore, FakeServer>, other_tab: impl FnOnce()) -> Vec<String> {
    let (answer, answered) = oneshot::channel::<()>();
    let revoked = RefCell::new(Vec::new());
    let logging_out = page.log_out(|refresh_token| {
        revoked.borrow_mut().push(refresh_token);
        async move {
            answered.await.unwrap();
            Ok::<(), String>(())
        }
    });
    let meanwhile = async move {
        other_tab();
        answer.send(()).unwrap();
    };
    let (result, ()) = block_on(futures::future::join(logging_out, meanwhile));
    assert_eq!(result, Ok(()));
    revoked.into_inner()
}

#[test]
fn logging_out_forgets_the_session_even_when_another_tab_rotated_its_tokens_meanwhile() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);

    let revoked = log_out_while(&page, || other_tab.save(&jwt_tokens("ann", "s1", 1)));

    assert_eq!(revoked, ["refresh-ann-s1-0"]);
    assert_eq!(
        page.store().load(),
        None,
        "the session ended, whichever token"
    );
    assert_eq!(page.shown_for(), None);
}

#[test]
fn logging_out_keeps_another_sessions_tokens_stored_meanwhile() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    let bob = jwt_tokens("bob", "s2", 0);

    log_out_while(&page, || other_tab.save(&bob));

    assert_eq!(page.store().load(), Some(bob));
}

#[test]
fn logging_out_sends_nothing_from_a_page_showing_another_account() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    let bob = jwt_tokens("bob", "s2", 0);
    other_tab.save(&bob);
    let sent = Cell::new(false);

    let result = block_on(page.log_out(|_| {
        sent.set(true);
        async { Ok::<(), ()>(()) }
    }));

    assert_eq!(result, Err(CallError::SessionChanged));
    assert!(!sent.get());
    assert_eq!(page.store().load(), Some(bob));
}

#[test]
fn a_log_out_the_server_did_not_confirm_keeps_the_tokens() {
    let server = FakeServer::new("");
    let (page, _) = page_shown_for_ann(&server);

    let result = block_on(page.log_out(|_| async { Err("offline") }));

    assert_eq!(result, Err(CallError::Failed("offline")));
    assert_eq!(page.store().load(), Some(jwt_tokens("ann", "s1", 0)));
}

#[test]
fn signing_in_over_another_session_hands_back_its_tokens_to_end_and_binds_the_page() {
    let server = FakeServer::new("");
    let (page, _) = page_shown_for_ann(&server);
    let bob = jwt_tokens("bob", "s2", 0);

    assert_eq!(page.sign_in(&bob), Some(jwt_tokens("ann", "s1", 0)));
    assert_eq!(
        page.shown_for().map(|shown| shown.account),
        Some("bob".into())
    );
    assert_eq!(
        page.sign_in(&jwt_tokens("bob", "s2", 1)),
        None,
        "same session"
    );

    let fresh = Session::new(MemoryStore::default(), server.clone());
    assert_eq!(fresh.sign_in(&bob), None, "nothing was replaced");
}

#[test]
fn signing_out_everywhere_forgets_the_pages_session_only() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    let bob = jwt_tokens("bob", "s2", 0);
    other_tab.save(&bob);
    page.sign_out_everywhere();
    assert_eq!(page.store().load(), Some(bob));

    // Ann again, logged in elsewhere after the call: that session is alive.
    let (page, other_tab) = page_shown_for_ann(&server);
    let anns_new_session = jwt_tokens("ann", "s9", 0);
    other_tab.save(&anns_new_session);
    page.sign_out_everywhere();
    assert_eq!(page.store().load(), Some(anns_new_session));

    // Rotated by another tab's refresh: still the session that ended.
    let (page, other_tab) = page_shown_for_ann(&server);
    other_tab.save(&jwt_tokens("ann", "s1", 1));
    page.sign_out_everywhere();
    assert_eq!(page.store().load(), None);
}

#[test]
fn a_page_whose_session_ended_binds_to_the_next_sign_in() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    server.expire_access_token();
    *server.refresh_result.borrow_mut() = Err(RefreshFailure::Rejected);
    assert_eq!(
        block_on(page.call(|t| server.protected(t))),
        Err(CallError::SignedOut)
    );
    assert_eq!(page.shown_for(), None);

    let bob = jwt_tokens("bob", "s2", 0);
    other_tab.save(&bob);
    *server.valid_access.borrow_mut() = bob.access_token.clone();
    assert_eq!(
        block_on(page.call(|t| server.protected(t))),
        Ok(bob.access_token)
    );
}

#[test]
fn an_unbound_page_binds_to_whoever_is_signed_in_now() {
    let server = FakeServer::new("");
    let (page, other_tab) = page_shown_for_ann(&server);
    let bob = jwt_tokens("bob", "s2", 0);
    other_tab.save(&bob);
    *server.valid_access.borrow_mut() = bob.access_token.clone();
    page.unbind();
    assert_eq!(
        block_on(page.call(|t| server.protected(t))),
        Ok(bob.access_token)
    );
    assert_eq!(
        page.shown_for().map(|shown| shown.account),
        Some("bob".into())
    );
}
