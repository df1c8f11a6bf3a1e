//! `dvkctl`: the command line of DVK Ledger's operators and analysts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dvk_cli::{analyst, call, chart, output};
use dvk_client::token::{Claims, ROLES, mint_hs256, now_secs};
use dvk_client::{import, reports};
use dvk_codec::convert;
use dvk_domain::report::{Figure, Measure};
use dvk_proto::aggregation::v1::GetRollupRequest;
use dvk_proto::aggregation::v1::aggregation_service_client::AggregationServiceClient;
use dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient;
use dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient;

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
    /// The aggregation service.
    #[arg(long, global = true, env = "DVK_AGGREGATION_URL", default_value = "http://127.0.0.1:50053")]
    aggregation: String,
    /// Bearer token (see `dvkctl token`).
    #[arg(long, global = true, env = "DVK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate to verify the services with, for https:// addresses.
    #[arg(long, global = true, env = "DVK_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Print JSON (for scripts) instead of a table.
    #[arg(long, global = true, conflicts_with = "csv")]
    json: bool,
    /// Print CSV (for spreadsheets) instead of a table.
    #[arg(long, global = true)]
    csv: bool,
    #[command(subcommand)]
    command: Command,
}

/// Which roll-ups a query reads.
#[derive(Debug, Clone, clap::Args)]
struct Scope {
    /// The unit (GSO code); omit for the nation.
    #[arg(long)]
    unit: Option<String>,
    /// The period: 2024-H1, 2024-H2, 2024 or 2021-2025.
    #[arg(long)]
    period: String,
    /// The tree: 2025 (province → commune) or pre2025 (province → district → commune).
    /// Default: the tree in force when the period ends.
    #[arg(long, value_parser = ["2025", "pre2025"])]
    tree: Option<String>,
    /// Count only approved reports (the default).
    #[arg(long, conflicts_with = "include_unapproved")]
    approved_only: bool,
    /// Also count reports submitted but not (yet) approved.
    #[arg(long)]
    include_unapproved: bool,
}

/// What a ranking sorts by and a chart draws: the unit code, a model count of the
/// registry, or a reported figure (named as its column, in kebab case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Code,
    ModelsRegistered,
    ModelsRecognized,
    ModelsExemplary,
    Figure(Figure),
}

impl SortBy {
    /// Every value, the figures in declaration order after the registry's counts.
    const ALL: [SortBy; 4 + Figure::COUNT] = {
        let mut all = [SortBy::Code; 4 + Figure::COUNT];
        all[1] = SortBy::ModelsRegistered;
        all[2] = SortBy::ModelsRecognized;
        all[3] = SortBy::ModelsExemplary;
        let mut i = 0;
        while i < Figure::COUNT {
            all[4 + i] = SortBy::Figure(Figure::ALL[i]);
            i += 1;
        }
        all
    };

    /// Names the values had before they were derived from the figures' columns.
    const FORMER_NAMES: [(Figure, &'static str); 2] =
        [(Figure::FundsMobilized, "funds"), (Figure::DialoguesHeld, "dialogues")];

    fn field(self) -> dvk_proto::aggregation::v1::SortField {
        use dvk_proto::aggregation::v1::SortField as F;
        match self {
            SortBy::Code => F::UnitCode,
            SortBy::ModelsRegistered => F::ModelsRegistered,
            SortBy::ModelsRecognized => F::ModelsRecognized,
            SortBy::ModelsExemplary => F::ModelsExemplary,
            SortBy::Figure(f) => convert::sort_field(f),
        }
    }

    /// The value a chart draws.
    fn value(self, models: &dvk_proto::aggregation::v1::ModelCounts, f: &dvk_proto::common::v1::Figures) -> i64 {
        match self {
            SortBy::Code | SortBy::ModelsRegistered => models.registered,
            SortBy::ModelsRecognized => models.recognized,
            SortBy::ModelsExemplary => models.exemplary,
            SortBy::Figure(figure) => convert::figure_of(f, figure),
        }
    }

    /// What a chart of it draws, in words.
    fn label(self, lang: chart::Lang) -> String {
        match self {
            SortBy::Code | SortBy::ModelsRegistered => lang.pick("Số mô hình đăng ký", "Models registered").to_owned(),
            SortBy::ModelsRecognized => lang.pick("Số mô hình được công nhận", "Models recognised").to_owned(),
            SortBy::ModelsExemplary => lang.pick("Số mô hình điển hình", "Exemplary models").to_owned(),
            SortBy::Figure(f) => {
                let unit = if f.measure() == Measure::Vnd { lang.pick(" (đồng)", " (VND)") } else { "" };
                let reported = if analyst::figure_column(f) == f.name() {
                    ""
                } else {
                    lang.pick(", theo báo cáo", ", as reported")
                };
                format!("{}{unit}{reported}", lang.pick(f.vi(), f.en()))
            }
        }
    }
}

impl clap::ValueEnum for SortBy {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            SortBy::Code => PossibleValue::new("code"),
            SortBy::ModelsRegistered => PossibleValue::new("models-registered"),
            SortBy::ModelsRecognized => PossibleValue::new("models-recognized"),
            SortBy::ModelsExemplary => PossibleValue::new("models-exemplary"),
            SortBy::Figure(f) => PossibleValue::new(analyst::figure_column(*f).replace('_', "-"))
                .help(f.en())
                .aliases(Self::FORMER_NAMES.iter().filter(|(g, _)| g == f).map(|(_, name)| *name)),
        })
    }
}

/// A ranking's arguments.
#[derive(Debug, Clone, clap::Args)]
struct RankingArgs {
    #[command(flatten)]
    scope: Scope,
    /// Every unit at this level under the unit, instead of its direct children.
    #[arg(long, value_parser = ["province", "district", "commune"])]
    level: Option<String>,
    /// What to rank by.
    #[arg(long, value_enum, default_value = "models-registered")]
    sort: SortBy,
    /// Smallest first (default: largest first).
    #[arg(long)]
    ascending: bool,
    /// How many rows.
    #[arg(long, default_value_t = 100)]
    limit: i32,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Administrative units.
    Units {
        #[command(subcommand)]
        command: UnitsCommand,
    },
    /// A roll-up: what a unit (or the nation) and everything below it did in a period.
    ///
    /// Example: dvkctl rollup --unit 22 --period 2024-H1 --tree pre2025
    Rollup {
        #[command(flatten)]
        scope: Scope,
        /// Wait until the roll-up includes a write: SOURCE:POSITION, as writes answer
        /// (e.g. reporting:1042). Repeatable.
        #[arg(long = "wait-for")]
        wait_for: Vec<String>,
        /// Answer as the roll-ups stood when these positions were reached
        /// (SOURCE:POSITION, repeatable).
        #[arg(long = "as-of")]
        as_of: Vec<String>,
    },
    /// A ranking of the units under a unit (or the provinces) by a figure.
    ///
    /// Example: dvkctl children --period 2024-H1 --tree pre2025 --sort funds
    Children {
        #[command(flatten)]
        ranking: RankingArgs,
    },
    /// A unit's (or the nation's) figures over consecutive periods of one kind.
    ///
    /// Example: dvkctl series --unit 22 --from 2024-H1 --to 2025-H2 --tree 2025
    Series {
        /// The unit; omit for the nation.
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_parser = ["2025", "pre2025"])]
        tree: Option<String>,
        #[arg(long)]
        include_unapproved: bool,
    },
    /// Expected, submitted, on-time and approved reports of a unit, and its children.
    ///
    /// Example: dvkctl completeness --unit 22 --period 2024-H1 --children
    Completeness {
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        period: String,
        #[arg(long, value_parser = ["2025", "pre2025"])]
        tree: Option<String>,
        /// Also each child unit.
        #[arg(long)]
        children: bool,
    },
    /// How far the aggregation has received and projected each source.
    ///
    /// Example: dvkctl status
    Status,
    /// Every event of a model or a report, with who did it and why.
    ///
    /// Example: dvkctl history report report-07192-2025-H1
    History {
        #[arg(value_parser = ["model", "report"])]
        kind: String,
        /// The model id or the report id.
        id: String,
    },
    /// Draw a ranking or a time series as an SVG chart.
    ///
    /// Example: dvkctl chart ranking --period 2024 --tree pre2025 --sort models-recognized --out provinces.svg
    Chart {
        #[command(subcommand)]
        chart: ChartCommand,
    },
    /// Call any unary RPC with a JSON request (protobuf JSON mapping); prints the JSON answer.
    ///
    /// Example: dvkctl call RegistrationService/GetUnit '{"tree": "TREE_2025", "code": {"code": "22"}}'
    Call {
        /// Service/Method, e.g. ReportingService/GetReport.
        method: String,
        /// The request as JSON; default {}.
        #[arg(default_value = "{}")]
        request: String,
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
    /// The conversion table is read with the reviewed corrections shipped beside it,
    /// reconciled with the pre-2025 list the service holds (import that first), and
    /// sent with the links inferred for units recoded between the two lists. A
    /// summary follows: counts, then every unit of either list without a counterpart,
    /// every correction and every row whose code and name disagree, as CSV.
    ///
    /// Example: dvkctl units import crates/gso/data/admin-units/gso-communes-2025-01-04.csv
    Import {
        file: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Write the reconciliation list (CSV) to this file instead of the output.
        #[arg(long, value_name = "FILE")]
        reconciliation_csv: Option<PathBuf>,
    },
    /// Add supplementary links to the 2025 mapping: a CSV with the header
    /// `old_code,new_code[,note]`, one link per row (a pre-2025 commune and the 2025
    /// commune its figures go to; the note, as in the table, defaults to a whole
    /// merge). The links are marked supplementary; the roll-ups re-express the past
    /// figures of those units at once, and what was unassigned shrinks accordingly.
    ///
    /// Example: dvkctl units link links.csv
    Link { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum ChartCommand {
    /// Bars of a ranking (see `children`).
    Ranking {
        #[command(flatten)]
        ranking: RankingArgs,
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
        /// The language of the chart's words and numbers.
        #[arg(long, value_enum, default_value = "vi")]
        lang: chart::Lang,
    },
    /// A line of one figure over periods.
    Series {
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_parser = ["2025", "pre2025"])]
        tree: Option<String>,
        /// Which figure.
        #[arg(long, value_enum, default_value = "models-registered")]
        figure: SortBy,
        #[arg(long)]
        out: PathBuf,
        /// The language of the chart's words and numbers.
        #[arg(long, value_enum, default_value = "vi")]
        lang: chart::Lang,
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

/// The CA that https:// addresses are verified with (`--ca-file` / `DVK_CA_FILE`).
static CA_FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Connects to a service at `url` (TLS for https://); `flag` names the option.
async fn connect(url: &str, flag: &str, service: &str) -> Result<tonic::transport::Channel, (u8, String)> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| (EXIT_USAGE, format!("{flag} {url}: {e}")))?
        .connect_timeout(Duration::from_secs(10));
    if url.starts_with("https://") {
        let Some(ca) = CA_FILE.get().cloned().flatten() else {
            return Err((EXIT_USAGE, format!("{flag} {url}: an https address needs --ca-file (or DVK_CA_FILE)")));
        };
        let pem = std::fs::read(&ca).map_err(|e| (EXIT_USAGE, format!("cannot read {}: {e}", ca.display())))?;
        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).map_err(|e| (EXIT_USAGE, format!("--ca-file: {e}")))?;
    }
    endpoint.connect().await.map_err(|e| (1, format!("cannot reach the {service} service at {url}: {e}")))
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

fn status_error(s: tonic::Status) -> (u8, String) {
    (exit_for(&s), s.message().to_owned())
}

/// The tree a query names, by default the one in force when `period` ends.
fn tree_of(tree: Option<&str>, period: &str) -> Result<i32, (u8, String)> {
    use dvk_proto::common::v1::Tree;
    Ok(match tree {
        Some("2025") => Tree::Tree2025 as i32,
        Some(_) => Tree::Pre2025 as i32,
        None => {
            let p = dvk_domain::Period::parse("--period", period).map_err(|e| (EXIT_USAGE, e.to_string()))?;
            match p.reporting_tree() {
                dvk_domain::Tree::Y2025 => Tree::Tree2025 as i32,
                dvk_domain::Tree::Pre2025 => Tree::Pre2025 as i32,
            }
        }
    })
}

fn unit_arg(u: &Option<String>) -> Option<dvk_proto::common::v1::UnitCode> {
    u.as_ref().map(|c| dvk_proto::common::v1::UnitCode { code: c.clone() })
}

fn period_arg(p: &str) -> Option<dvk_proto::common::v1::Period> {
    Some(dvk_proto::common::v1::Period { code: p.to_owned() })
}

/// SOURCE:POSITION arguments.
fn positions(list: &[String], flag: &str) -> Result<Vec<dvk_proto::common::v1::Position>, (u8, String)> {
    list.iter()
        .map(|p| {
            let (source, position) = p
                .split_once(':')
                .and_then(|(s, n)| Some((s.to_owned(), n.parse::<u64>().ok()?)))
                .ok_or_else(|| (EXIT_USAGE, format!("{flag} {p:?}: write SOURCE:POSITION, e.g. reporting:1042")))?;
            Ok(dvk_proto::common::v1::Position { source, position })
        })
        .collect()
}

fn level_arg(level: &Option<String>) -> i32 {
    use dvk_proto::common::v1::Level;
    match level.as_deref() {
        Some("province") => Level::Province as i32,
        Some("district") => Level::District as i32,
        Some("commune") => Level::Commune as i32,
        _ => 0,
    }
}

/// A unit's name as a chart writes it: the nation is "Viet Nam" in English.
fn in_words(name: &str, lang: chart::Lang) -> String {
    if name == "Việt Nam" { lang.pick("Việt Nam", "Viet Nam").to_owned() } else { name.to_owned() }
}

/// A period in words: `6 tháng đầu năm 2024` / `2024, first half`.
fn period_words(period: &str, lang: chart::Lang) -> String {
    let Ok(p) = dvk_domain::Period::parse("--period", period) else { return period.to_owned() };
    match (p, lang) {
        (dvk_domain::Period::Half { year, half: dvk_domain::period::Half::H1 }, chart::Lang::Vi) => {
            format!("6 tháng đầu năm {year}")
        }
        (dvk_domain::Period::Half { year, half: dvk_domain::period::Half::H2 }, chart::Lang::Vi) => {
            format!("6 tháng cuối năm {year}")
        }
        (dvk_domain::Period::Half { year, half: dvk_domain::period::Half::H1 }, chart::Lang::En) => {
            format!("{year}, first half")
        }
        (dvk_domain::Period::Half { year, half: dvk_domain::period::Half::H2 }, chart::Lang::En) => {
            format!("{year}, second half")
        }
        (dvk_domain::Period::Year(year), chart::Lang::Vi) => format!("năm {year}"),
        (dvk_domain::Period::Year(year), chart::Lang::En) => year.to_string(),
        (dvk_domain::Period::Stage { first, last }, chart::Lang::Vi) => format!("giai đoạn {first}–{last}"),
        (dvk_domain::Period::Stage { first, last }, chart::Lang::En) => format!("{first}–{last}"),
    }
}

fn list_request(r: &RankingArgs) -> Result<dvk_proto::aggregation::v1::ListRollupsRequest, (u8, String)> {
    Ok(dvk_proto::aggregation::v1::ListRollupsRequest {
        parent: unit_arg(&r.scope.unit),
        level: level_arg(&r.level),
        period: period_arg(&r.scope.period),
        tree: tree_of(r.scope.tree.as_deref(), &r.scope.period)?,
        include_unapproved: r.scope.include_unapproved,
        sort_by: r.sort.field() as i32,
        descending: !r.ascending,
        page_size: r.limit,
        ..Default::default()
    })
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    let _ = CA_FILE.set(cli.ca_file.clone());
    let format = if cli.json {
        output::Format::Json
    } else if cli.csv {
        output::Format::Csv
    } else {
        output::Format::Table
    };
    let aggregation = || async {
        let channel = connect(&cli.aggregation, "--aggregation", "aggregation").await?;
        Ok::<_, (u8, String)>(AggregationServiceClient::new(channel))
    };
    match cli.command {
        Command::Rollup { scope, wait_for, as_of } => {
            let token = need_token(cli.token.clone())?;
            let min_positions = positions(&wait_for, "--wait-for")?;
            let as_of = positions(&as_of, "--as-of")?;
            let request = dvk_proto::aggregation::v1::GetRollupRequest {
                unit: unit_arg(&scope.unit),
                period: period_arg(&scope.period),
                tree: tree_of(scope.tree.as_deref(), &scope.period)?,
                include_unapproved: scope.include_unapproved,
                min_positions: min_positions.clone(),
                as_of: (!as_of.is_empty()).then_some(dvk_proto::aggregation::v1::AsOf {
                    point: Some(dvk_proto::aggregation::v1::as_of::Point::Positions(
                        dvk_proto::common::v1::PositionSet { positions: as_of },
                    )),
                }),
                // The first 100 units whose figures are unassigned in this tree.
                ..Default::default()
            };
            let mut request = import::authorized(request, &token).map_err(status_error)?;
            request.set_timeout(Duration::from_secs(30));
            let spinner = if min_positions.is_empty() {
                indicatif::ProgressBar::hidden()
            } else {
                let s = indicatif::ProgressBar::new_spinner();
                s.set_message("waiting for the roll-ups to include the write");
                s.enable_steady_tick(Duration::from_millis(100));
                s
            };
            let r = aggregation().await?.get_rollup(request).await.map_err(status_error)?.into_inner();
            spinner.finish_and_clear();
            print!("{}", analyst::rollup_record(&r).render(format));
            Ok(())
        }
        Command::Children { ranking } => {
            let token = need_token(cli.token.clone())?;
            let request = import::authorized(list_request(&ranking)?, &token).map_err(status_error)?;
            let r = aggregation().await?.list_rollups(request).await.map_err(status_error)?.into_inner();
            print!("{}", analyst::rollups_table(&r.rollups).render(format));
            Ok(())
        }
        Command::Series { unit, from, to, tree, include_unapproved } => {
            let token = need_token(cli.token.clone())?;
            let request = dvk_proto::aggregation::v1::GetTimeSeriesRequest {
                unit: unit_arg(&unit),
                tree: tree_of(tree.as_deref(), &to)?,
                from: period_arg(&from),
                to: period_arg(&to),
                include_unapproved,
            };
            let request = import::authorized(request, &token).map_err(status_error)?;
            let r = aggregation().await?.get_time_series(request).await.map_err(status_error)?.into_inner();
            print!("{}", analyst::series_table(&r.points).render(format));
            Ok(())
        }
        Command::Completeness { unit, period, tree, children } => {
            let token = need_token(cli.token.clone())?;
            let request = dvk_proto::aggregation::v1::GetCompletenessRequest {
                unit: unit_arg(&unit),
                period: period_arg(&period),
                tree: tree_of(tree.as_deref(), &period)?,
                include_children: children,
            };
            let request = import::authorized(request, &token).map_err(status_error)?;
            let r = aggregation().await?.get_completeness(request).await.map_err(status_error)?.into_inner();
            print!("{}", analyst::completeness_table(&r).render(format));
            Ok(())
        }
        Command::Status => {
            let token = need_token(cli.token.clone())?;
            let request = import::authorized(dvk_proto::aggregation::v1::GetProjectionStatusRequest {}, &token)
                .map_err(status_error)?;
            let r = aggregation().await?.get_projection_status(request).await.map_err(status_error)?.into_inner();
            print!("{}", analyst::status_table(&r).render(format));
            Ok(())
        }
        Command::History { kind, id } => {
            let token = need_token(cli.token.clone())?;
            let mut events = Vec::new();
            let mut page_token = String::new();
            loop {
                let (batch, next) = if kind == "model" {
                    let channel = connect(&cli.registration, "--registration", "registration").await?;
                    let request = dvk_proto::registration::v1::GetModelHistoryRequest {
                        model_id: id.clone(),
                        page_size: 1000,
                        page_token: page_token.clone(),
                    };
                    let r = RegistrationServiceClient::new(channel)
                        .get_model_history(import::authorized(request, &token).map_err(status_error)?)
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    (r.events, r.next_page_token)
                } else {
                    let channel = connect(&cli.reporting, "--reporting", "reporting").await?;
                    let request = dvk_proto::reporting::v1::GetReportHistoryRequest {
                        report_id: id.clone(),
                        page_size: 1000,
                        page_token: page_token.clone(),
                    };
                    let r = ReportingServiceClient::new(channel)
                        .get_report_history(import::authorized(request, &token).map_err(status_error)?)
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    (r.events, r.next_page_token)
                };
                events.extend(batch);
                if next.is_empty() {
                    break;
                }
                page_token = next;
            }
            print!("{}", analyst::history_table(&events).render(format));
            Ok(())
        }
        Command::Chart { chart: ChartCommand::Ranking { ranking, out, lang } } => {
            let token = need_token(cli.token.clone())?;
            let tree = tree_of(ranking.scope.tree.as_deref(), &ranking.scope.period)?;
            let request = import::authorized(list_request(&ranking)?, &token).map_err(status_error)?;
            let r = aggregation().await?.list_rollups(request).await.map_err(status_error)?.into_inner();
            let bars: Vec<(String, i64)> = r
                .rollups
                .iter()
                .map(|x| {
                    let value =
                        ranking.sort.value(&x.models.clone().unwrap_or_default(), &x.figures.unwrap_or_default());
                    (x.unit_name.clone(), value)
                })
                .collect();
            let name = {
                let request = GetRollupRequest {
                    unit: unit_arg(&ranking.scope.unit),
                    period: period_arg(&ranking.scope.period),
                    tree,
                    ..Default::default()
                };
                let request = import::authorized(request, &token).map_err(status_error)?;
                aggregation().await?.get_rollup(request).await.map_err(status_error)?.into_inner().unit_name
            };
            let figure = ranking.sort.label(lang);
            let labels = chart::Labels {
                lang,
                title: format!("{figure} — {}, {}", in_words(&name, lang), period_words(&ranking.scope.period, lang)),
                value_axis: figure,
                category_axis: lang.pick("Đơn vị", "Unit").to_owned(),
            };
            chart::ranking(&out, &labels, &bars).map_err(|e| (EXIT_USAGE, e.to_string()))?;
            println!("{}: {} bars", out.display(), bars.len());
            Ok(())
        }
        Command::Chart { chart: ChartCommand::Series { unit, from, to, tree, figure, out, lang } } => {
            let token = need_token(cli.token.clone())?;
            let tree = tree_of(tree.as_deref(), &to)?;
            let request = dvk_proto::aggregation::v1::GetTimeSeriesRequest {
                unit: unit_arg(&unit),
                tree,
                from: period_arg(&from),
                to: period_arg(&to),
                include_unapproved: false,
            };
            let request = import::authorized(request, &token).map_err(status_error)?;
            let r = aggregation().await?.get_time_series(request).await.map_err(status_error)?.into_inner();
            let points: Vec<(String, i64)> = r
                .points
                .iter()
                .map(|p| {
                    let value = figure.value(&p.models.clone().unwrap_or_default(), &p.figures.unwrap_or_default());
                    (p.period.as_ref().map(|p| p.code.clone()).unwrap_or_default(), value)
                })
                .collect();
            let name = {
                let request =
                    GetRollupRequest { unit: unit_arg(&unit), period: period_arg(&to), tree, ..Default::default() };
                let request = import::authorized(request, &token).map_err(status_error)?;
                aggregation().await?.get_rollup(request).await.map_err(status_error)?.into_inner().unit_name
            };
            let label = figure.label(lang);
            let span = format!("{} … {}", period_words(&from, lang), period_words(&to, lang));
            let labels = chart::Labels {
                lang,
                title: format!("{label} — {}, {span}", in_words(&name, lang)),
                value_axis: label,
                category_axis: lang.pick("Kỳ báo cáo", "Period").to_owned(),
            };
            chart::series(&out, &labels, &points).map_err(|e| (EXIT_USAGE, e.to_string()))?;
            println!("{}: {} points", out.display(), points.len());
            Ok(())
        }
        Command::Call { method, request } => {
            let token = need_token(cli.token.clone())?;
            let pool = call::pool();
            let usage = |e: call::CallError| match e {
                call::CallError::Usage(m) => (EXIT_USAGE, m),
                call::CallError::Status(s) => status_error(s),
            };
            let m = call::method(&pool, &method).map_err(usage)?;
            let body = call::request(&m, &request).map_err(usage)?;
            let (url, flag) = match call::service_of(&m) {
                "registration" => (&cli.registration, "--registration"),
                "reporting" => (&cli.reporting, "--reporting"),
                _ => (&cli.aggregation, "--aggregation"),
            };
            let channel = connect(url, flag, call::service_of(&m)).await?;
            let answer = call::call(channel, &m, body, &token).await.map_err(usage)?;
            println!("{answer}");
            Ok(())
        }
        Command::Token { secret_file, role, unit, subject, hours } => {
            if !ROLES.contains(&role.as_str()) {
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
        Command::Units { command: UnitsCommand::Link { file } } => {
            let token = need_token(cli.token)?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| (EXIT_USAGE, format!("cannot read {}: {e}", file.display())))?;
            let links = dvk_gso::reconciliation::read_links(&text)
                .map_err(|e| (EXIT_USAGE, format!("{}: {e}", file.display())))?;
            let channel = connect(&cli.registration, "--registration", "registration").await?;
            let mut client = RegistrationServiceClient::new(channel);
            let origin = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let out = import::add_links(&mut client, &token, links, &origin).await.map_err(|e| match &e {
                import::ImportError::Status(s) => (exit_for(s), format!("{}: {}", file.display(), s.message())),
                other => (EXIT_USAGE, format!("{}: {other}", file.display())),
            })?;
            println!(
                "{}: {} supplementary links received, {} added (position {})",
                file.display(),
                out.links_received,
                out.links_added,
                out.position.map(|p| format!("{}:{}", p.source, p.position)).unwrap_or_default()
            );
            Ok(())
        }
        Command::Units { command: UnitsCommand::Import { file, quiet, reconciliation_csv } } => {
            let token = need_token(cli.token)?;
            let reader =
                std::fs::File::open(&file).map_err(|e| (EXIT_USAGE, format!("cannot open {}: {e}", file.display())))?;
            let parsed = dvk_gso::read(std::io::BufReader::new(reader))
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
            if !parsed.links.is_empty() {
                match &outcome.reconciliation {
                    None => println!(
                        "{}: not reconciled: the registration service holds no pre-2025 commune (import the pre-2025 list first, then this file again)",
                        file.display()
                    ),
                    Some(r) => {
                        let (counts, list) = dvk_gso::reconciliation::summary(&parsed, r);
                        println!("Reconciliation with the pre-2025 list:");
                        for c in counts {
                            println!("  {c}");
                        }
                        match reconciliation_csv {
                            Some(path) => {
                                std::fs::write(&path, list)
                                    .map_err(|e| (1, format!("cannot write {}: {e}", path.display())))?;
                                println!("The list: {}", path.display());
                            }
                            None => {
                                println!();
                                print!("{list}");
                            }
                        }
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_figure_is_a_sort_value_named_as_its_column_and_former_names_still_work() {
        let parse = |s: &str| SortBy::from_str(s, false);
        assert_eq!(parse("reported-models-registered"), Ok(SortBy::Figure(Figure::ModelsRegistered)));
        assert_eq!(parse("models-registered"), Ok(SortBy::ModelsRegistered));
        assert_eq!(parse("funds-mobilized-vnd"), Ok(SortBy::Figure(Figure::FundsMobilized)));
        assert_eq!(parse("funds"), Ok(SortBy::Figure(Figure::FundsMobilized)));
        assert_eq!(parse("dialogues"), Ok(SortBy::Figure(Figure::DialoguesHeld)));
        assert_eq!(parse("petitions-resolved"), Ok(SortBy::Figure(Figure::PetitionsResolved)));
        for f in Figure::ALL {
            assert!(SortBy::ALL.contains(&SortBy::Figure(f)), "{f} cannot be ranked by");
        }
        // No two values rank by the same field.
        let fields: std::collections::HashSet<_> = SortBy::ALL.iter().map(|s| s.field()).collect();
        assert_eq!(fields.len(), SortBy::ALL.len());
        assert_eq!(SortBy::Figure(Figure::FundsMobilized).label(chart::Lang::En), "Funds mobilised (VND)");
        assert_eq!(SortBy::Figure(Figure::ModelsRecognized).label(chart::Lang::En), "Models recognised, as reported");
        assert_eq!(SortBy::Figure(Figure::FundsMobilized).label(chart::Lang::Vi), "Kinh phí huy động (đồng)");
        assert_eq!(SortBy::ModelsRecognized.label(chart::Lang::Vi), "Số mô hình được công nhận");
        assert_eq!(period_words("2024-H1", chart::Lang::Vi), "6 tháng đầu năm 2024");
        assert_eq!(period_words("2021-2025", chart::Lang::En), "2021–2025");
    }
}
