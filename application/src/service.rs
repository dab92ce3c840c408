use crate::{AbusePolicy, MailPolicy};
use chrono::Duration;
use latchkey_domain::{
    ports::{
        AccessTokenCodec, AuthEvents, Clock, MailTokenRepository, Outbox, PasswordHasher,
        RandomSource, RefreshTokenRepository, SessionRepository, SuccessorDerivation,
        ThrottleStore, UserRepository,
    },
    AuthEvent, EmailKey, KeyPepper, PasswordPolicy,
};
use std::sync::Arc;

/// Lifetimes that shape a session, and how many one account may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    pub access_token_ttl: Duration,
    /// Each rotation starts a new one, capped by the session's absolute end.
    pub refresh_token_ttl: Duration,
    /// How long after a rotation the old refresh token still gets a fresh pair in the same
    /// session instead of revoking it: two tabs racing on one token, or a client retrying
    /// after a lost response, must not end a healthy session.
    pub reuse_grace: Duration,
    /// Absolute session lifetime: no refresh past it, however often the session rotated.
    pub session_max_age: Duration,
    /// The most live sessions one account keeps (`MAX_SESSIONS_PER_USER`, at least 1): a
    /// login past it ends the least recently used ones (never its own).
    pub max_sessions_per_user: usize,
}

/// Every port the use cases need, chosen by the composition root.
#[derive(Clone)]
pub struct Ports {
    pub users: Arc<dyn UserRepository>,
    pub refresh_tokens: Arc<dyn RefreshTokenRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub access_tokens: Arc<dyn AccessTokenCodec>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn RandomSource>,
    pub successors: Arc<dyn SuccessorDerivation>,
    pub throttle: Arc<dyn ThrottleStore>,
    pub mail_tokens: Arc<dyn MailTokenRepository>,
    pub outbox: Arc<dyn Outbox>,
    pub events: Arc<dyn AuthEvents>,
}

/// The rules the use cases apply, chosen by the configuration.
#[derive(Clone, Debug)]
pub struct Policies {
    pub session: SessionPolicy,
    pub abuse: AbusePolicy,
    pub passwords: PasswordPolicy,
    /// Mixed into the keys emails are counted under; the same on every instance of a service.
    pub key_pepper: KeyPepper,
    pub mail: MailPolicy,
    /// `ADMIN_EMAILS`: accounts with these emails are administrators.
    pub admin_emails: Vec<EmailKey>,
}

/// Entry point to every use case. Cheap to clone.
#[derive(Clone)]
pub struct AuthService {
    pub(crate) ports: Ports,
    pub(crate) policy: SessionPolicy,
    pub(crate) abuse: AbusePolicy,
    pub(crate) passwords: PasswordPolicy,
    pub(crate) key_pepper: KeyPepper,
    pub(crate) mail: MailPolicy,
    pub(crate) admin_emails: Arc<[EmailKey]>,
}

impl AuthService {
    pub fn new(ports: Ports, policies: Policies) -> Self {
        Self {
            ports,
            policy: policies.session,
            abuse: policies.abuse,
            passwords: policies.passwords,
            key_pepper: policies.key_pepper,
            mail: policies.mail,
            admin_emails: policies.admin_emails.into(),
        }
    }

    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    pub(crate) fn record(&self, event: AuthEvent) {
        self.ports.events.record(event);
    }
}
