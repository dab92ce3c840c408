//! What poem-openapi cannot say by itself, added to the generated document in one place, and
//! the `Allow` header that the document's paths imply.

use poem::{
    http::{header, HeaderValue, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The generated document plus:
/// - `additionalProperties` stated on every object schema: `false` on request bodies, which
///   refuse unknown fields (`deny_unknown_fields`, answered 400), and `true` on responses, which
///   may gain fields in later releases (so a client built today, or a tab left open across a
///   deploy, keeps working);
/// - OpenAPI links, so clients and testers can follow register -> login -> refresh -> logout.
///   Each link's `requestBody` is an object of runtime expressions, which schemathesis
///   evaluates member by member.
pub(crate) fn refine(generated: &str) -> String {
    let mut document: Value = serde_json::from_str(generated).expect("poem-openapi writes JSON");
    let request_bodies: Vec<String> = document["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|operations| operations.values())
        .filter_map(|operation| operation.get("requestBody")?.get("content")?.as_object())
        .flat_map(|content| content.values())
        .filter_map(|media| media.pointer("/schema/$ref")?.as_str())
        .filter_map(|reference| reference.strip_prefix("#/components/schemas/"))
        .map(str::to_owned)
        .collect();
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            if schema["type"] == "object" {
                let closed = request_bodies.contains(name);
                schema["additionalProperties"] = Value::Bool(!closed);
            }
        }
    }
    let token_exchanges = json!({
        "refresh": {
            "operationId": "refresh",
            "description": "Exchange the refresh token of this pair for the next pair.",
            "requestBody": { "refresh_token": "$response.body#/refresh_token" }
        },
        "logout": {
            "operationId": "logout",
            "description": "End the session of this pair.",
            "requestBody": { "refresh_token": "$response.body#/refresh_token" }
        }
    });
    let links = [
        (
            "/auth/register",
            "post",
            "201",
            json!({
                "login": {
                    "operationId": "login",
                    "description": "Log in to the account just created.",
                    "requestBody": {
                        "email": "$request.body#/email",
                        "password": "$request.body#/password"
                    }
                }
            }),
        ),
        ("/auth/login", "post", "200", token_exchanges.clone()),
        ("/auth/refresh", "post", "200", token_exchanges),
    ];
    for (path, method, status, link) in links {
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('/', "~1")
        );
        let response = document
            .pointer_mut(&pointer)
            .unwrap_or_else(|| panic!("no response at {pointer} to link from"));
        response["links"] = link;
    }
    serde_json::to_string_pretty(&document).expect("a JSON value serializes")
}

/// The methods each documented path answers, for the `Allow` header of a 405 (RFC 9110
/// §15.5.6). Built from the document, so it cannot disagree with it.
#[derive(Clone, Debug)]
pub(crate) struct AllowTable(Arc<Vec<Route>>);

#[derive(Clone, Debug)]
struct Route {
    /// `/api/auth/sessions/{id}`: the label requests to it are counted under.
    template: Arc<str>,
    segments: Vec<String>,
    allow: HeaderValue,
}

impl Route {
    fn new(template: String, allow: HeaderValue) -> Self {
        Self {
            segments: segments(&template),
            template: template.into(),
            allow,
        }
    }

    /// Compares segment by segment without allocating: this runs for every request.
    fn matches(&self, path: &str) -> bool {
        let mut given = path.split('/').filter(|s| !s.is_empty());
        for expected in &self.segments {
            match given.next() {
                Some(segment)
                    if segment == expected
                        || (expected.starts_with('{') && expected.ends_with('}')) => {}
                _ => return false,
            }
        }
        given.next().is_none()
    }
}

impl AllowTable {
    /// `document` is served under `prefix` (its `servers` entry).
    pub(crate) fn from_document(document: &str, prefix: &str) -> Self {
        let document: Value = serde_json::from_str(document).expect("the document is JSON");
        let empty = Map::new();
        let paths = document["paths"].as_object().unwrap_or(&empty);
        let mut routes = Vec::new();
        for (path, item) in paths {
            let mut methods: Vec<String> = item
                .as_object()
                .unwrap_or(&empty)
                .keys()
                .map(|m| m.to_ascii_uppercase())
                .collect();
            // poem answers HEAD wherever it answers GET.
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            methods.sort();
            let value = HeaderValue::from_str(&methods.join(", ")).expect("method names are ASCII");
            routes.push(Route::new(format!("{prefix}{path}"), value));
        }
        Self(Arc::new(routes))
    }

    /// Adds a path outside the document that answers GET (and so HEAD) only.
    pub(crate) fn with_get_only(mut self, path: &str) -> Self {
        let mut routes: Vec<Route> = self.0.iter().map(Route::clone).collect();
        routes.push(Route::new(
            path.to_owned(),
            HeaderValue::from_static("GET, HEAD"),
        ));
        self.0 = Arc::new(routes);
        self
    }

    pub(crate) fn allowed(&self, path: &str) -> Option<&HeaderValue> {
        self.find(path).map(|route| &route.allow)
    }

    /// The template of the documented path `path` matches, if any.
    pub(crate) fn template(&self, path: &str) -> Option<&Arc<str>> {
        self.find(path).map(|route| &route.template)
    }

    fn find(&self, path: &str) -> Option<&Route> {
        self.0.iter().find(|route| route.matches(path))
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds `Allow` to every 405 for a documented path.
pub(crate) async fn add_allow<E: Endpoint>(
    next: E,
    req: Request,
    allow: AllowTable,
) -> poem::Result<Response> {
    // A cheap clone (shared bytes): the path is only read for a 405.
    let uri = req.uri().clone();
    let mut response = next.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::ALLOW)
    {
        if let Some(value) = allow.allowed(uri.path()) {
            response.headers_mut().insert(header::ALLOW, value.clone());
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_the_documented_methods_and_matches_templated_segments() {
        let document = r#"{"paths": {
            "/auth/login": {"post": {}},
            "/users/me": {"get": {}, "delete": {}},
            "/sessions/{id}": {"delete": {}}
        }}"#;
        let table = AllowTable::from_document(document, "/api");
        assert_eq!(table.allowed("/api/auth/login").unwrap(), "POST");
        assert_eq!(table.allowed("/api/users/me").unwrap(), "DELETE, GET, HEAD");
        assert_eq!(table.allowed("/api/sessions/42").unwrap(), "DELETE");
        assert!(table.allowed("/api/sessions").is_none());
        assert!(table.allowed("/auth/login").is_none());
        let table = table.with_get_only("/api/docs");
        assert_eq!(table.allowed("/api/docs").unwrap(), "GET, HEAD");
    }

    #[test]
    fn request_bodies_are_closed_responses_open_and_the_session_flow_is_linked() {
        let document: Value = serde_json::from_str(&crate::openapi_json()).unwrap();
        let schemas = &document["components"]["schemas"];
        for name in ["NewAccount", "Credentials", "RefreshRequest"] {
            assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
        }
        for name in [
            "UserView",
            "TokenPairView",
            "SessionView",
            "ErrorBody",
            "HealthView",
        ] {
            assert_eq!(schemas[name]["additionalProperties"], true, "{name}");
        }
        let login_links = &document["paths"]["/auth/login"]["post"]["responses"]["200"]["links"];
        assert_eq!(login_links["refresh"]["operationId"], "refresh");
        let register_links =
            &document["paths"]["/auth/register"]["post"]["responses"]["201"]["links"];
        assert_eq!(
            register_links["login"]["requestBody"]["password"],
            "$request.body#/password"
        );
    }
}
