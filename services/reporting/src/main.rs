//! `dvk-reporting`: the reporting service as its own process.

use std::process::ExitCode;

use clap::Parser;
use dvk_runtime::settings::EXIT_BAD_SETTINGS;

/// See `dvk_runtime::Allocator`.
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

#[derive(Debug, Parser)]
#[command(version, about = "DVK Ledger reporting service")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: dvk_reporting::Settings,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Fill the log in DVK_DATA_DIR (empty, or restored from a backup) from the
    /// service's topic, then exit. Run it with the service stopped.
    RestoreFromTopic,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    dvk_runtime::telemetry::init();
    if let Some(Command::RestoreFromTopic) = args.command {
        return dvk_runtime::host::restore_process(dvk_reporting::open_log(&args.settings.server)).await;
    }
    let schedule = match dvk_reporting::schedule::load(args.settings.schedule_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e} (DVK_REPORTING_SCHEDULE_FILE)");
            return ExitCode::from(EXIT_BAD_SETTINGS as u8);
        }
    };
    let server = args.settings.server;
    dvk_runtime::host::run_process(args.settings.listen, "DVK_REPORTING_LISTEN", |listener, shutdown| {
        dvk_reporting::run(listener, server, schedule, shutdown)
    })
    .await
}
