//! Domain events and their payloads: `encode` writes a [`DomainEvent`] as the `oneof`
//! payload of an `Envelope`; `decode` reads a stored payload back by its structure
//! alone. A stored event was valid when it was written, and today's rules (text
//! bounds, say) must not refuse what an earlier release accepted: only a missing or
//! unknown value where one is required fails, which means a corrupt or foreign log.

use dvk_domain::DomainEvent;
use dvk_domain::model::{Commendation, Decision, ModelDetails, ModelEvent, ModelId, Recognition, Replication};
use dvk_domain::report::{ReportEvent, ReportId, Revision};
use dvk_domain::unit::{LinkBasis, ReorgLink, Unit};
use dvk_domain::{DomainError, Tree, UnitCode};

use dvk_proto::events::v1 as pe;
use pe::envelope::Payload as P;

use crate::StreamId;
use crate::convert::{
    DecodeError, award_out, bad, date_in, date_out, date_required, decision_out, details_out, draft_of, figures_in,
    figures_out, kind_in, level_in, level_out, merge_in, period_out, recorded_period_in, reorg_link_out, tree_in,
    tree_out, unit_in, unit_out, unit_record_out,
};

/// The payload type name of an event, as stored in `Envelope.event_type`.
pub fn event_type(p: &P) -> &'static str {
    match p {
        P::UnitsImported(_) => "dvk.events.v1.UnitsImported",
        P::UnitsReorganized(_) => "dvk.events.v1.UnitsReorganized",
        P::ModelRegistered(_) => "dvk.events.v1.ModelRegistered",
        P::ModelAmended(_) => "dvk.events.v1.ModelAmended",
        P::ModelStarted(_) => "dvk.events.v1.ModelStarted",
        P::ModelRecognized(_) => "dvk.events.v1.ModelRecognized",
        P::ModelCommended(_) => "dvk.events.v1.ModelCommended",
        P::ModelReplicated(_) => "dvk.events.v1.ModelReplicated",
        P::ModelRetired(_) => "dvk.events.v1.ModelRetired",
        P::ReportSubmitted(_) => "dvk.events.v1.ReportSubmitted",
        P::ReportAmended(_) => "dvk.events.v1.ReportAmended",
        P::ReportReturned(_) => "dvk.events.v1.ReportReturned",
        P::ReportApproved(_) => "dvk.events.v1.ReportApproved",
        P::ReportReopened(_) => "dvk.events.v1.ReportReopened",
    }
}

/// Whether a stored event type is a model's (a step in a model's life).
pub fn is_model_event(event_type: &str) -> bool {
    event_type.starts_with("dvk.events.v1.Model")
}

/// The payload of a domain event.
pub fn encode(event: &DomainEvent) -> P {
    match event {
        DomainEvent::UnitsImported { tree, units, origin } => P::UnitsImported(pe::UnitsImported {
            tree: tree_out(*tree) as i32,
            units: units.iter().map(unit_record_out).collect(),
            origin: origin.clone(),
        }),
        DomainEvent::UnitsReorganized { effective, links, origin } => P::UnitsReorganized(pe::UnitsReorganized {
            from_tree: tree_out(Tree::Pre2025) as i32,
            to_tree: tree_out(Tree::Y2025) as i32,
            effective_date: effective.map(date_out),
            links: links.iter().map(|(link, rank)| reorg_link_out(link, *rank)).collect(),
            origin: origin.clone(),
        }),
        DomainEvent::Model(e) => model_event_out(e),
        DomainEvent::Report(e) => report_event_out(e),
    }
}

/// The domain event of a stored payload (already upcast to the current schema) on
/// `stream`. A model's or report's event must be on that model's or report's stream,
/// and a tree event on a tree's or the mapping's. A unit record or link of a tree event
/// that does not read is passed over and described in `passed_over`; the others are
/// kept, as the trees have always been folded.
pub fn decode(stream: &StreamId, payload: P, passed_over: &mut Vec<String>) -> Result<DomainEvent, DecodeError> {
    let kind = event_type(&payload);
    let misplaced = || bad("event", format!("{kind} is not an event of stream {stream}"));
    match payload {
        P::UnitsImported(u) => {
            let StreamId::Units(_) = stream else { return Err(misplaced()) };
            let tree = tree_in("tree", u.tree).map_err(|e| bad("units imported", e))?;
            let mut units = Vec::with_capacity(u.units.len());
            for (i, r) in u.units.into_iter().enumerate() {
                match recorded_unit(i, tree, r) {
                    Ok(unit) => units.push(unit),
                    Err(e) => passed_over.push(e.to_string()),
                }
            }
            Ok(DomainEvent::UnitsImported { tree, units, origin: u.origin })
        }
        P::UnitsReorganized(r) => {
            let StreamId::Reorganization = stream else { return Err(misplaced()) };
            let effective =
                date_in("effective_date", r.effective_date.as_ref()).map_err(|e| bad("reorganisation", e))?;
            let mut links = Vec::with_capacity(r.links.len());
            for (i, l) in r.links.into_iter().enumerate() {
                let rank = l.successor_rank;
                match recorded_link(i, l) {
                    Ok(link) => links.push((link, rank)),
                    Err(e) => passed_over.push(e.to_string()),
                }
            }
            Ok(DomainEvent::UnitsReorganized { effective, links, origin: r.origin })
        }
        p @ (P::ModelRegistered(_)
        | P::ModelAmended(_)
        | P::ModelStarted(_)
        | P::ModelRecognized(_)
        | P::ModelCommended(_)
        | P::ModelReplicated(_)
        | P::ModelRetired(_)) => {
            let StreamId::Model(_) = stream else { return Err(misplaced()) };
            model_event_in(p).map(DomainEvent::Model)
        }
        p => {
            let StreamId::Report(_) = stream else { return Err(misplaced()) };
            report_event_in(p).map(DomainEvent::Report)
        }
    }
}

// ---- trees ----

/// A stored unit record: its codes, kind and parent must read; its names are taken as
/// stored (the upcasters have already put them in today's form).
fn recorded_unit(i: usize, tree: Tree, r: pe::UnitRecord) -> Result<Unit, DecodeError> {
    let d = |e: DomainError| bad("unit record", format!("units[{i}]: {e}"));
    let code = unit_in("code", r.code.as_ref()).map_err(d)?;
    let kind = kind_in("kind", r.kind).map_err(d)?;
    let parent = match r.parent {
        Some(p) if !p.code.trim().is_empty() => Some(UnitCode::parse("parent", &p.code).map_err(d)?),
        _ => None,
    };
    if !tree.has_level(kind.level()) || code.level() != kind.level() {
        return Err(bad("unit record", format!("units[{i}]: {code} is not a {:?} of the {} tree", kind, tree.name())));
    }
    Ok(Unit { code, name: r.name, english_name: r.english_name, level: kind.level(), kind, parent })
}

/// A stored link of the mapping; its note is taken as stored.
fn recorded_link(i: usize, l: pe::ReorgLink) -> Result<ReorgLink, DecodeError> {
    let d = |e: DomainError| bad("reorganisation link", format!("links[{i}]: {e}"));
    let old = unit_in("old_code", l.old_code.as_ref()).map_err(d)?;
    let new = unit_in("new_code", l.new_code.as_ref()).map_err(d)?;
    let kind = if l.kind == 0 { dvk_domain::unit::MergeKind::from_note(&l.note) } else { merge_in(l.kind) };
    let basis = match pe::LinkBasis::try_from(l.basis) {
        Ok(pe::LinkBasis::Official) => LinkBasis::Official,
        Ok(pe::LinkBasis::Inferred) => LinkBasis::Inferred,
        Ok(pe::LinkBasis::Supplementary) => LinkBasis::Supplementary,
        Err(_) => return Err(bad("reorganisation link", format!("links[{i}]: {} is not a link basis", l.basis))),
    };
    Ok(ReorgLink { old, new, kind, note: l.note, basis })
}

// ---- models ----

fn model_event_out(e: &ModelEvent) -> P {
    match e {
        ModelEvent::Registered { id, unit, tree, registered_on, details } => P::ModelRegistered(pe::ModelRegistered {
            model_id: id.as_str().to_owned(),
            unit: Some(unit_out(unit)),
            tree: tree_out(*tree) as i32,
            registered_on: Some(date_out(*registered_on)),
            details: Some(details_out(details)),
        }),
        ModelEvent::Amended { details, reason } => {
            P::ModelAmended(pe::ModelAmended { details: Some(details_out(details)), reason: reason.clone() })
        }
        ModelEvent::Started { started_on } => {
            P::ModelStarted(pe::ModelStarted { started_on: Some(date_out(*started_on)) })
        }
        ModelEvent::Recognized(r) => P::ModelRecognized(pe::ModelRecognized {
            level: level_out(r.level) as i32,
            recognizing_unit: Some(unit_out(&r.recognizing_unit)),
            decision: Some(decision_out(&r.decision)),
            exemplary: r.exemplary,
        }),
        ModelEvent::Commended(c) => P::ModelCommended(pe::ModelCommended {
            form: award_out(c.form) as i32,
            level: level_out(c.level) as i32,
            awarding_unit: Some(unit_out(&c.awarding_unit)),
            decision: Some(decision_out(&c.decision)),
        }),
        ModelEvent::Replicated(r) => P::ModelReplicated(pe::ModelReplicated {
            target_unit: Some(unit_out(&r.target_unit)),
            replicated_on: Some(date_out(r.replicated_on)),
            note: r.note.clone(),
        }),
        ModelEvent::Retired { reason, retired_on } => {
            P::ModelRetired(pe::ModelRetired { reason: reason.clone(), retired_on: Some(date_out(*retired_on)) })
        }
    }
}

/// A stored registration form, by its structure alone. Its field must be one this
/// release knows (the roll-ups count models by field); a runner kind, sponsor or start
/// that is absent or unknown (a form written before they were required, or by a later
/// release) is `None`, never invented.
fn recorded_details(d: Option<pe::ModelDetails>) -> Result<ModelDetails, DecodeError> {
    let wire = d.ok_or_else(|| bad("model details", "absent"))?;
    let field = wire.field;
    let draft = draft_of(wire);
    Ok(ModelDetails {
        field: draft.field.ok_or_else(|| bad("details.field", field))?,
        runner_kind: draft.runner_kind,
        sponsor: draft.sponsor,
        timeline_start: draft.timeline_start,
        timeline_end: draft.timeline_end,
        name: draft.name,
        runner_name: draft.runner_name,
        sponsor_name: draft.sponsor_name,
        rationale: draft.rationale,
        objectives: draft.objectives,
        method: draft.method,
        area: draft.area,
        target_group: draft.target_group,
        implementing_forces: draft.implementing_forces,
        funds_vnd: draft.funds_vnd,
        workdays: draft.workdays,
        expected_outputs: draft.expected_outputs,
    })
}

/// A stored decision, by its structure alone.
fn recorded_decision(d: Option<pe::Decision>) -> Result<Decision, DecodeError> {
    let d = d.ok_or_else(|| bad("decision", "absent"))?;
    let date = date_in("decision.date", d.date.as_ref()).map_err(|e| bad("decision.date", e))?;
    Ok(Decision { number: d.number, date: date.ok_or_else(|| bad("decision.date", "absent"))?, issuer: d.issuer })
}

fn model_event_in(p: P) -> Result<ModelEvent, DecodeError> {
    let d = |e: DomainError| bad("model event", e);
    Ok(match p {
        P::ModelRegistered(r) => ModelEvent::Registered {
            id: ModelId::parse("model_id", &r.model_id).map_err(d)?,
            unit: unit_in("unit", r.unit.as_ref()).map_err(d)?,
            tree: tree_in("tree", r.tree).map_err(d)?,
            registered_on: date_required("registered_on", r.registered_on.as_ref()).map_err(d)?,
            details: recorded_details(r.details)?,
        },
        P::ModelAmended(a) => ModelEvent::Amended { details: recorded_details(a.details)?, reason: a.reason },
        P::ModelStarted(s) => {
            ModelEvent::Started { started_on: date_required("started_on", s.started_on.as_ref()).map_err(d)? }
        }
        P::ModelRecognized(r) => ModelEvent::Recognized(Recognition {
            level: level_in("level", r.level).map_err(d)?,
            recognizing_unit: unit_in("recognizing_unit", r.recognizing_unit.as_ref()).map_err(d)?,
            decision: recorded_decision(r.decision)?,
            exemplary: r.exemplary,
        }),
        P::ModelCommended(c) => ModelEvent::Commended(Commendation {
            form: crate::convert::award_in("form", c.form).map_err(d)?,
            level: level_in("level", c.level).map_err(d)?,
            awarding_unit: unit_in("awarding_unit", c.awarding_unit.as_ref()).map_err(d)?,
            decision: recorded_decision(c.decision)?,
        }),
        P::ModelReplicated(r) => ModelEvent::Replicated(Replication {
            target_unit: unit_in("target_unit", r.target_unit.as_ref()).map_err(d)?,
            replicated_on: date_required("replicated_on", r.replicated_on.as_ref()).map_err(d)?,
            note: r.note,
        }),
        P::ModelRetired(r) => ModelEvent::Retired {
            reason: r.reason,
            retired_on: date_required("retired_on", r.retired_on.as_ref()).map_err(d)?,
        },
        other => return Err(bad("model event", event_type(&other))),
    })
}

// ---- reports ----

fn report_event_out(e: &ReportEvent) -> P {
    match e {
        ReportEvent::Submitted { id, tree, revision } => P::ReportSubmitted(pe::ReportSubmitted {
            unit: Some(unit_out(&id.unit)),
            period: Some(period_out(id.period)),
            tree: tree_out(*tree) as i32,
            revision: revision.number,
            figures: Some(figures_out(&revision.figures)),
            summary: revision.summary.clone(),
            on_time: revision.on_time,
        }),
        ReportEvent::Amended { revision } => P::ReportAmended(pe::ReportAmended {
            revision: revision.number,
            figures: Some(figures_out(&revision.figures)),
            summary: revision.summary.clone(),
            reason: revision.reason.clone(),
            on_time: revision.on_time,
        }),
        ReportEvent::Returned { revision, reason } => {
            P::ReportReturned(pe::ReportReturned { revision: *revision, reason: reason.clone() })
        }
        ReportEvent::Approved { revision } => P::ReportApproved(pe::ReportApproved { revision: *revision }),
        ReportEvent::Reopened { revision, reason } => {
            P::ReportReopened(pe::ReportReopened { revision: *revision, reason: reason.clone() })
        }
    }
}

fn report_event_in(p: P) -> Result<ReportEvent, DecodeError> {
    let d = |e: DomainError| bad("report event", e);
    Ok(match p {
        P::ReportSubmitted(r) => ReportEvent::Submitted {
            id: ReportId {
                unit: unit_in("unit", r.unit.as_ref()).map_err(d)?,
                period: recorded_period_in("period", r.period.as_ref()).map_err(d)?,
            },
            tree: tree_in("tree", r.tree).map_err(d)?,
            revision: Revision {
                number: r.revision,
                figures: figures_in(r.figures.as_ref()),
                summary: r.summary,
                reason: String::new(),
                on_time: r.on_time,
            },
        },
        P::ReportAmended(a) => ReportEvent::Amended {
            revision: Revision {
                number: a.revision,
                figures: figures_in(a.figures.as_ref()),
                summary: a.summary,
                reason: a.reason,
                on_time: a.on_time,
            },
        },
        P::ReportReturned(r) => ReportEvent::Returned { revision: r.revision, reason: r.reason },
        P::ReportApproved(a) => ReportEvent::Approved { revision: a.revision },
        P::ReportReopened(r) => ReportEvent::Reopened { revision: r.revision, reason: r.reason },
        other => return Err(bad("report event", event_type(&other))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{date, details};
    use dvk_domain::model::AwardForm;
    use dvk_domain::report::{Figure, Figures};
    use dvk_domain::unit::{MergeKind, UnitKind};
    use dvk_domain::{Level, Period};
    use dvk_proto::common::v1 as pc;

    fn round_trip(stream: &StreamId, e: DomainEvent) -> DomainEvent {
        decode(stream, encode(&e), &mut Vec::new()).unwrap()
    }

    #[test]
    fn every_report_event_round_trips_through_its_payload() {
        let figures = Figures::default()
            .with(Figure::ModelsRegistered, 191)
            .with(Figure::ModelsRecognized, 54)
            .with(Figure::FundsMobilized, 81_000_000_000)
            .with(Figure::CommendationsCollective, 12)
            .with(Figure::CommendationsIndividual, 11);
        let id =
            ReportId { unit: UnitCode::parse("u", "001").unwrap(), period: Period::parse("p", "2024-H1").unwrap() };
        let rev = |n: u32, reason: &str| Revision {
            number: n,
            figures,
            summary: "Sơ kết".into(),
            reason: reason.into(),
            on_time: n == 1,
        };
        let stream = StreamId::Report(id.clone());
        let events = vec![
            ReportEvent::Submitted { id, tree: Tree::Pre2025, revision: rev(1, "") },
            ReportEvent::Returned { revision: 1, reason: "thiếu số liệu".into() },
            ReportEvent::Amended { revision: rev(2, "bổ sung") },
            ReportEvent::Approved { revision: 2 },
            ReportEvent::Reopened { revision: 2, reason: "sai".into() },
        ];
        for e in events {
            assert_eq!(round_trip(&stream, DomainEvent::Report(e.clone())), DomainEvent::Report(e));
        }
    }

    #[test]
    fn stage_reports_of_old_logs_still_decode() {
        use pe::envelope::Payload as P;
        // A stage report written before stages were fixed to five-year terms.
        let submitted = P::ReportSubmitted(pe::ReportSubmitted {
            unit: Some(pc::UnitCode { code: "01".into() }),
            period: Some(pc::Period { code: "2020-2024".into() }),
            tree: pc::Tree::Pre2025 as i32,
            revision: 1,
            ..Default::default()
        });
        let stream = StreamId::parse("report-01-2020-2024").unwrap();
        let DomainEvent::Report(ReportEvent::Submitted { id, .. }) =
            decode(&stream, submitted, &mut Vec::new()).unwrap()
        else {
            panic!()
        };
        assert_eq!(id.as_string(), "report-01-2020-2024");
    }

    #[test]
    fn every_model_event_round_trips_through_its_payload() {
        let decision = Decision::new("decision", "12/QĐ-UBND", Some(date("2024-06-01")), "UBND huyện").unwrap();
        let u = |s: &str| UnitCode::parse("u", s).unwrap();
        let events = vec![
            ModelEvent::Registered {
                id: ModelId::parse("id", "m-1").unwrap(),
                unit: u("00001"),
                tree: Tree::Pre2025,
                registered_on: date("2024-02-01"),
                details: details(),
            },
            ModelEvent::Amended { details: details(), reason: "sửa".into() },
            ModelEvent::Started { started_on: date("2024-02-02") },
            ModelEvent::Recognized(Recognition {
                level: Level::District,
                recognizing_unit: u("001"),
                decision: decision.clone(),
                exemplary: true,
            }),
            ModelEvent::Commended(Commendation {
                form: AwardForm::DiplomaOfMerit,
                level: Level::Province,
                awarding_unit: u("01"),
                decision,
            }),
            ModelEvent::Replicated(Replication {
                target_unit: u("00004"),
                replicated_on: date("2024-09-09"),
                note: "".into(),
            }),
            ModelEvent::Retired { reason: "xong".into(), retired_on: date("2024-12-31") },
        ];
        let stream = StreamId::Model(ModelId::parse("id", "m-1").unwrap());
        for e in events {
            assert_eq!(round_trip(&stream, DomainEvent::Model(e.clone())), DomainEvent::Model(e));
        }
    }

    /// A unit record or link that does not read is passed over and reported; the rest
    /// of its event is kept, as the trees have always been folded.
    #[test]
    fn a_tree_events_unreadable_record_is_passed_over_and_the_others_kept() {
        use dvk_proto::common::v1 as pc;
        let record = |code: &str, kind: i32, parent: Option<&str>| pe::UnitRecord {
            code: Some(pc::UnitCode { code: code.into() }),
            name: format!("Đơn vị {code}"),
            kind,
            parent: parent.map(|p| pc::UnitCode { code: p.into() }),
            ..Default::default()
        };
        let payload = P::UnitsImported(pe::UnitsImported {
            tree: pc::Tree::Pre2025 as i32,
            units: vec![
                record("01", pc::UnitKind::Province as i32, None),
                record("001", 99, Some("01")),
                record("002", pc::UnitKind::RuralDistrict as i32, Some("01")),
            ],
            origin: String::new(),
        });
        let mut passed_over = Vec::new();
        let DomainEvent::UnitsImported { units, .. } =
            decode(&StreamId::Units(Tree::Pre2025), payload, &mut passed_over).unwrap()
        else {
            panic!("units imported")
        };
        let codes: Vec<&str> = units.iter().map(|u| u.code.as_str()).collect();
        assert_eq!(codes, ["01", "002"]);
        assert_eq!(passed_over.len(), 1);
        assert!(passed_over[0].contains("units[1]"), "{passed_over:?}");
    }

    #[test]
    fn tree_events_round_trip_with_their_ranks_and_a_model_event_off_its_stream_is_refused() {
        let u = |s: &str| UnitCode::parse("u", s).unwrap();
        let units = vec![
            Unit::new(Tree::Pre2025, u("01"), "Thành phố Hà Nội", "Ha Noi", UnitKind::CentralCity, None).unwrap(),
            Unit::new(Tree::Pre2025, u("001"), "Quận Ba Đình", "", UnitKind::UrbanDistrict, Some(u("01"))).unwrap(),
        ];
        let imported = DomainEvent::UnitsImported { tree: Tree::Pre2025, units, origin: "GSO".into() };
        assert_eq!(round_trip(&StreamId::Units(Tree::Pre2025), imported.clone()), imported);
        let link = |old: &str, new: &str| ReorgLink {
            old: u(old),
            new: u(new),
            kind: MergeKind::Whole,
            note: "".into(),
            basis: LinkBasis::Official,
        };
        let reorganized = DomainEvent::UnitsReorganized {
            effective: Some(date("2025-07-01")),
            links: vec![(link("00001", "00004"), 0), (link("00001", "00007"), 1)],
            origin: "table".into(),
        };
        assert_eq!(round_trip(&StreamId::Reorganization, reorganized.clone()), reorganized);
        let started = encode(&DomainEvent::Model(ModelEvent::Started { started_on: date("2024-02-02") }));
        let e = decode(&StreamId::Reorganization, started, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("dvk.events.v1.ModelStarted is not an event of stream reorg-2025"), "{e}");
    }
}

#[cfg(test)]
mod recorded_tests {
    use super::*;
    use dvk_domain::model::ModelId;
    use dvk_proto::common::v1 as pc;

    /// A registration written by a release whose bounds were looser (a name longer than
    /// today's limit, a sponsor name with double spaces) still replays as written, and
    /// so does a recognition whose decision number today's rules would refuse.
    #[test]
    fn stored_events_decode_by_structure_not_by_todays_rules() {
        let long_name = "Mô hình ".repeat(200);
        let registered = pe::envelope::Payload::ModelRegistered(pe::ModelRegistered {
            model_id: "0190f5c2-7a1b-7000-8000-000000000001".into(),
            unit: Some(pc::UnitCode { code: "00001".into() }),
            tree: pc::Tree::Pre2025 as i32,
            registered_on: Some(pc::Date { year: 2024, month: 3, day: 1 }),
            details: Some(pe::ModelDetails {
                name: long_name.clone(),
                field: pc::Field::Economy as i32,
                runner_kind: pe::RunnerKind::Collective as i32,
                sponsor: pe::Sponsor::YouthUnion as i32,
                sponsor_name: "Đoàn  xã".into(),
                timeline: Some(pe::Timeline { start: Some(pc::Date { year: 2024, month: 3, day: 1 }), end: None }),
                ..Default::default()
            }),
        });
        assert!(long_name.chars().count() > dvk_domain::text::MAX_NAME);
        let stream = StreamId::Model(ModelId::parse("id", "0190f5c2-7a1b-7000-8000-000000000001").unwrap());
        let DomainEvent::Model(ModelEvent::Registered { details, .. }) =
            decode(&stream, registered.clone(), &mut Vec::new()).unwrap()
        else {
            panic!("a registration")
        };
        assert_eq!((details.name.as_str(), details.sponsor_name.as_str()), (long_name.as_str(), "Đoàn  xã"));
        // Today a request with that name is refused, naming the field.
        let refused = crate::convert::details_in(match &registered {
            pe::envelope::Payload::ModelRegistered(r) => r.details.as_ref(),
            _ => None,
        });
        assert!(refused.unwrap_err().to_string().contains("details.name"));
        // A decision number over today's bound replays too.
        let recognized = pe::envelope::Payload::ModelRecognized(pe::ModelRecognized {
            level: pc::Level::Commune as i32,
            recognizing_unit: Some(pc::UnitCode { code: "00001".into() }),
            decision: Some(pe::Decision {
                number: "9".repeat(dvk_domain::text::MAX_CODE + 1),
                date: Some(pc::Date { year: 2024, month: 6, day: 1 }),
                issuer: String::new(),
            }),
            exemplary: false,
        });
        assert!(matches!(
            decode(&stream, recognized, &mut Vec::new()),
            Ok(DomainEvent::Model(ModelEvent::Recognized(_)))
        ));
        // Structure still matters: an unknown field of the movement is a corrupt event.
        let mut broken = registered.clone();
        if let pe::envelope::Payload::ModelRegistered(r) = &mut broken {
            r.details.as_mut().unwrap().field = 99;
        }
        assert!(decode(&stream, broken, &mut Vec::new()).is_err());
    }
}
