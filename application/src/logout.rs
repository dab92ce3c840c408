use crate::AuthService;
use latchkey_domain::{ports::StoreError, AuthEvent, RefreshTokenSecret, SessionEndCause};

#[derive(Debug)]
pub struct LogoutCommand {
    /// Any refresh token of the session, rotated or not: it is the credential (RFC 7009), so
    /// logging out works without a bearer token and after the access token expired.
    pub refresh_token: String,
}

impl AuthService {
    /// Ends the session the refresh token belongs to: its refresh tokens and its access tokens
    /// stop working at once. Idempotent, and silent about unknown tokens (RFC 7009 §2.2), so a
    /// logout never tells anything about a token it did not recognise.
    #[tracing::instrument(name = "logout", skip_all, fields(session = tracing::field::Empty))]
    pub async fn logout(&self, command: LogoutCommand) -> Result<(), StoreError> {
        let hash = RefreshTokenSecret::from_presented(command.refresh_token).hash();
        let Some(record) = self.ports.refresh_tokens.find_by_hash(&hash).await? else {
            return Ok(());
        };
        tracing::Span::current().record("session", tracing::field::display(record.family_id));
        let now = self.ports.clock.now();
        if self.ports.sessions.revoke(record.family_id, now).await? {
            self.record(AuthEvent::SessionsEnded {
                user: record.user_id,
                session: Some(record.family_id),
                cause: SessionEndCause::Logout,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    fn command(refresh_token: &str) -> LogoutCommand {
        LogoutCommand {
            refresh_token: refresh_token.into(),
        }
    }

    #[tokio::test]
    async fn logout_revokes_the_session_the_refresh_token_belongs_to() {
        let mut mocks = Mocks::new();
        let secret = RefreshTokenSecret::from_presented("mine".into());
        let record = active_record(&secret, &user(1), 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .withf(move |h| *h == secret.hash())
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .sessions
            .expect_revoke()
            .withf(|f, at| *f == family(7) && *at == t0())
            .times(1)
            .returning(|_, _| Ok(true));
        mocks.service().logout(command("mine")).await.unwrap();
    }

    #[tokio::test]
    async fn logout_of_an_already_ended_session_succeeds() {
        let mut mocks = Mocks::new();
        let secret = RefreshTokenSecret::from_presented("mine".into());
        let record = active_record(&secret, &user(1), 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .sessions
            .expect_revoke()
            .times(1)
            .returning(|_, _| Ok(false));
        mocks.service().logout(command("mine")).await.unwrap();
    }

    #[tokio::test]
    async fn logout_with_an_unknown_refresh_token_succeeds_and_revokes_nothing() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Ok(None));
        mocks.sessions.expect_revoke().never();
        mocks.service().logout(command("unknown")).await.unwrap();
    }

    #[tokio::test]
    async fn logout_reports_store_outages() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Err(StoreError("down".into())));
        let err = mocks.service().logout(command("x")).await.unwrap_err();
        assert_eq!(err.0, "down");
    }
}
