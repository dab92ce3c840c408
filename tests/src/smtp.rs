//! A real SMTP server for the mail suites: aiosmtpd (PyPI), delivering into a maildir that the
//! tests read. `scripts/test.sh` installs it and names its Python in `AIOSMTPD_PYTHON`.

use std::{
    collections::HashSet,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// One aiosmtpd process and the mails it caught. Stopped when dropped.
pub struct MailCatcher {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// Files already handed to a test, so each mail is seen once.
    seen: Mutex<HashSet<PathBuf>>,
}

/// A caught mail: its headers as sent and its bodies with quoted-printable undone.
#[derive(Debug, Clone)]
pub struct CaughtMail {
    pub to: String,
    pub subject: String,
    pub content: String,
}

impl CaughtMail {
    /// The path and fragment of the first link to `page`, as a click in the mail opens it.
    pub fn link_for(&self, page: &str) -> String {
        let marker = format!("/{page}#");
        let start = self
            .content
            .find(&marker)
            .unwrap_or_else(|| panic!("no link to {page} in:\n{}", self.content));
        self.content[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
            .collect()
    }

    /// The `token` of the first link to `page` (`verify-email`, `reset-password`).
    pub fn token_for(&self, page: &str) -> String {
        let marker = format!("/{page}#token=");
        let start = self
            .content
            .find(&marker)
            .unwrap_or_else(|| panic!("no link to {page} in:\n{}", self.content))
            + marker.len();
        self.content[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

/// An aiosmtpd server that refuses every recipient, quoting the address in its reply as many
/// servers do, and notes each refused address in the file named by its second argument.
const REFUSING_SERVER: &str = r#"
import sys, threading
from aiosmtpd.controller import Controller

class RefuseEveryRecipient:
    def __init__(self, record):
        self.record = record

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(self.record, "a") as refused:
            refused.write(address + "\n")
        return "550 5.1.1 <%s>: Recipient address rejected" % address

Controller(RefuseEveryRecipient(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1])).start()
threading.Event().wait()
"#;

fn aiosmtpd_python() -> String {
    std::env::var("AIOSMTPD_PYTHON").unwrap_or_else(|_| {
        panic!(
            "the mail suites need aiosmtpd: run them through scripts/test.sh, or install it \
             (python3 -m venv .tmp/aiosmtpd-venv && .tmp/aiosmtpd-venv/bin/pip install \
             aiosmtpd) and set AIOSMTPD_PYTHON=$PWD/.tmp/aiosmtpd-venv/bin/python"
        )
    })
}

impl MailCatcher {
    pub fn start() -> Self {
        let python = aiosmtpd_python();
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("latchkey-mail-{}", uuid::Uuid::new_v4()));
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start aiosmtpd with {python}: {e}"));
        Self::listening(child, dir, port)
    }

    /// A server that catches nothing: it answers every `RCPT` with
    /// `550 5.1.1 <address>: Recipient address rejected`, quoting the recipient as many servers
    /// do. [`refused`](Self::refused) lists the addresses it refused so.
    pub fn refusing_recipients() -> Self {
        let python = aiosmtpd_python();
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("latchkey-mail-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let child = Command::new(&python)
            .args(["-c", REFUSING_SERVER])
            .arg(port.to_string())
            .arg(dir.join("refused"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start aiosmtpd with {python}: {e}"));
        Self::listening(child, dir, port)
    }

    /// The recipients a [`refusing_recipients`](Self::refusing_recipients) server refused so far.
    pub fn refused(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("refused"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits up to 20 s for the server started as `child` to listen on `port`.
    fn listening(child: Child, dir: PathBuf, port: u16) -> Self {
        let catcher = Self {
            child,
            dir,
            port,
            seen: Mutex::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        catcher
    }

    /// `SMTP_URL` for this server (plain SMTP on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every mail not seen yet, oldest first.
    pub fn new_mails(&self) -> Vec<CaughtMail> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort_by_key(|path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        });
        let mut seen = self.seen.lock().unwrap();
        files
            .into_iter()
            .filter(|path| seen.insert(path.clone()))
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .map(|raw| parse(&raw))
            .collect()
    }

    /// Waits up to 20 s for a new mail to `to`; other new mails are passed over (and gone).
    pub async fn wait_for(&self, to: &str) -> CaughtMail {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(mail) = self
                .new_mails()
                .into_iter()
                .find(|m| m.to.eq_ignore_ascii_case(to))
            {
                return mail;
            }
            assert!(Instant::now() < deadline, "no mail to {to} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MailCatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Enough of RFC 5322 and 2045 for mails this server wrote: unfolded headers, and bodies with
/// quoted-printable soft breaks and `=XX` escapes undone.
fn parse(raw: &str) -> CaughtMail {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let to = header("To");
    let to = match (to.find('<'), to.find('>')) {
        (Some(open), Some(close)) if open < close => to[open + 1..close].to_owned(),
        _ => to,
    };
    CaughtMail {
        to,
        subject: header("Subject"),
        content: decode_quoted_printable(body),
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_printable_link_comes_back_whole() {
        let raw = "To: ann@example.com\r\nSubject: Reset your\r\n latchkey password\r\n\r\n\
                   Open http://x/reset-password#token=3DabcDEF_-=\r\n123 now\r\n";
        let mail = parse(raw);
        assert_eq!(mail.to, "ann@example.com");
        assert_eq!(mail.subject, "Reset your latchkey password");
        assert_eq!(mail.token_for("reset-password"), "abcDEF_-123");
    }

    #[test]
    fn the_token_of_a_reset_link_stops_before_the_address() {
        let raw = "To: ann@example.com\r\nSubject: Reset\r\n\r\n\
                   Open http://x/reset-password#token=3DabcDEF_-123&email=3Da%40b.c\r\n";
        let mail = parse(raw);
        assert_eq!(mail.token_for("reset-password"), "abcDEF_-123");
    }
}
