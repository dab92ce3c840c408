//! Load generators: keep-alive loops that repeat one request, and abandoned requests.

use crate::http::Conn;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{task::JoinSet, time::Instant};

/// Wait after a 503 that carries no usable `Retry-After`.
const BUSY_PAUSE: Duration = Duration::from_millis(100);
/// Wait after a connection failure, so a dead server does not turn a loop into a busy spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
pub struct LoadResult {
    /// 200 responses.
    pub ok: u64,
    /// 503 responses: the server's hashing queue was full.
    pub busy: u64,
    /// Any other status, with its count.
    pub other: BTreeMap<u16, u64>,
    /// Failed connects, writes or reads.
    pub errors: u64,
    /// Latency of each 200 response, sorted once the run is over.
    pub latencies: Vec<Duration>,
    /// From the start until the last connection finished its last request.
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile of the 200 responses' latencies.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies.get(rank.clamp(1, n) - 1).copied()
    }

    fn merge(&mut self, other: LoadResult) {
        self.ok += other.ok;
        self.busy += other.busy;
        for (status, count) in other.other {
            *self.other.entry(status).or_default() += count;
        }
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
    }
}

/// `connections` keep-alive connections each send `request` in a loop until `duration` is up;
/// requests in flight at the deadline are completed and counted.
pub async fn run(
    addr: SocketAddr,
    request: Arc<[u8]>,
    connections: usize,
    duration: Duration,
) -> LoadResult {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(connection_loop(addr, Arc::clone(&request), deadline));
    }
    let mut total = LoadResult::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(part) => total.merge(part),
            // A loop that panicked lost its counts; say so rather than hide it.
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = start.elapsed();
    total.latencies.sort_unstable();
    total
}

async fn connection_loop(addr: SocketAddr, request: Arc<[u8]>, deadline: Instant) -> LoadResult {
    let mut result = LoadResult::default();
    let mut idle: Option<Conn> = None;
    while Instant::now() < deadline {
        let mut conn = match idle.take() {
            Some(conn) => conn,
            None => match Conn::connect(addr).await {
                Ok(conn) => conn,
                Err(_) => {
                    result.errors += 1;
                    pause(deadline, ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        let response = match conn.send(&request).await {
            Ok(response) => response,
            Err(_) => {
                // The connection is in an unknown state; the next request opens a new one.
                result.errors += 1;
                pause(deadline, ERROR_PAUSE).await;
                continue;
            }
        };
        let latency = sent.elapsed();
        if !response.close {
            idle = Some(conn);
        }
        match response.status {
            200 => {
                result.ok += 1;
                result.latencies.push(latency);
            }
            503 => {
                // What a well-behaved client does: back off as told, then try again.
                result.busy += 1;
                let wait = response.retry_after.map_or(BUSY_PAUSE, Duration::from_secs);
                pause(deadline, wait).await;
            }
            status => *result.other.entry(status).or_default() += 1,
        }
    }
    result
}

/// Sleeps for `wait`, but not past the deadline.
async fn pause(deadline: Instant, wait: Duration) {
    tokio::time::sleep_until(deadline.min(Instant::now() + wait)).await;
}

/// Opens `connections` connections at once; each sends `request` in full and hangs up without
/// reading the answer. Returns how many requests were sent and how many connections failed.
pub async fn abandon(addr: SocketAddr, request: Arc<[u8]>, connections: usize) -> (u64, u64) {
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let request = Arc::clone(&request);
        tasks.spawn(async move {
            let conn = Conn::connect(addr).await?;
            conn.send_and_abandon(&request).await
        });
    }
    let (mut sent, mut failed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => sent += 1,
            _ => failed += 1,
        }
    }
    (sent, failed)
}
