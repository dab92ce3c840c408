//! The web site in a real headless Chromium (driven over WebDriver), against the real server on
//! the in-memory store with a short access-token lifetime.
//!
//! Needs the built site (`scripts/build-site.sh`) and Debian's `chromium` + `chromium-driver`;
//! `scripts/test.sh` provides both. Screenshots go to `target/screenshots/`.

use fantoccini::{wd::WindowHandle, Client, ClientBuilder, Locator};
use latchkey_application::{LogoutCommand, RefreshCommand, RegisterCommand};
use latchkey_domain::ClientNetwork;
use latchkey_tests::{
    eventually, free_port,
    http::{app, TestApp},
    Backend,
};
use poem::EndpointExt;
use serde_json::json;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::Notify;

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
    app: TestApp,
    refreshes: Arc<AtomicUsize>,
    service: latchkey_application::AuthService,
    wire: Arc<Wire>,
}

/// What the server saw and how it is told to misbehave, for tests of what the browser sends.
#[derive(Default)]
struct Wire {
    /// Every request as `METHOD target body`, in arrival order.
    requests: std::sync::Mutex<Vec<String>>,
    /// Hold `POST /api/auth/logout` until released.
    hold_logout: AtomicBool,
    logout_arrived: Notify,
    release_logout: Notify,
}

impl Wire {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Site {
    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Registers `email` and logs it in behind the browser's back: its access and refresh
    /// token, as a log-in in another tab would store them.
    async fn register_and_log_in(&self, email: &str) -> (String, String) {
        self.register(email).await;
        self.log_in(email).await
    }

    async fn register(&self, email: &str) {
        self.service
            .register(RegisterCommand {
                email: email.into(),
                password: PASSWORD.into(),
                client: ClientNetwork::Unknown,
            })
            .await
            .expect("the user registers");
    }

    /// Logs `email` in behind the browser's back: a new session's access and refresh token.
    async fn log_in(&self, email: &str) -> (String, String) {
        let pair = self
            .service
            .login(latchkey_application::LoginCommand {
                email: email.into(),
                password: PASSWORD.into(),
                client: ClientNetwork::Unknown,
                user_agent: None,
            })
            .await
            .expect("the user logs in");
        (pair.access_token, pair.refresh_token.expose().to_owned())
    }

    /// Exchanges a refresh token behind the browser's back, as another client would.
    async fn refresh(
        &self,
        refresh_token: String,
    ) -> Result<latchkey_application::TokenPair, latchkey_application::RefreshError> {
        // From the browser's own network (loopback): in-grace reuse is honoured only there.
        self.service
            .refresh(RefreshCommand {
                refresh_token,
                client: ClientNetwork::of(std::net::Ipv4Addr::LOCALHOST.into()),
            })
            .await
    }
}

async fn start_site() -> Site {
    start_site_with(|_| {}).await
}

/// [`start_site`], with more configuration from `adjust`.
async fn start_site_with(adjust: impl FnOnce(&mut latchkey_bootstrap::Config) + Send) -> Site {
    assert!(
        site_dir().join("index.html").is_file(),
        "the web site is not built: run scripts/build-site.sh (scripts/test.sh does)"
    );
    let refreshes = Arc::new(AtomicUsize::new(0));
    let counter = refreshes.clone();
    let wire = Arc::new(Wire::default());
    let seen = wire.clone();
    let app = app(Backend::Memory)
        .config(|config| {
            config.site.dir = site_dir();
            config.session.access_token_ttl =
                chrono::Duration::seconds(ACCESS_TOKEN_TTL_SECS as i64);
            config.session.reuse_grace = chrono::Duration::seconds(10);
            adjust(config);
        })
        .endpoint(move |endpoint| {
            endpoint
                .around(move |next, mut req| {
                    if req.uri().path() == "/api/auth/refresh" {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let wire = seen.clone();
                    async move {
                        let body = req.take_body().into_bytes().await?;
                        wire.requests.lock().unwrap().push(format!(
                            "{} {} {}",
                            req.method(),
                            req.uri(),
                            String::from_utf8_lossy(&body)
                        ));
                        req.set_body(body);
                        if req.uri().path() == "/api/auth/logout"
                            && wire.hold_logout.load(Ordering::SeqCst)
                        {
                            wire.logout_arrived.notify_one();
                            wire.release_logout.notified().await;
                        }
                        next.call(req).await
                    }
                })
                .boxed()
        })
        .listening()
        .spawn()
        .await;
    let service = app.service.clone();
    Site {
        app,
        refreshes,
        service,
        wire,
    }
}

/// A Chrome DevTools Protocol command, as chromedriver takes one (`goog/cdp/execute`).
#[derive(Debug)]
struct DevTools {
    command: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.command, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
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
    let port = free_port();
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
            // Headless as root (no sandbox), and quiet on a closed network: no background services
            // that would only time out.
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
    let client = eventually("chromedriver to accept a session", PATIENCE, || async {
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

async fn wait_for_access_tokens_to_expire() {
    tokio::time::sleep(Duration::from_secs(ACCESS_TOKEN_TTL_SECS + 1)).await;
}

/// Pages hydrate and navigate asynchronously.
const PATIENCE: Duration = Duration::from_secs(20);

impl Browser {
    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn wait_for_path(&self, expected: &str) {
        eventually(&format!("the page {expected}"), PATIENCE, || async {
            let path = self.path().await;
            if path.trim_end_matches('/') == expected.trim_end_matches('/') {
                Ok(())
            } else {
                Err(format!("still at {path}"))
            }
        })
        .await
    }

    /// The text of `css` once `accepted` takes it (described by `what` when it never does).
    async fn text_where(&self, css: &str, what: &str, accepted: impl Fn(&str) -> bool) -> String {
        eventually(&format!("{css} to be {what}"), PATIENCE, || async {
            let text = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if accepted(&text) {
                Ok(text)
            } else {
                Err(format!("it says {text:?}"))
            }
        })
        .await
    }

    async fn text_of(&self, css: &str) -> String {
        self.text_where(css, "not empty", |text| !text.trim().is_empty())
            .await
    }

    async fn wait_for_text(&self, css: &str, expected: &str) {
        self.text_where(css, &format!("{expected:?}"), |text| {
            text.trim() == expected
        })
        .await;
    }

    async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr(name).await.ok().flatten()
    }

    /// Waits until the log-in or register page is live (and following the other tabs).
    async fn wait_until_hydrated(&self) {
        eventually("the form to hydrate", PATIENCE, || async {
            match self.attribute("main", "data-hydrated").await.as_deref() {
                Some("true") => Ok(()),
                other => Err(format!("data-hydrated = {other:?}")),
            }
        })
        .await
    }

    /// Fills in and submits the credentials form once the page is live.
    async fn submit_credentials(&self, email: &str, password: &str) {
        self.wait_until_hydrated().await;
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

    /// Waits until the signed-in page has loaded the account again, after `before` loads.
    async fn wait_for_another_load(&self, before: u32) {
        eventually("the page to load again", PATIENCE, || async {
            let loads = self.loads().await;
            if loads > before {
                Ok(())
            } else {
                Err(format!("loads = {loads}, at {}", self.path().await))
            }
        })
        .await
    }

    async fn click(&self, css: &str) {
        eventually(&format!("{css} to be clickable"), PATIENCE, || async {
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

    /// Registers `email` on the server, then logs in on the log-in page, which lands on the
    /// signed-in page.
    async fn sign_in(&self, site: &Site, email: &str) {
        site.register(email).await;
        self.client.goto(&site.url("/login")).await.unwrap();
        self.submit_credentials(email, PASSWORD).await;
        self.wait_for_path("/").await;
        assert_eq!(self.text_of("#user-email").await, email);
    }

    /// Signs in, then opens a second window of the same profile on the signed-in page. To the
    /// site that is another tab (same local storage, own session storage); a window rather
    /// than a tab because Chromium throttles the timers of a tab in the background.
    async fn sign_in_with_two_tabs(&self, site: &Site, email: &str) -> [WindowHandle; 2] {
        self.sign_in(site, email).await;
        let first = self.client.window().await.unwrap();
        let second = self.client.new_window(false).await.unwrap().handle;
        self.switch_to(&second).await;
        self.client.goto(&site.url("/")).await.unwrap();
        assert_eq!(self.text_of("#user-email").await, email);
        [first, second]
    }

    async fn switch_to(&self, tab: &WindowHandle) {
        self.client.switch_to_window(tab.clone()).await.unwrap();
    }

    /// Clicks "Check again" in every tab at one instant of the browser's clock, so their
    /// requests really race (WebDriver drives one window at a time: clicking in turn would let
    /// the first tab finish before the second starts), then waits for every page to load again.
    async fn reload_at_once(&self, tabs: &[WindowHandle]) {
        let at = self
            .client
            .execute("return Date.now() + 500;", vec![])
            .await
            .unwrap();
        let mut loads_before = Vec::new();
        for tab in tabs {
            self.switch_to(tab).await;
            loads_before.push(self.loads().await);
            self.client
                .execute(
                    "const at = arguments[0];
                     setTimeout(() => document.getElementById('reload').click(), at - Date.now());",
                    vec![at.clone()],
                )
                .await
                .unwrap();
        }
        for (tab, before) in tabs.iter().zip(loads_before) {
            self.switch_to(tab).await;
            self.wait_for_another_load(before).await;
        }
    }

    /// Lets the tabs' access token expire, reloads every tab at once (so their refreshes race)
    /// and checks that all of them are still signed in.
    async fn after_expiry_reload_and_assert_signed_in(
        &self,
        site: &Site,
        tabs: &[WindowHandle],
        email: &str,
    ) {
        wait_for_access_tokens_to_expire().await;
        self.reload_at_once(tabs).await;
        self.assert_signed_in_everywhere(site, tabs, email).await;
    }

    /// Every tab still shows the account on the signed-in page, and the tokens they share
    /// still work on the server.
    async fn assert_signed_in_everywhere(&self, site: &Site, tabs: &[WindowHandle], email: &str) {
        for tab in tabs {
            self.switch_to(tab).await;
            assert_eq!(self.path().await, "/");
            assert_eq!(self.text_of("#user-email").await, email);
        }
        assert!(self.stored("latchkey.access_token").await.is_some());
        let refresh_token = self
            .stored("latchkey.refresh_token")
            .await
            .expect("a stored refresh token");
        site.refresh(refresh_token)
            .await
            .expect("the stored refresh token works");
    }

    /// Makes the page's requests fail as they do offline (the site's API client goes through
    /// `window.fetch`), or work again.
    async fn set_online(&self, online: bool) {
        self.client
            .execute(
                "const online = arguments[0];
                 window.onlineFetch = window.onlineFetch || window.fetch;
                 window.fetch = online
                     ? window.onlineFetch
                     : () => Promise.reject(new TypeError('Failed to fetch'));",
                vec![json!(online)],
            )
            .await
            .unwrap();
    }

    /// Stores `tokens` in local storage from this page, as a log-in in another tab would.
    async fn store_tokens(&self, (access, refresh): &(String, String)) {
        self.client
            .execute(
                "localStorage.setItem('latchkey.access_token', arguments[0]);
                 localStorage.setItem('latchkey.refresh_token', arguments[1]);",
                vec![json!(access), json!(refresh)],
            )
            .await
            .unwrap();
    }

    async fn wait_for_property(&self, css: &str, name: &str, expected: &str) {
        eventually(
            &format!("{css}'s {name} to be {expected:?}"),
            PATIENCE,
            || async {
                let element = self
                    .client
                    .find(Locator::Css(css))
                    .await
                    .map_err(|e| e.to_string())?;
                match element.prop(name).await.map_err(|e| e.to_string())? {
                    Some(value) if value == expected => Ok(()),
                    other => Err(format!("it is {other:?}")),
                }
            },
        )
        .await
    }

    async fn wait_for_element(&self, css: &str) {
        eventually(&format!("{css} on the page"), PATIENCE, || async {
            self.client
                .find(Locator::Css(css))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Sends a Chrome DevTools Protocol command to this tab, through chromedriver.
    async fn devtools(&self, command: &'static str, params: serde_json::Value) {
        self.client
            .issue_cmd(DevTools { command, params })
            .await
            .unwrap_or_else(|e| panic!("{command}: {e}"));
    }

    async fn close(&self) {
        self.client.clone().close().await.unwrap();
    }

    /// Types `value` into the field at `css`, replacing what it held.
    async fn fill(&self, css: &str, value: &str) {
        let field = eventually(&format!("the field {css}"), PATIENCE, || async {
            self.client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// The rows of the sessions list, once the account page has loaded it `at_least` times.
    async fn session_rows(&self, at_least: u32) -> Vec<fantoccini::elements::Element> {
        eventually("the sessions list", PATIENCE, || async {
            let loads: u32 = self
                .attribute("#sessions-card", "data-loads")
                .await
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if loads < at_least {
                return Err(format!("loaded {loads} times"));
            }
            self.client
                .find_all(Locator::Css("#sessions li.session"))
                .await
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Opens the link of a mailed token on this site, as a click in the mail would.
    async fn open_link(&self, site: &Site, page: &str, token: &str) {
        self.client
            .goto(&site.url(&format!("/{page}#token={token}")))
            .await
            .unwrap();
    }
}

/// A visitor registers, verifies the email from the mail, sees and ends another session (whose
/// tab lands on the log-in page), changes the password, resets a forgotten one from the mail,
/// and deletes the account. Mails go over SMTP to a real server (aiosmtpd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_lifecycle_from_registration_to_deletion() {
    let catcher = latchkey_tests::smtp::MailCatcher::start();
    let smtp_url = catcher.url();
    let site = start_site_with(move |config| {
        config.mail.smtp = Some(latchkey_bootstrap::config::SmtpConfig {
            url: smtp_url.into(),
            username: None,
            password: None,
        });
    })
    .await;
    let laptop = start_browser().await;
    let email = "lee@example.com";

    // Register: the signed-in page asks to confirm the email.
    laptop.client.goto(&site.url("/register")).await.unwrap();
    laptop.submit_credentials(email, PASSWORD).await;
    laptop.wait_for_path("/").await;
    assert!(laptop.text_of("#verify-banner").await.contains("confirm"));
    laptop.screenshot("home-unverified.png").await;

    // The link from the mail verifies it.
    let token = catcher.wait_for(email).await.token_for("verify-email");
    laptop.open_link(&site, "verify-email", &token).await;
    laptop.wait_until_hydrated().await;
    // The token has left the address bar; the click confirms.
    assert!(!laptop
        .client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains(&token));
    laptop.click("#confirm").await;
    assert!(laptop.text_of("#verify-done").await.contains("confirmed"));
    laptop.screenshot("verify-email.png").await;
    laptop.client.goto(&site.url("/")).await.unwrap();
    assert_eq!(laptop.text_of("#user-email").await, email);
    assert!(laptop.attribute("#verify-banner", "id").await.is_none());

    // A second device signs in; the laptop sees both sessions and ends the phone's.
    let phone = start_browser().await;
    phone.client.goto(&site.url("/login")).await.unwrap();
    phone.submit_credentials(email, PASSWORD).await;
    phone.wait_for_path("/").await;
    laptop.click("#to-account").await;
    laptop.wait_for_path("/account").await;
    // For password managers: the account the new password is for.
    laptop
        .wait_for_property("#change-password #username", "value", email)
        .await;
    let rows = laptop.session_rows(1).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1].attr("data-current").await.unwrap().as_deref(),
        Some("true"),
        "the laptop logged in first"
    );
    laptop.screenshot("account.png").await;
    laptop.click("#sessions .end-session").await;
    eventually(
        "the phone's session to leave the list",
        PATIENCE,
        || async {
            match laptop.session_rows(2).await.len() {
                1 => Ok(()),
                n => Err(format!("{n} rows")),
            }
        },
    )
    .await;
    // The phone's next call is refused, and its refresh too: it lands on the log-in page.
    phone.click("#reload").await;
    phone.wait_for_path("/login").await;

    // A password change on the laptop keeps the laptop signed in.
    laptop.fill("#current-password", PASSWORD).await;
    laptop.fill("#new-password", "changed on the laptop").await;
    laptop.click("#change-submit").await;
    assert!(laptop
        .text_of("#change-done")
        .await
        .contains("Password changed"));
    laptop.client.goto(&site.url("/")).await.unwrap();
    assert_eq!(laptop.text_of("#user-email").await, email);

    // Forgotten on the phone: the mailed link sets a new password, and it logs in.
    phone.wait_until_hydrated().await;
    phone.click("#to-forgot").await;
    phone.wait_for_path("/forgot-password").await;
    phone.wait_until_hydrated().await;
    phone.fill("#email", email).await;
    phone.click("#submit").await;
    assert!(phone.text_of("#forgot-sent").await.contains("on its way"));
    phone.screenshot("forgot-password.png").await;
    let mail = catcher.wait_for(email).await;
    let token = mail.token_for("reset-password");
    phone
        .client
        .goto(&site.url(&mail.link_for("reset-password")))
        .await
        .unwrap();
    phone.wait_until_hydrated().await;
    phone
        .wait_for_property("#reset #username", "value", email)
        .await;
    let address = phone.client.current_url().await.unwrap();
    assert!(!address.as_str().contains(&token), "{address}");
    assert!(address.fragment().is_none(), "{address}");
    phone.fill("#password", "set from the mail").await;
    phone.click("#submit").await;
    assert!(phone.text_of("#reset-done").await.contains("changed"));
    phone.screenshot("reset-password.png").await;
    phone.client.goto(&site.url("/login")).await.unwrap();
    phone.submit_credentials(email, "set from the mail").await;
    phone.wait_for_path("/").await;
    assert_eq!(phone.text_of("#user-email").await, email);

    // The reset ended the laptop's session too.
    laptop.click("#reload").await;
    laptop.wait_for_path("/login").await;

    // Deleting the account, after confirming, leaves it gone.
    phone.client.goto(&site.url("/account")).await.unwrap();
    phone.session_rows(1).await;
    phone.fill("#delete-password", "set from the mail").await;
    phone.click("#delete-confirm").await;
    phone.screenshot("delete-account.png").await;
    phone.click("#delete-submit").await;
    phone.wait_for_path("/register").await;
    assert!(phone.stored("latchkey.refresh_token").await.is_none());
    let login = site
        .service
        .login(latchkey_application::LoginCommand {
            email: email.into(),
            password: "set from the mail".into(),
            client: ClientNetwork::Unknown,
            user_agent: None,
        })
        .await;
    assert!(matches!(
        login,
        Err(latchkey_application::LoginError::InvalidCredentials)
    ));
    phone.close().await;
    laptop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_up_stays_signed_in_through_expiry_and_is_sent_to_login_when_revoked() {
    let site = start_site().await;
    let browser = start_browser().await;
    let url = |path: &str| site.url(path);
    let email = "ann@example.com";

    // Without tokens, the signed-in page sends the visitor to log in.
    browser.client.goto(&url("/")).await.unwrap();
    browser.wait_for_path("/login").await;
    browser.screenshot("login.png").await;

    // Register, with weak passwords first: the API names the rule, shown next to the field.
    browser.client.goto(&url("/register")).await.unwrap();
    browser.submit_credentials(email, "short").await;
    let problem = browser.text_of("#password-error").await;
    assert!(problem.contains("at least 8 characters"), "{problem}");
    browser.submit_credentials(email, "iloveyou2").await;
    eventually("the common-password refusal", PATIENCE, || async {
        let problem = browser.text_of("#password-error").await;
        problem.contains("too common").then_some(()).ok_or(problem)
    })
    .await;
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
    wait_for_access_tokens_to_expire().await;
    let loads_before = browser.loads().await;
    browser.click("#reload").await;
    browser.wait_for_another_load(loads_before).await;
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

    // Revoke the session on the server: its access token stops working at once, and the
    // page's next call cannot refresh, so the page clears the tokens and goes to log in.
    let access = browser.stored("latchkey.access_token").await.unwrap();
    site.service
        .authenticate(&access)
        .await
        .expect("a valid access token");
    site.service
        .logout(LogoutCommand {
            refresh_token: rotated,
        })
        .await
        .unwrap();
    assert!(
        site.service.authenticate(&access).await.is_err(),
        "logging out ends the session's access tokens at once"
    );
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

    // Log out from the page: tokens gone, session over on the server, back to the log-in page.
    let access = browser.stored("latchkey.access_token").await.unwrap();
    let refresh_token = browser.stored("latchkey.refresh_token").await.unwrap();
    browser.click("#logout").await;
    browser.wait_for_path("/login").await;
    assert_eq!(browser.stored("latchkey.refresh_token").await, None);
    let refused = site.refresh(refresh_token).await;
    assert!(refused.is_err(), "logging out revokes the session");
    assert!(
        site.service.authenticate(&access).await.is_err(),
        "and its access tokens"
    );

    // The same page on a phone-sized screen.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.client.goto(&url("/register")).await.unwrap();
    browser.text_of("h1").await;
    browser.screenshot("register-phone.png").await;

    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_refreshing_at_once_both_stay_signed_in() {
    let site = start_site().await;
    let browser = start_browser().await;
    let email = "bea@example.com";
    let tabs = browser.sign_in_with_two_tabs(&site, email).await;

    // Both tabs find the access token expired at the same moment and refresh with the same
    // refresh token (or one uses what the other stored): neither may sign the other out.
    browser
        .after_expiry_reload_and_assert_signed_in(&site, &tabs, email)
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_stay_signed_in_when_their_refresh_token_was_rotated_moments_earlier() {
    let site = start_site().await;
    let browser = start_browser().await;
    let email = "cal@example.com";
    let tabs = browser.sign_in_with_two_tabs(&site, email).await;

    // Rotated behind the tabs' backs, as by a refresh whose answer was lost: inside the reuse
    // grace window the server still honours the token the tabs hold.
    let stored = browser.stored("latchkey.refresh_token").await.unwrap();
    site.refresh(stored)
        .await
        .expect("the stored refresh token rotates");
    browser
        .after_expiry_reload_and_assert_signed_in(&site, &tabs, email)
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_after_the_access_token_expired_ends_the_session_on_the_server() {
    let site = start_site().await;
    let browser = start_browser().await;
    browser.sign_in(&site, "dee@example.com").await;
    let refresh_token = browser.stored("latchkey.refresh_token").await.unwrap();
    wait_for_access_tokens_to_expire().await;

    // When the server cannot be told, the page says so and keeps the user signed in.
    browser.set_online(false).await;
    browser.click("#logout").await;
    let problem = browser.text_of("#logout-error").await;
    assert!(problem.contains("still signed in"), "{problem}");
    assert_eq!(browser.path().await, "/");
    assert_eq!(
        browser.stored("latchkey.refresh_token").await.as_ref(),
        Some(&refresh_token)
    );

    // Trying again works without a valid access token, and the session is over on the server.
    browser.set_online(true).await;
    browser.click("#logout").await;
    browser.wait_for_path("/login").await;
    assert_eq!(browser.stored("latchkey.refresh_token").await, None);
    let refused = site.refresh(refresh_token).await;
    assert!(refused.is_err(), "the session is over: {refused:?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_follow_each_others_log_out_and_log_in() {
    let site = start_site().await;
    let browser = start_browser().await;
    let email = "eve@example.com";
    let [first, second] = browser.sign_in_with_two_tabs(&site, email).await;

    // Logging out in one tab takes the other to the log-in page, without a click there.
    browser.switch_to(&first).await;
    browser.click("#logout").await;
    browser.wait_for_path("/login").await;
    browser.switch_to(&second).await;
    browser.wait_for_path("/login").await;
    browser.wait_until_hydrated().await;

    // Logging in in one tab takes the other, waiting on the log-in page, to the account.
    browser.switch_to(&first).await;
    browser.submit_credentials(email, PASSWORD).await;
    browser.wait_for_path("/").await;
    browser.switch_to(&second).await;
    browser.wait_for_path("/").await;
    assert_eq!(browser.text_of("#user-email").await, email);
    browser.close().await;
}

/// An administrator (from `ADMIN_EMAILS`) finds a user on the Users page and disables them;
/// the user's open tab lands on the log-in page at its next call. Someone else never sees the
/// way to the page and is refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_disables_a_user_whose_open_tab_lands_on_login() {
    let boss_email = "boss@example.com";
    let site = start_site_with(|config| {
        config.admin_emails = vec![latchkey_domain::EmailAddress::parse(boss_email)
            .unwrap()
            .key()];
    })
    .await;
    let ann = start_browser().await;
    ann.sign_in(&site, "ann@example.com").await;
    // No link for her; the address itself gets the API's refusal.
    assert!(ann.attribute("#to-users", "id").await.is_none());
    ann.client.goto(&site.url("/users")).await.unwrap();
    assert!(ann.text_of("#users-error").await.contains("administrator"));
    ann.client.goto(&site.url("/")).await.unwrap();
    assert_eq!(ann.text_of("#user-email").await, "ann@example.com");

    let boss = start_browser().await;
    site.service
        .register(RegisterCommand {
            email: boss_email.into(),
            password: PASSWORD.into(),
            client: ClientNetwork::Unknown,
        })
        .await
        .expect("the boss registers");
    // What opening the verification mail does.
    let users = site.app.users.as_ref().expect("the site's own store");
    let key = latchkey_domain::EmailAddress::parse(boss_email)
        .unwrap()
        .key();
    let account = users.find_by_email(&key).await.unwrap().unwrap();
    users
        .mark_email_verified(account.id, key.as_str(), chrono::Utc::now())
        .await
        .unwrap();
    // What a reset by mail does too: the mailbox's holder chose the password in force.
    users
        .mark_password_set_by_mailbox_owner(account.id, &account.password_hash, chrono::Utc::now())
        .await
        .unwrap();
    // What a start does with `ADMIN_EMAILS` (a reset link does it too).
    assert_eq!(site.service.grant_configured_admins().await, Ok(1));
    boss.client.goto(&site.url("/login")).await.unwrap();
    boss.submit_credentials(boss_email, PASSWORD).await;
    boss.wait_for_path("/").await;
    boss.click("#to-users").await;
    boss.wait_for_path("/users").await;

    boss.fill("#user-query", "ANN").await;
    boss.click("#user-search-submit").await;
    let ann_row = "li.user-row[data-email='ann@example.com']";
    eventually("Ann alone in the list", PATIENCE, || async {
        let rows = boss
            .client
            .find_all(Locator::Css("li.user-row"))
            .await
            .map_err(|e| e.to_string())?;
        match (rows.len(), boss.attribute(ann_row, "data-email").await) {
            (1, Some(_)) => Ok(()),
            (n, _) => Err(format!("{n} rows")),
        }
    })
    .await;
    boss.click(&format!("{ann_row} .open-user")).await;
    boss.wait_for_text("#user-sessions", "1").await;
    boss.screenshot("users.png").await;
    boss.click("#user-toggle").await;
    assert!(boss.text_of("#user-status").await.contains("Disabled"));
    // The account as the server has it now, once the page has read it again.
    boss.wait_for_text("#user-state", "Disabled").await;
    boss.wait_for_text("#user-sessions", "0").await;
    assert!(boss.attribute("#user-error", "id").await.is_none());

    // Her tab's next call is refused, its refresh too: the log-in page.
    ann.click("#reload").await;
    ann.wait_for_path("/login").await;
    ann.submit_credentials("ann@example.com", PASSWORD).await;
    assert!(ann.text_of("#form-error").await.contains("disabled"));

    boss.close().await;
    ann.close().await;
}

/// The Swagger UI page under its own script policy (only its inline code, by hash): it renders
/// the operations, styled, and the browser reports no violation of the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_render_under_their_content_security_policy() {
    // The API alone: the docs page needs no built site.
    let server = app(Backend::Memory).listening().spawn().await;
    let browser = start_browser().await;
    browser.client.goto(&server.url("/api/docs")).await.unwrap();

    // Swagger UI ran: the operations are listed.
    let login = browser
        .text_of(".opblock-summary-path[data-path=\"/auth/login\"]")
        .await;
    assert!(login.contains("/auth/login"), "{login}");
    // Its stylesheet applies.
    let min_width = browser
        .client
        .execute(
            "return getComputedStyle(document.querySelector('.opblock-summary-method')).minWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(min_width, json!("80px"));
    // Nothing was blocked (violations before the observer are buffered for it).
    let violations = browser
        .client
        .execute_async(
            r#"
            const done = arguments[arguments.length - 1];
            const seen = [];
            const note = (reports) => {
                for (const report of reports) {
                    seen.push(`${report.body.effectiveDirective} ${report.body.blockedURL}`);
                }
            };
            const observer = new ReportingObserver(note, { types: ["csp-violation"], buffered: true });
            observer.observe();
            setTimeout(() => {
                note(observer.takeRecords());
                observer.disconnect();
                done(seen);
            }, 500);
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(violations, json!([]));
    browser.screenshot("api-docs.png").await;
    browser.close().await;
}

/// With the WebAssembly bundle blocked (Chrome DevTools `Network.setBlockedURLs`), the exported
/// log-in, register and reset pages are plain HTML forms. Pressing Enter, clicking the button or
/// submitting from script must not send the password anywhere, nor put it in the address (and so
/// in the history).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_submitted_before_the_app_is_live_send_the_password_nowhere() {
    let site = start_site().await;
    let browser = start_browser().await;
    browser.devtools("Network.enable", json!({})).await;
    browser
        .devtools(
            "Network.setBlockedURLs",
            json!({ "urls": ["*/bundle.wasm"] }),
        )
        .await;
    let password = "canary-passphrase-4711";
    let email = "ann@example.com";

    for (page, form, has_email) in [
        ("/login", "credentials", true),
        ("/register", "credentials", true),
        (
            "/reset-password#token=abc&email=ann%40example.com",
            "reset",
            false,
        ),
    ] {
        browser.client.goto(&site.url(page)).await.unwrap();
        let path = page.split('#').next().unwrap();
        assert!(
            browser.attribute("#submit", "disabled").await.is_some(),
            "{page}: the button waits for the app"
        );
        let loading = browser
            .client
            .find(Locator::Css("#not-live"))
            .await
            .unwrap();
        assert!(loading.is_displayed().await.unwrap(), "{page}: says why");
        if has_email {
            browser.fill("#email", email).await;
        }
        browser.fill("#password", password).await;
        // Enter in the password field, then a click, then the form's own submit from script
        // (which no disabled button can stop).
        let field = browser
            .client
            .find(Locator::Css("#password"))
            .await
            .unwrap();
        field.send_keys("\u{E007}").await.unwrap();
        browser
            .client
            .find(Locator::Css("#submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .client
            .execute(
                // (The button named `submit` shadows the form's own method.)
                "const form = document.getElementById(arguments[0]);
                 HTMLFormElement.prototype.requestSubmit.call(form);
                 HTMLFormElement.prototype.submit.call(form);",
                vec![json!(form)],
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let url = browser.client.current_url().await.unwrap();
        assert_eq!(url.path(), path, "{page}: no navigation");
        assert!(url.query().is_none(), "{page}: {url}");
        assert_ne!(
            browser.attribute("main", "data-hydrated").await.as_deref(),
            Some("true"),
            "{page}: the app never started"
        );
    }
    let requests = site.wire.requests();
    assert!(
        !requests.iter().any(|request| request.contains(".wasm")),
        "the browser blocked the bundle: {requests:#?}"
    );
    for request in &requests {
        assert!(
            !request.contains("canary") && !request.starts_with("POST"),
            "{request}"
        );
    }
    browser.close().await;
}

/// Ann is signed in in two tabs. In the second she opens the log-in page, which offers to
/// continue as her or to switch; switching ends her session on the server, and the first tab
/// follows at once: to the log-in page, then to Bob's account when he signs in, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_account_in_one_tab_ends_the_old_session_and_every_tab_follows() {
    let site = start_site().await;
    let browser = start_browser().await;
    let (ann, bob) = ("ann@example.com", "bob@example.com");
    site.register_and_log_in(bob).await;
    let [first, second] = browser.sign_in_with_two_tabs(&site, ann).await;

    browser.client.goto(&site.url("/login")).await.unwrap();
    assert_eq!(
        browser.text_of("#signed-in-as").await,
        format!("You are signed in as {ann}.")
    );
    assert!(
        browser.attribute("#email", "id").await.is_none(),
        "no form yet"
    );
    browser.click("#continue").await;
    browser.wait_for_path("/").await;
    assert_eq!(browser.text_of("#user-email").await, ann);

    browser.client.goto(&site.url("/login")).await.unwrap();
    browser.wait_for_element("#switch-account").await;
    let anns_refresh_token = browser.stored("latchkey.refresh_token").await.unwrap();
    browser.click("#switch-account").await;
    browser.wait_for_element("#email").await;
    assert!(
        site.refresh(anns_refresh_token).await.is_err(),
        "Ann's session ended on the server"
    );
    browser.switch_to(&first).await;
    browser.wait_for_path("/login").await;
    assert!(browser
        .text_of("#tab-notice")
        .await
        .starts_with("You were signed out in another tab"));

    browser.switch_to(&second).await;
    browser.submit_credentials(bob, PASSWORD).await;
    browser.wait_for_path("/").await;
    assert_eq!(browser.text_of("#user-email").await, bob);
    browser.switch_to(&first).await;
    browser.wait_for_path("/").await;
    browser.wait_for_text("#user-email", bob).await;
    assert!(browser
        .text_of("#tab-notice")
        .await
        .contains("another account"));
    browser.close().await;
}

/// A log-in that lands on tokens another tab stored meanwhile (unseen by this page) replaces
/// them, and ends their session on the server rather than leave it running unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_in_over_another_tabs_fresh_session_ends_that_session() {
    let site = start_site().await;
    let browser = start_browser().await;
    let (ann, bob) = ("ann@example.com", "bob@example.com");
    site.register_and_log_in(bob).await;
    let anns_session = site.register_and_log_in(ann).await;
    browser.client.goto(&site.url("/login")).await.unwrap();
    browser.wait_until_hydrated().await;
    browser.wait_for_element("#email").await;
    browser.store_tokens(&anns_session).await;
    browser.submit_credentials(bob, PASSWORD).await;
    browser.wait_for_path("/").await;
    assert_eq!(browser.text_of("#user-email").await, bob);
    assert!(
        site.refresh(anns_session.1).await.is_err(),
        "the replaced session ended on the server"
    );
    browser.close().await;
}

/// Another tab stores Bob's tokens over Ann's (a log-in racing this page): every open page
/// shows Bob at once and says why. A page that has not heard of a change sends nothing as the
/// account it does not show: its "Sign out everywhere" ends no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_follows_another_account_and_never_acts_as_it_unseen() {
    let site = start_site().await;
    let browser = start_browser().await;
    let (ann, bob) = ("ann@example.com", "bob@example.com");
    let bobs_tokens = site.register_and_log_in(bob).await;
    let [first, second] = browser.sign_in_with_two_tabs(&site, ann).await;

    browser.store_tokens(&bobs_tokens).await;
    browser.switch_to(&first).await;
    browser.wait_for_text("#user-email", bob).await;
    assert!(browser
        .text_of("#tab-notice")
        .await
        .contains("another account"));

    // Unseen: storage changed by this very page's script fires no event here. The page shows
    // Bob's sessions; Ann's new tokens are stored under it.
    browser.switch_to(&second).await;
    browser.client.goto(&site.url("/account")).await.unwrap();
    browser.session_rows(1).await;
    let anns_new_tokens = site.log_in(ann).await;
    let sent_before = site.wire.requests().len();
    browser.store_tokens(&anns_new_tokens).await;
    browser.click("#logout-all").await;
    browser.wait_for_element("#tab-notice").await;
    assert!(browser
        .text_of("#tab-notice")
        .await
        .contains("another account"));
    let sent = site.wire.requests().split_off(sent_before);
    assert!(
        !sent.iter().any(|request| request.contains("logout")),
        "nothing was sent: {sent:#?}"
    );
    let stored = browser.stored("latchkey.refresh_token").await.unwrap();
    site.refresh(stored).await.expect("Ann's session runs on");
    browser.close().await;
}

/// Logging out while a refresh in another tab rotates the tokens: the server ends the session
/// (whichever of its tokens it is told), and so every tab forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_while_another_tab_refreshes_signs_every_tab_out() {
    let site = start_site().await;
    let browser = start_browser().await;
    let email = "ann@example.com";
    let [first, second] = browser.sign_in_with_two_tabs(&site, email).await;
    wait_for_access_tokens_to_expire().await;

    site.wire.hold_logout.store(true, Ordering::SeqCst);
    browser.switch_to(&first).await;
    browser.click("#logout").await;
    tokio::time::timeout(PATIENCE, site.wire.logout_arrived.notified())
        .await
        .expect("the log-out request arrives");

    let sent_token = browser.stored("latchkey.refresh_token").await.unwrap();
    browser.switch_to(&second).await;
    let loads = browser.loads().await;
    browser.click("#reload").await;
    browser.wait_for_another_load(loads).await;
    let rotated = browser.stored("latchkey.refresh_token").await.unwrap();
    assert_ne!(rotated, sent_token, "the other tab refreshed meanwhile");

    site.wire.release_logout.notify_one();
    browser.switch_to(&first).await;
    browser.wait_for_path("/login").await;
    browser.wait_until_hydrated().await;
    browser.switch_to(&second).await;
    browser.wait_for_path("/login").await;
    assert_eq!(browser.stored("latchkey.refresh_token").await, None);
    assert!(site.refresh(rotated).await.is_err(), "the session is over");
    browser.close().await;
}

/// A browser app on another origin: logs in and reads the account, as a page of its own would,
/// and reports what it could read (or the browser's refusal).
const OTHER_ORIGIN_APP: &str = r#"<!doctype html>
<html><body><p id="out">running</p><script>
(async () => {
  const params = new URLSearchParams(location.search), api = params.get("api");
  const out = document.getElementById("out");
  try {
    const login = await fetch(api + "/api/auth/login", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: params.get("email"), password: params.get("password") }) });
    const tokens = await login.json();
    const me = await fetch(api + "/api/users/me",
      { headers: { Authorization: "Bearer " + tokens.access_token } });
    const user = await me.json();
    out.textContent = "read " + user.email + " request " + me.headers.get("X-Request-Id");
  } catch (e) {
    out.textContent = "refused " + e;
  }
})();
</script></body></html>"#;

/// latchkey lists one origin (`http://localhost:P`); a page there logs in and reads
/// `/api/users/me`, while the same page from `http://127.0.0.1:P` (another origin) is refused
/// by the browser before its log-in is even sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_on_a_listed_origin_signs_in_and_another_origin_is_refused() {
    let port = free_port();
    let listed = format!("http://localhost:{port}");
    let site = start_site_with({
        let listed = listed.clone();
        move |config| {
            config.set_cors(latchkey_http::CorsSettings {
                origins: latchkey_http::AllowedOrigins::Only(vec![listed]),
                max_age_secs: 600,
            })
        }
    })
    .await;
    let email = "ann@example.com";
    site.register_and_log_in(email).await;
    let app_server = tokio::spawn(
        poem::Server::new(poem::listener::TcpListener::bind(format!(
            "127.0.0.1:{port}"
        )))
        .run(poem::Route::new().at(
            "/app.html",
            poem::endpoint::make_sync(|_| poem::web::Html(OTHER_ORIGIN_APP)),
        )),
    );
    eventually("the app's server to listen", PATIENCE, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(drop)
    })
    .await;
    let browser = start_browser().await;
    let api = site.url("").trim_end_matches('/').to_owned();
    let page = |origin: &str| {
        format!("{origin}/app.html?api={api}&email={email}&password={PASSWORD}").replace(' ', "%20")
    };

    browser.client.goto(&page(&listed)).await.unwrap();
    let read = browser
        .text_where("#out", "done", |text| text != "running")
        .await;
    assert!(
        read.starts_with(&format!("read {email} request ")),
        "{read}"
    );
    assert!(
        read.len() > format!("read {email} request null").len(),
        "{read}"
    );

    let logins_before = logins(&site);
    browser
        .client
        .goto(&page(&format!("http://127.0.0.1:{port}")))
        .await
        .unwrap();
    let refused = browser
        .text_where("#out", "done", |text| text != "running")
        .await;
    assert!(refused.starts_with("refused TypeError"), "{refused}");
    assert_eq!(logins(&site), logins_before, "no log-in was sent");
    browser.close().await;
    app_server.abort();
}

fn logins(site: &Site) -> usize {
    site.wire
        .requests()
        .iter()
        .filter(|request| request.starts_with("POST /api/auth/login"))
        .count()
}
