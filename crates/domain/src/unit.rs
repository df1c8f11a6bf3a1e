//! Administrative units: GSO codes, levels and kinds, the two trees (pre-2025
//! province → district → commune; 2025 province → commune) and the 2025
//! reorganisation mapping between them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::DomainError;
use crate::date::{Date, REORGANISATION_2025};
use crate::text;

/// A GSO code: 2 digits (province), 3 (district) or 5 (commune), leading zeros kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitCode(String);

impl UnitCode {
    pub fn parse(field: &str, s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        if !s.bytes().all(|b| b.is_ascii_digit()) || !matches!(s.len(), 2 | 3 | 5) {
            return Err(DomainError::invalid(
                field,
                format!("{s:?} is not a unit code: 2 digits for a province, 3 for a district, 5 for a commune"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The level a code of this length names.
    pub fn level(&self) -> Level {
        match self.0.len() {
            2 => Level::Province,
            3 => Level::District,
            _ => Level::Commune,
        }
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An administrative level, from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Nation,
    Province,
    District,
    Commune,
}

impl Level {
    /// Whether this level is strictly above `other` (nation above province, ...).
    pub fn is_above(self, other: Level) -> bool {
        self < other
    }
}

/// Which administrative tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Before 1 July 2025: nation → 63 provinces → 696 districts → ~10,050 communes.
    Pre2025,
    /// Since 1 July 2025: nation → 34 provinces → 3,321 communes.
    Y2025,
}

impl Tree {
    pub fn in_force_on(date: Date) -> Tree {
        if date < REORGANISATION_2025 { Tree::Pre2025 } else { Tree::Y2025 }
    }

    /// The levels below the nation, top down.
    pub fn levels(self) -> &'static [Level] {
        match self {
            Tree::Pre2025 => &[Level::Province, Level::District, Level::Commune],
            Tree::Y2025 => &[Level::Province, Level::Commune],
        }
    }

    /// The tree on the other side of the 2025 reorganisation.
    pub fn other(self) -> Tree {
        match self {
            Tree::Pre2025 => Tree::Y2025,
            Tree::Y2025 => Tree::Pre2025,
        }
    }

    pub fn has_level(self, level: Level) -> bool {
        level == Level::Nation || self.levels().contains(&level)
    }

    /// The level directly above `level` in this tree.
    pub fn parent_level(self, level: Level) -> Option<Level> {
        match level {
            Level::Nation => None,
            Level::Province => Some(Level::Nation),
            Level::District => Some(Level::Province),
            Level::Commune if self == Tree::Pre2025 => Some(Level::District),
            Level::Commune => Some(Level::Province),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tree::Pre2025 => "pre2025",
            Tree::Y2025 => "2025",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Tree, DomainError> {
        match s.trim() {
            "pre2025" => Ok(Tree::Pre2025),
            "2025" => Ok(Tree::Y2025),
            other => Err(DomainError::invalid(field, format!("{other:?} is not a tree; use 2025 or pre2025"))),
        }
    }
}

/// The legal kind (loại hình) of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitKind {
    Province,
    CentralCity,
    UrbanDistrict,
    RuralDistrict,
    Town,
    ProvincialCity,
    Commune,
    Ward,
    Township,
    SpecialZone,
}

impl UnitKind {
    pub fn level(self) -> Level {
        match self {
            Self::Province | Self::CentralCity => Level::Province,
            Self::UrbanDistrict | Self::RuralDistrict | Self::Town | Self::ProvincialCity => Level::District,
            Self::Commune | Self::Ward | Self::Township | Self::SpecialZone => Level::Commune,
        }
    }

    /// Reads the kind from a unit's official name at a level: "Tỉnh Nghệ An",
    /// "Thành phố Hà Nội", "Quận Ba Đình", "Huyện Côn Đảo", "Phường Phúc Xá", "Đặc khu Lý Sơn".
    /// Names are compared after NFC normalisation and case folding; a stray space or a
    /// missing diacritic on "Xa" (seen in the GSO file) is tolerated.
    pub fn from_name(level: Level, name: &str) -> Option<UnitKind> {
        use unicode_normalization::UnicodeNormalization;
        let name: String = name.trim().nfc().collect::<String>().to_lowercase();
        let starts = |p: &str| name.starts_with(p);
        Some(match level {
            Level::Nation => return None,
            Level::Province if starts("tỉnh") => Self::Province,
            Level::Province if starts("thành phố") => Self::CentralCity,
            Level::District if starts("quận") => Self::UrbanDistrict,
            Level::District if starts("huyện") => Self::RuralDistrict,
            Level::District if starts("thị xã") => Self::Town,
            Level::District if starts("thành phố") => Self::ProvincialCity,
            Level::Commune if starts("phường") => Self::Ward,
            Level::Commune if starts("thị trấn") => Self::Township,
            Level::Commune if starts("đặc khu") => Self::SpecialZone,
            Level::Commune if starts("xã") || starts("xa ") => Self::Commune,
            _ => return None,
        })
    }
}

/// One unit of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub code: UnitCode,
    pub name: String,
    pub english_name: String,
    pub level: Level,
    pub kind: UnitKind,
    /// `None` for a province.
    pub parent: Option<UnitCode>,
}

impl Unit {
    /// A checked unit of `tree`: the code's length matches the level, the level exists
    /// in the tree, the kind belongs to the level, the parent is at the level above.
    pub fn new(
        tree: Tree,
        code: UnitCode,
        name: &str,
        english_name: &str,
        kind: UnitKind,
        parent: Option<UnitCode>,
    ) -> Result<Unit, DomainError> {
        let level = kind.level();
        let mut v = crate::error::Violations::new();
        if code.level() != level {
            v.push("code", format!("{code} is a {:?} code but the unit is a {level:?}", code.level()));
        }
        if !tree.has_level(level) {
            v.push("level", format!("the {} tree has no {level:?} level", tree.name()));
        }
        let name = v.check(text::name("name", name, text::MAX_NAME, true));
        let english_name = v.check(text::name("english_name", english_name, text::MAX_NAME, false));
        match (&parent, tree.parent_level(level)) {
            (None, Some(Level::Nation)) => {}
            (Some(p), Some(expected)) if expected != Level::Nation && p.level() == expected => {}
            (None, Some(expected)) => v.push("parent", format!("a {level:?} needs a parent {expected:?}")),
            (Some(p), _) => {
                v.push("parent", format!("{p} cannot be the parent of a {level:?} in the {} tree", tree.name()))
            }
            (_, None) => v.push("level", "the nation is not a unit"),
        }
        v.finish(|| Unit {
            code,
            name: name.unwrap_or_default(),
            english_name: english_name.unwrap_or_default(),
            level,
            kind,
            parent,
        })
    }
}

/// What happened when a unit was added to a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Added,
    /// The same unit, with the same data, was already there (re-imports are no-ops).
    Unchanged,
}

/// One administrative tree, held in memory (≈ 11,000 units at most).
#[derive(Debug, Clone)]
pub struct AdminTree {
    tree: Tree,
    units: HashMap<UnitCode, Unit>,
    /// Children by parent (`None`: the provinces), kept in code order.
    children: HashMap<Option<UnitCode>, Vec<UnitCode>>,
}

impl AdminTree {
    pub fn new(tree: Tree) -> Self {
        Self { tree, units: HashMap::new(), children: HashMap::new() }
    }

    pub fn tree(&self) -> Tree {
        self.tree
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Checks that `unit` may be inserted without changing the tree.
    pub fn check(&self, unit: &Unit) -> Result<Inserted, DomainError> {
        if let Some(existing) = self.units.get(&unit.code) {
            return if existing == unit {
                Ok(Inserted::Unchanged)
            } else {
                Err(DomainError::invalid(
                    "code",
                    format!("{} is already {:?}; a code is never reused for another unit", unit.code, existing.name),
                ))
            };
        }
        if let Some(parent) = &unit.parent
            && !self.units.contains_key(parent)
        {
            return Err(DomainError::invalid(
                "parent",
                format!("{parent} is not a unit of the {} tree", self.tree.name()),
            ));
        }
        Ok(Inserted::Added)
    }

    /// Inserts a unit whose parent is already present.
    pub fn insert(&mut self, unit: Unit) -> Result<Inserted, DomainError> {
        let outcome = self.check(&unit)?;
        if outcome == Inserted::Added {
            let siblings = self.children.entry(unit.parent.clone()).or_default();
            let at = siblings.binary_search(&unit.code).unwrap_or_else(|i| i);
            siblings.insert(at, unit.code.clone());
            self.units.insert(unit.code.clone(), unit);
        }
        Ok(outcome)
    }

    pub fn get(&self, code: &UnitCode) -> Option<&Unit> {
        self.units.get(code)
    }

    /// Direct children of `parent` (`None`: the provinces), in code order.
    pub fn children(&self, parent: Option<&UnitCode>) -> &[UnitCode] {
        self.children.get(&parent.cloned()).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The unit's ancestors, nearest first (not including the unit).
    pub fn ancestors<'a>(&'a self, code: &UnitCode) -> impl Iterator<Item = &'a Unit> + 'a {
        let mut next = self.units.get(code).and_then(|u| u.parent.as_ref());
        std::iter::from_fn(move || {
            let unit = self.units.get(next?)?;
            next = unit.parent.as_ref();
            Some(unit)
        })
    }

    /// Whether `code` is `ancestor` or lies below it.
    pub fn is_within(&self, ancestor: &UnitCode, code: &UnitCode) -> bool {
        self.units.contains_key(code) && (ancestor == code || self.ancestors(code).any(|u| &u.code == ancestor))
    }

    /// Every unit at `level` inside the subtree of `root` (`None`: the nation), in code order.
    pub fn descendants_at(&self, root: Option<&UnitCode>, level: Level) -> Vec<&Unit> {
        let mut out = Vec::new();
        let mut stack: Vec<&UnitCode> = self.children(root).iter().rev().collect();
        while let Some(code) = stack.pop() {
            let Some(unit) = self.units.get(code) else {
                continue;
            };
            if unit.level == level {
                out.push(unit);
            } else if unit.level < level {
                stack.extend(self.children(Some(code)).iter().rev());
            }
        }
        out
    }
}

/// How an old unit went into a new one, as the GSO conversion table says (`Ghi chú`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeKind {
    /// Nhập toàn bộ.
    Whole,
    /// Nhập một phần: the old unit was split between several new ones.
    Part,
    /// Nhập một phần diện tích.
    PartArea,
    /// Nhập một phần diện tích, toàn bộ dân số.
    PartAreaWholePopulation,
    /// Nhập một phần dân số.
    PartPopulation,
    /// Giữ nguyên.
    Unchanged,
    /// Đổi loại hình.
    TypeChanged,
    /// Đổi tên.
    Renamed,
    /// Sắp xếp toàn bộ huyện ... thành đặc khu.
    DistrictToSpecialZone,
    /// The note is empty or says something else.
    Unspecified,
}

impl MergeKind {
    /// Classifies a published note. Notes carry stray spaces, newlines and typos
    /// ("Nhâp", "Nhập một  phần"); they are normalised before matching.
    pub fn from_note(note: &str) -> MergeKind {
        use unicode_normalization::UnicodeNormalization;
        let n: String = note.nfc().collect::<String>().to_lowercase().replace("nhâp", "nhập");
        let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
        let has = |p: &str| n.contains(p);
        match () {
            _ if n.is_empty() => Self::Unspecified,
            _ if has("thành đặc khu") => Self::DistrictToSpecialZone,
            _ if has("một phần diện tích, toàn bộ dân số") => Self::PartAreaWholePopulation,
            _ if has("một phần diện tích") => Self::PartArea,
            _ if has("một phần dân số") => Self::PartPopulation,
            _ if has("nhập toàn bộ") => Self::Whole,
            _ if has("một phần") || has("phần còn lại") => Self::Part,
            _ if has("giữ nguyên") => Self::Unchanged,
            _ if has("loại hình") => Self::TypeChanged,
            _ if has("đổi tên") => Self::Renamed,
            _ => Self::Unspecified,
        }
    }

    /// Whether the whole old unit went into exactly this new one (figures move exactly).
    pub fn is_whole(self) -> bool {
        matches!(self, Self::Whole | Self::Unchanged | Self::TypeChanged | Self::Renamed | Self::DistrictToSpecialZone)
    }
}

impl MergeKind {
    /// Whether the note says this successor took the old unit's whole population
    /// ("Nhập một phần diện tích, toàn bộ dân số").
    pub fn takes_population(self) -> bool {
        matches!(self, Self::PartAreaWholePopulation)
    }
}

/// On what a link of the mapping rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LinkBasis {
    /// A row of the official conversion table (after the reviewed corrections).
    #[default]
    Official,
    /// Inferred by the import: the unit was recoded between the two lists (same name,
    /// same district, another code).
    Inferred,
    /// Added by an operator (a supplementary mapping).
    Supplementary,
}

/// One row of the mapping: `old` (pre-2025 tree) went, wholly or in part, into `new` (2025 tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReorgLink {
    pub old: UnitCode,
    pub new: UnitCode,
    pub kind: MergeKind,
    pub note: String,
    pub basis: LinkBasis,
}

/// The 2025 reorganisation: old unit → its successors (in the order the mapping
/// names them) and new unit → its predecessors.
#[derive(Debug, Clone, Default)]
pub struct Reorganization {
    effective: Option<Date>,
    successors: BTreeMap<UnitCode, Vec<ReorgLink>>,
    predecessors: BTreeMap<UnitCode, Vec<UnitCode>>,
}

impl Reorganization {
    pub fn new(effective: Date) -> Self {
        Self { effective: Some(effective), ..Self::default() }
    }

    pub fn effective(&self) -> Option<Date> {
        self.effective
    }

    /// Adds a link; the same (old, new) pair twice is a no-op, which keeps re-imports idempotent.
    pub fn add(&mut self, link: ReorgLink) -> Inserted {
        let succ = self.successors.entry(link.old.clone()).or_default();
        if succ.iter().any(|l| l.new == link.new) {
            return Inserted::Unchanged;
        }
        self.predecessors.entry(link.new.clone()).or_default().push(link.old.clone());
        succ.push(link);
        Inserted::Added
    }

    pub fn len(&self) -> usize {
        self.successors.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.successors.is_empty()
    }

    /// The new units an old unit went into, in the mapping's order.
    pub fn successors(&self, old: &UnitCode) -> &[ReorgLink] {
        self.successors.get(old).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The old units that went into a new unit.
    pub fn predecessors(&self, new: &UnitCode) -> &[UnitCode] {
        self.predecessors.get(new).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where an old commune's figures go on the 2025 tree. The allocation rule: an old
    /// unit split between several new ones counts wholly in the successor that took its
    /// whole population when the notes name one ("…, toàn bộ dân số": the figures are
    /// about people), else in the successor the mapping names first; the flag says
    /// whether the rule was applied (so roll-ups can report how many figures were
    /// allocated rather than moved exactly).
    pub fn allocate(&self, old: &UnitCode) -> Option<(&UnitCode, bool)> {
        let succ = self.successors(old);
        let first = succ.first()?;
        let exact = succ.len() == 1 && first.kind.is_whole();
        let chosen = succ.iter().find(|l| l.kind.takes_population()).unwrap_or(first);
        Some((&chosen.new, !exact))
    }

    /// The link from `old` to `new`, if the mapping has one.
    pub fn link(&self, old: &UnitCode, new: &UnitCode) -> Option<&ReorgLink> {
        self.successors(old).iter().find(|l| &l.new == new)
    }
}

/// Where a unit of one tree stands in the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expressed {
    /// Its exact counterpart: the unit moved whole (or is the same tree).
    Exact(UnitCode),
    /// Placed by the allocation rule: a split unit, or one of several merged.
    Allocated(UnitCode),
    /// No counterpart in the other tree. `province` is where its province stands
    /// there, if anywhere: the figures are reported as unassigned, never dropped.
    Unassigned { province: Option<UnitCode> },
}

impl Expressed {
    /// The counterpart, if there is one.
    pub fn unit(&self) -> Option<&UnitCode> {
        match self {
            Self::Exact(u) | Self::Allocated(u) => Some(u),
            Self::Unassigned { .. } => None,
        }
    }
}

/// How a unit maps onto the other tree (`GetUnit` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingStatus {
    /// The whole unit went into one unit of the other tree, by the official table.
    Whole,
    /// Split between several units, or one of several merged: figures are allocated.
    Split,
    /// Recoded between the two lists (same name, same district, another code): the
    /// link was inferred by the import.
    Recoded,
    /// A district or province: its counterpart is inferred from its communes' links.
    Inferred,
    /// Linked by an operator's supplementary mapping.
    Supplementary,
    /// No counterpart: its figures are reported as unassigned in the other tree.
    Unassigned,
}

/// The provinces of the two trees matched through the communes' links (provinces
/// merged whole): each old province's new one and each new province's old ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossTree {
    new_of_old: BTreeMap<UnitCode, UnitCode>,
    olds_of_new: BTreeMap<UnitCode, std::collections::BTreeSet<UnitCode>>,
}

impl CrossTree {
    pub fn build(trees: &Trees) -> Self {
        let mut m = Self::default();
        let old = trees.get(Tree::Pre2025);
        let new = trees.get(Tree::Y2025);
        for province in old.children(None) {
            for commune in old.descendants_at(Some(province), Level::Commune) {
                let Some((succ, _)) = trees.reorganization.allocate(&commune.code) else { continue };
                let Some(np) = new.ancestors(succ).find(|u| u.level == Level::Province).map(|u| u.code.clone()) else {
                    continue;
                };
                m.new_of_old.entry(province.clone()).or_insert_with(|| np.clone());
                m.olds_of_new.entry(np).or_default().insert(province.clone());
            }
        }
        m
    }

    /// The old province a new one is expressed as, and whether that is an allocation
    /// (several old provinces merged into it).
    fn old_province(&self, new: &UnitCode) -> Option<(UnitCode, bool)> {
        let olds = self.olds_of_new.get(new)?;
        let old = if olds.contains(new) { new.clone() } else { olds.first()?.clone() };
        Some((old, olds.len() > 1))
    }

    /// Where `unit` of `from` stands in `to` (None: `unit` is not a unit of `from`).
    /// Communes move by the mapping (see `Reorganization::allocate`; a new commune is
    /// expressed as its first predecessor found in the old tree), districts and
    /// provinces through their provinces.
    pub fn express(&self, trees: &Trees, from: Tree, unit: &UnitCode, to: Tree) -> Option<Expressed> {
        let src = trees.get(from).get(unit)?;
        if from == to {
            return Some(Expressed::Exact(src.code.clone()));
        }
        let target = trees.get(to);
        let province_of = |u: &Unit| -> Option<UnitCode> {
            if u.level == Level::Province {
                return Some(u.code.clone());
            }
            trees.get(from).ancestors(&u.code).find(|a| a.level == Level::Province).map(|a| a.code.clone())
        };
        let counterpart_province = |p: Option<UnitCode>| -> Option<UnitCode> {
            let p = p?;
            let found = match from {
                Tree::Pre2025 => self.new_of_old.get(&p).cloned(),
                Tree::Y2025 => self.old_province(&p).map(|(o, _)| o),
            };
            found.filter(|c| target.get(c).is_some())
        };
        let unassigned = || Expressed::Unassigned { province: counterpart_province(province_of(src)) };
        let placed = |code: UnitCode, allocated: bool| {
            if target.get(&code).is_none() {
                unassigned()
            } else if allocated {
                Expressed::Allocated(code)
            } else {
                Expressed::Exact(code)
            }
        };
        let r = &trees.reorganization;
        Some(match (from, src.level) {
            (Tree::Pre2025, Level::Commune) => match r.allocate(unit) {
                Some((new, allocated)) => placed(new.clone(), allocated),
                None => unassigned(),
            },
            (Tree::Pre2025, Level::District | Level::Province) => match counterpart_province(province_of(src)) {
                Some(p) => Expressed::Exact(p),
                None => unassigned(),
            },
            (Tree::Y2025, Level::Commune) => {
                let preds = r.predecessors(unit);
                match preds.iter().find(|p| target.get(p).is_some()) {
                    Some(first) => {
                        let exact = preds.len() == 1 && r.allocate(first).is_some_and(|(n, a)| !a && n == unit);
                        placed(first.clone(), !exact)
                    }
                    None => unassigned(),
                }
            }
            (Tree::Y2025, Level::Province) => match self.old_province(unit) {
                Some((old, allocated)) => placed(old, allocated),
                None => unassigned(),
            },
            _ => unassigned(),
        })
    }

    /// How `unit` of `tree` maps onto the other tree (None: not a unit of `tree`).
    pub fn mapping_status(&self, trees: &Trees, tree: Tree, unit: &UnitCode) -> Option<MappingStatus> {
        self.mapping(trees, tree, unit).map(|(status, _)| status)
    }

    /// How `unit` of `tree` maps onto the other tree, and where it stands there.
    pub fn mapping(&self, trees: &Trees, tree: Tree, unit: &UnitCode) -> Option<(MappingStatus, Expressed)> {
        let expressed = self.express(trees, tree, unit, tree.other())?;
        let level = trees.get(tree).get(unit)?.level;
        let status = Self::status(trees, tree, unit, level, &expressed);
        Some((status, expressed))
    }

    fn status(trees: &Trees, tree: Tree, unit: &UnitCode, level: Level, expressed: &Expressed) -> MappingStatus {
        if expressed.unit().is_none() {
            return MappingStatus::Unassigned;
        }
        if level != Level::Commune {
            return MappingStatus::Inferred;
        }
        let r = &trees.reorganization;
        let links: Vec<&ReorgLink> = match tree {
            Tree::Pre2025 => r.successors(unit).iter().collect(),
            Tree::Y2025 => r.predecessors(unit).iter().filter_map(|old| r.link(old, unit)).collect(),
        };
        if links.iter().any(|l| l.basis == LinkBasis::Inferred) {
            MappingStatus::Recoded
        } else if links.iter().any(|l| l.basis == LinkBasis::Supplementary) {
            MappingStatus::Supplementary
        } else if matches!(expressed, Expressed::Exact(_)) {
            MappingStatus::Whole
        } else {
            MappingStatus::Split
        }
    }
}

/// Looks units up in whichever tree a rule needs.
pub trait UnitLookup {
    fn unit(&self, tree: Tree, code: &UnitCode) -> Option<&Unit>;
    fn is_within(&self, tree: Tree, ancestor: &UnitCode, code: &UnitCode) -> bool;
}

impl UnitLookup for AdminTree {
    fn unit(&self, tree: Tree, code: &UnitCode) -> Option<&Unit> {
        (tree == self.tree).then(|| self.get(code)).flatten()
    }
    fn is_within(&self, tree: Tree, ancestor: &UnitCode, code: &UnitCode) -> bool {
        tree == self.tree && AdminTree::is_within(self, ancestor, code)
    }
}

/// Both trees and the mapping between them.
#[derive(Debug, Clone)]
pub struct Trees {
    pub pre2025: AdminTree,
    pub y2025: AdminTree,
    pub reorganization: Reorganization,
}

impl Default for Trees {
    fn default() -> Self {
        Self {
            pre2025: AdminTree::new(Tree::Pre2025),
            y2025: AdminTree::new(Tree::Y2025),
            reorganization: Reorganization::new(REORGANISATION_2025),
        }
    }
}

impl Trees {
    pub fn get(&self, tree: Tree) -> &AdminTree {
        match tree {
            Tree::Pre2025 => &self.pre2025,
            Tree::Y2025 => &self.y2025,
        }
    }

    pub fn get_mut(&mut self, tree: Tree) -> &mut AdminTree {
        match tree {
            Tree::Pre2025 => &mut self.pre2025,
            Tree::Y2025 => &mut self.y2025,
        }
    }
}

impl UnitLookup for Trees {
    fn unit(&self, tree: Tree, code: &UnitCode) -> Option<&Unit> {
        self.get(tree).get(code)
    }
    fn is_within(&self, tree: Tree, ancestor: &UnitCode, code: &UnitCode) -> bool {
        self.get(tree).is_within(ancestor, code)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn code(s: &str) -> UnitCode {
        UnitCode::parse("code", s).unwrap()
    }

    /// A slice of Hà Nội in both trees: province 01, district 001 (Ba Đình) with
    /// communes 00001 and 00004; district 002 with 00037; province 02 with district 026.
    pub(crate) fn sample_trees() -> Trees {
        let mut t = Trees::default();
        let pre = &mut t.pre2025;
        let add = |tree: &mut AdminTree, c: &str, name: &str, kind: UnitKind, parent: Option<&str>| {
            let u = Unit::new(tree.tree(), code(c), name, "", kind, parent.map(code)).unwrap();
            tree.insert(u).unwrap();
        };
        add(pre, "01", "Thành phố Hà Nội", UnitKind::CentralCity, None);
        add(pre, "001", "Quận Ba Đình", UnitKind::UrbanDistrict, Some("01"));
        add(pre, "00001", "Phường Phúc Xá", UnitKind::Ward, Some("001"));
        add(pre, "00004", "Phường Trúc Bạch", UnitKind::Ward, Some("001"));
        add(pre, "002", "Quận Hoàn Kiếm", UnitKind::UrbanDistrict, Some("01"));
        add(pre, "00037", "Phường Phúc Tân", UnitKind::Ward, Some("002"));
        add(pre, "02", "Tỉnh Hà Giang", UnitKind::Province, None);
        add(pre, "026", "Huyện Đồng Văn", UnitKind::RuralDistrict, Some("02"));
        let new = &mut t.y2025;
        add(new, "01", "Thành phố Hà Nội", UnitKind::CentralCity, None);
        add(new, "00004", "Phường Ba Đình", UnitKind::Ward, Some("01"));
        add(new, "00008", "Phường Hồng Hà", UnitKind::Ward, Some("01"));
        t.reorganization.add(ReorgLink {
            old: code("00004"),
            new: code("00004"),
            kind: MergeKind::Whole,
            note: "Nhập toàn bộ".into(),
            basis: LinkBasis::Official,
        });
        t.reorganization.add(ReorgLink {
            old: code("00001"),
            new: code("00008"),
            kind: MergeKind::Part,
            note: "Nhập một phần".into(),
            basis: LinkBasis::Official,
        });
        t.reorganization.add(ReorgLink {
            old: code("00001"),
            new: code("00004"),
            kind: MergeKind::Part,
            note: "Nhập một phần".into(),
            basis: LinkBasis::Official,
        });
        t
    }

    #[test]
    fn codes_keep_leading_zeros_and_say_their_level() {
        let c = code("00001");
        assert_eq!(c.as_str(), "00001");
        assert_eq!(c.level(), Level::Commune);
        assert_eq!(code("01").level(), Level::Province);
        assert_eq!(code("001").level(), Level::District);
        for bad in ["1", "0001", "000001", "0a", "", "01 2"] {
            assert!(UnitCode::parse("unit", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_are_read_from_official_names() {
        assert_eq!(UnitKind::from_name(Level::Province, "Thành phố Hà Nội"), Some(UnitKind::CentralCity));
        assert_eq!(UnitKind::from_name(Level::Province, "Tỉnh Hà Giang"), Some(UnitKind::Province));
        assert_eq!(UnitKind::from_name(Level::District, "Thành phố Hà Giang"), Some(UnitKind::ProvincialCity));
        assert_eq!(UnitKind::from_name(Level::District, "Thị xã Sơn Tây"), Some(UnitKind::Town));
        assert_eq!(UnitKind::from_name(Level::Commune, "Thị trấn Đồng Văn"), Some(UnitKind::Township));
        assert_eq!(UnitKind::from_name(Level::Commune, "Đặc khu Lý Sơn"), Some(UnitKind::SpecialZone));
        assert_eq!(UnitKind::from_name(Level::Commune, "Xa Tân Lập"), Some(UnitKind::Commune));
        assert_eq!(UnitKind::from_name(Level::Commune, "Quận 1"), None);
    }

    #[test]
    fn a_unit_must_fit_its_tree() {
        // Communes hang under districts before 2025 and under provinces since.
        assert!(Unit::new(Tree::Pre2025, code("00001"), "Phường A", "", UnitKind::Ward, Some(code("01"))).is_err());
        assert!(Unit::new(Tree::Y2025, code("00001"), "Phường A", "", UnitKind::Ward, Some(code("01"))).is_ok());
        // No districts in the 2025 tree.
        let err =
            Unit::new(Tree::Y2025, code("001"), "Quận A", "", UnitKind::UrbanDistrict, Some(code("01"))).unwrap_err();
        assert!(err.violations().iter().any(|v| v.field == "level"), "{err}");
        // A province has no parent; a commune code must be 5 digits.
        assert!(Unit::new(Tree::Y2025, code("01"), "Tỉnh A", "", UnitKind::Province, Some(code("02"))).is_err());
        assert!(Unit::new(Tree::Y2025, code("012"), "Xã A", "", UnitKind::Commune, Some(code("01"))).is_err());
    }

    #[test]
    fn reinserting_the_same_unit_is_a_noop_and_reusing_a_code_is_refused() {
        let mut t = sample_trees();
        let same = t.pre2025.get(&code("001")).unwrap().clone();
        assert_eq!(t.pre2025.insert(same).unwrap(), Inserted::Unchanged);
        let other =
            Unit::new(Tree::Pre2025, code("001"), "Quận Khác", "", UnitKind::UrbanDistrict, Some(code("01"))).unwrap();
        assert!(t.pre2025.insert(other).is_err());
        let orphan =
            Unit::new(Tree::Pre2025, code("999"), "Huyện X", "", UnitKind::RuralDistrict, Some(code("99"))).unwrap();
        assert_eq!(t.pre2025.insert(orphan).unwrap_err().violations()[0].field, "parent");
    }

    #[test]
    fn subtree_queries() {
        let t = sample_trees();
        assert!(t.pre2025.is_within(&code("01"), &code("00001")));
        assert!(t.pre2025.is_within(&code("001"), &code("00004")));
        assert!(!t.pre2025.is_within(&code("002"), &code("00004")));
        assert!(!t.pre2025.is_within(&code("02"), &code("00004")));
        let names: Vec<_> = t.pre2025.ancestors(&code("00001")).map(|u| u.code.as_str()).collect();
        assert_eq!(names, ["001", "01"]);
        let communes: Vec<_> =
            t.pre2025.descendants_at(Some(&code("01")), Level::Commune).iter().map(|u| u.code.as_str()).collect();
        assert_eq!(communes, ["00001", "00004", "00037"]);
        assert_eq!(t.pre2025.descendants_at(None, Level::District).len(), 3);
        assert_eq!(t.pre2025.children(None), &[code("01"), code("02")]);
        // Island districts (no communes) have no children and that is fine.
        assert!(t.pre2025.children(Some(&code("026"))).is_empty());
    }

    #[test]
    fn merge_notes_as_published_are_classified() {
        let cases = [
            ("Nhập toàn bộ", MergeKind::Whole),
            ("Nhập một phần\n", MergeKind::Part),
            ("Nhập một  phần", MergeKind::Part),
            ("Nhâp một phần diện tích", MergeKind::PartArea),
            ("Nhập một phần  diện tích", MergeKind::PartArea),
            ("Nhập một phần diện tích, toàn bộ dân số", MergeKind::PartAreaWholePopulation),
            ("Nhập một phần dân số", MergeKind::PartPopulation),
            ("Giữ nguyên ", MergeKind::Unchanged),
            ("Đổi loại hình", MergeKind::TypeChanged),
            ("Đổi tên", MergeKind::Renamed),
            ("Sắp xếp toàn bộ huyện Lý Sơn thành đặc khu Lý Sơn", MergeKind::DistrictToSpecialZone),
            ("Phần còn lại sau khi tách một phần vào xã Canh Vinh", MergeKind::Part),
            ("", MergeKind::Unspecified),
        ];
        for (note, kind) in cases {
            assert_eq!(MergeKind::from_note(note), kind, "{note:?}");
        }
    }

    #[test]
    fn split_communes_are_allocated_to_the_first_named_successor() {
        let t = sample_trees();
        let r = &t.reorganization;
        assert_eq!(r.allocate(&code("00004")), Some((&code("00004"), false)), "whole merge is exact");
        assert_eq!(r.allocate(&code("00001")), Some((&code("00008"), true)), "split: first named, flagged");
        assert_eq!(r.allocate(&code("00037")), None, "unmapped");
        assert_eq!(r.predecessors(&code("00004")), &[code("00004"), code("00001")]);
        let mut r2 = r.clone();
        let again = ReorgLink {
            old: code("00001"),
            new: code("00008"),
            kind: MergeKind::Part,
            note: String::new(),
            basis: LinkBasis::Official,
        };
        assert_eq!(r2.add(again), Inserted::Unchanged);
        assert_eq!(r2.len(), 3);
    }

    fn link(old: &str, new: &str, kind: MergeKind, basis: LinkBasis) -> ReorgLink {
        ReorgLink { old: code(old), new: code(new), kind, note: String::new(), basis }
    }

    #[test]
    fn a_split_commune_goes_to_the_successor_that_took_its_population() {
        // Given Đặng Xá (00556) as the table splits it (lines 424 and 426, after the
        // reviewed correction): part of its area to Phù Đổng, listed first; part of its
        // area and all its people to Thuận An.
        let mut r = Reorganization::new(REORGANISATION_2025);
        r.add(link("00556", "00541", MergeKind::PartArea, LinkBasis::Official));
        r.add(link("00556", "00562", MergeKind::PartAreaWholePopulation, LinkBasis::Official));
        // Then its figures go to Thuận An, flagged as allocated.
        assert_eq!(r.allocate(&code("00556")), Some((&code("00562"), true)));
        // Without a note naming the people, the first-listed successor takes them.
        r.add(link("00553", "00136", MergeKind::Part, LinkBasis::Official));
        r.add(link("00553", "00541", MergeKind::Part, LinkBasis::Official));
        assert_eq!(r.allocate(&code("00553")), Some((&code("00136"), true)));
    }

    #[test]
    fn units_without_a_counterpart_are_unassigned_under_their_province() {
        let mut t = sample_trees();
        let cross = CrossTree::build(&t);
        // 00037 (Phúc Tân) is named by no link: unassigned, under the new Hà Nội.
        assert_eq!(
            cross.express(&t, Tree::Pre2025, &code("00037"), Tree::Y2025),
            Some(Expressed::Unassigned { province: Some(code("01")) })
        );
        assert_eq!(cross.mapping_status(&t, Tree::Pre2025, &code("00037")), Some(MappingStatus::Unassigned));
        assert_eq!(cross.mapping_status(&t, Tree::Pre2025, &code("00004")), Some(MappingStatus::Whole));
        assert_eq!(cross.mapping_status(&t, Tree::Pre2025, &code("00001")), Some(MappingStatus::Split));
        assert_eq!(cross.mapping_status(&t, Tree::Pre2025, &code("001")), Some(MappingStatus::Inferred));
        // Hà Giang has no commune in the sample: nothing to infer its counterpart from.
        assert_eq!(cross.mapping_status(&t, Tree::Pre2025, &code("02")), Some(MappingStatus::Unassigned));
        // A new commune whose first predecessor is missing from the old list is
        // expressed as the next one that is there.
        let y = &mut t.y2025;
        y.insert(Unit::new(Tree::Y2025, code("00010"), "Phường Mới", "", UnitKind::Ward, Some(code("01"))).unwrap())
            .unwrap();
        t.reorganization.add(link("99999", "00010", MergeKind::Whole, LinkBasis::Official));
        let cross = CrossTree::build(&t);
        assert_eq!(
            cross.express(&t, Tree::Y2025, &code("00010"), Tree::Pre2025),
            Some(Expressed::Unassigned { province: Some(code("01")) })
        );
        t.reorganization.add(link("00037", "00010", MergeKind::Whole, LinkBasis::Supplementary));
        let cross = CrossTree::build(&t);
        assert_eq!(
            cross.express(&t, Tree::Y2025, &code("00010"), Tree::Pre2025),
            Some(Expressed::Allocated(code("00037")))
        );
        assert_eq!(
            cross.express(&t, Tree::Pre2025, &code("00037"), Tree::Y2025),
            Some(Expressed::Exact(code("00010")))
        );
        assert_eq!(cross.mapping_status(&t, Tree::Pre2025, &code("00037")), Some(MappingStatus::Supplementary));
    }

    #[test]
    fn the_tree_in_force_changes_on_1_july_2025() {
        assert_eq!(Tree::in_force_on(Date::parse("d", "2025-06-30").unwrap()), Tree::Pre2025);
        assert_eq!(Tree::in_force_on(Date::parse("d", "2025-07-01").unwrap()), Tree::Y2025);
    }
}
