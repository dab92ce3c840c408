//! Mail delivery behind the core's [`Outbox`] port.
//!
//! [`SmtpOutbox`] hands mails to an SMTP server (lettre) from a bounded queue: a request never
//! waits for a mail server, a failed attempt is retried with growing pauses, and a mail that
//! cannot be delivered is logged, never turned into an error for the request that caused it.
//! [`LogOutbox`] writes mails to the log instead, for development without a mail server.

mod templates;

pub use templates::{render, MailSettings, RenderedMail};

use latchkey_domain::{ports::Outbox, Mail};
use lettre::{
    message::{Mailbox, MultiPart},
    transport::smtp::authentication::Credentials,
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use secrecy::{ExposeSecret, SecretString};
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("SMTP_URL is not a valid SMTP URL (smtp://host:port or smtps://host:port): {0}")]
    InvalidUrl(String),
    #[error(
        "MAIL_FROM is not a valid mailbox (`name@example.com` or `Name <name@example.com>`): {0}"
    )]
    InvalidFrom(String),
}

/// How to reach the SMTP server, and how hard to try.
pub struct SmtpSettings {
    /// `smtps://host:port` (TLS from the start), `smtp://host:port?tls=required` (STARTTLS),
    /// or `smtp://host:port` (no encryption: a relay on the same host only); credentials may
    /// be in the URL.
    pub url: SecretString,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: String,
    /// Attempts per mail, the first included.
    pub attempts: u32,
    /// The pause before the second attempt; each later pause is four times the one before.
    pub first_retry_after: Duration,
    /// One SMTP conversation may take this long before it counts as failed.
    pub timeout: Duration,
}

/// Mails waiting beyond this many are dropped (and logged): a mail server that is down must not
/// make the queue grow without bound.
const QUEUE_CAPACITY: usize = 1024;
/// Mails in delivery at once.
const CONCURRENT_DELIVERIES: usize = 4;

/// Sends mails over SMTP from a queue, with retries.
pub struct SmtpOutbox {
    queue: mpsc::Sender<Mail>,
}

impl SmtpOutbox {
    /// Starts the delivery task on the current Tokio runtime.
    pub fn start(smtp: SmtpSettings, settings: MailSettings) -> Result<Self, MailSetupError> {
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                MailSetupError::InvalidFrom(e.to_string())
            })?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.url.expose_secret())
            .map_err(|e| MailSetupError::InvalidUrl(e.to_string()))?
            .timeout(Some(smtp.timeout));
        if let (Some(username), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let delivery = Arc::new(Delivery {
            transport: builder.build(),
            from,
            settings,
            attempts: smtp.attempts.max(1),
            first_retry_after: smtp.first_retry_after,
        });
        let (queue, mut waiting) = mpsc::channel::<Mail>(QUEUE_CAPACITY);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
            while let Some(mail) = waiting.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let delivery = delivery.clone();
                tokio::spawn(async move {
                    delivery.deliver(mail).await;
                    drop(slot);
                });
            }
        });
        Ok(Self { queue })
    }
}

impl Outbox for SmtpOutbox {
    fn enqueue(&self, mail: Mail) {
        let purpose = mail.purpose().as_str();
        if let Err(error) = self.queue.try_send(mail) {
            tracing::error!(purpose, %error, "mail not queued; it will not be sent");
            mail_failed();
        }
    }
}

fn mail_failed() {
    metrics::counter!("latchkey_mails_total", "outcome" => "failed").increment(1);
}

struct Delivery {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    settings: MailSettings,
    attempts: u32,
    first_retry_after: Duration,
}

impl Delivery {
    async fn deliver(&self, mail: Mail) {
        let purpose = mail.purpose().as_str();
        let message = match self.message(&mail) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(purpose, %error, "mail could not be built; not sent");
                mail_failed();
                return;
            }
        };
        let mut pause = self.first_retry_after;
        for attempt in 1..=self.attempts {
            match self.transport.send(message.clone()).await {
                Ok(_) => {
                    tracing::info!(purpose, attempt, "mail sent");
                    metrics::counter!("latchkey_mails_total", "outcome" => "sent").increment(1);
                    return;
                }
                Err(error) => {
                    // By reply code and class only: the server's text often quotes the address.
                    let failure = SmtpFailure::of(&error);
                    // Refused for good (a bad address, say): retrying cannot help.
                    let permanent = error.is_permanent();
                    if !permanent && attempt < self.attempts {
                        tracing::warn!(
                            purpose,
                            attempt,
                            smtp_code = failure.code,
                            class = failure.class,
                            io_error = failure.io_error,
                            retry_in_ms = pause.as_millis() as u64,
                            "mail not sent yet; will retry"
                        );
                        tokio::time::sleep(pause).await;
                        pause *= 4;
                        continue;
                    }
                    tracing::error!(
                        purpose,
                        attempt,
                        smtp_code = failure.code,
                        class = failure.class,
                        io_error = failure.io_error,
                        "{}",
                        if permanent {
                            "mail refused by the SMTP server; not sent"
                        } else {
                            "mail not sent; giving up"
                        }
                    );
                    mail_failed();
                    return;
                }
            }
        }
    }

    fn message(&self, mail: &Mail) -> Result<Message, lettre::error::Error> {
        let rendered = render(mail, &self.settings);
        let to: Mailbox = rendered
            .to
            .parse()
            .map_err(|_| lettre::error::Error::MissingTo)?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
    }
}

/// What a failed SMTP attempt is logged as: the reply's code and class, or the kind of failure.
/// Never the error's text: lettre quotes the server's reply in it, and replies often name the
/// recipient (`550 5.1.1 <bob@example.com>: Recipient address rejected`).
struct SmtpFailure {
    /// The server's reply code (`550`), when it answered with a refusal.
    code: Option<u16>,
    /// `permanent` (a 5xx reply), `transient` (4xx), `timeout`, `tls`, `unreadable_reply`,
    /// `client` (lettre's own), `shut_down`, or `connection` (the server could not be reached,
    /// or the connection broke).
    class: &'static str,
    /// The operating system's error kind behind a failed connection (`ConnectionRefused`): a
    /// fixed name, never a message.
    io_error: Option<&'static str>,
}

impl SmtpFailure {
    fn of(error: &lettre::transport::smtp::Error) -> Self {
        let class = if error.is_permanent() {
            "permanent"
        } else if error.is_transient() {
            "transient"
        } else if error.is_timeout() {
            "timeout"
        } else if error.is_tls() {
            "tls"
        } else if error.is_response() {
            "unreadable_reply"
        } else if error.is_client() {
            "client"
        } else if error.is_transport_shutdown() {
            "shut_down"
        } else {
            "connection"
        };
        Self {
            code: error.status().map(u16::from),
            class,
            io_error: io_error_kind(error),
        }
    }
}

/// The kind of the first I/O error among `error`'s causes, by a fixed name.
fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use std::io::ErrorKind;
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                ErrorKind::ConnectionRefused => "ConnectionRefused",
                ErrorKind::ConnectionReset => "ConnectionReset",
                ErrorKind::ConnectionAborted => "ConnectionAborted",
                ErrorKind::NotConnected => "NotConnected",
                ErrorKind::AddrNotAvailable => "AddrNotAvailable",
                ErrorKind::BrokenPipe => "BrokenPipe",
                ErrorKind::TimedOut => "TimedOut",
                ErrorKind::UnexpectedEof => "UnexpectedEof",
                ErrorKind::NotFound => "NotFound",
                ErrorKind::PermissionDenied => "PermissionDenied",
                ErrorKind::InvalidData => "InvalidData",
                _ => "Other",
            });
        }
        cause = std::error::Error::source(current);
    }
    None
}

/// Writes each mail to the log instead of sending it: development without a mail server.
/// Production refuses to start this way (the links in the log are credentials).
pub struct LogOutbox {
    settings: MailSettings,
}

impl LogOutbox {
    pub fn new(settings: MailSettings) -> Self {
        tracing::warn!("SMTP_URL is not set: mails are written to the log, not sent");
        Self { settings }
    }
}

impl Outbox for LogOutbox {
    fn enqueue(&self, mail: Mail) {
        let rendered = render(&mail, &self.settings);
        tracing::warn!(
            to = %rendered.to,
            subject = %rendered.subject,
            "mail not sent (no SMTP_URL); its text follows:\n{}",
            rendered.text
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failed(std::io::Error);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed: {}", self.0)
        }
    }

    impl std::error::Error for Failed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_io_cause_is_named_by_its_kind_never_by_its_message() {
        let error = Failed(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "bob@example.com",
        ));
        assert_eq!(io_error_kind(&error), Some("ConnectionRefused"));
        let no_io = Failed(std::io::Error::other("x"));
        assert_eq!(io_error_kind(&no_io), Some("Other"));
    }
}
