//! Reporting periods: half-years (`2024-H1`), years (`2024`) and stages, the
//! movement's five-year terms (`2021-2025`), with parsing, formatting, date bounds and
//! containment.

use std::fmt;
use std::str::FromStr;

use crate::DomainError;
use crate::date::Date;
use crate::unit::Tree;

/// The first and last year a period may name.
pub const FIRST_YEAR: u16 = 2000;
pub const LAST_YEAR: u16 = 2100;
/// A stage is a five-year term of the movement: 2016–2020, 2021–2025, 2026–2030, …
/// (so two stages never overlap).
pub const STAGE_YEARS: u16 = 5;
/// The longest stage logs written before stages were fixed to terms may hold.
const MAX_RECORDED_STAGE_YEARS: u16 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Half {
    H1,
    H2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    HalfYear,
    Year,
    Stage,
}

/// A reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// Sơ kết 6 tháng: `2024-H1` (January–June) or `2024-H2` (July–December).
    Half { year: u16, half: Half },
    /// Tổng kết năm: `2024`.
    Year(u16),
    /// Giai đoạn: `2021-2025`, both years included; a five-year term (see
    /// [`STAGE_YEARS`]) unless read back from an old log.
    Stage { first: u16, last: u16 },
}

impl Period {
    /// Parses a period code; `field` names the input in the error. A stage must be a
    /// five-year term of the movement (`2021-2025`, `2026-2030`, …).
    pub fn parse(field: &str, s: &str) -> Result<Self, DomainError> {
        Self::parse_with(field, s, true)
    }

    /// Parses a period read back from a log or a snapshot: as [`Period::parse`], but a
    /// stage of 2 to 10 years is accepted as it was before stages were fixed to terms,
    /// so that old logs replay.
    pub fn parse_recorded(field: &str, s: &str) -> Result<Self, DomainError> {
        Self::parse_with(field, s, false)
    }

    fn parse_with(field: &str, s: &str, terms_only: bool) -> Result<Self, DomainError> {
        let s = s.trim();
        let bad = |why: &str| {
            DomainError::invalid(
                field,
                format!("{s:?} is not a period ({why}); use 2024-H1, 2024-H2, 2024 or 2021-2025"),
            )
        };
        let year = |t: &str| -> Result<u16, DomainError> {
            if t.len() != 4 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("a year has four digits"));
            }
            let y: u16 = t.parse().map_err(|_| bad("a year has four digits"))?;
            if !(FIRST_YEAR..=LAST_YEAR).contains(&y) {
                return Err(bad(&format!("years run from {FIRST_YEAR} to {LAST_YEAR}")));
            }
            Ok(y)
        };
        match s.split_once('-') {
            None => Ok(Self::Year(year(s)?)),
            Some((a, b)) if b.eq_ignore_ascii_case("h1") => Ok(Self::Half { year: year(a)?, half: Half::H1 }),
            Some((a, b)) if b.eq_ignore_ascii_case("h2") => Ok(Self::Half { year: year(a)?, half: Half::H2 }),
            Some((a, b)) => {
                let (first, last) = (year(a)?, year(b)?);
                if last <= first {
                    return Err(bad("a stage ends after it starts"));
                }
                if terms_only {
                    let term = Self::term_of(first);
                    if term != (Self::Stage { first, last }) {
                        return Err(bad(&format!(
                            "a stage is a five-year term of the movement: 2016-2020, 2021-2025, 2026-2030, …; \
                             {first} is in {term}"
                        )));
                    }
                } else if last - first + 1 > MAX_RECORDED_STAGE_YEARS {
                    return Err(bad(&format!("a stage spans at most {MAX_RECORDED_STAGE_YEARS} years")));
                }
                Ok(Self::Stage { first, last })
            }
        }
    }

    /// The stage (five-year term) that `year` falls in.
    fn term_of(year: u16) -> Period {
        // Terms start in 2016, 2021, 2026, …: years one past a multiple of five.
        let first = year - (year + STAGE_YEARS - 1) % STAGE_YEARS;
        Self::Stage { first, last: first + STAGE_YEARS - 1 }
    }

    pub fn kind(self) -> PeriodKind {
        match self {
            Self::Half { .. } => PeriodKind::HalfYear,
            Self::Year(_) => PeriodKind::Year,
            Self::Stage { .. } => PeriodKind::Stage,
        }
    }

    /// The first day of the period.
    pub fn start(self) -> Date {
        match self {
            Self::Half { year, half: Half::H1 } | Self::Year(year) => Date::first_of(i32::from(year), 1),
            Self::Half { year, half: Half::H2 } => Date::first_of(i32::from(year), 7),
            Self::Stage { first, .. } => Date::first_of(i32::from(first), 1),
        }
    }

    /// The last day of the period.
    pub fn end(self) -> Date {
        match self {
            Self::Half { year, half: Half::H1 } => Date::last_of(i32::from(year), 6),
            Self::Half { year, half: Half::H2 } | Self::Year(year) => Date::last_of(i32::from(year), 12),
            Self::Stage { last, .. } => Date::last_of(i32::from(last), 12),
        }
    }

    /// Whether every day of `other` lies within this period (a period contains itself).
    pub fn contains(self, other: Period) -> bool {
        self.start() <= other.start() && other.end() <= self.end()
    }

    /// Whether `date` lies within this period.
    pub fn contains_date(self, date: Date) -> bool {
        self.start() <= date && date <= self.end()
    }

    /// The period of the same kind and length that follows this one.
    pub fn next(self) -> Option<Period> {
        match self {
            Self::Half { year, half: Half::H1 } => Some(Self::Half { year, half: Half::H2 }),
            Self::Half { year, half: Half::H2 } => {
                (year < LAST_YEAR).then_some(Self::Half { year: year + 1, half: Half::H1 })
            }
            Self::Year(y) => (y < LAST_YEAR).then_some(Self::Year(y + 1)),
            Self::Stage { first, last } => {
                let len = last - first + 1;
                (last + len <= LAST_YEAR).then_some(Self::Stage { first: last + 1, last: last + len })
            }
        }
    }

    /// The tree a report for this period is expressed in: the tree in force on the
    /// period's last day (reports are written when the period closes). So `2025-H1`
    /// is reported on the pre-2025 tree, `2025-H2`, `2025` and `2021-2025` on the 2025 tree.
    pub fn reporting_tree(self) -> Tree {
        Tree::in_force_on(self.end())
    }

    /// The half-years and years this period contains (itself included), in order.
    pub fn contained_periods(self) -> Vec<Period> {
        let (first, last) = match self {
            Self::Half { .. } => return vec![self],
            Self::Year(y) => (y, y),
            Self::Stage { first, last } => (first, last),
        };
        let mut out = Vec::new();
        for y in first..=last {
            out.push(Self::Half { year: y, half: Half::H1 });
            out.push(Self::Half { year: y, half: Half::H2 });
            out.push(Self::Year(y));
        }
        if let Self::Stage { .. } = self {
            out.push(self);
        }
        out
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Half { year, half } => write!(f, "{year}-{half:?}"),
            Self::Year(y) => write!(f, "{y}"),
            Self::Stage { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

impl FromStr for Period {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse("period", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Period {
        Period::parse("period", s).unwrap()
    }

    #[test]
    fn the_four_forms_parse_and_format_back() {
        for s in ["2024-H1", "2024-H2", "2024", "2021-2025"] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(p(" 2024-h2 ").to_string(), "2024-H2");
    }

    #[test]
    fn bad_periods_are_refused_naming_the_field() {
        for s in ["", "24", "2024-H3", "2024-Q1", "2025-2021", "2024-2024", "1999", "2101-H1", "2000-2020", "２０２４"]
        {
            let err = Period::parse("period", s).unwrap_err();
            assert_eq!(err.violations()[0].field, "period", "{s}");
        }
    }

    #[test]
    fn a_stage_is_a_five_year_term_of_the_movement() {
        for s in ["2016-2020", "2021-2025", "2026-2030"] {
            assert_eq!(p(s).to_string(), s);
        }
        // Any other span would let one unit hold overlapping stage reports.
        for s in ["2021-2024", "2021-2026", "2022-2026", "2020-2024", "2021-2030", "2024-2025"] {
            let err = Period::parse("period", s).unwrap_err();
            assert_eq!(err.violations()[0].field, "period", "{s}");
            assert!(err.to_string().contains("five-year term"), "{s}: {err}");
        }
        let err = Period::parse("period", "2022-2026").unwrap_err();
        assert!(err.to_string().contains("2022 is in 2021-2025"), "{err}");
    }

    #[test]
    fn stages_never_overlap() {
        let stages: Vec<Period> = (FIRST_YEAR..=LAST_YEAR)
            .flat_map(|first| (first + 1..=LAST_YEAR).map(move |last| (first, last)))
            .filter_map(|(first, last)| Period::parse("period", &format!("{first}-{last}")).ok())
            .collect();
        assert_eq!(stages.len(), 20, "2001-2005 to 2096-2100");
        for (i, a) in stages.iter().enumerate() {
            for b in &stages[i + 1..] {
                assert!(a.end() < b.start() || b.end() < a.start(), "{a} and {b} overlap");
            }
        }
    }

    #[test]
    fn recorded_stages_of_the_old_rule_still_read_back() {
        // Logs written before stages were fixed to five-year terms may hold others.
        let old = Period::parse_recorded("period", "2020-2024").unwrap();
        assert_eq!(old, Period::Stage { first: 2020, last: 2024 });
        assert_eq!(old.to_string(), "2020-2024");
        assert!(Period::parse_recorded("period", "2000-2020").is_err());
        assert_eq!(Period::parse_recorded("period", "2024-h1").unwrap(), p("2024-H1"));
    }

    #[test]
    fn bounds_are_the_calendar_halves() {
        assert_eq!(p("2024-H1").end().to_string(), "2024-06-30");
        assert_eq!(p("2024-H2").start().to_string(), "2024-07-01");
        assert_eq!(p("2021-2025").end().to_string(), "2025-12-31");
    }

    #[test]
    fn containment() {
        assert!(p("2024").contains(p("2024-H1")));
        assert!(p("2024").contains(p("2024")));
        assert!(p("2021-2025").contains(p("2023-H2")));
        assert!(!p("2024-H1").contains(p("2024")));
        assert!(!p("2024").contains(p("2025-H1")));
        assert!(!p("2021-2025").contains(p("2026")));
    }

    #[test]
    fn reports_use_the_tree_in_force_when_the_period_closes() {
        assert_eq!(p("2025-H1").reporting_tree(), Tree::Pre2025);
        assert_eq!(p("2025-H2").reporting_tree(), Tree::Y2025);
        assert_eq!(p("2025").reporting_tree(), Tree::Y2025);
        assert_eq!(p("2021-2025").reporting_tree(), Tree::Y2025);
        assert_eq!(p("2024").reporting_tree(), Tree::Pre2025);
    }

    #[test]
    fn next_keeps_kind_and_length() {
        assert_eq!(p("2024-H2").next(), Some(p("2025-H1")));
        assert_eq!(p("2021-2025").next(), Some(p("2026-2030")));
        assert_eq!(p("2100").next(), None);
    }

    fn any_period() -> impl Strategy<Value = Period> {
        prop_oneof![
            (FIRST_YEAR..=LAST_YEAR, any::<bool>())
                .prop_map(|(year, h)| Period::Half { year, half: if h { Half::H1 } else { Half::H2 } }),
            (FIRST_YEAR..=LAST_YEAR).prop_map(Period::Year),
            (FIRST_YEAR..=LAST_YEAR).prop_filter_map("in range", |y| {
                let stage = Period::term_of(y);
                (stage.start().year() >= i32::from(FIRST_YEAR)).then_some(stage)
            }),
        ]
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(period in any_period()) {
            prop_assert_eq!(p(&period.to_string()), period);
        }

        #[test]
        fn containment_agrees_with_dates(a in any_period(), b in any_period()) {
            prop_assert_eq!(a.contains(b), a.contains_date(b.start()) && a.contains_date(b.end()));
            if a.contains(b) && b.contains(a) { prop_assert_eq!(a, b); }
        }

        #[test]
        fn contained_periods_are_contained(a in any_period()) {
            for c in a.contained_periods() { prop_assert!(a.contains(c)); }
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,16}") {
            let _ = Period::parse("period", &s);
        }
    }
}
