//! Shared helpers for the cross-crate suites: one harness for every server a test starts
//! ([`http`]), a MongoDB database per test ([`mongo`]), and controlled interleavings
//! ([`interleave`]).

pub mod http;
pub mod interleave;
pub mod mongo;
pub mod process;
pub mod secantus;
pub mod smtp;

use std::{
    future::Future,
    time::{Duration, Instant},
};
use tracing_subscriber::fmt::TestWriter;

/// The stores every suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Mongo,
}

/// The fixture of suites whose scenarios take the backend itself.
pub async fn backend(backend: Backend) -> Backend {
    backend
}

/// Instantiates each listed async scenario once per backend, passing it what `fixture`
/// builds for that backend (by default the [`Backend`] itself):
/// `for_each_backend!(scenario_a, scenario_b);` gives `memory::scenario_a`, `mongo::scenario_a`,
/// ...; `for_each_backend!(fixture = super::stores; case_a, case_b);` passes `stores(backend)`.
#[macro_export]
macro_rules! for_each_backend {
    (fixture = $fixture:path; $($scenario:ident),+ $(,)?) => {
        mod memory {
            $(
                // Multi-threaded, so concurrent requests really run at once.
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario($fixture($crate::Backend::Memory).await).await;
                }
            )+
        }
        mod mongo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario($fixture($crate::Backend::Mongo).await).await;
                }
            )+
        }
    };
    ($($scenario:ident),+ $(,)?) => {
        $crate::for_each_backend!(fixture = $crate::backend; $($scenario),+);
    };
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Retries `attempt` every 100 ms until it succeeds; panics naming `what` after `limit`.
pub async fn eventually<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    limit: Duration,
    attempt: F,
) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if started.elapsed() > limit => panic!("timed out waiting for {what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// With `TEST_LOG=1`, the servers' logs go to the test output (filtered by `RUST_LOG`, `debug`
/// by default); without it, tests stay quiet.
pub fn init_test_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("TEST_LOG").is_some() {
        // libtest's writer: each test's logs are shown with that test, not interleaved.
        ONCE.call_once(|| {
            latchkey_bootstrap::telemetry::init(
                "debug",
                latchkey_bootstrap::LogFormat::Text,
                TestWriter::new,
            )
        });
    }
}
