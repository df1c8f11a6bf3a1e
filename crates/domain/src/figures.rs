//! The figures of a periodic report, declared once: each figure's machine name, its
//! labels, what it measures (and so its bound), and the figure it may not exceed.
//! Whatever sums, sorts, shows, stores or converts figures iterates [`Figure::ALL`]
//! instead of naming them; a new figure is a line in `declare_figures!` below, plus
//! its field of `dvk.common.v1.Figures` and that field's arm in the codec.

use std::fmt;
use std::ops::{Index, IndexMut};

use crate::DomainError;
use crate::error::Violations;
use crate::model::{MAX_COUNT, MAX_FUNDS_VND};

/// What a figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// A number of models, days, people, events or commendations.
    Count,
    /// An amount of money in whole đồng.
    Vnd,
}

impl Measure {
    /// The largest value a figure may have: with about 11,000 units reporting, the
    /// national sum of figures within their bounds still fits an `i64`.
    pub const fn max(self) -> i64 {
        match self {
            Measure::Count => MAX_COUNT,
            Measure::Vnd => MAX_FUNDS_VND,
        }
    }
}

/// What the declaration says about one figure.
struct Declared {
    name: &'static str,
    field: &'static str,
    measure: Measure,
    vi: &'static str,
    en: &'static str,
    at_most: Option<Figure>,
}

/// Declares the `Figure` enum, `Figure::ALL` and each figure's `Declared`, from one
/// line per figure:
/// `Variant: "name" [as "field"], Measure, "Vietnamese label", "English label" [, at most Other];`
/// (`field`, the path a violation names on the wire, is the name unless given).
macro_rules! declare_figures {
    (@field $field:literal $name:literal) => { $field };
    (@field $name:literal) => { $name };
    (@at_most $other:ident) => { Some(Figure::$other) };
    (@at_most) => { None };
    ($(
        $(#[$doc:meta])*
        $figure:ident: $name:literal $(as $field:literal)?, $measure:ident, $vi:literal, $en:literal
            $(, at most $other:ident)?;
    )*) => {
        /// One figure of a report. The declaration order is the order of the fields of
        /// `dvk.common.v1.Figures`, of the columns shown and of the values stored.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Figure {
            $( $(#[$doc])* $figure, )*
        }

        impl Figure {
            /// Every figure, in declaration order.
            pub const ALL: [Figure; Figure::COUNT] = [$(Figure::$figure),*];
            /// How many figures a report has.
            pub const COUNT: usize = [$($name),*].len();

            const fn declared(self) -> Declared {
                match self {
                    $(Figure::$figure => Declared {
                        name: $name,
                        field: declare_figures!(@field $($field)? $name),
                        measure: Measure::$measure,
                        vi: $vi,
                        en: $en,
                        at_most: declare_figures!(@at_most $($other)?),
                    },)*
                }
            }
        }
    };
}

declare_figures! {
    ModelsRegistered: "models_registered", Count, "Số mô hình dân vận khéo đăng ký", "Models registered";
    ModelsRecognized: "models_recognized", Count, "Số mô hình được công nhận", "Models recognised",
        at most ModelsRegistered;
    /// On the wire a `Money`, so its violations name `funds_mobilized.vnd`.
    FundsMobilized: "funds_mobilized_vnd" as "funds_mobilized.vnd", Vnd, "Kinh phí huy động", "Funds mobilised";
    Workdays: "workdays", Count, "Số ngày công", "Workdays";
    Participants: "participants", Count, "Số lượt người tham gia", "Participants";
    DialoguesHeld: "dialogues_held", Count, "Số buổi đối thoại với nhân dân", "Dialogues held";
    PetitionsReceived: "petitions_received", Count, "Số kiến nghị tiếp nhận", "Petitions received";
    PetitionsResolved: "petitions_resolved", Count, "Số kiến nghị đã giải quyết", "Petitions resolved",
        at most PetitionsReceived;
    /// "Ngày dân vận" events held.
    DanVanDays: "dan_van_days", Count, "Số hoạt động \"Ngày dân vận\"", "\"Ngày dân vận\" events";
    CommendationsCollective: "commendations_collective", Count, "Số tập thể được khen thưởng", "Collectives commended";
    CommendationsIndividual: "commendations_individual", Count, "Số cá nhân được khen thưởng", "Individuals commended";
}

impl Figure {
    /// The stable machine name: the column of report sheets and of `dvkctl`'s output,
    /// the key of summaries (`participants`, `funds_mobilized_vnd`).
    pub const fn name(self) -> &'static str {
        self.declared().name
    }

    /// The path of the figure within `dvk.common.v1.Figures`, as violations name it
    /// (`petitions_resolved`, `funds_mobilized.vnd`).
    pub const fn field(self) -> &'static str {
        self.declared().field
    }

    /// The label in Vietnamese, as a sheet's heading (`Số lượt người tham gia`).
    pub const fn vi(self) -> &'static str {
        self.declared().vi
    }

    /// The label in English, as a chart's title (`Participants`).
    pub const fn en(self) -> &'static str {
        self.declared().en
    }

    pub const fn measure(self) -> Measure {
        self.declared().measure
    }

    /// The largest value the figure may have.
    pub const fn max(self) -> i64 {
        self.measure().max()
    }

    /// The figure this one may not exceed (what is recognised was registered, what is
    /// resolved was received).
    pub const fn at_most(self) -> Option<Figure> {
        self.declared().at_most
    }

    /// The figure of a machine name.
    pub fn from_name(name: &str) -> Option<Figure> {
        Figure::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The figures of a report, one value per [`Figure`], as reported: nothing is checked
/// until [`Figures::validate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Figures([i64; Figure::COUNT]);

impl Figures {
    pub const fn get(&self, figure: Figure) -> i64 {
        self.0[figure as usize]
    }

    pub fn set(&mut self, figure: Figure, value: i64) {
        self.0[figure as usize] = value;
    }

    /// These figures with `figure` set to `value`.
    #[must_use]
    pub const fn with(mut self, figure: Figure, value: i64) -> Self {
        self.0[figure as usize] = value;
        self
    }

    /// Adds `times` × `other`, figure by figure (−1 takes a contribution back).
    pub fn add(&mut self, other: &Figures, times: i64) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += times * b;
        }
    }

    /// Each figure with its value, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (Figure, i64)> + '_ {
        Figure::ALL.into_iter().zip(self.0)
    }

    /// The values in declaration order (the form the aggregation stores).
    pub const fn values(&self) -> [i64; Figure::COUNT] {
        self.0
    }

    pub const fn from_values(values: [i64; Figure::COUNT]) -> Self {
        Self(values)
    }

    /// The figures of `values` in declaration order; `None` unless there is one value
    /// per figure.
    pub fn from_slice(values: &[i64]) -> Option<Self> {
        values.try_into().ok().map(Self)
    }

    /// Checks the rules: no negative figure, each within its bound (so national sums
    /// fit an `i64`), none above the figure it may not exceed. Violations are named
    /// `{prefix}.{field}`, e.g. `figures.petitions_resolved`.
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let mut v = Violations::new();
        for (figure, value) in self.iter() {
            let max = figure.max();
            if value < 0 {
                v.push(format!("{prefix}.{}", figure.field()), format!("{value} is negative"));
            } else if value > max {
                v.push(format!("{prefix}.{}", figure.field()), format!("{value} exceeds the maximum {max}"));
            }
        }
        for (figure, value) in self.iter() {
            let Some(other) = figure.at_most() else { continue };
            let limit = self.get(other);
            if value > limit {
                v.push(
                    format!("{prefix}.{}", figure.field()),
                    format!("{value} exceeds the {limit} {}", other.en().to_lowercase()),
                );
            }
        }
        v.finish(|| ())
    }
}

impl Index<Figure> for Figures {
    type Output = i64;

    fn index(&self, figure: Figure) -> &i64 {
        &self.0[figure as usize]
    }
}

impl IndexMut<Figure> for Figures {
    fn index_mut(&mut self, figure: Figure) -> &mut i64 {
        &mut self.0[figure as usize]
    }
}

impl FromIterator<(Figure, i64)> for Figures {
    /// Figures from some of them; the others are 0 (a later value of a figure wins).
    fn from_iter<I: IntoIterator<Item = (Figure, i64)>>(iter: I) -> Self {
        let mut f = Figures::default();
        for (figure, value) in iter {
            f.set(figure, value);
        }
        f
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// One district, H1 2024: "54 mô hình cấp huyện và 137 mô hình mới cấp xã".
    pub(crate) fn figures() -> Figures {
        use Figure::*;
        [
            (ModelsRegistered, 191),
            (ModelsRecognized, 54),
            (FundsMobilized, 81_000_000_000),
            (Workdays, 12_500),
            (Participants, 4_300),
            (DialoguesHeld, 18),
            (PetitionsReceived, 120),
            (PetitionsResolved, 97),
            (DanVanDays, 6),
            (CommendationsCollective, 12),
            (CommendationsIndividual, 11),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn the_declaration_is_in_order_and_names_each_figure_once() {
        for (i, f) in Figure::ALL.into_iter().enumerate() {
            assert_eq!(f as usize, i, "{f} is out of place in Figure::ALL");
            assert_eq!(Figure::from_name(f.name()), Some(f));
        }
        let names: HashSet<_> = Figure::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Figure::COUNT);
        assert_eq!(Figure::from_name("funds"), None);
    }

    #[test]
    fn a_figure_may_only_be_capped_by_one_declared_before_it_with_the_same_measure() {
        // Sheets and generators fill figures in order: the cap is known first.
        for f in Figure::ALL {
            if let Some(other) = f.at_most() {
                assert!(other < f, "{f} is capped by {other}, declared after it");
                assert_eq!(other.measure(), f.measure(), "{f} and {other} measure different things");
            }
        }
    }

    #[test]
    fn the_field_a_violation_names_is_the_wire_path() {
        assert_eq!(Figure::PetitionsResolved.field(), "petitions_resolved");
        assert_eq!(Figure::FundsMobilized.name(), "funds_mobilized_vnd");
        assert_eq!(Figure::FundsMobilized.field(), "funds_mobilized.vnd");
        assert_eq!(Figure::PetitionsResolved.at_most(), Some(Figure::PetitionsReceived));
        assert_eq!(Figure::ModelsRecognized.at_most(), Some(Figure::ModelsRegistered));
        assert_eq!(Figure::FundsMobilized.max(), MAX_FUNDS_VND);
        assert_eq!(Figure::Participants.max(), MAX_COUNT);
    }

    #[test]
    fn figures_are_read_written_and_added_by_figure() {
        let mut f = figures();
        assert_eq!(f[Figure::PetitionsResolved], 97);
        f[Figure::Workdays] += 1;
        f.set(Figure::Participants, 1);
        assert_eq!((f.get(Figure::Workdays), f.get(Figure::Participants)), (12_501, 1));
        let mut sum = figures();
        sum.add(&figures(), 2);
        sum.add(&figures(), -1);
        assert_eq!(sum.values(), figures().values().map(|v| v * 2));
        let some: Figures = [(Figure::DanVanDays, 3)].into_iter().collect();
        assert_eq!(some, Figures::default().with(Figure::DanVanDays, 3));
        assert_eq!(some.iter().filter(|(_, v)| *v != 0).collect::<Vec<_>>(), [(Figure::DanVanDays, 3)]);
    }

    #[test]
    fn figures_from_the_field_are_valid() {
        assert!(figures().validate("figures").is_ok());
    }

    fn named(r: Result<(), DomainError>) -> Vec<String> {
        r.unwrap_err().violations().iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn recognised_above_registered_and_resolved_above_received_are_refused() {
        let f = figures().with(Figure::ModelsRecognized, 200).with(Figure::PetitionsResolved, 121);
        let err = f.validate("figures").unwrap_err();
        assert_eq!(named(Err(err.clone())), ["figures.models_recognized", "figures.petitions_resolved"]);
        assert_eq!(err.violations()[0].description, "200 exceeds the 191 models registered");
    }

    #[test]
    fn negative_and_oversized_figures_are_refused() {
        let f = figures().with(Figure::Workdays, -1).with(Figure::FundsMobilized, MAX_FUNDS_VND + 1);
        assert_eq!(named(f.validate("figures")), ["figures.funds_mobilized.vnd", "figures.workdays"]);
    }

    proptest! {
        #[test]
        fn valid_figures_sum_without_overflow_across_every_unit(n in 1usize..20_000) {
            let max: Figures = Figure::ALL.into_iter().map(|f| (f, f.max())).collect();
            prop_assert!(max.validate("f").is_ok());
            // ≈ 11,000 units report per period: the bounds keep the national sum in range.
            for (_, v) in max.iter() {
                prop_assert!(v.checked_mul(n as i64).is_some());
            }
        }

        #[test]
        fn validation_accepts_exactly_the_rule_abiding(values in proptest::collection::vec(-5i64..50, Figure::COUNT)) {
            let f: Figures = Figure::ALL.into_iter().zip(values).collect();
            let ok = f.iter().all(|(g, v)| v >= 0 && g.at_most().is_none_or(|o| v <= f[o]));
            prop_assert_eq!(f.validate("f").is_ok(), ok);
        }
    }
}
