//! The compiled decision engine.
//!
//! [`CompiledPolicy::compile`] turns a checked [`Policy`] into tables indexed
//! by role, resource type and action, each entry the short list of rules
//! (scope, conditions, field classes) that can allow that request. A
//! decision looks those lists up for the principal's roles and checks each
//! rule's scope and conditions: no parsing, no pattern matching, and no
//! allocation when a request is allowed (unless more than eight grants
//! match it at once).
//!
//! The same rules also become a [`RowFilter`] — the scope and conditions as
//! data — so that a store can turn a list into a query.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use crate::model::{ConditionValue, GrantRef, Policy, Scope};
use crate::schema::{Action, ActionSet, FieldSet, Permission, ResourceType};

/// Attributes of a principal or a record, looked up by name. `Sync`, so
/// that a request can be held across an `.await` in a multi-threaded
/// server.
pub trait Attributes: Sync {
    /// The value of attribute `name`, if it has one.
    fn attr(&self, name: &str) -> Option<&str>;
}

/// No attributes at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAttributes;

impl Attributes for NoAttributes {
    fn attr(&self, _: &str) -> Option<&str> {
        None
    }
}

impl<K: AsRef<str> + Sync, V: AsRef<str> + Sync> Attributes for [(K, V)] {
    fn attr(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(key, _)| key.as_ref() == name)
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str> + Sync, V: AsRef<str> + Sync> Attributes for Vec<(K, V)> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.as_slice().attr(name)
    }
}

impl<K: AsRef<str> + Sync, V: AsRef<str> + Sync, const N: usize> Attributes for [(K, V); N] {
    fn attr(&self, name: &str) -> Option<&str> {
        self.as_slice().attr(name)
    }
}

impl<V: AsRef<str> + Sync> Attributes for BTreeMap<String, V> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.get(name).map(AsRef::as_ref)
    }
}

impl<V: AsRef<str> + Sync, S: BuildHasher + Sync> Attributes for HashMap<String, V, S> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.get(name).map(AsRef::as_ref)
    }
}

/// Who is asking.
#[derive(Clone, Copy)]
pub struct Principal<'a> {
    /// The principal's id (compared with a record's `owner`).
    pub id: &'a str,
    /// Its roles, resolved against the policy deciding.
    pub roles: &'a RoleSet,
    /// The partner it is bound to (api clients), if any.
    pub partner_id: Option<&'a str>,
    /// Its attributes (`$principal.<attr>`).
    pub attrs: &'a dyn Attributes,
}

/// What is asked about.
#[derive(Clone, Copy)]
pub struct Resource<'a> {
    /// The record's type.
    pub kind: ResourceType,
    /// The record's id.
    pub id: &'a str,
    /// The partner the record belongs to (a partner belongs to itself).
    pub partner_id: Option<&'a str>,
    /// The account manager of the record's partner.
    pub owner: Option<&'a str>,
    /// The record's attributes (`when` conditions).
    pub attrs: &'a dyn Attributes,
}

/// One access request.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// Who.
    pub principal: Principal<'a>,
    /// Does what.
    pub action: Action,
    /// To what.
    pub resource: Resource<'a>,
    /// Whether the principal holds an active elevation for this permission.
    pub elevated: bool,
}

impl fmt::Debug for Principal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("partner_id", &self.partner_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("partner_id", &self.partner_id)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("principal", &self.principal)
            .field("action", &self.action)
            .field("resource", &self.resource)
            .field("elevated", &self.elevated)
            .finish()
    }
}

/// A principal's roles, resolved against one compiled policy: the indices of
/// the roles it defines, in file order, and the names it does not define
/// (which grant nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSet {
    policy_uid: u64,
    ids: SmallVec<[u16; 4]>,
    unknown: Vec<Box<str>>,
}

impl RoleSet {
    /// Indices of the defined roles, in file order, without duplicates.
    pub fn ids(&self) -> &[u16] {
        &self.ids
    }

    /// Role names the policy does not define.
    pub fn unknown(&self) -> &[Box<str>] {
        &self.unknown
    }

    /// Whether the principal has no roles at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.unknown.is_empty()
    }
}

/// The grants that matched a request, in file order. Holds up to eight
/// without allocating.
pub type Matched = SmallVec<[GrantRef; 8]>;

/// Why a request was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The principal has no roles.
    NoRoles,
    /// No grant of the principal's roles covers the resource type and action.
    NoGrant,
    /// A partner-bound principal asked about another partner's record.
    OtherPartner,
    /// Grants cover the permission but none's scope or conditions hold.
    Conditions,
    /// Allowed by a grant, but the permission is high-risk and the principal
    /// holds no active elevation for it.
    ElevationRequired,
    /// The role set was resolved against another policy (fail closed).
    StaleRoles,
}

impl Denial {
    /// A stable code for the denial, for logs and audit records.
    pub const fn code(self) -> &'static str {
        match self {
            Denial::NoRoles => "no_roles",
            Denial::NoGrant => "no_grant",
            Denial::OtherPartner => "other_partner",
            Denial::Conditions => "conditions",
            Denial::ElevationRequired => "elevation_required",
            Denial::StaleRoles => "stale_roles",
        }
    }
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The classes visible (for a read) or writable (for a write); empty
    /// when denied.
    pub fields: FieldSet,
    /// The grants whose scope and conditions hold, in file order (kept on an
    /// elevation denial, to say which grant would have allowed it).
    pub matched: Matched,
    /// Why it was denied.
    pub denial: Option<Denial>,
}

impl Decision {
    fn deny(denial: Denial, matched: Matched) -> Decision {
        Decision {
            allowed: false,
            fields: FieldSet::EMPTY,
            matched,
            denial: Some(denial),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Rule {
    grant: GrantRef,
    scope: Scope,
    fields: FieldSet,
    conditions_start: u32,
    conditions_len: u32,
}

#[derive(Clone, Debug)]
struct CompiledCondition {
    attr: Box<str>,
    value: CompiledValue,
}

#[derive(Clone, Debug)]
enum CompiledValue {
    Literal(Box<str>),
    Principal(Box<str>),
}

const CELLS_PER_ROLE: usize = ResourceType::COUNT * Action::COUNT;

/// A policy compiled for deciding: immutable, cheap to share between
/// threads, and swapped as a whole when a new version is applied.
#[derive(Debug)]
pub struct CompiledPolicy {
    uid: u64,
    policy: Policy,
    role_index: HashMap<Box<str>, u16>,
    /// `[role][resource][action]` → `(start, len)` into `rules`.
    cells: Vec<(u32, u32)>,
    rules: Vec<Rule>,
    conditions: Vec<CompiledCondition>,
    high_risk: [ActionSet; ResourceType::COUNT],
    /// `role#index` labels, `label_offsets[role] + grant`.
    labels: Vec<Box<str>>,
    label_offsets: Vec<u32>,
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

impl CompiledPolicy {
    /// Compiles a checked policy. Cannot fail: everything that could go
    /// wrong was rejected by the check.
    pub fn compile(policy: Policy) -> CompiledPolicy {
        let mut cells = vec![(0u32, 0u32); policy.roles.len() * CELLS_PER_ROLE];
        let mut rules = Vec::new();
        let mut conditions = Vec::new();
        let mut labels = Vec::new();
        let mut label_offsets = Vec::with_capacity(policy.roles.len());
        let mut role_index = HashMap::with_capacity(policy.roles.len());

        for (role_id, role) in policy.roles.iter().enumerate() {
            role_index.insert(role.name.as_str().into(), role_id as u16);
            label_offsets.push(labels.len() as u32);
            labels.extend(
                (0..role.grants.len()).map(|i| format!("{}#{i}", role.name).into_boxed_str()),
            );
            // Rules per cell, grants in file order.
            let mut per_cell: Vec<Vec<Rule>> = vec![Vec::new(); CELLS_PER_ROLE];
            for (grant_id, grant) in role.grants.iter().enumerate() {
                let start = conditions.len() as u32;
                conditions.extend(grant.when.iter().map(|c| CompiledCondition {
                    attr: c.attr.as_str().into(),
                    value: match &c.value {
                        ConditionValue::Literal(v) => CompiledValue::Literal(v.as_str().into()),
                        ConditionValue::Principal(a) => CompiledValue::Principal(a.as_str().into()),
                    },
                }));
                for coverage in grant.coverage() {
                    for action in coverage.actions.iter() {
                        per_cell[cell(coverage.resource, action)].push(Rule {
                            grant: GrantRef {
                                role: role_id as u16,
                                grant: grant_id as u16,
                            },
                            scope: grant.scope,
                            fields: coverage.fields,
                            conditions_start: start,
                            conditions_len: grant.when.len() as u32,
                        });
                    }
                }
            }
            for (index, cell_rules) in per_cell.into_iter().enumerate() {
                cells[role_id * CELLS_PER_ROLE + index] =
                    (rules.len() as u32, cell_rules.len() as u32);
                rules.extend(cell_rules);
            }
        }

        let mut high_risk = [ActionSet::EMPTY; ResourceType::COUNT];
        for permission in Permission::all() {
            if policy.is_high_risk(permission) {
                high_risk[permission.resource.index()].insert(permission.action);
            }
        }

        CompiledPolicy {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            policy,
            role_index,
            cells,
            rules,
            conditions,
            high_risk,
            labels,
            label_offsets,
        }
    }

    /// The policy this was compiled from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Resolves role names against this policy. Unknown names are kept (they
    /// grant nothing); duplicates are dropped.
    pub fn resolve_roles<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> RoleSet {
        let mut ids: SmallVec<[u16; 4]> = SmallVec::new();
        let mut unknown: Vec<Box<str>> = Vec::new();
        for name in names {
            match self.role_index.get(name) {
                Some(&id) => {
                    if let Err(at) = ids.binary_search(&id) {
                        ids.insert(at, id);
                    }
                }
                None => {
                    if !unknown.iter().any(|u| &**u == name) {
                        unknown.push(name.into());
                    }
                }
            }
        }
        RoleSet {
            policy_uid: self.uid,
            ids,
            unknown,
        }
    }

    /// The `role#index` label of a grant.
    pub fn label(&self, grant: GrantRef) -> &str {
        self.label_offsets
            .get(usize::from(grant.role))
            .and_then(|&offset| self.labels.get(offset as usize + usize::from(grant.grant)))
            .map_or("?", |label| label)
    }

    /// The name of role `id`.
    pub fn role_name(&self, id: u16) -> &str {
        self.policy
            .roles
            .get(usize::from(id))
            .map_or("?", |role| role.name.as_str())
    }

    /// Whether some grant of the roles covers `resource:action` at all,
    /// whatever its scope and conditions (a list the roles cannot reach in
    /// any case is refused, not answered empty).
    pub fn covers(&self, roles: &RoleSet, resource: ResourceType, action: Action) -> bool {
        roles.policy_uid == self.uid
            && roles
                .ids()
                .iter()
                .any(|&role| !self.rules(role, resource, action).is_empty())
    }

    /// Whether `permission` needs an active elevation.
    pub fn is_high_risk(&self, resource: ResourceType, action: Action) -> bool {
        self.high_risk[resource.index()].contains(action)
    }

    #[inline]
    fn rules(&self, role: u16, resource: ResourceType, action: Action) -> &[Rule] {
        let index = usize::from(role) * CELLS_PER_ROLE + cell(resource, action);
        match self.cells.get(index) {
            Some(&(start, len)) => self
                .rules
                .get(start as usize..(start + len) as usize)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// Decides a request. Default deny: allowed only when some grant of some
    /// role of the principal covers the resource type and action, its scope
    /// and conditions hold, a partner-bound principal stays within its
    /// partner, and a high-risk permission comes with an active elevation.
    #[inline]
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        let principal = &request.principal;
        let resource = &request.resource;
        if principal.roles.policy_uid != self.uid {
            return Decision::deny(Denial::StaleRoles, Matched::new());
        }
        if principal.roles.is_empty() {
            return Decision::deny(Denial::NoRoles, Matched::new());
        }
        let other_partner = resource.kind.is_partner_owned()
            && principal
                .partner_id
                .is_some_and(|own| resource.partner_id != Some(own));

        let mut covered = false;
        let mut fields = FieldSet::EMPTY;
        let mut matched = Matched::new();
        for &role in principal.roles.ids() {
            let rules = self.rules(role, resource.kind, request.action);
            covered |= !rules.is_empty();
            if other_partner {
                continue;
            }
            for rule in rules {
                if self.holds(rule, request) {
                    fields = fields.union(rule.fields);
                    matched.push(rule.grant);
                }
            }
        }

        if matched.is_empty() {
            let denial = if !covered {
                Denial::NoGrant
            } else if other_partner {
                Denial::OtherPartner
            } else {
                Denial::Conditions
            };
            return Decision::deny(denial, matched);
        }
        if !request.elevated && self.is_high_risk(resource.kind, request.action) {
            return Decision::deny(Denial::ElevationRequired, matched);
        }
        Decision {
            allowed: true,
            fields,
            matched,
            denial: None,
        }
    }

    #[inline]
    fn holds(&self, rule: &Rule, request: &Request<'_>) -> bool {
        let principal = &request.principal;
        let resource = &request.resource;
        let scope_holds = match rule.scope {
            Scope::All => true,
            Scope::OwnPartner => {
                principal.partner_id.is_some() && resource.partner_id == principal.partner_id
            }
            Scope::Owned => resource.owner == Some(principal.id),
        };
        scope_holds
            && (rule.conditions_len == 0
                || self
                    .conditions_of(rule)
                    .iter()
                    .all(|condition| condition_holds(condition, principal.attrs, resource.attrs)))
    }

    fn conditions_of(&self, rule: &Rule) -> &[CompiledCondition] {
        let start = rule.conditions_start as usize;
        self.conditions
            .get(start..start + rule.conditions_len as usize)
            .unwrap_or(&[])
    }

    /// A sentence saying why `decision` denied `request` (not part of any
    /// contract; for people). `None` for an allow.
    pub fn deny_reason(&self, request: &Request<'_>, decision: &Decision) -> Option<String> {
        decision.denial?;
        let mut out = String::new();
        self.write_deny_reason(request, decision, &mut out).ok()?;
        Some(out)
    }

    /// Writes the sentence of [`Self::deny_reason`] to `out` (nothing for an
    /// allow), without allocating.
    pub fn write_deny_reason(
        &self,
        request: &Request<'_>,
        decision: &Decision,
        out: &mut impl fmt::Write,
    ) -> fmt::Result {
        let Some(denial) = decision.denial else {
            return Ok(());
        };
        let kind = request.resource.kind;
        let action = request.action;
        match denial {
            Denial::NoRoles => write!(
                out,
                "principal has no roles, so nothing covers {kind}:{action}"
            ),
            Denial::NoGrant => {
                out.write_str("no grant of roles [")?;
                self.write_role_list(request.principal.roles, out)?;
                write!(out, "] covers {kind}:{action}")
            }
            Denial::OtherPartner => {
                write!(
                    out,
                    "principal is bound to partner {} and the {kind} belongs to ",
                    request.principal.partner_id.unwrap_or("?")
                )?;
                match request.resource.partner_id {
                    Some(partner) => write!(out, "partner {partner}"),
                    None => out.write_str("no partner"),
                }
            }
            Denial::Conditions => {
                out.write_str("grants of roles [")?;
                self.write_role_list(request.principal.roles, out)?;
                write!(
                    out,
                    "] cover {kind}:{action} but none applies to {kind} {}: ",
                    request.resource.id
                )?;
                let rules = request
                    .principal
                    .roles
                    .ids()
                    .iter()
                    .flat_map(|&role| self.rules(role, kind, action));
                for (i, rule) in rules.enumerate() {
                    if i > 0 {
                        out.write_str("; ")?;
                    }
                    write!(out, "{} needs ", self.label(rule.grant))?;
                    self.write_failure(rule, request, out)?;
                }
                Ok(())
            }
            Denial::ElevationRequired => {
                write!(
                    out,
                    "{kind}:{action} is high-risk and needs an active elevation (otherwise allowed by "
                )?;
                for (i, &grant) in decision.matched.iter().enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    out.write_str(self.label(grant))?;
                }
                out.write_str(")")
            }
            Denial::StaleRoles => {
                out.write_str("the principal's roles were resolved against another policy version")
            }
        }
    }

    fn write_role_list(&self, roles: &RoleSet, out: &mut impl fmt::Write) -> fmt::Result {
        let defined = roles.ids().iter().map(|&id| (self.role_name(id), ""));
        let unknown = roles.unknown().iter().map(|u| (&**u, " (undefined)"));
        for (i, (name, note)) in defined.chain(unknown).enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            out.write_str(name)?;
            out.write_str(note)?;
        }
        Ok(())
    }

    /// What a rule needs that the request does not give, for reasons.
    fn write_failure(
        &self,
        rule: &Rule,
        request: &Request<'_>,
        out: &mut impl fmt::Write,
    ) -> fmt::Result {
        let principal = &request.principal;
        let resource = &request.resource;
        let mut first = true;
        let mut and = |out: &mut dyn fmt::Write| -> fmt::Result {
            if !std::mem::take(&mut first) {
                out.write_str(" and ")?;
            }
            Ok(())
        };
        match rule.scope {
            Scope::All => {}
            Scope::OwnPartner => {
                and(out)?;
                write!(
                    out,
                    "scope own_partner (principal partner {}, record partner {})",
                    principal.partner_id.unwrap_or("none"),
                    resource.partner_id.unwrap_or("none")
                )?;
            }
            Scope::Owned => {
                and(out)?;
                write!(
                    out,
                    "scope owned (record owner {}, principal {})",
                    resource.owner.unwrap_or("none"),
                    principal.id
                )?;
            }
        }
        for condition in self.conditions_of(rule) {
            and(out)?;
            let actual = resource.attrs.attr(&condition.attr).unwrap_or("missing");
            match &condition.value {
                CompiledValue::Literal(value) => {
                    write!(out, "{} = {value:?} (record has {actual})", condition.attr)?
                }
                CompiledValue::Principal(attr) => write!(
                    out,
                    "{} = $principal.{attr} (record has {actual}, principal has {})",
                    condition.attr,
                    principal.attrs.attr(attr).unwrap_or("missing")
                )?,
            }
        }
        Ok(())
    }

    /// The row conditions under which `principal` may `action` records of
    /// type `kind`, as data for a store to turn into a query: a row is
    /// reachable when any condition holds, and the classes it shows are the
    /// union of the classes of the conditions that hold. Consistent with
    /// [`Self::decide`] row by row.
    pub fn row_filter(
        &self,
        principal: &Principal<'_>,
        kind: ResourceType,
        action: Action,
        elevated: bool,
    ) -> RowFilter {
        let mut out = RowFilter {
            conditions: Vec::new(),
        };
        if principal.roles.policy_uid != self.uid || (!elevated && self.is_high_risk(kind, action))
        {
            return out;
        }
        let bound_partner = principal.partner_id.filter(|_| kind.is_partner_owned());
        for &role in principal.roles.ids() {
            'rules: for rule in self.rules(role, kind, action) {
                let mut condition = RowCondition {
                    partner_id: bound_partner.map(str::to_owned),
                    owner: None,
                    attrs: Vec::new(),
                    fields: rule.fields,
                    grant: rule.grant,
                };
                match rule.scope {
                    Scope::All => {}
                    Scope::OwnPartner => match principal.partner_id {
                        Some(own) => condition.partner_id = Some(own.to_owned()),
                        None => continue 'rules,
                    },
                    Scope::Owned => condition.owner = Some(principal.id.to_owned()),
                }
                for c in self.conditions_of(rule) {
                    let value = match &c.value {
                        CompiledValue::Literal(value) => value.to_string(),
                        CompiledValue::Principal(attr) => match principal.attrs.attr(attr) {
                            Some(value) => value.to_owned(),
                            None => continue 'rules,
                        },
                    };
                    condition.attrs.push((c.attr.to_string(), value));
                }
                out.conditions.push(condition);
            }
        }
        out
    }
}

#[inline]
fn cell(resource: ResourceType, action: Action) -> usize {
    resource.index() * Action::COUNT + action.index()
}

#[inline]
fn condition_holds(
    condition: &CompiledCondition,
    principal: &dyn Attributes,
    resource: &dyn Attributes,
) -> bool {
    let Some(actual) = resource.attr(&condition.attr) else {
        return false;
    };
    match &condition.value {
        CompiledValue::Literal(expected) => actual == &**expected,
        CompiledValue::Principal(attr) => principal.attr(attr) == Some(actual),
    }
}

/// The rows a principal may reach, as a disjunction of conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowFilter {
    /// A row is reachable when any of these holds; none means no row is.
    pub conditions: Vec<RowCondition>,
}

/// One way to reach rows: every constraint present must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowCondition {
    /// The row's `partner_id` must equal this.
    pub partner_id: Option<String>,
    /// The row's `owner` must equal this.
    pub owner: Option<String>,
    /// Each attribute must be present and equal this value.
    pub attrs: Vec<(String, String)>,
    /// The classes the row shows when this condition holds.
    pub fields: FieldSet,
    /// The grant this condition comes from.
    pub grant: GrantRef,
}

impl RowCondition {
    /// Whether a row with these columns satisfies the condition.
    pub fn matches(
        &self,
        partner_id: Option<&str>,
        owner: Option<&str>,
        attrs: &dyn Attributes,
    ) -> bool {
        self.partner_id
            .as_deref()
            .is_none_or(|p| partner_id == Some(p))
            && self.owner.as_deref().is_none_or(|o| owner == Some(o))
            && self
                .attrs
                .iter()
                .all(|(attr, value)| attrs.attr(attr) == Some(value))
    }

    /// Whether the condition constrains nothing (every row satisfies it).
    pub fn is_unconstrained(&self) -> bool {
        self.partner_id.is_none() && self.owner.is_none() && self.attrs.is_empty()
    }
}

impl RowFilter {
    /// Whether no row can be reached.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether every row is reachable (no `WHERE` needed).
    pub fn is_unrestricted(&self) -> bool {
        self.conditions.iter().any(RowCondition::is_unconstrained)
    }

    /// The classes a row shows; empty when the row is not reachable.
    pub fn fields_for(
        &self,
        partner_id: Option<&str>,
        owner: Option<&str>,
        attrs: &dyn Attributes,
    ) -> FieldSet {
        self.conditions
            .iter()
            .filter(|c| c.matches(partner_id, owner, attrs))
            .fold(FieldSet::EMPTY, |acc, c| acc.union(c.fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;
    use crate::parse::parse_policy;
    use crate::schema::FieldClass;

    const POLICY: &str = r#"
[roles.partner_manager]
grants = [
  { on = "partner",  can = ["read", "update"], fields = ["general"], scope = "owned" },
  { on = "contract", can = ["read", "propose"], fields = ["general", "financial"], scope = "owned" },
]
[roles.regional_finance]
grants = [
  { on = "partner", can = ["read"], fields = ["general", "financial"], when = { region = "$principal.region" } },
]
[roles.api_client]
grants = [ { on = "partner", can = ["read"], fields = ["general"], scope = "own_partner" } ]
[roles.admin]
superuser = true
grants = [ { on = "*", can = ["*"] } ]
[high_risk]
permissions = ["partner:delete"]
"#;

    fn compiled() -> CompiledPolicy {
        CompiledPolicy::compile(parse_policy(&SourceFile::new("p.toml", POLICY)).unwrap())
    }

    struct Case<'a> {
        roles: &'a [&'a str],
        principal: &'a str,
        principal_partner: Option<&'a str>,
        principal_region: Option<&'a str>,
        action: Action,
        kind: ResourceType,
        partner: Option<&'a str>,
        owner: Option<&'a str>,
        region: Option<&'a str>,
        elevated: bool,
    }

    impl Default for Case<'_> {
        fn default() -> Self {
            Case {
                roles: &[],
                principal: "u1",
                principal_partner: None,
                principal_region: None,
                action: Action::Read,
                kind: ResourceType::Partner,
                partner: Some("p1"),
                owner: Some("u1"),
                region: Some("emea"),
                elevated: false,
            }
        }
    }

    fn decide(policy: &CompiledPolicy, case: Case<'_>) -> (Decision, Option<String>) {
        let roles = policy.resolve_roles(case.roles.iter().copied());
        let p_attrs: Vec<(&str, &str)> = case
            .principal_region
            .map(|r| ("region", r))
            .into_iter()
            .collect();
        let r_attrs: Vec<(&str, &str)> = case.region.map(|r| ("region", r)).into_iter().collect();
        let request = Request {
            principal: Principal {
                id: case.principal,
                roles: &roles,
                partner_id: case.principal_partner,
                attrs: &p_attrs,
            },
            action: case.action,
            resource: Resource {
                kind: case.kind,
                id: "r1",
                partner_id: case.partner,
                owner: case.owner,
                attrs: &r_attrs,
            },
            elevated: case.elevated,
        };
        let decision = policy.decide(&request);
        let reason = policy.deny_reason(&request, &decision);
        (decision, reason)
    }

    fn labels(policy: &CompiledPolicy, decision: &Decision) -> Vec<String> {
        decision
            .matched
            .iter()
            .map(|&g| policy.label(g).to_owned())
            .collect()
    }

    #[test]
    fn owned_scope_allows_the_account_manager_only() {
        let policy = compiled();
        let (d, _) = decide(
            &policy,
            Case {
                roles: &["partner_manager"],
                ..Case::default()
            },
        );
        assert!(d.allowed);
        assert_eq!(d.fields, FieldSet::of(FieldClass::General));
        assert_eq!(labels(&policy, &d), ["partner_manager#0"]);
        let (d, reason) = decide(
            &policy,
            Case {
                roles: &["partner_manager"],
                owner: Some("u2"),
                ..Case::default()
            },
        );
        assert_eq!(d.denial, Some(Denial::Conditions));
        assert!(
            reason
                .unwrap()
                .contains("scope owned (record owner u2, principal u1)")
        );
    }

    #[test]
    fn fields_are_the_union_of_matching_grants() {
        let policy = compiled();
        let (d, _) = decide(
            &policy,
            Case {
                roles: &["regional_finance", "partner_manager"],
                principal_region: Some("emea"),
                ..Case::default()
            },
        );
        assert!(d.allowed);
        assert_eq!(
            d.fields,
            FieldSet::from_iter([FieldClass::General, FieldClass::Financial])
        );
        assert_eq!(
            labels(&policy, &d),
            ["partner_manager#0", "regional_finance#0"]
        );
    }

    #[test]
    fn conditions_fail_on_missing_attributes() {
        let policy = compiled();
        let (d, _) = decide(
            &policy,
            Case {
                roles: &["regional_finance"],
                ..Case::default()
            },
        );
        assert_eq!(d.denial, Some(Denial::Conditions));
        let (d, _) = decide(
            &policy,
            Case {
                roles: &["regional_finance"],
                principal_region: Some("emea"),
                region: None,
                ..Case::default()
            },
        );
        assert_eq!(d.denial, Some(Denial::Conditions));
    }

    #[test]
    fn partner_bound_principals_stay_in_their_partner() {
        let policy = compiled();
        let (d, _) = decide(
            &policy,
            Case {
                roles: &["api_client"],
                principal_partner: Some("p1"),
                ..Case::default()
            },
        );
        assert!(d.allowed);
        // Even an admin role cannot take a partner-bound principal elsewhere.
        let (d, reason) = decide(
            &policy,
            Case {
                roles: &["admin"],
                principal_partner: Some("p2"),
                ..Case::default()
            },
        );
        assert_eq!(d.denial, Some(Denial::OtherPartner));
        assert!(reason.unwrap().contains("bound to partner p2"));
        // Resources that belong to no partner are not narrowed.
        let (d, _) = decide(
            &policy,
            Case {
                roles: &["admin"],
                principal_partner: Some("p2"),
                kind: ResourceType::Metrics,
                partner: None,
                ..Case::default()
            },
        );
        assert!(d.allowed);
    }

    #[test]
    fn high_risk_needs_elevation() {
        let policy = compiled();
        let case = || Case {
            roles: &["admin"],
            action: Action::Delete,
            ..Case::default()
        };
        let (d, reason) = decide(&policy, case());
        assert_eq!(d.denial, Some(Denial::ElevationRequired));
        assert!(reason.unwrap().contains("admin#0"));
        let (d, _) = decide(
            &policy,
            Case {
                elevated: true,
                ..case()
            },
        );
        assert!(d.allowed);
        assert_eq!(
            d.fields,
            FieldSet::from_iter([FieldClass::General, FieldClass::Financial])
        );
    }

    #[test]
    fn unknown_roles_grant_nothing() {
        let policy = compiled();
        let (d, reason) = decide(
            &policy,
            Case {
                roles: &["ghost"],
                ..Case::default()
            },
        );
        assert_eq!(d.denial, Some(Denial::NoGrant));
        assert_eq!(
            reason.unwrap(),
            "no grant of roles [ghost (undefined)] covers partner:read"
        );
        let (d, _) = decide(&policy, Case::default());
        assert_eq!(d.denial, Some(Denial::NoRoles));
    }

    #[test]
    fn role_sets_from_another_policy_are_refused() {
        let a = compiled();
        let b = compiled();
        let roles = a.resolve_roles(["admin"]);
        let request = Request {
            principal: Principal {
                id: "u1",
                roles: &roles,
                partner_id: None,
                attrs: &NoAttributes,
            },
            action: Action::Read,
            resource: Resource {
                kind: ResourceType::Metrics,
                id: "m",
                partner_id: None,
                owner: None,
                attrs: &NoAttributes,
            },
            elevated: false,
        };
        assert!(a.decide(&request).allowed);
        assert_eq!(b.decide(&request).denial, Some(Denial::StaleRoles));
    }

    #[test]
    fn row_filters_carry_scope_and_conditions() {
        let policy = compiled();
        let roles = policy.resolve_roles(["partner_manager", "regional_finance"]);
        let attrs = [("region", "emea")];
        let principal = Principal {
            id: "u1",
            roles: &roles,
            partner_id: None,
            attrs: &attrs,
        };
        let filter = policy.row_filter(&principal, ResourceType::Partner, Action::Read, false);
        assert_eq!(filter.conditions.len(), 2);
        assert_eq!(filter.conditions[0].owner.as_deref(), Some("u1"));
        assert_eq!(
            filter.conditions[1].attrs,
            [("region".to_owned(), "emea".to_owned())]
        );
        assert!(!filter.is_unrestricted());
        let both = filter.fields_for(Some("p1"), Some("u1"), &[("region", "emea")]);
        assert_eq!(
            both,
            FieldSet::from_iter([FieldClass::General, FieldClass::Financial])
        );
        assert!(
            filter
                .fields_for(Some("p1"), Some("u2"), &[("region", "apac")])
                .is_empty()
        );
        // High-risk lists need an elevation too.
        let admin = policy.resolve_roles(["admin"]);
        let principal = Principal {
            id: "u1",
            roles: &admin,
            partner_id: None,
            attrs: &NoAttributes,
        };
        assert!(
            policy
                .row_filter(&principal, ResourceType::Partner, Action::Delete, false)
                .is_empty()
        );
        assert!(
            policy
                .row_filter(&principal, ResourceType::Partner, Action::Delete, true)
                .is_unrestricted()
        );
    }
}
