use crate::{
    body_limit::limit_body,
    error::framework_error_to_json,
    views::{Credentials, HealthView, RefreshRequest, SessionView, TokenPairView, UserView},
    ApiError, BearerAuth,
};
use latchkey_application::{
    AuthService, LoginCommand, LogoutCommand, RefreshCommand, RegisterCommand,
};
use poem::{middleware::Tracing, web::Data, Endpoint, EndpointExt, IntoEndpoint, Response, Route};
use poem_openapi::{payload::Json, ApiResponse, OpenApi, OpenApiService, Tags};

#[derive(Clone, Copy, Debug)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    /// A request body must arrive within this long (else 408), so slow bodies cannot hold
    /// connections.
    pub body_read_timeout: std::time::Duration,
    /// `Strict-Transport-Security` max-age on every response; `None` sends no HSTS header.
    pub hsts_max_age_secs: Option<u64>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            body_read_timeout: std::time::Duration::from_secs(10),
            hsts_max_age_secs: None,
        }
    }
}

#[derive(Tags)]
enum ApiTags {
    /// Registration, login and session tokens.
    Auth,
    /// The signed-in user.
    Users,
    /// Liveness and readiness probes.
    Health,
}

/// Tokens must never be cached by browsers or proxies (RFC 6749 §5.1).
const NO_STORE: &str = "no-store";

#[derive(ApiResponse)]
enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserView>),
}

#[derive(ApiResponse)]
enum TokenResponse {
    /// A new access token and refresh token.
    #[oai(status = 200)]
    Issued(Json<TokenPairView>, #[oai(header = "Cache-Control")] String),
}

impl TokenResponse {
    fn issued(pair: latchkey_application::TokenPair) -> Self {
        Self::Issued(Json(pair.into()), NO_STORE.to_owned())
    }
}

#[derive(ApiResponse)]
enum LogoutResponse {
    /// The session is over; none of its tokens work any more.
    #[oai(status = 204)]
    LoggedOut,
}

#[derive(ApiResponse)]
enum UserResponse {
    #[oai(status = 200)]
    Found(Json<UserView>),
}

#[derive(ApiResponse)]
enum SessionResponse {
    #[oai(status = 200)]
    Current(Json<SessionView>),
}

#[derive(ApiResponse)]
enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<HealthView>),
}

impl HealthResponse {
    fn ok() -> Self {
        Self::Ok(Json(HealthView {
            status: "ok".into(),
        }))
    }
}

struct AuthApi;

#[OpenApi(prefix_path = "/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        service: Data<&AuthService>,
        body: Json<Credentials>,
    ) -> Result<RegisterResponse, ApiError> {
        let Json(Credentials { email, password }) = body;
        let user = service
            .register(RegisterCommand { email, password })
            .await?;
        Ok(RegisterResponse::Created(Json(user.into())))
    }

    /// Log in with email and password; starts a new session.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        service: Data<&AuthService>,
        body: Json<Credentials>,
    ) -> Result<TokenResponse, ApiError> {
        let Json(Credentials { email, password }) = body;
        let pair = service.login(LoginCommand { email, password }).await?;
        Ok(TokenResponse::issued(pair))
    }

    /// Exchange a refresh token for a new pair. The presented token stops working.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        service: Data<&AuthService>,
        body: Json<RefreshRequest>,
    ) -> Result<TokenResponse, ApiError> {
        let pair = service
            .refresh(RefreshCommand {
                refresh_token: body.0.refresh_token,
            })
            .await?;
        Ok(TokenResponse::issued(pair))
    }

    /// The session the presented access token belongs to.
    #[oai(path = "/session", method = "get", operation_id = "getSession")]
    async fn session(&self, auth: BearerAuth) -> Result<SessionResponse, ApiError> {
        // Declared fallible so the document lists the 401 the bearer check can answer.
        Ok(SessionResponse::Current(Json(auth.0.into())))
    }

    /// End the session a refresh token belongs to.
    ///
    /// The refresh token is the credential (as in RFC 7009), so no bearer token is needed and
    /// logging out works after the access token expired. Every refresh token and access token
    /// of the session stops working at once. Unknown tokens also get 204.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        service: Data<&AuthService>,
        body: Json<RefreshRequest>,
    ) -> Result<LogoutResponse, ApiError> {
        service
            .logout(LogoutCommand {
                refresh_token: body.0.refresh_token,
            })
            .await?;
        Ok(LogoutResponse::LoggedOut)
    }
}

struct UsersApi;

#[OpenApi(prefix_path = "/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// The user the access token belongs to.
    #[oai(path = "/me", method = "get", operation_id = "getCurrentUser")]
    async fn me(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
    ) -> Result<UserResponse, ApiError> {
        let user = service.current_user(auth.0.subject).await?;
        Ok(UserResponse::Found(Json(user.into())))
    }
}

struct HealthApi;

#[OpenApi(prefix_path = "/health", tag = "ApiTags::Health")]
impl HealthApi {
    /// The process is up.
    #[oai(path = "/live", method = "get", operation_id = "live")]
    async fn live(&self) -> HealthResponse {
        HealthResponse::ok()
    }

    /// The process can serve requests: its data store answers.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, service: Data<&AuthService>) -> Result<HealthResponse, ApiError> {
        service.check_ready().await?;
        Ok(HealthResponse::ok())
    }
}

type ApiService = OpenApiService<(AuthApi, UsersApi, HealthApi), ()>;

/// The OpenAPI service. Needs no state, so the document can be generated without a server.
fn api_service() -> ApiService {
    OpenApiService::new(
        (AuthApi, UsersApi, HealthApi),
        "latchkey",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Email and password authentication with short-lived JWT access tokens and rotating refresh tokens.")
    .server("/api")
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    api_service().spec()
}

/// Everything under `/api`, with JSON errors, body limits and request tracing. `site` is
/// mounted at `/` (the web site, or nothing). Outermost, [`crate::harden`]: security headers
/// on every response (errors included) and a JSON 500 for a panicking handler.
pub fn routes(
    service: AuthService,
    settings: HttpSettings,
    site: Option<poem::endpoint::BoxEndpoint<'static, Response>>,
) -> impl Endpoint<Output = Response> {
    let api = api_service();
    let max_body_bytes = settings.max_body_bytes;
    let body_read_timeout = settings.body_read_timeout;
    let mut root = Route::new()
        .at("/api/openapi.json", api.spec_endpoint())
        .nest("/api/docs", api.swagger_ui())
        .nest("/api", api);
    if let Some(site) = site {
        root = root.nest("/", site);
    }
    let endpoint = root
        .around(move |next, req| limit_body(next, req, max_body_bytes, body_read_timeout))
        .data(service)
        .with(Tracing)
        .catch_all_error(framework_error_to_json)
        .into_endpoint();
    crate::edge::harden(
        endpoint,
        crate::edge::EdgeSettings {
            hsts_max_age_secs: settings.hsts_max_age_secs,
        },
    )
}
