//! `dvk`: DVK Ledger in one process, the embedded default. Serves the registration
//! service and keeps every service's event log under one data directory, until SIGINT
//! or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dvk_eventlog::{EventLog, LogConfig};
use dvk_runtime::settings::{AuthSettings, ServerSettings};

/// Logs opened here until their services are served by this binary.
const LOG_ONLY: [&str; 2] = ["reporting", "aggregation"];

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
    let mut logs = Vec::new();
    for service in LOG_ONLY {
        let path = args.data_dir.join(service);
        let log = EventLog::open(LogConfig::new(&path, service))
            .map_err(|e| anyhow::anyhow!("cannot open the {service} log at {}: {e}", path.display()))?;
        logs.push(log);
    }
    let settings = ServerSettings {
        data_dir: args.data_dir.join("registration"),
        metrics_listen: args.metrics_listen,
        shutdown_timeout: Duration::from_secs(20),
        max_message_bytes: 16 << 20,
        auth,
    };
    runtime.block_on(async {
        let signals = dvk_runtime::shutdown::Signals::install()?;
        let listener = tokio::net::TcpListener::bind(args.registration_listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (DVK_REGISTRATION_LISTEN): {e}", args.registration_listen))?;
        let bound = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let mut registration = tokio::spawn(dvk_registration::run_notify(
            listener,
            settings,
            async move {
                let _ = stop_rx.await;
            },
            move || {
                let _ = ready_tx.send(());
            },
        ));
        // Say where things are only once the service answers.
        tokio::select! {
            _ = ready_rx => {}
            r = &mut registration => {
                r??;
                anyhow::bail!("the registration service stopped unexpectedly");
            }
        }
        println!("DVK Ledger: data under {}", args.data_dir.display());
        println!("  registration  gRPC on {bound}");
        for log in &logs {
            println!("  {:<13} log open, {} events (service not served by this build yet)", log.source(), log.head());
        }
        if let Some(secret) = &dev_secret_file {
            println!("Development token secret: {}", secret.display());
            println!("Try:");
            println!(
                "  export DVK_TOKEN=$(cargo run -q --release -p dvk-cli --bin dvkctl -- token --secret-file {} --role admin)",
                secret.display()
            );
            println!(
                "  cargo run -q --release -p dvk-cli --bin dvkctl -- units import crates/domain/data/admin-units/gso-communes-2025-01-04.csv"
            );
            println!(
                "  cargo run -q --release -p dvk-cli --bin dvkctl -- units import crates/domain/data/admin-units/gso-reorganization-2025-07-01.csv"
            );
        }
        println!("Stop with Ctrl-C.");
        tokio::select! {
            () = signals.recv() => {
                let _ = stop_tx.send(());
                registration.await??;
            }
            r = &mut registration => {
                r??;
                anyhow::bail!("the registration service stopped unexpectedly");
            }
        }
        anyhow::Ok(())
    })?;
    for log in &logs {
        log.close()?;
    }
    println!("DVK Ledger: stopped, logs flushed");
    Ok(())
}
