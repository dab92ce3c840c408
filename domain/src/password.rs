use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// NIST SP 800-63B: at least 8 characters for user-chosen secrets.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// NIST asks to allow at least 64; the cap bounds hashing cost per request.
pub const PASSWORD_MAX_CHARS: usize = 1024;

/// A plaintext password that cannot be printed by accident.
///
/// Two constructors because the rules differ: a new password must meet the policy, while a
/// login attempt is only length-capped (so that changing the policy never locks anyone out).
pub struct Password(SecretString);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {min} characters")]
    TooShort { min: usize },
    #[error("password must be at most {max} characters")]
    TooLong { max: usize },
}

impl Password {
    /// Checks a password chosen by a user. No composition rules, no truncation: length only.
    pub fn new_for_registration(raw: String) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(PasswordError::TooShort {
                min: PASSWORD_MIN_CHARS,
            });
        }
        Self::for_login(raw)
    }

    pub fn for_login(raw: String) -> Result<Self, PasswordError> {
        if raw.chars().count() > PASSWORD_MAX_CHARS {
            return Err(PasswordError::TooLong {
                max: PASSWORD_MAX_CHARS,
            });
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// A PHC-format password hash string (e.g. `$argon2id$v=19$m=19456,t=2,p=1$...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_requires_eight_characters_counted_as_characters_not_bytes() {
        assert_eq!(
            Password::new_for_registration("1234567".into()).unwrap_err(),
            PasswordError::TooShort { min: 8 }
        );
        // Seven multi-byte characters are still seven characters.
        assert!(Password::new_for_registration("ééééééé".into()).is_err());
        assert!(Password::new_for_registration("éééééééé".into()).is_ok());
    }

    #[test]
    fn registration_allows_long_passphrases_without_truncating_them() {
        let long = "correct horse battery staple ".repeat(35);
        let chars = long.chars().count();
        assert!(chars > 64 && chars <= PASSWORD_MAX_CHARS);
        let password = Password::new_for_registration(long.clone()).unwrap();
        assert_eq!(password.expose(), long);
    }

    #[test]
    fn passwords_over_the_cap_are_refused_both_for_registration_and_login() {
        let too_long = "x".repeat(PASSWORD_MAX_CHARS + 1);
        assert_eq!(
            Password::new_for_registration(too_long.clone()).unwrap_err(),
            PasswordError::TooLong { max: 1024 }
        );
        assert!(Password::for_login(too_long).is_err());
    }

    #[test]
    fn login_accepts_short_passwords_so_policy_changes_never_lock_users_out() {
        assert!(Password::for_login("short".into()).is_ok());
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let password = Password::for_login("hunter2-secret".into()).unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
        let hash = PasswordHash::new("$argon2id$secret".into());
        assert!(!format!("{hash:?}").contains("argon2id"));
    }
}
