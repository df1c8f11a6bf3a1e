//! The command path: RegisterModel and SubmitReport from 64 concurrent writers, each
//! waiting for its acknowledgement, every write durable before it is acknowledged (our
//! log: sled flush + `fdatasync`; PostgreSQL: `fsync=on`, `synchronous_commit=on`, the
//! WAL synced on commit).
//!
//! - ours, in-process: the registration (reporting) service called from the writers'
//!   tasks through a client of it in the process (protobuf encoding, the guard's token
//!   and role check, validation, decision against the read model, append,
//!   projection), no network; reporting follows registration's log for the tree, as
//!   `dvk` runs it;
//! - ours, over gRPC: the services on loopback, on a runtime of their own, 8 HTTP/2
//!   connections from the writers' runtime;
//! - cqrs-es 0.5 + postgres-es 0.5: an aggregate with the same command and event (same
//!   texts and figures, serialised as JSON as postgres-es does), `CqrsFramework::execute`
//!   (load the aggregate's events, handle, insert the new events in a transaction), a
//!   pool of 64 connections to PostgreSQL on loopback; and the same behind our gRPC
//!   front (`front.rs`) on a runtime of its own, the peer of "ours, over gRPC".
//!
//! Each request creates a new model or report (a new stream / aggregate).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use dvk_client::import;
use dvk_gso as gso;
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_proto::common::v1::{Date, Field, Figures, Money, Period, UnitCode};
use dvk_proto::events::v1::{ModelDetails, Resources, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1::RegisterModelRequest;
use dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient;
use dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dvk_proto::reporting::v1::{ListReportsRequest, ListReportsResponse, SubmitReportRequest};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::{Run, Summary, env_usize, ratio, settings, thousands, token, workload};

const WRITERS: usize = 64;
const CONNECTIONS: usize = 8;
/// Periods reported on the pre-2025 tree (as the reporting benchmark): every half
/// year and year from 2021.
const PERIODS: [&str; 13] = [
    "2021-H1", "2021-H2", "2021", "2022-H1", "2022-H2", "2022", "2023-H1", "2023-H2", "2023", "2024-H1", "2024-H2",
    "2024", "2025-H1",
];

/// Every period above open and on time (as the reporting benchmark's schedule).
pub(crate) fn schedule() -> Schedule {
    let end = dvk_domain::Period::parse("p", "2021-H1").expect("a period").end();
    let days = (dvk_runtime::host::today().to_unix_days() - end.to_unix_days()) as u32 + 365;
    let open = Deadline { opens_before_end: 15, due_after_end: days, locks_after_end: days };
    Schedule { half_year: open, year: open, ..Schedule::default() }
}

/// RegisterModel number `i` (the texts of the registration benchmark).
fn model_request(i: usize, communes: &[String]) -> RegisterModelRequest {
    RegisterModelRequest {
        request_id: format!("compare-{i}"),
        unit: Some(UnitCode { code: communes[i % communes.len()].clone() }),
        registered_on: Some(Date { year: 2024, month: 2, day: 15 }),
        details: Some(ModelDetails {
            name: format!("Mô hình \"Dân vận khéo\" số {i}"),
            field: Field::Economy as i32,
            runner_kind: RunnerKind::Collective as i32,
            runner_name: "Chi hội Phụ nữ tổ dân phố 3".into(),
            sponsor: Sponsor::WomensUnion as i32,
            sponsor_name: "Hội LHPN phường".into(),
            objectives: "Bê tông hoá 2 km đường ngõ xóm".into(),
            resources: Some(Resources { funds: Some(Money { vnd: 1_200_000_000 }), workdays: 850 }),
            timeline: Some(Timeline { start: Some(Date { year: 2024, month: 3, day: 1 }), end: None }),
            ..Default::default()
        }),
    }
}

/// SubmitReport number `n` of the benchmark (the request of the reporting benchmark):
/// no two requests name the same (unit, period).
fn report_request(n: usize, units: &[String]) -> SubmitReportRequest {
    let registered = (n % 40) as i64 + 1;
    SubmitReportRequest {
        request_id: format!("compare-{n}"),
        unit: Some(UnitCode { code: units[n % units.len()].clone() }),
        period: Some(Period { code: PERIODS[(n / units.len()) % PERIODS.len()].into() }),
        figures: Some(Figures {
            models_registered: registered,
            models_recognized: registered / 3,
            funds_mobilized: Some(Money { vnd: 81_000_000 * registered }),
            workdays: 120 * registered,
            participants: 300,
            dialogues_held: 4,
            petitions_received: 12,
            petitions_resolved: 11,
            dan_van_days: 1,
            commendations_collective: 12,
            commendations_individual: 11,
        }),
        summary: "6 tháng đầu năm, có 54 mô hình dân vận khéo cấp huyện và 137 mô hình mới cấp xã".into(),
    }
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    for _ in 0..200 {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}"))?.connect().await {
            return Ok(ch);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the service at {addr} did not start")
}

/// A 2-thread runtime (as a service process has) for servers, apart from the writers'.
fn server_runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(name).enable_all().build()
}

/// A listener on a free loopback port, to be handed to a server on another runtime.
fn loopback() -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// `CONNECTIONS` clients of the server at `addr`, each on its own HTTP/2 connection.
async fn clients<C>(addr: SocketAddr, new: impl Fn(Channel) -> C) -> anyhow::Result<Vec<C>> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(new(channel(addr).await?));
    }
    Ok(clients)
}

/// Registration (and, with `reporting`, reporting following registration's log) on
/// loopback over fresh directories in `dir`, until `stop`. The services run on a
/// runtime of their own (2 worker threads, as a service process has), apart from the
/// clients' runtime, as the registration and reporting benchmarks run them: over gRPC
/// the servers and the 64 clients are separate programs in production too (as
/// PostgreSQL's backends are separate processes from cqrs-es's pool).
struct Stack {
    registration: SocketAddr,
    reporting: Option<SocketAddr>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), dvk_registration::Error>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Stack {
    async fn start(dir: &Path, reporting: bool) -> anyhow::Result<Stack> {
        let runtime = server_runtime("service")?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        let s = settings(dir, "registration");
        let log = dvk_registration::open_log(&s)?;
        let l = loopback()?;
        let registration = l.local_addr()?;
        let stop_registration = until(stopped.clone());
        let served_log = log.clone();
        tasks.push(runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(l)?;
            dvk_registration::serve(l, s, served_log, None, stop_registration, || {}).await
        }));
        let mut reporting_addr = None;
        if reporting {
            let s = settings(dir, "reporting");
            let reporting_log = dvk_reporting::open_log(&s)?;
            let l = loopback()?;
            reporting_addr = Some(l.local_addr()?);
            let links =
                dvk_reporting::Links { relay: None, registration: Some(dvk_runtime::host::Upstream::Local(log)) };
            let stop_reporting = until(stopped);
            tasks.push(runtime.spawn(async move {
                let l = tokio::net::TcpListener::from_std(l)?;
                dvk_reporting::serve(l, s, schedule(), reporting_log, links, stop_reporting, || {}).await
            }));
        }
        Ok(Stack { registration, reporting: reporting_addr, stop: Some(stop), tasks, runtime: Some(runtime) })
    }

    /// `start`, then the GSO list imported into registration.
    async fn imported(dir: &Path, reporting: bool, admin: &str, file: &gso::GsoFile) -> anyhow::Result<Stack> {
        let stack = Stack::start(dir, reporting).await?;
        import::import(&mut registration_client(stack.registration).await?, admin, file, "compare", |_| {}).await?;
        Ok(stack)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("once").send(true);
        for task in std::mem::take(&mut self.tasks) {
            task.await??;
        }
        self.runtime.take().expect("once").shutdown_background();
        Ok(())
    }
}

async fn registration_client(addr: SocketAddr) -> anyhow::Result<RegistrationServiceClient<Channel>> {
    Ok(RegistrationServiceClient::new(channel(addr).await?).max_encoding_message_size(16 << 20))
}

/// Waits until the reporting service has received the whole tree from registration's
/// log (it expects a report from every unit).
async fn wait_for_tree<R: Reports>(reporting: &R, units: usize) -> anyhow::Result<()> {
    let analyst = token("analyst");
    for _ in 0..1200 {
        let request = ListReportsRequest { period: Some(Period { code: "2024".into() }), ..Default::default() };
        let listed = reporting.list(import::authorized(request, &analyst)?).await;
        if listed.is_ok_and(|r| r.completeness.is_some_and(|c| c.expected as usize == units)) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the reporting service did not receive the {units} units of the tree within 2 minutes")
}

/// ListReports, in-process or over gRPC.
trait Reports {
    async fn list(&self, request: tonic::Request<ListReportsRequest>) -> Result<ListReportsResponse, tonic::Status>;
}

impl Reports for dvk_reporting::InProcess {
    async fn list(&self, request: tonic::Request<ListReportsRequest>) -> Result<ListReportsResponse, tonic::Status> {
        Ok(self.clone().list_reports(request).await?.into_inner())
    }
}

impl Reports for ReportingServiceClient<Channel> {
    async fn list(&self, request: tonic::Request<ListReportsRequest>) -> Result<ListReportsResponse, tonic::Status> {
        Ok(self.clone().list_reports(request).await?.into_inner())
    }
}

/// `WRITERS` tasks share `requests` requests; `call(writer, i)` sends request `i`.
async fn drive<F, Fut>(requests: usize, call: F) -> anyhow::Result<Run>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = w;
            while i < requests {
                let t = Instant::now();
                call(w, i).await?;
                latencies.push(t.elapsed());
                i += WRITERS;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Run::from(&mut latencies, started.elapsed()))
}

// ---- cqrs-es ----

/// The same registration, as a cqrs-es aggregate.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Model {
    registered: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    unit: String,
    registered_on: String,
    name: String,
    field: String,
    runner_kind: String,
    runner_name: String,
    sponsor: String,
    sponsor_name: String,
    objectives: String,
    funds_vnd: i64,
    workdays: i64,
    start: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelEvent {
    Registered(Details),
}

impl DomainEvent for ModelEvent {
    fn event_type(&self) -> String {
        "ModelRegistered".into()
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug)]
pub struct ModelError(String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

impl Aggregate for Model {
    const TYPE: &'static str = "Model";
    type Command = Details;
    type Event = ModelEvent;
    type Error = ModelError;
    type Services = ();

    async fn handle(&mut self, command: Details, _: &(), sink: &EventSink<Self>) -> Result<(), ModelError> {
        if self.registered {
            return Err(ModelError("already registered".into()));
        }
        if command.name.trim().is_empty() {
            return Err(ModelError("name is required".into()));
        }
        sink.write(ModelEvent::Registered(command), self).await;
        Ok(())
    }

    fn apply(&mut self, event: ModelEvent) {
        match event {
            ModelEvent::Registered(_) => self.registered = true,
        }
    }
}

pub(crate) fn details(r: &RegisterModelRequest) -> Details {
    let d = r.details.clone().unwrap_or_default();
    let money = d.resources.as_ref().and_then(|r| r.funds).map_or(0, |m| m.vnd);
    Details {
        unit: r.unit.as_ref().map(|u| u.code.clone()).unwrap_or_default(),
        registered_on: "2024-02-15".into(),
        name: d.name,
        field: "economy".into(),
        runner_kind: "collective".into(),
        runner_name: d.runner_name,
        sponsor: "womens_union".into(),
        sponsor_name: d.sponsor_name,
        objectives: d.objectives,
        funds_vnd: money,
        workdays: d.resources.map_or(0, |r| r.workdays),
        start: "2024-03-01".into(),
    }
}

const CREATE_EVENTS: &str = "CREATE TABLE IF NOT EXISTS events (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL,
    event_version text NOT NULL,
    payload json NOT NULL,
    metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence))";
const CREATE_SNAPSHOTS: &str = "CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))";

/// The same report submission, as a cqrs-es aggregate.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    submitted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    unit: String,
    period: String,
    revision: u32,
    models_registered: i64,
    models_recognized: i64,
    funds_mobilized_vnd: i64,
    workdays: i64,
    participants: i64,
    dialogues_held: i64,
    petitions_received: i64,
    petitions_resolved: i64,
    dan_van_days: i64,
    commendations_collective: i64,
    commendations_individual: i64,
    summary: String,
    on_time: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReportEvent {
    Submitted(Submission),
}

impl DomainEvent for ReportEvent {
    fn event_type(&self) -> String {
        "ReportSubmitted".into()
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

impl Aggregate for Report {
    const TYPE: &'static str = "Report";
    type Command = Submission;
    type Event = ReportEvent;
    type Error = ModelError;
    type Services = ();

    async fn handle(&mut self, command: Submission, _: &(), sink: &EventSink<Self>) -> Result<(), ModelError> {
        if self.submitted {
            return Err(ModelError("already submitted".into()));
        }
        if command.models_recognized > command.models_registered
            || command.petitions_resolved > command.petitions_received
        {
            return Err(ModelError("inconsistent figures".into()));
        }
        sink.write(ReportEvent::Submitted(command), self).await;
        Ok(())
    }

    fn apply(&mut self, event: ReportEvent) {
        match event {
            ReportEvent::Submitted(_) => self.submitted = true,
        }
    }
}

/// The aggregate id of a report: its unit and period (one report per pair).
pub(crate) fn report_id(r: &SubmitReportRequest) -> String {
    format!("{}/{}", r.unit.as_ref().map_or("", |u| &u.code), r.period.as_ref().map_or("", |p| &p.code))
}

pub(crate) fn submission(r: &SubmitReportRequest) -> Submission {
    let f = r.figures.unwrap_or_default();
    Submission {
        unit: r.unit.as_ref().map(|u| u.code.clone()).unwrap_or_default(),
        period: r.period.as_ref().map(|p| p.code.clone()).unwrap_or_default(),
        revision: 1,
        models_registered: f.models_registered,
        models_recognized: f.models_recognized,
        funds_mobilized_vnd: f.funds_mobilized.map_or(0, |m| m.vnd),
        workdays: f.workdays,
        participants: f.participants,
        dialogues_held: f.dialogues_held,
        petitions_received: f.petitions_received,
        petitions_resolved: f.petitions_resolved,
        dan_van_days: f.dan_van_days,
        commendations_collective: f.commendations_collective,
        commendations_individual: f.commendations_individual,
        summary: r.summary.clone(),
        on_time: true,
    }
}

/// Runs `runs` runs of `requests` calls of `call(run, i)`, printing each.
async fn runs_of<F, Fut>(what: &str, runs: usize, requests: usize, call: F) -> anyhow::Result<Summary>
where
    F: Fn(usize, usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let mut results = Vec::new();
    for run in 0..runs {
        let call = call.clone();
        let r = drive(requests, move |w, i| call(run, w, i)).await?;
        println!("  {what} run {run}: {} /s, p50 {:.2} ms, p99 {:.2} ms", thousands(r.per_sec), r.p50_ms, r.p99_ms);
        results.push(r);
    }
    Ok(Summary::of(&results))
}

/// Part 1, as Markdown.
pub async fn compare(pg: &str, runs: usize) -> anyhow::Result<String> {
    let requests = env_usize("DVK_COMPARE_REQUESTS", 20_000);
    anyhow::ensure!(runs * requests <= 10_000 * PERIODS.len(), "more reports than distinct (unit, period) pairs");
    let admin = token("admin");
    let reporter = token("reporter");
    let file = workload::gso_file(workload::TREE_FILES[0]);
    let units: Arc<Vec<String>> =
        Arc::new(file.units.iter().filter_map(|(_, u)| u.code.as_ref().map(|c| c.code.clone())).collect());
    let communes: Arc<Vec<String>> = Arc::new(units.iter().filter(|c| c.len() == 5).cloned().collect());
    println!("commands: {WRITERS} writers, {requests} requests per run, {runs} runs");

    // Ours, RegisterModel in-process.
    let (model_in_process, envelope_size) = {
        let dir = tempfile::tempdir()?;
        let stack = Stack::imported(dir.path(), false, &admin, &file).await?;
        stack.stop().await?;
        let s = settings(dir.path(), "registration");
        let log = dvk_registration::open_log(&s)?;
        let (host, service) = dvk_registration::in_process(&s, log.clone()).await?;
        let (token, communes) = (admin.clone(), communes.clone());
        let summary = runs_of("RegisterModel, ours in-process", runs, requests, move |run, _, i| {
            let (mut service, token, communes) = (service.clone(), token.clone(), communes.clone());
            async move {
                let mut req = model_request(i, &communes);
                req.request_id = format!("compare-{run}-{i}");
                service.register_model(import::authorized(req, &token)?).await?;
                Ok(())
            }
        })
        .await?;
        let size = log.get(log.head())?.map_or(0, |r| r.payload().len());
        drop(host);
        log.close()?;
        (summary, size)
    };

    // Ours, RegisterModel over gRPC.
    let model_grpc = {
        let dir = tempfile::tempdir()?;
        let stack = Stack::imported(dir.path(), false, &admin, &file).await?;
        let clients = Arc::new(
            clients(stack.registration, |ch| RegistrationServiceClient::new(ch).max_encoding_message_size(16 << 20))
                .await?,
        );
        let (token, communes) = (admin.clone(), communes.clone());
        let summary = runs_of("RegisterModel, ours over gRPC", runs, requests, move |run, w, i| {
            let mut client = clients[w % CONNECTIONS].clone();
            let (token, communes) = (token.clone(), communes.clone());
            async move {
                let mut req = model_request(i, &communes);
                req.request_id = format!("compare-{run}-{i}");
                client.register_model(import::authorized(req, &token)?).await?;
                Ok(())
            }
        })
        .await?;
        stack.stop().await?;
        summary
    };

    // Ours, SubmitReport in-process (reporting following registration's log).
    let report_in_process = {
        let dir = tempfile::tempdir()?;
        let stack = Stack::imported(dir.path(), false, &admin, &file).await?;
        stack.stop().await?;
        let registration_log = dvk_registration::open_log(&settings(dir.path(), "registration"))?;
        let s = settings(dir.path(), "reporting");
        let log = dvk_reporting::open_log(&s)?;
        let upstream = dvk_runtime::host::Upstream::Local(registration_log.clone());
        let (host, service) = dvk_reporting::in_process(&s, schedule(), log.clone(), upstream).await?;
        wait_for_tree(&service, units.len()).await?;
        let (token, units) = (reporter.clone(), units.clone());
        let summary = runs_of("SubmitReport, ours in-process", runs, requests, move |run, _, i| {
            let (mut service, token, units) = (service.clone(), token.clone(), units.clone());
            async move {
                let req = report_request(run * requests + i, &units);
                service.submit_report(import::authorized(req, &token)?).await?;
                Ok(())
            }
        })
        .await?;
        drop(host);
        log.close()?;
        registration_log.close()?;
        summary
    };

    // Ours, SubmitReport over gRPC (reporting following registration's log).
    let (report_grpc, report_envelope_size) = {
        let dir = tempfile::tempdir()?;
        let stack = Stack::imported(dir.path(), true, &admin, &file).await?;
        let reporting = stack.reporting.expect("reporting started");
        wait_for_tree(&ReportingServiceClient::new(channel(reporting).await?), units.len()).await?;
        let clients = Arc::new(clients(reporting, ReportingServiceClient::new).await?);
        let (token, units) = (reporter.clone(), units.clone());
        let summary = runs_of("SubmitReport, ours over gRPC", runs, requests, move |run, w, i| {
            let mut client = clients[w % CONNECTIONS].clone();
            let (token, units) = (token.clone(), units.clone());
            async move {
                let req = report_request(run * requests + i, &units);
                client.submit_report(import::authorized(req, &token)?).await?;
                Ok(())
            }
        })
        .await?;
        stack.stop().await?;
        let log = dvk_reporting::open_log(&settings(dir.path(), "reporting"))?;
        let size = log.get(log.head())?.map_or(0, |r| r.payload().len());
        log.close()?;
        (summary, size)
    };

    // cqrs-es + postgres-es.
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(WRITERS as u32).connect(pg).await?;
    sqlx::query(CREATE_EVENTS).execute(&pool).await?;
    sqlx::query(CREATE_SNAPSHOTS).execute(&pool).await?;
    sqlx::query("TRUNCATE events, snapshots").execute(&pool).await?;
    let models = Arc::new(postgres_es::postgres_cqrs::<Model>(pool.clone(), vec![], ()));
    let communes2 = communes.clone();
    let model_cqrs = runs_of("RegisterModel, cqrs-es + postgres-es", runs, requests, move |run, _, i| {
        let (framework, communes) = (models.clone(), communes2.clone());
        async move {
            let req = model_request(i, &communes);
            framework.execute(&format!("model-{run}-{i}"), details(&req)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    let reports = Arc::new(postgres_es::postgres_cqrs::<Report>(pool.clone(), vec![], ()));
    let units2 = units.clone();
    let report_cqrs = runs_of("SubmitReport, cqrs-es + postgres-es", runs, requests, move |run, _, i| {
        let (framework, units) = (reports.clone(), units2.clone());
        async move {
            let req = report_request(run * requests + i, &units);
            framework.execute(&report_id(&req), submission(&req)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    let size = |kind: &'static str| {
        let pool = pool.clone();
        async move {
            let (size,): (i32,) =
                sqlx::query_as("SELECT octet_length(payload::text) FROM events WHERE aggregate_type = $1 LIMIT 1")
                    .bind(kind)
                    .fetch_one(&pool)
                    .await?;
            anyhow::Ok(size)
        }
    };
    let (model_json, report_json) = (size("Model").await?, size("Report").await?);
    let stored = |pool: sqlx::PgPool| async move {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM events").fetch_one(&pool).await?;
        anyhow::ensure!(count as usize == 2 * runs * requests, "cqrs-es stored {count} events");
        sqlx::query("TRUNCATE events, snapshots").execute(&pool).await?;
        anyhow::Ok(())
    };
    stored(pool.clone()).await?;

    // cqrs-es + postgres-es behind the same gRPC front.
    let front = Front::start(pg).await?;
    let model_clients = Arc::new(clients(front.addr, RegistrationServiceClient::new).await?);
    let communes2 = communes.clone();
    let model_cqrs_grpc =
        runs_of("RegisterModel, cqrs-es + postgres-es over gRPC", runs, requests, move |run, w, i| {
            let mut client = model_clients[w % CONNECTIONS].clone();
            let communes = communes2.clone();
            async move {
                let mut req = model_request(i, &communes);
                req.request_id = format!("compare-{run}-{i}");
                client.register_model(req).await?;
                Ok(())
            }
        })
        .await?;
    let report_clients = Arc::new(clients(front.addr, ReportingServiceClient::new).await?);
    let units2 = units.clone();
    let report_cqrs_grpc =
        runs_of("SubmitReport, cqrs-es + postgres-es over gRPC", runs, requests, move |run, w, i| {
            let mut client = report_clients[w % CONNECTIONS].clone();
            let units = units2.clone();
            async move {
                client.submit_report(report_request(run * requests + i, &units)).await?;
                Ok(())
            }
        })
        .await?;
    front.stop().await?;
    stored(pool.clone()).await?;
    pool.close().await;
    println!(
        "event sizes: RegisterModel ours {envelope_size} B, cqrs-es {model_json} B; SubmitReport ours {report_envelope_size} B, cqrs-es {report_json} B"
    );

    let mut md = String::from("### 1. Command path: ours beside cqrs-es + postgres-es\n\n");
    md.push_str(&format!(
        "{WRITERS} concurrent writers, {requests} requests per run, every write durable before it is acknowledged. \
         Event sizes: RegisterModel {envelope_size} B (our protobuf envelope) / {model_json} B (cqrs-es JSON payload); \
         SubmitReport {report_envelope_size} B / {report_json} B. Part: `commands`.\n\n"
    ));
    md.push_str("| request | system | events/s (median) | runs | p50 | p99 (median) | p99 runs (ms) | × cqrs-es | goal ≥ 3× |\n");
    md.push_str("|---|---|---:|---|---:|---:|---|---:|---|\n");
    let mut row = |request: &str, what: &str, s: &Summary, base: &Summary, goal: bool| {
        let r = s.per_sec / base.per_sec;
        let verdict = if !goal {
            String::new()
        } else if r >= 3.0 {
            "met".into()
        } else {
            "**missed**".into()
        };
        md.push_str(&format!(
            "| {request} | {what} | **{}** | {} | {:.2} ms | **{:.2} ms** | {} | {} | {verdict} |\n",
            thousands(s.per_sec),
            s.runs_text(),
            s.p50_ms,
            s.p99_ms,
            s.p99_runs_text(),
            if goal { ratio(r) } else { "1×".into() },
        ));
    };
    row("RegisterModel", "ours, in-process (service, sled log + fdatasync)", &model_in_process, &model_cqrs, true);
    row("RegisterModel", "cqrs-es 0.5 + postgres-es 0.5, in-process", &model_cqrs, &model_cqrs, false);
    row("RegisterModel", "ours, over gRPC on loopback", &model_grpc, &model_cqrs_grpc, true);
    row("RegisterModel", "cqrs-es + postgres-es behind the same gRPC front", &model_cqrs_grpc, &model_cqrs_grpc, false);
    row("SubmitReport", "ours, in-process (service, sled log + fdatasync)", &report_in_process, &report_cqrs, true);
    row("SubmitReport", "cqrs-es 0.5 + postgres-es 0.5, in-process", &report_cqrs, &report_cqrs, false);
    row("SubmitReport", "ours, over gRPC on loopback", &report_grpc, &report_cqrs_grpc, true);
    row(
        "SubmitReport",
        "cqrs-es + postgres-es behind the same gRPC front",
        &report_cqrs_grpc,
        &report_cqrs_grpc,
        false,
    );
    md.push_str(&format!(
        "\nEach of our rows is compared with the cqrs-es row of the same front (in-process with in-process, gRPC \
         with gRPC). Ours over gRPC beside cqrs-es in-process (a network hop against none): RegisterModel {}, \
         SubmitReport {}.\n\n",
        ratio(model_grpc.per_sec / model_cqrs.per_sec),
        ratio(report_grpc.per_sec / report_cqrs.per_sec),
    ));
    Ok(md)
}

/// The cqrs-es fronts (`front.rs`) on loopback, on a runtime of their own with their
/// own pool of 64 connections to PostgreSQL, until `stop`.
struct Front {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Front {
    async fn start(pg: &str) -> anyhow::Result<Front> {
        let runtime = server_runtime("front")?;
        let l = loopback()?;
        let addr = l.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let pg = pg.to_owned();
        let task = runtime.spawn(async move {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(WRITERS as u32).connect(&pg).await?;
            let models =
                crate::front::ModelFront(Arc::new(postgres_es::postgres_cqrs::<Model>(pool.clone(), vec![], ())));
            let reports =
                crate::front::ReportFront(Arc::new(postgres_es::postgres_cqrs::<Report>(pool.clone(), vec![], ())));
            let incoming = tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(l)?)
                .with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .add_service(dvk_proto::registration::v1::registration_service_server::RegistrationServiceServer::new(
                    models,
                ))
                .add_service(dvk_proto::reporting::v1::reporting_service_server::ReportingServiceServer::new(reports))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await?;
            pool.close().await;
            Ok(())
        });
        Ok(Front { addr, stop, task, runtime })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        self.runtime.shutdown_background();
        Ok(())
    }
}
