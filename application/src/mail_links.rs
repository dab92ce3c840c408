//! Links sent by mail: verifying an address, and resetting a forgotten password.

use crate::{AuthService, Throttled};
use latchkey_domain::{
    ports::{HashingError, StoreError},
    AuthEvent, BudgetAction, ClientNetwork, EmailError, EmailKey, Mail, MailTokenPurpose,
    MailTokenRecord, MailTokenSecret, Password, PasswordChangeKind, PasswordError, PasswordHash,
    SessionEndCause, ThrottleKey, User, UserId,
};

/// How mailed links behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailPolicy {
    pub verify_link_ttl: chrono::Duration,
    pub reset_link_ttl: chrono::Duration,
    /// Whether a login needs a verified address.
    pub require_verified_email: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MailLinkError {
    /// Unknown, used, expired, replaced by a newer link, or its account changed: one answer
    /// for all, so a link tells nothing but that it does not work.
    #[error("this link is invalid or has expired; ask for a new one")]
    InvalidLink,
    #[error(transparent)]
    WeakPassword(PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
}

#[derive(Debug, thiserror::Error)]
pub enum SendLinkError {
    /// Empty or longer than any address: no account can have it.
    #[error(transparent)]
    InvalidEmail(#[from] EmailError),
    /// The access token is valid but its account is gone.
    #[error("the account for this token no longer exists")]
    AccountGone,
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Rounds of "read the account, swap its hash" before a reset gives up: only a concurrent
/// change of the same password can make a round fail.
const RESET_ROUNDS: usize = 3;

impl AuthService {
    /// Stores a new token of `purpose` for `user`, which makes every earlier link of that
    /// purpose stop working, and queues its mail. Returns once the mail is queued.
    pub(crate) async fn send_link(
        &self,
        user: &User,
        purpose: MailTokenPurpose,
    ) -> Result<(), StoreError> {
        let token = MailTokenSecret::from_random_bytes(self.ports.random.secret_bytes());
        let now = self.ports.clock.now();
        let ttl = match purpose {
            MailTokenPurpose::VerifyEmail => self.mail.verify_link_ttl,
            MailTokenPurpose::ResetPassword => self.mail.reset_link_ttl,
        };
        let record = MailTokenRecord {
            token_hash: token.hash(),
            user_id: user.id,
            purpose,
            email: user.email.normalized().to_owned(),
            issued_at: now,
            expires_at: now + ttl,
        };
        self.ports.mail_tokens.issue(&record).await?;
        let to = user.email.clone();
        self.ports.outbox.enqueue(match purpose {
            MailTokenPurpose::VerifyEmail => Mail::VerifyEmail { to, token },
            MailTokenPurpose::ResetPassword => Mail::ResetPassword { to, token },
        });
        tracing::info!(user_id = %user.id, purpose = purpose.as_str(), "mail with a link queued");
        Ok(())
    }

    /// Takes one mail from the budget of `recipient`, so that nobody can flood an inbox from
    /// however many networks. `Ok(Some(refusal))` when it is spent.
    pub(crate) async fn spend_on_recipient(
        &self,
        recipient: &EmailKey,
    ) -> Result<Option<Throttled>, StoreError> {
        let Some(budget) = self.abuse.mail_per_recipient else {
            return Ok(None);
        };
        let key = ThrottleKey::mail_to(recipient, &self.key_pepper);
        match self
            .spend_from::<SpendError>(&key, budget, "mail_recipient")
            .await
        {
            Ok(()) => Ok(None),
            Err(SpendError::Throttled(spent)) => Ok(Some(spent)),
            Err(SpendError::Store(e)) => Err(e),
        }
    }

    /// Marks the address of a verification link as verified. Single use.
    #[tracing::instrument(name = "verify_email", skip_all, fields(user_id = tracing::field::Empty))]
    pub async fn verify_email(&self, token: String) -> Result<(), MailLinkError> {
        let hash = MailTokenSecret::from_presented(token).hash();
        let now = self.ports.clock.now();
        let Some(record) = self
            .ports
            .mail_tokens
            .consume(&hash, MailTokenPurpose::VerifyEmail, now)
            .await?
        else {
            return Err(MailLinkError::InvalidLink);
        };
        tracing::Span::current().record("user_id", tracing::field::display(record.user_id));
        match self
            .ports
            .users
            .mark_email_verified(record.user_id, &record.email, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(MailLinkError::InvalidLink),
            Err(error) => {
                self.put_back(&record).await;
                return Err(error.into());
            }
        }
        self.record(AuthEvent::EmailVerified {
            user: record.user_id,
        });
        self.grant_after_verification(record.user_id, &record.email)
            .await;
        Ok(())
    }

    /// Stores a used-up token again after the work it was used for failed (the store did not
    /// answer), so that the link keeps working for another try; a newer link of its purpose
    /// wins. Best effort: if this fails too, the user asks for a new link.
    async fn put_back(&self, record: &MailTokenRecord) {
        if let Err(error) = self.ports.mail_tokens.restore(record).await {
            tracing::warn!(user_id = %record.user_id, %error, "used link not restored after a failure");
        }
    }

    /// Sends the caller a new verification link (the earlier one stops working). Nothing is
    /// sent when the address is verified already.
    #[tracing::instrument(name = "resend_verification", skip_all, fields(user_id = %user))]
    pub async fn resend_verification(
        &self,
        user: UserId,
        client: ClientNetwork,
    ) -> Result<(), SendLinkError> {
        self.spend::<SendLinkError>(BudgetAction::Mail, client)
            .await?;
        let Some(user) = self.ports.users.find_by_id(user).await? else {
            return Err(SendLinkError::AccountGone);
        };
        if user.email_verified_at.is_some() {
            return Ok(());
        }
        if let Some(spent) = self.spend_on_recipient(&user.email.key()).await? {
            return Err(spent.into());
        }
        self.send_link(&user, MailTokenPurpose::VerifyEmail).await?;
        Ok(())
    }

    /// Mails a reset link when `email` belongs to an account. The answer is the same whether
    /// or not it does, and whether or not the recipient's budget allowed a mail.
    #[tracing::instrument(name = "forgot_password", skip_all, fields(user_id = tracing::field::Empty))]
    pub async fn forgot_password(
        &self,
        email: String,
        client: ClientNetwork,
    ) -> Result<(), SendLinkError> {
        self.spend::<SendLinkError>(BudgetAction::Mail, client)
            .await?;
        let key = EmailKey::for_login(&email)?;
        // Spent for every address, with an account or not: the same work, and the same
        // answer, whether or not one exists.
        let spent = self.spend_on_recipient(&key).await?;
        let Some(user) = self.ports.users.find_by_email(&key).await? else {
            tracing::info!(%client, "password reset asked for an address with no account; nothing sent");
            return Ok(());
        };
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        if spent.is_some() {
            tracing::info!(user_id = %user.id, %client, "password reset not mailed: the recipient's budget is spent");
            return Ok(());
        }
        self.send_link(&user, MailTokenPurpose::ResetPassword)
            .await?;
        Ok(())
    }

    /// Sets a new password with a reset link. Every session of the account ends, and the
    /// address counts as verified (the link reached it).
    #[tracing::instrument(name = "reset_password", skip_all, fields(user_id = tracing::field::Empty))]
    pub async fn reset_password(
        &self,
        token: String,
        new_password: String,
    ) -> Result<(), MailLinkError> {
        let hash = MailTokenSecret::from_presented(token).hash();
        let now = self.ports.clock.now();
        let purpose = MailTokenPurpose::ResetPassword;
        // Looked at, not used up: a password the policy refuses must not cost the link.
        let Some(record) = self.ports.mail_tokens.find(&hash, purpose, now).await? else {
            return Err(MailLinkError::InvalidLink);
        };
        tracing::Span::current().record("user_id", tracing::field::display(record.user_id));
        let user = match self.ports.users.find_by_id(record.user_id).await? {
            Some(user) if user.email.normalized() == record.email => user,
            _ => return Err(MailLinkError::InvalidLink),
        };
        let new = Password::new_for_account(new_password, &user.email, &self.passwords)
            .map_err(MailLinkError::WeakPassword)?;
        let new_hash = self.ports.hasher.hash(&new).await?;
        // Of concurrent resets with one link, exactly one gets past this point.
        if self
            .ports
            .mail_tokens
            .consume(&hash, purpose, now)
            .await?
            .is_none()
        {
            return Err(MailLinkError::InvalidLink);
        }
        // Sessions end before the password changes, so that a failure in between leaves none
        // running; either failure gives the link back for another try.
        let set = async {
            let ended = self
                .ports
                .sessions
                .revoke_all_of_user(record.user_id, now, None)
                .await?;
            self.replace_any_password_hash(user, &new_hash).await?;
            Ok::<_, MailLinkError>(ended)
        };
        let ended = match set.await {
            Ok(ended) => ended,
            Err(error) => {
                // The swap may have landed though its answer was lost.
                self.end_sessions_started_meanwhile(record.user_id, None)
                    .await;
                if !matches!(error, MailLinkError::InvalidLink) {
                    self.put_back(&record).await;
                }
                return Err(error);
            }
        };
        self.end_sessions_started_meanwhile(record.user_id, None)
            .await;
        match self
            .ports
            .users
            .mark_email_verified(record.user_id, &record.email, now)
            .await
        {
            Ok(true) => {
                self.grant_after_verification(record.user_id, &record.email)
                    .await
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(user_id = %record.user_id, %error, "address not marked verified after a reset")
            }
        }
        tracing::debug!(sessions_ended = ended, "sessions ended");
        self.record(AuthEvent::PasswordChanged {
            user: record.user_id,
            how: PasswordChangeKind::Reset,
        });
        self.record(AuthEvent::SessionsEnded {
            user: record.user_id,
            session: None,
            cause: SessionEndCause::PasswordReset,
        });
        Ok(())
    }

    /// Replaces the account's password hash whatever it is now; the link already proved the
    /// right to.
    async fn replace_any_password_hash(
        &self,
        mut user: User,
        new_hash: &PasswordHash,
    ) -> Result<(), MailLinkError> {
        for _ in 0..RESET_ROUNDS {
            if self
                .ports
                .users
                .replace_password_hash(user.id, &user.password_hash, new_hash)
                .await?
            {
                return Ok(());
            }
            match self.ports.users.find_by_id(user.id).await? {
                Some(now) => user = now,
                // Deleted meanwhile: nothing left to reset.
                None => return Err(MailLinkError::InvalidLink),
            }
        }
        Err(StoreError("the password kept changing during a reset".into()).into())
    }
}

/// What spending from a budget can end in, for callers that decide themselves what a spent
/// budget means.
#[derive(Debug, thiserror::Error)]
enum SpendError {
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use latchkey_domain::ports::{MockMailTokenRepository, MockOutbox};
    use latchkey_domain::MailTokenHash;

    fn link_of(purpose: MailTokenPurpose) -> MailTokenRecord {
        MailTokenRecord {
            token_hash: MailTokenSecret::from_presented("link".into()).hash(),
            user_id: user(1).id,
            purpose,
            email: "user1@example.com".into(),
            issued_at: t0() - chrono::Duration::minutes(1),
            expires_at: t0() + chrono::Duration::minutes(29),
        }
    }

    fn presented_link(
    ) -> impl Fn(&MailTokenHash, &MailTokenPurpose, &chrono::DateTime<chrono::Utc>) -> bool {
        |hash, _, now| {
            *hash == MailTokenSecret::from_presented("link".into()).hash() && *now == t0()
        }
    }

    /// A reset link of user 1 is found, and its new password hashes to `$argon2id$new`.
    fn reset_link_found(mocks: &mut Mocks, tokens: &mut MockMailTokenRepository) {
        tokens
            .expect_find()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        mocks
            .users
            .expect_find_by_id()
            .returning(|_| Ok(Some(user(1))));
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
    }

    #[tokio::test]
    async fn a_verification_link_is_used_up_and_marks_its_address_verified() {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_consume()
            .withf(|h, p, now| presented_link()(h, p, now) && *p == MailTokenPurpose::VerifyEmail)
            .times(1)
            .returning(|_, p, _| Ok(Some(link_of(p))));
        mocks.mail_tokens = Some(tokens);
        mocks
            .users
            .expect_mark_email_verified()
            .withf(|id, email, at| *id == user(1).id && email == "user1@example.com" && *at == t0())
            .times(1)
            .returning(|_, _, _| Ok(true));
        mocks.service().verify_email("link".into()).await.unwrap();
    }

    /// An address of `ADMIN_EMAILS` makes an administrator once verified, not before.
    #[tokio::test]
    async fn verifying_a_configured_admin_address_grants_the_admin_role() {
        let mut mocks = Mocks::new();
        mocks.admin_emails =
            vec![latchkey_domain::EmailKey::for_login("USER1@example.com").unwrap()];
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_consume()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        mocks.mail_tokens = Some(tokens);
        mocks
            .users
            .expect_mark_email_verified()
            .returning(|_, _, _| Ok(true));
        mocks.users.expect_find_by_id().returning(|_| {
            Ok(Some(User {
                email_verified_at: Some(t0()),
                ..user(1)
            }))
        });
        mocks
            .users
            .expect_set_roles()
            .withf(|id, roles| {
                *id == user(1).id
                    && roles
                        == [
                            latchkey_domain::Role::user(),
                            latchkey_domain::Role::admin(),
                        ]
            })
            .times(1)
            .returning(|_, _| Ok(Some(user(1))));
        let events = mocks.events.clone();
        mocks.service().verify_email("link".into()).await.unwrap();
        assert_eq!(
            events.taken(),
            [
                AuthEvent::EmailVerified { user: user(1).id },
                AuthEvent::AdminGrantedByConfiguration { user: user(1).id }
            ]
        );
    }

    #[tokio::test]
    async fn an_unknown_used_or_expired_verification_link_is_refused() {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        tokens.expect_consume().returning(|_, _, _| Ok(None));
        mocks.mail_tokens = Some(tokens);
        mocks.users.expect_mark_email_verified().never();
        let err = mocks
            .service()
            .verify_email("link".into())
            .await
            .unwrap_err();
        assert!(matches!(err, MailLinkError::InvalidLink));
    }

    #[tokio::test]
    async fn a_verification_link_for_an_address_the_account_no_longer_has_is_refused() {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_consume()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        mocks.mail_tokens = Some(tokens);
        mocks
            .users
            .expect_mark_email_verified()
            .returning(|_, _, _| Ok(false));
        let err = mocks
            .service()
            .verify_email("link".into())
            .await
            .unwrap_err();
        assert!(matches!(err, MailLinkError::InvalidLink));
    }

    #[tokio::test]
    async fn forgetting_the_password_of_an_unknown_address_sends_nothing_and_says_the_same() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_email().returning(|_| Ok(None));
        let mut outbox = MockOutbox::new();
        outbox.expect_enqueue().never();
        mocks.outbox = Some(outbox);
        mocks
            .service()
            .forgot_password("nobody@example.com".into(), ClientNetwork::Unknown)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn forgetting_the_password_of_an_account_mails_it_a_reset_link() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_find_by_email()
            .withf(|key| key.as_str() == "user1@example.com")
            .returning(|_| Ok(Some(user(1))));
        mocks.random.expect_secret_bytes().return_const([6u8; 32]);
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_issue()
            .withf(|r| {
                r.purpose == MailTokenPurpose::ResetPassword
                    && r.expires_at == t0() + chrono::Duration::minutes(30)
            })
            .times(1)
            .returning(|_| Ok(()));
        let mut outbox = MockOutbox::new();
        outbox
            .expect_enqueue()
            .withf(|mail| matches!(mail, Mail::ResetPassword { .. }))
            .times(1)
            .return_const(());
        mocks.mail_tokens = Some(tokens);
        mocks.outbox = Some(outbox);
        mocks
            .service()
            .forgot_password(" User1@Example.com".into(), ClientNetwork::Unknown)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_reset_sets_the_password_uses_up_the_link_and_ends_every_session() {
        // An address of `ADMIN_EMAILS` is proven by the reset link: its account becomes an
        // administrator then.
        for configured in [false, true] {
            let mut mocks = Mocks::new();
            if configured {
                mocks.admin_emails =
                    vec![latchkey_domain::EmailKey::for_login("user1@example.com").unwrap()];
                mocks
                    .users
                    .expect_set_roles()
                    .withf(|id, roles| *id == user(1).id && roles.iter().any(|r| r.is_admin()))
                    .times(1)
                    .returning(|_, _| Ok(Some(user(1))));
            }
            let mut order = mockall::Sequence::new();
            let mut tokens = MockMailTokenRepository::new();
            tokens
                .expect_find()
                .withf(|h, p, now| {
                    presented_link()(h, p, now) && *p == MailTokenPurpose::ResetPassword
                })
                .returning(|_, p, _| Ok(Some(link_of(p))));
            mocks.users.expect_find_by_id().returning(|_| {
                Ok(Some(User {
                    email_verified_at: Some(t0()),
                    ..user(1)
                }))
            });
            mocks
                .hasher
                .expect_hash()
                .withf(|p| p.expose() == "a brand new passphrase")
                .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
            tokens
                .expect_consume()
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, p, _| Ok(Some(link_of(p))));
            // Sessions end before the password changes, and again after it.
            mocks
                .sessions
                .expect_revoke_all_of_user()
                .withf(|u, _, keep| *u == user(1).id && keep.is_none())
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, _, _| Ok(2));
            mocks
                .users
                .expect_replace_password_hash()
                .withf(|_, current, new| {
                    *current == user(1).password_hash && new.as_str() == "$argon2id$new"
                })
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, _, _| Ok(true));
            mocks
                .sessions
                .expect_revoke_all_of_user()
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, _, _| Ok(0));
            mocks.mail_tokens = Some(tokens);
            mocks
                .users
                .expect_mark_email_verified()
                .times(1)
                .returning(|_, _, _| Ok(true));
            let events = mocks.events.clone();
            mocks
                .service()
                .reset_password("link".into(), "a brand new passphrase".into())
                .await
                .unwrap();
            let granted = events
                .taken()
                .contains(&AuthEvent::AdminGrantedByConfiguration { user: user(1).id });
            assert_eq!(granted, configured);
        }
    }

    #[tokio::test]
    async fn a_store_failure_while_resetting_gives_the_link_back() {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        reset_link_found(&mut mocks, &mut tokens);
        tokens
            .expect_consume()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        tokens
            .expect_restore()
            .withf(|r| *r == link_of(MailTokenPurpose::ResetPassword))
            .times(1)
            .returning(|_| Ok(()));
        mocks.mail_tokens = Some(tokens);
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .returning(|_, _, _| Ok(1));
        mocks
            .users
            .expect_replace_password_hash()
            .returning(|_, _, _| Err(StoreError("down".into())));
        let err = mocks
            .service()
            .reset_password("link".into(), "a brand new passphrase".into())
            .await
            .unwrap_err();
        assert!(matches!(err, MailLinkError::Store(_)));
    }

    #[tokio::test]
    async fn a_weak_new_password_keeps_the_reset_link_usable() {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_find()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        tokens.expect_consume().never();
        mocks.mail_tokens = Some(tokens);
        mocks
            .users
            .expect_find_by_id()
            .returning(|_| Ok(Some(user(1))));
        mocks.hasher.expect_hash().never();
        let err = mocks
            .service()
            .reset_password("link".into(), "password123".into())
            .await
            .unwrap_err();
        assert!(matches!(err, MailLinkError::WeakPassword(_)));
    }

    #[tokio::test]
    async fn a_reset_link_that_lost_a_race_for_itself_changes_nothing() {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        reset_link_found(&mut mocks, &mut tokens);
        tokens.expect_consume().returning(|_, _, _| Ok(None));
        mocks.mail_tokens = Some(tokens);
        mocks.users.expect_replace_password_hash().never();
        mocks.sessions.expect_revoke_all_of_user().never();
        let err = mocks
            .service()
            .reset_password("link".into(), "a brand new passphrase".into())
            .await
            .unwrap_err();
        assert!(matches!(err, MailLinkError::InvalidLink));
    }

    #[tokio::test]
    async fn a_verified_address_gets_no_new_verification_mail() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_id().returning(|_| {
            Ok(Some(User {
                email_verified_at: Some(t0()),
                ..user(1)
            }))
        });
        let mut outbox = MockOutbox::new();
        outbox.expect_enqueue().never();
        mocks.outbox = Some(outbox);
        mocks
            .service()
            .resend_verification(user(1).id, ClientNetwork::Unknown)
            .await
            .unwrap();
    }
}
