//! Abuse defence over real sockets from several loopback addresses, on both stores: login
//! backoff, per-network budgets, trusted proxies, the password policy, hash upgrades, and one
//! budget shared by two instances on one MongoDB.

use latchkey_application::Budget;
use latchkey_bootstrap::{Config, Stores};
use latchkey_domain::EmailKey;
use latchkey_tests::{
    for_each_backend,
    http::{app, send_from, Reply, TestApp},
    Backend,
};
use poem::http::StatusCode;
use serde_json::json;
use std::{
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

const PASSWORD: &str = "correct horse battery";

/// Budgets of `burst` refilled once an hour: spent within a test, never refilled during it.
fn hourly(burst: u32) -> Option<Budget> {
    Some(Budget {
        burst: NonZeroU32::new(burst).unwrap(),
        replenish_every: Duration::from_secs(3600),
    })
}

async fn listening(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    app(backend).config(adjust).listening().spawn().await
}

fn assert_throttled(reply: &Reply, code: &str) -> u64 {
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, code);
    let retry_after: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", reply.headers));
    assert!(retry_after >= 1, "{retry_after}");
    retry_after
}

async fn guessing_from_one_address_is_slowed_but_the_owner_elsewhere_gets_in(backend: Backend) {
    let app = listening(backend, |_| {}).await;
    app.register("owner@example.com", PASSWORD).await;
    let attacker = "127.0.0.2";
    for attempt in 1..=5 {
        let reply = app
            .login_from(attacker, "owner@example.com", &format!("guess {attempt}"))
            .await;
        reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let throttled = app
        .login_from(attacker, "owner@example.com", "guess 6")
        .await;
    assert_eq!(assert_throttled(&throttled, "too_many_failed_logins"), 1);
    // Even the right password waits: the throttle answers before any password is checked.
    let right_but_early = app
        .login_from(attacker, "owner@example.com", PASSWORD)
        .await;
    assert_throttled(&right_but_early, "too_many_failed_logins");

    // The owner, elsewhere, is not locked out.
    let owner = app
        .login_from("127.0.0.3", "owner@example.com", PASSWORD)
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);

    // After the wait, one more wrong guess doubles it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.login_from(attacker, "owner@example.com", "guess 7")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let doubled = app
        .login_from(attacker, "owner@example.com", "guess 8")
        .await;
    assert_eq!(assert_throttled(&doubled, "too_many_failed_logins"), 2);
}

/// Every failure counts for the account, so guessing from anywhere reaches its limit; but a
/// network the owner logged in from lately is not held by the account's block. Here the
/// guessing network's own backoff is off and the account's limit is low, to get there fast.
async fn guessing_never_locks_the_owner_out_of_networks_they_use(backend: Backend) {
    let app = listening(backend, |config| {
        config.abuse.login_from_network.base_delay = chrono::Duration::zero();
        config.abuse.login_account.free_failures = 6;
        config.abuse.login_account.base_delay = chrono::Duration::minutes(1);
    })
    .await;
    app.register("target@example.com", PASSWORD).await;
    let home = "127.0.0.14";
    let before = app.login_from(home, "target@example.com", PASSWORD).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    // Six failures are free for the account; the seventh attempt meets its one-minute wait.
    for attempt in 0..6 {
        app.login_from(
            "127.0.0.13",
            "target@example.com",
            &format!("guess {attempt}"),
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    assert_throttled(
        &app.login_from("127.0.0.13", "target@example.com", "guess 6")
            .await,
        "too_many_failed_logins",
    );
    // A network never seen for this account waits with everyone else...
    assert_throttled(
        &app.login_from("127.0.0.15", "target@example.com", PASSWORD)
            .await,
        "too_many_failed_logins",
    );
    // ...but the owner at home gets in.
    let owner = app.login_from(home, "target@example.com", PASSWORD).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
}

async fn an_unknown_email_is_throttled_exactly_like_a_registered_one(backend: Backend) {
    let app = listening(backend, |_| {}).await;
    app.register("known@example.com", PASSWORD).await;
    let mut answers = Vec::new();
    for email in ["known@example.com", "nobody@example.com"] {
        for attempt in 1..=5 {
            app.login_from("127.0.0.4", email, &format!("guess {attempt}"))
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
        }
        let throttled = app.login_from("127.0.0.4", email, "guess 6").await;
        assert_throttled(&throttled, "too_many_failed_logins");
        let retry_after = throttled.header("retry-after").map(str::to_owned);
        answers.push((throttled.body_but_request_id(), retry_after));
    }
    assert_eq!(answers[0], answers[1]);
}

async fn a_success_resets_the_count(backend: Backend) {
    let app = listening(backend, |_| {}).await;
    app.register("forgetful@example.com", PASSWORD).await;
    for round in 0..2 {
        for attempt in 1..=4 {
            app.login_from(
                "127.0.0.5",
                "forgetful@example.com",
                &format!("{round} {attempt}"),
            )
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
        }
        let ok = app
            .login_from("127.0.0.5", "forgetful@example.com", PASSWORD)
            .await;
        assert_eq!(ok.status, StatusCode::OK, "round {round}: {}", ok.body);
    }
}

async fn a_network_that_spent_its_registration_budget_waits_while_others_do_not(backend: Backend) {
    let app = listening(backend, |config| config.abuse.register = hourly(3)).await;
    let register = |source: &'static str, n: u32| {
        let app = &app;
        async move {
            app.post_from(
                source,
                "/api/auth/register",
                json!({ "email": format!("flood{n}@example.com"), "password": PASSWORD }),
                &[],
            )
            .await
        }
    };
    for n in 0..3 {
        let reply = register("127.0.0.6", n).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let spent = register("127.0.0.6", 3).await;
    let retry_after = assert_throttled(&spent, "rate_limited");
    assert!((3_590..=3_600).contains(&retry_after), "{retry_after}");
    let elsewhere = register("127.0.0.7", 4).await;
    assert_eq!(elsewhere.status, StatusCode::CREATED, "{}", elsewhere.body);
}

async fn login_and_refresh_have_budgets_of_their_own(backend: Backend) {
    let app = listening(backend, |config| {
        config.abuse.login = hourly(2);
        config.abuse.refresh = hourly(1);
    })
    .await;
    app.register("budget@example.com", PASSWORD).await;
    let first = app
        .login_from("127.0.0.8", "budget@example.com", PASSWORD)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let refresh = |token: String| {
        let app = &app;
        async move {
            app.post_from(
                "127.0.0.8",
                "/api/auth/refresh",
                json!({ "refresh_token": token }),
                &[],
            )
            .await
        }
    };
    let refreshed = refresh(first.str("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_throttled(
        &refresh(refreshed.str("refresh_token")).await,
        "rate_limited",
    );
    app.login_from("127.0.0.8", "budget@example.com", PASSWORD)
        .await;
    assert_throttled(
        &app.login_from("127.0.0.8", "budget@example.com", PASSWORD)
            .await,
        "rate_limited",
    );
}

/// `DELETE /api/users/me` over a socket from the loopback address `source`.
async fn delete_account_from(app: &TestApp, source: &str, bearer: &str, password: &str) -> Reply {
    let address = app.address.expect("spawned with `listening()`");
    let body = json!({ "password": password }).to_string();
    let request = format!(
        "DELETE /api/users/me HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Authorization: {bearer}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send_from(source.parse().expect("an IP address"), address, &request).await
}

/// Checking a password runs argon2, so a password change and an account deletion spend the
/// network's login budget before they hash: a few accounts on one address cannot keep the
/// hashing queue full.
async fn password_changes_and_deletions_spend_the_networks_login_budget(backend: Backend) {
    let app = listening(backend, |config| config.abuse.login = hourly(3)).await;
    app.register("changer@example.com", PASSWORD).await;
    let here = "127.0.0.21";
    let login = app.login_from(here, "changer@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let bearer = format!("Bearer {}", login.str("access_token"));
    let change = |source: &'static str, current: &'static str, new: &'static str| {
        let (app, bearer) = (&app, bearer.clone());
        async move {
            app.post_from(
                source,
                "/api/auth/password/change",
                json!({ "current_password": current, "new_password": new }),
                &[("Authorization", bearer.as_str())],
            )
            .await
        }
    };
    const OTHER: &str = "another horse battery";
    // The login took one request of three; two changes take the rest.
    for (current, new) in [(PASSWORD, OTHER), (OTHER, PASSWORD)] {
        let changed = change(here, current, new).await;
        assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);
    }
    let spent = change(here, PASSWORD, OTHER).await;
    let retry_after = assert_throttled(&spent, "rate_limited");
    assert!((3_590..=3_600).contains(&retry_after), "{retry_after}");
    assert_throttled(
        &delete_account_from(&app, here, &bearer, PASSWORD).await,
        "rate_limited",
    );
    // The refused requests changed nothing, and another network has a budget of its own.
    let elsewhere = change("127.0.0.22", PASSWORD, OTHER).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::NO_CONTENT,
        "{}",
        elsewhere.body
    );
}

async fn forwarded_addresses_count_only_behind_a_trusted_proxy(backend: Backend) {
    let app = listening(backend, |config| {
        config.abuse.register = hourly(1);
        config.http.trusted_proxies = vec!["127.0.0.9/32".parse().unwrap()];
    })
    .await;
    let register = |source: &'static str, n: u32, forwarded_for: &'static str| {
        let app = &app;
        async move {
            app.post_from(
                source,
                "/api/auth/register",
                json!({ "email": format!("proxied{n}@example.com"), "password": PASSWORD }),
                &[("X-Forwarded-For", forwarded_for)],
            )
            .await
        }
    };
    // Through the proxy, each forwarded client has a budget of its own.
    assert_eq!(
        register("127.0.0.9", 0, "198.51.100.1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        register("127.0.0.9", 1, "198.51.100.2").await.status,
        StatusCode::CREATED
    );
    assert_throttled(
        &register("127.0.0.9", 2, "198.51.100.2").await,
        "rate_limited",
    );
    // IPv6 clients share the budget of their /64.
    assert_eq!(
        register("127.0.0.9", 3, "2001:db8:1:2::1").await.status,
        StatusCode::CREATED
    );
    assert_throttled(
        &register("127.0.0.9", 4, "2001:db8:1:2:ffff::9").await,
        "rate_limited",
    );
    // From anywhere else the header is ignored: a client cannot pick a fresh address.
    assert_eq!(
        register("127.0.0.10", 5, "198.51.100.3").await.status,
        StatusCode::CREATED
    );
    assert_throttled(
        &register("127.0.0.10", 6, "198.51.100.4").await,
        "rate_limited",
    );
}

async fn a_weak_password_is_refused_naming_the_rule(backend: Backend) {
    let server = app(backend).spawn().await;
    for (email, password, rule) in [
        ("ann@example.com", "short", "min_length"),
        ("ann@example.com", "iloveyou2", "common_password"),
        ("ann@example.com", "PASSWORD1234", "common_password"),
        (
            "maria.lopez@example.com",
            "Maria.Lopez-1984",
            "contains_email",
        ),
        (
            "ann@example.com",
            "my latchkey login",
            "contains_service_name",
        ),
    ] {
        let reply = server.register(email, password).await;
        reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
        assert_eq!(reply.body["rule"], rule, "{password}: {}", reply.body);
    }
    // The minimum is a setting.
    let stricter = app(backend)
        .config(|c| c.passwords.min_chars = 16)
        .spawn()
        .await;
    let reply = stricter
        .register("ann@example.com", "fifteen chars!!")
        .await;
    assert_eq!(reply.body["rule"], "min_length", "{}", reply.body);
    assert!(
        reply.body["message"].as_str().unwrap().contains("16"),
        "{}",
        reply.body
    );
}

async fn a_ligature_and_its_letters_are_one_password(backend: Backend) {
    let server = app(backend).spawn().await;
    let registered = server.register("lig@example.com", "the ﬁnest oﬃce").await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let login = server.login("lig@example.com", "the finest office").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    // Full-width letters are the same letters too.
    let wide = server.login("lig@example.com", "ｔｈｅ ﬁnest office").await;
    assert_eq!(wide.status, StatusCode::OK, "{}", wide.body);
}

/// Raising the argon2 cost upgrades each user's hash at their next login, and the old and
/// the new hash both let them in.
async fn a_login_upgrades_a_hash_made_with_other_parameters(backend: Backend) {
    let captured = Arc::new(Mutex::new(None));
    let first = app(backend)
        .stores({
            let captured = captured.clone();
            move |stores: Stores| {
                *captured.lock().unwrap() = Some(stores.clone());
                stores
            }
        })
        .spawn()
        .await;
    let stores = captured.lock().unwrap().clone().expect("stores captured");
    first.register("upgrade@example.com", PASSWORD).await;
    let stored = || {
        let users = stores.users.clone();
        async move {
            let key = EmailKey::for_login("upgrade@example.com").unwrap();
            let user = users
                .find_by_email(&key)
                .await
                .unwrap()
                .expect("registered");
            user.password_hash.as_str().to_owned()
        }
    };
    let before = stored().await;
    assert!(before.contains("m=256"), "{before}");
    let costlier = app(backend)
        .config(|c| c.argon2.memory_kib = 512)
        .stores({
            let stores = stores.clone();
            move |_| stores
        })
        .spawn()
        .await;
    let login = costlier.login("upgrade@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let after = stored().await;
    assert!(after.contains("m=512"), "{after}");
    let again = costlier.login("upgrade@example.com", PASSWORD).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(stored().await, after, "an up-to-date hash is left alone");
    // The first instance, still at the old cost, verifies the new hash (and, at its own
    // parameters, would upgrade it back: the configuration decides).
    assert_eq!(
        first.login("upgrade@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

for_each_backend!(
    guessing_from_one_address_is_slowed_but_the_owner_elsewhere_gets_in,
    guessing_never_locks_the_owner_out_of_networks_they_use,
    an_unknown_email_is_throttled_exactly_like_a_registered_one,
    a_success_resets_the_count,
    a_network_that_spent_its_registration_budget_waits_while_others_do_not,
    login_and_refresh_have_budgets_of_their_own,
    password_changes_and_deletions_spend_the_networks_login_budget,
    forwarded_addresses_count_only_behind_a_trusted_proxy,
    a_weak_password_is_refused_naming_the_rule,
    a_ligature_and_its_letters_are_one_password,
    a_login_upgrades_a_hash_made_with_other_parameters,
);

/// `shared::mongo::...`, so the suites on a real MongoDB in a container (`mongo::`) run it too.
mod shared {
    mod mongo {
        use super::super::*;

        /// Two instances on one MongoDB enforce one budget and one login backoff.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn two_instances_on_one_store_share_budgets_and_failure_counts() {
            let adjust = |config: &mut Config| config.abuse.register = hourly(2);
            let a = listening(Backend::Mongo, adjust).await;
            let b = app(Backend::Mongo)
                .config(adjust)
                .sharing_store_with(&a)
                .listening()
                .spawn()
                .await;
            async fn register(on: &TestApp, n: u32) -> Reply {
                let body =
                    json!({ "email": format!("shared{n}@example.com"), "password": PASSWORD });
                on.post_from("127.0.0.11", "/api/auth/register", body, &[])
                    .await
            }
            assert_eq!(register(&a, 0).await.status, StatusCode::CREATED);
            assert_eq!(register(&b, 1).await.status, StatusCode::CREATED);
            assert_throttled(&register(&a, 2).await, "rate_limited");
            assert_throttled(&register(&b, 3).await, "rate_limited");

            // Failed logins made on either instance count together.
            for attempt in 0..5 {
                let on = if attempt % 2 == 0 { &a } else { &b };
                on.login_from("127.0.0.12", "shared0@example.com", "wrong")
                    .await
                    .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
            }
            assert_throttled(
                &b.login_from("127.0.0.12", "shared0@example.com", "wrong")
                    .await,
                "too_many_failed_logins",
            );
            assert_throttled(
                &a.login_from("127.0.0.12", "shared0@example.com", PASSWORD)
                    .await,
                "too_many_failed_logins",
            );
        }
    }
}
