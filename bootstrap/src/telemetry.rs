//! Where the service's logs go. `main` and the test harness set the subscriber up here, so
//! they log alike.

use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// Logs as the filter in `RUST_LOG` says (`default_filter` when unset or invalid), to `sink`.
/// Only the first call in a process takes effect.
pub fn init<W>(default_filter: &str, sink: W)
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env(crate::config::LOG_FILTER_VARIABLE)
        .unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .try_init();
}
