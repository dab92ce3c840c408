use crate::{
    admin::AdminApi,
    body_limit::limit_body,
    contract::{add_allow, AllowTable},
    error::{framework_error_to_json, narrow, Status},
    observe::Observer,
    security::MaybeBearerAuth,
    views::{
        AcceptedView, Credentials, EmailVerification, EmailVerifiedView, HealthView, NewAccount,
        PasswordChange, PasswordConfirmation, PasswordForgotten, PasswordReset, RefreshRequest,
        SessionListView, SessionView, TokenPairView, UserView,
    },
    ApiError, BearerAuth, ErrorBody, ErrorCode, Readiness, ReadinessState,
};
use latchkey_application::{
    AuthService, ChangePasswordCommand, DeleteAccountCommand, LoginCommand, LogoutCommand,
    RefreshCommand, RegisterCommand, SessionQuery, VerifyEmailCommand, MAX_PAGE_SIZE,
};
use latchkey_domain::{ClientNetwork, FamilyId};
use poem::{web::Data, Endpoint, EndpointExt, IntoEndpoint, Request, Response, Route};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, OpenApi, OpenApiService, Tags,
};
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    /// A request body must arrive within this long (else 408), so slow bodies cannot hold
    /// connections.
    pub body_read_timeout: std::time::Duration,
    /// `Strict-Transport-Security` max-age on every response; `None` sends no HSTS header.
    pub hsts_max_age_secs: Option<u64>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed (load balancers,
    /// reverse proxies). Empty: the socket peer is the client, whatever headers say.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header those proxies name the client in.
    pub forwarded_header: crate::ForwardedHeader,
    /// Which other origins' pages may call the API and read its answers.
    pub cors: crate::CorsSettings,
}

#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Registration, login and session tokens.
    Auth,
    /// The signed-in user.
    Users,
    /// Administrators: accounts, their roles and sessions (role `admin`).
    Admin,
    /// Liveness and readiness probes.
    Health,
}

// Tokens must never be cached by browsers or proxies (RFC 6749 §5.1). The edge sends it on
// every `/api` response; the token responses document it because there it is a promise.
use crate::edge::NO_STORE;

// One response enum per operation (as in poem's `users-crud` example): each lists exactly the
// statuses its operation answers and, in its description, the error codes behind each (what a
// code means is said once, in `ErrorBody.error`; a variant adds only what is particular to its
// operation). `narrow!` fills them from the one `ApiError` mapping.

#[derive(ApiResponse)]
#[oai(bad_request_handler = "RegisterResponse::from_framework")]
enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserView>),
    /// `bad_request`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `request_timeout`.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `email_taken`: an account with this email (in any letter case) exists.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// `payload_too_large`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `unsupported_media_type`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// `invalid_email`; `weak_password`, with the rule that failed in `rule` and the message.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// `rate_limited`: too many registrations from this network; retry after `Retry-After`
    /// seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer; `server_busy`: too many
    /// passwords are being hashed, retry after `Retry-After` seconds.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(RegisterResponse {
    BadRequest,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    Internal,
    Unavailable
});

#[derive(ApiResponse)]
#[oai(bad_request_handler = "LoginResponse::from_framework")]
enum LoginResponse {
    /// A new session: an access token and a refresh token.
    #[oai(status = 200)]
    Issued(Json<TokenPairView>, #[oai(header = "Cache-Control")] String),
    /// `bad_request`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `invalid_credentials`: no account has this email and password (which one is wrong is
    /// deliberately not said).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// `email_not_verified`: the password is right, but this server lets only verified emails
    /// log in (`REQUIRE_VERIFIED_EMAIL`); open the link in the verification mail, or reset the
    /// password (a reset link verifies the email too). `account_disabled`: the password is
    /// right, but an administrator disabled the account.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// `request_timeout`.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `payload_too_large`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `unsupported_media_type`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// `invalid_email` (empty or too long), `invalid_password` (too long).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// `rate_limited`: too many logins (and password confirmations, which share the budget)
    /// from this network; `too_many_failed_logins`: too many
    /// failed attempts for this account from this network, or from anywhere (not applied on
    /// networks the account logged in from lately), or more at the same moment than its free
    /// ones. Unknown emails are counted like registered ones. Retry after `Retry-After`
    /// seconds; the wait doubles with every further failure, up to a cap.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer; `server_busy`: too many
    /// passwords are being checked, retry after `Retry-After` seconds.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(LoginResponse {
    BadRequest,
    Unauthorized,
    Forbidden,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    Internal,
    Unavailable
});

#[derive(ApiResponse)]
#[oai(bad_request_handler = "RefreshResponse::from_framework")]
enum RefreshResponse {
    /// The next token pair of the session. The presented refresh token is spent.
    #[oai(status = 200)]
    Issued(Json<TokenPairView>, #[oai(header = "Cache-Control")] String),
    /// `bad_request`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `invalid_refresh_token`: unknown, expired, already exchanged, or its session has ended;
    /// `refresh_token_reused`: a spent token came back after the grace period, or within it
    /// from another client network than the one that exchanged it, so the session was ended.
    /// Either way: log in again.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// `request_timeout`.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `payload_too_large`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `unsupported_media_type`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// `rate_limited`: too many refreshes from this network; retry after `Retry-After` seconds
    /// with the same token.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer. Retry with the same token at
    /// once, from the same network: after `REFRESH_REUSE_GRACE`, or from another network, a
    /// retry of an exchange that did complete counts as reuse.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(RefreshResponse {
    BadRequest,
    Unauthorized,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    Internal,
    Unavailable
});

impl LoginResponse {
    fn issued(pair: latchkey_application::TokenPair) -> Self {
        Self::Issued(Json(pair.into()), NO_STORE.to_owned())
    }
}

impl RefreshResponse {
    fn issued(pair: latchkey_application::TokenPair) -> Self {
        Self::Issued(Json(pair.into()), NO_STORE.to_owned())
    }
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "LogoutResponse::from_framework")]
enum LogoutResponse {
    /// The session is over (or the token was unknown): none of its tokens work any more.
    #[oai(status = 204)]
    LoggedOut,
    /// `bad_request`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `request_timeout`.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `payload_too_large`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `unsupported_media_type`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer; the session may go on, retry.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(LogoutResponse {
    BadRequest,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
    Unavailable
});

/// What a bearer-protected read answers besides its success.
macro_rules! bearer_read_response {
    ($(#[$doc:meta])* $name:ident { $(#[$ok_doc:meta])* $ok:ident($body:ty) }) => {
        $(#[$doc])*
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::from_framework")]
        enum $name {
            $(#[$ok_doc])*
            #[oai(status = 200)]
            $ok(Json<$body>),
            /// `missing_token`: no `Authorization: Bearer` header; `invalid_token`: the access
            /// token is malformed, expired, or its session or account has ended. Refresh, or
            /// log in again.
            #[oai(status = 401)]
            Unauthorized(
                Json<ErrorBody>,
                #[oai(header = "WWW-Authenticate")] String,
            ),
            /// `internal_error`.
            #[oai(status = 500)]
            Internal(Json<ErrorBody>),
            /// `service_unavailable`: the data store does not answer.
            #[oai(status = 503)]
            Unavailable(
                Json<ErrorBody>,
                #[oai(header = "Retry-After")] Option<String>,
            ),
        }
        narrow!($name { Unauthorized, Internal, Unavailable });
    };
}

bearer_read_response!(UserResponse {
    /// The signed-in user.
    Found(UserView)
});

bearer_read_response!(SessionResponse {
    /// The session of the presented access token.
    Current(SessionView)
});

#[derive(ApiResponse)]
#[oai(bad_request_handler = "SessionListResponse::from_framework")]
enum SessionListResponse {
    /// One page of the user's live sessions, newest first, the caller's own marked `current`.
    #[oai(status = 200)]
    Listed(Json<SessionListView>),
    /// `bad_request`: `limit` is not 1 to 100, or `cursor` is longer than a cursor;
    /// `invalid_cursor`: the cursor is not one a listing handed out.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `missing_token`: no `Authorization: Bearer` header; `invalid_token`: the access token
    /// is malformed, expired, or its session or account has ended. Refresh, or log in again.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(SessionListResponse {
    BadRequest,
    Unauthorized,
    Internal,
    Unavailable
});

/// What a bearer-protected action without a body answers.
macro_rules! bearer_action_response {
    ($(#[$doc:meta])* $name:ident { $(#[$ok_doc:meta])* $ok:ident }) => {
        $(#[$doc])*
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::from_framework")]
        enum $name {
            $(#[$ok_doc])*
            #[oai(status = 204)]
            $ok,
            /// `missing_token`, `invalid_token`.
            #[oai(status = 401)]
            Unauthorized(
                Json<ErrorBody>,
                #[oai(header = "WWW-Authenticate")] String,
            ),
            /// `request_timeout`: a body was sent (none is needed) and did not arrive in time.
            #[oai(status = 408)]
            RequestTimeout(Json<ErrorBody>),
            /// `payload_too_large`: a body was sent (none is needed) and was too large.
            #[oai(status = 413)]
            PayloadTooLarge(Json<ErrorBody>),
            /// `internal_error`.
            #[oai(status = 500)]
            Internal(Json<ErrorBody>),
            /// `service_unavailable`: the data store does not answer; nothing was ended, retry.
            #[oai(status = 503)]
            Unavailable(
                Json<ErrorBody>,
                #[oai(header = "Retry-After")] Option<String>,
            ),
        }
        narrow!($name { Unauthorized, RequestTimeout, PayloadTooLarge, Internal, Unavailable });
    };
}

bearer_action_response!(LogoutAllResponse {
    /// Every session of the user has ended, the calling one included.
    LoggedOut
});

#[derive(ApiResponse)]
#[oai(bad_request_handler = "EndSessionResponse::from_framework")]
enum EndSessionResponse {
    /// The session has ended (or had already): its refresh and access tokens are refused.
    #[oai(status = 204)]
    Ended,
    /// `bad_request`: the id is not a UUID.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `missing_token`, `invalid_token`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// `session_not_found`: none of the user's sessions has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `request_timeout`: a body was sent (none is needed) and did not arrive in time.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `payload_too_large`: a body was sent (none is needed) and was too large.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer; the session goes on, retry.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(EndSessionResponse {
    BadRequest,
    Unauthorized,
    NotFound,
    RequestTimeout,
    PayloadTooLarge,
    Internal,
    Unavailable
});

/// What an account change confirmed by the account's password answers.
macro_rules! confirmed_change_response {
    (
        $(#[$doc:meta])* $name:ident {
            $(#[$ok_doc:meta])* $ok:ident,
            $(#[$unprocessable_doc:meta])* unprocessable,
            $($(#[$extra_doc:meta])* $extra:ident = $status:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::from_framework")]
        enum $name {
            $(#[$ok_doc])*
            #[oai(status = 204)]
            $ok,
            /// `bad_request`.
            #[oai(status = 400)]
            BadRequest(Json<ErrorBody>),
            /// `missing_token`, `invalid_token`.
            #[oai(status = 401)]
            Unauthorized(
                Json<ErrorBody>,
                #[oai(header = "WWW-Authenticate")] String,
            ),
            /// `wrong_password`: the password given to confirm is not the account's. It counts
            /// as a failed login.
            #[oai(status = 403)]
            Forbidden(Json<ErrorBody>),
            /// `request_timeout`.
            #[oai(status = 408)]
            RequestTimeout(Json<ErrorBody>),
            $($(#[$extra_doc])* #[oai(status = $status)] $extra(Json<ErrorBody>),)*
            /// `payload_too_large`.
            #[oai(status = 413)]
            PayloadTooLarge(Json<ErrorBody>),
            /// `unsupported_media_type`.
            #[oai(status = 415)]
            UnsupportedMediaType(Json<ErrorBody>),
            $(#[$unprocessable_doc])*
            #[oai(status = 422)]
            Unprocessable(Json<ErrorBody>),
            /// `rate_limited`: too many logins and password confirmations from this network
            /// (they share one budget); `too_many_failed_logins`: too many wrong passwords for
            /// this account, here or at login. Retry after `Retry-After` seconds.
            #[oai(status = 429)]
            TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
            /// `internal_error`.
            #[oai(status = 500)]
            Internal(Json<ErrorBody>),
            /// `service_unavailable`: the data store does not answer; `server_busy`: too many
            /// passwords are being hashed, retry after `Retry-After` seconds.
            #[oai(status = 503)]
            Unavailable(
                Json<ErrorBody>,
                #[oai(header = "Retry-After")] Option<String>,
            ),
        }
        narrow!($name {
            BadRequest,
            Unauthorized,
            Forbidden,
            RequestTimeout,
            $($extra,)*
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            TooManyRequests,
            Internal,
            Unavailable
        });
    };
}

/// What an operation on a mailed link's token answers.
macro_rules! mail_link_response {
    (
        $(#[$doc:meta])* $name:ident {
            $(#[$ok_doc:meta])* $ok:ident = $ok_status:literal $(($ok_body:ty))?,
            $($(#[$extra_doc:meta])* $extra:ident = $status:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::from_framework")]
        enum $name {
            $(#[$ok_doc])*
            #[oai(status = $ok_status)]
            $ok $(($ok_body))?,
            /// `bad_request`; `invalid_link`: the token is unknown, used, expired or replaced by
            /// a newer link. Ask for a new one.
            #[oai(status = 400)]
            BadRequest(Json<ErrorBody>),
            /// `request_timeout`.
            #[oai(status = 408)]
            RequestTimeout(Json<ErrorBody>),
            /// `payload_too_large`.
            #[oai(status = 413)]
            PayloadTooLarge(Json<ErrorBody>),
            /// `unsupported_media_type`.
            #[oai(status = 415)]
            UnsupportedMediaType(Json<ErrorBody>),
            $($(#[$extra_doc])* #[oai(status = $status)] $extra(Json<ErrorBody>),)*
            /// `internal_error`.
            #[oai(status = 500)]
            Internal(Json<ErrorBody>),
            /// `service_unavailable`: the data store does not answer; `server_busy`: too many
            /// passwords are being hashed, retry after `Retry-After` seconds. The link still
            /// works (it is given back when a failure comes after it was used).
            #[oai(status = 503)]
            Unavailable(
                Json<ErrorBody>,
                #[oai(header = "Retry-After")] Option<String>,
            ),
        }
        narrow!($name {
            BadRequest,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            $($extra,)*
            Internal,
            Unavailable
        });
    };
}

mail_link_response!(VerifyEmailResponse {
    /// The email is verified. Unless the request was signed in to this very account, every
    /// session of the account has ended (`sessions_ended`): if someone else registered the
    /// address, the mailbox's holder takes the account over with "forgot password".
    Verified = 200 (Json<EmailVerifiedView>),
});

mail_link_response!(ResetPasswordResponse {
    /// The password is set. Every session of the account has ended; log in with the new one.
    Reset = 204,
    /// `weak_password`: the new password breaks the rule named in `rule`; the link still works.
    Unprocessable = 422,
});

#[derive(ApiResponse)]
#[oai(bad_request_handler = "ForgotPasswordResponse::from_framework")]
enum ForgotPasswordResponse {
    /// Taken in. The same answer whether or not an account has this email: when one does, a
    /// reset link is on its way (unless that address got several in the last minutes).
    #[oai(status = 202)]
    Accepted(Json<AcceptedView>),
    /// `bad_request`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `request_timeout`.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `payload_too_large`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `unsupported_media_type`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// `invalid_email`: empty or too long to be any account's.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// `rate_limited`: too many mail requests from this network; retry after `Retry-After`
    /// seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(ForgotPasswordResponse {
    BadRequest,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    Internal,
    Unavailable
});

#[derive(ApiResponse)]
#[oai(bad_request_handler = "ResendVerificationResponse::from_framework")]
enum ResendVerificationResponse {
    /// Taken in: a new verification link is on its way, and the one before stops working.
    /// Nothing is sent when the email is verified already.
    #[oai(status = 202)]
    Accepted(Json<AcceptedView>),
    /// `missing_token`, `invalid_token`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// `request_timeout`: a body was sent (none is needed) and did not arrive in time.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `payload_too_large`: a body was sent (none is needed) and was too large.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `rate_limited`: too many mails asked for from this network or to this address; retry
    /// after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(ResendVerificationResponse {
    Unauthorized,
    RequestTimeout,
    PayloadTooLarge,
    TooManyRequests,
    Internal,
    Unavailable
});

fn accepted(message: &str) -> Json<AcceptedView> {
    Json(AcceptedView {
        message: message.to_owned(),
    })
}

confirmed_change_response!(ChangePasswordResponse {
    /// The password has changed. Every other session of the user has ended; this one goes on.
    Changed,
    /// `invalid_password`: the current password is longer than any password; `weak_password`:
    /// the new one breaks the rule named in `rule`.
    unprocessable,
    /// `password_changed`: another request changed the password meanwhile; the password
    /// stays as it set it (other sessions may have ended already).
    Conflict = 409,
});

confirmed_change_response!(DeleteAccountResponse {
    /// The account is gone, with its sessions and tokens; its email may register again.
    Deleted,
    /// `invalid_password`: the password is longer than any password.
    unprocessable,
});

#[derive(ApiResponse)]
#[oai(bad_request_handler = "LiveResponse::from_framework")]
enum LiveResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<HealthView>),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}
narrow!(LiveResponse { Internal });

#[derive(ApiResponse)]
#[oai(bad_request_handler = "ReadyResponse::from_framework")]
enum ReadyResponse {
    /// The data store answered the last check (one every few seconds).
    #[oai(status = 200)]
    Ok(Json<HealthView>),
    /// `internal_error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `service_unavailable`: the data store did not answer the last check (or has not been
    /// checked yet); `shutting_down`: the instance is finishing its requests before it stops.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
}
narrow!(ReadyResponse {
    Internal,
    Unavailable
});

fn health_ok() -> Json<HealthView> {
    Json(HealthView {
        status: "ok".into(),
    })
}

/// The success of `result` as `ok` builds it, or its error narrowed to `R`.
pub(crate) fn respond<T, E, R>(result: Result<T, E>, ok: impl FnOnce(T) -> R) -> R
where
    ApiError: From<E>,
    R: From<ApiError>,
{
    match result {
        Ok(value) => ok(value),
        Err(e) => ApiError::from(e).into(),
    }
}

/// Runs `work` in a task of its own, in the request's span: a client that hangs up must not
/// cut a use case between its writes (an account marked disabled with its sessions live, a
/// link used up but its work undone), nor between a write and its audit line.
pub(crate) async fn to_the_end<T: Send + 'static, E: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, ApiError>
where
    ApiError: From<E>,
{
    use tracing::Instrument;
    match tokio::spawn(work.in_current_span()).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(failed) => Err(ApiError::internal(&failed)),
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
        client: Data<&ClientNetwork>,
        body: Json<NewAccount>,
    ) -> RegisterResponse {
        let Json(NewAccount { email, password }) = body;
        let command = RegisterCommand {
            email: email.0,
            password: password.0,
            client: *client.0,
        };
        respond(service.register(command).await, |user| {
            RegisterResponse::Created(Json(user.into()))
        })
    }

    /// Log in with email and password; starts a new session.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        request: &Request,
        service: Data<&AuthService>,
        client: Data<&ClientNetwork>,
        body: Json<Credentials>,
    ) -> LoginResponse {
        let Json(Credentials { email, password }) = body;
        let command = LoginCommand {
            email: email.0,
            password: password.0,
            client: *client.0,
            user_agent: request
                .header(poem::http::header::USER_AGENT)
                .map(str::to_owned),
        };
        respond(service.login(command).await, LoginResponse::issued)
    }

    /// Exchange a refresh token for a new pair. The presented token stops working.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        service: Data<&AuthService>,
        client: Data<&ClientNetwork>,
        body: Json<RefreshRequest>,
    ) -> RefreshResponse {
        let command = RefreshCommand {
            refresh_token: body.0.refresh_token.0,
            client: *client.0,
        };
        respond(service.refresh(command).await, RefreshResponse::issued)
    }

    /// The session the presented access token belongs to.
    #[oai(path = "/session", method = "get", operation_id = "getSession")]
    async fn session(&self, auth: BearerAuth) -> SessionResponse {
        SessionResponse::Current(Json(auth.0.into()))
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
    ) -> LogoutResponse {
        let command = LogoutCommand {
            refresh_token: body.0.refresh_token.0,
        };
        respond(service.logout(command).await, |()| {
            LogoutResponse::LoggedOut
        })
    }

    /// End every session of the signed-in user, this one included ("sign out everywhere").
    #[oai(path = "/logout-all", method = "post", operation_id = "logoutAll")]
    async fn logout_all(&self, service: Data<&AuthService>, auth: BearerAuth) -> LogoutAllResponse {
        respond(service.logout_all(&auth.0).await, |()| {
            LogoutAllResponse::LoggedOut
        })
    }

    /// The signed-in user's live sessions, a page at a time, newest first: where and when
    /// each logged in and was last used. An account keeps at most `MAX_SESSIONS_PER_USER`
    /// (default 100) live sessions; a login past it ends the least recently used.
    #[oai(path = "/sessions", method = "get", operation_id = "listSessions")]
    async fn sessions(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// The `next` of the previous page; absent for the first.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
        /// Sessions per page, 1 to 100 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> SessionListResponse {
        let query = SessionQuery {
            cursor: cursor.0,
            limit: limit
                .0
                .map_or(MAX_PAGE_SIZE, |limit| limit as usize)
                .min(MAX_PAGE_SIZE),
        };
        respond(service.list_sessions(&auth.0, query).await, |page| {
            SessionListResponse::Listed(Json(page.into()))
        })
    }

    /// End one of the signed-in user's sessions, for example on a lost device. Its refresh
    /// and access tokens are refused from the next request on.
    #[oai(path = "/sessions/:id", method = "delete", operation_id = "endSession")]
    async fn end_session(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// A session id from `GET /auth/sessions`.
        id: Path<Uuid>,
    ) -> EndSessionResponse {
        let session = FamilyId::from_uuid(id.0);
        respond(service.end_session(&auth.0, session).await, |()| {
            EndSessionResponse::Ended
        })
    }

    /// Verify the email with the token of the link in the verification mail. Send the
    /// access token too when the browser is signed in: a verification from the account's own
    /// session keeps its sessions, one from anywhere else ends them (someone else may have
    /// registered the address and chosen its password).
    #[oai(path = "/email/verify", method = "post", operation_id = "verifyEmail")]
    async fn verify_email(
        &self,
        service: Data<&AuthService>,
        auth: MaybeBearerAuth,
        body: Json<EmailVerification>,
    ) -> VerifyEmailResponse {
        let command = VerifyEmailCommand {
            token: body.0.token.0,
            signed_in_as: auth.claims(),
        };
        let service = service.0.clone();
        let verified = to_the_end(async move { service.verify_email(command).await }).await;
        respond(verified, |verified| {
            VerifyEmailResponse::Verified(Json(verified.into()))
        })
    }

    /// Mail the signed-in user a new verification link; the one before stops working.
    #[oai(
        path = "/email/verify/resend",
        method = "post",
        operation_id = "resendVerification"
    )]
    async fn resend_verification(
        &self,
        service: Data<&AuthService>,
        client: Data<&ClientNetwork>,
        auth: BearerAuth,
    ) -> ResendVerificationResponse {
        respond(
            service.resend_verification(auth.0.subject, *client.0).await,
            |()| {
                ResendVerificationResponse::Accepted(accepted(
                    "unless your email is verified already, a new link is on its way",
                ))
            },
        )
    }

    /// Ask for a password reset link by mail. The answer is the same whether or not an
    /// account has this email.
    #[oai(
        path = "/password/forgot",
        method = "post",
        operation_id = "forgotPassword"
    )]
    async fn forgot_password(
        &self,
        service: Data<&AuthService>,
        client: Data<&ClientNetwork>,
        body: Json<PasswordForgotten>,
    ) -> ForgotPasswordResponse {
        respond(
            service.forgot_password(body.0.email.0, *client.0).await,
            |()| {
                ForgotPasswordResponse::Accepted(accepted(
                    "if an account has this email, a link to choose a new password is on its way",
                ))
            },
        )
    }

    /// Choose a new password with the token of the link in the reset mail. Every session of
    /// the account ends.
    #[oai(
        path = "/password/reset",
        method = "post",
        operation_id = "resetPassword"
    )]
    async fn reset_password(
        &self,
        service: Data<&AuthService>,
        body: Json<PasswordReset>,
    ) -> ResetPasswordResponse {
        let Json(PasswordReset {
            token,
            new_password,
        }) = body;
        let service = service.0.clone();
        let reset =
            to_the_end(async move { service.reset_password(token.0, new_password.0).await }).await;
        respond(reset, |()| ResetPasswordResponse::Reset)
    }

    /// Change the signed-in user's password. Every other session ends; this one goes on.
    #[oai(
        path = "/password/change",
        method = "post",
        operation_id = "changePassword"
    )]
    async fn change_password(
        &self,
        service: Data<&AuthService>,
        client: Data<&ClientNetwork>,
        auth: BearerAuth,
        body: Json<PasswordChange>,
    ) -> ChangePasswordResponse {
        let Json(PasswordChange {
            current_password,
            new_password,
        }) = body;
        let command = ChangePasswordCommand {
            user: auth.0.subject,
            session: auth.0.session,
            current_password: current_password.0,
            new_password: new_password.0,
            client: *client.0,
        };
        respond(service.change_password(command).await, |()| {
            ChangePasswordResponse::Changed
        })
    }
}

struct UsersApi;

#[OpenApi(prefix_path = "/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// The user the access token belongs to.
    #[oai(path = "/me", method = "get", operation_id = "getCurrentUser")]
    async fn me(&self, service: Data<&AuthService>, auth: BearerAuth) -> UserResponse {
        respond(service.current_user(auth.0.subject).await, |user| {
            UserResponse::Found(Json(user.into()))
        })
    }

    /// Delete the signed-in user's account, confirmed by its password: the account, its
    /// sessions and its tokens are gone for good, and the email may register again.
    #[oai(path = "/me", method = "delete", operation_id = "deleteCurrentUser")]
    async fn delete_me(
        &self,
        service: Data<&AuthService>,
        client: Data<&ClientNetwork>,
        auth: BearerAuth,
        body: Json<PasswordConfirmation>,
    ) -> DeleteAccountResponse {
        let command = DeleteAccountCommand {
            user: auth.0.subject,
            password: body.0.password.0,
            client: *client.0,
        };
        respond(service.delete_account(command).await, |()| {
            DeleteAccountResponse::Deleted
        })
    }
}

struct HealthApi;

#[OpenApi(prefix_path = "/health", tag = "ApiTags::Health")]
impl HealthApi {
    /// The process is up.
    #[oai(path = "/live", method = "get", operation_id = "live")]
    async fn live(&self) -> LiveResponse {
        LiveResponse::Ok(health_ok())
    }

    /// The process can serve requests: its data store answered the last background check,
    /// and it is not shutting down. Answered at once, without a store call.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, readiness: Data<&Readiness>) -> ReadyResponse {
        let unavailable = |code, message| {
            let mut error = ApiError::new(Status::Unavailable, code, message);
            error.retry_after = Some(RETRY_AFTER_NOT_READY_SECS.to_owned());
            error.into()
        };
        match readiness.state() {
            ReadinessState::Ready => ReadyResponse::Ok(health_ok()),
            ReadinessState::Starting | ReadinessState::StoreDown => unavailable(
                ErrorCode::ServiceUnavailable,
                "the service cannot reach its data store",
            ),
            ReadinessState::Draining => {
                unavailable(ErrorCode::ShuttingDown, "this instance is shutting down")
            }
        }
    }
}

type ApiService = OpenApiService<(AuthApi, UsersApi, AdminApi, HealthApi), ()>;

/// The OpenAPI service. Needs no state, so the document can be generated without a server.
fn api_service() -> ApiService {
    OpenApiService::new(
        (AuthApi, UsersApi, AdminApi, HealthApi),
        "latchkey",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Email and password authentication with short-lived JWT access tokens and rotating refresh tokens.")
    .server(API_PREFIX)
}

/// Where the API is mounted; the document's `servers` entry.
const API_PREFIX: &str = "/api";

/// The OpenAPI document as served at `/api/openapi.json` and committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    crate::contract::refine(&api_service().spec())
}

/// The store is checked every few seconds.
const RETRY_AFTER_NOT_READY_SECS: &str = "2";

/// What is served besides the API, each chosen by the composition root.
#[derive(Default)]
pub struct Mounts {
    /// At `/`: the web site.
    pub site: Option<poem::endpoint::BoxEndpoint<'static, Response>>,
    /// At `/metrics` (GET): the Prometheus text.
    pub metrics: Option<poem::endpoint::BoxEndpoint<'static, Response>>,
    /// At [`JWKS_PATH`] (GET): the JWK Set of the keys that verify access tokens (RFC 7517).
    pub key_set: Option<String>,
}

/// Where verifiers fetch the keys (the path OpenID providers use).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Verifiers may keep the set this long. A new signing key is in it from the moment it signs,
/// and verifiers that see an unknown `kid` fetch the set again (as PyJWT, jose and
/// Microsoft.IdentityModel do), so a longer time only costs them an extra fetch.
const JWKS_MAX_AGE_SECS: u32 = 300;

/// Everything under `/api`, with JSON errors, body limits and request tracing. `site` is
/// mounted at `/` (the web site, or nothing). Outermost, [`crate::harden`]: security headers
/// on every response (errors included) and a JSON 500 for a panicking handler.
pub fn routes(
    service: AuthService,
    readiness: Readiness,
    settings: HttpSettings,
    mounts: Mounts,
) -> impl Endpoint<Output = Response> {
    let api = api_service();
    let generated = api.spec();
    let document = crate::contract::refine(&generated);
    // The browsable UI shows the served document, not poem-openapi's unrefined one.
    let docs_html = api.swagger_ui_html().replacen(&generated, &document, 1);
    // Computed from the page as served, so it follows poem-openapi's Swagger UI when it changes.
    let docs_policy =
        poem::http::HeaderValue::from_str(&crate::site::docs_content_security_policy(&docs_html))
            .expect("a policy of keywords and base64 hashes is a valid header value");
    let mut allow = AllowTable::from_document(&document, API_PREFIX)
        .with_get_only("/api/openapi.json")
        .with_get_only("/api/docs");
    if mounts.metrics.is_some() {
        allow = allow.with_get_only(METRICS_PATH);
    }
    if mounts.key_set.is_some() {
        allow = allow.with_get_only(JWKS_PATH);
    }
    let max_body_bytes = settings.max_body_bytes;
    let body_read_timeout = settings.body_read_timeout;
    let mut root = Route::new()
        .at(
            "/api/openapi.json",
            poem::get(poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(document.clone())
            })),
        )
        .nest(
            "/api/docs",
            Route::new().at(
                "/",
                poem::get(poem::endpoint::make_sync(move |_| {
                    Response::builder()
                        .content_type("text/html; charset=utf-8")
                        .header(
                            poem::http::header::CONTENT_SECURITY_POLICY,
                            docs_policy.clone(),
                        )
                        .body(docs_html.clone())
                })),
            ),
        )
        .nest(API_PREFIX, api);
    if let Some(metrics) = mounts.metrics {
        root = root.at(METRICS_PATH, poem::get(metrics));
    }
    if let Some(key_set) = mounts.key_set {
        root = root.at(
            JWKS_PATH,
            poem::get(poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .header(
                        poem::http::header::CACHE_CONTROL,
                        format!("public, max-age={JWKS_MAX_AGE_SECS}"),
                    )
                    .body(key_set.clone())
            })),
        );
    }
    if let Some(site) = mounts.site {
        root = root.nest("/", site);
    }
    let proxies =
        crate::client::TrustedProxies::new(settings.trusted_proxies, settings.forwarded_header);
    let observer = Observer {
        routes: allow.clone(),
        proxies: proxies.clone(),
    };
    let endpoint = root
        .around(move |next, req| crate::client::resolve(next, req, proxies.clone()))
        .around(move |next, req| limit_body(next, req, max_body_bytes, body_read_timeout))
        .data(service)
        .data(readiness)
        .catch_all_error(framework_error_to_json)
        .around(move |next, req| add_allow(next, req, allow.clone()))
        .into_endpoint();
    // Inside the hardening, so preflights get the security headers; outside everything that
    // answers, a panic included, so every error an app on another origin gets is readable.
    let shared = crate::cors::Cors::new(
        crate::edge::catch_panics(endpoint),
        settings.cors,
        observer.routes.clone(),
    );
    let hardened = crate::edge::harden(
        shared,
        crate::edge::EdgeSettings {
            hsts_max_age_secs: settings.hsts_max_age_secs,
            // CORS is the layer above's: the hardening adds none.
            ..crate::edge::EdgeSettings::default()
        },
    );
    // Outermost, so the id is known to everything inside and every response is counted.
    hardened.around(move |next, req| {
        let observer = observer.clone();
        async move { observer.observe(next, req).await }
    })
}

/// Where the Prometheus text is served when it shares the API's listener.
pub const METRICS_PATH: &str = "/metrics";
