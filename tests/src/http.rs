//! A wired latchkey server on either store, driven through poem's test client.

use crate::mongo::TestDatabase;
use figment::Figment;
use latchkey_bootstrap::{assemble, build, Config, StoreConfig, Stores};
use latchkey_crypto::Argon2Settings;
use poem::{endpoint::BoxEndpoint, http::StatusCode, test::TestClient, Response};
use secrecy::SecretString;
use serde_json::Value;

pub type Client = TestClient<BoxEndpoint<'static, Response>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Mongo,
}

/// A running app plus whatever must live as long as it (its database).
pub struct TestApp {
    pub client: Client,
    _database: Option<TestDatabase>,
}

/// Defaults for tests: cheap argon2 (the production cost is covered by the crypto tests) and
/// no reuse grace, so a reused token is detected at once.
pub fn test_config() -> Config {
    let mut config = Config::from_figment(Figment::new()).expect("defaults are valid");
    config.jwt_secret = SecretString::from("test-secret-test-secret-test-secret-0123");
    config.argon2 = Argon2Settings {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
        workers: 2,
        queue_capacity: 64,
    };
    config.refresh_reuse_grace_secs = 0;
    // Tests move the clock by seconds; a skew allowance would blur every expiry check.
    config.jwt_leeway_secs = 0;
    config
}

pub async fn spawn_app(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    adjust(&mut config);
    let database = match backend {
        Backend::Memory => None,
        Backend::Mongo => {
            let database = TestDatabase::create().await;
            config.store = StoreConfig::Mongo {
                uri: database.uri().to_owned(),
                database: Some(database.name().to_owned()),
            };
            Some(database)
        }
    };
    let app = build(&config).await.expect("app builds");
    TestApp {
        client: TestClient::new(app.endpoint),
        _database: database,
    }
}

/// Like `spawn_app`, but the repositories pass through `wrap` first, so a test can put a
/// wrapper (pauses, injected failures) between the use cases and a real store.
pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Config),
    wrap: impl FnOnce(Stores) -> Stores,
) -> TestApp {
    let mut config = test_config();
    adjust(&mut config);
    let (stores, database) = match backend {
        Backend::Memory => (Stores::in_memory(), None),
        Backend::Mongo => {
            let database = TestDatabase::create().await;
            (Stores::mongo(&database.store), Some(database))
        }
    };
    let app = assemble(&config, wrap(stores)).await.expect("app builds");
    TestApp {
        client: TestClient::new(app.endpoint),
        _database: database,
    }
}

/// Status, selected headers and parsed JSON body of a response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: poem::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(response: poem::test::TestResponse) -> Self {
        let response = response.0;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.into_body().into_string().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string `{field}` in {}", self.body))
            .to_owned()
    }

    /// Asserts a JSON error response with the given status and code.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["error"], code, "body: {}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without message: {}",
            self.body
        );
    }
}

impl TestApp {
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        Reply::from(self.client.post(path).body_json(&body).send().await).await
    }

    pub async fn post_authorized(&self, path: &str, token: &str, body: Value) -> Reply {
        Reply::from(
            self.client
                .post(path)
                .header("Authorization", format!("Bearer {token}"))
                .body_json(&body)
                .send()
                .await,
        )
        .await
    }

    pub async fn get(&self, path: &str, authorization: Option<&str>) -> Reply {
        let mut request = self.client.get(path);
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        Reply::from(request.send().await).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/register",
            serde_json::json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/login",
            serde_json::json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/auth/refresh",
            serde_json::json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    pub async fn logout(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/auth/logout",
            serde_json::json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    pub async fn session(&self, access_token: &str) -> Reply {
        self.get("/api/auth/session", Some(&format!("Bearer {access_token}")))
            .await
    }

    pub async fn me(&self, access_token: &str) -> Reply {
        self.get("/api/users/me", Some(&format!("Bearer {access_token}")))
            .await
    }

    /// Registers and logs in; returns the login reply.
    pub async fn signed_in(&self, email: &str) -> Reply {
        let registered = self.register(email, "correct horse battery").await;
        assert_eq!(
            registered.status,
            StatusCode::CREATED,
            "{}",
            registered.body
        );
        let login = self.login(email, "correct horse battery").await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        login
    }
}

/// Instantiates each listed async scenario once per backend:
/// `for_each_backend!(scenario_a, scenario_b);` gives `memory::scenario_a`, `mongo::scenario_a`, ...
#[macro_export]
macro_rules! for_each_backend {
    ($($scenario:ident),+ $(,)?) => {
        mod memory {
            $(
                // Multi-threaded, so concurrent requests really run at once.
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario($crate::http::Backend::Memory).await;
                }
            )+
        }
        mod mongo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario($crate::http::Backend::Mongo).await;
                }
            )+
        }
    };
}
