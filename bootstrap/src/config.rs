//! Settings from the environment (and an optional `.env` file, loaded by `main`).

use crate::ServeSettings;
use figment::{providers::Env, Figment};
use latchkey_application::{AbusePolicy, Budget, MailPolicy, SessionPolicy};
use latchkey_crypto::{
    Argon2Settings, JwtAlgorithm, JwtKeys, JwtSettings, SigningKey, VerifyingKey,
};
use latchkey_domain::{Backoff, EmailAddress, EmailKey, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS};
use latchkey_http::{AllowedOrigins, CorsSettings, ForwardedHeader, HttpSettings, SiteSettings};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

/// Every variable latchkey reads. Anything else in the environment is ignored.
pub const VARIABLES: &[&str] = &[
    "APP_ENV",
    "HOST",
    "PORT",
    "DB_URI",
    "DB_NAME",
    "JWT_SECRET",
    "JWT_ALGORITHM",
    "JWT_PRIVATE_KEY_FILE",
    "JWT_PREVIOUS_KEY_FILES",
    "JWT_EXPIRY",
    "REFRESH_TOKEN_EXPIRY",
    "REFRESH_REUSE_GRACE",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "ARGON2_MEMORY_KIB",
    "ARGON2_ITERATIONS",
    "ARGON2_PARALLELISM",
    "HASH_WORKERS",
    "HASH_QUEUE",
    "SESSION_MAX_AGE",
    "MAX_SESSIONS_PER_USER",
    "JWT_LEEWAY",
    "STORE_TIMEOUT",
    "HEADER_READ_TIMEOUT",
    "IDLE_TIMEOUT",
    "HSTS_MAX_AGE",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "SITE_DIR",
    "SERVICE_NAME",
    "PASSWORD_MIN_LENGTH",
    "TRUSTED_PROXIES",
    "FORWARDED_HEADER",
    "CORS_ORIGINS",
    "CORS_MAX_AGE",
    "LOGIN_FREE_FAILURES",
    "LOGIN_ACCOUNT_FREE_FAILURES",
    "LOGIN_BACKOFF_BASE",
    "LOGIN_BACKOFF_MAX",
    "LOGIN_FAILURE_MEMORY",
    "REGISTER_BURST",
    "REGISTER_REFILL",
    "LOGIN_BURST",
    "LOGIN_REFILL",
    "REFRESH_BURST",
    "REFRESH_REFILL",
    "SMTP_URL",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "MAIL_FROM",
    "PUBLIC_URL",
    "EMAIL_TOKEN_EXPIRY",
    "RESET_TOKEN_EXPIRY",
    "REQUIRE_VERIFIED_EMAIL",
    "MAIL_BURST",
    "MAIL_REFILL",
    "MAIL_RECIPIENT_BURST",
    "MAIL_RECIPIENT_REFILL",
    "LOG_FORMAT",
    "METRICS",
    "METRICS_ADDR",
    "SHUTDOWN_GRACE",
    "SHUTDOWN_DELAY",
    "ADMIN_EMAILS",
];

/// The log filter (`tracing`'s `EnvFilter` syntax), read by `main` rather than by `Config`.
pub const LOG_FILTER_VARIABLE: &str = "RUST_LOG";

/// Bounds of `MAX_HEADER_BYTES`: hyper's smallest read buffer, and 1 MiB.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The HSTS max-age (one year) sent when `APP_ENV=production` leaves `HSTS_MAX_AGE` unset.
pub const DEFAULT_PRODUCTION_HSTS_MAX_AGE: u64 = 365 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    Development,
    Production,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event, for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where the Prometheus text is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSettings {
    Off,
    /// At `/metrics` on the API's listener.
    OnMainListener,
    /// At `/metrics` on a listener of its own (an address only the scraper reaches).
    OwnListener(SocketAddr),
}

#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Nothing persists; the zero-setup default.
    Memory,
    Mongo {
        uri: String,
        database: Option<String>,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URI may carry a password.
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Mongo { database, .. } => f
                .debug_struct("Mongo")
                .field("uri", &"[REDACTED]")
                .field("database", database)
                .finish(),
        }
    }
}

/// Where a secret or signing key came from; a generated one dies with the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    Configured,
    GeneratedForThisProcess,
}

/// Validated configuration, one section per part of the service. Each section is the settings
/// type of the part it configures, so wiring passes it on as it is.
#[derive(Clone, Debug)]
pub struct Config {
    pub app_env: AppEnv,
    pub log_format: LogFormat,
    pub metrics: MetricsSettings,
    pub listen: ListenSettings,
    pub store: StoreSettings,
    pub session: SessionPolicy,
    pub jwt: JwtConfig,
    pub argon2: Argon2Settings,
    pub http: HttpSettings,
    pub site: SiteSettings,
    pub abuse: AbusePolicy,
    pub passwords: PasswordSettings,
    pub mail: MailConfig,
    /// `ADMIN_EMAILS`: these accounts are administrators once their address is verified.
    pub admin_emails: Vec<EmailKey>,
}

/// Where mails go and what their links say.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// `None`: mails are written to the log (development only).
    pub smtp: Option<SmtpConfig>,
    /// The `From` of every mail.
    pub from: String,
    /// The site's base URL, which links in mails point to.
    pub public_url: String,
    pub policy: MailPolicy,
}

#[derive(Clone)]
pub struct SmtpConfig {
    pub url: SecretString,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("SmtpConfig")
            .field("url", &"[REDACTED]")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// The configurable part of the password policy (the common-password list is built in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordSettings {
    pub min_chars: usize,
    /// Refused inside passwords.
    pub service_name: String,
}

/// The socket and how its connections are treated.
#[derive(Clone, Debug)]
pub struct ListenSettings {
    pub address: SocketAddr,
    pub serve: ServeSettings,
}

#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub backend: StoreConfig,
    /// Every store call fails as unavailable (503) after this long.
    pub operation_timeout: Duration,
}

/// The token codec's settings, and the server's own secret.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub codec: JwtSettings,
    /// `JWT_SECRET`: the root of the keys only the servers hold (refresh-token successors,
    /// throttle keys), whatever signs access tokens; with HS256 it signs them too.
    pub secret: SecretString,
    pub secret_origin: SecretOrigin,
    /// Where the key pair came from (`JWT_PRIVATE_KEY_FILE`); `None` with HS256.
    pub key_origin: Option<SecretOrigin>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("{variable} {problem}")]
    Variable {
        variable: &'static str,
        problem: String,
    },
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Variable {
        variable,
        problem: problem.into(),
    }
}

/// The raw variables, lower-cased by figment. Every default of the service is here.
#[derive(Deserialize)]
struct Raw {
    #[serde(default = "defaults::app_env")]
    app_env: AppEnv,
    #[serde(default = "defaults::host")]
    host: String,
    #[serde(default = "defaults::port")]
    port: u16,
    db_uri: Option<String>,
    db_name: Option<String>,
    jwt_secret: Option<SecretString>,
    jwt_algorithm: Option<String>,
    jwt_private_key_file: Option<PathBuf>,
    jwt_previous_key_files: Option<String>,
    #[serde(default = "defaults::jwt_expiry")]
    jwt_expiry: u64,
    #[serde(default = "defaults::refresh_token_expiry")]
    refresh_token_expiry: u64,
    #[serde(default = "defaults::refresh_reuse_grace")]
    refresh_reuse_grace: u64,
    #[serde(default = "defaults::jwt_issuer")]
    jwt_issuer: String,
    #[serde(default = "defaults::jwt_audience")]
    jwt_audience: String,
    #[serde(default = "defaults::argon2_memory_kib")]
    argon2_memory_kib: u32,
    #[serde(default = "defaults::argon2_iterations")]
    argon2_iterations: u32,
    #[serde(default = "defaults::argon2_parallelism")]
    argon2_parallelism: u32,
    #[serde(default = "defaults::hash_workers")]
    hash_workers: usize,
    #[serde(default = "defaults::hash_queue")]
    hash_queue: usize,
    #[serde(default = "defaults::session_max_age")]
    session_max_age: u64,
    #[serde(default = "defaults::max_sessions_per_user")]
    max_sessions_per_user: usize,
    #[serde(default = "defaults::jwt_leeway")]
    jwt_leeway: u64,
    #[serde(default = "defaults::store_timeout")]
    store_timeout: u64,
    #[serde(default = "defaults::header_read_timeout")]
    header_read_timeout: u64,
    #[serde(default = "defaults::idle_timeout")]
    idle_timeout: u64,
    hsts_max_age: Option<u64>,
    #[serde(default = "defaults::max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "defaults::max_header_bytes")]
    max_header_bytes: usize,
    #[serde(default = "defaults::site_dir")]
    site_dir: PathBuf,
    #[serde(default = "defaults::service_name")]
    service_name: String,
    #[serde(default = "defaults::password_min_length")]
    password_min_length: usize,
    #[serde(default)]
    trusted_proxies: String,
    #[serde(default)]
    cors_origins: String,
    #[serde(default = "defaults::cors_max_age")]
    cors_max_age: u32,
    #[serde(default)]
    admin_emails: String,
    #[serde(default = "defaults::forwarded_header")]
    forwarded_header: String,
    #[serde(default = "defaults::login_free_failures")]
    login_free_failures: u32,
    #[serde(default = "defaults::login_account_free_failures")]
    login_account_free_failures: u32,
    #[serde(default = "defaults::login_backoff_base")]
    login_backoff_base: u64,
    #[serde(default = "defaults::login_backoff_max")]
    login_backoff_max: u64,
    #[serde(default = "defaults::login_failure_memory")]
    login_failure_memory: u64,
    #[serde(default = "defaults::register_burst")]
    register_burst: u32,
    #[serde(default = "defaults::register_refill")]
    register_refill: f64,
    #[serde(default = "defaults::login_burst")]
    login_burst: u32,
    #[serde(default = "defaults::login_refill")]
    login_refill: f64,
    #[serde(default = "defaults::refresh_burst")]
    refresh_burst: u32,
    #[serde(default = "defaults::refresh_refill")]
    refresh_refill: f64,
    smtp_url: Option<SecretString>,
    smtp_username: Option<String>,
    smtp_password: Option<SecretString>,
    mail_from: Option<String>,
    public_url: Option<String>,
    #[serde(default = "defaults::email_token_expiry")]
    email_token_expiry: u64,
    #[serde(default = "defaults::reset_token_expiry")]
    reset_token_expiry: u64,
    #[serde(default)]
    require_verified_email: bool,
    #[serde(default = "defaults::mail_burst")]
    mail_burst: u32,
    #[serde(default = "defaults::mail_refill")]
    mail_refill: f64,
    #[serde(default = "defaults::mail_recipient_burst")]
    mail_recipient_burst: u32,
    #[serde(default = "defaults::mail_recipient_refill")]
    mail_recipient_refill: f64,
    log_format: Option<LogFormat>,
    #[serde(default = "defaults::metrics")]
    metrics: Switch,
    metrics_addr: Option<String>,
    #[serde(default = "defaults::shutdown_grace")]
    shutdown_grace: u64,
    #[serde(default)]
    shutdown_delay: u64,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Switch {
    On,
    Off,
}

mod defaults {
    use super::AppEnv;
    pub fn app_env() -> AppEnv {
        AppEnv::Development
    }
    pub fn host() -> String {
        "127.0.0.1".into()
    }
    pub fn cors_max_age() -> u32 {
        600
    }
    pub fn port() -> u16 {
        8080
    }
    pub fn jwt_expiry() -> u64 {
        3600
    }
    pub fn refresh_token_expiry() -> u64 {
        14 * 24 * 3600
    }
    pub fn refresh_reuse_grace() -> u64 {
        10
    }
    pub fn jwt_issuer() -> String {
        "latchkey".into()
    }
    pub fn jwt_audience() -> String {
        "latchkey".into()
    }
    /// OWASP's argon2id recommendation: m=19 MiB, t=2, p=1.
    pub fn argon2_memory_kib() -> u32 {
        19_456
    }
    pub fn argon2_iterations() -> u32 {
        2
    }
    pub fn argon2_parallelism() -> u32 {
        1
    }
    /// One per core: hashing is CPU-bound, so more workers only add memory.
    pub fn hash_workers() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
    pub fn hash_queue() -> usize {
        128
    }
    pub fn session_max_age() -> u64 {
        30 * 24 * 3600
    }
    pub fn max_sessions_per_user() -> usize {
        100
    }
    pub fn jwt_leeway() -> u64 {
        30
    }
    pub fn store_timeout() -> u64 {
        5
    }
    pub fn header_read_timeout() -> u64 {
        10
    }
    pub fn idle_timeout() -> u64 {
        60
    }
    /// In-flight requests get this long to finish after SIGTERM.
    pub fn shutdown_grace() -> u64 {
        10
    }
    pub fn metrics() -> super::Switch {
        super::Switch::On
    }
    pub fn max_body_bytes() -> usize {
        64 * 1024
    }
    pub fn max_header_bytes() -> usize {
        32 * 1024
    }
    pub fn site_dir() -> std::path::PathBuf {
        "web/dist/site".into()
    }
    pub fn service_name() -> String {
        "latchkey".into()
    }
    pub fn email_token_expiry() -> u64 {
        24 * 3600
    }
    pub fn reset_token_expiry() -> u64 {
        30 * 60
    }
    pub fn mail_burst() -> u32 {
        5
    }
    pub fn mail_refill() -> f64 {
        60.0
    }
    pub fn mail_recipient_burst() -> u32 {
        3
    }
    pub fn mail_recipient_refill() -> f64 {
        600.0
    }
    pub fn forwarded_header() -> String {
        "x-forwarded-for".into()
    }
    pub fn password_min_length() -> usize {
        8
    }
    /// Five wrong guesses from one network cost nothing; then 1 s, 2 s, 4 s ... up to 15 min.
    pub fn login_free_failures() -> u32 {
        5
    }
    /// Far above the per-network threshold, which one network reaches first, so guessing
    /// from one network never locks the owner out elsewhere; below NIST's 100.
    pub fn login_account_free_failures() -> u32 {
        50
    }
    pub fn login_backoff_base() -> u64 {
        1
    }
    pub fn login_backoff_max() -> u64 {
        15 * 60
    }
    pub fn login_failure_memory() -> u64 {
        24 * 3600
    }
    /// Ten at once, then one a minute: a family behind one address signs up easily, a script
    /// gets 60 an hour.
    pub fn register_burst() -> u32 {
        10
    }
    pub fn register_refill() -> f64 {
        60.0
    }
    pub fn login_burst() -> u32 {
        20
    }
    pub fn login_refill() -> f64 {
        3.0
    }
    /// Every open tab refreshes about once per access-token lifetime; an office behind one
    /// address has many tabs.
    pub fn refresh_burst() -> u32 {
        60
    }
    pub fn refresh_refill() -> f64 {
        1.0
    }
}

impl Config {
    /// Which other origins may call the API: both the app's responses and the server loop's
    /// own replies follow it.
    pub fn set_cors(&mut self, cors: CorsSettings) {
        self.listen.serve.edge.cors = cors.clone();
        self.http.cors = cors;
    }

    /// Reads the process environment. Call `dotenvy::dotenv()` first to include a `.env` file.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Env::raw().only(VARIABLES)))
    }

    /// Reads any figment; tests use this to supply variables without touching the process.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let raw: Raw = figment.extract().map_err(|e| {
            // figment names the lower-cased key; say which variable the user must fix.
            let mut message = e.to_string();
            for var in VARIABLES {
                message = message.replace(&format!("\"{}\"", var.to_lowercase()), var);
            }
            ConfigError::Invalid(message)
        })?;
        Self::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Self, ConfigError> {
        let address: SocketAddr = format!("{}:{}", raw.host, raw.port)
            .parse()
            .or_else(|_| format!("[{}]:{}", raw.host, raw.port).parse())
            .map_err(|_| bad("HOST", format!("is not an IP address: {:?}", raw.host)))?;
        let backend = match raw.db_uri.as_deref().map(str::trim) {
            None | Some("") | Some("memory") => StoreConfig::Memory,
            Some(uri) if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") => {
                StoreConfig::Mongo {
                    uri: uri.to_owned(),
                    database: raw.db_name.clone().filter(|d| !d.trim().is_empty()),
                }
            }
            Some(_) => {
                return Err(bad(
                    "DB_URI",
                    "must be `memory` or a `mongodb://` / `mongodb+srv://` connection string",
                ))
            }
        };
        if raw.app_env == AppEnv::Production && backend == StoreConfig::Memory {
            // Each instance would keep its own users, sessions and budgets, and lose them all
            // at every restart.
            return Err(bad(
                "DB_URI",
                "must point at MongoDB when APP_ENV=production (the in-memory store is one \
                 process's own and is lost at restart)",
            ));
        }
        let (secret, secret_origin) = match raw.jwt_secret.clone() {
            Some(secret) => {
                let len = secret.expose_secret().len();
                if len < MIN_JWT_SECRET_BYTES {
                    return Err(bad(
                        "JWT_SECRET",
                        format!(
                            "must be at least {MIN_JWT_SECRET_BYTES} bytes (it has {len}); \
                             generate one with `openssl rand -base64 48`"
                        ),
                    ));
                }
                (secret, SecretOrigin::Configured)
            }
            None if raw.app_env == AppEnv::Production => {
                return Err(bad("JWT_SECRET", "must be set when APP_ENV=production"));
            }
            None if backend != StoreConfig::Memory => {
                return Err(bad(
                    "JWT_SECRET",
                    "must be set when DB_URI points at MongoDB (a generated secret would \
                     invalidate every token on restart)",
                ));
            }
            None => (generated_secret(), SecretOrigin::GeneratedForThisProcess),
        };
        let (keys, key_origin) = jwt_keys(&raw, &backend, &secret)?;
        let admin_emails = raw
            .admin_emails
            .split(',')
            .map(str::trim)
            .filter(|email| !email.is_empty())
            .map(|email| {
                EmailAddress::parse(email)
                    .map(|address| address.key())
                    .map_err(|e| bad("ADMIN_EMAILS", format!("{email:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let positive = |variable: &'static str, value: u64| {
            if value == 0 {
                Err(bad(variable, "must be a positive number of seconds"))
            } else {
                Ok(value)
            }
        };
        let access_token_ttl = positive("JWT_EXPIRY", raw.jwt_expiry)?;
        let refresh_token_ttl = positive("REFRESH_TOKEN_EXPIRY", raw.refresh_token_expiry)?;
        if refresh_token_ttl > 10 * 365 * 24 * 3600 {
            return Err(bad("REFRESH_TOKEN_EXPIRY", "must be at most ten years"));
        }
        if access_token_ttl > refresh_token_ttl {
            return Err(bad(
                "JWT_EXPIRY",
                "must not be longer than REFRESH_TOKEN_EXPIRY",
            ));
        }
        if raw.refresh_reuse_grace > 300 {
            return Err(bad("REFRESH_REUSE_GRACE", "must be at most 300 seconds"));
        }
        if raw.hash_workers == 0 {
            return Err(bad("HASH_WORKERS", "must be at least 1"));
        }
        if raw.hash_queue == 0 {
            return Err(bad("HASH_QUEUE", "must be at least 1"));
        }
        let session_max_age = positive("SESSION_MAX_AGE", raw.session_max_age)?;
        if session_max_age > 10 * 365 * 24 * 3600 {
            return Err(bad("SESSION_MAX_AGE", "must be at most ten years"));
        }
        if access_token_ttl > session_max_age {
            return Err(bad("JWT_EXPIRY", "must not be longer than SESSION_MAX_AGE"));
        }
        if raw.max_sessions_per_user == 0 {
            return Err(bad("MAX_SESSIONS_PER_USER", "must be at least 1"));
        }
        if raw.jwt_leeway > 300 {
            return Err(bad("JWT_LEEWAY", "must be at most 300 seconds"));
        }
        // Beyond a day a timeout protects nothing, and deadlines past the clock's range panic.
        let timeout = |variable: &'static str, value: u64| {
            let value = positive(variable, value)?;
            if value > 24 * 3600 {
                return Err(bad(variable, "must be at most one day (86400 seconds)"));
            }
            Ok(value)
        };
        let store_timeout = timeout("STORE_TIMEOUT", raw.store_timeout)?;
        let header_read_timeout = timeout("HEADER_READ_TIMEOUT", raw.header_read_timeout)?;
        let idle_timeout = timeout("IDLE_TIMEOUT", raw.idle_timeout)?;
        if raw.shutdown_grace > 3600 {
            return Err(bad(
                "SHUTDOWN_GRACE",
                "must be at most one hour (3600 seconds)",
            ));
        }
        if raw.shutdown_delay > 300 {
            return Err(bad("SHUTDOWN_DELAY", "must be at most 300 seconds"));
        }
        let metrics = match (raw.metrics, raw.metrics_addr.as_deref().map(str::trim)) {
            (Switch::Off, _) => MetricsSettings::Off,
            (Switch::On, None | Some("")) if raw.app_env == AppEnv::Production => {
                return Err(bad(
                    "METRICS_ADDR",
                    "must be set when APP_ENV=production (an address only the scraper reaches, \
                     e.g. 0.0.0.0:9100 on a port not published to the internet: the counts \
                     tell more than a public page should), or set METRICS=off",
                ))
            }
            (Switch::On, None | Some("")) => MetricsSettings::OnMainListener,
            (Switch::On, Some(at)) => {
                let own: SocketAddr = at.parse().map_err(|_| {
                    bad(
                        "METRICS_ADDR",
                        format!("is not an address and port: {at:?}"),
                    )
                })?;
                if own == address && own.port() != 0 {
                    return Err(bad(
                        "METRICS_ADDR",
                        "must differ from HOST:PORT (leave it unset to serve /metrics there)",
                    ));
                }
                MetricsSettings::OwnListener(own)
            }
        };
        let log_format = raw.log_format.unwrap_or(match raw.app_env {
            AppEnv::Production => LogFormat::Json,
            AppEnv::Development => LogFormat::Text,
        });
        // Production already demands an https PUBLIC_URL, so HSTS is on there by default (one
        // year); `0` turns it off explicitly, in either environment.
        let hsts_max_age_secs = match (raw.hsts_max_age, raw.app_env) {
            (Some(0), _) => None,
            (Some(secs), _) => Some(secs),
            (None, AppEnv::Production) => Some(DEFAULT_PRODUCTION_HSTS_MAX_AGE),
            (None, AppEnv::Development) => None,
        };
        if raw.max_body_bytes < 1024 {
            return Err(bad("MAX_BODY_BYTES", "must be at least 1024"));
        }
        // hyper's read buffer, which bounds the request head, cannot be smaller than 8 KiB.
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&raw.max_header_bytes) {
            return Err(bad(
                "MAX_HEADER_BYTES",
                format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES} (1 MiB)"),
            ));
        }
        for (variable, value) in [
            ("JWT_ISSUER", &raw.jwt_issuer),
            ("JWT_AUDIENCE", &raw.jwt_audience),
        ] {
            if value.trim().is_empty() {
                return Err(bad(variable, "must not be empty"));
            }
        }
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&raw.password_min_length) {
            return Err(bad(
                "PASSWORD_MIN_LENGTH",
                format!(
                    "must be between {PASSWORD_MIN_CHARS} (NIST SP 800-63B) and {PASSWORD_MAX_CHARS}"
                ),
            ));
        }
        if raw.service_name.trim().chars().count() < 3 {
            return Err(bad("SERVICE_NAME", "must have at least 3 characters"));
        }
        let trusted_proxies = parse_proxies(&raw.trusted_proxies)?;
        let cors = CorsSettings {
            origins: parse_origins(&raw.cors_origins, raw.app_env)?,
            max_age_secs: raw.cors_max_age,
        };
        if cors.max_age_secs > MAX_CORS_MAX_AGE_SECS {
            return Err(bad(
                "CORS_MAX_AGE",
                format!("must be at most {MAX_CORS_MAX_AGE_SECS} (a day)"),
            ));
        }
        let forwarded_header = match raw.forwarded_header.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ForwardedHeader::XForwardedFor,
            "forwarded" => ForwardedHeader::Forwarded,
            _ => {
                return Err(bad(
                    "FORWARDED_HEADER",
                    "must be `x-forwarded-for` or `forwarded`",
                ))
            }
        };
        let backoff_base = timeout("LOGIN_BACKOFF_BASE", raw.login_backoff_base)?;
        let backoff_max = timeout("LOGIN_BACKOFF_MAX", raw.login_backoff_max)?;
        if backoff_base > backoff_max {
            return Err(bad(
                "LOGIN_BACKOFF_BASE",
                "must not be longer than LOGIN_BACKOFF_MAX",
            ));
        }
        let failure_memory = timeout("LOGIN_FAILURE_MEMORY", raw.login_failure_memory)?;
        if failure_memory < backoff_max {
            return Err(bad(
                "LOGIN_FAILURE_MEMORY",
                "must not be shorter than LOGIN_BACKOFF_MAX (failures would be forgotten before their delay ends)",
            ));
        }
        for (variable, value) in [
            ("LOGIN_FREE_FAILURES", raw.login_free_failures),
            (
                "LOGIN_ACCOUNT_FREE_FAILURES",
                raw.login_account_free_failures,
            ),
        ] {
            if !(1..=100).contains(&value) {
                return Err(bad(
                    variable,
                    "must be between 1 and 100 (NIST SP 800-63B 5.2.2)",
                ));
            }
        }
        // Else guessing from one network would reach the account's limit first, and lock the
        // owner out everywhere.
        if raw.login_account_free_failures <= raw.login_free_failures {
            return Err(bad(
                "LOGIN_ACCOUNT_FREE_FAILURES",
                "must be greater than LOGIN_FREE_FAILURES",
            ));
        }
        let register = budget(
            ("REGISTER_BURST", "REGISTER_REFILL"),
            raw.register_burst,
            raw.register_refill,
        )?;
        let login = budget(
            ("LOGIN_BURST", "LOGIN_REFILL"),
            raw.login_burst,
            raw.login_refill,
        )?;
        let refresh = budget(
            ("REFRESH_BURST", "REFRESH_REFILL"),
            raw.refresh_burst,
            raw.refresh_refill,
        )?;
        let mail_budget = budget(
            ("MAIL_BURST", "MAIL_REFILL"),
            raw.mail_burst,
            raw.mail_refill,
        )?;
        let mail_per_recipient = budget(
            ("MAIL_RECIPIENT_BURST", "MAIL_RECIPIENT_REFILL"),
            raw.mail_recipient_burst,
            raw.mail_recipient_refill,
        )?;
        let mail = mail_config(&raw, &address)?;

        // Every duration is bounded above (ten years at most), so this conversion is exact.
        let seconds = |secs: u64| chrono::Duration::seconds(secs as i64);
        let backoff = |free_failures| Backoff {
            free_failures,
            base_delay: seconds(backoff_base),
            max_delay: seconds(backoff_max),
        };
        Ok(Self {
            app_env: raw.app_env,
            log_format,
            metrics,
            listen: ListenSettings {
                address,
                serve: ServeSettings {
                    header_read_timeout: Duration::from_secs(header_read_timeout),
                    max_header_bytes: raw.max_header_bytes,
                    edge: latchkey_http::EdgeSettings {
                        hsts_max_age_secs,
                        cors: cors.clone(),
                    },
                    idle_timeout: Duration::from_secs(idle_timeout),
                    shutdown_grace: Duration::from_secs(raw.shutdown_grace),
                    shutdown_delay: Duration::from_secs(raw.shutdown_delay),
                },
            },
            store: StoreSettings {
                backend,
                operation_timeout: Duration::from_secs(store_timeout),
            },
            session: SessionPolicy {
                access_token_ttl: seconds(access_token_ttl),
                refresh_token_ttl: seconds(refresh_token_ttl),
                reuse_grace: seconds(raw.refresh_reuse_grace),
                session_max_age: seconds(session_max_age),
                max_sessions_per_user: raw.max_sessions_per_user,
            },
            jwt: JwtConfig {
                codec: JwtSettings {
                    keys,
                    issuer: raw.jwt_issuer,
                    audience: raw.jwt_audience,
                    leeway_secs: raw.jwt_leeway,
                },
                secret,
                secret_origin,
                key_origin,
            },
            argon2: Argon2Settings {
                memory_kib: raw.argon2_memory_kib,
                iterations: raw.argon2_iterations,
                parallelism: raw.argon2_parallelism,
                workers: raw.hash_workers,
                queue_capacity: raw.hash_queue,
            },
            http: HttpSettings {
                max_body_bytes: raw.max_body_bytes,
                // A body gets as long as headers do.
                body_read_timeout: Duration::from_secs(header_read_timeout),
                hsts_max_age_secs,
                trusted_proxies,
                forwarded_header,
                cors,
            },
            site: SiteSettings { dir: raw.site_dir },
            abuse: AbusePolicy {
                login_from_network: backoff(raw.login_free_failures),
                login_account: backoff(raw.login_account_free_failures),
                forget_failures_after: seconds(failure_memory),
                register,
                login,
                refresh,
                mail: mail_budget,
                mail_per_recipient,
            },
            passwords: PasswordSettings {
                min_chars: raw.password_min_length,
                service_name: raw.service_name.trim().to_owned(),
            },
            admin_emails,
            mail,
        })
    }
}

/// Links in mails must work for a day at most past a week: longer-lived links sit in
/// mailboxes as standing credentials.
const MAX_LINK_LIFETIME_SECS: u64 = 7 * 24 * 3600;

fn mail_config(raw: &Raw, address: &SocketAddr) -> Result<MailConfig, ConfigError> {
    let smtp = match &raw.smtp_url {
        Some(url) if !url.expose_secret().trim().is_empty() => {
            let url = url.expose_secret().trim();
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(bad(
                    "SMTP_URL",
                    "must be an `smtp://host:port` or `smtps://host:port` URL",
                ));
            }
            Some(SmtpConfig {
                url: SecretString::from(url.to_owned()),
                username: raw.smtp_username.clone().filter(|u| !u.is_empty()),
                password: raw.smtp_password.clone(),
            })
        }
        _ if raw.app_env == AppEnv::Production => {
            return Err(bad(
                "SMTP_URL",
                "must be set when APP_ENV=production (mails with links cannot go to the log)",
            ));
        }
        _ => None,
    };
    let public_url = match raw.public_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad("PUBLIC_URL", "must start with http:// or https://"));
            }
            // Links carry credentials: in production they must not travel in clear.
            if raw.app_env == AppEnv::Production && !url.starts_with("https://") {
                return Err(bad(
                    "PUBLIC_URL",
                    "must start with https:// when APP_ENV=production",
                ));
            }
            url.trim_end_matches('/').to_owned()
        }
        _ if raw.app_env == AppEnv::Production => {
            return Err(bad(
                "PUBLIC_URL",
                "must be set when APP_ENV=production (links in mails point to it)",
            ));
        }
        _ => format!("http://{address}"),
    };
    let from = match raw.mail_from.as_deref().map(str::trim) {
        Some(from) if !from.is_empty() => from.to_owned(),
        _ => format!("{} <no-reply@localhost>", raw.service_name.trim()),
    };
    let lifetime = |variable: &'static str, secs: u64| {
        if !(60..=MAX_LINK_LIFETIME_SECS).contains(&secs) {
            return Err(bad(
                variable,
                format!("must be between 60 and {MAX_LINK_LIFETIME_SECS} seconds"),
            ));
        }
        Ok(chrono::Duration::seconds(secs as i64))
    };
    Ok(MailConfig {
        smtp,
        from,
        public_url,
        policy: MailPolicy {
            verify_link_ttl: lifetime("EMAIL_TOKEN_EXPIRY", raw.email_token_expiry)?,
            reset_link_ttl: lifetime("RESET_TOKEN_EXPIRY", raw.reset_token_expiry)?,
            require_verified_email: raw.require_verified_email,
        },
    })
}

/// A budget of `burst` requests refilled one per `refill` seconds; a burst of 0 turns it off.
fn budget(
    (burst_variable, refill_variable): (&'static str, &'static str),
    burst: u32,
    refill: f64,
) -> Result<Option<Budget>, ConfigError> {
    let Some(burst) = std::num::NonZeroU32::new(burst) else {
        return Ok(None);
    };
    if burst.get() > MAX_BURST {
        return Err(bad(burst_variable, format!("must be at most {MAX_BURST}")));
    }
    if !(refill.is_finite() && (0.001..=86_400.0).contains(&refill)) {
        return Err(bad(
            refill_variable,
            "must be between 0.001 and 86400 seconds",
        ));
    }
    // A full bucket refills in burst x refill; bounded so the state (nanoseconds since the
    // epoch, stored as a signed 64-bit number) stays far from overflowing.
    if f64::from(burst.get()) * refill > MAX_REFILL_WINDOW_SECS {
        return Err(bad(
            refill_variable,
            format!("times {burst_variable} must be at most 30 days"),
        ));
    }
    Ok(Some(Budget {
        burst,
        replenish_every: Duration::from_secs_f64(refill),
    }))
}

const MAX_BURST: u32 = 100_000;
const MAX_REFILL_WINDOW_SECS: f64 = 30.0 * 24.0 * 3600.0;

/// Browsers cap it lower anyway (Chromium at two hours).
const MAX_CORS_MAX_AGE_SECS: u32 = 24 * 3600;

/// `CORS_ORIGINS`: origins (`scheme://host[:port]`) separated by commas or spaces, each
/// written the way browsers send it in `Origin` (lower case, no default port, no path) so that
/// it can be compared whole; or `*` alone, which development allows and production refuses.
fn parse_origins(list: &str, app_env: AppEnv) -> Result<AllowedOrigins, ConfigError> {
    let items: Vec<&str> = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .collect();
    if items.contains(&"*") {
        if items.len() > 1 {
            return Err(bad("CORS_ORIGINS", "takes `*` alone or a list of origins"));
        }
        if app_env == AppEnv::Production {
            return Err(bad(
                "CORS_ORIGINS",
                "`*` (every origin) is for development only: list the origins of your apps",
            ));
        }
        return Ok(AllowedOrigins::Any);
    }
    items
        .into_iter()
        .map(|item| {
            web_origin(item).ok_or_else(|| {
                bad(
                    "CORS_ORIGINS",
                    format!(
                        "has {item:?}, which is not an origin: `https://host` or \
                         `http://host:port`, with no path, query or user"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(AllowedOrigins::Only)
}

/// `item` as a browser writes it in `Origin`, if it is an http(s) origin: parsed the way
/// browsers parse URLs (so `HTTPS://App.Example.com:443/`, `http://[0:0::1]` or an IDN name
/// become what a browser would send), with nothing but a scheme, a host and a port.
fn web_origin(item: &str) -> Option<String> {
    let url = url::Url::parse(item).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.port() != Some(0)
        // A pattern is not an origin: origins are compared whole.
        && url.host_str().is_some_and(|host| !host.contains('*'));
    plain.then(|| url.origin().ascii_serialization())
}

/// `TRUSTED_PROXIES`: networks in CIDR notation (a bare address is one host), separated by
/// commas or spaces. IPv4-mapped IPv6 networks are taken as the IPv4 networks they are, as
/// clients are.
fn parse_proxies(list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            let net = item
                .parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    bad(
                        "TRUSTED_PROXIES",
                        format!("has {item:?}, which is not an IP address or CIDR network"),
                    )
                })?;
            let net = match net {
                ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                    Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                        .map(ipnet::IpNet::V4)
                        .unwrap_or(net),
                    None => net,
                },
                other => other,
            };
            // Trusting everyone would let every client name its own address.
            if net.prefix_len() == 0 {
                return Err(bad(
                    "TRUSTED_PROXIES",
                    format!("has {item:?}, which would trust every address"),
                ));
            }
            Ok(net.trunc())
        })
        .collect()
}

/// The access-token keys `JWT_ALGORITHM`, `JWT_PRIVATE_KEY_FILE` and `JWT_PREVIOUS_KEY_FILES`
/// name, read from their files.
fn jwt_keys(
    raw: &Raw,
    backend: &StoreConfig,
    secret: &SecretString,
) -> Result<(JwtKeys, Option<SecretOrigin>), ConfigError> {
    let algorithm = match raw.jwt_algorithm.as_deref().map(str::trim) {
        None | Some("") => JwtAlgorithm::Hs256,
        Some(name) => JwtAlgorithm::parse(name)
            .ok_or_else(|| bad("JWT_ALGORITHM", "must be HS256, EdDSA or RS256"))?,
    };
    let private_key_file = raw
        .jwt_private_key_file
        .as_ref()
        .filter(|path| !path.as_os_str().is_empty());
    let previous_key_files: Vec<&str> = raw
        .jwt_previous_key_files
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .collect();
    if algorithm == JwtAlgorithm::Hs256 {
        let unused = if private_key_file.is_some() {
            Some("JWT_PRIVATE_KEY_FILE")
        } else if !previous_key_files.is_empty() {
            Some("JWT_PREVIOUS_KEY_FILES")
        } else {
            None
        };
        if let Some(variable) = unused {
            return Err(bad(
                variable,
                "is only read with JWT_ALGORITHM=EdDSA or RS256 (HS256 signs with JWT_SECRET)",
            ));
        }
        return Ok((JwtKeys::Shared(secret.clone()), None));
    }
    let read = |variable: &'static str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| bad(variable, format!("{}: cannot be read: {e}", path.display())))
    };
    let (signing, origin) = match private_key_file {
        Some(path) => {
            let key = SigningKey::from_pem_for(&read("JWT_PRIVATE_KEY_FILE", path)?, algorithm)
                .map_err(|e| bad("JWT_PRIVATE_KEY_FILE", format!("{}: {e}", path.display())))?;
            (key, SecretOrigin::Configured)
        }
        None if raw.app_env == AppEnv::Production || *backend != StoreConfig::Memory => {
            return Err(bad(
                "JWT_PRIVATE_KEY_FILE",
                format!(
                    "must be set with JWT_ALGORITHM={algorithm} when APP_ENV=production or \
                     DB_URI points at MongoDB; create a key with \
                     `latchkey keygen --algorithm {algorithm} > key.pem`"
                ),
            ))
        }
        None => {
            let generated = SigningKey::generate_pem(algorithm)
                .and_then(|pem| SigningKey::from_pem(secrecy::ExposeSecret::expose_secret(&pem)))
                .map_err(|e| bad("JWT_ALGORITHM", format!("no key could be made: {e}")))?;
            (generated, SecretOrigin::GeneratedForThisProcess)
        }
    };
    let previous = previous_key_files
        .into_iter()
        .map(|path| {
            let path = std::path::Path::new(path);
            VerifyingKey::from_pem(&read("JWT_PREVIOUS_KEY_FILES", path)?)
                .map_err(|e| bad("JWT_PREVIOUS_KEY_FILES", format!("{}: {e}", path.display())))
        })
        .collect::<Result<_, _>>()?;
    Ok((JwtKeys::Published { signing, previous }, Some(origin)))
}

fn generated_secret() -> SecretString {
    use rand::RngCore;
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
// figment's `Jail` fixes the closure's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    const SECRET: &str = "a-test-secret-that-is-long-enough-0123";

    fn load(jail: &mut Jail, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        jail.clear_env();
        for (k, v) in vars {
            jail.set_env(k, v);
        }
        Config::from_env()
    }

    #[test]
    fn defaults_give_an_in_memory_server_on_localhost_with_a_generated_secret() {
        Jail::expect_with(|jail| {
            let config = load(jail, &[]).unwrap();
            assert_eq!(config.store.backend, StoreConfig::Memory);
            assert_eq!(config.listen.address.to_string(), "127.0.0.1:8080");
            assert_eq!(
                config.session,
                SessionPolicy {
                    access_token_ttl: chrono::Duration::hours(1),
                    refresh_token_ttl: chrono::Duration::days(14),
                    reuse_grace: chrono::Duration::seconds(10),
                    session_max_age: chrono::Duration::days(30),
                    max_sessions_per_user: 100,
                }
            );
            assert_eq!(config.argon2.memory_kib, 19_456);
            assert_eq!(config.argon2.queue_capacity, 128);
            assert_eq!(
                config.argon2.workers,
                std::thread::available_parallelism().unwrap().get()
            );
            assert_eq!(
                config.listen.serve.header_read_timeout,
                Duration::from_secs(10)
            );
            assert_eq!(config.listen.serve.shutdown_grace, Duration::from_secs(10));
            assert_eq!(config.http.body_read_timeout, Duration::from_secs(10));
            assert_eq!(config.http.max_body_bytes, 64 * 1024);
            assert_eq!(config.listen.serve.max_header_bytes, 32 * 1024);
            assert_eq!(config.listen.serve.edge.hsts_max_age_secs, None);
            assert_eq!(config.http.hsts_max_age_secs, None);
            assert_eq!(config.store.operation_timeout, Duration::from_secs(5));
            assert_eq!(
                config.jwt.secret_origin,
                SecretOrigin::GeneratedForThisProcess
            );
            assert!(config.jwt.secret.expose_secret().len() >= MIN_JWT_SECRET_BYTES);
            assert_eq!(config.jwt.codec.leeway_secs, 30);
            Ok(())
        });
    }

    #[test]
    fn every_documented_variable_is_read() {
        Jail::expect_with(|jail| {
            let config = load(
                jail,
                &[
                    ("HOST", "0.0.0.0"),
                    ("PORT", "9000"),
                    ("DB_URI", "mongodb://db:27017/app"),
                    ("DB_NAME", "other"),
                    ("JWT_SECRET", SECRET),
                    ("JWT_EXPIRY", "60"),
                    ("REFRESH_TOKEN_EXPIRY", "120"),
                    ("REFRESH_REUSE_GRACE", "3"),
                    ("JWT_ISSUER", "iss"),
                    ("JWT_AUDIENCE", "aud"),
                    ("ARGON2_MEMORY_KIB", "1024"),
                    ("ARGON2_ITERATIONS", "3"),
                    ("ARGON2_PARALLELISM", "2"),
                    ("HASH_WORKERS", "5"),
                    ("HASH_QUEUE", "7"),
                    ("SESSION_MAX_AGE", "600"),
                    ("MAX_SESSIONS_PER_USER", "7"),
                    ("JWT_LEEWAY", "4"),
                    ("STORE_TIMEOUT", "2"),
                    ("HEADER_READ_TIMEOUT", "3"),
                    ("IDLE_TIMEOUT", "30"),
                    ("HSTS_MAX_AGE", "31536000"),
                    (
                        "CORS_ORIGINS",
                        "https://app.example.com, http://localhost:3000",
                    ),
                    ("CORS_MAX_AGE", "60"),
                    ("MAX_BODY_BYTES", "2048"),
                    ("MAX_HEADER_BYTES", "16384"),
                    ("SITE_DIR", "/srv/site"),
                    ("APP_ENV", "production"),
                    ("SMTP_URL", "smtps://mailer:pw@smtp.example.com:465"),
                    ("SMTP_USERNAME", "mailer"),
                    ("SMTP_PASSWORD", "smtp-secret"),
                    ("MAIL_FROM", "Example <login@example.com>"),
                    ("PUBLIC_URL", "https://login.example.com/"),
                    ("EMAIL_TOKEN_EXPIRY", "7200"),
                    ("RESET_TOKEN_EXPIRY", "600"),
                    ("REQUIRE_VERIFIED_EMAIL", "true"),
                    ("MAIL_BURST", "7"),
                    ("MAIL_REFILL", "30"),
                    ("MAIL_RECIPIENT_BURST", "2"),
                    ("MAIL_RECIPIENT_REFILL", "900"),
                    ("LOG_FORMAT", "text"),
                    ("METRICS_ADDR", "0.0.0.0:9100"),
                    ("SHUTDOWN_GRACE", "25"),
                    ("SHUTDOWN_DELAY", "5"),
                ],
            )
            .unwrap();
            assert_eq!(config.listen.address.to_string(), "0.0.0.0:9000");
            assert_eq!(config.log_format, LogFormat::Text);
            assert_eq!(
                config.metrics,
                MetricsSettings::OwnListener("0.0.0.0:9100".parse().unwrap())
            );
            assert_eq!(config.listen.serve.shutdown_grace, Duration::from_secs(25));
            assert_eq!(config.listen.serve.shutdown_delay, Duration::from_secs(5));
            assert_eq!(
                config.store.backend,
                StoreConfig::Mongo {
                    uri: "mongodb://db:27017/app".into(),
                    database: Some("other".into())
                }
            );
            assert_eq!(config.jwt.secret.expose_secret(), SECRET);
            assert_eq!(
                config.session,
                SessionPolicy {
                    access_token_ttl: chrono::Duration::seconds(60),
                    refresh_token_ttl: chrono::Duration::seconds(120),
                    reuse_grace: chrono::Duration::seconds(3),
                    session_max_age: chrono::Duration::seconds(600),
                    max_sessions_per_user: 7,
                }
            );
            assert_eq!(
                (
                    config.jwt.codec.issuer.as_str(),
                    config.jwt.codec.audience.as_str()
                ),
                ("iss", "aud")
            );
            assert_eq!(
                config.argon2,
                Argon2Settings {
                    memory_kib: 1024,
                    iterations: 3,
                    parallelism: 2,
                    workers: 5,
                    queue_capacity: 7,
                }
            );
            assert_eq!(config.jwt.codec.leeway_secs, 4);
            assert_eq!(config.store.operation_timeout, Duration::from_secs(2));
            assert_eq!(
                config.listen.serve.header_read_timeout,
                Duration::from_secs(3)
            );
            assert_eq!(config.listen.serve.idle_timeout, Duration::from_secs(30));
            assert_eq!(config.http.hsts_max_age_secs, Some(31_536_000));
            assert_eq!(
                config.http.cors.origins,
                AllowedOrigins::Only(vec![
                    "https://app.example.com".into(),
                    "http://localhost:3000".into()
                ])
            );
            assert_eq!(config.http.cors.max_age_secs, 60);
            assert_eq!(config.http.max_body_bytes, 2048);
            assert_eq!(config.listen.serve.max_header_bytes, 16384);
            assert_eq!(config.listen.serve.edge.hsts_max_age_secs, Some(31_536_000));
            assert_eq!(config.site.dir, PathBuf::from("/srv/site"));
            assert_eq!(config.app_env, AppEnv::Production);
            let smtp = config.mail.smtp.as_ref().unwrap();
            assert_eq!(
                smtp.url.expose_secret(),
                "smtps://mailer:pw@smtp.example.com:465"
            );
            assert_eq!(smtp.username.as_deref(), Some("mailer"));
            assert_eq!(
                smtp.password.as_ref().map(|p| p.expose_secret().to_owned()),
                Some("smtp-secret".into())
            );
            assert_eq!(config.mail.from, "Example <login@example.com>");
            assert_eq!(config.mail.public_url, "https://login.example.com");
            assert_eq!(
                config.mail.policy,
                MailPolicy {
                    verify_link_ttl: chrono::Duration::hours(2),
                    reset_link_ttl: chrono::Duration::minutes(10),
                    require_verified_email: true,
                }
            );
            let budget = |burst, secs| {
                Some(Budget {
                    burst: std::num::NonZeroU32::new(burst).unwrap(),
                    replenish_every: Duration::from_secs(secs),
                })
            };
            assert_eq!(config.abuse.mail, budget(7, 30));
            assert_eq!(config.abuse.mail_per_recipient, budget(2, 900));
            Ok(())
        });
    }

    #[test]
    fn mail_defaults_to_the_log_with_links_to_this_server_in_development() {
        Jail::expect_with(|jail| {
            let config = load(jail, &[("PORT", "9100")]).unwrap();
            assert!(config.mail.smtp.is_none());
            assert_eq!(config.mail.public_url, "http://127.0.0.1:9100");
            assert_eq!(config.mail.from, "latchkey <no-reply@localhost>");
            assert_eq!(
                config.mail.policy.verify_link_ttl,
                chrono::Duration::hours(24)
            );
            assert_eq!(
                config.mail.policy.reset_link_ttl,
                chrono::Duration::minutes(30)
            );
            assert!(!config.mail.policy.require_verified_email);
            Ok(())
        });
    }

    #[test]
    fn production_needs_smtp_and_a_public_url_and_bad_mail_settings_are_refused() {
        Jail::expect_with(|jail| {
            let production = [
                ("APP_ENV", "production"),
                ("DB_URI", "mongodb://db"),
                ("JWT_SECRET", SECRET),
                ("METRICS", "off"),
            ];
            let err = load(jail, &production).err().unwrap();
            assert!(err.to_string().starts_with("SMTP_URL must be set"), "{err}");
            let mut vars = production.to_vec();
            vars.push(("SMTP_URL", "smtps://smtp.example.com"));
            let err = load(jail, &vars).err().unwrap();
            assert!(
                err.to_string().starts_with("PUBLIC_URL must be set"),
                "{err}"
            );
            vars.push(("PUBLIC_URL", "http://login.example.com"));
            let err = load(jail, &vars).err().unwrap();
            assert!(err.to_string().contains("https://"), "{err}");
            for (variable, value) in [
                ("SMTP_URL", "http://smtp.example.com"),
                ("PUBLIC_URL", "login.example.com"),
                ("EMAIL_TOKEN_EXPIRY", "10"),
                ("RESET_TOKEN_EXPIRY", "999999999"),
                ("MAIL_BURST", "1000000"),
            ] {
                let err = load(jail, &[(variable, value)]).err().unwrap();
                assert!(err.to_string().starts_with(variable), "{err}");
            }
            Ok(())
        });
    }

    /// What production cannot start without.
    const MINIMAL_PRODUCTION: [(&str, &str); 6] = [
        ("APP_ENV", "production"),
        ("DB_URI", "mongodb://db"),
        ("JWT_SECRET", SECRET),
        ("SMTP_URL", "smtps://smtp.example.com"),
        ("PUBLIC_URL", "https://login.example.com"),
        ("METRICS", "off"),
    ];

    #[test]
    fn cors_origins_are_kept_as_browsers_write_them_and_every_origin_is_for_development_only() {
        Jail::expect_with(|jail| {
            let config = load(jail, &[]).unwrap();
            assert_eq!(config.http.cors, CorsSettings::default());
            assert_eq!(config.http.cors.max_age_secs, 600);
            let config = load(
                jail,
                &[
                    (
                        "CORS_ORIGINS",
                        "HTTPS://App.Example.com/ http://localhost:3000,https://b.example:443 \
                         http://[0:0::1]:8080 http://127.0.0.1:80 https://bücher.example \
                         http://127.1:3000",
                    ),
                    ("CORS_MAX_AGE", "7200"),
                ],
            )
            .unwrap();
            assert_eq!(
                config.http.cors.origins,
                AllowedOrigins::Only(
                    [
                        "https://app.example.com",
                        "http://localhost:3000",
                        "https://b.example",
                        "http://[::1]:8080",
                        "http://127.0.0.1",
                        "https://xn--bcher-kva.example",
                        "http://127.0.0.1:3000",
                    ]
                    .map(String::from)
                    .to_vec()
                )
            );
            assert_eq!(config.http.cors.max_age_secs, 7200);
            let config = load(jail, &[("CORS_ORIGINS", "*")]).unwrap();
            assert_eq!(config.http.cors.origins, AllowedOrigins::Any);
            for refused in [
                "null",
                "app.example.com",
                "ftp://app.example.com",
                "https://app.example.com/path",
                "https://app.example.com?x=1",
                "https://user@app.example.com",
                "https://*.example.com",
                "https://app.example.com:0",
                "https://app.example.com:99999",
                "https://",
                "http://[::1",
                "* https://app.example.com",
            ] {
                let err = load(jail, &[("CORS_ORIGINS", refused)]).err().unwrap();
                assert!(err.to_string().contains("CORS_ORIGINS"), "{refused}: {err}");
            }
            let err = load(jail, &[("CORS_MAX_AGE", "86401")]).err().unwrap();
            assert!(err.to_string().contains("CORS_MAX_AGE"), "{err}");
            let mut production = MINIMAL_PRODUCTION.to_vec();
            production.push(("CORS_ORIGINS", "*"));
            let err = load(jail, &production).err().unwrap();
            assert!(err.to_string().contains("development only"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn hsts_is_on_for_a_year_in_production_unless_turned_off_and_opt_in_in_development() {
        Jail::expect_with(|jail| {
            let production = MINIMAL_PRODUCTION;
            let config = load(jail, &production).unwrap();
            assert_eq!(config.http.hsts_max_age_secs, Some(31_536_000));
            assert_eq!(config.listen.serve.edge.hsts_max_age_secs, Some(31_536_000));
            let mut off = production.to_vec();
            off.push(("HSTS_MAX_AGE", "0"));
            let config = load(jail, &off).unwrap();
            assert_eq!(config.http.hsts_max_age_secs, None);
            assert_eq!(config.listen.serve.edge.hsts_max_age_secs, None);
            let mut shorter = production.to_vec();
            shorter.push(("HSTS_MAX_AGE", "600"));
            let config = load(jail, &shorter).unwrap();
            assert_eq!(config.http.hsts_max_age_secs, Some(600));
            let config = load(jail, &[]).unwrap();
            assert_eq!(config.http.hsts_max_age_secs, None, "opt-in in development");
            let config = load(jail, &[("HSTS_MAX_AGE", "0")]).unwrap();
            assert_eq!(config.http.hsts_max_age_secs, None);
            let config = load(jail, &[("HSTS_MAX_AGE", "86400")]).unwrap();
            assert_eq!(config.listen.serve.edge.hsts_max_age_secs, Some(86_400));
            Ok(())
        });
    }

    #[test]
    fn metrics_go_on_the_api_port_only_in_development() {
        Jail::expect_with(|jail| {
            let config = load(jail, &[]).unwrap();
            assert_eq!(config.metrics, MetricsSettings::OnMainListener);
            assert_eq!(config.log_format, LogFormat::Text);
            let off = load(
                jail,
                &[("METRICS", "off"), ("METRICS_ADDR", "0.0.0.0:9100")],
            );
            assert_eq!(off.unwrap().metrics, MetricsSettings::Off);
            let production = [
                ("APP_ENV", "production"),
                ("DB_URI", "mongodb://db"),
                ("JWT_SECRET", SECRET),
                ("SMTP_URL", "smtps://smtp.example.com"),
                ("PUBLIC_URL", "https://login.example.com"),
            ];
            let err = load(jail, &production).err().unwrap();
            assert!(
                err.to_string().starts_with("METRICS_ADDR must be set"),
                "{err}"
            );
            let mut vars = production.to_vec();
            vars.push(("METRICS_ADDR", "0.0.0.0:9100"));
            let config = load(jail, &vars).unwrap();
            assert_eq!(
                config.log_format,
                LogFormat::Json,
                "JSON logs in production"
            );
            for (variable, value) in [
                ("METRICS_ADDR", "localhost"),
                ("METRICS_ADDR", "127.0.0.1:8080"),
                ("METRICS", "maybe"),
                ("LOG_FORMAT", "xml"),
                ("SHUTDOWN_GRACE", "3601"),
                ("SHUTDOWN_DELAY", "301"),
            ] {
                let err = load(jail, &[(variable, value)]).err().unwrap();
                assert!(err.to_string().contains(variable), "{variable}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn debug_output_hides_smtp_credentials() {
        Jail::expect_with(|jail| {
            let config = load(
                jail,
                &[
                    ("SMTP_URL", "smtp://user:url-secret@localhost:25"),
                    ("SMTP_PASSWORD", "password-secret"),
                ],
            )
            .unwrap();
            let printed = format!("{config:?}");
            assert!(!printed.contains("url-secret") && !printed.contains("password-secret"));
            Ok(())
        });
    }

    #[test]
    fn a_short_jwt_secret_is_refused_with_a_message_naming_it() {
        Jail::expect_with(|jail| {
            let err = load(jail, &[("JWT_SECRET", "too-short")]).err().unwrap();
            let message = err.to_string();
            assert!(
                message.starts_with("JWT_SECRET must be at least 32 bytes"),
                "{message}"
            );
            assert!(
                !message.contains("too-short"),
                "the secret must not be echoed"
            );
            Ok(())
        });
    }

    #[test]
    fn a_header_limit_outside_8_kib_to_1_mib_is_refused() {
        Jail::expect_with(|jail| {
            for value in ["8191", "1048577", "0"] {
                let err = load(jail, &[("MAX_HEADER_BYTES", value)]).err().unwrap();
                assert!(
                    err.to_string()
                        .starts_with("MAX_HEADER_BYTES must be between 8192 and 1048576"),
                    "{value}: {err}"
                );
            }
            for value in ["8192", "1048576"] {
                let config = load(jail, &[("MAX_HEADER_BYTES", value)]).unwrap();
                assert_eq!(config.listen.serve.max_header_bytes.to_string(), value);
            }
            Ok(())
        });
    }

    #[test]
    fn an_account_must_be_allowed_at_least_one_session() {
        Jail::expect_with(|jail| {
            let err = load(jail, &[("MAX_SESSIONS_PER_USER", "0")]).err().unwrap();
            assert_eq!(err.to_string(), "MAX_SESSIONS_PER_USER must be at least 1");
            let config = load(jail, &[("MAX_SESSIONS_PER_USER", "1")]).unwrap();
            assert_eq!(config.session.max_sessions_per_user, 1);
            Ok(())
        });
    }

    #[test]
    fn a_non_numeric_expiry_is_refused_naming_the_variable() {
        Jail::expect_with(|jail| {
            let err = load(jail, &[("JWT_EXPIRY", "one hour")]).err().unwrap();
            assert!(err.to_string().contains("JWT_EXPIRY"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn production_without_a_jwt_secret_is_refused() {
        Jail::expect_with(|jail| {
            let production = [("APP_ENV", "production"), ("DB_URI", "mongodb://db")];
            let err = load(jail, &production).err().unwrap();
            assert_eq!(
                err.to_string(),
                "JWT_SECRET must be set when APP_ENV=production"
            );
            Ok(())
        });
    }

    #[test]
    fn production_refuses_the_in_memory_store() {
        Jail::expect_with(|jail| {
            for db_uri in [None, Some("memory"), Some("")] {
                let mut vars = vec![("APP_ENV", "production"), ("JWT_SECRET", SECRET)];
                vars.extend(db_uri.map(|uri| ("DB_URI", uri)));
                let err = load(jail, &vars).err().unwrap();
                assert!(
                    err.to_string().starts_with("DB_URI must point at MongoDB"),
                    "{err}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn mongodb_without_a_jwt_secret_is_refused() {
        Jail::expect_with(|jail| {
            let err = load(jail, &[("DB_URI", "mongodb://localhost")])
                .err()
                .unwrap();
            assert!(err.to_string().starts_with("JWT_SECRET must be set"));
            Ok(())
        });
    }

    #[test]
    fn an_unknown_store_scheme_is_refused() {
        Jail::expect_with(|jail| {
            let err = load(jail, &[("DB_URI", "postgres://x")]).err().unwrap();
            assert!(err.to_string().starts_with("DB_URI must be"));
            Ok(())
        });
    }

    #[test]
    fn db_uri_memory_or_empty_selects_the_in_memory_store() {
        Jail::expect_with(|jail| {
            for value in ["memory", "", "  "] {
                assert_eq!(
                    load(jail, &[("DB_URI", value)]).unwrap().store.backend,
                    StoreConfig::Memory
                );
            }
            Ok(())
        });
    }

    #[test]
    fn zero_expiry_and_an_access_token_outliving_the_refresh_token_are_refused() {
        Jail::expect_with(|jail| {
            let err = load(jail, &[("JWT_EXPIRY", "0")]).err().unwrap();
            assert_eq!(
                err.to_string(),
                "JWT_EXPIRY must be a positive number of seconds"
            );
            let err = load(
                jail,
                &[("JWT_EXPIRY", "100"), ("REFRESH_TOKEN_EXPIRY", "50")],
            )
            .err()
            .unwrap();
            assert!(err.to_string().contains("REFRESH_TOKEN_EXPIRY"));
            Ok(())
        });
    }

    #[test]
    fn lifetimes_beyond_ten_years_and_timeouts_beyond_a_day_are_refused() {
        Jail::expect_with(|jail| {
            let eleven_years = (11 * 365 * 24 * 3600).to_string();
            for variable in ["REFRESH_TOKEN_EXPIRY", "SESSION_MAX_AGE"] {
                let err = load(jail, &[(variable, &eleven_years)]).err().unwrap();
                assert!(err.to_string().starts_with(variable), "{err}");
            }
            for variable in ["STORE_TIMEOUT", "HEADER_READ_TIMEOUT", "IDLE_TIMEOUT"] {
                let err = load(jail, &[(variable, "86401")]).err().unwrap();
                assert_eq!(
                    err.to_string(),
                    format!("{variable} must be at most one day (86400 seconds)")
                );
                assert!(load(jail, &[(variable, "86400")]).is_ok());
            }
            Ok(())
        });
    }

    #[test]
    fn debug_output_hides_the_secret_and_database_credentials() {
        Jail::expect_with(|jail| {
            let config = load(
                jail,
                &[
                    ("JWT_SECRET", SECRET),
                    ("DB_URI", "mongodb://admin:pa55word@db/x"),
                ],
            )
            .unwrap();
            let printed = format!("{config:?}");
            assert!(!printed.contains(SECRET));
            assert!(!printed.contains("pa55word"));
            assert!(!format!("{:?}", config.store.backend).contains("pa55word"));
            Ok(())
        });
    }

    #[test]
    fn abuse_defence_defaults_and_budgets_come_from_the_environment() {
        Jail::expect_with(|jail| {
            let config = load(jail, &[]).unwrap();
            let abuse = config.abuse;
            assert_eq!(abuse.login_from_network.free_failures, 5);
            assert_eq!(abuse.login_account.free_failures, 50);
            assert_eq!(abuse.login_account.max_delay, chrono::Duration::minutes(15));
            assert_eq!(
                abuse.register.map(|b| (b.burst.get(), b.replenish_every)),
                Some((10, Duration::from_secs(60)))
            );
            assert_eq!(config.passwords.min_chars, 8);
            assert!(config.http.trusted_proxies.is_empty());

            let tuned = load(
                jail,
                &[
                    ("LOGIN_BURST", "0"),
                    ("REFRESH_REFILL", "0.5"),
                    ("PASSWORD_MIN_LENGTH", "12"),
                    (
                        "TRUSTED_PROXIES",
                        "10.0.0.0/8, 192.168.1.5 ::ffff:172.16.0.0/108",
                    ),
                ],
            )
            .unwrap();
            assert_eq!(tuned.abuse.login, None);
            assert_eq!(
                tuned.abuse.refresh.unwrap().replenish_every,
                Duration::from_millis(500)
            );
            assert_eq!(tuned.passwords.min_chars, 12);
            let proxies: Vec<String> = tuned
                .http
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.5/32", "172.16.0.0/12"]);
            Ok(())
        });
    }

    #[test]
    fn unsafe_abuse_settings_are_refused_naming_the_variable() {
        Jail::expect_with(|jail| {
            for (variable, value) in [
                ("PASSWORD_MIN_LENGTH", "7"),
                ("TRUSTED_PROXIES", "0.0.0.0/0"),
                ("TRUSTED_PROXIES", "::/0"),
                ("TRUSTED_PROXIES", "10.0.0.300"),
                ("FORWARDED_HEADER", "x-real-ip"),
                ("LOGIN_FREE_FAILURES", "0"),
                ("LOGIN_FREE_FAILURES", "101"),
                ("LOGIN_ACCOUNT_FREE_FAILURES", "5"),
                ("REGISTER_BURST", "100001"),
                ("REFRESH_REFILL", "86400"),
                ("LOGIN_REFILL", "0"),
                ("LOGIN_BACKOFF_BASE", "1000"),
                ("LOGIN_FAILURE_MEMORY", "60"),
                ("SERVICE_NAME", "ab"),
            ] {
                let err = load(jail, &[(variable, value)])
                    .err()
                    .unwrap_or_else(|| panic!("{variable}={value} was accepted"));
                assert!(err.to_string().starts_with(variable), "{variable}: {err}");
            }
            Ok(())
        });
    }

    fn key_pem(algorithm: JwtAlgorithm) -> String {
        secrecy::ExposeSecret::expose_secret(&SigningKey::generate_pem(algorithm).unwrap())
            .to_owned()
    }

    fn published(config: &Config) -> (&SigningKey, &[VerifyingKey]) {
        match &config.jwt.codec.keys {
            JwtKeys::Published { signing, previous } => (signing, previous),
            JwtKeys::Shared(_) => panic!("HS256 where a key pair was configured"),
        }
    }

    #[test]
    fn a_key_pair_and_previous_keys_are_read_from_their_files() {
        Jail::expect_with(|jail| {
            let current = key_pem(JwtAlgorithm::EdDsa);
            let previous = key_pem(JwtAlgorithm::Rs256);
            jail.create_file("current.pem", &current)?;
            jail.create_file("previous.pem", &previous)?;
            let config = load(
                jail,
                &[
                    ("JWT_ALGORITHM", "EdDSA"),
                    ("JWT_PRIVATE_KEY_FILE", "current.pem"),
                    ("JWT_PREVIOUS_KEY_FILES", " previous.pem, ,"),
                ],
            )
            .unwrap();
            let (signing, older) = published(&config);
            let kid = |pem: &str| VerifyingKey::from_pem(pem).unwrap().kid().to_owned();
            assert_eq!(signing.verifying_key().kid(), kid(&current));
            assert_eq!(older.len(), 1);
            assert_eq!(older[0].kid(), kid(&previous));
            assert_eq!(older[0].algorithm(), JwtAlgorithm::Rs256);
            assert_eq!(config.jwt.key_origin, Some(SecretOrigin::Configured));
            // The server's own secret is there still, for what only servers derive from it.
            assert!(config.jwt.secret.expose_secret().len() >= MIN_JWT_SECRET_BYTES);
            Ok(())
        });
    }

    #[test]
    fn without_a_key_file_development_signs_with_a_key_of_its_own_and_production_refuses() {
        Jail::expect_with(|jail| {
            let config = load(jail, &[("JWT_ALGORITHM", "rs256")]).unwrap();
            let (signing, older) = published(&config);
            assert_eq!(signing.verifying_key().algorithm(), JwtAlgorithm::Rs256);
            assert!(older.is_empty());
            assert_eq!(
                config.jwt.key_origin,
                Some(SecretOrigin::GeneratedForThisProcess)
            );
            for vars in [
                vec![
                    ("JWT_ALGORITHM", "EdDSA"),
                    ("APP_ENV", "production"),
                    ("DB_URI", "mongodb://db"),
                    ("JWT_SECRET", SECRET),
                ],
                vec![
                    ("JWT_ALGORITHM", "EdDSA"),
                    ("DB_URI", "mongodb://db"),
                    ("JWT_SECRET", SECRET),
                ],
            ] {
                let err = load(jail, &vars).err().unwrap().to_string();
                assert!(err.starts_with("JWT_PRIVATE_KEY_FILE must be set"), "{err}");
                assert!(err.contains("latchkey keygen --algorithm EdDSA"), "{err}");
            }
            assert_eq!(load(jail, &[]).unwrap().jwt.key_origin, None);
            Ok(())
        });
    }

    #[test]
    fn bad_key_settings_are_refused_naming_the_variable_and_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file("ed.pem", &key_pem(JwtAlgorithm::EdDsa))?;
            jail.create_file("notes.txt", "not a key")?;
            let cases: [(&[(&str, &str)], &str); 6] = [
                (
                    &[("JWT_ALGORITHM", "ES256")],
                    "JWT_ALGORITHM must be HS256, EdDSA or RS256",
                ),
                (
                    &[("JWT_ALGORITHM", "none")],
                    "JWT_ALGORITHM must be HS256, EdDSA or RS256",
                ),
                (
                    &[("JWT_PRIVATE_KEY_FILE", "ed.pem")],
                    "JWT_PRIVATE_KEY_FILE is only read with JWT_ALGORITHM=EdDSA or RS256",
                ),
                (
                    &[
                        ("JWT_ALGORITHM", "RS256"),
                        ("JWT_PRIVATE_KEY_FILE", "ed.pem"),
                    ],
                    "JWT_PRIVATE_KEY_FILE ed.pem: holds an EdDSA key, but JWT_ALGORITHM is RS256",
                ),
                (
                    &[
                        ("JWT_ALGORITHM", "EdDSA"),
                        ("JWT_PRIVATE_KEY_FILE", "missing.pem"),
                    ],
                    "JWT_PRIVATE_KEY_FILE missing.pem: cannot be read",
                ),
                (
                    &[
                        ("JWT_ALGORITHM", "EdDSA"),
                        ("JWT_PREVIOUS_KEY_FILES", "ed.pem,notes.txt"),
                    ],
                    "JWT_PREVIOUS_KEY_FILES notes.txt: is not a PEM file",
                ),
            ];
            for (vars, expected) in cases {
                let err = load(jail, vars).err().unwrap().to_string();
                assert!(err.starts_with(expected), "{vars:?}: {err}");
                assert!(!err.contains("PRIVATE KEY-----"), "a key is echoed: {err}");
            }
            Ok(())
        });
    }
}
