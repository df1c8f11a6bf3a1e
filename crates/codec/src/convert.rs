//! Conversions between wire types and domain types: requests are parsed into checked
//! domain values (errors name the request's fields), and domain values are written
//! back into answers and payloads. Events themselves go through `event` and
//! `recorded`.

use dvk_domain::model::{AwardForm, Decision, Field, ModelDetails, ModelDetailsDraft, RunnerKind, Sponsor};
use dvk_domain::report::{Figure, Figures};
use dvk_domain::unit::{LinkBasis, MappingStatus, MergeKind, ReorgLink, Unit, UnitKind};
use dvk_domain::{Date, DomainError, Level, Period, Tree, UnitCode};

use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1 as pc;
use dvk_proto::events::v1 as pe;

/// A payload that cannot be turned back into a domain event (a corrupt or foreign log).
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what}: {why}")]
pub struct DecodeError {
    pub what: &'static str,
    pub why: String,
}

pub(crate) fn bad(what: &'static str, why: impl ToString) -> DecodeError {
    DecodeError { what, why: why.to_string() }
}

// ---- scalars ----

/// A date field: `Ok(None)` when absent, an error naming `field` when invalid.
pub fn date_in(field: &str, d: Option<&pc::Date>) -> Result<Option<Date>, DomainError> {
    match d {
        None => Ok(None),
        Some(d) => Date::new(field, d.year, d.month.max(0) as u32, d.day.max(0) as u32).map(Some),
    }
}

/// A required date field.
pub fn date_required(field: &str, d: Option<&pc::Date>) -> Result<Date, DomainError> {
    date_in(field, d)?.ok_or_else(|| DomainError::invalid(field, "is required"))
}

pub fn date_out(d: Date) -> pc::Date {
    pc::Date { year: d.year(), month: d.month() as i32, day: d.day() as i32 }
}

pub fn unit_in(field: &str, u: Option<&pc::UnitCode>) -> Result<UnitCode, DomainError> {
    match u {
        Some(u) if !u.code.trim().is_empty() => UnitCode::parse(field, &u.code),
        _ => Err(DomainError::invalid(field, "is required")),
    }
}

pub fn unit_out(u: &UnitCode) -> pc::UnitCode {
    pc::UnitCode { code: u.as_str().to_owned() }
}

pub fn tree_in(field: &str, t: i32) -> Result<Tree, DomainError> {
    match pc::Tree::try_from(t) {
        Ok(pc::Tree::Pre2025) => Ok(Tree::Pre2025),
        Ok(pc::Tree::Tree2025) => Ok(Tree::Y2025),
        _ => Err(DomainError::invalid(field, "must be TREE_PRE2025 or TREE_2025")),
    }
}

pub fn tree_out(t: Tree) -> pc::Tree {
    match t {
        Tree::Pre2025 => pc::Tree::Pre2025,
        Tree::Y2025 => pc::Tree::Tree2025,
    }
}

pub fn level_in(field: &str, l: i32) -> Result<Level, DomainError> {
    match pc::Level::try_from(l) {
        Ok(pc::Level::Nation) => Ok(Level::Nation),
        Ok(pc::Level::Province) => Ok(Level::Province),
        Ok(pc::Level::District) => Ok(Level::District),
        Ok(pc::Level::Commune) => Ok(Level::Commune),
        _ => Err(DomainError::invalid(field, "must be a level (LEVEL_PROVINCE, LEVEL_DISTRICT, LEVEL_COMMUNE)")),
    }
}

pub fn level_out(l: Level) -> pc::Level {
    match l {
        Level::Nation => pc::Level::Nation,
        Level::Province => pc::Level::Province,
        Level::District => pc::Level::District,
        Level::Commune => pc::Level::Commune,
    }
}

pub fn kind_in(field: &str, k: i32) -> Result<UnitKind, DomainError> {
    use pc::UnitKind as K;
    Ok(match K::try_from(k) {
        Ok(K::Province) => UnitKind::Province,
        Ok(K::CentralCity) => UnitKind::CentralCity,
        Ok(K::UrbanDistrict) => UnitKind::UrbanDistrict,
        Ok(K::RuralDistrict) => UnitKind::RuralDistrict,
        Ok(K::Town) => UnitKind::Town,
        Ok(K::ProvincialCity) => UnitKind::ProvincialCity,
        Ok(K::Commune) => UnitKind::Commune,
        Ok(K::Ward) => UnitKind::Ward,
        Ok(K::Township) => UnitKind::Township,
        Ok(K::SpecialZone) => UnitKind::SpecialZone,
        _ => return Err(DomainError::invalid(field, "is required: the unit's kind")),
    })
}

pub fn kind_out(k: UnitKind) -> pc::UnitKind {
    use pc::UnitKind as K;
    match k {
        UnitKind::Province => K::Province,
        UnitKind::CentralCity => K::CentralCity,
        UnitKind::UrbanDistrict => K::UrbanDistrict,
        UnitKind::RuralDistrict => K::RuralDistrict,
        UnitKind::Town => K::Town,
        UnitKind::ProvincialCity => K::ProvincialCity,
        UnitKind::Commune => K::Commune,
        UnitKind::Ward => K::Ward,
        UnitKind::Township => K::Township,
        UnitKind::SpecialZone => K::SpecialZone,
    }
}

pub fn field_in(f: i32) -> Option<Field> {
    match pc::Field::try_from(f) {
        Ok(pc::Field::Economy) => Some(Field::Economy),
        Ok(pc::Field::CultureSociety) => Some(Field::CultureSociety),
        Ok(pc::Field::DefenceSecurity) => Some(Field::DefenceSecurity),
        Ok(pc::Field::PoliticalSystem) => Some(Field::PoliticalSystem),
        _ => None,
    }
}

pub fn field_out(f: Field) -> pc::Field {
    match f {
        Field::Economy => pc::Field::Economy,
        Field::CultureSociety => pc::Field::CultureSociety,
        Field::DefenceSecurity => pc::Field::DefenceSecurity,
        Field::PoliticalSystem => pc::Field::PoliticalSystem,
    }
}

pub(crate) fn runner_in(r: i32) -> Option<RunnerKind> {
    match pe::RunnerKind::try_from(r) {
        Ok(pe::RunnerKind::Collective) => Some(RunnerKind::Collective),
        Ok(pe::RunnerKind::Individual) => Some(RunnerKind::Individual),
        _ => None,
    }
}

pub(crate) fn runner_out(r: RunnerKind) -> pe::RunnerKind {
    match r {
        RunnerKind::Collective => pe::RunnerKind::Collective,
        RunnerKind::Individual => pe::RunnerKind::Individual,
    }
}

const SPONSORS: [(pe::Sponsor, Sponsor); 11] = [
    (pe::Sponsor::PartyCommittee, Sponsor::PartyCommittee),
    (pe::Sponsor::Government, Sponsor::Government),
    (pe::Sponsor::FatherlandFront, Sponsor::FatherlandFront),
    (pe::Sponsor::YouthUnion, Sponsor::YouthUnion),
    (pe::Sponsor::WomensUnion, Sponsor::WomensUnion),
    (pe::Sponsor::FarmersUnion, Sponsor::FarmersUnion),
    (pe::Sponsor::VeteransAssociation, Sponsor::VeteransAssociation),
    (pe::Sponsor::TradeUnion, Sponsor::TradeUnion),
    (pe::Sponsor::Police, Sponsor::Police),
    (pe::Sponsor::Military, Sponsor::Military),
    (pe::Sponsor::Other, Sponsor::Other),
];

pub(crate) fn sponsor_in(s: i32) -> Option<Sponsor> {
    SPONSORS.iter().find(|(p, _)| *p as i32 == s).map(|(_, d)| *d)
}

pub(crate) fn sponsor_out(s: Sponsor) -> pe::Sponsor {
    SPONSORS.iter().find(|(_, d)| *d == s).map(|(p, _)| *p).expect("every sponsor is mapped")
}

pub fn award_in(field: &str, a: i32) -> Result<AwardForm, DomainError> {
    match pe::AwardForm::try_from(a) {
        Ok(pe::AwardForm::CertificateOfMerit) => Ok(AwardForm::CertificateOfMerit),
        Ok(pe::AwardForm::DiplomaOfMerit) => Ok(AwardForm::DiplomaOfMerit),
        _ => Err(DomainError::invalid(
            field,
            "must be a certificate of merit (giấy khen) or a diploma of merit (bằng khen)",
        )),
    }
}

pub fn award_out(a: AwardForm) -> pe::AwardForm {
    match a {
        AwardForm::CertificateOfMerit => pe::AwardForm::CertificateOfMerit,
        AwardForm::DiplomaOfMerit => pe::AwardForm::DiplomaOfMerit,
    }
}

pub fn merge_out(k: MergeKind) -> pe::MergeKind {
    use pe::MergeKind as M;
    match k {
        MergeKind::Whole => M::Whole,
        MergeKind::Part => M::Part,
        MergeKind::PartArea => M::PartArea,
        MergeKind::PartAreaWholePopulation => M::PartAreaWholePopulation,
        MergeKind::PartPopulation => M::PartPopulation,
        MergeKind::Unchanged => M::Unchanged,
        MergeKind::TypeChanged => M::TypeChanged,
        MergeKind::Renamed => M::Renamed,
        MergeKind::DistrictToSpecialZone => M::DistrictToSpecialZone,
        MergeKind::Unspecified => M::Unspecified,
    }
}

pub fn merge_in(k: i32) -> MergeKind {
    use pe::MergeKind as M;
    match M::try_from(k).unwrap_or(M::Unspecified) {
        M::Whole => MergeKind::Whole,
        M::Part => MergeKind::Part,
        M::PartArea => MergeKind::PartArea,
        M::PartAreaWholePopulation => MergeKind::PartAreaWholePopulation,
        M::PartPopulation => MergeKind::PartPopulation,
        M::Unchanged => MergeKind::Unchanged,
        M::TypeChanged => MergeKind::TypeChanged,
        M::Renamed => MergeKind::Renamed,
        M::DistrictToSpecialZone => MergeKind::DistrictToSpecialZone,
        M::Unspecified => MergeKind::Unspecified,
    }
}

// ---- units ----

/// A unit record of a request (fields named `{prefix}.code`, ...), checked against `tree`.
pub fn unit_record_in(prefix: &str, tree: Tree, r: &pe::UnitRecord) -> Result<Unit, DomainError> {
    let f = |n: &str| format!("{prefix}.{n}");
    let code = unit_in(&f("code"), r.code.as_ref())?;
    let kind = kind_in(&f("kind"), r.kind)?;
    let parent = match r.parent.as_ref() {
        Some(p) if !p.code.trim().is_empty() => Some(UnitCode::parse(&f("parent"), &p.code)?),
        _ => None,
    };
    if r.level != 0 {
        let level = level_in(&f("level"), r.level)?;
        if level != kind.level() {
            return Err(DomainError::invalid(f("level"), format!("{level:?} does not match the kind {kind:?}")));
        }
    }
    Unit::new(tree, code, &r.name, &r.english_name, kind, parent).map_err(|e| prefix_violations(prefix, e))
}

fn prefix_violations(prefix: &str, e: DomainError) -> DomainError {
    match e {
        DomainError::Invalid(v) => DomainError::Invalid(
            v.into_iter()
                .map(|mut v| {
                    v.field = format!("{prefix}.{}", v.field);
                    v
                })
                .collect(),
        ),
        other => other,
    }
}

pub fn unit_record_out(u: &Unit) -> pe::UnitRecord {
    pe::UnitRecord {
        code: Some(unit_out(&u.code)),
        name: u.name.clone(),
        english_name: u.english_name.clone(),
        level: level_out(u.level) as i32,
        kind: kind_out(u.kind) as i32,
        parent: u.parent.as_ref().map(unit_out),
    }
}

pub fn reorg_link_in(prefix: &str, l: &pe::ReorgLink) -> Result<ReorgLink, DomainError> {
    let old = unit_in(&format!("{prefix}.old_code"), l.old_code.as_ref())?;
    let new = unit_in(&format!("{prefix}.new_code"), l.new_code.as_ref())?;
    let note = dvk_domain::text::clean(&format!("{prefix}.note"), &l.note, dvk_domain::text::MAX_REASON, false)?;
    let kind = if l.kind == 0 { MergeKind::from_note(&note) } else { merge_in(l.kind) };
    let basis = match pe::LinkBasis::try_from(l.basis) {
        Ok(pe::LinkBasis::Official) => LinkBasis::Official,
        Ok(pe::LinkBasis::Inferred) => LinkBasis::Inferred,
        Ok(pe::LinkBasis::Supplementary) => LinkBasis::Supplementary,
        Err(_) => {
            return Err(DomainError::invalid(format!("{prefix}.basis"), format!("{} is not a link basis", l.basis)));
        }
    };
    Ok(ReorgLink { old, new, kind, note, basis })
}

pub fn mapping_status_out(s: MappingStatus) -> dvk_proto::registration::v1::MappingStatus {
    use dvk_proto::registration::v1::MappingStatus as W;
    match s {
        MappingStatus::Whole => W::Whole,
        MappingStatus::Split => W::Split,
        MappingStatus::Recoded => W::Recoded,
        MappingStatus::Inferred => W::Inferred,
        MappingStatus::Supplementary => W::Supplementary,
        MappingStatus::Unassigned => W::Unassigned,
    }
}

pub fn basis_out(b: LinkBasis) -> pe::LinkBasis {
    match b {
        LinkBasis::Official => pe::LinkBasis::Official,
        LinkBasis::Inferred => pe::LinkBasis::Inferred,
        LinkBasis::Supplementary => pe::LinkBasis::Supplementary,
    }
}

pub fn reorg_link_out(l: &ReorgLink, rank: u32) -> pe::ReorgLink {
    pe::ReorgLink {
        old_code: Some(unit_out(&l.old)),
        new_code: Some(unit_out(&l.new)),
        kind: merge_out(l.kind) as i32,
        note: l.note.clone(),
        successor_rank: rank,
        basis: basis_out(l.basis) as i32,
    }
}

// ---- models ----

/// The registration form of a request, before validation.
pub fn details_draft(d: Option<&pe::ModelDetails>) -> ModelDetailsDraft {
    d.cloned().map(draft_of).unwrap_or_default()
}

/// The registration form as sent or stored, taken apart (its texts moved, not copied).
pub(crate) fn draft_of(d: pe::ModelDetails) -> ModelDetailsDraft {
    let resources = d.resources.unwrap_or_default();
    let timeline = d.timeline.unwrap_or_default();
    ModelDetailsDraft {
        name: d.name,
        field: field_in(d.field),
        runner_kind: runner_in(d.runner_kind),
        runner_name: d.runner_name,
        sponsor: sponsor_in(d.sponsor),
        sponsor_name: d.sponsor_name,
        rationale: d.rationale,
        objectives: d.objectives,
        method: d.method,
        area: d.area,
        target_group: d.target_group,
        implementing_forces: d.implementing_forces,
        funds_vnd: resources.funds.map_or(0, |m| m.vnd),
        workdays: resources.workdays,
        // Invalid dates are reported by `details_in`; here they count as absent.
        timeline_start: date_in("", timeline.start.as_ref()).ok().flatten(),
        timeline_end: date_in("", timeline.end.as_ref()).ok().flatten(),
        expected_outputs: d.expected_outputs,
    }
}

/// The registration form of a request, validated; fields are named `details.*`.
pub fn details_in(d: Option<&pe::ModelDetails>) -> Result<ModelDetails, DomainError> {
    if let Some(t) = d.and_then(|d| d.timeline.as_ref()) {
        date_in("details.timeline.start", t.start.as_ref())?;
        date_in("details.timeline.end", t.end.as_ref())?;
    }
    ModelDetails::new(details_draft(d), "details")
}

pub fn details_out(d: &ModelDetails) -> pe::ModelDetails {
    pe::ModelDetails {
        name: d.name.clone(),
        field: field_out(d.field) as i32,
        runner_kind: d.runner_kind.map_or(0, |r| runner_out(r) as i32),
        runner_name: d.runner_name.clone(),
        sponsor: d.sponsor.map_or(0, |s| sponsor_out(s) as i32),
        sponsor_name: d.sponsor_name.clone(),
        rationale: d.rationale.clone(),
        objectives: d.objectives.clone(),
        method: d.method.clone(),
        area: d.area.clone(),
        target_group: d.target_group.clone(),
        implementing_forces: d.implementing_forces.clone(),
        resources: Some(pe::Resources { funds: Some(pc::Money { vnd: d.funds_vnd }), workdays: d.workdays }),
        timeline: Some(pe::Timeline { start: d.timeline_start.map(date_out), end: d.timeline_end.map(date_out) }),
        expected_outputs: d.expected_outputs.clone(),
    }
}

pub fn decision_in(prefix: &str, d: Option<&pe::Decision>) -> Result<Decision, DomainError> {
    let d = d.cloned().unwrap_or_default();
    let date = date_in(&format!("{prefix}.date"), d.date.as_ref())?;
    Decision::new(prefix, &d.number, date, &d.issuer)
}

pub fn decision_out(d: &Decision) -> pe::Decision {
    pe::Decision { number: d.number.clone(), date: Some(date_out(d.date)), issuer: d.issuer.clone() }
}

// ---- reports ----

/// Where a figure stands on the wire: its field of `dvk.common.v1.Figures`, read and
/// written, and the `SortField` of a ranking by it.
struct OnTheWire {
    get: fn(&pc::Figures) -> i64,
    set: fn(&mut pc::Figures, i64),
    sort: pa::SortField,
}

/// The one place a figure is spelled against the generated types: every conversion
/// below goes through it (a figure without its arm does not compile).
fn on_the_wire(figure: Figure) -> OnTheWire {
    use pa::SortField as S;
    macro_rules! count {
        ($field:ident, $sort:ident) => {
            OnTheWire { get: |w| w.$field, set: |w, v| w.$field = v, sort: S::$sort }
        };
    }
    match figure {
        Figure::ModelsRegistered => count!(models_registered, ReportedModelsRegistered),
        Figure::ModelsRecognized => count!(models_recognized, ReportedModelsRecognized),
        Figure::FundsMobilized => OnTheWire {
            get: |w| w.funds_mobilized.map_or(0, |m| m.vnd),
            set: |w, vnd| w.funds_mobilized = Some(pc::Money { vnd }),
            sort: S::FundsMobilized,
        },
        Figure::Workdays => count!(workdays, Workdays),
        Figure::Participants => count!(participants, Participants),
        Figure::DialoguesHeld => count!(dialogues_held, DialoguesHeld),
        Figure::PetitionsReceived => count!(petitions_received, PetitionsReceived),
        Figure::PetitionsResolved => count!(petitions_resolved, PetitionsResolved),
        Figure::DanVanDays => count!(dan_van_days, DanVanDays),
        Figure::CommendationsCollective => count!(commendations_collective, CommendationsCollective),
        Figure::CommendationsIndividual => count!(commendations_individual, CommendationsIndividual),
    }
}

/// The figures of a request as sent (validated by the domain); absent figures are 0.
pub fn figures_in(f: Option<&pc::Figures>) -> Figures {
    let f = f.copied().unwrap_or_default();
    Figure::ALL.into_iter().map(|figure| (figure, (on_the_wire(figure).get)(&f))).collect()
}

/// The figures as sent; an amount is always present, 0 included.
pub fn figures_out(f: &Figures) -> pc::Figures {
    let mut w = pc::Figures::default();
    for (figure, value) in f.iter() {
        (on_the_wire(figure).set)(&mut w, value);
    }
    w
}

/// One figure of figures as sent, without converting the others.
pub fn figure_of(f: &pc::Figures, figure: Figure) -> i64 {
    (on_the_wire(figure).get)(f)
}

/// The field a ranking by `figure` sorts by.
pub fn sort_field(figure: Figure) -> pa::SortField {
    on_the_wire(figure).sort
}

/// The figure a sort field ranks by; `None` for the unit code and the registry's model
/// counts.
pub fn sorted_figure(by: pa::SortField) -> Option<Figure> {
    Figure::ALL.into_iter().find(|f| sort_field(*f) == by)
}

pub fn period_in(field: &str, p: Option<&pc::Period>) -> Result<Period, DomainError> {
    match p {
        Some(p) if !p.code.trim().is_empty() => Period::parse(field, &p.code),
        _ => Err(DomainError::invalid(field, "is required, e.g. 2024-H1, 2024 or 2021-2025")),
    }
}

/// A period read back from a stored event or snapshot: stages written before they were
/// fixed to five-year terms still decode (see [`Period::parse_recorded`]).
pub fn recorded_period_in(field: &str, p: Option<&pc::Period>) -> Result<Period, DomainError> {
    match p {
        Some(p) if !p.code.trim().is_empty() => Period::parse_recorded(field, &p.code),
        _ => Err(DomainError::invalid(field, "is required")),
    }
}

pub fn period_out(p: Period) -> pc::Period {
    pc::Period { code: p.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::details;

    #[test]
    fn each_figure_is_the_wire_field_it_names_and_ranks_by_its_own_sort_field() {
        use prost::Message;
        use prost_reflect::{DescriptorPool, DynamicMessage, Value};
        let pool = DescriptorPool::decode(dvk_proto::FILE_DESCRIPTOR_SET).unwrap();
        let message = pool.get_message_by_name("dvk.common.v1.Figures").unwrap();
        assert_eq!(message.fields().len(), Figure::COUNT, "every field of dvk.common.v1.Figures is a Figure");
        for figure in Figure::ALL {
            let wire = figures_out(&Figures::default().with(figure, 7));
            let mut value = Value::Message(DynamicMessage::decode(message.clone(), &*wire.encode_to_vec()).unwrap());
            for name in figure.field().split('.') {
                let Value::Message(m) = value else { panic!("{figure}: {name} is not inside a message") };
                value = m.get_field_by_name(name).unwrap_or_else(|| panic!("{figure}: no field {name}")).into_owned();
            }
            assert_eq!(value, Value::I64(7), "{figure} is written to another field than {}", figure.field());
            for other in Figure::ALL {
                assert_eq!(figure_of(&wire, other), if other == figure { 7 } else { 0 }, "{figure} read as {other}");
            }
            let stem = figure.field().split('.').next().unwrap().to_uppercase();
            assert!(sort_field(figure).as_str_name().ends_with(&stem), "{figure} sorts by {:?}", sort_field(figure));
            assert_eq!(sorted_figure(sort_field(figure)), Some(figure));
        }
        for registry in [pa::SortField::UnitCode, pa::SortField::ModelsRegistered, pa::SortField::ModelsExemplary] {
            assert_eq!(sorted_figure(registry), None, "{registry:?} ranks by the registry, not by reports");
        }
    }

    #[test]
    fn names_sent_with_double_spaces_are_single_spaced() {
        // As stored before names were collapsed.
        let record = pe::UnitRecord {
            code: Some(pc::UnitCode { code: "04138".into() }),
            name: "Xã Cò  Nòi".into(),
            kind: pc::UnitKind::Commune as i32,
            parent: Some(pc::UnitCode { code: "125".into() }),
            ..Default::default()
        };
        assert_eq!(unit_record_in("units[0]", Tree::Pre2025, &record).unwrap().name, "Xã Cò Nòi");
        let mut stored = details_out(&details());
        stored.name = "Dân  vận khéo".into();
        assert_eq!(details_in(Some(&stored)).unwrap().name, "Dân vận khéo");
    }

    #[test]
    fn request_fields_are_named_in_errors() {
        let mut d = details_out(&details());
        d.name = String::new();
        d.timeline.as_mut().unwrap().start = Some(pc::Date { year: 2024, month: 2, day: 30 });
        let err = details_in(Some(&d)).unwrap_err();
        assert_eq!(err.violations()[0].field, "details.timeline.start");
        d.timeline.as_mut().unwrap().start = Some(pc::Date { year: 2024, month: 2, day: 3 });
        let err = details_in(Some(&d)).unwrap_err();
        assert_eq!(err.violations()[0].field, "details.name");
        assert_eq!(unit_in("unit", None).unwrap_err().violations()[0].field, "unit");
        assert!(tree_in("tree", 0).is_err());
    }
}
