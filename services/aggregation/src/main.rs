//! `dvk-aggregation`: the aggregation service as its own process.

use std::process::ExitCode;

use clap::Parser;

/// See `dvk_runtime::Allocator`.
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

#[derive(Debug, Parser)]
#[command(version, about = "DVK Ledger aggregation service")]
struct Args {
    #[command(flatten)]
    settings: dvk_aggregation::Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    dvk_runtime::telemetry::init();
    // Every other DVK_KAFKA_* variable passes through to librdkafka.
    args.settings.kafka = args.settings.kafka.with_env_options(std::env::vars());
    let listen = args.settings.listen;
    dvk_runtime::host::run_process(listen, "DVK_AGGREGATION_LISTEN", |listener, shutdown| {
        dvk_aggregation::run(listener, args.settings, shutdown)
    })
    .await
}
