//! Policy file → [`Policy`]: TOML parsing and validation against the
//! built-in schema, reporting every error found (not only the first), each
//! pointing at the offending text.

use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::model::{
    ActionPattern, Condition, ConditionValue, Grant, PermissionPattern, Policy, ResourcePattern,
    Role, Scope, SodRule,
};
use crate::reader::{Item, Reader, entry, get, parse_toml, span_of};
use crate::schema::{Action, ActionSet, FieldClass, FieldSet, Permission, ResourceType, suggest};

/// Default for `[policy] min_admins`.
pub const DEFAULT_MIN_ADMINS: u32 = 2;
/// Default for `[policy] elevation_max_ttl`: one hour.
pub const DEFAULT_ELEVATION_MAX_TTL_SECS: u64 = 3600;
/// Default for `[policy] metrics_min_group`.
pub const DEFAULT_METRICS_MIN_GROUP: u32 = 5;
/// The longest elevation a policy may allow: one day.
pub const MAX_ELEVATION_TTL_SECS: u64 = 24 * 3600;

const TOP_KEYS: &[&str] = &["policy", "roles", "separation_of_duties", "high_risk"];
const POLICY_KEYS: &[&str] = &[
    "name",
    "min_admins",
    "elevation_max_ttl",
    "metrics_min_group",
];
const ROLE_KEYS: &[&str] = &["description", "superuser", "partner_bound", "grants"];
const GRANT_KEYS: &[&str] = &["on", "can", "fields", "scope", "when"];
const SOD_KEYS: &[&str] = &["name", "conflicting", "description"];
const HIGH_RISK_KEYS: &[&str] = &["permissions"];

/// Parses and validates a policy file. On failure, returns every error found,
/// in file order.
pub fn parse_policy(source: &SourceFile) -> Result<Policy, Vec<Diagnostic>> {
    let root = parse_toml(source)?;
    let root_span = span_of(&root);
    let root = root.get_ref();
    let mut r = Reader::default();
    r.unknown_keys(root, TOP_KEYS, "a policy file");

    let mut policy = Policy {
        name: String::new(),
        min_admins: DEFAULT_MIN_ADMINS,
        elevation_max_ttl_secs: DEFAULT_ELEVATION_MAX_TTL_SECS,
        metrics_min_group: DEFAULT_METRICS_MIN_GROUP,
        roles: Vec::new(),
        separation_of_duties: Vec::new(),
        high_risk: Vec::new(),
        high_risk_span: None,
    };

    if let Some(item) = get(root, "policy") {
        read_settings(&mut r, item, &mut policy);
    }
    match get(root, "roles") {
        Some(item) => policy.roles = read_roles(&mut r, item),
        None => r.push(
            Diagnostic::error(
                "missing-key",
                "the policy defines no roles",
                Span::new(root_span.start, root_span.start),
            )
            .with_help("add a [roles.<name>] table with a description and grants"),
        ),
    }
    if let Some(item) = get(root, "separation_of_duties") {
        policy.separation_of_duties = read_sod(&mut r, item);
    }
    if let Some((key, item)) = entry(root, "high_risk") {
        policy.high_risk_span = Some(span_of(key));
        policy.high_risk = read_high_risk(&mut r, item);
    }

    if r.diagnostics.is_empty() {
        Ok(policy)
    } else {
        r.diagnostics.sort_by_key(|d| d.span.map(|s| s.start));
        Err(r.diagnostics)
    }
}

fn read_settings(r: &mut Reader, item: &Item<'_>, policy: &mut Policy) {
    let Some(table) = r.table(item, "[policy]") else {
        return;
    };
    r.unknown_keys(table, POLICY_KEYS, "[policy]");
    if let Some(value) = get(table, "name")
        && let Some(name) = r.string(value, "\"name\"")
    {
        policy.name = name.to_owned();
    }
    if let Some(value) = get(table, "min_admins")
        && let Some(n) = r.integer(value, "min_admins", 1, 1000)
    {
        policy.min_admins = n as u32;
    }
    if let Some(value) = get(table, "metrics_min_group")
        && let Some(n) = r.integer(value, "metrics_min_group", 1, 1_000_000)
    {
        policy.metrics_min_group = n as u32;
    }
    if let Some(value) = get(table, "elevation_max_ttl")
        && let Some(text) = r.string(value, "elevation_max_ttl")
    {
        match parse_duration(text) {
            Some(secs) if secs > 0 && secs <= MAX_ELEVATION_TTL_SECS => {
                policy.elevation_max_ttl_secs = secs;
            }
            Some(_) => r.error(
                "invalid-value",
                "elevation_max_ttl must be more than 0s and at most 24h",
                span_of(value),
            ),
            None => r.push(
                Diagnostic::error(
                    "invalid-duration",
                    format!("invalid duration \"{text}\""),
                    span_of(value),
                )
                .with_label("expected a duration")
                .with_help("write a number and a unit: \"90s\", \"15m\", \"1h\", \"1h30m\""),
            ),
        }
    }
}

/// Parses a duration such as `90s`, `15m`, `1h` or `1h30m` into seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
        saw_unit = true;
    }
    (number.is_empty() && saw_unit).then_some(total)
}

fn read_roles(r: &mut Reader, item: &Item<'_>) -> Vec<Role> {
    let Some(table) = r.table(item, "[roles]") else {
        return Vec::new();
    };
    if table.len() > usize::from(u16::MAX) {
        r.error(
            "too-many",
            "a policy may define at most 65535 roles",
            span_of(item),
        );
        return Vec::new();
    }
    let mut roles = Vec::with_capacity(table.len());
    for (key, value) in table.iter() {
        let name: &str = key.get_ref();
        let span = span_of(key);
        if !is_identifier(name) {
            r.push(
                Diagnostic::error("invalid-name", format!("invalid role name \"{name}\""), span)
                    .with_help("role names are lowercase letters, digits and `_`, starting with a letter, at most 64 characters"),
            );
        }
        let Some(role_table) = r.table(value, &format!("role \"{name}\"")) else {
            continue;
        };
        let context = format!("role \"{name}\"");
        r.unknown_keys(role_table, ROLE_KEYS, &context);
        let description = get(role_table, "description")
            .and_then(|v| r.string(v, "\"description\""))
            .map(str::to_owned);
        let superuser = get(role_table, "superuser")
            .and_then(|v| r.boolean(v, "\"superuser\""))
            .unwrap_or(false);
        let partner_bound = get(role_table, "partner_bound")
            .and_then(|v| r.boolean(v, "\"partner_bound\""))
            .unwrap_or(name == "api_client");
        let grants = match get(role_table, "grants") {
            Some(grants) => read_grants(r, grants, name),
            None => {
                r.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("role \"{name}\" has no \"grants\""),
                        span,
                    )
                    .with_help("add grants = [ { on = \"…\", can = [\"…\"] } ]"),
                );
                Vec::new()
            }
        };
        roles.push(Role {
            name: name.to_owned(),
            description,
            superuser,
            partner_bound,
            grants,
            span,
        });
    }
    roles
}

fn read_grants(r: &mut Reader, item: &Item<'_>, role: &str) -> Vec<Grant> {
    let Some(items) = r.array(item, &format!("the grants of role \"{role}\"")) else {
        return Vec::new();
    };
    if items.len() > usize::from(u16::MAX) {
        r.error(
            "too-many",
            "a role may have at most 65535 grants",
            span_of(item),
        );
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(index, grant)| read_grant(r, grant, &format!("grant {role}#{index}")))
        .collect()
}

fn read_grant(r: &mut Reader, item: &Item<'_>, context: &str) -> Option<Grant> {
    let table = r.table(item, context)?;
    let span = span_of(item);
    let errors_before = r.diagnostics.len();
    r.unknown_keys(table, GRANT_KEYS, context);

    let on = match get(table, "on") {
        Some(value) => read_on(r, value).map(|on| (on, span_of(value))),
        None => {
            r.error("missing-key", format!("{context} has no \"on\""), span);
            None
        }
    };
    let resource = on.and_then(|(on, _)| match on {
        ResourcePattern::One(resource) => Some(resource),
        ResourcePattern::Any => None,
    });
    let can = match get(table, "can") {
        Some(value) => read_can(r, value, on.map(|(on, _)| on)).map(|can| (can, span_of(value))),
        None => {
            r.error("missing-key", format!("{context} has no \"can\""), span);
            None
        }
    };
    let fields = get(table, "fields").map(|value| read_fields(r, value, on.map(|(on, _)| on)));
    let scope = match get(table, "scope") {
        Some(value) => read_scope(r, value).map(|scope| (scope, span_of(value))),
        None => Some((Scope::All, span)),
    };
    let when = match entry(table, "when") {
        Some((key, value)) => read_when(r, value).map(|when| (when, span_of(key))),
        None => Some((Vec::new(), span)),
    };

    // Scopes and conditions are meaningful on partner-owned types only.
    if let Some(resource) = resource.filter(|r| !r.is_partner_owned()) {
        if let Some((scope, scope_span)) = scope.filter(|(s, _)| *s != Scope::All) {
            r.push(not_applicable(
                &format!("scope {scope}"),
                resource,
                scope_span,
            ));
        }
        if let Some((_, when_span)) = when.as_ref().filter(|(w, _)| !w.is_empty()) {
            r.push(not_applicable("a when condition", resource, *when_span));
        }
    }

    let ((on, on_span), (can, can_span), fields, (scope, _), (when, _)) =
        (on?, can?, fields.unwrap_or(Some(None))?, scope?, when?);
    if r.diagnostics.len() > errors_before {
        return None;
    }
    let grant = Grant {
        on,
        can,
        fields,
        scope,
        when,
        span,
        on_span,
        can_span,
    };
    if on == ResourcePattern::Any && grant.coverage().next().is_none() {
        r.push(
            Diagnostic::error(
                "grant-covers-nothing",
                format!("{context} on \"*\" covers no resource type"),
                span,
            )
            .with_help("no resource type has one of its actions and one of its field classes while accepting its scope and conditions (scopes and `when` apply to partner, contact, contract and transaction only)"),
        );
        return None;
    }
    Some(grant)
}

fn not_applicable(what: &str, resource: ResourceType, span: Span) -> Diagnostic {
    Diagnostic::error(
        "scope-not-applicable",
        format!("{what} cannot apply to {resource}"),
        span,
    )
    .with_label(format!("{resource} records do not belong to a partner"))
    .with_help("scopes other than \"all\" and `when` conditions apply to partner, contact, contract and transaction only")
}

fn read_on(r: &mut Reader, item: &Item<'_>) -> Option<ResourcePattern> {
    let text = r.string(item, "\"on\"")?;
    if text == "*" {
        return Some(ResourcePattern::Any);
    }
    if let Some(resource) = ResourceType::parse(text) {
        return Some(ResourcePattern::One(resource));
    }
    let names = ResourceType::ALL.iter().map(|r| r.name());
    r.push(
        with_suggestion(
            Diagnostic::error(
                "unknown-resource",
                format!("unknown resource type \"{text}\""),
                span_of(item),
            ),
            text,
            names.clone(),
        )
        .with_label("not a resource type")
        .with_help(format!(
            "resource types are: {}, or \"*\" for all",
            names.collect::<Vec<_>>().join(", ")
        )),
    );
    None
}

fn with_suggestion<'a>(
    mut diagnostic: Diagnostic,
    text: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Diagnostic {
    if let Some(best) = suggest(text, candidates) {
        diagnostic
            .message
            .push_str(&format!("; did you mean \"{best}\"?"));
    }
    diagnostic
}

fn read_can(r: &mut Reader, item: &Item<'_>, on: Option<ResourcePattern>) -> Option<ActionPattern> {
    let names = r.strings(item, "\"can\"")?;
    if names.is_empty() {
        r.push(
            Diagnostic::error("empty-list", "\"can\" is empty", span_of(item))
                .with_help("name at least one action, or remove the grant"),
        );
        return None;
    }
    let mut set = ActionSet::EMPTY;
    let mut any = false;
    let mut ok = true;
    for (name, span) in names {
        if name == "*" {
            any = true;
            continue;
        }
        match (Action::parse(name), on) {
            (Some(action), Some(ResourcePattern::One(resource)))
                if !resource.has_action(action) =>
            {
                ok = false;
                r.push(unknown_action(name, resource, span));
            }
            (Some(action), _) => set.insert(action),
            (None, Some(ResourcePattern::One(resource))) => {
                ok = false;
                r.push(unknown_action(name, resource, span));
            }
            (None, _) => {
                ok = false;
                let names = Action::ALL.iter().map(|a| a.name());
                r.push(
                    with_suggestion(
                        Diagnostic::error(
                            "unknown-action",
                            format!("unknown action \"{name}\""),
                            span,
                        ),
                        name,
                        names.clone(),
                    )
                    .with_label("not an action of any resource type"),
                );
            }
        }
    }
    ok.then_some(if any {
        ActionPattern::Any
    } else {
        ActionPattern::Set(set)
    })
}

fn unknown_action(name: &str, resource: ResourceType, span: Span) -> Diagnostic {
    let names = resource.action_list().iter().map(|a| a.name());
    let known_elsewhere = Action::parse(name).is_some();
    let message = if known_elsewhere {
        format!("{resource} has no action \"{name}\"")
    } else {
        format!("unknown action \"{name}\" on {resource}")
    };
    with_suggestion(
        Diagnostic::error("unknown-action", message, span),
        name,
        names.clone(),
    )
    .with_label(format!("not an action of {resource}"))
    .with_help(format!(
        "{resource} actions are: {}",
        names.collect::<Vec<_>>().join(", ")
    ))
}

fn read_fields(
    r: &mut Reader,
    item: &Item<'_>,
    on: Option<ResourcePattern>,
) -> Option<Option<FieldSet>> {
    let names = r.strings(item, "\"fields\"")?;
    if names.is_empty() {
        r.push(
            Diagnostic::error("empty-list", "\"fields\" is empty", span_of(item)).with_help(
                "name at least one field class, or omit \"fields\" to cover every class",
            ),
        );
        return None;
    }
    let mut set = FieldSet::EMPTY;
    let mut ok = true;
    for (name, span) in names {
        let Some(class) = FieldClass::parse(name) else {
            ok = false;
            let names = FieldClass::ALL.iter().map(|c| c.name());
            r.push(
                with_suggestion(
                    Diagnostic::error(
                        "unknown-field-class",
                        format!("unknown field class \"{name}\""),
                        span,
                    ),
                    name,
                    names.clone(),
                )
                .with_label("not a field class")
                .with_help(format!(
                    "field classes are: {}",
                    names.collect::<Vec<_>>().join(", ")
                )),
            );
            continue;
        };
        if let Some(ResourcePattern::One(resource)) = on
            && !resource.classes().contains(class)
        {
            ok = false;
            let classes: Vec<_> = resource.class_list().iter().map(|c| c.name()).collect();
            r.push(
                Diagnostic::error(
                    "unknown-field-class",
                    format!("{resource} has no {class} fields"),
                    span,
                )
                .with_label(format!("not a class of {resource}"))
                .with_help(format!(
                    "{resource} field classes are: {}",
                    classes.join(", ")
                )),
            );
            continue;
        }
        set.insert(class);
    }
    ok.then_some(Some(set))
}

fn read_scope(r: &mut Reader, item: &Item<'_>) -> Option<Scope> {
    let text = r.string(item, "\"scope\"")?;
    let scope = Scope::parse(text);
    if scope.is_none() {
        let names = ["all", "own_partner", "owned"];
        r.push(
            with_suggestion(
                Diagnostic::error(
                    "unknown-scope",
                    format!("unknown scope \"{text}\""),
                    span_of(item),
                ),
                text,
                names,
            )
            .with_label("not a scope")
            .with_help("scopes are: all, own_partner, owned"),
        );
    }
    scope
}

fn read_when(r: &mut Reader, item: &Item<'_>) -> Option<Vec<Condition>> {
    let table = r.table(item, "\"when\"")?;
    if table.is_empty() {
        r.push(
            Diagnostic::error("empty-list", "\"when\" is empty", span_of(item))
                .with_help("give at least one condition, such as when = { region = \"$principal.region\" }, or remove it"),
        );
        return None;
    }
    let mut conditions = Vec::with_capacity(table.len());
    let mut ok = true;
    for (key, value) in table.iter() {
        let attr: &str = key.get_ref();
        if !is_identifier(attr) {
            ok = false;
            r.error(
                "invalid-condition",
                format!("invalid attribute name \"{attr}\" in \"when\""),
                span_of(key),
            );
        }
        let Some(text) = r.string(value, &format!("condition \"{attr}\"")) else {
            ok = false;
            continue;
        };
        let value = match text.strip_prefix('$') {
            None => ConditionValue::Literal(text.to_owned()),
            Some(reference) => match reference.strip_prefix("principal.") {
                Some(principal_attr) if is_identifier(principal_attr) => {
                    ConditionValue::Principal(principal_attr.to_owned())
                }
                _ => {
                    ok = false;
                    r.push(
                        Diagnostic::error(
                            "invalid-condition",
                            format!("invalid reference \"{text}\""),
                            span_of(value),
                        )
                        .with_label("expected $principal.<attribute>")
                        .with_help("a condition value is a literal string or $principal.<attribute>, such as \"$principal.region\""),
                    );
                    continue;
                }
            },
        };
        conditions.push(Condition {
            attr: attr.to_owned(),
            value,
        });
    }
    ok.then_some(conditions)
}

fn read_sod(r: &mut Reader, item: &Item<'_>) -> Vec<SodRule> {
    let Some(items) = r.array(item, "[[separation_of_duties]]") else {
        return Vec::new();
    };
    let mut rules: Vec<SodRule> = Vec::new();
    for rule in items {
        let Some(table) = r.table(rule, "a separation-of-duties rule") else {
            continue;
        };
        let span = span_of(rule);
        r.unknown_keys(table, SOD_KEYS, "a separation-of-duties rule");
        let name = match get(table, "name") {
            Some(value) => r.string(value, "\"name\"").map(str::to_owned),
            None => {
                r.error(
                    "missing-key",
                    "separation-of-duties rule has no \"name\"",
                    span,
                );
                None
            }
        };
        if let Some(value) = get(table, "description") {
            r.string(value, "\"description\"");
        }
        let conflicting = match get(table, "conflicting") {
            Some(value) => read_conflicting(r, value),
            None => {
                r.error(
                    "missing-key",
                    "separation-of-duties rule has no \"conflicting\"",
                    span,
                );
                None
            }
        };
        let (Some(name), Some(conflicting)) = (name, conflicting) else {
            continue;
        };
        if rules.iter().any(|other| other.name == name) {
            r.error(
                "duplicate-name",
                format!("two separation-of-duties rules are named \"{name}\""),
                span,
            );
            continue;
        }
        rules.push(SodRule {
            name,
            conflicting,
            span,
        });
    }
    rules
}

fn read_conflicting(r: &mut Reader, item: &Item<'_>) -> Option<Vec<Permission>> {
    let names = r.strings(item, "\"conflicting\"")?;
    let mut out = Vec::with_capacity(names.len());
    let mut ok = true;
    for (text, span) in &names {
        match read_pattern(r, text, *span) {
            Some(PermissionPattern {
                resource: Some(resource),
                action: Some(action),
                ..
            }) => out.push(Permission { resource, action }),
            Some(_) => {
                ok = false;
                r.push(
                    Diagnostic::error(
                        "invalid-permission",
                        format!("separation-of-duties permission \"{text}\" has a wildcard"),
                        *span,
                    )
                    .with_help("name concrete permissions, such as \"contract:approve\""),
                );
            }
            None => ok = false,
        }
    }
    out.sort();
    out.dedup();
    if ok && out.len() < 2 {
        r.push(
            Diagnostic::error(
                "invalid-value",
                "\"conflicting\" needs at least two different permissions",
                span_of(item),
            )
            .with_help("such as conflicting = [\"contract:propose\", \"contract:approve\"]"),
        );
        return None;
    }
    ok.then_some(out)
}

fn read_high_risk(r: &mut Reader, item: &Item<'_>) -> Vec<PermissionPattern> {
    let Some(table) = r.table(item, "[high_risk]") else {
        return Vec::new();
    };
    r.unknown_keys(table, HIGH_RISK_KEYS, "[high_risk]");
    let Some(value) = get(table, "permissions") else {
        return Vec::new();
    };
    let Some(names) = r.strings(value, "\"permissions\"") else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|(text, span)| read_pattern(r, text, *span))
        .collect()
}

/// Parses `resource:action`, with `*` allowed on either side.
fn read_pattern(r: &mut Reader, text: &str, span: Span) -> Option<PermissionPattern> {
    let Some((resource_text, action_text)) = text.split_once(':') else {
        r.push(
            Diagnostic::error(
                "invalid-permission",
                format!("invalid permission \"{text}\""),
                span,
            )
            .with_label("expected resource:action")
            .with_help(
                "write a permission as resource:action, such as \"partner:delete\" or \"*:export\"",
            ),
        );
        return None;
    };
    let resource = match resource_text {
        "*" => None,
        name => match ResourceType::parse(name) {
            Some(resource) => Some(resource),
            None => {
                r.push(
                    with_suggestion(
                        Diagnostic::error(
                            "unknown-resource",
                            format!("unknown resource type \"{name}\" in \"{text}\""),
                            span,
                        ),
                        name,
                        ResourceType::ALL.iter().map(|r| r.name()),
                    )
                    .with_label("not a resource type"),
                );
                return None;
            }
        },
    };
    let action = match action_text {
        "*" => None,
        name => {
            let action = Action::parse(name);
            let valid = match (action, resource) {
                (Some(action), Some(resource)) => resource.has_action(action),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !valid {
                let diagnostic = match resource {
                    Some(resource) => unknown_action(name, resource, span),
                    None => with_suggestion(
                        Diagnostic::error(
                            "unknown-action",
                            format!("unknown action \"{name}\""),
                            span,
                        ),
                        name,
                        Action::ALL.iter().map(|a| a.name()),
                    ),
                };
                r.push(diagnostic);
                return None;
            }
            action
        }
    };
    Some(PermissionPattern {
        resource,
        action,
        span,
    })
}

/// Whether `name` is a lowercase identifier of at most 64 characters.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let source = SourceFile::new("p.toml", text);
        match parse_policy(&source) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics
                .iter()
                .map(|d| {
                    let at = source.location(d.span.map_or(0, |s| s.start));
                    format!("{}:{}: {}", at.line, at.column, d.message)
                })
                .collect(),
        }
    }

    fn parse(text: &str) -> Policy {
        parse_policy(&SourceFile::new("p.toml", text)).unwrap()
    }

    #[test]
    fn reads_the_product_example() {
        let policy = parse(
            r#"
[policy]
name = "acme-partners"
min_admins = 2
elevation_max_ttl = "1h"
metrics_min_group = 5

[roles.partner_manager]
description = "Manages partner accounts"
grants = [
  { on = "partner",  can = ["read", "update"], fields = ["general"], scope = "owned" },
  { on = "workflow", can = ["trigger"] },
]

[roles.regional_finance]
description = "Finance for the principal's region"
grants = [
  { on = "partner", can = ["read"], fields = ["general", "financial"], when = { region = "$principal.region" } },
]

[roles.admin]
description = "Full control"
superuser = true
grants = [ { on = "*", can = ["*"] } ]

[[separation_of_duties]]
name = "contract maker-checker"
conflicting = ["contract:propose", "contract:approve"]

[high_risk]
permissions = ["partner:delete", "*:export"]
"#,
        );
        assert_eq!(policy.name, "acme-partners");
        assert_eq!(policy.elevation_max_ttl_secs, 3600);
        let names: Vec<_> = policy.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["partner_manager", "regional_finance", "admin"]);
        let regional = &policy.roles[1].grants[0];
        assert_eq!(
            regional.when,
            [Condition {
                attr: "region".into(),
                value: ConditionValue::Principal("region".into())
            }]
        );
        assert!(policy.roles[2].superuser);
        assert_eq!(policy.separation_of_duties[0].conflicting.len(), 2);
        assert!(policy.is_high_risk(Permission {
            resource: ResourceType::Contact,
            action: Action::Export
        }));
        assert!(!policy.is_high_risk(Permission {
            resource: ResourceType::Contact,
            action: Action::Read
        }));
    }

    #[test]
    fn reports_every_error_with_its_position() {
        let found = errors(
            r#"[roles.a]
grants = [
  { on = "contract", can = ["read", "aprove"] },
  { on = "partnr", can = ["read"] },
  { on = "partner", can = ["read"], fields = ["pii"], scop = "owned" },
]
"#,
        );
        assert_eq!(
            found,
            [
                "3:37: unknown action \"aprove\" on contract; did you mean \"approve\"?",
                "4:10: unknown resource type \"partnr\"; did you mean \"partner\"?",
                "5:47: partner has no pii fields",
                "5:55: unknown key \"scop\" in grant a#2; did you mean \"scope\"?",
            ]
        );
    }

    #[test]
    fn rejects_empty_lists_and_scopes_where_they_cannot_apply() {
        let found = errors(
            r#"[roles.a]
grants = [
  { on = "partner", can = [] },
  { on = "partner", can = ["read"], fields = [] },
  { on = "workflow", can = ["trigger"], scope = "owned" },
  { on = "system", can = ["backup"], when = { region = "emea" } },
  { on = "*", can = ["trigger"], scope = "owned" },
]
"#,
        );
        assert_eq!(
            found,
            [
                "3:27: \"can\" is empty",
                "4:46: \"fields\" is empty",
                "5:49: scope owned cannot apply to workflow",
                "6:38: a when condition cannot apply to system",
                "7:3: grant a#4 on \"*\" covers no resource type",
            ]
        );
    }

    #[test]
    fn wildcard_grants_cover_types_with_their_actions_and_classes() {
        let policy = parse(
            r#"[roles.a]
grants = [ { on = "*", can = ["read", "refund"], fields = ["financial"], scope = "owned" } ]
"#,
        );
        let coverage: Vec<_> = policy.roles[0].grants[0]
            .coverage()
            .map(|c| (c.resource, c.actions, c.fields))
            .collect();
        let financial = FieldSet::of(FieldClass::Financial);
        let read = ActionSet::of(Action::Read);
        let mut read_refund = read;
        read_refund.insert(Action::Refund);
        assert_eq!(
            coverage,
            [
                (ResourceType::Partner, read, financial),
                (ResourceType::Contract, read, financial),
                (ResourceType::Transaction, read_refund, financial),
            ]
        );
    }

    #[test]
    fn checks_settings_conditions_and_permission_lists() {
        let found = errors(
            r#"[policy]
name = 3
min_admins = 0
elevation_max_ttl = "2 weeks"
[roles.a]
grants = [ { on = "partner", can = ["read"], when = { region = "$user.region" } } ]
[[separation_of_duties]]
name = "x"
conflicting = ["contract:propose"]
[high_risk]
permissions = ["partner:refund", "*:exprt", "nope"]
"#,
        );
        assert_eq!(
            found,
            [
                "2:8: expected a string for \"name\", found an integer",
                "3:14: min_admins must be between 1 and 1000",
                "4:21: invalid duration \"2 weeks\"",
                "6:64: invalid reference \"$user.region\"",
                "9:15: \"conflicting\" needs at least two different permissions",
                "11:16: partner has no action \"refund\"",
                "11:34: unknown action \"exprt\"; did you mean \"export\"?",
                "11:45: invalid permission \"nope\"",
            ]
        );
    }

    #[test]
    fn reports_toml_syntax_errors() {
        let found = errors("[roles.a]\ngrants = [ { on = \"partner\" \n");
        assert!(!found.is_empty());
        assert!(found[0].starts_with("2:"), "{found:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("1d"), Some(86400));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
