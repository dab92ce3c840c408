use crate::{tokens::IssueError, AuthService, TokenPair};
use latchkey_domain::{
    ports::{StoreError, TokenSigningError},
    RefreshTokenSecret,
};

#[derive(Debug)]
pub struct RefreshCommand {
    pub refresh_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, revoked, or just rotated (within the grace window).
    #[error("refresh token is invalid or expired")]
    InvalidToken,
    /// A rotated token came back after the grace window: assume theft, end the session.
    #[error("refresh token was already used; the session has been revoked")]
    ReuseDetected,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] TokenSigningError),
}

impl From<IssueError> for RefreshError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Store(e) => Self::Store(e),
            IssueError::Signing(e) => Self::Signing(e),
        }
    }
}

impl AuthService {
    /// Exchanges a refresh token for a new pair in the same family (rotation).
    pub async fn refresh(&self, command: RefreshCommand) -> Result<TokenPair, RefreshError> {
        let presented = RefreshTokenSecret::from_presented(command.refresh_token);
        let hash = presented.hash();
        let Some(record) = self.ports.refresh_tokens.find_by_hash(&hash).await? else {
            return Err(RefreshError::InvalidToken);
        };
        let now = self.ports.clock.now();
        if record.revoked_at.is_some() || record.is_expired_at(now) {
            return Err(RefreshError::InvalidToken);
        }
        if let Some(rotated_at) = record.rotated_at {
            if now - rotated_at < self.policy.reuse_grace {
                return Err(RefreshError::InvalidToken);
            }
            let revoked = self
                .ports
                .refresh_tokens
                .revoke_family(record.family_id, now)
                .await?;
            tracing::warn!(
                user_id = %record.user_id,
                session = %record.family_id,
                revoked,
                "rotated refresh token reused; session revoked"
            );
            return Err(RefreshError::ReuseDetected);
        }
        // Only the caller that wins this compare-and-swap may mint the successor; a loser raced
        // a concurrent refresh of the same token a moment ago, which is what the grace covers.
        if !self.ports.refresh_tokens.mark_rotated(&hash, now).await? {
            return Err(RefreshError::InvalidToken);
        }
        let Some(user) = self.ports.users.find_by_id(record.user_id).await? else {
            self.ports
                .refresh_tokens
                .revoke_family(record.family_id, now)
                .await?;
            return Err(RefreshError::InvalidToken);
        };
        Ok(self.issue_tokens(&user, record.family_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use chrono::Duration;
    use latchkey_domain::FamilyId;

    fn presented() -> RefreshTokenSecret {
        RefreshTokenSecret::from_presented("presented-token".into())
    }

    fn command() -> RefreshCommand {
        RefreshCommand {
            refresh_token: "presented-token".into(),
        }
    }

    #[tokio::test]
    async fn refresh_rotates_an_active_token_and_issues_a_pair_in_the_same_family() {
        let mut mocks = Mocks::new();
        let owner = user(1);
        let record = active_record(&presented(), &owner, 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .withf(|h| *h == presented().hash())
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .withf(|h, at| *h == presented().hash() && *at == t0())
            .times(1)
            .returning(|_, _| Ok(true));
        mocks
            .users
            .expect_find_by_id()
            .returning(move |_| Ok(Some(owner.clone())));
        mocks.random.expect_secret_bytes().return_const([3u8; 32]);
        mocks.random.expect_uuid().return_const(fixed_uuid(50));
        mocks
            .refresh_tokens
            .expect_insert()
            .withf(|r| r.family_id == FamilyId::from_uuid(fixed_uuid(7)))
            .times(1)
            .returning(|_| Ok(()));
        mocks
            .access_tokens
            .expect_encode()
            .withf(|c| c.session == FamilyId::from_uuid(fixed_uuid(7)))
            .returning(|_| Ok("new.jwt".into()));
        mocks.refresh_tokens.expect_revoke_family().never();

        let pair = mocks.service().refresh(command()).await.unwrap();

        assert_eq!(pair.access_token, "new.jwt");
        assert_ne!(pair.refresh_token.hash(), presented().hash());
    }

    #[tokio::test]
    async fn refresh_with_an_unknown_token_is_invalid() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Ok(None));
        mocks.refresh_tokens.expect_mark_rotated().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn refresh_with_an_expired_token_is_invalid() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.expires_at = t0() - Duration::seconds(1);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks.refresh_tokens.expect_mark_rotated().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn refresh_with_a_revoked_token_is_invalid_and_revokes_nothing_more() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.revoked_at = Some(t0() - Duration::minutes(1));
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks.refresh_tokens.expect_revoke_family().never();
        mocks.refresh_tokens.expect_mark_rotated().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn reuse_of_a_rotated_token_after_the_grace_window_revokes_its_family() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.rotated_at = Some(t0() - Duration::seconds(10));
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .refresh_tokens
            .expect_revoke_family()
            .withf(|f, at| *f == FamilyId::from_uuid(fixed_uuid(7)) && *at == t0())
            .times(1)
            .returning(|_, _| Ok(2));
        mocks.refresh_tokens.expect_mark_rotated().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::ReuseDetected));
    }

    #[tokio::test]
    async fn reuse_within_the_grace_window_fails_without_revoking_the_family() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.rotated_at = Some(t0() - Duration::seconds(9));
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks.refresh_tokens.expect_revoke_family().never();
        mocks.refresh_tokens.expect_mark_rotated().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn losing_the_rotation_race_fails_without_issuing_tokens() {
        let mut mocks = Mocks::new();
        let record = active_record(&presented(), &user(1), 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .returning(|_, _| Ok(false));
        mocks.refresh_tokens.expect_insert().never();
        mocks.access_tokens.expect_encode().never();
        mocks.refresh_tokens.expect_revoke_family().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn refresh_for_a_deleted_user_revokes_the_family() {
        let mut mocks = Mocks::new();
        let record = active_record(&presented(), &user(1), 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .returning(|_, _| Ok(true));
        mocks.users.expect_find_by_id().returning(|_| Ok(None));
        mocks
            .refresh_tokens
            .expect_revoke_family()
            .times(1)
            .returning(|_, _| Ok(1));
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn refresh_passes_store_outages_through() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Err(StoreError("timeout".into())));
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::Store(_)));
    }
}
