//! The aggregation over real services with the real GSO trees: a seeded random
//! workload of models and reports in several provinces, recorded through registration
//! and reporting; every roll-up, at every level of both trees, equals a plain fold of
//! the generated inputs computed here (not with the projection's code). Then
//! read-your-writes, time travel, a restart and a rebuild, which give the same answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use dvk_client::import;
use dvk_codec::convert;
use dvk_domain::Period as DPeriod;
use dvk_domain::report::{Figure, Figures, Measure};
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_gso as gso;
use dvk_proto::aggregation::v1::{self as pa, aggregation_service_client::AggregationServiceClient};
use dvk_proto::common::v1::{Date, Field, Level, Money, Period, Position, Tree, UnitCode};
use dvk_proto::events::v1::{AwardForm, Decision, MergeKind, ModelDetails, Resources, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1 as pr;
use dvk_proto::reporting::v1 as pp;
use dvk_runtime::host::{Upstream, today};
use dvk_tests::{Service, admin_units, token};
use tonic::transport::Channel;

fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    import::authorized(message, token).unwrap()
}

fn unit(code: &str) -> Option<UnitCode> {
    Some(UnitCode { code: code.into() })
}

fn period(code: &str) -> Option<Period> {
    Some(Period { code: code.into() })
}

/// A small deterministic generator (the workload is the same on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The GSO data as the test reads it: parents and levels of both trees, and the
/// mapping rows in the file's order.
struct Gso {
    parent: HashMap<(bool, String), Option<String>>,
    level: HashMap<(bool, String), i32>,
    name: HashMap<(bool, String), String>,
    links: Vec<(String, String, u32, i32)>,
}

impl Gso {
    fn load() -> Gso {
        let mut g = Gso { parent: HashMap::new(), level: HashMap::new(), name: HashMap::new(), links: Vec::new() };
        let mut table_rows = Vec::new();
        for (name, y2025) in [("gso-communes-2025-01-04.csv", false), ("gso-reorganization-2025-07-01.csv", true)] {
            let f = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
            for (_, u) in &f.units {
                let code = u.code.as_ref().unwrap().code.clone();
                let parent = u.parent.as_ref().map(|p| p.code.clone()).filter(|p| !p.is_empty());
                g.parent.insert((y2025, code.clone()), parent);
                g.level.insert((y2025, code.clone()), u.level);
                g.name.insert((y2025, code), u.name.clone());
            }
            for (_, l) in &f.links {
                let (old, new) = (l.old_code.as_ref().unwrap().code.clone(), l.new_code.as_ref().unwrap().code.clone());
                if !g.links.iter().any(|(o, n, _, _)| *o == old && *n == new) {
                    let rank = g.links.iter().filter(|(o, ..)| *o == old).count() as u32;
                    g.links.push((old, new, rank, l.kind));
                }
            }
            table_rows = f.rows;
        }
        // Communes recoded between the lists (the README's rule, written out again
        // with plain name equality, which the shipped cases satisfy): a listed commune
        // the table never names takes the links of the one old code of the table,
        // absent from the list, with its name in its district.
        let listed_old: Vec<String> =
            g.level.keys().filter(|(t, c)| !*t && c.len() == 5).map(|(_, c)| c.clone()).collect();
        for old in listed_old {
            if g.links.iter().any(|(o, ..)| *o == old) {
                continue;
            }
            let (name, district) = (&g.name[&(false, old.clone())], g.parent[&(false, old.clone())].clone());
            let mut candidates: Vec<&dvk_domain::reconcile::TableRow> = table_rows
                .iter()
                .filter(|r| {
                    !g.level.contains_key(&(false, r.old_code.as_str().to_owned()))
                        && r.old_name == *name
                        && r.old_district.as_ref().map(|d| d.as_str().to_owned()) == district
                })
                .collect();
            candidates.dedup_by(|a, b| a.old_code == b.old_code);
            let codes: BTreeSet<&str> = candidates.iter().map(|r| r.old_code.as_str()).collect();
            if codes.len() == 1 {
                for (rank, r) in candidates.iter().enumerate() {
                    let kind = convert::merge_out(r.kind) as i32;
                    g.links.push((old.clone(), r.new_code.as_str().to_owned(), rank as u32, kind));
                }
            }
        }
        g
    }

    fn codes(&self, y2025: bool, level: Level, province: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .level
            .iter()
            .filter(|((t, c), l)| {
                *t == y2025 && **l == level as i32 && self.ancestors(y2025, c).contains(&province.to_owned())
            })
            .map(|((_, c), _)| c.clone())
            .collect();
        v.sort();
        v
    }

    fn ancestors(&self, y2025: bool, code: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut next = self.parent.get(&(y2025, code.to_owned())).cloned().flatten();
        while let Some(p) = next {
            next = self.parent.get(&(y2025, p.clone())).cloned().flatten();
            out.push(p);
        }
        out
    }

    fn whole(kind: i32) -> bool {
        [
            MergeKind::Whole,
            MergeKind::Unchanged,
            MergeKind::TypeChanged,
            MergeKind::Renamed,
            MergeKind::DistrictToSpecialZone,
        ]
        .iter()
        .any(|k| *k as i32 == kind)
    }

    /// The successor of an old commune that took its whole population, else the
    /// first-named one, and whether that is an allocation.
    fn successor(&self, old: &str) -> Option<(String, bool)> {
        let mut succ: Vec<&(String, String, u32, i32)> = self.links.iter().filter(|l| l.0 == old).collect();
        succ.sort_by_key(|l| l.2);
        let first = succ.first()?;
        let people = succ.iter().find(|l| l.3 == MergeKind::PartAreaWholePopulation as i32).unwrap_or(first);
        Some((people.1.clone(), !(succ.len() == 1 && Self::whole(first.3))))
    }

    fn new_province_of(&self, old_province: &str) -> Option<String> {
        self.codes(false, Level::Commune, old_province)
            .iter()
            .find_map(|c| self.successor(c))
            .and_then(|(new, _)| self.ancestors(true, &new).last().cloned())
    }

    /// Where a unit stands in the other tree (the README's rule, written out again).
    fn express(&self, y2025: bool, code: &str, to_2025: bool) -> Option<(String, bool)> {
        let level = *self.level.get(&(y2025, code.to_owned()))?;
        if y2025 == to_2025 {
            return Some((code.to_owned(), false));
        }
        let found = match (y2025, level) {
            (false, l) if l == Level::Commune as i32 => self.successor(code)?,
            (false, l) if l == Level::District as i32 => {
                (self.new_province_of(self.parent.get(&(false, code.to_owned()))?.as_ref()?)?, false)
            }
            (false, _) => (self.new_province_of(code)?, false),
            (true, l) if l == Level::Commune as i32 => {
                let preds: Vec<&String> = self.links.iter().filter(|l| l.1 == code).map(|l| &l.0).collect();
                let first = preds.iter().find(|p| self.level.contains_key(&(false, (**p).clone())))?;
                let exact = preds.len() == 1 && self.successor(first).is_some_and(|(n, a)| !a && n == code);
                ((*first).clone(), !exact)
            }
            (true, _) => {
                let olds: BTreeSet<String> = self
                    .level
                    .iter()
                    .filter(|((t, _), l)| !*t && **l == Level::Province as i32)
                    .map(|((_, c), _)| c.clone())
                    .filter(|c| self.new_province_of(c).as_deref() == Some(code))
                    .collect();
                let old = if olds.contains(code) { code.to_owned() } else { olds.first()?.clone() };
                (old, olds.len() > 1)
            }
        };
        self.level.contains_key(&(to_2025, found.0.clone())).then_some(found)
    }
}

/// What a roll-up should say, from the plain fold.
#[derive(Debug, Clone, Default, PartialEq)]
struct Expected {
    /// registered, implementing, recognised, exemplary, commended, replicated, retired,
    /// then registrations by field (4).
    models: [i64; 11],
    models_allocated: i64,
    all: Figures,
    all_n: i64,
    all_allocated: i64,
    approved: Figures,
    approved_n: i64,
    approved_allocated: i64,
}

type Key = (bool, Option<String>, String);

/// Answers by (2025 tree?, unit, period, include_unapproved): what they say, and the
/// number of figures allocated.
type Answers = BTreeMap<(bool, Option<String>, String, bool), (Expected, i64)>;

fn half(d: &Date) -> String {
    format!("{}-H{}", d.year, if d.month <= 6 { 1 } else { 2 })
}

/// The cells of both trees a contribution at `code` of `y2025` lands in.
fn targets(g: &Gso, y2025: bool, code: &str) -> Vec<(bool, Option<String>, bool)> {
    let mut out = Vec::new();
    for to in [false, true] {
        let Some((c, allocated)) = g.express(y2025, code, to) else { continue };
        out.push((to, Some(c.clone()), allocated));
        for a in g.ancestors(to, &c) {
            out.push((to, Some(a), allocated));
        }
        out.push((to, None, allocated));
    }
    out
}

fn day(d: &Date, add: i32) -> Date {
    let date = dvk_domain::Date::new("d", d.year, d.month as u32, d.day as u32).unwrap().add_days(add.into()).unwrap();
    Date { year: date.year(), month: date.month() as i32, day: date.day() as i32 }
}

/// Reports for 2025-H1 (pre-2025 tree) and 2025-H2 (2025 tree) are open today.
fn schedule() -> Schedule {
    let end = DPeriod::parse("p", "2025-H1").unwrap().end();
    let days = (today().to_unix_days() - end.to_unix_days()) as u32 + 400;
    Schedule {
        half_year: Deadline { opens_before_end: 15, due_after_end: 30, locks_after_end: days },
        ..Schedule::default()
    }
}

/// Records the workload through the real services; returns the expected roll-ups and
/// the last write position of each source.
async fn workload(
    g: &Gso,
    registration: &Service,
    reporting: &Service,
    seed: u64,
) -> (HashMap<Key, Expected>, Vec<Position>) {
    let mut rng = Rng(seed);
    let mut reg = registration.client().await;
    let mut rep = reporting.reporting_client().await;
    let (reporter, approver) = (token("reporter", ""), token("approver", ""));
    let mut expected: HashMap<Key, Expected> = HashMap::new();
    let mut last_reg = 0;
    let mut last_rep = 0;

    // Pre-2025 units of three provinces (Hà Giang and Tuyên Quang merged in 2025;
    // Quảng Ninh did not), and 2025 communes of the provinces after the merger.
    let mut pre_communes = Vec::new();
    let mut pre_districts = Vec::new();
    for p in ["02", "08", "22"] {
        let c = g.codes(false, Level::Commune, p);
        for _ in 0..8 {
            pre_communes.push(c[rng.below(c.len() as u64) as usize].clone());
        }
        let d = g.codes(false, Level::District, p);
        pre_districts.push(d[rng.below(d.len() as u64) as usize].clone());
    }
    let mut new_communes = Vec::new();
    for p in ["08", "22"] {
        let c = g.codes(true, Level::Commune, p);
        for _ in 0..8 {
            new_communes.push(c[rng.below(c.len() as u64) as usize].clone());
        }
    }
    pre_communes.sort();
    pre_communes.dedup();
    new_communes.sort();
    new_communes.dedup();

    // Models: registered in the first months of 2025 on the pre-2025 tree, or from
    // August on the 2025 tree; then started, recognised, commended, replicated, retired.
    let mut n = 0;
    for (y2025, communes, month) in [(false, &pre_communes, 1), (true, &new_communes, 8)] {
        for i in 0..24 {
            n += 1;
            let commune = communes[rng.below(communes.len() as u64) as usize].clone();
            let d0 = Date { year: 2025, month: month + (i % 2), day: 1 + rng.below(27) as i32 };
            let field = [Field::Economy, Field::CultureSociety, Field::DefenceSecurity, Field::PoliticalSystem]
                [rng.below(4) as usize];
            let r = reg
                .register_model(req(
                    pr::RegisterModelRequest {
                        request_id: format!("m{n}"),
                        unit: unit(&commune),
                        registered_on: Some(d0),
                        details: Some(ModelDetails {
                            name: format!("Mô hình dân vận khéo số {n}"),
                            field: field as i32,
                            runner_kind: RunnerKind::Collective as i32,
                            runner_name: "Chi hội Nông dân".into(),
                            sponsor: Sponsor::FarmersUnion as i32,
                            sponsor_name: "Hội Nông dân xã".into(),
                            objectives: "Làm đường giao thông nông thôn".into(),
                            resources: Some(Resources { funds: Some(Money { vnd: 50_000_000 }), workdays: 100 }),
                            timeline: Some(Timeline { start: Some(d0), end: None }),
                            ..Default::default()
                        }),
                    },
                    &reporter,
                ))
                .await
                .unwrap()
                .into_inner();
            let id = r.model_id.clone();
            let mut version = r.version;
            last_reg = r.position.unwrap().position;
            let mut flows: Vec<(Date, usize)> = vec![(d0, 0), (d0, 7 + field as usize - 1)];
            let decision = |k: &str, d: Date| Decision {
                number: format!("{k}-{n}/QĐ-UBND"),
                date: Some(d),
                issuer: "UBND xã".into(),
            };
            if rng.chance(80) {
                let d = day(&d0, 10);
                let w = reg
                    .start_model(req(
                        pr::StartModelRequest {
                            request_id: format!("s{n}"),
                            model_id: id.clone(),
                            expected_version: version,
                            started_on: Some(d),
                        },
                        &reporter,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                (version, last_reg) = (w.version, w.position.unwrap().position);
                flows.push((d, 1));
                if rng.chance(60) {
                    let d = day(&d0, 40);
                    let exemplary = rng.chance(30);
                    let w = reg
                        .recognize_model(req(
                            pr::RecognizeModelRequest {
                                request_id: format!("r{n}"),
                                model_id: id.clone(),
                                expected_version: version,
                                level: Level::Commune as i32,
                                recognizing_unit: unit(&commune),
                                decision: Some(decision("CN", d)),
                                exemplary,
                            },
                            &approver,
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    (version, last_reg) = (w.version, w.position.unwrap().position);
                    flows.push((d, 2));
                    if exemplary {
                        flows.push((d, 3));
                    }
                    if rng.chance(50) {
                        let d = day(&d0, 50);
                        let w = reg
                            .commend_model(req(
                                pr::CommendModelRequest {
                                    request_id: format!("c{n}"),
                                    model_id: id.clone(),
                                    expected_version: version,
                                    form: AwardForm::CertificateOfMerit as i32,
                                    level: Level::Commune as i32,
                                    awarding_unit: unit(&commune),
                                    decision: Some(decision("KT", d)),
                                },
                                &approver,
                            ))
                            .await
                            .unwrap()
                            .into_inner();
                        (version, last_reg) = (w.version, w.position.unwrap().position);
                        flows.push((d, 4));
                    }
                    if rng.chance(50) {
                        let d = day(&d0, 60);
                        let target = communes.iter().find(|c| **c != commune).unwrap().clone();
                        let w = reg
                            .replicate_model(req(
                                pr::ReplicateModelRequest {
                                    request_id: format!("p{n}"),
                                    model_id: id.clone(),
                                    expected_version: version,
                                    target_unit: unit(&target),
                                    replicated_on: Some(d),
                                    note: String::new(),
                                },
                                &reporter,
                            ))
                            .await
                            .unwrap()
                            .into_inner();
                        (version, last_reg) = (w.version, w.position.unwrap().position);
                        flows.push((d, 5));
                    }
                }
            }
            if rng.chance(20) {
                let d = day(&d0, 90);
                let w = reg
                    .retire_model(req(
                        pr::RetireModelRequest {
                            request_id: format!("x{n}"),
                            model_id: id.clone(),
                            expected_version: version,
                            reason: "Hoàn thành".into(),
                            retired_on: Some(d),
                        },
                        &reporter,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                last_reg = w.position.unwrap().position;
                flows.push((d, 6));
            }
            for (to, u, allocated) in targets(g, y2025, &commune) {
                for (d, k) in &flows {
                    let e = expected.entry((to, u.clone(), half(d))).or_default();
                    e.models[*k] += 1;
                    if allocated && *k != 3 && *k < 7 {
                        e.models_allocated += 1;
                    }
                }
            }
        }
    }

    // Reports: 2025-H1 from pre-2025 communes and districts, 2025-H2 from 2025
    // communes; some amended, some approved.
    let mut m = 0;
    let units: Vec<(bool, String, &str)> = pre_communes
        .iter()
        .chain(&pre_districts)
        .map(|c| (false, c.clone(), "2025-H1"))
        .chain(new_communes.iter().map(|c| (true, c.clone(), "2025-H2")))
        .collect();
    for (y2025, code, p) in units {
        m += 1;
        // Every figure at random within its rules: a capped one is drawn after its cap.
        let fig = |rng: &mut Rng| {
            let mut f = Figures::default();
            for figure in Figure::ALL {
                let below = match (figure.at_most(), figure.measure()) {
                    (Some(cap), _) => f[cap] as u64 + 1,
                    (None, Measure::Count) => 5_000,
                    (None, Measure::Vnd) => 90_000_000_000,
                };
                f[figure] = rng.below(below) as i64;
            }
            convert::figures_out(&f)
        };
        let mut latest = fig(&mut rng);
        let w = rep
            .submit_report(req(
                pp::SubmitReportRequest {
                    request_id: format!("rep{m}"),
                    unit: unit(&code),
                    period: period(p),
                    figures: Some(latest),
                    summary: String::new(),
                },
                &reporter,
            ))
            .await
            .unwrap()
            .into_inner();
        let (id, mut version) = (w.report_id, w.version);
        last_rep = w.position.unwrap().position;
        if rng.chance(30) {
            latest = fig(&mut rng);
            let w = rep
                .amend_report(req(
                    pp::AmendReportRequest {
                        request_id: format!("amend{m}"),
                        report_id: id.clone(),
                        expected_version: version,
                        figures: Some(latest),
                        summary: String::new(),
                        reason: "Bổ sung".into(),
                    },
                    &reporter,
                ))
                .await
                .unwrap()
                .into_inner();
            (version, last_rep) = (w.version, w.position.unwrap().position);
        }
        let approved = rng.chance(60);
        if approved {
            let w = rep
                .approve_report(req(
                    pp::ApproveReportRequest {
                        request_id: format!("appr{m}"),
                        report_id: id.clone(),
                        expected_version: version,
                    },
                    &approver,
                ))
                .await
                .unwrap()
                .into_inner();
            last_rep = w.position.unwrap().position;
        }
        let f = convert::figures_in(Some(&latest));
        for (to, u, allocated) in targets(g, y2025, &code) {
            let e = expected.entry((to, u, p.to_owned())).or_default();
            e.all.add(&f, 1);
            e.all_n += 1;
            e.all_allocated += i64::from(allocated);
            if approved {
                e.approved.add(&f, 1);
                e.approved_n += 1;
                e.approved_allocated += i64::from(allocated);
            }
        }
    }
    let tokens = vec![
        Position { source: "registration".into(), position: last_reg },
        Position { source: "reporting".into(), position: last_rep },
    ];
    (expected, tokens)
}

/// What the service says, in the shape of `Expected`.
fn observed(r: &pa::Rollup, counts: bool) -> Expected {
    let m = r.models.clone().unwrap_or_default();
    let by_field = |f: Field| m.by_field.iter().find(|x| x.field == f as i32).map_or(0, |x| x.count);
    let mut e = Expected {
        models: [
            m.registered,
            m.implementing,
            m.recognized,
            m.exemplary,
            m.commended,
            m.replicated,
            m.retired,
            by_field(Field::Economy),
            by_field(Field::CultureSociety),
            by_field(Field::DefenceSecurity),
            by_field(Field::PoliticalSystem),
        ],
        ..Expected::default()
    };
    let f = convert::figures_in(r.figures.as_ref());
    if counts {
        (e.all, e.all_n) = (f, r.reports_counted);
    } else {
        (e.approved, e.approved_n) = (f, r.reports_counted);
    }
    e
}

/// Every roll-up of `keys` (in both trees, with and without unapproved reports) as
/// the service answers it, keyed like the expectations.
async fn answers(
    client: &mut AggregationServiceClient<Channel>,
    keys: &BTreeSet<(bool, Option<String>)>,
    periods: &[&str],
    as_of: Option<pa::AsOf>,
) -> Answers {
    let mut out = BTreeMap::new();
    for (y2025, u) in keys {
        for p in periods {
            for include_unapproved in [false, true] {
                let r = client
                    .get_rollup(req(
                        pa::GetRollupRequest {
                            unit: u.as_deref().and_then(unit),
                            period: period(p),
                            tree: if *y2025 { Tree::Tree2025 } else { Tree::Pre2025 } as i32,
                            include_unapproved,
                            min_positions: Vec::new(),
                            as_of: as_of.clone(),
                            ..Default::default()
                        },
                        &token("analyst", ""),
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                out.insert(
                    (*y2025, u.clone(), (*p).to_owned(), include_unapproved),
                    (observed(&r, include_unapproved), r.allocated_figures),
                );
            }
        }
    }
    out
}

/// Each source event is in the aggregation's log exactly once.
fn assert_once(log: &dvk_eventlog::EventLog) {
    let mut seen = BTreeSet::new();
    for record in log.read_all(1) {
        let env = record.unwrap().envelope().unwrap();
        assert!(seen.insert((env.source.clone(), env.source_position)), "{} {} twice", env.source, env.source_position);
    }
    assert!(seen.len() > 100, "the log holds both sources' events");
}

/// Every answer equals the plain fold: model flows summed over the period's halves,
/// report figures of the period itself.
fn assert_matches(expected: &HashMap<Key, Expected>, got: &Answers) {
    let mut checked = 0;
    for ((y2025, u, p, include_unapproved), (obs, allocated)) in got {
        let mut want = Expected::default();
        let halves: Vec<String> =
            if p.len() == 4 { vec![format!("{p}-H1"), format!("{p}-H2")] } else { vec![p.clone()] };
        let mut models_allocated = 0;
        for h in &halves {
            if let Some(e) = expected.get(&(*y2025, u.clone(), h.clone())) {
                for i in 0..11 {
                    want.models[i] += e.models[i];
                }
                models_allocated += e.models_allocated;
            }
        }
        let cell = expected.get(&(*y2025, u.clone(), p.clone())).cloned().unwrap_or_default();
        let want_allocated =
            models_allocated + if *include_unapproved { cell.all_allocated } else { cell.approved_allocated };
        if *include_unapproved {
            (want.all, want.all_n) = (cell.all, cell.all_n);
        } else {
            (want.approved, want.approved_n) = (cell.approved, cell.approved_n);
        }
        let tree = if *y2025 { "2025" } else { "pre2025" };
        assert_eq!(obs, &want, "{tree} {u:?} {p} unapproved={include_unapproved}");
        assert_eq!(*allocated, want_allocated, "allocated: {tree} {u:?} {p}");
        checked += 1;
    }
    assert!(checked > 200, "only {checked} roll-ups compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_at_every_level_of_both_trees_equal_a_plain_fold_and_survive_restart_and_rebuild() {
    let g = Gso::load();
    let dir = tempfile::tempdir().unwrap();
    let registration = Service::registration(&dir.path().join("registration")).await;
    {
        let mut client = registration.client().await;
        for name in ["gso-communes-2025-01-04.csv", "gso-reorganization-2025-07-01.csv"] {
            let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
            import::import(&mut client, &token("admin", ""), &file, name, |_| {}).await.unwrap();
        }
    }
    let links = dvk_reporting::Links { relay: None, registration: Some(Upstream::Local(registration.log.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule(), links).await;
    let aggregation_links = || dvk_aggregation::Links {
        registration: Some(Upstream::Local(registration.log.clone())),
        reporting: Some(Upstream::Local(reporting.log.clone())),
    };
    let aggregation = Service::aggregation(&dir.path().join("aggregation"), aggregation_links()).await;
    // The reporting service needs the trees before reports can be submitted.
    let mut rep = reporting.reporting_client().await;
    for _ in 0..600 {
        let r = rep
            .list_reports(req(
                pp::ListReportsRequest { unit: unit("22"), period: period("2025-H2"), ..Default::default() },
                &token("analyst", ""),
            ))
            .await;
        if r.is_ok_and(|r| r.into_inner().completeness.is_some_and(|c| c.expected > 1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (expected, tokens) = workload(&g, &registration, &reporting, 0x5eed_2025).await;
    let mut client = aggregation.aggregation_client().await;

    // Read-your-writes: with the last tokens, the roll-up includes every write.
    let nation = client
        .get_rollup(req(
            pa::GetRollupRequest {
                period: period("2025-H2"),
                tree: Tree::Tree2025 as i32,
                include_unapproved: true,
                min_positions: tokens.clone(),
                ..Default::default()
            },
            &token("analyst", ""),
        ))
        .await
        .unwrap()
        .into_inner();
    let want = expected.get(&(true, None, "2025-H2".into())).cloned().unwrap_or_default();
    assert_eq!(nation.reports_counted, want.all_n);
    // A token from the future: DEADLINE_EXCEEDED within the caller's deadline, never a stale answer.
    let mut late = req(
        pa::GetRollupRequest {
            period: period("2025-H2"),
            tree: Tree::Tree2025 as i32,
            min_positions: vec![Position { source: "reporting".into(), position: tokens[1].position + 1000 }],
            ..Default::default()
        },
        &token("analyst", ""),
    );
    late.set_timeout(Duration::from_millis(300));
    let e = client.get_rollup(late).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");

    // Every touched unit, its ancestors and the nation, in both trees.
    let keys: BTreeSet<(bool, Option<String>)> = expected.keys().map(|(t, u, _)| (*t, u.clone())).collect();
    let periods = ["2025-H1", "2025-H2", "2025"];
    let got = answers(&mut client, &keys, &periods, None).await;
    assert_matches(&expected, &got);
    // The workload reached both trees and all levels, and some figures were allocated.
    assert!(keys.iter().any(|(t, u)| !*t && u.as_ref().is_some_and(|c| c.len() == 3)), "a district");
    assert!(got.values().any(|(_, a)| *a > 0), "some figures were allocated by the split rule");

    // A ranking: the 2025 communes of Quảng Ninh by funds mobilised (submitted too).
    let ranking = client
        .list_rollups(req(
            pa::ListRollupsRequest {
                parent: unit("22"),
                period: period("2025-H2"),
                tree: Tree::Tree2025 as i32,
                include_unapproved: true,
                sort_by: pa::SortField::FundsMobilized as i32,
                descending: true,
                page_size: 1000,
                ..Default::default()
            },
            &token("analyst", "22"),
        ))
        .await
        .unwrap()
        .into_inner();
    let funds: Vec<i64> = ranking.rollups.iter().map(|r| r.figures.unwrap().funds_mobilized.unwrap().vnd).collect();
    assert!(funds.windows(2).all(|w| w[0] >= w[1]), "{funds:?}");
    assert_eq!(ranking.total_size as usize, g.codes(true, Level::Commune, "22").len());
    let top = &ranking.rollups[0];
    let want = expected.get(&(true, top.unit.as_ref().map(|u| u.code.clone()), "2025-H2".into())).unwrap();
    assert_eq!(top.figures.unwrap().funds_mobilized.unwrap().vnd, want.all[Figure::FundsMobilized]);
    // An analyst of another province may not read Quảng Ninh, nor the nation.
    for (who, u) in [("01", Some("22")), ("22", None)] {
        let e = client
            .get_rollup(req(
                pa::GetRollupRequest {
                    unit: u.and_then(unit),
                    period: period("2025-H2"),
                    tree: Tree::Tree2025 as i32,
                    ..Default::default()
                },
                &token("analyst", who),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    }

    // Completeness of Quảng Ninh for 2025-H2.
    let c = client
        .get_completeness(req(
            pa::GetCompletenessRequest {
                unit: unit("22"),
                period: period("2025-H2"),
                include_children: true,
                ..Default::default()
            },
            &token("analyst", "22"),
        ))
        .await
        .unwrap()
        .into_inner();
    let f = c.figures.unwrap();
    let cell = expected.get(&(true, Some("22".into()), "2025-H2".into())).unwrap();
    assert_eq!(
        (f.expected, f.submitted, f.approved),
        (1 + g.codes(true, Level::Commune, "22").len() as i64, cell.all_n, cell.approved_n)
    );
    assert_eq!(c.children.iter().map(|x| x.figures.unwrap().submitted).sum::<i64>(), cell.all_n);

    // The nation's series over 2025 equals its roll-ups, period by period.
    let series = client
        .get_time_series(req(
            pa::GetTimeSeriesRequest {
                unit: None,
                tree: Tree::Tree2025 as i32,
                from: period("2025-H1"),
                to: period("2025-H2"),
                include_unapproved: true,
            },
            &token("analyst", ""),
        ))
        .await
        .unwrap()
        .into_inner();
    let periods_seen: Vec<String> = series.points.iter().map(|p| p.period.clone().unwrap().code).collect();
    assert_eq!(periods_seen, ["2025-H1", "2025-H2"]);
    for point in &series.points {
        let p = point.period.clone().unwrap().code;
        let (want, _) = &got[&(true, None, p.clone(), true)];
        assert_eq!((point.reports_counted, convert::figures_in(point.figures.as_ref())), (want.all_n, want.all), "{p}");
        assert_eq!(point.models.clone().unwrap().registered, want.models[0], "{p}");
    }
    // As of a time before any event, nothing is counted.
    let epoch = pa::AsOf { point: Some(pa::as_of::Point::Time(prost_types::Timestamp { seconds: 0, nanos: 0 })) };
    let past = answers(&mut client, &[(true, None)].into_iter().collect(), &["2025-H1"], Some(epoch)).await;
    assert_eq!(past[&(true, None, "2025-H1".into(), true)].0, Expected::default());

    // Time travel: as of the reporting position before the last report write, the
    // nation's count of reports (submitted or not) is not the final one.
    let before = pa::AsOf {
        point: Some(pa::as_of::Point::Positions(dvk_proto::common::v1::PositionSet {
            positions: vec![Position { source: "reporting".into(), position: 1 }],
        })),
    };
    let past = answers(&mut client, &[(true, None)].into_iter().collect(), &["2025-H2"], Some(before)).await;
    let (past_nation, _) = &past[&(true, None, "2025-H2".into(), true)];
    assert_eq!(past_nation.all_n, 0, "as of the first reporting event, no 2025-H2 report is counted");
    let (now_nation, _) = &got[&(true, None, "2025-H2".into(), true)];
    assert!(now_nation.all_n > 0);

    assert_once(&aggregation.log);

    // A restart (snapshot plus tail) gives the same answers.
    drop(client);
    aggregation.stop().await;
    let aggregation = Service::aggregation(&dir.path().join("aggregation"), aggregation_links()).await;
    let mut client = aggregation.aggregation_client().await;
    assert_eq!(answers(&mut client, &keys, &periods, None).await, got, "after a restart");

    // A rebuild from zero gives the same answers, and says it is done.
    let status = client
        .rebuild_projections(req(pa::RebuildProjectionsRequest { request_id: "rebuild-1".into() }, &token("admin", "")))
        .await
        .unwrap()
        .into_inner();
    assert!(status.status.is_some());
    let mut done = false;
    for _ in 0..600 {
        let s = client
            .get_projection_status(req(pa::GetProjectionStatusRequest {}, &token("admin", "")))
            .await
            .unwrap()
            .into_inner();
        // The consumer's lag behind the topic is refreshed every second: once it
        // reads 0, every source is counted up to the head it reports.
        if s.rebuilds_completed == 1 && !s.rebuilding && s.sources.iter().all(|src| src.lag == 0) {
            assert_eq!(s.rebuild_done, s.rebuild_total);
            for src in &s.sources {
                assert_eq!(src.received, src.projected, "{src:?}");
                assert_eq!(src.source_head, src.received, "the source's head, from the topic: {src:?}");
                assert!(src.source_head > 0, "{src:?}");
            }
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the rebuild did not finish");
    assert_eq!(answers(&mut client, &keys, &periods, None).await, got, "after a rebuild");
    let e = client
        .rebuild_projections(req(
            pa::RebuildProjectionsRequest { request_id: "rebuild-2".into() },
            &token("analyst", ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    aggregation.stop().await;
    reporting.stop().await;
    registration.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_path_runs_over_the_broker_with_three_separate_servers() {
    let broker = dvk_tests::Broker::memory();
    let kafka = broker.kafka();
    let g = Gso::load();
    let dir = tempfile::tempdir().unwrap();
    let registration = Service::registration_with(&dir.path().join("registration"), None, Some(kafka.clone())).await;
    {
        let mut client = registration.client().await;
        for name in ["gso-communes-2025-01-04.csv", "gso-reorganization-2025-07-01.csv"] {
            let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
            import::import(&mut client, &token("admin", ""), &file, name, |_| {}).await.unwrap();
        }
    }
    let links = dvk_reporting::Links { relay: Some(kafka.clone()), registration: Some(Upstream::Kafka(kafka.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule(), links).await;
    let links = dvk_aggregation::Links {
        registration: Some(Upstream::Kafka(kafka.clone())),
        reporting: Some(Upstream::Kafka(kafka.clone())),
    };
    let aggregation = Service::aggregation(&dir.path().join("aggregation"), links).await;
    let mut rep = reporting.reporting_client().await;
    for _ in 0..1200 {
        let r = rep
            .list_reports(req(
                pp::ListReportsRequest { unit: unit("22"), period: period("2025-H2"), ..Default::default() },
                &token("analyst", ""),
            ))
            .await;
        if r.is_ok_and(|r| r.into_inner().completeness.is_some_and(|c| c.expected > 1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (expected, tokens) = workload(&g, &registration, &reporting, 0x00b4_0ce5).await;
    let mut client = aggregation.aggregation_client().await;
    let mut fresh = req(
        pa::GetRollupRequest {
            period: period("2025-H1"),
            tree: Tree::Pre2025 as i32,
            min_positions: tokens,
            ..Default::default()
        },
        &token("analyst", ""),
    );
    fresh.set_timeout(Duration::from_secs(60));
    client.get_rollup(fresh).await.unwrap();
    let keys: BTreeSet<(bool, Option<String>)> = expected.keys().map(|(t, u, _)| (*t, u.clone())).collect();
    let got = answers(&mut client, &keys, &["2025-H1", "2025-H2", "2025"], None).await;
    assert_matches(&expected, &got);
    assert_once(&aggregation.log);
    // The status names each source's head as the topics tell it (received plus what
    // the consumer has yet to read): once the consumer's lag, refreshed every second,
    // reads 0, the roll-ups count each source up to that head, which is the source's
    // own last event.
    let heads = [
        ("registration", registration.log.own_sequence().unwrap()),
        ("reporting", reporting.log.own_sequence().unwrap()),
    ];
    let mut caught_up = false;
    for _ in 0..100 {
        let s = client
            .get_projection_status(req(pa::GetProjectionStatusRequest {}, &token("admin", "")))
            .await
            .unwrap()
            .into_inner();
        let at = |name: &str| s.sources.iter().find(|x| x.source == name).unwrap();
        if heads.iter().all(|(name, head)| at(name).source_head == *head && at(name).lag == 0) {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "the status never showed each source's head with no lag");
    aggregation.stop().await;
    reporting.stop().await;
    registration.stop().await;
}
