//! Logging: `tracing` with structured fields, filtered by `RUST_LOG` (default `info`).

/// Installs the global subscriber once; later calls are no-ops (tests start many services).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
