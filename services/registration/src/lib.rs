//! The registration service: the administrative trees (import, reorganisation) and
//! the mobilisation models, over gRPC, with its own sled event log as the source of
//! truth. `run` serves on a listener the caller bound until `shutdown` resolves.

#![forbid(unsafe_code)]

mod app;
mod error;
mod service;
mod state;
mod wire;

use std::future::Future;
use std::net::SocketAddr;

use dvk_eventlog::{EventLog, LogConfig};
use dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient;
use dvk_proto::registration::v1::registration_service_server::RegistrationServiceServer;
use dvk_runtime::Role;
use dvk_runtime::guard::Guard;
use dvk_runtime::host::Host;
use dvk_runtime::policy::{ANY_ROLE, Rule, Scope};
use dvk_runtime::settings::{KafkaSettings, ServerSettings};

pub use service::Registration;
pub use state::{SOURCE, State};

/// The gRPC service name, as health checks ask for it.
pub const SERVICE_NAME: &str = "dvk.registration.v1.RegistrationService";

/// Who may call what, one rule per RPC: the guard checks the role before a handler
/// runs, and the scope is checked where the request's target lies.
pub const POLICY: &[Rule] = &[
    // The trees are reference data every caller reads; admins manage them, whole.
    Rule { method: "ImportUnits", roles: &[Role::Admin], scope: Scope::Anywhere },
    Rule { method: "ReorganizeUnits", roles: &[Role::Admin], scope: Scope::Anywhere },
    Rule { method: "GetUnit", roles: ANY_ROLE, scope: Scope::Anywhere },
    Rule { method: "ListUnits", roles: ANY_ROLE, scope: Scope::Anywhere },
    // A model is run by the reporters of its unit or above; approvers recognise and
    // commend it, for a unit of their own subtree.
    Rule { method: "RegisterModel", roles: &[Role::Reporter, Role::Admin], scope: Scope::Subtree },
    Rule { method: "AmendModel", roles: &[Role::Reporter, Role::Admin], scope: Scope::Subtree },
    Rule { method: "StartModel", roles: &[Role::Reporter, Role::Admin], scope: Scope::Subtree },
    Rule { method: "RecognizeModel", roles: &[Role::Approver, Role::Admin], scope: Scope::Subtree },
    Rule { method: "CommendModel", roles: &[Role::Approver, Role::Admin], scope: Scope::Subtree },
    Rule { method: "ReplicateModel", roles: &[Role::Reporter, Role::Admin], scope: Scope::Subtree },
    Rule { method: "RetireModel", roles: &[Role::Reporter, Role::Admin], scope: Scope::Subtree },
    Rule { method: "GetModel", roles: ANY_ROLE, scope: Scope::Subtree },
    Rule { method: "ListModels", roles: ANY_ROLE, scope: Scope::Listed },
    Rule { method: "GetModelHistory", roles: ANY_ROLE, scope: Scope::Subtree },
];

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

/// A client of the service in the same process: its calls go through the guard to the
/// handlers, with no listener.
pub type InProcess = RegistrationServiceClient<Guard<RegistrationServiceServer<Registration>>>;

/// The service without a listener, for a caller in the same process (the comparison
/// benchmarks). Keep the returned host alive while calling (its tasks end with the
/// runtime).
pub async fn in_process(settings: &ServerSettings, log: EventLog) -> Result<(Host<State>, InProcess), Error> {
    let (host, _router) = Host::<State>::start(SERVICE_NAME, state::SOURCE, log, settings, None).await?;
    let grpc = RegistrationServiceServer::new(Registration { core: host.core() });
    let client = RegistrationServiceClient::new(host.guard(POLICY, grpc));
    Ok((host, client))
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
