//! Effective permissions: what a role's grants add up to, one entry per
//! concrete permission and reach (scope and conditions), with the field
//! classes granted there. Lint and diff compare roles through this view, so
//! that a wildcard and the permissions it spells out compare equal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::{Condition, Grant, Policy, Role, Scope};
use crate::schema::{Action, FieldSet, Permission, ResourceType};

/// Which records of a permission's type a role reaches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reach {
    /// The scope.
    pub scope: Scope,
    /// The conditions, sorted and without duplicates.
    pub when: Vec<Condition>,
}

impl Reach {
    /// The reach of a grant.
    pub fn of(grant: &Grant) -> Reach {
        let mut when = grant.when.clone();
        when.sort();
        when.dedup();
        Reach {
            scope: grant.scope,
            when,
        }
    }

    /// Whether every record `other` reaches is reached by `self` too (a
    /// sufficient test: same or `all` scope, and a subset of the conditions).
    pub fn includes(&self, other: &Reach) -> bool {
        (self.scope == Scope::All || self.scope == other.scope)
            && self.when.iter().all(|c| other.when.contains(c))
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope {}", self.scope)?;
        if !self.when.is_empty() {
            let conditions: Vec<_> = self.when.iter().map(ToString::to_string).collect();
            write!(f, " when {}", conditions.join(" and "))?;
        }
        Ok(())
    }
}

/// A role's effective permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effective {
    /// `(permission, reach)` → the classes granted there.
    pub entries: BTreeMap<(Permission, Reach), FieldSet>,
}

impl Effective {
    /// The effective permissions of one grant.
    pub fn of_grant(grant: &Grant) -> Effective {
        let mut out = Effective::default();
        out.add_grant(grant);
        out
    }

    /// The effective permissions of a role.
    pub fn of_role(role: &Role) -> Effective {
        let mut out = Effective::default();
        for grant in &role.grants {
            out.add_grant(grant);
        }
        out
    }

    fn add_grant(&mut self, grant: &Grant) {
        let reach = Reach::of(grant);
        for coverage in grant.coverage() {
            for action in coverage.actions.iter() {
                let permission = Permission {
                    resource: coverage.resource,
                    action,
                };
                let fields = self.entries.entry((permission, reach.clone())).or_default();
                *fields = fields.union(coverage.fields);
            }
        }
    }

    /// The concrete permissions held, whatever their reach.
    pub fn permissions(&self) -> BTreeSet<Permission> {
        self.entries.keys().map(|(p, _)| *p).collect()
    }

    /// Whether `permission` is held with any reach.
    pub fn holds(&self, permission: Permission) -> bool {
        self.entries.keys().any(|(p, _)| *p == permission)
    }

    /// Whether everything `other` grants, `self` grants too (entry by entry,
    /// a reach at least as wide and at least the same classes).
    pub fn includes(&self, other: &Effective) -> bool {
        other.entries.iter().all(|((permission, reach), fields)| {
            self.entries
                .iter()
                .any(|((p, r), f)| p == permission && r.includes(reach) && fields.is_subset(*f))
        })
    }
}

/// The roles that hold `policy:apply`: a principal bound to one of them is
/// an administrator (R13).
pub fn administrator_roles(policy: &Policy) -> BTreeSet<&str> {
    let apply = Permission {
        resource: ResourceType::Policy,
        action: Action::Apply,
    };
    policy
        .roles
        .iter()
        .filter(|role| Effective::of_role(role).holds(apply))
        .map(|role| role.name.as_str())
        .collect()
}
