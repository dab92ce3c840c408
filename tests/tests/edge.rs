//! The edge: the web site served from memory (paths, HEAD, compression, validators), the
//! security headers on every response, and a JSON 500 for a panicking handler.

use latchkey_bootstrap::Config;
use latchkey_http::{harden, EdgeSettings};
use latchkey_tests::{
    http::{spawn_app, Client, TestApp},
    Backend,
};
use poem::{
    http::{HeaderMap, StatusCode},
    test::{TestClient, TestResponse},
    Route,
};
use serde_json::{json, Value};
use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

const INDEX_HTML: &str = concat!(
    "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<style>body{margin:0}</style>",
    "<script type=\"module\">import init from \"/.perseus/bundle.js\"; ",
    "init(\"/.perseus/bundle.wasm\");</script>",
    "<script>window.__LATCHKEY_STATE = `home`;</script>",
    "<script src=\"/.perseus/bundle.js\" type=\"module\"></script>",
    "</head><body><div id=\"root\"><p>Home page</p></div></body></html>",
);
/// CRLF inside the script: browsers hash it as LF.
const LOGIN_HTML: &str = "<!DOCTYPE html><html><head><script>\r\nwindow.__LATCHKEY_PAGE = \
                          \"login\";\r\n</script></head><body><p>Log in</p></body></html>";
const PAGE_JSON: &str = r#"{"state":null,"head":"<title>Home</title>"}"#;
const SECRET: &str = "SECRET-OUTSIDE-THE-SITE";

// `printf %s '<script text>' | openssl dgst -sha256 -binary | base64`
const MODULE_SCRIPT_HASH: &str = "'sha256-vVLhHbR4faLV6RoSQ37VLb1Af6iMCP3wm0A2HTCV/tk='";
const STATE_SCRIPT_HASH: &str = "'sha256-UI2IUk5DamjumNqlod0cPyG6chs80coPOD4wcLZIKu8='";
const LOGIN_SCRIPT_HASH: &str = "'sha256-/J8PEe/ynosn/bXsvkw5/aMvWCAnQClMQVseebghdMM='";
const STYLE_HASH: &str = "'sha256-IAdwN3biDCQ3brrgp1m8kBEsPQYyqfREKOEfeoREopc='";
/// Of the empty string: what a `<script src>` element's (ignored) content would hash to.
const EMPTY_HASH: &str = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='";

fn wasm_bundle() -> Vec<u8> {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    for i in 0..2048u32 {
        wasm.extend_from_slice(&(i % 97).to_le_bytes());
    }
    wasm
}

fn js_glue() -> String {
    "export default async function init(url) { return fetch(url); }\n".repeat(40)
}

/// A Perseus-shaped export in a fresh directory, with a file beside it that must never be
/// served. Removed when dropped.
struct TempSite {
    root: PathBuf,
}

impl TempSite {
    fn create() -> Self {
        let root = std::env::temp_dir().join(format!("latchkey-edge-{}", uuid::Uuid::new_v4()));
        let site = root.join("site");
        let write = |path: &str, contents: &[u8]| {
            let path = site.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        };
        write("index.html", INDEX_HTML.as_bytes());
        write("login/index.html", LOGIN_HTML.as_bytes());
        write(".perseus/bundle.wasm", &wasm_bundle());
        write(".perseus/bundle.js", js_glue().as_bytes());
        write(".perseus/page/xx-XX/.json", PAGE_JSON.as_bytes());
        write(".perseus/tiny.txt", b"a");
        fs::write(root.join("Cargo.toml"), SECRET).unwrap();
        Self { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.join("site")
    }
}

impl Drop for TempSite {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

async fn app_with(site_dir: &Path, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app(Backend::Memory, |config| {
        config.site.dir = site_dir.to_owned();
        adjust(config);
    })
    .await
}

async fn app(site: &TempSite) -> TestApp {
    app_with(&site.dir(), |_| {}).await
}

/// Status, headers and raw body of a response.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    async fn from(response: TestResponse) -> Self {
        let response = response.0;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().into_vec().await.expect("body");
        Self {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{}: body is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The headers every response carries; `Cross-Origin-Resource-Policy: same-origin` too, as
    /// every response but the JWK Set's does.
    fn assert_hardened(&self) {
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(self.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(self.header("x-frame-options"), Some("DENY"));
        assert!(self.header("content-security-policy").is_some());
        assert_eq!(
            self.header("cross-origin-opener-policy"),
            Some("same-origin")
        );
        assert_eq!(
            self.header("cross-origin-resource-policy"),
            Some("same-origin")
        );
        assert_permissions_policy(self.header("permissions-policy"));
    }
}

/// Every feature `policy` names is off, but passkeys, which this origin (and no other) may use.
fn assert_permissions_policy(policy: Option<&str>) {
    let policy = policy.expect("a Permissions-Policy");
    let features: Vec<(&str, &str)> = policy
        .split(',')
        .map(|entry| entry.trim().split_once('=').expect("feature=allowlist"))
        .collect();
    for passkeys in ["publickey-credentials-get", "publickey-credentials-create"] {
        assert!(
            features.contains(&(passkeys, "(self)")),
            "{passkeys}: {policy}"
        );
    }
    for off in ["camera", "microphone", "geolocation", "payment", "usb"] {
        assert!(features.contains(&(off, "()")), "{off}: {policy}");
    }
    for (feature, allowlist) in features {
        if !feature.starts_with("publickey-credentials-") {
            assert_eq!(allowlist, "()", "{feature} is not off: {policy}");
        }
    }
}

async fn get(client: &Client, path: &str, accept_encoding: Option<&str>) -> Got {
    let mut request = client.get(path);
    if let Some(value) = accept_encoding {
        request = request.header("Accept-Encoding", value);
    }
    Got::from(request.send().await).await
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

#[tokio::test]
async fn the_site_has_security_headers_and_a_csp_allowing_exactly_its_inline_code() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;

    let index = get(client, "/", None).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.body, INDEX_HTML.as_bytes());
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert!(index.header("etag").is_some());
    index.assert_hardened();
    assert_eq!(index.header("strict-transport-security"), None);

    let csp = index.header("content-security-policy").unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        MODULE_SCRIPT_HASH,
        STATE_SCRIPT_HASH,
        // Every page's inline scripts, whichever page is loaded first.
        LOGIN_SCRIPT_HASH,
        &format!("style-src 'self' {STYLE_HASH}"),
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        // Every form is handled in script: one submitted natively before the app is live
        // would put the password in the URL.
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "`{part}` missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains(" 'unsafe-eval'"), "{csp}");
    assert!(
        !csp.contains(EMPTY_HASH),
        "a <script src> was hashed: {csp}"
    );
}

#[tokio::test]
async fn pages_resolve_as_in_the_perseus_export() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;

    for path in ["/login", "/login/", "/login/index.html"] {
        let page = get(client, path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_eq!(page.body, LOGIN_HTML.as_bytes(), "{path}");
    }
    let index = get(client, "/index.html", None).await;
    assert_eq!(index.body, INDEX_HTML.as_bytes());

    let page_data = get(client, "/.perseus/page/xx-XX/.json?entity_name=x", None).await;
    assert_eq!(page_data.status, StatusCode::OK);
    assert_eq!(page_data.header("content-type"), Some("application/json"));
    assert_eq!(page_data.body, PAGE_JSON.as_bytes());

    let missing = get(client, "/register", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"], "not_found");
    missing.assert_hardened();
    assert_eq!(
        missing.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
}

#[tokio::test]
async fn head_answers_as_get_does_without_the_body() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;

    for accept_encoding in [None, Some("br")] {
        for path in ["/", "/.perseus/bundle.wasm"] {
            let full = get(client, path, accept_encoding).await;
            let mut request = client.head(path);
            if let Some(value) = accept_encoding {
                request = request.header("Accept-Encoding", value);
            }
            let head = Got::from(request.send().await).await;
            assert_eq!(head.status, StatusCode::OK, "{path}");
            assert!(head.body.is_empty(), "{path}");
            let length = full
                .header("content-length")
                .expect("GET has a Content-Length");
            assert_eq!(length, full.body.len().to_string(), "{path}");
            assert_eq!(head.header("content-length"), Some(length), "{path}");
            for name in ["etag", "content-type", "content-encoding", "cache-control"] {
                assert_eq!(head.header(name), full.header(name), "{path}: {name}");
            }
            head.assert_hardened();
        }
    }
}

#[tokio::test]
async fn assets_are_sent_compressed_as_the_client_accepts() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;
    let wasm = wasm_bundle();
    let path = "/.perseus/bundle.wasm";

    let br = get(client, path, Some("gzip, deflate, br")).await;
    assert_eq!(br.status, StatusCode::OK);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.header("content-type"), Some("application/wasm"));
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    assert!(br.body.len() < wasm.len());
    assert_eq!(
        br.header("content-length"),
        Some(&*br.body.len().to_string())
    );
    assert_eq!(unbrotli(&br.body), wasm);

    let gzip = get(client, path, Some("gzip")).await;
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gzip.body), wasm);

    let refused_br = get(client, path, Some("br;q=0, gzip")).await;
    assert_eq!(refused_br.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&refused_br.body), wasm);

    let preferred_gzip = get(client, path, Some("br;q=0.2, gzip;q=0.9")).await;
    assert_eq!(preferred_gzip.header("content-encoding"), Some("gzip"));

    for accept_encoding in [None, Some("identity"), Some("")] {
        let plain = get(client, path, accept_encoding).await;
        assert_eq!(
            plain.header("content-encoding"),
            None,
            "{accept_encoding:?}"
        );
        assert_eq!(plain.body, wasm, "{accept_encoding:?}");
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    }

    let plain = get(client, path, None).await;
    let etags = [&br, &gzip, &plain].map(|got| got.header("etag").expect("an ETag"));
    assert!(
        etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2],
        "one ETag per encoding: {etags:?}"
    );

    let js = get(client, "/.perseus/bundle.js", Some("gzip, br")).await;
    assert_eq!(js.header("content-encoding"), Some("br"));
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(unbrotli(&js.body), js_glue().as_bytes());

    // Compressing one byte only makes it bigger: only the original is kept.
    let tiny = get(client, "/.perseus/tiny.txt", Some("gzip, br")).await;
    assert_eq!(tiny.header("content-encoding"), None);
    assert_eq!(tiny.body, b"a");

    // Nothing acceptable is available.
    let refused = get(client, "/.perseus/tiny.txt", Some("br, identity;q=0")).await;
    assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn a_matching_if_none_match_gives_304() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;
    let path = "/.perseus/bundle.wasm";

    let first = get(client, path, Some("br")).await;
    let etag = first.header("etag").expect("an ETag").to_owned();
    for presented in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        let again = Got::from(
            client
                .get(path)
                .header("Accept-Encoding", "br")
                .header("If-None-Match", presented.as_str())
                .send()
                .await,
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{presented}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(again.header("vary"), Some("Accept-Encoding"));
        again.assert_hardened();
    }

    // The brotli ETag does not validate the gzip representation, nor does a stale one.
    for (accept_encoding, presented) in [("gzip", etag.as_str()), ("br", "\"stale\"")] {
        let changed = Got::from(
            client
                .get(path)
                .header("Accept-Encoding", accept_encoding)
                .header("If-None-Match", presented)
                .send()
                .await,
        )
        .await;
        assert_eq!(
            changed.status,
            StatusCode::OK,
            "{accept_encoding} {presented}"
        );
        assert!(!changed.body.is_empty());
    }

    let index_etag = get(client, "/", None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let index = Got::from(
        client
            .get("/")
            .header("If-None-Match", index_etag.as_str())
            .send()
            .await,
    )
    .await;
    assert_eq!(index.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn nothing_outside_the_site_is_ever_served() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;

    for path in [
        "/../Cargo.toml",
        "/login/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/Cargo.toml",
        "/.%2e/Cargo.toml",
        "/%2e%2e%2fCargo.toml",
        "/login/..%2f..%2fCargo.toml",
        "/..%5cCargo.toml",
        "/%2e%2e%5cCargo.toml",
        "/login/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let got = get(client, path, None).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !String::from_utf8_lossy(&got.body).contains(SECRET),
            "{path} served a file outside the site"
        );
        assert_eq!(got.json()["error"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;

    for response in [
        client.post("/").send().await,
        client.put("/login").send().await,
        client.delete("/.perseus/bundle.wasm").send().await,
    ] {
        let got = Got::from(response).await;
        assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(got.header("allow"), Some("GET, HEAD"));
        assert_eq!(got.json()["error"], "method_not_allowed");
        got.assert_hardened();
    }
}

#[tokio::test]
async fn api_responses_are_never_stored_and_carry_a_strict_csp() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;
    let strict = Some("default-src 'none'; frame-ancestors 'none'");

    for path in ["/api/users/me", "/api/auth/session"] {
        let unauthorized = get(client, path, None).await;
        assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            unauthorized.header("cache-control"),
            Some("no-store"),
            "{path}"
        );
        assert_eq!(
            unauthorized.header("content-security-policy"),
            strict,
            "{path}"
        );
        unauthorized.assert_hardened();
    }

    let live = get(client, "/api/health/live", None).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.header("cache-control"), Some("no-store"));
    assert_eq!(live.header("content-security-policy"), strict);
    live.assert_hardened();

    let unknown = get(client, "/api/no-such-thing", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.header("cache-control"), Some("no-store"));

    // The public document may be cached; the Swagger UI page has a policy of its own.
    let document = get(client, "/api/openapi.json", None).await;
    assert_eq!(document.status, StatusCode::OK);
    assert_ne!(document.header("cache-control"), Some("no-store"));
    assert_eq!(document.header("content-security-policy"), strict);
    let docs = get(client, "/api/docs", None).await;
    assert_ne!(docs.header("content-security-policy"), strict);
    docs.assert_hardened();
    // Anything else under /api/docs is an API error with the strict policy.
    let missing = get(client, "/api/docs/nothing-here", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("content-security-policy"), strict);
}

/// The text of every inline `<script>` (one without `src`) and of every `<style>` of `html`, as
/// written. Enough for generated HTML: an element's text runs to its closing tag, and what it
/// holds (Swagger UI's code mentions `<style` and `<script`) is not searched for tags.
fn inline_code(html: &str) -> (Vec<String>, Vec<String>) {
    let (mut scripts, mut styles) = (Vec::new(), Vec::new());
    let mut rest = html;
    loop {
        let next = ["script", "style"]
            .into_iter()
            .filter_map(|tag| rest.find(&format!("<{tag}")).map(|at| (at, tag)))
            .min();
        let Some((at, tag)) = next else {
            break;
        };
        let element = &rest[at..];
        let start_tag_end = element.find('>').expect("the start tag ends");
        let attributes = &element[..start_tag_end];
        let content = &element[start_tag_end + 1..];
        let close = content
            .find(&format!("</{tag}>"))
            .expect("the element is closed");
        let text = content[..close].to_owned();
        if tag == "style" {
            styles.push(text);
        } else if !attributes.contains("src=") {
            scripts.push(text);
        }
        rest = &content[close..];
    }
    (scripts, styles)
}

/// The CSP source expression allowing inline code `text`.
fn hash_source(text: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.replace("\r\n", "\n").as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The sources of `directive` in `policy`.
fn directive<'a>(policy: &'a str, directive: &str) -> Vec<&'a str> {
    policy
        .split(';')
        .map(str::trim)
        .find_map(|part| part.strip_prefix(directive).filter(|s| s.starts_with(' ')))
        .map(|sources| sources.split_whitespace().collect())
        .unwrap_or_else(|| panic!("no {directive} in {policy}"))
}

#[tokio::test]
async fn the_docs_page_allows_exactly_its_own_inline_scripts_and_styles() {
    let app = spawn_app(Backend::Memory, |_| {}).await;
    let docs = get(&app.client, "/api/docs", None).await;
    assert_eq!(docs.status, StatusCode::OK);
    docs.assert_hardened();
    let policy = docs
        .header("content-security-policy")
        .expect("a policy")
        .to_owned();
    let html = String::from_utf8(docs.body.clone()).expect("UTF-8 HTML");

    // Swagger UI, and the script starting it with the document: each by its hash, nothing else.
    let (scripts, styles) = inline_code(&html);
    assert!(scripts.len() >= 2, "{} inline scripts", scripts.len());
    let mut expected: Vec<String> = scripts.iter().map(|s| hash_source(s)).collect();
    expected.sort();
    expected.dedup();
    let mut allowed: Vec<String> = directive(&policy, "script-src")
        .into_iter()
        .map(str::to_owned)
        .collect();
    allowed.sort();
    assert_eq!(allowed, expected, "{policy}");

    assert!(!styles.is_empty());
    let mut expected: Vec<String> = styles.iter().map(|s| hash_source(s)).collect();
    expected.sort();
    expected.dedup();
    let mut allowed: Vec<String> = directive(&policy, "style-src")
        .into_iter()
        .map(str::to_owned)
        .collect();
    allowed.sort();
    assert_eq!(allowed, expected, "{policy}");

    for (name, sources) in [
        ("default-src", vec!["'none'"]),
        ("object-src", vec!["'none'"]),
        ("base-uri", vec!["'none'"]),
        ("form-action", vec!["'none'"]),
        ("frame-ancestors", vec!["'none'"]),
        ("connect-src", vec!["'self'"]),
        ("img-src", vec!["data:"]),
    ] {
        assert_eq!(directive(&policy, name), sources, "{policy}");
    }
    // (No quote, colon or star is base64: these are not in any hash.)
    assert!(!policy.contains("'unsafe"), "{policy}");
    assert!(!policy.contains("http:"), "no other origin: {policy}");
    assert!(!policy.contains("https:"), "no other origin: {policy}");
    assert!(!policy.contains('*'), "no wildcard: {policy}");
}

#[tokio::test]
async fn hsts_is_sent_only_when_configured() {
    let site = TempSite::create();
    let without = app(&site).await;
    let without = &without.client;
    let with = app_with(&site.dir(), |config| {
        config.http.hsts_max_age_secs = Some(31_536_000);
    })
    .await;
    let with = &with.client;

    for path in ["/", "/api/health/live", "/nope"] {
        let got = get(with, path, None).await;
        assert_eq!(
            got.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{path}"
        );
        let got = get(without, path, None).await;
        assert_eq!(got.header("strict-transport-security"), None, "{path}");
    }
}

#[tokio::test]
async fn only_the_key_set_may_be_loaded_by_other_origins() {
    let site = TempSite::create();
    let app = app(&site).await;
    let client = &app.client;

    let key_set = get(client, "/.well-known/jwks.json", None).await;
    assert_eq!(key_set.status, StatusCode::OK);
    assert_eq!(
        key_set.header("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert_eq!(
        key_set.header("cross-origin-opener-policy"),
        Some("same-origin")
    );
    assert_permissions_policy(key_set.header("permissions-policy"));

    let unauthorized = get(client, "/api/users/me", None).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    let index = get(client, "/", None).await;
    assert_eq!(index.status, StatusCode::OK);
    let missing = get(client, "/.well-known/other.json", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for got in [&unauthorized, &index, &missing] {
        assert_eq!(
            got.header("cross-origin-resource-policy"),
            Some("same-origin"),
            "{}",
            got.status
        );
        got.assert_hardened();
    }
}

#[tokio::test]
async fn without_a_site_the_api_is_served_and_every_other_path_is_a_hardened_404() {
    let missing = std::env::temp_dir().join(format!("latchkey-no-site-{}", uuid::Uuid::new_v4()));
    assert!(latchkey_http::site_endpoint(&missing).unwrap().is_none());
    let app = app_with(&missing, |_| {}).await;
    let client = &app.client;

    let root = get(client, "/", None).await;
    assert_eq!(root.status, StatusCode::NOT_FOUND);
    assert_eq!(root.json()["error"], "not_found");
    root.assert_hardened();
    assert_eq!(
        get(client, "/api/health/live", None).await.status,
        StatusCode::OK
    );
}

#[poem::handler]
fn explode() -> &'static str {
    panic!("a detail that must stay in the log")
}

#[tokio::test]
async fn a_panicking_handler_answers_a_json_500() {
    let endpoint = harden(
        Route::new()
            .at("/api/explode", poem::get(explode))
            .at("/explode", poem::get(explode)),
        EdgeSettings {
            hsts_max_age_secs: Some(60),
            ..EdgeSettings::default()
        },
    );
    let client = TestClient::new(endpoint);

    for path in ["/api/explode", "/explode"] {
        let got = Got::from(client.get(path).send().await).await;
        assert_eq!(got.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(
            got.json(),
            json!({"error": "internal_error", "message": "an unexpected error occurred"})
        );
        assert!(!String::from_utf8_lossy(&got.body).contains("detail"));
        got.assert_hardened();
        assert_eq!(
            got.header("strict-transport-security"),
            Some("max-age=60; includeSubDomains")
        );
    }
    // The server is still there for the next request.
    let again = Got::from(client.get("/api/explode").send().await).await;
    assert_eq!(again.status, StatusCode::INTERNAL_SERVER_ERROR);
}
