//! Who may call what (DESIGN.md "Security"): each service declares one policy table,
//! a [`Rule`] per RPC (its roles and its [`Scope`]). The guard ([`crate::guard`])
//! looks every call up in the table and checks the role before the handler runs; the
//! handler names what the request acts on (a [`Target`]) and the scope is checked
//! here, against the rule that admitted the caller ([`Access`]), for writes in
//! `Core::write` before idempotency and for reads through [`Access::check`].
//! Denials are PERMISSION_DENIED and logged with the subject.

use dvk_domain::unit::UnitLookup;
use dvk_domain::{Tree, UnitCode};
use tonic::Status;

use crate::auth::{Caller, Role};

/// Where a request's target may lie, seen from the caller's own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Anywhere: the role alone decides (the reference data every caller reads, the
    /// trees an admin manages, the state of the projections).
    Anywhere,
    /// In the caller's subtree, its own unit included; the nation only for a national
    /// caller (a reporter's writes, reads).
    Subtree,
    /// Strictly below the caller's unit: an approver decides on the reports of the
    /// units below its own, never on its own unit's.
    Below,
    /// A listing, never refused: it holds only what lies in the caller's subtree.
    Listed,
}

/// The rule of one RPC: who may call it, and on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The RPC's name as the service's proto declares it (`ApproveReport`).
    pub method: &'static str,
    /// The roles that may call it.
    pub roles: &'static [Role],
    pub scope: Scope,
}

/// Every role: an RPC any authenticated caller may call (within its scope).
pub const ANY_ROLE: &[Role] = &[Role::Reporter, Role::Approver, Role::Analyst, Role::Admin];

/// The rule for `method` in `policy`.
pub fn rule(policy: &'static [Rule], method: &str) -> Option<&'static Rule> {
    policy.iter().find(|r| r.method == method)
}

impl Rule {
    /// Admits `caller` to this RPC if it holds one of the rule's roles.
    pub fn admit(&'static self, caller: Caller) -> Result<Access, Status> {
        if self.roles.contains(&caller.role) {
            return Ok(Access { caller, rule: self });
        }
        tracing::warn!(subject = %caller.subject, role = caller.role.as_str(), action = self.method, "permission denied: role");
        let allowed: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        Err(Status::permission_denied(format!("{} needs the role {}", self.method, allowed.join(" or "))))
    }
}

/// What a request acts on, where its rule's scope is checked: units of a tree, or the
/// nation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    places: Vec<(Tree, Option<UnitCode>)>,
}

impl Target {
    /// The unit `unit` of `tree`.
    pub fn unit(tree: Tree, unit: UnitCode) -> Self {
        Self::place(tree, Some(unit))
    }

    /// The unit `unit` of `tree`, or the nation (`None`).
    pub fn place(tree: Tree, unit: Option<UnitCode>) -> Self {
        Self { places: vec![(tree, unit)] }
    }

    /// This, and the unit `unit` of `tree` too (the unit a caller acts for besides the
    /// target, such as the one recognising a model): the scope must hold for both.
    pub fn and(mut self, tree: Tree, unit: UnitCode) -> Self {
        self.places.push((tree, Some(unit)));
        self
    }

    /// No unit: what a rule without a unit scope acts on (the trees as a whole), or a
    /// unit the read models do not know, which the decision then refuses, naming the
    /// field.
    pub fn none() -> Self {
        Self { places: Vec::new() }
    }
}

/// Read models that place units in the administrative trees: where a write's target
/// is checked.
pub trait KnowsUnits {
    fn units(&self) -> &dyn UnitLookup;
}

/// A caller admitted to one RPC: who, and the rule that admitted them. The guard puts
/// it in the request's extensions; the handler checks the scope through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub caller: Caller,
    rule: &'static Rule,
}

impl Access {
    /// The access the guard granted to `request`. A request that did not pass the guard
    /// (a service served without it) is refused.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, Status> {
        request
            .extensions()
            .get::<Access>()
            .cloned()
            .ok_or_else(|| crate::status::internal("a request reached its handler without passing the service's guard"))
    }

    /// The RPC the caller was admitted to.
    pub fn method(&self) -> &'static str {
        self.rule.method
    }

    pub fn rule(&self) -> &'static Rule {
        self.rule
    }

    /// Requires every place of `target` (its units placed by `units`) to lie where the
    /// rule's scope allows.
    pub fn check(&self, units: &dyn UnitLookup, target: &Target) -> Result<(), Status> {
        let method = self.rule.method;
        for (tree, place) in &target.places {
            match (self.rule.scope, place) {
                (Scope::Anywhere | Scope::Listed, _) => {}
                (Scope::Subtree, Some(unit)) => self.require_within(units, *tree, unit)?,
                (Scope::Below, Some(unit)) => self.require_below(units, *tree, unit)?,
                (Scope::Subtree, None) => {
                    if let Some(own) = &self.caller.unit {
                        tracing::warn!(subject = %self.caller.subject, own = %own, method, "permission denied: the nation");
                        return Err(Status::permission_denied(format!(
                            "{method}: the nation's figures need a national caller; the caller acts for {own}"
                        )));
                    }
                }
                (Scope::Below, None) => {
                    tracing::warn!(subject = %self.caller.subject, method, "permission denied: the nation");
                    return Err(Status::permission_denied(format!("{method}: no unit is above the nation")));
                }
            }
        }
        Ok(())
    }

    /// Whether a listing shows `unit` of `tree` to the caller: the rule's scope holds
    /// for it. Never logs: what a listing leaves out is not a denial.
    pub fn sees(&self, units: &dyn UnitLookup, tree: Tree, unit: &UnitCode) -> bool {
        match self.rule.scope {
            Scope::Anywhere => true,
            Scope::Subtree | Scope::Listed => self.within(units, tree, unit),
            Scope::Below => self.below(units, tree, unit),
        }
    }

    fn within(&self, units: &dyn UnitLookup, tree: Tree, unit: &UnitCode) -> bool {
        match &self.caller.unit {
            None => true,
            Some(own) => units.is_within(tree, own, unit),
        }
    }

    fn below(&self, units: &dyn UnitLookup, tree: Tree, unit: &UnitCode) -> bool {
        match &self.caller.unit {
            None => true,
            Some(own) => own != unit && units.is_within(tree, own, unit),
        }
    }

    fn own(&self) -> &str {
        self.caller.unit.as_ref().map_or("the nation", UnitCode::as_str)
    }

    fn require_within(&self, units: &dyn UnitLookup, tree: Tree, unit: &UnitCode) -> Result<(), Status> {
        if self.within(units, tree, unit) {
            return Ok(());
        }
        let (c, own, action) = (&self.caller, self.own(), self.rule.method);
        tracing::warn!(subject = %c.subject, role = c.role.as_str(), own, target = %unit, action, "permission denied: scope");
        Err(Status::permission_denied(format!("{action}: unit {unit} is outside the caller's unit {own}")))
    }

    fn require_below(&self, units: &dyn UnitLookup, tree: Tree, unit: &UnitCode) -> Result<(), Status> {
        if self.below(units, tree, unit) {
            return Ok(());
        }
        let (c, own, action) = (&self.caller, self.own(), self.rule.method);
        tracing::warn!(subject = %c.subject, role = c.role.as_str(), own, target = %unit, action, "permission denied: not above");
        Err(Status::permission_denied(format!(
            "{action}: the caller's unit {own} is not above unit {unit}; only a unit above it may do this"
        )))
    }
}

/// The RPCs `service` (its full name, `dvk.reporting.v1.ReportingService`) declares in
/// the encoded `FileDescriptorSet` `descriptors`.
pub fn declared_rpcs(descriptors: &[u8], service: &str) -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(descriptors).expect("a valid descriptor set");
    set.file
        .iter()
        .flat_map(|f| f.service.iter().map(move |s| (f.package(), s)))
        .filter(|(package, s)| format!("{package}.{}", s.name()) == service)
        .flat_map(|(_, s)| s.method.iter().map(|m| m.name().to_owned()))
        .collect()
}

/// Checks that `policy` holds exactly one rule, with at least one role, for each RPC
/// that `service` declares in `descriptors`, and none for an RPC it does not declare.
pub fn verify(policy: &[Rule], descriptors: &[u8], service: &str) -> Result<(), String> {
    let rpcs = declared_rpcs(descriptors, service);
    if rpcs.is_empty() {
        return Err(format!("{service} declares no RPC in the descriptors"));
    }
    let mut faults = Vec::new();
    for rpc in &rpcs {
        match policy.iter().filter(|r| r.method == rpc).count() {
            0 => faults.push(format!("{rpc} has no rule")),
            1 => {}
            n => faults.push(format!("{rpc} has {n} rules")),
        }
    }
    for r in policy {
        if !rpcs.iter().any(|rpc| rpc == r.method) {
            faults.push(format!("{} is not an RPC of {service}", r.method));
        }
        if r.roles.is_empty() {
            faults.push(format!("{} admits no role", r.method));
        }
    }
    if faults.is_empty() { Ok(()) } else { Err(faults.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvk_domain::unit::{AdminTree, Unit, UnitKind};

    const SERVICE: &str = "dvk.reporting.v1.ReportingService";

    static APPROVE: Rule = Rule { method: "ApproveReport", roles: &[Role::Approver], scope: Scope::Below };
    static READ: Rule = Rule { method: "GetReport", roles: ANY_ROLE, scope: Scope::Subtree };

    fn code(s: &str) -> UnitCode {
        UnitCode::parse("code", s).unwrap()
    }

    /// Province 22, its districts 207 and 193, the commune 07192 of 207.
    fn tree() -> AdminTree {
        let mut t = AdminTree::new(Tree::Pre2025);
        for (c, kind, parent) in [
            ("22", UnitKind::Province, None),
            ("207", UnitKind::RuralDistrict, Some("22")),
            ("193", UnitKind::ProvincialCity, Some("22")),
            ("07192", UnitKind::Commune, Some("207")),
        ] {
            t.insert(Unit::new(Tree::Pre2025, code(c), c, "", kind, parent.map(code)).unwrap()).unwrap();
        }
        t
    }

    fn caller(role: Role, unit: Option<&str>) -> Caller {
        Caller { subject: "s".into(), role, unit: unit.map(code) }
    }

    fn at(unit: &str) -> Target {
        Target::unit(Tree::Pre2025, code(unit))
    }

    #[test]
    fn a_role_the_rule_does_not_name_is_refused_with_the_roles_it_does() {
        let e = APPROVE.admit(caller(Role::Reporter, Some("207"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(e.message(), "ApproveReport needs the role approver");
        assert!(APPROVE.admit(caller(Role::Approver, Some("207"))).is_ok());
    }

    #[test]
    fn below_means_strictly_below_and_subtree_includes_the_own_unit() {
        let t = tree();
        let approver = APPROVE.admit(caller(Role::Approver, Some("207"))).unwrap();
        assert!(approver.check(&t, &at("07192")).is_ok());
        for elsewhere in ["207", "193", "22"] {
            let e = approver.check(&t, &at(elsewhere)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{elsewhere}");
            assert!(e.message().contains("is not above unit"), "{e:?}");
        }
        let reader = READ.admit(caller(Role::Analyst, Some("207"))).unwrap();
        for inside in ["207", "07192"] {
            assert!(reader.check(&t, &at(inside)).is_ok(), "{inside}");
        }
        let e = reader.check(&t, &at("193")).unwrap_err();
        assert_eq!(e.message(), "GetReport: unit 193 is outside the caller's unit 207");
        // Every place of a target must hold: one outside refuses the whole request.
        assert!(reader.check(&t, &at("07192").and(Tree::Pre2025, code("193"))).is_err());
        // The nation is a national caller's only.
        assert!(reader.check(&t, &Target::place(Tree::Pre2025, None)).is_err());
        let national = READ.admit(caller(Role::Analyst, None)).unwrap();
        assert!(national.check(&t, &Target::place(Tree::Pre2025, None)).is_ok());
        assert!(national.check(&t, &at("193")).is_ok());
    }

    #[test]
    fn a_missing_or_unknown_rule_is_found_against_the_descriptors() {
        let descriptors = dvk_proto::FILE_DESCRIPTOR_SET;
        let rpcs = declared_rpcs(descriptors, SERVICE);
        assert!(rpcs.iter().any(|r| r == "ApproveReport"), "{rpcs:?}");
        let e = verify(&[APPROVE, READ], descriptors, SERVICE).unwrap_err();
        assert!(e.contains("SubmitReport has no rule"), "{e}");
        let full: Vec<Rule> = rpcs
            .iter()
            .map(|m| Rule { method: Box::leak(m.clone().into_boxed_str()), roles: ANY_ROLE, scope: Scope::Subtree })
            .collect();
        assert_eq!(verify(&full, descriptors, SERVICE), Ok(()));
        let extra: Vec<Rule> = full.iter().copied().chain([Rule { method: "DeleteReport", ..READ }, READ]).collect();
        let e = verify(&extra, descriptors, SERVICE).unwrap_err();
        assert!(e.contains("DeleteReport is not an RPC") && e.contains("GetReport has 2 rules"), "{e}");
    }
}
