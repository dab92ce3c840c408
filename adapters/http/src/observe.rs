//! Per request: an id, one log line, and the request metrics.
//!
//! The id comes from `X-Request-Id` when a trusted proxy sent it (so one id follows a request
//! through the proxy's log and ours), and is made here otherwise. It is echoed in the
//! `X-Request-Id` response header and in every error body, and every log line written while
//! the request is handled carries it (the `request` span).

use crate::{client::TrustedProxies, contract::AllowTable};
use poem::{
    http::{HeaderValue, Method},
    Endpoint, Request, Response,
};
use std::{
    fmt::Display,
    sync::{Arc, OnceLock},
    time::Instant,
};
use tracing::Instrument;

const REQUEST_ID: &str = "x-request-id";
/// Longer ids, or ids with other characters, are replaced: they end up in logs and bodies.
const MAX_REQUEST_ID_CHARS: usize = 128;

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

struct RequestContext {
    id: String,
    user: OnceLock<String>,
}

/// The id of the request being handled on this task, if any.
pub(crate) fn current_request_id() -> Option<String> {
    CURRENT.try_with(|context| context.id.clone()).ok()
}

/// Names the signed-in user in the request's log line (first call wins).
pub(crate) fn note_user(user: impl Display) {
    let _ = CURRENT.try_with(|context| context.user.set(user.to_string()));
}

#[derive(Clone)]
pub(crate) struct Observer {
    pub(crate) routes: AllowTable,
    pub(crate) proxies: TrustedProxies,
}

impl Observer {
    pub(crate) async fn observe<E: Endpoint<Output = Response>>(
        &self,
        next: E,
        req: Request,
    ) -> poem::Result<Response> {
        let started = Instant::now();
        let id = self.request_id(&req);
        let method = method_label(req.method());
        let route = self.route_label(req.uri().path());
        let preflight = crate::cors::is_preflight(&req);
        let context = Arc::new(RequestContext {
            id,
            user: OnceLock::new(),
        });
        let span = tracing::info_span!("request", request_id = %context.id);
        let mut response = CURRENT
            .scope(context.clone(), next.call(req).instrument(span))
            .await
            .unwrap_or_else(|error| error.into_response());
        if let Ok(value) = HeaderValue::from_str(&context.id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        let status = response.status().as_u16();
        // Preflights the CORS layer answered (204, before any routing) cost nothing: counted on
        // their own. Others (CORS off, or a path not shared) went the usual way.
        let route = if preflight && status == 204 {
            static PREFLIGHT: OnceLock<Arc<str>> = OnceLock::new();
            PREFLIGHT.get_or_init(|| "preflight".into()).clone()
        } else {
            route
        };
        let elapsed = started.elapsed();
        tracing::info!(
            target: "latchkey::request",
            request_id = %context.id,
            method,
            route = &*route,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            user_id = context.user.get().map(String::as_str),
            "request"
        );
        let status = status_label(status);
        metrics::counter!(
            "latchkey_http_requests_total",
            "method" => method, "route" => route.clone(), "status" => status
        )
        .increment(1);
        metrics::histogram!(
            "latchkey_http_request_duration_seconds",
            "method" => method, "route" => route
        )
        .record(elapsed.as_secs_f64());
        Ok(response)
    }

    fn request_id(&self, req: &Request) -> String {
        if self.proxies.trusts_peer(req.remote_addr()) {
            if let Some(given) = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|value| value.to_str().ok())
                .filter(|id| is_acceptable_id(id))
            {
                return given.to_owned();
            }
        }
        generated_id()
    }

    /// Documented paths by their template; never the path itself, which a client chooses (a
    /// label per path would let anyone grow the metrics without bound).
    fn route_label(&self, path: &str) -> Arc<str> {
        if let Some(template) = self.routes.template(path) {
            return template.clone();
        }
        static UNMATCHED: OnceLock<Arc<str>> = OnceLock::new();
        static SITE: OnceLock<Arc<str>> = OnceLock::new();
        if path == "/api" || path.starts_with("/api/") {
            UNMATCHED.get_or_init(|| "unmatched".into()).clone()
        } else {
            SITE.get_or_init(|| "site".into()).clone()
        }
    }
}

/// 128 random bits from the thread's generator (no system call per request, unlike a v4
/// UUID from the OS), so ids tell nothing about how many requests or instances there are.
pub(crate) fn generated_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn is_acceptable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'='))
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_label(status: u16) -> &'static str {
    // Every status a client can cause is one of these; the rest share a label.
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        408 => "408",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_differ_and_pass_our_own_rules() {
        let (first, second) = (generated_id(), generated_id());
        assert_ne!(first, second);
        assert!(is_acceptable_id(&first), "{first}");
        assert_eq!(first.len(), 32);
    }

    #[test]
    fn only_short_plain_ids_are_taken_from_a_proxy() {
        assert!(is_acceptable_id("3f2a9c1e-0b7d-4c1e-9d6e-2b1f0a9c8e7d"));
        assert!(is_acceptable_id("Root=1-67891233-abcdef012345678912345678"));
        assert!(!is_acceptable_id(""));
        assert!(!is_acceptable_id("has space"));
        assert!(!is_acceptable_id("line\nbreak"));
        assert!(!is_acceptable_id("quote\"d"));
        assert!(!is_acceptable_id(&"a".repeat(129)));
    }
}
