//! Helpers of the end-to-end tests (`e2e/`): services started for real on
//! 127.0.0.1:0 with temporary data directories, clients with real tokens.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dvk_domain::schedule::Schedule;
use dvk_eventlog::EventLog;
use dvk_proto::aggregation::v1::aggregation_service_client::AggregationServiceClient;
use dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient;
use dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dvk_runtime::settings::ServerSettings;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use dvk_testkit::{SECRET, token};

/// This package's directory, as cargo gives it when it runs the tests (a build reused
/// from a shared target directory by a clone elsewhere would otherwise point at the
/// clone that built it).
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
}

/// The real GSO files shipped with the project.
pub fn admin_units(file: &str) -> PathBuf {
    package_dir().join("../crates/gso/data/admin-units").join(file)
}

/// A service's own binary (`dvk-registration`, ...), built beside the tests, for tests
/// that run services as separate processes. Cargo does not build another package's
/// binaries for a test, so `cargo xtask test` builds them before the tests (run the
/// same `cargo build --bins -p dvk-registration -p dvk-reporting -p dvk-aggregation`
/// before a bare `cargo test`: an older build would be tested otherwise); a missing
/// one is built here.
pub fn service_binary(name: &str) -> PathBuf {
    let dir =
        std::env::current_exe().expect("the test binary").parent().expect("deps").parent().expect("target").to_owned();
    let path = dir.join(format!("dvk-{name}"));
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "dvk-registration", "-p", "dvk-reporting", "-p", "dvk-aggregation"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build the service binaries");
    }
    path
}

/// The test broker (Tansu) harness, shared with the bus crate's tests.
#[path = "../crates/bus/tests/support.rs"]
pub mod bus_support;

pub use bus_support::Broker;

/// Settings of a test service over `data_dir`, trusting `SECRET` (logs on with
/// `TEST_LOG` set).
pub fn settings(data_dir: &Path, metrics: Option<SocketAddr>) -> ServerSettings {
    if std::env::var_os("TEST_LOG").is_some() {
        dvk_runtime::telemetry::init();
    }
    dvk_testkit::settings(data_dir, metrics)
}

/// A service running in this process.
#[derive(Debug)]
pub struct Service {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The service's own log (shared with it).
    pub log: EventLog,
    name: &'static str,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), dvk_runtime::host::HostError>>>,
}

impl Service {
    /// Starts the registration service on 127.0.0.1:0 over `data_dir`.
    pub async fn registration(data_dir: &Path) -> Service {
        Self::registration_with(data_dir, None, None).await
    }

    /// Starts the registration service with a `/metrics` endpoint on `metrics` and a
    /// plain-text health listener on `health`.
    pub async fn registration_with_metrics(
        data_dir: &Path,
        metrics: Option<SocketAddr>,
        health: Option<SocketAddr>,
    ) -> Service {
        let mut settings = settings(data_dir, metrics);
        settings.health_listen = health;
        Self::registration_from(settings, None).await
    }

    /// Starts the registration service with `settings` (TLS, health listener, ...).
    pub async fn registration_with_settings(settings: ServerSettings) -> Service {
        Self::registration_from(settings, None).await
    }

    /// Starts the registration service, relaying its log to Kafka when `relay` is given.
    pub async fn registration_with(
        data_dir: &Path,
        metrics: Option<SocketAddr>,
        relay: Option<dvk_bus::kafka::KafkaConfig>,
    ) -> Service {
        Self::registration_from(settings(data_dir, metrics), relay).await
    }

    async fn registration_from(settings: ServerSettings, relay: Option<dvk_bus::kafka::KafkaConfig>) -> Service {
        let data_dir = settings.data_dir.clone();
        let tls = settings.tls.tls_cert_file.is_some();
        let log = dvk_registration::open_log(&settings).expect("registration log");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(dvk_registration::serve(
            listener,
            settings,
            log.clone(),
            relay,
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let name = dvk_registration::SERVICE_NAME;
        let service = Service { addr, data_dir, log, name, tls, stop: Some(stop), task: Some(task) };
        service.wait_ready().await;
        service
    }

    /// Starts the reporting service over `data_dir` with `schedule`, linked by `links`.
    pub async fn reporting(data_dir: &Path, schedule: Schedule, links: dvk_reporting::Links) -> Service {
        let settings = settings(data_dir, None);
        let log = dvk_reporting::open_log(&settings).expect("reporting log");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(dvk_reporting::serve(
            listener,
            settings,
            schedule,
            log.clone(),
            links,
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let name = dvk_reporting::SERVICE_NAME;
        let service =
            Service { addr, data_dir: data_dir.to_owned(), log, name, tls: false, stop: Some(stop), task: Some(task) };
        service.wait_ready().await;
        service
    }

    /// Starts the aggregation over `data_dir`, linked by `links`.
    pub async fn aggregation(data_dir: &Path, links: dvk_aggregation::Links) -> Service {
        Self::aggregation_from(settings(data_dir, None), links).await
    }

    /// Starts the aggregation with `settings`, linked by `links`.
    pub async fn aggregation_from(settings: ServerSettings, links: dvk_aggregation::Links) -> Service {
        let data_dir = settings.data_dir.clone();
        let log = dvk_aggregation::open_log(&settings).expect("aggregation log");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(dvk_aggregation::serve(
            listener,
            settings,
            1_000,
            log.clone(),
            links,
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let name = dvk_aggregation::SERVICE_NAME;
        let service = Service { addr, data_dir, log, name, tls: false, stop: Some(stop), task: Some(task) };
        service.wait_ready().await;
        service
    }

    pub async fn aggregation_client(&self) -> AggregationServiceClient<Channel> {
        AggregationServiceClient::new(self.channel().await)
    }

    async fn wait_ready(&self) {
        if self.tls {
            // Health over TLS is checked by the caller, who has the certificate.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        for _ in 0..200 {
            if let Ok(ch) = Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await {
                let mut health = tonic_health_client(ch);
                let req = health::HealthCheckRequest { service: self.name.into() };
                if let Ok(r) = health.check(req).await
                    && r.into_inner().status == health::health_check_response::ServingStatus::Serving as i32
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become SERVING");
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect")
    }

    pub async fn reporting_client(&self) -> ReportingServiceClient<Channel> {
        ReportingServiceClient::new(self.channel().await)
    }

    pub async fn client(&self) -> RegistrationServiceClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect");
        RegistrationServiceClient::new(ch).max_encoding_message_size(16 << 20).max_decoding_message_size(16 << 20)
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("service task").expect("service stopped cleanly");
        }
    }
}

pub use tonic_health::pb as health;

/// The standard health client over a channel.
pub fn tonic_health_client(ch: Channel) -> health::health_client::HealthClient<Channel> {
    health::health_client::HealthClient::new(ch)
}
