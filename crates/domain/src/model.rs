//! Mobilisation models (mô hình dân vận khéo): the registration form, and the
//! lifecycle registered → implementing → recognised (commune / district / province,
//! possibly exemplary) → commended → replicated → retired.

use crate::DomainError;
use crate::aggregate::Aggregate;
use crate::date::Date;
use crate::error::Violations;
use crate::text::{self, MAX_CODE, MAX_NAME, MAX_REASON, MAX_TEXT};
use crate::unit::{Level, Tree, UnitCode, UnitLookup};

/// Resources are bounded so that national sums cannot overflow an `i64`.
pub const MAX_FUNDS_VND: i64 = 100_000_000_000_000; // 100,000 tỷ đồng
pub const MAX_COUNT: i64 = 1_000_000_000;

/// The four fields (lĩnh vực) of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Economy,
    CultureSociety,
    DefenceSecurity,
    PoliticalSystem,
}

impl Field {
    pub const ALL: [Field; 4] = [Field::Economy, Field::CultureSociety, Field::DefenceSecurity, Field::PoliticalSystem];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunnerKind {
    Collective,
    Individual,
}

/// The kind of organisation that sponsors a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sponsor {
    PartyCommittee,
    Government,
    FatherlandFront,
    YouthUnion,
    WomensUnion,
    FarmersUnion,
    VeteransAssociation,
    TradeUnion,
    Police,
    Military,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwardForm {
    /// Giấy khen.
    CertificateOfMerit,
    /// Bằng khen.
    DiplomaOfMerit,
}

/// A model's identifier (the service issues UUIDv7s; clients may not choose odd ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(String);

impl ModelId {
    pub fn parse(field: &str, s: &str) -> Result<Self, DomainError> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok { Ok(Self(s.to_owned())) } else { Err(DomainError::invalid(field, format!("{s:?} is not a model id"))) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The registration form as a client sent it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDetailsDraft {
    pub name: String,
    pub field: Option<Field>,
    pub runner_kind: Option<RunnerKind>,
    pub runner_name: String,
    pub sponsor: Option<Sponsor>,
    pub sponsor_name: String,
    pub rationale: String,
    pub objectives: String,
    pub method: String,
    pub area: String,
    pub target_group: String,
    pub implementing_forces: String,
    pub funds_vnd: i64,
    pub workdays: i64,
    pub timeline_start: Option<Date>,
    pub timeline_end: Option<Date>,
    pub expected_outputs: String,
}

/// A validated registration form: texts NFC-normalised and bounded, enums chosen,
/// resources within bounds, the timeline in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDetails {
    pub name: String,
    pub field: Field,
    /// Required of every registration today; a stored one may lack it (or hold a value
    /// this release does not know): `None`.
    pub runner_kind: Option<RunnerKind>,
    pub runner_name: String,
    /// As `runner_kind`.
    pub sponsor: Option<Sponsor>,
    pub sponsor_name: String,
    pub rationale: String,
    pub objectives: String,
    pub method: String,
    pub area: String,
    pub target_group: String,
    pub implementing_forces: String,
    pub funds_vnd: i64,
    pub workdays: i64,
    /// As `runner_kind`.
    pub timeline_start: Option<Date>,
    pub timeline_end: Option<Date>,
    pub expected_outputs: String,
}

fn bounded(v: &mut Violations, field: String, value: i64, max: i64) {
    if value < 0 {
        v.push(field, format!("{value} is negative"));
    } else if value > max {
        v.push(field, format!("{value} exceeds the maximum {max}"));
    }
}

impl ModelDetails {
    /// Validates a draft; violations are named `{prefix}.{field}` (e.g. `details.name`).
    pub fn new(d: ModelDetailsDraft, prefix: &str) -> Result<Self, DomainError> {
        let f = |name: &str| format!("{prefix}.{name}");
        let mut v = Violations::new();
        let t = |name: &str, value: &str, max: usize, required: bool, v: &mut Violations| {
            v.check(text::clean(&f(name), value, max, required)).unwrap_or_default()
        };
        let n = |name: &str, value: &str, required: bool, v: &mut Violations| {
            v.check(text::name(&f(name), value, MAX_NAME, required)).unwrap_or_default()
        };
        let name = n("name", &d.name, true, &mut v);
        let runner_name = n("runner_name", &d.runner_name, true, &mut v);
        let sponsor_name = n("sponsor_name", &d.sponsor_name, false, &mut v);
        let rationale = t("rationale", &d.rationale, MAX_TEXT, false, &mut v);
        let objectives = t("objectives", &d.objectives, MAX_TEXT, true, &mut v);
        let method = t("method", &d.method, MAX_TEXT, false, &mut v);
        let area = t("area", &d.area, MAX_TEXT, false, &mut v);
        let target_group = t("target_group", &d.target_group, MAX_TEXT, false, &mut v);
        let implementing_forces = t("implementing_forces", &d.implementing_forces, MAX_TEXT, false, &mut v);
        let expected_outputs = t("expected_outputs", &d.expected_outputs, MAX_TEXT, false, &mut v);
        if d.field.is_none() {
            v.push(f("field"), "is required: economy, culture-society, defence-security or political system");
        }
        if d.runner_kind.is_none() {
            v.push(f("runner_kind"), "is required: collective or individual");
        }
        if d.sponsor.is_none() {
            v.push(f("sponsor"), "is required");
        }
        bounded(&mut v, f("resources.funds.vnd"), d.funds_vnd, MAX_FUNDS_VND);
        bounded(&mut v, f("resources.workdays"), d.workdays, MAX_COUNT);
        match (d.timeline_start, d.timeline_end) {
            (None, _) => v.push(f("timeline.start"), "is required"),
            (Some(s), Some(e)) if e < s => v.push(f("timeline.end"), format!("{e} is before the start {s}")),
            _ => {}
        }
        if !v.is_empty() {
            return v.finish(|| unreachable!("violations were recorded"));
        }
        Ok(Self {
            name,
            field: d.field.expect("checked"),
            runner_kind: d.runner_kind,
            runner_name,
            sponsor: d.sponsor,
            sponsor_name,
            rationale,
            objectives,
            method,
            area,
            target_group,
            implementing_forces,
            funds_vnd: d.funds_vnd,
            workdays: d.workdays,
            timeline_start: d.timeline_start,
            timeline_end: d.timeline_end,
            expected_outputs,
        })
    }
}

/// A decision (quyết định): number, date and issuing body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub number: String,
    pub date: Date,
    pub issuer: String,
}

impl Decision {
    pub fn new(prefix: &str, number: &str, date: Option<Date>, issuer: &str) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let number = v.check(text::name(&format!("{prefix}.number"), number, MAX_CODE, true));
        let issuer = v.check(text::name(&format!("{prefix}.issuer"), issuer, MAX_NAME, false));
        if date.is_none() {
            v.push(format!("{prefix}.date"), "is required");
        }
        v.finish(|| Decision {
            number: number.unwrap_or_default(),
            date: date.expect("checked"),
            issuer: issuer.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognition {
    pub level: Level,
    pub recognizing_unit: UnitCode,
    pub decision: Decision,
    pub exemplary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commendation {
    pub form: AwardForm,
    pub level: Level,
    pub awarding_unit: UnitCode,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub target_unit: UnitCode,
    pub replicated_on: Date,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelStatus {
    Registered,
    Implementing,
    Recognized,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCommand {
    Register { id: ModelId, unit: UnitCode, registered_on: Date, details: ModelDetails },
    Amend { details: ModelDetails, reason: String },
    Start { started_on: Date },
    Recognize(Recognition),
    Commend(Commendation),
    Replicate(Replication),
    Retire { reason: String, retired_on: Date },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEvent {
    Registered { id: ModelId, unit: UnitCode, tree: Tree, registered_on: Date, details: ModelDetails },
    Amended { details: ModelDetails, reason: String },
    Started { started_on: Date },
    Recognized(Recognition),
    Commended(Commendation),
    Replicated(Replication),
    Retired { reason: String, retired_on: Date },
}

/// What a model decision consults besides the model: the trees and today's date.
#[derive(Clone, Copy)]
pub struct ModelContext<'a> {
    pub units: &'a dyn UnitLookup,
    pub today: Date,
}

impl std::fmt::Debug for ModelContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelContext").field("today", &self.today).finish_non_exhaustive()
    }
}

/// The state of a registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelState {
    pub id: ModelId,
    pub unit: UnitCode,
    pub tree: Tree,
    pub registered_on: Date,
    pub details: ModelDetails,
    pub status: ModelStatus,
    pub started_on: Option<Date>,
    pub recognitions: Vec<Recognition>,
    pub commendations: Vec<Commendation>,
    pub replications: Vec<Replication>,
    pub retired: Option<(Date, String)>,
}

impl ModelState {
    /// The highest level at which the model is recognised.
    pub fn recognized_level(&self) -> Option<Level> {
        self.recognitions.iter().map(|r| r.level).min()
    }
    pub fn exemplary(&self) -> bool {
        self.recognitions.iter().any(|r| r.exemplary)
    }
}

/// The model aggregate; `Default` is a model not yet registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model(Option<ModelState>);

impl Model {
    pub fn state(&self) -> Option<&ModelState> {
        self.0.as_ref()
    }
}

fn not_after_today(field: &str, date: Date, today: Date) -> Result<(), DomainError> {
    if date > today {
        Err(DomainError::invalid(field, format!("{date} is in the future (today is {today})")))
    } else {
        Ok(())
    }
}

fn not_before(field: &str, date: Date, earlier: Date, what: &str) -> Result<(), DomainError> {
    if date < earlier { Err(DomainError::invalid(field, format!("{date} is before {what} {earlier}"))) } else { Ok(()) }
}

/// Checks that `unit` is a unit at `level` of `tree`, at or above the model's unit.
fn check_level_unit(
    ctx: &ModelContext<'_>,
    m: &ModelState,
    level: Level,
    unit: &UnitCode,
    level_field: &str,
    unit_field: &str,
) -> Result<(), DomainError> {
    if level == Level::Nation || !m.tree.has_level(level) {
        return Err(DomainError::invalid(
            level_field,
            format!("{level:?} is not a level of the {} tree", m.tree.name()),
        ));
    }
    if level > m.unit.level() {
        return Err(DomainError::invalid(
            level_field,
            format!("a {:?} model cannot be recognised at the lower {level:?} level", m.unit.level()),
        ));
    }
    if unit.level() != level || ctx.units.unit(m.tree, unit).is_none() {
        return Err(DomainError::invalid(
            unit_field,
            format!("{unit} is not a {level:?} of the {} tree", m.tree.name()),
        ));
    }
    if !ctx.units.is_within(m.tree, unit, &m.unit) {
        return Err(DomainError::invalid(unit_field, format!("{unit} is not above or at the model's unit {}", m.unit)));
    }
    Ok(())
}

impl Aggregate for Model {
    type Command = ModelCommand;
    type Event = ModelEvent;
    type Context<'a> = ModelContext<'a>;

    fn handle(&self, command: ModelCommand, ctx: ModelContext<'_>) -> Result<Vec<ModelEvent>, DomainError> {
        let m = match (&self.0, command) {
            (Some(m), ModelCommand::Register { .. }) => {
                return Err(DomainError::AlreadyExists(format!("model {} is already registered", m.id.as_str())));
            }
            (None, ModelCommand::Register { id, unit, registered_on, details }) => {
                not_after_today("registered_on", registered_on, ctx.today)?;
                let tree = Tree::in_force_on(registered_on);
                if ctx.units.unit(tree, &unit).is_none() {
                    return Err(DomainError::invalid(
                        "unit",
                        format!("{unit} is not a unit of the {} tree, in force on {registered_on}", tree.name()),
                    ));
                }
                return Ok(vec![ModelEvent::Registered { id, unit, tree, registered_on, details }]);
            }
            (None, _) => return Err(DomainError::NotFound("the model is not registered".into())),
            (Some(m), command) => {
                if m.status == ModelStatus::Retired {
                    return Err(DomainError::refused(format!("model {} is retired", m.id.as_str())));
                }
                (m, command)
            }
        };
        let (m, command) = m;
        let event = match command {
            ModelCommand::Register { .. } => unreachable!("handled above"),
            ModelCommand::Amend { details, reason } => {
                let reason = text::clean("reason", &reason, MAX_REASON, true)?;
                if details == m.details {
                    return Err(DomainError::refused("the amendment changes nothing"));
                }
                ModelEvent::Amended { details, reason }
            }
            ModelCommand::Start { started_on } => {
                if m.status != ModelStatus::Registered {
                    return Err(DomainError::refused(format!("the model is already {:?}", m.status)));
                }
                not_after_today("started_on", started_on, ctx.today)?;
                not_before("started_on", started_on, m.registered_on, "the registration date")?;
                ModelEvent::Started { started_on }
            }
            ModelCommand::Recognize(r) => {
                if m.status == ModelStatus::Registered {
                    return Err(DomainError::refused("a model is recognised only after it has started"));
                }
                check_level_unit(&ctx, m, r.level, &r.recognizing_unit, "level", "recognizing_unit")?;
                if let Some(best) = m.recognized_level()
                    && !r.level.is_above(best)
                {
                    return Err(DomainError::refused(format!(
                        "the model is already recognised at {best:?} level; a new recognition must be at a higher level"
                    )));
                }
                not_after_today("decision.date", r.decision.date, ctx.today)?;
                not_before("decision.date", r.decision.date, m.registered_on, "the registration date")?;
                ModelEvent::Recognized(r)
            }
            ModelCommand::Commend(c) => {
                if m.status != ModelStatus::Recognized {
                    return Err(DomainError::refused("only a recognised model can be commended"));
                }
                check_level_unit(&ctx, m, c.level, &c.awarding_unit, "level", "awarding_unit")?;
                not_after_today("decision.date", c.decision.date, ctx.today)?;
                not_before("decision.date", c.decision.date, m.registered_on, "the registration date")?;
                if m.commendations
                    .iter()
                    .any(|x| x.decision.number == c.decision.number && x.awarding_unit == c.awarding_unit)
                {
                    return Err(DomainError::refused(format!("decision {} is already recorded", c.decision.number)));
                }
                ModelEvent::Commended(c)
            }
            ModelCommand::Replicate(r) => {
                if m.status != ModelStatus::Recognized {
                    return Err(DomainError::refused("only a recognised model can be replicated"));
                }
                let note = text::clean("note", &r.note, MAX_REASON, false)?;
                not_after_today("replicated_on", r.replicated_on, ctx.today)?;
                not_before("replicated_on", r.replicated_on, m.registered_on, "the registration date")?;
                let tree = Tree::in_force_on(r.replicated_on);
                if ctx.units.unit(tree, &r.target_unit).is_none() {
                    return Err(DomainError::invalid(
                        "target_unit",
                        format!(
                            "{} is not a unit of the {} tree, in force on {}",
                            r.target_unit,
                            tree.name(),
                            r.replicated_on
                        ),
                    ));
                }
                if r.target_unit == m.unit {
                    return Err(DomainError::invalid("target_unit", "a model is not replicated to its own unit"));
                }
                if m.replications.iter().any(|x| x.target_unit == r.target_unit) {
                    return Err(DomainError::refused(format!("the model is already replicated to {}", r.target_unit)));
                }
                ModelEvent::Replicated(Replication { note, ..r })
            }
            ModelCommand::Retire { reason, retired_on } => {
                let reason = text::clean("reason", &reason, MAX_REASON, true)?;
                not_after_today("retired_on", retired_on, ctx.today)?;
                not_before("retired_on", retired_on, m.registered_on, "the registration date")?;
                ModelEvent::Retired { reason, retired_on }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &ModelEvent) {
        if let ModelEvent::Registered { id, unit, tree, registered_on, details } = event {
            self.0 = Some(ModelState {
                id: id.clone(),
                unit: unit.clone(),
                tree: *tree,
                registered_on: *registered_on,
                details: details.clone(),
                status: ModelStatus::Registered,
                started_on: None,
                recognitions: Vec::new(),
                commendations: Vec::new(),
                replications: Vec::new(),
                retired: None,
            });
            return;
        }
        // Events only follow a registration; anything else on an empty model is ignored.
        let Some(m) = self.0.as_mut() else { return };
        match event {
            ModelEvent::Registered { .. } => {}
            ModelEvent::Amended { details, .. } => m.details = details.clone(),
            ModelEvent::Started { started_on } => {
                m.started_on = Some(*started_on);
                m.status = ModelStatus::Implementing;
            }
            ModelEvent::Recognized(r) => {
                m.recognitions.push(r.clone());
                m.status = ModelStatus::Recognized;
            }
            ModelEvent::Commended(c) => m.commendations.push(c.clone()),
            ModelEvent::Replicated(r) => m.replications.push(r.clone()),
            ModelEvent::Retired { reason, retired_on } => {
                m.retired = Some((*retired_on, reason.clone()));
                m.status = ModelStatus::Retired;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::Trees;
    use crate::unit::tests::{code, sample_trees};

    fn d(s: &str) -> Date {
        Date::parse("d", s).unwrap()
    }

    fn draft() -> ModelDetailsDraft {
        ModelDetailsDraft {
            name: "Mô hình \"Dân vận khéo\" xây dựng đường giao thông nông thôn".into(),
            field: Some(Field::Economy),
            runner_kind: Some(RunnerKind::Collective),
            runner_name: "Chi hội Phụ nữ tổ dân phố 3".into(),
            sponsor: Some(Sponsor::WomensUnion),
            sponsor_name: "Hội LHPN phường Phúc Xá".into(),
            objectives: "Bê tông hoá 2 km đường ngõ xóm".into(),
            funds_vnd: 1_200_000_000,
            workdays: 850,
            timeline_start: Some(d("2024-03-01")),
            timeline_end: Some(d("2024-12-31")),
            ..Default::default()
        }
    }

    fn details() -> ModelDetails {
        ModelDetails::new(draft(), "details").unwrap()
    }

    struct Given {
        trees: Trees,
        today: Date,
        events: Vec<ModelEvent>,
    }

    fn given(events: Vec<ModelEvent>) -> Given {
        Given { trees: sample_trees(), today: d("2024-11-20"), events }
    }

    impl Given {
        fn when(&self, cmd: ModelCommand) -> Result<Vec<ModelEvent>, DomainError> {
            let model = Model::replay(&self.events);
            model.handle(cmd, ModelContext { units: &self.trees, today: self.today })
        }
    }

    fn registered() -> ModelEvent {
        ModelEvent::Registered {
            id: ModelId::parse("id", "0193a1b2-0000-7000-8000-000000000001").unwrap(),
            unit: code("00001"),
            tree: Tree::Pre2025,
            registered_on: d("2024-02-15"),
            details: details(),
        }
    }
    fn started() -> ModelEvent {
        ModelEvent::Started { started_on: d("2024-03-01") }
    }
    fn decision(n: &str, date: &str) -> Decision {
        Decision::new("decision", n, Some(d(date)), "UBND").unwrap()
    }
    fn recognition(level: Level, unit: &str) -> Recognition {
        Recognition {
            level,
            recognizing_unit: code(unit),
            decision: decision("12/QĐ-UBND", "2024-06-01"),
            exemplary: false,
        }
    }
    fn recognized_at_district() -> ModelEvent {
        ModelEvent::Recognized(recognition(Level::District, "001"))
    }
    fn commendation() -> Commendation {
        Commendation {
            form: AwardForm::CertificateOfMerit,
            level: Level::District,
            awarding_unit: code("001"),
            decision: decision("45/QĐ-UBND", "2024-08-01"),
        }
    }
    fn assert_refused(r: Result<Vec<ModelEvent>, DomainError>, needle: &str) {
        match r {
            Err(DomainError::Refused(msg)) => {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
            }
            other => panic!("expected a refusal containing {needle:?}, got {other:?}"),
        }
    }
    fn assert_invalid(r: Result<Vec<ModelEvent>, DomainError>, field: &str) {
        match r {
            Err(e @ DomainError::Invalid(_)) => {
                assert!(e.violations().iter().any(|v| v.field == field), "{e}")
            }
            other => panic!("expected a violation of {field}, got {other:?}"),
        }
    }

    // ---- validation of the form ----

    #[test]
    fn a_complete_form_is_accepted_and_normalised() {
        let mut raw = draft();
        raw.name = "  Da\u{302}n va\u{323}\u{302}n khe\u{301}o  ".into();
        assert_eq!(ModelDetails::new(raw, "details").unwrap().name, "Dân vận khéo");
    }

    #[test]
    fn names_are_stored_with_single_spaces_and_descriptions_keep_their_lines() {
        let raw = ModelDetailsDraft {
            name: "Mô hình  \"Dân vận khéo\"\n xây dựng  nông thôn mới".into(),
            runner_name: "Chi hội\tPhụ nữ  tổ 3".into(),
            sponsor_name: "Hội LHPN  phường Phúc Xá".into(),
            objectives: "1. Bê tông hoá 2 km\n2.  Lắp đèn".into(),
            ..draft()
        };
        let stored = ModelDetails::new(raw, "details").unwrap();
        assert_eq!(stored.name, "Mô hình \"Dân vận khéo\" xây dựng nông thôn mới");
        assert_eq!(stored.runner_name, "Chi hội Phụ nữ tổ 3");
        assert_eq!(stored.sponsor_name, "Hội LHPN phường Phúc Xá");
        assert_eq!(stored.objectives, "1. Bê tông hoá 2 km\n2.  Lắp đèn");
        let decision = Decision::new("decision", "12/QĐ-UBND", Some(d("2024-06-01")), "UBND  huyện").unwrap();
        assert_eq!(decision.issuer, "UBND huyện");
    }

    #[test]
    fn every_bad_field_of_the_form_is_named_at_once() {
        let raw = ModelDetailsDraft {
            name: " ".into(),
            field: None,
            funds_vnd: -5,
            workdays: MAX_COUNT + 1,
            timeline_start: Some(d("2024-05-01")),
            timeline_end: Some(d("2024-01-01")),
            ..draft()
        };
        let err = ModelDetails::new(raw, "details").unwrap_err();
        let fields: Vec<_> = err.violations().iter().map(|v| v.field.as_str()).collect();
        for f in [
            "details.name",
            "details.field",
            "details.resources.funds.vnd",
            "details.resources.workdays",
            "details.timeline.end",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    // ---- register ----

    #[test]
    fn register_at_an_existing_unit_of_the_tree_in_force() {
        let g = given(vec![]);
        let cmd = ModelCommand::Register {
            id: ModelId::parse("id", "m1").unwrap(),
            unit: code("00001"),
            registered_on: d("2024-02-15"),
            details: details(),
        };
        let events = g.when(cmd).unwrap();
        assert!(matches!(&events[..], [ModelEvent::Registered { tree: Tree::Pre2025, .. }]));
    }

    #[test]
    fn register_refuses_a_unit_absent_from_the_tree_in_force() {
        let mut g = given(vec![]);
        g.today = d("2025-09-01");
        // 00001 exists in the pre-2025 tree only; on 2025-08-01 the 2025 tree is in force.
        let cmd = ModelCommand::Register {
            id: ModelId::parse("id", "m1").unwrap(),
            unit: code("00001"),
            registered_on: d("2025-08-01"),
            details: details(),
        };
        assert_invalid(g.when(cmd), "unit");
    }

    #[test]
    fn register_refuses_a_future_date_and_a_second_registration() {
        let g = given(vec![]);
        let cmd = |on: &str| ModelCommand::Register {
            id: ModelId::parse("id", "m1").unwrap(),
            unit: code("00001"),
            registered_on: d(on),
            details: details(),
        };
        assert_invalid(g.when(cmd("2024-12-01")), "registered_on");
        let g = given(vec![registered()]);
        assert!(matches!(g.when(cmd("2024-02-15")), Err(DomainError::AlreadyExists(_))));
    }

    #[test]
    fn commands_on_an_unregistered_model_are_not_found() {
        let g = given(vec![]);
        assert!(matches!(g.when(ModelCommand::Start { started_on: d("2024-03-01") }), Err(DomainError::NotFound(_))));
    }

    // ---- amend ----

    #[test]
    fn amend_changes_details_with_a_reason() {
        let g = given(vec![registered(), started()]);
        let mut changed = draft();
        changed.workdays = 900;
        let details = ModelDetails::new(changed, "details").unwrap();
        let events =
            g.when(ModelCommand::Amend { details: details.clone(), reason: "Bổ sung ngày công".into() }).unwrap();
        let mut model = Model::replay(&g.events);
        model.apply(&events[0]);
        assert_eq!(model.state().unwrap().details.workdays, 900);
    }

    #[test]
    fn amend_refuses_no_change_and_a_missing_reason() {
        let g = given(vec![registered()]);
        assert_refused(g.when(ModelCommand::Amend { details: details(), reason: "x".into() }), "changes nothing");
        let mut changed = draft();
        changed.workdays = 1;
        let details = ModelDetails::new(changed, "details").unwrap();
        assert_invalid(g.when(ModelCommand::Amend { details, reason: "".into() }), "reason");
    }

    // ---- start ----

    #[test]
    fn start_moves_a_registered_model_to_implementing() {
        let g = given(vec![registered()]);
        let events = g.when(ModelCommand::Start { started_on: d("2024-03-01") }).unwrap();
        let mut m = Model::replay(&g.events);
        m.apply(&events[0]);
        assert_eq!(m.state().unwrap().status, ModelStatus::Implementing);
    }

    #[test]
    fn start_is_refused_twice_and_before_registration() {
        let g = given(vec![registered(), started()]);
        assert_refused(g.when(ModelCommand::Start { started_on: d("2024-03-02") }), "already");
        let g = given(vec![registered()]);
        assert_invalid(g.when(ModelCommand::Start { started_on: d("2024-01-01") }), "started_on");
    }

    // ---- recognise ----

    #[test]
    fn recognise_at_district_then_province_and_mark_exemplary() {
        let g = given(vec![registered(), started()]);
        let ev = g.when(ModelCommand::Recognize(recognition(Level::District, "001"))).unwrap();
        let g = given(vec![registered(), started(), ev[0].clone()]);
        let mut r = recognition(Level::Province, "01");
        r.exemplary = true;
        let ev2 = g.when(ModelCommand::Recognize(r)).unwrap();
        let mut m = Model::replay(&g.events);
        m.apply(&ev2[0]);
        let s = m.state().unwrap();
        assert_eq!(s.status, ModelStatus::Recognized);
        assert_eq!(s.recognized_level(), Some(Level::Province));
        assert!(s.exemplary());
    }

    #[test]
    fn recognise_is_refused_before_start() {
        let g = given(vec![registered()]);
        assert_refused(g.when(ModelCommand::Recognize(recognition(Level::Commune, "00001"))), "after it has started");
    }

    #[test]
    fn recognise_needs_a_unit_at_that_level_above_the_model() {
        let g = given(vec![registered(), started()]);
        // 002 is a district, but not the model's district.
        assert_invalid(g.when(ModelCommand::Recognize(recognition(Level::District, "002"))), "recognizing_unit");
        // A province code named as the district.
        assert_invalid(g.when(ModelCommand::Recognize(recognition(Level::District, "01"))), "recognizing_unit");
        // Another province.
        assert_invalid(g.when(ModelCommand::Recognize(recognition(Level::Province, "02"))), "recognizing_unit");
        // The nation is not a recognition level.
        assert_invalid(g.when(ModelCommand::Recognize(recognition(Level::Nation, "01"))), "level");
    }

    #[test]
    fn recognise_refuses_the_same_or_a_lower_level_again() {
        let g = given(vec![registered(), started(), recognized_at_district()]);
        assert_refused(g.when(ModelCommand::Recognize(recognition(Level::District, "001"))), "higher level");
        assert_refused(g.when(ModelCommand::Recognize(recognition(Level::Commune, "00001"))), "higher level");
    }

    #[test]
    fn a_district_model_is_not_recognised_at_commune_level() {
        let mut reg = registered();
        if let ModelEvent::Registered { unit, .. } = &mut reg {
            *unit = code("001");
        }
        let g = given(vec![reg, started()]);
        assert_invalid(g.when(ModelCommand::Recognize(recognition(Level::Commune, "00001"))), "level");
    }

    #[test]
    fn a_2025_model_has_no_district_level() {
        let mut g = given(vec![
            ModelEvent::Registered {
                id: ModelId::parse("id", "m2").unwrap(),
                unit: code("00004"),
                tree: Tree::Y2025,
                registered_on: d("2025-08-01"),
                details: details(),
            },
            ModelEvent::Started { started_on: d("2025-08-02") },
        ]);
        g.today = d("2025-12-01");
        assert_invalid(g.when(ModelCommand::Recognize(recognition(Level::District, "001"))), "level");
        let mut r = recognition(Level::Province, "01");
        r.decision = decision("1/QĐ", "2025-10-01");
        assert!(g.when(ModelCommand::Recognize(r)).is_ok());
    }

    #[test]
    fn recognise_refuses_a_decision_dated_in_the_future() {
        let g = given(vec![registered(), started()]);
        let mut r = recognition(Level::District, "001");
        r.decision.date = d("2025-01-01");
        assert_invalid(g.when(ModelCommand::Recognize(r)), "decision.date");
    }

    // ---- commend ----

    #[test]
    fn commend_a_recognised_model() {
        let g = given(vec![registered(), started(), recognized_at_district()]);
        let ev = g.when(ModelCommand::Commend(commendation())).unwrap();
        let mut m = Model::replay(&g.events);
        m.apply(&ev[0]);
        assert_eq!(m.state().unwrap().commendations.len(), 1);
    }

    #[test]
    fn commend_is_refused_before_recognition_and_for_a_repeated_decision() {
        let g = given(vec![registered(), started()]);
        assert_refused(g.when(ModelCommand::Commend(commendation())), "only a recognised model");
        let g = given(vec![registered(), started(), recognized_at_district(), ModelEvent::Commended(commendation())]);
        assert_refused(g.when(ModelCommand::Commend(commendation())), "already recorded");
    }

    // ---- replicate ----

    #[test]
    fn replicate_to_another_unit_once() {
        let g = given(vec![registered(), started(), recognized_at_district()]);
        let rep = Replication { target_unit: code("00037"), replicated_on: d("2024-09-01"), note: "".into() };
        let ev = g.when(ModelCommand::Replicate(rep.clone())).unwrap();
        let g2 = given([g.events.clone(), ev].concat());
        assert_refused(g2.when(ModelCommand::Replicate(rep)), "already replicated");
    }

    #[test]
    fn replicate_is_refused_to_its_own_unit_an_unknown_unit_or_before_recognition() {
        let g = given(vec![registered(), started(), recognized_at_district()]);
        let rep = |u: &str| Replication { target_unit: code(u), replicated_on: d("2024-09-01"), note: "".into() };
        assert_invalid(g.when(ModelCommand::Replicate(rep("00001"))), "target_unit");
        assert_invalid(g.when(ModelCommand::Replicate(rep("99999"))), "target_unit");
        let g = given(vec![registered(), started()]);
        assert_refused(g.when(ModelCommand::Replicate(rep("00037"))), "only a recognised model");
    }

    // ---- retire ----

    #[test]
    fn retire_ends_the_life_of_a_model() {
        let g = given(vec![registered(), started()]);
        let ev =
            g.when(ModelCommand::Retire { reason: "Hoàn thành mục tiêu".into(), retired_on: d("2024-10-01") }).unwrap();
        let g = given([g.events.clone(), ev].concat());
        assert_eq!(Model::replay(&g.events).state().unwrap().status, ModelStatus::Retired);
        // Nothing is accepted afterwards.
        assert_refused(g.when(ModelCommand::Start { started_on: d("2024-10-02") }), "retired");
        assert_refused(g.when(ModelCommand::Retire { reason: "again".into(), retired_on: d("2024-10-02") }), "retired");
        assert_refused(g.when(ModelCommand::Commend(commendation())), "retired");
    }

    #[test]
    fn retire_needs_a_reason() {
        let g = given(vec![registered()]);
        assert_invalid(g.when(ModelCommand::Retire { reason: " ".into(), retired_on: d("2024-10-01") }), "reason");
    }

    #[test]
    fn a_models_life_folds_into_what_a_reader_sees() {
        let events = vec![registered(), started(), recognized_at_district(), ModelEvent::Commended(commendation())];
        let model = Model::replay(&events);
        let m = model.state().expect("registered");
        assert_eq!(m.status, ModelStatus::Recognized);
        assert_eq!((m.started_on, m.recognized_level()), (Some(d("2024-03-01")), Some(Level::District)));
        assert_eq!(m.commendations, vec![commendation()]);
        assert_eq!(Model::replay(&events[..2]).state().unwrap().status, ModelStatus::Implementing);
    }
}
