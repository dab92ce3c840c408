//! The real HTTP server loop on a socket: slow or silent clients are cut off, normal ones served,
//! and what the loop answers itself (malformed, oversized or slow request heads) is hardened like
//! every other response.

use latchkey_tests::{
    http::{app, send_from, Reply, TestApp},
    Backend,
};
use poem::http::StatusCode;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The app on a socket, with `header_read_timeout` for headers and bodies alike.
async fn start(header_read_timeout: Duration, idle_timeout: Duration) -> TestApp {
    app(Backend::Memory)
        .config(|config| {
            config.listen.serve.header_read_timeout = header_read_timeout;
            config.listen.serve.idle_timeout = idle_timeout;
            config.listen.serve.shutdown_grace = Duration::from_secs(2);
            config.http.body_read_timeout = header_read_timeout;
        })
        .listening()
        .spawn()
        .await
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = start(Duration::from_secs(1), Duration::from_secs(30)).await;
    let mut slow = TcpStream::connect(server.address.unwrap()).await.unwrap();
    slow.write_all(b"GET /api/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (response, after) = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    // Answered 408 as the connection closes, hardened like every other response.
    assert_loop_reply(&response, 408, "request_timeout");
}

/// `response` is one whole reply with `status`, the hardening headers every response carries,
/// `Connection: close` and a JSON error body with `code`, and nothing after it.
fn assert_loop_reply(response: &str, status: u16, code: &str) {
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole reply");
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{response}"
    );
    // Every header line ends with CRLF, the last one too.
    let head = head.to_ascii_lowercase() + "\r\n";
    for header in [
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
        "cross-origin-opener-policy: same-origin",
        "cross-origin-resource-policy: same-origin",
        "cache-control: no-store",
        "content-security-policy: default-src 'none'; frame-ancestors 'none'",
        "content-type: application/json; charset=utf-8",
        "connection: close",
    ] {
        assert!(
            head.contains(&format!("\r\n{header}\r\n")),
            "{header}: {response}"
        );
    }
    assert!(
        head.contains("\r\npermissions-policy: ") && head.contains("camera=()"),
        "{response}"
    );
    let length = format!("\r\ncontent-length: {}\r\n", body.len());
    assert!(head.contains(&length), "{response}");
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let id = body["request_id"].as_str().expect("a request id");
    assert!(
        head.contains(&format!("\r\nx-request-id: {id}")),
        "{response}"
    );
}

/// [`send_from`]'s reply is hardened like an API error, with a JSON body naming `code`.
fn assert_hardened_error(reply: &Reply, status: StatusCode, code: &str) {
    reply.assert_error(status, code);
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(
        reply.header("cross-origin-opener-policy"),
        Some("same-origin")
    );
    assert_eq!(
        reply.header("cross-origin-resource-policy"),
        Some("same-origin")
    );
    assert!(
        reply
            .header("permissions-policy")
            .is_some_and(|policy| policy.contains("camera=()")),
        "{:?}",
        reply.header("permissions-policy")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        reply.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(
        reply.header("x-request-id"),
        reply.body["request_id"].as_str(),
        "{}",
        reply.body
    );
}

/// A request for `/api/health/live` whose head carries a header of `filler` bytes.
fn request_with_a_header_of(filler: usize) -> String {
    format!(
        "GET /api/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(filler)
    )
}

fn loopback() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_gets_a_hardened_json_400() {
    let server = start(Duration::from_secs(1), Duration::from_secs(30)).await;
    for malformed in [
        "GET /api/health/live HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        "NOT-HTTP\r\n\r\n",
    ] {
        let reply = send_from(loopback(), server.address.unwrap(), malformed).await;
        assert_hardened_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_max_header_bytes_gets_a_hardened_json_431() {
    // The default limit, 32 KiB: 40 KB of header is refused, 20 KB reaches the handler.
    let server = start(Duration::from_secs(5), Duration::from_secs(30)).await;
    let address = server.address.unwrap();
    let refused = send_from(loopback(), address, &request_with_a_header_of(40_000)).await;
    assert_hardened_error(
        &refused,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    let served = send_from(loopback(), address, &request_with_a_header_of(20_000)).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    assert_eq!(served.body["status"], "ok");

    // The limit is the setting.
    let strict = app(Backend::Memory)
        .config(|config| config.listen.serve.max_header_bytes = 16 * 1024)
        .listening()
        .spawn()
        .await;
    let refused = send_from(
        loopback(),
        strict.address.unwrap(),
        &request_with_a_header_of(20_000),
    )
    .await;
    assert_hardened_error(
        &refused,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_responses_go_out_unchanged_and_a_malformed_request_after_them_is_answered() {
    let server = start(Duration::from_secs(1), Duration::from_secs(30)).await;
    let in_process = server.client.get("/api/health/live").send().await.0;
    let expected_body = in_process.into_body().into_string().await.unwrap();

    // GET (a body), HEAD (a length and no body), then a malformed request on the same
    // connection: the app's responses as they are, then the loop's own 400.
    let mut client = TcpStream::connect(server.address.unwrap()).await.unwrap();
    client
        .write_all(
            b"GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /api/health/live HTTP/1.1\r\nBad Header: y\r\n\r\n",
        )
        .await
        .unwrap();
    let (received, _) = until_closed(&mut client, Duration::from_secs(5)).await;
    let (get_head, rest) = received.split_once("\r\n\r\n").expect("the GET's head");
    assert!(get_head.starts_with("HTTP/1.1 200 "), "{received}");
    assert!(
        get_head.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{received}"
    );
    let rest = rest
        .strip_prefix(&expected_body)
        .expect("the GET's body, as served in process");
    let (head_head, rest) = rest.split_once("\r\n\r\n").expect("the HEAD's head");
    assert!(head_head.starts_with("HTTP/1.1 200 "), "{received}");
    assert_loop_reply(rest, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_body_gets_408_and_is_cut_off() {
    let server = start(Duration::from_secs(1), Duration::from_secs(30)).await;
    let mut slow = TcpStream::connect(server.address.unwrap()).await.unwrap();
    slow.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"em",
    )
    .await
    .unwrap();
    let (response, after) = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_is_not_spoken() {
    let server = start(Duration::from_secs(1), Duration::from_secs(2)).await;
    let mut h2 = TcpStream::connect(server.address.unwrap()).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let (response, after) = until_closed(&mut h2, Duration::from_secs(6)).await;
    // An HTTP/2 server would answer the preface with a SETTINGS frame (type 4).
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1"),
        "{response:?}"
    );
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed() {
    let server = start(Duration::from_secs(1), Duration::from_secs(2)).await;
    let mut silent = TcpStream::connect(server.address.unwrap()).await.unwrap();
    let (response, after) = until_closed(&mut silent, Duration::from_secs(6)).await;
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
    // Nothing was asked: no 408.
    assert_eq!(response, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_requests_are_served_over_keep_alive_and_shutdown_is_graceful() {
    let mut server = start(Duration::from_secs(1), Duration::from_secs(30)).await;
    let mut client = TcpStream::connect(server.address.unwrap()).await.unwrap();
    for _ in 0..2 {
        client
            .write_all(b"GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 2048];
        let n = client.read(&mut buffer).await.unwrap();
        let response = String::from_utf8_lossy(&buffer[..n]);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"status\":\"ok\""), "{response}");
    }
    tokio::time::timeout(Duration::from_secs(5), server.shut_down())
        .await
        .expect("serve returns after the shutdown signal")
        .unwrap();
    assert!(
        TcpStream::connect(server.address.unwrap()).await.is_err(),
        "no longer accepting"
    );
}

/// GET operations document no body errors because no GET body is ever read: a huge declared
/// body neither fills memory nor holds the answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_body_is_never_read() {
    let server = start(Duration::from_secs(1), Duration::from_secs(30)).await;
    let mut client = TcpStream::connect(server.address.unwrap()).await.unwrap();
    client
        .write_all(
            b"GET /api/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nsome",
        )
        .await
        .unwrap();
    let (response, after) = until_closed(&mut client, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
}
