//! `dvk-reporting`: the reporting service as its own process.

use std::process::ExitCode;

use clap::Parser;
use dvk_runtime::settings::EXIT_BAD_SETTINGS;

#[derive(Debug, Parser)]
#[command(version, about = "DVK Ledger reporting service")]
struct Args {
    #[command(flatten)]
    settings: dvk_reporting::Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    dvk_runtime::telemetry::init();
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
