//! Cross-origin calls from browsers (CORS): apps on other origins that are allowed by name may
//! call the API and fetch the JWK Set, and read the answers (errors included).
//!
//! The API authenticates with bearer tokens, never cookies, so no response allows credentials:
//! an allowed origin gets no more than any non-browser client already has.

use crate::contract::AllowTable;
use poem::{
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    Endpoint, IntoResponse, Request, Response, Result,
};
use std::sync::Arc;

/// Which origins may call the API from a browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Exactly these, as browsers write an `Origin` (`https://app.example.com`, lower case, no
    /// default port, no path). Empty: the API's own origin only, as without CORS.
    Only(Vec<String>),
    /// Any origin (`*`); for development only.
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsSettings {
    pub origins: AllowedOrigins,
    /// How long a browser may reuse a preflight's answer (`Access-Control-Max-Age`).
    pub max_age_secs: u32,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            origins: AllowedOrigins::Only(Vec::new()),
            max_age_secs: 600,
        }
    }
}

impl CorsSettings {
    pub(crate) fn is_off(&self) -> bool {
        self.origins == AllowedOrigins::Only(Vec::new())
    }

    /// The `Access-Control-Allow-Origin` for a request from `origin`, if it is allowed.
    /// Compared whole, byte for byte: never by prefix or suffix.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            AllowedOrigins::Any => Some(HeaderValue::from_static("*")),
            AllowedOrigins::Only(origins) => origins
                .iter()
                .any(|allowed| allowed.as_bytes() == origin.as_bytes())
                .then(|| origin.clone()),
        }
    }
}

/// The CORS headers of a reply the server loop writes itself, for a request to `target` that
/// came with `origin` (raw, as far as they could be read from a head the loop refused).
pub(crate) fn reply_headers(
    settings: &CorsSettings,
    target: Option<&[u8]>,
    origin: Option<&[u8]>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let path = target
        .and_then(|target| std::str::from_utf8(target).ok())
        .map(|target| target.split(['?', '#']).next().unwrap_or_default());
    if settings.is_off() || !path.is_some_and(is_shared) {
        return headers;
    }
    vary(&mut headers, "Origin");
    let origin = match &settings.origins {
        AllowedOrigins::Any => Some(HeaderValue::from_static("*")),
        AllowedOrigins::Only(_) => origin
            .and_then(|origin| HeaderValue::from_bytes(origin).ok())
            .and_then(|origin| settings.allow_origin(&origin)),
    };
    if let Some(origin) = origin {
        allow(&mut headers, origin);
    }
    headers
}

/// What an allowed origin's actual (not preflight) response carries.
fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

/// What an app may read of a response besides the CORS-safelisted headers: how long to wait
/// after a 429 or 503, the id to report, and why a token was refused.
const EXPOSED_HEADERS: &str = "Retry-After, X-Request-Id, WWW-Authenticate";
/// What an app may send besides the safelisted headers.
const ALLOWED_HEADERS: &str = "Content-Type, Authorization, X-Request-Id";
const ACCESS_CONTROL_REQUEST_METHOD: &str = "access-control-request-method";

/// Whether `path` answers other origins: the API and the JWK Set, not the web site.
fn is_shared(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == crate::JWKS_PATH
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub(crate) fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers preflights itself (no handler, store call or budget is spent on them) and adds
/// the CORS headers to every other response of a shared path. Put it outside everything that
/// can answer, so that errors carry the headers too.
pub(crate) struct Cors<E> {
    inner: E,
    settings: Arc<CorsSettings>,
    routes: AllowTable,
}

impl<E> Cors<E> {
    pub(crate) fn new(inner: E, settings: CorsSettings, routes: AllowTable) -> Self {
        Self {
            inner,
            settings: Arc::new(settings),
            routes,
        }
    }
}

impl<E: Endpoint> Endpoint for Cors<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        if self.settings.is_off() || !is_shared(req.uri().path()) {
            return Ok(self.inner.call(req).await?.into_response());
        }
        let allowed = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|origin| self.settings.allow_origin(origin));
        if is_preflight(&req) {
            return Ok(self.preflight(req.uri().path(), allowed));
        }
        let mut response = match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        let headers = response.headers_mut();
        vary(headers, "Origin");
        if let Some(origin) = allowed {
            allow(headers, origin);
        }
        Ok(response)
    }
}

impl<E> Cors<E> {
    /// 204 with what the path allows, for an allowed origin and a documented path; a bare 204
    /// otherwise, which the browser takes as a refusal.
    fn preflight(&self, path: &str, allowed: Option<HeaderValue>) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        vary(
            headers,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
        if let (Some(origin), Some(methods)) = (allowed, self.routes.allowed(path)) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods.clone());
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(self.settings.max_age_secs),
            );
        }
        response
    }
}

fn vary(headers: &mut HeaderMap, on: &'static str) {
    headers.append(header::VARY, HeaderValue::from_static(on));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            origins: AllowedOrigins::Only(origins.iter().map(|o| o.to_string()).collect()),
            max_age_secs: 600,
        }
    }

    #[test]
    fn origins_are_compared_whole() {
        let settings = only(&["https://app.example.com", "http://localhost:3000"]);
        let allowed = |origin: &'static str| {
            settings
                .allow_origin(&HeaderValue::from_static(origin))
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(
            allowed("https://app.example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            allowed("http://localhost:3000").as_deref(),
            Some("http://localhost:3000")
        );
        for refused in [
            "https://app.example.com.evil.test",
            "https://evil-app.example.com",
            "https://app.example.co",
            "http://app.example.com",
            "https://app.example.com:8443",
            "http://localhost:3001",
            "http://localhost",
            "null",
            "",
            "https://APP.example.com",
        ] {
            assert_eq!(allowed(refused), None, "{refused}");
        }
        let any = CorsSettings {
            origins: AllowedOrigins::Any,
            max_age_secs: 600,
        };
        assert_eq!(
            any.allow_origin(&HeaderValue::from_static("null")),
            Some(HeaderValue::from_static("*"))
        );
    }

    #[test]
    fn only_the_api_and_the_key_set_are_shared() {
        assert!(is_shared("/api/users/me"));
        assert!(is_shared("/api"));
        assert!(is_shared("/.well-known/jwks.json"));
        assert!(!is_shared("/"));
        assert!(!is_shared("/login"));
        assert!(!is_shared("/apix"));
        assert!(!is_shared("/metrics"));
    }
}
