//! What every response gets, whatever produced it: security headers, `Cache-Control: no-store`
//! on the API, and a JSON 500 instead of a dropped connection when a handler panics; and the
//! same for the replies the server loop writes itself ([`LoopReplies`]).

use crate::{ErrorBody, ErrorCode};
use poem::{
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    middleware::CatchPanic,
    Endpoint, EndpointExt, IntoResponse, Request, Response, Result,
};
use poem_openapi::types::ToJSON;
use std::any::Any;

/// Settings of the hardening layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeSettings {
    /// `Strict-Transport-Security: max-age=N; includeSubDomains` on every response when set.
    /// Only for a deployment served over HTTPS (browsers ignore it over plain HTTP).
    pub hsts_max_age_secs: Option<u64>,
    /// Which other origins may read the loop's own replies (as they may the app's).
    pub cors: crate::CorsSettings,
}

/// The policy for API responses (JSON, nothing to run or embed), and for error responses that
/// did not set their own. The Swagger UI page (`/api/docs`) sets its own, allowing exactly its
/// inline scripts and styles (see `site::docs_content_security_policy`).
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";
/// Nothing the site or the API does needs the `Referer`: the API authenticates with bearer
/// tokens (no CSRF check reads it), and the site links nowhere else. Sending none keeps page
/// paths out of other sites' logs.
const REFERRER_POLICY: &str = "no-referrer";
pub(crate) const NO_STORE: &str = "no-store";
/// Turns off the powerful features neither the site nor the API uses, so that a script that
/// ever ran on this origin could not ask for a camera, a microphone, a location or a device.
/// Passkeys (WebAuthn) stay allowed, for this origin only. Only names Chromium recognizes are
/// listed: an unknown one costs a console warning on every page (which is why
/// `interest-cohort`, `battery` and `ambient-light-sensor` are absent).
const PERMISSIONS_POLICY: &str = "accelerometer=(), autoplay=(), camera=(), \
     display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), \
     hid=(), idle-detection=(), magnetometer=(), microphone=(), midi=(), payment=(), \
     picture-in-picture=(), publickey-credentials-create=(self), \
     publickey-credentials-get=(self), screen-wake-lock=(), serial=(), usb=(), \
     xr-spatial-tracking=()";
/// Pages of this origin share no browsing context group with pages of others (no `opener`
/// handle across origins, either way).
const CROSS_ORIGIN_OPENER_POLICY: &str = "same-origin";

/// Wraps `ep` so that a panic becomes a JSON 500 and every response carries the security
/// headers. Apply it outermost, so that error responses get the headers too.
///
/// - every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
///   `X-Frame-Options: DENY`, `Cross-Origin-Opener-Policy: same-origin`,
///   `Cross-Origin-Resource-Policy: same-origin` (`cross-origin` for the JWK Set),
///   a `Permissions-Policy` that turns off unused powerful features, and
///   `Strict-Transport-Security` when configured;
/// - `/api/*` but the OpenAPI document and `/api/docs*`: `Cache-Control: no-store` unless the
///   handler set one (responses carry user data and tokens);
/// - `/api/*`: `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` unless
///   set (the Swagger UI page sets its own, by the hashes of its inline code);
/// - everything else (the site): the site sets its own policy; a response without one (a 404,
///   or no site at all) gets the API's strict policy.
pub fn harden<E: Endpoint + 'static>(
    ep: E,
    settings: EdgeSettings,
) -> impl Endpoint<Output = Response> {
    Hardened {
        inner: ep.with(CatchPanic::new().with_handler(panic_response)),
        hsts: hsts_header(&settings),
    }
}

/// `ep` with a panic answered as a JSON 500 instead of a dropped connection.
pub(crate) fn catch_panics<E: Endpoint>(ep: E) -> impl Endpoint<Output = Response> {
    ep.with(CatchPanic::new().with_handler(panic_response))
}

fn hsts_header(settings: &EdgeSettings) -> Option<HeaderValue> {
    settings.hsts_max_age_secs.map(|secs| {
        HeaderValue::from_str(&format!("max-age={secs}; includeSubDomains"))
            .expect("digits make a valid header value")
    })
}

/// The replies the server loop writes itself, for requests that never reach an endpoint: one
/// that is not valid HTTP/1.1 (400), one whose request line and headers are larger than the
/// server accepts (431, or 414 when the target alone is too long) and one whose head did not
/// arrive in time (408). Each carries what [`harden`] gives an API error (security headers,
/// `Cache-Control: no-store`, the strict policy), an `X-Request-Id` and the JSON error body,
/// and closes the connection.
#[derive(Clone, Debug)]
pub struct LoopReplies {
    headers: HeaderMap,
    cors: crate::CorsSettings,
}

impl LoopReplies {
    pub fn new(settings: EdgeSettings) -> Self {
        let mut headers = HeaderMap::new();
        let hardened = Hardened {
            inner: (),
            hsts: hsts_header(&settings),
        };
        hardened.add_headers(Area::Api, &mut headers);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        Self {
            headers,
            cors: settings.cors,
        }
    }

    /// The whole HTTP/1.1 reply for `status`, under a request id of its own, logged with the
    /// status as the request's line (target `latchkey::request`) so that the id finds it.
    pub fn render(&self, status: StatusCode) -> Vec<u8> {
        self.render_for(status, None, None)
    }

    /// Whether replies depend on the request's target and `Origin` (CORS is on), so that the
    /// loop should keep them from the head it refuses.
    pub fn reads_requests(&self) -> bool {
        !self.cors.is_off()
    }

    /// [`Self::render`] for a request to `target` that came with `origin` (as far as they
    /// could be read): readable by that origin when it is allowed there.
    pub fn render_for(
        &self,
        status: StatusCode,
        target: Option<&[u8]>,
        origin: Option<&[u8]>,
    ) -> Vec<u8> {
        let (code, message) = match status.as_u16() {
            400 => (
                ErrorCode::BadRequest,
                "the request is not valid HTTP/1.1 (its request line or a header is malformed)",
            ),
            408 => (
                ErrorCode::RequestTimeout,
                "the request's headers did not arrive in time",
            ),
            414 => (
                ErrorCode::HeadersTooLarge,
                "the request target is longer than the server accepts",
            ),
            431 => (
                ErrorCode::HeadersTooLarge,
                "the request line and headers are larger than the server accepts",
            ),
            500..=599 => (ErrorCode::InternalError, "an unexpected error occurred"),
            _ => (
                ErrorCode::BadRequest,
                "the server could not read the request",
            ),
        };
        let request_id = crate::observe::generated_id();
        tracing::info!(
            target: "latchkey::request",
            request_id = %request_id,
            status = status.as_u16(),
            refused = code.as_str(),
            "request"
        );
        let mut body = ErrorBody::new(code, message);
        body.request_id = Some(request_id.clone());
        let body = body.to_json_string();
        let mut reply = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("Error")
        )
        .into_bytes();
        let cors = crate::cors::reply_headers(&self.cors, target, origin);
        for (name, value) in self.headers.iter().chain(cors.iter()) {
            reply.extend_from_slice(name.as_str().as_bytes());
            reply.extend_from_slice(b": ");
            reply.extend_from_slice(value.as_bytes());
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(
            format!(
                "x-request-id: {request_id}\r\ndate: {}\r\ncontent-length: {}\r\n\r\n",
                chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
                body.len()
            )
            .as_bytes(),
        );
        reply.extend_from_slice(body.as_bytes());
        reply
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
        headers.insert(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static(CROSS_ORIGIN_OPENER_POLICY),
        );
        // Other origins' pages may not load our responses as scripts, images or the like (no
        // cross-origin leaks of user data); the JWK Set is public and meant for everyone.
        headers.insert(
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static(if area == Area::PublicKeys {
                "cross-origin"
            } else {
                "same-origin"
            }),
        );
        headers.insert(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(PERMISSIONS_POLICY),
        );
        if let Some(hsts) = &self.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if area == Area::Api && !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        }
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(API_CONTENT_SECURITY_POLICY),
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
    /// [`crate::JWKS_PATH`]: the public keys, fetched by other services and origins.
    PublicKeys,
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
        } else if path == crate::JWKS_PATH {
            Self::PublicKeys
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
        assert_eq!(Area::of("/.well-known/jwks.json"), Area::PublicKeys);
        assert_eq!(Area::of("/.well-known/jwks.jsonx"), Area::Site);
        assert_eq!(Area::of("/.well-known/"), Area::Site);
    }

    #[test]
    fn a_loop_reply_is_hardened_and_carries_the_json_error_body() {
        let replies = LoopReplies::new(EdgeSettings {
            hsts_max_age_secs: Some(60),
            ..EdgeSettings::default()
        });
        let reply = String::from_utf8(replies.render(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
            .expect("ASCII");
        let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
        let mut lines = head.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("HTTP/1.1 431 Request Header Fields Too Large")
        );
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("a header line");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-content-type-options"), Some("nosniff"));
        assert_eq!(header("x-frame-options"), Some("DENY"));
        assert_eq!(header("referrer-policy"), Some("no-referrer"));
        assert_eq!(header("cross-origin-opener-policy"), Some("same-origin"));
        assert_eq!(header("cross-origin-resource-policy"), Some("same-origin"));
        assert_eq!(header("permissions-policy"), Some(PERMISSIONS_POLICY));
        assert_eq!(header("cache-control"), Some("no-store"));
        assert_eq!(
            header("content-security-policy"),
            Some(API_CONTENT_SECURITY_POLICY)
        );
        assert_eq!(
            header("strict-transport-security"),
            Some("max-age=60; includeSubDomains")
        );
        assert_eq!(header("connection"), Some("close"));
        assert_eq!(
            header("content-length"),
            Some(body.len().to_string().as_str())
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(json["error"], "headers_too_large");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        let id = json["request_id"].as_str().expect("a request id");
        assert_eq!(header("x-request-id"), Some(id));
        // Each reply has an id of its own.
        assert!(!String::from_utf8_lossy(&replies.render(StatusCode::BAD_REQUEST)).contains(id));
    }
}
