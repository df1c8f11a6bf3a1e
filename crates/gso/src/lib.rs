//! Reading the GSO (General Statistics Office) files of administrative units:
//!
//! - the list of communes before 1 July 2025 (`Tỉnh Thành Phố, Mã TP, Quận Huyện, Mã QH,
//!   Phường Xã, Mã PX, Cấp, Tên Tiếng Anh`), which gives the pre-2025 tree;
//! - the 2025 conversion table (new province, new commune and code, old commune and
//!   code, note, old district, old province), which gives the 2025 tree and the mapping.
//!
//! Every record is checked; the first malformed row is reported with its line number.
//! The conversion table is read with the reviewed corrections shipped beside it
//! (`crates/gso/data/admin-units/corrections.csv`), each checked against the cell it
//! corrects and reported as applied or not. Both official files are embedded
//! ([`PRE2025_LIST`], [`CONVERSION_TABLE`]) for the all-in-one's first start, tests and
//! benchmarks; [`reconciliation`] says what the import made of them.

#![forbid(unsafe_code)]

pub mod reconciliation;

use std::collections::HashMap;
use std::io::Read;

use dvk_codec::convert;
use dvk_domain::reconcile::{Correction, TableRow};
use dvk_domain::unit::{Level, LinkBasis, MergeKind, Unit, UnitKind};
use dvk_domain::{Tree, UnitCode};
use dvk_proto::events::v1 as pe;

/// A problem with one row of a file.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GsoError {
    #[error(transparent)]
    Row(#[from] RowError),
    #[error("not a GSO unit list: the header is neither the commune list's nor the 2025 conversion table's")]
    UnknownFormat,
    #[error("cannot read the file: {0}")]
    Csv(#[from] csv::Error),
}

/// What a file holds, each record with the line it came from.
#[derive(Debug, Default)]
pub struct GsoFile {
    pub tree: Option<Tree>,
    pub units: Vec<(u64, pe::UnitRecord)>,
    /// The old → new mapping (conversion table only).
    pub links: Vec<(u64, pe::ReorgLink)>,
    /// Rows deliberately not imported, with why (e.g. land that is not a unit).
    pub skipped: Vec<(u64, String)>,
    /// The (new commune, old commune) rows, after corrections (conversion table only).
    pub rows: Vec<TableRow>,
    /// Every correction offered, and whether it was applied (why not, if not).
    pub corrections: Vec<(Correction, Result<(), String>)>,
}

/// The reviewed corrections of the shipped conversion table.
pub const SHIPPED_CORRECTIONS: &str = include_str!("../data/admin-units/corrections.csv");

/// The file name of the GSO list before 1 July 2025 (4 January 2025).
pub const PRE2025_LIST_NAME: &str = "gso-communes-2025-01-04.csv";
/// The GSO list before 1 July 2025, as shipped.
pub const PRE2025_LIST: &[u8] = include_bytes!("../data/admin-units/gso-communes-2025-01-04.csv");
/// The file name of the 2025 conversion table.
pub const CONVERSION_TABLE_NAME: &str = "gso-reorganization-2025-07-01.csv";
/// The 2025 conversion table, as shipped.
pub const CONVERSION_TABLE: &[u8] = include_bytes!("../data/admin-units/gso-reorganization-2025-07-01.csv");

/// The shipped corrections, parsed.
pub fn shipped_corrections() -> Vec<Correction> {
    parse_corrections(SHIPPED_CORRECTIONS).expect("the shipped corrections file is well formed")
}

/// Reads a corrections file: CSV with the header `line,field,old,new,evidence`
/// (quoted cells may hold commas); blank lines and lines starting with `#` are skipped.
/// An error names the file's line.
pub fn parse_corrections(text: &str) -> Result<Vec<Correction>, String> {
    const HEADER: [&str; 5] = ["line", "field", "old", "new", "evidence"];
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(true).comment(Some(b'#')).from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| e.to_string())?;
    if header.iter().map(str::trim).ne(HEADER) {
        return Err("the corrections file must start with the header line,field,old,new,evidence".into());
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("corrections: {e}"))?;
        let at = |what: &str| format!("corrections line {}: {what}", record.position().map_or(0, |p| p.line()));
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() != HEADER.len() {
            return Err(at(&format!("{} cells; a correction has 5", record.len())));
        }
        let cell = |i: usize| record[i].trim().to_owned();
        let line = cell(0).parse::<u64>().map_err(|_| at("line is not a number"))?;
        let field = cell(1);
        if !dvk_domain::reconcile::CORRECTABLE.contains(&field.as_str()) {
            return Err(at(&format!(
                "field {field:?} is not one of {}",
                dvk_domain::reconcile::CORRECTABLE.join(", ")
            )));
        }
        let evidence = cell(4);
        if evidence.is_empty() {
            return Err(at("a correction needs its evidence"));
        }
        out.push(Correction { line, field, old: cell(2), new: cell(3), evidence });
    }
    Ok(out)
}

/// The column of the conversion table a correction's field names.
fn corrected_column(field: &str) -> usize {
    match field {
        "new_code" => 2,
        "old_name" => 3,
        "old_code" => 4,
        _ => 5,
    }
}

impl GsoFile {
    /// The line a unit record came from, by its index in `units`.
    pub fn unit_line(&self, index: usize) -> Option<u64> {
        self.units.get(index).map(|(l, _)| *l)
    }
}

/// Splits `"Thành phố Hà Nội (01)"` into name and code.
fn name_and_code(s: &str) -> Option<(&str, &str)> {
    let s = s.trim();
    let open = s.rfind('(')?;
    let code = s[open + 1..].strip_suffix(')')?.trim();
    Some((s[..open].trim(), code))
}

struct Builder {
    tree: Tree,
    units: Vec<(u64, pe::UnitRecord)>,
    seen: HashMap<String, (u64, String)>,
}

impl Builder {
    fn new(tree: Tree) -> Self {
        Self { tree, units: Vec::new(), seen: HashMap::new() }
    }

    /// Adds a unit once; the same code again must carry the same name.
    fn add(
        &mut self,
        line: u64,
        code: &str,
        name: &str,
        english: &str,
        level: Level,
        parent: Option<&str>,
    ) -> Result<(), RowError> {
        let err = |message: String| RowError { line, message };
        let code = UnitCode::parse("code", code).map_err(|e| err(e.to_string()))?;
        let name = name.trim();
        if let Some((first, first_name)) = self.seen.get(code.as_str()) {
            if *first_name != name && level != Level::Commune {
                return Err(err(format!("{code} is {name:?} here but {first_name:?} on line {first}")));
            }
            return Ok(());
        }
        let kind = UnitKind::from_name(level, name)
            .ok_or_else(|| err(format!("{name:?} does not name a {level:?} (expected Tỉnh, Thành phố, Quận, Huyện, Thị xã, Xã, Phường, Thị trấn or Đặc khu)")))?;
        let parent = parent.map(|p| UnitCode::parse("parent", p)).transpose().map_err(|e| err(e.to_string()))?;
        let unit = Unit::new(self.tree, code.clone(), name, english, kind, parent).map_err(|e| err(e.to_string()))?;
        self.seen.insert(code.as_str().to_owned(), (line, name.to_owned()));
        self.units.push((line, convert::unit_record_out(&unit)));
        Ok(())
    }
}

/// Reads either GSO file, the conversion table with the shipped corrections.
pub fn read(input: impl Read) -> Result<GsoFile, GsoError> {
    read_with(input, shipped_corrections())
}

/// Reads either GSO file, the conversion table with `corrections`.
pub fn read_with(input: impl Read, corrections: Vec<Correction>) -> Result<GsoFile, GsoError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input);
    let mut records = reader.records();
    let Some(first) = records.next() else {
        return Err(GsoError::UnknownFormat);
    };
    let first = first?;
    let cell = |r: &csv::StringRecord, i: usize| r.get(i).unwrap_or("").trim().to_owned();
    let line = |r: &csv::StringRecord| r.position().map_or(0, |p| p.line());
    if cell(&first, 1) == "Mã TP" && cell(&first, 5) == "Mã PX" {
        let mut b = Builder::new(Tree::Pre2025);
        for r in records {
            let r = r?;
            let l = line(&r);
            if r.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            if r.len() < 7 {
                return Err(
                    RowError { line: l, message: format!("{} columns; the commune list has 8", r.len()) }.into()
                );
            }
            b.add(l, &cell(&r, 1), &cell(&r, 0), "", Level::Province, None)?;
            b.add(l, &cell(&r, 3), &cell(&r, 2), "", Level::District, Some(&cell(&r, 1)))?;
            let commune = cell(&r, 5);
            if commune.is_empty() {
                // Island districts without communes are listed with Cấp = Huyện.
                continue;
            }
            b.add(l, &commune, &cell(&r, 4), &cell(&r, 7), Level::Commune, Some(&cell(&r, 3)))?;
        }
        return Ok(GsoFile { tree: Some(Tree::Pre2025), units: b.units, ..GsoFile::default() });
    }
    if cell(&first, 0).starts_with("Đơn vị hành chính từ ngày 01/7/2025") {
        let mut b = Builder::new(Tree::Y2025);
        let mut links = Vec::new();
        let mut skipped = Vec::new();
        let mut rows = Vec::new();
        let mut outcomes: Vec<(Correction, Result<(), String>)> = corrections
            .into_iter()
            .map(|c| {
                let why = format!("line {} is not a row of this table", c.line);
                (c, Err(why))
            })
            .collect();
        for r in records {
            let r = r?;
            let l = line(&r);
            let mut cells: Vec<String> = r.iter().map(str::to_owned).collect();
            for (c, outcome) in outcomes.iter_mut().filter(|(c, _)| c.line == l) {
                let column = corrected_column(&c.field);
                let current = cells.get(column).map(|v| v.trim()).unwrap_or("");
                *outcome = if current == c.old {
                    cells.resize(cells.len().max(column + 1), String::new());
                    cells[column] = c.new.clone();
                    Ok(())
                } else {
                    Err(format!("line {l}: {} is {current:?}, not {:?} as the correction expects", c.field, c.old))
                };
            }
            let r = csv::StringRecord::from(cells);
            let new_code = cell(&r, 2);
            if new_code.is_empty() || new_code == "Mã Xã mới" {
                continue; // the second header row and the province heading rows
            }
            let err = |message: String| RowError { line: l, message };
            let province = cell(&r, 0);
            let (province_name, province_code) =
                name_and_code(&province).ok_or_else(|| err(format!("{province:?} is not \"Province (code)\"")))?;
            b.add(l, province_code, province_name, "", Level::Province, None)?;
            b.add(l, &new_code, &cell(&r, 1), "", Level::Commune, Some(province_code))?;
            let note = cell(&r, 5);
            let kind = MergeKind::from_note(&note);
            let district = cell(&r, 6);
            let old = match cell(&r, 4) {
                c if !c.is_empty() => c,
                _ if kind == MergeKind::DistrictToSpecialZone => match name_and_code(&district) {
                    Some((_, district)) => district.to_owned(),
                    None => {
                        return Err(err("a district made a special zone names no district code".into()).into());
                    }
                },
                _ => {
                    skipped.push((l, format!("{:?} has no old unit code (not an administrative unit)", cell(&r, 3))));
                    continue;
                }
            };
            let old = UnitCode::parse("old_code", &old).map_err(|e| err(e.to_string()))?;
            if old.level() == Level::Commune {
                rows.push(TableRow {
                    line: l,
                    new_code: UnitCode::parse("new_code", &new_code).map_err(|e| err(e.to_string()))?,
                    new_name: cell(&r, 1),
                    old_code: old.clone(),
                    old_name: cell(&r, 3),
                    old_district: name_and_code(&district).and_then(|(_, c)| UnitCode::parse("district", c).ok()),
                    kind,
                    note: note.clone(),
                });
            }
            links.push((
                l,
                pe::ReorgLink {
                    old_code: Some(convert::unit_out(&old)),
                    new_code: Some(pe_unit(&new_code)),
                    kind: convert::merge_out(kind) as i32,
                    note,
                    successor_rank: 0,
                    basis: convert::basis_out(LinkBasis::Official) as i32,
                },
            ));
        }
        return Ok(GsoFile { tree: Some(Tree::Y2025), units: b.units, links, skipped, rows, corrections: outcomes });
    }
    Err(GsoError::UnknownFormat)
}

fn pe_unit(code: &str) -> dvk_proto::common::v1::UnitCode {
    dvk_proto::common::v1::UnitCode { code: code.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_are_read_with_their_evidence_and_errors_name_the_line() {
        let text =
            "line,field,old,new,evidence\n# reviewed\n426,old_code,00553,00556,\"Đặng Xá is 00556, see line 424\"\n";
        let c = parse_corrections(text).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].line, 426);
        assert_eq!((c[0].old.as_str(), c[0].new.as_str()), ("00553", "00556"));
        assert_eq!(c[0].evidence, "Đặng Xá is 00556, see line 424");
        let e = parse_corrections("line,field,old,new,evidence\n1,note,a,b,x\n1,name,a,b,x\n").unwrap_err();
        assert!(e.starts_with("corrections line 3: field \"name\""), "{e}");
        let e = parse_corrections("line,field,old,new,evidence\n1,note,a,b,\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("evidence"), "{e}");
        assert!(parse_corrections("line,field,old\n").unwrap_err().contains("header"));
        assert!(parse_corrections("line,field,old,new,evidence\n7,note,a\n").unwrap_err().contains("3 cells"));
        assert_eq!(shipped_corrections().len(), 4);
    }

    #[test]
    fn the_commune_list_gives_provinces_districts_and_communes() {
        let csv = "Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n\
                   Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Phúc Xá,00001,Phường,\n\
                   Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Vĩnh Phúc,00006,Phường,Vinh Phuc Commune\n\
                   Thành phố Hải Phòng,31,Huyện Bạch Long Vĩ,318,,,Huyện,\n";
        let f = read(csv.as_bytes()).unwrap();
        assert_eq!(f.tree, Some(Tree::Pre2025));
        let codes: Vec<_> = f.units.iter().map(|(_, u)| u.code.as_ref().unwrap().code.as_str()).collect();
        assert_eq!(codes, ["01", "001", "00001", "00006", "31", "318"]);
        assert_eq!(f.units[3].1.english_name, "Vinh Phuc Commune");
        assert_eq!(f.units[3].0, 3, "line numbers count the header");
    }

    #[test]
    fn a_malformed_row_is_reported_with_its_line() {
        let csv = "Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n\
                   Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Phúc Xá,00001,Phường,\n\
                   Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Lạ,0001X,Phường,\n";
        match read(csv.as_bytes()) {
            Err(GsoError::Row(RowError { line: 3, message })) => {
                assert!(message.contains("0001X"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_conversion_table_gives_the_2025_tree_and_the_mapping() {
        let csv = "Đơn vị hành chính từ ngày 01/7/2025,,,Đơn vị hành chính trước ngày 01/7/2025,,,,,\n\
                   \"Tỉnh, thành phố\",Tên Xã mới,Mã Xã mới,Tên Xã cũ,Mã Xã cũ,Ghi chú,Quận/huyện,Tỉnh cũ,\n\
                   THÀNH PHỐ HÀ NỘI  ,,,,,,,,\n\
                   Thành phố Hà Nội (01),Phường Ba Đình,00004,Phường Trúc Bạch,00004,Nhập toàn bộ,Quận Ba Đình (001),Thành phố Hà Nội (01),\n\
                   Thành phố Hà Nội (01),Phường Ba Đình,00004,Phường Ngọc Hà,00016,\"Nhập một phần\n\",Quận Ba Đình (001),Thành phố Hà Nội (01),\n\
                   Thành phố Hải Phòng (31),Đặc khu Bạch Long Vĩ,11948,,,Sắp xếp toàn bộ huyện Bạch Long Vĩ thành đặc khu Bạch Long Vĩ,Huyện Bạch Long Vĩ (318),Thành phố Hải Phòng (31),\n\
                   Tỉnh Ninh Bình (37),Xã Kim Đông,14698,Khu vực bãi bồi ven biển,,Nhập toàn bộ,Huyện Kim Sơn (376),Tỉnh Ninh Bình (37),\n";
        let f = read(csv.as_bytes()).unwrap();
        assert_eq!(f.tree, Some(Tree::Y2025));
        let codes: Vec<_> = f.units.iter().map(|(_, u)| u.code.as_ref().unwrap().code.as_str()).collect();
        assert_eq!(codes, ["01", "00004", "31", "11948", "37", "14698"]);
        let links: Vec<_> = f
            .links
            .iter()
            .map(|(_, l)| {
                (l.old_code.as_ref().unwrap().code.as_str(), l.new_code.as_ref().unwrap().code.as_str(), l.kind)
            })
            .collect();
        assert_eq!(
            links,
            [
                ("00004", "00004", pe::MergeKind::Whole as i32),
                ("00016", "00004", pe::MergeKind::Part as i32),
                ("318", "11948", pe::MergeKind::DistrictToSpecialZone as i32),
            ]
        );
        assert_eq!(f.skipped.len(), 1);
        assert_eq!(f.skipped[0].0, 8, "the quoted newline makes row 5 span two lines");
    }
}
