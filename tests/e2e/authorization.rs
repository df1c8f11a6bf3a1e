//! The authorization matrix of the three services: every unary RPC (ImportUnits and
//! ReorganizeUnits, admin-only imports, are covered in `registration.rs`) ×
//! role × where the target lies from the caller (its own unit, a child, a sibling,
//! another province) — exactly the cells the services' policy tables allow succeed
//! and the others are PERMISSION_DENIED; and every RPC refuses a missing, expired,
//! forged or wrong-algorithm token with UNAUTHENTICATED. What the tables allow is
//! itself pinned by cells written out here by hand (DESIGN.md "Security"), and by
//! their number.
//!
//! Then the same matrix for replays: every write with a request id (ImportUnits and
//! ReorganizeUnits too) is written by a national caller, then sent again, the same
//! request id and body, by each role for each target. Authorisation comes before
//! idempotency: exactly the callers allowed on the target get the first answer, the
//! others PERMISSION_DENIED (not the model id, nor "approved"), and nothing is written.
//!
//! The caller acts for the district of Cô Tô (207, Quảng Ninh, pre-2025 tree).

use std::time::Duration;

use dvk_client::import;
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_gso as gso;
use dvk_proto::aggregation::v1::{self as pa, aggregation_service_client::AggregationServiceClient};
use dvk_proto::common::v1::{Date, Field, Figures, Level, Period, Tree, UnitCode};
use dvk_proto::events::v1::{AwardForm, Decision, ModelDetails, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1::{self as pr, registration_service_client::RegistrationServiceClient};
use dvk_proto::reporting::v1::{self as pp, reporting_service_client::ReportingServiceClient};
use dvk_runtime::auth::{Claims, now_secs};
use dvk_runtime::host::Upstream;
use dvk_runtime::{Role, Rule, Scope};
use dvk_tests::{SECRET, Service, admin_units, token};
use tonic::Code;
use tonic::transport::Channel;

const CALLER: &str = "207";
const ROLES: [&str; 4] = ["reporter", "approver", "analyst", "admin"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Own,
    Child,
    Sibling,
    OtherProvince,
}

const RELATIONS: [Relation; 4] = [Relation::Own, Relation::Child, Relation::Sibling, Relation::OtherProvince];

impl Relation {
    /// The target unit: 207 itself, its commune 07192, the district 193 (Hạ Long) of
    /// the same province, the district 001 (Ba Đình, Hà Nội).
    fn unit(self) -> &'static str {
        match self {
            Relation::Own => "207",
            Relation::Child => "07192",
            Relation::Sibling => "193",
            Relation::OtherProvince => "001",
        }
    }

    fn within(self) -> bool {
        matches!(self, Relation::Own | Relation::Child)
    }
}

/// A request with the bearer token, or with no authorization header at all.
fn req<T>(m: T, token: &str) -> tonic::Request<T> {
    if token.is_empty() { tonic::Request::new(m) } else { import::authorized(m, token).unwrap() }
}

fn unit(code: &str) -> Option<UnitCode> {
    Some(UnitCode { code: code.into() })
}

fn period(code: &str) -> Option<Period> {
    Some(Period { code: code.into() })
}

/// The rule of `rpc`, from the policy table of the service that serves it.
fn rule(rpc: &str) -> &'static Rule {
    [dvk_registration::POLICY, dvk_reporting::POLICY, dvk_aggregation::POLICY]
        .into_iter()
        .flatten()
        .find(|r| r.method == rpc)
        .unwrap_or_else(|| panic!("no rule for {rpc}"))
}

/// Whether the policy tables let `role` call `rpc` on a target at `r`: the rule names
/// the role, and its scope reaches the target. The scope is read here from where the
/// target lies (`Relation`), not from the tree the services look it up in.
fn allowed(rpc: &str, role: &str, r: Relation) -> bool {
    let rule = rule(rpc);
    let reaches = match rule.scope {
        // A listing is never refused: it shows only what the caller may see.
        Scope::Anywhere | Scope::Listed => true,
        Scope::Subtree => r.within(),
        Scope::Below => r == Relation::Child,
    };
    rule.roles.contains(&Role::parse(role).expect("a role")) && reaches
}

/// Cells written out by hand from DESIGN.md "Security", not read from the tables:
/// the tables must agree, so that a rule that drifts fails here, and not only where
/// the services refuse what their tables say.
const KEY_CELLS: [(&str, &str, Relation, bool); 30] = [
    // A district approver approves (returns, reopens) its communes' reports: not its
    // own district's, nor another district's, nor another province's; a reporter, an
    // analyst or an admin decides on no report.
    ("ApproveReport", "approver", Relation::Child, true),
    ("ApproveReport", "approver", Relation::Own, false),
    ("ApproveReport", "approver", Relation::Sibling, false),
    ("ApproveReport", "approver", Relation::OtherProvince, false),
    ("ApproveReport", "reporter", Relation::Child, false),
    ("ApproveReport", "admin", Relation::Child, false),
    ("ReturnReport", "approver", Relation::Child, true),
    ("ReturnReport", "approver", Relation::Own, false),
    ("ReopenReport", "analyst", Relation::Child, false),
    // A reporter (or an admin) writes the reports of its unit and below, not a
    // sibling's; an approver or an analyst writes none.
    ("SubmitReport", "reporter", Relation::Own, true),
    ("SubmitReport", "reporter", Relation::Child, true),
    ("SubmitReport", "reporter", Relation::Sibling, false),
    ("SubmitReport", "admin", Relation::Child, true),
    ("SubmitReport", "analyst", Relation::Own, false),
    ("AmendReport", "approver", Relation::Child, false),
    // Models: reporters run them, approvers recognise them, within their subtree.
    ("RegisterModel", "reporter", Relation::Child, true),
    ("RegisterModel", "reporter", Relation::OtherProvince, false),
    ("RegisterModel", "approver", Relation::Own, false),
    ("RecognizeModel", "approver", Relation::Child, true),
    ("RecognizeModel", "approver", Relation::Sibling, false),
    ("RecognizeModel", "reporter", Relation::Own, false),
    // Reads stay in the subtree; the trees are everyone's; a listing of models is
    // never refused.
    ("GetRollup", "analyst", Relation::Child, true),
    ("GetRollup", "analyst", Relation::Sibling, false),
    ("GetReport", "reporter", Relation::OtherProvince, false),
    ("GetUnit", "reporter", Relation::OtherProvince, true),
    ("ListModels", "analyst", Relation::OtherProvince, true),
    // Rebuilding the projections and managing the trees are the admins'.
    ("RebuildProjections", "admin", Relation::Own, true),
    ("RebuildProjections", "analyst", Relation::Own, false),
    ("ImportUnits", "admin", Relation::OtherProvince, true),
    ("ReorganizeUnits", "approver", Relation::Own, false),
];

/// Of the 416 cells of the matrix (and the 192 of the replay matrix), how many the
/// rules of DESIGN.md "Security" allow, counted by hand.
const ALLOWED_CELLS: usize = 179;
const ALLOWED_REPLAYS: usize = 39;

#[test]
fn the_policy_tables_agree_with_the_cells_written_out() {
    for (rpc, role, relation, want) in KEY_CELLS {
        assert_eq!(allowed(rpc, role, relation), want, "{rpc} {role} {relation:?}");
    }
    let count = |rpcs: &[&str]| {
        let cells = rpcs.iter().flat_map(|rpc| ROLES.map(|role| RELATIONS.map(|r| allowed(rpc, role, r))));
        cells.flatten().filter(|a| *a).count()
    };
    assert_eq!(count(&RPCS), ALLOWED_CELLS);
    assert_eq!(count(&WRITES), ALLOWED_REPLAYS);
    // Every RPC of the tables is in the matrix (the two imports in the replay matrix).
    let mut tabled: Vec<&str> = [dvk_registration::POLICY, dvk_reporting::POLICY, dvk_aggregation::POLICY]
        .into_iter()
        .flatten()
        .map(|r| r.method)
        .filter(|m| !matches!(*m, "ImportUnits" | "ReorganizeUnits"))
        .collect();
    let mut covered = RPCS.to_vec();
    tabled.sort_unstable();
    covered.sort_unstable();
    assert_eq!(tabled, covered);
}

/// The write RPCs with a request id, whose retries are answered from the log
/// (RebuildProjections writes nothing; ImportUnits streams and is replayed apart).
const WRITES: [&str; 12] = [
    "RegisterModel",
    "AmendModel",
    "StartModel",
    "RecognizeModel",
    "CommendModel",
    "ReplicateModel",
    "RetireModel",
    "SubmitReport",
    "AmendReport",
    "ReturnReport",
    "ApproveReport",
    "ReopenReport",
];

/// A write request, built once so that it can be sent again: a retry by its caller,
/// or a replay by another.
#[derive(Debug, Clone)]
enum Write {
    RegisterModel(pr::RegisterModelRequest),
    AmendModel(pr::AmendModelRequest),
    StartModel(pr::StartModelRequest),
    RecognizeModel(pr::RecognizeModelRequest),
    CommendModel(pr::CommendModelRequest),
    ReplicateModel(pr::ReplicateModelRequest),
    RetireModel(pr::RetireModelRequest),
    SubmitReport(pp::SubmitReportRequest),
    AmendReport(pp::AmendReportRequest),
    ReturnReport(pp::ReturnReportRequest),
    ApproveReport(pp::ApproveReportRequest),
    ReopenReport(pp::ReopenReportRequest),
}

/// What a write answered.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Model(pr::WriteModelResponse),
    Report(pp::WriteReportResponse),
}

struct Stack {
    reg: RegistrationServiceClient<Channel>,
    registration: Service,
    reporting: Service,
    aggregation: Service,
    rep: ReportingServiceClient<Channel>,
    agg: AggregationServiceClient<Channel>,
}

async fn stack(dir: &std::path::Path) -> Stack {
    let registration = Service::registration(&dir.join("registration")).await;
    {
        let mut client = registration.client().await;
        let name = "gso-communes-2025-01-04.csv";
        let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
        import::import(&mut client, &token("admin", ""), &file, name, |_| {}).await.unwrap();
    }
    let end = dvk_domain::Period::parse("p", "2021-H1").unwrap().end();
    let days = (dvk_runtime::host::today().to_unix_days() - end.to_unix_days()) as u32 + 365;
    let open = Deadline { opens_before_end: 15, due_after_end: days, locks_after_end: days };
    let schedule = Schedule { half_year: open, year: open, ..Schedule::default() };
    let links = dvk_reporting::Links { relay: None, registration: Some(Upstream::Local(registration.log.clone())) };
    let reporting = Service::reporting(&dir.join("reporting"), schedule, links).await;
    let links = dvk_aggregation::Links {
        registration: Some(Upstream::Local(registration.log.clone())),
        reporting: Some(Upstream::Local(reporting.log.clone())),
    };
    let aggregation = Service::aggregation(&dir.join("aggregation"), links).await;
    let rep = reporting.reporting_client().await;
    let agg = aggregation.aggregation_client().await;
    // Wait until reporting has the tree.
    let mut probe = rep.clone();
    for _ in 0..600 {
        let r = probe
            .list_reports(req(
                pp::ListReportsRequest { unit: unit(CALLER), period: period("2024"), ..Default::default() },
                &token("analyst", ""),
            ))
            .await;
        if r.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reg = registration.client().await;
    Stack { reg, registration, reporting, aggregation, rep, agg }
}

fn submit(id: &str, unit_code: &str, p: &str) -> pp::SubmitReportRequest {
    pp::SubmitReportRequest {
        request_id: id.into(),
        unit: unit(unit_code),
        period: period(p),
        figures: Some(Figures { models_registered: 2, models_recognized: 1, ..Default::default() }),
        summary: String::new(),
    }
}

fn date(m: i32, d: i32) -> Option<Date> {
    Some(Date { year: 2024, month: m, day: d })
}

fn level_of(code: &str) -> Level {
    match code.len() {
        2 => Level::Province,
        3 => Level::District,
        _ => Level::Commune,
    }
}

fn details(n: usize) -> ModelDetails {
    ModelDetails {
        name: format!("Mô hình {n}"),
        field: Field::Economy as i32,
        runner_kind: RunnerKind::Collective as i32,
        runner_name: "Chi hội".into(),
        sponsor: Sponsor::WomensUnion as i32,
        sponsor_name: "Hội LHPN".into(),
        objectives: "Đường làng".into(),
        timeline: Some(Timeline { start: date(2, 15), end: None }),
        ..Default::default()
    }
}

fn decision(n: usize) -> Option<Decision> {
    Some(Decision { number: format!("{n}/QĐ"), date: date(5, 1), issuer: "UBND".into() })
}

impl Stack {
    /// A fresh model at `unit_code`, registered (and, for `stage` ≥ 1, started; ≥ 2,
    /// recognised) by national callers: its id and version.
    async fn model(&mut self, unit_code: &str, stage: u8, n: usize) -> (String, u64) {
        let w = self
            .reg
            .register_model(req(
                pr::RegisterModelRequest {
                    request_id: format!("prep-model-{n}"),
                    unit: unit(unit_code),
                    registered_on: date(2, 15),
                    details: Some(details(n)),
                },
                &token("admin", ""),
            ))
            .await
            .unwrap()
            .into_inner();
        let (id, mut version) = (w.model_id, w.version);
        if stage >= 1 {
            let w = self
                .reg
                .start_model(req(
                    pr::StartModelRequest {
                        request_id: format!("prep-start-{n}"),
                        model_id: id.clone(),
                        expected_version: version,
                        started_on: date(3, 1),
                    },
                    &token("admin", ""),
                ))
                .await
                .unwrap()
                .into_inner();
            version = w.version;
        }
        if stage >= 2 {
            let w = self
                .reg
                .recognize_model(req(
                    pr::RecognizeModelRequest {
                        request_id: format!("prep-recognize-{n}"),
                        model_id: id.clone(),
                        expected_version: version,
                        level: level_of(unit_code) as i32,
                        recognizing_unit: unit(unit_code),
                        decision: decision(n),
                        exemplary: false,
                    },
                    &token("admin", ""),
                ))
                .await
                .unwrap()
                .into_inner();
            version = w.version;
        }
        (id, version)
    }

    /// Calls a registration read on a fresh model (or unit) at `unit_code`.
    async fn call_registration(
        &mut self,
        rpc: &str,
        unit_code: &str,
        token: &str,
        n: usize,
    ) -> Result<(), tonic::Status> {
        match rpc {
            "GetUnit" => self
                .reg
                .get_unit(req(pr::GetUnitRequest { tree: Tree::Pre2025 as i32, code: unit(unit_code) }, token))
                .await
                .map(drop),
            "ListUnits" => self
                .reg
                .list_units(req(
                    pr::ListUnitsRequest { tree: Tree::Pre2025 as i32, parent: unit(unit_code), ..Default::default() },
                    token,
                ))
                .await
                .map(drop),
            "ListModels" => self
                .reg
                .list_models(req(pr::ListModelsRequest { unit: unit(unit_code), ..Default::default() }, token))
                .await
                .map(drop),
            "GetModel" => {
                let (id, _) = self.model(unit_code, 0, n).await;
                self.reg.get_model(req(pr::GetModelRequest { model_id: id }, token)).await.map(drop)
            }
            "GetModelHistory" => {
                let (id, _) = self.model(unit_code, 0, n).await;
                self.reg
                    .get_model_history(req(pr::GetModelHistoryRequest { model_id: id, ..Default::default() }, token))
                    .await
                    .map(drop)
            }
            other => panic!("no call for {other}"),
        }
    }

    /// The request of the write `rpc` on a fresh model (or the report) at `unit_code`,
    /// with the model or report brought to the state the write needs; `n` makes request
    /// ids unique and, for SubmitReport, picks the period.
    async fn write_request(&mut self, rpc: &str, unit_code: &str, n: usize) -> Write {
        let request_id = format!("cell-{n}");
        match rpc {
            "RegisterModel" => Write::RegisterModel(pr::RegisterModelRequest {
                request_id,
                unit: unit(unit_code),
                registered_on: date(2, 20),
                details: Some(details(n)),
            }),
            "SubmitReport" => {
                let periods = ["2021-H1", "2021-H2", "2021", "2022-H1", "2022-H2", "2022", "2023-H1", "2023-H2"];
                Write::SubmitReport(submit(&request_id, unit_code, periods[n % periods.len()]))
            }
            "AmendReport" | "ReturnReport" | "ApproveReport" | "ReopenReport" => {
                let (report_id, expected_version) = self.prepare(rpc, unit_code, "2024-H1", n).await;
                match rpc {
                    "AmendReport" => Write::AmendReport(pp::AmendReportRequest {
                        request_id,
                        report_id,
                        expected_version,
                        figures: Some(Figures { models_registered: 10 + n as i64, ..Default::default() }),
                        summary: String::new(),
                        reason: "Sửa số liệu".into(),
                    }),
                    "ReturnReport" => Write::ReturnReport(pp::ReturnReportRequest {
                        request_id,
                        report_id,
                        expected_version,
                        reason: "Thiếu".into(),
                    }),
                    "ApproveReport" => {
                        Write::ApproveReport(pp::ApproveReportRequest { request_id, report_id, expected_version })
                    }
                    _ => Write::ReopenReport(pp::ReopenReportRequest {
                        request_id,
                        report_id,
                        expected_version,
                        reason: "Rà soát".into(),
                    }),
                }
            }
            _ => {
                let stage = match rpc {
                    "StartModel" | "AmendModel" => 0,
                    "RecognizeModel" | "RetireModel" => 1,
                    _ => 2,
                };
                let (model_id, expected_version) = self.model(unit_code, stage, n).await;
                match rpc {
                    "StartModel" => Write::StartModel(pr::StartModelRequest {
                        request_id,
                        model_id,
                        expected_version,
                        started_on: date(3, 2),
                    }),
                    "AmendModel" => {
                        let mut details = self
                            .reg
                            .get_model(req(pr::GetModelRequest { model_id: model_id.clone() }, &token_of("admin")))
                            .await
                            .unwrap()
                            .into_inner()
                            .details;
                        if let Some(d) = details.as_mut() {
                            d.name = format!("Mô hình {n} (sửa)");
                        }
                        Write::AmendModel(pr::AmendModelRequest {
                            request_id,
                            model_id,
                            expected_version,
                            details,
                            reason: "Sửa tên".into(),
                        })
                    }
                    "RecognizeModel" => Write::RecognizeModel(pr::RecognizeModelRequest {
                        request_id,
                        model_id,
                        expected_version,
                        level: level_of(unit_code) as i32,
                        recognizing_unit: unit(unit_code),
                        decision: decision(n),
                        exemplary: false,
                    }),
                    "CommendModel" => Write::CommendModel(pr::CommendModelRequest {
                        request_id,
                        model_id,
                        expected_version,
                        form: AwardForm::CertificateOfMerit as i32,
                        level: level_of(unit_code) as i32,
                        awarding_unit: unit(unit_code),
                        decision: decision(n + 500_000),
                    }),
                    "ReplicateModel" => {
                        let target = if unit_code == "07195" { "07198" } else { "07195" };
                        Write::ReplicateModel(pr::ReplicateModelRequest {
                            request_id,
                            model_id,
                            expected_version,
                            target_unit: unit(target),
                            replicated_on: date(6, 1),
                            note: String::new(),
                        })
                    }
                    "RetireModel" => Write::RetireModel(pr::RetireModelRequest {
                        request_id,
                        model_id,
                        expected_version,
                        reason: "Kết thúc".into(),
                        retired_on: date(6, 2),
                    }),
                    other => panic!("no write {other}"),
                }
            }
        }
    }

    /// Sends `write` with `token`: the answer, or the refusal.
    async fn send(&mut self, write: &Write, token: &str) -> Result<Answer, tonic::Status> {
        let write = write.clone();
        let (reg, rep) = (&mut self.reg, &mut self.rep);
        let model = |r: tonic::Response<pr::WriteModelResponse>| Answer::Model(r.into_inner());
        let report = |r: tonic::Response<pp::WriteReportResponse>| Answer::Report(r.into_inner());
        match write {
            Write::RegisterModel(m) => reg.register_model(req(m, token)).await.map(model),
            Write::AmendModel(m) => reg.amend_model(req(m, token)).await.map(model),
            Write::StartModel(m) => reg.start_model(req(m, token)).await.map(model),
            Write::RecognizeModel(m) => reg.recognize_model(req(m, token)).await.map(model),
            Write::CommendModel(m) => reg.commend_model(req(m, token)).await.map(model),
            Write::ReplicateModel(m) => reg.replicate_model(req(m, token)).await.map(model),
            Write::RetireModel(m) => reg.retire_model(req(m, token)).await.map(model),
            Write::SubmitReport(m) => rep.submit_report(req(m, token)).await.map(report),
            Write::AmendReport(m) => rep.amend_report(req(m, token)).await.map(report),
            Write::ReturnReport(m) => rep.return_report(req(m, token)).await.map(report),
            Write::ApproveReport(m) => rep.approve_report(req(m, token)).await.map(report),
            Write::ReopenReport(m) => rep.reopen_report(req(m, token)).await.map(report),
        }
    }

    /// How many events the registration and reporting services have written
    /// themselves (not counting what reporting receives from registration).
    fn written(&self) -> u64 {
        self.registration.log.own_sequence().unwrap() + self.reporting.log.own_sequence().unwrap()
    }

    /// A report at `unit` for `p`, submitted by a national reporter; its id and version.
    async fn report(&mut self, unit_code: &str, p: &str) -> (String, u64) {
        let id = format!("report-{unit_code}-{p}");
        match self
            .rep
            .get_report(req(pp::GetReportRequest { report_id: id.clone(), revision: 0 }, &token("admin", "")))
            .await
        {
            Ok(r) => (id, r.into_inner().version),
            Err(_) => {
                let w = self
                    .rep
                    .submit_report(req(submit(&format!("prep-{id}"), unit_code, p), &token("reporter", "")))
                    .await
                    .unwrap()
                    .into_inner();
                (w.report_id, w.version)
            }
        }
    }

    /// Puts the report in a status `rpc` accepts, through national callers' writes:
    /// an approved report is reopened, another amended (which submits it again), and
    /// one that must be approved is approved. Its id and version.
    async fn prepare(&mut self, rpc: &str, unit_code: &str, p: &str, n: usize) -> (String, u64) {
        use pp::ReportStatus as S;
        let (id, _) = self.report(unit_code, p).await;
        for step in 0..4 {
            let report = self
                .rep
                .get_report(req(pp::GetReportRequest { report_id: id.clone(), revision: 0 }, &token("admin", "")))
                .await
                .unwrap()
                .into_inner();
            let (status, version) = (report.status, report.version);
            let is = |s: S| status == s as i32;
            let ready = match rpc {
                "AmendReport" => !is(S::Approved),
                "ReturnReport" => is(S::Submitted),
                "ApproveReport" => is(S::Submitted) || is(S::Reopened),
                "ReopenReport" => is(S::Approved),
                other => panic!("no report change {other}"),
            };
            if ready {
                return (id, version);
            }
            let request_id = format!("prep-{rpc}-{id}-{n}-{step}");
            let (report_id, expected_version) = (id.clone(), version);
            let national = |role: &str| token(role, "");
            if is(S::Approved) {
                let m = pp::ReopenReportRequest { request_id, report_id, expected_version, reason: "Rà soát".into() };
                self.rep.reopen_report(req(m, &national("approver"))).await.unwrap();
            } else if rpc == "ReopenReport" && (is(S::Submitted) || is(S::Reopened)) {
                let m = pp::ApproveReportRequest { request_id, report_id, expected_version };
                self.rep.approve_report(req(m, &national("approver"))).await.unwrap();
            } else {
                let m = pp::AmendReportRequest {
                    request_id,
                    report_id,
                    expected_version,
                    figures: Some(Figures { models_registered: 3 + n as i64, ..Default::default() }),
                    summary: String::new(),
                    reason: "Bổ sung".into(),
                };
                self.rep.amend_report(req(m, &national("reporter"))).await.unwrap();
            }
        }
        panic!("report {id} never reached a status {rpc} accepts")
    }

    /// Calls `rpc` on the target `unit_code` with `token`; `n` makes request ids unique.
    async fn call(&mut self, rpc: &str, unit_code: &str, token: &str, n: usize) -> Result<(), tonic::Status> {
        let agg_period = || period("2024-H1");
        match rpc {
            _ if WRITES.contains(&rpc) => {
                let write = self.write_request(rpc, unit_code, n).await;
                self.send(&write, token).await.map(drop)
            }
            "GetReport" => {
                let (id, _) = self.report(unit_code, "2024-H2").await;
                self.rep.get_report(req(pp::GetReportRequest { report_id: id, revision: 0 }, token)).await.map(drop)
            }
            "GetReportHistory" => {
                let (id, _) = self.report(unit_code, "2024-H2").await;
                self.rep
                    .get_report_history(req(pp::GetReportHistoryRequest { report_id: id, ..Default::default() }, token))
                    .await
                    .map(drop)
            }
            "ListReports" => self
                .rep
                .list_reports(req(
                    pp::ListReportsRequest { unit: unit(unit_code), period: period("2024-H2"), ..Default::default() },
                    token,
                ))
                .await
                .map(drop),
            "GetRollup" => self
                .agg
                .get_rollup(req(
                    pa::GetRollupRequest {
                        unit: unit(unit_code),
                        period: agg_period(),
                        tree: Tree::Pre2025 as i32,
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "ListRollups" => self
                .agg
                .list_rollups(req(
                    pa::ListRollupsRequest {
                        parent: unit(unit_code),
                        period: agg_period(),
                        tree: Tree::Pre2025 as i32,
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "GetTimeSeries" => self
                .agg
                .get_time_series(req(
                    pa::GetTimeSeriesRequest {
                        unit: unit(unit_code),
                        tree: Tree::Pre2025 as i32,
                        from: period("2023-H1"),
                        to: period("2024-H2"),
                        include_unapproved: false,
                    },
                    token,
                ))
                .await
                .map(drop),
            "GetCompleteness" => self
                .agg
                .get_completeness(req(
                    pa::GetCompletenessRequest {
                        unit: unit(unit_code),
                        period: agg_period(),
                        include_children: true,
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "GetProjectionStatus" => {
                self.agg.get_projection_status(req(pa::GetProjectionStatusRequest {}, token)).await.map(drop)
            }
            "RebuildProjections" => self
                .agg
                .rebuild_projections(req(pa::RebuildProjectionsRequest { request_id: format!("cell-{n}") }, token))
                .await
                .map(drop),
            other => self.call_registration(other, unit_code, token, n).await,
        }
    }
}

fn token_of(role: &str) -> String {
    token(role, "")
}

const RPCS: [&str; 26] = [
    "GetUnit",
    "ListUnits",
    "RegisterModel",
    "AmendModel",
    "StartModel",
    "RecognizeModel",
    "CommendModel",
    "ReplicateModel",
    "RetireModel",
    "GetModel",
    "ListModels",
    "GetModelHistory",
    "SubmitReport",
    "AmendReport",
    "ReturnReport",
    "ApproveReport",
    "ReopenReport",
    "GetReport",
    "GetReportHistory",
    "ListReports",
    "GetRollup",
    "ListRollups",
    "GetTimeSeries",
    "GetCompleteness",
    "GetProjectionStatus",
    "RebuildProjections",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_allowed_cells_succeed_and_bad_tokens_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stack(dir.path()).await;
    let mut n = 0;
    let mut wrong = Vec::new();
    let mut cells = 0;
    let mut allowed_cells = 0;
    for rpc in RPCS {
        for role in ROLES {
            for relation in RELATIONS {
                n += 1;
                cells += 1;
                let result = s.call(rpc, relation.unit(), &token(role, CALLER), n).await;
                let want = allowed(rpc, role, relation);
                allowed_cells += usize::from(want);
                let ok = match &result {
                    Ok(()) => want,
                    Err(e) => !want && e.code() == Code::PermissionDenied,
                };
                if !ok {
                    wrong.push(format!(
                        "{rpc} {role} {relation:?}: want {}, got {result:?}",
                        if want { "ok" } else { "denied" }
                    ));
                }
            }
        }
        // Bad tokens: none, expired, signed with another secret, another algorithm.
        let claims = |exp| Claims { sub: "x".into(), role: "admin".into(), unit: String::new(), exp };
        let expired = dvk_runtime::auth::mint_hs256(SECRET, &claims(now_secs() - 3600)).unwrap();
        let forged =
            dvk_runtime::auth::mint_hs256(b"another-secret-another-secret-xx", &claims(now_secs() + 600)).unwrap();
        let hs384 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
            &claims(now_secs() + 600),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        for (what, bad) in [("no token", "".to_owned()), ("expired", expired), ("forged", forged), ("HS384", hs384)] {
            n += 1;
            cells += 1;
            let result = s.call(rpc, Relation::Own.unit(), &bad, n).await;
            if !matches!(&result, Err(e) if e.code() == Code::Unauthenticated) {
                wrong.push(format!("{rpc} with {what}: want unauthenticated, got {result:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {cells} cells wrong:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(cells, RPCS.len() * (16 + 4));
    assert_eq!((allowed_cells, RPCS.len() * 16), (ALLOWED_CELLS, 416));
    s.aggregation.stop().await;
    s.reporting.stop().await;
    s.registration.stop().await;
}

/// Who writes first in the replay matrix: a national caller, allowed on every target,
/// with a role the RPC's rule names (an admin where it may).
fn first_writer(rpc: &str) -> String {
    let roles = rule(rpc).roles;
    let role = if roles.contains(&Role::Admin) { Role::Admin } else { roles[0] };
    token(role.as_str(), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_write_is_answered_only_to_callers_allowed_on_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stack(dir.path()).await;
    let mut wrong = Vec::new();
    let mut cells = 0;
    let mut allowed_replays = 0;
    for (i, rpc) in WRITES.into_iter().enumerate() {
        for (j, relation) in RELATIONS.into_iter().enumerate() {
            for (k, role) in ROLES.into_iter().enumerate() {
                cells += 1;
                // Unique per cell; the four roles of one target get four periods to submit.
                let n = 1 + i * 16 + j * 4 + k;
                let write = s.write_request(rpc, relation.unit(), n).await;
                let first = match s.send(&write, &first_writer(rpc)).await {
                    Ok(a) => a,
                    Err(e) => panic!("{rpc} at {relation:?}: the national caller's write failed: {e:?}"),
                };
                let written = s.written();
                // The first caller's retry is answered as the first time.
                match s.send(&write, &first_writer(rpc)).await {
                    Ok(a) if a == first => {}
                    other => wrong.push(format!("{rpc} {relation:?}: retry: want {first:?}, got {other:?}")),
                }
                let replay = s.send(&write, &token(role, CALLER)).await;
                let want = allowed(rpc, role, relation);
                allowed_replays += usize::from(want);
                let ok = match &replay {
                    Ok(a) => want && *a == first,
                    Err(e) => !want && e.code() == Code::PermissionDenied,
                };
                if !ok {
                    wrong.push(format!(
                        "{rpc} {role} {relation:?}: replay: want {}, got {replay:?}",
                        if want { format!("{first:?}") } else { "denied".into() }
                    ));
                }
                if s.written() != written {
                    wrong.push(format!("{rpc} {role} {relation:?}: the retry or the replay wrote events"));
                }
            }
        }
    }

    // ImportUnits and ReorganizeUnits: the trees are the admins' to manage. The 2025
    // list and its mapping, imported by a national admin, are sent again (the request
    // ids derive from the content) by each role.
    let name = "gso-reorganization-2025-07-01.csv";
    let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
    let first = import::import(&mut s.reg, &token("admin", ""), &file, name, |_| {}).await.unwrap();
    assert!(first.units.units_added > 0, "{first:?}");
    assert!(first.links.as_ref().is_some_and(|l| l.links_added > 0), "{first:?}");
    let links: Vec<_> = file.links.iter().map(|(_, l)| l.clone()).collect();
    let encoded: Vec<Vec<u8>> = links.iter().map(prost::Message::encode_to_vec).collect();
    let mapping = pr::ReorganizeUnitsRequest {
        request_id: dvk_client::import::content_id(
            "reorganize",
            &encoded.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        ),
        from_tree: Tree::Pre2025 as i32,
        to_tree: Tree::Tree2025 as i32,
        effective_date: Some(Date { year: 2025, month: 7, day: 1 }),
        links,
        origin: name.into(),
    };
    for role in ROLES {
        cells += 2;
        let written = s.written();
        let caller = token(role, CALLER);
        let units = import::import(&mut s.reg, &caller, &file, name, |_| {}).await;
        let mapped = s.reg.reorganize_units(req(mapping.clone(), &caller)).await;
        let admin = allowed("ImportUnits", role, Relation::Own);
        assert_eq!(admin, allowed("ReorganizeUnits", role, Relation::Own));
        match units {
            Ok(o) if admin && o.units.units_added == 0 && o.links.as_ref().is_some_and(|l| l.links_added == 0) => {}
            Err(import::ImportError::Status(e)) if !admin && e.code() == Code::PermissionDenied => {}
            other => wrong.push(format!("ImportUnits {role}: replay: got {other:?}")),
        }
        match mapped {
            Ok(r) if admin && r.get_ref().links_added == 0 => {}
            Err(e) if !admin && e.code() == Code::PermissionDenied => {}
            other => wrong.push(format!("ReorganizeUnits {role}: replay: got {other:?}")),
        }
        if s.written() != written {
            wrong.push(format!("ImportUnits / ReorganizeUnits {role}: the replay wrote events"));
        }
    }
    assert!(wrong.is_empty(), "{} of {cells} replays wrong:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(cells, WRITES.len() * 16 + 8);
    assert_eq!(allowed_replays, ALLOWED_REPLAYS);
    s.aggregation.stop().await;
    s.reporting.stop().await;
    s.registration.stop().await;
}
