//! The frame every command service runs in: replay the log into read models before
//! answering and follow it to keep them current (`fold`), the shared write path
//! (`write`: request ids, expected versions, answer once the read models include the
//! write), paging (`paging`), the relay to Kafka, optional ingestion of another
//! service's events, metrics, and a bounded, draining shutdown; and the `main` of a
//! service run as its own process (`process`).

mod fold;
mod paging;
mod process;
mod write;

pub use fold::{ReadModel, fold, replay, replay_onto};
pub use paging::page_size;
pub use process::{BoxShutdown, restore_process, run_process};
pub use write::{Core, Decision};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::server::ServiceRouter;
use dvk_bus::Ingestor;
use dvk_bus::kafka::{KafkaConfig, KafkaSource, RelayConfig};
use dvk_bus::local::LocalSource;
use dvk_eventlog::{EventLog, LogError};
use tokio::sync::{RwLock, watch};
use tokio::task::JoinHandle;

use crate::Authenticator;
use crate::guard::{Guard, GuardLayer};
use crate::metrics::Metrics;
use crate::policy::Rule;
use crate::server::{self, Readiness};
use crate::settings::ServerSettings;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("authentication settings: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{0}")]
    Tls(#[from] crate::server::TlsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A setting the service cannot use (it names the setting).
    #[error("{0}")]
    Settings(String),
}

/// Vietnam's civil date today (UTC+7, no daylight saving).
pub fn today() -> dvk_domain::Date {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    dvk_domain::Date::from_unix_days((secs + 7 * 3600).div_euclid(86_400))
        .expect("the clock is within the supported years")
}

/// How far each source this service follows has written, as far as the transport
/// tells: in one process, the source's own log; over Kafka, what this service has
/// received plus what its consumer has yet to read.
#[derive(Debug, Clone, Default)]
pub struct SourceHeads(Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, Head>>>);

#[derive(Debug, Clone)]
enum Head {
    Log(EventLog),
    Topic(dvk_bus::kafka::PartitionLag),
}

impl SourceHeads {
    fn set(&self, source: &'static str, head: Head) {
        self.0.lock().expect("heads lock").insert(source, head);
    }

    /// The newest position `source` has written, given the position up to which this
    /// service has received it (`None`: not followed, or not yet connected).
    pub fn head(&self, source: &str, received: u64) -> Option<u64> {
        let head = self.0.lock().expect("heads lock").get(source).cloned()?;
        match head {
            Head::Log(log) => log.own_sequence().ok(),
            Head::Topic(lag) => {
                let behind: i64 = lag.lock().expect("lag lock").values().map(|l| (*l).max(0)).sum();
                Some(received + behind as u64)
            }
        }
    }
}

/// Where a service receives another service's events from.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// The other service's log in this process (the embedded default).
    Local(EventLog),
    /// The other service's Kafka topic.
    Kafka(KafkaConfig),
}

/// A service being started: its read models are replayed and followed; it serves once
/// `serve` is called and stops, draining, when the shutdown future resolves.
pub struct Host<S> {
    core: Core<S>,
    heads: SourceHeads,
    auth: Authenticator,
    readiness: Readiness,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    settings: ServerSettings,
    name: &'static str,
}

impl<S> std::fmt::Debug for Host<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<S: ReadModel> Host<S> {
    /// Replays `log` (the service's own, opened by the caller), starts following it,
    /// and, given a Kafka configuration, starts the relay to `dvk.<source>.v1`.
    /// `service` is the gRPC service name health checks ask for. Returns the host and
    /// the router to add the service to.
    pub async fn start(
        service: &'static str,
        source: &'static str,
        log: EventLog,
        settings: &ServerSettings,
        relay: Option<KafkaConfig>,
    ) -> Result<(Self, ServiceRouter), HostError> {
        let auth = Authenticator::from_settings(&settings.auth)?;
        let metrics = Arc::new(Metrics::new(source));
        let tls = server::tls_config(&settings.tls)?;
        if tls.is_some() {
            tracing::info!(service = source, "serving TLS only");
        }
        let (router, readiness) = server::router(service, tls, settings.max_calls_per_caller).await?;

        // Replay before answering: until `serve`, the health service says NOT_SERVING.
        let started = Instant::now();
        let (state, head) = {
            let log = log.clone();
            tokio::task::spawn_blocking(move || S::restore(&log)).await.expect("replay task")?
        };
        metrics.replayed.inc_by(head);
        metrics.projected.set(head as i64);
        metrics.log_head.set(log.head() as i64);
        tracing::info!(service = source, events = head, elapsed = ?started.elapsed(), "log replayed");
        let state = Arc::new(RwLock::new(state));
        let (projected_tx, projected) = watch::channel(head);
        let (stop_tx, stop) = watch::channel(false);
        let core = Core { log: log.clone(), state: state.clone(), projected, metrics: metrics.clone(), source };
        let mut host = Self {
            core,
            heads: SourceHeads::default(),
            auth,
            readiness,
            stop_tx,
            tasks: Vec::new(),
            settings: settings.clone(),
            name: source,
        };
        host.tasks.push(tokio::spawn(fold::project(log.clone(), state, projected_tx, metrics.clone(), stop.clone())));

        if let Some(kafka) = relay {
            let (cursor_tx, mut cursor) = watch::channel(0u64);
            let config = RelayConfig::new(kafka, dvk_bus::kafka::topic_of(source));
            let memory = config.memory.clone();
            let relay = dvk_bus::kafka::relay(log.clone(), config, cursor_tx, stop.clone());
            host.tasks.push(tokio::spawn(async move {
                match relay.await {
                    Ok(()) => {}
                    Err(e) => tracing::error!(error = %e, "relay stopped with an error"),
                }
            }));
            let mut head = log.watch_head();
            let mut memory_tick = tokio::time::interval(Duration::from_millis(500));
            let mut stopped = stop.clone();
            host.tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = cursor.changed() => if r.is_err() { break },
                        r = head.changed() => if r.is_err() { break },
                        _ = memory_tick.tick() => {
                            let load = |a: &std::sync::atomic::AtomicU64| {
                                a.load(std::sync::atomic::Ordering::Relaxed).min(i64::MAX as u64) as i64
                            };
                            metrics.relay_in_flight_bytes.set(load(&memory.in_flight_bytes));
                            metrics.relay_producer_queue_bytes.set(load(&memory.producer_queue_bytes));
                            continue;
                        }
                        r = stopped.changed() => if r.is_err() || *stopped.borrow() { break },
                    }
                    let c = *cursor.borrow_and_update();
                    let h = *head.borrow_and_update();
                    metrics.relay_lag.set(h.saturating_sub(c) as i64);
                }
            }));
        }
        Ok((host, router))
    }

    /// Turns true when the service stops; tasks given to `spawn` should end then.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Runs `task` beside the service; it is awaited before the log is closed.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// What the RPC handlers share.
    pub fn core(&self) -> Core<S> {
        self.core.clone()
    }

    /// How far each followed source has written (see [`SourceHeads`]).
    pub fn source_heads(&self) -> SourceHeads {
        self.heads.clone()
    }

    /// `service` behind its guard: every call is looked up in `policy`, traced,
    /// counted in the metrics, authenticated and its role checked before a handler runs.
    pub fn guard<Svc>(&self, policy: &'static [Rule], service: Svc) -> Guard<Svc> {
        tower_layer::Layer::layer(&GuardLayer::new(policy, self.auth.clone(), self.core.metrics.clone()), service)
    }

    /// Appends `source`'s events (from its log in this process, or its topic) to this
    /// service's log, effectively once; the read models fold them like their own. A
    /// failure (the broker gone, say) is logged and retried every second from the
    /// progress stored in the log.
    pub fn follow(&mut self, source: &'static str, upstream: Upstream) {
        let log = self.core.log.clone();
        let heads = self.heads.clone();
        let mut stop = self.stop_tx.subscribe();
        let group = self.name;
        let metrics = self.core.metrics.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let result = receive(&log, source, group, &upstream, &metrics, &heads, stop.clone()).await;
                match result {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(source, error = %e, "receiving events failed; retrying in 1 s"),
                }
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }));
    }

    /// Serves `router` (with the service added) on `listener` until `shutdown`
    /// resolves; calls `ready` once it answers (see [`server::Ready`]: health turns
    /// SERVING first, or, [`server::Gated`], once its gate opens). Then: health NOT_SERVING, drain
    /// in-flight requests (bounded by the shutdown timeout), stop the background tasks
    /// and close the log.
    pub async fn serve(
        self,
        router: ServiceRouter,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        ready: impl server::Ready,
    ) -> Result<(), HostError> {
        let Self { core, readiness, stop_tx, mut tasks, settings, name, .. } = self;
        if let Some(addr) = settings.health_listen {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "health checks in plain text");
            let mut stop = stop_tx.subscribe();
            let readiness = readiness.clone();
            tasks.push(tokio::spawn(async move {
                let served = readiness.serve_plain(listener, async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
                if let Err(e) = served.await {
                    tracing::warn!(error = %e, "health listener failed");
                }
            }));
        }
        if let Some(addr) = settings.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "metrics on /metrics");
            let mut stop = stop_tx.subscribe();
            let metrics = core.metrics.clone();
            tasks.push(tokio::spawn(async move {
                let served = crate::metrics::serve(listener, metrics, async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
                if let Err(e) = served.await {
                    tracing::warn!(error = %e, "metrics endpoint failed");
                }
            }));
        }
        let addr = listener.local_addr().ok();
        let (answering, gate) = ready.split();
        let held = gate.is_some();
        let open = {
            let (core, readiness) = (core.clone(), readiness.clone());
            async move {
                if let Some(gate) = gate {
                    gate.await;
                    // What was loaded meanwhile is in the read models before callers come.
                    let _ = core.projected(core.log.head()).await;
                }
                readiness.serving().await;
                tracing::info!(service = name, ?addr, "serving");
            }
        };
        let opening = if held {
            tracing::info!(service = name, ?addr, "answering; health stays NOT_SERVING until loading is done");
            answering();
            Some(open)
        } else {
            open.await;
            answering();
            None
        };
        let drain_timeout = settings.shutdown_timeout;
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let readiness2 = readiness.clone();
        let signal = async move {
            match opening {
                None => shutdown.await,
                Some(open) => {
                    tokio::pin!(shutdown);
                    tokio::select! {
                        () = &mut shutdown => {}
                        () = open => (&mut shutdown).await,
                    }
                }
            }
            readiness2.not_serving().await;
            let _ = drain_tx.send(());
        };
        let serve = server::serve(router, listener, signal);
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
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        core.log.close()?;
        tracing::info!(service = name, "stopped; log flushed");
        result.map_err(HostError::from)
    }
}

/// Receives `source`'s events into `log` until stopped.
async fn receive(
    log: &EventLog,
    source: &'static str,
    group: &str,
    upstream: &Upstream,
    metrics: &Arc<Metrics>,
    heads: &SourceHeads,
    stop: watch::Receiver<bool>,
) -> Result<(), dvk_bus::BusError> {
    let ingestor = Ingestor::new(log.clone(), &[source])?;
    match upstream {
        Upstream::Local(upstream_log) => {
            heads.set(source, Head::Log(upstream_log.clone()));
            ingestor.run(LocalSource::new(upstream_log, log)?, stop).await?;
        }
        Upstream::Kafka(kafka) => {
            let topic = dvk_bus::kafka::topic_of(source);
            let consumer = KafkaSource::new(kafka, &topic, group, log).await?;
            let lag = consumer.lag();
            heads.set(source, Head::Topic(lag.clone()));
            let metrics = metrics.clone();
            let mut stop2 = stop.clone();
            let reporter = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = stop2.wait_for(|s| *s) => return,
                    }
                    let snapshot = lag.lock().expect("lag lock").clone();
                    metrics.set_consumer_lag(&topic, &snapshot);
                }
            });
            let result = ingestor.run(consumer, stop).await;
            reporter.abort();
            result?;
        }
    }
    Ok(())
}
