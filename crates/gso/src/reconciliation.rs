//! What an import (`dvkctl units import`) says about the conversion table: the corrections it
//! applied, the rows whose code and name disagree, contradictory notes, and every unit
//! of one list without a counterpart in the other (counts, then a CSV list); and the
//! operator's supplementary links (`dvkctl units link`), read from a small CSV.

use std::fmt::Write as _;

use dvk_codec::convert;
use dvk_domain::reconcile::{Reconciliation, Side};
use dvk_domain::unit::{LinkBasis, MergeKind, ReorgLink};
use dvk_domain::{Level, UnitCode};
use dvk_proto::events::v1 as pe;

use crate::GsoFile;

/// The columns of the reconciliation list.
pub const HEADER: &str = "kind,list,code,name,district,counterpart,line,reason";

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

fn row(out: &mut String, cells: [&str; 8]) {
    let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
    out.push_str(&line.join(","));
    out.push('\n');
}

/// The counts, one line each, and the list as CSV (with its header).
pub fn summary(file: &GsoFile, r: &Reconciliation) -> (Vec<String>, String) {
    let applied = file.corrections.iter().filter(|(_, o)| o.is_ok()).count();
    let table_only = r.unmatched.iter().filter(|u| u.side == Side::TableOld).count();
    let counts = vec![
        format!("pre-2025 communes: {}; table rows naming an old commune: {}", r.pre2025_communes, r.table_rows),
        format!("corrections applied: {applied} of {}", file.corrections.len()),
        format!("rows whose old code and old name disagree: {}", r.disagreements.len()),
        format!(
            "  of which the name belongs to another commune of the district: {}",
            r.disagreements.iter().filter(|d| d.same_name.is_some()).count()
        ),
        format!("old communes sent whole into several new ones: {}", r.contradictions.len()),
        format!("pre-2025 communes recoded (linked, link inferred): {}", r.count(Side::Pre2025, "recoded")),
        format!("pre-2025 communes unassigned on the 2025 tree: {}", r.count(Side::Pre2025, "unassigned")),
        format!(
            "old codes of the table not in the pre-2025 list: {table_only} ({} recoded, {} unused)",
            r.count(Side::TableOld, "recoded"),
            r.count(Side::TableOld, "unused")
        ),
        format!("2025 communes unassigned on the pre-2025 tree: {}", r.count(Side::Y2025, "unassigned")),
    ];
    let mut out = String::new();
    out.push_str(HEADER);
    out.push('\n');
    for (c, outcome) in &file.corrections {
        let (kind, reason) = match outcome {
            Ok(()) => ("correction", format!("{} {} → {}: {}", c.field, c.old, c.new, c.evidence)),
            Err(why) => ("correction-not-applied", why.clone()),
        };
        row(&mut out, [kind, "table", &c.new, "", "", "", &c.line.to_string(), &reason]);
    }
    for u in &r.unmatched {
        let district = u.district.as_ref().map_or("", UnitCode::as_str);
        let counterpart = u.counterpart.as_ref().map_or("", UnitCode::as_str);
        let line = u.line.map(|l| l.to_string()).unwrap_or_default();
        row(&mut out, [u.outcome, u.side.name(), u.code.as_str(), &u.name, district, counterpart, &line, &u.reason]);
    }
    for d in &r.disagreements {
        let mut reason =
            format!("the row names {:?}; the pre-2025 list gives {} as {:?}", d.row_name, d.old_code, d.list_name);
        if let Some(other) = &d.same_name {
            let _ = write!(reason, "; {other} of the same district bears the row's name");
        }
        let suggestion = d.same_name.as_ref().map_or("", UnitCode::as_str);
        row(
            &mut out,
            ["disagreement", "table", d.old_code.as_str(), &d.row_name, "", suggestion, &d.line.to_string(), &reason],
        );
    }
    for c in &r.contradictions {
        let lines: Vec<String> = c.lines.iter().map(u64::to_string).collect();
        let news: Vec<&str> = c.new_codes.iter().map(UnitCode::as_str).collect();
        let reason = format!("sent whole into {} (lines {})", news.join(" and "), lines.join(", "));
        row(&mut out, ["contradiction", "table", c.old_code.as_str(), "", "", "", &lines[0], &reason]);
    }
    (counts, out)
}

/// A problem with the supplementary links file.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LinkError {
    pub line: u64,
    pub message: String,
}

/// Reads supplementary links: CSV with the header `old_code,new_code,note` (the note
/// optional; it says how the old unit went in, as the table's notes do, and defaults
/// to a whole merge).
pub fn read_links(text: &str) -> Result<Vec<pe::ReorgLink>, LinkError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| LinkError { line: 1, message: e.to_string() })?.clone();
    let names: Vec<&str> = headers.iter().map(str::trim).collect();
    if names.first() != Some(&"old_code") || names.get(1) != Some(&"new_code") {
        return Err(LinkError { line: 1, message: "the header must be old_code,new_code[,note]".into() });
    }
    let mut out = Vec::new();
    for r in reader.records() {
        let r = r.map_err(|e| LinkError { line: 0, message: e.to_string() })?;
        let line = r.position().map_or(0, |p| p.line());
        if r.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let err = |message: String| LinkError { line, message };
        let old = UnitCode::parse("old_code", r.get(0).unwrap_or("")).map_err(|e| err(e.to_string()))?;
        let new = UnitCode::parse("new_code", r.get(1).unwrap_or("")).map_err(|e| err(e.to_string()))?;
        if old.level() != Level::Commune || new.level() != Level::Commune {
            return Err(err("a supplementary link joins two communes (5-digit codes)".into()));
        }
        let note = r.get(2).unwrap_or("").trim().to_owned();
        let kind = if note.is_empty() { MergeKind::Whole } else { MergeKind::from_note(&note) };
        let link = ReorgLink { old, new, kind, note, basis: LinkBasis::Supplementary };
        out.push(convert::reorg_link_out(&link, 0));
    }
    if out.is_empty() {
        return Err(LinkError { line: 1, message: "the file holds no link".into() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplementary_links_are_read_and_marked() {
        let links = read_links("old_code,new_code,note\n04075,04075,Nhập toàn bộ\n\n26935,26929\n").unwrap();
        assert_eq!(links.len(), 2);
        assert!(links.iter().all(|l| l.basis == pe::LinkBasis::Supplementary as i32));
        assert_eq!(links[1].kind, pe::MergeKind::Whole as i32);
        let e = read_links("old_code,new_code\n0407,04075\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("0407"), "{e}");
        assert!(read_links("a,b\n").is_err());
    }

    #[test]
    fn the_shipped_files_reconcile_as_the_docs_say() {
        let pre = crate::read(crate::PRE2025_LIST).unwrap();
        let table = crate::read(crate::CONVERSION_TABLE).unwrap();
        let listed: Vec<_> = pre
            .units
            .iter()
            .filter_map(|(_, u)| {
                let code = UnitCode::parse("c", &u.code.as_ref()?.code).ok()?;
                let district = UnitCode::parse("p", &u.parent.as_ref()?.code).ok()?;
                (code.level() == Level::Commune).then(|| dvk_domain::reconcile::ListedCommune {
                    code,
                    name: u.name.clone(),
                    district,
                })
            })
            .collect();
        assert_eq!(listed.len(), 10_051);
        // Every reviewed correction applies to the shipped table.
        assert!(table.corrections.iter().all(|(_, o)| o.is_ok()), "{:?}", table.corrections);
        assert_eq!(table.corrections.len(), 4);
        let r = dvk_domain::reconcile::reconcile(&listed, &table.rows);
        let (counts, list) = summary(&table, &r);
        // The figures docs/trees.md gives.
        assert_eq!(r.contradictions, [], "the corrections resolve both contradictions");
        assert_eq!(r.count(Side::Pre2025, "recoded"), 7, "{counts:#?}");
        assert_eq!(r.count(Side::Pre2025, "unassigned"), 19, "{counts:#?}");
        assert_eq!(r.count(Side::TableOld, "unused"), 3, "{counts:#?}");
        assert_eq!(r.count(Side::Y2025, "unassigned"), 0, "{counts:#?}");
        assert_eq!(r.disagreements.len(), 207, "{counts:#?}");
        assert_eq!(r.disagreements.iter().filter(|d| d.same_name.is_some()).count(), 1, "{counts:#?}");
        // The list is a CSV with one line per entry and the lines of the table.
        assert!(list.starts_with(HEADER));
        assert!(list.lines().any(|l| l.starts_with("recoded,pre2025,27067,Phường 15,768,")), "{list}");
        assert!(list.lines().any(|l| l.starts_with("correction,table,00556,,,,426,")), "{list}");
        // Đặng Xá (00556), after the correction of line 426: a part of its area went to
        // Phù Đổng (listed first), its people with the rest of its area to Thuận An,
        // which therefore receives its figures.
        let mut reorg = dvk_domain::unit::Reorganization::default();
        for (_, l) in &table.links {
            reorg.add(convert::reorg_link_in("l", l).unwrap());
        }
        let code = |s: &str| UnitCode::parse("c", s).unwrap();
        assert_eq!(reorg.successors(&code("00556")).first().map(|l| l.new.as_str()), Some("00541"));
        assert_eq!(reorg.allocate(&code("00556")), Some((&code("00562"), true)));
        // Cổ Bi (00553), split in three with no note on its people, goes to the first.
        assert_eq!(reorg.allocate(&code("00553")), Some((&code("00136"), true)));
    }
}
