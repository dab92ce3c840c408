//! The HTTP edge: poem-openapi operations, the bearer security scheme, and the single place
//! where use-case errors become HTTP responses.

mod api;
mod body_limit;
mod error;
mod security;
mod views;

pub use api::{openapi_json, routes, HttpSettings};
pub use error::{ApiError, ErrorBody};
pub use security::BearerAuth;
