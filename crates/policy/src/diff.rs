//! What changes between two policies: per role, the effective permissions
//! gained and lost (resource:action, scope, `when`, field classes), and the
//! settings, separation-of-duties rules and high-risk list around them.

use std::fmt;

use serde::Serialize;

use crate::effective::{Effective, Reach};
use crate::model::Policy;
use crate::schema::{FieldClass, FieldSet, Permission};

/// The difference between an old and a new policy.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PolicyDiff {
    /// Roles whose permissions or flags changed, in the new file's order
    /// (removed roles last).
    pub roles: Vec<RoleDiff>,
    /// `[policy]` settings that changed.
    pub settings: Vec<SettingChange>,
    /// High-risk patterns added (now need an elevation).
    pub high_risk_added: Vec<String>,
    /// High-risk patterns removed (no longer need an elevation).
    pub high_risk_removed: Vec<String>,
    /// Separation-of-duties rules added, as `name: a, b`.
    pub sod_added: Vec<String>,
    /// Separation-of-duties rules removed.
    pub sod_removed: Vec<String>,
}

/// How one role changed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RoleDiff {
    /// The role's name.
    pub role: String,
    /// `added`, `removed` or `changed`.
    pub status: &'static str,
    /// Permissions (or classes of them) the role gains.
    pub gained: Vec<PermissionChange>,
    /// Permissions (or classes of them) the role loses.
    pub lost: Vec<PermissionChange>,
    /// Changes of `superuser` or `partner_bound`.
    pub flags: Vec<String>,
}

/// A permission at one reach, with the classes gained or lost there.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PermissionChange {
    /// `resource:action`.
    pub permission: String,
    /// `all`, `own_partner` or `owned`.
    pub scope: &'static str,
    /// Conditions, as `attr = value`.
    pub when: Vec<String>,
    /// The classes gained or lost, in schema order.
    pub fields: Vec<&'static str>,
    /// Whether the permission itself is gained or lost (not only some of
    /// its classes).
    pub whole: bool,
}

/// One `[policy]` setting that changed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SettingChange {
    /// The setting's name.
    pub setting: &'static str,
    /// Its old value.
    pub old: String,
    /// Its new value.
    pub new: String,
}

impl PolicyDiff {
    /// Whether the policies grant and require exactly the same.
    pub fn is_empty(&self) -> bool {
        *self == PolicyDiff::default()
    }
}

/// Compares two policies.
pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let mut out = PolicyDiff::default();
    for role in &new.roles {
        let now = Effective::of_role(role);
        match old.role(&role.name) {
            None => out.roles.push(RoleDiff {
                role: role.name.clone(),
                status: "added",
                gained: changes(&now, &Effective::default()),
                lost: Vec::new(),
                flags: Vec::new(),
            }),
            Some(before_role) => {
                let before = Effective::of_role(before_role);
                let mut flags = Vec::new();
                if before_role.superuser != role.superuser {
                    flags.push(format!(
                        "superuser: {} → {}",
                        before_role.superuser, role.superuser
                    ));
                }
                if before_role.partner_bound != role.partner_bound {
                    flags.push(format!(
                        "partner_bound: {} → {}",
                        before_role.partner_bound, role.partner_bound
                    ));
                }
                let gained = changes(&now, &before);
                let lost = changes(&before, &now);
                if !gained.is_empty() || !lost.is_empty() || !flags.is_empty() {
                    out.roles.push(RoleDiff {
                        role: role.name.clone(),
                        status: "changed",
                        gained,
                        lost,
                        flags,
                    });
                }
            }
        }
    }
    for role in old.roles.iter().filter(|r| new.role(&r.name).is_none()) {
        out.roles.push(RoleDiff {
            role: role.name.clone(),
            status: "removed",
            gained: Vec::new(),
            lost: changes(&Effective::of_role(role), &Effective::default()),
            flags: Vec::new(),
        });
    }

    let settings = [
        ("name", old.name.clone(), new.name.clone()),
        (
            "min_admins",
            old.min_admins.to_string(),
            new.min_admins.to_string(),
        ),
        (
            "elevation_max_ttl",
            format!("{}s", old.elevation_max_ttl_secs),
            format!("{}s", new.elevation_max_ttl_secs),
        ),
        (
            "metrics_min_group",
            old.metrics_min_group.to_string(),
            new.metrics_min_group.to_string(),
        ),
    ];
    out.settings = settings
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(setting, old, new)| SettingChange { setting, old, new })
        .collect();

    // High risk is compared on what it covers, not how it is written.
    for permission in Permission::all() {
        match (old.is_high_risk(permission), new.is_high_risk(permission)) {
            (false, true) => out.high_risk_added.push(permission.to_string()),
            (true, false) => out.high_risk_removed.push(permission.to_string()),
            _ => {}
        }
    }

    let rule_text = |rule: &crate::model::SodRule| {
        let permissions: Vec<String> = rule.conflicting.iter().map(ToString::to_string).collect();
        format!("{}: {}", rule.name, permissions.join(", "))
    };
    let old_rules: Vec<String> = old.separation_of_duties.iter().map(rule_text).collect();
    let new_rules: Vec<String> = new.separation_of_duties.iter().map(rule_text).collect();
    out.sod_added = new_rules
        .iter()
        .filter(|r| !old_rules.contains(r))
        .cloned()
        .collect();
    out.sod_removed = old_rules
        .iter()
        .filter(|r| !new_rules.contains(r))
        .cloned()
        .collect();
    out
}

/// What `a` grants that `b` does not, entry by entry.
fn changes(a: &Effective, b: &Effective) -> Vec<PermissionChange> {
    a.entries
        .iter()
        .filter_map(|((permission, reach), fields)| {
            let before = b.entries.get(&(*permission, reach.clone()));
            let extra = fields.difference(before.copied().unwrap_or(FieldSet::EMPTY));
            (!extra.is_empty()).then(|| change(*permission, reach, extra, before.is_none()))
        })
        .collect()
}

fn change(
    permission: Permission,
    reach: &Reach,
    fields: FieldSet,
    whole: bool,
) -> PermissionChange {
    PermissionChange {
        permission: permission.to_string(),
        scope: reach.scope.name(),
        when: reach.when.iter().map(ToString::to_string).collect(),
        fields: fields
            .in_schema_order(permission.resource)
            .map(FieldClass::name)
            .collect(),
        whole,
    }
}

impl fmt::Display for PermissionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<22} scope {}", self.permission, self.scope)?;
        if !self.when.is_empty() {
            write!(f, " when {}", self.when.join(" and "))?;
        }
        write!(f, " fields [{}]", self.fields.join(", "))?;
        if !self.whole {
            f.write_str(" (fields only)")?;
        }
        Ok(())
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no differences");
        }
        for role in &self.roles {
            writeln!(f, "role {} ({})", role.role, role.status)?;
            for flag in &role.flags {
                writeln!(f, "  ~ {flag}")?;
            }
            for change in &role.gained {
                writeln!(f, "  + {change}")?;
            }
            for change in &role.lost {
                writeln!(f, "  - {change}")?;
            }
        }
        if !self.settings.is_empty() {
            writeln!(f, "policy settings")?;
            for s in &self.settings {
                writeln!(f, "  ~ {}: {} → {}", s.setting, s.old, s.new)?;
            }
        }
        if !self.high_risk_added.is_empty() || !self.high_risk_removed.is_empty() {
            writeln!(f, "high-risk permissions")?;
            for p in &self.high_risk_added {
                writeln!(f, "  + {p} (now needs an elevation)")?;
            }
            for p in &self.high_risk_removed {
                writeln!(f, "  - {p} (no longer needs an elevation)")?;
            }
        }
        if !self.sod_added.is_empty() || !self.sod_removed.is_empty() {
            writeln!(f, "separation of duties")?;
            for r in &self.sod_added {
                writeln!(f, "  + {r}")?;
            }
            for r in &self.sod_removed {
                writeln!(f, "  - {r}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;
    use crate::parse::parse_policy;

    fn policy(text: &str) -> Policy {
        parse_policy(&SourceFile::new("p.toml", text)).unwrap()
    }

    #[test]
    fn identical_effective_permissions_make_no_difference() {
        let a = policy(
            r#"[roles.a]
grants = [ { on = "metrics", can = ["*"] } ]"#,
        );
        let b = policy(
            r#"[roles.a]
grants = [ { on = "metrics", can = ["read"], fields = ["general"] } ]"#,
        );
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn gains_and_losses_per_role() {
        let old = policy(
            r#"[policy]
min_admins = 2
[roles.finance]
grants = [
  { on = "partner", can = ["read"], fields = ["general"] },
  { on = "partner", can = ["update"], fields = ["financial"] },
]
[roles.gone]
grants = [ { on = "metrics", can = ["read"] } ]
[high_risk]
permissions = ["partner:delete"]"#,
        );
        let new = policy(
            r#"[policy]
min_admins = 3
[roles.finance]
grants = [
  { on = "partner", can = ["read"], fields = ["general", "financial"] },
  { on = "partner", can = ["read"], fields = ["general"], when = { region = "$principal.region" } },
]
[[separation_of_duties]]
name = "x"
conflicting = ["contract:propose", "contract:approve"]"#,
        );
        let d = diff(&old, &new);
        assert_eq!(
            d.to_string(),
            "role finance (changed)
  + partner:read           scope all fields [financial] (fields only)
  + partner:read           scope all when region = $principal.region fields [general]
  - partner:update         scope all fields [financial]
role gone (removed)
  - metrics:read           scope all fields [general]
policy settings
  ~ min_admins: 2 → 3
high-risk permissions
  - partner:delete (no longer needs an elevation)
separation of duties
  + x: contract:propose, contract:approve
"
        );
    }
}
