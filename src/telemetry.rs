//! Logging: JSON lines in production, readable lines in development. Secrets never reach a log:
//! credential types redact themselves in `Debug`, and handlers log ids, never tokens.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber once. `filter` is a tracing directive such as `info`.
pub fn init(format: &str, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// The process-wide Prometheus recorder (installed once; every node in the process shares it).
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding app's): then ours stays
        // local and `/metrics` shows only what this handle saw.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
