//! Logging: JSON lines in production, readable lines in development. Secrets never reach a log:
//! credential types redact themselves in `Debug`, and handlers log ids, never tokens.

use tracing_subscriber::{fmt, EnvFilter};

type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Swaps the installed subscriber's filter (SIGHUP re-reads `log`).
static SET_FILTER: std::sync::OnceLock<SetFilter> = std::sync::OnceLock::new();

/// Installs the global subscriber once. `filter` is a tracing directive such as `info`.
pub fn init(format: &str, filter: &str) {
    let filter = parse_filter(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Filter reloading goes last: the builder's formatter cannot change after it. (A macro:
    // the two builders are different types, and `try_init` is an inherent method.)
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder.with_env_filter(filter).with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = SET_FILTER.set(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                }));
            }
        }};
    }
    if format == "json" {
        install!(fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_target(true));
    } else {
        install!(fmt().compact().with_target(true));
    }
}

/// Replaces the log filter of the subscriber `init` installed. A directive that does not parse
/// changes nothing and says why.
pub fn set_filter(filter: &str) -> Result<(), String> {
    let parsed = parse_filter(filter)?;
    let set = SET_FILTER
        .get()
        .ok_or("no subscriber of Tessera's own is installed")?;
    set(parsed)
}

/// The process-wide Prometheus recorder (installed once; every node in the process shares it).
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        // Request latency as a real histogram (Prometheus buckets, from 0.5 ms to 5 s), so
        // dashboards can aggregate it across nodes; the exporter would otherwise write a summary.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    "tessera_http_request_duration_seconds".into(),
                ),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("fixed, non-empty buckets")
            // Redis answers in tens of microseconds on a LAN; a slow one is the first
            // suspect at 3 a.m., so its buckets start lower.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    "tessera_redis_command_duration_seconds".into(),
                ),
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
                ],
            )
            .expect("fixed, non-empty buckets")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    "tessera_revocation_feed_lag_seconds".into(),
                ),
                &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
            )
            .expect("fixed, non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding app's): then ours stays
        // local and `/metrics` shows only what this handle saw.
        if metrics::set_global_recorder(recorder).is_ok() {
            crate::meters::describe();
        }
        handle
    })
}

/// The longest `log` directive accepted: far more than any real filter, and it bounds the work.
pub const MAX_FILTER_LEN: usize = 4096;

/// Parses a `log` directive with field values matched literally, never as regular expressions:
/// a field regex is compiled into an automaton whose size can explode (a 60-character pattern
/// took gigabytes and aborted a node on SIGHUP), and Tessera's own fields need no regex.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, String> {
    if filter.len() > MAX_FILTER_LEN {
        return Err(format!(
            "log: {} characters, at most {MAX_FILTER_LEN}",
            filter.len()
        ));
    }
    EnvFilter::builder()
        .with_regex(false)
        .parse(filter)
        .map_err(|e| format!("log = '{filter}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_are_literal_and_long_filters_are_refused() {
        // With regex matching this took gigabytes and aborted the process (the attack on
        // issue 13); literal matching parses it at once.
        let pattern = "[ab]*a".to_owned() + &"[ab]".repeat(22);
        let filter = format!("info,[request{{request_id=~\"{pattern}\"}}]=debug");
        assert!(parse_filter(&filter).is_ok());
        assert!(parse_filter(&"info,".repeat(1000)).is_err());
        assert!(parse_filter("info,tessera=debug").is_ok());
    }
}
