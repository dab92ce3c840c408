use crate::config::{Config, SecretOrigin, StoreConfig};
use anyhow::Context;
use latchkey_application::{AuthService, Policies, Ports};
use latchkey_crypto::{
    Argon2Hasher, HmacSuccessors, JwtCodec, OsRandom, SecListsCommonPasswords, SystemClock,
};
use latchkey_domain::{
    ports::{RefreshTokenRepository, SessionRepository, ThrottleStore, UserRepository},
    KeyPepper, PasswordPolicy,
};
use latchkey_http::SiteSettings;
use latchkey_memory::{InMemoryRefreshTokens, InMemorySessions, InMemoryThrottle, InMemoryUsers};
use latchkey_mongo::MongoStore;
use poem::{endpoint::BoxEndpoint, EndpointExt, Response};
use secrecy::ExposeSecret;
use std::sync::Arc;

/// A fully wired server, ready to be served or called in tests.
pub struct App {
    pub endpoint: BoxEndpoint<'static, Response>,
    pub service: AuthService,
}

/// The repositories of one store.
#[derive(Clone)]
pub struct Stores {
    pub users: Arc<dyn UserRepository>,
    pub refresh_tokens: Arc<dyn RefreshTokenRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub throttle: Arc<dyn ThrottleStore>,
}

impl Stores {
    pub fn in_memory() -> Self {
        Self {
            users: Arc::new(InMemoryUsers::default()),
            refresh_tokens: Arc::new(InMemoryRefreshTokens::default()),
            sessions: Arc::new(InMemorySessions::default()),
            throttle: Arc::new(InMemoryThrottle::default()),
        }
    }

    pub fn mongo(store: &MongoStore) -> Self {
        Self {
            users: Arc::new(store.users()),
            refresh_tokens: Arc::new(store.refresh_tokens()),
            sessions: Arc::new(store.sessions()),
            throttle: Arc::new(store.throttle()),
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
    let hasher = tokio::task::spawn_blocking({
        let settings = config.argon2;
        move || Argon2Hasher::new(settings)
    })
    .await??;
    let secret = config.jwt.codec.secret.expose_secret().as_bytes();
    let successors = HmacSuccessors::new(&HmacSuccessors::derive_key(
        secret,
        "latchkey refresh-token successor v1",
    ));
    // The same on every instance sharing `JWT_SECRET`, and of no use for anything else.
    let key_pepper = KeyPepper::new(HmacSuccessors::derive_key(
        secret,
        "latchkey throttle keys v1",
    ));
    let service = AuthService::new(
        Ports {
            users: stores.users,
            refresh_tokens: stores.refresh_tokens,
            sessions: stores.sessions,
            hasher: Arc::new(hasher),
            access_tokens: Arc::new(JwtCodec::new(config.jwt.codec.clone())),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            successors: Arc::new(successors),
            throttle: stores.throttle,
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
        },
    );
    let endpoint = latchkey_http::routes(service.clone(), config.http.clone(), site(&config.site));
    Ok(App {
        endpoint: endpoint.boxed(),
        service,
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
