//! `dvk-registration`: the registration service as its own process.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "DVK Ledger registration service")]
struct Args {
    #[command(flatten)]
    settings: dvk_registration::Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    dvk_runtime::telemetry::init();
    let server = args.settings.server;
    dvk_runtime::host::run_process(args.settings.listen, "DVK_REGISTRATION_LISTEN", |listener, shutdown| {
        dvk_registration::run(listener, server, shutdown)
    })
    .await
}
