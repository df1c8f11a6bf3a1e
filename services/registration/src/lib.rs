//! The registration service: the administrative trees (import, reorganisation) and
//! the mobilisation models, over gRPC, with its own sled event log as the source of
//! truth. `run` serves on a listener the caller bound until `shutdown` resolves.

#![forbid(unsafe_code)]

mod service;
mod state;

use std::future::Future;
use std::net::SocketAddr;

use dvk_eventlog::{EventLog, LogConfig};
use dvk_proto::registration::v1::registration_service_server::RegistrationServiceServer;
use dvk_runtime::host::Host;
use dvk_runtime::settings::{KafkaSettings, ServerSettings};

pub use service::Registration;
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
    #[command(flatten)]
    pub kafka: KafkaSettings,
}

pub use dvk_runtime::host::HostError as Error;

/// Opens the registration log in the configured data directory.
pub fn open_log(settings: &ServerSettings) -> Result<EventLog, Error> {
    Ok(EventLog::open(LogConfig::new(&settings.data_dir, state::SOURCE))?)
}

/// Serves the registration service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let log = open_log(&settings.server)?;
    serve(listener, settings.server, log, settings.kafka.config(), shutdown, || {}).await
}

/// The service's handlers without a listener, for a caller in the same process (the
/// comparison benchmarks call the `RegistrationService` methods directly). Keep the
/// returned host alive while calling (its tasks end with the runtime).
pub async fn in_process(settings: &ServerSettings, log: EventLog) -> Result<(Host<State>, Registration), Error> {
    let (host, _router) = Host::<State>::start(SERVICE_NAME, state::SOURCE, log, settings, None).await?;
    let service = Registration { core: host.core() };
    Ok((host, service))
}

/// Serves the registration service over `log` (opened by the caller, which may share
/// it with a service following it in the same process), relaying it to Kafka when
/// `relay` is given; calls `ready` once the log is replayed and the service answers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: ServerSettings,
    log: EventLog,
    relay: Option<dvk_bus::kafka::KafkaConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl dvk_runtime::server::Ready,
) -> Result<(), Error> {
    let (host, router) = Host::<State>::start(SERVICE_NAME, state::SOURCE, log, &settings, relay).await?;
    let grpc = RegistrationServiceServer::new(Registration { core: host.core() })
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);
    host.serve(router.add_service(grpc), listener, shutdown, ready).await
}
