//! What analysts read, shaped for output: roll-ups, rankings, series, completeness,
//! projection status and histories.

use dvk_codec::convert;
use dvk_domain::report::Figure;
use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1 as pc;
use dvk_proto::events::v1::{Envelope, envelope::Payload};

use crate::output::{Record, Table, Value};

fn level_name(l: i32) -> &'static str {
    match pc::Level::try_from(l) {
        Ok(pc::Level::Commune) => "commune",
        Ok(pc::Level::District) => "district",
        Ok(pc::Level::Province) => "province",
        Ok(pc::Level::Nation) => "nation",
        _ => "",
    }
}

fn tree_name(t: i32) -> &'static str {
    match pc::Tree::try_from(t) {
        Ok(pc::Tree::Tree2025) => "2025",
        Ok(pc::Tree::Pre2025) => "pre2025",
        _ => "",
    }
}

/// The registry's model counts of a roll-up, as named in the output.
const MODEL_COUNTS: [&str; 7] = [
    "models_registered",
    "models_implementing",
    "models_recognized",
    "models_exemplary",
    "models_commended",
    "models_replicated",
    "models_retired",
];

/// The column of a reported figure: its name, or `reported_<name>` where a model
/// count of the registry has that name (`reported_models_registered`).
pub fn figure_column(f: Figure) -> String {
    if MODEL_COUNTS.contains(&f.name()) { format!("reported_{}", f.name()) } else { f.name().to_owned() }
}

/// The figures of a roll-up by column, in declaration order.
pub fn figures(f: &pc::Figures) -> impl Iterator<Item = (String, i64)> + '_ {
    Figure::ALL.into_iter().map(|figure| (figure_column(figure), convert::figure_of(f, figure)))
}

/// The model counts of a roll-up, by name.
pub fn models(m: &pa::ModelCounts) -> Vec<(String, i64)> {
    let counts = [m.registered, m.implementing, m.recognized, m.exemplary, m.commended, m.replicated, m.retired];
    let mut out: Vec<(String, i64)> = MODEL_COUNTS.iter().map(|n| (*n).to_owned()).zip(counts).collect();
    for l in &m.recognized_by_level {
        out.push((format!("models_recognized_{}", level_name(l.level)), l.count));
    }
    for f in &m.by_field {
        let name = match pc::Field::try_from(f.field) {
            Ok(pc::Field::Economy) => "economy",
            Ok(pc::Field::CultureSociety) => "culture_society",
            Ok(pc::Field::DefenceSecurity) => "defence_security",
            Ok(pc::Field::PoliticalSystem) => "political_system",
            _ => "unknown",
        };
        out.push((format!("models_field_{name}"), f.count));
    }
    out
}

fn unit_code(u: &Option<pc::UnitCode>) -> String {
    u.as_ref().map(|u| u.code.clone()).unwrap_or_default()
}

pub fn rollup_record(r: &pa::Rollup) -> Record {
    let mut rec = Record::default();
    rec.push("unit", unit_code(&r.unit));
    rec.push("name", r.unit_name.clone());
    rec.push("level", level_name(r.level));
    rec.push("tree", tree_name(r.tree));
    rec.push("period", r.period.as_ref().map(|p| p.code.clone()).unwrap_or_default());
    rec.push("counted", if r.include_unapproved { "all reports" } else { "approved reports" });
    for (k, v) in models(&r.models.clone().unwrap_or_default()) {
        rec.push(&k, v);
    }
    rec.push("reports_counted", r.reports_counted);
    for (k, v) in figures(&r.figures.unwrap_or_default()) {
        rec.push(&k, v);
    }
    rec.push("allocated_figures", r.allocated_figures);
    // What has no counterpart in this tree: never dropped, shown beside the figures.
    let u = r.unassigned.clone().unwrap_or_default();
    rec.push("unassigned_units", i64::from(u.total_units));
    rec.push("unassigned_reports", u.reports_counted);
    rec.push("unassigned_models_registered", u.models.as_ref().map_or(0, |m| m.registered));
    for (k, v) in figures(&u.figures.unwrap_or_default()) {
        rec.push(&format!("unassigned_{k}"), v);
    }
    let mut from: Vec<String> = u.units.iter().map(|x| format!("{} {}", unit_code(&x.unit), x.unit_name)).collect();
    if u.total_units as usize > u.units.len() {
        from.push(format!("… {} more", u.total_units as usize - u.units.len()));
    }
    rec.push("unassigned_from", from.join("; "));
    rec
}

/// The reported figures a ranking shows beside the model counts.
const RANKED: [Figure; 4] = [Figure::FundsMobilized, Figure::Workdays, Figure::Participants, Figure::PetitionsResolved];

/// The reported figures a series shows.
const SERIES: [Figure; 5] =
    [Figure::FundsMobilized, Figure::Workdays, Figure::Participants, Figure::DialoguesHeld, Figure::PetitionsResolved];

/// A table whose first columns are `first` and then the columns of `shown`.
fn table_with(first: &[&str], shown: &[Figure]) -> Table {
    let columns: Vec<String> = shown.iter().map(|f| figure_column(*f)).collect();
    let mut header: Vec<&str> = first.to_vec();
    header.extend(columns.iter().map(String::as_str));
    Table::new(&header)
}

/// A ranking or list of roll-ups, one row each, with the main figures.
pub fn rollups_table(rollups: &[pa::Rollup]) -> Table {
    let mut t = table_with(
        &["rank", "unit", "name", "models_registered", "models_recognized", "models_exemplary", "reports_counted"],
        &RANKED,
    );
    for (i, r) in rollups.iter().enumerate() {
        let m = r.models.clone().unwrap_or_default();
        let f = r.figures.unwrap_or_default();
        let mut row = vec![
            Value::Int(i as i64 + 1),
            unit_code(&r.unit).into(),
            r.unit_name.clone().into(),
            m.registered.into(),
            m.recognized.into(),
            m.exemplary.into(),
            r.reports_counted.into(),
        ];
        row.extend(RANKED.iter().map(|figure| Value::Int(convert::figure_of(&f, *figure))));
        t.push(row);
    }
    t
}

pub fn series_table(points: &[pa::TimeSeriesPoint]) -> Table {
    let mut t = table_with(&["period", "models_registered", "models_recognized", "reports_counted"], &SERIES);
    for p in points {
        let m = p.models.clone().unwrap_or_default();
        let f = p.figures.unwrap_or_default();
        let mut row = vec![
            p.period.as_ref().map(|p| p.code.clone()).unwrap_or_default().into(),
            m.registered.into(),
            m.recognized.into(),
            p.reports_counted.into(),
        ];
        row.extend(SERIES.iter().map(|figure| Value::Int(convert::figure_of(&f, *figure))));
        t.push(row);
    }
    t
}

/// Completeness of a unit and, if asked, of each child.
pub fn completeness_table(c: &pa::Completeness) -> Table {
    let mut t = Table::new(&[
        "unit",
        "name",
        "expected",
        "submitted",
        "on_time",
        "approved",
        "submitted_rate",
        "on_time_rate",
        "approved_rate",
    ]);
    let mut row = |code: String, name: String, f: &pa::CompletenessFigures| {
        t.push(vec![
            code.into(),
            name.into(),
            f.expected.into(),
            f.submitted.into(),
            f.on_time.into(),
            f.approved.into(),
            Value::Rate(f.submitted_rate),
            Value::Rate(f.on_time_rate),
            Value::Rate(f.approved_rate),
        ]);
    };
    let own = if c.unit.is_some() { unit_code(&c.unit) } else { "nation".into() };
    row(own, c.unit_name.clone(), &c.figures.unwrap_or_default());
    for child in &c.children {
        row(unit_code(&child.unit), child.unit_name.clone(), &child.figures.unwrap_or_default());
    }
    t
}

pub fn status_table(s: &pa::ProjectionStatus) -> Table {
    let mut t = Table::new(&[
        "source",
        "head",
        "received",
        "projected",
        "lag",
        "rebuilding",
        "rebuild_done",
        "rebuild_total",
        "rebuilds_completed",
    ]);
    for src in &s.sources {
        t.push(vec![
            src.source.clone().into(),
            (src.source_head as i64).into(),
            (src.received as i64).into(),
            (src.projected as i64).into(),
            (src.lag as i64).into(),
            if s.rebuilding { "yes" } else { "no" }.into(),
            (s.rebuild_done as i64).into(),
            (s.rebuild_total as i64).into(),
            (s.rebuilds_completed as i64).into(),
        ]);
    }
    t
}

/// A stream's events: version, time, type, actor and the reason or decision given.
pub fn history_table(events: &[Envelope]) -> Table {
    let mut t = Table::new(&["version", "recorded_at", "event", "actor", "role", "actor_unit", "detail"]);
    for e in events {
        let time = e
            .recorded_at
            .map(|ts| {
                let days = ts.seconds.div_euclid(86_400);
                let secs = ts.seconds.rem_euclid(86_400);
                let date = dvk_domain::Date::from_unix_days(days).map(|d| d.to_string()).unwrap_or_default();
                format!("{date} {:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
            })
            .unwrap_or_default();
        let detail = match &e.payload {
            Some(Payload::ReportReturned(r)) => r.reason.clone(),
            Some(Payload::ReportAmended(a)) => a.reason.clone(),
            Some(Payload::ReportReopened(r)) => r.reason.clone(),
            Some(Payload::ModelAmended(a)) => a.reason.clone(),
            Some(Payload::ModelRetired(r)) => r.reason.clone(),
            Some(Payload::ModelRecognized(r)) => r.decision.as_ref().map(|d| d.number.clone()).unwrap_or_default(),
            Some(Payload::ModelCommended(c)) => c.decision.as_ref().map(|d| d.number.clone()).unwrap_or_default(),
            _ => String::new(),
        };
        let actor = e.actor.clone().unwrap_or_default();
        let role = pc::Role::try_from(actor.role).map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase());
        t.push(vec![
            (e.stream_version as i64).into(),
            time.into(),
            e.event_type.trim_start_matches("dvk.events.v1.").to_owned().into(),
            actor.subject.into(),
            role.unwrap_or_default().into(),
            unit_code(&actor.unit).into(),
            detail.into(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;

    #[test]
    fn a_rollup_shows_what_is_unassigned_and_where_it_came_from() {
        let unit = |code: &str, name: &str, participants: i64| pa::UnassignedUnit {
            unit: Some(pc::UnitCode { code: code.into() }),
            unit_name: name.into(),
            figures: Some(pc::Figures { participants, ..Default::default() }),
            reports_counted: 1,
            ..Default::default()
        };
        let r = pa::Rollup {
            unit_name: "Việt Nam".into(),
            figures: Some(pc::Figures { participants: 1_200, ..Default::default() }),
            unassigned: Some(pa::Unassigned {
                figures: Some(pc::Figures { participants: 34, ..Default::default() }),
                reports_counted: 2,
                units: vec![unit("03988", "Xã Tân Hợp", 30)],
                next_page_token: "03988".into(),
                total_units: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let shown = rollup_record(&r).render(Format::Table);
        let line = |name: &str| shown.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or("");
        assert!(line("participants").ends_with("1.200"), "{shown}");
        assert!(line("unassigned_participants").ends_with(" 34"), "{shown}");
        assert!(line("unassigned_reports").ends_with(" 2"), "{shown}");
        assert!(line("unassigned_from").ends_with("03988 Xã Tân Hợp; … 1 more"), "{shown}");
    }
}
