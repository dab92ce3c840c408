//! Request and response bodies as they appear on the wire and in the OpenAPI document.

use chrono::{DateTime, Utc};
use latchkey_application::TokenPair;
use latchkey_domain::{AccessClaims, Role, User};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

/// Email and password. Deliberately not `Debug`, so the password cannot end up in a log.
/// Lengths are checked by the domain (with messages naming the rule); the body-size limit
/// bounds what reaches it.
#[derive(Object)]
pub struct Credentials {
    /// Compared case-insensitively; surrounding spaces are ignored.
    pub email: String,
    /// 8 to 1024 characters, any characters, never truncated.
    pub password: String,
}

#[derive(Object)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum RoleView {
    User,
    Admin,
}

impl From<Role> for RoleView {
    fn from(role: Role) -> Self {
        match role {
            Role::User => RoleView::User,
            Role::Admin => RoleView::Admin,
        }
    }
}

/// A user as others may see it: never the password hash.
#[derive(Object, Debug)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub roles: Vec<RoleView>,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            roles: user.roles.into_iter().map(RoleView::from).collect(),
            created_at: user.created_at,
        }
    }
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Bearer,
}

#[derive(Object)]
pub struct TokenPairView {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single use: exchange it at `/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

impl From<TokenPair> for TokenPairView {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            token_type: TokenType::Bearer,
            expires_in: pair.access_expires_in_secs,
            refresh_token: pair.refresh_token.expose().to_owned(),
            refresh_expires_in: pair.refresh_expires_in_secs,
        }
    }
}

/// The session an access token belongs to, as the token itself says.
#[derive(Object, Debug)]
pub struct SessionView {
    /// Identifies the login; every refreshed token pair keeps it.
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub roles: Vec<RoleView>,
    /// When this access token was issued.
    pub issued_at: DateTime<Utc>,
    /// When this access token stops working (a refresh gives a new one).
    pub expires_at: DateTime<Utc>,
}

impl From<AccessClaims> for SessionView {
    fn from(claims: AccessClaims) -> Self {
        Self {
            session_id: claims.session.as_uuid(),
            user_id: claims.subject.as_uuid(),
            roles: claims.roles.into_iter().map(RoleView::from).collect(),
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
        }
    }
}

#[derive(Object, Debug)]
pub struct HealthView {
    /// `ok` when the check passed.
    pub status: String,
}
