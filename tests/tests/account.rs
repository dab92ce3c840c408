//! The account's own lifecycle over HTTP, on both stores: the list of sessions and ending them,
//! signing out everywhere, changing the password and deleting the account.

use latchkey_tests::{
    for_each_backend,
    http::{spawn_app, Reply, TestApp},
    Backend,
};
use poem::http::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// Two sessions of one account, as two devices would have them.
struct TwoDevices {
    app: TestApp,
    laptop: Reply,
    phone: Reply,
}

async fn two_devices(backend: Backend) -> TwoDevices {
    let app = spawn_app(backend, |_| {}).await;
    let registered = app.register("ann@example.com", PASSWORD).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let laptop = app
        .login_as(
            "ann@example.com",
            PASSWORD,
            "Mozilla/5.0 (X11; Linux) Firefox/140.0",
        )
        .await;
    // Stores keep milliseconds: the phone's login is the newer one.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let phone = app
        .login_as(
            "ann@example.com",
            PASSWORD,
            "Mozilla/5.0 (iPhone) Safari/605.1",
        )
        .await;
    assert_eq!(laptop.status, StatusCode::OK, "{}", laptop.body);
    assert_eq!(phone.status, StatusCode::OK, "{}", phone.body);
    TwoDevices { app, laptop, phone }
}

fn access(login: &Reply) -> String {
    login.str("access_token")
}

fn session_id(app_reply: &Reply) -> String {
    app_reply.str("session_id")
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let listed = app.get("/api/auth/sessions", Some(token)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    listed.body["sessions"].as_array().unwrap().clone()
}

async fn still_works(app: &TestApp, login: &Reply) -> bool {
    app.me(&access(login)).await.status == StatusCode::OK
}

async fn the_list_shows_each_device_and_marks_the_callers(backend: Backend) {
    let TwoDevices { app, laptop, phone } = two_devices(backend).await;
    let phone_session = session_id(&app.session(&access(&phone)).await);

    let listed = sessions(&app, &access(&laptop)).await;

    assert_eq!(listed.len(), 2, "{listed:?}");
    // Newest first: the phone logged in last.
    assert_eq!(listed[0]["id"], phone_session.as_str());
    assert_eq!(listed[0]["current"], false);
    assert_eq!(listed[0]["user_agent"], "Mozilla/5.0 (iPhone) Safari/605.1");
    assert_eq!(listed[1]["current"], true);
    assert_eq!(
        listed[1]["user_agent"],
        "Mozilla/5.0 (X11; Linux) Firefox/140.0"
    );
    for session in &listed {
        assert!(session["created_at"].is_string() && session["last_used_at"].is_string());
    }

    // A refresh is a use: the phone's session moves on, the laptop's does not.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let refreshed = app.refresh(&phone.str("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let after = sessions(&app, &access(&laptop)).await;
    let time = |v: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(v[field].as_str().unwrap()).unwrap()
    };
    assert!(time(&after[0], "last_used_at") > time(&listed[0], "last_used_at"));
    assert_eq!(after[1]["last_used_at"], listed[1]["last_used_at"]);

    // Someone else's list is their own.
    let bob = app.signed_in("bob@example.com").await;
    assert_eq!(sessions(&app, &access(&bob)).await.len(), 1);
    app.get("/api/auth/sessions", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
}

/// Logs ann in, a few milliseconds after the last login (stores keep milliseconds).
async fn next_login(app: &TestApp) -> Reply {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let login = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    login
}

/// The id of the session `login` started.
async fn session_of(app: &TestApp, login: &Reply) -> String {
    session_id(&app.session(&access(login)).await)
}

/// One page of the sessions `token` sees, and its `next_cursor`, which is always there.
async fn sessions_page(app: &TestApp, token: &str, query: &str) -> (Vec<String>, Option<String>) {
    let listed = app
        .get(&format!("/api/auth/sessions?{query}"), Some(token))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let next = listed
        .body
        .as_object()
        .and_then(|page| page.get("next_cursor"))
        .unwrap_or_else(|| panic!("`next_cursor` is always sent: {}", listed.body));
    let ids = listed.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|session| session["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, next.as_str().map(str::to_owned))
}

async fn past_the_cap_a_login_ends_the_least_recently_used_session(backend: Backend) {
    let app = spawn_app(backend, |config| config.session.max_sessions_per_user = 3).await;
    let registered = app.register("ann@example.com", PASSWORD).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let first = next_login(&app).await;
    let second = next_login(&app).await;
    let third = next_login(&app).await;
    // A refresh is a use: the first login's session is now used more recently than the second.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let first = app.refresh(&first.str("refresh_token")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);

    let fourth = next_login(&app).await;

    // The second login's session, the least recently used, has ended; the others go on.
    app.refresh(&second.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    app.me(&access(&second))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    for login in [&first, &third, &fourth] {
        assert!(still_works(&app, login).await);
    }
    let first_id = session_of(&app, &first).await;
    let third_id = session_of(&app, &third).await;
    let fourth_id = session_of(&app, &fourth).await;

    // Paged: newest login first, two at a time.
    let (page, next) = sessions_page(&app, &access(&fourth), "limit=2").await;
    assert_eq!(page, [fourth_id.clone(), third_id.clone()]);
    let next = next.expect("a third session: a next page");
    let (page, last) =
        sessions_page(&app, &access(&fourth), &format!("limit=2&cursor={next}")).await;
    assert_eq!(page, [first_id]);
    assert_eq!(last, None, "`next_cursor` is null on the last page");

    // More logins than the cap: the cap remains, the newest ones.
    let fifth = next_login(&app).await;
    let sixth = next_login(&app).await;
    let (all, next) = sessions_page(&app, &access(&sixth), "").await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(next, None);
    assert_eq!(all[0], session_of(&app, &sixth).await);
    assert_eq!(all[1], session_of(&app, &fifth).await);
    assert_eq!(all[2], fourth_id);
    app.refresh(&third.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
}

async fn a_listing_refuses_cursors_it_did_not_hand_out_and_limits_out_of_range(backend: Backend) {
    let app = spawn_app(backend, |_| {}).await;
    let ann = app.signed_in("ann@example.com").await;
    for query in ["cursor=not-a-cursor", "cursor=1.2.3"] {
        app.get(&format!("/api/auth/sessions?{query}"), Some(&access(&ann)))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_cursor");
    }
    let too_long = format!("cursor={}", "1".repeat(65));
    for query in ["limit=0", "limit=101", too_long.as_str()] {
        app.get(&format!("/api/auth/sessions?{query}"), Some(&access(&ann)))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let (page, next) = sessions_page(&app, &access(&ann), "limit=100").await;
    assert_eq!(page.len(), 1);
    assert_eq!(next, None);
}

async fn ending_another_session_stops_its_tokens_at_once(backend: Backend) {
    let TwoDevices { app, laptop, phone } = two_devices(backend).await;
    let phone_session = session_id(&app.session(&access(&phone)).await);
    let path = format!("/api/auth/sessions/{phone_session}");

    let ended = app.delete(&path, Some(&access(&laptop)), None).await;

    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.body);
    app.me(&access(&phone))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    app.refresh(&phone.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    assert!(still_works(&app, &laptop).await);
    assert_eq!(sessions(&app, &access(&laptop)).await.len(), 1);
    // A second tab clicking "End" on the same row.
    let again = app.delete(&path, Some(&access(&laptop)), None).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.body);
}

async fn sessions_of_others_and_unknown_ids_are_not_found(backend: Backend) {
    let TwoDevices { app, laptop, .. } = two_devices(backend).await;
    let bob = app.signed_in("bob@example.com").await;
    let bobs_session = session_id(&app.session(&access(&bob)).await);

    app.delete(
        &format!("/api/auth/sessions/{bobs_session}"),
        Some(&access(&laptop)),
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "session_not_found");
    assert!(still_works(&app, &bob).await, "Bob's session is untouched");
    app.delete(
        &format!("/api/auth/sessions/{}", uuid::Uuid::new_v4()),
        Some(&access(&laptop)),
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "session_not_found");
    app.delete(
        "/api/auth/sessions/not-a-uuid",
        Some(&access(&laptop)),
        None,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    app.delete(&format!("/api/auth/sessions/{bobs_session}"), None, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
}

async fn signing_out_everywhere_ends_every_session(backend: Backend) {
    let TwoDevices { app, laptop, phone } = two_devices(backend).await;
    let bob = app.signed_in("bob@example.com").await;

    let out = app
        .post("/api/auth/logout-all", Some(&access(&laptop)), json!(null))
        .await;

    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    for device in [&laptop, &phone] {
        assert!(!still_works(&app, device).await);
        app.refresh(&device.str("refresh_token"))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    }
    assert!(still_works(&app, &bob).await);
    app.post("/api/auth/logout-all", None, json!(null))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
}

async fn change_password(app: &TestApp, token: &str, current: &str, new: &str) -> Reply {
    app.post(
        "/api/auth/password/change",
        Some(token),
        json!({ "current_password": current, "new_password": new }),
    )
    .await
}

async fn a_password_change_keeps_this_session_and_ends_the_others(backend: Backend) {
    let TwoDevices { app, laptop, phone } = two_devices(backend).await;
    let new = "a much newer passphrase";

    let changed = change_password(&app, &access(&laptop), PASSWORD, new).await;

    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);
    assert!(still_works(&app, &laptop).await);
    let refreshed = app.refresh(&laptop.str("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert!(!still_works(&app, &phone).await);
    app.refresh(&phone.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let login = app.login("ann@example.com", new).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
}

async fn a_password_change_needs_the_current_password_and_a_strong_new_one(backend: Backend) {
    let TwoDevices { app, laptop, phone } = two_devices(backend).await;
    let token = access(&laptop);

    change_password(&app, &token, "not my password", "a much newer passphrase")
        .await
        .assert_error(StatusCode::FORBIDDEN, "wrong_password");
    let weak = change_password(&app, &token, PASSWORD, "short").await;
    weak.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert_eq!(weak.body["rule"], "min_length");
    change_password(&app, &token, PASSWORD, "ann-is-my-name")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    change_password(&app, &token, &"x".repeat(1025), "a much newer passphrase")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_password");
    app.post(
        "/api/auth/password/change",
        None,
        json!({ "current_password": PASSWORD, "new_password": "a much newer passphrase" }),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    app.post(
        "/api/auth/password/change",
        Some(&token),
        json!({ "current_password": PASSWORD }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request");

    // Nothing changed: both devices go on, the old password still logs in.
    assert!(still_works(&app, &phone).await && still_works(&app, &laptop).await);
    let login = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
}

async fn wrong_confirmations_count_as_failed_logins(backend: Backend) {
    let TwoDevices { app, laptop, .. } = two_devices(backend).await;
    // A stolen access token must not guess the password faster than a login could.
    for _ in 0..5 {
        change_password(&app, &access(&laptop), "guess", "a much newer passphrase")
            .await
            .assert_error(StatusCode::FORBIDDEN, "wrong_password");
    }
    let throttled = app
        .delete(
            "/api/users/me",
            Some(&access(&laptop)),
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    throttled.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_failed_logins");
    assert!(throttled.header("retry-after").is_some());
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_failed_logins");
}

async fn deleting_the_account_ends_everything_and_frees_the_email(backend: Backend) {
    let TwoDevices { app, laptop, phone } = two_devices(backend).await;
    let token = access(&laptop);
    let delete = |password: &str| {
        app.delete(
            "/api/users/me",
            Some(&token),
            Some(json!({ "password": password })),
        )
    };

    delete("not my password")
        .await
        .assert_error(StatusCode::FORBIDDEN, "wrong_password");
    assert!(still_works(&app, &phone).await, "nothing deleted");

    let deleted = delete(PASSWORD).await;

    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    for device in [&laptop, &phone] {
        app.me(&access(device))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        app.refresh(&device.str("refresh_token"))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    }
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    delete(PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let again = app.register("ann@example.com", PASSWORD).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    app.delete("/api/users/me", None, Some(json!({ "password": PASSWORD })))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
}

for_each_backend!(
    the_list_shows_each_device_and_marks_the_callers,
    past_the_cap_a_login_ends_the_least_recently_used_session,
    a_listing_refuses_cursors_it_did_not_hand_out_and_limits_out_of_range,
    ending_another_session_stops_its_tokens_at_once,
    sessions_of_others_and_unknown_ids_are_not_found,
    signing_out_everywhere_ends_every_session,
    a_password_change_keeps_this_session_and_ends_the_others,
    a_password_change_needs_the_current_password_and_a_strong_new_one,
    wrong_confirmations_count_as_failed_logins,
    deleting_the_account_ends_everything_and_frees_the_email,
);
