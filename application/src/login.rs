use crate::{AuthService, Throttled, TokenPair};
use latchkey_domain::{
    ports::{HashingError, StoreError, TokenSigningError},
    AuthEvent, BudgetAction, ClientNetwork, EmailError, EmailKey, FamilyId, LoginFailure, Password,
    PasswordError, PasswordHash, RefreshTokenSecret, SessionOrigin, SessionRecord, User,
};

#[derive(Debug)]
pub struct LoginCommand {
    pub email: String,
    pub password: String,
    pub client: ClientNetwork,
    /// The `User-Agent` header, shown to the owner in their list of sessions.
    pub user_agent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    InvalidEmail(#[from] EmailError),
    #[error(transparent)]
    InvalidPassword(#[from] PasswordError),
    /// Deliberately one variant for "no such user" and "wrong password".
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password was right, but logins need a verified address and this one is not.
    #[error("confirm your email address first: open the link in the mail we sent you")]
    EmailNotVerified,
    #[error("this account has been disabled by an administrator")]
    AccountDisabled,
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    Signing(#[from] TokenSigningError),
}

impl AuthService {
    /// Starts a new session (a new refresh-token family) for valid credentials.
    ///
    /// Failures are counted per (account, network) and per account, and past a threshold the
    /// next attempt must wait (exponentially longer, capped). Each attempt is counted before
    /// its password is checked and forgiven when it was right. A throttled attempt is answered
    /// before any hashing, identically for registered and unknown emails.
    /// The span names the account once known; never the email or the password.
    #[tracing::instrument(name = "login", skip_all, fields(user_id = tracing::field::Empty))]
    pub async fn login(&self, command: LoginCommand) -> Result<TokenPair, LoginError> {
        let email = EmailKey::for_login(&command.email)?;
        let password = Password::for_login(command.password)?;
        if let Err(error) = self
            .spend::<LoginError>(BudgetAction::Login, command.client)
            .await
        {
            if matches!(error, LoginError::Throttled(_)) {
                self.record(AuthEvent::LoginThrottled {
                    user: None,
                    client: command.client,
                });
            }
            return Err(error);
        }
        // Looked up for every attempt, throttled or not, known or not: the same work for all.
        let found = self.ports.users.find_by_email(&email).await?;
        let account = found.as_ref().map(|user| user.id);
        if let Some(id) = account {
            tracing::Span::current().record("user_id", tracing::field::display(id));
        }
        let now = self.ports.clock.now();
        let claim = match self
            .claim_login_attempt(&email, command.client, now)
            .await?
        {
            Ok(claim) => claim,
            Err(retry_after) => {
                self.record(AuthEvent::LoginThrottled {
                    user: account,
                    client: command.client,
                });
                return Err(Throttled::LoginFailures { retry_after }.into());
            }
        };
        let verified = match &found {
            Some(user) => self.verify(&password, &user.password_hash).await?,
            None => {
                // Spend the same argon2 work as a real check so timing does not reveal the email.
                let _ = self
                    .verify(&password, &self.ports.hasher.dummy_hash())
                    .await?;
                None
            }
        };
        // The failure is already counted.
        let (Some(user), Some(matched)) = (found, verified) else {
            self.record(AuthEvent::LoginFailed {
                user: account,
                client: command.client,
                reason: LoginFailure::InvalidCredentials,
            });
            return Err(LoginError::InvalidCredentials);
        };
        self.forgive_login_failures(&claim).await;
        // Said only to whoever knows the password, like `EmailNotVerified`.
        if user.disabled_at.is_some() {
            self.record(AuthEvent::LoginFailed {
                user: Some(user.id),
                client: command.client,
                reason: LoginFailure::AccountDisabled,
            });
            return Err(LoginError::AccountDisabled);
        }
        // Only after the password proved right, so it tells a guesser nothing.
        if self.mail.require_verified_email && user.email_verified_at.is_none() {
            self.record(AuthEvent::LoginFailed {
                user: Some(user.id),
                client: command.client,
                reason: LoginFailure::EmailNotVerified,
            });
            return Err(LoginError::EmailNotVerified);
        }
        let mut checked_hash = user.password_hash.clone();
        if matched == Matched::AsSent || self.ports.hasher.needs_rehash(&user.password_hash) {
            if let Some(upgraded) = self.upgrade_hash(&user, &password).await {
                checked_hash = upgraded;
            }
        }
        let session = SessionRecord {
            id: FamilyId::from_uuid(self.ports.random.uuid()),
            user_id: user.id,
            created_at: now,
            expires_at: now + self.policy.session_max_age,
            revoked_at: None,
            last_used_at: now,
            origin: SessionOrigin::new(
                command.user_agent.as_deref(),
                (command.client != ClientNetwork::Unknown).then(|| command.client.to_string()),
            ),
        };
        self.ports.sessions.insert(&session).await?;
        // The account as it is now: its roles go into the token.
        let account = self
            .end_if_password_changed(&session, &checked_hash, &password, command.client)
            .await?;
        let refresh_token = RefreshTokenSecret::from_random_bytes(self.ports.random.secret_bytes());
        let tokens = self
            .issue_tokens(&account, &session, refresh_token)
            .await
            // 256 random bits colliding with a stored token: not a case worth a variant.
            .map_err(|e| {
                e.into_error(|| {
                    LoginError::Store(StoreError(
                        "a new refresh token collided with a stored one".into(),
                    ))
                })
            })?;
        // Only a login that hands out tokens marks its network as one the account uses.
        self.remember_login_network(claim, now).await;
        self.record(AuthEvent::LoginSucceeded {
            user: user.id,
            session: session.id,
            client: command.client,
        });
        // Past `MAX_SESSIONS_PER_USER`, the least recently used sessions end (never this one).
        self.end_sessions_past_the_cap(&session).await;
        Ok(tokens)
    }

    /// A password change or an account deletion that landed while this login checked the old
    /// password ends every session it can see; one stored after that must end itself. Read
    /// after the session was stored, the account tells: either it still has the hash this
    /// login checked, or the session was stored before the change and the change revokes it.
    /// Another hash of the same password (a concurrent login upgraded it) is no change.
    async fn end_if_password_changed(
        &self,
        session: &SessionRecord,
        checked_hash: &PasswordHash,
        password: &Password,
        client: ClientNetwork,
    ) -> Result<User, LoginError> {
        // Read after the session exists: an administrator disabling the account now either
        // shows here, or ends this session with the account's others.
        let account = self
            .ports
            .users
            .note_login(session.user_id, session.created_at)
            .await?;
        if account
            .as_ref()
            .is_some_and(|account| account.disabled_at.is_some())
        {
            self.ports
                .sessions
                .revoke(session.id, self.ports.clock.now())
                .await?;
            self.record(AuthEvent::LoginFailed {
                user: Some(session.user_id),
                client,
                reason: LoginFailure::AccountDisabled,
            });
            return Err(LoginError::AccountDisabled);
        }
        let check = match &account {
            Some(account) if account.password_hash == *checked_hash => Ok(true),
            Some(account) => self
                .verify(password, &account.password_hash)
                .await
                .map(|matched| matched.is_some()),
            None => Ok(false),
        };
        if let (Ok(true), Some(account)) = (&check, account) {
            return Ok(account);
        }
        // Also when the check could not run: a session must not outlive a doubt. Busy hashing
        // is said as such (503), not as a wrong password.
        if let Err(error) = check {
            self.ports
                .sessions
                .revoke(session.id, self.ports.clock.now())
                .await?;
            return Err(error.into());
        }
        self.ports
            .sessions
            .revoke(session.id, self.ports.clock.now())
            .await?;
        self.record(AuthEvent::LoginFailed {
            user: Some(session.user_id),
            client,
            reason: LoginFailure::PasswordChangedMeanwhile,
        });
        Err(LoginError::InvalidCredentials)
    }

    /// Which form of the password matched `hash`, if any. Hashes stored before passwords were
    /// NFKC-normalised were computed over the password as sent; the normalised form is tried
    /// first, and the form as sent only when it differs (a second hash for those alone).
    pub(crate) async fn verify(
        &self,
        password: &Password,
        hash: &PasswordHash,
    ) -> Result<Option<Matched>, HashingError> {
        if self.ports.hasher.verify(password, hash).await? {
            return Ok(Some(Matched::Normalized));
        }
        match password.as_sent() {
            Some(as_sent) if self.ports.hasher.verify(&as_sent, hash).await? => {
                Ok(Some(Matched::AsSent))
            }
            _ => Ok(None),
        }
    }

    /// Re-hashes a just-verified password with today's parameters over its normalised form.
    /// Best effort: the login succeeds whatever happens here, and the next login tries again.
    /// Returns the new hash when it was stored.
    async fn upgrade_hash(&self, user: &User, password: &Password) -> Option<PasswordHash> {
        let upgraded = match self.ports.hasher.hash(password).await {
            Ok(hash) => hash,
            Err(error) => {
                tracing::warn!(user_id = %user.id, %error, "password hash not upgraded");
                return None;
            }
        };
        match self
            .ports
            .users
            .replace_password_hash(user.id, &user.password_hash, &upgraded)
            .await
        {
            Ok(true) => {
                tracing::info!(user_id = %user.id, "password hash upgraded");
                Some(upgraded)
            }
            // The password changed meanwhile; its new hash is already current.
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(user_id = %user.id, %error, "password hash not upgraded");
                None
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Matched {
    Normalized,
    AsSent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use latchkey_domain::{ports::MockThrottleStore, BucketState, FailureRecord, UserId};

    fn command(email: &str, password: &str) -> LoginCommand {
        LoginCommand {
            email: email.into(),
            password: password.into(),
            client: ClientNetwork::Unknown,
            user_agent: Some("TestBrowser/1.0".into()),
        }
    }

    #[tokio::test]
    async fn login_with_the_right_password_issues_a_token_pair_in_a_new_family() {
        let mut mocks = Mocks::new();
        let stored = user(1);
        mocks
            .users
            .expect_find_by_email()
            .withf(|e| e.as_str() == "user1@example.com")
            .returning(move |_| Ok(Some(stored.clone())));
        mocks
            .hasher
            .expect_verify()
            .withf(|p, h| p.expose() == "right password" && h.as_str() == "$argon2id$user1")
            .times(1)
            .returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
        mocks.random.expect_secret_bytes().return_const([9u8; 32]);
        mocks.random.expect_uuid().return_const(fixed_uuid(42));
        account_hash_on_reread(&mut mocks, user(1).password_hash);
        let expected_hash =
            latchkey_domain::RefreshTokenSecret::from_random_bytes([9u8; 32]).hash();
        mocks
            .sessions
            .expect_insert()
            .withf(|s| {
                s.id == FamilyId::from_uuid(fixed_uuid(42))
                    && s.user_id == UserId::from_uuid(fixed_uuid(1))
                    && s.expires_at == t0() + chrono::Duration::days(30)
                    && s.revoked_at.is_none()
                    && s.origin.user_agent.as_deref() == Some("TestBrowser/1.0")
                    && s.origin.address.is_none()
            })
            .times(1)
            .returning(|_| Ok(()));
        mocks
            .refresh_tokens
            .expect_insert()
            .withf(move |r| {
                r.token_hash == expected_hash
                    && r.user_id == UserId::from_uuid(fixed_uuid(1))
                    && r.family_id == FamilyId::from_uuid(fixed_uuid(42))
                    && r.expires_at == t0() + chrono::Duration::days(14)
                    && r.rotated_at.is_none()
            })
            .times(1)
            .returning(|_| Ok(None));
        mocks
            .access_tokens
            .expect_encode()
            .withf(|c| {
                c.subject == UserId::from_uuid(fixed_uuid(1))
                    && c.session == FamilyId::from_uuid(fixed_uuid(42))
                    && c.expires_at == t0() + chrono::Duration::hours(1)
            })
            .times(1)
            .returning(|_| Ok("signed.jwt".into()));

        let events = mocks.events.clone();
        let pair = mocks
            .service()
            .login(command("USER1@example.com", "right password"))
            .await
            .unwrap();
        assert_eq!(
            events.taken(),
            [AuthEvent::LoginSucceeded {
                user: UserId::from_uuid(fixed_uuid(1)),
                session: FamilyId::from_uuid(fixed_uuid(42)),
                client: ClientNetwork::Unknown,
            }]
        );

        assert_eq!(pair.access_token, "signed.jwt");
        assert_eq!(pair.access_expires_in_secs, 3600);
        assert_eq!(pair.refresh_expires_in_secs, 14 * 24 * 3600);
        assert_eq!(pair.refresh_token.hash(), expected_hash);
    }

    #[tokio::test]
    async fn login_with_a_wrong_password_is_invalid_credentials_and_issues_nothing() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(false));
        mocks.sessions.expect_insert().never();
        mocks.refresh_tokens.expect_insert().never();
        mocks.access_tokens.expect_encode().never();
        let events = mocks.events.clone();
        let err = mocks
            .service()
            .login(command("user1@example.com", "wrong password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidCredentials));
        assert_eq!(
            events.taken(),
            [AuthEvent::LoginFailed {
                user: Some(user(1).id),
                client: ClientNetwork::Unknown,
                reason: LoginFailure::InvalidCredentials,
            }]
        );
    }

    #[tokio::test]
    async fn login_for_an_unknown_email_still_verifies_against_the_dummy_hash() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_email().returning(|_| Ok(None));
        mocks
            .hasher
            .expect_dummy_hash()
            .return_const(PasswordHash::new("$argon2id$dummy".into()));
        mocks
            .hasher
            .expect_verify()
            .withf(|_, h| h.as_str() == "$argon2id$dummy")
            .times(1)
            .returning(|_, _| Ok(false));
        let err = mocks
            .service()
            .login(command("nobody@example.com", "whatever password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidCredentials));
    }

    #[tokio::test]
    async fn an_account_registered_under_older_email_rules_still_logs_in() {
        let mut mocks = Mocks::new();
        let mut stored = user(1);
        stored.email = latchkey_domain::EmailAddress::from_trusted("José@Bücher.de".into());
        mocks
            .users
            .expect_find_by_email()
            .withf(|key| key.as_str() == "josé@bücher.de")
            .returning(move |_| Ok(Some(stored.clone())));
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
        mocks.random.expect_secret_bytes().return_const([9u8; 32]);
        mocks.random.expect_uuid().return_const(fixed_uuid(42));
        mocks.sessions.expect_insert().returning(|_| Ok(()));
        mocks.refresh_tokens.expect_insert().returning(|_| Ok(None));
        mocks
            .access_tokens
            .expect_encode()
            .returning(|_| Ok("jwt".into()));
        account_hash_on_reread(&mut mocks, user(1).password_hash);
        let pair = mocks
            .service()
            .login(command(" josé@BÜCHER.de ", "right password"))
            .await
            .unwrap();
        assert_eq!(pair.access_token, "jwt");
    }

    #[tokio::test]
    async fn login_passes_store_outages_through_without_verifying() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_find_by_email()
            .returning(|_| Err(StoreError("connection refused".into())));
        mocks.hasher.expect_verify().never();
        let err = mocks
            .service()
            .login(command("user1@example.com", "whatever password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::Store(_)));
    }

    #[tokio::test]
    async fn login_rejects_an_oversized_password_before_touching_the_store() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_email().never();
        let err = mocks
            .service()
            .login(command("user1@example.com", &"x".repeat(2000)))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidPassword(_)));
    }

    #[tokio::test]
    async fn a_completed_login_past_the_cap_ends_the_least_recently_used_session() {
        let mut mocks = Mocks::sessions_strict();
        right_password_of_user1(&mut mocks);
        expect_session(&mut mocks);
        mocks
            .sessions
            .expect_least_recently_used_beyond()
            .withf(|u, live, keep, _| *u == user(1).id && live.now == t0() && *keep == 100)
            .times(1)
            .returning(|_, _, _, _| Ok(vec![family(5)]));
        mocks
            .sessions
            .expect_revoke()
            .withf(|id, _| *id == family(5))
            .times(1)
            .returning(|_, _| Ok(true));
        let events = mocks.events.clone();

        mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap();

        assert_eq!(
            events.taken(),
            [
                AuthEvent::LoginSucceeded {
                    user: user(1).id,
                    session: family(42),
                    client: ClientNetwork::Unknown,
                },
                AuthEvent::SessionsEnded {
                    user: user(1).id,
                    session: Some(family(5)),
                    cause: latchkey_domain::SessionEndCause::SessionLimit,
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_login_stays_good_when_ending_sessions_past_the_cap_fails() {
        let mut mocks = Mocks::sessions_strict();
        right_password_of_user1(&mut mocks);
        expect_session(&mut mocks);
        mocks
            .sessions
            .expect_least_recently_used_beyond()
            .times(1)
            .returning(|_, _, _, _| Err(StoreError("timed out".into())));
        let pair = mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap();
        assert_eq!(pair.access_token, "jwt");
    }

    fn finds_user1(mocks: &mut Mocks) {
        mocks
            .users
            .expect_find_by_email()
            .returning(|_| Ok(Some(user(1))));
    }

    /// A successful login's session and tokens, for tests about what happens around them.
    fn expect_session(mocks: &mut Mocks) {
        expect_session_then_account_hash(mocks, user(1).password_hash);
    }

    /// Like `expect_session`, where the account holds `hash` when re-read after the session
    /// was stored.
    fn expect_session_then_account_hash(mocks: &mut Mocks, hash: PasswordHash) {
        account_hash_on_reread(mocks, hash);
        session_stored(mocks);
        mocks
            .access_tokens
            .expect_encode()
            .returning(|_| Ok("jwt".into()));
    }

    /// The login's own session (uuid 42) is revoked, and no token is issued for it.
    fn expects_its_own_session_ended(mocks: &mut Mocks) {
        mocks
            .sessions
            .expect_revoke()
            .withf(|id, _| *id == FamilyId::from_uuid(fixed_uuid(42)))
            .times(1)
            .returning(|_, _| Ok(true));
        mocks.refresh_tokens.expect_insert().never();
        mocks.access_tokens.expect_encode().never();
    }

    /// User 1 is found and the password is right, and its hash is as configured.
    fn right_password_of_user1(mocks: &mut Mocks) {
        finds_user1(mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
    }

    /// The session and refresh token of a login are stored.
    fn session_stored(mocks: &mut Mocks) {
        mocks.random.expect_secret_bytes().return_const([9u8; 32]);
        mocks.random.expect_uuid().return_const(fixed_uuid(42));
        mocks.sessions.expect_insert().returning(|_| Ok(()));
        mocks.refresh_tokens.expect_insert().returning(|_| Ok(None));
    }

    fn account_hash_on_reread(mocks: &mut Mocks, hash: PasswordHash) {
        mocks.users.expect_note_login().returning(move |_, _| {
            Ok(Some(User {
                password_hash: hash.clone(),
                ..user(1)
            }))
        });
    }

    #[tokio::test]
    async fn with_verification_required_the_right_password_of_an_unverified_email_gets_no_session()
    {
        for verified in [None, Some(t0())] {
            let mut mocks = Mocks::new();
            mocks.mail.require_verified_email = true;
            mocks.users.expect_find_by_email().returning(move |_| {
                Ok(Some(User {
                    email_verified_at: verified,
                    ..user(1)
                }))
            });
            mocks.hasher.expect_verify().returning(|_, _| Ok(true));
            mocks.hasher.expect_needs_rehash().return_const(false);
            if verified.is_some() {
                expect_session(&mut mocks);
            } else {
                mocks.sessions.expect_insert().never();
            }
            let outcome = mocks
                .service()
                .login(command("user1@example.com", "right password"))
                .await;
            match verified {
                Some(_) => assert!(outcome.is_ok()),
                None => assert!(matches!(outcome, Err(LoginError::EmailNotVerified))),
            }
        }
    }

    #[tokio::test]
    async fn a_login_whose_hash_another_login_upgraded_meanwhile_goes_on() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
        // Another hash, but of the same password.
        expect_session_then_account_hash(
            &mut mocks,
            PasswordHash::new("$argon2id$upgraded".into()),
        );
        mocks.sessions.expect_revoke().never();
        mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_recheck_that_cannot_run_ends_the_session_and_says_the_server_is_busy() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, h| {
            if *h == user(1).password_hash {
                Ok(true)
            } else {
                Err(HashingError::Overloaded)
            }
        });
        mocks.hasher.expect_needs_rehash().return_const(false);
        mocks.random.expect_uuid().return_const(fixed_uuid(42));
        mocks.sessions.expect_insert().returning(|_| Ok(()));
        account_hash_on_reread(&mut mocks, PasswordHash::new("$argon2id$other".into()));
        expects_its_own_session_ended(&mut mocks);
        let err = mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::Hashing(HashingError::Overloaded)));
    }

    #[tokio::test]
    async fn a_login_that_checked_a_password_changed_meanwhile_ends_its_own_session() {
        for reread in [Some("$argon2id$changed"), None] {
            let mut mocks = Mocks::new();
            finds_user1(&mut mocks);
            // The password checked matches the hash it was checked against, no other.
            mocks
                .hasher
                .expect_verify()
                .returning(|_, h| Ok(*h == user(1).password_hash));
            mocks.hasher.expect_needs_rehash().return_const(false);
            mocks.random.expect_uuid().return_const(fixed_uuid(42));
            mocks
                .sessions
                .expect_insert()
                .times(1)
                .returning(|_| Ok(()));
            mocks.users.expect_note_login().returning(move |_, _| {
                Ok(reread.map(|hash| User {
                    password_hash: PasswordHash::new(hash.into()),
                    ..user(1)
                }))
            });
            expects_its_own_session_ended(&mut mocks);
            let err = mocks
                .service()
                .login(command("user1@example.com", "old password"))
                .await
                .unwrap_err();
            assert!(matches!(err, LoginError::InvalidCredentials), "{reread:?}");
        }
    }

    #[tokio::test]
    async fn the_right_password_of_a_disabled_account_gets_no_session() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_email().returning(|_| {
            Ok(Some(User {
                disabled_at: Some(t0()),
                ..user(1)
            }))
        });
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
        mocks.sessions.expect_insert().never();
        let events = mocks.events.clone();
        let err = mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::AccountDisabled));
        assert!(matches!(
            events.taken()[..],
            [AuthEvent::LoginFailed {
                reason: LoginFailure::AccountDisabled,
                ..
            }]
        ));
    }

    /// Only a login that hands out tokens marks its network as one the account uses: a right
    /// password refused after all is forgiven as a guess, but earns no mark.
    #[tokio::test]
    async fn a_right_password_refused_after_all_does_not_mark_its_network_as_known() {
        for refusal in ["disabled", "unverified", "disabled meanwhile"] {
            let mut mocks = Mocks::new();
            mocks.mail.require_verified_email = true;
            let found = User {
                disabled_at: (refusal == "disabled").then(t0),
                email_verified_at: (refusal != "unverified").then(t0),
                ..user(1)
            };
            mocks
                .users
                .expect_find_by_email()
                .returning(move |_| Ok(Some(found.clone())));
            mocks.hasher.expect_verify().returning(|_, _| Ok(true));
            mocks.hasher.expect_needs_rehash().return_const(false);
            if refusal == "disabled meanwhile" {
                mocks.random.expect_uuid().return_const(fixed_uuid(42));
                mocks.sessions.expect_insert().returning(|_| Ok(()));
                mocks.users.expect_note_login().returning(|_, _| {
                    Ok(Some(User {
                        disabled_at: Some(t0()),
                        email_verified_at: Some(t0()),
                        ..user(1)
                    }))
                });
                expects_its_own_session_ended(&mut mocks);
            }
            let mut throttle = MockThrottleStore::new();
            throttle.expect_failures().returning(|_, _| Ok(None));
            throttle
                .expect_record_failure()
                .times(2)
                .returning(counted_as(1));
            throttle
                .expect_clear_failures()
                .times(2)
                .returning(|_| Ok(()));
            throttle.expect_remember().never();
            mocks.throttle = Some(throttle);
            let err = mocks
                .service()
                .login(command("user1@example.com", "right password"))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    LoginError::AccountDisabled | LoginError::EmailNotVerified
                ),
                "{refusal}: {err:?}"
            );
        }
    }

    /// Roles changed while the password was checked: the token carries the account as re-read
    /// after the session was stored.
    #[tokio::test]
    async fn the_token_carries_the_roles_of_the_account_as_re_read() {
        let mut mocks = Mocks::new();
        right_password_of_user1(&mut mocks);
        session_stored(&mut mocks);
        let billing = latchkey_domain::Role::parse("billing").unwrap();
        let reread = vec![latchkey_domain::Role::user(), billing];
        let stored = reread.clone();
        mocks.users.expect_note_login().returning(move |_, _| {
            Ok(Some(User {
                roles: stored.clone(),
                ..user(1)
            }))
        });
        mocks
            .access_tokens
            .expect_encode()
            .withf(move |claims| claims.roles == reread)
            .times(1)
            .returning(|_| Ok("jwt".into()));
        let pair = mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap();
        assert_eq!(pair.access_token, "jwt");
    }

    /// An administrator disabled the account between the password check and the session.
    #[tokio::test]
    async fn a_login_racing_a_disabling_ends_its_own_session() {
        let mut mocks = Mocks::new();
        right_password_of_user1(&mut mocks);
        mocks.random.expect_uuid().return_const(fixed_uuid(42));
        mocks
            .sessions
            .expect_insert()
            .times(1)
            .returning(|_| Ok(()));
        mocks
            .users
            .expect_note_login()
            .withf(|id, at| *id == user(1).id && *at == t0())
            .returning(|_, _| {
                Ok(Some(User {
                    disabled_at: Some(t0()),
                    ..user(1)
                }))
            });
        expects_its_own_session_ended(&mut mocks);
        let err = mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::AccountDisabled));
    }

    /// What `record_failure` answers: the failure was counted as the `count`-th.
    fn counted_as(
        count: u32,
    ) -> impl Fn(
        &latchkey_domain::ThrottleKey,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) -> Result<FailureRecord, StoreError>
           + Send
           + 'static {
        move |_, at, _| {
            Ok(FailureRecord {
                count,
                last_failure_at: at,
            })
        }
    }

    /// Logs in where the stored counts say to wait; asserts that nothing is counted or hashed
    /// and returns the wait in seconds.
    async fn wait_before_any_hash(
        mut mocks: Mocks,
        network: FailureRecord,
        account: FailureRecord,
        known_network: bool,
        password: &str,
    ) -> u64 {
        let mut throttle = MockThrottleStore::new();
        throttle.expect_failures().returning(move |key, _| {
            Ok(Some(if key.as_str().ends_with(":unknown") {
                network
            } else {
                account
            }))
        });
        throttle
            .expect_remembers()
            .returning(move |_, _| Ok(known_network));
        throttle.expect_record_failure().never();
        mocks.throttle = Some(throttle);
        mocks.hasher.expect_verify().never();
        mocks.hasher.expect_dummy_hash().never();
        let events = mocks.events.clone();
        let err = mocks
            .service()
            .login(command("user1@example.com", password))
            .await
            .unwrap_err();
        assert!(
            matches!(events.taken()[..], [AuthEvent::LoginThrottled { .. }]),
            "one throttled login recorded"
        );
        let LoginError::Throttled(throttled) = err else {
            panic!("expected a throttled login, got {err:?}")
        };
        throttled.retry_after_secs()
    }

    fn failures(count: u32, seconds_ago: i64) -> FailureRecord {
        FailureRecord {
            count,
            last_failure_at: t0() - chrono::Duration::seconds(seconds_ago),
        }
    }

    #[tokio::test]
    async fn past_the_free_failures_a_login_waits_without_hashing_for_known_and_unknown_emails() {
        for known in [true, false] {
            let mut mocks = Mocks::new();
            let found = known.then(|| user(1));
            mocks
                .users
                .expect_find_by_email()
                .returning(move |_| Ok(found.clone()));
            // The network's six failures asked for 2 s, long past; the account's sixty ask for
            // 2^10 s, capped at 15 minutes, from 3 s ago. The longer wait wins, as the network is
            // not one the account logged in from lately.
            let wait =
                wait_before_any_hash(mocks, failures(6, 10), failures(60, 3), false, "a guess")
                    .await;
            assert_eq!(wait, 900 - 3, "capped at 15 minutes");
        }
    }

    #[tokio::test]
    async fn a_wrong_password_counts_a_failure_for_the_network_and_for_the_account() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(false));
        let mut throttle = MockThrottleStore::new();
        throttle
            .expect_failures()
            .returning(|_, _| Ok(Some(failures(4, 0))));
        throttle
            .expect_record_failure()
            .withf(|_, at, forget_at| {
                *at == t0() && *forget_at == t0() + chrono::Duration::hours(24)
            })
            .times(2)
            .returning(counted_as(5));
        throttle.expect_clear_failures().never();
        mocks.throttle = Some(throttle);
        let err = mocks
            .service()
            .login(command("user1@example.com", "wrong password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidCredentials));
    }

    #[tokio::test]
    async fn a_success_resets_both_counts() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
        let mut throttle = MockThrottleStore::new();
        throttle
            .expect_failures()
            .returning(|_, _| Ok(Some(failures(4, 0))));
        // Counted first, as every attempt is; forgiven once the password proved right.
        throttle
            .expect_record_failure()
            .times(2)
            .returning(counted_as(5));
        throttle
            .expect_clear_failures()
            .times(2)
            .returning(|_| Ok(()));
        throttle
            .expect_remember()
            .withf(|key, _, until| {
                // Past the session's 30-day maximum age, by another 30 days.
                key.as_str().starts_with("known:") && *until == t0() + chrono::Duration::days(60)
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        mocks.throttle = Some(throttle);
        expect_session(&mut mocks);
        mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_is_replaced_after_a_successful_login() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(true);
        mocks
            .hasher
            .expect_hash()
            .withf(|p| p.expose() == "right password")
            .times(1)
            .returning(|_| Ok(PasswordHash::new("$argon2id$stronger".into())));
        mocks
            .users
            .expect_replace_password_hash()
            .withf(|id, current, new| {
                *id == UserId::from_uuid(fixed_uuid(1))
                    && current.as_str() == "$argon2id$user1"
                    && new.as_str() == "$argon2id$stronger"
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        // The login's own upgrade is no password change.
        expect_session_then_account_hash(
            &mut mocks,
            PasswordHash::new("$argon2id$stronger".into()),
        );
        mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_upgrade_does_not_fail_the_login() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(true);
        mocks
            .hasher
            .expect_hash()
            .returning(|_| Err(HashingError::Overloaded));
        mocks.users.expect_replace_password_hash().never();
        expect_session(&mut mocks);
        assert!(mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_hash_of_the_unnormalised_password_still_matches_and_is_upgraded() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        // Stored before normalisation: a hash of the ligature itself.
        mocks
            .hasher
            .expect_verify()
            .returning(|p, _| Ok(p.expose() == "the ﬁnest password"));
        mocks.hasher.expect_needs_rehash().return_const(false);
        mocks
            .hasher
            .expect_hash()
            .withf(|p| p.expose() == "the finest password")
            .times(1)
            .returning(|_| Ok(PasswordHash::new("$argon2id$normalised".into())));
        mocks
            .users
            .expect_replace_password_hash()
            .times(1)
            .returning(|_, _, _| Ok(true));
        expect_session_then_account_hash(
            &mut mocks,
            PasswordHash::new("$argon2id$normalised".into()),
        );
        mocks
            .service()
            .login(command("user1@example.com", "the ﬁnest password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_spent_login_budget_answers_before_any_lookup() {
        let mut mocks = Mocks::new();
        mocks.abuse.login = Some(crate::Budget {
            burst: std::num::NonZeroU32::new(1).unwrap(),
            replenish_every: std::time::Duration::from_secs(30),
        });
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
        mocks.throttle = Some(throttle);
        mocks.users.expect_find_by_email().never();
        let mut login = command("user1@example.com", "whatever password");
        login.client = ClientNetwork::of("192.0.2.9".parse().unwrap());
        let events = mocks.events.clone();
        let err = mocks.service().login(login).await.unwrap_err();
        assert_eq!(
            events.taken(),
            [AuthEvent::LoginThrottled {
                user: None,
                client: ClientNetwork::of("192.0.2.9".parse().unwrap()),
            }]
        );
        assert!(
            matches!(err, LoginError::Throttled(Throttled::Budget { retry_after }) if retry_after == std::time::Duration::from_secs(20)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn of_concurrent_attempts_let_through_on_one_state_only_the_first_to_count_goes_on() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        let mut throttle = MockThrottleStore::new();
        // Five failures from this network, the wait after them long over: one attempt is due.
        throttle
            .expect_failures()
            .returning(|_, _| Ok(Some(failures(5, 60))));
        // But another attempt counted the sixth failure first: this one is the seventh.
        throttle
            .expect_record_failure()
            .times(1)
            .returning(counted_as(7));
        mocks.throttle = Some(throttle);
        mocks.hasher.expect_verify().never();
        let err = mocks
            .service()
            .login(command("user1@example.com", "a guess"))
            .await
            .unwrap_err();
        let LoginError::Throttled(throttled) = err else {
            panic!("expected a throttled login, got {err:?}")
        };
        // A moment: by then the winner has cleared the count or set the next wait.
        assert_eq!(throttled.retry_after_secs(), 1);
    }

    #[tokio::test]
    async fn a_network_the_account_logged_in_from_lately_is_not_held_by_the_accounts_block() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
        let mut throttle = MockThrottleStore::new();
        // Sixty failures from elsewhere, the last 3 s ago; none from here.
        throttle
            .expect_failures()
            .returning(|key, _| Ok((!key.as_str().ends_with(":unknown")).then(|| failures(60, 3))));
        throttle
            .expect_remembers()
            .withf(|key, _| key.as_str().starts_with("known:"))
            .returning(|_, _| Ok(true));
        // Still counted for the account, which is past its free failures: no race check holds
        // the owner's network back either.
        throttle
            .expect_record_failure()
            .times(2)
            .returning(|key, at, _| {
                let count = if key.as_str().ends_with(":unknown") {
                    1
                } else {
                    63
                };
                Ok(FailureRecord {
                    count,
                    last_failure_at: at,
                })
            });
        throttle
            .expect_clear_failures()
            .times(2)
            .returning(|_| Ok(()));
        throttle
            .expect_remember()
            .times(1)
            .returning(|_, _, _| Ok(()));
        mocks.throttle = Some(throttle);
        expect_session(&mut mocks);
        assert!(mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn an_attempt_is_counted_even_when_checking_its_password_fails() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks
            .hasher
            .expect_verify()
            .returning(|_, _| Err(HashingError::Overloaded));
        let mut throttle = MockThrottleStore::new();
        throttle.expect_failures().returning(|_, _| Ok(None));
        throttle
            .expect_record_failure()
            .times(2)
            .returning(counted_as(1));
        throttle.expect_clear_failures().never();
        mocks.throttle = Some(throttle);
        let err = mocks
            .service()
            .login(command("user1@example.com", "ｗrong but wide"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::Hashing(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_store_failure_while_forgiving_does_not_fail_a_right_password() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        mocks.hasher.expect_verify().returning(|_, _| Ok(true));
        mocks.hasher.expect_needs_rehash().return_const(false);
        let mut throttle = MockThrottleStore::new();
        throttle.expect_failures().returning(|_, _| Ok(None));
        throttle.expect_record_failure().returning(counted_as(1));
        throttle
            .expect_clear_failures()
            .returning(|_| Err(StoreError("down".into())));
        throttle
            .expect_remember()
            .returning(|_, _, _| Err(StoreError("down".into())));
        mocks.throttle = Some(throttle);
        expect_session(&mut mocks);
        assert!(mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_known_network_is_still_held_by_its_own_backoff() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        // The owner's network (say, a shared office address) failed 8 times, the last 3 s ago:
        // 5 s of its 8 s wait remain, whatever the account says.
        let wait = wait_before_any_hash(
            mocks,
            failures(8, 3),
            failures(60, 1),
            true,
            "right password",
        )
        .await;
        assert_eq!(wait, 5);
    }

    #[tokio::test]
    async fn a_store_failing_between_the_two_counts_fails_the_login_before_any_hash() {
        let mut mocks = Mocks::new();
        finds_user1(&mut mocks);
        let mut throttle = MockThrottleStore::new();
        throttle.expect_failures().returning(|_, _| Ok(None));
        throttle.expect_record_failure().returning(|key, at, _| {
            if key.as_str().ends_with(":unknown") {
                Ok(FailureRecord {
                    count: 1,
                    last_failure_at: at,
                })
            } else {
                Err(StoreError("connection reset".into()))
            }
        });
        mocks.throttle = Some(throttle);
        mocks.hasher.expect_verify().never();
        let err = mocks
            .service()
            .login(command("user1@example.com", "right password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::Store(_)), "{err:?}");
    }
}
