use crate::config::{Config, SecretOrigin, StoreConfig};
use anyhow::Context;
use chrono::Duration;
use latchkey_application::{AuthService, Ports, SessionPolicy};
use latchkey_crypto::{Argon2Hasher, JwtCodec, JwtSettings, OsRandom, SystemClock};
use latchkey_domain::ports::{RefreshTokenRepository, UserRepository};
use latchkey_http::HttpSettings;
use latchkey_memory::{InMemoryRefreshTokens, InMemoryUsers};
use latchkey_mongo::MongoStore;
use poem::{endpoint::BoxEndpoint, endpoint::StaticFilesEndpoint, EndpointExt, Response, Route};
use std::{path::Path, sync::Arc};

/// A fully wired server, ready to be served or called in tests.
pub struct App {
    pub endpoint: BoxEndpoint<'static, Response>,
    pub service: AuthService,
}

/// Chooses the adapters the configuration asks for and builds the HTTP endpoint, with the web
/// site at `/` when it has been built.
pub async fn build(config: &Config) -> anyhow::Result<App> {
    let (users, refresh_tokens) = open_store(config).await?;
    assemble(config, users, refresh_tokens).await
}

async fn open_store(
    config: &Config,
) -> anyhow::Result<(Arc<dyn UserRepository>, Arc<dyn RefreshTokenRepository>)> {
    let stores: (Arc<dyn UserRepository>, Arc<dyn RefreshTokenRepository>) = match &config.store {
        StoreConfig::Memory => {
            tracing::warn!(
                "DB_URI is not set: using the in-memory store. NOTHING PERSISTS; every \
                     user and session is lost when the server stops"
            );
            (
                Arc::new(InMemoryUsers::default()),
                Arc::new(InMemoryRefreshTokens::default()),
            )
        }
        StoreConfig::Mongo { uri, database } => {
            let store = MongoStore::connect(uri, database.as_deref()).await?;
            store
                .ensure_indexes()
                .await
                .context("MongoDB is not reachable at DB_URI")?;
            tracing::info!(database = store.database().name(), "using MongoDB");
            (Arc::new(store.users()), Arc::new(store.refresh_tokens()))
        }
    };
    Ok(stores)
}

/// Wires everything but the store around the given repositories. `build` uses it after
/// opening the configured store; tests use it to put the server on a store of their choosing.
pub async fn assemble(
    config: &Config,
    users: Arc<dyn UserRepository>,
    refresh_tokens: Arc<dyn RefreshTokenRepository>,
) -> anyhow::Result<App> {
    if config.jwt_secret_origin == SecretOrigin::GeneratedForThisProcess {
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
    let codec = JwtCodec::new(JwtSettings {
        secret: config.jwt_secret.clone(),
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
    });
    let policy = SessionPolicy {
        access_token_ttl: seconds(config.access_token_ttl_secs)?,
        refresh_token_ttl: seconds(config.refresh_token_ttl_secs)?,
        reuse_grace: seconds(config.refresh_reuse_grace_secs)?,
    };
    let service = AuthService::new(
        Ports {
            users,
            refresh_tokens,
            hasher: Arc::new(hasher),
            access_tokens: Arc::new(codec),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
        },
        policy,
    );
    let endpoint = latchkey_http::routes(
        service.clone(),
        HttpSettings {
            max_body_bytes: config.max_body_bytes,
        },
        site(&config.site_dir),
    );
    Ok(App {
        endpoint: endpoint.boxed(),
        service,
    })
}

/// The static export of the Perseus site; the API alone when it has not been built.
fn site(dir: &Path) -> Option<Route> {
    if !dir.join("index.html").is_file() {
        tracing::warn!(
            site_dir = %dir.display(),
            "no web site found: serving the API only (build the site with scripts/build-site.sh)"
        );
        return None;
    }
    tracing::info!(site_dir = %dir.display(), "serving the web site at /");
    Some(Route::new().nest("/", StaticFilesEndpoint::new(dir).index_file("index.html")))
}

fn seconds(secs: u64) -> anyhow::Result<Duration> {
    let secs = i64::try_from(secs).context("duration too large")?;
    Duration::try_seconds(secs).context("duration too large")
}
