//! Shutdown on SIGTERM or SIGINT.

use tokio::signal::unix::{Signal, SignalKind};

/// SIGTERM and SIGINT handlers. Install them before announcing readiness: a signal
/// that arrives before the handlers exist would kill the process outright.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers now (needs a tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: tokio::signal::unix::signal(SignalKind::terminate())?,
            int: tokio::signal::unix::signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}
