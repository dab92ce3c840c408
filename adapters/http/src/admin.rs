//! The admin API: administrators find accounts, change their roles, disable and enable them,
//! and end their sessions. Who is an administrator is decided per request by the use cases.

use crate::{
    api::{respond, to_the_end},
    error::narrow,
    views::{RoleView, UserView},
    ApiTags, BearerAuth, ErrorBody,
};
use chrono::{DateTime, Utc};
use latchkey_application::{AuthService, UserDetail, UserPage, UserQuery, MAX_PAGE_SIZE};
use latchkey_domain::{User, UserId};
use poem::web::Data;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    types::Example,
    ApiResponse, Object, OpenApi,
};
use uuid::Uuid;

/// An account as administrators see it: what its owner sees, and its standing.
#[derive(Object, Debug)]
pub struct AdminUserView {
    #[oai(flatten)]
    pub account: UserView,
    /// Disabled accounts cannot log in and have no sessions.
    pub disabled: bool,
    /// When it was disabled, while it is.
    #[oai(skip_serializing_if_is_none)]
    pub disabled_at: Option<DateTime<Utc>>,
    /// The last time a login accepted the password.
    #[oai(skip_serializing_if_is_none)]
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<User> for AdminUserView {
    fn from(user: User) -> Self {
        Self {
            disabled: user.disabled_at.is_some(),
            disabled_at: user.disabled_at,
            last_login_at: user.last_login_at,
            account: user.into(),
        }
    }
}

/// One account, with what is going on with it.
#[derive(Object, Debug)]
pub struct AdminUserDetailView {
    #[oai(flatten)]
    pub user: AdminUserView,
    /// Live sessions: neither ended nor past their end, and used (logged in or refreshed)
    /// within `REFRESH_TOKEN_EXPIRY`. Counted by the store.
    pub active_sessions: u64,
}

impl From<UserDetail> for AdminUserDetailView {
    fn from(detail: UserDetail) -> Self {
        Self {
            user: detail.user.into(),
            active_sessions: detail.active_sessions,
        }
    }
}

/// One page of accounts, ordered by email (case-insensitively).
#[derive(Object, Debug)]
pub struct UserPageView {
    pub users: Vec<AdminUserView>,
    /// Pass as `cursor` for the next page; absent on the last page. Pages stay consistent
    /// while accounts are added or removed: no account present throughout is skipped or
    /// listed twice.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

impl From<UserPage> for UserPageView {
    fn from(page: UserPage) -> Self {
        Self {
            users: page.users.into_iter().map(Into::into).collect(),
            next_cursor: page.next,
        }
    }
}

/// The roles an account is to have, replacing those it has.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct RolesInput {
    /// Each role once (repeats are ignored); `user` is added when missing. At most 16 in all.
    #[oai(validator(max_items = 16))]
    pub roles: Vec<RoleView>,
}

impl Example for RolesInput {
    fn example() -> Self {
        Self {
            roles: vec![RoleView("user".into()), RoleView("billing".into())],
        }
    }
}

#[derive(Object, Debug)]
pub struct EndedSessionsView {
    /// How many sessions were live and have ended.
    pub ended_sessions: u64,
}

/// What an admin operation answers besides its success and the statuses it adds.
macro_rules! admin_response {
    (
        $name:ident {
            $(#[$ok_doc:meta])* $ok:ident($body:ty),
            $(#[$bad_doc:meta])* bad_request,
            $($(#[$extra_doc:meta])* $extra:ident = $status:literal,)*
        }
    ) => {
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::from_framework")]
        enum $name {
            $(#[$ok_doc])*
            #[oai(status = 200)]
            $ok(Json<$body>),
            $(#[$bad_doc])*
            #[oai(status = 400)]
            BadRequest(Json<ErrorBody>),
            /// `missing_token`, `invalid_token`.
            #[oai(status = 401)]
            Unauthorized(
                Json<ErrorBody>,
                #[oai(header = "WWW-Authenticate")] String,
            ),
            /// `forbidden`: the caller is signed in but is not an administrator now (the role
            /// was removed, the account disabled, or its email is not verified).
            #[oai(status = 403)]
            Forbidden(Json<ErrorBody>),
            $($(#[$extra_doc])* #[oai(status = $status)] $extra(Json<ErrorBody>),)*
            /// `internal_error`.
            #[oai(status = 500)]
            Internal(Json<ErrorBody>),
            /// `service_unavailable`: the data store does not answer; retry (every admin
            /// operation may be repeated).
            #[oai(status = 503)]
            Unavailable(
                Json<ErrorBody>,
                #[oai(header = "Retry-After")] Option<String>,
            ),
        }
        narrow!($name { BadRequest, Unauthorized, Forbidden, $($extra,)* Internal, Unavailable });
    };
}

admin_response!(ListUsersResponse {
    /// The page.
    Listed(UserPageView),
    /// `bad_request`: a parameter has the wrong type or range; `invalid_cursor`.
    bad_request,
    /// `invalid_role`: `role` is not a role name.
    Unprocessable = 422,
});

admin_response!(GetUserResponse {
    /// The account.
    Found(AdminUserDetailView),
    /// `bad_request`: the id is not a UUID.
    bad_request,
    /// `user_not_found`.
    NotFound = 404,
});

admin_response!(SetRolesResponse {
    /// The account with its new roles. Access tokens issued before keep the roles they were
    /// issued with until they expire (at most `JWT_EXPIRY`); the next refresh carries the new.
    Changed(AdminUserView),
    /// `bad_request`: the id is not a UUID, or the body is not `{"roles": [...]}` with at most
    /// 16 strings.
    bad_request,
    /// `user_not_found`.
    NotFound = 404,
    /// `request_timeout`.
    RequestTimeout = 408,
    /// `own_admin_role`: the new roles would take the caller's own `admin` role away.
    Conflict = 409,
    /// `payload_too_large`.
    PayloadTooLarge = 413,
    /// `unsupported_media_type`.
    UnsupportedMediaType = 415,
    /// `invalid_role`: a role is not a role name, or there would be more than 16.
    Unprocessable = 422,
});

admin_response!(DisableUserResponse {
    /// The account, disabled (already disabled: unchanged). Its sessions have ended; its
    /// access tokens are refused by latchkey from the next request on (services verifying
    /// them on their own accept them until they expire), and logins get 403
    /// `account_disabled`.
    Disabled(AdminUserView),
    /// `bad_request`: the id is not a UUID.
    bad_request,
    /// `user_not_found`.
    NotFound = 404,
    /// `request_timeout`: a body was sent (none is needed) and did not arrive in time.
    RequestTimeout = 408,
    /// `own_account`: administrators cannot disable themselves.
    Conflict = 409,
    /// `payload_too_large`: a body was sent (none is needed) and was too large.
    PayloadTooLarge = 413,
});

admin_response!(EnableUserResponse {
    /// The account, enabled: it may log in again (its ended sessions stay ended).
    Enabled(AdminUserView),
    /// `bad_request`: the id is not a UUID.
    bad_request,
    /// `user_not_found`.
    NotFound = 404,
    /// `request_timeout`: a body was sent (none is needed) and did not arrive in time.
    RequestTimeout = 408,
    /// `payload_too_large`: a body was sent (none is needed) and was too large.
    PayloadTooLarge = 413,
});

admin_response!(EndUserSessionsResponse {
    /// Every session of the account has ended; its refresh and access tokens are refused
    /// from the next request on.
    Ended(EndedSessionsView),
    /// `bad_request`: the id is not a UUID.
    bad_request,
    /// `user_not_found`.
    NotFound = 404,
    /// `request_timeout`: a body was sent (none is needed) and did not arrive in time.
    RequestTimeout = 408,
    /// `payload_too_large`: a body was sent (none is needed) and was too large.
    PayloadTooLarge = 413,
});

const DEFAULT_PAGE_SIZE: u32 = 20;

pub(crate) struct AdminApi;

#[OpenApi(prefix_path = "/admin", tag = "ApiTags::Admin")]
impl AdminApi {
    /// List accounts, a page at a time, optionally only those whose email starts with
    /// `query`, that have `role`, or that are (not) `disabled`.
    #[oai(path = "/users", method = "get", operation_id = "adminListUsers")]
    #[allow(clippy::too_many_arguments)]
    async fn list_users(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// The start of the email, in any letter case.
        #[oai(validator(max_length = 254))]
        query: Query<Option<String>>,
        /// Only accounts with this role.
        role: Query<Option<String>>,
        /// Only disabled accounts (`true`) or only enabled ones (`false`).
        disabled: Query<Option<bool>>,
        /// The `next_cursor` of the previous page; absent for the first.
        #[oai(validator(max_length = 508))]
        cursor: Query<Option<String>>,
        /// Accounts per page, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> ListUsersResponse {
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_SIZE) as usize;
        let query = UserQuery {
            email_prefix: query.0,
            role: role.0,
            disabled: disabled.0,
            cursor: cursor.0,
            limit: limit.min(MAX_PAGE_SIZE),
        };
        respond(service.list_users(&auth.0, query).await, |page| {
            ListUsersResponse::Listed(Json(page.into()))
        })
    }

    /// One account, with how many sessions it has and when it last logged in.
    #[oai(path = "/users/:id", method = "get", operation_id = "adminGetUser")]
    async fn get_user(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// The account's id.
        id: Path<Uuid>,
    ) -> GetUserResponse {
        respond(
            service.get_user(&auth.0, UserId::from_uuid(id.0)).await,
            |detail| GetUserResponse::Found(Json(detail.into())),
        )
    }

    /// Replace the account's roles. An administrator cannot remove their own `admin` role.
    #[oai(
        path = "/users/:id/roles",
        method = "put",
        operation_id = "adminSetUserRoles"
    )]
    async fn set_roles(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// The account's id.
        id: Path<Uuid>,
        body: Json<RolesInput>,
    ) -> SetRolesResponse {
        let roles = body.0.roles.into_iter().map(|role| role.0).collect();
        respond(
            service
                .set_roles(&auth.0, UserId::from_uuid(id.0), roles)
                .await,
            |user| SetRolesResponse::Changed(Json(user.into())),
        )
    }

    /// Disable the account: every session of it ends and it cannot log in until enabled.
    /// An administrator cannot disable themselves.
    #[oai(
        path = "/users/:id/disable",
        method = "post",
        operation_id = "adminDisableUser"
    )]
    async fn disable(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// The account's id.
        id: Path<Uuid>,
    ) -> DisableUserResponse {
        let (service, caller) = (service.0.clone(), auth.0);
        let disabled =
            to_the_end(async move { service.disable_user(&caller, UserId::from_uuid(id.0)).await })
                .await;
        respond(disabled, |user| {
            DisableUserResponse::Disabled(Json(user.into()))
        })
    }

    /// Enable a disabled account: it may log in again.
    #[oai(
        path = "/users/:id/enable",
        method = "post",
        operation_id = "adminEnableUser"
    )]
    async fn enable(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// The account's id.
        id: Path<Uuid>,
    ) -> EnableUserResponse {
        respond(
            service.enable_user(&auth.0, UserId::from_uuid(id.0)).await,
            |user| EnableUserResponse::Enabled(Json(user.into())),
        )
    }

    /// End every session of the account ("sign out everywhere" on its behalf).
    #[oai(
        path = "/users/:id/sessions",
        method = "delete",
        operation_id = "adminEndUserSessions"
    )]
    async fn end_sessions(
        &self,
        service: Data<&AuthService>,
        auth: BearerAuth,
        /// The account's id.
        id: Path<Uuid>,
    ) -> EndUserSessionsResponse {
        let (service, caller) = (service.0.clone(), auth.0);
        let ended = to_the_end(async move {
            service
                .end_user_sessions(&caller, UserId::from_uuid(id.0))
                .await
        })
        .await;
        respond(ended, |ended| {
            EndUserSessionsResponse::Ended(Json(EndedSessionsView {
                ended_sessions: ended,
            }))
        })
    }
}
