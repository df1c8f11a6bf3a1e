//! Values the codec's tests share.

use dvk_domain::Date;
use dvk_domain::model::{Field, ModelDetails, ModelDetailsDraft, RunnerKind, Sponsor};

pub fn date(s: &str) -> Date {
    Date::parse("d", s).unwrap()
}

/// A valid registration form.
pub fn details() -> ModelDetails {
    ModelDetails::new(
        ModelDetailsDraft {
            name: "Dân vận khéo".into(),
            field: Some(Field::DefenceSecurity),
            runner_kind: Some(RunnerKind::Individual),
            runner_name: "Nguyễn Văn A".into(),
            sponsor: Some(Sponsor::Police),
            objectives: "An ninh trật tự".into(),
            funds_vnd: 5,
            workdays: 6,
            timeline_start: Some(date("2024-01-01")),
            timeline_end: None,
            ..Default::default()
        },
        "details",
    )
    .unwrap()
}
