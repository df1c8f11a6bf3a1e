//! The frame every command service runs in: replay the log into read models before
//! answering, follow the log to keep them current, the shared write path (request ids,
//! expected versions, answer once the read models include the write), the relay to
//! Kafka, optional ingestion of another service's events, metrics, and a bounded,
//! draining shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::server::ServiceRouter;
use dvk_bus::Ingestor;
use dvk_bus::kafka::{KafkaConfig, KafkaSource, RelayConfig};
use dvk_bus::local::LocalSource;
use dvk_codec::{Recorded, StreamId, Unreadable, recorded};
use dvk_domain::{DomainError, DomainEvent};
use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion, LogError, Receipt};
use dvk_proto::events::v1::Envelope;
use prost::Message;
use sha2::Digest;
use tokio::sync::{RwLock, watch};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::guard::{Guard, GuardLayer};
use crate::metrics::Metrics;
use crate::policy::{Access, KnowsUnits, Rule, Target};
use crate::server::{self, Readiness};
use crate::settings::ServerSettings;
use crate::{Authenticator, status};

/// Most events folded into the read models under one write lock.
const PROJECT_BATCH: usize = 512;

/// Read models rebuilt by folding a log in order.
pub trait ReadModel: Default + Send + Sync + 'static {
    /// Folds an event in (its `position` is the read models' new position).
    fn apply(&mut self, event: &Recorded);

    /// Passes over an event that does not decode (reported by the caller as an error):
    /// the read models still move past its position.
    fn skip(&mut self, unreadable: &Unreadable);

    /// The read models at start and the last position they include: by default a
    /// replay of the whole log; a projection with snapshots loads the latest and
    /// replays the tail.
    fn restore(log: &EventLog) -> Result<(Self, u64), LogError> {
        replay(log)
    }
}

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

/// What a write decided: the stream, the expected version and the events.
#[derive(Debug)]
pub struct Decision {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<DomainEvent>,
}

/// What a service's RPC handlers share: the log, the read models and how far they
/// have folded the log, and the metrics.
pub struct Core<S> {
    pub log: EventLog,
    pub state: Arc<RwLock<S>>,
    pub projected: watch::Receiver<u64>,
    pub metrics: Arc<Metrics>,
    source: &'static str,
}

impl<S> Clone for Core<S> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            state: self.state.clone(),
            projected: self.projected.clone(),
            metrics: self.metrics.clone(),
            source: self.source,
        }
    }
}

impl<S> std::fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("source", &self.source).field("log", &self.log).finish_non_exhaustive()
    }
}

fn invalid(field: &str, why: &str) -> Status {
    status::domain(DomainError::invalid(field, why))
}

impl<S: ReadModel> Core<S> {
    /// The position token of this service's log.
    pub fn position(&self, p: u64) -> dvk_proto::common::v1::Position {
        dvk_proto::common::v1::Position { source: self.source.into(), position: p }
    }

    /// Waits until the read models include the log position `position`.
    pub async fn projected(&self, position: u64) -> Result<(), Status> {
        let mut rx = self.projected.clone();
        rx.wait_for(|p| *p >= position).await.map(drop).map_err(|_| Status::unavailable("the service is shutting down"))
    }

    /// The common write path, for the caller the guard admitted (`access`: its role is
    /// checked). Authorisation comes before idempotency: `target` resolves what the
    /// request acts on in the current read models, and the scope of the RPC's rule is
    /// checked there; its refusal is final, even for a request id already written, so
    /// a stored answer (a model id, "approved") goes only to callers who may act on its
    /// target. Then the request body (without its id) is fingerprinted: a retry with
    /// the same `request_id` and body gets the first answer, whoever of the allowed
    /// callers sends it; another body is refused. `decide` runs against the same read
    /// models; the answer comes once they include the write, so the caller's next read
    /// sees it.
    ///
    /// `target` and `decide` answer in the service's own error type `E`; what the write
    /// path itself refuses (a missing request id, the scope, a reused id) arrives there
    /// as the `Status` this crate maps it to.
    pub async fn write<E: From<Status>>(
        &self,
        access: &Access,
        request_id: &str,
        body: &impl Message,
        target: impl FnOnce(&S) -> Result<Target, E>,
        decide: impl FnOnce(&S) -> Result<Decision, E>,
    ) -> Result<Receipt, E>
    where
        S: KnowsUnits,
    {
        let method = access.method();
        let request_id = request_id.trim();
        if request_id.is_empty() {
            return Err(invalid("request_id", "is required: a client-chosen id that makes retries safe").into());
        }
        if request_id.len() > dvk_domain::text::MAX_CODE {
            return Err(invalid("request_id", "is longer than 100 bytes").into());
        }
        let mut hasher = sha2::Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update([0]);
        hasher.update(body.encode_to_vec());
        let fingerprint = hasher.finalize().to_vec();
        // A retry is not looked up first: the log's writer finds its request id in the
        // same step that appends (and refuses a reused one), and a retry whose decision
        // is refused or differs (a new id drawn) is answered below from the first
        // attempt's stored receipt. A new request thus costs no extra lookup. The
        // same body names the same target, so the caller authorised here may have the
        // stored answer.
        let decision = {
            let state = self.state.read().await;
            access.check(state.units(), &target(&state)?).map_err(E::from)?;
            decide(&state)
        };
        let decision = match decision {
            Ok(d) => d,
            Err(refusal) => {
                // The same request may have been written meanwhile (a retry racing a
                // first attempt whose answer the client never got): answer as it was.
                if let Some(receipt) = self.earlier_answer(request_id, &fingerprint).await? {
                    return Ok(receipt);
                }
                return Err(refusal);
            }
        };
        let now = prost_types::Timestamp::from(SystemTime::now());
        let actor = access.caller.actor();
        let events = decision.events.iter().map(|e| recorded::envelope(e, actor.clone(), now, request_id)).collect();
        let append = AppendRequest::new(decision.stream.to_string(), decision.expected, events)
            .with_request_id(request_id, fingerprint.clone());
        let receipt = match self.log.append(append).await {
            Ok(r) => r,
            // The id is taken: by this request's first attempt (or a concurrent one),
            // answered as it was, or by another request, refused.
            Err(LogError::RequestIdReused { .. }) => match self.earlier_answer(request_id, &fingerprint).await? {
                Some(r) => return Ok(r),
                None => return Err(Status::aborted("concurrent request with the same request_id; retry").into()),
            },
            Err(e) => return Err(status::log(e).into()),
        };
        self.metrics.log_head.set(receipt.last_position as i64);
        self.projected(receipt.last_position).await?;
        Ok(receipt)
    }

    async fn earlier_answer(&self, request_id: &str, fingerprint: &[u8]) -> Result<Option<Receipt>, Status> {
        match self.log.find_request(request_id).map_err(status::log)? {
            None => Ok(None),
            Some((receipt, stored)) if stored == fingerprint => {
                self.projected(receipt.last_position).await?;
                Ok(Some(receipt))
            }
            Some(_) => Err(Status::already_exists(format!(
                "request_id {request_id:?} was already used for a different request"
            ))),
        }
    }

    /// One page of a stream's events, oldest first: `(events, next_page_token)`. The
    /// token is the next stream version to read.
    pub fn history(&self, stream: &str, size: usize, page_token: &str) -> Result<(Vec<Envelope>, String), Status> {
        let from: u64 = if page_token.is_empty() {
            1
        } else {
            match page_token.parse() {
                Ok(v) if v >= 1 => v,
                _ => return Err(invalid("page_token", "is not a token from a previous page")),
            }
        };
        let records = self.log.read_stream(stream, from).map_err(status::log)?;
        let more = records.len() > size;
        let events =
            records.iter().take(size).map(|r| r.envelope().map_err(status::log)).collect::<Result<Vec<_>, _>>()?;
        let next = if more { (from + size as u64).to_string() } else { String::new() };
        Ok((events, next))
    }
}

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

/// Vietnam's civil date today (UTC+7, no daylight saving).
pub fn today() -> dvk_domain::Date {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    dvk_domain::Date::from_unix_days((secs + 7 * 3600).div_euclid(86_400))
        .expect("the clock is within the supported years")
}

/// Page size of a `List*` request: 0 means the default of 100; at most 1000.
pub fn page_size(requested: i32) -> Result<usize, Status> {
    match requested {
        0 => Ok(100),
        n if n < 0 => Err(invalid("page_size", "must not be negative")),
        n => Ok((n as usize).min(1000)),
    }
}

/// A request that changes an existing stream: it names its request id, the stream's
/// id and the expected version; a retry must repeat its body exactly.
pub trait ChangeRequest: Message + Clone + Send + Sync + 'static {
    /// The request id, the stream's id (model id, report id) and the expected version.
    fn target(&self) -> (&str, &str, u64);
    /// The request without its request id: what a retry must repeat exactly.
    fn body(&self) -> Self;
}

/// Implements [`ChangeRequest`] for request types whose stream id is the field `$id`.
macro_rules! change_request {
    ($id:ident: $($t:ty),* $(,)?) => {$(
        impl ChangeRequest for $t {
            fn target(&self) -> (&str, &str, u64) {
                (&self.request_id, &self.$id, self.expected_version)
            }
            fn body(&self) -> Self {
                Self { request_id: String::new(), ..self.clone() }
            }
        }
    )*};
}

change_request!(
    model_id: dvk_proto::registration::v1::AmendModelRequest,
    dvk_proto::registration::v1::StartModelRequest,
    dvk_proto::registration::v1::RecognizeModelRequest,
    dvk_proto::registration::v1::CommendModelRequest,
    dvk_proto::registration::v1::ReplicateModelRequest,
    dvk_proto::registration::v1::RetireModelRequest,
);
change_request!(
    report_id: dvk_proto::reporting::v1::AmendReportRequest,
    dvk_proto::reporting::v1::ReturnReportRequest,
    dvk_proto::reporting::v1::ApproveReportRequest,
    dvk_proto::reporting::v1::ReopenReportRequest,
);

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

/// Replays a log into fresh read models; returns them with the last position folded.
pub fn replay<S: ReadModel>(log: &EventLog) -> Result<(S, u64), LogError> {
    let mut state = S::default();
    let last = replay_onto(log, &mut state, 1, |_| true)?;
    Ok((state, last))
}

/// Folds the events from `from` on into `state`, those `keep` accepts; returns the
/// last position read (or `from - 1` if none).
pub fn replay_onto<S: ReadModel>(
    log: &EventLog,
    state: &mut S,
    from: u64,
    mut keep: impl FnMut(&Envelope) -> bool,
) -> Result<u64, LogError> {
    let mut last = from.saturating_sub(1);
    for decoded in log.replay_range(from, log.head()) {
        let (position, env) = decoded?;
        if keep(&env) {
            fold(state, position, env);
        }
        last = position;
    }
    Ok(last)
}

/// Decodes the event stored at `position` and folds it into `state`; one that does
/// not decode is logged and passed over.
pub fn fold<S: ReadModel>(state: &mut S, position: u64, env: Envelope) {
    fold_decoded(state, &recorded::decode(position, env));
}

fn fold_decoded<S: ReadModel>(state: &mut S, event: &Result<Recorded, Unreadable>) {
    match event {
        Ok(event) => state.apply(event),
        Err(unreadable) => {
            tracing::error!(%unreadable, "a stored event does not decode; passed over");
            state.skip(unreadable);
        }
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
        let mut host =
            Self { core, auth, readiness, stop_tx, tasks: Vec::new(), settings: settings.clone(), name: source };
        host.tasks.push(tokio::spawn(project(log.clone(), state, projected_tx, metrics.clone(), stop.clone())));

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
        let mut stop = self.stop_tx.subscribe();
        let group = self.name;
        let metrics = self.core.metrics.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let result = receive(&log, source, group, &upstream, &metrics, stop.clone()).await;
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
    stop: watch::Receiver<bool>,
) -> Result<(), dvk_bus::BusError> {
    let ingestor = Ingestor::new(log.clone(), &[source])?;
    match upstream {
        Upstream::Local(upstream_log) => {
            ingestor.run(LocalSource::new(upstream_log, log)?, stop).await?;
        }
        Upstream::Kafka(kafka) => {
            let topic = dvk_bus::kafka::topic_of(source);
            let consumer = KafkaSource::new(kafka, &topic, group, log).await?;
            let lag = consumer.lag();
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

/// Follows the log and folds every new event into the read models, in order.
async fn project<S: ReadModel>(
    log: EventLog,
    state: Arc<RwLock<S>>,
    projected: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let from = *projected.borrow() + 1;
    let mut sub = log.subscribe(from);
    // Reused: a fresh batch each round costs fresh pages of memory. Events are decoded
    // here, before the write lock is taken, so readers wait only for the fold.
    let mut batch: Vec<Result<Recorded, Unreadable>> = Vec::with_capacity(PROJECT_BATCH);
    loop {
        let first = tokio::select! {
            r = sub.next() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        batch.clear();
        let mut next = first;
        let mut last;
        loop {
            match next.and_then(|r| Ok((r.position(), r.envelope()?))) {
                Ok((position, env)) => {
                    last = position;
                    batch.push(recorded::decode(position, env));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot follow the log; read models stop here");
                    return;
                }
            }
            if batch.len() >= PROJECT_BATCH {
                break;
            }
            match sub.try_next() {
                Ok(Some(r)) => next = Ok(r),
                Ok(None) => break,
                Err(e) => next = Err(e),
            }
        }
        {
            let mut s = state.write().await;
            for event in &batch {
                fold_decoded(&mut *s, event);
            }
        }
        metrics.projected.set(last as i64);
        metrics.log_head.set(log.head() as i64);
        projected.send_replace(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Scope;
    use crate::{Caller, Role};
    use dvk_domain::unit::{Trees, UnitLookup};
    use dvk_domain::{Tree, UnitCode};
    use dvk_eventlog::LogConfig;
    use dvk_proto::events::v1::ModelStarted;
    use tonic::Code;

    /// Read models that hold nothing but empty trees: the write path is under test, not
    /// a projection.
    #[derive(Default)]
    struct Nothing(Trees);

    impl ReadModel for Nothing {
        fn apply(&mut self, _: &Recorded) {}
        fn skip(&mut self, _: &Unreadable) {}
    }

    impl KnowsUnits for Nothing {
        fn units(&self) -> &dyn UnitLookup {
            &self.0
        }
    }

    static START: Rule = Rule { method: "StartModel", roles: &[Role::Reporter], scope: Scope::Subtree };

    fn core(dir: &std::path::Path) -> (Core<Nothing>, watch::Sender<u64>) {
        let log = EventLog::open(LogConfig::new(dir, "registration")).unwrap();
        // The read models are taken to include everything: answers need not wait.
        let (projected_tx, projected) = watch::channel(u64::MAX);
        let core = Core {
            log,
            state: Arc::new(RwLock::new(Nothing::default())),
            projected,
            metrics: Arc::new(Metrics::new("registration")),
            source: "registration",
        };
        (core, projected_tx)
    }

    /// A reporter admitted to StartModel: national (allowed on every unit), or acting
    /// for unit 01 (and so not on unit 02).
    fn caller(subject: &str, unit: Option<&str>) -> Access {
        let unit = unit.map(|u| UnitCode::parse("unit", u).unwrap());
        START.admit(Caller { subject: subject.into(), role: Role::Reporter, unit }).unwrap()
    }

    fn body(day: i32) -> ModelStarted {
        ModelStarted { started_on: Some(dvk_proto::common::v1::Date { year: 2024, month: 3, day }) }
    }

    fn decision(day: i32) -> Result<Decision, Status> {
        let started_on = dvk_domain::Date::new("started_on", 2024, 3, day as u32).unwrap();
        Ok(Decision {
            stream: StreamId::Model(dvk_domain::model::ModelId::parse("id", "m").unwrap()),
            expected: ExpectedVersion::Any,
            events: vec![DomainEvent::Model(dvk_domain::model::ModelEvent::Started { started_on })],
        })
    }

    /// The model's unit.
    fn target(_: &Nothing) -> Result<Target, Status> {
        Ok(Target::unit(Tree::Pre2025, UnitCode::parse("unit", "02").unwrap()))
    }

    #[tokio::test]
    async fn a_stored_answer_goes_only_to_callers_allowed_on_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let (core, _projected) = core(dir.path());
        let (a, b, c) = (caller("a", None), caller("b", Some("01")), caller("c", None));
        let first = core.write(&a, "r-1", &body(1), target, |_| decision(1)).await.unwrap();
        assert!(!first.deduplicated);
        // The same request again, whose decision is refused now (the model has moved
        // on): the first caller's retry and an allowed caller's replay get the answer.
        let moved_on = |_: &Nothing| Err(Status::aborted("model m is at version 1, not 0"));
        let retry = core.write(&a, "r-1", &body(1), target, moved_on).await.unwrap();
        assert_eq!((retry.last_position, retry.deduplicated), (first.last_position, true));
        let replay = core.write(&c, "r-1", &body(1), target, moved_on).await.unwrap();
        assert_eq!(replay.last_position, first.last_position);
        // And when the decision is made again (a new model id drawn), the log finds the id.
        let replay = core.write(&c, "r-1", &body(1), target, |_| decision(1)).await.unwrap();
        assert_eq!(replay.last_position, first.last_position);
        // A caller not allowed on the target is refused by the rule's scope, however the
        // decision would go.
        for decide in [moved_on as fn(&Nothing) -> Result<Decision, Status>, |_| decision(1)] {
            let e = core.write(&b, "r-1", &body(1), target, decide).await.unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
            assert_eq!(e.message(), "StartModel: unit 02 is outside the caller's unit 01", "{e:?}");
        }
        // Another body under the id is refused, to allowed callers.
        let e = core.write(&c, "r-1", &body(2), target, moved_on).await.unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        assert_eq!(core.log.head(), first.last_position, "nothing but the first write was written");
        core.log.close().unwrap();
    }
}
