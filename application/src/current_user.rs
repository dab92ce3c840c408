use crate::AuthService;
use latchkey_domain::{ports::StoreError, User, UserId};

#[derive(Debug, thiserror::Error)]
pub enum CurrentUserError {
    /// The token is valid but its account is gone.
    #[error("the account for this token no longer exists")]
    AccountGone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthService {
    #[tracing::instrument(name = "current_user", skip_all, fields(user_id = %id))]
    pub async fn current_user(&self, id: UserId) -> Result<User, CurrentUserError> {
        self.ports
            .users
            .find_by_id(id)
            .await?
            .ok_or(CurrentUserError::AccountGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[tokio::test]
    async fn current_user_is_loaded_by_id() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_find_by_id()
            .withf(|id| *id == user(1).id)
            .returning(|_| Ok(Some(user(1))));
        let found = mocks.service().current_user(user(1).id).await.unwrap();
        assert_eq!(found.email.as_str(), "user1@example.com");
    }

    #[tokio::test]
    async fn current_user_of_a_deleted_account_is_reported_as_gone() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_id().returning(|_| Ok(None));
        let err = mocks.service().current_user(user(1).id).await.unwrap_err();
        assert!(matches!(err, CurrentUserError::AccountGone));
    }
}
