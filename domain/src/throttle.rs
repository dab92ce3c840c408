//! What abuse defence counts and the rules that turn counts into waiting times.

use crate::EmailKey;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Where a request comes from, as budgets see it: an IPv4 address, or the /64 an IPv6 address
/// is in (a subscriber usually gets a whole /64, so counting single IPv6 addresses would give
/// one client 2^64 budgets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientNetwork {
    V4(Ipv4Addr),
    V6Prefix64(Ipv6Addr),
    /// No address is known (an in-process call); all such requests share one budget.
    Unknown,
}

impl ClientNetwork {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix64(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
            },
        }
    }

    /// Reads back what [`fmt::Display`] wrote (`192.0.2.7`, `2001:db8:1:2::/64`, `unknown`);
    /// `None` for anything else, an IPv6 address with bits set past its /64 included.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "unknown" {
            return Some(Self::Unknown);
        }
        if let Some(prefix) = text.strip_suffix("/64") {
            let prefix: Ipv6Addr = prefix.parse().ok()?;
            let host_bits = u128::from(prefix) & (u128::MAX >> 64);
            return (host_bits == 0).then_some(Self::V6Prefix64(prefix));
        }
        text.parse::<Ipv4Addr>().ok().map(Self::V4)
    }
}

impl fmt::Display for ClientNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => v4.fmt(f),
            Self::V6Prefix64(prefix) => write!(f, "{prefix}/64"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// What a budget is spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetAction {
    Register,
    Login,
    Refresh,
    /// Asking for a mailed link (a new verification mail, a password reset).
    Mail,
}

impl BudgetAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Mail => "mail",
        }
    }
}

/// A secret mixed into the keys emails are counted under: the store of counters holds no
/// addresses (also of people who never registered), and without the secret it cannot be
/// searched for a known one either.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyPepper([u8; 32]);

impl KeyPepper {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for KeyPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPepper([REDACTED])")
    }
}

/// The name a counter is stored under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

impl ThrottleKey {
    /// Failed logins to one account from one network.
    pub fn login_from(email: &EmailKey, client: ClientNetwork, pepper: &KeyPepper) -> Self {
        Self(format!("login:{}:{client}", digest(email, pepper)))
    }

    /// Failed logins to one account from anywhere.
    pub fn login_account(email: &EmailKey, pepper: &KeyPepper) -> Self {
        Self(format!("login:{}", digest(email, pepper)))
    }

    /// That the account logged in from this network lately.
    pub fn login_succeeded_from(
        email: &EmailKey,
        client: ClientNetwork,
        pepper: &KeyPepper,
    ) -> Self {
        Self(format!("known:{}:{client}", digest(email, pepper)))
    }

    /// Mails to one address, from whoever asks.
    pub fn mail_to(email: &EmailKey, pepper: &KeyPepper) -> Self {
        Self(format!("mail:{}", digest(email, pepper)))
    }

    /// A network's budget for one kind of request.
    pub fn budget(action: BudgetAction, client: ClientNetwork) -> Self {
        Self(format!("budget:{}:{client}", action.as_str()))
    }

    /// The starts of every key that records what the account's password earned or cost: its
    /// failed logins (from anywhere and from each network) and the networks it logged in
    /// from. Forgotten when the password changes or the account goes, so that neither a block
    /// nor a "known network" outlives the password it was about. The mail budget of the
    /// address is not among them: it bounds mails to a mailbox, whoever holds the account.
    pub fn account_prefixes(email: &EmailKey, pepper: &KeyPepper) -> [ThrottlePrefix; 2] {
        let digest = digest(email, pepper);
        // The digest has a fixed length (64 hex digits), so `login:{digest}` starts the
        // account's own keys (`login:{digest}` and `login:{digest}:{network}`) and no other.
        [
            ThrottlePrefix(format!("login:{digest}")),
            ThrottlePrefix(format!("known:{digest}:")),
        ]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The start shared by a set of keys, to forget them at once (see
/// [`ThrottleKey::account_prefixes`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThrottlePrefix(String);

impl ThrottlePrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `key` starts with this prefix.
    pub fn covers(&self, key: &ThrottleKey) -> bool {
        key.as_str().starts_with(&self.0)
    }
}

/// SHA-256 over the pepper and the email: the pepper has a fixed length, so no two inputs
/// share an encoding, and a key reveals nothing without it.
fn digest(email: &EmailKey, pepper: &KeyPepper) -> String {
    let mut hasher = Sha256::new();
    hasher.update(pepper.0);
    hasher.update(email.as_str().as_bytes());
    hex::encode(hasher.finalize())
}

/// Consecutive failed logins under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureRecord {
    pub count: u32,
    pub last_failure_at: DateTime<Utc>,
}

/// A delay that doubles with every failure past the free ones, up to a cap. Never a permanent
/// lockout: after `max_delay` without another failure, one more attempt is always allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Backoff {
    /// How long to wait after the `failures`-th consecutive failure.
    pub fn delay_after(&self, failures: u32) -> Option<Duration> {
        let past_free = failures.checked_sub(self.free_failures)?;
        // 2^30 times any positive base is beyond every sensible cap.
        let factor = 1i32 << past_free.min(30);
        let delay = self
            .base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay);
        Some(delay.min(self.max_delay))
    }

    /// When the next attempt is allowed, if not now.
    pub fn blocked_until(
        &self,
        record: &FailureRecord,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let until = record.last_failure_at + self.delay_after(record.count)?;
        (now < until).then_some(until)
    }
}

/// The state of a token bucket (GCRA's "theoretical arrival time"), in nanoseconds since the
/// Unix epoch, so every instance sharing a store reads it the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketState(pub u64);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn backoff() -> Backoff {
        Backoff {
            free_failures: 5,
            base_delay: Duration::seconds(1),
            max_delay: Duration::minutes(15),
        }
    }

    #[test]
    fn the_delay_starts_after_the_free_failures_and_doubles_up_to_the_cap() {
        let b = backoff();
        assert_eq!(b.delay_after(4), None);
        assert_eq!(b.delay_after(5), Some(Duration::seconds(1)));
        assert_eq!(b.delay_after(6), Some(Duration::seconds(2)));
        assert_eq!(b.delay_after(10), Some(Duration::seconds(32)));
        assert_eq!(b.delay_after(15), Some(Duration::minutes(15)));
        assert_eq!(b.delay_after(u32::MAX), Some(Duration::minutes(15)));
    }

    #[test]
    fn a_key_is_blocked_until_the_delay_after_its_last_failure_has_passed() {
        let record = FailureRecord {
            count: 7,
            last_failure_at: at(0),
        };
        assert_eq!(backoff().blocked_until(&record, at(3)), Some(at(4)));
        assert_eq!(backoff().blocked_until(&record, at(4)), None);
        let few = FailureRecord {
            count: 4,
            last_failure_at: at(0),
        };
        assert_eq!(backoff().blocked_until(&few, at(0)), None);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_bit_prefix() {
        let a = ClientNetwork::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientNetwork::of("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap());
        let other = ClientNetwork::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            ClientNetwork::of("::ffff:192.0.2.7".parse().unwrap()),
            ClientNetwork::of("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn a_network_reads_back_from_its_text_and_nothing_else_does() {
        for network in [
            ClientNetwork::of("192.0.2.7".parse().unwrap()),
            ClientNetwork::of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            ClientNetwork::Unknown,
        ] {
            assert_eq!(ClientNetwork::parse(&network.to_string()), Some(network));
        }
        for text in [
            "",
            "2001:db8:1:2::1",
            "2001:db8:1:2::1/64",
            "192.0.2.7/64",
            "192.0.2",
            "Unknown",
        ] {
            assert_eq!(ClientNetwork::parse(text), None, "{text}");
        }
    }

    #[test]
    fn keys_hold_no_email_address_and_differ_per_network_and_action() {
        let email = EmailKey::for_login("Ann@Example.com").unwrap();
        let here = ClientNetwork::of("192.0.2.1".parse().unwrap());
        let there = ClientNetwork::of("192.0.2.2".parse().unwrap());
        let pepper = KeyPepper::new([7; 32]);
        let key = ThrottleKey::login_from(&email, here, &pepper);
        assert!(!key.as_str().contains("ann"));
        assert_ne!(key, ThrottleKey::login_from(&email, there, &pepper));
        assert_ne!(key, ThrottleKey::login_account(&email, &pepper));
        // Without the pepper, a known address does not lead to its key.
        let unpeppered = hex::encode(Sha256::digest(b"ann@example.com"));
        assert!(!key.as_str().contains(&unpeppered));
        assert_ne!(
            key,
            ThrottleKey::login_from(&email, here, &KeyPepper::new([8; 32]))
        );
        assert!(!format!("{pepper:?}").contains('7'));
        assert_ne!(
            ThrottleKey::budget(BudgetAction::Login, here),
            ThrottleKey::budget(BudgetAction::Refresh, here)
        );
    }

    #[test]
    fn an_accounts_prefixes_cover_its_login_counts_and_known_networks_and_nothing_else() {
        let pepper = KeyPepper::new([7; 32]);
        let ann = EmailKey::for_login("ann@example.com").unwrap();
        let bob = EmailKey::for_login("bob@example.com").unwrap();
        let here = ClientNetwork::of("192.0.2.1".parse().unwrap());
        let prefixes = ThrottleKey::account_prefixes(&ann, &pepper);
        let covered = |key: &ThrottleKey| prefixes.iter().any(|p| p.covers(key));
        assert!(covered(&ThrottleKey::login_account(&ann, &pepper)));
        assert!(covered(&ThrottleKey::login_from(&ann, here, &pepper)));
        assert!(covered(&ThrottleKey::login_succeeded_from(
            &ann, here, &pepper
        )));
        // Not the mailbox's mail budget, no network's budget, no other account's keys.
        assert!(!covered(&ThrottleKey::mail_to(&ann, &pepper)));
        assert!(!covered(&ThrottleKey::budget(BudgetAction::Login, here)));
        assert!(!covered(&ThrottleKey::login_account(&bob, &pepper)));
        assert!(!covered(&ThrottleKey::login_from(&bob, here, &pepper)));
        assert!(!covered(&ThrottleKey::login_succeeded_from(
            &bob, here, &pepper
        )));
    }
}
