//! `dvk`: DVK Ledger in one process, the embedded default. Opens the event log of
//! each service under the data directory and keeps them open until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dvk_eventlog::{EventLog, LogConfig};

/// The services whose logs live under the data directory, one sled directory each.
const SERVICES: [&str; 3] = ["registration", "reporting", "aggregation"];

/// DVK Ledger, all services in one process.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where each service keeps its sled directory (`<dir>/registration`, ...).
    #[arg(long, env = "DVK_DATA_DIR", default_value = "./dvk-data")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut logs = Vec::new();
    for service in SERVICES {
        let path = args.data_dir.join(service);
        let log = EventLog::open(LogConfig::new(&path, service))
            .map_err(|e| anyhow::anyhow!("cannot open the {service} log at {}: {e}", path.display()))?;
        logs.push(log);
    }
    println!("DVK Ledger: event logs open under {}", args.data_dir.display());
    for log in &logs {
        println!("  {:<13} {} events", log.source(), log.head());
    }
    println!("The gRPC services are not served by this build yet. Stop with Ctrl-C.");
    runtime.block_on(shutdown_signal())?;
    for log in &logs {
        log.close()?;
    }
    println!("DVK Ledger: logs flushed and closed");
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
