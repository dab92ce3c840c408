//! What an operator relies on, tested on real server processes: the metrics a login moves, one
//! JSON log line per request and an audit line per decision (with the request id the client
//! saw), readiness that answers at once and sees a dead store within 2 s, mail failures logged
//! without the recipient, SIGTERM that finishes what is in flight, and two instances on one
//! MongoDB behaving as one service.

use latchkey_bootstrap::Stores;
use latchkey_mongo::MongoStore;
use latchkey_tests::{
    http::{app, spawn_app},
    mongo::TestDatabase,
    process::{sample, try_http, RawReply, ServerProcess},
    secantus::StoreProcess,
    smtp::MailCatcher,
    Backend,
};
use poem::http::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = env!("CARGO_BIN_EXE_latchkey-server");
const PASSWORD: &str = "correct horse battery staple";

async fn register(server: &ServerProcess, email: &str) {
    let reply = server
        .call(
            "POST",
            "/api/auth/register",
            None,
            Some(json!({ "email": email, "password": PASSWORD })),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn login(server: &ServerProcess, email: &str, password: &str) -> (u16, Value) {
    let reply = server
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await;
    (reply.status, reply.json())
}

async fn scrape(server: &ServerProcess) -> String {
    let reply = server.call("GET", "/metrics", None, None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.headers
    );
    reply.body
}

#[tokio::test]
async fn a_login_moves_the_login_request_and_hashing_metrics() {
    let server = ServerProcess::start(SERVER, &[]);
    register(&server, "metered@example.com").await;
    let before = scrape(&server).await;

    assert_eq!(login(&server, "metered@example.com", PASSWORD).await.0, 200);
    assert_eq!(
        login(&server, "metered@example.com", "wrong password")
            .await
            .0,
        401
    );

    let after = scrape(&server).await;
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved(r#"latchkey_logins_total{outcome="succeeded"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(moved(r#"latchkey_logins_total{outcome="failed"}"#), 1.0);
    assert_eq!(moved(r#"latchkey_logins_total{outcome="throttled"}"#), 0.0);
    let requests = |status| {
        format!(
            r#"latchkey_http_requests_total{{method="POST",route="/api/auth/login",status="{status}"}}"#
        )
    };
    assert_eq!(moved(&requests(200)), 1.0, "{after}");
    assert_eq!(moved(&requests(401)), 1.0);
    assert_eq!(
        moved(
            r#"latchkey_http_request_duration_seconds_count{method="POST",route="/api/auth/login"}"#
        ),
        2.0
    );
    assert!(
        moved("latchkey_hashes_total") >= 2.0,
        "two passwords checked"
    );
    for present in [
        "latchkey_hash_workers_busy ",
        "latchkey_hash_queue_length ",
        "latchkey_hash_rejections_total ",
    ] {
        assert!(after.contains(present), "{present} missing from {after}");
    }
    assert_eq!(
        sample(&after, r#"latchkey_auth_events_total{event="registered"}"#),
        1.0
    );
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener_or_be_turned_off() {
    let server = ServerProcess::start(SERVER, &[("METRICS_ADDR", "127.0.0.1:0")]);
    assert_eq!(server.call("GET", "/metrics", None, None).await.status, 404);
    let metrics_addr = server
        .log()
        .iter()
        .find_map(|line| {
            line["message"]
                .as_str()?
                .strip_prefix("metrics at http://")?
                .strip_suffix("/metrics")?
                .parse::<std::net::SocketAddr>()
                .ok()
        })
        .expect("the server says where the metrics are");
    let own = try_http(metrics_addr, "GET", "/metrics", &[], None)
        .await
        .expect("the metrics listener answers");
    assert_eq!(own.status, 200);
    assert!(own.body.contains("latchkey_hash_workers_busy"));

    let off = ServerProcess::start(SERVER, &[("METRICS", "off")]);
    assert_eq!(off.call("GET", "/metrics", None, None).await.status, 404);
}

#[tokio::test]
async fn every_request_gets_an_id_in_its_log_line_its_header_and_its_error_body() {
    let server = ServerProcess::start(SERVER, &[]);
    register(&server, "logged@example.com").await;
    let reply = server
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({ "email": "logged@example.com", "password": "not the password" })),
        )
        .await;
    assert_eq!(reply.status, 401);
    let id = reply.header("x-request-id").expect("an id").to_owned();
    assert_eq!(
        reply.json()["request_id"],
        id.as_str(),
        "the body quotes the header"
    );

    let (status, tokens) = login(&server, "logged@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let me = server
        .call(
            "GET",
            "/api/users/me",
            tokens["access_token"].as_str(),
            None,
        )
        .await;
    let me_id = me.header("x-request-id").expect("an id").to_owned();
    assert_ne!(me_id, id, "ids are per request");
    let user_id = me.json()["id"].as_str().expect("a user id").to_owned();

    // The log is written as requests finish; give the reader thread a moment.
    let log = latchkey_tests::eventually("the request lines", Duration::from_secs(5), || {
        let log = server.log();
        async move {
            let seen = log
                .iter()
                .filter(|line| line["target"] == "latchkey::request")
                .count();
            if seen >= 4 {
                Ok(log)
            } else {
                Err(format!("{seen} request lines so far"))
            }
        }
    })
    .await;
    let request_line = |id: &str| {
        log.iter()
            .find(|line| line["target"] == "latchkey::request" && line["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id}"))
            .clone()
    };
    let failed = request_line(&id);
    assert_eq!(failed["route"], "/api/auth/login");
    assert_eq!(failed["status"], 401);
    assert_eq!(failed["method"], "POST");
    assert!(failed["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    let signed_in = request_line(&me_id);
    assert_eq!(signed_in["route"], "/api/users/me");
    assert_eq!(signed_in["user_id"], user_id.as_str());

    // One audit line per decision, inside its request's span, naming no secret.
    let audit: Vec<&Value> = log
        .iter()
        .filter(|line| line["target"] == "audit")
        .collect();
    let failure = audit
        .iter()
        .find(|line| line["event"] == "login_failed")
        .expect("an audit line for the failed login");
    assert_eq!(failure["user_id"], user_id.as_str());
    assert_eq!(failure["reason"], "invalid_credentials");
    assert_eq!(failure["spans"][0]["name"], "request");
    assert_eq!(failure["spans"][0]["request_id"], id.as_str());
    assert!(audit.iter().any(|line| line["event"] == "login_succeeded"
        && line["user_id"] == user_id.as_str()
        && line["session"].is_string()));
    assert!(audit.iter().any(|line| line["event"] == "registered"));
    let everything = serde_json::to_string(&log).unwrap();
    for secret in [
        PASSWORD,
        "not the password",
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
    ] {
        assert!(!everything.contains(secret), "a secret was logged");
    }
}

#[tokio::test]
async fn a_trusted_proxys_request_id_is_kept_and_anyone_elses_replaced() {
    let untrusted = ServerProcess::start(SERVER, &[]);
    let header = [("X-Request-Id", "edge-1234")];
    let reply = try_http(untrusted.address, "GET", "/api/health/live", &header, None)
        .await
        .unwrap();
    assert_ne!(reply.header("x-request-id"), Some("edge-1234"));

    let behind_proxy = ServerProcess::start(SERVER, &[("TRUSTED_PROXIES", "127.0.0.1/32")]);
    let reply = try_http(
        behind_proxy.address,
        "GET",
        "/api/health/live",
        &header,
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.header("x-request-id"), Some("edge-1234"));
    let hostile = [("X-Request-Id", "a\"b with spaces")];
    let reply = try_http(behind_proxy.address, "GET", "/api/nope", &hostile, None)
        .await
        .unwrap();
    let given = reply.header("x-request-id").expect("an id").to_owned();
    assert_ne!(given, "a\"b with spaces");
    assert_eq!(reply.json()["request_id"], given.as_str());
}

#[tokio::test]
async fn sigterm_refuses_new_connections_finishes_the_request_in_flight_and_exits_zero() {
    drains_on("TERM").await;
}

#[tokio::test]
async fn sigint_drains_alike() {
    drains_on("INT").await;
}

async fn drains_on(signal: &str) {
    let mut server =
        ServerProcess::start(SERVER, &[("SHUTDOWN_DELAY", "1"), ("SHUTDOWN_GRACE", "20")]);
    register(&server, "draining@example.com").await;
    let address = server.address;
    // A login in flight whatever the machine's speed: its body arrives in two halves, the
    // second only after the listener has closed.
    let body = json!({ "email": "draining@example.com", "password": PASSWORD }).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut in_flight = tokio::net::TcpStream::connect(address).await.unwrap();
    in_flight
        .write_all(
            format!(
                "POST /api/auth/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{first_half}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    server.signal(signal);

    // During the delay new connections are still served, and told the instance is going.
    let draining = readiness_503(address, Duration::from_secs(1)).await;
    assert_eq!(draining.json()["error"], "shutting_down");
    assert!(
        !healthcheck(address.port()).status.success(),
        "unhealthy while draining"
    );
    // Then the listener closes.
    latchkey_tests::eventually("the listener to close", Duration::from_secs(3), || async {
        match try_http(address, "GET", "/api/health/live", &[], None).await {
            Err(_) => Ok(()),
            Ok(reply) => Err(format!("still answering {}", reply.status)),
        }
    })
    .await;
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "not before the delay"
    );

    // The request that was in flight is still answered in full.
    in_flight.write_all(second_half.as_bytes()).await.unwrap();
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("access_token"));
    assert_eq!(
        server.exit_code_within(Duration::from_secs(20)).await,
        Some(0)
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "it exits when the work is done, not when the grace period ends"
    );
    let log = server.log();
    assert!(log.iter().any(|line| line["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("shutting down"))));
}

/// Waits up to `limit` for the readiness probe on `address` to answer 503; that answer.
async fn readiness_503(address: std::net::SocketAddr, limit: Duration) -> RawReply {
    latchkey_tests::eventually("readiness 503", limit, || async {
        let reply = try_http(address, "GET", "/api/health/ready", &[], None).await?;
        match reply.status {
            503 => Ok(reply),
            other => Err(std::io::Error::other(format!("still {other}"))),
        }
    })
    .await
}

/// POSTs `{refresh_token: token}` to `path` (refresh or logout) on `server`.
async fn with_refresh_token(server: &ServerProcess, path: &str, token: &str) -> RawReply {
    server
        .call("POST", path, None, Some(json!({ "refresh_token": token })))
        .await
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut server = ServerProcess::start(
        SERVER,
        &[("SHUTDOWN_DELAY", "60"), ("SHUTDOWN_GRACE", "60")],
    );
    server.signal("TERM");
    readiness_503(server.address, Duration::from_secs(2)).await;
    server.signal("INT");
    assert_eq!(
        server.exit_code_within(Duration::from_secs(5)).await,
        Some(1),
        "not after the minute of delay"
    );
}

#[tokio::test]
async fn readiness_turns_503_while_shutting_down() {
    let app = spawn_app(Backend::Memory, |_| {}).await;
    assert_eq!(
        app.get("/api/health/ready", None).await.status,
        StatusCode::OK
    );
    app.readiness.drain();
    let reply = app.get("/api/health/ready", None).await;
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    assert_eq!(
        app.get("/api/health/live", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn readiness_answers_within_a_second_while_the_store_is_unreachable() {
    // Nothing listens on this port: every store call waits for its timeout.
    let closed = format!("mongodb://127.0.0.1:{}/", latchkey_tests::free_port());
    let dead = MongoStore::connect(&closed, Some("latchkey"), Duration::from_secs(1))
        .await
        .unwrap();
    let app = app(Backend::Memory)
        .config(|config| config.store.operation_timeout = Duration::from_secs(1))
        .stores(move |_| Stores::mongo(&dead))
        .spawn()
        .await;
    for _ in 0..3 {
        let asked = Instant::now();
        let reply = app.get("/api/health/ready", None).await;
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
        assert_eq!(reply.headers.get("retry-after").unwrap(), "2");
    }
}

/// Waits up to `limit` for the readiness probe on `address` to answer 200.
async fn readiness_200(address: std::net::SocketAddr, limit: Duration) {
    latchkey_tests::eventually("readiness 200", limit, || async {
        let reply = try_http(address, "GET", "/api/health/ready", &[], None).await?;
        match reply.status {
            200 => Ok(()),
            other => Err(std::io::Error::other(format!("still {other}"))),
        }
    })
    .await
}

/// How long after `since` the readiness probe on `address`, asked every 100 ms, first answered
/// 503 `service_unavailable`; fails once `limit` has passed without one.
async fn not_ready_after(
    address: std::net::SocketAddr,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let reply = try_http(address, "GET", "/api/health/ready", &[], None)
            .await
            .expect("the server answers while its store is away");
        let after = since.elapsed();
        if reply.status == 503 {
            let body = reply.json();
            assert_eq!(body["error"], "service_unavailable", "{body}");
            return after;
        }
        assert!(
            after < limit,
            "readiness still answered {} {after:?} after the store went away",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server process on a SecantusDB process of its own, once it is ready.
async fn ready_on_a_store_of_its_own() -> (StoreProcess, ServerProcess) {
    let store = StoreProcess::start();
    let uri = store.uri();
    let server = ServerProcess::start(SERVER, &[("DB_URI", uri.as_str())]);
    readiness_200(server.address, Duration::from_secs(10)).await;
    (store, server)
}

#[tokio::test]
async fn readiness_turns_503_within_2_s_of_the_store_being_killed() {
    let (mut store, server) = ready_on_a_store_of_its_own().await;
    let killed = Instant::now();
    store.kill();
    let after = not_ready_after(server.address, killed, Duration::from_secs(2)).await;
    eprintln!("readiness 503 {after:?} after the store was killed");
}

#[tokio::test]
async fn readiness_turns_503_within_2_s_of_the_store_hanging() {
    // Its connections stay open and nothing answers, as when the store's host or network hangs:
    // a store call waits for `STORE_TIMEOUT` (5 s here), the readiness check does not.
    let (store, server) = ready_on_a_store_of_its_own().await;
    let frozen = Instant::now();
    store.freeze();
    let after = not_ready_after(server.address, frozen, Duration::from_secs(2)).await;
    eprintln!("readiness 503 {after:?} after the store froze");
}

#[tokio::test]
async fn a_recipient_the_mail_server_refuses_is_logged_by_reply_code_and_class_not_by_address() {
    const EMAIL: &str = "Quoted.Recipient@example.com";
    let refusing = MailCatcher::refusing_recipients();
    let url = refusing.url();
    let server = ServerProcess::start(SERVER, &[("SMTP_URL", url.as_str())]);
    register(&server, EMAIL).await;

    let log = latchkey_tests::eventually("the refusal in the log", Duration::from_secs(20), || {
        let log = server.log();
        async move {
            if log.iter().any(|line| line["smtp_code"] == 550) {
                Ok(log)
            } else {
                Err("no line with smtp_code 550 yet")
            }
        }
    })
    .await;
    let refusal = log
        .iter()
        .find(|line| line["smtp_code"] == 550)
        .expect("the refusal");
    assert_eq!(refusal["class"], "permanent", "{refusal}");
    assert_eq!(refusal["level"], "ERROR", "{refusal}");
    // The server's reply did quote the address...
    assert!(
        refusing
            .refused()
            .iter()
            .any(|address| address.eq_ignore_ascii_case(EMAIL)),
        "{:?}",
        refusing.refused()
    );
    // ...and no line of the log repeats it.
    let everything = serde_json::to_string(&server.log())
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        !everything.contains("quoted.recipient"),
        "the recipient's address was logged"
    );
}

/// Two processes on one database, as two instances behind a load balancer.
#[tokio::test]
async fn two_instances_on_one_mongodb_behave_as_one_service() {
    let database = TestDatabase::create().await;
    let env = [
        ("DB_URI", database.uri()),
        ("DB_NAME", database.name()),
        ("LOGIN_FREE_FAILURES", "2"),
    ];
    let a = ServerProcess::start(SERVER, &env);
    let b = ServerProcess::start(SERVER, &env);
    register(&a, "shared@example.com").await;

    // Log in on A, refresh on B, log out on B: A refuses the access token at once.
    let (status, on_a) = login(&a, "shared@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let refresh = "/api/auth/refresh";
    let refreshed = with_refresh_token(&b, refresh, on_a["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let refreshed = refreshed.json();
    let access = on_a["access_token"].as_str().unwrap();
    assert_eq!(
        a.call("GET", "/api/users/me", Some(access), None)
            .await
            .status,
        200
    );
    let logout = with_refresh_token(
        &b,
        "/api/auth/logout",
        refreshed["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(logout.status, 204, "{}", logout.body);
    for token in [access, refreshed["access_token"].as_str().unwrap()] {
        let me = a.call("GET", "/api/users/me", Some(token), None).await;
        assert_eq!(me.status, 401, "{}", me.body);
    }

    // One token refreshed on A and B at the same moment, over and over: never a revoked
    // session. Both may win inside the grace window (with the same successor), or one wins.
    for _ in 0..5 {
        let (_, pair) = login(&a, "shared@example.com", PASSWORD).await;
        let token = pair["refresh_token"].as_str().unwrap().to_owned();
        let (on_a, on_b) = tokio::join!(
            with_refresh_token(&a, refresh, &token),
            with_refresh_token(&b, refresh, &token),
        );
        let winners: Vec<Value> = [&on_a, &on_b]
            .into_iter()
            .filter(|reply| reply.status == 200)
            .map(|reply| reply.json())
            .collect();
        assert!(!winners.is_empty(), "{on_a:?} {on_b:?}");
        for loser in [&on_a, &on_b]
            .into_iter()
            .filter(|reply| reply.status != 200)
        {
            assert_ne!(loser.json()["error"], "refresh_token_reused", "{loser:?}");
        }
        if let [first, second] = &winners[..] {
            assert_eq!(
                first["refresh_token"], second["refresh_token"],
                "one successor"
            );
        }
        // The session goes on, on either instance.
        let next = winners[0]["refresh_token"].as_str().unwrap();
        let again = with_refresh_token(&b, refresh, next).await;
        assert_eq!(again.status, 200, "{}", again.body);
    }

    // Failed logins on either instance count together.
    assert_eq!(login(&a, "shared@example.com", "wrong one").await.0, 401);
    assert_eq!(login(&b, "shared@example.com", "wrong two").await.0, 401);
    let (status, throttled) = login(&a, "shared@example.com", "wrong three").await;
    assert_eq!(status, 429, "{throttled}");
    assert_eq!(throttled["error"], "too_many_failed_logins");
    let (status, _) = login(&b, "shared@example.com", PASSWORD).await;
    assert_eq!(status, 429, "B holds the account too");
}

/// `latchkey healthcheck` against the server on `port` of this machine.
fn healthcheck(port: u16) -> std::process::Output {
    std::process::Command::new(SERVER)
        .arg("healthcheck")
        .env_clear()
        .env("HOST", "0.0.0.0")
        .env("PORT", port.to_string())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the binary runs")
}

#[tokio::test]
async fn the_healthcheck_command_passes_only_on_a_200_from_readiness() {
    let server = ServerProcess::start(SERVER, &[]);
    let ready = healthcheck(server.address.port());
    assert!(ready.status.success(), "{ready:?}");

    // Something that answers 503, and something that hangs up without answering.
    for (answer, says) in [
        (
            &b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"[..],
            "not ready",
        ),
        (&b""[..], "could not ask"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answering = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(answer).await;
        });
        let probe = tokio::task::spawn_blocking(move || healthcheck(port))
            .await
            .unwrap();
        answering.await.unwrap();
        assert_eq!(probe.status.code(), Some(1), "{probe:?}");
        assert!(
            String::from_utf8_lossy(&probe.stderr).contains(says),
            "{probe:?}"
        );
    }
}
