//! latchkey's use cases, one module each, written against the domain's ports only.

mod abuse;
mod account;
mod admin;
mod authenticate;
mod current_user;
mod login;
mod logout;
mod mail_links;
mod readiness;
mod refresh;
mod register;
mod service;
mod sessions;
mod tokens;

pub use abuse::{AbusePolicy, Budget, Throttled};
pub use account::{AccountError, ChangePasswordCommand, DeleteAccountCommand};
pub use admin::{AdminError, OperatorGrantError, UserDetail, UserPage, UserQuery, MAX_PAGE_SIZE};
pub use authenticate::AuthenticateError;
pub use current_user::CurrentUserError;
pub use login::{LoginCommand, LoginError};
pub use logout::LogoutCommand;
pub use mail_links::{EmailVerified, MailLinkError, MailPolicy, SendLinkError, VerifyEmailCommand};
pub use refresh::{RefreshCommand, RefreshError};
pub use register::{RegisterCommand, RegisterError};
pub use service::{AuthService, Policies, Ports, SessionPolicy};
pub use sessions::{EndSessionError, ListSessionsError, SessionPage, SessionQuery, SessionSummary};
pub use tokens::TokenPair;

#[cfg(test)]
mod test_support;
