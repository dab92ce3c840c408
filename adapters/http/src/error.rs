//! The one mapping from use-case errors (and framework errors) to HTTP.

use latchkey_application::{
    AuthenticateError, CurrentUserError, LoginError, LogoutError, NotReady, RefreshError,
    RegisterError,
};
use latchkey_domain::{ports::HashingError, TokenRejection};
use poem::{http::StatusCode, IntoResponse, Response};
use poem_openapi::{payload::Json, ApiResponse, Object};

/// Every error response has this body: a stable machine-readable code and a sentence for people.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable code, e.g. `email_taken`, `invalid_credentials`, `invalid_token`.
    pub error: String,
    /// Human-readable explanation naming the problem.
    pub message: String,
}

fn body(error: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.to_owned(),
        message: message.into(),
    })
}

const WWW_AUTHENTICATE_BEARER: &str = "Bearer realm=\"latchkey\"";

/// A full hashing queue drains in well under a second at the default cost.
const RETRY_AFTER_BUSY_SECS: &str = "1";

#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// The request is malformed: not JSON, wrong types or missing fields.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid or expired credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The resource already exists (e.g. the email is registered).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request is well-formed but a value breaks a rule (bad email, weak password).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// An unexpected server fault; details are in the server log, not here.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The backing store cannot be reached, or the server is at capacity; retry after the
    /// `Retry-After` seconds when given.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}

impl ApiError {
    pub fn unauthorized(error: &str, message: impl Into<String>) -> Self {
        Self::Unauthorized(body(error, message), WWW_AUTHENTICATE_BEARER.to_owned())
    }

    /// RFC 6750 §3: say in the challenge why a presented token failed.
    pub fn invalid_token(message: &str) -> Self {
        Self::Unauthorized(
            body("invalid_token", message),
            format!("{WWW_AUTHENTICATE_BEARER}, error=\"invalid_token\", error_description=\"{message}\""),
        )
    }

    fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "store unavailable");
        Self::Unavailable(
            body(
                "service_unavailable",
                "the service cannot reach its data store; try again shortly",
            ),
            None,
        )
    }

    fn hashing(e: HashingError) -> Self {
        match e {
            HashingError::Overloaded => {
                tracing::warn!("password hashing queue full; request shed with 503");
                Self::Unavailable(
                    body(
                        "server_busy",
                        "the server is handling too many logins right now; retry in a second",
                    ),
                    Some(RETRY_AFTER_BUSY_SECS.to_owned()),
                )
            }
            HashingError::Failed(e) => Self::internal(&e),
        }
    }

    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::Internal(body("internal_error", "an unexpected error occurred"))
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::InvalidEmail(e) => {
                Self::Unprocessable(body("invalid_email", e.to_string()))
            }
            RegisterError::WeakPassword(e) => {
                Self::Unprocessable(body("weak_password", e.to_string()))
            }
            RegisterError::EmailTaken => {
                Self::Conflict(body("email_taken", "a user with this email already exists"))
            }
            RegisterError::Store(e) => Self::unavailable(&e),
            RegisterError::Hashing(e) => Self::hashing(e),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidEmail(e) => {
                Self::Unprocessable(body("invalid_email", e.to_string()))
            }
            LoginError::InvalidPassword(e) => {
                Self::Unprocessable(body("invalid_password", e.to_string()))
            }
            LoginError::InvalidCredentials => {
                Self::unauthorized("invalid_credentials", "invalid email or password")
            }
            LoginError::Store(e) => Self::unavailable(&e),
            LoginError::Hashing(e) => Self::hashing(e),
            LoginError::Signing(e) => Self::internal(&e),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::InvalidToken => Self::unauthorized(
                "invalid_refresh_token",
                "refresh token is invalid, expired or already used; log in again",
            ),
            RefreshError::ReuseDetected => Self::unauthorized(
                "refresh_token_reused",
                "refresh token was already used; the session has been revoked, log in again",
            ),
            RefreshError::Store(e) => Self::unavailable(&e),
            RefreshError::Signing(e) => Self::internal(&e),
        }
    }
}

impl From<LogoutError> for ApiError {
    fn from(e: LogoutError) -> Self {
        match e {
            LogoutError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<CurrentUserError> for ApiError {
    fn from(e: CurrentUserError) -> Self {
        match e {
            CurrentUserError::AccountGone => {
                Self::invalid_token("the account for this token no longer exists")
            }
            CurrentUserError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(e: AuthenticateError) -> Self {
        match e {
            AuthenticateError::Token(rejection) => Self::invalid_token(match rejection {
                TokenRejection::Expired => "access token has expired",
                TokenRejection::NotYetValid => "access token is not valid yet",
                TokenRejection::Invalid => "access token is invalid",
            }),
            AuthenticateError::SessionEnded => {
                Self::invalid_token("the session of this access token has ended")
            }
            AuthenticateError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<NotReady> for ApiError {
    fn from(e: NotReady) -> Self {
        Self::unavailable(&e)
    }
}

/// Turns every error that did not come from an operation (unparseable body, missing bearer
/// header, unknown route, body too large, ...) into the same JSON shape.
pub(crate) async fn framework_error_to_json(err: poem::Error) -> Response {
    if err.is_from_response() {
        // Already rendered by `ApiError` (or deliberately by a handler).
        return err.into_response();
    }
    let status = err.status();
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", err.to_string()),
        StatusCode::UNAUTHORIZED => (
            "missing_token",
            "this endpoint needs an `Authorization: Bearer <access token>` header".to_owned(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", err.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", err.to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", err.to_string()),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled server error");
            ("internal_error", "an unexpected error occurred".to_owned())
        }
        _ => ("error", err.to_string()),
    };
    let mut response = Json(ErrorBody {
        error: code.to_owned(),
        message,
    })
    .into_response();
    response.set_status(status);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            poem::http::header::WWW_AUTHENTICATE,
            poem::http::HeaderValue::from_static(WWW_AUTHENTICATE_BEARER),
        );
    }
    response
}
