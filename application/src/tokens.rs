use crate::AuthService;
use latchkey_domain::{
    ports::{StoreError, TokenSigningError},
    AccessClaims, RefreshTokenRecord, RefreshTokenSecret, SessionRecord, User,
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
    /// Stores `refresh_token` in `session` and signs an access token for it. Neither outlives
    /// the session's absolute end.
    ///
    /// The refresh token is stored before anyone learns its value, so a failure at any later
    /// point leaves at most an unusable record behind (its secret was never revealed).
    pub(crate) async fn issue_tokens(
        &self,
        user: &User,
        session: &SessionRecord,
        refresh_token: RefreshTokenSecret,
    ) -> Result<TokenPair, IssueError> {
        let now = self.ports.clock.now();
        let refresh_expires_at = (now + self.policy.refresh_token_ttl).min(session.expires_at);
        let access_expires_at = (now + self.policy.access_token_ttl).min(session.expires_at);
        let record = RefreshTokenRecord {
            token_hash: refresh_token.hash(),
            user_id: user.id,
            family_id: session.id,
            issued_at: now,
            expires_at: refresh_expires_at,
            rotated_at: None,
        };
        self.ports.refresh_tokens.insert(&record).await?;
        let claims = AccessClaims {
            subject: user.id,
            roles: user.roles.clone(),
            session: session.id,
            token_id: self.ports.random.uuid(),
            issued_at: now,
            expires_at: access_expires_at,
        };
        let access_token = self.ports.access_tokens.encode(&claims)?;
        Ok(TokenPair {
            access_token,
            access_expires_in_secs: (access_expires_at - now).num_seconds(),
            refresh_token,
            refresh_expires_in_secs: (refresh_expires_at - now).num_seconds(),
        })
    }
}
