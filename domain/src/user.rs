use crate::{EmailAddress, PasswordHash};
use chrono::{DateTime, Utc};
use std::{fmt, str::FromStr};
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for UserId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What a user may do: `user` (every account), `admin` (the admin API), or a name of the
/// integrator's own, which latchkey only stores and puts in access tokens.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Role(String);

/// Why a role name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a role is 1 to {max} characters of a-z, 0-9, `_` and `-`, starting with a letter",
    max = Role::MAX_CHARS
)]
pub struct InvalidRole;

impl Role {
    pub const MAX_CHARS: usize = 32;
    /// An account has at most this many roles.
    pub const MAX_PER_USER: usize = 16;
    const USER: &'static str = "user";
    const ADMIN: &'static str = "admin";

    pub fn user() -> Self {
        Self(Self::USER.into())
    }

    pub fn admin() -> Self {
        Self(Self::ADMIN.into())
    }

    /// Lower case only, so that `Admin` can never pass for something other than `admin` in an
    /// integrator's check.
    pub fn parse(raw: &str) -> Result<Self, InvalidRole> {
        let mut chars = raw.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            && raw.len() <= Self::MAX_CHARS;
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidRole)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_admin(&self) -> bool {
        self.0 == Self::ADMIN
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account's roles as an administrator sets them: each once, in the order given, at most
/// [`Role::MAX_PER_USER`], and never without `user`, which every account has.
pub fn role_set(roles: impl IntoIterator<Item = Role>) -> Result<Vec<Role>, InvalidRole> {
    let mut set = vec![Role::user()];
    for role in roles {
        if !set.contains(&role) {
            set.push(role);
        }
    }
    if set.len() > Role::MAX_PER_USER {
        return Err(InvalidRole);
    }
    Ok(set)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: EmailAddress,
    pub password_hash: PasswordHash,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
    /// When a mailed link proved that the address reaches the account's owner.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Set by an administrator: no login, no session, until enabled again.
    pub disabled_at: Option<DateTime<Utc>>,
    /// The last time a login accepted the password.
    pub last_login_at: Option<DateTime<Utc>>,
    /// When a mailed link (a reset) last set the password in force, so the mailbox's owner
    /// chose it; kept through changes made with that password, cleared by nothing else. An
    /// account registered by someone else in the owner's name (pre-hijacking) has none until
    /// the owner resets it, so `ADMIN_EMAILS` waits for this, never for verification alone.
    pub password_set_by_mailbox_owner_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(Role::is_admin)
    }

    /// Whoever holds the mailbox both proved it and chose the password in force.
    pub fn owned_by_mailbox_holder(&self) -> bool {
        self.email_verified_at.is_some() && self.password_set_by_mailbox_owner_at.is_some()
    }
}

/// Which accounts an administrator lists. Every field narrows the list; none lists them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// The start of the email, in any case.
    pub email_prefix: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

impl UserFilter {
    pub fn matches(&self, user: &User) -> bool {
        self.email_prefix
            .as_ref()
            .is_none_or(|prefix| user.email.normalized().starts_with(&prefix.to_lowercase()))
            && self
                .role
                .as_ref()
                .is_none_or(|role| user.roles.contains(role))
            && self
                .disabled
                .is_none_or(|disabled| user.disabled_at.is_some() == disabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_lower_case_names() {
        for role in [Role::user(), Role::admin()] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        for good in ["billing", "support-2", "read_only", "a", &"x".repeat(32)] {
            assert_eq!(Role::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "Admin",
            "ADMIN",
            "2fa",
            "-x",
            "a b",
            "rôle",
            "a.b",
            &"x".repeat(33),
        ] {
            assert_eq!(Role::parse(bad), Err(InvalidRole), "{bad:?}");
        }
        assert!(Role::admin().is_admin() && !Role::user().is_admin());
    }

    #[test]
    fn a_role_set_always_has_user_and_each_role_once() {
        let parse = |raw: &str| Role::parse(raw).unwrap();
        assert_eq!(
            role_set([
                parse("admin"),
                parse("billing"),
                parse("admin"),
                parse("user")
            ]),
            Ok(vec![Role::user(), Role::admin(), parse("billing")])
        );
        assert_eq!(role_set([]), Ok(vec![Role::user()]));
        let many = (0..16).map(|n| parse(&format!("r{n}")));
        assert_eq!(role_set(many), Err(InvalidRole));
    }
}
