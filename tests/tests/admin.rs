//! The admin API over HTTP, on both stores: who may call it (every 401, 403 and 404), listing
//! and paging accounts, roles, disabling and enabling, ending sessions, and what an
//! administrator cannot do to themselves.

use chrono::Utc;
use latchkey_domain::EmailAddress;
use latchkey_tests::{
    for_each_backend,
    http::{app, Reply, TestApp},
    Backend,
};
use poem::http::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const ADMIN: &str = "boss@example.com";

/// An app whose `ADMIN_EMAILS` names the boss, the boss signed in (email verified), and Ann,
/// an ordinary user, signed in.
struct Office {
    app: TestApp,
    boss: String,
    boss_id: String,
    ann: Reply,
    ann_id: String,
}

/// What a reset by mail leaves in the store: the address verified, and its password chosen
/// by whoever holds the mailbox (the suites in mail.rs go through the mails themselves).
async fn reset_by_mailbox_owner(app: &TestApp, email: &str) {
    let users = app.users.as_ref().expect("the app's own store");
    let key = EmailAddress::parse(email).unwrap().key();
    let user = users.find_by_email(&key).await.unwrap().unwrap();
    assert!(users
        .mark_email_verified(user.id, key.as_str(), Utc::now())
        .await
        .unwrap());
    assert!(users
        .mark_password_set_by_mailbox_owner(user.id, &user.password_hash, Utc::now())
        .await
        .unwrap());
}

async fn office(backend: Backend) -> Office {
    let app = app(backend)
        .config(|config| {
            config.admin_emails = vec![EmailAddress::parse(ADMIN).unwrap().key()];
        })
        .spawn()
        .await;
    let boss = app.register(ADMIN, PASSWORD).await;
    // Anyone could have registered the address: it counts once its owner set the password.
    assert_eq!(boss.body["roles"], json!(["user"]));
    reset_by_mailbox_owner(&app, ADMIN).await;
    assert_eq!(app.service.grant_configured_admins().await, Ok(1));
    let boss_id = boss.str("id");
    let boss = app.login(ADMIN, PASSWORD).await.str("access_token");
    let ann = app.signed_in("ann@example.com").await;
    let ann_id = app.me(&ann.str("access_token")).await.str("id");
    Office {
        app,
        boss,
        boss_id,
        ann,
        ann_id,
    }
}

impl Office {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        match method {
            "GET" => self.app.get(path, token).await,
            "DELETE" => self.app.delete(path, token, body).await,
            "POST" => self.app.post(path, token, body.unwrap_or(json!({}))).await,
            "PUT" => self.app.put(path, token, body.unwrap_or(json!({}))).await,
            other => panic!("no {other} here"),
        }
    }

    async fn as_boss(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.boss), body).await
    }

    fn ann_token(&self) -> String {
        self.ann.str("access_token")
    }
}

/// Every admin operation on account `id`.
fn operations(id: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/api/admin/users".into(), None),
        ("GET", format!("/api/admin/users/{id}"), None),
        (
            "PUT",
            format!("/api/admin/users/{id}/roles"),
            Some(json!({ "roles": ["billing"] })),
        ),
        ("POST", format!("/api/admin/users/{id}/disable"), None),
        ("POST", format!("/api/admin/users/{id}/enable"), None),
        ("DELETE", format!("/api/admin/users/{id}/sessions"), None),
    ]
}

async fn strangers_get_401_and_users_403_on_every_admin_operation(office: Office) {
    let ann = office.ann_token();
    for (method, path, body) in operations(&office.ann_id) {
        let anonymous = office.call(method, &path, None, body.clone()).await;
        anonymous.assert_error(StatusCode::UNAUTHORIZED, "missing_token");
        let forged = office
            .call(method, &path, Some("not.a.token"), body.clone())
            .await;
        forged.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        let user = office.call(method, &path, Some(&ann), body.clone()).await;
        user.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    // Ann's account is untouched by all of that.
    let me = office.app.me(&ann).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["roles"], json!(["user"]));
}

async fn unknown_accounts_are_404_and_malformed_ids_400(office: Office) {
    let unknown = uuid::Uuid::new_v4().to_string();
    for (method, path, body) in operations(&unknown).into_iter().skip(1) {
        let reply = office.as_boss(method, &path, body).await;
        reply.assert_error(StatusCode::NOT_FOUND, "user_not_found");
    }
    for (method, path, body) in operations("not-a-uuid").into_iter().skip(1) {
        let reply = office.as_boss(method, &path, body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

fn listed_emails(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["email"].as_str().unwrap().to_owned())
        .collect()
}

async fn an_administrator_searches_filters_and_pages_accounts(office: Office) {
    for email in ["Anna@example.com", "carl@example.com", "dora@example.com"] {
        assert_eq!(
            office.app.register(email, PASSWORD).await.status,
            StatusCode::CREATED
        );
    }
    let all = office.as_boss("GET", "/api/admin/users", None).await;
    assert_eq!(
        listed_emails(&all),
        [
            "ann@example.com",
            "Anna@example.com",
            ADMIN,
            "carl@example.com",
            "dora@example.com"
        ]
    );
    assert!(all.body.get("next_cursor").is_none());
    let first = &all.body["users"][0];
    assert_eq!(first["disabled"], false);
    assert_eq!(first["email_verified"], false);
    assert!(first.get("password_hash").is_none());

    let search = office
        .as_boss("GET", "/api/admin/users?query=ANN", None)
        .await;
    assert_eq!(
        listed_emails(&search),
        ["ann@example.com", "Anna@example.com"]
    );
    let admins = office
        .as_boss("GET", "/api/admin/users?role=admin", None)
        .await;
    assert_eq!(listed_emails(&admins), [ADMIN]);

    // Two at a time, with an account added before the cursor and one after it meanwhile.
    let mut seen = Vec::new();
    let mut path = "/api/admin/users?limit=2".to_owned();
    for round in 0.. {
        let page = office.as_boss("GET", &path, None).await;
        seen.extend(listed_emails(&page));
        let Some(cursor) = page.body["next_cursor"].as_str() else {
            break;
        };
        path = format!("/api/admin/users?limit=2&cursor={cursor}");
        office
            .app
            .register(&format!("aa{round}@example.com"), PASSWORD)
            .await;
        office
            .app
            .register(&format!("zz{round}@example.com"), PASSWORD)
            .await;
    }
    let present = [
        "ann@example.com",
        "Anna@example.com",
        ADMIN,
        "carl@example.com",
        "dora@example.com",
    ];
    for email in present {
        assert_eq!(
            seen.iter().filter(|s| *s == email).count(),
            1,
            "{email} in {seen:?}"
        );
    }
    let order: Vec<&String> = seen
        .iter()
        .filter(|s| present.contains(&s.as_str()))
        .collect();
    assert_eq!(order, present, "in email order");

    let bad_cursor = office
        .as_boss("GET", "/api/admin/users?cursor=%25%25", None)
        .await;
    bad_cursor.assert_error(StatusCode::BAD_REQUEST, "invalid_cursor");
    let bad_role = office
        .as_boss("GET", "/api/admin/users?role=Admin", None)
        .await;
    bad_role.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_role");
    for limit in ["0", "101", "ten"] {
        let reply = office
            .as_boss("GET", &format!("/api/admin/users?limit={limit}"), None)
            .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

async fn disabling_ends_every_session_and_refuses_login_until_enabled(office: Office) {
    let user = |suffix: &str| format!("/api/admin/users/{}{suffix}", office.ann_id);
    let second = office.app.login("ann@example.com", PASSWORD).await;
    let detail = office.as_boss("GET", &user(""), None).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert_eq!(detail.body["active_sessions"], 2);
    assert!(detail.body["last_login_at"].is_string());

    let disabled = office.as_boss("POST", &user("/disable"), None).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert_eq!(disabled.body["disabled"], true);
    assert!(disabled.body["disabled_at"].is_string());

    office
        .app
        .me(&office.ann_token())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    office
        .app
        .refresh(&second.str("refresh_token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    office
        .app
        .login("ann@example.com", PASSWORD)
        .await
        .assert_error(StatusCode::FORBIDDEN, "account_disabled");
    // Whoever does not know the password learns nothing.
    office
        .app
        .login("ann@example.com", "not her password")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let detail = office.as_boss("GET", &user(""), None).await;
    assert_eq!(detail.body["active_sessions"], 0);
    let listed = office
        .as_boss("GET", "/api/admin/users?disabled=true", None)
        .await;
    assert_eq!(listed_emails(&listed), ["ann@example.com"]);

    let again = office.as_boss("POST", &user("/disable"), None).await;
    assert_eq!(again.body["disabled_at"], disabled.body["disabled_at"]);
    let enabled = office.as_boss("POST", &user("/enable"), None).await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert_eq!(enabled.body["disabled"], false);
    assert!(enabled.body.get("disabled_at").is_none());
    let back = office.app.login("ann@example.com", PASSWORD).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(
        office.app.me(&back.str("access_token")).await.status,
        StatusCode::OK
    );
}

async fn ending_an_accounts_sessions_stops_its_tokens_at_once(office: Office) {
    let path = format!("/api/admin/users/{}/sessions", office.ann_id);
    let second = office.app.login("ann@example.com", PASSWORD).await;
    let ended = office.as_boss("DELETE", &path, None).await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert_eq!(ended.body, json!({ "ended_sessions": 2 }));
    for token in [office.ann_token(), second.str("access_token")] {
        office
            .app
            .me(&token)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let again = office.as_boss("DELETE", &path, None).await;
    assert_eq!(again.body, json!({ "ended_sessions": 0 }));
    // Not disabled: she logs in again.
    assert_eq!(
        office.app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

async fn roles_change_at_once_for_the_admin_api_and_at_refresh_for_tokens(office: Office) {
    let roles = format!("/api/admin/users/{}/roles", office.ann_id);
    let changed = office
        .as_boss(
            "PUT",
            &roles,
            Some(json!({ "roles": ["billing", "admin", "billing"] })),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["roles"], json!(["user", "billing", "admin"]));

    // Her token still says `user`.
    let listed = "/api/admin/users";
    office
        .call("GET", listed, Some(&office.ann_token()), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // Refreshed while her address is unverified: `admin` stays out of the token.
    let refreshed = office.app.refresh(&office.ann.str("refresh_token")).await;
    let unverified = refreshed.str("access_token");
    assert_eq!(
        office.app.session(&unverified).await.body["roles"],
        json!(["user", "billing"])
    );
    office
        .call("GET", listed, Some(&unverified), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    reset_by_mailbox_owner(&office.app, "ann@example.com").await;
    let refreshed = office.app.refresh(&refreshed.str("refresh_token")).await;
    let token = refreshed.str("access_token");
    assert_eq!(
        office.app.session(&token).await.body["roles"],
        json!(["user", "billing", "admin"])
    );
    assert_eq!(
        office.app.me(&token).await.body["roles"],
        json!(["user", "billing", "admin"])
    );
    assert_eq!(
        office.call("GET", listed, Some(&token), None).await.status,
        StatusCode::OK
    );

    // Taken away: her token still claims `admin`, and is refused at once.
    let demoted = office
        .as_boss("PUT", &roles, Some(json!({ "roles": [] })))
        .await;
    assert_eq!(demoted.body["roles"], json!(["user"]));
    office
        .call("GET", listed, Some(&token), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
}

async fn an_administrator_cannot_lock_themselves_out(office: Office) {
    let own = |suffix: &str| format!("/api/admin/users/{}{suffix}", office.boss_id);
    office
        .as_boss("PUT", &own("/roles"), Some(json!({ "roles": ["billing"] })))
        .await
        .assert_error(StatusCode::CONFLICT, "own_admin_role");
    office
        .as_boss("POST", &own("/disable"), None)
        .await
        .assert_error(StatusCode::CONFLICT, "own_account");
    let kept = office
        .as_boss(
            "PUT",
            &own("/roles"),
            Some(json!({ "roles": ["admin", "auditor"] })),
        )
        .await;
    assert_eq!(kept.body["roles"], json!(["user", "admin", "auditor"]));

    let ann_roles = format!("/api/admin/users/{}/roles", office.ann_id);
    for roles in [json!(["Admin"]), json!(["two words"]), json!([""])] {
        office
            .as_boss("PUT", &ann_roles, Some(json!({ "roles": roles })))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_role");
    }
    let sixteen: Vec<String> = (0..16).map(|n| format!("r{n}")).collect();
    office
        .as_boss("PUT", &ann_roles, Some(json!({ "roles": sixteen })))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_role");
    let seventeen: Vec<String> = (0..17).map(|n| format!("r{n}")).collect();
    office
        .as_boss("PUT", &ann_roles, Some(json!({ "roles": seventeen })))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    office
        .as_boss(
            "PUT",
            &ann_roles,
            Some(json!({ "roles": ["x"], "admin": true })),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    let me = office.app.me(&office.boss).await;
    assert_eq!(me.body["roles"], json!(["user", "admin", "auditor"]));
}

for_each_backend!(
    fixture = super::office;
    strangers_get_401_and_users_403_on_every_admin_operation,
    unknown_accounts_are_404_and_malformed_ids_400,
    an_administrator_searches_filters_and_pages_accounts,
    disabling_ends_every_session_and_refuses_login_until_enabled,
    ending_an_accounts_sessions_stops_its_tokens_at_once,
    roles_change_at_once_for_the_admin_api_and_at_refresh_for_tokens,
    an_administrator_cannot_lock_themselves_out,
);

/// `ADMIN_EMAILS` at start: an account registered before it named the email becomes an
/// administrator when an instance starts with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_emails_make_an_existing_account_an_administrator_at_start() {
    let before = app(Backend::Mongo).spawn().await;
    let registered = before.signed_in("carol@example.com").await;
    let token = registered.str("access_token");
    assert_eq!(before.me(&token).await.body["roles"], json!(["user"]));
    before.signed_in("dave@example.com").await;
    reset_by_mailbox_owner(&before, "carol@example.com").await;

    let after = app(Backend::Mongo)
        .config(|config| {
            config.admin_emails = ["CAROL@example.com", "dave@example.com"]
                .iter()
                .map(|email| EmailAddress::parse(email).unwrap().key())
                .collect();
        })
        .sharing_store_with(&before)
        .spawn()
        .await;
    let login = after
        .login("carol@example.com", "correct horse battery")
        .await;
    assert_eq!(
        after.me(&login.str("access_token")).await.body["roles"],
        json!(["user", "admin"])
    );
    // Dave's address is named too, but nobody proved it is his: not yet.
    let dave = after
        .login("dave@example.com", "correct horse battery")
        .await;
    assert_eq!(
        after.me(&dave.str("access_token")).await.body["roles"],
        json!(["user"])
    );
}

/// `latchkey admin grant EMAIL`: the first administrator, made by an operator where the
/// server's configuration is, with no mail at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_grants_the_first_administrator_from_the_command_line() {
    let app = app(Backend::Mongo).spawn().await;
    let ops = app.signed_in("ops@example.com").await;
    let (uri, database) = app.database().expect("a MongoDB app");
    let grant = |email: &str, db_uri: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_latchkey-server"))
            .args(["admin", "grant", email])
            .env_clear()
            .env("DB_URI", db_uri)
            .env("DB_NAME", database)
            .env("JWT_SECRET", "an operator's secret of at least 32 bytes")
            .output()
            .expect("the binary runs")
    };

    let granted = grant("OPS@example.com", uri);
    let stdout = String::from_utf8_lossy(&granted.stdout);
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    assert!(
        stdout.contains("ops@example.com") && stdout.contains("admin"),
        "{stdout}"
    );
    let refreshed = app.refresh(&ops.str("refresh_token")).await;
    let token = refreshed.str("access_token");
    assert_eq!(app.me(&token).await.body["roles"], json!(["user", "admin"]));
    assert_eq!(app.me(&token).await.body["email_verified"], json!(true));
    let listed = app.get("/api/admin/users", Some(&token)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);

    let unknown = grant("nobody@example.com", uri);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no account"));
    let in_memory = grant("ops@example.com", "memory");
    assert!(!in_memory.status.success());
    assert!(String::from_utf8_lossy(&in_memory.stderr).contains("DB_URI"));
}
