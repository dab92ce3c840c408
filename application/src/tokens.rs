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
    /// The refresh token was stored before and has been exchanged since: handing it out again
    /// would give the client a token that is already spent.
    #[error("this refresh token has already been exchanged")]
    AlreadyExchanged,
}

impl IssueError {
    /// The one conversion into a use case's error; only what an already exchanged token means
    /// differs between use cases.
    pub(crate) fn into_error<E>(self, already_exchanged: impl FnOnce() -> E) -> E
    where
        E: From<StoreError> + From<TokenSigningError>,
    {
        match self {
            Self::Store(e) => e.into(),
            Self::Signing(e) => e.into(),
            Self::AlreadyExchanged => already_exchanged(),
        }
    }
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
            rotated_by: None,
        };
        // A retry or a racing tab stores the same (derived) successor again: what counts is
        // the record stored first, including how long it lives.
        let refresh_expires_at = match self.ports.refresh_tokens.insert(&record).await? {
            None => refresh_expires_at,
            Some(existing) if existing.rotated_at.is_none() && existing.family_id == session.id => {
                existing.expires_at
            }
            Some(_) => return Err(IssueError::AlreadyExchanged),
        };
        let claims = AccessClaims {
            subject: user.id,
            // `admin` needs a verified address: until then the role is the store's, not the
            // token's, so no service reading the token takes a squatter for an administrator.
            roles: user
                .roles
                .iter()
                .filter(|role| !role.is_admin() || user.email_verified_at.is_some())
                .cloned()
                .collect(),
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
