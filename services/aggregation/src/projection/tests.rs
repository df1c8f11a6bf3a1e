//! The projection's properties: parents sum their children in both trees, nothing
//! vanishes between the trees, late trees and snapshots change nothing, and a
//! read-your-writes token waits for every position up to it.

use std::collections::BTreeSet;

use super::*;
use dvk_codec::convert;
use dvk_codec::event::encode;
use dvk_domain::model::{Field, ModelEvent, ModelId};
use dvk_domain::report::{Figure, Figures, ReportEvent, ReportId, Revision};
use dvk_domain::unit::{LinkBasis, MergeKind, ReorgLink, Unit, UnitKind};
use dvk_domain::{Date, Period, Tree};
use dvk_proto::events::v1::{self as pe, Envelope, envelope::Payload};
use proptest::prelude::*;

fn code(s: &str) -> UnitCode {
    UnitCode::parse("c", s).unwrap()
}

fn units(tree: Tree, list: &[(&str, UnitKind, Option<&str>)]) -> Envelope {
    let units = list
        .iter()
        .map(|(c, k, p)| convert::unit_record_out(&Unit::new(tree, code(c), c, "", *k, p.map(code)).unwrap()))
        .collect();
    Envelope {
        source: "registration".into(),
        stream_id: StreamId::Units(tree).to_string(),
        payload: Some(Payload::UnitsImported(pe::UnitsImported {
            tree: convert::tree_out(tree) as i32,
            units,
            origin: String::new(),
        })),
        ..Envelope::default()
    }
}

/// Pre-2025: province 01 with districts 001 (communes 00001, 00002) and 002 (00003,
/// 00004); 2025: province 01 with communes 00001 (00001 and 00002 merged whole) and
/// 00003, 00005 (old 00003 split between them), and 00007. Two units have no
/// counterpart: old 00004 is named by no link, and new 00007's only predecessor
/// (00099) is not in the old list.
fn tree_events() -> Vec<Envelope> {
    use UnitKind::*;
    let pre = units(
        Tree::Pre2025,
        &[
            ("01", CentralCity, None),
            ("001", UrbanDistrict, Some("01")),
            ("002", RuralDistrict, Some("01")),
            ("00001", Ward, Some("001")),
            ("00002", Ward, Some("001")),
            ("00003", Commune, Some("002")),
            ("00004", Commune, Some("002")),
        ],
    );
    let new = units(
        Tree::Y2025,
        &[
            ("01", CentralCity, None),
            ("00001", Ward, Some("01")),
            ("00003", Commune, Some("01")),
            ("00005", Commune, Some("01")),
            ("00007", Commune, Some("01")),
        ],
    );
    let link = |o: &str, n: &str, kind, rank| {
        let basis = LinkBasis::Official;
        convert::reorg_link_out(&ReorgLink { old: code(o), new: code(n), kind, note: String::new(), basis }, rank)
    };
    let reorg = Envelope {
        source: "registration".into(),
        stream_id: StreamId::Reorganization.to_string(),
        payload: Some(Payload::UnitsReorganized(pe::UnitsReorganized {
            links: vec![
                link("00001", "00001", MergeKind::Whole, 0),
                link("00002", "00001", MergeKind::Whole, 0),
                link("00003", "00003", MergeKind::Part, 0),
                link("00003", "00005", MergeKind::Part, 1),
                link("00099", "00007", MergeKind::Whole, 0),
            ],
            ..Default::default()
        })),
        ..Envelope::default()
    };
    vec![pre, new, reorg]
}

const PRE: [&str; 4] = ["00001", "00002", "00003", "00004"];
const NEW: [&str; 4] = ["00001", "00003", "00005", "00007"];

/// A generated event: a model or a report at a commune of one tree.
#[derive(Debug, Clone)]
enum Gen {
    Model { y2025: bool, unit: usize, month: u32, started: bool },
    Report { y2025: bool, unit: usize, registered: i64, approve: bool },
}

fn generated() -> impl Strategy<Value = Gen> {
    prop_oneof![
        (any::<bool>(), 0..4usize, 1..12u32, any::<bool>()).prop_map(|(y2025, unit, month, started)| Gen::Model {
            y2025,
            unit,
            month,
            started
        }),
        (any::<bool>(), 0..4usize, 0..50i64, any::<bool>())
            .prop_map(|(y2025, unit, registered, approve)| Gen::Report { y2025, unit, registered, approve }),
    ]
}

/// The envelopes of the generated events, numbered as their sources would.
fn data_events(gens: &[Gen]) -> Vec<Envelope> {
    // Per report (tree, unit): its latest revision and whether it is approved.
    let mut reports: BTreeMap<(bool, usize), (u32, bool)> = BTreeMap::new();
    let mut out = Vec::new();
    let (mut reg, mut rep) = (100u64, 0u64);
    for (n, g) in gens.iter().enumerate() {
        let mut push = |source: &str, position: &mut u64, stream: String, p: Payload| {
            *position += 1;
            out.push(Envelope {
                source: source.into(),
                source_position: *position,
                stream_id: stream,
                payload: Some(p),
                ..Envelope::default()
            });
        };
        match g {
            Gen::Model { y2025, unit, month, started } => {
                let (tree, unit, year) =
                    if *y2025 { (Tree::Y2025, NEW[*unit], 2026) } else { (Tree::Pre2025, PRE[*unit], 2024) };
                let id = ModelId::parse("id", &format!("00000000-0000-7000-8000-{n:012}")).unwrap();
                let on = Date::new("d", year, *month, 1).unwrap();
                let registered = ModelEvent::Registered {
                    id: id.clone(),
                    unit: code(unit),
                    tree,
                    registered_on: on,
                    details: dvk_domain::model::ModelDetails::new(
                        dvk_domain::model::ModelDetailsDraft {
                            name: "Mô hình".into(),
                            field: Some(Field::ALL[n % 4]),
                            runner_kind: Some(dvk_domain::model::RunnerKind::Collective),
                            runner_name: "Chi hội".into(),
                            sponsor: Some(dvk_domain::model::Sponsor::YouthUnion),
                            sponsor_name: "Đoàn xã".into(),
                            objectives: "Đường".into(),
                            timeline_start: Some(on),
                            ..Default::default()
                        },
                        "details",
                    )
                    .unwrap(),
                };
                push(
                    "registration",
                    &mut reg,
                    StreamId::Model(id.clone()).to_string(),
                    encode(&DomainEvent::Model(registered)),
                );
                if *started {
                    let e = ModelEvent::Started { started_on: on.add_days(200).unwrap() };
                    push(
                        "registration",
                        &mut reg,
                        StreamId::Model(id.clone()).to_string(),
                        encode(&DomainEvent::Model(e)),
                    );
                }
            }
            Gen::Report { y2025, unit, registered, approve } => {
                let key = (*y2025, *unit);
                let (tree, unit, period) =
                    if *y2025 { (Tree::Y2025, NEW[*unit], "2026-H1") } else { (Tree::Pre2025, PRE[*unit], "2024-H1") };
                let id = ReportId { unit: code(unit), period: Period::parse("p", period).unwrap() };
                let stream = id.as_string();
                let figures = Figures::default().with(Figure::ModelsRegistered, *registered).with(Figure::Workdays, 3);
                // A unit reports once a period: met again, its report is amended
                // (reopened first if it was approved).
                let (revision, approved) = reports.entry(key).or_insert((0, false));
                let mut events = Vec::new();
                if *revision == 0 {
                    let first =
                        Revision { number: 1, figures, summary: String::new(), reason: String::new(), on_time: true };
                    events.push(ReportEvent::Submitted { id, tree, revision: first });
                } else {
                    if *approved {
                        events.push(ReportEvent::Reopened { revision: *revision, reason: "sai".into() });
                    }
                    let next = Revision {
                        number: *revision + 1,
                        figures,
                        summary: String::new(),
                        reason: "sửa".into(),
                        on_time: false,
                    };
                    events.push(ReportEvent::Amended { revision: next });
                }
                *revision += 1;
                *approved = *approve;
                if *approve {
                    events.push(ReportEvent::Approved { revision: *revision });
                }
                for e in events {
                    push("reporting", &mut rep, stream.clone(), encode(&DomainEvent::Report(e)));
                }
            }
        }
    }
    out
}

fn fold(events: &[Envelope]) -> State {
    let mut s = State::default();
    for (i, e) in events.iter().enumerate() {
        dvk_runtime::host::fold(&mut s, i as u64 + 1, e.clone());
    }
    s
}

fn sum_of(cells: &[Option<&Cell>]) -> Cell {
    let mut total = Cell::default();
    for c in cells.iter().flatten() {
        total.models.add(&c.models);
        total.all.add(&c.all, 1);
        total.approved.add(&c.approved, 1);
        total.all_reports += c.all_reports;
        total.approved_reports += c.approved_reports;
    }
    total
}

fn core(c: Option<&Cell>) -> Cell {
    let c = c.cloned().unwrap_or_default();
    Cell {
        models: c.models,
        all: c.all,
        approved: c.approved,
        all_reports: c.all_reports,
        approved_reports: c.approved_reports,
        ..Cell::default()
    }
}

proptest! {
    #[test]
    fn parents_equal_the_sum_of_their_children_in_both_trees(gens in proptest::collection::vec(generated(), 0..40)) {
        let mut events = tree_events();
        events.extend(data_events(&gens));
        let s = fold(&events);
        for period in ["2024-H1", "2024-H2", "2026-H1", "2026-H2"].map(|p| Period::parse("p", p).unwrap()) {
            let c = |t: Tree, u: Option<&str>| s.cell(t, u.map(code).as_ref(), period);
            // pre-2025: nation = province; province = districts; districts = communes
            prop_assert_eq!(core(c(Tree::Pre2025, None)), core(c(Tree::Pre2025, Some("01"))));
            prop_assert_eq!(core(c(Tree::Pre2025, Some("01"))), sum_of(&[c(Tree::Pre2025, Some("001")), c(Tree::Pre2025, Some("002"))]));
            prop_assert_eq!(core(c(Tree::Pre2025, Some("001"))), sum_of(&[c(Tree::Pre2025, Some("00001")), c(Tree::Pre2025, Some("00002"))]));
            prop_assert_eq!(core(c(Tree::Pre2025, Some("002"))), sum_of(&[c(Tree::Pre2025, Some("00003")), c(Tree::Pre2025, Some("00004"))]));
            // 2025: province = communes
            prop_assert_eq!(core(c(Tree::Y2025, Some("01"))), sum_of(&NEW.map(|u| c(Tree::Y2025, Some(u)))));
        }
    }

    /// Nothing vanishes between the trees: for every period and either tree B,
    /// nation(B) + unassigned(B) is everything recorded (counted here from the
    /// generated events alone), so nation(A) = nation(B) + unassigned(B) whenever
    /// the period's figures were all recorded in A; and the unassigned figures
    /// are exactly those of the units without a counterpart.
    #[test]
    fn a_nation_equals_the_other_nation_plus_what_is_unassigned_there(
        gens in proptest::collection::vec(generated(), 0..40)
    ) {
        let mut events = tree_events();
        events.extend(data_events(&gens));
        let s = fold(&events);
        for period in ["2024-H1", "2024-H2", "2024", "2026-H1", "2026", "2021-2025", "2026-2030"] {
            let period = Period::parse("p", period).unwrap();
            // (registered, started, reports, approved reports, reported models registered)
            let mut recorded = [0i64; 5];
            let mut lonely = [[0i64; 5]; 2];
            let mut rows = Vec::new();
            let mut last = BTreeMap::new();
            for g in &gens {
                let (y2025, unit, row) = match g {
                    Gen::Model { y2025, unit, month, started } => {
                        let on = Date::new("d", if *y2025 { 2026 } else { 2024 }, *month, 1).unwrap();
                        let started = *started && period.contains_date(on.add_days(200).unwrap());
                        let registered = period.contains_date(on);
                        (*y2025, *unit, [i64::from(registered), i64::from(started), 0, 0, 0])
                    }
                    // A report counts once, as its last revision says.
                    Gen::Report { y2025, unit, registered, approve } => {
                        last.insert((*y2025, *unit), (*registered, *approve));
                        continue;
                    }
                };
                rows.push((y2025, unit, row));
            }
            for ((y2025, unit), (registered, approve)) in &last {
                let p = if *y2025 { "2026-H1" } else { "2024-H1" };
                if period == Period::parse("p", p).unwrap() {
                    rows.push((*y2025, *unit, [0, 0, 1, i64::from(*approve), *registered]));
                }
            }
            for (y2025, unit, row) in rows {
                for i in 0..5 {
                    recorded[i] += row[i];
                    // 00004 (pre-2025) and 00007 (2025) have no counterpart.
                    if unit == 3 {
                        lonely[usize::from(y2025)][i] += row[i];
                    }
                }
            }
            let seen = |r: &Rollup| {
                [r.models.registered, r.models.implementing, r.cell.all_reports, r.cell.approved_reports,
                 r.cell.all[Figure::ModelsRegistered]]
            };
            for (b, lonely_in_other) in [(Tree::Pre2025, lonely[1]), (Tree::Y2025, lonely[0])] {
                let mut total = seen(&s.rollup(b, None, period));
                let mut unassigned = [0i64; 5];
                for (_, r) in s.unassigned_rollups(b, None, period) {
                    for (i, v) in seen(&r).into_iter().enumerate() {
                        total[i] += v;
                        unassigned[i] += v;
                    }
                }
                prop_assert_eq!(total, recorded, "{} {:?}", period, b);
                prop_assert_eq!(unassigned, lonely_in_other, "{} {:?}", period, b);
                let units: Vec<String> =
                    s.unassigned_rollups(b, None, period).into_iter().map(|(u, _)| u.to_string()).collect();
                let expected: &[&str] = if lonely_in_other == [0; 5] {
                    &[]
                } else if b == Tree::Y2025 {
                    &["00004"]
                } else {
                    &["00007"]
                };
                prop_assert_eq!(units, expected);
            }
        }
    }

    #[test]
    fn trees_arriving_after_the_data_give_the_same_roll_ups(gens in proptest::collection::vec(generated(), 0..30)) {
        let mut early = tree_events();
        early.extend(data_events(&gens));
        let mut late = data_events(&gens);
        late.extend(tree_events());
        let (a, b) = (fold(&early), fold(&late));
        prop_assert!(a.cells_by_code() == b.cells_by_code());
        prop_assert!(a.unassigned_by_code() == b.unassigned_by_code());
        prop_assert!(a.models == b.models && a.reports == b.reports);
    }

    #[test]
    fn a_snapshot_holds_the_whole_projection(gens in proptest::collection::vec(generated(), 0..30)) {
        let mut events = tree_events();
        events.extend(data_events(&gens));
        let s = fold(&events);
        let back = crate::snapshot::decode(&crate::snapshot::encode(&s).data).unwrap();
        prop_assert!(back == s);
        prop_assert_eq!(back.cells.len(), s.cells.len());
        prop_assert_eq!(back.unassigned.len(), s.unassigned.len());
    }
}

#[test]
fn a_split_commune_counts_wholly_in_its_first_named_successor_and_says_so() {
    let mut events = tree_events();
    events.extend(data_events(&[Gen::Report { y2025: false, unit: 2, registered: 7, approve: true }]));
    let s = fold(&events);
    let h1 = Period::parse("p", "2024-H1").unwrap();
    let first = s.rollup(Tree::Y2025, Some(&code("00003")), h1);
    assert_eq!((first.cell.approved[Figure::ModelsRegistered], first.cell.approved_allocated), (7, 1));
    assert_eq!(s.rollup(Tree::Y2025, Some(&code("00005")), h1).cell.approved_reports, 0);
    // A whole merge moves exactly.
    let mut events = tree_events();
    events.extend(data_events(&[Gen::Report { y2025: false, unit: 1, registered: 4, approve: false }]));
    let s = fold(&events);
    let merged = s.rollup(Tree::Y2025, Some(&code("00001")), h1);
    assert_eq!(
        (merged.cell.all[Figure::ModelsRegistered], merged.cell.all_allocated, merged.cell.approved_reports),
        (4, 0, 0)
    );
}

proptest! {
    /// A read-your-writes token is reached only once every position up to it has
    /// arrived, in whatever order the partitions deliver them.
    #[test]
    fn a_token_is_reached_once_every_position_up_to_it_has_arrived(
        order in Just((1..=40u64).collect::<Vec<_>>()).prop_shuffle()
    ) {
        let mut seen = Seen::default();
        let mut arrived = BTreeSet::new();
        for p in order {
            seen.insert(p);
            seen.insert(p);
            arrived.insert(p);
            for token in 1..=40u64 {
                prop_assert_eq!(seen.reached(token), (1..=token).all(|q| arrived.contains(&q)), "token {}", token);
            }
        }
        prop_assert_eq!(seen.watermark, 40);
        prop_assert!(seen.above.is_empty());
    }
}
