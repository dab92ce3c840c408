//! A SecantusDB process of a test's own (the MongoDB wire-compatible server `scripts/test.sh`
//! installs and names in `SECANTUS_PYTHON`), for tests that kill or freeze the store under a
//! running server.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// One SecantusDB process keeping its data in memory. Killed when dropped.
pub struct StoreProcess {
    child: Child,
    port: u16,
    workdir: PathBuf,
}

impl StoreProcess {
    /// Starts SecantusDB on a free port; returns once it accepts connections.
    pub fn start() -> Self {
        let python = std::env::var("SECANTUS_PYTHON").unwrap_or_else(|_| {
            panic!(
                "this test starts SecantusDB itself: run it through scripts/test.sh, or install \
                 it (python3 -m venv .tmp/secantus-venv && .tmp/secantus-venv/bin/pip install \
                 secantusdb) and set SECANTUS_PYTHON=$PWD/.tmp/secantus-venv/bin/python"
            )
        });
        let port = crate::free_port();
        // No `secantusdb.toml` of the developer's is read: the process runs in an empty directory.
        let workdir = std::env::temp_dir().join(format!("latchkey-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&workdir).expect("a scratch directory");
        let child = Command::new(&python)
            .current_dir(&workdir)
            .args(["-m", "secantus", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--storage-path", ":memory:", "--log-level", "WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start SecantusDB with {python}: {e}"));
        let mut store = Self {
            child,
            port,
            workdir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = store.child.try_wait() {
                panic!("SecantusDB exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "SecantusDB did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        store
    }

    /// `DB_URI` for this server.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Kills the process (`SIGKILL`): its connections are closed by the system, as when a
    /// store crashes.
    pub fn kill(&mut self) {
        self.child.kill().expect("SecantusDB can be killed");
        let _ = self.child.wait();
    }

    /// Stops the process (`SIGSTOP`) without closing anything: connections stay open and
    /// nothing answers, as when a store's host or its network hangs.
    pub fn freeze(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGSTOP delivered");
    }
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        // SIGKILL ends a frozen process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}
