//! The authorization matrix of the three services: every unary RPC (ImportUnits and
//! ReorganizeUnits, admin-only imports, are covered in `registration.rs`) ×
//! role × where the target lies from the caller (its own unit, a child, a sibling,
//! another province) — exactly the allowed cells succeed and the others are
//! PERMISSION_DENIED; and every RPC refuses a missing, expired, forged or
//! wrong-algorithm token with UNAUTHENTICATED.
//!
//! The caller acts for the district of Cô Tô (207, Quảng Ninh, pre-2025 tree).

use std::time::Duration;

use dvk_cli::{gso, import};
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_proto::aggregation::v1::{self as pa, aggregation_service_client::AggregationServiceClient};
use dvk_proto::common::v1::{Date, Field, Figures, Level, Period, Tree, UnitCode};
use dvk_proto::events::v1::{AwardForm, Decision, ModelDetails, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1::{self as pr, registration_service_client::RegistrationServiceClient};
use dvk_proto::reporting::v1::{self as pp, reporting_service_client::ReportingServiceClient};
use dvk_runtime::auth::{Claims, now_secs};
use dvk_runtime::host::Upstream;
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

/// The rule each RPC follows, written out from the README.
fn allowed(rpc: &str, role: &str, r: Relation) -> bool {
    match rpc {
        "SubmitReport" | "AmendReport" => matches!(role, "reporter" | "admin") && r.within(),
        // Strictly above: only the child's report, and only by an approver.
        "ReturnReport" | "ApproveReport" | "ReopenReport" => role == "approver" && r == Relation::Child,
        "GetReport" | "GetReportHistory" | "ListReports" => r.within(),
        "GetRollup" | "ListRollups" | "GetTimeSeries" | "GetCompleteness" => r.within(),
        "GetProjectionStatus" => true,
        "RebuildProjections" => role == "admin",
        // The administrative trees are reference data every caller may read.
        "GetUnit" | "ListUnits" => true,
        "RegisterModel" | "AmendModel" | "StartModel" | "ReplicateModel" | "RetireModel" => {
            matches!(role, "reporter" | "admin") && r.within()
        }
        "RecognizeModel" | "CommendModel" => matches!(role, "approver" | "admin") && r.within(),
        "GetModel" | "GetModelHistory" => r.within(),
        // Lists only what the caller may see (empty elsewhere), never refused.
        "ListModels" => true,
        other => panic!("no rule for {other}"),
    }
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

    /// Calls a registration RPC on a fresh model (or unit) at `unit_code`.
    async fn call_registration(
        &mut self,
        rpc: &str,
        unit_code: &str,
        token: &str,
        n: usize,
    ) -> Result<(), tonic::Status> {
        let request_id = format!("cell-{n}");
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
            "RegisterModel" => {
                let request = pr::RegisterModelRequest {
                    request_id,
                    unit: unit(unit_code),
                    registered_on: date(2, 20),
                    details: Some(details(n)),
                };
                self.reg.register_model(req(request, token)).await.map(drop)
            }
            _ => {
                let stage = match rpc {
                    "StartModel" | "GetModel" | "GetModelHistory" | "AmendModel" => 0,
                    "RecognizeModel" | "RetireModel" => 1,
                    _ => 2,
                };
                let (id, version) = self.model(unit_code, stage, n).await;
                match rpc {
                    "GetModel" => self.reg.get_model(req(pr::GetModelRequest { model_id: id }, token)).await.map(drop),
                    "GetModelHistory" => self
                        .reg
                        .get_model_history(req(
                            pr::GetModelHistoryRequest { model_id: id, ..Default::default() },
                            token,
                        ))
                        .await
                        .map(drop),
                    "StartModel" => self
                        .reg
                        .start_model(req(
                            pr::StartModelRequest {
                                request_id,
                                model_id: id,
                                expected_version: version,
                                started_on: date(3, 2),
                            },
                            token,
                        ))
                        .await
                        .map(drop),
                    "AmendModel" => {
                        let mut details = self
                            .reg
                            .get_model(req(pr::GetModelRequest { model_id: id.clone() }, &token_of("admin")))
                            .await
                            .unwrap()
                            .into_inner()
                            .details;
                        if let Some(d) = details.as_mut() {
                            d.name = format!("Mô hình {n} (sửa)");
                        }
                        self.reg
                            .amend_model(req(
                                pr::AmendModelRequest {
                                    request_id,
                                    model_id: id,
                                    expected_version: version,
                                    details,
                                    reason: "Sửa tên".into(),
                                },
                                token,
                            ))
                            .await
                            .map(drop)
                    }
                    "RecognizeModel" => self
                        .reg
                        .recognize_model(req(
                            pr::RecognizeModelRequest {
                                request_id,
                                model_id: id,
                                expected_version: version,
                                level: level_of(unit_code) as i32,
                                recognizing_unit: unit(unit_code),
                                decision: decision(n),
                                exemplary: false,
                            },
                            token,
                        ))
                        .await
                        .map(drop),
                    "CommendModel" => self
                        .reg
                        .commend_model(req(
                            pr::CommendModelRequest {
                                request_id,
                                model_id: id,
                                expected_version: version,
                                form: AwardForm::CertificateOfMerit as i32,
                                level: level_of(unit_code) as i32,
                                awarding_unit: unit(unit_code),
                                decision: decision(n + 500_000),
                            },
                            token,
                        ))
                        .await
                        .map(drop),
                    "ReplicateModel" => {
                        let target = if unit_code == "07195" { "07198" } else { "07195" };
                        self.reg
                            .replicate_model(req(
                                pr::ReplicateModelRequest {
                                    request_id,
                                    model_id: id,
                                    expected_version: version,
                                    target_unit: unit(target),
                                    replicated_on: date(6, 1),
                                    note: String::new(),
                                },
                                token,
                            ))
                            .await
                            .map(drop)
                    }
                    "RetireModel" => self
                        .reg
                        .retire_model(req(
                            pr::RetireModelRequest {
                                request_id,
                                model_id: id,
                                expected_version: version,
                                reason: "Kết thúc".into(),
                                retired_on: date(6, 2),
                            },
                            token,
                        ))
                        .await
                        .map(drop),
                    other => panic!("no call for {other}"),
                }
            }
        }
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

    /// Puts the report in the status the next allowed call needs.
    async fn prepare(&mut self, rpc: &str, unit_code: &str, p: &str, n: usize) -> (String, u64) {
        let (id, version) = self.report(unit_code, p).await;
        let status = self
            .rep
            .get_report(req(pp::GetReportRequest { report_id: id.clone(), revision: 0 }, &token("admin", "")))
            .await
            .unwrap()
            .into_inner()
            .status;
        let national = |role: &str| token(role, "");
        let need_approved = rpc == "ReopenReport";
        let need_open = matches!(rpc, "ReturnReport" | "ApproveReport" | "AmendReport");
        let approved = status == pp::ReportStatus::Approved as i32;
        if need_approved && !approved {
            let w = self
                .rep
                .approve_report(req(
                    pp::ApproveReportRequest {
                        request_id: format!("prep-approve-{id}-{n}"),
                        report_id: id.clone(),
                        expected_version: version,
                    },
                    &national("approver"),
                ))
                .await
                .unwrap()
                .into_inner();
            return (id, w.version);
        }
        if need_open && approved {
            let w = self
                .rep
                .reopen_report(req(
                    pp::ReopenReportRequest {
                        request_id: format!("prep-reopen-{id}-{n}"),
                        report_id: id.clone(),
                        expected_version: version,
                        reason: "Rà soát".into(),
                    },
                    &national("approver"),
                ))
                .await
                .unwrap()
                .into_inner();
            return (id, w.version);
        }
        if rpc == "ReturnReport" && status != pp::ReportStatus::Submitted as i32 {
            let w = self
                .rep
                .amend_report(req(
                    pp::AmendReportRequest {
                        request_id: format!("prep-amend-{id}-{n}"),
                        report_id: id.clone(),
                        expected_version: version,
                        figures: Some(Figures { models_registered: 3 + n as i64, ..Default::default() }),
                        summary: String::new(),
                        reason: "Bổ sung".into(),
                    },
                    &national("reporter"),
                ))
                .await
                .unwrap()
                .into_inner();
            return (id, w.version);
        }
        (id, version)
    }

    /// Calls `rpc` on the target `unit_code` with `token`; `n` makes request ids unique.
    async fn call(&mut self, rpc: &str, unit_code: &str, token: &str, n: usize) -> Result<(), tonic::Status> {
        let agg_period = || period("2024-H1");
        match rpc {
            "SubmitReport" => {
                // Each allowed cell submits a report of its own (unit, period).
                let periods = ["2021-H1", "2021-H2", "2021", "2022-H1", "2022-H2", "2022", "2023-H1", "2023-H2"];
                let p = periods[n % periods.len()];
                self.rep.submit_report(req(submit(&format!("cell-{n}"), unit_code, p), token)).await.map(drop)
            }
            "AmendReport" | "ReturnReport" | "ApproveReport" | "ReopenReport" => {
                let (id, version) = self.prepare(rpc, unit_code, "2024-H1", n).await;
                let request_id = format!("cell-{n}");
                match rpc {
                    "AmendReport" => self
                        .rep
                        .amend_report(req(
                            pp::AmendReportRequest {
                                request_id,
                                report_id: id,
                                expected_version: version,
                                figures: Some(Figures { models_registered: 10 + n as i64, ..Default::default() }),
                                summary: String::new(),
                                reason: "Sửa số liệu".into(),
                            },
                            token,
                        ))
                        .await
                        .map(drop),
                    "ReturnReport" => self
                        .rep
                        .return_report(req(
                            pp::ReturnReportRequest {
                                request_id,
                                report_id: id,
                                expected_version: version,
                                reason: "Thiếu".into(),
                            },
                            token,
                        ))
                        .await
                        .map(drop),
                    "ApproveReport" => self
                        .rep
                        .approve_report(req(
                            pp::ApproveReportRequest { request_id, report_id: id, expected_version: version },
                            token,
                        ))
                        .await
                        .map(drop),
                    _ => self
                        .rep
                        .reopen_report(req(
                            pp::ReopenReportRequest {
                                request_id,
                                report_id: id,
                                expected_version: version,
                                reason: "Rà soát".into(),
                            },
                            token,
                        ))
                        .await
                        .map(drop),
                }
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
    for rpc in RPCS {
        for role in ROLES {
            for relation in RELATIONS {
                n += 1;
                cells += 1;
                let result = s.call(rpc, relation.unit(), &token(role, CALLER), n).await;
                let want = allowed(rpc, role, relation);
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
    s.aggregation.stop().await;
    s.reporting.stop().await;
    s.registration.stop().await;
}
