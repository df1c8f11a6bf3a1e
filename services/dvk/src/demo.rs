//! What `dvk` loads on a first start: the real administrative trees (both GSO lists,
//! embedded in the binary) and, with `--demo`, a demo workload of 2024 on the pre-2025
//! tree for three provinces: models and half-year reports, with the field's
//! proportions. The workload is generated from a fixed seed, so every demo is the same;
//! what it wrote is summed up in `<data-dir>/demo.json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use dvk_client::import;
use dvk_codec::convert;
use dvk_gso as gso;
use dvk_proto::common::v1 as pc;
use dvk_proto::events::v1 as pe;
use dvk_proto::registration::v1 as pr;
use dvk_proto::reporting::v1 as pp;
use serde::Serialize;
use tonic::transport::Channel;

/// The GSO lists, as shipped (`dvk-gso`).
const PRE2025: &[u8] = gso::PRE2025_LIST;
const REORGANIZATION: &[u8] = gso::CONVERSION_TABLE;

/// Quảng Ninh, Bắc Ninh and Hà Giang, as they were in 2024.
pub const PROVINCES: [&str; 3] = ["22", "27", "02"];
/// What every unit reports: both half-year reviews (sơ kết 6 tháng) and the year's
/// review (tổng kết năm), which totals its halves.
pub const PERIODS: [&str; 3] = ["2024-H1", "2024-H2", "2024"];

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?.connect().await?)
}

fn req<T>(m: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    Ok(import::authorized(m, token)?)
}

/// Imports both real trees and the mapping.
pub async fn load_trees(registration: SocketAddr, token: &str) -> anyhow::Result<()> {
    let mut client = pr::registration_service_client::RegistrationServiceClient::new(channel(registration).await?)
        .max_encoding_message_size(16 << 20);
    for (name, bytes) in [(gso::PRE2025_LIST_NAME, PRE2025), (gso::CONVERSION_TABLE_NAME, REORGANIZATION)] {
        let file = gso::read(bytes)?;
        let out = import::import(&mut client, token, &file, name, |_| {}).await?;
        println!("  {name}: {} units added", out.units.units_added);
        if let Some(r) = &out.reconciliation {
            use dvk_domain::reconcile::Side;
            println!(
                "  reconciled with the pre-2025 list: {} corrections applied, {} recoded communes linked (inferred), {} pre-2025 and {} 2025 communes unassigned (`dvkctl units import` lists them)",
                file.corrections.iter().filter(|(_, o)| o.is_ok()).count(),
                r.count(Side::Pre2025, "recoded"),
                r.count(Side::Pre2025, "unassigned"),
                r.count(Side::Y2025, "unassigned"),
            );
        }
    }
    Ok(())
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn new(seed: &str) -> Rng {
        Rng(seed.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the demo wrote, for the user and for tests to check the roll-ups against.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub tree: &'static str,
    pub provinces: Vec<String>,
    /// Models registered in 2024, in all and per province.
    pub models_registered: i64,
    pub models_by_province: BTreeMap<String, i64>,
    pub models_at_communes: i64,
    pub models_at_districts: i64,
    /// Per period: reports expected, submitted, approved, and the nation's approved figures.
    pub periods: BTreeMap<String, PeriodSummary>,
}

#[derive(Debug, Default, Serialize)]
pub struct PeriodSummary {
    pub expected: i64,
    pub submitted: i64,
    pub approved: i64,
    pub approved_figures: BTreeMap<String, i64>,
}

/// One unit of the demo: its code and level, and its province.
#[derive(Debug, Clone)]
struct DemoUnit {
    code: String,
    level: i32,
    province: String,
}

fn date(y: i32, m: i32, d: i32) -> Option<pc::Date> {
    Some(pc::Date { year: y, month: m, day: d })
}

fn details(n: u64, rng: &mut Rng, level: i32) -> pe::ModelDetails {
    const NAMES: [&str; 6] = [
        "Dân vận khéo xây dựng nông thôn mới",
        "Tuyến đường hoa tự quản",
        "Chi hội phụ nữ tiết kiệm giúp nhau",
        "Camera an ninh với cộng đồng",
        "Dòng họ không có người vi phạm pháp luật",
        "Bữa cơm nghĩa tình",
    ];
    let field = [pc::Field::Economy, pc::Field::CultureSociety, pc::Field::DefenceSecurity, pc::Field::PoliticalSystem]
        [(rng.next() % 4) as usize];
    let funds = if level == pc::Level::Commune as i32 { rng.range(20, 500) } else { rng.range(500, 5_000) } * 1_000_000;
    pe::ModelDetails {
        name: format!("{} (số {n})", NAMES[(rng.next() % 6) as usize]),
        field: field as i32,
        runner_kind: pe::RunnerKind::Collective as i32,
        runner_name: "Chi hội Phụ nữ thôn".into(),
        sponsor: pe::Sponsor::WomensUnion as i32,
        sponsor_name: "Hội Liên hiệp Phụ nữ".into(),
        objectives: "Vận động nhân dân cùng làm, cùng hưởng".into(),
        resources: Some(pe::Resources { funds: Some(pc::Money { vnd: funds }), workdays: rng.range(50, 2_000) }),
        timeline: Some(pe::Timeline { start: date(2024, 1, 2), end: None }),
        ..Default::default()
    }
}

fn figures(rng: &mut Rng, level: i32, registered: i64) -> pc::Figures {
    let scale = match level {
        l if l == pc::Level::Commune as i32 => 1,
        l if l == pc::Level::District as i32 => 8,
        _ => 40,
    };
    let received = rng.range(5, 60) * scale;
    pc::Figures {
        models_registered: registered,
        models_recognized: rng.range(0, registered),
        funds_mobilized: Some(pc::Money { vnd: rng.range(20, 500) * scale * 1_000_000 }),
        workdays: rng.range(100, 2_000) * scale,
        participants: rng.range(500, 5_000) * scale,
        dialogues_held: rng.range(1, 6) * scale,
        petitions_received: received,
        petitions_resolved: received * rng.range(80, 100) / 100,
        dan_van_days: rng.range(1, 2),
        commendations_collective: rng.range(0, 5) * scale.min(3),
        commendations_individual: rng.range(0, 8) * scale.min(3),
    }
}

/// Two reports' figures added up, as a year's review totals its halves.
fn total(a: &pc::Figures, b: &pc::Figures) -> pc::Figures {
    use dvk_domain::report::{Figure, Figures};
    let (a, b) = (convert::figures_in(Some(a)), convert::figures_in(Some(b)));
    let sum: Figures = Figure::ALL.into_iter().map(|f| (f, a[f] + b[f])).collect();
    convert::figures_out(&sum)
}

/// Adds figures as sent to a summary, by the figures' names.
fn add(into: &mut BTreeMap<String, i64>, f: &pc::Figures) {
    for (figure, value) in convert::figures_in(Some(f)).iter() {
        *into.entry(figure.name().to_owned()).or_default() += value;
    }
}

/// Records the demo workload through the services; returns what it wrote and the last
/// position token of each source.
pub async fn run(
    registration: SocketAddr,
    reporting: SocketAddr,
    token: &str,
    approver: &str,
) -> anyhow::Result<(Summary, Vec<pc::Position>)> {
    let file = gso::read(PRE2025)?;
    let parents: std::collections::HashMap<String, String> = file
        .units
        .iter()
        .filter_map(|(_, u)| Some((u.code.as_ref()?.code.clone(), u.parent.as_ref()?.code.clone())))
        .collect();
    let province_of = |code: &str| {
        let mut c = code.to_owned();
        while let Some(p) = parents.get(&c) {
            c = p.clone();
        }
        c
    };
    let units: Vec<DemoUnit> = file
        .units
        .iter()
        .map(|(_, u)| u)
        .filter_map(|u| {
            let code = u.code.as_ref()?.code.clone();
            let province = province_of(&code);
            PROVINCES.contains(&province.as_str()).then_some(DemoUnit { code, level: u.level, province })
        })
        .collect();
    let mut summary = Summary {
        tree: "pre2025",
        provinces: PROVINCES.iter().map(|p| (*p).to_owned()).collect(),
        ..Summary::default()
    };
    for p in PERIODS {
        summary
            .periods
            .insert(p.to_owned(), PeriodSummary { expected: units.len() as i64, ..PeriodSummary::default() });
    }
    let mut reg = pr::registration_service_client::RegistrationServiceClient::new(channel(registration).await?);
    let mut rep = pp::reporting_service_client::ReportingServiceClient::new(channel(reporting).await?);
    let bar = indicatif::ProgressBar::new(units.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  demo [{bar:40}] {pos}/{len} units")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let (mut last_reg, mut last_rep) = (0, 0);
    let mut n = 0u64;
    for unit in &units {
        let mut rng = Rng::new(&unit.code);
        // More commune models than district ones, and a few at the province.
        let count = match unit.level {
            l if l == pc::Level::Commune as i32 => rng.range(0, 3),
            l if l == pc::Level::District as i32 => rng.range(1, 4),
            _ => rng.range(2, 5),
        };
        let mut per_half = [0i64; 2];
        for _ in 0..count {
            n += 1;
            let month = rng.range(1, 11) as i32;
            let registered_on = date(2024, month, rng.range(1, 28) as i32);
            per_half[usize::from(month > 6)] += 1;
            let w = reg
                .register_model(req(
                    pr::RegisterModelRequest {
                        request_id: format!("demo-model-{n}"),
                        unit: Some(pc::UnitCode { code: unit.code.clone() }),
                        registered_on,
                        details: Some(details(n, &mut rng, unit.level)),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            last_reg = w.position.map_or(last_reg, |p| p.position);
            summary.models_registered += 1;
            *summary.models_by_province.entry(unit.province.clone()).or_default() += 1;
            if unit.level == pc::Level::Commune as i32 {
                summary.models_at_communes += 1;
            } else if unit.level == pc::Level::District as i32 {
                summary.models_at_districts += 1;
            }
            let mut version = w.version;
            if rng.chance(80) {
                let w = reg
                    .start_model(req(
                        pr::StartModelRequest {
                            request_id: format!("demo-start-{n}"),
                            model_id: w.model_id.clone(),
                            expected_version: version,
                            started_on: date(2024, month + 1, 1),
                        },
                        token,
                    )?)
                    .await?
                    .into_inner();
                (version, last_reg) = (w.version, w.position.map_or(last_reg, |p| p.position));
                if rng.chance(45) {
                    let w = reg
                        .recognize_model(req(
                            pr::RecognizeModelRequest {
                                request_id: format!("demo-recognize-{n}"),
                                model_id: w.model_id.clone(),
                                expected_version: version,
                                level: unit.level,
                                recognizing_unit: Some(pc::UnitCode { code: unit.code.clone() }),
                                decision: Some(pe::Decision {
                                    number: format!("{n}/QĐ-UBND"),
                                    date: date(2024, month + 1, 20),
                                    issuer: "Ủy ban nhân dân".into(),
                                }),
                                exemplary: rng.chance(20),
                            },
                            token,
                        )?)
                        .await?
                        .into_inner();
                    last_reg = w.position.map_or(last_reg, |p| p.position);
                }
            }
        }
        // Each unit reports both halves and the year, which totals them; most reports
        // are approved.
        let halves = [figures(&mut rng, unit.level, per_half[0]), figures(&mut rng, unit.level, per_half[1])];
        let year = total(&halves[0], &halves[1]);
        for (period, f) in PERIODS.iter().zip([halves[0], halves[1], year]) {
            if !rng.chance(95) {
                continue;
            }
            let w = rep
                .submit_report(req(
                    pp::SubmitReportRequest {
                        request_id: format!("demo-report-{}-{period}", unit.code),
                        unit: Some(pc::UnitCode { code: unit.code.clone() }),
                        period: Some(pc::Period { code: (*period).into() }),
                        figures: Some(f),
                        summary: if period.contains('H') {
                            format!("Báo cáo sơ kết {period}")
                        } else {
                            format!("Báo cáo tổng kết năm {period}")
                        },
                    },
                    token,
                )?)
                .await?
                .into_inner();
            last_rep = w.position.map_or(last_rep, |p| p.position);
            let s = summary.periods.get_mut(*period).expect("period");
            s.submitted += 1;
            if rng.chance(85) {
                let w = rep
                    .approve_report(req(
                        pp::ApproveReportRequest {
                            request_id: format!("demo-approve-{}-{period}", unit.code),
                            report_id: w.report_id,
                            expected_version: w.version,
                        },
                        approver,
                    )?)
                    .await?
                    .into_inner();
                last_rep = w.position.map_or(last_rep, |p| p.position);
                s.approved += 1;
                add(&mut s.approved_figures, &f);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let tokens = vec![
        pc::Position { source: "registration".into(), position: last_reg },
        pc::Position { source: "reporting".into(), position: last_rep },
    ];
    Ok((summary, tokens))
}
