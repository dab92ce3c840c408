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

/// Verifies from a browser signed in with `access_token`, or from one signed in to nothing.
async fn verify_as(
    app: &TestApp,
    token: &str,
    access_token: Option<&str>,
) -> latchkey_tests::http::Reply {
    app.post(
        "/api/auth/email/verify",
        access_token,
        json!({ "token": token }),
    )
    .await
}

async fn verify(app: &TestApp, token: &str) -> latchkey_tests::http::Reply {
    verify_as(app, token, None).await
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

    // From the signed-in browser: one person holds the session and the mailbox.
    let verified = verify_as(&app, &token, Some(&access)).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert_eq!(verified.body, json!({ "sessions_ended": false }));
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
    assert_eq!(
        verify_as(&app, &second, Some(&access)).await.status,
        StatusCode::OK
    );
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
    assert_eq!(token.len(), 43, "256 bits, base64url");
    // The link names the account's address, for password managers, after the token.
    assert!(
        mail.content.contains(&format!(
            "/reset-password#token={token}&email=ann%40example.com"
        )),
        "{mail:?}"
    );
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
    assert_eq!(verify(&app, &token).await.status, StatusCode::OK);
    let login = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
}

/// Account pre-hijacking (Sudhodanan and Paverd, USENIX Security 2022): a squatter registers
/// the address `ADMIN_EMAILS` names, with a password of their own, before its owner does.
/// The owner confirming the address must hand the squatter neither the role nor the account.
async fn a_squatter_of_an_admin_address_gets_no_admin_and_loses_the_account(backend: Backend) {
    const OWNER_ADDRESS: &str = "ops@corp.example";
    const SQUATTERS: &str = "the squatter's own phrase";
    const OWNERS: &str = "the owner's real passphrase";
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |config| {
        config.admin_emails = vec![latchkey_domain::EmailAddress::parse(OWNER_ADDRESS)
            .unwrap()
            .key()];
    })
    .await;
    let registered = app.register(OWNER_ADDRESS, SQUATTERS).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let squatter = app.login(OWNER_ADDRESS, SQUATTERS).await;
    assert_eq!(squatter.status, StatusCode::OK, "{}", squatter.body);
    catcher.wait_for(OWNER_ADDRESS).await; // the registration's verification mail
    let resent = app
        .post(
            "/api/auth/email/verify/resend",
            Some(&squatter.str("access_token")),
            json!(null),
        )
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{}", resent.body);

    // The owner opens the mail and confirms, in a browser signed in to nothing.
    let link = catcher
        .wait_for(OWNER_ADDRESS)
        .await
        .token_for("verify-email");
    let verified = verify(&app, &link).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert_eq!(verified.body, json!({ "sessions_ended": true }));

    // The squatter's session is over, and a fresh login carries no admin.
    app.refresh(&squatter.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    let again = app.login(OWNER_ADDRESS, SQUATTERS).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let squatters_access = again.str("access_token");
    assert_eq!(
        app.me(&squatters_access).await.body["roles"],
        json!(["user"])
    );
    app.get("/api/admin/users", Some(&squatters_access))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    // The owner resets the password by mail: the account and the role are theirs.
    assert_eq!(
        forgot(&app, OWNER_ADDRESS).await.status,
        StatusCode::ACCEPTED
    );
    let reset_link = catcher
        .wait_for(OWNER_ADDRESS)
        .await
        .token_for("reset-password");
    assert_eq!(
        reset(&app, &reset_link, OWNERS).await.status,
        StatusCode::NO_CONTENT
    );
    app.login(OWNER_ADDRESS, SQUATTERS)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    app.refresh(&again.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    let owner = app.login(OWNER_ADDRESS, OWNERS).await;
    let owners_access = owner.str("access_token");
    assert_eq!(
        app.me(&owners_access).await.body["roles"],
        json!(["user", "admin"])
    );
    let listed = app.get("/api/admin/users", Some(&owners_access)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
}

/// "This was not me": a verification from a browser signed in to another account ends the
/// account's sessions (also one that started just before), and the mailbox's holder takes the
/// account over with a reset, which ends the sessions started since.
async fn a_verification_from_another_accounts_session_ends_the_sessions_and_a_reset_takes_over(
    backend: Backend,
) {
    let catcher = MailCatcher::start();
    let app = app_mailing_to(backend, &catcher, |_| {}).await;
    let squatter = app.signed_in("ann@example.com").await;
    let link = catcher
        .wait_for("ann@example.com")
        .await
        .token_for("verify-email");
    // Someone else's session does not count as the account's own.
    let bob = app.signed_in("bob@example.com").await.str("access_token");
    let verified = verify_as(&app, &link, Some(&bob)).await;
    assert_eq!(verified.body, json!({ "sessions_ended": true }));
    app.me(&squatter.str("access_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(
        app.me(&bob).await.status,
        StatusCode::OK,
        "Bob's session goes on"
    );
    let later = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(
        forgot(&app, "ann@example.com").await.status,
        StatusCode::ACCEPTED
    );
    let reset_link = catcher
        .wait_for("ann@example.com")
        .await
        .token_for("reset-password");
    let taken_over = reset(&app, &reset_link, "a passphrase of her own").await;
    assert_eq!(
        taken_over.status,
        StatusCode::NO_CONTENT,
        "{}",
        taken_over.body
    );
    app.refresh(&later.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(
        app.login("ann@example.com", "a passphrase of her own")
            .await
            .status,
        StatusCode::OK
    );
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
    a_squatter_of_an_admin_address_gets_no_admin_and_loses_the_account,
    a_verification_from_another_accounts_session_ends_the_sessions_and_a_reset_takes_over,
    mail_requests_spend_budgets_per_network_and_per_address,
    a_mail_server_that_is_down_delays_no_request,
);
