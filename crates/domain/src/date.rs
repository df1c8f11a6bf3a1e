//! Calendar dates (no time zone): decision dates, timelines, period bounds, the
//! effective date of the 2025 reorganisation.

use std::fmt;
use std::str::FromStr;

use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

/// Resolution 202/2025/QH15: the two-level tree is in force from this day.
pub const REORGANISATION_2025: Date = Date { year: 2025, month: 7, day: 1 };

/// Dates outside these years are refused as implausible for this ledger.
pub const MIN_YEAR: i32 = 1945;
pub const MAX_YEAR: i32 = 2200;

impl Date {
    /// A checked date; `field` names the input in the error.
    pub fn new(field: &str, year: i32, month: u32, day: u32) -> Result<Self, DomainError> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(DomainError::invalid(field, format!("year {year} is outside {MIN_YEAR}..={MAX_YEAR}")));
        }
        if !(1..=12).contains(&month) {
            return Err(DomainError::invalid(field, format!("month {month} is not 1..=12")));
        }
        let last = days_in_month(year, month as u8);
        if day < 1 || day > u32::from(last) {
            return Err(DomainError::invalid(field, format!("day {day} is not 1..={last} for {year}-{month:02}")));
        }
        Ok(Self { year, month: month as u8, day: day as u8 })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(field: &str, s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::invalid(field, format!("{s:?} is not a date of the form YYYY-MM-DD"));
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| bad());
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        Self::new(field, y as i32, m, d)
    }

    /// The civil date `days` days after 1970-01-01 (negative: before), for dates the
    /// ledger accepts; `None` outside them.
    pub fn from_unix_days(days: i64) -> Option<Self> {
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self::new("date", i32::try_from(year).ok()?, month, day).ok()
    }

    /// Days since 1970-01-01 (negative: before).
    pub fn to_unix_days(self) -> i64 {
        // Howard Hinnant's civil-to-days algorithm.
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days later (earlier if negative), if the ledger accepts it.
    pub fn add_days(self, days: i64) -> Option<Self> {
        Self::from_unix_days(self.to_unix_days() + days)
    }

    pub const fn year(self) -> i32 {
        self.year
    }
    pub const fn month(self) -> u32 {
        self.month as u32
    }
    pub const fn day(self) -> u32 {
        self.day as u32
    }

    /// First day of a month (the caller guarantees the month is valid).
    pub(crate) const fn first_of(year: i32, month: u8) -> Self {
        Self { year, month, day: 1 }
    }

    /// Last day of a month (the caller guarantees the month is valid).
    pub(crate) const fn last_of(year: i32, month: u8) -> Self {
        Self { year, month, day: days_in_month(year, month) }
    }
}

const fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

const fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse("date", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn leap_days_follow_the_gregorian_rule() {
        assert!(Date::parse("d", "2024-02-29").is_ok());
        assert!(Date::parse("d", "2025-02-29").is_err());
        assert!(Date::parse("d", "2000-02-29").is_ok());
        assert!(Date::parse("d", "2100-02-29").is_err());
    }

    #[test]
    fn malformed_dates_name_the_field() {
        for s in ["2025-7-1", "01/07/2025", "2025-13-01", "2025-06-31", "", "abcd-ef-gh"] {
            let err = Date::parse("decision.date", s).unwrap_err();
            assert_eq!(err.violations()[0].field, "decision.date", "{s}");
        }
    }

    #[test]
    fn unix_days_map_to_civil_dates() {
        assert_eq!(Date::from_unix_days(0).unwrap().to_string(), "1970-01-01");
        assert_eq!(Date::from_unix_days(20_270).unwrap().to_string(), "2025-07-01");
        assert_eq!(Date::from_unix_days(19_782).unwrap().to_string(), "2024-02-29");
        assert_eq!(Date::from_unix_days(-1).unwrap().to_string(), "1969-12-31");
    }

    proptest! {
        #[test]
        fn days_round_trip(days in -9_000i64..80_000) {
            let d = Date::from_unix_days(days).unwrap();
            prop_assert_eq!(d.to_unix_days(), days);
            prop_assert_eq!(d.add_days(1).unwrap().to_unix_days(), days + 1);
        }

        #[test]
        fn format_then_parse_is_identity(y in MIN_YEAR..=MAX_YEAR, m in 1u32..=12, d in 1u32..=31) {
            if let Ok(date) = Date::new("d", y, m, d) {
                prop_assert_eq!(Date::parse("d", &date.to_string()).unwrap(), date);
            }
        }

        #[test]
        fn order_matches_text_order(a in (2000i32..2100, 1u32..=12, 1u32..=28), b in (2000i32..2100, 1u32..=12, 1u32..=28)) {
            let da = Date::new("a", a.0, a.1, a.2).unwrap();
            let db = Date::new("b", b.0, b.1, b.2).unwrap();
            prop_assert_eq!(da.cmp(&db), da.to_string().cmp(&db.to_string()));
        }
    }
}
