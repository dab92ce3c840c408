use crate::AuthService;
use latchkey_domain::ports::StoreError;

impl AuthService {
    /// Ready means the store answers; the rest of the service has no external dependency.
    #[tracing::instrument(name = "check_ready", skip_all, level = "debug")]
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        self.ports.users.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[tokio::test]
    async fn not_ready_while_the_store_does_not_answer() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_ping()
            .returning(|| Err(StoreError("no server".into())));
        assert!(mocks.service().check_ready().await.is_err());
    }
}
