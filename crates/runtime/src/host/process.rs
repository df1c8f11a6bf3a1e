//! A service run as its own process: its `main` (signals, the listener, exit codes)
//! and its `restore-from-topic` command.

use std::future::Future;

use dvk_bus::kafka::KafkaConfig;
use dvk_eventlog::EventLog;

use super::HostError;

/// The `main` of a service run as its own process: logs, signal handlers, the listener
/// on `listen` (`listen_var` names its setting), then `run` until SIGTERM or SIGINT.
/// Exit codes: 0 after a clean stop, 64 for bad settings (an address that cannot be
/// bound, missing or bad keys or certificates), 1 for any other failure.
pub async fn run_process<F>(
    listen: std::net::SocketAddr,
    listen_var: &str,
    run: impl FnOnce(tokio::net::TcpListener, BoxShutdown) -> F,
) -> std::process::ExitCode
where
    F: Future<Output = Result<(), HostError>>,
{
    use std::process::ExitCode;
    let bad_settings = ExitCode::from(crate::settings::EXIT_BAD_SETTINGS as u8);
    let signals = match crate::shutdown::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %listen, error = %e, "cannot listen ({listen_var})");
            return bad_settings;
        }
    };
    match run(listener, Box::pin(async move { signals.recv().await })).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (HostError::Auth(_) | HostError::Tls(_) | HostError::Settings(_))) => {
            tracing::error!("{e}");
            bad_settings
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The `restore-from-topic` command of a writer service: fills its log (an empty
/// directory, or one restored from a backup) from its own topic, then exits. The
/// service must be stopped. Exit codes: 0 when the log holds everything the topic has,
/// 64 without Kafka settings, 1 when the log cannot be opened, the topic cannot be
/// read, or the topic lacks events between the log's end and the topic's last one.
pub async fn restore_process<E: std::fmt::Display>(
    log: Result<EventLog, E>,
    kafka: Option<KafkaConfig>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let Some(kafka) = kafka else {
        tracing::error!("DVK_KAFKA_BOOTSTRAP_SERVERS is required: the restore reads the service's topic");
        return ExitCode::from(crate::settings::EXIT_BAD_SETTINGS as u8);
    };
    let log = match log {
        Ok(log) => log,
        Err(e) => {
            tracing::error!(
                "cannot open the log: {e}; move a damaged directory aside and restore into an empty one (DVK_DATA_DIR)"
            );
            return ExitCode::FAILURE;
        }
    };
    let restored = tokio::task::spawn_blocking(move || {
        let r = dvk_bus::restore::restore_from_topic(&kafka, &log);
        let closed = log.close();
        r.map_err(|e| e.to_string()).and_then(|r| closed.map(|()| r).map_err(|e| e.to_string()))
    })
    .await;
    match restored {
        Ok(Ok(r)) => {
            println!(
                "restored {} events from {}: the log now holds its own events 1..={} (it held {} before); \
                 {} messages read, {} already held or read twice, {} not valid events",
                r.to - r.from,
                r.topic,
                r.to,
                r.from,
                r.read,
                r.duplicates,
                r.malformed
            );
            if let Some(gap) = r.gap() {
                tracing::error!(
                    topic = r.topic,
                    "the topic lacks event {gap} but holds events up to {}: the log is restored up to {}; \
                     the rest needs a backup holding event {gap}",
                    r.topic_head,
                    r.to
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            tracing::error!("restore failed: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("restore failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A shutdown signal a service runs until.
pub type BoxShutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
