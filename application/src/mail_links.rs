//! Links sent by mail: verifying an address, and resetting a forgotten password.

use crate::{AuthService, Throttled};
use latchkey_domain::{
    ports::{HashingError, StoreError},
    AccessClaims, AuthEvent, BudgetAction, ClientNetwork, EmailError, EmailKey, Mail,
    MailTokenPurpose, MailTokenRecord, MailTokenSecret, Password, PasswordChangeKind,
    PasswordError, PasswordHash, SessionEndCause, ThrottleKey, User, UserId,
};

/// How mailed links behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailPolicy {
    pub verify_link_ttl: chrono::Duration,
    pub reset_link_ttl: chrono::Duration,
    /// Whether a login needs a verified address.
    pub require_verified_email: bool,
}

#[derive(Debug)]
pub struct VerifyEmailCommand {
    /// The token of the mailed link.
    pub token: String,
    /// The account the verifying browser is signed in to, if any.
    pub signed_in_as: Option<AccessClaims>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct EmailVerified {
    /// Every session of the account started before ended: the verifying browser was not
    /// signed in to it.
    pub sessions_ended: bool,
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
        let token = self
            .issue_link(user.id, user.email.normalized(), purpose)
            .await?;
        let to = user.email.clone();
        self.ports.outbox.enqueue(match purpose {
            MailTokenPurpose::VerifyEmail => Mail::VerifyEmail { to, token },
            MailTokenPurpose::ResetPassword => Mail::ResetPassword { to, token },
        });
        tracing::info!(user_id = %user.id, purpose = purpose.as_str(), "mail with a link queued");
        Ok(())
    }

    /// Stores a new token of `purpose` for the account `user` with the (normalised) address
    /// `email`; every earlier one of that purpose stops working.
    async fn issue_link(
        &self,
        user: UserId,
        email: &str,
        purpose: MailTokenPurpose,
    ) -> Result<MailTokenSecret, StoreError> {
        let token = MailTokenSecret::from_random_bytes(self.ports.random.secret_bytes());
        let now = self.ports.clock.now();
        let ttl = match purpose {
            MailTokenPurpose::VerifyEmail => self.mail.verify_link_ttl,
            MailTokenPurpose::ResetPassword => self.mail.reset_link_ttl,
        };
        let record = MailTokenRecord {
            token_hash: token.hash(),
            user_id: user,
            purpose,
            email: email.to_owned(),
            issued_at: now,
            expires_at: now + ttl,
        };
        self.ports.mail_tokens.issue(&record).await?;
        Ok(token)
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
    ///
    /// Proving a mailbox proves nothing about who chose the password: anyone may register an
    /// address before its owner does (pre-hijacking). So unless the verifying browser is
    /// signed in to this very account (one person holds the session and the mailbox), every
    /// session started before ends, before the address counts as verified; the mailbox's
    /// holder takes the account over with a reset ("forgot password"), which mails them a
    /// link. No secret is handed to whoever presents the link: a verification link lives far
    /// longer than a reset link, and is forwarded more lightly. Verification never grants a
    /// role.
    #[tracing::instrument(name = "verify_email", skip_all, fields(user_id = tracing::field::Empty))]
    pub async fn verify_email(
        &self,
        command: VerifyEmailCommand,
    ) -> Result<EmailVerified, MailLinkError> {
        let hash = MailTokenSecret::from_presented(command.token).hash();
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
        let signed_in_here = command
            .signed_in_as
            .is_some_and(|claims| claims.subject == record.user_id);
        if !signed_in_here {
            // Ended before the address counts as verified: a failure leaves it unverified,
            // with the link given back for another try.
            if let Err(error) = self
                .ports
                .sessions
                .revoke_all_of_user(record.user_id, now, None)
                .await
            {
                self.put_back(&record).await;
                return Err(error.into());
            }
            self.record(AuthEvent::SessionsEnded {
                user: record.user_id,
                session: None,
                cause: SessionEndCause::VerifiedElsewhere,
            });
        }
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
        if !signed_in_here {
            // A login that checked the password meanwhile may have stored its session after
            // the first sweep.
            self.end_sessions_started_meanwhile(record.user_id, None)
                .await;
            tracing::info!("address verified from elsewhere; its sessions ended");
        }
        Ok(EmailVerified {
            sessions_ended: !signed_in_here,
        })
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
        // Used up before hashing: of concurrent resets with one link, exactly one gets past
        // this point, so a link costs one hash however many requests carry it. The link is
        // its budget: no network budget is spent (links are mailed within the mail budgets).
        let Some(record) = self.ports.mail_tokens.consume(&hash, purpose, now).await? else {
            return Err(MailLinkError::InvalidLink);
        };
        let new_hash = match self.ports.hasher.hash(&new).await {
            Ok(new_hash) => new_hash,
            Err(error) => {
                // Nothing changed: the link works again for another try.
                self.put_back(&record).await;
                return Err(error.into());
            }
        };
        let email = user.email.key();
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
        self.forget_account_throttling(record.user_id, &email).await;
        self.note_password_set_by_mailbox_owner(&record, &new_hash, now)
            .await;
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

    /// After a reset: the link reached the address, so it counts as verified, and its holder
    /// chose the password now in force, which is what `ADMIN_EMAILS` waits for. Best effort:
    /// the password is set whatever happens here; a failure is logged (a later reset, or the
    /// next start for `ADMIN_EMAILS`, catches up).
    async fn note_password_set_by_mailbox_owner(
        &self,
        record: &MailTokenRecord,
        new_hash: &PasswordHash,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let users = &self.ports.users;
        let noted = async {
            let owned = users
                .mark_password_set_by_mailbox_owner(record.user_id, new_hash, now)
                .await?;
            let verified = users
                .mark_email_verified(record.user_id, &record.email, now)
                .await?;
            if owned && verified {
                self.grant_if_configured_by_id(record.user_id).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(error) = noted.await {
            tracing::warn!(user_id = %record.user_id, %error, "address or password origin not noted after a reset");
        }
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
    use latchkey_domain::ports::{MockMailTokenRepository, MockOutbox, MockThrottleStore};
    use latchkey_domain::{KeyPepper, MailTokenHash};

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

    fn verification(signed_in_as: Option<&User>) -> VerifyEmailCommand {
        VerifyEmailCommand {
            token: "link".into(),
            signed_in_as: signed_in_as.map(|user| latchkey_domain::AccessClaims {
                subject: user.id,
                roles: user.roles.clone(),
                session: family(7),
                token_id: fixed_uuid(9),
                issued_at: t0(),
                expires_at: t0() + chrono::Duration::hours(1),
            }),
        }
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
        // Signed in to this very account: its sessions go on.
        mocks.sessions.expect_revoke_all_of_user().never();
        let verified = mocks
            .service()
            .verify_email(verification(Some(&user(1))))
            .await
            .unwrap();
        assert!(!verified.sessions_ended);
    }

    /// Pre-hijacking: whoever confirms from a browser not signed in to the account (or signed
    /// in to another one) may not be whoever chose the password. Every session ends before
    /// the address counts as verified, again after it (a login racing it), and no role is
    /// granted, even for `ADMIN_EMAILS`; nothing secret is handed back.
    #[tokio::test]
    async fn a_verification_from_elsewhere_ends_every_session_first_and_grants_nothing() {
        for signed_in_as in [None, Some(user(2))] {
            let mut mocks = Mocks::new();
            mocks.admin_emails =
                vec![latchkey_domain::EmailKey::for_login("USER1@example.com").unwrap()];
            let mut order = mockall::Sequence::new();
            let mut tokens = MockMailTokenRepository::new();
            tokens
                .expect_consume()
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, p, _| Ok(Some(link_of(p))));
            let of_user1 = |u: &UserId, _: &chrono::DateTime<chrono::Utc>, keep: &Option<_>| {
                *u == user(1).id && keep.is_none()
            };
            mocks
                .sessions
                .expect_revoke_all_of_user()
                .withf(of_user1)
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, _, _| Ok(2));
            mocks
                .users
                .expect_mark_email_verified()
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, _, _| Ok(true));
            mocks
                .sessions
                .expect_revoke_all_of_user()
                .withf(of_user1)
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, _, _| Ok(0));
            tokens.expect_issue().never();
            mocks.mail_tokens = Some(tokens);
            mocks.users.expect_set_roles().never();
            let events = mocks.events.clone();
            let verified = mocks
                .service()
                .verify_email(verification(signed_in_as.as_ref()))
                .await
                .unwrap();
            assert_eq!(
                verified,
                EmailVerified {
                    sessions_ended: true
                }
            );
            assert_eq!(
                events.taken(),
                [
                    AuthEvent::SessionsEnded {
                        user: user(1).id,
                        session: None,
                        cause: SessionEndCause::VerifiedElsewhere
                    },
                    AuthEvent::EmailVerified { user: user(1).id },
                ]
            );
        }
    }

    /// A store failure while ending the sessions leaves the address unverified and the link
    /// working.
    #[tokio::test]
    async fn a_verification_whose_sessions_cannot_be_ended_verifies_nothing_and_gives_the_link_back(
    ) {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_consume()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        tokens
            .expect_restore()
            .withf(|r| *r == link_of(MailTokenPurpose::VerifyEmail))
            .times(1)
            .returning(|_| Ok(()));
        mocks.mail_tokens = Some(tokens);
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .returning(|_, _, _| Err(StoreError("down".into())));
        mocks.users.expect_mark_email_verified().never();
        let err = mocks
            .service()
            .verify_email(verification(None))
            .await
            .unwrap_err();
        assert!(matches!(err, MailLinkError::Store(_)));
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
            .verify_email(verification(None))
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
            .verify_email(verification(Some(&user(1))))
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
        // The reset link's holder chose the password now in force: an address of
        // `ADMIN_EMAILS` becomes an administrator then.
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
                    password_set_by_mailbox_owner_at: Some(t0()),
                    ..user(1)
                }))
            });
            mocks
                .users
                .expect_mark_password_set_by_mailbox_owner()
                .withf(|id, hash, at| {
                    *id == user(1).id && hash.as_str() == "$argon2id$new" && *at == t0()
                })
                .times(1)
                .returning(|_, _, _| Ok(true));
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
    async fn a_reset_uses_up_its_link_before_hashing_and_gives_it_back_when_hashing_fails() {
        let mut mocks = Mocks::new();
        let mut order = mockall::Sequence::new();
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_find()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        mocks
            .users
            .expect_find_by_id()
            .returning(|_| Ok(Some(user(1))));
        tokens
            .expect_consume()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, p, _| Ok(Some(link_of(p))));
        mocks
            .hasher
            .expect_hash()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Err(HashingError::Overloaded));
        tokens
            .expect_restore()
            .withf(|r| *r == link_of(MailTokenPurpose::ResetPassword))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(()));
        mocks.mail_tokens = Some(tokens);
        mocks.sessions.expect_revoke_all_of_user().never();
        mocks.users.expect_replace_password_hash().never();
        let err = mocks
            .service()
            .reset_password("link".into(), "a brand new passphrase".into())
            .await
            .unwrap_err();
        assert!(
            matches!(err, MailLinkError::Hashing(HashingError::Overloaded)),
            "{err:?}"
        );
    }

    /// Concurrent requests with one link all find it, but only the one that uses it up hashes.
    #[tokio::test]
    async fn a_request_whose_reset_link_another_used_up_costs_no_hash() {
        let mut mocks = Mocks::new();
        let mut tokens = MockMailTokenRepository::new();
        tokens
            .expect_find()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        tokens.expect_consume().returning(|_, _, _| Ok(None));
        tokens.expect_restore().never();
        mocks.mail_tokens = Some(tokens);
        mocks
            .users
            .expect_find_by_id()
            .returning(|_| Ok(Some(user(1))));
        mocks.hasher.expect_hash().never();
        let err = mocks
            .service()
            .reset_password("link".into(), "a brand new passphrase".into())
            .await
            .unwrap_err();
        assert!(matches!(err, MailLinkError::InvalidLink), "{err:?}");
    }

    #[tokio::test]
    async fn a_reset_forgets_the_accounts_failed_logins_and_known_networks_once_set() {
        let mut mocks = Mocks::new();
        let mut order = mockall::Sequence::new();
        let mut tokens = MockMailTokenRepository::new();
        reset_link_found(&mut mocks, &mut tokens);
        tokens
            .expect_consume()
            .returning(|_, p, _| Ok(Some(link_of(p))));
        mocks.mail_tokens = Some(tokens);
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .returning(|_, _, _| Ok(0));
        mocks
            .users
            .expect_replace_password_hash()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(true));
        // What else a reset notes, answered "not noted": not what this test is about.
        mocks
            .users
            .expect_mark_password_set_by_mailbox_owner()
            .returning(|_, _, _| Ok(false));
        mocks
            .users
            .expect_mark_email_verified()
            .returning(|_, _, _| Ok(false));
        let mut throttle = MockThrottleStore::new();
        // The service's pepper in the tests.
        let pepper = KeyPepper::new([3; 32]);
        for prefix in ThrottleKey::account_prefixes(&user(1).email.key(), &pepper) {
            throttle
                .expect_forget_with_prefix()
                .withf(move |p| *p == prefix)
                .times(1)
                .in_sequence(&mut order)
                .returning(|_| Ok(()));
        }
        mocks.throttle = Some(throttle);
        mocks
            .service()
            .reset_password("link".into(), "a brand new passphrase".into())
            .await
            .unwrap();
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
