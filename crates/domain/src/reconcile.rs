//! Reconciling the 2025 conversion table with the pre-2025 list: the table's own
//! errors (an old code that belongs to a neighbouring commune), the reviewed
//! corrections applied to it, the units recoded between the two lists (linked, the
//! link marked inferred), and the units of either list left without a counterpart.
//!
//! Names are compared by [`name_key`]: type words (Xã, Phường, Thị trấn, Đặc khu),
//! case, spacing and where a tone mark sits ("Hoà" / "Hòa") are ignored.

use std::collections::{BTreeMap, HashMap};

use unicode_normalization::UnicodeNormalization;

use crate::unit::{LinkBasis, MergeKind, ReorgLink, UnitCode};

/// Vietnamese tone marks as combining characters (after NFD): grave, acute, tilde,
/// hook above, dot below. The other marks (circumflex, breve, horn) change the letter.
const TONES: [char; 5] = ['\u{300}', '\u{301}', '\u{303}', '\u{309}', '\u{323}'];

/// Type words a commune-level name may start with, as [`name_key`] spells them
/// (tone marks removed).
const TYPE_WORDS: [&[&str]; 4] = [&["thi", "trân"], &["phương"], &["xa"], &["đăc", "khu"]];

/// A name as compared across the two lists: NFD, lower case, no type word, single
/// spaces, and each word's tone marks moved to its end in a fixed order.
pub fn name_key(name: &str) -> String {
    let lower: String = name.nfd().collect::<String>().to_lowercase();
    let words: Vec<(String, String)> = lower
        .split_whitespace()
        .map(|w| {
            let base: String = w.chars().filter(|c| !TONES.contains(c)).collect();
            let mut tones: Vec<char> = w.chars().filter(|c| TONES.contains(c)).collect();
            tones.sort_unstable();
            (base.nfc().collect(), tones.into_iter().collect())
        })
        .collect();
    let skip = TYPE_WORDS
        .iter()
        .find(|t| words.len() > t.len() && t.iter().zip(&words).all(|(a, (b, _))| a == b))
        .map_or(0, |t| t.len());
    words[skip..].iter().map(|(b, t)| format!("{b}{t}")).collect::<Vec<_>>().join(" ")
}

/// A commune of the pre-2025 list, as the reconciliation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCommune {
    pub code: UnitCode,
    pub name: String,
    pub district: UnitCode,
}

/// One (new commune, old commune) row of the conversion table, after corrections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    /// The row's line in the file (where it starts).
    pub line: u64,
    pub new_code: UnitCode,
    pub new_name: String,
    pub old_code: UnitCode,
    pub old_name: String,
    /// The old district the row names, if it names one.
    pub old_district: Option<UnitCode>,
    pub kind: MergeKind,
    pub note: String,
}

/// A reviewed correction of one cell of the conversion table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub line: u64,
    /// `old_code`, `old_name`, `new_code` or `note`.
    pub field: String,
    pub old: String,
    pub new: String,
    pub evidence: String,
}

/// The fields a correction may name.
pub const CORRECTABLE: [&str; 4] = ["old_code", "old_name", "new_code", "note"];

/// A row whose old code names another commune than its old name does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub line: u64,
    pub old_code: UnitCode,
    /// The old name on the row.
    pub row_name: String,
    /// The name the pre-2025 list gives that code.
    pub list_name: String,
    /// A commune of the same district that bears the row's name, if one does: the
    /// code was probably typed from that neighbour's row.
    pub same_name: Option<UnitCode>,
}

/// An old commune that the notes send "whole" into several new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contradiction {
    pub old_code: UnitCode,
    pub lines: Vec<u64>,
    pub new_codes: Vec<UnitCode>,
}

/// Which list a unit without a counterpart comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// A commune of the pre-2025 list.
    Pre2025,
    /// An old code that only the conversion table names.
    TableOld,
    /// A commune of the 2025 tree.
    Y2025,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Pre2025 => "pre2025",
            Side::TableOld => "table-old",
            Side::Y2025 => "2025",
        }
    }
}

/// What became of one unit that one list has and the other lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    pub side: Side,
    pub code: UnitCode,
    pub name: String,
    /// The district (pre-2025 side) it lies in, if known.
    pub district: Option<UnitCode>,
    /// `recoded` (linked, link inferred) or `unassigned`.
    pub outcome: &'static str,
    /// The counterpart it was linked to, for a recoded unit.
    pub counterpart: Option<UnitCode>,
    pub reason: String,
    /// The table line it comes from, if any.
    pub line: Option<u64>,
}

/// The reconciliation of the conversion table with the pre-2025 list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub pre2025_communes: usize,
    pub table_rows: usize,
    pub disagreements: Vec<Disagreement>,
    pub contradictions: Vec<Contradiction>,
    /// Links added for recoded units (basis `Inferred`).
    pub inferred: Vec<ReorgLink>,
    /// Units of one list without a counterpart in the other, in list order.
    pub unmatched: Vec<Unmatched>,
}

impl Reconciliation {
    /// How many units of `side` ended `outcome`.
    pub fn count(&self, side: Side, outcome: &str) -> usize {
        self.unmatched.iter().filter(|u| u.side == side && u.outcome == outcome).count()
    }
}

/// Reconciles the table's rows with the pre-2025 communes.
///
/// - Every row's old code is checked against its old name.
/// - An old commune sent "whole" into several new ones is a contradiction.
/// - A listed commune missing from the table and an old code of the table missing
///   from the list, with the same name in the same district, are one unit recoded:
///   the listed commune gets the table code's links, marked inferred.
/// - What is left is unassigned, and said why.
pub fn reconcile(listed: &[ListedCommune], rows: &[TableRow]) -> Reconciliation {
    let by_code: HashMap<&UnitCode, &ListedCommune> = listed.iter().map(|c| (&c.code, c)).collect();
    let mut by_name: HashMap<(&UnitCode, String), Vec<&ListedCommune>> = HashMap::new();
    for c in listed {
        by_name.entry((&c.district, name_key(&c.name))).or_default().push(c);
    }
    let mut r = Reconciliation { pre2025_communes: listed.len(), table_rows: rows.len(), ..Default::default() };

    for row in rows {
        let Some(c) = by_code.get(&row.old_code) else { continue };
        if name_key(&c.name) == name_key(&row.old_name) {
            continue;
        }
        let district = row.old_district.as_ref().unwrap_or(&c.district);
        let same_name = by_name
            .get(&(district, name_key(&row.old_name)))
            .and_then(|v| v.iter().find(|n| n.code != row.old_code))
            .map(|n| n.code.clone());
        r.disagreements.push(Disagreement {
            line: row.line,
            old_code: row.old_code.clone(),
            row_name: row.old_name.clone(),
            list_name: c.name.clone(),
            same_name,
        });
    }

    let mut whole: BTreeMap<&UnitCode, Vec<&TableRow>> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.kind == MergeKind::Whole) {
        whole.entry(&row.old_code).or_default().push(row);
    }
    for (code, v) in whole {
        let mut new_codes: Vec<UnitCode> = v.iter().map(|row| row.new_code.clone()).collect();
        new_codes.dedup();
        if new_codes.len() > 1 {
            r.contradictions.push(Contradiction {
                old_code: code.clone(),
                lines: v.iter().map(|row| row.line).collect(),
                new_codes,
            });
        }
    }

    // Old codes of the table absent from the list, in table order, with their rows.
    let mut table_only: Vec<(&UnitCode, Vec<&TableRow>)> = Vec::new();
    for row in rows.iter().filter(|row| !by_code.contains_key(&row.old_code)) {
        match table_only.iter_mut().find(|(c, _)| *c == &row.old_code) {
            Some((_, v)) => v.push(row),
            None => table_only.push((&row.old_code, vec![row])),
        }
    }
    let named: std::collections::HashSet<&UnitCode> = rows.iter().map(|row| &row.old_code).collect();
    let missing: Vec<&ListedCommune> = listed.iter().filter(|c| !named.contains(&c.code)).collect();
    let mut linked_table_codes = std::collections::HashSet::new();
    for c in &missing {
        let key = name_key(&c.name);
        let candidates: Vec<&(&UnitCode, Vec<&TableRow>)> = table_only
            .iter()
            .filter(|(_, v)| v[0].old_district.as_ref() == Some(&c.district) && name_key(&v[0].old_name) == key)
            .collect();
        if let [(table_code, v)] = candidates.as_slice() {
            linked_table_codes.insert((*table_code).clone());
            for row in v {
                r.inferred.push(ReorgLink {
                    old: c.code.clone(),
                    new: row.new_code.clone(),
                    kind: row.kind,
                    note: row.note.clone(),
                    basis: LinkBasis::Inferred,
                });
            }
            r.unmatched.push(Unmatched {
                side: Side::Pre2025,
                code: c.code.clone(),
                name: c.name.clone(),
                district: Some(c.district.clone()),
                outcome: "recoded",
                counterpart: Some(v[0].new_code.clone()),
                reason: format!(
                    "recoded: the table lists {:?} of district {} as {table_code} (line {}); linked, inferred",
                    v[0].old_name, c.district, v[0].line
                ),
                line: Some(v[0].line),
            });
        } else {
            let reason = if candidates.is_empty() {
                "not named by the conversion table, and no old code of the table bears its name in its district"
                    .to_owned()
            } else {
                format!("several old codes of the table bear its name in district {}: not linked", c.district)
            };
            r.unmatched.push(Unmatched {
                side: Side::Pre2025,
                code: c.code.clone(),
                name: c.name.clone(),
                district: Some(c.district.clone()),
                outcome: "unassigned",
                counterpart: None,
                reason,
                line: None,
            });
        }
    }
    for (code, v) in &table_only {
        let recoded = linked_table_codes.contains(*code);
        r.unmatched.push(Unmatched {
            side: Side::TableOld,
            code: (*code).clone(),
            name: v[0].old_name.clone(),
            district: v[0].old_district.clone(),
            outcome: if recoded { "recoded" } else { "unused" },
            counterpart: None,
            reason: if recoded {
                "not in the pre-2025 list: the listed commune of the same name takes its links".into()
            } else {
                "not in the pre-2025 list (created or recoded after it): no figures are recorded there".into()
            },
            line: Some(v[0].line),
        });
    }

    // New communes none of whose predecessors is a listed commune.
    let mut preds: Vec<(&UnitCode, &TableRow, bool)> = Vec::new();
    let inferred_new: std::collections::HashSet<&UnitCode> = r.inferred.iter().map(|l| &l.new).collect();
    for row in rows {
        let listed_pred = by_code.contains_key(&row.old_code) || inferred_new.contains(&row.new_code);
        match preds.iter_mut().find(|(c, _, _)| *c == &row.new_code) {
            Some((_, _, any)) => *any |= listed_pred,
            None => preds.push((&row.new_code, row, listed_pred)),
        }
    }
    for (code, row, any) in preds {
        if !any {
            r.unmatched.push(Unmatched {
                side: Side::Y2025,
                code: code.clone(),
                name: row.new_name.clone(),
                district: None,
                outcome: "unassigned",
                counterpart: None,
                reason: "none of its predecessors is in the pre-2025 list".into(),
                line: Some(row.line),
            });
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> UnitCode {
        UnitCode::parse("code", s).unwrap()
    }

    fn listed(c: &str, name: &str, district: &str) -> ListedCommune {
        ListedCommune { code: code(c), name: name.into(), district: code(district) }
    }

    fn row(line: u64, new: &str, old: &str, old_name: &str, district: &str, note: &str) -> TableRow {
        TableRow {
            line,
            new_code: code(new),
            new_name: format!("Xã {new}"),
            old_code: code(old),
            old_name: old_name.into(),
            old_district: Some(code(district)),
            kind: MergeKind::from_note(note),
            note: note.into(),
        }
    }

    #[test]
    fn names_compare_without_type_words_case_spacing_or_tone_placement() {
        assert_eq!(name_key("Xã Phú  Hòa"), name_key("phú hoà"));
        assert_eq!(name_key("Thị trấn Ngan Dừa"), name_key("Thi trấn Ngan Dừa"));
        assert_eq!(name_key("Phường Quán Thánh"), name_key("PHƯỜNG QUÁN THÁNH"));
        assert_ne!(name_key("Xã Cổ Bi"), name_key("Xã Đặng Xá"));
        assert_ne!(name_key("Xã Thanh An"), name_key("Xã Thạnh An"));
        // A name that is only a type word keeps it.
        assert!(name_key("Phường").starts_with("phương"));
        assert_eq!(name_key("Phường 14"), "14");
    }

    #[test]
    fn a_neighbours_code_is_reported_with_its_line_and_the_owner_of_the_name() {
        // Lines 909 and 912 of the shipped table: Hồng Quang's code typed beside Mỹ Hưng.
        let list = [listed("01615", "Xã Hồng Quang", "049"), listed("01651", "Xã Mỹ Hưng", "049")];
        let rows = [
            row(909, "01636", "01615", "Xã Hồng Quang", "049", "Nhập toàn bộ"),
            row(912, "01648", "01615", "Xã Mỹ Hưng", "049", "Nhập toàn bộ"),
        ];
        let r = reconcile(&list, &rows);
        assert_eq!(r.disagreements.len(), 1);
        let d = &r.disagreements[0];
        assert_eq!(
            (d.line, d.old_code.as_str(), d.same_name.as_ref().map(UnitCode::as_str)),
            (912, "01615", Some("01651"))
        );
        assert_eq!(
            r.contradictions,
            [Contradiction {
                old_code: code("01615"),
                lines: vec![909, 912],
                new_codes: vec![code("01636"), code("01648")]
            }]
        );
        // Mỹ Hưng is then left with no successor.
        assert_eq!(r.count(Side::Pre2025, "unassigned"), 1);
        assert_eq!(r.unmatched[0].code, code("01651"));
    }

    #[test]
    fn a_unit_recoded_between_the_lists_is_linked_and_marked_inferred() {
        // Phường 15 of Phú Nhuận: 27067 in the January list, 27076 in the table, which
        // splits it between two new wards (lines 8953 and 8963).
        let list = [listed("27067", "Phường 15", "768"), listed("27070", "Phường 17", "768")];
        let rows = [
            row(8953, "27043", "27076", "Phường 15", "768", "Nhập một phần"),
            row(8954, "27043", "27070", "Phường 17", "768", "Nhập toàn bộ"),
            row(8963, "27058", "27076", "Phường 15", "768", "Nhập một phần"),
        ];
        let r = reconcile(&list, &rows);
        let inferred: Vec<_> = r.inferred.iter().map(|l| (l.old.as_str(), l.new.as_str(), l.basis)).collect();
        assert_eq!(inferred, [("27067", "27043", LinkBasis::Inferred), ("27067", "27058", LinkBasis::Inferred)]);
        assert_eq!(r.count(Side::Pre2025, "recoded"), 1);
        assert_eq!(r.count(Side::TableOld, "recoded"), 1);
        assert_eq!(r.count(Side::Pre2025, "unassigned"), 0);
        assert!(r.disagreements.is_empty() && r.contradictions.is_empty());
        // 27058's only predecessor is the recoded ward: it is not unassigned.
        assert_eq!(r.count(Side::Y2025, "unassigned"), 0);
    }

    #[test]
    fn new_communes_without_a_listed_predecessor_are_unassigned() {
        let list = [listed("03979", "Thị trấn Mộc Châu", "123")];
        let rows = [
            row(1547, "03979", "03979", "Phường Mộc Sơn", "123", "Nhập toàn bộ"),
            row(1549, "03980", "03980", "Phường Mộc Lỵ", "123", "Nhập toàn bộ"),
        ];
        let r = reconcile(&list, &rows);
        assert_eq!(r.disagreements.len(), 1, "a code renamed between the lists is reported");
        assert_eq!(r.count(Side::TableOld, "unused"), 1);
        let y: Vec<_> = r.unmatched.iter().filter(|u| u.side == Side::Y2025).map(|u| u.code.as_str()).collect();
        assert_eq!(y, ["03980"]);
    }
}
