//! The authentication decisions the use cases report, for the audit log and the metrics.
//!
//! An event names who and what, never a secret: no password, token, hash or email address
//! (OWASP ASVS 5.0 V16: log security events without sensitive data).

use crate::{ClientNetwork, FamilyId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthEvent {
    Registered {
        user: UserId,
    },
    LoginSucceeded {
        user: UserId,
        session: FamilyId,
        client: ClientNetwork,
    },
    /// A wrong password, an unknown email (`user` is `None`), or an unverified address.
    LoginFailed {
        user: Option<UserId>,
        client: ClientNetwork,
        reason: LoginFailure,
    },
    /// Refused before any password check: too many failures, or the network's budget spent.
    LoginThrottled {
        user: Option<UserId>,
        client: ClientNetwork,
    },
    /// A refresh token was refused: unknown, expired, spent, of an ended session, or the
    /// network's budget was spent (`throttled`).
    RefreshRefused {
        client: ClientNetwork,
        throttled: bool,
    },
    Refreshed {
        user: UserId,
        session: FamilyId,
        client: ClientNetwork,
        /// A token rotated moments ago came back (two tabs, a retry) from the network that
        /// rotated it, and got the same successor.
        within_grace: bool,
    },
    /// A rotated token came back after the grace window (`within_grace: false`), or within it
    /// from another network than the one that rotated it; its session was ended.
    RefreshReuseDetected {
        user: UserId,
        session: FamilyId,
        /// Where the token came back from.
        client: ClientNetwork,
        /// Where it was rotated from; `None` when the rotation did not record it (an earlier
        /// release).
        rotated_by: Option<ClientNetwork>,
        within_grace: bool,
    },
    /// `session` is `None` when every session of the user ended at once.
    SessionsEnded {
        user: UserId,
        session: Option<FamilyId>,
        cause: SessionEndCause,
    },
    PasswordChanged {
        user: UserId,
        how: PasswordChangeKind,
    },
    EmailVerified {
        user: UserId,
    },
    AccountDeleted {
        user: UserId,
    },
    /// An administrator acted on an account (`user`); `admin` names who.
    AdminAction {
        admin: UserId,
        user: UserId,
        action: AdminAction,
    },
    /// `ADMIN_EMAILS` made an account an administrator (once a reset link set its password,
    /// or at start).
    AdminGrantedByConfiguration {
        user: UserId,
    },
    /// `ADMIN_EMAILS` enabled a disabled administrator again at start.
    AdminEnabledByConfiguration {
        user: UserId,
    },
    /// An operator made the account an administrator (`latchkey admin grant`).
    AdminGrantedByOperator {
        user: UserId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAction {
    RolesChanged,
    Disabled,
    Enabled,
    SessionsEnded,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RolesChanged => "roles_changed",
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
            Self::SessionsEnded => "sessions_ended",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginFailure {
    InvalidCredentials,
    EmailNotVerified,
    /// The password confirming a password change or an account deletion was wrong (counted
    /// as a failed login: a stolen access token must not guess faster than the login page).
    WrongConfirmation,
    /// The password was right, but it changed (or the account went) while it was checked.
    PasswordChangedMeanwhile,
    /// The password was right, but an administrator disabled the account.
    AccountDisabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEndCause {
    Logout,
    LogoutEverywhere,
    EndedByOwner,
    PasswordChanged,
    PasswordReset,
    AccountDeleted,
    RefreshReuse,
    /// An administrator ended them, or disabled the account.
    Administrator,
    /// The address was verified from a browser not signed in to the account: whoever holds
    /// the mailbox may not be whoever chose the password (pre-hijacking), so the sessions
    /// started before end.
    VerifiedElsewhere,
    /// A login took the account past `MAX_SESSIONS_PER_USER` live sessions: its least recently
    /// used one ended.
    SessionLimit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordChangeKind {
    /// The owner, signed in, confirmed the old password.
    Changed,
    /// Through a mailed reset link.
    Reset,
}

impl AuthEvent {
    /// A stable name, used as the audit log's `event` field and as a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "registered",
            Self::LoginSucceeded { .. } => "login_succeeded",
            Self::LoginFailed { .. } => "login_failed",
            Self::LoginThrottled { .. } => "login_throttled",
            Self::RefreshRefused { .. } => "refresh_refused",
            Self::Refreshed { .. } => "refreshed",
            Self::RefreshReuseDetected { .. } => "refresh_reuse_detected",
            Self::SessionsEnded { .. } => "sessions_ended",
            Self::PasswordChanged { .. } => "password_changed",
            Self::EmailVerified { .. } => "email_verified",
            Self::AccountDeleted { .. } => "account_deleted",
            Self::AdminAction { .. } => "admin_action",
            Self::AdminGrantedByConfiguration { .. } => "admin_granted_by_configuration",
            Self::AdminEnabledByConfiguration { .. } => "admin_enabled_by_configuration",
            Self::AdminGrantedByOperator { .. } => "admin_granted_by_operator",
        }
    }

    /// The account the decision was about, when known.
    pub fn user(&self) -> Option<UserId> {
        match *self {
            Self::Registered { user }
            | Self::LoginSucceeded { user, .. }
            | Self::Refreshed { user, .. }
            | Self::RefreshReuseDetected { user, .. }
            | Self::SessionsEnded { user, .. }
            | Self::PasswordChanged { user, .. }
            | Self::EmailVerified { user }
            | Self::AccountDeleted { user }
            | Self::AdminAction { user, .. }
            | Self::AdminGrantedByConfiguration { user }
            | Self::AdminEnabledByConfiguration { user }
            | Self::AdminGrantedByOperator { user } => Some(user),
            Self::LoginFailed { user, .. } | Self::LoginThrottled { user, .. } => user,
            Self::RefreshRefused { .. } => None,
        }
    }
}

impl LoginFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::EmailNotVerified => "email_not_verified",
            Self::WrongConfirmation => "wrong_confirmation",
            Self::PasswordChangedMeanwhile => "password_changed_meanwhile",
            Self::AccountDisabled => "account_disabled",
        }
    }
}

impl SessionEndCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutEverywhere => "logout_everywhere",
            Self::EndedByOwner => "ended_by_owner",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::AccountDeleted => "account_deleted",
            Self::RefreshReuse => "refresh_reuse",
            Self::Administrator => "administrator",
            Self::VerifiedElsewhere => "verified_elsewhere",
            Self::SessionLimit => "session_limit",
        }
    }
}

impl PasswordChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Reset => "reset",
        }
    }
}
