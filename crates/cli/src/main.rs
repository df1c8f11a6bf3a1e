//! `dvkctl`: the command line of DVK Ledger's operators and analysts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dvk_cli::{gso, import, reports};
use dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient;
use dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dvk_runtime::auth::{Claims, mint_hs256, now_secs};

/// Exit codes: 0 ok, 1 other failure, 2 usage or invalid input, 3 not found, 4 denied.
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_DENIED: u8 = 4;

#[derive(Debug, Parser)]
#[command(name = "dvkctl", version, about = "DVK Ledger command line")]
struct Cli {
    /// The registration service.
    #[arg(long, global = true, env = "DVK_REGISTRATION_URL", default_value = "http://127.0.0.1:50051")]
    registration: String,
    /// The reporting service.
    #[arg(long, global = true, env = "DVK_REPORTING_URL", default_value = "http://127.0.0.1:50052")]
    reporting: String,
    /// Bearer token (see `dvkctl token`).
    #[arg(long, global = true, env = "DVK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Administrative units.
    Units {
        #[command(subcommand)]
        command: UnitsCommand,
    },
    /// Periodic reports.
    Reports {
        #[command(subcommand)]
        command: ReportsCommand,
    },
    /// Mint a development token signed with an HS256 secret.
    ///
    /// Example: dvkctl token --secret-file dvk-data/dev-jwt-secret --role admin
    Token {
        /// File holding the HS256 secret the services are configured with.
        #[arg(long, env = "DVK_JWT_HS256_SECRET_FILE")]
        secret_file: PathBuf,
        /// reporter, approver, analyst or admin.
        #[arg(long)]
        role: String,
        /// The unit the caller acts for (GSO code); omit for the nation.
        #[arg(long, default_value = "")]
        unit: String,
        /// The subject (who the caller is).
        #[arg(long, default_value = "dvkctl")]
        subject: String,
        /// How long the token is valid, in hours.
        #[arg(long, default_value_t = 12)]
        hours: u64,
    },
}

#[derive(Debug, Subcommand)]
enum UnitsCommand {
    /// Import a GSO list: the commune list before 1 July 2025 (pre-2025 tree) or the
    /// 2025 conversion table (2025 tree and the mapping). All or nothing; importing
    /// the same file again changes nothing.
    ///
    /// Example: dvkctl units import data/admin-units/gso-communes-2025-01-04.csv
    Import {
        file: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ReportsCommand {
    /// Submit the reports of a filled-in template (.xlsx, .xls, .ods or .csv), one row
    /// per unit and period. Each row is answered on its own: accepted rows are
    /// submitted, refused rows are listed with their row number and the reason.
    /// Importing the same sheet again changes nothing. Exit code 2 if any row was
    /// refused.
    ///
    /// Example: dvkctl reports import bao-cao-2025-H1.xlsx
    Import {
        file: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Write the empty template: .xlsx (with a sheet explaining each column) or .csv.
    ///
    /// Example: dvkctl reports template bao-cao.xlsx
    Template { file: PathBuf },
}

/// Connects to a service at `url`; `flag` names the option that sets it.
async fn connect(url: &str, flag: &str, service: &str) -> Result<tonic::transport::Channel, (u8, String)> {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| (EXIT_USAGE, format!("{flag} {url}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| (1, format!("cannot reach the {service} service at {url}: {e}")))
}

fn progress_bar(quiet: bool, len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(len as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {what}"))
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("importing");
    bar
}

fn exit_for(status: &tonic::Status) -> u8 {
    match status.code() {
        tonic::Code::NotFound => EXIT_NOT_FOUND,
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => EXIT_DENIED,
        tonic::Code::InvalidArgument => EXIT_USAGE,
        _ => 1,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("dvkctl: {message}");
            ExitCode::from(code)
        }
    }
}

fn need_token(token: Option<String>) -> Result<String, (u8, String)> {
    token.ok_or((EXIT_USAGE, "a token is needed: --token or DVK_TOKEN (see dvkctl token)".into()))
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    match cli.command {
        Command::Token { secret_file, role, unit, subject, hours } => {
            if dvk_runtime::Role::parse(&role).is_none() {
                return Err((EXIT_USAGE, format!("--role {role:?}: use reporter, approver, analyst or admin")));
            }
            if !unit.is_empty() {
                dvk_domain::UnitCode::parse("--unit", &unit).map_err(|e| (EXIT_USAGE, e.to_string()))?;
            }
            let secret =
                std::fs::read(&secret_file).map_err(|e| (1, format!("cannot read {}: {e}", secret_file.display())))?;
            let claims = Claims { sub: subject, role, unit, exp: now_secs() + hours * 3600 };
            let token = mint_hs256(secret.trim_ascii(), &claims).map_err(|e| (1, e.to_string()))?;
            println!("{token}");
            Ok(())
        }
        Command::Units { command: UnitsCommand::Import { file, quiet } } => {
            let token = need_token(cli.token)?;
            let reader =
                std::fs::File::open(&file).map_err(|e| (EXIT_USAGE, format!("cannot open {}: {e}", file.display())))?;
            let parsed = gso::read(std::io::BufReader::new(reader))
                .map_err(|e| (EXIT_USAGE, format!("{}: {e}", file.display())))?;
            for (line, why) in &parsed.skipped {
                eprintln!("dvkctl: {}: line {line} skipped: {why}", file.display());
            }
            let channel = connect(&cli.registration, "--registration", "registration").await?;
            let mut client = RegistrationServiceClient::new(channel).max_encoding_message_size(16 << 20);
            let bar = progress_bar(quiet, parsed.units.len(), "units");
            let progress_bar = bar.clone();
            let origin = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let outcome =
                import::import(&mut client, &token, &parsed, &origin, move |n| progress_bar.set_position(n)).await;
            bar.finish_and_clear();
            let outcome = outcome.map_err(|e| match &e {
                import::ImportError::Status(s) => (exit_for(s), format!("{}: {}", file.display(), s.message())),
                other => (EXIT_USAGE, format!("{}: {other}", file.display())),
            })?;
            let u = &outcome.units;
            println!(
                "{}: {} units received, {} added, {} already present",
                file.display(),
                u.units_received,
                u.units_added,
                u.units_unchanged
            );
            if let Some(l) = &outcome.links {
                println!("{}: {} mapping links received, {} added", file.display(), l.links_received, l.links_added);
            }
            Ok(())
        }
        Command::Reports { command: ReportsCommand::Template { file } } => {
            reports::write_template(&file).map_err(|e| (EXIT_USAGE, e.to_string()))?;
            println!("{}: template written; fill one row per unit and period", file.display());
            Ok(())
        }
        Command::Reports { command: ReportsCommand::Import { file, quiet } } => {
            let token = need_token(cli.token)?;
            let rows = reports::read(&file).map_err(|e| (EXIT_USAGE, e.to_string()))?;
            let channel = connect(&cli.reporting, "--reporting", "reporting").await?;
            let mut client = ReportingServiceClient::new(channel);
            let bar = progress_bar(quiet, rows.len(), "rows");
            let progress = bar.clone();
            let outcomes = reports::submit(&mut client, &token, &rows, move |n| progress.set_position(n)).await;
            bar.finish_and_clear();
            let mut refused = 0;
            for o in &outcomes {
                match &o.result {
                    Ok(r) => println!("row {}: accepted {} (version {})", o.row, r.report_id, r.version),
                    Err(why) => {
                        refused += 1;
                        let id = if o.report_id.is_empty() { String::new() } else { format!("{} ", o.report_id) };
                        println!("row {}: refused {id}— {why}", o.row);
                    }
                }
            }
            println!("{}: {} rows accepted, {refused} refused", file.display(), outcomes.len() - refused);
            if refused > 0 {
                return Err((EXIT_USAGE, format!("{refused} row(s) of {} refused; see above", file.display())));
            }
            Ok(())
        }
    }
}
