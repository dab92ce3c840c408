//! Mailed links over HTTP, delivered by SMTP to a real server (aiosmtpd), on both stores:
//! verifying an address, resending, forgetting and resetting a password.

use latchkey_bootstrap::config::SmtpConfig;
use latchkey_tests::{
    for_each_backend,
    http::{spawn_app, TestApp},
    smtp::MailCatcher,
    Backend,
};
use poem::http::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// An app whose mails go to `catcher`, with links to `http://site.test`.
async fn app_mailing_to(
    backend: Backend,
    catcher: &MailCatcher,
    adjust: impl FnOnce(&mut latchkey_bootstrap::Config),
) -> TestApp {
    let url = catcher.url();
    spawn_app(backend, move |config| {
        config.mail.smtp = Some(SmtpConfig {
            url: url.into(),
            username: None,
            password: None,
        });
        config.mail.public_url = "http://site.test".into();
        adjust(config);
    })
    .await
}

async fn verify(app: &TestApp, token: &str) -> latchkey_tests::http::Reply {
    app.post("/api/auth/email/verify", None, json!({ "token": token }))
        .await
}

async fn email_verified(app: &TestApp, access_token: &str) -> bool {
    let me = app.me(access_token).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    me.body["email_verified"].as_bool().expect("a boolean")
}

async fn registration_mails_a_link_that_verifies_the_email_once(backend: Backend) {
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |_| {}).await;
    let login = app.signed_in("Ann@Example.com").await;
    let access = login.str("access_token");
    assert!(!email_verified(&app, &access).await);

    let mail = catcher.wait_for("Ann@Example.com").await;
    assert!(mail.subject.contains("Confirm your email"), "{mail:?}");
    assert!(mail
        .content
        .contains("http://site.test/verify-email#token="));
    let token = mail.token_for("verify-email");
    assert_eq!(token.len(), 43, "256 bits, base64url");

    let verified = verify(&app, &token).await;
    assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.body);
    assert!(email_verified(&app, &access).await);
    verify(&app, &token)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_link");
    verify(&app, "not-a-token")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_link");
    app.post("/api/auth/email/verify", None, json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
}

async fn a_new_verification_link_replaces_the_last(backend: Backend) {
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |_| {}).await;
    let access = app.signed_in("ann@example.com").await.str("access_token");
    let first = catcher
        .wait_for("ann@example.com")
        .await
        .token_for("verify-email");

    let resent = app
        .post("/api/auth/email/verify/resend", Some(&access), json!(null))
        .await;

    assert_eq!(resent.status, StatusCode::ACCEPTED, "{}", resent.body);
    assert!(resent.body["message"].is_string());
    let second = catcher
        .wait_for("ann@example.com")
        .await
        .token_for("verify-email");
    assert_ne!(first, second);
    verify(&app, &first)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_link");
    assert_eq!(verify(&app, &second).await.status, StatusCode::NO_CONTENT);
    // Verified: asking again sends nothing.
    let again = app
        .post("/api/auth/email/verify/resend", Some(&access), json!(null))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    app.post("/api/auth/email/verify/resend", None, json!(null))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(catcher.new_mails().is_empty(), "no mail once verified");
}

async fn forgot(app: &TestApp, email: &str) -> latchkey_tests::http::Reply {
    app.post("/api/auth/password/forgot", None, json!({ "email": email }))
        .await
}

async fn reset(app: &TestApp, token: &str, new_password: &str) -> latchkey_tests::http::Reply {
    app.post(
        "/api/auth/password/reset",
        None,
        json!({ "token": token, "new_password": new_password }),
    )
    .await
}

async fn a_forgotten_password_is_reset_by_the_mailed_link_and_every_session_ends(backend: Backend) {
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |_| {}).await;
    let session = app.signed_in("ann@example.com").await;
    catcher.wait_for("ann@example.com").await; // the verification mail

    let unknown = forgot(&app, "nobody@example.com").await;
    let known = forgot(&app, "ANN@example.com").await;

    assert_eq!(known.status, StatusCode::ACCEPTED, "{}", known.body);
    assert_eq!(
        (unknown.status, &unknown.body),
        (known.status, &known.body),
        "the same answer for an address with no account"
    );
    let mail = catcher.wait_for("ann@example.com").await;
    assert!(mail.subject.contains("Reset your"), "{mail:?}");
    let token = mail.token_for("reset-password");
    // The unknown address was asked for first: had it been mailed, it would be here by now.
    assert!(catcher
        .new_mails()
        .iter()
        .all(|m| m.to != "nobody@example.com"));

    let weak = reset(&app, &token, "short").await;
    weak.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert!(app.me(&session.str("access_token")).await.status == StatusCode::OK);

    let done = reset(&app, &token, "a brand new passphrase").await;

    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    app.me(&session.str("access_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    app.refresh(&session.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    reset(&app, &token, "yet another passphrase")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_link");
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let login = app.login("ann@example.com", "a brand new passphrase").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(
        email_verified(&app, &login.str("access_token")).await,
        "the reset link reached the address"
    );
    forgot(&app, "")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email");
}

async fn a_reset_link_stops_working_when_the_password_changes_or_a_newer_one_is_sent(
    backend: Backend,
) {
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |_| {}).await;
    let access = app.signed_in("ann@example.com").await.str("access_token");
    catcher.wait_for("ann@example.com").await;
    forgot(&app, "ann@example.com").await;
    let older = catcher
        .wait_for("ann@example.com")
        .await
        .token_for("reset-password");
    forgot(&app, "ann@example.com").await;
    let newer = catcher
        .wait_for("ann@example.com")
        .await
        .token_for("reset-password");
    reset(&app, &older, "a brand new passphrase")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_link");

    let changed = app
        .post(
            "/api/auth/password/change",
            Some(&access),
            json!({ "current_password": PASSWORD, "new_password": "changed in the app" }),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);

    reset(&app, &newer, "a brand new passphrase")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_link");
    let login = app.login("ann@example.com", "changed in the app").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
}

async fn with_verification_required_only_verified_emails_log_in(backend: Backend) {
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |config| {
        config.mail.policy.require_verified_email = true;
    })
    .await;
    let registered = app.register("ann@example.com", PASSWORD).await;
    assert_eq!(registered.status, StatusCode::CREATED);

    app.login("ann@example.com", PASSWORD)
        .await
        .assert_error(StatusCode::FORBIDDEN, "email_not_verified");
    // Told only to whoever knows the password.
    app.login("ann@example.com", "not the password")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    let token = catcher
        .wait_for("ann@example.com")
        .await
        .token_for("verify-email");
    assert_eq!(verify(&app, &token).await.status, StatusCode::NO_CONTENT);
    let login = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
}

async fn mail_requests_spend_budgets_per_network_and_per_address(backend: Backend) {
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |config| {
        let budget = |burst| {
            Some(latchkey_application::Budget {
                burst: std::num::NonZeroU32::new(burst).unwrap(),
                replenish_every: Duration::from_secs(600),
            })
        };
        config.abuse.mail = budget(3);
        // The verification mail at registration, then one more.
        config.abuse.mail_per_recipient = budget(2);
    })
    .await;
    app.register("ann@example.com", PASSWORD).await;
    catcher.wait_for("ann@example.com").await;

    assert_eq!(
        forgot(&app, "ann@example.com").await.status,
        StatusCode::ACCEPTED
    );
    catcher.wait_for("ann@example.com").await;
    // The address had its mail: the same answer, and nothing sent.
    assert_eq!(
        forgot(&app, "ann@example.com").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        forgot(&app, "bob@example.com").await.status,
        StatusCode::ACCEPTED
    );
    let limited = forgot(&app, "ann@example.com").await;
    limited.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(catcher.new_mails().is_empty());
}

async fn a_mail_server_that_is_down_delays_no_request(backend: Backend) {
    let closed = format!("smtp://127.0.0.1:{}", latchkey_tests::free_port());
    let app = spawn_app(backend, move |config| {
        config.mail.smtp = Some(SmtpConfig {
            url: closed.into(),
            username: None,
            password: None,
        });
    })
    .await;
    let started = Instant::now();
    let registered = app.register("ann@example.com", PASSWORD).await;
    let forgotten = forgot(&app, "ann@example.com").await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    assert_eq!(forgotten.status, StatusCode::ACCEPTED, "{}", forgotten.body);
    assert!(started.elapsed() < Duration::from_secs(2));
}

for_each_backend!(
    registration_mails_a_link_that_verifies_the_email_once,
    a_new_verification_link_replaces_the_last,
    a_forgotten_password_is_reset_by_the_mailed_link_and_every_session_ends,
    a_reset_link_stops_working_when_the_password_changes_or_a_newer_one_is_sent,
    with_verification_required_only_verified_emails_log_in,
    mail_requests_spend_budgets_per_network_and_per_address,
    a_mail_server_that_is_down_delays_no_request,
);
