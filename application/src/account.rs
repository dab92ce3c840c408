use crate::{AuthService, Throttled};
use latchkey_domain::{
    ports::{HashingError, StoreError},
    AuthEvent, BudgetAction, ClientNetwork, FamilyId, LoginFailure, MailTokenPurpose, Password,
    PasswordChangeKind, PasswordError, SessionEndCause, User, UserId,
};

/// Rounds of "swap the hash, else re-read it" before a password change gives up: only
/// concurrent upgrades or changes of the same password make a round fail.
const SWAP_ROUNDS: usize = 3;

#[derive(Debug)]
pub struct ChangePasswordCommand {
    pub user: UserId,
    /// The session asking: it goes on, every other one ends.
    pub session: FamilyId,
    pub current_password: String,
    pub new_password: String,
    pub client: ClientNetwork,
}

#[derive(Debug)]
pub struct DeleteAccountCommand {
    pub user: UserId,
    pub password: String,
    pub client: ClientNetwork,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The access token is valid but its account is gone.
    #[error("the account for this token no longer exists")]
    AccountGone,
    /// The password that confirms the change is too long to be anyone's.
    #[error(transparent)]
    InvalidPassword(PasswordError),
    #[error("the current password is wrong")]
    WrongPassword,
    #[error(transparent)]
    WeakPassword(PasswordError),
    /// Another request changed the password between this one's check and its write.
    #[error(
        "the password was changed by another request meanwhile (your other sessions may have ended); try again with the new one"
    )]
    PasswordChangedMeanwhile,
    /// Confirming passwords is guessing them too, and hashing: the network's login budget and
    /// the login backoff apply.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
}

impl AuthService {
    /// Replaces the caller's password after checking the current one. Every other session of
    /// the account ends; the calling one goes on.
    #[tracing::instrument(name = "change_password", skip_all, fields(user_id = %command.user))]
    pub async fn change_password(
        &self,
        command: ChangePasswordCommand,
    ) -> Result<(), AccountError> {
        let current =
            Password::for_login(command.current_password).map_err(AccountError::InvalidPassword)?;
        let user = self.find_account(command.user).await?;
        let new = Password::new_for_account(command.new_password, &user.email, &self.passwords)
            .map_err(AccountError::WeakPassword)?;
        self.confirm_password(&user, &current, command.client)
            .await?;
        let new_hash = self.ports.hasher.hash(&new).await?;
        // The other sessions end first, so that a failure further on leaves none of them
        // (a thief's, say) running while the owner is told to try again.
        let keep = Some(command.session);
        let ended = self
            .ports
            .sessions
            .revoke_all_of_user(user.id, self.ports.clock.now(), keep)
            .await?;
        tracing::debug!(other_sessions_ended = ended, "sessions ended");
        // Recorded now: they have ended, whatever happens to the swap.
        self.record(AuthEvent::SessionsEnded {
            user: user.id,
            session: None,
            cause: SessionEndCause::PasswordChanged,
        });
        let swapped = self
            .swap_password_hash(user.clone(), &current, &new_hash)
            .await;
        // Also after a failed swap: its write may have landed though its answer was lost.
        self.end_sessions_started_meanwhile(user.id, keep).await;
        swapped?;
        self.forget_account_throttling(user.id, &user.email.key())
            .await;
        // A reset link mailed before must not undo the change.
        if let Err(error) = self
            .ports
            .mail_tokens
            .discard(user.id, MailTokenPurpose::ResetPassword)
            .await
        {
            tracing::warn!(user_id = %user.id, %error, "reset link not discarded after a password change");
        }
        self.record(AuthEvent::PasswordChanged {
            user: user.id,
            how: PasswordChangeKind::Changed,
        });
        Ok(())
    }

    /// Ends, again, the sessions of `user` but `keep`, after its password changed: a login
    /// that checked the old password meanwhile either sees the new hash when it re-reads the
    /// account (and ends its own session), or stored its session before the hash changed, so
    /// before this. The password has changed whatever happens here, so a failure is logged,
    /// not answered.
    pub(crate) async fn end_sessions_started_meanwhile(
        &self,
        user: UserId,
        keep: Option<FamilyId>,
    ) {
        if let Err(error) = self
            .ports
            .sessions
            .revoke_all_of_user(user, self.ports.clock.now(), keep)
            .await
        {
            tracing::warn!(user_id = %user, %error, "sessions started while the password changed not ended");
        }
    }

    /// Replaces the hash `user` was read with. When it changed meanwhile, goes on only if it is
    /// still a hash of `current` (a login upgraded it), else someone changed the password.
    async fn swap_password_hash(
        &self,
        mut user: User,
        current: &Password,
        new_hash: &latchkey_domain::PasswordHash,
    ) -> Result<(), AccountError> {
        for _ in 0..SWAP_ROUNDS {
            if self
                .ports
                .users
                .replace_password_hash(user.id, &user.password_hash, new_hash)
                .await?
            {
                return Ok(());
            }
            user = self.find_account(user.id).await?;
            if self.verify(current, &user.password_hash).await?.is_none() {
                return Err(AccountError::PasswordChangedMeanwhile);
            }
        }
        Err(AccountError::PasswordChangedMeanwhile)
    }

    /// Deletes the caller's account after checking their password: the account, its sessions
    /// and its refresh tokens. The email may register again.
    #[tracing::instrument(name = "delete_account", skip_all, fields(user_id = %command.user))]
    pub async fn delete_account(&self, command: DeleteAccountCommand) -> Result<(), AccountError> {
        let password =
            Password::for_login(command.password).map_err(AccountError::InvalidPassword)?;
        let user = self.find_account(command.user).await?;
        self.confirm_password(&user, &password, command.client)
            .await?;
        let now = self.ports.clock.now();
        // Tokens die first, in one write, so that a failure further on leaves no live session
        // behind an account the owner meant to delete. A login racing the deletion re-reads
        // the account after storing its session and ends it when the account is gone.
        self.ports
            .sessions
            .revoke_all_of_user(user.id, now, None)
            .await?;
        self.record(AuthEvent::SessionsEnded {
            user: user.id,
            session: None,
            cause: SessionEndCause::AccountDeleted,
        });
        self.ports.users.delete(user.id).await?;
        // Gone for good from here: what follows only tidies up after it.
        self.record(AuthEvent::AccountDeleted { user: user.id });
        self.forget_account_throttling(user.id, &user.email.key())
            .await;
        self.ports.sessions.delete_all_of_user(user.id).await?;
        self.ports
            .refresh_tokens
            .delete_all_of_user(user.id)
            .await?;
        for purpose in [
            MailTokenPurpose::VerifyEmail,
            MailTokenPurpose::ResetPassword,
        ] {
            self.ports.mail_tokens.discard(user.id, purpose).await?;
        }
        Ok(())
    }

    async fn find_account(&self, id: UserId) -> Result<User, AccountError> {
        self.ports
            .users
            .find_by_id(id)
            .await?
            .ok_or(AccountError::AccountGone)
    }

    /// Checks the account's password as a login would: paid from the network's login budget
    /// first (every check runs argon2, and a change hashes once more, so a few accounts must
    /// not keep the hashing queue full), then counted against the same failure budget, so a
    /// stolen access token cannot guess the password faster than a login. A right password
    /// forgives the failures but marks no network as known: only a login does.
    async fn confirm_password(
        &self,
        user: &User,
        password: &Password,
        client: ClientNetwork,
    ) -> Result<(), AccountError> {
        if let Err(error) = self
            .spend::<AccountError>(BudgetAction::Login, client)
            .await
        {
            if matches!(error, AccountError::Throttled(_)) {
                self.record(AuthEvent::LoginThrottled {
                    user: Some(user.id),
                    client,
                });
            }
            return Err(error);
        }
        let now = self.ports.clock.now();
        let claim = match self
            .claim_login_attempt(&user.email.key(), client, now)
            .await?
        {
            Ok(claim) => claim,
            Err(retry_after) => {
                self.record(AuthEvent::LoginThrottled {
                    user: Some(user.id),
                    client,
                });
                return Err(Throttled::LoginFailures { retry_after }.into());
            }
        };
        if self.verify(password, &user.password_hash).await?.is_none() {
            self.record(AuthEvent::LoginFailed {
                user: Some(user.id),
                client,
                reason: LoginFailure::WrongConfirmation,
            });
            return Err(AccountError::WrongPassword);
        }
        self.forgive_login_failures(&claim).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use latchkey_domain::{
        ports::MockThrottleStore, BucketState, FailureRecord, KeyPepper, PasswordHash, ThrottleKey,
    };
    use mockall::Sequence;

    fn change(current: &str, new: &str) -> ChangePasswordCommand {
        ChangePasswordCommand {
            user: user(1).id,
            session: family(8),
            current_password: current.into(),
            new_password: new.into(),
            client: ClientNetwork::Unknown,
        }
    }

    fn finds_user1_by_id(mocks: &mut Mocks) {
        mocks
            .users
            .expect_find_by_id()
            .withf(|id| *id == user(1).id)
            .returning(|_| Ok(Some(user(1))));
    }

    fn password_is(mocks: &mut Mocks, right: &'static str) {
        mocks
            .hasher
            .expect_verify()
            .returning(move |p, _| Ok(p.expose() == right));
    }

    #[tokio::test]
    async fn a_password_change_stores_the_new_hash_and_ends_every_other_session() {
        let mut mocks = Mocks::new();
        finds_user1_by_id(&mut mocks);
        password_is(&mut mocks, "old password");
        mocks
            .hasher
            .expect_hash()
            .withf(|p| p.expose() == "a new passphrase")
            .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
        mocks
            .users
            .expect_replace_password_hash()
            .withf(|id, current, new| {
                *id == user(1).id
                    && *current == user(1).password_hash
                    && new.as_str() == "$argon2id$new"
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .withf(|u, at, keep| *u == user(1).id && *at == t0() && *keep == Some(family(8)))
            .times(2)
            .returning(|_, _, _| Ok(2));
        mocks
            .service()
            .change_password(change("old password", "a new passphrase"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_wrong_current_password_changes_nothing() {
        let mut mocks = Mocks::new();
        finds_user1_by_id(&mut mocks);
        password_is(&mut mocks, "old password");
        mocks.hasher.expect_hash().never();
        mocks.users.expect_replace_password_hash().never();
        mocks.sessions.expect_revoke_all_of_user().never();
        let events = mocks.events.clone();
        let err = mocks
            .service()
            .change_password(change("guess", "a new passphrase"))
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::WrongPassword));
        assert!(
            matches!(
                events.taken()[..],
                [AuthEvent::LoginFailed {
                    reason: LoginFailure::WrongConfirmation,
                    ..
                }]
            ),
            "recorded as a failed login"
        );
    }

    #[tokio::test]
    async fn a_weak_new_password_is_refused_before_the_current_one_is_checked() {
        let mut mocks = Mocks::new();
        finds_user1_by_id(&mut mocks);
        mocks.hasher.expect_verify().never();
        let err = mocks
            .service()
            .change_password(change("old password", "password123"))
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::WeakPassword(_)));
    }

    /// The account is read as user 1, then holds `reread` on every later read.
    fn account_then(mocks: &mut Mocks, reread: &'static str) {
        let mut reads = 0;
        mocks.users.expect_find_by_id().returning(move |_| {
            reads += 1;
            Ok(Some(match reads {
                1 => user(1),
                _ => User {
                    password_hash: PasswordHash::new(reread.into()),
                    ..user(1)
                },
            }))
        });
    }

    #[tokio::test]
    async fn a_password_changed_by_another_request_meanwhile_is_not_overwritten() {
        let mut mocks = Mocks::new();
        account_then(&mut mocks, "$argon2id$someone-elses");
        // The old password matches the old hash only.
        mocks
            .hasher
            .expect_verify()
            .returning(|p, h| Ok(p.expose() == "old password" && *h == user(1).password_hash));
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
        mocks
            .users
            .expect_replace_password_hash()
            .times(1)
            .returning(|_, _, _| Ok(false));
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .times(2)
            .returning(|_, _, _| Ok(0));
        let err = mocks
            .service()
            .change_password(change("old password", "a new passphrase"))
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::PasswordChangedMeanwhile));
    }

    #[tokio::test]
    async fn a_hash_upgraded_by_a_concurrent_login_is_replaced_all_the_same() {
        let mut mocks = Mocks::new();
        account_then(&mut mocks, "$argon2id$upgraded");
        password_is(&mut mocks, "old password");
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
        let mut swaps = 0;
        mocks
            .users
            .expect_replace_password_hash()
            .times(2)
            .returning(move |_, current, _| {
                swaps += 1;
                Ok(swaps == 2 && current.as_str() == "$argon2id$upgraded")
            });
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .returning(|_, _, _| Ok(0));
        mocks
            .service()
            .change_password(change("old password", "a new passphrase"))
            .await
            .unwrap();
    }

    fn delete(password: &str) -> DeleteAccountCommand {
        DeleteAccountCommand {
            user: user(1).id,
            password: password.into(),
            client: ClientNetwork::Unknown,
        }
    }

    #[tokio::test]
    async fn deleting_an_account_ends_its_sessions_first_then_removes_everything() {
        let mut mocks = Mocks::new();
        let mut order = mockall::Sequence::new();
        finds_user1_by_id(&mut mocks);
        password_is(&mut mocks, "my password");
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .withf(|u, _, keep| *u == user(1).id && keep.is_none())
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(1));
        mocks
            .users
            .expect_delete()
            .withf(|id| *id == user(1).id)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(true));
        mocks
            .sessions
            .expect_delete_all_of_user()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(()));
        mocks
            .refresh_tokens
            .expect_delete_all_of_user()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(()));
        mocks
            .service()
            .delete_account(delete("my password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_wrong_password_deletes_nothing() {
        let mut mocks = Mocks::new();
        finds_user1_by_id(&mut mocks);
        password_is(&mut mocks, "my password");
        mocks.users.expect_delete().never();
        mocks.sessions.expect_revoke_all_of_user().never();
        let err = mocks
            .service()
            .delete_account(delete("not my password"))
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::WrongPassword));
    }

    fn network() -> ClientNetwork {
        ClientNetwork::of("192.0.2.9".parse().unwrap())
    }

    /// A login budget of one request every 30 s.
    fn small_login_budget(mocks: &mut Mocks) {
        mocks.abuse.login = Some(crate::Budget {
            burst: std::num::NonZeroU32::new(1).unwrap(),
            replenish_every: std::time::Duration::from_secs(30),
        });
    }

    /// No failed logins counted yet, and every count and clearing works.
    fn no_failures_yet(throttle: &mut MockThrottleStore) {
        throttle.expect_failures().returning(|_, _| Ok(None));
        throttle.expect_record_failure().returning(|_, at, _| {
            Ok(FailureRecord {
                count: 1,
                last_failure_at: at,
            })
        });
        throttle.expect_clear_failures().returning(|_| Ok(()));
    }

    /// User 1's failed logins and known networks are forgotten, next in `order`; the store
    /// fails to when `fails`.
    fn forgets_user1(throttle: &mut MockThrottleStore, order: &mut Sequence, fails: bool) {
        // The service's pepper in the tests.
        let pepper = KeyPepper::new([3; 32]);
        let prefixes = ThrottleKey::account_prefixes(&user(1).email.key(), &pepper);
        for prefix in prefixes {
            throttle
                .expect_forget_with_prefix()
                .withf(move |p| *p == prefix)
                .times(1)
                .in_sequence(order)
                .returning(move |_| {
                    if fails {
                        Err(StoreError("down".into()))
                    } else {
                        Ok(())
                    }
                });
        }
    }

    #[tokio::test]
    async fn a_password_change_spends_the_networks_login_budget_before_any_hash() {
        let mut mocks = Mocks::new();
        small_login_budget(&mut mocks);
        let mut order = Sequence::new();
        let mut throttle = MockThrottleStore::new();
        throttle
            .expect_bucket()
            .withf(|key, _| key.as_str() == "budget:login:192.0.2.9")
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(None));
        throttle
            .expect_replace_bucket()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _, _, _| Ok(true));
        no_failures_yet(&mut throttle);
        throttle.expect_forget_with_prefix().returning(|_| Ok(()));
        mocks.throttle = Some(throttle);
        finds_user1_by_id(&mut mocks);
        mocks
            .hasher
            .expect_verify()
            .times(1)
            .in_sequence(&mut order)
            .returning(|p, _| Ok(p.expose() == "old password"));
        mocks
            .hasher
            .expect_hash()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
        mocks
            .users
            .expect_replace_password_hash()
            .returning(|_, _, _| Ok(true));
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .returning(|_, _, _| Ok(0));
        let command = ChangePasswordCommand {
            client: network(),
            ..change("old password", "a new passphrase")
        };
        mocks.service().change_password(command).await.unwrap();
    }

    #[tokio::test]
    async fn a_spent_login_budget_refuses_a_change_or_a_deletion_before_any_hash() {
        for deleting in [false, true] {
            let mut mocks = Mocks::new();
            small_login_budget(&mut mocks);
            let mut throttle = MockThrottleStore::new();
            // Paid for until 20 s from now.
            let spent = BucketState(
                (t0() + chrono::Duration::seconds(20))
                    .timestamp_nanos_opt()
                    .unwrap() as u64,
            );
            throttle
                .expect_bucket()
                .withf(|key, _| key.as_str() == "budget:login:192.0.2.9")
                .returning(move |_, _| Ok(Some(spent)));
            throttle.expect_replace_bucket().never();
            throttle.expect_record_failure().never();
            mocks.throttle = Some(throttle);
            finds_user1_by_id(&mut mocks);
            mocks.hasher.expect_verify().never();
            mocks.hasher.expect_hash().never();
            mocks.users.expect_delete().never();
            mocks.users.expect_replace_password_hash().never();
            let events = mocks.events.clone();
            let service = mocks.service();
            let outcome = if deleting {
                let command = DeleteAccountCommand {
                    client: network(),
                    ..delete("my password")
                };
                service.delete_account(command).await
            } else {
                let command = ChangePasswordCommand {
                    client: network(),
                    ..change("old password", "a new passphrase")
                };
                service.change_password(command).await
            };
            let err = outcome.unwrap_err();
            assert!(
                matches!(err, AccountError::Throttled(Throttled::Budget { retry_after }) if retry_after == std::time::Duration::from_secs(20)),
                "{err:?}"
            );
            assert_eq!(
                events.taken(),
                [AuthEvent::LoginThrottled {
                    user: Some(user(1).id),
                    client: network(),
                }]
            );
        }
    }

    #[tokio::test]
    async fn a_weak_new_password_costs_no_budget() {
        let mut mocks = Mocks::new();
        small_login_budget(&mut mocks);
        let mut throttle = MockThrottleStore::new();
        throttle.expect_bucket().never();
        mocks.throttle = Some(throttle);
        finds_user1_by_id(&mut mocks);
        let err = mocks
            .service()
            .change_password(change("old password", "password123"))
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::WeakPassword(_)));
    }

    /// A confirmation forgives failures like a login, but a network earns a mark only by a
    /// login; once the password changed, the account's counts and marks are forgotten.
    #[tokio::test]
    async fn a_changed_password_forgets_the_accounts_failed_logins_and_known_networks() {
        for store_fails in [false, true] {
            let mut mocks = Mocks::new();
            let mut order = Sequence::new();
            finds_user1_by_id(&mut mocks);
            password_is(&mut mocks, "old password");
            mocks
                .hasher
                .expect_hash()
                .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
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
            let mut throttle = MockThrottleStore::new();
            no_failures_yet(&mut throttle);
            throttle.expect_remember().never();
            forgets_user1(&mut throttle, &mut order, store_fails);
            mocks.throttle = Some(throttle);
            // Best effort: the password has changed whatever the store says.
            mocks
                .service()
                .change_password(change("old password", "a new passphrase"))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_wrong_current_password_forgets_nothing() {
        let mut mocks = Mocks::new();
        finds_user1_by_id(&mut mocks);
        password_is(&mut mocks, "old password");
        let mut throttle = MockThrottleStore::new();
        no_failures_yet(&mut throttle);
        throttle.expect_forget_with_prefix().never();
        mocks.throttle = Some(throttle);
        let err = mocks
            .service()
            .change_password(change("guess", "a new passphrase"))
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::WrongPassword));
    }

    #[tokio::test]
    async fn a_deleted_account_leaves_no_failed_logins_or_known_networks_behind() {
        let mut mocks = Mocks::new();
        let mut order = Sequence::new();
        finds_user1_by_id(&mut mocks);
        password_is(&mut mocks, "my password");
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .returning(|_, _, _| Ok(1));
        mocks
            .users
            .expect_delete()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(true));
        mocks
            .sessions
            .expect_delete_all_of_user()
            .returning(|_| Ok(()));
        mocks
            .refresh_tokens
            .expect_delete_all_of_user()
            .returning(|_| Ok(()));
        let mut throttle = MockThrottleStore::new();
        no_failures_yet(&mut throttle);
        forgets_user1(&mut throttle, &mut order, false);
        mocks.throttle = Some(throttle);
        mocks
            .service()
            .delete_account(delete("my password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_deleted_account_cannot_be_deleted_again() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_id().returning(|_| Ok(None));
        mocks.hasher.expect_verify().never();
        let err = mocks
            .service()
            .delete_account(delete("my password"))
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::AccountGone));
    }
}
