//! The registration service: the administrative trees (import, reorganisation) and
//! the mobilisation models, over gRPC, with its own sled event log as the source of
//! truth. `run` serves on a listener the caller bound until `shutdown` resolves.

#![forbid(unsafe_code)]

mod service;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use dvk_eventlog::{EventLog, LogConfig, LogError};
use dvk_proto::registration::v1::registration_service_server::RegistrationServiceServer;
use dvk_runtime::metrics::Metrics;
use dvk_runtime::settings::ServerSettings;
use dvk_runtime::{Authenticator, server};
use tokio::sync::{RwLock, watch};

pub use service::{Registration, today};
pub use state::{SOURCE, State};

/// The gRPC service name, as health checks ask for it.
pub const SERVICE_NAME: &str = "dvk.registration.v1.RegistrationService";

/// Settings of the registration service (flags or `DVK_*` variables).
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// gRPC listen address.
    #[arg(long, env = "DVK_REGISTRATION_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub server: ServerSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication settings: {0}")]
    Auth(#[from] dvk_runtime::auth::AuthError),
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Replays the log into fresh read models.
fn replay(log: &EventLog) -> Result<State, LogError> {
    let mut state = State::default();
    for record in log.read_all(1) {
        let record = record?;
        state.apply(record.position(), &record.envelope()?);
    }
    Ok(state)
}

/// Serves the registration service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run_notify(listener, settings, shutdown, || {}).await
}

/// Like `run`, and calls `ready` once the log is replayed and the service answers.
pub async fn run_notify(
    listener: tokio::net::TcpListener,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(),
) -> Result<(), Error> {
    let auth = Authenticator::from_settings(&settings.auth)?;
    let log = EventLog::open(LogConfig::new(&settings.data_dir, state::SOURCE))?;
    let metrics = Arc::new(Metrics::new(state::SOURCE));
    let (router, readiness) = server::router(SERVICE_NAME).await?;

    // Replay before answering: until then the health service says NOT_SERVING and
    // every RPC answers UNAVAILABLE.
    let started = std::time::Instant::now();
    let state = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || replay(&log)).await.expect("replay task")?
    };
    let head = state.position;
    metrics.replayed.inc_by(head);
    metrics.projected.set(head as i64);
    metrics.log_head.set(log.head() as i64);
    tracing::info!(events = head, elapsed = ?started.elapsed(), "registration log replayed");
    let state = Arc::new(RwLock::new(state));
    let (projected_tx, projected) = watch::channel(head);
    let (ready_tx, ready_rx) = watch::channel(true);

    let (stop_tx, stop) = watch::channel(false);
    let projector = tokio::spawn(project(log.clone(), state.clone(), projected_tx, metrics.clone(), stop.clone()));

    // The relay publishes the log to Kafka when a broker is configured (DVK_KAFKA_*).
    let kafka = dvk_bus::kafka::KafkaConfig::from_env();
    let relay = if kafka.settings.contains_key("bootstrap.servers") {
        let (cursor_tx, mut cursor) = watch::channel(0u64);
        let config = dvk_bus::kafka::RelayConfig::new(kafka, dvk_bus::kafka::topic_of(state::SOURCE));
        let task = tokio::spawn(dvk_bus::kafka::relay(log.clone(), config, cursor_tx, stop.clone()));
        let metrics2 = metrics.clone();
        let mut head = log.watch_head();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = cursor.changed() => if r.is_err() { break },
                    r = head.changed() => if r.is_err() { break },
                }
                let c = *cursor.borrow_and_update();
                let h = *head.borrow_and_update();
                metrics2.relay_lag.set(h.saturating_sub(c) as i64);
            }
        });
        Some(task)
    } else {
        None
    };

    let svc = Registration { log: log.clone(), state, projected, ready: ready_rx, auth, metrics: metrics.clone() };
    let grpc = RegistrationServiceServer::new(svc)
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);

    let metrics_server = match settings.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "metrics on /metrics");
            let mut stop = stop.clone();
            Some(tokio::spawn(dvk_runtime::metrics::serve(listener, metrics.clone(), async move {
                let _ = stop.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };

    readiness.serving().await;
    tracing::info!(addr = ?listener.local_addr().ok(), "registration serving");
    ready();
    let drain_timeout = settings.shutdown_timeout;
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let readiness2 = readiness.clone();
    let signal = async move {
        shutdown.await;
        readiness2.not_serving().await;
        let _ = drain_tx.send(());
    };
    let serve = server::serve(router.add_service(grpc), listener, signal);
    tokio::pin!(serve);
    let result = tokio::select! {
        r = &mut serve => r,
        () = async {
            let _ = drain_rx.await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!(timeout = ?drain_timeout, "in-flight requests did not finish in time; stopping");
            Ok(())
        }
    };
    drop(ready_tx);
    let _ = stop_tx.send(true);
    let _ = projector.await;
    if let Some(relay) = relay {
        match relay.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "relay stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "relay task failed"),
        }
    }
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    log.close()?;
    tracing::info!("registration stopped; log flushed");
    result.map_err(Error::from)
}

/// Follows the log and folds every new event into the read models, in order.
async fn project(
    log: EventLog,
    state: Arc<RwLock<State>>,
    projected: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let from = *projected.borrow() + 1;
    let mut sub = log.subscribe(from);
    loop {
        let first = tokio::select! {
            r = sub.next() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut batch = Vec::new();
        let mut next = first;
        loop {
            match next.and_then(|r| Ok((r.position(), r.envelope()?))) {
                Ok(item) => batch.push(item),
                Err(e) => {
                    tracing::error!(error = %e, "cannot follow the log; read models stop here");
                    return;
                }
            }
            if batch.len() >= 512 {
                break;
            }
            match sub.try_next() {
                Ok(Some(r)) => next = Ok(r),
                Ok(None) => break,
                Err(e) => next = Err(e),
            }
        }
        let last = batch.last().map_or(0, |(p, _)| *p);
        {
            let mut s = state.write().await;
            for (p, env) in &batch {
                s.apply(*p, env);
            }
        }
        metrics.projected.set(last as i64);
        metrics.log_head.set(log.head() as i64);
        projected.send_replace(last);
    }
}
