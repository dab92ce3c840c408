//! The HTTP API end to end, through the real router and adapters, on both stores.

use latchkey_bootstrap::StoreConfig;
use latchkey_tests::{
    for_each_backend,
    http::{app as spawn, spawn_app, Reply, TestApp},
    interleave::{Faults, Hold, Interleaved, Step},
    Backend,
};
use poem::http::StatusCode;
use serde_json::json;
use std::{sync::Arc, time::Duration};

async fn app(backend: Backend) -> TestApp {
    spawn_app(backend, |_| {}).await
}

async fn a_user_registers_logs_in_refreshes_and_logs_out(backend: Backend) {
    let app = app(backend).await;

    // The API takes the address exactly as sent (the site trims what people type).
    app.register(" Ann@Example.com", "correct horse battery")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email");
    let registered = app
        .register("Ann@Example.com", "correct horse battery")
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    assert_eq!(registered.body["email"], "Ann@Example.com");
    assert_eq!(registered.body["roles"], json!(["user"]));
    assert!(registered.body["id"].is_string() && registered.body["created_at"].is_string());
    let mut fields: Vec<_> = registered
        .body
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["created_at", "email", "email_verified", "id", "roles"],
        "never the hash"
    );

    let login = app.login("ann@example.com", "correct horse battery").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 3600);
    assert_eq!(login.body["refresh_expires_in"], 14 * 24 * 3600);
    assert_eq!(login.header("cache-control"), Some("no-store"));

    let me = app.me(&login.str("access_token")).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body, registered.body);

    let session = app
        .get("/api/auth/session", Some(&login.str("access_token")))
        .await;
    assert_eq!(session.status, StatusCode::OK, "{}", session.body);
    assert_eq!(session.body["user_id"], registered.body["id"]);
    assert!(session.body["session_id"].is_string() && session.body["expires_at"].is_string());

    let refreshed = app.refresh(&login.str("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_ne!(refreshed.str("refresh_token"), login.str("refresh_token"));
    assert_eq!(
        app.me(&refreshed.str("access_token")).await.status,
        StatusCode::OK
    );

    let logout = app.logout(&refreshed.str("refresh_token")).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    app.refresh(&refreshed.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    // Revocation reaches the session's access tokens at once, not when they expire.
    for access in [login.str("access_token"), refreshed.str("access_token")] {
        app.me(&access)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        app.session(&access)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
}

async fn user_data_and_tokens_are_never_cached(backend: Backend) {
    let app = app(backend).await;
    let login = app.signed_in("ann@example.com").await;
    let access = login.str("access_token");
    for reply in [
        login,
        app.me(&access).await,
        app.session(&access).await,
        app.refresh(
            &app.login("ann@example.com", "correct horse battery")
                .await
                .str("refresh_token"),
        )
        .await,
    ] {
        assert_eq!(
            reply.header("cache-control"),
            Some("no-store"),
            "{}",
            reply.body
        );
    }
}

async fn logout_needs_only_the_refresh_token_and_works_after_the_access_token_expired(
    backend: Backend,
) {
    let app = spawn_app(backend, |c| {
        c.session.access_token_ttl = chrono::Duration::seconds(1)
    })
    .await;
    let login = app.signed_in("ann@example.com").await;
    let other_session = app.login("ann@example.com", "correct horse battery").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.me(&login.str("access_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

    assert_eq!(
        app.logout(&login.str("refresh_token")).await.status,
        StatusCode::NO_CONTENT
    );
    app.refresh(&login.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    // Idempotent, and silent about tokens it does not know (RFC 7009).
    assert_eq!(
        app.logout(&login.str("refresh_token")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.logout("not-a-token-we-issued").await.status,
        StatusCode::NO_CONTENT
    );
    app.post("/api/auth/logout", None, json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    // Only that session ended.
    assert_eq!(
        app.refresh(&other_session.str("refresh_token"))
            .await
            .status,
        StatusCode::OK
    );
}

async fn a_session_ends_at_its_absolute_lifetime_however_often_it_rotated(backend: Backend) {
    let app = spawn_app(backend, |c| {
        c.session.access_token_ttl = chrono::Duration::seconds(1);
        c.session.session_max_age = chrono::Duration::seconds(3);
    })
    .await;
    let login = app.signed_in("ann@example.com").await;
    assert!(login.body["refresh_expires_in"].as_i64().unwrap() <= 3);
    let mut refresh_token = login.str("refresh_token");
    let mut access_token = login.str("access_token");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let rotated = app.refresh(&refresh_token).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
        assert!(rotated.body["refresh_expires_in"].as_i64().unwrap() <= 2);
        refresh_token = rotated.str("refresh_token");
        access_token = rotated.str("access_token");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.refresh(&refresh_token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    app.me(&access_token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
}

async fn reusing_a_rotated_refresh_token_revokes_the_whole_session(backend: Backend) {
    let app = app(backend).await;
    let login = app.signed_in("ann@example.com").await;
    let stolen = login.str("refresh_token");
    let rotated = app.refresh(&stolen).await;
    assert_eq!(rotated.status, StatusCode::OK);

    let reuse = app.refresh(&stolen).await;
    reuse.assert_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    assert!(reuse
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    // The legitimate holder's newer token died with the family, and so did every access token
    // of the session.
    app.refresh(&rotated.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    for access in [login.str("access_token"), rotated.str("access_token")] {
        app.me(&access)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    // Another session of the same user is unaffected.
    let other = app.login("ann@example.com", "correct horse battery").await;
    assert_eq!(
        app.refresh(&other.str("refresh_token")).await.status,
        StatusCode::OK
    );
}

async fn reuse_within_the_grace_window_gets_a_working_pair_in_the_same_session(backend: Backend) {
    let app = spawn_app(backend, |c| {
        c.session.reuse_grace = chrono::Duration::seconds(60)
    })
    .await;
    let login = app.signed_in("ann@example.com").await;
    let session_id = app
        .session(&login.str("access_token"))
        .await
        .str("session_id");
    let first_tab = app.refresh(&login.str("refresh_token")).await;
    assert_eq!(first_tab.status, StatusCode::OK);

    let second_tab = app.refresh(&login.str("refresh_token")).await;
    assert_eq!(second_tab.status, StatusCode::OK, "{}", second_tab.body);
    assert_eq!(
        second_tab.str("refresh_token"),
        first_tab.str("refresh_token"),
        "one chain: the same successor, not a second live token"
    );

    for tab in [&first_tab, &second_tab] {
        let session = app.session(&tab.str("access_token")).await;
        assert_eq!(session.str("session_id"), session_id, "same session");
        assert_eq!(
            app.me(&tab.str("access_token")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.refresh(&tab.str("refresh_token")).await.status,
            StatusCode::OK,
            "the race must not log either tab out"
        );
    }
}

/// Every refresh reads the token before any of them writes, on a multi-threaded runtime: the
/// compare-and-swap alone decides. With a compare-and-swap that always says "won", all eight
/// would get a pair.
async fn concurrent_refreshes_without_a_grace_window_have_exactly_one_winner(backend: Backend) {
    let app = spawn(backend)
        .config(|c| c.session.reuse_grace = chrono::Duration::seconds(0))
        .stores(|mut stores| {
            stores.refresh_tokens =
                Arc::new(Interleaved::new(stores.refresh_tokens).readers_meet(8));
            stores
        })
        .spawn()
        .await;
    let login = app.signed_in("ann@example.com").await;
    let token = login.str("refresh_token");
    let replies = futures::future::join_all((0..8).map(|_| app.refresh(&token))).await;
    let winners: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for loser in replies.iter().filter(|r| r.status != StatusCode::OK) {
        // A lost race is not theft: nothing is revoked.
        loser.assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    }
    assert_eq!(
        app.refresh(&winners[0].str("refresh_token")).await.status,
        StatusCode::OK
    );
}

async fn concurrent_refreshes_within_the_grace_window_all_stay_signed_in(backend: Backend) {
    let app = spawn(backend)
        .config(|c| c.session.reuse_grace = chrono::Duration::seconds(60))
        .stores(|mut stores| {
            stores.refresh_tokens =
                Arc::new(Interleaved::new(stores.refresh_tokens).readers_meet(8));
            stores
        })
        .spawn()
        .await;
    let login = app.signed_in("ann@example.com").await;
    let token = login.str("refresh_token");
    let replies = futures::future::join_all((0..8).map(|_| app.refresh(&token))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(
            app.me(&reply.str("access_token")).await.status,
            StatusCode::OK
        );
        assert_eq!(reply.str("refresh_token"), replies[0].str("refresh_token"));
    }
}

/// Logout lands while a refresh of the same session is between its steps: whatever the refresh
/// returns, the session stays revoked.
async fn a_logout_racing_a_refresh_is_never_undone(backend: Backend) {
    for step in [
        Step::AfterFind,
        Step::Insert,
        Step::BeforeMarkRotated,
        Step::AfterMarkRotated,
    ] {
        let hold = Hold::at(step);
        let app = Arc::new(
            spawn(backend)
                .config(|c| c.session.reuse_grace = chrono::Duration::seconds(10))
                .stores({
                    let hold = hold.clone();
                    move |mut stores| {
                        stores.refresh_tokens =
                            Arc::new(Interleaved::new(stores.refresh_tokens).holding(hold));
                        stores
                    }
                })
                .spawn()
                .await,
        );
        let login = app.signed_in("ann@example.com").await;
        let token = login.str("refresh_token");
        hold.arm();
        let refreshing = tokio::spawn({
            let (app, token) = (app.clone(), token.clone());
            async move { app.refresh(&token).await }
        });
        tokio::time::timeout(Duration::from_secs(10), hold.reached())
            .await
            .unwrap_or_else(|_| panic!("{step:?}: the refresh never reached the step"));
        assert_eq!(app.logout(&token).await.status, StatusCode::NO_CONTENT);
        hold.release();
        let raced = refreshing.await.unwrap();

        if raced.status == StatusCode::OK {
            app.refresh(&raced.str("refresh_token"))
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
            app.me(&raced.str("access_token"))
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        } else {
            raced.assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
        }
        app.refresh(&token)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
        app.me(&login.str("access_token"))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
}

/// A store failure or a lost response at any step of a refresh: the client retries with the
/// same token and stays signed in, and no theft alarm goes off.
async fn a_failed_or_lost_refresh_can_be_retried_without_ending_the_session(backend: Backend) {
    type Inject = fn(&Faults);
    let injections: [(&str, Inject); 4] = [
        ("successor not stored", |f| f.fail_once(Step::Insert)),
        ("successor stored, answer lost", |f| {
            f.lose_response_once(Step::Insert)
        }),
        ("rotation refused", |f| f.fail_once(Step::BeforeMarkRotated)),
        ("rotated, answer lost", |f| {
            f.lose_response_once(Step::AfterMarkRotated)
        }),
    ];
    for (what, inject) in injections {
        let faults = Faults::new();
        let app = spawn(backend)
            .config(|c| c.session.reuse_grace = chrono::Duration::seconds(10))
            .stores({
                let faults = faults.clone();
                move |mut stores| {
                    stores.refresh_tokens =
                        Arc::new(Interleaved::new(stores.refresh_tokens).with_faults(faults));
                    stores
                }
            })
            .spawn()
            .await;
        let login = app.signed_in("ann@example.com").await;
        let token = login.str("refresh_token");
        inject(&faults);
        app.refresh(&token)
            .await
            .assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");

        let retried = app.refresh(&token).await;
        assert_eq!(retried.status, StatusCode::OK, "{what}: {}", retried.body);
        assert_eq!(
            app.me(&retried.str("access_token")).await.status,
            StatusCode::OK,
            "{what}"
        );
        assert_eq!(
            app.refresh(&retried.str("refresh_token")).await.status,
            StatusCode::OK,
            "{what}"
        );
        assert_eq!(
            app.me(&login.str("access_token")).await.status,
            StatusCode::OK,
            "{what}: the session is intact"
        );
    }
}

async fn a_full_hashing_queue_sheds_logins_with_503_and_retry_after(backend: Backend) {
    // Each hash costs far more than the store calls a login makes before it (which a slow,
    // single-threaded test store spreads out over tens of milliseconds): the logins meet at
    // the hasher however slow the store.
    let app = spawn_app(backend, |c| {
        c.argon2.memory_kib = 8 * 1024;
        c.argon2.iterations = 24;
        c.argon2.workers = 1;
        c.argon2.queue_capacity = 1;
    })
    .await;
    app.signed_in("ann@example.com").await;
    let replies = futures::future::join_all(
        (0..8).map(|_| app.login("ann@example.com", "correct horse battery")),
    )
    .await;
    let shed: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !shed.is_empty(),
        "one worker and a queue of one cannot take eight at once"
    );
    for reply in &shed {
        reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "server_busy");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    assert!(replies.iter().any(|r| r.status == StatusCode::OK));
    // Every attempt counts until it proves right, so eight at once for one account from one
    // network also meet the login backoff (past its five free attempts).
    for reply in &replies {
        match reply.status {
            StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE => {}
            _ => reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_failed_logins"),
        }
    }
}

async fn a_duplicate_email_in_any_case_is_a_conflict(backend: Backend) {
    let app = app(backend).await;
    assert_eq!(
        app.register("ann@example.com", "correct horse battery")
            .await
            .status,
        StatusCode::CREATED
    );
    app.register("ANN@Example.com", "another password")
        .await
        .assert_error(StatusCode::CONFLICT, "email_taken");
    // The first account still logs in with its own password.
    assert_eq!(
        app.login("ann@example.com", "correct horse battery")
            .await
            .status,
        StatusCode::OK
    );
}

async fn wrong_password_and_unknown_email_look_identical(backend: Backend) {
    let app = app(backend).await;
    app.signed_in("ann@example.com").await;
    let wrong_password = app.login("ann@example.com", "not the password").await;
    let unknown_email = app.login("bob@example.com", "not the password").await;
    wrong_password.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong_password.status, unknown_email.status);
    assert!(wrong_password.body["request_id"].is_string());
    assert_eq!(
        wrong_password.body_but_request_id(),
        unknown_email.body_but_request_id()
    );
    assert_eq!(
        wrong_password.header("www-authenticate"),
        unknown_email.header("www-authenticate")
    );
}

async fn invalid_input_gets_a_4xx_json_error_naming_the_problem(backend: Backend) {
    let app = app(backend).await;
    let short = app.register("ann@example.com", "short").await;
    short.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert!(short.str("message").contains("at least 8"));

    let bad_email = app.register("not-an-email", "correct horse battery").await;
    bad_email.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email");

    let too_long = app.register("ann@example.com", &"x".repeat(1025)).await;
    too_long.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert!(too_long.str("message").contains("at most 1024"));

    let wrong_type = app
        .post(
            "/api/auth/register",
            None,
            json!({ "email": { "nested": 1 }, "password": "x" }),
        )
        .await;
    wrong_type.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(wrong_type.str("message").contains("NewAccount"));

    // The document says `additionalProperties: false`; the server agrees.
    let unknown_field = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "ann@example.com", "password": "x", "passwrod": "x" }),
        )
        .await;
    unknown_field.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(unknown_field.str("message").contains("passwrod"));

    // A 400 says what was expected, never what was sent: the value may be a password.
    for body in [
        json!("hunter2-secret"),
        json!(["ann@example.com", "hunter2-secret"]),
        json!({ "email": "ann@example.com", "password": { "x": "hunter2-secret" } }),
        json!({ "email": "ann@example.com", "password": 771_234_567 }),
    ] {
        let reply = app.post("/api/auth/login", None, body.clone()).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "bad_request");
        let message = reply.str("message");
        assert!(
            !message.contains("hunter2") && !message.contains("771234567"),
            "{body} -> {message}"
        );
    }

    // A number is not a string, even where a string would be accepted.
    app.post("/api/auth/refresh", None, json!({ "refresh_token": 12345 }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");

    let missing_field = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "ann@example.com" }),
        )
        .await;
    missing_field.assert_error(StatusCode::BAD_REQUEST, "bad_request");

    let not_json = Reply::from(
        app.client
            .post("/api/auth/register")
            .content_type("application/json")
            .body("{not json")
            .send()
            .await,
    )
    .await;
    not_json.assert_error(StatusCode::BAD_REQUEST, "bad_request");

    let wrong_media_type = Reply::from(
        app.client
            .post("/api/auth/login")
            .content_type("text/plain")
            .body("email=a")
            .send()
            .await,
    )
    .await;
    wrong_media_type.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    // RFC 9110: a 405 lists what the resource does answer.
    let trace = Reply::from(
        app.client
            .request(poem::http::Method::TRACE, "/api/users/me")
            .send()
            .await,
    )
    .await;
    trace.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(trace.header("allow"), Some("DELETE, GET, HEAD"));
    let get_login = app.get("/api/auth/login", None).await;
    get_login.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(get_login.header("allow"), Some("POST"));

    let oversized = app
        .post(
            "/api/auth/register",
            None,
            json!({ "email": "ann@example.com", "password": "p".repeat(100_000) }),
        )
        .await;
    oversized.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // GET operations document no body errors: their bodies are never read.
    let get_with_body = app
        .client
        .get("/api/health/live")
        .body("x".repeat(100_000))
        .send()
        .await;
    get_with_body.assert_status_is_ok();

    let unknown_route = app.get("/api/nope", None).await;
    unknown_route.assert_error(StatusCode::NOT_FOUND, "not_found");

    // None of that hurt the store: registration still works.
    assert_eq!(
        app.register("ann@example.com", "correct horse battery")
            .await
            .status,
        StatusCode::CREATED
    );
}

async fn protected_routes_need_a_valid_bearer_token(backend: Backend) {
    let app = app(backend).await;
    let login = app.signed_in("ann@example.com").await;
    let access = login.str("access_token");

    let missing = app.get("/api/users/me", None).await;
    missing.assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    app.get("/api/auth/session", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    assert!(missing
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    let mut tampered = access.clone().into_bytes();
    let middle = tampered.len() - 10;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        "Bearer not-a-jwt".to_owned(),
        format!("Bearer {tampered}"),
        format!("Basic {access}"),
        "Bearer ".to_owned(),
    ] {
        let reply = Reply::from(
            app.client
                .get("/api/users/me")
                .header("Authorization", &bad)
                .send()
                .await,
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{bad}: {}",
            reply.body
        );
        assert!(reply.body["error"].is_string(), "{bad}: {}", reply.body);
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer"));
    }
}

async fn an_expired_access_token_is_refused_and_a_refresh_recovers(backend: Backend) {
    let app = spawn_app(backend, |c| {
        c.session.access_token_ttl = chrono::Duration::seconds(1)
    })
    .await;
    let login = app.signed_in("ann@example.com").await;
    assert_eq!(login.body["expires_in"], 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let expired = app.me(&login.str("access_token")).await;
    expired.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(expired
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert!(expired.str("message").contains("expired"));

    let refreshed = app.refresh(&login.str("refresh_token")).await;
    assert_eq!(
        app.me(&refreshed.str("access_token")).await.status,
        StatusCode::OK
    );
}

async fn health_probes_answer(backend: Backend) {
    let app = app(backend).await;
    let live = app.get("/api/health/live", None).await;
    assert_eq!(
        (live.status, live.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let ready = app.get("/api/health/ready", None).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

/// A new password's length counts the code points sent, as the document's `minLength` and
/// `maxLength` do, not the characters NFKC makes of them; normalisation is for hashing only.
async fn a_passwords_length_counts_the_code_points_sent(backend: Backend) {
    let app = app(backend).await;
    // Eight code points sent (an accent apart from its letter), seven once normalised.
    let decomposed = "e\u{301}xkcdqw";
    let registered = app.register("accent@example.com", decomposed).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    // Normalised, it is the same password as the precomposed one.
    for password in [decomposed, "\u{e9}xkcdqw"] {
        let login = app.login("accent@example.com", password).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    }
    // Seven ligatures are seven characters as sent, though fourteen letters once normalised.
    let short = app
        .register("ligature@example.com", "\u{fb01}".repeat(7).as_str())
        .await;
    short.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert_eq!(short.body["rule"], "min_length", "{}", short.body);
    // The cap counts what is sent too, at registration and at login: 1024 code points are
    // taken, 1026 are not, though they compose to 513 characters.
    let at_cap = "e\u{301}".repeat(512);
    let long = app.register("long@example.com", &at_cap).await;
    assert_eq!(long.status, StatusCode::CREATED, "{}", long.body);
    let login = app.login("long@example.com", &at_cap).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let over_cap = "e\u{301}".repeat(513);
    let longer = app.register("longer@example.com", &over_cap).await;
    longer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert_eq!(longer.body["rule"], "max_length", "{}", longer.body);
    app.login("long@example.com", &over_cap)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_password");
}

for_each_backend!(
    a_passwords_length_counts_the_code_points_sent,
    a_user_registers_logs_in_refreshes_and_logs_out,
    reusing_a_rotated_refresh_token_revokes_the_whole_session,
    user_data_and_tokens_are_never_cached,
    logout_needs_only_the_refresh_token_and_works_after_the_access_token_expired,
    a_session_ends_at_its_absolute_lifetime_however_often_it_rotated,
    reuse_within_the_grace_window_gets_a_working_pair_in_the_same_session,
    concurrent_refreshes_without_a_grace_window_have_exactly_one_winner,
    concurrent_refreshes_within_the_grace_window_all_stay_signed_in,
    a_logout_racing_a_refresh_is_never_undone,
    a_failed_or_lost_refresh_can_be_retried_without_ending_the_session,
    a_full_hashing_queue_sheds_logins_with_503_and_retry_after,
    a_duplicate_email_in_any_case_is_a_conflict,
    wrong_password_and_unknown_email_look_identical,
    invalid_input_gets_a_4xx_json_error_naming_the_problem,
    protected_routes_need_a_valid_bearer_token,
    an_expired_access_token_is_refused_and_a_refresh_recovers,
    health_probes_answer,
);

/// A MongoDB server that does not answer: nothing listens on this port.
fn unreachable_store(config: &mut latchkey_bootstrap::Config) {
    config.store.backend = StoreConfig::Mongo {
        uri: "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300&connectTimeoutMS=300".into(),
        database: Some("unreachable".into()),
    };
}

#[tokio::test]
async fn start_up_refuses_an_unreachable_mongodb_with_a_clear_message() {
    let mut config = latchkey_tests::http::test_config();
    unreachable_store(&mut config);
    let err = latchkey_bootstrap::build(&config).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("MongoDB is not reachable at DB_URI"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_store_outage_while_running_is_a_503_not_a_500() {
    // Assembled around the store directly: start-up (above) refuses one that is down already.
    let store = latchkey_mongo::MongoStore::connect(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
        Some("unreachable"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let app = spawn(Backend::Memory)
        .stores(move |_| latchkey_bootstrap::Stores::mongo(&store))
        .spawn()
        .await;
    let client = &app.client;

    let register = Reply::from(
        client
            .post("/api/auth/register")
            .body_json(&json!({ "email": "ann@example.com", "password": "correct horse battery" }))
            .send()
            .await,
    )
    .await;
    register.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert!(
        !register.str("message").contains("127.0.0.1"),
        "no internals in the body"
    );

    let login = Reply::from(
        client
            .post("/api/auth/login")
            .body_json(&json!({ "email": "ann@example.com", "password": "correct horse battery" }))
            .send()
            .await,
    )
    .await;
    login.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");

    let ready = Reply::from(client.get("/api/health/ready").send().await).await;
    ready.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let live = Reply::from(client.get("/api/health/live").send().await).await;
    assert_eq!(
        live.status,
        StatusCode::OK,
        "liveness does not depend on the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_accepts_but_never_answers_is_a_503_within_the_store_timeout() {
    // A "MongoDB" that takes connections and then says nothing, as a hung server would.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let store = latchkey_mongo::MongoStore::connect(
        &format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=60000&connectTimeoutMS=60000"
        ),
        Some("silent"),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let app = spawn(Backend::Memory)
        .stores(move |_| latchkey_bootstrap::Stores::mongo(&store))
        .spawn()
        .await;
    let client = &app.client;

    let started = std::time::Instant::now();
    let login = Reply::from(
        client
            .post("/api/auth/login")
            .body_json(&json!({ "email": "ann@example.com", "password": "correct horse battery" }))
            .send()
            .await,
    )
    .await;
    login.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}, not after the driver's own 60 s",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_api_documents_itself() {
    let app = app(Backend::Memory).await;
    let spec = app.get("/api/openapi.json", None).await;
    assert_eq!(spec.status, StatusCode::OK);
    let scheme = &spec.body["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"], &scheme["bearerFormat"]),
        (&json!("http"), &json!("bearer"), &json!("JWT"))
    );
    // The served document is the committed one, links and all, and so is the UI's.
    assert_eq!(
        spec.body,
        serde_json::from_str::<serde_json::Value>(&latchkey_bootstrap::openapi_json()).unwrap()
    );
    assert!(spec.body["paths"]["/auth/login"]["post"]["responses"]["200"]["links"].is_object());
    let docs = app.client.get("/api/docs").send().await;
    docs.assert_status_is_ok();
    docs.assert_content_type("text/html; charset=utf-8");
    let html = docs.0.into_body().into_string().await.unwrap();
    assert!(
        html.contains("\"additionalProperties\": false"),
        "the UI shows the served document"
    );
    let post = Reply::from(app.client.post("/api/openapi.json").send().await).await;
    post.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}
