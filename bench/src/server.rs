//! The server under test as a child process, and what `/proc` says about it.

use crate::http;
use anyhow::{anyhow, Context};
use rand::{distributions::Alphanumeric, Rng};
use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};
use tokio::time::Instant;

/// How often the RSS is sampled. `VmHWM` (reset per phase) catches peaks between samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Killed (SIGKILL) when dropped, so an error or a panic in the benchmark never leaves a server
/// running. On Ctrl-C the terminal signals the whole process group, the server included.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// Starts `binary serve` on a free port of 127.0.0.1 with the in-memory store.
    ///
    /// The environment is cleared first, so variables in the caller's shell (or a `.env` in
    /// the current directory: the child runs in the temp directory) cannot change what is
    /// measured; anything the server should see goes in `extra`, which wins over the defaults.
    pub fn start(
        binary: &Path,
        workers: Option<usize>,
        extra: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let binary = binary.canonicalize().with_context(|| {
            format!(
                "server binary {} not found; build it with `cargo build --release --bin \
                 latchkey` or run scripts/bench.sh",
                binary.display()
            )
        })?;
        let port = free_port()?;
        let secret: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let mut env = vec![
            ("DB_URI".to_owned(), "memory".to_owned()),
            ("JWT_SECRET".to_owned(), secret),
            ("HOST".to_owned(), Ipv4Addr::LOCALHOST.to_string()),
            ("PORT".to_owned(), port.to_string()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("SITE_DIR".to_owned(), "/nonexistent".to_owned()),
            // The throughput phases measure capacity from one address; budgets would turn
            // them into a measure of the budget. The storm phase names its clients through
            // the (trusted) loopback proxy.
            ("REGISTER_BURST".to_owned(), "0".to_owned()),
            ("LOGIN_BURST".to_owned(), "0".to_owned()),
            ("REFRESH_BURST".to_owned(), "0".to_owned()),
            // Every login counts as a failure until it proves right, so 64 at once for one
            // account from one address need that many free attempts.
            ("LOGIN_FREE_FAILURES".to_owned(), "99".to_owned()),
            ("LOGIN_ACCOUNT_FREE_FAILURES".to_owned(), "100".to_owned()),
            ("TRUSTED_PROXIES".to_owned(), "127.0.0.1".to_owned()),
        ];
        if let Some(workers) = workers {
            env.push(("HASH_WORKERS".to_owned(), workers.to_string()));
        }
        env.extend(extra.iter().cloned());

        let log = std::env::temp_dir().join(format!("latchkey-bench-{}.log", std::process::id()));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&binary)
            .arg("serve")
            .env_clear()
            .envs(env)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log,
        })
    }

    /// Waits until `GET /api/health/ready` answers 200 (the store answered its first check).
    pub async fn wait_until_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let give_up = Instant::now() + timeout;
        let request = http::request("GET", "/api/health/ready", self.addr, &[], None);
        loop {
            if let Some(status) = self.exited() {
                return Err(self.start_failure(&format!("it exited ({status})")));
            }
            if matches!(http::once(self.addr, &request).await, Ok(r) if r.status == 200) {
                return Ok(());
            }
            if Instant::now() >= give_up {
                return Err(self.start_failure(&format!(
                    "GET /api/health/ready did not answer 200 within {} s",
                    timeout.as_secs()
                )));
            }
            // Often enough for the start-to-ready figure to be exact to a few milliseconds.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// An error for a server that cannot be benchmarked, with the end of its log.
    pub fn start_failure(&self, why: &str) -> anyhow::Error {
        anyhow!(
            "the server is not usable: {why}; last lines of {}:\n{}",
            self.log.display(),
            self.log_tail()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some` once the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines the server logged, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// CPU time the server has used so far, in clock ticks (`utime + stime` of
    /// `/proc/<pid>/stat`).
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // The command name (field 2) may contain spaces; the fields after it may not.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Field 3 (state) is fields[0], so utime (14) and stime (15) are 11 and 12.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Either can fail only because the process already ended, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now. Another process could take it before the server
/// binds it; the server then fails to start and the benchmark says so.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[derive(Clone, Copy, Debug)]
struct Status {
    rss_kib: u64,
    hwm_kib: u64,
}

fn read_status(pid: u32) -> Option<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Status {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

struct Shared {
    pid: u32,
    stop: AtomicBool,
    current_kib: AtomicU64,
    peak_kib: AtomicU64,
    /// `VmHWM` was reset at the start of the phase, so it is the phase's peak.
    hwm_is_phase_peak: AtomicBool,
}

/// Samples the server's RSS in a thread of its own, so a busy load generator cannot delay
/// the samples.
pub struct RssMonitor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RssMonitor {
    pub fn start(pid: u32) -> Self {
        let shared = Arc::new(Shared {
            pid,
            stop: AtomicBool::new(false),
            current_kib: AtomicU64::new(0),
            peak_kib: AtomicU64::new(0),
            hwm_is_phase_peak: AtomicBool::new(false),
        });
        let sampler = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            while !sampler.stop.load(Ordering::Relaxed) {
                if let Some(status) = read_status(sampler.pid) {
                    sampler.current_kib.store(status.rss_kib, Ordering::Relaxed);
                    sampler
                        .peak_kib
                        .fetch_max(status.rss_kib, Ordering::Relaxed);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// RSS now (the last sample if `/proc` cannot be read, e.g. the server ended).
    pub fn current_kib(&self) -> u64 {
        match read_status(self.shared.pid) {
            Some(status) => status.rss_kib,
            None => self.shared.current_kib.load(Ordering::Relaxed),
        }
    }

    /// Starts a new phase: the peak restarts from the current RSS.
    pub fn reset_peak(&self) {
        // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
        let reset = std::fs::write(format!("/proc/{}/clear_refs", self.shared.pid), "5").is_ok();
        self.shared
            .hwm_is_phase_peak
            .store(reset, Ordering::Relaxed);
        self.shared
            .peak_kib
            .store(self.current_kib(), Ordering::Relaxed);
    }

    /// The highest RSS since the last [`reset_peak`](Self::reset_peak).
    pub fn peak_kib(&self) -> u64 {
        let sampled = self.shared.peak_kib.load(Ordering::Relaxed);
        if self.shared.hwm_is_phase_peak.load(Ordering::Relaxed) {
            let hwm = read_status(self.shared.pid).map_or(0, |status| status.hwm_kib);
            sampled.max(hwm)
        } else {
            sampled
        }
    }
}

impl Drop for RssMonitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panicked sampler has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
