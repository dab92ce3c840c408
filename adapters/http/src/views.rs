//! Request and response bodies as they appear on the wire and in the OpenAPI document.

use chrono::{DateTime, Utc};
use latchkey_application::{EmailVerified, SessionPage, SessionSummary, TokenPair};
use latchkey_domain::{AccessClaims, Role, User};
use latchkey_domain::{EmailAddress, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS};
use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{Example, ParseError, ParseResult},
    Enum, Object,
};
use uuid::Uuid;

/// A JSON string whose schema states the rules the domain enforces, so the document never
/// promises more than the server takes. Parsing accepts any string: the domain checks the rules
/// and answers 422 naming the one that failed. Other JSON types are a 400, as for any field.
macro_rules! documented_string {
    ($(#[$doc:meta])* $name:ident { $($rule:ident: $value:expr),* $(,)? }) => {
        $(#[$doc])*
        pub struct $name(pub String);

        impl poem_openapi::types::Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = String;
            type RawElementValueType = String;

            fn name() -> std::borrow::Cow<'static, str> {
                "string".into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    $($rule: $value,)*
                    ..MetaSchema::new("string")
                }))
            }

            fn as_raw_value(&self) -> Option<&String> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl poem_openapi::types::ParseFromJSON for $name {
            fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
                // Never echo the value: it may be a password.
                match value {
                    Some(serde_json::Value::String(text)) => Ok(Self(text)),
                    None | Some(serde_json::Value::Null) => Err(ParseError::expected_input()),
                    Some(_) => Err(ParseError::custom("must be a string")),
                }
            }
        }

        impl poem_openapi::types::ToJSON for $name {
            fn to_json(&self) -> Option<serde_json::Value> {
                Some(serde_json::Value::String(self.0.clone()))
            }
        }
    };
}

/// What `EmailAddress::parse` accepts, as an ECMA-262 regex; together with `maxLength` and
/// `format: email` as jsonschema-rs (schemathesis' validator) checks it, with RFC 5321's limits
/// of 64 characters before the `@` and 63 per label, exactly those addresses. A test holds the
/// parser to this model.
pub const EMAIL_PATTERN: &str = concat!(
    "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*",
    "@[A-Za-z0-9]+(-[A-Za-z0-9]+)*(\\.[A-Za-z0-9]+(-[A-Za-z0-9]+)*)+$",
);

documented_string!(
    /// An email address being registered.
    NewEmailInput {
        format: Some("email"),
        pattern: Some(EMAIL_PATTERN.to_owned()),
        min_length: Some(1),
        max_length: Some(EmailAddress::MAX_LEN),
    }
);

documented_string!(
    /// An email address being presented: any registered one, so only its length is checked.
    EmailInput {
        min_length: Some(1),
        max_length: Some(EmailAddress::MAX_LEN),
    }
);

documented_string!(
    /// A password being chosen. It must have at least `PASSWORD_MIN_LENGTH` characters (8 by
    /// default, never fewer, so the schema states 8) and at most 1024, counted as Unicode code
    /// points as sent, as JSON Schema counts them. It is then Unicode NFKC-normalised (so the
    /// `ﬁ` ligature and `fi` are one password) and must not be among the 100,000 most common
    /// leaked passwords, nor contain the part of the email before the `@` (when it has 3 or
    /// more characters) or the service's name, in any letter case. A refusal is a 422
    /// `weak_password` naming the `rule`.
    NewPasswordInput {
        format: Some("password"),
        min_length: Some(PASSWORD_MIN_CHARS),
        max_length: Some(PASSWORD_MAX_CHARS),
    }
);

documented_string!(
    /// A password being presented: only the length cap applies, so tightening the policy never
    /// locks anyone out.
    PasswordInput {
        format: Some("password"),
        max_length: Some(PASSWORD_MAX_CHARS),
    }
);

documented_string!(
    /// A refresh token as issued; anything else is answered as an unknown token.
    RefreshTokenInput {}
);

documented_string!(
    /// The `token` of a mailed link, as it appears after `#token=`; anything else is answered
    /// as an invalid link.
    MailTokenInput {}
);

// Request bodies are deliberately not `Debug`, so a password cannot end up in a log.

/// A new account.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct NewAccount {
    /// `name@example.com`: ASCII, no quotes or spaces, at most 254 characters (64 before the
    /// `@`), a host name of at least two labels of letters and digits joined by single
    /// hyphens. Compared case-insensitively.
    pub email: NewEmailInput,
    /// 8 to 1024 characters (Unicode code points), any characters, never truncated.
    pub password: NewPasswordInput,
}

impl Example for NewAccount {
    fn example() -> Self {
        Self {
            email: NewEmailInput("ann@example.com".into()),
            password: NewPasswordInput("correct horse battery staple".into()),
        }
    }
}

/// Email and password of an existing account.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct Credentials {
    /// The email the account was registered with, in any letter case; surrounding whitespace
    /// is ignored.
    pub email: EmailInput,
    /// At most 1024 characters.
    pub password: PasswordInput,
}

impl Example for Credentials {
    fn example() -> Self {
        Self {
            email: EmailInput("ann@example.com".into()),
            password: PasswordInput("correct horse battery staple".into()),
        }
    }
}

/// A refresh token, to exchange or to end its session.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: RefreshTokenInput,
}

impl Example for RefreshRequest {
    fn example() -> Self {
        Self {
            refresh_token: RefreshTokenInput("bYbrj0Rl3lW0sN1x4Yn2Q8oJ3q6cVtF7m9kLpA2wZ5E".into()),
        }
    }
}

/// What [`Role::parse`] accepts.
pub const ROLE_PATTERN: &str = "^[a-z][a-z0-9_-]*$";

documented_string!(
    /// A role: `user` (every account has it), `admin` (the admin API), or a name of the
    /// integrator's own, which latchkey stores and puts in access tokens: 1 to 32 of a-z, 0-9,
    /// `_` and `-`, starting with a letter.
    #[derive(Debug, Clone)]
    RoleView {
        pattern: Some(ROLE_PATTERN.to_owned()),
        min_length: Some(1),
        max_length: Some(Role::MAX_CHARS),
    }
);

impl From<Role> for RoleView {
    fn from(role: Role) -> Self {
        Self(role.as_str().to_owned())
    }
}

/// A user as others may see it: never the password hash.
#[derive(Object, Debug)]
pub struct UserView {
    /// Never changes, unlike the email.
    pub id: Uuid,
    /// As registered (letter case kept).
    pub email: String,
    /// What the user may do.
    pub roles: Vec<RoleView>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// Whether a mailed link proved that the email reaches the account's owner.
    pub email_verified: bool,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            roles: user.roles.into_iter().map(RoleView::from).collect(),
            created_at: user.created_at,
            email_verified: user.email_verified_at.is_some(),
        }
    }
}

/// How to present the access token (RFC 6750): always `Bearer`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Bearer,
}

/// The tokens of a session, after login or refresh.
#[derive(Object)]
pub struct TokenPairView {
    /// A JWT; send it as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    // No doc comment (nor any `#[oai(...)]`) on a field whose type has a schema of its own:
    // poem-openapi would wrap the `$ref` in an `allOf` to carry it, which client generators
    // refuse (openapi-python-client then drops the login and refresh responses). The enum's
    // own description says what the field holds.
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
    /// The signed-in user.
    pub user_id: Uuid,
    /// The user's roles when the token was issued.
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

/// The token of a verification link.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct EmailVerification {
    pub token: MailTokenInput,
}

impl Example for EmailVerification {
    fn example() -> Self {
        Self {
            token: MailTokenInput("Qm9vdHN0cmFwIGV4YW1wbGUgdG9rZW4gZm9yIGRvY3M".into()),
        }
    }
}

/// What a verification did to the account's sessions.
#[derive(Object, Debug)]
pub struct EmailVerifiedView {
    /// Every session of the account started before ended, because the request was not signed
    /// in to it: if someone else registered this address, they are signed out, and the
    /// mailbox's holder sets a password of their own with "forgot password".
    pub sessions_ended: bool,
}

impl From<EmailVerified> for EmailVerifiedView {
    fn from(verified: EmailVerified) -> Self {
        Self {
            sessions_ended: verified.sessions_ended,
        }
    }
}

/// The address of an account whose password is forgotten.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct PasswordForgotten {
    /// The email the account was registered with, in any letter case.
    pub email: EmailInput,
}

impl Example for PasswordForgotten {
    fn example() -> Self {
        Self {
            email: EmailInput("ann@example.com".into()),
        }
    }
}

/// A new password, proved by the token of a reset link.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct PasswordReset {
    /// The `token` of the link in the reset mail.
    pub token: MailTokenInput,
    /// The new password; the rules of registration apply.
    pub new_password: NewPasswordInput,
}

impl Example for PasswordReset {
    fn example() -> Self {
        Self {
            token: MailTokenInput("Qm9vdHN0cmFwIGV4YW1wbGUgdG9rZW4gZm9yIGRvY3M".into()),
            new_password: NewPasswordInput("another horse, another staple".into()),
        }
    }
}

/// A request taken in; what follows happens by mail.
#[derive(Object, Debug)]
pub struct AcceptedView {
    /// What happens next, for people.
    pub message: String,
}

/// A new password, proved by the current one.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct PasswordChange {
    /// The password the account has now.
    pub current_password: PasswordInput,
    /// The password it gets; the rules of registration apply.
    pub new_password: NewPasswordInput,
}

impl Example for PasswordChange {
    fn example() -> Self {
        Self {
            current_password: PasswordInput("correct horse battery staple".into()),
            new_password: NewPasswordInput("another horse, another staple".into()),
        }
    }
}

/// The account's password, to confirm that its owner is asking.
#[derive(Object)]
#[oai(example, deny_unknown_fields)]
pub struct PasswordConfirmation {
    /// The password the account has now.
    pub password: PasswordInput,
}

impl Example for PasswordConfirmation {
    fn example() -> Self {
        Self {
            password: PasswordInput("correct horse battery staple".into()),
        }
    }
}

/// One of the user's live sessions (a login on some device), for telling them apart.
#[derive(Object, Debug)]
pub struct SessionSummaryView {
    /// The session id, as `session_id` in `/auth/session`; end it with
    /// `DELETE /auth/sessions/{id}`.
    pub id: Uuid,
    /// When the login happened.
    pub created_at: DateTime<Utc>,
    /// When the session last got tokens (its login or its latest refresh): at most one
    /// access-token lifetime behind its real last use.
    pub last_used_at: DateTime<Utc>,
    /// The browser or program that logged in, as its `User-Agent` header said (cut to 256
    /// characters); absent when it sent none.
    #[oai(skip_serializing_if_is_none)]
    pub user_agent: Option<String>,
    /// The address the login came from (an IPv6 client's /64 network); absent when unknown.
    #[oai(skip_serializing_if_is_none)]
    pub address: Option<String>,
    /// Whether this is the session of the access token that asked.
    pub current: bool,
}

impl From<SessionSummary> for SessionSummaryView {
    fn from(summary: SessionSummary) -> Self {
        Self {
            id: summary.id.as_uuid(),
            created_at: summary.created_at,
            last_used_at: summary.last_used_at,
            user_agent: summary.origin.user_agent,
            address: summary.origin.address,
            current: summary.current,
        }
    }
}

/// One page of the user's live sessions, newest first.
#[derive(Object, Debug)]
pub struct SessionListView {
    /// At most `limit` sessions.
    pub sessions: Vec<SessionSummaryView>,
    /// Pass as `cursor` for the next page; `null` on the last page. Pages stay consistent
    /// while sessions start and end: no session live throughout is skipped or listed twice.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

impl From<SessionPage> for SessionListView {
    fn from(page: SessionPage) -> Self {
        Self {
            sessions: page.sessions.into_iter().map(Into::into).collect(),
            next_cursor: page.next,
        }
    }
}

/// The answer of a health probe.
#[derive(Object, Debug)]
pub struct HealthView {
    /// `ok` when the check passed.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `format: email` as jsonschema-rs checks it, for addresses the pattern already admits.
    fn within_email_format_limits(address: &str) -> bool {
        let (local, domain) = address.split_once('@').expect("the pattern requires `@`");
        local.len() <= 64 && domain.split('.').all(|label| label.len() <= 63)
    }

    fn schema_admits(pattern: &regex::Regex, address: &str) -> bool {
        !address.is_empty()
            && address.chars().count() <= EmailAddress::MAX_LEN
            && pattern.is_match(address)
            && within_email_format_limits(address)
    }

    #[test]
    fn the_email_schema_admits_exactly_what_the_parser_accepts() {
        let pattern = regex::Regex::new(EMAIL_PATTERN).unwrap();
        let alphabet = ['a', 'Z', '0', '.', '@', '-', '+', ' ', '\u{e4}', '"'];
        let mut candidates = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            frontier = frontier
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            candidates.extend(frontier.iter().cloned());
        }
        let label = "b".repeat(63);
        candidates.extend([
            format!("{}@example.com", "a".repeat(64)),
            format!("{}@example.com", "a".repeat(65)),
            format!("a@{label}.com"),
            format!("a@{label}b.com"),
            format!("a@{label}.{label}.{label}.{}", "c".repeat(60)),
            format!("a@{label}.{label}.{label}.{}", "c".repeat(61)),
            "o'brien+tag@mail.example.org".into(),
            "x!#$%&'*+-/=?^_`{|}~@a-b.c-d".into(),
            "a@b.co\n".into(),
            "\na@b.co".into(),
            "ann@xn--bcher-kva.example".into(),
        ]);
        for candidate in &candidates {
            assert_eq!(
                schema_admits(&pattern, candidate),
                EmailAddress::parse(candidate).is_ok(),
                "{candidate:?}"
            );
        }
        assert!(candidates.len() > 100_000);
    }
}
