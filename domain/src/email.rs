use std::fmt;

/// A syntactically valid email address.
///
/// Keeps the address as the user typed it (trimmed) for display, and a lower-cased form used
/// for uniqueness and look-ups, so `Ann@Example.com` and `ann@example.com` are one account.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    display: String,
    normalized: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email must not be empty")]
    Empty,
    #[error("email must be at most {max} characters")]
    TooLong { max: usize },
    #[error("email must look like name@example.com")]
    Malformed,
}

impl EmailAddress {
    /// RFC 5321 caps a forward path at 256 octets including the angle brackets.
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > Self::MAX_LEN {
            return Err(EmailError::TooLong { max: Self::MAX_LEN });
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let local_ok = !local.is_empty() && local.len() <= 64 && !local.contains('@');
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let no_space_or_control = !trimmed.chars().any(|c| c.is_whitespace() || c.is_control());
        if !(local_ok && domain_ok && no_space_or_control) {
            return Err(EmailError::Malformed);
        }
        Ok(Self {
            display: trimmed.to_owned(),
            normalized: trimmed.to_lowercase(),
        })
    }

    /// Rebuilds an address that was validated before it was stored.
    pub fn from_trusted(display: String) -> Self {
        let normalized = display.to_lowercase();
        Self {
            display,
            normalized,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_and_normalizes_case_for_comparison() {
        let email = EmailAddress::parse("  Ann.Lee@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "Ann.Lee@Example.COM");
        assert_eq!(email.normalized(), "ann.lee@example.com");
    }

    #[test]
    fn addresses_differing_only_in_case_are_equal_after_normalization() {
        let a = EmailAddress::parse("ann@example.com").unwrap();
        let b = EmailAddress::parse("ANN@EXAMPLE.COM").unwrap();
        assert_eq!(a.normalized(), b.normalized());
    }

    #[test]
    fn parse_rejects_malformed_addresses() {
        for bad in [
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "ann@.example.com",
            "ann@example..com",
            "ann lee@example.com",
            "ann@exa mple.com",
            "ann@example.com.",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(EmailError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn parse_rejects_empty_and_overlong_addresses() {
        assert_eq!(EmailAddress::parse("   "), Err(EmailError::Empty));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(
            EmailAddress::parse(&long),
            Err(EmailError::TooLong { max: 254 })
        );
    }
}
