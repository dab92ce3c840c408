//! Real server processes: the `latchkey` command started with an environment of the test's
//! choosing, its JSON log read line by line, and a minimal HTTP/1.1 client for talking to it.

use serde_json::Value;
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A signing secret the processes of one test share.
pub const SHARED_SECRET: &str = "process-test-secret-0123456789-abcdefghij";

/// A running `latchkey serve`; killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<Value>>>,
    workdir: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts `binary` (a suite's `env!("CARGO_BIN_EXE_latchkey-server")`) with cheap hashing,
    /// JSON logs and a free port, plus `env`; returns once it listens.
    pub fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        // No `.env` of the developer's is read: the process runs in an empty directory.
        let workdir =
            std::env::temp_dir().join(format!("latchkey-process-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&workdir).expect("a scratch directory");
        let mut command = Command::new(binary);
        command
            .current_dir(&workdir)
            .env_clear()
            .envs([
                ("HOST", "127.0.0.1"),
                ("PORT", "0"),
                ("LOG_FORMAT", "json"),
                ("RUST_LOG", "info"),
                ("JWT_SECRET", SHARED_SECRET),
                ("ARGON2_MEMORY_KIB", "1024"),
                ("ARGON2_ITERATIONS", "1"),
                ("SITE_DIR", "no-site-here"),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the server binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listening, address) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("server (not JSON): {line}");
                    continue;
                };
                eprintln!("server: {line}");
                if let Some(at) = entry["message"]
                    .as_str()
                    .and_then(|m| m.strip_prefix("latchkey listening on http://"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|at| at.parse::<SocketAddr>().ok())
                {
                    let _ = listening.send(at);
                }
                lines.lock().unwrap().push(entry);
            }
        });
        let Ok(address) = address.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not say where it listens within 30 s");
        };
        Self {
            child,
            address,
            log,
            workdir,
        }
    }

    /// Every JSON line logged so far.
    pub fn log(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIG{signal} delivered");
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub async fn exit_code_within(&mut self, limit: Duration) -> Option<i32> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not exit within {limit:?}");
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> RawReply {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|value| ("Authorization", value))
            .into_iter()
            .collect();
        http(self.address, method, path, &headers, body).await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// A response as it came over the wire.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("{}: not JSON: {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`). Errors if the connection fails.
pub async fn try_http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> std::io::Result<RawReply> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).expect("a UTF-8 reply");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("an incomplete reply: {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        crate::http::dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(RawReply {
        status,
        headers,
        body,
    })
}

pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> RawReply {
    try_http(address, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on {address}: {e}"))
}

/// The value of the sample `name{labels}` in Prometheus text, 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
