//! The reporting schedule: for each kind of period, when reports open, when they are
//! due (a submission by then is on time) and when they lock (after that only a reopen
//! lets a unit change its report). Days are counted from the period's last day.

use crate::DomainError;
use crate::date::Date;
use crate::period::{Period, PeriodKind};

/// The schedule of one kind of period, in days relative to the period's last day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Reports open this many days before the period ends (0: on its last day).
    pub opens_before_end: u32,
    /// A report submitted up to this many days after the end is on time.
    pub due_after_end: u32,
    /// After this many days the report is locked: changes need a reopen.
    pub locks_after_end: u32,
}

/// The schedule of every kind of period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub half_year: Deadline,
    pub year: Deadline,
    pub stage: Deadline,
}

impl Default for Schedule {
    /// Half-year reports open 15 days before the half ends (sơ kết figures are often
    /// gathered from mid-June and mid-December) and are due 15 days after it; year
    /// reports open on 1 December and are due 15 January; stage reports open two
    /// months before the stage ends and are due a month after. Reports lock 45, 60
    /// and 90 days after the end.
    fn default() -> Self {
        Self {
            half_year: Deadline { opens_before_end: 15, due_after_end: 15, locks_after_end: 45 },
            year: Deadline { opens_before_end: 30, due_after_end: 15, locks_after_end: 60 },
            stage: Deadline { opens_before_end: 60, due_after_end: 30, locks_after_end: 90 },
        }
    }
}

/// When a submission arrived, relative to the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub on_time: bool,
}

impl Schedule {
    /// Checks that every deadline is in order (due not after lock); `field` names the
    /// settings in the error.
    pub fn validate(&self, field: &str) -> Result<(), DomainError> {
        for (name, d) in [("half_year", self.half_year), ("year", self.year), ("stage", self.stage)] {
            if d.due_after_end > d.locks_after_end {
                return Err(DomainError::invalid(
                    format!("{field}.{name}"),
                    format!(
                        "due {} days after the end is later than the lock at {}",
                        d.due_after_end, d.locks_after_end
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn deadline(&self, kind: PeriodKind) -> Deadline {
        match kind {
            PeriodKind::HalfYear => self.half_year,
            PeriodKind::Year => self.year,
            PeriodKind::Stage => self.stage,
        }
    }

    fn shifted(period: Period, days: i64) -> Date {
        period.end().add_days(days).unwrap_or(period.end())
    }

    pub fn opens(&self, period: Period) -> Date {
        Self::shifted(period, -i64::from(self.deadline(period.kind()).opens_before_end))
    }

    pub fn due(&self, period: Period) -> Date {
        Self::shifted(period, i64::from(self.deadline(period.kind()).due_after_end))
    }

    pub fn locks(&self, period: Period) -> Date {
        Self::shifted(period, i64::from(self.deadline(period.kind()).locks_after_end))
    }

    /// Whether a unit may submit or amend its report for `period` on `today`, and if
    /// so whether that is on time. `reopened`: an approver reopened the report, which
    /// lifts the lock.
    pub fn check(&self, period: Period, today: Date, reopened: bool) -> Result<Timing, DomainError> {
        let opens = self.opens(period);
        if today < opens {
            return Err(DomainError::refused(format!("reports for {period} open on {opens}")));
        }
        let locks = self.locks(period);
        if today > locks && !reopened {
            return Err(DomainError::refused(format!(
                "reports for {period} locked on {locks}; an approver must reopen the report"
            )));
        }
        Ok(Timing { on_time: today <= self.due(period) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse("d", s).unwrap()
    }
    fn p(s: &str) -> Period {
        Period::parse("p", s).unwrap()
    }

    #[test]
    fn the_default_schedule_of_each_kind() {
        let s = Schedule::default();
        assert_eq!(
            (s.opens(p("2024-H1")), s.due(p("2024-H1")), s.locks(p("2024-H1"))),
            (d("2024-06-15"), d("2024-07-15"), d("2024-08-14"))
        );
        assert_eq!((s.opens(p("2024")), s.due(p("2024"))), (d("2024-12-01"), d("2025-01-15")));
        assert_eq!(s.due(p("2021-2025")), d("2026-01-30"));
    }

    #[test]
    fn submissions_are_refused_before_opening_and_after_the_lock_unless_reopened() {
        let s = Schedule::default();
        assert!(matches!(s.check(p("2024-H1"), d("2024-06-14"), false), Err(DomainError::Refused(_))));
        assert_eq!(s.check(p("2024-H1"), d("2024-06-15"), false).unwrap(), Timing { on_time: true });
        assert_eq!(s.check(p("2024-H1"), d("2024-07-15"), false).unwrap(), Timing { on_time: true });
        assert_eq!(s.check(p("2024-H1"), d("2024-07-16"), false).unwrap(), Timing { on_time: false });
        let locked = s.check(p("2024-H1"), d("2024-08-15"), false).unwrap_err();
        assert!(locked.to_string().contains("reopen"), "{locked}");
        assert_eq!(s.check(p("2024-H1"), d("2024-09-01"), true).unwrap(), Timing { on_time: false });
    }

    #[test]
    fn a_schedule_whose_due_date_follows_its_lock_is_refused() {
        let mut s = Schedule::default();
        s.year.due_after_end = 90;
        let err = s.validate("schedule").unwrap_err();
        assert_eq!(err.violations()[0].field, "schedule.year");
    }
}
