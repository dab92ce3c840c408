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
                // The server refused this mail for good (a bad address, say): retrying cannot help.
                Err(error) if error.is_permanent() => {
                    tracing::error!(purpose, attempt, %error, "mail refused by the SMTP server; not sent");
                    mail_failed();
                    return;
                }
                Err(error) if attempt < self.attempts => {
                    tracing::warn!(purpose, attempt, %error, retry_in_ms = pause.as_millis() as u64, "mail not sent yet; will retry");
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                }
                Err(error) => {
                    tracing::error!(purpose, attempt, %error, "mail not sent; giving up");
                    mail_failed();
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
