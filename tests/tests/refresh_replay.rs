//! A refresh token presented again within `REFRESH_REUSE_GRACE`, over real sockets from several
//! loopback addresses (and IPv6 clients through a trusted proxy), on both stores: the grace
//! answer goes only to the client network that rotated the token; from any other network the
//! token counts as reused and its session ends.

use latchkey_bootstrap::Config;
use latchkey_tests::{
    for_each_backend,
    http::{app, Reply, TestApp},
    Backend,
};
use poem::http::StatusCode;
use serde_json::json;

/// Far longer than any test takes: every replay here is within the window.
const GRACE_SECONDS: i64 = 60;

async fn listening(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    app(backend)
        .config(|config| {
            config.session.reuse_grace = chrono::Duration::seconds(GRACE_SECONDS);
            adjust(config);
        })
        .listening()
        .spawn()
        .await
}

/// `POST /api/auth/refresh` from the loopback address `source`, which, when it is a trusted
/// proxy, forwards for `forwarded_for`.
async fn refresh_from(
    app: &TestApp,
    source: &str,
    forwarded_for: Option<&str>,
    refresh_token: &str,
) -> Reply {
    let headers: Vec<(&str, &str)> = forwarded_for
        .map(|client| ("X-Forwarded-For", client))
        .into_iter()
        .collect();
    app.post_from(
        source,
        "/api/auth/refresh",
        json!({ "refresh_token": refresh_token }),
        &headers,
    )
    .await
}

async fn an_in_grace_replay_gets_a_pair_on_the_rotating_network_only_and_elsewhere_ends_the_session(
    backend: Backend,
) {
    let app = listening(backend, |_| {}).await;
    let login = app.signed_in("ann@example.com").await;
    let token = login.str("refresh_token");
    let (owner, other) = ("127.0.0.2", "127.0.0.3");

    let rotated = refresh_from(&app, owner, None, &token).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    // A second tab or a retry after a lost answer, on the owner's network: the same successor.
    let replayed = refresh_from(&app, owner, None, &token).await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
    assert_eq!(replayed.str("refresh_token"), rotated.str("refresh_token"));
    assert_eq!(
        app.me(&replayed.str("access_token")).await.status,
        StatusCode::OK
    );

    // The same token from another address, moments later: no pair, and the session ends.
    refresh_from(&app, other, None, &token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    refresh_from(&app, owner, None, &rotated.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    for access in [
        login.str("access_token"),
        rotated.str("access_token"),
        replayed.str("access_token"),
    ] {
        app.me(&access)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
}

/// Whoever presents a stolen token first, the other one's replay ends the session: here the
/// thief wins the race, and the owner coming back from their own network takes it from them.
async fn a_session_taken_over_by_refreshing_first_ends_when_the_owner_replays(backend: Backend) {
    let app = listening(backend, |_| {}).await;
    let login = app.signed_in("ann@example.com").await;
    let token = login.str("refresh_token");
    let (owner, thief) = ("127.0.0.4", "127.0.0.5");

    let taken = refresh_from(&app, thief, None, &token).await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.body);
    refresh_from(&app, owner, None, &token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");

    refresh_from(&app, thief, None, &taken.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    app.me(&taken.str("access_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
}

/// An IPv6 client's network is its /64: its other addresses share the grace, the next /64 does
/// not. The clients reach the server through a trusted proxy that names them.
async fn an_ipv6_clients_grace_covers_its_64_and_nothing_beyond(backend: Backend) {
    let proxy = "127.0.0.9";
    let app = listening(backend, |config| {
        config.http.trusted_proxies = vec!["127.0.0.9/32".parse().unwrap()];
    })
    .await;
    let login = app.signed_in("ann@example.com").await;
    let token = login.str("refresh_token");

    let rotated = refresh_from(&app, proxy, Some("2001:db8:1:2::1"), &token).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let same_64 = refresh_from(&app, proxy, Some("2001:db8:1:2:ffff::9"), &token).await;
    assert_eq!(same_64.status, StatusCode::OK, "{}", same_64.body);
    assert_eq!(same_64.str("refresh_token"), rotated.str("refresh_token"));

    refresh_from(&app, proxy, Some("2001:db8:1:3::1"), &token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    app.me(&same_64.str("access_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
}

for_each_backend!(
    an_in_grace_replay_gets_a_pair_on_the_rotating_network_only_and_elsewhere_ends_the_session,
    a_session_taken_over_by_refreshing_first_ends_when_the_owner_replays,
    an_ipv6_clients_grace_covers_its_64_and_nothing_beyond,
);
