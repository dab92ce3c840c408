//! The Prometheus endpoint: the process-wide recorder every adapter records into, plus the
//! hashing pool's figures, read when scraped.

use latchkey_crypto::Argon2Hasher;
use latchkey_http::{Readiness, ReadinessState};
use metrics_exporter_prometheus::PrometheusHandle;
use poem::{endpoint::BoxEndpoint, EndpointExt, Response};
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

/// Histograms keep their samples until drained; drained this often even when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder, installed on first use. `None` when another recorder was installed first
/// (a program embedding latchkey with its own).
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match latchkey_telemetry::install_prometheus() {
            Ok(handle) => {
                let upkeep = handle.clone();
                // A thread, not a task: it outlives any one runtime (tests start many).
                let spawned = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    });
                if let Err(error) = spawned {
                    tracing::warn!(%error, "metrics upkeep thread not started");
                }
                Some(handle)
            }
            Err(error) => {
                tracing::warn!(%error, "metrics are off");
                None
            }
        })
        .clone()
}

/// `GET` answers the Prometheus text format (version 0.0.4).
pub(crate) fn endpoint(
    hasher: Arc<Argon2Hasher>,
    readiness: Readiness,
) -> Option<BoxEndpoint<'static, Response>> {
    let handle = prometheus()?;
    let endpoint = poem::endpoint::make_sync(move |_| {
        let ready = readiness.state() == ReadinessState::Ready;
        metrics::gauge!("latchkey_ready").set(if ready { 1.0 } else { 0.0 });
        let pool = hasher.stats();
        metrics::gauge!("latchkey_hash_workers_busy").set(pool.busy as f64);
        metrics::gauge!("latchkey_hash_queue_length").set(pool.queued as f64);
        metrics::counter!("latchkey_hash_rejections_total").absolute(pool.rejected);
        metrics::counter!("latchkey_hashes_total").absolute(pool.completed);
        Response::builder()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(handle.render())
    });
    Some(endpoint.boxed())
}
