//! The aggregation service: it owns no commands. It receives what registration and
//! reporting record (from their Kafka topics, or their logs in the same process),
//! appends it to its own sled log effectively once, and projects roll-ups per
//! administrative level, in both trees, for analysts to query.

#![forbid(unsafe_code)]

mod app;
pub mod asof;
mod error;
pub mod projection;
mod service;
pub mod snapshot;
mod wire;

use std::future::Future;
use std::net::SocketAddr;

use dvk_eventlog::{EventLog, LogConfig};
use dvk_proto::aggregation::v1::aggregation_service_server::AggregationServiceServer;
use dvk_runtime::Role;
use dvk_runtime::host::{Core, Host, Upstream};
use dvk_runtime::policy::{ANY_ROLE, Rule, Scope};
use dvk_runtime::settings::{KafkaSettings, ServerSettings};
use tokio::sync::watch;

pub use app::SOURCES;
pub use dvk_runtime::host::HostError as Error;
pub use projection::State;
pub use service::Aggregation;

/// The gRPC service name, as health checks ask for it.
pub const SERVICE_NAME: &str = "dvk.aggregation.v1.AggregationService";
/// The aggregation's log source name.
pub const SOURCE: &str = "aggregation";

/// Who may call what, one rule per RPC: the guard checks the role before a handler
/// runs, and the scope is checked at the unit asked for (the nation's figures are a
/// national caller's).
pub const POLICY: &[Rule] = &[
    Rule { method: "GetRollup", roles: ANY_ROLE, scope: Scope::Subtree },
    Rule { method: "ListRollups", roles: ANY_ROLE, scope: Scope::Subtree },
    Rule { method: "GetTimeSeries", roles: ANY_ROLE, scope: Scope::Subtree },
    Rule { method: "GetCompleteness", roles: ANY_ROLE, scope: Scope::Subtree },
    Rule { method: "GetProjectionStatus", roles: ANY_ROLE, scope: Scope::Anywhere },
    Rule { method: "RebuildProjections", roles: &[Role::Admin], scope: Scope::Anywhere },
];

/// Settings of the aggregation service (flags or `DVK_*` variables).
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// gRPC listen address.
    #[arg(long, env = "DVK_AGGREGATION_LISTEN", default_value = "0.0.0.0:50053")]
    pub listen: SocketAddr,
    /// Snapshot the roll-ups every this many events (and on shutdown); the last 8 are
    /// kept for `as_of`.
    #[arg(long, env = "DVK_SNAPSHOT_EVERY", default_value_t = 125_000)]
    pub snapshot_every: u64,
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
}

/// Where the two sources come from.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub registration: Option<Upstream>,
    pub reporting: Option<Upstream>,
}

impl Links {
    /// Over Kafka when it is configured; otherwise unlinked.
    pub fn over(kafka: Option<dvk_bus::kafka::KafkaConfig>) -> Self {
        match kafka {
            Some(k) => Self { registration: Some(Upstream::Kafka(k.clone())), reporting: Some(Upstream::Kafka(k)) },
            None => Self::default(),
        }
    }
}

/// Opens the aggregation log in the configured data directory.
pub fn open_log(settings: &ServerSettings) -> Result<EventLog, Error> {
    Ok(EventLog::open(LogConfig::new(&settings.data_dir, SOURCE))?)
}

/// Serves the aggregation on `listener` until `shutdown` resolves, linked over Kafka
/// when it is configured.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let log = open_log(&settings.server)?;
    let links = Links::over(settings.kafka.config());
    serve(listener, settings.server, settings.snapshot_every, log, links, shutdown, || {}).await
}

/// Serves the aggregation over `log`; calls `ready` once the roll-ups are restored
/// (latest snapshot plus the log after it) and the service answers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: ServerSettings,
    snapshot_every: u64,
    log: EventLog,
    links: Links,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl dvk_runtime::server::Ready,
) -> Result<(), Error> {
    let (mut host, router) = Host::<State>::start(SERVICE_NAME, SOURCE, log, &settings, None).await?;
    for (source, upstream) in [("registration", links.registration), ("reporting", links.reporting)] {
        match upstream {
            Some(u) => host.follow(source, u),
            None => tracing::warn!(source, "no link to this source (set DVK_KAFKA_BOOTSTRAP_SERVERS)"),
        }
    }
    let core = host.core();
    host.spawn(snapshots(core.clone(), snapshot_every.max(1), host.stop_signal()));
    let grpc = AggregationServiceServer::new(Aggregation { app: app::App::new(core, host.source_heads()) })
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);
    let guarded = host.guard(POLICY, grpc);
    host.serve(router.add_service(guarded), listener, shutdown, ready).await
}

/// Saves a snapshot every `every` events folded in, and one when the service stops.
async fn snapshots(core: Core<State>, every: u64, mut stop: watch::Receiver<bool>) {
    let mut projected = core.projected.clone();
    let mut last = *projected.borrow();
    loop {
        let stopping = tokio::select! {
            r = projected.changed() => r.is_err(),
            _ = stop.wait_for(|s| *s) => true,
        };
        let now = *projected.borrow();
        if now > last && (stopping || now - last >= every) {
            let encoded = snapshot::encode(&*core.state.read().await);
            let position = encoded.position;
            let log = core.log.clone();
            let saved = tokio::task::spawn_blocking(move || snapshot::save(&log, encoded)).await;
            match saved {
                Ok(Ok(())) => {
                    tracing::debug!(position, "roll-ups snapshot saved");
                    last = position;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot save a snapshot"),
                Err(e) => tracing::warn!(error = %e, "snapshot task failed"),
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_of_the_service_has_exactly_one_rule() {
        dvk_runtime::policy::verify(super::POLICY, dvk_proto::FILE_DESCRIPTOR_SET, super::SERVICE_NAME).unwrap();
    }
}
