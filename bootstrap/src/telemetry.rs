//! Where the service's logs go. `main` and the test harness set the subscriber up here, so
//! they log alike.

use crate::LogFormat;
use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// Logs as the filter in `RUST_LOG` says (`default_filter` when unset or invalid), to `sink`,
/// as text or as one JSON object per line. Only the first call in a process takes effect.
pub fn init<W>(default_filter: &str, format: LogFormat, sink: W)
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env(crate::config::LOG_FILTER_VARIABLE)
        .unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // Every enclosing span on each line (the outermost, `request`, holds the request id),
        // the event's own fields at the top level for log collectors.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}
