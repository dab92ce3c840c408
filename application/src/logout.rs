use crate::AuthService;
use latchkey_domain::{ports::StoreError, FamilyId, RefreshTokenSecret, UserId};

#[derive(Debug)]
pub struct LogoutCommand {
    /// From the verified access token.
    pub caller: UserId,
    /// The session the access token belongs to.
    pub session: FamilyId,
    pub refresh_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthService {
    /// Ends a session: revokes the access token's session and, if it is the caller's, the
    /// family of the presented refresh token. Idempotent, and silent about tokens of others, so
    /// a logout never tells anything about someone else's session.
    pub async fn logout(&self, command: LogoutCommand) -> Result<(), LogoutError> {
        let now = self.ports.clock.now();
        let hash = RefreshTokenSecret::from_presented(command.refresh_token).hash();
        if let Some(record) = self.ports.refresh_tokens.find_by_hash(&hash).await? {
            if record.user_id == command.caller && record.family_id != command.session {
                self.ports
                    .refresh_tokens
                    .revoke_family(record.family_id, now)
                    .await?;
            }
        }
        self.ports
            .refresh_tokens
            .revoke_family(command.session, now)
            .await?;
        tracing::info!(user_id = %command.caller, session = %command.session, "user logged out");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    fn command(refresh_token: &str, session: u8) -> LogoutCommand {
        LogoutCommand {
            caller: user(1).id,
            session: FamilyId::from_uuid(fixed_uuid(session)),
            refresh_token: refresh_token.into(),
        }
    }

    #[tokio::test]
    async fn logout_revokes_the_session_family_once_when_both_tokens_agree() {
        let mut mocks = Mocks::new();
        let secret = RefreshTokenSecret::from_presented("mine".into());
        let record = active_record(&secret, &user(1), 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .refresh_tokens
            .expect_revoke_family()
            .withf(|f, at| *f == FamilyId::from_uuid(fixed_uuid(7)) && *at == t0())
            .times(1)
            .returning(|_, _| Ok(1));
        mocks.service().logout(command("mine", 7)).await.unwrap();
    }

    #[tokio::test]
    async fn logout_never_revokes_another_users_family() {
        let mut mocks = Mocks::new();
        let secret = RefreshTokenSecret::from_presented("theirs".into());
        let record = active_record(&secret, &user(2), 9);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .refresh_tokens
            .expect_revoke_family()
            .withf(|f, _| *f == FamilyId::from_uuid(fixed_uuid(7)))
            .times(1)
            .returning(|_, _| Ok(1));
        mocks.service().logout(command("theirs", 7)).await.unwrap();
    }

    #[tokio::test]
    async fn logout_with_an_unknown_refresh_token_still_ends_the_callers_session() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Ok(None));
        mocks
            .refresh_tokens
            .expect_revoke_family()
            .withf(|f, _| *f == FamilyId::from_uuid(fixed_uuid(7)))
            .times(1)
            .returning(|_, _| Ok(0));
        mocks.service().logout(command("unknown", 7)).await.unwrap();
    }

    #[tokio::test]
    async fn logout_reports_store_outages() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Err(StoreError("down".into())));
        let err = mocks.service().logout(command("x", 7)).await.unwrap_err();
        assert!(matches!(err, LogoutError::Store(_)));
    }
}
