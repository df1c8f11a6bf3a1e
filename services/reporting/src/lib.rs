//! The reporting service: periodic reports (sơ kết, tổng kết), their revisions and
//! their approval up the administrative levels, over gRPC, with its own sled event log
//! as the source of truth. It learns the administrative trees from the registration
//! service's events: from its Kafka topic, or from its log in the same process.

#![forbid(unsafe_code)]

mod app;
mod error;
pub mod schedule;
mod service;
mod state;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use dvk_domain::schedule::Schedule;
use dvk_eventlog::{EventLog, LogConfig};
use dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dvk_proto::reporting::v1::reporting_service_server::ReportingServiceServer;
use dvk_runtime::Role;
use dvk_runtime::guard::Guard;
use dvk_runtime::host::{Host, Upstream};
use dvk_runtime::policy::{ANY_ROLE, Rule, Scope};
use dvk_runtime::settings::{KafkaSettings, ServerSettings};

pub use dvk_runtime::host::HostError as Error;
pub use service::Reporting;
pub use state::{SOURCE, State};

/// The gRPC service name, as health checks ask for it.
pub const SERVICE_NAME: &str = "dvk.reporting.v1.ReportingService";

/// Who may call what, one rule per RPC: the guard checks the role before a handler
/// runs, and the scope is checked at the report's unit.
pub const POLICY: &[Rule] = &[
    // A unit's reporters (or those above it, and admins) write its report...
    Rule { method: "SubmitReport", roles: &[Role::Reporter, Role::Admin], scope: Scope::Subtree },
    Rule { method: "AmendReport", roles: &[Role::Reporter, Role::Admin], scope: Scope::Subtree },
    // ...the approvers of a unit above it decide on it...
    Rule { method: "ReturnReport", roles: &[Role::Approver], scope: Scope::Below },
    Rule { method: "ApproveReport", roles: &[Role::Approver], scope: Scope::Below },
    Rule { method: "ReopenReport", roles: &[Role::Approver], scope: Scope::Below },
    // ...and every caller reads the reports of its subtree.
    Rule { method: "GetReport", roles: ANY_ROLE, scope: Scope::Subtree },
    Rule { method: "ListReports", roles: ANY_ROLE, scope: Scope::Subtree },
    Rule { method: "GetReportHistory", roles: ANY_ROLE, scope: Scope::Subtree },
];

/// Settings of the reporting service (flags or `DVK_*` variables).
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// gRPC listen address.
    #[arg(long, env = "DVK_REPORTING_LISTEN", default_value = "0.0.0.0:50052")]
    pub listen: SocketAddr,
    /// TOML file with the reporting schedule (when reports open, are due and lock);
    /// unset: the defaults.
    #[arg(long, env = "DVK_REPORTING_SCHEDULE_FILE")]
    pub schedule_file: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
}

/// How the service is wired to the others.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// Publish the log to `dvk.reporting.v1`.
    pub relay: Option<dvk_bus::kafka::KafkaConfig>,
    /// Where the registration service's events (the trees) come from.
    pub registration: Option<Upstream>,
}

impl Links {
    /// Over Kafka when it is configured; otherwise unlinked.
    pub fn over(kafka: Option<dvk_bus::kafka::KafkaConfig>) -> Self {
        match kafka {
            Some(kafka) => Self { relay: Some(kafka.clone()), registration: Some(Upstream::Kafka(kafka)) },
            None => Self::default(),
        }
    }
}

/// Opens the reporting log in the configured data directory.
pub fn open_log(settings: &ServerSettings) -> Result<EventLog, Error> {
    Ok(EventLog::open(LogConfig::new(&settings.data_dir, state::SOURCE))?)
}

/// Serves the reporting service on `listener` until `shutdown` resolves, linked over
/// Kafka when it is configured.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let schedule = schedule::load(settings.schedule_file.as_deref())
        .map_err(|e| Error::Settings(format!("{e} (DVK_REPORTING_SCHEDULE_FILE)")))?;
    let log = open_log(&settings.server)?;
    let links = Links::over(settings.kafka.config());
    serve(listener, settings.server, schedule, log, links, shutdown, || {}).await
}

/// A client of the service in the same process: its calls go through the guard to the
/// handlers, with no listener.
pub type InProcess = ReportingServiceClient<Guard<ReportingServiceServer<Reporting>>>;

/// The service without a listener, for a caller in the same process (the comparison
/// benchmarks), learning the trees from `registration`. Keep the returned host alive
/// while calling (its tasks end with the runtime).
pub async fn in_process(
    settings: &ServerSettings,
    schedule: Schedule,
    log: EventLog,
    registration: Upstream,
) -> Result<(Host<State>, InProcess), Error> {
    let (mut host, _router) = Host::<State>::start(SERVICE_NAME, state::SOURCE, log, settings, None).await?;
    host.follow("registration", registration);
    let grpc = ReportingServiceServer::new(Reporting::new(host.core(), schedule));
    let client = ReportingServiceClient::new(host.guard(POLICY, grpc));
    Ok((host, client))
}

/// Serves the reporting service over `log`; calls `ready` once the log is replayed and
/// the service answers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: ServerSettings,
    schedule: Schedule,
    log: EventLog,
    links: Links,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl dvk_runtime::server::Ready,
) -> Result<(), Error> {
    let (mut host, router) = Host::<State>::start(SERVICE_NAME, state::SOURCE, log, &settings, links.relay).await?;
    match links.registration {
        Some(upstream) => host.follow("registration", upstream),
        None => tracing::warn!(
            "no link to the registration service (set DVK_KAFKA_BOOTSTRAP_SERVERS): only units already in the log are known"
        ),
    }
    let grpc = ReportingServiceServer::new(Reporting::new(host.core(), schedule))
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);
    let guarded = host.guard(POLICY, grpc);
    host.serve(router.add_service(guarded), listener, shutdown, ready).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_of_the_service_has_exactly_one_rule() {
        dvk_runtime::policy::verify(super::POLICY, dvk_proto::FILE_DESCRIPTOR_SET, super::SERVICE_NAME).unwrap();
    }
}
