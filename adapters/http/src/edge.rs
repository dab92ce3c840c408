//! What every response gets, whatever produced it: security headers, `Cache-Control: no-store`
//! on the API, and a JSON 500 instead of a dropped connection when a handler panics.

use poem::{
    http::{header, HeaderMap, HeaderValue},
    middleware::CatchPanic,
    Endpoint, EndpointExt, IntoResponse, Request, Response, Result,
};
use std::any::Any;

/// Settings of the hardening layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeSettings {
    /// `Strict-Transport-Security: max-age=N; includeSubDomains` on every response when set.
    /// Only for a deployment served over HTTPS (browsers ignore it over plain HTTP).
    pub hsts_max_age_secs: Option<u64>,
}

/// The policy for API responses (JSON, nothing to run or embed), and for error responses that
/// did not set their own.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";
/// The Swagger UI page inlines its scripts and styles: only framing is forbidden there.
const DOCS_CONTENT_SECURITY_POLICY: &str = "frame-ancestors 'none'";
/// Nothing the site or the API does needs the `Referer`: the API authenticates with bearer
/// tokens (no CSRF check reads it), and the site links nowhere else. Sending none keeps page
/// paths out of other sites' logs.
const REFERRER_POLICY: &str = "no-referrer";
pub(crate) const NO_STORE: &str = "no-store";

/// Wraps `ep` so that a panic becomes a JSON 500 and every response carries the security
/// headers. Apply it outermost, so that error responses get the headers too.
///
/// - every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
///   `X-Frame-Options: DENY`, and `Strict-Transport-Security` when configured;
/// - `/api/*` but the OpenAPI document and `/api/docs*`: `Cache-Control: no-store` unless the
///   handler set one (responses carry user data and tokens);
/// - `/api/*` but `/api/docs*`: `Content-Security-Policy: default-src 'none'; frame-ancestors
///   'none'` unless set; `/api/docs*`: `frame-ancestors 'none'` only;
/// - everything else (the site): the site sets its own policy; a response without one (a 404,
///   or no site at all) gets the API's strict policy.
pub fn harden<E: Endpoint + 'static>(
    ep: E,
    settings: EdgeSettings,
) -> impl Endpoint<Output = Response> {
    let hsts = settings.hsts_max_age_secs.map(|secs| {
        HeaderValue::from_str(&format!("max-age={secs}; includeSubDomains"))
            .expect("digits make a valid header value")
    });
    Hardened {
        inner: ep.with(CatchPanic::new().with_handler(panic_response)),
        hsts,
    }
}

struct Hardened<E> {
    inner: E,
    hsts: Option<HeaderValue>,
}

impl<E: Endpoint> Endpoint for Hardened<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let area = Area::of(req.uri().path());
        let mut response = match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(err) => err.into_response(),
        };
        self.add_headers(area, response.headers_mut());
        Ok(response)
    }
}

impl<E> Hardened<E> {
    fn add_headers(&self, area: Area, headers: &mut HeaderMap) {
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static(REFERRER_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if let Some(hsts) = &self.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if area == Area::Api && !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        }
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            let policy = match area {
                Area::Docs => DOCS_CONTENT_SECURITY_POLICY,
                Area::Api | Area::ApiDocument | Area::Site => API_CONTENT_SECURITY_POLICY,
            };
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(policy),
            );
        }
    }
}

/// Which part of the server a request path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Area {
    /// `/api/*`: JSON carrying user data and tokens.
    Api,
    /// `/api/openapi.json`: public and cacheable.
    ApiDocument,
    /// `/api/docs*`: the Swagger UI page and its assets.
    Docs,
    /// Everything else: the web site.
    Site,
}

impl Area {
    fn of(path: &str) -> Self {
        if path == "/api/openapi.json" {
            Self::ApiDocument
        } else if path == "/api/docs" || path.starts_with("/api/docs/") {
            Self::Docs
        } else if path == "/api" || path.starts_with("/api/") {
            Self::Api
        } else {
            Self::Site
        }
    }
}

/// The response for a panicking handler: the panic goes to the log, never to the client.
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    crate::ApiError::internal(&format_args!("a request handler panicked: {message}"))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        assert_eq!(Area::of("/api/users/me"), Area::Api);
        assert_eq!(Area::of("/api"), Area::Api);
        assert_eq!(Area::of("/api/openapi.json"), Area::ApiDocument);
        assert_eq!(Area::of("/api/docs"), Area::Docs);
        assert_eq!(Area::of("/api/docs/index.css"), Area::Docs);
        assert_eq!(Area::of("/api/docsx"), Area::Api);
        assert_eq!(Area::of("/"), Area::Site);
        assert_eq!(Area::of("/apix"), Area::Site);
        assert_eq!(Area::of("/login"), Area::Site);
    }
}
