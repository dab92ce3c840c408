//! The real HTTP server loop on a socket: slow or silent clients are cut off, normal ones served.

use latchkey_tests::{
    http::{app, TestApp},
    Backend,
};
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
    let (_, after) = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
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
    let (_, after) = until_closed(&mut silent, Duration::from_secs(6)).await;
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
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
