use crate::config::{Config, MetricsSettings, SecretOrigin, StoreConfig};
use anyhow::Context;
use latchkey_application::{AuthService, Policies, Ports};
use latchkey_crypto::{
    Argon2Hasher, HmacSuccessors, JwtCodec, OsRandom, SecListsCommonPasswords, SystemClock,
};
use latchkey_domain::{
    ports::{
        MailTokenRepository, Outbox, RefreshTokenRepository, SessionRepository, ThrottleStore,
        UserRepository,
    },
    KeyPepper, PasswordPolicy,
};
use latchkey_http::{Mounts, Readiness, ReadinessState, SiteSettings};
use latchkey_mail::{LogOutbox, MailSettings, SmtpOutbox, SmtpSettings};
use latchkey_memory::{
    InMemoryMailTokens, InMemoryRefreshTokens, InMemorySessions, InMemoryThrottle, InMemoryUsers,
};
use latchkey_mongo::MongoStore;
use latchkey_telemetry::AuditLog;
use poem::{endpoint::BoxEndpoint, EndpointExt, Response};
use secrecy::ExposeSecret;
use std::{sync::Arc, time::Duration};

/// A fully wired server, ready to be served or called in tests.
pub struct App {
    pub endpoint: BoxEndpoint<'static, Response>,
    pub service: AuthService,
    /// What the readiness probe answers; `drain` it when shutting down.
    pub readiness: Readiness,
    /// The Prometheus endpoint, when `METRICS_ADDR` asks for a listener of its own.
    pub metrics: Option<BoxEndpoint<'static, Response>>,
}

/// How often the store is checked for the readiness probe. With [`READINESS_CHECK_TIMEOUT`],
/// a store that dies or stops answering turns readiness 503 within 1.5 s.
const READINESS_CHECK_EVERY: Duration = Duration::from_millis(500);
/// A background check whose ping takes longer than this counts as a store that does not
/// answer: a ping is answered in milliseconds, and a store that has gone away (or hangs)
/// would otherwise hold the check for `STORE_TIMEOUT`, or until the driver gives up on
/// finding a server.
const READINESS_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The repositories of one store.
#[derive(Clone)]
pub struct Stores {
    pub users: Arc<dyn UserRepository>,
    pub refresh_tokens: Arc<dyn RefreshTokenRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub throttle: Arc<dyn ThrottleStore>,
    pub mail_tokens: Arc<dyn MailTokenRepository>,
}

impl Stores {
    pub fn in_memory() -> Self {
        Self {
            users: Arc::new(InMemoryUsers::default()),
            refresh_tokens: Arc::new(InMemoryRefreshTokens::default()),
            sessions: Arc::new(InMemorySessions::default()),
            throttle: Arc::new(InMemoryThrottle::default()),
            mail_tokens: Arc::new(InMemoryMailTokens::default()),
        }
    }

    pub fn mongo(store: &MongoStore) -> Self {
        Self {
            users: Arc::new(store.users()),
            refresh_tokens: Arc::new(store.refresh_tokens()),
            sessions: Arc::new(store.sessions()),
            throttle: Arc::new(store.throttle()),
            mail_tokens: Arc::new(store.mail_tokens()),
        }
    }
}

/// Chooses the adapters the configuration asks for and builds the HTTP endpoint, with the web
/// site at `/` when it has been built.
pub async fn build(config: &Config) -> anyhow::Result<App> {
    let stores = open_store(config).await?;
    assemble(config, stores).await
}

async fn open_store(config: &Config) -> anyhow::Result<Stores> {
    let stores = match &config.store.backend {
        StoreConfig::Memory => {
            tracing::warn!(
                "DB_URI is not set: using the in-memory store. NOTHING PERSISTS; every \
                     user and session is lost when the server stops"
            );
            Stores::in_memory()
        }
        StoreConfig::Mongo { uri, database } => {
            let store =
                MongoStore::connect(uri, database.as_deref(), config.store.operation_timeout)
                    .await?;
            store
                .ensure_indexes()
                .await
                .context("MongoDB is not reachable at DB_URI")?;
            tracing::info!(database = store.database().name(), "using MongoDB");
            Stores::mongo(&store)
        }
    };
    Ok(stores)
}

/// Wires everything but the store around the given repositories. `build` uses it after
/// opening the configured store; tests use it to put the server on a store of their choosing.
pub async fn assemble(config: &Config, stores: Stores) -> anyhow::Result<App> {
    if config.jwt.secret_origin == SecretOrigin::GeneratedForThisProcess {
        tracing::warn!(
            "JWT_SECRET is not set: signing with a random secret generated for this process; \
             tokens stop working when it restarts"
        );
    }
    if config.http.cors.origins == latchkey_http::AllowedOrigins::Any {
        tracing::warn!(
            "CORS_ORIGINS=*: pages of every origin may call the API (development only; list \
             your apps' origins in production)"
        );
    }
    if config.jwt.key_origin == Some(SecretOrigin::GeneratedForThisProcess) {
        tracing::warn!(
            "JWT_PRIVATE_KEY_FILE is not set: signing access tokens with a key generated for \
             this process; they stop working when it restarts"
        );
    }
    let hasher = Arc::new(
        tokio::task::spawn_blocking({
            let settings = config.argon2;
            move || Argon2Hasher::new(settings)
        })
        .await??,
    );
    let secret = config.jwt.secret.expose_secret().as_bytes();
    let successors = HmacSuccessors::new(&HmacSuccessors::derive_key(
        secret,
        "latchkey refresh-token successor v1",
    ));
    // The same on every instance sharing `JWT_SECRET`, and of no use for anything else.
    let key_pepper = KeyPepper::new(HmacSuccessors::derive_key(
        secret,
        "latchkey throttle keys v1",
    ));
    let access_tokens = Arc::new(JwtCodec::new(config.jwt.codec.clone()));
    let service = AuthService::new(
        Ports {
            users: stores.users,
            refresh_tokens: stores.refresh_tokens,
            sessions: stores.sessions,
            hasher: hasher.clone(),
            access_tokens: access_tokens.clone(),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            successors: Arc::new(successors),
            throttle: stores.throttle,
            mail_tokens: stores.mail_tokens,
            outbox: outbox(config)?,
            events: Arc::new(AuditLog),
        },
        Policies {
            session: config.session,
            abuse: config.abuse,
            passwords: PasswordPolicy {
                min_chars: config.passwords.min_chars,
                service_name: config.passwords.service_name.clone(),
                common: Arc::new(SecListsCommonPasswords::default()),
            },
            key_pepper,
            mail: config.mail.policy,
            admin_emails: config.admin_emails.clone(),
        },
    );
    let granted = service
        .grant_configured_admins()
        .await
        .context("ADMIN_EMAILS could not be applied: the data store does not answer")?;
    if granted > 0 {
        tracing::info!(
            accounts = granted,
            "ADMIN_EMAILS: accounts made (enabled) administrators"
        );
    }
    let readiness = Readiness::new();
    // The first check may have to dial the store: it gets the store's own timeout (a little
    // past it, so a call that timed out there is counted as a store error before this gives up).
    check_store(
        &service,
        &readiness,
        config.store.operation_timeout + Duration::from_millis(250),
    )
    .await;
    tokio::spawn(keep_checking_store(service.clone(), readiness.clone()));
    let metrics = match config.metrics {
        MetricsSettings::Off => None,
        MetricsSettings::OnMainListener | MetricsSettings::OwnListener(_) => {
            crate::metrics::endpoint(hasher, readiness.clone())
        }
    };
    let (on_main, own) = match config.metrics {
        MetricsSettings::OwnListener(_) => (None, metrics),
        _ => (metrics, None),
    };
    let endpoint = latchkey_http::routes(
        service.clone(),
        readiness.clone(),
        config.http.clone(),
        Mounts {
            site: site(&config.site),
            metrics: on_main,
            key_set: Some(access_tokens.key_set().to_string()),
        },
    );
    Ok(App {
        endpoint: endpoint.boxed(),
        service,
        readiness,
        metrics: own,
    })
}

/// One store check for the readiness probe; a check slower than `limit` failed.
async fn check_store(service: &AuthService, readiness: &Readiness, limit: Duration) -> bool {
    let answered = matches!(
        tokio::time::timeout(limit, service.check_ready()).await,
        Ok(Ok(()))
    );
    readiness.store_checked(answered);
    answered
}

/// Checks the store twice a second while the server runs, saying when readiness changes.
async fn keep_checking_store(service: AuthService, readiness: Readiness) {
    let mut answered = readiness.state() == ReadinessState::Ready;
    loop {
        tokio::time::sleep(READINESS_CHECK_EVERY).await;
        if !readiness.is_shared() {
            return;
        }
        let now = check_store(&service, &readiness, READINESS_CHECK_TIMEOUT).await;
        match (answered, now) {
            (true, false) => tracing::warn!("the data store does not answer: not ready (503)"),
            (false, true) => tracing::info!("the data store answers again: ready"),
            _ => {}
        }
        answered = now;
    }
}

/// SMTP when `SMTP_URL` is set, the log otherwise (development only: production refuses to
/// start without it).
fn outbox(config: &Config) -> anyhow::Result<Arc<dyn Outbox>> {
    let to_std = |d: chrono::Duration| d.to_std().unwrap_or_default();
    let settings = MailSettings {
        service_name: config.passwords.service_name.clone(),
        public_url: config.mail.public_url.clone(),
        verify_link_lifetime: to_std(config.mail.policy.verify_link_ttl),
        reset_link_lifetime: to_std(config.mail.policy.reset_link_ttl),
    };
    Ok(match &config.mail.smtp {
        Some(smtp) => {
            let url = smtp.url.expose_secret();
            if url.starts_with("smtp://") && !url.contains("tls=required") {
                tracing::warn!(
                    "SMTP_URL is unencrypted: mails with sign-in links cross the network in \
                     clear; use smtps:// or ?tls=required unless the relay is on this host"
                );
            }
            let outbox = SmtpOutbox::start(
                SmtpSettings {
                    url: smtp.url.clone(),
                    username: smtp.username.clone(),
                    password: smtp.password.clone(),
                    from: config.mail.from.clone(),
                    attempts: 4,
                    first_retry_after: std::time::Duration::from_secs(2),
                    timeout: std::time::Duration::from_secs(10),
                },
                settings,
            )?;
            tracing::info!(public_url = %config.mail.public_url, "mails go out over SMTP");
            Arc::new(outbox)
        }
        None => Arc::new(LogOutbox::new(settings)),
    })
}

/// The static export of the Perseus site, loaded into memory and compressed once; the API
/// alone when it has not been built or cannot be read.
fn site(settings: &SiteSettings) -> Option<BoxEndpoint<'static, Response>> {
    let dir = &settings.dir;
    match settings.endpoint() {
        Ok(Some(site)) => {
            tracing::info!(site_dir = %dir.display(), "serving the web site at /");
            Some(site)
        }
        Ok(None) => {
            tracing::warn!(
                site_dir = %dir.display(),
                "no web site found: serving the API only (build the site with scripts/build-site.sh)"
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                site_dir = %dir.display(),
                %error,
                "the web site cannot be read: serving the API only"
            );
            None
        }
    }
}
