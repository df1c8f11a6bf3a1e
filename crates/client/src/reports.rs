//! Reports kept in spreadsheets: the template (one row per unit and period), reading a
//! filled-in `.xlsx` or `.csv` into `SubmitReport` requests with a problem per bad row,
//! and submitting the good rows one by one, each answer kept with its row.

use std::path::Path;

use dvk_codec::convert;
use dvk_domain::report::{Figure, Figures, Measure};
use dvk_proto::common::v1::{Period, UnitCode};
use dvk_proto::reporting::v1::{
    SubmitReportRequest, WriteReportResponse, reporting_service_client::ReportingServiceClient,
};
use prost::Message;
use tonic::transport::Channel;

use crate::import::{authorized, content_id};

/// Where the figures' columns start, and the summary's column after them.
const FIRST_FIGURE: usize = 2;
const SUMMARY: usize = FIRST_FIGURE + Figure::COUNT;

/// The template's columns: the name in the header row and what goes in it. The unit
/// and the period, then a column per figure of a report, named as the figure, then the
/// summary.
pub fn columns() -> Vec<(&'static str, String)> {
    let mut columns = vec![
        ("unit_code", "Mã đơn vị theo GSO, dạng chữ: tỉnh 2 số (22), huyện 3 số (207), xã 5 số (07192)".to_owned()),
        (
            "period",
            "Kỳ báo cáo: 2024-H1 (6 tháng đầu năm), 2024-H2, 2024 (cả năm) hoặc 2021-2025 (giai đoạn)".to_owned(),
        ),
    ];
    columns.extend(Figure::ALL.map(|f| (f.name(), meaning(f))));
    columns.push(("summary", "Tóm tắt (không bắt buộc)".to_owned()));
    columns
}

/// What goes in a figure's column: its label, its unit, and what it may not exceed
/// (`Số kiến nghị đã giải quyết (không quá số kiến nghị tiếp nhận)`).
fn meaning(f: Figure) -> String {
    let mut meaning = f.vi().to_owned();
    if f.measure() == Measure::Vnd {
        meaning.push_str(", đồng (số nguyên)");
    }
    if let Some(other) = f.at_most() {
        let mut label = other.vi().chars();
        let first = label.next().map(|c| c.to_lowercase().collect::<String>()).unwrap_or_default();
        meaning.push_str(&format!(" (không quá {first}{})", label.as_str()));
    }
    meaning
}

#[derive(Debug, thiserror::Error)]
pub enum SheetError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: only .xlsx, .xlsm, .xls, .ods and .csv files are read")]
    Format { path: String },
    #[error("{path}: the sheet is empty (no header row)")]
    Empty { path: String },
    #[error("{path}: header row {row}: {message}")]
    Header { path: String, row: usize, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// One cell as read.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Empty,
    Text(String),
    Number(f64),
}

impl Cell {
    fn is_empty(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(t) => t.trim().is_empty(),
            Cell::Number(_) => false,
        }
    }
}

/// One data row of the sheet: its number as the spreadsheet shows it (the header is
/// row 1 in the template) and the request, or why the row cannot be sent.
#[derive(Debug, Clone)]
pub struct Row {
    pub row: usize,
    pub request: Result<SubmitReportRequest, String>,
}

/// What became of one row.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub row: usize,
    /// The report id (`report-<unit>-<period>`), when the row names one.
    pub report_id: String,
    pub result: Result<WriteReportResponse, String>,
}

fn is_spreadsheet(ext: &str) -> bool {
    matches!(ext, "xlsx" | "xlsm" | "xls" | "xlsb" | "ods")
}

fn extension(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default()
}

/// Writes the template: `.xlsx` (a sheet to fill, with the code column as text, and a
/// sheet explaining each column) or `.csv` (the header row).
pub fn write_template(path: &Path) -> Result<(), SheetError> {
    let name = path.display().to_string();
    let err = |e: &dyn std::fmt::Display| SheetError::Write { path: name.clone(), message: e.to_string() };
    match extension(path).as_str() {
        "csv" => {
            let mut w = csv::Writer::from_path(path).map_err(|e| err(&e))?;
            w.write_record(columns().iter().map(|(c, _)| *c)).map_err(|e| err(&e))?;
            w.flush().map_err(|e| err(&e))
        }
        "xlsx" => {
            use rust_xlsxwriter::{Format, Workbook};
            let mut book = Workbook::new();
            let bold = Format::new().set_bold();
            let text = Format::new().set_num_format("@");
            let sheet = book.add_worksheet().set_name("reports").map_err(|e| err(&e))?;
            let columns = columns();
            for (i, (column, _)) in columns.iter().enumerate() {
                sheet.write_string_with_format(0, i as u16, *column, &bold).map_err(|e| err(&e))?;
                sheet.set_column_width(i as u16, if i == SUMMARY { 40 } else { 16 }).map_err(|e| err(&e))?;
            }
            // Codes are text: typed as numbers, 07192 would lose its leading zero.
            for i in [0u16, 1] {
                sheet.set_column_format(i, &text).map_err(|e| err(&e))?;
            }
            sheet.set_freeze_panes(1, 0).map_err(|e| err(&e))?;
            let help = book.add_worksheet().set_name("huong-dan").map_err(|e| err(&e))?;
            help.write_string_with_format(0, 0, "Cột", &bold).map_err(|e| err(&e))?;
            help.write_string_with_format(0, 1, "Nội dung", &bold).map_err(|e| err(&e))?;
            for (i, (column, meaning)) in columns.iter().enumerate() {
                help.write_string(i as u32 + 1, 0, *column).map_err(|e| err(&e))?;
                help.write_string(i as u32 + 1, 1, meaning).map_err(|e| err(&e))?;
            }
            let last = columns.len() as u32 + 2;
            let note = "Mỗi dòng của trang \"reports\" là báo cáo của một đơn vị cho một kỳ. \
                        Ô số để trống được tính là 0. Số có thể viết 81000000 hoặc 81.000.000.";
            help.write_string(last, 0, note).map_err(|e| err(&e))?;
            help.set_column_width(0, 28).map_err(|e| err(&e))?;
            help.set_column_width(1, 90).map_err(|e| err(&e))?;
            book.save(path).map_err(|e| err(&e))
        }
        _ => Err(SheetError::Format { path: name }),
    }
}

/// Reads the rows of `.xlsx` (first sheet) or `.csv`, numbered as the spreadsheet
/// shows them (from 1).
fn read_cells(path: &Path) -> Result<Vec<(usize, Vec<Cell>)>, SheetError> {
    let name = path.display().to_string();
    let ext = extension(path);
    if ext == "csv" {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .map_err(|e| SheetError::Read { path: name.clone(), message: e.to_string() })?;
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| SheetError::Read { path: name.clone(), message: e.to_string() })?;
            let cells = record
                .iter()
                .map(|c| {
                    let c = c.trim_start_matches('\u{feff}');
                    if c.trim().is_empty() { Cell::Empty } else { Cell::Text(c.to_owned()) }
                })
                .collect();
            rows.push((i + 1, cells));
        }
        return Ok(rows);
    }
    if !is_spreadsheet(&ext) {
        return Err(SheetError::Format { path: name });
    }
    use calamine::{Data, Reader};
    let mut book = calamine::open_workbook_auto(path)
        .map_err(|e| SheetError::Read { path: name.clone(), message: e.to_string() })?;
    let Some(range) = book.worksheet_range_at(0) else { return Err(SheetError::Empty { path: name }) };
    let range = range.map_err(|e| SheetError::Read { path: name.clone(), message: e.to_string() })?;
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let mut rows = Vec::new();
    for (i, r) in range.rows().enumerate() {
        // Columns left of the used range are empty: keep positions aligned with the header.
        let mut cells = vec![Cell::Empty; first_col as usize];
        cells.extend(r.iter().map(|d| match d {
            Data::Empty => Cell::Empty,
            Data::String(s) => Cell::Text(s.clone()),
            Data::Float(f) => Cell::Number(*f),
            Data::Int(n) => Cell::Number(*n as f64),
            Data::Bool(b) => Cell::Text(b.to_string()),
            other => Cell::Text(other.to_string()),
        }));
        rows.push((first_row as usize + i + 1, cells));
    }
    Ok(rows)
}

/// A whole number from a cell: `81000000`, `81.000.000`, `81,000,000` or `81 000 000`;
/// empty is 0.
fn whole(column: &str, cell: &Cell) -> Result<i64, String> {
    match cell {
        Cell::Empty => Ok(0),
        Cell::Number(f) => {
            if f.fract() != 0.0 || !f.is_finite() || f.abs() >= 9.2e18 {
                return Err(format!("{column}: {f} is not a whole number"));
            }
            Ok(*f as i64)
        }
        Cell::Text(t) => {
            let t = t.trim();
            if t.is_empty() {
                return Ok(0);
            }
            let (negative, digits) = match t.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, t),
            };
            let groups: Vec<&str> = digits.split(['.', ',', ' ', '\u{a0}']).collect();
            let grouped = groups.len() > 1
                && !groups[0].is_empty()
                && groups[0].len() <= 3
                && groups[1..].iter().all(|g| g.len() == 3);
            let plain: String = if grouped { groups.concat() } else { digits.to_owned() };
            if plain.is_empty() || !plain.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{column}: {t:?} is not a whole number"));
            }
            let n: i64 = plain.parse().map_err(|_| format!("{column}: {t} is too large"))?;
            Ok(if negative { -n } else { n })
        }
    }
}

/// A code from a cell: text as typed; a number is refused, since it has lost any
/// leading zero (07192 → 7192).
fn code(column: &str, cell: &Cell) -> Result<String, String> {
    match cell {
        Cell::Empty => Err(format!("{column}: is empty")),
        Cell::Text(t) => Ok(t.trim().to_owned()),
        Cell::Number(f) if column == "period" && f.fract() == 0.0 => Ok(format!("{f:.0}")),
        Cell::Number(f) => Err(format!(
            "{column}: {f} was typed as a number, which drops leading zeros; type the code as text (e.g. '07192)"
        )),
    }
}

/// Turns the cells into rows. The first non-empty row is the header; every column of
/// the template but `summary` is required, and an unknown column is refused (a renamed
/// column must not silently read as 0).
fn parse(path: &str, cells: Vec<(usize, Vec<Cell>)>) -> Result<Vec<Row>, SheetError> {
    let mut rows = cells.into_iter().filter(|(_, r)| r.iter().any(|c| !c.is_empty()));
    let Some((header_row, header)) = rows.next() else { return Err(SheetError::Empty { path: path.to_owned() }) };
    let bad = |message: String| SheetError::Header { path: path.to_owned(), row: header_row, message };
    let columns = columns();
    let mut index = vec![None::<usize>; columns.len()];
    for (i, cell) in header.iter().enumerate() {
        let name = match cell {
            Cell::Empty => continue,
            Cell::Text(t) => t.trim().to_lowercase(),
            Cell::Number(f) => f.to_string(),
        };
        if name.is_empty() {
            continue;
        }
        let Some(k) = columns.iter().position(|(c, _)| *c == name) else {
            return Err(bad(format!("unknown column {name:?}; the columns are those of `dvkctl reports template`")));
        };
        if index[k].is_some() {
            return Err(bad(format!("column {name:?} appears twice")));
        }
        index[k] = Some(i);
    }
    let missing: Vec<&str> =
        columns.iter().zip(&index).filter(|((c, _), i)| i.is_none() && *c != "summary").map(|((c, _), _)| *c).collect();
    if !missing.is_empty() {
        return Err(bad(format!("missing column(s): {}", missing.join(", "))));
    }
    let empty = Cell::Empty;
    Ok(rows
        .map(|(row, cells)| {
            let cell = |k: usize| index[k].and_then(|i| cells.get(i)).unwrap_or(&empty);
            let request = (|| {
                let mut problems = Vec::new();
                let mut n = |k: usize| match whole(columns[k].0, cell(k)) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(e);
                        0
                    }
                };
                let figures: Figures =
                    Figure::ALL.into_iter().enumerate().map(|(k, f)| (f, n(FIRST_FIGURE + k))).collect();
                let unit = code("unit_code", cell(0)).map_err(|e| problems.push(e)).ok();
                let period = code("period", cell(1)).map_err(|e| problems.push(e)).ok();
                let summary = match cell(SUMMARY) {
                    Cell::Empty => String::new(),
                    Cell::Text(t) => t.trim().to_owned(),
                    Cell::Number(f) => f.to_string(),
                };
                if !problems.is_empty() {
                    return Err(problems.join("; "));
                }
                let mut request = SubmitReportRequest {
                    request_id: String::new(),
                    unit: unit.map(|code| UnitCode { code }),
                    period: period.map(|code| Period { code }),
                    figures: Some(convert::figures_out(&figures)),
                    summary,
                };
                // Derived from the content: importing the same sheet again repeats
                // the first answers and writes nothing.
                request.request_id = content_id("report-import", &[&request.encode_to_vec()]);
                Ok(request)
            })();
            Row { row, request }
        })
        .collect())
}

/// Reads a filled-in template.
pub fn read(path: &Path) -> Result<Vec<Row>, SheetError> {
    let cells = read_cells(path)?;
    parse(&path.display().to_string(), cells)
}

/// Submits every good row, in order; `progress` is told how many rows are done.
pub async fn submit(
    client: &mut ReportingServiceClient<Channel>,
    token: &str,
    rows: &[Row],
    mut progress: impl FnMut(u64),
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(rows.len());
    for (done, row) in rows.iter().enumerate() {
        let outcome = match &row.request {
            Err(problem) => Outcome { row: row.row, report_id: String::new(), result: Err(problem.clone()) },
            Ok(request) => {
                let report_id = format!(
                    "report-{}-{}",
                    request.unit.as_ref().map_or("", |u| u.code.as_str()),
                    request.period.as_ref().map_or("", |p| p.code.as_str())
                );
                let result = match authorized(request.clone(), token) {
                    Ok(r) => client.submit_report(r).await.map(tonic::Response::into_inner),
                    Err(s) => Err(s),
                };
                Outcome {
                    row: row.row,
                    report_id,
                    result: result.map_err(|s| format!("{:?}: {}", s.code(), s.message())),
                }
            }
        };
        outcomes.push(outcome);
        progress(done as u64 + 1);
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    fn header() -> Vec<Cell> {
        columns().iter().map(|(c, _)| t(c)).collect()
    }

    #[test]
    fn numbers_are_read_with_vietnamese_or_english_grouping_and_blanks_are_zero() {
        assert_eq!(whole("x", &t("81.000.000")), Ok(81_000_000));
        assert_eq!(whole("x", &t("81,000,000")), Ok(81_000_000));
        assert_eq!(whole("x", &t("81 000 000")), Ok(81_000_000));
        assert_eq!(whole("x", &t("1234")), Ok(1234));
        assert_eq!(whole("x", &Cell::Number(12.0)), Ok(12));
        assert_eq!(whole("x", &Cell::Empty), Ok(0));
        assert_eq!(whole("x", &t("-3")), Ok(-3), "negative figures reach the server, which names them");
        assert!(whole("x", &t("1.5")).unwrap_err().contains("x:"));
        assert!(whole("x", &t("12,34")).is_err());
        assert!(whole("x", &Cell::Number(2.5)).is_err());
        assert!(whole("x", &t("nhiều")).is_err());
    }

    #[test]
    fn a_code_typed_as_a_number_is_refused_because_its_leading_zero_is_gone() {
        assert_eq!(code("unit_code", &t(" 07192 ")), Ok("07192".into()));
        assert!(code("unit_code", &Cell::Number(7192.0)).unwrap_err().contains("leading zeros"));
        assert_eq!(code("period", &Cell::Number(2024.0)), Ok("2024".into()));
    }

    #[test]
    fn bad_rows_carry_their_row_number_and_good_rows_a_content_derived_id() {
        let mut good = vec![t("07192"), t("2025-H1"), t("10"), t("5")];
        good.resize(columns().len(), Cell::Empty);
        let mut bad = vec![t("07195"), t("2025-H1"), t("mười")];
        bad.resize(columns().len(), Cell::Empty);
        let rows =
            parse("f", vec![(1, header()), (2, good.clone()), (3, vec![Cell::Empty; 3]), (4, bad), (5, good)]).unwrap();
        assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), [2, 4, 5]);
        let first = rows[0].request.as_ref().unwrap();
        assert_eq!(first.figures.as_ref().unwrap().models_recognized, 5);
        assert!(rows[1].request.as_ref().unwrap_err().contains("models_registered"));
        assert_eq!(first.request_id, rows[2].request.as_ref().unwrap().request_id);
    }

    #[test]
    fn each_figure_has_its_column_and_is_read_from_it() {
        let names: Vec<&str> = columns().iter().map(|(c, _)| *c).collect();
        let figures: Vec<&str> = Figure::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, [&["unit_code", "period"][..], &figures, &["summary"]].concat());
        assert_eq!(names[2], "models_registered");
        let meaning = |name: &str| columns().into_iter().find(|(c, _)| *c == name).unwrap().1;
        assert_eq!(meaning("funds_mobilized_vnd"), "Kinh phí huy động, đồng (số nguyên)");
        assert_eq!(meaning("petitions_resolved"), "Số kiến nghị đã giải quyết (không quá số kiến nghị tiếp nhận)");
        // Each figure gets a value of its own: one read from another column would show.
        let mut row = vec![t("07192"), t("2025-H1")];
        row.extend((0..Figure::COUNT).map(|k| t(&(100 - k).to_string())));
        row.push(t("Sơ kết"));
        let rows = parse("f", vec![(1, header()), (2, row)]).unwrap();
        let request = rows[0].request.as_ref().unwrap();
        let read = convert::figures_in(request.figures.as_ref());
        for (k, f) in Figure::ALL.into_iter().enumerate() {
            assert_eq!(read[f], 100 - k as i64, "{f}");
        }
        assert_eq!(request.summary, "Sơ kết");
    }

    #[test]
    fn a_header_with_an_unknown_or_missing_column_is_refused() {
        let mut h = header();
        h[4] = t("funds");
        let e = parse("f", vec![(1, h)]).unwrap_err().to_string();
        assert!(e.contains("unknown column \"funds\""), "{e}");
        let h: Vec<Cell> = header().into_iter().take(3).collect();
        let e = parse("f", vec![(1, h)]).unwrap_err().to_string();
        assert!(e.contains("missing column(s): models_recognized"), "{e}");
    }
}
