//! The HTTP edge: poem-openapi operations, the bearer security scheme, and the single place
//! where use-case errors become HTTP responses.

mod admin;
mod api;
mod body_limit;
mod client;
mod contract;
mod cors;
mod edge;
mod error;
mod observe;
mod readiness;
mod security;
mod site;
mod views;

pub(crate) use api::ApiTags;
pub use api::{openapi_json, routes, HttpSettings, Mounts, JWKS_PATH, METRICS_PATH};
pub use client::ForwardedHeader;
pub use cors::{AllowedOrigins, CorsSettings};
pub use edge::{harden, EdgeSettings, LoopReplies, API_CONTENT_SECURITY_POLICY};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use readiness::{Readiness, ReadinessState};
pub use security::BearerAuth;
pub use site::{site_endpoint, SiteSettings};
