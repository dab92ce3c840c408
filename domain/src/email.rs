use std::fmt;

/// A syntactically valid email address.
///
/// Keeps the address as the user typed it for display, and a lower-cased form used
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
    #[error("email must look like name@example.com (ASCII letters, digits and the usual punctuation, no spaces)")]
    Malformed,
}

impl EmailAddress {
    /// RFC 5321 caps a forward path at 256 octets including the angle brackets.
    pub const MAX_LEN: usize = 254;
    /// RFC 5321 §4.5.3.1.1.
    const MAX_LOCAL_LEN: usize = 64;
    /// RFC 1035 §2.3.4.
    const MAX_LABEL_LEN: usize = 63;

    /// Accepts the common, unquoted form: an RFC 5322 dot-atom, `@`, and a host name of at
    /// least two labels of letters and digits joined by single hyphens. Exactly the addresses
    /// that are both a JSON Schema `email` and match the OpenAPI document's `pattern`, so the
    /// document and the server agree. Quoted local parts, address literals, non-ASCII and IDN
    /// A-labels (`xn--`) are refused; nothing is trimmed.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        Self::check_length(raw)?;
        let (local, domain) = raw.split_once('@').ok_or(EmailError::Malformed)?;
        if !(is_dot_atom(local) && local.len() <= Self::MAX_LOCAL_LEN && is_host_name(domain)) {
            return Err(EmailError::Malformed);
        }
        Ok(Self::from_trusted(raw.to_owned()))
    }

    /// In characters, as JSON Schema's `maxLength` counts.
    pub fn check_length(raw: &str) -> Result<(), EmailError> {
        if raw.is_empty() {
            return Err(EmailError::Empty);
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(EmailError::TooLong { max: Self::MAX_LEN });
        }
        Ok(())
    }

    /// Rebuilds an address that was valid when it was stored (under the rules of its day).
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

    /// What finds this address's account.
    pub fn key(&self) -> EmailKey {
        EmailKey(self.normalized.clone())
    }
}

/// The key an account is found by: an address lower-cased. Not an address in its own right:
/// it is never stored or shown, so it may come from input no longer valid at registration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmailKey(String);

impl EmailKey {
    /// An address presented at login. Only its length is checked (on what was sent, as the
    /// document states), so tightening `EmailAddress::parse` never locks an account out; then
    /// surrounding whitespace is ignored, as older versions trimmed addresses at registration.
    pub fn for_login(raw: &str) -> Result<Self, EmailError> {
        EmailAddress::check_length(raw)?;
        Ok(Self(raw.trim().to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 5322 `atext`.
fn is_atom_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

fn is_dot_atom(local: &str) -> bool {
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atom_char))
}

fn is_host_name(domain: &str) -> bool {
    let mut labels = 0;
    for label in domain.split('.') {
        labels += 1;
        // Single inner hyphens only: `ab--` is reserved for IDN A-labels (RFC 5891 §4.2.3.1),
        // which we do not decode, and one rule is simpler to state in the document's pattern.
        let well_formed = label.len() <= EmailAddress::MAX_LABEL_LEN
            && label
                .split('-')
                .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
        if !well_formed {
            return false;
        }
    }
    labels >= 2
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
    fn parse_keeps_the_address_as_typed_and_normalizes_case_for_comparison() {
        let email = EmailAddress::parse("Ann.Lee@Example.COM").unwrap();
        assert_eq!(email.as_str(), "Ann.Lee@Example.COM");
        assert_eq!(email.normalized(), "ann.lee@example.com");
    }

    #[test]
    fn parse_accepts_the_unquoted_forms_people_use() {
        for good in [
            "a@b.co",
            "first.last+tag@mail.example.org",
            "o'brien@example.ie",
            "x!#$%&'*+-/=?^_`{|}~@a-b.c-d",
            "a@0.0",
            "a@a-b-c.example",
        ] {
            assert!(EmailAddress::parse(good).is_ok(), "{good}");
        }
        let longest_local = format!("{}@example.com", "a".repeat(64));
        assert!(EmailAddress::parse(&longest_local).is_ok());
        let label = "b".repeat(63);
        let longest = format!("a@{label}.{label}.{label}.{}", "c".repeat(60));
        assert_eq!(longest.len(), 254);
        assert!(EmailAddress::parse(&longest).is_ok());
    }

    #[test]
    fn login_looks_up_any_address_of_a_valid_length_trimmed() {
        let legacy = EmailKey::for_login(" José@Bücher.de ").unwrap();
        assert_eq!(legacy.as_str(), "josé@bücher.de");
        assert_eq!(
            legacy,
            EmailAddress::from_trusted("José@Bücher.de".into()).key()
        );
        // The length is what was sent: blank is a lookup that finds nothing, not a 422.
        assert_eq!(EmailKey::for_login(" ").unwrap().as_str(), "");
        assert_eq!(EmailKey::for_login(""), Err(EmailError::Empty));
        let padded = format!(" {}", "a".repeat(254));
        assert_eq!(
            EmailKey::for_login(&padded),
            Err(EmailError::TooLong { max: 254 })
        );
        assert!(
            EmailKey::for_login(&"é".repeat(254)).is_ok(),
            "characters, not bytes"
        );
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
            " ann@example.com",
            "ann@example.com\n",
            "ann@b@example.com",
            ".ann@example.com",
            "ann.@example.com",
            "an..n@example.com",
            "\"ann\"@example.com",
            "ann(x)@example.com",
            "ä@example.com",
            "ann@exämple.com",
            "ann@[127.0.0.1]",
            "ann@-example.com",
            "ann@example-.com",
            "ann@ex_ample.com",
            "ann@xn--bcher-kva.example",
            "ann@a--b.example",
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
        assert_eq!(EmailAddress::parse(""), Err(EmailError::Empty));
        let local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(EmailAddress::parse(&local), Err(EmailError::Malformed));
        let label = format!("a@{}.com", "b".repeat(64));
        assert_eq!(EmailAddress::parse(&label), Err(EmailError::Malformed));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(
            EmailAddress::parse(&long),
            Err(EmailError::TooLong { max: 254 })
        );
    }
}
