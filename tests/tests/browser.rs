//! The web site in a real headless Chromium (driven over WebDriver), against the real server on
//! the in-memory store with a short access-token lifetime.
//!
//! Needs the built site (`scripts/build-site.sh`) and Debian's `chromium` + `chromium-driver`;
//! `scripts/test.sh` provides both. Screenshots go to `target/screenshots/`.

use fantoccini::{Client, ClientBuilder, Locator};
use latchkey_application::LogoutCommand;
use latchkey_bootstrap::{build, Config};
use poem::{listener::Acceptor, listener::Listener, EndpointExt, Server};
use serde_json::json;
use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const ACCESS_TOKEN_TTL_SECS: u64 = 3;
const PASSWORD: &str = "correct horse battery";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn site_dir() -> PathBuf {
    repository().join("web/dist/site")
}

fn screenshots_dir() -> PathBuf {
    repository().join("target/screenshots")
}

/// The server on a real socket, counting the refresh requests it receives.
struct Site {
    base: String,
    refreshes: Arc<AtomicUsize>,
    service: latchkey_application::AuthService,
}

async fn start_site() -> Site {
    assert!(
        site_dir().join("index.html").is_file(),
        "the web site is not built: run scripts/build-site.sh (scripts/test.sh does)"
    );
    let mut config: Config = latchkey_tests::http::test_config();
    config.site_dir = site_dir();
    config.access_token_ttl_secs = ACCESS_TOKEN_TTL_SECS;
    config.refresh_reuse_grace_secs = 10;
    let app = build(&config).await.expect("app builds");
    let refreshes = Arc::new(AtomicUsize::new(0));
    let counter = refreshes.clone();
    let endpoint = app.endpoint.around(move |next, req| {
        if req.uri().path() == "/api/auth/refresh" {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        async move { next.call(req).await }
    });
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("a local port");
    let addr: SocketAddr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("a TCP address");
    tokio::spawn(Server::new_with_acceptor(acceptor).run(endpoint));
    Site {
        base: format!("http://{addr}"),
        refreshes,
        service: app.service,
    }
}

/// chromedriver plus a headless Chromium with its own throw-away profile.
struct Browser {
    client: Client,
    driver: Child,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn start_browser() -> Browser {
    let chromedriver = which("chromedriver");
    let chromium = which("chromium");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let driver = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile =
        TempDir(std::env::temp_dir().join(format!("latchkey-chromium-{}", uuid::Uuid::new_v4())));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // Headless as root, and quiet on a closed network (see shared/design/test-infra.md).
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1200,900",
                format!("--user-data-dir={}", profile.0.display()),
            ]
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = eventually("chromedriver to accept a session", || async {
        ClientBuilder::native()
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`{program}` is not installed: apt-get install chromium chromium-driver (scripts/test.sh does)")
        })
}

/// Retries `attempt` until it succeeds (pages hydrate and navigate asynchronously).
async fn eventually<T, E: std::fmt::Display, F, Fut>(what: &str, attempt: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if started.elapsed() > Duration::from_secs(20) => {
                panic!("timed out waiting for {what}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Browser {
    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn wait_for_path(&self, expected: &str) {
        eventually(&format!("the page {expected}"), || async {
            let path = self.path().await;
            if path.trim_end_matches('/') == expected.trim_end_matches('/') {
                Ok(())
            } else {
                Err(format!("still at {path}"))
            }
        })
        .await
    }

    async fn text_of(&self, css: &str) -> String {
        eventually(&format!("text in {css}"), || async {
            let text = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if text.trim().is_empty() {
                Err("empty".to_owned())
            } else {
                Ok(text)
            }
        })
        .await
    }

    async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr(name).await.ok().flatten()
    }

    /// Fills in and submits the credentials form once the page is live.
    async fn submit_credentials(&self, email: &str, password: &str) {
        eventually("the form to hydrate", || async {
            match self.attribute("main", "data-hydrated").await.as_deref() {
                Some("true") => Ok(()),
                other => Err(format!("data-hydrated = {other:?}")),
            }
        })
        .await;
        for (css, value) in [("#email", email), ("#password", password)] {
            let field = self.client.find(Locator::Css(css)).await.unwrap();
            field.clear().await.unwrap();
            field.send_keys(value).await.unwrap();
        }
        self.client
            .find(Locator::Css("#submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn stored(&self, key: &str) -> Option<String> {
        let value = self
            .client
            .execute(
                "return window.localStorage.getItem(arguments[0]);",
                vec![json!(key)],
            )
            .await
            .unwrap();
        value.as_str().map(str::to_owned)
    }

    async fn loads(&self) -> u32 {
        self.attribute("#account", "data-loads")
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    async fn click(&self, css: &str) {
        eventually(&format!("{css} to be clickable"), || async {
            self.client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?
                .click()
                .await
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(screenshots_dir()).unwrap();
        std::fs::write(screenshots_dir().join(name), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_up_stays_signed_in_through_expiry_and_is_sent_to_login_when_revoked() {
    let site = start_site().await;
    let browser = start_browser().await;
    let url = |path: &str| format!("{}{path}", site.base);
    let email = "ann@example.com";

    // Without tokens, the signed-in page sends the visitor to log in.
    browser.client.goto(&url("/")).await.unwrap();
    browser.wait_for_path("/login").await;
    browser.screenshot("login.png").await;

    // Register (with a too-short password first: the API's message is shown inline).
    browser.client.goto(&url("/register")).await.unwrap();
    browser.submit_credentials(email, "short").await;
    let problem = browser.text_of("#form-error").await;
    assert!(problem.contains("at least 8 characters"), "{problem}");
    browser.screenshot("register.png").await;
    browser.submit_credentials(email, PASSWORD).await;

    // Registering logs in and lands on the signed-in page, which shows the account.
    browser.wait_for_path("/").await;
    assert_eq!(browser.text_of("#user-email").await, email);
    assert!(browser.stored("latchkey.access_token").await.is_some());
    let first_refresh_token = browser.stored("latchkey.refresh_token").await.unwrap();
    browser.screenshot("home.png").await;
    assert_eq!(site.refreshes.load(Ordering::SeqCst), 0);

    // Past the access token's expiry, the page's next load (two calls failing together) still
    // works, through exactly one refresh.
    tokio::time::sleep(Duration::from_secs(ACCESS_TOKEN_TTL_SECS + 1)).await;
    let loads_before = browser.loads().await;
    browser.click("#reload").await;
    eventually("the page to load again", || async {
        let loads = browser.loads().await;
        if loads > loads_before {
            Ok(())
        } else {
            Err(format!("loads = {loads}"))
        }
    })
    .await;
    assert_eq!(
        site.refreshes.load(Ordering::SeqCst),
        1,
        "one refresh for two failed calls"
    );
    assert_eq!(browser.text_of("#user-email").await, email);
    let rotated = browser.stored("latchkey.refresh_token").await.unwrap();
    assert_ne!(
        rotated, first_refresh_token,
        "the rotated refresh token is stored"
    );

    // Revoke the session on the server; once the access token expires the next call cannot
    // refresh, so the page clears the tokens and goes to the log-in page.
    let access = browser.stored("latchkey.access_token").await.unwrap();
    let claims = site
        .service
        .authenticate(&access)
        .expect("a valid access token");
    site.service
        .logout(LogoutCommand {
            caller: claims.subject,
            session: claims.session,
            refresh_token: rotated,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(ACCESS_TOKEN_TTL_SECS + 1)).await;
    browser.click("#reload").await;
    browser.wait_for_path("/login").await;
    assert_eq!(browser.stored("latchkey.access_token").await, None);

    // Wrong password: a clear inline message. The right one: back to where the user was.
    browser.submit_credentials(email, "not the password").await;
    let problem = browser.text_of("#form-error").await;
    assert!(problem.contains("Invalid email or password"), "{problem}");
    browser.submit_credentials(email, PASSWORD).await;
    browser.wait_for_path("/").await;
    assert_eq!(browser.text_of("#user-email").await, email);

    // Log out from the page: tokens gone, refresh token revoked, back to the log-in page.
    let refresh_token = browser.stored("latchkey.refresh_token").await.unwrap();
    browser.click("#logout").await;
    browser.wait_for_path("/login").await;
    assert_eq!(browser.stored("latchkey.refresh_token").await, None);
    let refused = site
        .service
        .refresh(latchkey_application::RefreshCommand { refresh_token })
        .await;
    assert!(refused.is_err(), "logging out revokes the session");

    // The same page on a phone-sized screen.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.client.goto(&url("/register")).await.unwrap();
    browser.text_of("h1").await;
    browser.screenshot("register-phone.png").await;

    browser.client.clone().close().await.unwrap();
}
