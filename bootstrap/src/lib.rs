//! The composition root: reads configuration, picks the adapters, and builds the server.
//! The only crate that knows every concrete type.

pub mod cli;
pub mod config;
mod metrics;
mod server;
pub mod telemetry;
mod wiring;

pub use config::{AppEnv, Config, ConfigError, LogFormat, MetricsSettings, StoreConfig};
pub use latchkey_http::openapi_json;
pub use server::{serve, ServeSettings};
pub use wiring::{assemble, build, App, Stores};
