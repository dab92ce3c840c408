use crate::{AuthService, Throttled};
use latchkey_domain::{
    ports::{HashingError, InsertUserError, StoreError},
    AuthEvent, BudgetAction, ClientNetwork, EmailAddress, EmailError, Password, PasswordError,
    Role, User, UserId,
};

#[derive(Debug)]
pub struct RegisterCommand {
    pub email: String,
    pub password: String,
    pub client: ClientNetwork,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    InvalidEmail(#[from] EmailError),
    #[error(transparent)]
    WeakPassword(#[from] PasswordError),
    #[error("{}", InsertUserError::EmailTaken)]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    Throttled(#[from] Throttled),
}

impl AuthService {
    /// The span never holds the email or the password.
    #[tracing::instrument(name = "register", skip_all)]
    pub async fn register(&self, command: RegisterCommand) -> Result<User, RegisterError> {
        let email = EmailAddress::parse(&command.email)?;
        let password = Password::new_for_account(command.password, &email, &self.passwords)?;
        // Spent only on what would be hashed: choosing a password that passes the policy
        // takes a few tries, and those must not use up a family's budget.
        self.spend::<RegisterError>(BudgetAction::Register, command.client)
            .await?;
        let password_hash = self.ports.hasher.hash(&password).await?;
        let user = User {
            id: UserId::from_uuid(self.ports.random.uuid()),
            email,
            password_hash,
            // An address in `ADMIN_EMAILS` makes an administrator once it is verified: anyone
            // can register it first.
            roles: vec![Role::user()],
            created_at: self.ports.clock.now(),
            email_verified_at: None,
            disabled_at: None,
            last_login_at: None,
            password_set_by_mailbox_owner_at: None,
        };
        // No look-up first: the store's unique index is the only race-free check.
        self.ports.users.insert(&user).await.map_err(|e| match e {
            InsertUserError::EmailTaken => RegisterError::EmailTaken,
            InsertUserError::Store(e) => RegisterError::Store(e),
        })?;
        self.record(AuthEvent::Registered { user: user.id });
        // The account exists whatever happens here; "Send again" mails a new link. Counted
        // against the address's mail budget, so registering, deleting and registering again
        // cannot flood someone's inbox.
        let sent = match self.spend_on_recipient(&user.email.key()).await {
            Ok(None) => {
                self.send_link(&user, latchkey_domain::MailTokenPurpose::VerifyEmail)
                    .await
            }
            Ok(Some(_)) => {
                tracing::info!(user_id = %user.id, "verification mail not sent: the address's mail budget is spent");
                Ok(())
            }
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            tracing::warn!(user_id = %user.id, %error, "verification mail not queued at registration");
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use latchkey_domain::PasswordHash;
    use mockall::predicate::*;

    fn command(email: &str, password: &str) -> RegisterCommand {
        RegisterCommand {
            email: email.into(),
            password: password.into(),
            client: ClientNetwork::Unknown,
        }
    }

    #[tokio::test]
    async fn register_hashes_the_password_and_stores_a_normalized_user() {
        let mut mocks = Mocks::new();
        mocks
            .hasher
            .expect_hash()
            .withf(|p| p.expose() == "long enough password")
            .times(1)
            .returning(|_| Ok(PasswordHash::new("$argon2id$hash".into())));
        mocks.random.expect_uuid().return_const(fixed_uuid(1));
        mocks.random.expect_secret_bytes().return_const([4u8; 32]);
        mocks
            .users
            .expect_insert()
            .withf(|u| {
                u.email.normalized() == "ann@example.com"
                    && u.password_hash.as_str() == "$argon2id$hash"
                    && u.roles == vec![Role::user()]
                    && u.created_at == t0()
            })
            .times(1)
            .returning(|_| Ok(()));

        let user = mocks
            .service()
            .register(command("Ann@Example.com", "long enough password"))
            .await
            .unwrap();

        assert_eq!(user.id, UserId::from_uuid(fixed_uuid(1)));
        assert_eq!(user.email.as_str(), "Ann@Example.com");
    }

    #[tokio::test]
    async fn registration_mails_a_verification_link_whose_token_is_stored_only_hashed() {
        let mut mocks = Mocks::new();
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$hash".into())));
        mocks.random.expect_uuid().return_const(fixed_uuid(1));
        mocks.random.expect_secret_bytes().return_const([4u8; 32]);
        mocks.users.expect_insert().returning(|_| Ok(()));
        let sent = latchkey_domain::MailTokenSecret::from_random_bytes([4u8; 32]);
        let expected_hash = sent.hash();
        let mut tokens = latchkey_domain::ports::MockMailTokenRepository::new();
        tokens
            .expect_issue()
            .withf(move |r| {
                r.token_hash == expected_hash
                    && r.user_id == UserId::from_uuid(fixed_uuid(1))
                    && r.purpose == latchkey_domain::MailTokenPurpose::VerifyEmail
                    && r.email == "ann@example.com"
                    && r.expires_at == t0() + chrono::Duration::hours(24)
            })
            .times(1)
            .returning(|_| Ok(()));
        let mut outbox = latchkey_domain::ports::MockOutbox::new();
        outbox
            .expect_enqueue()
            .withf(move |mail| match mail {
                latchkey_domain::Mail::VerifyEmail { to, token } => {
                    to.as_str() == "Ann@Example.com" && token.expose() == sent.expose()
                }
                _ => false,
            })
            .times(1)
            .return_const(());
        mocks.mail_tokens = Some(tokens);
        mocks.outbox = Some(outbox);
        mocks
            .service()
            .register(command("Ann@Example.com", "long enough password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_link_that_could_not_be_stored_does_not_undo_the_registration() {
        let mut mocks = Mocks::new();
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$hash".into())));
        mocks.random.expect_uuid().return_const(fixed_uuid(1));
        mocks.random.expect_secret_bytes().return_const([4u8; 32]);
        mocks.users.expect_insert().returning(|_| Ok(()));
        let mut tokens = latchkey_domain::ports::MockMailTokenRepository::new();
        tokens
            .expect_issue()
            .returning(|_| Err(StoreError("down".into())));
        let mut outbox = latchkey_domain::ports::MockOutbox::new();
        outbox.expect_enqueue().never();
        mocks.mail_tokens = Some(tokens);
        mocks.outbox = Some(outbox);
        assert!(mocks
            .service()
            .register(command("ann@example.com", "long enough password"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn register_rejects_a_bad_email_before_hashing_anything() {
        let mut mocks = Mocks::new();
        mocks.hasher.expect_hash().never();
        mocks.users.expect_insert().never();
        let err = mocks
            .service()
            .register(command("not-an-email", "long enough password"))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            RegisterError::InvalidEmail(EmailError::Malformed)
        ));
    }

    #[tokio::test]
    async fn register_rejects_a_short_password_before_hashing_anything() {
        let mut mocks = Mocks::new();
        mocks.hasher.expect_hash().never();
        let err = mocks
            .service()
            .register(command("ann@example.com", "short"))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            RegisterError::WeakPassword(PasswordError::TooShort { min: 8 })
        ));
    }

    #[tokio::test]
    async fn register_reports_a_duplicate_email_from_the_store() {
        let mut mocks = Mocks::new();
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("h".into())));
        mocks.random.expect_uuid().return_const(fixed_uuid(1));
        mocks.random.expect_secret_bytes().return_const([4u8; 32]);
        mocks
            .users
            .expect_insert()
            .returning(|_| Err(InsertUserError::EmailTaken));
        let err = mocks
            .service()
            .register(command("ann@example.com", "long enough password"))
            .await
            .unwrap_err();
        assert!(matches!(err, RegisterError::EmailTaken));
    }

    #[tokio::test]
    async fn register_passes_store_outages_through() {
        let mut mocks = Mocks::new();
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("h".into())));
        mocks.random.expect_uuid().return_const(fixed_uuid(1));
        mocks.random.expect_secret_bytes().return_const([4u8; 32]);
        mocks
            .users
            .expect_insert()
            .returning(|_| Err(InsertUserError::Store(StoreError("down".into()))));
        let err = mocks
            .service()
            .register(command("ann@example.com", "long enough password"))
            .await
            .unwrap_err();
        assert!(matches!(err, RegisterError::Store(_)));
    }

    #[tokio::test]
    async fn register_refuses_a_common_password_or_one_holding_the_email_naming_the_rule() {
        for (password, rule) in [
            ("Password123", "common_password"),
            ("annie-and-me", "contains_email"),
            ("my latchkey pw", "contains_service_name"),
        ] {
            let mut mocks = Mocks::new();
            mocks.hasher.expect_hash().never();
            let err = mocks
                .service()
                .register(command("annie@example.com", password))
                .await
                .unwrap_err();
            let RegisterError::WeakPassword(weak) = err else {
                panic!("{password}: expected a weak password, got {err:?}")
            };
            assert_eq!(weak.rule(), rule);
        }
    }

    #[tokio::test]
    async fn a_spent_register_budget_refuses_before_hashing() {
        let mut mocks = Mocks::new();
        mocks.abuse.register = Some(crate::Budget {
            burst: std::num::NonZeroU32::new(2).unwrap(),
            replenish_every: std::time::Duration::from_secs(60),
        });
        let mut throttle = latchkey_domain::ports::MockThrottleStore::new();
        // Two spent a moment ago: the next one is a minute away.
        let spent = latchkey_domain::BucketState(
            (t0() + chrono::Duration::seconds(120))
                .timestamp_nanos_opt()
                .unwrap() as u64,
        );
        throttle
            .expect_bucket()
            .returning(move |_, _| Ok(Some(spent)));
        mocks.throttle = Some(throttle);
        mocks.hasher.expect_hash().never();
        let err = mocks
            .service()
            .register(command("ann@example.com", "long enough password"))
            .await
            .unwrap_err();
        let RegisterError::Throttled(throttled) = err else {
            panic!("expected a throttled registration, got {err:?}")
        };
        assert_eq!(throttled.retry_after_secs(), 60);
    }

    #[tokio::test]
    async fn a_budget_spends_one_token_per_registration_by_compare_and_swap() {
        let mut mocks = Mocks::new();
        mocks.abuse.register = Some(crate::Budget {
            burst: std::num::NonZeroU32::new(2).unwrap(),
            replenish_every: std::time::Duration::from_secs(60),
        });
        let mut throttle = latchkey_domain::ports::MockThrottleStore::new();
        let mut seq = mockall::Sequence::new();
        throttle
            .expect_bucket()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(None));
        // Another instance spent one meanwhile: the swap fails and the decision is redone.
        throttle
            .expect_replace_bucket()
            .withf(|_, expected, _, _, _| expected.is_none())
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _, _, _| Ok(false));
        let theirs = latchkey_domain::BucketState(
            (t0() + chrono::Duration::seconds(60))
                .timestamp_nanos_opt()
                .unwrap() as u64,
        );
        throttle
            .expect_bucket()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_, _| Ok(Some(theirs)));
        throttle
            .expect_replace_bucket()
            .withf(move |_, expected, next, _, _| {
                *expected == Some(theirs) && next.0 == theirs.0 + 60_000_000_000
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _, _, _| Ok(true));
        mocks.throttle = Some(throttle);
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("h".into())));
        mocks.random.expect_uuid().return_const(fixed_uuid(1));
        mocks.random.expect_secret_bytes().return_const([4u8; 32]);
        mocks.users.expect_insert().returning(|_| Ok(()));
        mocks
            .service()
            .register(command("ann@example.com", "long enough password"))
            .await
            .unwrap();
    }
}
