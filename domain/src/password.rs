use crate::{ports::CommonPasswords, EmailAddress};
use secrecy::{ExposeSecret, SecretString};
use std::{fmt, sync::Arc};
use unicode_normalization::UnicodeNormalization;

/// NIST SP 800-63B: at least 8 characters for user-chosen secrets. `PASSWORD_MIN_LENGTH` may
/// raise the minimum, never lower it below this.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// NIST asks to allow at least 64; the cap bounds the work per request. Counted on what was
/// sent (as JSON Schema's `maxLength` counts), so the document can state it exactly.
pub const PASSWORD_MAX_CHARS: usize = 1024;
/// A local part shorter than this says too little to be worth refusing inside a password
/// (`a@example.com` would forbid every password with an `a`).
const MIN_CONTEXT_WORD_CHARS: usize = 3;

/// A plaintext password, Unicode NFKC-normalised, that cannot be printed by accident.
///
/// NFKC makes one password of what different keyboards and input methods send for it: the
/// `ﬁ` ligature and `fi`, a full-width `Ａ` and `A`, a precomposed `é` and `e` + accent.
/// Two constructors because the rules differ: a new password must meet the policy, while a
/// login attempt is only length-capped (so that changing the policy never locks anyone out).
pub struct Password {
    normalized: SecretString,
    /// What was sent, when NFKC changed it: hashes stored before normalisation was introduced
    /// were computed over this.
    as_sent: Option<SecretString>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {min} characters")]
    TooShort { min: usize },
    #[error("password must be at most {max} characters")]
    TooLong { max: usize },
    #[error("password is too common: it appears in lists of leaked passwords")]
    Common,
    #[error("password must not contain the part of your email address before the @")]
    ContainsEmail,
    #[error("password must not contain the name of this service ({name})")]
    ContainsServiceName { name: String },
}

impl PasswordError {
    /// A stable name for the rule that failed, for clients to show next to the field.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "min_length",
            Self::TooLong { .. } => "max_length",
            Self::Common => "common_password",
            Self::ContainsEmail => "contains_email",
            Self::ContainsServiceName { .. } => "contains_service_name",
        }
    }
}

/// What a new password must satisfy (NIST SP 800-63B 3.1.1.2, OWASP ASVS 5.0 V6.2): a
/// minimum length, and none of the values an attacker tries first. No composition rules.
#[derive(Clone)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    /// Refused inside passwords, in any letter case.
    pub service_name: String,
    pub common: Arc<dyn CommonPasswords>,
}

impl fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordPolicy")
            .field("min_chars", &self.min_chars)
            .field("service_name", &self.service_name)
            .finish_non_exhaustive()
    }
}

impl Password {
    /// A password chosen by the owner of `email`. Its length counts characters (Unicode code
    /// points) as sent, as JSON Schema's `minLength` and `maxLength` do and as a login counts
    /// them, so the document states the rule exactly; the other rules look at the normalised
    /// form, which is also what is hashed.
    pub fn new_for_account(
        raw: String,
        email: &EmailAddress,
        policy: &PasswordPolicy,
    ) -> Result<Self, PasswordError> {
        let sent_chars = raw.chars().count();
        let password = Self::for_login(raw)?;
        if sent_chars < policy.min_chars {
            return Err(PasswordError::TooShort {
                min: policy.min_chars,
            });
        }
        let normalized = password.expose();
        let lowercase = normalized.to_lowercase();
        // Compared as the password is: normalised and lower-cased.
        let comparable = |word: &str| word.nfkc().collect::<String>().to_lowercase();
        let local_part = comparable(
            email
                .normalized()
                .split_once('@')
                .map_or("", |(local, _)| local),
        );
        if local_part.chars().count() >= MIN_CONTEXT_WORD_CHARS && lowercase.contains(&local_part) {
            return Err(PasswordError::ContainsEmail);
        }
        let service = comparable(&policy.service_name);
        if !service.is_empty() && lowercase.contains(&service) {
            return Err(PasswordError::ContainsServiceName {
                name: policy.service_name.clone(),
            });
        }
        if policy.common.contains(&lowercase) {
            return Err(PasswordError::Common);
        }
        Ok(password)
    }

    pub fn for_login(raw: String) -> Result<Self, PasswordError> {
        if raw.chars().count() > PASSWORD_MAX_CHARS {
            return Err(PasswordError::TooLong {
                max: PASSWORD_MAX_CHARS,
            });
        }
        let normalized: String = raw.nfkc().collect();
        let as_sent = (normalized != raw).then(|| SecretString::from(raw));
        Ok(Self {
            normalized: SecretString::from(normalized),
            as_sent,
        })
    }

    /// The normalised password: what is hashed and verified.
    pub fn expose(&self) -> &str {
        self.normalized.expose_secret()
    }

    /// The password exactly as sent, when normalisation changed it: a hash stored before
    /// passwords were normalised may have been computed over this form.
    pub fn as_sent(&self) -> Option<Password> {
        self.as_sent.as_ref().map(|raw| Password {
            normalized: raw.clone(),
            as_sent: None,
        })
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

    struct Listed(&'static [&'static str]);

    impl CommonPasswords for Listed {
        fn contains(&self, lowercase: &str) -> bool {
            self.0.contains(&lowercase)
        }
    }

    fn policy(min_chars: usize) -> PasswordPolicy {
        PasswordPolicy {
            min_chars,
            service_name: "Latchkey".into(),
            common: Arc::new(Listed(&["password123", "iloveyou2"])),
        }
    }

    fn ann() -> EmailAddress {
        EmailAddress::parse("Ann.Lee@example.com").unwrap()
    }

    fn new(raw: &str) -> Result<Password, PasswordError> {
        Password::new_for_account(raw.into(), &ann(), &policy(8))
    }

    #[test]
    fn a_new_password_needs_the_minimum_counted_as_characters_not_bytes() {
        assert_eq!(
            new("1234567").unwrap_err(),
            PasswordError::TooShort { min: 8 }
        );
        // Seven multi-byte characters are still seven characters.
        assert!(new("ééééééé").is_err());
        assert!(new("éééééééé").is_ok());
        let raised = policy(12);
        assert_eq!(
            Password::new_for_account("abcdefghijk".into(), &ann(), &raised).unwrap_err(),
            PasswordError::TooShort { min: 12 }
        );
    }

    #[test]
    fn the_length_rules_count_code_points_as_sent_not_after_normalisation() {
        // Eight code points as sent (JSON Schema's count), seven once the accent composes.
        let composed = new("e\u{301}xkcdqw").unwrap();
        assert_eq!(composed.expose(), "\u{e9}xkcdqw");
        assert!(new("e\u{301}e\u{301}abcd").is_ok());
        // Four ligatures are eight letters once normalised, but four characters as sent.
        let ligatures = Password::for_login("ﬁﬁﬁﬁ".into()).unwrap();
        assert_eq!(ligatures.expose(), "fifififi");
        assert_eq!(new("ﬁﬁﬁﬁ").unwrap_err(), PasswordError::TooShort { min: 8 });
        // The cap too: 1024 code points as sent are accepted however long NFKC makes them,
        // and 1026 are refused though they compose to 513.
        assert!(new(&"ﷺ".repeat(PASSWORD_MAX_CHARS)).is_ok());
        assert!(new(&"e\u{301}".repeat(PASSWORD_MAX_CHARS / 2)).is_ok());
        assert_eq!(
            new(&"e\u{301}".repeat(PASSWORD_MAX_CHARS / 2 + 1)).unwrap_err(),
            PasswordError::TooLong { max: 1024 }
        );
    }

    #[test]
    fn a_ligature_and_its_letters_are_the_same_password() {
        let typed = Password::for_login("of ﬁne oﬃce".into()).unwrap();
        let spelled = Password::for_login("of fine office".into()).unwrap();
        assert_eq!(typed.expose(), spelled.expose());
        assert_eq!(typed.as_sent().unwrap().expose(), "of ﬁne oﬃce");
        assert!(spelled.as_sent().is_none());
    }

    #[test]
    fn common_passwords_are_refused_in_any_letter_case_and_any_width() {
        assert_eq!(new("Password123").unwrap_err(), PasswordError::Common);
        // Full-width letters are NFKC-equal to ASCII ones.
        assert_eq!(
            new("ＰＡＳＳＷＯＲＤ123").unwrap_err(),
            PasswordError::Common
        );
        assert!(new("password1234").is_ok());
    }

    #[test]
    fn the_email_local_part_is_refused_inside_a_password() {
        assert_eq!(
            new("ann.lee").unwrap_err(),
            PasswordError::TooShort { min: 8 }
        );
        assert_eq!(
            new("ANN.LEE2026").unwrap_err(),
            PasswordError::ContainsEmail
        );
        assert_eq!(
            new("my ann.lee pass").unwrap_err(),
            PasswordError::ContainsEmail
        );
        // A one- or two-letter local part would forbid half the alphabet.
        let short = EmailAddress::parse("al@example.com").unwrap();
        assert!(Password::new_for_account("always alert".into(), &short, &policy(8)).is_ok());
    }

    #[test]
    fn the_service_name_is_refused_inside_a_password() {
        let err = new("my LATCHKEY login").unwrap_err();
        assert_eq!(
            err,
            PasswordError::ContainsServiceName {
                name: "Latchkey".into()
            }
        );
        assert!(err.to_string().contains("Latchkey"));
    }

    #[test]
    fn every_rule_has_its_own_name() {
        let rules = [
            PasswordError::TooShort { min: 8 },
            PasswordError::TooLong { max: 1024 },
            PasswordError::Common,
            PasswordError::ContainsEmail,
            PasswordError::ContainsServiceName { name: "x".into() },
        ]
        .map(|e| e.rule());
        let mut unique = rules.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), rules.len());
    }

    #[test]
    fn a_new_password_may_be_a_long_passphrase_kept_whole() {
        let long = "correct horse battery staple ".repeat(35);
        let chars = long.chars().count();
        assert!(chars > 64 && chars <= PASSWORD_MAX_CHARS);
        let password = new(&long).unwrap();
        assert_eq!(password.expose(), long);
    }

    #[test]
    fn passwords_over_the_cap_are_refused_for_new_accounts_and_logins() {
        let too_long = "x".repeat(PASSWORD_MAX_CHARS + 1);
        assert_eq!(
            new(&too_long).unwrap_err(),
            PasswordError::TooLong { max: 1024 }
        );
        assert!(Password::for_login(too_long).is_err());
        // The cap counts what was sent, as the document's maxLength does, even where NFKC
        // makes the password longer.
        assert!(Password::for_login("ﷺ".repeat(PASSWORD_MAX_CHARS)).is_ok());
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
