use crate::AuthService;
use latchkey_domain::{ports::StoreError, AccessClaims, TokenRejection};

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// The token itself cannot be trusted (signature, type, expiry, claims).
    #[error(transparent)]
    Token(#[from] TokenRejection),
    /// The token is genuine but its session has ended (logout, revocation, absolute lifetime).
    #[error("the session of this access token has ended")]
    SessionEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthService {
    /// Verifies an access token presented as a bearer credential, including that its session
    /// is still live: one lookup by the session's primary key, so revocation reaches access
    /// tokens on the very next request, on every instance sharing the store.
    // Every bearer request comes through here: the span carries no token and no fields.
    #[tracing::instrument(name = "authenticate", skip_all, level = "debug")]
    pub async fn authenticate(
        &self,
        access_token: &str,
    ) -> Result<AccessClaims, AuthenticateError> {
        let now = self.ports.clock.now();
        let claims = self.ports.access_tokens.decode(access_token, now)?;
        match self.ports.sessions.find(claims.session).await? {
            Some(session) if session.user_id == claims.subject && session.is_active_at(now) => {
                Ok(claims)
            }
            _ => Err(AuthenticateError::SessionEnded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use latchkey_domain::SessionRecord;

    fn claims() -> AccessClaims {
        AccessClaims {
            subject: user(1).id,
            roles: user(1).roles,
            session: family(7),
            token_id: fixed_uuid(9),
            issued_at: t0(),
            expires_at: t0() + chrono::Duration::hours(1),
        }
    }

    async fn with_session(
        session: Option<SessionRecord>,
    ) -> Result<AccessClaims, AuthenticateError> {
        let mut mocks = Mocks::new();
        mocks
            .access_tokens
            .expect_decode()
            .withf(|token, now| token == "valid.jwt" && *now == t0())
            .returning(|_, _| Ok(claims()));
        mocks
            .sessions
            .expect_find()
            .withf(|id| *id == family(7))
            .times(1)
            .returning(move |_| Ok(session.clone()));
        mocks.service().authenticate("valid.jwt").await
    }

    #[tokio::test]
    async fn a_valid_token_of_a_live_session_is_accepted() {
        assert_eq!(
            with_session(Some(active_session(&user(1), 7)))
                .await
                .unwrap(),
            claims()
        );
    }

    #[tokio::test]
    async fn a_token_of_a_revoked_session_is_refused() {
        let mut session = active_session(&user(1), 7);
        session.revoked_at = Some(t0() - chrono::Duration::seconds(1));
        assert!(matches!(
            with_session(Some(session)).await,
            Err(AuthenticateError::SessionEnded)
        ));
    }

    #[tokio::test]
    async fn a_token_past_its_sessions_absolute_end_is_refused() {
        let mut session = active_session(&user(1), 7);
        session.expires_at = t0();
        assert!(matches!(
            with_session(Some(session)).await,
            Err(AuthenticateError::SessionEnded)
        ));
    }

    #[tokio::test]
    async fn a_token_whose_session_is_unknown_or_someone_elses_is_refused() {
        assert!(matches!(
            with_session(None).await,
            Err(AuthenticateError::SessionEnded)
        ));
        assert!(matches!(
            with_session(Some(active_session(&user(2), 7))).await,
            Err(AuthenticateError::SessionEnded)
        ));
    }

    #[tokio::test]
    async fn authenticate_checks_the_token_against_the_clocks_time_before_any_lookup() {
        let mut mocks = Mocks::new();
        mocks
            .access_tokens
            .expect_decode()
            .withf(|token, now| token == "expired.jwt" && *now == t0())
            .returning(|_, _| Err(TokenRejection::Expired));
        mocks.sessions.expect_find().never();
        let err = mocks
            .service()
            .authenticate("expired.jwt")
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AuthenticateError::Token(TokenRejection::Expired)
        ));
    }
}
