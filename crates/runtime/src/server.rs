//! The gRPC server every service runs: its own service beside `grpc.health.v1.Health`
//! (NOT_SERVING until the service says it is ready) and server reflection.

use std::future::Future;

use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Reports a service's readiness on the health service.
#[derive(Clone)]
pub struct Readiness {
    reporter: HealthReporter,
    service: &'static str,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").field("service", &self.service).finish()
    }
}

impl Readiness {
    /// Serves only the health service, in plain text, on `listener` until `shutdown`:
    /// for probes that cannot speak TLS (Kubernetes' gRPC probes) when the service
    /// port is TLS only.
    pub async fn serve_plain(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        Server::builder().add_service(self.health.clone()).serve_with_incoming_shutdown(incoming, shutdown).await
    }

    pub async fn serving(&self) {
        self.reporter.set_service_status(self.service, ServingStatus::Serving).await;
        self.reporter.set_service_status("", ServingStatus::Serving).await;
    }

    pub async fn not_serving(&self) {
        self.reporter.set_service_status(self.service, ServingStatus::NotServing).await;
        self.reporter.set_service_status("", ServingStatus::NotServing).await;
    }
}

/// What a service does once it answers (the `ready` argument of `serve`). A closure is
/// called once health says SERVING; [`Gated`] is called as soon as the service answers
/// and keeps health at NOT_SERVING until its gate opens and the read models include
/// the log as it then stands.
pub trait Ready: Send + 'static {
    /// The callback, and what health waits for before it turns SERVING (`None`: nothing).
    fn split(self) -> (Box<dyn FnOnce() + Send>, Option<crate::host::BoxShutdown>);
}

impl<F: FnOnce() + Send + 'static> Ready for F {
    fn split(self) -> (Box<dyn FnOnce() + Send>, Option<crate::host::BoxShutdown>) {
        (Box::new(self), None)
    }
}

/// A service that answers (so that its owner can load it through its API) but stays
/// NOT_SERVING on health until `gate` resolves: probes and load balancers keep other
/// callers away until then.
pub struct Gated<F> {
    /// Called once the service answers.
    pub answering: F,
    pub gate: crate::host::BoxShutdown,
}

impl<F> std::fmt::Debug for Gated<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated").finish_non_exhaustive()
    }
}

impl<F: FnOnce() + Send + 'static> Ready for Gated<F> {
    fn split(self) -> (Box<dyn FnOnce() + Send>, Option<crate::host::BoxShutdown>) {
        (Box::new(self.answering), Some(self.gate))
    }
}

/// The router every service is served with: the per-caller limit in front, and
/// messages over the size limit answered RESOURCE_EXHAUSTED.
pub type ServiceRouter = Router<
    tower_layer::Stack<
        crate::oversize::OversizeLayer,
        tower_layer::Stack<crate::limit::CallerLimitLayer, tower_layer::Identity>,
    >,
>;

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("TLS settings: {0}")]
    Config(#[from] tonic::transport::Error),
}

/// The TLS configuration of the settings, if TLS is on.
pub fn tls_config(s: &crate::settings::TlsSettings) -> Result<Option<ServerTlsConfig>, TlsError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| TlsError::Read { path: p.display().to_string(), source })
    };
    let (Some(cert), Some(key)) = (&s.tls_cert_file, &s.tls_key_file) else { return Ok(None) };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &s.tls_client_ca_file {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(config))
}

/// A server with health (NOT_SERVING for `service` and overall) and reflection, over
/// TLS when `tls` is given; add the service itself to the returned router.
pub async fn router(
    service: &'static str,
    tls: Option<ServerTlsConfig>,
    max_calls_per_caller: usize,
) -> Result<(ServiceRouter, Readiness), crate::host::HostError> {
    let reporter = HealthReporter::new();
    let health = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
    );
    let readiness = Readiness { reporter, service, health: health.clone() };
    readiness.not_serving().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(dvk_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(TlsError::from)?;
    }
    let router = builder
        .layer(crate::limit::CallerLimitLayer::new(max_calls_per_caller))
        .layer(crate::oversize::OversizeLayer)
        .add_service(health)
        .add_service(reflection);
    Ok((router, readiness))
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    router: ServiceRouter,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    router.serve_with_incoming_shutdown(incoming, shutdown).await
}
