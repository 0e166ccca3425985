//! The validated policy: what a policy file says, in types that cannot hold
//! an unknown resource, action, class or scope. Built only by
//! [`crate::parse::parse_policy`]; compiled by [`crate::engine`].

use std::fmt;

use crate::diagnostic::Span;
use crate::schema::{Action, ActionSet, FieldSet, Permission, ResourceType};

/// A checked policy file.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `[policy] name`.
    pub name: String,
    /// `[policy] min_admins` (R13): the fewest principals holding
    /// `policy:apply` that changes may leave.
    pub min_admins: u32,
    /// `[policy] elevation_max_ttl` (R9), in seconds.
    pub elevation_max_ttl_secs: u64,
    /// `[policy] metrics_min_group` (R6): the fewest distinct partners an
    /// aggregated metrics group may have.
    pub metrics_min_group: u32,
    /// Roles in file order; a grant is named `role#index` after it.
    pub roles: Vec<Role>,
    /// `[[separation_of_duties]]` rules in file order.
    pub separation_of_duties: Vec<SodRule>,
    /// `[high_risk] permissions`.
    pub high_risk: Vec<PermissionPattern>,
    /// Where `[high_risk]` is, for findings about it.
    pub high_risk_span: Option<Span>,
}

impl Policy {
    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|role| role.name == name)
    }

    /// Whether `permission` is high-risk (needs an active elevation).
    pub fn is_high_risk(&self, permission: Permission) -> bool {
        self.high_risk
            .iter()
            .any(|pattern| pattern.matches(permission))
    }
}

/// A role: a named set of grants with one purpose.
#[derive(Clone, Debug)]
pub struct Role {
    /// The role's name, as bound to principals.
    pub name: String,
    /// What the role is for.
    pub description: Option<String>,
    /// Exempt from the wildcard, containment and separation-of-duties lints
    /// (R12); run-time maker-checker still binds it.
    pub superuser: bool,
    /// Meant for partner-bound principals (api clients): lint reports grants
    /// wider than `own_partner`. Defaults to true for a role named
    /// `api_client`.
    pub partner_bound: bool,
    /// Grants in file order.
    pub grants: Vec<Grant>,
    /// Where the role's name is defined.
    pub span: Span,
}

/// One grant: actions on a resource type, within a scope, for some field
/// classes, under conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `on`.
    pub on: ResourcePattern,
    /// `can`.
    pub can: ActionPattern,
    /// `fields`; `None` means every class of each covered resource type.
    pub fields: Option<FieldSet>,
    /// `scope`.
    pub scope: Scope,
    /// `when`, in file order; all must hold.
    pub when: Vec<Condition>,
    /// The whole grant.
    pub span: Span,
    /// The `on` value.
    pub on_span: Span,
    /// The `can` value.
    pub can_span: Span,
}

/// What one grant grants on one resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// The resource type.
    pub resource: ResourceType,
    /// Its actions the grant covers.
    pub actions: ActionSet,
    /// Its field classes the grant covers.
    pub fields: FieldSet,
}

impl Grant {
    /// The resource types this grant covers, each with the actions and
    /// classes it gets, following PRODUCT.md: `on = "*"` covers every type
    /// that has at least one of the grant's actions and at least one of its
    /// classes and on which its scope and conditions are valid.
    pub fn coverage(&self) -> impl Iterator<Item = Coverage> + '_ {
        let types: &[ResourceType] = match &self.on {
            ResourcePattern::Any => ResourceType::ALL,
            ResourcePattern::One(resource) => std::slice::from_ref(resource),
        };
        types.iter().filter_map(move |&resource| {
            if self.is_restricted() && !resource.is_partner_owned() {
                return None;
            }
            let actions = match self.can {
                ActionPattern::Any => resource.actions(),
                ActionPattern::Set(set) => set.intersection(resource.actions()),
            };
            let fields = match self.fields {
                None => resource.classes(),
                Some(set) => set.intersection(resource.classes()),
            };
            (!actions.is_empty() && !fields.is_empty()).then_some(Coverage {
                resource,
                actions,
                fields,
            })
        })
    }

    /// Whether the grant has a scope other than `all` or conditions, which
    /// make it apply to partner-owned resource types only.
    pub fn is_restricted(&self) -> bool {
        self.scope != Scope::All || !self.when.is_empty()
    }
}

/// `on`: one resource type or every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourcePattern {
    /// `"*"`.
    Any,
    /// A named type.
    One(ResourceType),
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePattern::Any => f.write_str("*"),
            ResourcePattern::One(resource) => resource.fmt(f),
        }
    }
}

/// `can`: some actions or every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionPattern {
    /// `["*"]`.
    Any,
    /// Named actions.
    Set(ActionSet),
}

/// Which records of a partner-owned type a grant reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every record.
    All,
    /// Records of the principal's own partner; never true for a principal
    /// without one.
    OwnPartner,
    /// Records whose partner the principal manages (`owner`).
    Owned,
}

impl Scope {
    /// The name used in policy files.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::OwnPartner => "own_partner",
            Scope::Owned => "owned",
        }
    }

    /// Parses a scope name.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "all" => Some(Scope::All),
            "own_partner" => Some(Scope::OwnPartner),
            "owned" => Some(Scope::Owned),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `when` entry: a record attribute equals a literal or an attribute of
/// the principal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Condition {
    /// The record attribute.
    pub attr: String,
    /// What it must equal.
    pub value: ConditionValue,
}

/// The right-hand side of a condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionValue {
    /// A literal string.
    Literal(String),
    /// `$principal.<attr>`.
    Principal(String),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            ConditionValue::Literal(value) => write!(f, "{} = {value:?}", self.attr),
            ConditionValue::Principal(attr) => write!(f, "{} = $principal.{attr}", self.attr),
        }
    }
}

/// A `[[separation_of_duties]]` rule: no one principal may hold two of its
/// permissions.
#[derive(Clone, Debug)]
pub struct SodRule {
    /// The rule's name, quoted in refusals.
    pub name: String,
    /// The conflicting permissions (at least two).
    pub conflicting: Vec<Permission>,
    /// Where the rule is.
    pub span: Span,
}

impl SodRule {
    /// Every pair of permissions the rule forbids holding together.
    pub fn pairs(&self) -> impl Iterator<Item = (Permission, Permission)> + '_ {
        self.conflicting
            .iter()
            .enumerate()
            .flat_map(move |(i, &a)| {
                self.conflicting[i + 1..]
                    .iter()
                    .filter(move |&&b| b != a)
                    .map(move |&b| (a, b))
            })
    }
}

/// A `resource:action` pattern of the high-risk list; `*` matches any part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermissionPattern {
    /// `None` for `*`.
    pub resource: Option<ResourceType>,
    /// `None` for `*`.
    pub action: Option<Action>,
    /// Where the pattern is written.
    pub span: Span,
}

impl PermissionPattern {
    /// Whether the pattern matches a concrete permission.
    pub fn matches(&self, permission: Permission) -> bool {
        self.resource.is_none_or(|r| r == permission.resource)
            && self.action.is_none_or(|a| a == permission.action)
    }
}

impl fmt::Display for PermissionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resource {
            Some(resource) => write!(f, "{resource}:")?,
            None => f.write_str("*:")?,
        }
        match self.action {
            Some(action) => write!(f, "{action}"),
            None => f.write_str("*"),
        }
    }
}

/// Names a grant: its role's index and its own index in file order, shown
/// as `role#index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantRef {
    /// Index of the role in [`Policy::roles`].
    pub role: u16,
    /// Index of the grant in its role.
    pub grant: u16,
}
