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
    let signals = match dvk_runtime::shutdown::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %args.settings.listen, error = %e, "cannot listen (DVK_REGISTRATION_LISTEN)");
            return ExitCode::from(dvk_runtime::settings::EXIT_BAD_SETTINGS as u8);
        }
    };
    match dvk_registration::run(listener, args.settings.server, signals.recv()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (dvk_registration::Error::Auth(_) | dvk_registration::Error::Tls(_))) => {
            tracing::error!("{e}");
            ExitCode::from(dvk_runtime::settings::EXIT_BAD_SETTINGS as u8)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
