use crate::AuthService;
use latchkey_domain::{
    ports::{StoreError, TokenSigningError},
    AccessClaims, FamilyId, RefreshTokenRecord, RefreshTokenSecret, User,
};

/// What a client receives after login or refresh.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub access_expires_in_secs: i64,
    pub refresh_token: RefreshTokenSecret,
    pub refresh_expires_in_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] TokenSigningError),
}

impl AuthService {
    /// Stores a fresh refresh token in `family` and signs an access token for the same session.
    pub(crate) async fn issue_tokens(
        &self,
        user: &User,
        family: FamilyId,
    ) -> Result<TokenPair, IssueError> {
        let now = self.ports.clock.now();
        let refresh_token = RefreshTokenSecret::from_random_bytes(self.ports.random.secret_bytes());
        let record = RefreshTokenRecord {
            token_hash: refresh_token.hash(),
            user_id: user.id,
            family_id: family,
            issued_at: now,
            expires_at: now + self.policy.refresh_token_ttl,
            rotated_at: None,
            revoked_at: None,
        };
        self.ports.refresh_tokens.insert(&record).await?;
        let claims = AccessClaims {
            subject: user.id,
            roles: user.roles.clone(),
            session: family,
            token_id: self.ports.random.uuid(),
            issued_at: now,
            expires_at: now + self.policy.access_token_ttl,
        };
        let access_token = self.ports.access_tokens.encode(&claims)?;
        Ok(TokenPair {
            access_token,
            access_expires_in_secs: self.policy.access_token_ttl.num_seconds(),
            refresh_token,
            refresh_expires_in_secs: self.policy.refresh_token_ttl.num_seconds(),
        })
    }
}
