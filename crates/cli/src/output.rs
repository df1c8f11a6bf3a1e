//! How dvkctl shows what it reads: aligned tables for people (numbers grouped the
//! Vietnamese way, 1.234.567; names in Vietnamese as recorded), JSON and CSV for
//! scripts (plain numbers).

use std::fmt::Write as _;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    /// A share, 0..=1, shown as a percentage in tables.
    Rate(f64),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

/// `1234567` → `1.234.567`.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

impl Value {
    fn shown(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(n) => group(*n),
            Value::Rate(r) => format!("{:.1} %", r * 100.0),
        }
    }

    fn plain(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(n) => n.to_string(),
            Value::Rate(r) => format!("{r:.4}"),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Rate(r) => serde_json::Value::from(*r),
        }
    }
}

/// Rows under named columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table { columns: columns.iter().map(|c| (*c).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.text(),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let _ = w.write_record(&self.columns);
                for r in &self.rows {
                    let _ = w.write_record(r.iter().map(Value::plain));
                }
                String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
            }
            Format::Json => {
                let rows: Vec<serde_json::Value> = self
                    .rows
                    .iter()
                    .map(|r| {
                        serde_json::Value::Object(self.columns.iter().cloned().zip(r.iter().map(Value::json)).collect())
                    })
                    .collect();
                serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
            }
        }
    }

    fn text(&self) -> String {
        let width = |s: &str| s.chars().count();
        let shown: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(Value::shown).collect()).collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| width(c)).collect();
        for r in &shown {
            for (i, v) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(width(v));
                }
            }
        }
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| !self.rows.is_empty() && self.rows.iter().all(|r| !matches!(r.get(i), Some(Value::Text(_)))))
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(width(c));
                if i > 0 {
                    out.push_str("  ");
                }
                if numeric[i] {
                    let _ = write!(out, "{}{c}", " ".repeat(pad));
                } else if i + 1 < cells.len() {
                    let _ = write!(out, "{c}{}", " ".repeat(pad));
                } else {
                    out.push_str(c);
                }
            }
            out.push('\n');
        };
        line(&mut out, &self.columns);
        let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
        line(&mut out, &rule);
        for r in &shown {
            line(&mut out, r);
        }
        out
    }
}

/// A single record (one roll-up, one status): a two-column table for people, one
/// object or one CSV row for scripts.
#[derive(Debug, Clone, Default)]
pub struct Record(pub Vec<(String, Value)>);

impl Record {
    pub fn push(&mut self, name: &str, value: impl Into<Value>) {
        self.0.push((name.to_owned(), value.into()));
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => {
                let width = self.0.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
                let mut out = String::new();
                for (k, v) in &self.0 {
                    let shown = v.shown();
                    let pad = width - k.chars().count();
                    let _ = writeln!(out, "{k}{}  {shown}", " ".repeat(pad));
                }
                out
            }
            Format::Json => {
                let o: serde_json::Map<String, serde_json::Value> =
                    self.0.iter().map(|(k, v)| (k.clone(), v.json())).collect();
                serde_json::to_string_pretty(&serde_json::Value::Object(o)).unwrap_or_default() + "\n"
            }
            Format::Csv => {
                let t = Table {
                    columns: self.0.iter().map(|(k, _)| k.clone()).collect(),
                    rows: vec![self.0.iter().map(|(_, v)| v.clone()).collect()],
                };
                t.render(Format::Csv)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_the_vietnamese_way() {
        assert_eq!(group(81_000_000_000), "81.000.000.000");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1.000");
        assert_eq!(group(-1234), "-1.234");
        assert_eq!(group(0), "0");
    }

    #[test]
    fn tables_align_vietnamese_names_and_scripts_get_plain_numbers() {
        let mut t = Table::new(&["unit", "name", "funds"]);
        t.push(vec!["22".into(), "Tỉnh Quảng Ninh".into(), Value::Int(81_000_000)]);
        t.push(vec!["02".into(), "Hà Giang".into(), Value::Int(5)]);
        let text = t.render(Format::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "22    Tỉnh Quảng Ninh  81.000.000");
        assert_eq!(lines[3], "02    Hà Giang                  5");
        assert_eq!(t.render(Format::Csv).lines().nth(1), Some("22,Tỉnh Quảng Ninh,81000000"));
        let json: serde_json::Value = serde_json::from_str(&t.render(Format::Json)).unwrap();
        assert_eq!(json[0]["funds"], 81_000_000);
        assert_eq!(json[1]["name"], "Hà Giang");
    }
}
