//! The reporting schedule's settings file (TOML). Every key is optional; what is left
//! out keeps its default. Unknown keys are refused, so a typo cannot silently leave a
//! default in force.
//!
//! ```toml
//! [half_year]          # 2024-H1, 2024-H2
//! opens_before_end = 15
//! due_after_end = 15
//! locks_after_end = 45
//!
//! [year]               # 2024
//! opens_before_end = 30
//! due_after_end = 15
//! locks_after_end = 60
//!
//! [stage]              # 2021-2025
//! opens_before_end = 60
//! due_after_end = 30
//! locks_after_end = 90
//! ```

use std::path::Path;

use dvk_domain::schedule::{Deadline, Schedule};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot read the schedule file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("schedule file {path}: {message}")]
    Parse { path: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadlineFile {
    opens_before_end: Option<u32>,
    due_after_end: Option<u32>,
    locks_after_end: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    half_year: Option<DeadlineFile>,
    year: Option<DeadlineFile>,
    stage: Option<DeadlineFile>,
}

fn merge(default: Deadline, file: Option<DeadlineFile>) -> Deadline {
    let f = file.unwrap_or_default();
    Deadline {
        opens_before_end: f.opens_before_end.unwrap_or(default.opens_before_end),
        due_after_end: f.due_after_end.unwrap_or(default.due_after_end),
        locks_after_end: f.locks_after_end.unwrap_or(default.locks_after_end),
    }
}

/// Parses a schedule from TOML text; `path` names it in errors.
pub fn parse(path: &str, text: &str) -> Result<Schedule, ScheduleError> {
    let file: ScheduleFile = toml::from_str(text)
        .map_err(|e| ScheduleError::Parse { path: path.to_owned(), message: e.message().to_owned() })?;
    let d = Schedule::default();
    let schedule = Schedule {
        half_year: merge(d.half_year, file.half_year),
        year: merge(d.year, file.year),
        stage: merge(d.stage, file.stage),
    };
    schedule
        .validate("schedule")
        .map_err(|e| ScheduleError::Parse { path: path.to_owned(), message: e.to_string() })?;
    Ok(schedule)
}

/// The schedule in `path`, or the defaults when no file is configured.
pub fn load(path: Option<&Path>) -> Result<Schedule, ScheduleError> {
    let Some(path) = path else { return Ok(Schedule::default()) };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Read { path: name.clone(), source })?;
    parse(&name, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_keeps_every_default_and_keys_override_one_by_one() {
        assert_eq!(parse("s.toml", "").unwrap(), Schedule::default());
        let s = parse("s.toml", "[year]\ndue_after_end = 20\n").unwrap();
        assert_eq!(s.year.due_after_end, 20);
        assert_eq!(s.year.locks_after_end, Schedule::default().year.locks_after_end);
        assert_eq!(s.half_year, Schedule::default().half_year);
    }

    #[test]
    fn a_typo_or_a_due_date_after_the_lock_is_refused_with_the_key() {
        let e = parse("s.toml", "[year]\ndue_after_ends = 20\n").unwrap_err().to_string();
        assert!(e.contains("due_after_ends") && e.contains("s.toml"), "{e}");
        let e = parse("s.toml", "[stage]\ndue_after_end = 200\n").unwrap_err().to_string();
        assert!(e.contains("schedule.stage"), "{e}");
        let e = parse("s.toml", "[half_year]\nlocks_after_end = -1\n").unwrap_err().to_string();
        assert!(e.contains("s.toml"), "{e}");
    }
}
