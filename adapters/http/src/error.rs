//! The one mapping from use-case errors (and framework errors) to HTTP.
//!
//! Every failure first becomes an [`ApiError`]: a status class, a stable code and the error's
//! own message. Each operation's response enum (in `api.rs`) then narrows it to the statuses
//! that operation documents, with [`narrow!`].

use latchkey_application::{
    AccountError, AdminError, AuthenticateError, CurrentUserError, EndSessionError,
    ListSessionsError, LoginError, MailLinkError, RefreshError, RegisterError, SendLinkError,
    Throttled,
};
use latchkey_domain::{
    ports::{HashingError, StoreError},
    PasswordError,
};
use poem::{http::StatusCode, IntoResponse, Response};
use poem_openapi::{payload::Json, Object};

/// Stable, machine-readable error codes. The document lists them in `ErrorBody.error` as a
/// plain string, so a client built today keeps working when a later release adds a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnsupportedMediaType,
    PayloadTooLarge,
    RequestTimeout,
    HeadersTooLarge,
    MissingToken,
    InvalidToken,
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    InvalidEmail,
    InvalidPassword,
    WeakPassword,
    EmailTaken,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    InternalError,
    ServiceUnavailable,
    ServerBusy,
    RateLimited,
    TooManyFailedLogins,
    WrongPassword,
    PasswordChanged,
    SessionNotFound,
    InvalidLink,
    EmailNotVerified,
    ShuttingDown,
    Forbidden,
    AccountDisabled,
    UserNotFound,
    OwnAdminRole,
    OwnAccount,
    InvalidRole,
    InvalidCursor,
}

impl ErrorCode {
    #[cfg(test)]
    const ALL: [ErrorCode; 35] = [
        Self::BadRequest,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::HeadersTooLarge,
        Self::MissingToken,
        Self::InvalidToken,
        Self::InvalidCredentials,
        Self::InvalidRefreshToken,
        Self::RefreshTokenReused,
        Self::InvalidEmail,
        Self::InvalidPassword,
        Self::WeakPassword,
        Self::EmailTaken,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::NotAcceptable,
        Self::InternalError,
        Self::ServiceUnavailable,
        Self::ServerBusy,
        Self::RateLimited,
        Self::TooManyFailedLogins,
        Self::WrongPassword,
        Self::PasswordChanged,
        Self::SessionNotFound,
        Self::InvalidLink,
        Self::EmailNotVerified,
        Self::ShuttingDown,
        Self::Forbidden,
        Self::AccountDisabled,
        Self::UserNotFound,
        Self::OwnAdminRole,
        Self::OwnAccount,
        Self::InvalidRole,
        Self::InvalidCursor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::HeadersTooLarge => "headers_too_large",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::InvalidEmail => "invalid_email",
            Self::InvalidPassword => "invalid_password",
            Self::WeakPassword => "weak_password",
            Self::EmailTaken => "email_taken",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotAcceptable => "not_acceptable",
            Self::InternalError => "internal_error",
            Self::ServiceUnavailable => "service_unavailable",
            Self::ServerBusy => "server_busy",
            Self::RateLimited => "rate_limited",
            Self::TooManyFailedLogins => "too_many_failed_logins",
            Self::WrongPassword => "wrong_password",
            Self::PasswordChanged => "password_changed",
            Self::SessionNotFound => "session_not_found",
            Self::InvalidLink => "invalid_link",
            Self::EmailNotVerified => "email_not_verified",
            Self::ShuttingDown => "shutting_down",
            Self::Forbidden => "forbidden",
            Self::AccountDisabled => "account_disabled",
            Self::UserNotFound => "user_not_found",
            Self::OwnAdminRole => "own_admin_role",
            Self::OwnAccount => "own_account",
            Self::InvalidRole => "invalid_role",
            Self::InvalidCursor => "invalid_cursor",
        }
    }
}

/// Every error response has this body.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong, for programs: a stable code (more may be added; treat unknown ones by
    /// the status alone). Each operation's responses name the codes it answers:
    /// - `bad_request`: the body is not JSON, has a wrong type, misses a field or has an
    ///   unknown one; or the request itself is not valid HTTP/1.1;
    /// - `unsupported_media_type`: the body is not sent as `application/json`;
    /// - `payload_too_large`: the body is larger than the server accepts;
    /// - `request_timeout`: the request's headers or body did not arrive in time;
    /// - `headers_too_large`: the request line and headers are larger than the server accepts;
    /// - `missing_token`: no `Authorization: Bearer` header;
    /// - `invalid_token`: the access token is malformed or expired, or its session or account
    ///   has ended;
    /// - `invalid_credentials`: no account has this email and password;
    /// - `invalid_refresh_token`: the refresh token is unknown, expired or spent, or its session
    ///   has ended;
    /// - `refresh_token_reused`: a spent refresh token came back late; its session was ended;
    /// - `invalid_email`: the email breaks the rules in the field's description;
    /// - `invalid_password`: the password is longer than allowed;
    /// - `weak_password`: a new password breaks a rule of the password policy, named in
    ///   `rule`;
    /// - `email_taken`: an account with this email exists;
    /// - `not_found`: no such endpoint or page;
    /// - `method_not_allowed`: the path does not answer this method (see `Allow`);
    /// - `not_acceptable`: no acceptable encoding of a site file;
    /// - `internal_error`: an unexpected fault, logged on the server;
    /// - `service_unavailable`: the data store does not answer;
    /// - `server_busy`: too many passwords are being hashed; retry after `Retry-After`;
    /// - `rate_limited`: the client's network has spent its budget for this operation; retry
    ///   after `Retry-After`;
    /// - `too_many_failed_logins`: too many wrong passwords for this account; retry after
    ///   `Retry-After` (answered alike for unknown emails);
    /// - `wrong_password`: the password confirming an account change is not the account's;
    /// - `password_changed`: the password was changed by another request meanwhile;
    /// - `session_not_found`: the user has no session with this id (it may have been purged
    ///   after its end);
    /// - `invalid_link`: the token of a mailed link is unknown, used, expired or replaced by a
    ///   newer link;
    /// - `email_not_verified`: logins need a verified email and this account's is not;
    /// - `shutting_down`: this instance is finishing its requests before it stops; send new
    ///   ones to another;
    /// - `forbidden`: the caller is signed in but not an administrator (with a verified email,
    ///   not disabled) now;
    /// - `account_disabled`: an administrator disabled this account;
    /// - `user_not_found`: no account has this id;
    /// - `own_admin_role`: administrators cannot remove their own `admin` role;
    /// - `own_account`: administrators cannot disable their own account;
    /// - `invalid_role`: a role is not 1 to 32 of a-z, 0-9, `_` and `-` starting with a letter,
    ///   or an account would have more than 16;
    /// - `invalid_cursor`: the cursor is not one a listing handed out.
    pub error: String,
    /// What went wrong, for people: a sentence naming the problem.
    pub message: String,
    /// With `weak_password`, the rule the password breaks, for showing next to the field:
    /// `min_length`, `max_length`, `common_password` (found in lists of leaked passwords),
    /// `contains_email` (holds the part of the email before the `@`) or
    /// `contains_service_name`. More may be added.
    #[oai(skip_serializing_if_is_none)]
    pub rule: Option<String>,
    /// The id of the request this answers, also in the `X-Request-Id` response header: quote
    /// it when reporting a problem, it finds the request's lines in the server's log.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, message: impl ToString) -> Self {
        Self {
            error: error.as_str().to_owned(),
            message: message.to_string(),
            rule: None,
            request_id: crate::observe::current_request_id(),
        }
    }
}

/// The status classes an operation can answer, named as in each operation's response enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    Internal,
    Unavailable,
}

impl Status {
    fn code(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

const WWW_AUTHENTICATE_BEARER: &str = "Bearer realm=\"latchkey\"";

/// A full hashing queue drains in well under a second at the default cost.
const RETRY_AFTER_BUSY_SECS: &str = "1";

/// One failure, before an operation narrows it to its documented responses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", body.message)]
pub struct ApiError {
    pub status: Status,
    pub body: ErrorBody,
    /// `WWW-Authenticate` (401 only).
    pub challenge: Option<String>,
    /// `Retry-After` in seconds (429 and 503 only).
    pub retry_after: Option<String>,
}

impl ApiError {
    pub fn new(status: Status, error: ErrorCode, message: impl ToString) -> Self {
        // RFC 9110 §15.5.2: every 401 carries a challenge, also on login and refresh (which take
        // no bearer token): it names the scheme the rest of the API uses.
        let challenge =
            (status == Status::Unauthorized).then(|| WWW_AUTHENTICATE_BEARER.to_owned());
        Self {
            status,
            body: ErrorBody::new(error, message),
            challenge,
            retry_after: None,
        }
    }

    /// RFC 6750 §3: say in the challenge why a presented token failed.
    fn invalid_token(message: impl ToString) -> Self {
        let mut error = Self::new(Status::Unauthorized, ErrorCode::InvalidToken, message);
        // A quoted-string may hold no bare `"` or `\`.
        let description = error.body.message.replace(['"', '\\'], "'");
        error.challenge = Some(format!(
            "{WWW_AUTHENTICATE_BEARER}, error=\"invalid_token\", error_description=\"{description}\""
        ));
        error
    }

    fn unavailable(cause: &StoreError) -> Self {
        tracing::error!(%cause, "store unavailable");
        Self::new(
            Status::Unavailable,
            ErrorCode::ServiceUnavailable,
            "the service cannot reach its data store; try again shortly",
        )
    }

    fn hashing(e: HashingError) -> Self {
        match e {
            HashingError::Overloaded => {
                tracing::warn!("password hashing queue full; request shed with 503");
                let mut error = Self::new(
                    Status::Unavailable,
                    ErrorCode::ServerBusy,
                    "the server is handling too many logins right now; retry in a second",
                );
                error.retry_after = Some(RETRY_AFTER_BUSY_SECS.to_owned());
                error
            }
            HashingError::Failed(cause) => Self::internal(&cause),
        }
    }

    fn throttled(throttled: Throttled) -> Self {
        let code = match throttled {
            Throttled::Budget { .. } => ErrorCode::RateLimited,
            Throttled::LoginFailures { .. } => ErrorCode::TooManyFailedLogins,
        };
        let mut error = Self::new(Status::TooManyRequests, code, throttled);
        error.retry_after = Some(throttled.retry_after_secs().to_string());
        error
    }

    fn weak_password(weak: &PasswordError) -> Self {
        let mut error = Self::new(Status::Unprocessable, ErrorCode::WeakPassword, weak);
        error.body.rule = Some(weak.rule().to_owned());
        error
    }

    /// The details go to the log, never to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            Status::Internal,
            ErrorCode::InternalError,
            "an unexpected error occurred",
        )
    }

    /// Errors raised before an operation runs: routing, body parsing, content type, a missing
    /// bearer token. A typed [`ApiError`] inside (from the bearer check) is kept as it is.
    pub fn from_framework(err: poem::Error) -> Self {
        if let Some(error) = err.downcast_ref::<ApiError>() {
            return error.clone();
        }
        let status = err.status();
        let (status, code, message) = match status {
            StatusCode::UNAUTHORIZED => (
                Status::Unauthorized,
                ErrorCode::MissingToken,
                "this endpoint needs an `Authorization: Bearer <access token>` header".to_owned(),
            ),
            StatusCode::NOT_FOUND => (
                Status::NotFound,
                ErrorCode::NotFound,
                "no such endpoint".to_owned(),
            ),
            StatusCode::METHOD_NOT_ALLOWED => (
                Status::MethodNotAllowed,
                ErrorCode::MethodNotAllowed,
                "this endpoint does not answer this method; the `Allow` header lists those it does"
                    .to_owned(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                Status::PayloadTooLarge,
                ErrorCode::PayloadTooLarge,
                err.to_string(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                Status::UnsupportedMediaType,
                ErrorCode::UnsupportedMediaType,
                "the request body must be sent as `Content-Type: application/json`".to_owned(),
            ),
            s if s.is_client_error() => (
                Status::BadRequest,
                ErrorCode::BadRequest,
                without_values(&err.to_string()),
            ),
            _ => return Self::internal(&err),
        };
        Self::new(status, code, message)
    }
}

/// poem-openapi's parse errors quote the offending value (`..., found <value>`), which may be
/// a password sent in the wrong place; say what was expected, never what was sent.
fn without_values(message: &str) -> String {
    match message.split_once(", found ") {
        Some((expected, _)) => expected.to_owned(),
        None => message.to_owned(),
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status.code()
    }

    fn as_response(&self) -> Response {
        self.clone().into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Json(self.body).into_response();
        response.set_status(self.status.code());
        let headers = response.headers_mut();
        let mut set = |name, value: Option<String>| {
            if let Some(value) = value.and_then(|v| poem::http::HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        };
        set(poem::http::header::WWW_AUTHENTICATE, self.challenge);
        set(poem::http::header::RETRY_AFTER, self.retry_after);
        response
    }
}

/// Implements `From<ApiError>` for an operation's response enum, and the handler poem-openapi
/// calls when a request fails before the operation runs. `Status` values the operation does not
/// document become its 500 (and an error in the log): the document never lies about a status.
macro_rules! narrow {
    ($response:ident { $($status:ident),+ $(,)? }) => {
        impl From<$crate::error::ApiError> for $response {
            fn from(error: $crate::error::ApiError) -> Self {
                match error.status {
                    $($crate::error::Status::$status => $crate::error::variant!($response, $status, error),)+
                    #[allow(unreachable_patterns)]
                    undocumented => Self::Internal(poem_openapi::payload::Json(
                        $crate::error::ApiError::internal(&format_args!(
                            "status {undocumented:?} is not documented for this operation: {}",
                            error.body.message
                        ))
                        .body,
                    )),
                }
            }
        }

        impl $response {
            fn from_framework(err: poem::Error) -> Self {
                $crate::error::ApiError::from_framework(err).into()
            }
        }
    };
}

/// The variant of `$response` for `$status`, built from `$error`; only the statuses with
/// headers need their own rule.
macro_rules! variant {
    ($response:ident, Unauthorized, $error:ident) => {
        $response::Unauthorized(
            poem_openapi::payload::Json($error.body),
            $error.challenge.unwrap_or_default(),
        )
    };
    ($response:ident, TooManyRequests, $error:ident) => {
        $response::TooManyRequests(
            poem_openapi::payload::Json($error.body),
            $error.retry_after.unwrap_or_else(|| "1".to_owned()),
        )
    };
    ($response:ident, Unavailable, $error:ident) => {
        $response::Unavailable(poem_openapi::payload::Json($error.body), $error.retry_after)
    };
    ($response:ident, $status:ident, $error:ident) => {
        $response::$status(poem_openapi::payload::Json($error.body))
    };
}

pub(crate) use {narrow, variant};

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::InvalidEmail(_) => {
                Self::new(Status::Unprocessable, ErrorCode::InvalidEmail, e)
            }
            RegisterError::WeakPassword(ref weak) => Self::weak_password(weak),
            RegisterError::EmailTaken => Self::new(Status::Conflict, ErrorCode::EmailTaken, e),
            RegisterError::Store(e) => Self::unavailable(&e),
            RegisterError::Hashing(e) => Self::hashing(e),
            RegisterError::Throttled(t) => Self::throttled(t),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidEmail(_) => {
                Self::new(Status::Unprocessable, ErrorCode::InvalidEmail, e)
            }
            LoginError::InvalidPassword(_) => {
                Self::new(Status::Unprocessable, ErrorCode::InvalidPassword, e)
            }
            LoginError::InvalidCredentials => {
                Self::new(Status::Unauthorized, ErrorCode::InvalidCredentials, e)
            }
            LoginError::EmailNotVerified => {
                Self::new(Status::Forbidden, ErrorCode::EmailNotVerified, e)
            }
            LoginError::AccountDisabled => {
                Self::new(Status::Forbidden, ErrorCode::AccountDisabled, e)
            }
            LoginError::Store(e) => Self::unavailable(&e),
            LoginError::Hashing(e) => Self::hashing(e),
            LoginError::Throttled(t) => Self::throttled(t),
            LoginError::Signing(e) => Self::internal(&e),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::InvalidToken => {
                Self::new(Status::Unauthorized, ErrorCode::InvalidRefreshToken, e)
            }
            RefreshError::ReuseDetected => {
                Self::new(Status::Unauthorized, ErrorCode::RefreshTokenReused, e)
            }
            RefreshError::Store(e) => Self::unavailable(&e),
            RefreshError::Signing(e) => Self::internal(&e),
            RefreshError::Throttled(t) => Self::throttled(t),
        }
    }
}

impl From<CurrentUserError> for ApiError {
    fn from(e: CurrentUserError) -> Self {
        match e {
            CurrentUserError::AccountGone => Self::invalid_token(e),
            CurrentUserError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(e: AuthenticateError) -> Self {
        match e {
            AuthenticateError::Token(rejection) => Self::invalid_token(rejection),
            AuthenticateError::SessionEnded => Self::invalid_token(e),
            AuthenticateError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::AccountGone => Self::invalid_token(e),
            AccountError::InvalidPassword(_) => {
                Self::new(Status::Unprocessable, ErrorCode::InvalidPassword, e)
            }
            AccountError::WrongPassword => {
                Self::new(Status::Forbidden, ErrorCode::WrongPassword, e)
            }
            AccountError::WeakPassword(ref weak) => Self::weak_password(weak),
            AccountError::PasswordChangedMeanwhile => {
                Self::new(Status::Conflict, ErrorCode::PasswordChanged, e)
            }
            AccountError::Throttled(t) => Self::throttled(t),
            AccountError::Store(e) => Self::unavailable(&e),
            AccountError::Hashing(e) => Self::hashing(e),
        }
    }
}

impl From<MailLinkError> for ApiError {
    fn from(e: MailLinkError) -> Self {
        match e {
            MailLinkError::InvalidLink => Self::new(Status::BadRequest, ErrorCode::InvalidLink, e),
            MailLinkError::WeakPassword(ref weak) => Self::weak_password(weak),
            MailLinkError::Store(e) => Self::unavailable(&e),
            MailLinkError::Hashing(e) => Self::hashing(e),
        }
    }
}

impl From<SendLinkError> for ApiError {
    fn from(e: SendLinkError) -> Self {
        match e {
            SendLinkError::InvalidEmail(_) => {
                Self::new(Status::Unprocessable, ErrorCode::InvalidEmail, e)
            }
            SendLinkError::AccountGone => Self::invalid_token(e),
            SendLinkError::Throttled(t) => Self::throttled(t),
            SendLinkError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<EndSessionError> for ApiError {
    fn from(e: EndSessionError) -> Self {
        match e {
            EndSessionError::NotFound => Self::new(Status::NotFound, ErrorCode::SessionNotFound, e),
            EndSessionError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<ListSessionsError> for ApiError {
    fn from(e: ListSessionsError) -> Self {
        match e {
            ListSessionsError::InvalidCursor => {
                Self::new(Status::BadRequest, ErrorCode::InvalidCursor, e)
            }
            ListSessionsError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Forbidden => Self::new(Status::Forbidden, ErrorCode::Forbidden, e),
            AdminError::UserNotFound => Self::new(Status::NotFound, ErrorCode::UserNotFound, e),
            AdminError::OwnAdminRole => Self::new(Status::Conflict, ErrorCode::OwnAdminRole, e),
            AdminError::OwnAccount => Self::new(Status::Conflict, ErrorCode::OwnAccount, e),
            AdminError::InvalidRole(_) => {
                Self::new(Status::Unprocessable, ErrorCode::InvalidRole, e)
            }
            AdminError::InvalidCursor => Self::new(Status::BadRequest, ErrorCode::InvalidCursor, e),
            AdminError::Store(e) => Self::unavailable(&e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::unavailable(&e)
    }
}

/// Renders every error that did not come from an operation (unknown route, wrong method, body
/// too large, ...) in the same JSON shape.
pub(crate) async fn framework_error_to_json(err: poem::Error) -> Response {
    if err.is_from_response() {
        // Already rendered (the body limit's 408).
        return err.into_response();
    }
    ApiError::from_framework(err).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_error_code() {
        let document: serde_json::Value = serde_json::from_str(&crate::openapi_json()).unwrap();
        let described = document
            .pointer("/components/schemas/ErrorBody/properties/error/description")
            .and_then(serde_json::Value::as_str)
            .unwrap();
        for code in ErrorCode::ALL {
            assert!(
                described.contains(&format!("`{}`:", code.as_str())),
                "{code:?}"
            );
        }
        assert_eq!(described.matches("\n- `").count(), ErrorCode::ALL.len());
    }

    #[test]
    fn parse_errors_keep_what_was_expected_and_drop_what_was_sent() {
        assert_eq!(
            without_values(r#"failed to parse "string": Expected input type "string", found 12"#),
            r#"failed to parse "string": Expected input type "string""#
        );
        assert_eq!(without_values("unknown field `x`."), "unknown field `x`.");
    }
}
