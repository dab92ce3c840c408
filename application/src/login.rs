use crate::{AuthService, TokenPair};
use latchkey_domain::{
    ports::{HashingError, StoreError, TokenSigningError},
    EmailError, EmailKey, FamilyId, Password, PasswordError, RefreshTokenSecret, SessionRecord,
};

#[derive(Debug)]
pub struct LoginCommand {
    pub email: String,
    pub password: String,
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    Signing(#[from] TokenSigningError),
}

impl AuthService {
    /// Starts a new session (a new refresh-token family) for valid credentials.
    /// The span names the account once known; never the email or the password.
    #[tracing::instrument(name = "login", skip_all, fields(user_id = tracing::field::Empty))]
    pub async fn login(&self, command: LoginCommand) -> Result<TokenPair, LoginError> {
        let email = EmailKey::for_login(&command.email)?;
        let password = Password::for_login(command.password)?;
        let found = self.ports.users.find_by_email(&email).await?;
        if let Some(user) = &found {
            tracing::Span::current().record("user_id", tracing::field::display(user.id));
        }
        let Some(user) = found else {
            // Spend the same argon2 work as a real check so timing does not reveal the email.
            let _ = self
                .ports
                .hasher
                .verify(&password, &self.ports.hasher.dummy_hash())
                .await?;
            return Err(LoginError::InvalidCredentials);
        };
        if !self
            .ports
            .hasher
            .verify(&password, &user.password_hash)
            .await?
        {
            return Err(LoginError::InvalidCredentials);
        }
        let now = self.ports.clock.now();
        let session = SessionRecord {
            id: FamilyId::from_uuid(self.ports.random.uuid()),
            user_id: user.id,
            created_at: now,
            expires_at: now + self.policy.session_max_age,
            revoked_at: None,
        };
        self.ports.sessions.insert(&session).await?;
        let refresh_token = RefreshTokenSecret::from_random_bytes(self.ports.random.secret_bytes());
        let tokens = self
            .issue_tokens(&user, &session, refresh_token)
            .await
            // 256 random bits colliding with a stored token: not a case worth a variant.
            .map_err(|e| {
                e.into_error(|| {
                    LoginError::Store(StoreError(
                        "a new refresh token collided with a stored one".into(),
                    ))
                })
            })?;
        tracing::info!(user_id = %user.id, session = %session.id, "user logged in");
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use latchkey_domain::{PasswordHash, UserId};

    fn command(email: &str, password: &str) -> LoginCommand {
        LoginCommand {
            email: email.into(),
            password: password.into(),
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
        mocks.random.expect_secret_bytes().return_const([9u8; 32]);
        mocks.random.expect_uuid().return_const(fixed_uuid(42));
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

        let pair = mocks
            .service()
            .login(command("USER1@example.com", "right password"))
            .await
            .unwrap();

        assert_eq!(pair.access_token, "signed.jwt");
        assert_eq!(pair.access_expires_in_secs, 3600);
        assert_eq!(pair.refresh_expires_in_secs, 14 * 24 * 3600);
        assert_eq!(pair.refresh_token.hash(), expected_hash);
    }

    #[tokio::test]
    async fn login_with_a_wrong_password_is_invalid_credentials_and_issues_nothing() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_find_by_email()
            .returning(|_| Ok(Some(user(1))));
        mocks.hasher.expect_verify().returning(|_, _| Ok(false));
        mocks.sessions.expect_insert().never();
        mocks.refresh_tokens.expect_insert().never();
        mocks.access_tokens.expect_encode().never();
        let err = mocks
            .service()
            .login(command("user1@example.com", "wrong password"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidCredentials));
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
        mocks.random.expect_secret_bytes().return_const([9u8; 32]);
        mocks.random.expect_uuid().return_const(fixed_uuid(42));
        mocks.sessions.expect_insert().returning(|_| Ok(()));
        mocks.refresh_tokens.expect_insert().returning(|_| Ok(None));
        mocks
            .access_tokens
            .expect_encode()
            .returning(|_| Ok("jwt".into()));
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
}
