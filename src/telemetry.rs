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
