//! The one harness: every suite that needs a latchkey server gets it from [`spawn_app`] or
//! [`app`] (zero2prod's `spawn_app`), on either store, in process or on a real socket.

use crate::{mongo::TestDatabase, Backend};
use figment::Figment;
use latchkey_application::AuthService;
use latchkey_bootstrap::{
    assemble, build, config::SecretOrigin, serve, Config, StoreConfig, Stores,
};
use latchkey_crypto::{Argon2Settings, JwtKeys};
use poem::{endpoint::BoxEndpoint, http::StatusCode, test::TestClient, EndpointExt, Response};
use secrecy::SecretString;
use serde_json::Value;
use std::{net::SocketAddr, sync::Arc};
use tokio::{sync::oneshot, task::JoinHandle};

pub type Client = TestClient<BoxEndpoint<'static, Response>>;
type WrapStores = Box<dyn FnOnce(Stores) -> Stores + Send>;
type WrapEndpoint =
    Box<dyn FnOnce(BoxEndpoint<'static, Response>) -> BoxEndpoint<'static, Response> + Send>;

/// A running app, plus whatever must live as long as it (its database, its server task).
pub struct TestApp {
    /// Calls the app in process (no socket), also when it listens on one.
    pub client: Client,
    pub service: AuthService,
    /// What its readiness probe answers.
    pub readiness: latchkey_http::Readiness,
    /// Where it listens, when spawned [`Spawn::listening`].
    pub address: Option<SocketAddr>,
    /// Its accounts, for arranging what no endpoint does (an email verified without a mail);
    /// `None` on a store shared with another app.
    pub users: Option<Arc<dyn latchkey_domain::ports::UserRepository>>,
    server: Option<Server>,
    _database: Option<TestDatabase>,
}

struct Server {
    stop: Option<oneshot::Sender<()>>,
    stopped: JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    /// The MongoDB URI and database name its own store is in, for another process to open.
    pub fn database(&self) -> Option<(&str, &str)> {
        self._database
            .as_ref()
            .map(|database| (database.uri(), database.name()))
    }
}

impl Drop for TestApp {
    /// Stops accepting at once; connections still open end with the test's runtime.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            if let Some(stop) = server.stop.take() {
                let _ = stop.send(());
            }
            server.stopped.abort();
        }
    }
}

/// Defaults for tests: cheap argon2 (the production cost is covered by the crypto tests) and
/// no reuse grace, so a reused token is detected at once.
pub fn test_config() -> Config {
    let mut config = Config::from_figment(Figment::new()).expect("defaults are valid");
    let secret = SecretString::from("test-secret-test-secret-test-secret-0123");
    config.jwt.codec.keys = JwtKeys::Shared(secret.clone());
    config.jwt.secret = secret;
    config.jwt.secret_origin = SecretOrigin::Configured;
    config.argon2 = Argon2Settings {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
        workers: 2,
        queue_capacity: 64,
    };
    config.session.reuse_grace = chrono::Duration::zero();
    // Suites send hundreds of requests from one address; the abuse suite turns budgets on.
    config.abuse.register = None;
    config.abuse.login = None;
    config.abuse.refresh = None;
    config.abuse.mail = None;
    config.abuse.mail_per_recipient = None;
    // Tests move the clock by seconds; a skew allowance would blur every expiry check.
    config.jwt.codec.leeway_secs = 0;
    config
}

/// A server on `backend` with the test configuration as `adjust` leaves it.
pub async fn spawn_app(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    app(backend).config(adjust).spawn().await
}

/// A server with more than configuration to choose: see [`Spawn`].
pub fn app(backend: Backend) -> Spawn {
    Spawn {
        backend,
        config: test_config(),
        wrap_stores: None,
        wrap_endpoint: None,
        listening: false,
        shared_store: None,
    }
}

pub struct Spawn {
    backend: Backend,
    config: Config,
    wrap_stores: Option<WrapStores>,
    wrap_endpoint: Option<WrapEndpoint>,
    listening: bool,
    /// MongoDB URI and database of another app, for a second instance on its store.
    shared_store: Option<(String, String)>,
}

impl Spawn {
    pub fn config(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        adjust(&mut self.config);
        self
    }

    /// The repositories pass through `wrap` first, so a test can put a wrapper (pauses,
    /// injected failures) between the use cases and a real store, or replace the store.
    pub fn stores(mut self, wrap: impl FnOnce(Stores) -> Stores + Send + 'static) -> Self {
        self.wrap_stores = Some(Box::new(wrap));
        self
    }

    /// Wraps the whole endpoint, e.g. to count requests.
    pub fn endpoint(
        mut self,
        wrap: impl FnOnce(BoxEndpoint<'static, Response>) -> BoxEndpoint<'static, Response>
            + Send
            + 'static,
    ) -> Self {
        self.wrap_endpoint = Some(Box::new(wrap));
        self
    }

    /// Also serves the app on a local port with the production server loop (timeouts and
    /// all), as configured in `config.listen.serve`.
    pub fn listening(mut self) -> Self {
        self.listening = true;
        self
    }

    /// Runs on the MongoDB database of `other` (which must outlive this app), as a second
    /// instance of one service.
    pub fn sharing_store_with(mut self, other: &TestApp) -> Self {
        let database = other
            ._database
            .as_ref()
            .expect("the other app runs on MongoDB");
        self.shared_store = Some((database.uri().to_owned(), database.name().to_owned()));
        self
    }

    pub async fn spawn(mut self) -> TestApp {
        crate::init_test_logs();
        assert!(
            self.shared_store.is_none() || self.wrap_stores.is_none(),
            "a shared store is opened as configured, so it cannot be wrapped"
        );
        let database = match (self.backend, &self.shared_store) {
            (Backend::Mongo, None) => Some(TestDatabase::create().await),
            _ => None,
        };
        let mongo = self.shared_store.clone().or_else(|| {
            database
                .as_ref()
                .map(|database| (database.uri().to_owned(), database.name().to_owned()))
        });
        let mut users = database
            .as_ref()
            .map(|database| Stores::mongo(&database.store).users);
        let built = match (mongo, self.wrap_stores) {
            // The production path: the store as configured (`DB_URI`, `DB_NAME`, timeouts).
            (Some((uri, name)), None) => {
                self.config.store.backend = StoreConfig::Mongo {
                    uri,
                    database: Some(name),
                };
                build(&self.config).await
            }
            (_, wrap) => {
                let stores = database
                    .as_ref()
                    .map_or_else(Stores::in_memory, |database| Stores::mongo(&database.store));
                let stores = match wrap {
                    Some(wrap) => wrap(stores),
                    None => stores,
                };
                users = Some(stores.users.clone());
                assemble(&self.config, stores).await
            }
        }
        .expect("app builds");
        let endpoint = match self.wrap_endpoint {
            Some(wrap) => wrap(built.endpoint),
            None => built.endpoint,
        };
        let (client, address, server) = if self.listening {
            let shared = Arc::new(endpoint);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a local port");
            let address = listener.local_addr().expect("a TCP address");
            let (stop, stopping) = oneshot::channel::<()>();
            let stopped = tokio::spawn(serve(
                listener,
                shared.clone().boxed(),
                self.config.listen.serve.clone(),
                async {
                    let _ = stopping.await;
                },
            ));
            let server = Server {
                stop: Some(stop),
                stopped,
            };
            (TestClient::new(shared.boxed()), Some(address), Some(server))
        } else {
            (TestClient::new(endpoint), None, None)
        };
        TestApp {
            client,
            service: built.service,
            readiness: built.readiness,
            address,
            users,
            server,
            _database: database,
        }
    }
}

/// Sends `request` (a whole HTTP/1.1 request) to `to` from the local address `source` (on
/// Linux every 127.x.y.z is a loopback address of this machine), and reads the reply.
pub async fn send_from(source: std::net::IpAddr, to: SocketAddr, request: &str) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("a loopback source address");
    let mut stream = socket.connect(to).await.expect("the server accepts");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("a reply");
    let text = String::from_utf8(raw).expect("a UTF-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete reply");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let mut headers = poem::http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        headers.append(
            poem::http::HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
            value.trim().parse().expect("a header value"),
        );
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status: StatusCode::from_u16(status).expect("a status"),
        headers,
        body: if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: not JSON: {body}"))
        },
    }
}

pub(crate) fn dechunk(mut chunked: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = chunked.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
    body
}

/// Status, selected headers and parsed JSON body of a response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: poem::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The body without its `request_id`, which differs for every request: for comparing the
    /// answers to two requests.
    pub fn body_but_request_id(&self) -> Value {
        let mut body = self.body.clone();
        if let Some(fields) = body.as_object_mut() {
            fields.remove("request_id");
        }
        body
    }

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
    /// `http://127.0.0.1:<port><path>` of a listening app.
    pub fn url(&self, path: &str) -> String {
        let address = self.address.expect("spawned with `listening()`");
        format!("http://{address}{path}")
    }

    /// Stops accepting connections, lets in-flight requests finish, and returns how the server
    /// loop ended.
    pub async fn shut_down(&mut self) -> std::io::Result<()> {
        let mut server = self.server.take().expect("spawned with `listening()`");
        if let Some(stop) = server.stop.take() {
            let _ = stop.send(());
        }
        server
            .stopped
            .await
            .expect("the server task ran to its end")
    }

    /// POSTs `body` over a socket from `source` (see [`send_from`]), with extra `headers`.
    pub async fn post_from(
        &self,
        source: &str,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let address = self.address.expect("spawned with `listening()`");
        let body = body.to_string();
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        send_from(source.parse().expect("an IP address"), address, &request).await
    }

    /// A login attempt from the loopback address `source`.
    pub async fn login_from(&self, source: &str, email: &str, password: &str) -> Reply {
        self.post_from(
            source,
            "/api/auth/login",
            serde_json::json!({ "email": email, "password": password }),
            &[],
        )
        .await
    }

    /// Every request helper takes `token`: `Some(access token)` sends it as a bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut request = self.client.post(path).body_json(&body);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Reply::from(request.send().await).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut request = self.client.put(path).body_json(&body);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Reply::from(request.send().await).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(path);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Reply::from(request.send().await).await
    }

    /// DELETE with an optional JSON body.
    pub async fn delete(&self, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.client.delete(path);
        if let Some(body) = body {
            request = request.body_json(&body);
        }
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Reply::from(request.send().await).await
    }

    /// A login sending `User-Agent: <user_agent>`.
    pub async fn login_as(&self, email: &str, password: &str, user_agent: &str) -> Reply {
        let request = self
            .client
            .post("/api/auth/login")
            .header("User-Agent", user_agent)
            .body_json(&serde_json::json!({ "email": email, "password": password }));
        Reply::from(request.send().await).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/register",
            None,
            serde_json::json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/login",
            None,
            serde_json::json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/auth/refresh",
            None,
            serde_json::json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    pub async fn logout(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/auth/logout",
            None,
            serde_json::json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    pub async fn session(&self, access_token: &str) -> Reply {
        self.get("/api/auth/session", Some(access_token)).await
    }

    pub async fn me(&self, access_token: &str) -> Reply {
        self.get("/api/users/me", Some(access_token)).await
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
