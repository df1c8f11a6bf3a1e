//! `dvk`: DVK Ledger in one process, the embedded default. Serves registration,
//! reporting and aggregation, each with its own event log under one data directory;
//! reporting follows registration's log and aggregation follows both, in the process,
//! through the same `EventSource` interface the Kafka consumer implements. Runs until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dvk_eventlog::EventLog;

/// See `dvk_runtime::Allocator`.
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

mod demo;
use dvk_runtime::settings::{AuthSettings, ServerSettings};

/// DVK Ledger, all services in one process.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where each service keeps its sled directory (`<dir>/registration`, ...).
    #[arg(long, env = "DVK_DATA_DIR", default_value = "./dvk-data")]
    data_dir: PathBuf,
    /// The registration service's gRPC address.
    #[arg(long, env = "DVK_REGISTRATION_LISTEN", default_value = "127.0.0.1:50051")]
    registration_listen: SocketAddr,
    /// The reporting service's gRPC address.
    #[arg(long, env = "DVK_REPORTING_LISTEN", default_value = "127.0.0.1:50052")]
    reporting_listen: SocketAddr,
    /// The aggregation service's gRPC address.
    #[arg(long, env = "DVK_AGGREGATION_LISTEN", default_value = "127.0.0.1:50053")]
    aggregation_listen: SocketAddr,
    /// On a first start, also load a demo workload (2024, three provinces, models and
    /// reports) so there is something to query at once; it opens every period for
    /// reports unless --schedule-file is given.
    #[arg(long)]
    demo: bool,
    /// TOML file with the reporting schedule; unset: the defaults.
    #[arg(long, env = "DVK_REPORTING_SCHEDULE_FILE")]
    schedule_file: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint; unset: none.
    #[arg(long, env = "DVK_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// JWT keys. Without any, a development HS256 secret is created at
    /// `<data-dir>/dev-jwt-secret` and used.
    #[command(flatten)]
    auth: AuthSettings,
}

fn main() -> ExitCode {
    let args = Args::parse();
    dvk_runtime::telemetry::init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the development secret once (readable by the owner only).
fn dev_secret(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("dev-jwt-secret");
    if !path.exists() {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut f, hex.as_bytes())?;
    }
    Ok(path)
}

/// Waits until the aggregation's roll-ups include the positions `tokens`.
async fn wait_for_rollups(
    aggregation: SocketAddr,
    token: &str,
    tokens: Vec<dvk_proto::common::v1::Position>,
) -> anyhow::Result<()> {
    use dvk_proto::aggregation::v1 as pa;
    let channel = tonic::transport::Channel::from_shared(format!("http://{aggregation}"))?.connect().await?;
    let mut client = pa::aggregation_service_client::AggregationServiceClient::new(channel);
    let mut request = dvk_client::import::authorized(
        pa::GetRollupRequest {
            period: Some(dvk_proto::common::v1::Period { code: "2024".into() }),
            tree: dvk_proto::common::v1::Tree::Pre2025 as i32,
            min_positions: tokens,
            ..Default::default()
        },
        token,
    )?;
    request.set_timeout(Duration::from_secs(60));
    client.get_rollup(request).await?;
    Ok(())
}

/// Waits until each follower in this process holds its upstream's log up to the head it
/// has now: reporting follows registration, and then the aggregation both.
async fn followers_caught_up(
    registration: &EventLog,
    reporting: &EventLog,
    aggregation: &EventLog,
) -> anyhow::Result<()> {
    for (upstream, consumer) in [(registration, reporting), (registration, aggregation), (reporting, aggregation)] {
        let head = upstream.head();
        while dvk_bus::local::LocalSource::received(upstream, consumer)? < head {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", args.data_dir.display()))?;
    let mut auth = args.auth.clone();
    let dev_secret_file = if auth.jwt_hs256_secret_file.is_none() && auth.jwt_public_key_file.is_none() {
        let path = dev_secret(&args.data_dir)?;
        auth.jwt_hs256_secret_file = Some(path.clone());
        Some(path)
    } else {
        None
    };
    let mut schedule = dvk_reporting::schedule::load(args.schedule_file.as_deref())?;
    if args.demo && args.schedule_file.is_none() {
        // The demo fills in 2024: its reports are due and locked long after today.
        let open =
            dvk_domain::schedule::Deadline { opens_before_end: 15, due_after_end: 36_500, locks_after_end: 36_500 };
        schedule = dvk_domain::schedule::Schedule { half_year: open, year: open, stage: open };
    }
    let settings = |service: &str, metrics_listen: Option<SocketAddr>| ServerSettings {
        data_dir: args.data_dir.join(service),
        metrics_listen,
        shutdown_timeout: Duration::from_secs(20),
        max_message_bytes: 16 << 20,
        tls: Default::default(),
        health_listen: None,
        max_calls_per_caller: 256,
        auth: auth.clone(),
    };
    let registration_settings = settings("registration", args.metrics_listen);
    let reporting_settings = settings("reporting", None);
    let registration_log = dvk_registration::open_log(&registration_settings)?;
    let reporting_log = dvk_reporting::open_log(&reporting_settings)?;
    let aggregation_settings = settings("aggregation", None);
    let aggregation_log = dvk_aggregation::open_log(&aggregation_settings)?;
    let first_start = registration_log.head() == 0;
    let no_reports = reporting_log.head() == 0;
    runtime.block_on(async {
        let signals = dvk_runtime::shutdown::Signals::install()?;
        let bind = |addr: SocketAddr, var: &'static str| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({var}): {e}"))
        };
        let registration_listener = bind(args.registration_listen, "DVK_REGISTRATION_LISTEN").await?;
        let reporting_listener = bind(args.reporting_listen, "DVK_REPORTING_LISTEN").await?;
        let registration_addr = registration_listener.local_addr()?;
        let reporting_addr = reporting_listener.local_addr()?;
        let aggregation_listener = bind(args.aggregation_listen, "DVK_AGGREGATION_LISTEN").await?;
        let aggregation_addr = aggregation_listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // Every service answers at once (the first start loads the trees through them) but
        // says NOT_SERVING on health until what this start loads is in: until then a
        // write at a real commune would be refused as "not a unit".
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(3);
        let (loaded_tx, loaded_rx) = tokio::sync::watch::channel(false);
        let ready = |tx: tokio::sync::mpsc::Sender<()>| {
            let mut loaded = loaded_rx.clone();
            dvk_runtime::server::Gated {
                answering: move || {
                    let _ = tx.try_send(());
                },
                gate: Box::pin(async move {
                    let _ = loaded.wait_for(|l| *l).await;
                }),
            }
        };
        let mut services = tokio::task::JoinSet::new();
        services.spawn(dvk_registration::serve(
            registration_listener,
            registration_settings,
            registration_log.clone(),
            None,
            stopped(stop_rx.clone()),
            ready(ready_tx.clone()),
        ));
        let links = dvk_reporting::Links {
            relay: None,
            registration: Some(dvk_runtime::host::Upstream::Local(registration_log.clone())),
        };
        services.spawn(dvk_reporting::serve(
            reporting_listener,
            reporting_settings,
            schedule,
            reporting_log.clone(),
            links,
            stopped(stop_rx.clone()),
            ready(ready_tx.clone()),
        ));
        let links = dvk_aggregation::Links {
            registration: Some(dvk_runtime::host::Upstream::Local(registration_log.clone())),
            reporting: Some(dvk_runtime::host::Upstream::Local(reporting_log.clone())),
        };
        services.spawn(dvk_aggregation::serve(
            aggregation_listener,
            aggregation_settings,
            100_000,
            aggregation_log.clone(),
            links,
            stopped(stop_rx.clone()),
            ready(ready_tx),
        ));
        // Say where things are only once every service answers.
        for _ in 0..3 {
            tokio::select! {
                _ = ready_rx.recv() => {}
                r = services.join_next() => {
                    if let Some(r) = r { r??; }
                    anyhow::bail!("a service stopped unexpectedly");
                }
            }
        }
        println!("DVK Ledger: data under {}", args.data_dir.display());
        println!("  registration  gRPC on {registration_addr}");
        println!("  reporting     gRPC on {reporting_addr}");
        println!("  aggregation   gRPC on {aggregation_addr}");
        let mint = |role: &str| -> anyhow::Result<Option<String>> {
            let Some(secret) = &dev_secret_file else { return Ok(None) };
            let bytes = std::fs::read(secret)?;
            let claims = dvk_runtime::auth::Claims {
                sub: format!("dvk-{role}"),
                role: role.into(),
                unit: String::new(),
                exp: dvk_runtime::auth::now_secs() + 3600,
            };
            Ok(Some(dvk_runtime::auth::mint_hs256(bytes.trim_ascii(), &claims)?))
        };
        let admin = mint("admin")?;
        if let Some(token) = &admin {
            if first_start {
                println!("First start: loading the administrative trees (GSO lists before and after 1 July 2025)");
                demo::load_trees(registration_addr, token).await?;
            }
            if args.demo && no_reports {
                println!("Loading the demo workload (2024, provinces {})", demo::PROVINCES.join(", "));
                let approver = mint("approver")?.unwrap_or_default();
                let (summary, tokens) = demo::run(registration_addr, reporting_addr, token, &approver).await?;
                wait_for_rollups(aggregation_addr, token, tokens).await?;
                let path = args.data_dir.join("demo.json");
                std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)?;
                println!(
                    "  {} models and {} reports recorded; summary in {}",
                    summary.models_registered,
                    summary.periods.values().map(|p| p.submitted).sum::<i64>(),
                    path.display()
                );
            }
        } else if first_start || args.demo {
            println!("JWT keys are configured, so nothing is loaded: import the trees with `dvkctl units import`.");
        }
        tokio::select! {
            r = followers_caught_up(&registration_log, &reporting_log, &aggregation_log) => r?,
            r = services.join_next() => {
                if let Some(r) = r { r??; }
                anyhow::bail!("a service stopped unexpectedly");
            }
        }
        let _ = loaded_tx.send(true);
        if let Some(secret) = &dev_secret_file {
            println!("Development token secret: {}", secret.display());
            println!("Try:");
            println!("  alias dvkctl='cargo run -q --release -p dvk-cli --bin dvkctl --'");
            println!("  export DVK_TOKEN=$(dvkctl token --secret-file {} --role admin)", secret.display());
            println!("  dvkctl rollup --tree pre2025 --period 2024-H1");
            println!("  dvkctl children --tree pre2025 --period 2024-H1 --sort models-registered");
            println!("  dvkctl completeness --tree pre2025 --period 2024-H1 --unit 22 --children");
        }
        println!("Stop with Ctrl-C.");
        tokio::select! {
            () = signals.recv() => {}
            r = services.join_next() => {
                if let Some(r) = r { r??; }
                anyhow::bail!("a service stopped unexpectedly");
            }
        }
        let _ = stop_tx.send(true);
        while let Some(r) = services.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })?;
    println!("DVK Ledger: stopped, logs flushed");
    Ok(())
}
