use crate::AuthService;
use latchkey_domain::{AccessClaims, TokenRejection};

/// An access token that cannot be trusted; always a 401 for the client.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AuthenticateError(#[from] pub TokenRejection);

impl AuthService {
    /// Verifies an access token presented as a bearer credential.
    pub fn authenticate(&self, access_token: &str) -> Result<AccessClaims, AuthenticateError> {
        let now = self.ports.clock.now();
        Ok(self.ports.access_tokens.decode(access_token, now)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn authenticate_checks_the_token_against_the_clocks_time() {
        let mut mocks = Mocks::new();
        mocks
            .access_tokens
            .expect_decode()
            .withf(|token, now| token == "expired.jwt" && *now == t0())
            .returning(|_, _| Err(TokenRejection::Expired));
        let err = mocks.service().authenticate("expired.jwt").unwrap_err();
        assert_eq!(err.0, TokenRejection::Expired);
    }
}
