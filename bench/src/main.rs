//! `latchkey-bench`: measures a release build of the server on this machine and prints the
//! figures issue 7 sets targets for (see `scripts/bench.sh`). Not a test: figures depend on
//! the machine, so nothing here runs in CI.

mod args;
mod baseline;
mod http;
mod load;
mod report;
mod server;

use anyhow::Context;
use args::Options;
use load::LoadResult;
use report::Report;
use server::{RssMonitor, Server};
use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};
use tokio::time::Instant;

/// Targets from issue 7, for this 2-core machine. RSS is in MiB (`/proc` counts KiB).
const RSS_UNDER_LOAD_MIB: f64 = 60.0;
const RSS_AFTER_ABANDONED_MIB: f64 = 80.0;
const MIN_SHARE_OF_BASELINE: f64 = 0.90;

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "correct horse battery staple";

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A gap between abandoned bursts, so each burst meets whatever the previous one left running.
const BURST_GAP: Duration = Duration::from_millis(250);
/// The server counts as idle when it used at most this many clock ticks (USER_HZ, 100/s on
/// Linux) in `IDLE_WINDOW`: under 5% of one core.
const IDLE_TICKS: u64 = 2;
const IDLE_WINDOW: Duration = Duration::from_millis(500);
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Settling time once idle, so RSS "after" is not read while memory is being returned.
const SETTLE: Duration = Duration::from_secs(2);
/// Connections for the bearer-request phases.
const READ_CONNECTIONS: usize = 8;
/// Issue 10's storm: this many logins at once, each from its own address.
const STORM_LOGINS: usize = 400;
const STORM_SLOWEST_ANSWER: Duration = Duration::from_secs(10);
const STORM_READ_P99: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut report = Report::default();
    let outcome = measure(&options, &mut report);
    println!("\n== summary\n");
    report.print();
    match outcome {
        Ok(()) => {
            let failures = report.failures();
            if failures > 0 {
                println!("\n{failures} target(s) missed.");
            }
            // Missed targets are findings, not errors: the figures are the output.
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nerror: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Errors only when there is nothing to measure (no baseline, or no usable server).
fn measure(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = options.workers.unwrap_or(cores);
    let secs = options.phase.as_secs();
    println!(
        "latchkey-bench: {} | {cores} cores | {secs} s phases | HASH_WORKERS {}",
        options.server.display(),
        options
            .workers
            .map_or_else(|| "unset (server default)".to_owned(), |w| w.to_string()),
    );
    for (key, value) in &options.env {
        println!("  server env {key}={value}");
    }

    println!("\n== baseline: argon2id m=19456 KiB t=2 p=1 verifies in this process");
    let phc = baseline::phc_hash(PASSWORD)?;
    let single = baseline::verifies_per_second(&phc, PASSWORD, 1, options.phase)?;
    println!("  1 thread:  {single:.1} verifies/s");
    let parallel = baseline::verifies_per_second(&phc, PASSWORD, workers, options.phase)?;
    println!("  {workers} thread(s): {parallel:.1} verifies/s (the server's hash worker count)");
    report.info("baseline", "verifies/s, 1 thread", format!("{single:.1}"));
    report.info(
        "baseline",
        &format!("verifies/s, {workers} thread(s)"),
        format!("{parallel:.1}"),
    );

    // One thread for the client: on a small machine it leaves the rest to the server, and
    // every run loads the server the same way.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(against_server(options, parallel, workers, report))
}

struct Bench {
    addr: SocketAddr,
    rss: RssMonitor,
    phase: Duration,
    login: Arc<[u8]>,
    baseline: f64,
    workers: usize,
}

async fn against_server(
    options: &Options,
    baseline: f64,
    workers: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    println!("\n== server");
    let spawned = Instant::now();
    let mut server = Server::start(&options.server, options.workers, &options.env)?;
    println!(
        "  pid {} on http://{} (log: {})",
        server.pid(),
        server.addr,
        server.log.display()
    );
    let rss = RssMonitor::start(server.pid());
    server.wait_until_ready(START_TIMEOUT).await?;
    let ready_after = spawned.elapsed();
    println!("  start to ready: {}", ms(ready_after));
    report.info("at rest", "start to ready", ms(ready_after));
    let rest = rss.current_kib();
    println!("  RSS at rest: {}", mib(rest));
    report.info("at rest", "RSS", mib(rest));

    let body = serde_json::json!({ "email": EMAIL, "password": PASSWORD }).to_string();
    let register = http::request("POST", "/api/auth/register", server.addr, &[], Some(&body));
    match http::once(server.addr, &register).await {
        Ok(response) if response.status == 201 => {}
        Ok(response) => {
            let why = format!(
                "registration answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
            return Err(server.start_failure(&why));
        }
        Err(e) => return Err(server.start_failure(&format!("registration failed: {e}"))),
    }
    let registered = rss.current_kib();
    println!(
        "  RSS after one registration (one hash): {}",
        mib(registered)
    );
    report.info("at rest", "RSS after 1 registration", mib(registered));

    let bench = Bench {
        addr: server.addr,
        rss,
        phase: options.phase,
        login: http::request("POST", "/api/auth/login", server.addr, &[], Some(&body)).into(),
        baseline,
        workers,
    };
    login_load(&bench, 8, report).await;
    if server_ended(&mut server, "login x8", report) {
        return Ok(());
    }
    login_load(&bench, 64, report).await;
    if server_ended(&mut server, "login x64", report) {
        return Ok(());
    }
    abandoned(&bench, &server, options, report).await;
    if server_ended(&mut server, "abandoned", report) {
        return Ok(());
    }
    bearer_requests(&bench, report).await;
    if server_ended(&mut server, "bearer", report) {
        return Ok(());
    }
    refresh_chains(&bench, report).await;
    if server_ended(&mut server, "refresh", report) {
        return Ok(());
    }
    login_storm(&bench, report).await;
    server_ended(&mut server, "storm", report);
    Ok(())
}

/// A server that died under load is a finding: it is reported, and the remaining phases,
/// which would only count connection errors, are skipped.
fn server_ended(server: &mut Server, phase: &str, report: &mut Report) -> bool {
    let Some(status) = server.exited() else {
        return false;
    };
    println!("  the server exited ({status}); last lines of its log:");
    println!("{}", server.log_tail());
    report.check(
        phase,
        "server still running",
        status.to_string(),
        "running".into(),
        false,
    );
    true
}

async fn login_load(bench: &Bench, connections: usize, report: &mut Report) {
    let phase = format!("login x{connections}");
    println!(
        "\n== {phase}: {connections} connections log in for {} s",
        bench.phase.as_secs()
    );
    bench.rss.reset_peak();
    let result = load::run(
        bench.addr,
        Arc::clone(&bench.login),
        connections,
        bench.phase,
    )
    .await;
    let (peak, end) = (bench.rss.peak_kib(), bench.rss.current_kib());
    print_counts(&result);
    let rate = result.per_second();
    let share = rate / bench.baseline;
    println!(
        "  logins/s {rate:.1} = {:.0}% of the {}-thread baseline ({:.1} verifies/s)",
        share * 100.0,
        bench.workers,
        bench.baseline
    );
    print_latency(&result);
    println!("  RSS peak {}, at end {}", mib(peak), mib(end));

    report.info(&phase, "logins/s", format!("{rate:.1}"));
    report.check(
        &phase,
        "logins/s vs baseline",
        format!("{:.0}%", share * 100.0),
        format!(">= {:.0}%", MIN_SHARE_OF_BASELINE * 100.0),
        share >= MIN_SHARE_OF_BASELINE,
    );
    report.info(&phase, "latency p50 / p99", latency_pair(&result));
    report.check(
        &phase,
        "RSS peak",
        mib(peak),
        format!("< {RSS_UNDER_LOAD_MIB:.0} MiB"),
        kib_to_mib(peak) < RSS_UNDER_LOAD_MIB,
    );
    report.info(&phase, "RSS at end", mib(end));
}

async fn abandoned(bench: &Bench, server: &Server, options: &Options, report: &mut Report) {
    let phase = "abandoned";
    println!(
        "\n== {phase}: {} bursts of {} connections that send a login and hang up",
        options.bursts, options.abandoned
    );
    bench.rss.reset_peak();
    let (mut sent, mut failed) = (0, 0);
    for burst in 0..options.bursts {
        if burst > 0 {
            tokio::time::sleep(BURST_GAP).await;
        }
        let (s, f) = load::abandon(bench.addr, Arc::clone(&bench.login), options.abandoned).await;
        sent += s;
        failed += f;
    }
    println!("  sent {sent} logins and hung up ({failed} connections failed)");
    wait_until_idle(server).await;
    let (peak, after) = (bench.rss.peak_kib(), bench.rss.current_kib());
    println!(
        "  RSS peak {} (bursts until idle), after {}",
        mib(peak),
        mib(after)
    );
    let target = format!("< {RSS_AFTER_ABANDONED_MIB:.0} MiB");
    report.check(
        phase,
        "RSS peak",
        mib(peak),
        target.clone(),
        kib_to_mib(peak) < RSS_AFTER_ABANDONED_MIB,
    );
    report.check(
        phase,
        "RSS after, idle",
        mib(after),
        target,
        kib_to_mib(after) < RSS_AFTER_ABANDONED_MIB,
    );
}

/// Waits until the server stops using CPU (abandoned hashes may still be running), answers
/// `GET /api/health/live`, and has had `SETTLE` to return memory.
async fn wait_until_idle(server: &Server) {
    let started = Instant::now();
    loop {
        let before = server.cpu_ticks();
        tokio::time::sleep(IDLE_WINDOW).await;
        match (before, server.cpu_ticks()) {
            (Some(before), Some(after)) if after.saturating_sub(before) > IDLE_TICKS => {}
            // Idle, or /proc is gone (the server ended; the caller reports that).
            _ => break,
        }
        if started.elapsed() > IDLE_TIMEOUT {
            println!(
                "  still busy after {} s; measuring anyway",
                IDLE_TIMEOUT.as_secs()
            );
            break;
        }
    }
    let live = http::request("GET", "/api/health/live", server.addr, &[], None);
    match http::once(server.addr, &live).await {
        Ok(response) if response.status == 200 => {}
        Ok(response) => println!("  GET /api/health/live answered {}", response.status),
        Err(e) => println!("  GET /api/health/live failed: {e}"),
    }
    println!(
        "  idle after {:.1} s; settling {} s",
        started.elapsed().as_secs_f64(),
        SETTLE.as_secs()
    );
    tokio::time::sleep(SETTLE).await;
}

/// The cost of requests that carry an access token, to compare across changes to the
/// bearer check.
async fn bearer_requests(bench: &Bench, report: &mut Report) {
    let token = match log_in_once(bench).await {
        Ok(token) => token,
        Err(e) => {
            println!("\n== bearer requests: could not log in: {e:#}");
            report.check(
                "bearer",
                "log in once",
                format!("{e:#}"),
                "200".into(),
                false,
            );
            return;
        }
    };
    let authorization = format!("Bearer {token}");
    for path in ["/api/users/me", "/api/auth/session"] {
        let phase = format!("GET {path}");
        println!(
            "\n== {phase}: {READ_CONNECTIONS} connections for {} s",
            bench.phase.as_secs()
        );
        let request = http::request(
            "GET",
            path,
            bench.addr,
            &[("Authorization", authorization.as_str())],
            None,
        );
        let result = load::run(bench.addr, request.into(), READ_CONNECTIONS, bench.phase).await;
        print_counts(&result);
        let rate = result.per_second();
        println!("  {rate:.0} req/s");
        print_latency(&result);
        report.info(&phase, "req/s", format!("{rate:.0}"));
        report.info(&phase, "latency p50 / p99", latency_pair(&result));
    }
}

/// 400 wrong-password logins at once from 400 addresses (named in `X-Forwarded-For`, which the
/// server trusts from loopback) for 400 emails, while 8 connections read `/api/users/me`. Every login must be
/// answered 401, 429 or 503 (the last two with `Retry-After`) within 10 s, and the reads must
/// keep p99 under 10 ms: a storm is shed, not queued, and never reaches token-only routes.
async fn login_storm(bench: &Bench, report: &mut Report) {
    let phase = format!("storm x{STORM_LOGINS}");
    let token = match log_in_once(bench).await {
        Ok(token) => token,
        Err(e) => {
            report.check(&phase, "log in once", format!("{e:#}"), "200".into(), false);
            return;
        }
    };
    println!(
        "
== {phase}: {STORM_LOGINS} logins at once from as many addresses, /api/users/me meanwhile"
    );
    let authorization = format!("Bearer {token}");
    let read = http::request(
        "GET",
        "/api/users/me",
        bench.addr,
        &[("Authorization", authorization.as_str())],
        None,
    );
    let logins = (0..STORM_LOGINS).map(|n| {
        let from = format!("198.51.{}.{}", n / 250, n % 250 + 1);
        // Each for an email of its own (unregistered: checked against the dummy hash), so
        // every one needs a hash and the storm meets the hashing queue, not the backoff.
        let wrong = serde_json::json!({
            "email": format!("storm{n}@example.com"),
            "password": "a wrong guess",
        })
        .to_string();
        let request = http::request(
            "POST",
            "/api/auth/login",
            bench.addr,
            &[("X-Forwarded-For", from.as_str())],
            Some(&wrong),
        );
        let addr = bench.addr;
        async move {
            let started = Instant::now();
            let outcome = http::once(addr, &request).await;
            (outcome, started.elapsed())
        }
    });
    let storm = async {
        // The reads are under way before the storm breaks.
        tokio::time::sleep(Duration::from_millis(500)).await;
        futures::future::join_all(logins).await
    };
    let (answers, reads) = tokio::join!(
        storm,
        load::run(
            bench.addr,
            read.into(),
            READ_CONNECTIONS,
            Duration::from_secs(5)
        )
    );
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut slowest = Duration::ZERO;
    let mut unacceptable = 0;
    for (outcome, took) in &answers {
        slowest = slowest.max(*took);
        let label = match outcome {
            Ok(response) => {
                let acceptable = match response.status {
                    401 => true,
                    429 | 503 => response.retry_after.is_some(),
                    _ => false,
                };
                unacceptable += usize::from(!acceptable);
                response.status.to_string()
            }
            Err(e) => {
                unacceptable += 1;
                format!("error ({e})")
            }
        };
        *statuses.entry(label).or_default() += 1;
    }
    let counts = statuses
        .iter()
        .map(|(status, n)| format!("{n} x {status}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("  logins answered: {counts}; slowest {}", ms(slowest));
    print_counts(&reads);
    print_latency(&reads);
    report.info(&phase, "login answers", counts);
    report.check(
        &phase,
        "logins not 401, 429 or 503 with Retry-After",
        unacceptable.to_string(),
        "0".into(),
        unacceptable == 0,
    );
    report.check(
        &phase,
        "slowest login answer",
        ms(slowest),
        format!("< {}", ms(STORM_SLOWEST_ANSWER)),
        slowest < STORM_SLOWEST_ANSWER,
    );
    let p99 = reads.percentile(99.0);
    report.check(
        &phase,
        "GET /api/users/me p99 during the storm",
        p99.map_or_else(|| "no answers".into(), ms),
        format!("< {}", ms(STORM_READ_P99)),
        p99.is_some_and(|p99| p99 < STORM_READ_P99) && reads.ok > 0,
    );
}

async fn log_in_once(bench: &Bench) -> anyhow::Result<String> {
    token_of(&http::once(bench.addr, &bench.login).await?, "access_token")
}

/// `field` of a 200 answer's JSON body.
fn token_of(response: &http::Response, field: &str) -> anyhow::Result<String> {
    anyhow::ensure!(response.status == 200, "answered {}", response.status);
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).context("the answer is not JSON")?;
    body[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the answer has no {field}"))
}

/// Refresh-token rotation as clients do it: each of 8 connections logs in once, then
/// exchanges its latest refresh token for the next, one after another, for the phase.
async fn refresh_chains(bench: &Bench, report: &mut Report) {
    let phase = "refresh chains";
    println!(
        "\n== {phase}: {READ_CONNECTIONS} sessions rotate their refresh tokens for {} s",
        bench.phase.as_secs()
    );
    let started = Instant::now();
    let deadline = started + bench.phase;
    let mut chains = tokio::task::JoinSet::new();
    for _ in 0..READ_CONNECTIONS {
        let (addr, login) = (bench.addr, Arc::clone(&bench.login));
        chains.spawn(async move {
            let mut conn = http::Conn::connect(addr).await?;
            let mut token = token_of(&conn.send(&login).await?, "refresh_token")?;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let body = serde_json::json!({ "refresh_token": token }).to_string();
                let request = http::request("POST", "/api/auth/refresh", addr, &[], Some(&body));
                let sent = Instant::now();
                let response = conn.send(&request).await?;
                latencies.push(sent.elapsed());
                token = token_of(&response, "refresh_token")?;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut result = LoadResult::default();
    let mut failures = Vec::new();
    while let Some(chain) = chains.join_next().await {
        match chain {
            Ok(Ok(latencies)) => result.latencies.extend(latencies),
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    result.elapsed = started.elapsed();
    result.ok = result.latencies.len() as u64;
    result.latencies.sort_unstable();
    let rate = result.per_second();
    println!("  {rate:.0} refreshes/s");
    print_latency(&result);
    report.info(phase, "refreshes/s", format!("{rate:.0}"));
    report.info(phase, "latency p50 / p99", latency_pair(&result));
    report.check(
        phase,
        "every chain unbroken",
        if failures.is_empty() {
            "yes".into()
        } else {
            failures.join("; ")
        },
        "yes".into(),
        failures.is_empty(),
    );
}

fn print_counts(result: &LoadResult) {
    let other: Vec<String> = result
        .other
        .iter()
        .map(|(status, count)| format!("{status} x{count}"))
        .collect();
    println!(
        "  in {:.1} s: 200 x{}, 503 x{}, other [{}], I/O errors {}",
        result.elapsed.as_secs_f64(),
        result.ok,
        result.busy,
        other.join(", "),
        result.errors
    );
}

fn print_latency(result: &LoadResult) {
    println!("  latency of 200s p50 / p99: {}", latency_pair(result));
}

fn latency_pair(result: &LoadResult) -> String {
    match (result.percentile(50.0), result.percentile(99.0)) {
        (Some(p50), Some(p99)) => format!("{} / {}", ms(p50), ms(p99)),
        _ => "-".into(),
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib_to_mib(kib))
}
