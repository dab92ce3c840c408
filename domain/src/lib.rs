//! The heart of latchkey: users, credentials, tokens and the ports the core needs.
//!
//! Nothing here performs I/O or depends on an async runtime; adapters implement the ports.

pub mod email;
pub mod events;
pub mod mail;
pub mod password;
pub mod ports;
pub mod secret;
pub mod throttle;
pub mod token;
pub mod user;

pub use email::{EmailAddress, EmailError, EmailKey};
pub use events::{AdminAction, AuthEvent, LoginFailure, PasswordChangeKind, SessionEndCause};
pub use mail::{Mail, MailTokenPurpose, MailTokenRecord};
pub use password::{
    Password, PasswordError, PasswordHash, PasswordPolicy, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
};
pub use secret::{
    MailTokenHash, MailTokenSecret, OneTimeSecret, RefreshTokenHash, RefreshTokenSecret, SecretHash,
};
pub use throttle::{
    Backoff, BucketState, BudgetAction, ClientNetwork, FailureRecord, KeyPepper, ThrottleKey,
    ThrottlePrefix,
};
pub use token::{
    AccessClaims, FamilyId, RefreshTokenRecord, SessionLiveness, SessionOrigin, SessionPosition,
    SessionRecord, TokenRejection,
};
pub use user::{role_set, InvalidRole, Role, User, UserFilter, UserId};
