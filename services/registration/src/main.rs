//! `dvk-registration`: the registration service as its own process.

use std::process::ExitCode;

use clap::Parser;

/// See `dvk_runtime::Allocator`.
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

#[derive(Debug, Parser)]
#[command(version, about = "DVK Ledger registration service")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: dvk_registration::Settings,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Fill the log in DVK_DATA_DIR (empty, or restored from a backup) from the
    /// service's topic, then exit. Run it with the service stopped.
    RestoreFromTopic,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    dvk_runtime::telemetry::init();
    // Every other DVK_KAFKA_* variable passes through to librdkafka.
    args.settings.kafka = args.settings.kafka.with_env_options(std::env::vars());
    if let Some(Command::RestoreFromTopic) = args.command {
        let log = dvk_registration::open_log(&args.settings.server);
        return dvk_runtime::host::restore_process(log, args.settings.kafka.config()).await;
    }
    let listen = args.settings.listen;
    dvk_runtime::host::run_process(listen, "DVK_REGISTRATION_LISTEN", |listener, shutdown| {
        dvk_registration::run(listener, args.settings, shutdown)
    })
    .await
}
