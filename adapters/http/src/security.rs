use crate::ApiError;
use latchkey_application::AuthService;
use latchkey_domain::AccessClaims;
use poem::Request;
use poem_openapi::{auth::Bearer, SecurityScheme};

/// The `access_token` from `/auth/login` or `/auth/refresh`, sent as
/// `Authorization: Bearer <access_token>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "verify_access_token"
)]
pub struct BearerAuth(pub AccessClaims);

/// The bearer token when one is sent and valid, else nobody: for operations that anyone may
/// call but that act differently for the account's own session.
#[derive(SecurityScheme)]
pub enum MaybeBearerAuth {
    Bearer(BearerAuth),
    #[oai(fallback)]
    Anonymous,
}

impl MaybeBearerAuth {
    pub fn claims(self) -> Option<AccessClaims> {
        match self {
            Self::Bearer(BearerAuth(claims)) => Some(claims),
            Self::Anonymous => None,
        }
    }
}

async fn verify_access_token(req: &Request, bearer: Bearer) -> poem::Result<AccessClaims> {
    let service = req.data::<AuthService>().ok_or_else(|| {
        poem::Error::from_string(
            "AuthService missing from request data",
            poem::http::StatusCode::INTERNAL_SERVER_ERROR,
        )
    })?;
    let claims = service
        .authenticate(&bearer.token)
        .await
        .map_err(ApiError::from)?;
    crate::observe::note_user(claims.subject);
    Ok(claims)
}
