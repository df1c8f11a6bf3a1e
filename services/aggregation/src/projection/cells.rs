//! The cells of the projection: what a roll-up holds (model counts per half-year, report
//! figures per period reported), where a contribution at a unit lands in each tree (the
//! unit expressed there, its ancestors and the nation, or the unassigned cells), the
//! units' numbering, and the roll-ups read from the cells.

use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::HashMap;
use std::sync::Arc;

use dvk_domain::model::Field;
use dvk_domain::period::Half;
use dvk_domain::report::{Figure, Figures};
use dvk_domain::unit::{CrossTree, Expressed, Level};
use dvk_domain::{Date, Period, Tree, UnitCode};

use super::facts::{Counted, Flow};
use super::{FastMap, State};

pub const TREES: [Tree; 2] = [Tree::Pre2025, Tree::Y2025];

/// A unit's number in the projection (codes are interned: cells are keyed by numbers).
pub type UnitId = u32;
/// The nation's number.
pub const NATION: UnitId = u32::MAX;

/// A roll-up's place: a unit of a tree (or the nation) and a period.
pub type CellKey = (Tree, UnitId, Period);

/// Where a contribution at one unit lands in one tree: the unit expressed in that tree,
/// its ancestors and the nation; and whether the allocation rule placed it there. For
/// a unit without a counterpart in that tree, `unassigned_from` is the unit's own
/// number and `units` are where it is reported as unassigned (the counterpart of its
/// province, if any, and the nation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    tree: Tree,
    units: Vec<UnitId>,
    allocated: bool,
    unassigned_from: Option<UnitId>,
}

/// Contributions without a counterpart, at one (tree, unit or nation, period): per
/// source unit (a unit of the other tree).
pub type UnassignedCells = BTreeMap<UnitId, Cell>;

/// The cell a target's contribution goes to.
fn cell_at<'a>(
    cells: &'a mut FastMap<CellKey, Cell>,
    unassigned: &'a mut FastMap<CellKey, UnassignedCells>,
    t: &Target,
    unit: UnitId,
    period: Period,
) -> &'a mut Cell {
    match t.unassigned_from {
        None => cells.entry((t.tree, unit, period)).or_default(),
        Some(source) => unassigned.entry((t.tree, unit, period)).or_default().entry(source).or_default(),
    }
}

/// Model counts of a roll-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelCounts {
    pub registered: i64,
    pub implementing: i64,
    /// Recognitions by level: commune, district, province, nation.
    pub recognized_by_level: [i64; 4],
    pub exemplary: i64,
    pub commended: i64,
    pub replicated: i64,
    pub retired: i64,
    /// Registrations by field, in `Field` order.
    pub by_field: [i64; 4],
}

impl ModelCounts {
    pub fn recognized(&self) -> i64 {
        self.recognized_by_level.iter().sum()
    }

    pub fn add(&mut self, o: &ModelCounts) {
        self.registered += o.registered;
        self.implementing += o.implementing;
        for i in 0..4 {
            self.recognized_by_level[i] += o.recognized_by_level[i];
            self.by_field[i] += o.by_field[i];
        }
        self.exemplary += o.exemplary;
        self.commended += o.commended;
        self.replicated += o.replicated;
        self.retired += o.retired;
    }

    fn count(&mut self, flow: Flow, sign: i64) {
        match flow {
            Flow::Registered(field) => {
                self.registered += sign;
                self.by_field[field_index(field)] += sign;
            }
            Flow::Started => self.implementing += sign,
            Flow::Recognized { level, exemplary } => {
                self.recognized_by_level[level_index(level)] += sign;
                if exemplary {
                    self.exemplary += sign;
                }
            }
            Flow::Commended => self.commended += sign,
            Flow::Replicated => self.replicated += sign,
            Flow::Retired => self.retired += sign,
        }
    }
}

pub fn field_index(f: Field) -> usize {
    match f {
        Field::Economy => 0,
        Field::CultureSociety => 1,
        Field::DefenceSecurity => 2,
        Field::PoliticalSystem => 3,
    }
}

pub fn level_index(l: Level) -> usize {
    match l {
        Level::Commune => 0,
        Level::District => 1,
        Level::Province => 2,
        Level::Nation => 3,
    }
}

/// One roll-up cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cell {
    /// Model flows (kept on half-year cells only).
    pub models: ModelCounts,
    /// Model flows placed here by the allocation rule.
    pub models_allocated: i64,
    /// Sums of the latest revision of every report (submitted, returned, approved...).
    pub all: Figures,
    pub all_reports: i64,
    pub all_allocated: i64,
    /// Sums of approved revisions.
    pub approved: Figures,
    pub approved_reports: i64,
    pub approved_allocated: i64,
    /// Reports submitted by the due date (first revision).
    pub on_time: i64,
}

/// Where the latest revisions' figures stand among a cell's stored values, and the
/// approved ones (each followed by their report counts).
const ALL_FIGURES: std::ops::Range<usize> = 15..15 + Figure::COUNT;
const APPROVED_FIGURES: std::ops::Range<usize> = ALL_FIGURES.end + 2..ALL_FIGURES.end + 2 + Figure::COUNT;

/// The number of values a cell is stored as (42 with eleven figures).
pub const CELL_VALUES: usize = APPROVED_FIGURES.end + 3;

impl Cell {
    /// The cell as a fixed sequence of numbers (its snapshot form).
    pub fn to_values(&self) -> Vec<i64> {
        let m = &self.models;
        let mut v = Vec::with_capacity(CELL_VALUES);
        v.extend([m.registered, m.implementing]);
        v.extend(m.recognized_by_level);
        v.extend([m.exemplary, m.commended, m.replicated, m.retired]);
        v.extend(m.by_field);
        v.push(self.models_allocated);
        v.extend(self.all.values());
        v.extend([self.all_reports, self.all_allocated]);
        v.extend(self.approved.values());
        v.extend([self.approved_reports, self.approved_allocated, self.on_time]);
        v
    }

    pub fn from_values(v: &[i64]) -> Option<Cell> {
        if v.len() != CELL_VALUES {
            return None;
        }
        Some(Cell {
            models: ModelCounts {
                registered: v[0],
                implementing: v[1],
                recognized_by_level: [v[2], v[3], v[4], v[5]],
                exemplary: v[6],
                commended: v[7],
                replicated: v[8],
                retired: v[9],
                by_field: [v[10], v[11], v[12], v[13]],
            },
            models_allocated: v[14],
            all: Figures::from_slice(&v[ALL_FIGURES])?,
            all_reports: v[ALL_FIGURES.end],
            all_allocated: v[ALL_FIGURES.end + 1],
            approved: Figures::from_slice(&v[APPROVED_FIGURES])?,
            approved_reports: v[APPROVED_FIGURES.end],
            approved_allocated: v[APPROVED_FIGURES.end + 1],
            on_time: v[APPROVED_FIGURES.end + 2],
        })
    }
}

fn tree_slot(tree: Tree) -> usize {
    match tree {
        Tree::Pre2025 => 0,
        Tree::Y2025 => 1,
    }
}

/// The half-years a period spans (model flows are kept per half-year).
pub fn halves(period: Period) -> Vec<Period> {
    let years = match period {
        Period::Half { .. } => return vec![period],
        Period::Year(year) => year..=year,
        Period::Stage { first, last } => first..=last,
    };
    years.flat_map(|year| [Half::H1, Half::H2].map(|half| Period::Half { year, half })).collect()
}

/// The half-year a date falls in.
pub fn half_of(d: Date) -> Period {
    let half = if d.month() <= 6 { Half::H1 } else { Half::H2 };
    Period::Half { year: d.year() as u16, half }
}

impl State {
    /// Where `unit` of `from` stands in `to` (see `CrossTree::express` and
    /// docs/trees.md for the rules).
    pub fn express(&self, from: Tree, unit: &UnitCode, to: Tree) -> Option<Expressed> {
        self.cross.express(&self.trees, from, unit, to)
    }

    /// The code of a unit number.
    pub fn code_of(&self, id: UnitId) -> Option<&UnitCode> {
        self.codes.get(id as usize)
    }

    /// The number of a unit code, if it is a unit of either tree.
    pub fn unit_id(&self, code: &UnitCode) -> Option<UnitId> {
        self.ids.get(code).copied()
    }

    /// Where a contribution at `unit` of `from` lands, in both trees (cached).
    fn targets(&mut self, from: Tree, unit: &UnitCode) -> Arc<Vec<Target>> {
        if let Some(t) = self.targets[tree_slot(from)].get(unit) {
            return t.clone();
        }
        let mut out = Vec::new();
        for tree in TREES {
            let Some(expressed) = self.express(from, unit, tree) else { continue };
            let t = self.trees.get(tree);
            let mut units: Vec<UnitId> = Vec::with_capacity(4);
            let allocated = matches!(expressed, Expressed::Allocated(_));
            let target = match expressed {
                Expressed::Exact(code) | Expressed::Allocated(code) => {
                    units.extend(self.ids.get(&code).copied());
                    units.extend(t.ancestors(&code).filter_map(|u| self.ids.get(&u.code).copied()));
                    units.push(NATION);
                    Target { tree, units, allocated, unassigned_from: None }
                }
                Expressed::Unassigned { province } => {
                    let Some(source) = self.ids.get(unit).copied() else { continue };
                    units.extend(province.and_then(|p| self.ids.get(&p).copied()));
                    units.push(NATION);
                    Target { tree, units, allocated: false, unassigned_from: Some(source) }
                }
            };
            out.push(target);
        }
        let out = Arc::new(out);
        self.targets[tree_slot(from)].insert(unit.clone(), out.clone());
        out
    }

    /// Counts `changes` (date, flow, ±1) of a model at `unit` of `tree`.
    pub(super) fn count_flows(&mut self, tree: Tree, unit: &UnitCode, changes: &[(Date, Flow, i64)]) {
        let targets = self.targets(tree, unit);
        for t in targets.iter() {
            for (date, flow, sign) in changes {
                let half = half_of(*date);
                for u in &t.units {
                    let cell = cell_at(&mut self.cells, &mut self.unassigned, t, *u, half);
                    cell.models.count(*flow, *sign);
                    if t.allocated {
                        cell.models_allocated += sign;
                    }
                }
            }
        }
    }

    /// Replaces a report's contribution `old` by `new` at `unit` of `tree` for `period`.
    pub(super) fn count_report(
        &mut self,
        tree: Tree,
        unit: &UnitCode,
        period: Period,
        old: Option<Counted>,
        new: Counted,
    ) {
        let targets = self.targets(tree, unit);
        for t in targets.iter() {
            for u in &t.units {
                let cell = cell_at(&mut self.cells, &mut self.unassigned, t, *u, period);
                for (fact, sign) in old.map(|o| (o, -1)).into_iter().chain([(new, 1)]) {
                    cell.all.add(&fact.latest, sign);
                    cell.all_reports += sign;
                    cell.on_time += sign * i64::from(fact.on_time);
                    if t.allocated {
                        cell.all_allocated += sign;
                    }
                    if let Some(a) = &fact.approved {
                        cell.approved.add(a, sign);
                        cell.approved_reports += sign;
                        if t.allocated {
                            cell.approved_allocated += sign;
                        }
                    }
                }
            }
        }
    }

    /// The cell at `unit` (None: the nation) of `tree` for `period`.
    pub fn cell(&self, tree: Tree, unit: Option<&UnitCode>, period: Period) -> Option<&Cell> {
        let id = match unit {
            None => NATION,
            Some(u) => self.unit_id(u)?,
        };
        self.cells.get(&(tree, id, period))
    }

    /// Every cell with its unit's code (None: the nation).
    pub fn cells_with_codes(&self) -> Vec<(Tree, Option<&UnitCode>, Period, &Cell)> {
        let mut codes: Vec<Option<&UnitCode>> = vec![None; self.ids.len()];
        for (c, i) in &self.ids {
            codes[*i as usize] = Some(c);
        }
        self.cells
            .iter()
            .filter_map(|((t, u, p), c)| {
                let code = if *u == NATION { None } else { Some(codes.get(*u as usize).copied().flatten()?) };
                Some((*t, code, *p, c))
            })
            .collect()
    }

    /// Puts a stored cell back (loading a snapshot, after `renumber`); false if its
    /// unit is not in the trees.
    pub fn restore_cell(&mut self, tree: Tree, unit: Option<&UnitCode>, period: Period, cell: Cell) -> bool {
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return false,
            },
        };
        self.cells.insert((tree, id, period), cell);
        true
    }

    /// Numbers the units of the trees and derives the province mapping (after the
    /// trees changed); the cells are left alone.
    pub fn renumber(&mut self) {
        self.cross = CrossTree::build(&self.trees);
        self.ids.clear();
        self.codes.clear();
        self.targets.iter_mut().for_each(FastMap::clear);
        for tree in TREES {
            for level in [Level::Province, Level::District, Level::Commune] {
                for u in self.trees.get(tree).descendants_at(None, level) {
                    let next = self.ids.len() as UnitId;
                    if let std::collections::hash_map::Entry::Vacant(e) = self.ids.entry(u.code.clone()) {
                        e.insert(next);
                        self.codes.push(u.code.clone());
                    }
                }
            }
        }
    }

    /// Puts a stored unassigned cell back (loading a snapshot, after `renumber`);
    /// false if a unit is not in the trees.
    pub fn restore_unassigned(
        &mut self,
        tree: Tree,
        unit: Option<&UnitCode>,
        period: Period,
        source: &UnitCode,
        cell: Cell,
    ) -> bool {
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return false,
            },
        };
        let Some(source) = self.unit_id(source) else { return false };
        self.unassigned.entry((tree, id, period)).or_default().insert(source, cell);
        true
    }

    /// Every unassigned cell: (tree, unit or nation, period, source unit, cell).
    pub fn unassigned_with_codes(&self) -> Vec<(Tree, Option<&UnitCode>, Period, &UnitCode, &Cell)> {
        let mut out = Vec::new();
        for ((t, u, p), by_source) in &self.unassigned {
            let unit = if *u == NATION { None } else { Some(self.code_of(*u)) };
            if unit == Some(None) {
                continue;
            }
            for (source, cell) in by_source {
                if let Some(source) = self.code_of(*source) {
                    out.push((*t, unit.flatten(), *p, source, cell));
                }
            }
        }
        out
    }

    /// The figures reported as unassigned at `unit` (None: the nation) of `tree` for
    /// `period`, per source unit in code order: model flows over the period's
    /// half-years and the report figures of the period itself, as `rollup` counts.
    pub fn unassigned_rollups(&self, tree: Tree, unit: Option<&UnitCode>, period: Period) -> Vec<(UnitCode, Rollup)> {
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return Vec::new(),
            },
        };
        let mut out: BTreeMap<UnitCode, Rollup> = BTreeMap::new();
        for half in halves(period) {
            for (source, c) in self.unassigned.get(&(tree, id, half)).into_iter().flatten() {
                let Some(code) = self.code_of(*source) else { continue };
                let r = out.entry(code.clone()).or_default();
                r.models.add(&c.models);
            }
        }
        for (source, c) in self.unassigned.get(&(tree, id, period)).into_iter().flatten() {
            let Some(code) = self.code_of(*source) else { continue };
            let r = out.entry(code.clone()).or_default();
            r.cell = c.clone();
        }
        out.retain(|_, r| *r != Rollup::default());
        out.into_iter().collect()
    }

    /// The roll-up at `unit` (None: the nation) of `tree` for `period`.
    pub fn rollup(&self, tree: Tree, unit: Option<&UnitCode>, period: Period) -> Rollup {
        let mut r = Rollup::default();
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return r,
            },
        };
        for half in halves(period) {
            if let Some(c) = self.cells.get(&(tree, id, half)) {
                r.models.add(&c.models);
                r.models_allocated += c.models_allocated;
            }
        }
        if let Some(c) = self.cells.get(&(tree, id, period)) {
            r.cell = c.clone();
        }
        r
    }

    /// The unassigned cells by unit code, for comparing two projections.
    #[cfg(test)]
    pub(super) fn unassigned_by_code(&self) -> BTreeMap<(u8, Option<&UnitCode>, String, &UnitCode), &Cell> {
        self.unassigned_with_codes().into_iter().map(|(t, u, p, s, c)| ((t as u8, u, p.to_string(), s), c)).collect()
    }

    /// The cells by unit code, for comparing two projections whatever their numbering.
    #[cfg(test)]
    pub(super) fn cells_by_code(&self) -> BTreeMap<(u8, Option<&UnitCode>, String), &Cell> {
        let codes: HashMap<UnitId, &UnitCode> = self.ids.iter().map(|(c, i)| (*i, c)).collect();
        self.cells.iter().map(|((t, u, p), c)| ((*t as u8, codes.get(u).copied(), p.to_string()), c)).collect()
    }
}

/// A roll-up as queries see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Model flows over the period's half-years.
    pub models: ModelCounts,
    pub models_allocated: i64,
    /// Report figures of the period itself.
    pub cell: Cell,
}
