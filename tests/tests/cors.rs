//! Apps on other origins (CORS): preflights and actual responses for allowed, refused and
//! look-alike origins on every documented path, errors included (the server loop's own), the
//! web site left out, and preflights that cost nothing.

use latchkey_application::Budget;
use latchkey_bootstrap::Config;
use latchkey_http::{AllowedOrigins, CorsSettings};
use latchkey_tests::{
    http::{app, send_from, Reply, TestApp},
    process::{http, sample, ServerProcess},
    Backend,
};
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::{num::NonZeroU32, time::Duration};

const APP: &str = "https://app.example.com";
const PASSWORD: &str = "correct horse battery staple";
const SERVER: &str = env!("CARGO_BIN_EXE_latchkey-server");

/// Origins a browser could send that must not pass for `APP`.
const LOOK_ALIKES: [&str; 8] = [
    "null",
    "https://app.example.com.evil.test",
    "https://evil-app.example.com",
    "https://app.example.co",
    "http://app.example.com",
    "https://app.example.com:8443",
    "https://APP.example.com",
    "https://app.example.com/",
];

fn allow(config: &mut Config, origins: AllowedOrigins) {
    config.set_cors(CorsSettings {
        origins,
        max_age_secs: 600,
    });
}

async fn app_allowing(origins: AllowedOrigins, adjust: impl FnOnce(&mut Config)) -> TestApp {
    app(Backend::Memory)
        .config(|config| {
            allow(config, origins);
            adjust(config);
        })
        .listening()
        .spawn()
        .await
}

async fn app_allowing_app() -> TestApp {
    app_allowing(AllowedOrigins::Only(vec![APP.into()]), |_| {}).await
}

/// Every documented operation: its method and a concrete path.
fn operations() -> Vec<(Method, String)> {
    let document: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = format!(
            "/api{}",
            path.replace("{id}", &uuid::Uuid::nil().to_string())
        );
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase().parse().unwrap(), concrete.clone()));
        }
    }
    assert!(operations.len() > 20, "{operations:?}");
    operations.push((Method::GET, "/.well-known/jwks.json".into()));
    operations
}

async fn preflight(app: &TestApp, method: &Method, path: &str, origin: &str) -> Reply {
    Reply::from(
        app.client
            .options(path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method.as_str())
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
            .await,
    )
    .await
}

async fn from(app: &TestApp, method: Method, path: &str, origin: &str, body: Value) -> Reply {
    let mut request = app.client.request(method, path).header("Origin", origin);
    if !body.is_null() {
        request = request.body_json(&body);
    }
    Reply::from(request.send().await).await
}

fn assert_no_cors(reply: &Reply, what: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
        "access-control-expose-headers",
        "access-control-allow-credentials",
    ] {
        assert_eq!(reply.header(name), None, "{what}: {name}");
    }
}

fn varies_on_origin(reply: &Reply) -> bool {
    reply
        .headers
        .get_all("vary")
        .iter()
        .any(|value| value.to_str().unwrap().contains("Origin"))
}

/// An actual response `APP` can read, with the headers an app needs exposed.
fn assert_readable_by_app(reply: &Reply, what: &str) {
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(APP),
        "{what}"
    );
    let exposed = reply.header("access-control-expose-headers").unwrap_or("");
    for header in ["Retry-After", "X-Request-Id", "WWW-Authenticate"] {
        assert!(exposed.contains(header), "{what}: {exposed}");
    }
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    assert!(varies_on_origin(reply), "{what}");
}

#[tokio::test]
async fn preflights_from_an_allowed_origin_answer_what_each_path_allows() {
    let app = app_allowing_app().await;
    for (method, path) in operations() {
        let reply = preflight(&app, &method, &path, APP).await;
        let what = format!("{method} {path}");
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{what}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(APP),
            "{what}"
        );
        let methods = reply.header("access-control-allow-methods").unwrap_or("");
        assert!(
            methods
                .split(", ")
                .any(|allowed| allowed == method.as_str()),
            "{what}: {methods}"
        );
        let headers = reply
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        for header in ["content-type", "authorization", "x-request-id"] {
            assert!(headers.contains(header), "{what}: {headers}");
        }
        assert_eq!(
            reply.header("access-control-max-age"),
            Some("600"),
            "{what}"
        );
        assert_eq!(reply.header("access-control-allow-credentials"), None);
        assert!(varies_on_origin(&reply), "{what}");
        // Hardened like any other response.
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }
    // A path the API does not have: nothing to allow.
    let unknown = preflight(&app, &Method::GET, "/api/nothing/here", APP).await;
    assert_eq!(unknown.status, StatusCode::NO_CONTENT);
    assert_no_cors(&unknown, "unknown path");
}

#[tokio::test]
async fn preflights_and_responses_for_any_other_origin_carry_no_cors_headers() {
    let app = app_allowing_app().await;
    for origin in LOOK_ALIKES {
        for (method, path) in operations() {
            let reply = preflight(&app, &method, &path, origin).await;
            let what = format!("{origin}: OPTIONS {path}");
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{what}");
            assert_no_cors(&reply, &what);
        }
        for (method, path) in operations() {
            let reply = from(&app, method.clone(), &path, origin, Value::Null).await;
            let what = format!("{origin}: {method} {path}");
            assert_no_cors(&reply, &what);
            assert!(varies_on_origin(&reply), "{what}");
        }
    }
}

/// Whatever each operation answers a bare request (401, 400, 415, 200...), the allowed origin
/// can read it.
#[tokio::test]
async fn every_operation_answers_the_allowed_origin_readably() {
    let app = app_allowing_app().await;
    for (method, path) in operations() {
        let reply = from(&app, method.clone(), &path, APP, Value::Null).await;
        assert_readable_by_app(&reply, &format!("{method} {path} ({})", reply.status));
    }
}

#[tokio::test]
async fn an_allowed_origin_reads_answers_and_errors_alike() {
    let app = app_allowing(AllowedOrigins::Only(vec![APP.into()]), |config| {
        config.abuse.login = Some(Budget {
            burst: NonZeroU32::new(2).unwrap(),
            replenish_every: Duration::from_secs(3600),
        });
    })
    .await;
    let email = "cors@example.com";
    let body = json!({ "email": email, "password": PASSWORD });
    let registered = from(&app, Method::POST, "/api/auth/register", APP, body.clone()).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    assert_readable_by_app(&registered, "register");
    let login = from(&app, Method::POST, "/api/auth/login", APP, body.clone()).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_readable_by_app(&login, "login");
    let token = login.str("access_token");
    let me = Reply::from(
        app.client
            .get("/api/users/me")
            .header("Origin", APP)
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await,
    )
    .await;
    assert_eq!(me.body["email"], email);
    assert_readable_by_app(&me, "me");

    let refused = from(&app, Method::GET, "/api/users/me", APP, Value::Null).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.header("www-authenticate").is_some());
    assert_readable_by_app(&refused, "401");

    // Two logins from one network spend its budget; the third is refused, readably.
    let from_network = || {
        app.post_from(
            "127.0.0.9",
            "/api/auth/login",
            body.clone(),
            &[("Origin", APP)],
        )
    };
    for _ in 0..2 {
        assert_eq!(from_network().await.status, StatusCode::OK);
    }
    let throttled = from_network().await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.header("retry-after").is_some());
    assert_readable_by_app(&throttled, "429");

    for (method, path, status) in [
        (Method::GET, "/api/nothing/here", StatusCode::NOT_FOUND),
        (
            Method::PUT,
            "/api/auth/login",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/.well-known/jwks.json", StatusCode::OK),
    ] {
        let reply = from(&app, method, path, APP, Value::Null).await;
        assert_eq!(reply.status, status, "{path}");
        assert_readable_by_app(&reply, path);
    }
    app.readiness.drain();
    let draining = from(&app, Method::GET, "/api/health/ready", APP, Value::Null).await;
    assert_eq!(draining.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_readable_by_app(&draining, "503");
}

#[tokio::test]
async fn preflights_spend_no_budget_and_wait_for_no_body() {
    let app = app_allowing(AllowedOrigins::Only(vec![APP.into()]), |config| {
        config.abuse.login = Some(Budget {
            burst: NonZeroU32::new(1).unwrap(),
            replenish_every: Duration::from_secs(3600),
        });
    })
    .await;
    app.register("budget@example.com", PASSWORD).await;
    let source = "127.0.0.10";
    let preflight = format!(
        "OPTIONS /api/auth/login HTTP/1.1\r\nHost: a\r\nOrigin: {APP}\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..10 {
        let reply = send_from(source.parse().unwrap(), app.address.unwrap(), &preflight).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(reply.header("access-control-allow-origin"), Some(APP));
    }
    // Nor is a preflight's body waited for (it would be a 408 after the read timeout).
    let with_a_body_that_never_comes = preflight.replace(
        "Connection: close\r\n",
        "Connection: close\r\nContent-Length: 100\r\n",
    );
    let started = std::time::Instant::now();
    let reply = send_from(
        source.parse().unwrap(),
        app.address.unwrap(),
        &with_a_body_that_never_comes,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let login = app.login_from(source, "budget@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let again = app.login_from(source, "budget@example.com", PASSWORD).await;
    assert_eq!(
        again.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a budget of one"
    );
}

#[tokio::test]
async fn the_web_site_is_not_shared_with_other_origins() {
    let app = app_allowing_app().await;
    for path in ["/", "/login", "/nothing"] {
        let reply = Reply::from(app.client.get(path).header("Origin", APP).send().await).await;
        assert_no_cors(&reply, path);
        let options = preflight(&app, &Method::GET, path, APP).await;
        assert_no_cors(&options, path);
    }
}

#[tokio::test]
async fn without_cors_origins_nothing_is_shared() {
    let app = app(Backend::Memory).spawn().await;
    let options = preflight(&app, &Method::POST, "/api/auth/login", APP).await;
    assert_ne!(options.status, StatusCode::NO_CONTENT);
    assert_no_cors(&options, "preflight");
    let me = from(&app, Method::GET, "/api/users/me", APP, Value::Null).await;
    assert_no_cors(&me, "me");
    assert!(!varies_on_origin(&me));
}

#[tokio::test]
async fn every_origin_in_development_gets_a_wildcard() {
    let app = app_allowing(AllowedOrigins::Any, |_| {}).await;
    let reply = preflight(&app, &Method::GET, "/api/users/me", "http://localhost:5173").await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let me = from(&app, Method::GET, "/api/users/me", "null", Value::Null).await;
    assert_eq!(me.header("access-control-allow-origin"), Some("*"));
    assert_eq!(me.header("access-control-allow-credentials"), None);
}

/// A head the server refuses before any endpoint sees it (431) is still readable by an
/// allowed origin: the loop reads on to the `Origin` header, which browsers send after the
/// headers an app sets (here, past the bytes the server read). Not on the site's paths.
#[tokio::test]
async fn the_loops_own_replies_are_readable_by_an_allowed_origin() {
    let app = app_allowing_app().await;
    let address = app.address.unwrap();
    let padding = "x".repeat(40 * 1024);
    for (path, origin, readable) in [
        ("/api/users/me", APP, true),
        ("/api/users/me", "https://app.example.com.evil.test", false),
        ("/login", APP, false),
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: a\r\nX-Padding: {padding}\r\nOrigin: {origin}\r\n\r\n"
        );
        let reply = send_from(std::net::Ipv4Addr::LOCALHOST.into(), address, &request).await;
        assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(reply.body["error"], "headers_too_large");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        let what = format!("{origin} {path}");
        if readable {
            assert_readable_by_app(&reply, &what);
        } else {
            assert_no_cors(&reply, &what);
        }
    }
    // An Origin that arrived within what the server read, on a long target (414).
    let target = format!("/api/users/me?{}", "q".repeat(70 * 1024));
    let request = format!("GET {target} HTTP/1.1\r\nHost: a\r\nOrigin: {APP}\r\n\r\n");
    let reply = send_from(std::net::Ipv4Addr::LOCALHOST.into(), address, &request).await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert_readable_by_app(&reply, "a long target");
}

/// Preflights are counted under a route label of their own (a real server process, which
/// has the metrics recorder).
#[tokio::test]
async fn preflights_have_their_own_route_label_in_the_metrics() {
    let server = ServerProcess::start(SERVER, &[("CORS_ORIGINS", APP)]);
    let headers = [("Origin", APP), ("Access-Control-Request-Method", "POST")];
    let reply = http(server.address, "OPTIONS", "/api/auth/login", &headers, None).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some(APP));
    let metrics = server.call("GET", "/metrics", None, None).await.body;
    assert_eq!(
        sample(
            &metrics,
            r#"latchkey_http_requests_total{method="OPTIONS",route="preflight",status="204"}"#
        ),
        1.0,
        "{metrics}"
    );
}
